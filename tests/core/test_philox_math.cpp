// Tests for core/philox_math.h, the libm-free log and sin/cos behind the Box-Muller normals:
// accuracy against long-double references, exact quadrant points, and that the F32 and F64
// transforms are the libm formulas up to rounding. This file is compiled without FMA and the
// library with it, so the equality tests also show that no result depends on contraction.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <random>

#include "core/philox.h"
#include "core/philox_math.h"

namespace mantissa {
namespace {

int64_t ulp_distance(double a, double b) {
  int64_t x, y;
  std::memcpy(&x, &a, sizeof x);
  std::memcpy(&y, &b, sizeof y);
  if (x < 0) x = INT64_MIN - x;
  if (y < 0) y = INT64_MIN - y;
  return x > y ? x - y : y - x;
}

TEST(PhiloxMath, LogWithinOneUlpOnBothUniformGrids) {
  std::mt19937_64 rng(7);
  int64_t worst = 0;
  for (int i = 0; i < 400000; ++i) {
    const uint64_t b = rng();
    // (0, 1] on the 2^-53 grid (double normals) and on the 2^-24 grid (float normals).
    const double u = (i % 2) ? static_cast<double>((b >> 11) + 1) * 0x1p-53 : static_cast<double>((b >> 40) + 1) * 0x1p-24;
    const double ref = static_cast<double>(std::log(static_cast<long double>(u)));
    worst = std::max(worst, ulp_distance(philox_math::log_positive(u), ref));
  }
  EXPECT_LE(worst, 1);
}

TEST(PhiloxMath, LogEdgesAndWholeExponentRange) {
  EXPECT_EQ(philox_math::log_positive(1.0), 0.0);
  EXPECT_EQ(philox_math::log_positive(0.5), std::log(0.5));
  EXPECT_LE(ulp_distance(philox_math::log_positive(0x1p-53), std::log(0x1p-53)), 1);
  EXPECT_LE(ulp_distance(philox_math::log_positive(0x1p-24), std::log(0x1p-24)), 1);
  // Beyond the Box-Muller domain too: every binade, both sides of the sqrt(2) split.
  for (int e = -1020; e <= 1020; e += 7) {
    for (double m : {1.0, 1.25, 1.4142135623730950, 1.4142135623730952, 1.75, 1.9999999999999998}) {
      const double x = std::ldexp(m, e);
      const double ref = static_cast<double>(std::log(static_cast<long double>(x)));
      EXPECT_LE(ulp_distance(philox_math::log_positive(x), ref), 1) << x;
    }
  }
}

TEST(PhiloxMath, SinCosOfTurnsAccurateAndExactAtQuadrants) {
  std::mt19937_64 rng(11);
  const long double two_pi = 2.0L * std::numbers::pi_v<long double>;
  double worst = 0.0;
  for (int i = 0; i < 400000; ++i) {
    const uint64_t b = rng();
    const double u = (i % 2) ? static_cast<double>(b >> 11) * 0x1p-53 : static_cast<double>(b >> 40) * 0x1p-24;
    double s, c;
    philox_math::sincos_turns(u, s, c);
    const long double a = two_pi * static_cast<long double>(u);
    worst = std::max({worst, std::fabs(s - static_cast<double>(std::sin(a))),
                      std::fabs(c - static_cast<double>(std::cos(a)))});
  }
  EXPECT_LE(worst, 0x1p-53);  // one ulp of 1: the reduction itself is exact
  const double quarter[4][2] = {{0.0, 1.0}, {1.0, 0.0}, {0.0, -1.0}, {-1.0, 0.0}};
  for (int q = 0; q < 4; ++q) {
    double s, c;
    philox_math::sincos_turns(0.25 * q, s, c);
    EXPECT_EQ(s, quarter[q][0]) << q;
    EXPECT_EQ(c, quarter[q][1]) << q;
  }
  double s, c;
  philox_math::sincos_turns(0.125, s, c);
  EXPECT_LE(ulp_distance(s, std::sqrt(0.5)), 1);
  EXPECT_LE(ulp_distance(c, std::sqrt(0.5)), 1);
}

TEST(PhiloxMath, BoxMullerIsTheLibmFormulaUpToRounding) {
  std::mt19937_64 rng(13);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t a = rng(), b = rng();
    const uint32_t w[4] = {static_cast<uint32_t>(a), static_cast<uint32_t>(a >> 32), static_cast<uint32_t>(b),
                           static_cast<uint32_t>(b >> 32)};
    float z0, z1;
    box_muller_float(w[0], w[1], z0, z1);
    const long double u1 = static_cast<long double>(uint32_to_positive_uniform_float(w[0]));
    const long double t = 2.0L * std::numbers::pi_v<long double> * uint32_to_uniform_float(w[1]);
    const long double r = std::sqrt(-2.0L * std::log(u1));
    // Computed in F64 and rounded once: within one float ulp of the exact value.
    ASSERT_LE(std::fabs(z0 - static_cast<double>(r * std::cos(t))), std::ldexp(1.0, std::ilogb(std::fabs(z0) + 1e-30) - 23) + 1e-12) << i;
    ASSERT_LE(std::fabs(z1 - static_cast<double>(r * std::sin(t))), std::ldexp(1.0, std::ilogb(std::fabs(z1) + 1e-30) - 23) + 1e-12) << i;

    double d0, d1;
    box_muller_double(w, d0, d1);
    const long double v1 = static_cast<long double>(uint32x2_to_positive_uniform_double(w[0], w[1]));
    const long double v2 = 2.0L * std::numbers::pi_v<long double> * uint32x2_to_uniform_double(w[2], w[3]);
    const long double rd = std::sqrt(-2.0L * std::log(v1));
    ASSERT_NEAR(d0, static_cast<double>(rd * std::cos(v2)), 8e-15) << i;
    ASSERT_NEAR(d1, static_cast<double>(rd * std::sin(v2)), 8e-15) << i;
  }
}

}  // namespace
}  // namespace mantissa
