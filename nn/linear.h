// nn::Linear (y = x W^T + b) and nn::Flatten, nn::Identity: the shape-level layers of an MLP.
// Linear's default init is PyTorch's: W and b uniform in +-1/sqrt(in_features).
#pragma once

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

struct LinearOptions {
  LinearOptions(int64_t in_features, int64_t out_features) : in_features_(in_features), out_features_(out_features) {}
  MANTISSA_ARG(int64_t, in_features);
  MANTISSA_ARG(int64_t, out_features);
  MANTISSA_ARG(bool, bias) = true;
};

class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);
  Linear(int64_t in_features, int64_t out_features, bool bias = true)
      : Linear(LinearOptions(in_features, out_features).bias(bias)) {}

  void reset_parameters();
  // x [..., in_features] -> [..., out_features].
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  // Quantization-aware training hooks (attached in place by quant::prepare_qat, so a model that
  // calls its typed member layers still reaches them). Null by default: a float Linear's forward
  // and state_dict are unchanged. Setting one registers it as the child "weight_fake_quant" /
  // "activation_post_process" (PyTorch's names), so its observer state joins state_dict; forward
  // then runs y = fq_out(linear(x, fq_w(weight), bias)). Once attached, one can be swapped for
  // another but not removed (switch it off with FakeQuantize::disable_fake_quant instead).
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

  // Linear+ReLU fusion for QAT, in place (quant::fuse_linear_relu): forward applies relu before
  // the activation_post_process, which so observes the post-ReLU range (PyTorch's LinearReLU). A
  // model that still calls relu after this layer then applies it to nonnegative values: a no-op.
  void set_fused_relu(bool on) { fused_relu_ = on; }
  bool fused_relu() const { return fused_relu_; }

  LinearOptions options;
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], undefined without bias

 private:
  ModulePtr weight_fake_quant_, activation_post_process_;
  ModulePtr quantized_;
  bool fused_relu_ = false;
};

struct FlattenOptions {
  MANTISSA_ARG(int64_t, start_dim) = 1;
  MANTISSA_ARG(int64_t, end_dim) = -1;
};

// Flattens dims start_dim..end_dim (default: all but the batch dim).
class Flatten : public Module {
 public:
  explicit Flatten(const FlattenOptions& opts = {}) : options(opts) {}
  Flatten(int64_t start_dim, int64_t end_dim = -1) : Flatten(FlattenOptions().start_dim(start_dim).end_dim(end_dim)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  FlattenOptions options;
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& input) override { return input; }
};

}  // namespace mantissa::nn
