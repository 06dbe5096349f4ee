// PercentileObserver: per-batch quantiles with torch.quantile's linear rule (F32 rank and lerp,
// so they equal torch's bit for bit), averaged across batches with the moving-average update.
#include "quant/percentile_observer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

// The compiler may not fuse anything on its own here: the one fused multiply-add is written out
// (see quantile_sorted), so the result does not depend on -march or -ffp-contract.
#pragma GCC optimize("fp-contract=off")

namespace mantissa::quant {

namespace {

std::vector<float> sorted_values(const Tensor& x, const char* op) {
  Tensor xf = x.detach();
  if (xf.dtype() != DType::F32) xf = xf.to(DType::F32);
  xf = xf.cpu().contiguous();
  std::vector<float> v(xf.data<float>(), xf.data<float>() + xf.numel());
  for (float e : v)
    MANTISSA_CHECK(!std::isnan(e), op, ": input ", shape_str(x.sizes()), " holds NaN; percentiles need ordered values");
  std::sort(v.begin(), v.end());
  return v;
}

// torch.quantile's 'linear' interpolation on sorted values: q is an F32 tensor, rank = q * (n-1)
// in F32, then lerp(below, above, rank - below_index) with lerp's two-sided form (exact at both
// ends of the weight range). PyTorch's x86 CPU build evaluates the lerp with a fused multiply-add
// (its kernels are compiled for AVX2+FMA and the compiler contracts them), so the product and
// the add round once here too: bit-equal to torch.quantile on the golden data.
float quantile_sorted(const std::vector<float>& v, double q) {
  const float qf = static_cast<float>(q);
  const float rank = qf * static_cast<float>(static_cast<int64_t>(v.size()) - 1);
  const int64_t below = static_cast<int64_t>(rank);
  const int64_t above = static_cast<int64_t>(std::ceil(rank));
  const float w = rank - static_cast<float>(below);
  const float a = v[static_cast<size_t>(below)], b = v[static_cast<size_t>(above)];
  const float d = b - a;
  return std::fabs(w) < 0.5f ? std::fma(w, d, a) : std::fma(-d, 1.0f - w, b);
}

}  // namespace

PercentileObserver::PercentileObserver(QSpec spec, double percentile, double averaging_constant)
    : Observer(spec), percentile_(percentile), averaging_constant_(averaging_constant) {
  MANTISSA_CHECK(!spec.per_channel(), "PercentileObserver: supports per-tensor specs only, got ", spec.str());
  MANTISSA_CHECK(percentile >= 0 && percentile < 50, "PercentileObserver: percentile must be in [0, 50), got ",
                 percentile);
  MANTISSA_CHECK(averaging_constant > 0 && averaging_constant <= 1,
                 "PercentileObserver: averaging_constant must be in (0, 1], got ", averaging_constant);
}

std::string PercentileObserver::extra_repr() const {
  std::ostringstream os;
  os << spec_.str() << ", percentile=" << percentile_ << ", averaging_constant=" << averaging_constant_;
  return os.str();
}

float PercentileObserver::quantile(const Tensor& x, double q) {
  MANTISSA_CHECK(x.defined() && x.is_floating_point() && x.numel() > 0,
                 "PercentileObserver::quantile: expected a non-empty floating tensor");
  MANTISSA_CHECK(q >= 0 && q <= 1, "PercentileObserver::quantile: q must be in [0, 1], got ", q);
  return quantile_sorted(sorted_values(x, "PercentileObserver::quantile"), q);
}

Tensor PercentileObserver::forward(const Tensor& x) {
  batch_ = &x;
  struct Clear {
    const Tensor** p;
    ~Clear() { *p = nullptr; }
  } clear{&batch_};
  return Observer::forward(x);
}

void PercentileObserver::update(const Tensor& lo, const Tensor& hi) {
  MANTISSA_ASSERT(batch_ != nullptr, "PercentileObserver::update outside forward");
  (void)lo;
  (void)hi;  // the batch's min/max; the percentiles come from the values themselves
  const std::vector<float> v = sorted_values(*batch_, "PercentileObserver");
  const double q_lo = percentile_ / 100.0, q_hi = 1.0 - percentile_ / 100.0;
  const auto opts = TensorOptions(DType::F32).device(min_val_.device());
  Tensor p_lo = full({}, quantile_sorted(v, q_lo), opts), p_hi = full({}, quantile_sorted(v, q_hi), opts);
  if (!has_data()) {
    set_range(p_lo, p_hi);
    return;
  }
  const double c = averaging_constant_;
  set_range(add(min_val_, mul(sub(p_lo, min_val_), c)), add(max_val_, mul(sub(p_hi, max_val_), c)));
}

}  // namespace mantissa::quant
