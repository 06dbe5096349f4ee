// PercentileObserver (not in PyTorch): the range is the p-th and (100 - p)-th percentiles of each
// batch, averaged over batches like MovingAverageMinMaxObserver, so rare outliers do not widen
// the quantization grid the way a min/max does.
#pragma once

#include <string>

#include "quant/observer.h"

namespace mantissa::quant {

// Per tensor. For each batch (all elements, flattened, in F32):
//   lo = quantile(x, p / 100), hi = quantile(x, 1 - p / 100)
// with torch.quantile's default 'linear' rule: sort, rank = q * (n - 1) in F32, and lerp between
// the values at floor(rank) and ceil(rank) with weight rank - floor(rank) (torch.lerp's form).
// The first batch sets the range; later ones move it by r += c * (batch - r), c =
// averaging_constant (1 = keep only the latest batch). The default p = 0.01 keeps 99.98% of the
// values inside the range (0.01% clipped at each end); p = 0 and c = 1 is a per-batch min/max.
class PercentileObserver : public Observer {
 public:
  explicit PercentileObserver(QSpec spec = {}, double percentile = 0.01, double averaging_constant = 0.01);
  std::string name() const override { return "PercentileObserver"; }
  std::string extra_repr() const override;
  Tensor forward(const Tensor& x) override;

  double percentile() const { return percentile_; }
  // torch.quantile(x.flatten(), q) (linear interpolation) of a floating tensor, as an F32 value.
  static float quantile(const Tensor& x, double q);

 protected:
  void update(const Tensor& lo, const Tensor& hi) override;

 private:
  double percentile_, averaging_constant_;
  const Tensor* batch_ = nullptr;  // the tensor forward() is observing, for update()
};

}  // namespace mantissa::quant
