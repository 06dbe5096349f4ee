#include "autograd/function.h"

#include <mutex>
#include <unordered_map>

#include "autograd/ops.h"

namespace mantissa::autograd {

// Saved-tensor accounting ----------------------------------------------------------------------

namespace {
struct SavedBytesRegistry {
  std::mutex mutex;
  std::unordered_map<const Storage*, size_t> saves;  // storage -> live tokens referring to it
  size_t current = 0;
  size_t peak = 0;
};
SavedBytesRegistry& registry() {
  static SavedBytesRegistry* r = new SavedBytesRegistry;  // never destroyed: tokens may die at exit
  return *r;
}

// Holds the storage so its address cannot be reused by another storage while it is a key.
struct SavedBytesToken {
  StoragePtr storage;
  explicit SavedBytesToken(StoragePtr s) : storage(std::move(s)) {
    SavedBytesRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.saves[storage.get()]++ == 0) {
      r.current += storage->nbytes();
      if (r.current > r.peak) r.peak = r.current;
    }
  }
  ~SavedBytesToken() {
    SavedBytesRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.saves.find(storage.get());
    if (it != r.saves.end() && --it->second == 0) {
      r.current -= storage->nbytes();
      r.saves.erase(it);
    }
  }
  SavedBytesToken(const SavedBytesToken&) = delete;
  SavedBytesToken& operator=(const SavedBytesToken&) = delete;
};
}  // namespace

size_t saved_tensor_bytes() {
  SavedBytesRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.current;
}

size_t saved_tensor_peak_bytes() {
  SavedBytesRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.peak;
}

void reset_saved_tensor_peak() {
  SavedBytesRegistry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.peak = r.current;
}

std::shared_ptr<void> detail::track_saved_storage(const Tensor& t) {
  if (!t.defined() || t.storage() == nullptr) return nullptr;
  return std::make_shared<SavedBytesToken>(t.storage());
}

// Nodes ----------------------------------------------------------------------------------------

namespace {
std::string backward_name(OpId op) {
  // "max_pool2d" -> "MaxPool2dBackward", as PyTorch names its nodes.
  std::string out;
  bool upper = true;
  for (const char* c = op_name(op); *c; ++c) {
    if (*c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(*c))) : *c;
    upper = false;
  }
  return out + "Backward";
}
}  // namespace

std::string FunctionNode::name() const { return backward_name(op_); }

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  MANTISSA_CHECK(fn_ != nullptr, name(),
                 ": trying to backward through the graph a second time (its saved tensors were freed after the "
                 "first backward); pass retain_graph=true to the first backward if you need to");
  return fn_(grads);
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(OpId op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn backward) {
  auto node = std::make_shared<FunctionNode>(op, std::move(backward));
  node->next_edges.reserve(inputs.size());
  node->input_meta.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    if (in.defined() && in.requires_grad()) {
      node->next_edges.push_back(gradient_edge(in));
      node->input_meta.push_back({in.sizes(), in.dtype(), in.device()});
    } else {
      node->next_edges.push_back(Edge{});
      node->input_meta.push_back(in.defined() ? InputMeta{in.sizes(), in.dtype(), in.device()} : InputMeta{});
    }
  }
  node->num_outputs = static_cast<uint32_t>(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    if (!out.defined() || !is_floating(out.dtype())) continue;
    AutogradMeta& m = meta(out);
    m.requires_grad = true;
    m.grad_fn = node;
    m.output_nr = static_cast<uint32_t>(i);
  }
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.sizes() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  MANTISSA_ASSERT(lead >= 0, "sum_to ", shape_str(g.sizes()), " -> ", shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < g.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && g.size(d) != 1) {
      dims.push_back(d);
    }
  }
  Tensor r = dims.empty() ? g : sum(g, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

}  // namespace mantissa::autograd
