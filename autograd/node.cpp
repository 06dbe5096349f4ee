#include "autograd/node.h"

#include <atomic>

#include "autograd/function.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"

namespace mantissa::autograd {

namespace {
std::atomic<uint64_t> g_sequence{0};

// Releasing the last reference to a long chain of nodes would recurse once per node and
// overflow the stack; instead the outermost release drains a worklist.
thread_local std::vector<std::shared_ptr<Node>>* t_release_list = nullptr;

void release_edges(std::vector<Edge>& edges) {
  if (t_release_list != nullptr) {
    for (Edge& e : edges)
      if (e.fn) t_release_list->push_back(std::move(e.fn));
    return;
  }
  std::vector<std::shared_ptr<Node>> work;
  t_release_list = &work;
  for (Edge& e : edges)
    if (e.fn) work.push_back(std::move(e.fn));
  while (!work.empty()) {
    std::shared_ptr<Node> n = std::move(work.back());
    work.pop_back();
    n.reset();  // if this was the last owner, its destructor appends its edges to `work`
  }
  t_release_list = nullptr;
}
}  // namespace

Node::Node() : sequence_nr(g_sequence.fetch_add(1, std::memory_order_relaxed)) {}
Node::~Node() { release_edges(next_edges); }

AccumulateGrad::AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {
  Tensor t(leaf_);
  input_meta.push_back({t.sizes(), t.dtype(), t.device()});
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor leaf(leaf_);
  Tensor g = std::move(grads.at(0));
  if (!g.defined()) return {};
  AutogradMeta& m = meta(leaf);
  for (const Hook& h : m.leaf_hooks) {
    Tensor r = h(g);
    if (r.defined()) g = r;
  }
  NoGradGuard no_grad;
  if (!m.grad.defined() && !g.requires_grad() && g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
      g.storage_offset() == 0 && g.is_contiguous() && g.sizes() == leaf.sizes() && g.dtype() == leaf.dtype() &&
      g.device() == leaf.device()) {
    // Nothing else can see this gradient (sole handle, sole owner of its memory): take it as
    // the .grad instead of copying it, as PyTorch's AccumulateGrad does. Saves a copy and an
    // allocation per parameter and step.
    m.grad = std::move(g);
  } else if (!m.grad.defined()) {
    // Keep our own contiguous copy: the incoming gradient may alias a saved tensor or a view.
    Tensor own = empty(leaf.sizes(), TensorOptions(leaf.dtype()).device(leaf.device()));
    kernels::copy(own, g);
    m.grad = own;
  } else {
    m.grad.add_(g);
  }
  return {};
}

AutogradMeta& meta(const Tensor& t) {
  MANTISSA_CHECK(t.defined(), "autograd: operation on an undefined tensor");
  auto& p = t.impl()->autograd;
  if (!p) p = std::make_shared<AutogradMeta>();
  return *p;
}

AutogradMeta* meta_or_null(const Tensor& t) { return t.defined() ? t.impl()->autograd.get() : nullptr; }

Edge gradient_edge(const Tensor& t) {
  AutogradMeta& m = meta(t);
  if (m.grad_fn) return Edge{m.grad_fn, m.output_nr};
  if (!m.requires_grad) return Edge{};
  std::shared_ptr<AccumulateGrad> acc = m.grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    m.grad_accumulator = acc;
  }
  return Edge{acc, 0};
}

namespace {
thread_local const Node* t_current_node = nullptr;
}
const Node* current_node() { return t_current_node; }
void set_current_node(const Node* n) { t_current_node = n; }

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  data_ = t.detach();
  version_ = t.version();
  accounting_ = detail::track_saved_storage(data_);
}

Tensor SavedTensor::unpack() const {
  if (data_.defined() && data_.version() != version_) {
    const Node* n = current_node();
    MANTISSA_ERROR(n ? n->name() : std::string("backward"),
                   ": a tensor saved for backward was modified by an in-place operation (saved at version ",
                   version_, ", now at version ", data_.version(), " ; shape ", shape_str(data_.sizes()), ", dtype ",
                   data_.dtype(), "). Clone it before modifying it, or modify a copy.");
  }
  return data_;
}

}  // namespace mantissa::autograd
