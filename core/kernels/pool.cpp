// CPU pooling kernels (see pool.h; CUDA tensors go to pool.cu). Each plane (one image, one
// channel) is independent, so planes are split across threads; backward passes scatter into a
// per-plane F32 (F64) buffer and round once, so overlapping windows do not round a 16-bit
// gradient at every addition.
#include "core/kernels/pool.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "core/kernels/copy.h"
#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/loops.h"

namespace mantissa::kernels {

namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()));
  copy(c, t);
  return c;
}

int64_t plane_grain(int64_t work_per_plane) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, work_per_plane));
}

struct Window {
  int64_t hs, he, ws, we;
  int64_t divisor;
};

// The averaging window of output (oh, ow), PyTorch's avg_pool2d rules: the divisor counts the
// padding (up to the padded edge) unless count_include_pad is off.
Window avg_window(int64_t oh, int64_t ow, int64_t h, int64_t w, const Pool2dParams& p) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = std::min(hs + p.kernel_h, h + p.pad_h), we = std::min(ws + p.kernel_w, w + p.pad_w);
  const int64_t padded = (he - hs) * (we - ws);
  hs = std::max<int64_t>(hs, 0);
  ws = std::max<int64_t>(ws, 0);
  he = std::min(he, h);
  we = std::min(we, w);
  return {hs, he, ws, we, p.count_include_pad ? padded : (he - hs) * (we - ws)};
}

Window adaptive_window(int64_t oh, int64_t ow, int64_t h, int64_t w, int64_t ho, int64_t wo) {
  const int64_t hs = oh * h / ho, he = ((oh + 1) * h + ho - 1) / ho;
  const int64_t ws = ow * w / wo, we = ((ow + 1) * w + wo - 1) / wo;
  return {hs, he, ws, we, (he - hs) * (we - ws)};
}

// out[plane, oh, ow] = mean of x over window(oh, ow), for any window rule.
template <typename WindowFn>
void average_forward(const Tensor& out, const Tensor& x_in, const WindowFn& window) {
  if (out.numel() == 0) return;
  const Tensor x = dense(x_in);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = out.size(2), wo = out.size(3);
  visit_dtype<kFloatTypes>(x.dtype(), "avg_pool2d", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(planes, plane_grain(h * w), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* src = xp + pl * h * w;
        T* dst = op + pl * ho * wo;
        for (int64_t oh = 0; oh < ho; ++oh) {
          for (int64_t ow = 0; ow < wo; ++ow) {
            const Window win = window(oh, ow);
            if (win.hs >= win.he || win.ws >= win.we) {
              dst[oh * wo + ow] = store<T>(Acc(0));
              continue;
            }
            Acc s = 0;
            for (int64_t ih = win.hs; ih < win.he; ++ih)
              for (int64_t iw = win.ws; iw < win.we; ++iw) s += static_cast<Acc>(load(src[ih * w + iw]));
            dst[oh * wo + ow] = store<T>(s / static_cast<Acc>(win.divisor));
          }
        }
      }
    });
  });
}

// grad_x[plane, window(oh, ow)] += grad_out[plane, oh, ow] / divisor.
template <typename WindowFn>
void average_backward(const Tensor& grad_x, const Tensor& grad_out_in, const WindowFn& window) {
  if (grad_x.numel() == 0) return;
  const Tensor grad_out = dense(grad_out_in);
  const int64_t planes = grad_x.size(0) * grad_x.size(1), h = grad_x.size(2), w = grad_x.size(3);
  const int64_t ho = grad_out.size(2), wo = grad_out.size(3);
  visit_dtype<kFloatTypes>(grad_x.dtype(), "avg_pool2d backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* gp = grad_out.data<T>();
    T* xp = grad_x.data<T>();
    parallel_for(planes, plane_grain(h * w), [&](int64_t b, int64_t e) {
      std::vector<Acc> buf(static_cast<size_t>(h * w));
      for (int64_t pl = b; pl < e; ++pl) {
        std::fill(buf.begin(), buf.end(), Acc(0));
        const T* g = gp + pl * ho * wo;
        for (int64_t oh = 0; oh < ho; ++oh) {
          for (int64_t ow = 0; ow < wo; ++ow) {
            const Window win = window(oh, ow);
            if (win.hs >= win.he || win.ws >= win.we) continue;
            const Acc v = static_cast<Acc>(load(g[oh * wo + ow])) / static_cast<Acc>(win.divisor);
            for (int64_t ih = win.hs; ih < win.he; ++ih)
              for (int64_t iw = win.ws; iw < win.we; ++iw) buf[ih * w + iw] += v;
          }
        }
        T* dst = xp + pl * h * w;
        for (int64_t i = 0; i < h * w; ++i) dst[i] = store<T>(buf[i]);
      }
    });
  });
}

// One plane of the 2x2/stride-2 max pool with every window inside the input. Selects instead of
// branches (which element wins is data-dependent, so a branch mispredicts about half the time),
// one output row at a time with the two input rows as restrict pointers, so the compiler
// vectorizes across windows. Same order and rule as the general loop: row-major, a later element
// wins when greater or NaN. 16-bit inputs are compared widened to F32 (exact) but the winner's
// bits are copied, not rounded back: the widen/round pair kept the BF16 loop from vectorizing
// (it ran 2.3x slower than F32 on airbench's 1024x64x31x31 activations).
template <typename T>
struct PoolBits {
  using Raw = T;
  static T key(T v) { return v; }  // F32, F64
};
template <>
struct PoolBits<BFloat16> {
  using Raw = uint16_t;
  static float key(uint16_t b) { return mantissa::detail::bit_cast<float>(static_cast<uint32_t>(b) << 16); }
};
template <>
struct PoolBits<Half> {
  using Raw = uint16_t;
  static float key(uint16_t b) { return static_cast<float>(mantissa::detail::bit_cast<Half>(b)); }
};

template <typename T>
void max_pool_2x2_plane(const T* src_t, T* dst_t, int64_t* __restrict idx, int64_t w, int64_t ho, int64_t wo) {
  using Bits = PoolBits<T>;
  using Raw = typename Bits::Raw;
  using K = compute_t<T>;
  const Raw* src = reinterpret_cast<const Raw*>(src_t);
  Raw* dst = reinterpret_cast<Raw*>(dst_t);
  for (int64_t oh = 0; oh < ho; ++oh) {
    const Raw* __restrict r0 = src + 2 * oh * w;
    const Raw* __restrict r1 = r0 + w;
    Raw* __restrict d = dst + oh * wo;
    int64_t* __restrict ix = idx + oh * wo;
    const int64_t base = 2 * oh * w;
    for (int64_t ow = 0; ow < wo; ++ow) {
      Raw best = r0[2 * ow];
      K best_k = static_cast<K>(Bits::key(best));
      int64_t best_at = base + 2 * ow;
      const Raw cand[3] = {r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
      const int64_t at[3] = {base + 2 * ow + 1, base + w + 2 * ow, base + w + 2 * ow + 1};
      for (int k = 0; k < 3; ++k) {
        const K v = static_cast<K>(Bits::key(cand[k]));
        const bool take = (v > best_k) | (v != v);
        best_k = take ? v : best_k;
        best = take ? cand[k] : best;
        best_at = take ? at[k] : best_at;
      }
      d[ow] = best;
      ix[ow] = best_at;
    }
  }
}

#if defined(__AVX2__)
// The same plane with AVX2 gathers, 8 windows per step in raster order over the whole plane
// (airbench's rows are 15, 7 and 3 windows wide: too short to vectorize row by row). `tab`
// holds each window's top-left offset, the same for every plane. F32: 64-bit gathers, each
// bringing a window row's two neighbours at once. BF16: two 32-bit gathers at 16-bit
// granularity, each bringing a window row's two neighbours in one word (both inside the row: every window is inside the input). Same rule as
// the scalar loop: a later corner wins when greater (ordered compare) or NaN. Winners are
// selected as bits, so BF16 values are copied, never rounded.
template <typename T>
void max_pool_2x2_plane_avx2(const T* src_t, T* dst_t, int64_t* idx, int64_t w, const std::vector<int32_t>& tab) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, BFloat16>);
  const int64_t n = static_cast<int64_t>(tab.size());
  const __m256i off_w = _mm256_set1_epi32(static_cast<int32_t>(w));
  const __m256i one = _mm256_set1_epi32(1);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256i t0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tab.data() + j));
    const __m256i t1 = _mm256_add_epi32(t0, off_w);
    __m256 c[4];
    if constexpr (std::is_same_v<T, float>) {
      // 64-bit gathers bring each window row's two neighbours at once; then split lefts from
      // rights and restore the window order (shuffle works within 128-bit lanes).
      const long long* src = reinterpret_cast<const long long*>(src_t);  // read at 4-byte steps
      auto pairs = [&](__m256i t, int r) {
        const __m256 lo = _mm256_castsi256_ps(_mm256_i32gather_epi64(src, _mm256_castsi256_si128(t), 4));
        const __m256 hi = _mm256_castsi256_ps(_mm256_i32gather_epi64(src, _mm256_extracti128_si256(t, 1), 4));
        c[r] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xd8));
        c[r + 1] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xdd)), 0xd8));
      };
      pairs(t0, 0);
      pairs(t1, 2);
    } else {
      const int* src = reinterpret_cast<const int*>(src_t);  // read at 2-byte steps (scale 2)
      const __m256i p0 = _mm256_i32gather_epi32(src, t0, 2);
      const __m256i p1 = _mm256_i32gather_epi32(src, t1, 2);
      // Little endian: the low half is the left element. BF16 -> F32 is a 16-bit shift.
      c[0] = _mm256_castsi256_ps(_mm256_slli_epi32(p0, 16));
      c[1] = _mm256_castsi256_ps(_mm256_and_si256(p0, _mm256_set1_epi32(static_cast<int32_t>(0xffff0000u))));
      c[2] = _mm256_castsi256_ps(_mm256_slli_epi32(p1, 16));
      c[3] = _mm256_castsi256_ps(_mm256_and_si256(p1, _mm256_set1_epi32(static_cast<int32_t>(0xffff0000u))));
    }
    const __m256i at[4] = {t0, _mm256_add_epi32(t0, one), t1, _mm256_add_epi32(t1, one)};
    __m256 best = c[0];
    __m256i best_at = at[0];
    for (int k = 1; k < 4; ++k) {
      const __m256 take = _mm256_or_ps(_mm256_cmp_ps(c[k], best, _CMP_GT_OQ), _mm256_cmp_ps(c[k], c[k], _CMP_UNORD_Q));
      best = _mm256_blendv_ps(best, c[k], take);
      best_at = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(best_at), _mm256_castsi256_ps(at[k]), take));
    }
    if constexpr (std::is_same_v<T, float>) {
      _mm256_storeu_ps(dst_t + j, best);
    } else {
      // The key's high half is the winner's BF16 bits: pack the 8 words down to 16 bytes.
      const __m256i hi = _mm256_srli_epi32(_mm256_castps_si256(best), 16);
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(hi, hi), 0x08);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst_t + j), _mm256_castsi256_si128(packed));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(best_at)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + j + 4),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(best_at, 1)));
  }
  using Bits = PoolBits<T>;
  using Raw = typename Bits::Raw;
  const Raw* src = reinterpret_cast<const Raw*>(src_t);
  Raw* dst = reinterpret_cast<Raw*>(dst_t);
  for (; j < n; ++j) {  // the last windows of the plane, one by one
    const int64_t at[4] = {tab[j], tab[j] + 1, tab[j] + w, tab[j] + w + 1};
    Raw best = src[at[0]];
    float best_k = Bits::key(best);
    int64_t best_at = at[0];
    for (int k = 1; k < 4; ++k) {
      const float v = Bits::key(src[at[k]]);
      const bool take = (v > best_k) | (v != v);
      best_k = take ? v : best_k;
      best = take ? src[at[k]] : best;
      best_at = take ? at[k] : best_at;
    }
    dst[j] = best;
    idx[j] = best_at;
  }
}
#endif

}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t num = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  // Floor division that rounds toward -inf for a negative numerator (a kernel wider than the input).
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x_in, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(out, "max_pool2d", cuda::max_pool2d_forward(out, indices, x_in, p));
  check_same_device("max_pool2d", out, {&indices, &x_in});
  if (out.numel() == 0) return;
  const Tensor x = dense(x_in);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = out.size(2), wo = out.size(3);
  visit_dtype<kFloatTypes>(x.dtype(), "max_pool2d", [&]<typename T>() {
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    int64_t* ip = indices.data<int64_t>();
    // The common 2x2/stride-2 pool with every window inside the input (no padding, no partial
    // ceil-mode window) takes the branch-free, vectorized path: ~20x faster than the loop below.
    const bool fast2x2 = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                         p.pad_w == 0 && 2 * ho <= h && 2 * wo <= w;
#if defined(__AVX2__)
    // Window offsets for the gather path; 32-bit is plenty (checked), as the gathers need.
    constexpr bool kGather = std::is_same_v<T, float> || std::is_same_v<T, BFloat16>;
    std::vector<int32_t> tab;
    // F32 rows of 8+ windows vectorize row by row faster than gathers (measured 38 vs 60 ms on
    // 1024x64x31x31); BF16 always gathers (the row loop does not vectorize on 16-bit lanes).
    const bool gather = kGather && fast2x2 && h * w < (int64_t{1} << 30) && (!std::is_same_v<T, float> || wo < 8);
    if (gather) {
      tab.resize(static_cast<size_t>(ho * wo));
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) tab[static_cast<size_t>(oh * wo + ow)] = static_cast<int32_t>(2 * oh * w + 2 * ow);
    }
#endif
    parallel_for(planes, plane_grain(ho * wo * p.kernel_h * p.kernel_w), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* src = xp + pl * h * w;
        T* dst = op + pl * ho * wo;
        int64_t* idx = ip + pl * ho * wo;
#if defined(__AVX2__)
        if constexpr (kGather) {
          if (!tab.empty()) {
            max_pool_2x2_plane_avx2(src, dst, idx, w, tab);
            continue;
          }
        }
#endif
        if (fast2x2) {
          max_pool_2x2_plane(src, dst, idx, w, ho, wo);
          continue;
        }
        for (int64_t oh = 0; oh < ho; ++oh) {
          const int64_t hs0 = oh * p.stride_h - p.pad_h;
          const int64_t he = std::min(hs0 + p.kernel_h, h), hs = std::max<int64_t>(hs0, 0);
          for (int64_t ow = 0; ow < wo; ++ow) {
            const int64_t ws0 = ow * p.stride_w - p.pad_w;
            const int64_t we = std::min(ws0 + p.kernel_w, w), ws = std::max<int64_t>(ws0, 0);
            C best = -std::numeric_limits<C>::infinity();
            int64_t best_at = hs * w + ws;
            for (int64_t ih = hs; ih < he; ++ih) {
              for (int64_t iw = ws; iw < we; ++iw) {
                const C v = load(src[ih * w + iw]);
                if (v > best || std::isnan(v)) {
                  best = v;
                  best_at = ih * w + iw;
                }
              }
            }
            // The maximum is one of the inputs, so this store is exact.
            dst[oh * wo + ow] = store<T>(best);
            idx[oh * wo + ow] = best_at;
          }
        }
      }
    });
  });
}

void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out_in, const Tensor& indices) {
  MANTISSA_CUDA_DISPATCH(grad_x, "max_pool2d backward", cuda::max_pool2d_backward(grad_x, grad_out_in, indices));
  check_same_device("max_pool2d backward", grad_x, {&grad_out_in, &indices});
  if (grad_x.numel() == 0) return;
  const Tensor grad_out = dense(grad_out_in);
  const int64_t planes = grad_x.size(0) * grad_x.size(1), hw = grad_x.size(2) * grad_x.size(3);
  const int64_t ohw = grad_out.size(2) * grad_out.size(3);
  visit_dtype<kFloatTypes>(grad_x.dtype(), "max_pool2d backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* gp = grad_out.data<T>();
    const int64_t* ip = indices.data<int64_t>();
    T* xp = grad_x.data<T>();
    parallel_for(planes, plane_grain(hw), [&](int64_t b, int64_t e) {
      std::vector<Acc> buf(static_cast<size_t>(hw));
      for (int64_t pl = b; pl < e; ++pl) {
        std::fill(buf.begin(), buf.end(), Acc(0));
        const T* g = gp + pl * ohw;
        const int64_t* idx = ip + pl * ohw;
        for (int64_t i = 0; i < ohw; ++i) {
          MANTISSA_ASSERT(idx[i] >= 0 && idx[i] < hw, "max_pool2d backward: saved index ", idx[i], " outside [0, ", hw,
                          ")");
          buf[idx[i]] += static_cast<Acc>(load(g[i]));
        }
        T* dst = xp + pl * hw;
        for (int64_t i = 0; i < hw; ++i) dst[i] = store<T>(buf[i]);
      }
    });
  });
}

// The CPU scatter adds each input's gradients in the windows' row-major order already, so the
// parameters only matter to the CUDA gather.
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_x, "max_pool2d backward", cuda::max_pool2d_backward(grad_x, grad_out, indices, p));
  (void)p;
  max_pool2d_backward(grad_x, grad_out, indices);
}

void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(out, "avg_pool2d", cuda::avg_pool2d_forward(out, x, p));
  check_same_device("avg_pool2d", out, {&x});
  const int64_t h = x.size(2), w = x.size(3);
  average_forward(out, x, [&](int64_t oh, int64_t ow) { return avg_window(oh, ow, h, w, p); });
}

void avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_x, "avg_pool2d backward", cuda::avg_pool2d_backward(grad_x, grad_out, p));
  check_same_device("avg_pool2d backward", grad_x, {&grad_out});
  const int64_t h = grad_x.size(2), w = grad_x.size(3);
  average_backward(grad_x, grad_out, [&](int64_t oh, int64_t ow) { return avg_window(oh, ow, h, w, p); });
}

void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  MANTISSA_CUDA_DISPATCH(out, "adaptive_avg_pool2d", cuda::adaptive_avg_pool2d_forward(out, x));
  check_same_device("adaptive_avg_pool2d", out, {&x});
  const int64_t h = x.size(2), w = x.size(3), ho = out.size(2), wo = out.size(3);
  average_forward(out, x, [&](int64_t oh, int64_t ow) { return adaptive_window(oh, ow, h, w, ho, wo); });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out) {
  MANTISSA_CUDA_DISPATCH(grad_x, "adaptive_avg_pool2d backward", cuda::adaptive_avg_pool2d_backward(grad_x, grad_out));
  check_same_device("adaptive_avg_pool2d backward", grad_x, {&grad_out});
  const int64_t h = grad_x.size(2), w = grad_x.size(3), ho = grad_out.size(2), wo = grad_out.size(3);
  average_backward(grad_x, grad_out, [&](int64_t oh, int64_t ow) { return adaptive_window(oh, ow, h, w, ho, wo); });
}

}  // namespace mantissa::kernels
