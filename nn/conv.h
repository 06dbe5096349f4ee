// nn::Conv2d over NCHW input with stride, padding, dilation, groups and optional bias.
// Default init is PyTorch's: weight and bias uniform in +-1/sqrt(fan_in), fan_in = C_in/groups * kh * kw.
#pragma once

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

class BatchNorm2d;

struct Conv2dOptions {
  Conv2dOptions(int64_t in_channels, int64_t out_channels, ExpandingArray<2> kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  MANTISSA_ARG(int64_t, in_channels);
  MANTISSA_ARG(int64_t, out_channels);
  MANTISSA_ARG(ExpandingArray<2>, kernel_size);
  MANTISSA_ARG(ExpandingArray<2>, stride) = 1;
  MANTISSA_ARG(ExpandingArray<2>, padding) = 0;
  MANTISSA_ARG(ExpandingArray<2>, dilation) = 1;
  MANTISSA_ARG(int64_t, groups) = 1;
  MANTISSA_ARG(bool, bias) = true;
};

class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& options);
  Conv2d(int64_t in_channels, int64_t out_channels, ExpandingArray<2> kernel_size)
      : Conv2d(Conv2dOptions(in_channels, out_channels, kernel_size)) {}

  void reset_parameters();
  // [N, C_in, H, W] -> [N, C_out, H_out, W_out].
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  // Quantization-aware training hooks, as nn::Linear's: null by default (float behaviour and
  // state_dict unchanged); setting one registers the child "weight_fake_quant" /
  // "activation_post_process", and forward runs y = fq_out(conv2d(x, fq_w(weight), bias)).
  void set_weight_fake_quant(ModulePtr fq);
  void set_activation_post_process(ModulePtr fq);
  const ModulePtr& weight_fake_quant() const { return weight_fake_quant_; }
  const ModulePtr& activation_post_process() const { return activation_post_process_; }

  // Set by quant::convert: the int8 module this layer now runs in place (forward(x) returns
  // (*quantized())(x), x a quantized tensor). The engine is registered as the child "quantized"
  // (its int8 weights, scales and zero points join state_dict); convert unregisters the float
  // weight, bias and fake quantizers. Set once.
  void set_quantized(ModulePtr engine);
  const ModulePtr& quantized() const { return quantized_; }

  // Conv+BatchNorm(+ReLU) fusion for QAT, in place (set by quant::fuse_conv_bn / fuse_conv_relu,
  // which check the pairing). With a fused BatchNorm2d bn (not registered here: it stays where the
  // model registered it, and its own forward becomes the identity, see
  // BatchNormBase::set_folded_into_conv), forward runs PyTorch's ConvBn2d approximation:
  //   s = bn.weight / sqrt(bn.running_var + eps)  (1 / sqrt(...) without affine), s := 1 where s == 0
  //   y = bn.normalize(conv2d(x, fq_w(weight * s[:,None,None,None])) / s[None,:,None,None] + bias)
  // so the weight fake quantizer sees the folded weight the int8 model will use, while BatchNorm
  // still normalizes with batch statistics in training. Then relu if fused_relu(), then the
  // activation_post_process (which so observes the post-ReLU range, as PyTorch's fused modules).
  void set_fused_batch_norm(std::shared_ptr<BatchNorm2d> bn);
  const std::shared_ptr<BatchNorm2d>& fused_batch_norm() const { return fused_bn_; }
  void set_fused_relu(bool on) { fused_relu_ = on; }
  bool fused_relu() const { return fused_relu_; }

  Conv2dOptions options;
  Tensor weight;  // [C_out, C_in / groups, kh, kw]
  Tensor bias;    // [C_out], undefined without bias

 private:
  ModulePtr weight_fake_quant_, activation_post_process_;
  ModulePtr quantized_;
  std::shared_ptr<BatchNorm2d> fused_bn_;
  bool fused_relu_ = false;
  Tensor forward_fused(const Tensor& input);
  mantissa::Conv2dOptions op_options_;  // built once: forward allocates nothing for its options
};

}  // namespace mantissa::nn
