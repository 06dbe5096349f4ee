// Scalar formulas behind the elementwise kernels (forward and backward), written once for every
// compute type (float for F32/F16/BF16, double for F64, the integer types) so a CUDA kernel can
// reuse them. The numerics choices (stable sigmoid, erfc-form GELU, NaN propagation) live here.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/macros.h"

namespace mantissa::kernels::math {

// Signed integer arithmetic wraps (two's complement, as PyTorch) instead of overflowing into
// undefined behaviour: the operation is done on the unsigned type and converted back.
template <typename T>
MANTISSA_INLINE T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
template <typename T>
MANTISSA_INLINE T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}
template <typename T>
MANTISSA_INLINE T wrap_mul(T a, T b) {
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
MANTISSA_INLINE T wrap_neg(T a) {
  return wrap_sub(T(0), a);
}

// Floating: NaN in either operand gives NaN (torch.maximum / torch.minimum / clamp).
template <typename T>
MANTISSA_INLINE T maximum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a > b ? a : b;
}
template <typename T>
MANTISSA_INLINE T minimum(T a, T b) {
  if constexpr (std::is_floating_point_v<T>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a < b ? a : b;
}

// Integer power by squaring, wrapping like the other integer ops. A negative exponent gives
// what PyTorch's integer pow gives: 1 for base 1, +-1 for base -1, 0 otherwise.
template <typename T, typename E>
MANTISSA_INLINE T int_pow(T base, E exp) {
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
MANTISSA_INLINE C relu(C x) {
  // "x < 0 ? 0 : x" keeps NaN (NaN < 0 is false), as torch.relu does.
  return x < C(0) ? C(0) : x;
}

// Never evaluates exp of a large positive argument, so neither branch overflows.
template <typename C>
MANTISSA_INLINE C sigmoid(C x) {
  if (x >= C(0)) return C(1) / (C(1) + std::exp(-x));
  const C e = std::exp(x);
  return e / (C(1) + e);
}

template <typename C>
MANTISSA_INLINE C silu(C x) {
  return x * sigmoid(x);
}

// x * Phi(x) with Phi = erfc(-x / sqrt2) / 2: erfc keeps full relative precision in the left
// tail, where 1 + erf(x / sqrt2) cancels.
template <typename C>
MANTISSA_INLINE C gelu(C x) {
  constexpr C kInvSqrt2 = C(0.70710678118654752440);
  return C(0.5) * x * std::erfc(-x * kInvSqrt2);
}

template <typename C>
MANTISSA_INLINE C gelu_tanh(C x) {
  constexpr C kAlpha = C(0.79788456080286535588);  // sqrt(2 / pi)
  constexpr C kBeta = C(0.044715);
  const C inner = kAlpha * (x + kBeta * x * x * x);
  return C(0.5) * x * (C(1) + std::tanh(inner));
}

// d gelu / dx = Phi(x) + x * phi(x).
template <typename C>
MANTISSA_INLINE C gelu_grad(C x) {
  constexpr C kInvSqrt2 = C(0.70710678118654752440);
  constexpr C kInvSqrt2Pi = C(0.39894228040143267794);
  const C cdf = C(0.5) * std::erfc(-x * kInvSqrt2);
  const C pdf = kInvSqrt2Pi * std::exp(C(-0.5) * x * x);
  return cdf + x * pdf;
}

template <typename C>
MANTISSA_INLINE C gelu_tanh_grad(C x) {
  constexpr C kAlpha = C(0.79788456080286535588);
  constexpr C kBeta = C(0.044715);
  const C x2 = x * x;
  const C t = std::tanh(kAlpha * (x + kBeta * x2 * x));
  return C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * kAlpha * (C(1) + C(3) * kBeta * x2);
}

// d silu / dx = s * (1 + x * (1 - s)) with s = sigmoid(x).
template <typename C>
MANTISSA_INLINE C silu_grad(C x) {
  const C s = sigmoid(x);
  return s * (C(1) + x * (C(1) - s));
}

template <typename C>
MANTISSA_INLINE C sign(C x) {
  return C((C(0) < x) - (x < C(0)));
}

}  // namespace mantissa::kernels::math
