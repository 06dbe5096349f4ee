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

  LinearOptions options;
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], undefined without bias
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
