// nn::Conv2d: configuration checks at construction, input checks naming the layer's channels,
// then the conv2d op (with the optional QAT fake quantizers on its weight and output).
#include "nn/conv.h"

#include <cmath>

#include "nn/init.h"
#include "nn/norm.h"

namespace mantissa::nn {

Conv2d::Conv2d(const Conv2dOptions& opts) : options(opts) {
  const int64_t in = options.in_channels(), out = options.out_channels(), g = options.groups();
  MANTISSA_CHECK(in > 0 && out > 0, "Conv2d: in_channels and out_channels must be positive (got ", in, " and ", out,
                 ")");
  MANTISSA_CHECK(g > 0 && in % g == 0 && out % g == 0, "Conv2d: groups ", g,
                 " must be positive and divide in_channels ", in, " and out_channels ", out);
  for (size_t i = 0; i < 2; ++i) {
    MANTISSA_CHECK(options.kernel_size()[i] > 0 && options.stride()[i] > 0 && options.dilation()[i] > 0 &&
                       options.padding()[i] >= 0,
                   "Conv2d: kernel_size ", detail::py_tuple(options.kernel_size().vec()), ", stride ",
                   detail::py_tuple(options.stride().vec()), " and dilation ",
                   detail::py_tuple(options.dilation().vec()), " must be positive and padding ",
                   detail::py_tuple(options.padding().vec()), " non-negative");
  }
  op_options_.stride = options.stride().vec();
  op_options_.padding = options.padding().vec();
  op_options_.dilation = options.dilation().vec();
  op_options_.groups = g;
  weight = register_parameter("weight", empty({out, in / g, options.kernel_size()[0], options.kernel_size()[1]}));
  bias = register_parameter("bias", options.bias() ? empty({out}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& input) {
  if (quantized_) return (*quantized_)(input);
  MANTISSA_CHECK(input.defined(), "conv2d: the input is an undefined tensor");
  MANTISSA_CHECK(input.dim() == 4 && input.size(1) == options.in_channels(), "conv2d: input ",
                 shape_str(input.sizes()), " does not match weight ", shape_str(weight.sizes()),
                 " (expected [N, ", options.in_channels(), ", H, W]: in_channels ", options.in_channels(), ")");
  if (fused_bn_ || fused_relu_) return forward_fused(input);
  if (!weight_fake_quant_ && !activation_post_process_) return conv2d(input, weight, bias, op_options_);
  const Tensor w = weight_fake_quant_ ? (*weight_fake_quant_)(weight) : weight;
  Tensor y = conv2d(input, w, bias, op_options_);
  return activation_post_process_ ? (*activation_post_process_)(y) : y;
}

Tensor Conv2d::forward_fused(const Tensor& input) {
  Tensor y;
  if (fused_bn_) {
    BatchNorm2d& bn = *fused_bn_;
    const Tensor running_std = sqrt(bn.running_var + bn.options.eps());
    const Tensor s = bn.weight.defined() ? bn.weight / running_std : 1.0 / running_std;
    // A channel with gamma == 0 (or a scale underflowing to 0) would scale its weights to 0 and
    // then divide the 0 conv output by 0: NaN forward, NaN gradients (PyTorch's approximate
    // ConvBn2d does exactly that). BatchNorm's output for such a channel is beta whatever its
    // input, so any nonzero factor gives the same forward; 1 (the unfused conv) keeps the conv
    // output and the BatchNorm statistics finite, and the constant factor sends no gradient
    // into gamma through the scaling, so gamma, beta and the weight get the unfused model's
    // gradients (gamma's from the normalization alone; the weight's is 0, as unfused).
    const Tensor factor = where(eq(s, 0.0), ones_like(s), s);
    Tensor w = weight * reshape(factor, {-1, 1, 1, 1});
    if (weight_fake_quant_) w = (*weight_fake_quant_)(w);
    // Dividing by the factor undoes the folding so BatchNorm sees (up to the weight's fake
    // quantization) the plain conv output, then adds the conv bias it would have seen.
    y = conv2d(input, w, Tensor(), op_options_) / reshape(factor, {1, -1, 1, 1});
    if (bias.defined()) y = y + reshape(bias, {1, -1, 1, 1});
    y = bn.normalize(y);
  } else {
    const Tensor w = weight_fake_quant_ ? (*weight_fake_quant_)(weight) : weight;
    y = conv2d(input, w, bias, op_options_);
  }
  if (fused_relu_) y = relu(y);
  return activation_post_process_ ? (*activation_post_process_)(y) : y;
}

void Conv2d::set_fused_batch_norm(std::shared_ptr<BatchNorm2d> bn) {
  MANTISSA_CHECK(bn != nullptr, "Conv2d::set_fused_batch_norm: the BatchNorm2d is null");
  MANTISSA_CHECK(!fused_bn_, "Conv2d::set_fused_batch_norm: this conv already has a fused BatchNorm2d");
  MANTISSA_CHECK(!bn->folded_into_conv(), "Conv2d::set_fused_batch_norm: the BatchNorm2d is already fused into a conv");
  MANTISSA_CHECK(bn->options.num_features() == options.out_channels(), "Conv2d::set_fused_batch_norm: BatchNorm2d(",
                 bn->options.num_features(), ") does not match the conv's out_channels ", options.out_channels());
  MANTISSA_CHECK(bn->options.track_running_stats(), "Conv2d::set_fused_batch_norm: the BatchNorm2d needs ",
                 "track_running_stats=true (the folded weight scale uses running_var)");
  MANTISSA_CHECK(bn->running_var.device() == weight.device(), "Conv2d::set_fused_batch_norm: the BatchNorm2d is on ",
                 bn->running_var.device(), " but the conv weight is on ", weight.device());
  bn->set_folded_into_conv(true);
  fused_bn_ = std::move(bn);
}

void Conv2d::set_weight_fake_quant(ModulePtr fq) {
  set_optional_child(weight_fake_quant_, "weight_fake_quant", std::move(fq), "set_weight_fake_quant");
}

void Conv2d::set_activation_post_process(ModulePtr fq) {
  set_optional_child(activation_post_process_, "activation_post_process", std::move(fq),
                     "set_activation_post_process");
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(options.in_channels()) + ", " + std::to_string(options.out_channels()) +
                  ", kernel_size=" + detail::py_tuple(options.kernel_size().vec()) +
                  ", stride=" + detail::py_tuple(options.stride().vec());
  if (!(options.padding() == ExpandingArray<2>(0))) s += ", padding=" + detail::py_tuple(options.padding().vec());
  if (!(options.dilation() == ExpandingArray<2>(1))) s += ", dilation=" + detail::py_tuple(options.dilation().vec());
  if (options.groups() != 1) s += ", groups=" + std::to_string(options.groups());
  if (!bias.defined()) s += ", bias=False";
  return s;
}

void Conv2d::set_quantized(ModulePtr engine) {
  MANTISSA_CHECK(engine != nullptr, "Conv2d::set_quantized: the int8 module is null");
  MANTISSA_CHECK(!quantized_, "Conv2d::set_quantized: this layer is already quantized");
  quantized_ = register_module("quantized", std::move(engine));
}

}  // namespace mantissa::nn
