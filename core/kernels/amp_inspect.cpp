// CPU side of the range statistics (amp_inspect.h): the element range is split across the OpenMP
// threads; each thread walks blocks with branch-free comparisons into 32-bit block counters that
// vectorize, then adds them into 64-bit totals. F16/BF16 blocks are widened to F32 first.
#include "core/kernels/amp_inspect.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/kernels/convert.h"
#include "core/kernels/loops.h"

namespace mantissa::kernels {

void AmpStats::merge(const AmpStats& o) {
  numel += o.numel;
  zero += o.zero;
  under_sub += o.under_sub;
  under_norm += o.under_norm;
  over += o.over;
  nonfinite += o.nonfinite;
  max_abs = std::max(max_abs, o.max_abs);
}

namespace {

constexpr int64_t kBlock = 4096;  // per-block 32-bit counters cannot overflow

// One block of at most kBlock values of type V (float or double). |x| <= max finite is false
// for NaN and Inf, so the non-finite elements fall out of every other count.
template <typename V>
void stats_block(const V* __restrict x, int64_t n, AmpStats& s) {
  constexpr V kSub = static_cast<V>(kF16SmallestSubnormal), kNorm = static_cast<V>(kF16SmallestNormal);
  constexpr V kOver = static_cast<V>(kF16Max);
  constexpr V kFiniteMax = std::is_same_v<V, float> ? FLT_MAX : DBL_MAX;
  uint32_t zero = 0, sub = 0, norm = 0, over = 0, finite = 0;
  V mx = 0;
#pragma omp simd reduction(+ : zero, sub, norm, over, finite) reduction(max : mx)
  for (int64_t i = 0; i < n; ++i) {
    const V a = std::fabs(x[i]);
    const bool fin = a <= kFiniteMax;
    zero += a == V(0);
    sub += (a > V(0)) & (a < kSub);
    norm += (a > V(0)) & (a < kNorm);
    over += fin & (a > kOver);
    finite += fin;
    mx = std::max(mx, fin ? a : V(0));
  }
  s.numel += n;
  s.zero += zero;
  s.under_sub += sub;
  s.under_norm += norm;
  s.over += over;
  s.nonfinite += n - static_cast<int64_t>(finite);
  s.max_abs = std::max(s.max_abs, static_cast<double>(mx));
}

template <typename T>
void stats_range(const T* x, int64_t n, AmpStats& s) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    for (int64_t b = 0; b < n; b += kBlock) stats_block(x + b, std::min(kBlock, n - b), s);
  } else {
    alignas(64) float buf[kBlock];
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t m = std::min(kBlock, n - b);
      if constexpr (std::is_same_v<T, Half>) convert_f16_to_f32(x + b, buf, m);
      else convert_bf16_to_f32(x + b, buf, m);
      stats_block(buf, m, s);
    }
  }
}

AmpStats stats_cpu(const Tensor& x) {
  return visit_dtype<kFloatTypes>(x.dtype(), "amp_inspect", [&]<typename T>() {
    const T* p = static_cast<const T*>(x.data_ptr());
    const int64_t n = x.numel();
    AmpStats total;
    if (n <= kParallelGrain || omp_get_max_threads() == 1 || omp_in_parallel()) {
      stats_range(p, n, total);
      return total;
    }
    const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), (n + kParallelGrain - 1) / kParallelGrain));
#pragma omp parallel num_threads(threads)
    {
      const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
      const int64_t per = (n + nt - 1) / nt;
      const int64_t b = std::min(n, tid * per), e = std::min(n, b + per);
      AmpStats local;
      if (b < e) stats_range(p + b, e - b, local);
#pragma omp critical(mantissa_amp_inspect)
      total.merge(local);  // integer sums and a max: the thread order does not matter
    }
    return total;
  });
}

void check_buffer(const Tensor& buffer, const char* op) {
  MANTISSA_CHECK(buffer.defined() && buffer.dtype() == DType::I64 && buffer.dim() == 2 &&
                     buffer.size(1) == kAmpStatFields && buffer.is_contiguous(),
                 op, ": expected a stats buffer from amp_stats_buffer (I64 [slots, ", kAmpStatFields, "])");
}

}  // namespace

Tensor amp_stats_buffer(const Device& device, int64_t slots) {
  MANTISSA_CHECK(slots >= 0, "amp_stats_buffer: slots must be >= 0, got ", slots);
  Tensor buffer = empty({slots, kAmpStatFields}, TensorOptions(DType::I64).device(device));
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::amp_stats_zero(buffer);
#else
    MANTISSA_ERROR("amp_stats_buffer: ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  } else if (buffer.numel() > 0) {
    std::memset(buffer.data_ptr(), 0, buffer.nbytes());
  }
  return buffer;
}

void amp_stats_accumulate(const Tensor& x, const Tensor& buffer, int64_t slot) {
  constexpr const char* kOp = "amp_inspect";
  check_buffer(buffer, kOp);
  MANTISSA_CHECK(x.defined() && x.is_floating_point(), kOp, ": expected a floating tensor, got ",
                 x.defined() ? dtype_name(x.dtype()) : "an undefined tensor");
  MANTISSA_CHECK(x.is_contiguous(), kOp, ": the tensor (shape ", shape_str(x.sizes()), ", strides ",
                 shape_str(x.strides()), ") is not contiguous");
  MANTISSA_CHECK(x.device() == buffer.device(), kOp, ": the tensor is on ", x.device(), " but the stats buffer is on ",
                 buffer.device());
  MANTISSA_CHECK(slot >= 0 && slot < buffer.size(0), kOp, ": slot ", slot, " is out of range for a buffer of ",
                 buffer.size(0), " slots");
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::amp_stats_accumulate(x, buffer, slot);
#else
    MANTISSA_ERROR(kOp, ": ", x.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  const AmpStats s = stats_cpu(x);
  int64_t* f = buffer.data<int64_t>() + slot * kAmpStatFields;
  f[0] += s.numel;
  f[1] += s.zero;
  f[2] += s.under_sub;
  f[3] += s.under_norm;
  f[4] += s.over;
  f[5] += s.nonfinite;
  const int64_t bits = std::bit_cast<int64_t>(s.max_abs);  // non-negative: the sign bit is clear
  f[6] = std::max(f[6], bits);
}

std::vector<AmpStats> amp_stats_read(const Tensor& buffer) {
  check_buffer(buffer, "amp_stats_read");
  const int64_t slots = buffer.size(0);
  std::vector<int64_t> host(static_cast<size_t>(slots * kAmpStatFields));
  if (buffer.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    if (!host.empty()) cuda::amp_stats_copy_to_host(buffer, host.data());
#else
    MANTISSA_ERROR("amp_stats_read: ", buffer.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  } else if (!host.empty()) {
    std::memcpy(host.data(), buffer.data_ptr(), host.size() * sizeof(int64_t));
  }
  std::vector<AmpStats> out(static_cast<size_t>(slots));
  for (int64_t k = 0; k < slots; ++k) {
    const int64_t* f = host.data() + k * kAmpStatFields;
    out[k] = AmpStats{f[0], f[1], f[2], f[3], f[4], f[5], std::bit_cast<double>(f[6])};
  }
  return out;
}

AmpStats amp_inspect(const Tensor& x) {
  MANTISSA_CHECK(x.defined(), "amp_inspect: the tensor is undefined");
  Tensor buffer = amp_stats_buffer(x.device(), 1);
  amp_stats_accumulate(x, buffer, 0);
  return amp_stats_read(buffer)[0];
}

}  // namespace mantissa::kernels
