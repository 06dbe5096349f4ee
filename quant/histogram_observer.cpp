// HistogramObserver arithmetic, step for step as torch 1.13's Python implementation: every tensor
// op of the original is one F32 (or, where PyTorch says so, F64) operation here, in the same
// order, with Python scalars (doubles) rounded to F32 where a tensor op would round them.
#include "quant/histogram_observer.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/error.h"

// Every product below is rounded to F32 on its own before the next add, as PyTorch's separate
// tensor ops do; x86-64-v3 has FMA and GCC would otherwise fuse a * b + c (a 1-2 ulp change in
// the relaxed max and the searched range, enough to move a scale).
#pragma GCC optimize("fp-contract=off")

namespace mantissa::quant {

namespace {

// torch.histc(x, bins, min=lo, max=hi) on F32 data. The edges are F32 (linspace keeps both ends
// exact); an element's bin is trunc((x - lo) * bins / (hi - lo)) in F32 without the edge search
// of torch.histogram, the last bin takes its right edge, values outside [lo, hi] are dropped.
// lo == hi falls back to the data's own range, and a still-empty range is widened by 1 each way.
std::vector<float> histc(const std::vector<float>& x, int64_t bins, double lo, double hi, float data_min,
                         float data_max) {
  if (lo == hi && !x.empty()) {
    lo = data_min;
    hi = data_max;
  }
  if (lo == hi) {
    lo -= 1;
    hi += 1;
  }
  MANTISSA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "HistogramObserver: histogram range [", lo, ", ",
                 hi, "] is not finite or empty; the observed tensor held Inf or NaN");
  const float left = static_cast<float>(lo), right = static_cast<float>(hi);
  const float nb = static_cast<float>(bins);
  std::vector<float> h(static_cast<size_t>(bins), 0.0f);
  for (float v : x) {
    if (!(v >= left && v <= right)) continue;
    int64_t pos = static_cast<int64_t>((v - left) * nb / (right - left));
    if (pos >= bins) pos = bins - 1;  // the right edge (and nothing else: (v-left) <= (right-left))
    if (pos < 0) pos = 0;
    h[static_cast<size_t>(pos)] += 1.0f;
  }
  return h;
}

// torch.div(a, b, rounding_mode='floor') for F32 (c10::div_floor_floating): floor of the exact
// quotient via fmod, so a value just below a multiple of b is not rounded up into the next bin.
float div_floor(float a, float b) {
  if (b == 0.0f) return a / b;
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) div -= 1.0f;
  if (div == 0.0f) return std::copysign(0.0f, a / b);
  float fl = std::floor(div);
  if (div - fl > 0.5f) fl += 1.0f;
  return fl;
}

float clampf(float v, float lo, float hi) { return std::fmin(std::fmax(v, lo), hi); }

// norm = density * (end^3 - begin^3) / 3: the L2 error of values spread evenly over a source bin
// between begin and end (offsets from a destination bin's center), in F32 as _get_norm.
float l2_norm(float begin, float end, float density) {
  const float n = (end * end * end - begin * begin * begin) / 3.0f;
  return density * n;
}

// Sum of F32 values as torch.sum would give it: accumulate in F64 and round once. (PyTorch's CPU
// sum is a cascade in F32; for these non-negative terms the two agree to within an ulp, which
// only matters if two candidate ranges tie to an ulp.)
float sum_f32(const std::vector<float>& v) {
  double s = 0.0;
  for (float e : v) s += e;
  return static_cast<float>(s);
}

}  // namespace

HistogramObserver::HistogramObserver(QSpec spec, int64_t bins, int64_t upsample_rate)
    : Observer(spec), bins_(bins), upsample_rate_(upsample_rate) {
  MANTISSA_CHECK(!spec.per_channel(), "HistogramObserver: supports per-tensor affine and symmetric specs only, got ",
                 spec.str());
  MANTISSA_CHECK(bins > 0 && upsample_rate > 0, "HistogramObserver: bins and upsample_rate must be positive, got ",
                 bins, " and ", upsample_rate);
  // PyTorch sizes the error search's destination grid by the storage type's bits (256 for int8,
  // uint8 and also for int4 held in int8).
  dst_nbins_ = 256;
  histogram_ = register_buffer("histogram", zeros({bins}));
}

std::string HistogramObserver::extra_repr() const {
  std::ostringstream os;
  os << spec_.str() << ", bins=" << bins_ << ", upsample_rate=" << upsample_rate_;
  return os.str();
}

Tensor HistogramObserver::forward(const Tensor& x) {
  // The base class checks x, finds its range and calls update(); update() also needs the values.
  batch_ = &x;
  struct Clear {
    const Tensor** p;
    ~Clear() { *p = nullptr; }
  } clear{&batch_};
  return Observer::forward(x);
}

void HistogramObserver::update(const Tensor& lo, const Tensor& hi) {
  MANTISSA_ASSERT(batch_ != nullptr, "HistogramObserver::update outside forward");
  Tensor xf = batch_->detach();
  if (xf.dtype() != DType::F32) xf = xf.to(DType::F32);
  xf = xf.cpu().contiguous();
  const std::vector<float> x(xf.data<float>(), xf.data<float>() + xf.numel());
  const float new_min = lo.cpu().item<float>(), new_max = hi.cpu().item<float>();
  const float min_v = min_val_.cpu().item<float>(), max_v = max_val_.cpu().item<float>();
  const auto device = min_val_.device();
  const auto store = [&](const std::vector<float>& h, float mn, float mx) {
    histogram_.set_data(from_vector(h, {bins_}).to(device));
    set_range(full({}, mn, TensorOptions(DType::F32).device(device)),
              full({}, mx, TensorOptions(DType::F32).device(device)));
  };

  const bool uninitialized = std::isinf(min_v) && min_v > 0 && std::isinf(max_v) && max_v < 0;
  if (uninitialized || min_v == max_v) {
    // First batch (or a constant history, which PyTorch restarts from): the histogram spans
    // [int(min), int(max)] -- PyTorch passes the range to histc truncated to integers, so values
    // outside the truncated range are not counted; we keep that behaviour to match its qparams.
    store(histc(x, bins_, std::trunc(new_min), std::trunc(new_max), new_min, new_max), new_min, new_max);
    return;
  }

  float comb_min = std::fmin(new_min, min_v);
  float comb_max = std::fmax(new_max, max_v);
  // _adjust_min_max: grow the range to a whole multiple (downsample_rate) of the old range's
  // upsampled bin width, so the old histogram's bins land on the new grid exactly. Only the max
  // moves, so a one-sided distribution keeps min 0.
  const float hist_bin_width = (max_v - min_v) / static_cast<float>(bins_ * upsample_rate_);
  const float grid = static_cast<float>(bins_) * hist_bin_width;
  const float span = comb_max - comb_min;
  const float ratio = std::ceil(span / grid);
  MANTISSA_CHECK(std::isfinite(ratio) && ratio >= 1.0f && ratio < 1e7f, "HistogramObserver: cannot merge range [",
                 min_v, ", ", max_v, "] into [", comb_min, ", ", comb_max, "] (downsample rate ", ratio, ")");
  const int64_t downsample_rate = static_cast<int64_t>(ratio);
  const float e = static_cast<float>(downsample_rate) * grid - span;
  comb_max = comb_max + e;
  const int64_t start_idx = static_cast<int64_t>(std::nearbyint((min_v - comb_min) / hist_bin_width));

  std::vector<float> combined = histc(x, bins_, std::trunc(comb_min), std::trunc(comb_max), new_min, new_max);
  Tensor old_t = histogram_.cpu().contiguous();
  const float* old = old_t.data<float>();
  if (comb_min == min_v && comb_max == max_v) {
    for (int64_t i = 0; i < bins_; ++i) combined[static_cast<size_t>(i)] += old[i];
    store(combined, comb_min, comb_max);
    return;
  }

  // _combine_histograms: repeat each old bin upsample_rate times at offset start_idx on a grid of
  // bins * downsample_rate cells, take the F64 running sum at every downsample_rate-th cell, and
  // add the differences / upsample_rate. The cumulative sum only changes inside the upsampled
  // block, so it is walked there alone (adding the zeros outside it would change nothing).
  const int64_t cells = bins_ * downsample_rate, block = bins_ * upsample_rate_;
  MANTISSA_CHECK(start_idx >= 0 && start_idx + block <= cells, "HistogramObserver: the old histogram (offset ",
                 start_idx, ", ", block, " cells) does not fit the merged grid of ", cells, " cells");
  double acc = 0.0;
  int64_t next = start_idx;  // first block cell not yet added
  float shifted = 0.0f;      // previous sample, rounded to F32 as PyTorch's F32 shifted buffer
  for (int64_t k = 0; k < bins_; ++k) {
    const int64_t cell = k * downsample_rate + downsample_rate - 1;
    const int64_t stop = std::min(cell + 1, start_idx + block);
    for (; next < stop; ++next) acc += static_cast<double>(old[(next - start_idx) / upsample_rate_]);
    const double interpolated = (acc - static_cast<double>(shifted)) / static_cast<double>(upsample_rate_);
    combined[static_cast<size_t>(k)] = combined[static_cast<size_t>(k)] + static_cast<float>(interpolated);
    shifted = static_cast<float>(acc);
  }
  store(combined, comb_min, comb_max);
}

double HistogramObserver::quantization_error(const std::vector<float>& hist, float min_v, float max_v,
                                             int64_t start_bin, int64_t end_bin) const {
  // Python floats (F64) for the widths, then each tensor op in F32 with those widths rounded.
  const double bin_width = (static_cast<double>(max_v) - static_cast<double>(min_v)) / static_cast<double>(bins_);
  const double dst_bin_width =
      bin_width * static_cast<double>(end_bin - start_bin + 1) / static_cast<double>(dst_nbins_);
  if (dst_bin_width == 0.0) return 0.0;
  const float bw = static_cast<float>(bin_width), dbw = static_cast<float>(dst_bin_width);
  const float half = static_cast<float>(dst_bin_width / 2), neg_half = static_cast<float>(-dst_bin_width / 2);
  const float top = static_cast<float>(dst_nbins_ - 1);
  // Error of a full destination bin per unit density ((h^3 - (-h)^3) / 3 in F32, a 0-d tensor op).
  const float full_bin = (half * half * half - neg_half * neg_half * neg_half) / 3.0f;
  std::vector<float> norm(hist.size());
  for (int64_t i = 0; i < bins_; ++i) {
    const float src_begin = static_cast<float>(i - start_bin) * bw;
    const float src_end = src_begin + bw;
    const float dst_begin = clampf(div_floor(src_begin, dbw), 0.0f, top);
    const float dst_begin_center = (dst_begin + 0.5f) * dbw;
    const float dst_end = clampf(div_floor(src_end, dbw), 0.0f, top);
    const float dst_end_center = dst_end * dbw + half;
    const float density = hist[static_cast<size_t>(i)] / bw;
    float n = 0.0f;
    n = n + l2_norm(src_begin - dst_begin_center, half, density);
    n = n + (dst_end - dst_begin - 1.0f) * (density * full_bin);
    n = n + l2_norm(neg_half, src_end - dst_end_center, density);
    norm[static_cast<size_t>(i)] = n;
  }
  return static_cast<double>(sum_f32(norm));
}

std::pair<Tensor, Tensor> HistogramObserver::search_range() const {
  MANTISSA_CHECK(has_data(), "HistogramObserver: search_range() needs observed data");
  NoGradGuard ng;
  const float min_v = min_val_.cpu().item<float>(), max_v = max_val_.cpu().item<float>();
  Tensor ht = histogram_.cpu().contiguous();
  const std::vector<float> hist(ht.data<float>(), ht.data<float>() + bins_);
  // _non_linear_param_search: walk a lower and an upper quantile (alpha, beta) inwards in steps
  // of 1e-5 of the mass, each step moving whichever side drops more bins, and stop at the first
  // candidate range whose L2 error is larger than the best so far.
  const double total = static_cast<double>(sum_f32(hist));
  std::vector<float> csum(hist.size());
  double run = 0.0;  // PyTorch's CPU cumsum accumulates F32 in F64
  for (size_t i = 0; i < hist.size(); ++i) {
    run += hist[i];
    csum[i] = static_cast<float>(run);
  }
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start_bin = 0, end_bin = bins_ - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize, next_beta = beta - stepsize;
    // cSum[l] < next_alpha * total compares an F32 0-d tensor with a Python float: in F32.
    const float lo_mass = static_cast<float>(next_alpha * total), hi_mass = static_cast<float>(next_beta * total);
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && csum[static_cast<size_t>(l)] < lo_mass) ++l;
    while (r > start_bin && csum[static_cast<size_t>(r)] > hi_mass) --r;
    int64_t next_start = start_bin, next_end = end_bin;
    if ((l - start_bin) > (end_bin - r)) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start_bin && next_end == end_bin) continue;
    const double norm = quantization_error(hist, min_v, max_v, next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start;
    end_bin = next_end;
  }
  const float bin_width = (max_v - min_v) / static_cast<float>(bins_);
  const float new_min = min_v + bin_width * static_cast<float>(start_bin);
  const float new_max = min_v + bin_width * static_cast<float>(end_bin + 1);
  const auto opts = TensorOptions(DType::F32).device(min_val_.device());
  return {full({}, new_min, opts), full({}, new_max, opts)};
}

QParams HistogramObserver::calculate_qparams() const {
  if (!has_data()) return Observer::calculate_qparams();
  auto [lo, hi] = search_range();
  return quant::calculate_qparams(lo, hi, spec_);
}

}  // namespace mantissa::quant
