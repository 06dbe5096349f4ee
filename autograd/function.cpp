#include "autograd/function.h"

#include "autograd/ops.h"

namespace mantissa::autograd {

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
