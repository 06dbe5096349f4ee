// Scalar formulas behind the elementwise kernels (forward and backward), written once for every
// compute type (float for F32/F16/BF16, double for F64, the integer types) so a CUDA kernel can
// reuse them. The numerics choices (stable sigmoid, erfc-form GELU, NaN propagation) live here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/half.h"
#include "core/macros.h"

// Forced inline: these run inside the vectorized elementwise loops, and one call left in a
// loop body (GCC's inliner gives up on big translation units) stops its vectorization.
#if defined(__CUDACC__)
#define MANTISSA_MATH_INLINE __host__ __device__ __forceinline__
#else
#define MANTISSA_MATH_INLINE inline __attribute__((always_inline))
#endif

namespace mantissa::kernels::math {

// Signed integer arithmetic wraps (two's complement, as PyTorch) instead of overflowing into
// undefined behaviour: the operation is done on the unsigned type and converted back.
template <typename T>
MANTISSA_MATH_INLINE T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
template <typename T>
MANTISSA_MATH_INLINE T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}
template <typename T>
MANTISSA_MATH_INLINE T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    // uint8/int8 would promote to int and overflow there; widen to at least unsigned int.
    using W = std::conditional_t<(sizeof(U) < sizeof(unsigned)), unsigned, U>;
    return static_cast<T>(static_cast<U>(static_cast<W>(static_cast<U>(a)) * static_cast<W>(static_cast<U>(b))));
  } else if constexpr (std::is_integral_v<T> && sizeof(T) < sizeof(unsigned)) {
    return static_cast<T>(static_cast<unsigned>(a) * static_cast<unsigned>(b));
  } else {
    return a * b;
  }
}
template <typename T>
MANTISSA_MATH_INLINE T wrap_neg(T a) {
  return wrap_sub(T(0), a);
}

// Floating: NaN in either operand gives NaN (torch.maximum / torch.minimum / clamp).
template <typename T>
MANTISSA_MATH_INLINE T maximum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a > b ? a : b;
}
template <typename T>
MANTISSA_MATH_INLINE T minimum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a < b ? a : b;
}

// Integer power by squaring, wrapping like the other integer ops. A negative exponent gives
// what PyTorch's integer pow gives: 1 for base 1, +-1 for base -1, 0 otherwise.
template <typename T, typename E>
MANTISSA_MATH_INLINE T int_pow(T base, E exp) {
  if constexpr (std::is_signed_v<E>) {
    if (exp < 0) {
      if (base == 1) return 1;
      if (base == -1) return (exp % 2 == 0) ? T(1) : T(-1);
      return 0;
    }
  }
  T result = 1;
  while (exp != 0) {
    if (exp & 1) result = wrap_mul(result, base);
    exp = static_cast<E>(exp >> 1);
    base = wrap_mul(base, base);
  }
  return result;
}

template <typename C>
MANTISSA_MATH_INLINE C relu(C x) {
  // "x < 0 ? 0 : x" keeps NaN (NaN < 0 is false), as torch.relu does.
  return x < C(0) ? C(0) : x;
}

// exp for float written so a `#pragma omp simd` loop vectorizes it (libm's expf is a call).
// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 split in two), e^r by its degree-7 Taylor
// polynomial (truncation 5e-9 relative), and 2^n applied in two halves so results in the
// subnormal range round once and large ones overflow to Inf. Max error 0.92 ulp over a sweep
// of the whole float range (glibc's expf: ~0.5). Every select is integer bit logic: a float
// comparison in the loop would block GCC's if-conversion (-ftrapping-math).
MANTISSA_MATH_INLINE float exp_f32(float x) {
  constexpr int32_t kMag104 = 0x42d00000;  // 104.0f: e^-104 is below half the least subnormal
  constexpr int32_t kMag89 = 0x42b20000;   // 89.0f: e^89 overflows
  constexpr int32_t kNeg104 = static_cast<int32_t>(0xc2d00000u);
  int32_t b = mantissa::detail::bit_cast<int32_t>(x);
  const int32_t mag = b & 0x7fffffff;
  const int32_t not_nan = static_cast<int32_t>(mag <= 0x7f800000);
  const int32_t lo = -(static_cast<int32_t>(b < 0) & static_cast<int32_t>(mag > kMag104) & not_nan);
  const int32_t hi = -(static_cast<int32_t>(b >= 0) & static_cast<int32_t>(mag > kMag89) & not_nan);
  b = (b & ~(lo | hi)) | (kNeg104 & lo) | (kMag89 & hi);
  const float xc = mantissa::detail::bit_cast<float>(b);  // NaN passes through and stays NaN
  // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  int32_t ni = mantissa::detail::bit_cast<int32_t>(t) - 0x4b400000;
  ni = ni < -150 ? -150 : (ni > 128 ? 128 : ni);  // only NaN lanes fall outside
  float r = std::fma(-n, 0.693359375f, xc);
  r = std::fma(-n, -2.12194440e-4f, r);
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float s1 = mantissa::detail::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = mantissa::detail::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  return p * s1 * s2;
}

// e^x in the compute type: the vectorizable exp_f32 for float, libm for double.
template <typename C>
MANTISSA_MATH_INLINE C exp(C x) {
  if constexpr (std::is_same_v<C, float>) {
    return exp_f32(x);
  } else {
    return std::exp(x);
  }
}

// neg_value when x's sign bit is set, else pos_value; bit logic, so loops stay branch-free.
template <typename C>
MANTISSA_MATH_INLINE C select_by_sign(C x, C neg_value, C pos_value) {
  using I = std::conditional_t<sizeof(C) == 4, int32_t, int64_t>;
  const I m = -static_cast<I>(mantissa::detail::bit_cast<I>(x) < 0);
  return mantissa::detail::bit_cast<C>(static_cast<I>((mantissa::detail::bit_cast<I>(neg_value) & m) |
                                                      (mantissa::detail::bit_cast<I>(pos_value) & ~m)));
}

// exp(-|x|) never overflows, and for x < 0 the result is e / (1 + e) rather than 1 - 1/(1 + e),
// which would cancel. Max error 2.7 ulp in F32.
template <typename C>
MANTISSA_MATH_INLINE C sigmoid(C x) {
  const C e = exp(-std::fabs(x));
  const C r = C(1) / (C(1) + e);
  return select_by_sign(x, e, C(1)) * r;
}

template <typename C>
MANTISSA_MATH_INLINE C silu(C x) {
  return x * sigmoid(x);
}

// x * Phi(x) with Phi = erfc(-x / sqrt2) / 2: erfc keeps full relative precision in the left
// tail, where 1 + erf(x / sqrt2) cancels.
template <typename C>
MANTISSA_MATH_INLINE C gelu(C x) {
  constexpr C kInvSqrt2 = C(0.70710678118654752440);
  return C(0.5) * x * std::erfc(-x * kInvSqrt2);
}

template <typename C>
MANTISSA_MATH_INLINE C gelu_tanh(C x) {
  constexpr C kAlpha = C(0.79788456080286535588);  // sqrt(2 / pi)
  constexpr C kBeta = C(0.044715);
  const C inner = kAlpha * (x + kBeta * x * x * x);
  return C(0.5) * x * (C(1) + std::tanh(inner));
}

// d gelu / dx = Phi(x) + x * phi(x).
template <typename C>
MANTISSA_MATH_INLINE C gelu_grad(C x) {
  constexpr C kInvSqrt2 = C(0.70710678118654752440);
  constexpr C kInvSqrt2Pi = C(0.39894228040143267794);
  const C cdf = C(0.5) * std::erfc(-x * kInvSqrt2);
  const C pdf = kInvSqrt2Pi * std::exp(C(-0.5) * x * x);
  return cdf + x * pdf;
}

template <typename C>
MANTISSA_MATH_INLINE C gelu_tanh_grad(C x) {
  constexpr C kAlpha = C(0.79788456080286535588);
  constexpr C kBeta = C(0.044715);
  const C x2 = x * x;
  const C t = std::tanh(kAlpha * (x + kBeta * x2 * x));
  return C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * kAlpha * (C(1) + C(3) * kBeta * x2);
}

// d silu / dx = s * (1 + x * (1 - s)) with s = sigmoid(x).
template <typename C>
MANTISSA_MATH_INLINE C silu_grad(C x) {
  const C s = sigmoid(x);
  return s * (C(1) + x * (C(1) - s));
}

template <typename C>
MANTISSA_MATH_INLINE C sign(C x) {
  return C((C(0) < x) - (x < C(0)));
}

}  // namespace mantissa::kernels::math
