// Philox4x32-10 (Salmon et al. 2011) and the pure functions that turn its words into numbers.
// Shared verbatim by the CPU kernels and the CUDA kernels, so a (seed, offset) pair names the
// same stream of words on every device and for every thread count.
#pragma once

#include <cfloat>
#include <cstdint>
#include <string.h>
#include <math.h>

#include "core/macros.h"
#include "core/philox_math.h"

// Stream convention (what every random kernel must follow; the Generator hands out offsets):
//
//   A draw of n elements from generator state (seed, offset) reads counter blocks
//   offset, offset + 1, ..., offset + philox_blocks_for(n, is_double) - 1, then the generator
//   advances its offset by exactly that many blocks. Block b is
//       philox4x32_10(ctr = {lo32(b), hi32(b), 0, 0}, key = {lo32(seed), hi32(seed)}),
//   i.e. four 32-bit words w[0..3].
//
//   32-bit outputs (float uniform, float bernoulli, float normal):
//     element i uses block offset + i / 4 and word i % 4.
//     uniform:   u = (w >> 8) * 2^-24 in [0, 1)
//     bernoulli: u < p
//     normal:    Box-Muller per word pair: words (0, 1) give elements i % 4 == 0 (r cos) and
//                1 (r sin); words (2, 3) give 2 (r cos) and 3 (r sin); F64 math rounded once.
//   64-bit outputs (double uniform, double normal):
//     uniform: element i uses block offset + i / 2, words 2*(i%2) (high) and 2*(i%2)+1 (low),
//              u = (((hi << 32) | lo) >> 11) * 2^-53 in [0, 1).
//     normal:  element i uses block offset + i / 2; words (0, 1) -> u1, words (2, 3) -> u2,
//              i % 2 == 0 is r cos, 1 is r sin; F64 math.
//
// Every output is bit-identical across devices: normals take log and sin/cos from
// core/philox_math.h (IEEE operations and explicit fma only), never from libm or libdevice.

namespace mantissa {

namespace philox_detail {

inline constexpr uint32_t kMul0 = 0xD2511F53u;
inline constexpr uint32_t kMul1 = 0xCD9E8D57u;
inline constexpr uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
inline constexpr uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

MANTISSA_INLINE void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

MANTISSA_INLINE void philox_round(uint32_t x[4], uint32_t k0, uint32_t k1) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo(kMul0, x[0], hi0, lo0);
  mulhilo(kMul1, x[2], hi1, lo1);
  const uint32_t y0 = hi1 ^ x[1] ^ k0;
  const uint32_t y2 = hi0 ^ x[3] ^ k1;
  x[0] = y0;
  x[1] = lo1;
  x[2] = y2;
  x[3] = lo0;
}

// Largest value strictly below a finite x; used to keep [lo, hi) half-open after rounding.
MANTISSA_INLINE float next_below(float x) {
  uint32_t bits;
  ::memcpy(&bits, &x, sizeof bits);
  if (x > 0.0f) {
    bits -= 1u;
  } else if (x < 0.0f) {
    bits += 1u;
  } else {
    bits = 0x80000001u;  // below +-0 lies -denorm_min
  }
  ::memcpy(&x, &bits, sizeof x);
  return x;
}

MANTISSA_INLINE double next_below(double x) {
  uint64_t bits;
  ::memcpy(&bits, &x, sizeof bits);
  if (x > 0.0) {
    bits -= 1u;
  } else if (x < 0.0) {
    bits += 1u;
  } else {
    bits = 0x8000000000000001ull;
  }
  ::memcpy(&x, &bits, sizeof x);
  return x;
}

}  // namespace philox_detail

// The bijection itself: 10 rounds, key bumped by the Weyl constants between rounds.
MANTISSA_INLINE void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  uint32_t k0 = key[0];
  uint32_t k1 = key[1];
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += philox_detail::kWeyl0;
      k1 += philox_detail::kWeyl1;
    }
    philox_detail::philox_round(x, k0, k1);
  }
  out[0] = x[0];
  out[1] = x[1];
  out[2] = x[2];
  out[3] = x[3];
}

// Counter block `block` of the stream keyed by `seed` (see the convention above).
MANTISSA_INLINE void philox_block(uint64_t seed, uint64_t block, uint32_t out[4]) {
  const uint32_t ctr[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

// Counter blocks a draw of n elements consumes: 4 per block for 32-bit outputs, 2 for 64-bit.
// Every distribution uses the same count, so the offset advance depends only on (n, width).
MANTISSA_INLINE uint64_t philox_blocks_for(int64_t n, bool is_double) {
  if (n <= 0) return 0;
  const int64_t per = is_double ? 2 : 4;
  return static_cast<uint64_t>(n / per + (n % per != 0 ? 1 : 0));
}

// [0, 1) on the 2^-24 grid: every value is an exact float, so 1 is unreachable.
MANTISSA_INLINE float uint32_to_uniform_float(uint32_t x) {
  return static_cast<float>(x >> 8) * 0x1p-24f;
}

// (0, 1] on the 2^-24 grid: the Box-Muller radius needs log(u) finite.
MANTISSA_INLINE float uint32_to_positive_uniform_float(uint32_t x) {
  return static_cast<float>((x >> 8) + 1u) * 0x1p-24f;
}

// [0, 1) on the 2^-53 grid from two words, `hi` supplying the top bits.
MANTISSA_INLINE double uint32x2_to_uniform_double(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>(x >> 11) * 0x1p-53;
}

// (0, 1] on the 2^-53 grid.
MANTISSA_INLINE double uint32x2_to_positive_uniform_double(uint32_t hi, uint32_t lo) {
  const uint64_t x = (static_cast<uint64_t>(hi) << 32) | lo;
  return static_cast<double>((x >> 11) + 1u) * 0x1p-53;
}

// Math calls are ::-qualified because namespace mantissa also holds tensor ops named log, sqrt,
// ... that would hide the scalar functions.

// Affine steps use explicit fma: a compiler may or may not contract a * b + c on its own, and
// CPU and CUDA builds would then round differently for the same (seed, offset).

// lo + (hi - lo) * u, kept inside [lo, hi). The affine step runs in F64 so hi - lo cannot
// overflow. Rounding to float can still land on hi when the float grid near hi is coarser than
// the step; such values become the float just below hi. lo == hi yields lo.
MANTISSA_INLINE float uniform_in_range(float u, float lo, float hi) {
  const double d = ::fma(static_cast<double>(hi) - static_cast<double>(lo), static_cast<double>(u),
                       static_cast<double>(lo));
  const float v = static_cast<float>(d);
  return (v >= hi && hi > lo) ? philox_detail::next_below(hi) : v;
}

// Same for F64. hi - lo overflows only for ranges wider than DBL_MAX; then halves are summed.
MANTISSA_INLINE double uniform_in_range(double u, double lo, double hi) {
  const double range = hi - lo;
  double v;
  if (range <= DBL_MAX) {
    v = ::fma(range, u, lo);
  } else {
    const double half = hi * 0.5 - lo * 0.5;
    v = ::fma(half, u, ::fma(half, u, lo));
  }
  return (v >= hi && hi > lo) ? philox_detail::next_below(hi) : v;
}

// mean + std * z for a standard normal z.
MANTISSA_INLINE float normal_affine(float z, float mean, float std) { return ::fmaf(std, z, mean); }
MANTISSA_INLINE double normal_affine(double z, double mean, double std) { return ::fma(std, z, mean); }

MANTISSA_INLINE bool uint32_to_bernoulli(uint32_t x, float p) {
  return uint32_to_uniform_float(x) < p;
}

// Box-Muller on one word pair, computed in F64 and rounded once to float. The radius is bounded
// by sqrt(-2 ln 2^-24) ~ 5.77, so the output is always finite; a pair's radius exceeds that
// with probability 2^-24, so the tail is cut.
MANTISSA_INLINE void box_muller_float(uint32_t w0, uint32_t w1, float& z0, float& z1) {
  const double u1 = uint32_to_positive_uniform_float(w0);
  const double u2 = uint32_to_uniform_float(w1);
  const double r = ::sqrt(-2.0 * philox_math::log_positive(u1));
  double s, c;
  philox_math::sincos_turns(u2, s, c);
  z0 = static_cast<float>(r * c);
  z1 = static_cast<float>(r * s);
}

// Box-Muller in F64 on a whole block: two 53-bit uniforms, radius bounded by ~8.57.
MANTISSA_INLINE void box_muller_double(const uint32_t w[4], double& z0, double& z1) {
  const double u1 = uint32x2_to_positive_uniform_double(w[0], w[1]);
  const double u2 = uint32x2_to_uniform_double(w[2], w[3]);
  const double r = ::sqrt(-2.0 * philox_math::log_positive(u1));
  double s, c;
  philox_math::sincos_turns(u2, s, c);
  z0 = r * c;
  z1 = r * s;
}

}  // namespace mantissa
