// map_fast(): kernels::map with a faster flat path for contiguous F16 operands. Blocks of
// each input are widened to F32 with vector conversions, the F32 functor runs over the block as
// a plain SIMD loop, and the block is rounded back once, bit-identical to map()'s per-element
// store. Anything else goes to map().
#pragma once

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/kernels/loops.h"

// Marks the per-element lambdas handed to map()/map_fast(): a lambda left out of line (GCC
// stops inlining in big translation units, e.g. once exp_f32 is inlined into it) is a call in
// the loop body, and the loop no longer vectorizes.
#if defined(__CUDACC__)
#define MANTISSA_KERNEL_LAMBDA
#else
#define MANTISSA_KERNEL_LAMBDA __attribute__((always_inline))
#endif

namespace mantissa::kernels {

namespace detail {

// Only F16 takes the blocked path: BF16 widening is a shift and its rounding a few integer ops,
// which map() already vectorizes element by element (measured faster than blocking), while the
// F16 conversions need F16C instructions the compiler does not emit from core/half.h.
template <typename T>
inline constexpr bool kBlocked = std::is_same_v<T, Half>;

// Elements per block: the widened inputs and the result of one block stay in L1/L2.
inline constexpr int64_t kBlock = 2048;

// Block converters, inlined: a call into convert.h per block costs more than the block itself.
// Bit-identical to core/half.h: F16C rounds to nearest even with the mode fixed in the
// instruction (convert.cpp explains why FTZ/DAZ cannot change its results).
inline void widen(const Half* src, float* dst, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
#endif
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

inline void narrow(const float* src, Half* dst, int64_t n) {
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#endif
  for (; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

template <size_t>
constexpr float as_float() {
  return 0.0f;
}

template <typename Out, typename T, size_t N, typename F, size_t... I>
void map_blocked(Out* out, const std::array<const T*, N>& in, int64_t n, const F& f, std::index_sequence<I...>) {
  using R = decltype(f(as_float<I>()...));
  parallel_for(n, kParallelGrain, [&](int64_t begin, int64_t end) {
    alignas(64) float buf[N][kBlock];
    alignas(64) R res[kBlock];
    for (int64_t s = begin; s < end; s += kBlock) {
      const int64_t len = std::min(kBlock, end - s);
      ((widen(in[I] + s, buf[I], len)), ...);
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) res[i] = f(buf[I][i]...);
      if constexpr (std::is_same_v<Out, T> && std::is_same_v<R, float>) {
        narrow(res, out + s, len);
      } else {
        for (int64_t i = 0; i < len; ++i) out[s + i] = store<Out>(res[i]);
      }
    }
  });
}

}  // namespace detail

// Same contract as map<Out, In...>(out, f, in...).
template <typename Out, typename... In, typename F, typename... Ts>
void map_fast(const Tensor& out, const F& f, const Ts&... in) {
  using First = std::tuple_element_t<0, std::tuple<In...>>;
  if constexpr (detail::kBlocked<First> && (std::is_same_v<In, First> && ...)) {
    const int64_t n = out.numel();
    const bool flat = n > 0 && out.is_contiguous() && ((in.is_contiguous() && in.numel() == n) && ...);
    if (flat) {
      std::array<const First*, sizeof...(In)> ptrs{in.template data<First>()...};
      detail::map_blocked<Out, First>(out.data<Out>(), ptrs, n, f, std::index_sequence_for<In...>{});
      return;
    }
  }
  map<Out, In...>(out, f, in...);
}

}  // namespace mantissa::kernels
