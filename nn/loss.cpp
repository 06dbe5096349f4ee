// Loss modules: option checks, then the loss ops (which check shapes, dtypes and class ranges).
#include "nn/loss.h"

namespace mantissa::nn {

CrossEntropyLoss::CrossEntropyLoss(const CrossEntropyLossOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.label_smoothing() >= 0.0 && options.label_smoothing() <= 1.0,
                 "CrossEntropyLoss: label_smoothing must be in [0, 1], got ", options.label_smoothing());
}

Tensor CrossEntropyLoss::forward(const Tensor& input, const Tensor& target) {
  return cross_entropy(input, target, options.reduction(), options.ignore_index(), options.label_smoothing());
}

Tensor NLLLoss::forward(const Tensor& input, const Tensor& target) {
  return nll_loss(input, target, options.reduction(), options.ignore_index());
}

Tensor MSELoss::forward(const Tensor& input, const Tensor& target) {
  return mse_loss(input, target, options.reduction());
}

}  // namespace mantissa::nn
