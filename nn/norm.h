// nn::BatchNorm1d/2d (batch statistics in training with running-stat updates and an I64
// num_batches_tracked counter, running statistics in eval) and nn::LayerNorm over trailing dims.
// Parameters start at weight 1, bias 0; running_mean 0, running_var 1, as in PyTorch.
#pragma once

#include <optional>

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

struct BatchNormOptions {
  BatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT: implicit, like libtorch
  MANTISSA_ARG(int64_t, num_features);
  MANTISSA_ARG(double, eps) = 1e-5;
  // nullopt: a cumulative average (factor 1/num_batches_tracked) instead of an exponential one.
  MANTISSA_ARG(std::optional<double>, momentum) = 0.1;
  MANTISSA_ARG(bool, affine) = true;
  MANTISSA_ARG(bool, track_running_stats) = true;
};
using BatchNorm1dOptions = BatchNormOptions;
using BatchNorm2dOptions = BatchNormOptions;

class BatchNormBase : public Module {
 public:
  void reset_running_stats();
  void reset_parameters();
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  // Conv+BatchNorm fusion for QAT (quant::fuse_conv_bn): the nn::Conv2d this layer is fused
  // into runs normalize() inside its own forward (on the conv output it has rescaled), so while
  // folded this layer's forward(x) checks x and returns it unchanged: a model whose forward()
  // still calls (*bn)((*conv)(x)) then normalizes once. The layer stays registered where it is
  // (state_dict keys unchanged) and its weight, bias and running statistics keep training and
  // updating through the conv; train()/eval() on it still pick batch vs running statistics.
  void set_folded_into_conv(bool on) { folded_into_conv_ = on; }
  bool folded_into_conv() const { return folded_into_conv_; }
  // The BatchNorm computation (batch statistics and running-stat update in training, running
  // statistics in eval), regardless of the folded flag: what forward() runs when not folded.
  Tensor normalize(const Tensor& input);

  BatchNormOptions options;
  Tensor weight, bias;                                   // [C], undefined unless affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined unless track_running_stats

 protected:
  explicit BatchNormBase(const BatchNormOptions& options);
  // Throws unless the input has the dims this variant takes.
  virtual void check_input_dim(const Tensor& input) const = 0;

 private:
  void check_input(const Tensor& input) const;
  bool folded_into_conv_ = false;
};

// Input [N, C] or [N, C, L].
class BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(const BatchNormOptions& options) : BatchNormBase(options) {}

 protected:
  void check_input_dim(const Tensor& input) const override;
};

// Input [N, C, H, W].
class BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(const BatchNormOptions& options) : BatchNormBase(options) {}

 protected:
  void check_input_dim(const Tensor& input) const override;
};

struct LayerNormOptions {
  LayerNormOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}  // NOLINT
  MANTISSA_ARG(Shape, normalized_shape);
  MANTISSA_ARG(double, eps) = 1e-5;
  MANTISSA_ARG(bool, elementwise_affine) = true;
};

// Normalizes over the trailing normalized_shape dims of the input.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  void reset_parameters();
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  LayerNormOptions options;
  Tensor weight, bias;  // normalized_shape, undefined unless elementwise_affine
};

}  // namespace mantissa::nn
