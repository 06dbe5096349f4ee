// Fusion passes: dotted-path lookup, the pairing checks, then the in-place switches on
// nn::Conv2d / nn::Linear / nn::BatchNormBase; and the F32 BatchNorm fold for conversion.
#include "quant/fuse.h"

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "nn/linear.h"

namespace mantissa::quant {

namespace {

// Walks the registered children along a dotted path ("features.0"); needs no shared_ptr to the
// root. The path names a submodule (a layer and its BatchNorm are never both the model itself).
nn::ModulePtr find_module(nn::Module& model, const std::string& path, const char* op) {
  MANTISSA_CHECK(!path.empty(), op, ": an empty module path; name a submodule of the model (e.g. \"conv1\")");
  nn::Module* cur = &model;
  nn::ModulePtr found;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    found = nullptr;
    for (const auto& [name, child] : cur->named_children()) {
      if (name == part) found = child;
    }
    MANTISSA_CHECK(found != nullptr, op, ": the model has no submodule '", path, "' (", cur->name(),
                   " has no child '", part, "')");
    cur = found.get();
    if (dot == std::string::npos) return found;
    start = dot + 1;
  }
}

template <typename T>
std::shared_ptr<T> find_typed(nn::Module& model, const std::string& path, const char* op, const char* expected) {
  nn::ModulePtr m = find_module(model, path, op);
  auto typed = std::dynamic_pointer_cast<T>(m);
  MANTISSA_CHECK(typed != nullptr, op, ": '", path, "' is a ", m->name(), ", expected a ", expected);
  return typed;
}

template <typename Layer>
void check_unprepared(const Layer& layer, const std::string& path, const char* op) {
  MANTISSA_CHECK(!layer.weight_fake_quant() && !layer.activation_post_process(), op, ": '", path,
                 "' already has QAT fake quantizers attached; fuse before quant::prepare_qat (its observers ",
                 "must see the fused layer's weights and outputs)");
}

void check_bn_pair(const nn::Conv2d& conv, const nn::BatchNorm2d& bn, const std::string& conv_name,
                   const std::string& bn_name, const char* op) {
  MANTISSA_CHECK(bn.options.num_features() == conv.options.out_channels(), op, ": '", bn_name, "' has num_features ",
                 bn.options.num_features(), " but '", conv_name, "' has out_channels ", conv.options.out_channels());
  MANTISSA_CHECK(bn.options.track_running_stats(), op, ": '", bn_name,
                 "' has track_running_stats=false; folding needs its running_mean and running_var");
}

}  // namespace

void fuse_conv_bn(nn::Module& model, const std::string& conv_name, const std::string& bn_name, bool relu) {
  const char* op = "fuse_conv_bn";
  auto conv = find_typed<nn::Conv2d>(model, conv_name, op, "Conv2d");
  auto bn = find_typed<nn::BatchNorm2d>(model, bn_name, op, "BatchNorm2d");
  check_unprepared(*conv, conv_name, op);
  check_bn_pair(*conv, *bn, conv_name, bn_name, op);
  MANTISSA_CHECK(!conv->fused_batch_norm(), op, ": '", conv_name, "' is already fused with a BatchNorm2d");
  MANTISSA_CHECK(!conv->fused_relu(), op, ": '", conv_name,
                 "' is already fused with a ReLU (fuse the BatchNorm first: conv -> bn -> relu)");
  MANTISSA_CHECK(!bn->folded_into_conv(), op, ": '", bn_name, "' is already fused into a conv");
  MANTISSA_CHECK(bn->running_var.device() == conv->weight.device(), op, ": '", bn_name, "' is on ",
                 bn->running_var.device(), " but '", conv_name, "' is on ", conv->weight.device());
  conv->set_fused_batch_norm(bn);
  if (relu) conv->set_fused_relu(true);
}

void fuse_conv_relu(nn::Module& model, const std::string& conv_name) {
  const char* op = "fuse_conv_relu";
  auto conv = find_typed<nn::Conv2d>(model, conv_name, op, "Conv2d");
  check_unprepared(*conv, conv_name, op);
  MANTISSA_CHECK(!conv->fused_relu(), op, ": '", conv_name, "' is already fused with a ReLU");
  conv->set_fused_relu(true);
}

void fuse_linear_relu(nn::Module& model, const std::string& linear_name) {
  const char* op = "fuse_linear_relu";
  auto lin = find_typed<nn::Linear>(model, linear_name, op, "Linear");
  check_unprepared(*lin, linear_name, op);
  MANTISSA_CHECK(!lin->fused_relu(), op, ": '", linear_name, "' is already fused with a ReLU");
  lin->set_fused_relu(true);
}

FoldedConv fold_batch_norm(const nn::Conv2d& conv, const nn::BatchNorm2d& bn) {
  check_bn_pair(conv, bn, "conv", "bn", "fold_batch_norm");
  const Device device = conv.weight.device();
  MANTISSA_CHECK(bn.running_var.device() == device, "fold_batch_norm: the BatchNorm2d is on ",
                 bn.running_var.device(), " but the conv is on ", device);
  NoGradGuard no_grad;
  auto f32 = [](const Tensor& t) { return t.detach().to(DType::F32); };
  const Tensor mean = f32(bn.running_mean), var = f32(bn.running_var);
  const Tensor gamma = bn.weight.defined() ? f32(bn.weight) : ones_like(mean);
  const Tensor beta = bn.bias.defined() ? f32(bn.bias) : zeros_like(mean);
  const Tensor b = conv.bias.defined() ? f32(conv.bias) : zeros_like(mean);
  // eps joins as an F32 scalar, as a Python float added to a float32 tensor does in PyTorch.
  const Tensor inv_std = rsqrt(var + bn.options.eps());
  FoldedConv out;
  out.weight = f32(conv.weight) * reshape(gamma * inv_std, {-1, 1, 1, 1});
  out.bias = (b - mean) * inv_std * gamma + beta;
  return out;
}

}  // namespace mantissa::quant
