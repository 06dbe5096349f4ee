// The two transcendental steps of the Box-Muller transform (core/philox.h), written with IEEE
// additions, multiplications, divisions and explicit fma only: no libm call, and no a * b + c
// left for a compiler to contract (the remaining products are exact or feed no addition). So
// glibc, libdevice, GCC with or without FMA and nvcc all produce the same bits, and a seed
// gives the same normals on the CPU and on CUDA. Double precision inside; error < 1 ulp.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/macros.h"

namespace mantissa::philox_math {

// ln(x) for a finite, positive, normal x (the Box-Muller radius takes x in (0, 1]).
// x = 2^e * m with m in (sqrt(1/2), sqrt(2)]; f = m - 1 is exact, and
//   ln(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R)),  s = f / (2 + f),
//   R = 2s^2/3 + 2s^4/5 + ... + 2s^20/21 (|s| < 0.172: truncation below 1e-18 relative),
// so the leading term f is exact and only the small correction carries rounding error.
MANTISSA_INLINE double log_positive(double x) {
  uint64_t bits;
  ::memcpy(&bits, &x, sizeof bits);
  int e = static_cast<int>(bits >> 52) - 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  ::memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e += 1;
  }
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double z = s * s;
  // Taylor coefficients 2 / (2k + 1), k = 10 .. 1, by Horner with fused steps.
  double p = 0.09523809523809523;
  p = ::fma(p, z, 0.10526315789473684);
  p = ::fma(p, z, 0.11764705882352941);
  p = ::fma(p, z, 0.13333333333333333);
  p = ::fma(p, z, 0.15384615384615385);
  p = ::fma(p, z, 0.18181818181818182);
  p = ::fma(p, z, 0.2222222222222222);
  p = ::fma(p, z, 0.2857142857142857);
  p = ::fma(p, z, 0.4);
  p = ::fma(p, z, 0.6666666666666666);
  const double hfsq = 0.5 * f * f;
  const double hfsq_plus_r = ::fma(p, z, hfsq);
  const double ln_m = f - ::fma(-s, hfsq_plus_r, hfsq);
  // e * ln2 in two parts: ln2_hi has 32 significant bits, so e * ln2_hi is exact (|e| < 1100).
  const double k = static_cast<double>(e);
  return ::fma(k, 0.6931471803691238, ::fma(k, 1.9082149292705877e-10, ln_m));
}

// sin(2 pi u) and cos(2 pi u) for u in [0, 1). The reduction is exact: t = 4u, q = nearest
// integer, f = t - q in [-1/2, 1/2] (all multiples of ulp(t)), angle = (pi/2)(q + f). sin and
// cos of (pi/2) f come from their Taylor series in f (coefficients (pi/2)^n / n! rounded to
// double; through degree 19 / 18, truncation below 1e-20), then the quadrant q mod 4 picks
// signs and swaps. More accurate than cos(2 * pi * u), whose argument is already rounded.
MANTISSA_INLINE void sincos_turns(double u, double& sin_out, double& cos_out) {
  const double t = 4.0 * u;
  const double q = ::floor(t + 0.5);
  const double f = t - q;
  const double z = f * f;
  double ps = -4.377065467313742e-14;
  ps = ::fma(ps, z, 6.0669357311061955e-12);
  ps = ::fma(ps, z, -6.688035109811468e-10);
  ps = ::fma(ps, z, 5.692172921967927e-08);
  ps = ::fma(ps, z, -3.598843235212085e-06);
  ps = ::fma(ps, z, 0.00016044118478735983);
  ps = ::fma(ps, z, -0.004681754135318688);
  ps = ::fma(ps, z, 0.07969262624616705);
  ps = ::fma(ps, z, -0.6459640975062463);
  ps = ::fma(ps, z, 1.5707963267948966);
  const double sn = f * ps;
  double pc = -5.294400200734623e-13;
  pc = ::fma(pc, z, 6.565963114979473e-11);
  pc = ::fma(pc, z, -6.386603083791852e-09);
  pc = ::fma(pc, z, 4.710874778818172e-07);
  pc = ::fma(pc, z, -2.5202042373060607e-05);
  pc = ::fma(pc, z, 0.0009192602748394266);
  pc = ::fma(pc, z, -0.02086348076335296);
  pc = ::fma(pc, z, 0.25366950790104803);
  pc = ::fma(pc, z, -1.2337005501361697);
  const double cs = ::fma(pc, z, 1.0);
  switch (static_cast<int>(q) & 3) {
    case 0: sin_out = sn; cos_out = cs; break;
    case 1: sin_out = cs; cos_out = -sn; break;
    case 2: sin_out = -sn; cos_out = -cs; break;
    default: sin_out = -cs; cos_out = sn; break;
  }
}

}  // namespace mantissa::philox_math
