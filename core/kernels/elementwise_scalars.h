// Host-side conversions of the double scalars the elementwise entry points take (alpha, s,
// clamp bounds) into a kernel's element or compute type. The CPU (binary.cpp, unary.cpp) and
// CUDA (elementwise.cu) kernels both call these, so both devices see the same scalar bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace mantissa::kernels::scalars {

// A double that the caller has checked to be integral, as T with two's complement wrapping
// (int64 -> narrower integer conversion is modular in C++20).
template <typename T>
T as_int(double s) {
  return static_cast<T>(static_cast<int64_t>(s));
}

// Whether an integer tensor can compare against s exactly in int64 (else it compares in double).
inline bool is_int64_exact(double s) { return std::isfinite(s) && s == std::trunc(s) && std::fabs(s) < 9.2e18; }

// Saturating conversion of a clamp bound to an integer type: ceil for the lower bound, floor
// for the upper, so the result is the clamp of the integer values into [lo, hi].
template <typename T>
T int_clamp_bound(double v, bool lower) {
  const double r = lower ? std::ceil(v) : std::floor(v);
  if (r <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
  if (r >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(r);
}

}  // namespace mantissa::kernels::scalars
