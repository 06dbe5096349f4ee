// Loss modules: CrossEntropyLoss (logits + class indices, ignore_index, label smoothing),
// NLLLoss (log-probabilities + class indices) and MSELoss, each forward(input, target).
#pragma once

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

struct CrossEntropyLossOptions {
  MANTISSA_ARG(Reduction, reduction) = Reduction::Mean;
  MANTISSA_ARG(int64_t, ignore_index) = -100;
  MANTISSA_ARG(double, label_smoothing) = 0.0;
};

struct NLLLossOptions {
  MANTISSA_ARG(Reduction, reduction) = Reduction::Mean;
  MANTISSA_ARG(int64_t, ignore_index) = -100;
};

struct MSELossOptions {
  MSELossOptions(Reduction reduction = Reduction::Mean) : reduction_(reduction) {}  // NOLINT
  MANTISSA_ARG(Reduction, reduction);
};

// Base of the two-argument losses: forward(input, target) and operator()(input, target).
class Loss : public Module {
 public:
  using Module::forward;
  using Module::operator();
  virtual Tensor forward(const Tensor& input, const Tensor& target) = 0;
  Tensor operator()(const Tensor& input, const Tensor& target) { return forward(input, target); }
};

// input [N, C] (or [N, C, d...]) logits; target I64 class indices [N] (or [N, d...]).
class CrossEntropyLoss : public Loss {
 public:
  explicit CrossEntropyLoss(const CrossEntropyLossOptions& options = {});
  Tensor forward(const Tensor& input, const Tensor& target) override;
  CrossEntropyLossOptions options;
};

// input [N, C] (or [N, C, d...]) log-probabilities; target I64 class indices.
class NLLLoss : public Loss {
 public:
  explicit NLLLoss(const NLLLossOptions& opts = {}) : options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target) override;
  NLLLossOptions options;
};

class MSELoss : public Loss {
 public:
  explicit MSELoss(const MSELossOptions& opts = {}) : options(opts) {}
  Tensor forward(const Tensor& input, const Tensor& target) override;
  MSELossOptions options;
};

}  // namespace mantissa::nn
