// The backward engine: counts each node's dependencies with an iterative walk, then runs
// every node exactly once when all gradients for it have arrived (later-created nodes first
// among the ready ones), summing gradients that meet at a node, and checking each returned
// gradient's count, shape, dtype and device in one place.
#include <queue>
#include <unordered_map>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops.h"

namespace mantissa::autograd {

void set_current_node(const Node* n);

namespace {

struct ReadyOrder {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

// Checks and adapts one gradient produced by `node` for its input i: broadcast gradients are
// summed down to the input's shape, other dtypes cast to the input's dtype.
Tensor validate(const Node& node, size_t i, Tensor g) {
  if (!g.defined()) return g;
  const InputMeta& m = node.input_meta[i];
  MANTISSA_CHECK(g.device() == m.device, node.name(), ": the gradient for input ", i, " is on ", g.device(),
                 " but the input is on ", m.device);
  if (g.sizes() != m.shape) {
    bool expandable = g.dim() >= static_cast<int64_t>(m.shape.size());
    for (size_t k = 0; expandable && k < m.shape.size(); ++k) {
      int64_t gs = g.size(g.dim() - m.shape.size() + k);
      expandable = m.shape[k] == gs || m.shape[k] == 1;
    }
    MANTISSA_CHECK(expandable, node.name(), ": the gradient for input ", i, " has shape ", shape_str(g.sizes()),
                   " but the input has shape ", shape_str(m.shape));
    g = sum_to(g, m.shape);
  }
  if (g.dtype() != m.dtype) {
    MANTISSA_CHECK(is_floating(g.dtype()) && is_floating(m.dtype), node.name(), ": the gradient for input ", i,
                   " has dtype ", g.dtype(), " but the input has dtype ", m.dtype);
    g = g.to(m.dtype);
  }
  return g;
}

void accumulate(std::vector<Tensor>& buffer, uint32_t slot, const Tensor& g) {
  if (!g.defined()) return;
  MANTISSA_ASSERT(slot < buffer.size(), "gradient slot ", slot, " of ", buffer.size());
  if (!buffer[slot].defined()) {
    buffer[slot] = g;
  } else {
    buffer[slot] = add(buffer[slot], g);
  }
}

struct Capture {
  Node* node;
  uint32_t slot;
  size_t index;
};

// Runs the graph below `roots` (one gradient each). When `captures` is non-empty the
// gradients arriving at those (node, slot) pairs are returned and no leaf .grad is touched.
std::vector<Tensor> execute(const std::vector<Edge>& roots, const std::vector<Tensor>& root_grads, bool keep_graph,
                            const std::vector<Edge>& captures) {
  NoGradGuard no_grad;
  // Backward formulas run in the dtypes the forward chose: autocast is off while they run, even
  // when backward() is called inside an autocast region.
  struct AutocastOff {
    int saved = detail::autocast_enabled_devices;
    AutocastOff() { detail::autocast_enabled_devices = 0; }
    ~AutocastOff() { detail::autocast_enabled_devices = saved; }
  } autocast_off;
  const bool capturing = !captures.empty();

  // Dependencies: how many edges point at each node from the part of the graph we run.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (const Edge& r : roots) {
    if (r.fn && !seen[r.fn.get()]) {
      seen[r.fn.get()] = true;
      stack.push_back(r.fn.get());
    }
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.fn) continue;
      deps[e.fn.get()] += 1;
      if (!seen[e.fn.get()]) {
        seen[e.fn.get()] = true;
        stack.push_back(e.fn.get());
      }
    }
  }

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto buffer_of = [&](Node* n) -> std::vector<Tensor>& {
    auto it = buffers.find(n);
    if (it == buffers.end()) it = buffers.emplace(n, std::vector<Tensor>(n->num_outputs)).first;
    return it->second;
  };
  std::priority_queue<Node*, std::vector<Node*>, ReadyOrder> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].fn) continue;
    accumulate(buffer_of(roots[i].fn.get()), roots[i].input_nr, root_grads[i]);
  }
  for (const Edge& r : roots) {
    Node* n = r.fn.get();
    if (n && deps[n] == 0) {
      deps[n] = -1;  // queued
      ready.push(n);
    }
  }

  std::vector<Tensor> captured(captures.size());
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    std::vector<Tensor> inputs = std::move(buffer_of(n));
    buffers.erase(n);

    // Hooks registered on non-leaf tensors see (and may replace) their gradient.
    for (auto& [slot, hooks] : n->pre_hooks) {
      if (slot >= inputs.size() || !inputs[slot].defined()) continue;
      for (const Hook& h : hooks) {
        Tensor r = h(inputs[slot]);
        if (r.defined()) inputs[slot] = r;
      }
    }
    for (size_t c = 0; c < captures.size(); ++c) {
      if (captures[c].fn.get() == n && captures[c].input_nr < inputs.size() && inputs[captures[c].input_nr].defined()) {
        captured[c] = inputs[captures[c].input_nr];
      }
    }

    bool is_leaf_acc = dynamic_cast<AccumulateGrad*>(n) != nullptr;
    std::vector<Tensor> outputs;
    if (!(capturing && is_leaf_acc)) {
      bool any = false;
      for (const Tensor& t : inputs) any = any || t.defined();
      if (any) {
        // A single-output node with nothing flowing in is skipped; where some outputs of a
        // multi-output node got nothing, the formula sees undefined tensors.
        set_current_node(n);
        try {
          outputs = n->apply(std::move(inputs));
        } catch (...) {
          set_current_node(nullptr);
          throw;
        }
        set_current_node(nullptr);
        if (!keep_graph) n->release_saved();
        if (!is_leaf_acc) {
          MANTISSA_CHECK(outputs.size() == n->next_edges.size(), n->name(), ": backward returned ", outputs.size(),
                         " gradients but the op has ", n->next_edges.size(), " inputs");
        }
      }
    }

    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.fn) continue;
      Node* next = e.fn.get();
      if (i < outputs.size()) {
        Tensor g = validate(*n, i, outputs[i]);
        accumulate(buffer_of(next), e.input_nr, g);
      }
      if (--deps[next] == 0) {
        deps[next] = -1;
        ready.push(next);  // runs even with no gradient, so its own dependents get released
      }
    }
  }
  return captured;
}

std::vector<Tensor> root_gradients(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
                                   const char* what) {
  MANTISSA_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), what, ": got ", grad_outputs.size(),
                 " gradients for ", outputs.size(), " outputs");
  std::vector<Tensor> grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    MANTISSA_CHECK(out.defined(), what, ": output ", i, " is an undefined tensor");
    MANTISSA_CHECK(out.requires_grad(), what, ": output ", i,
                   " does not require grad and has no grad_fn (was it computed under NoGradGuard, or from tensors "
                   "without requires_grad?)");
    Tensor g = grad_outputs.empty() ? Tensor() : grad_outputs[i];
    if (!g.defined()) {
      MANTISSA_CHECK(out.numel() == 1, what, ": a gradient can be created implicitly only for outputs with one "
                     "element; output ", i, " has shape ", shape_str(out.sizes()), ", pass a gradient");
      g = ones_like(out);
    } else {
      MANTISSA_CHECK(g.sizes() == out.sizes(), what, ": the gradient for output ", i, " has shape ",
                     shape_str(g.sizes()), " but the output has shape ", shape_str(out.sizes()));
      MANTISSA_CHECK(g.device() == out.device(), what, ": the gradient for output ", i, " is on ", g.device(),
                     " but the output is on ", out.device());
      if (g.dtype() != out.dtype()) g = g.to(out.dtype());
    }
    grads.push_back(g);
  }
  return grads;
}

}  // namespace

void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs, bool retain_graph) {
  std::vector<Tensor> grads = root_gradients(outputs, grad_outputs, "backward");
  std::vector<Edge> roots;
  for (const Tensor& o : outputs) roots.push_back(gradient_edge(o));
  execute(roots, grads, retain_graph, {});
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph, bool allow_unused) {
  std::vector<Tensor> grads = root_gradients(outputs, grad_outputs, "grad");
  std::vector<Edge> roots;
  for (const Tensor& o : outputs) roots.push_back(gradient_edge(o));
  std::vector<Edge> captures;
  for (size_t i = 0; i < inputs.size(); ++i) {
    MANTISSA_CHECK(inputs[i].defined() && inputs[i].requires_grad(), "grad: input ", i, " does not require grad");
    captures.push_back(gradient_edge(inputs[i]));
  }
  if (captures.empty()) return {};
  std::vector<Tensor> result = execute(roots, grads, retain_graph, captures);
  for (size_t i = 0; i < result.size(); ++i) {
    MANTISSA_CHECK(result[i].defined() || allow_unused, "grad: input ", i,
                   " was not used to compute the outputs (pass allow_unused=true if that is expected)");
  }
  return result;
}

}  // namespace mantissa::autograd
