// Inner-loop helpers shared by the reduction, softmax and loss kernels (CPU only, not part of
// the public kernel API): accumulate types, widening 16-bit runs to float, and lane sums.
#pragma once

#include <type_traits>

#include "core/dtype.h"
#include "core/kernels/convert.h"

namespace mantissa::kernels::detail {

// F32 for F16/BF16/F32, F64 for F64, int64 for integers and Bool (dtype.def's column).
template <typename T>
using acc_t = typename DTypeTraits<dtype_of<T>>::acc_type;

template <typename T>
inline constexpr bool kIs16 = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// n contiguous values in their compute type: 16-bit values are widened into buf with the
// vectorized converters; other types are returned in place.
template <typename T>
const compute_t<T>* widen(const T* p, int64_t n, compute_t<T>* buf) {
  if constexpr (std::is_same_v<T, Half>) {
    convert_f16_to_f32(p, buf, n);
    return buf;
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    convert_bf16_to_f32(p, buf, n);
    return buf;
  } else {
    (void)n;
    (void)buf;
    return p;
  }
}

// Sum of f(q[i]) for i < n with interleaved lane accumulators (64 for 4-byte Acc, else 32),
// combined as a binary tree: several independent vector registers (8 with AVX2, 4 with
// AVX-512), so the loop vectorizes and is not bound by the latency of one add chain. Lane j
// adds q[j], q[j + L], ... in order whatever the instruction set, so results are identical.
// Always inlined so the AVX-512 clone of lane_sum_f32 compiles this body for 512-bit vectors.
template <typename Acc, typename C, typename F>
[[gnu::always_inline]] inline Acc lane_sum(const C* q, int64_t n, const F& f) {
  constexpr int L = sizeof(Acc) == 4 ? 64 : 32;
  alignas(64) Acc a[L] = {};
  int64_t i = 0;
  for (; i + L <= n; i += L) {
#pragma omp simd
    for (int j = 0; j < L; ++j) a[j] += static_cast<Acc>(f(q[i + j]));
  }
  const int64_t rem = n - i;  // < L
  for (int j = 0; j < L && j < rem; ++j) a[j] += static_cast<Acc>(f(q[i + j]));
  for (int w = L / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) a[j] += a[j + w];
  return a[0];
}

// f(v) = v in the accumulate type: the plain sum, which has an F32 fast path below.
template <typename Acc>
struct Plain {
  template <typename V>
  Acc operator()(V v) const {
    return static_cast<Acc>(v);
  }
};

// lane_sum(q, n, Plain<float>) compiled for AVX-512 when the CPU has it (same result).
float lane_sum_f32(const float* q, int64_t n);

}  // namespace mantissa::kernels::detail
