// Exhaustive and boundary tests for Half/BFloat16 (core/half.h) and the bulk conversion paths
// (core/kernels/convert.h). References here are computed another way (ldexp/frexp/nearbyint in
// double), so a shared bit-twiddling mistake cannot hide in both.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "core/error.h"
#include "core/half.h"
#include "core/kernels/convert.h"

namespace mantissa {
namespace {

using kernels::ConvertPath;

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double bits_double(uint64_t u) {
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}

// A 16-bit format described by its fields, for references written without bit tricks.
struct Format {
  const char* name;
  int exp_bits;
  int mant_bits;
  int bias() const { return (1 << (exp_bits - 1)) - 1; }
  int min_exp() const { return 1 - bias(); }     // exponent of the smallest normal
  int max_exp() const { return bias(); }         // exponent of the largest finite binade
  uint16_t inf_bits() const { return uint16_t(((1u << exp_bits) - 1u) << mant_bits); }
  uint16_t max_finite_bits() const { return uint16_t(inf_bits() - 1); }
};
void PrintTo(const Format& fmt, std::ostream* os) { *os << fmt.name; }
constexpr Format kF16{"F16", 5, 10};
constexpr Format kBF16{"BF16", 8, 7};

// Value of a non-NaN pattern, from its fields; Inf as infinity.
double ref_decode(const Format& fmt, uint16_t b) {
  const bool neg = (b >> 15) != 0;
  const int e = (b >> fmt.mant_bits) & ((1 << fmt.exp_bits) - 1);
  const int m = b & ((1 << fmt.mant_bits) - 1);
  double v;
  if (e == (1 << fmt.exp_bits) - 1) {
    v = std::numeric_limits<double>::infinity();
  } else if (e == 0) {
    v = std::ldexp(double(m), fmt.min_exp() - fmt.mant_bits);
  } else {
    v = std::ldexp(double(m + (1 << fmt.mant_bits)), e - fmt.bias() - fmt.mant_bits);
  }
  return neg ? -v : v;
}
bool ref_is_nan(const Format& fmt, uint16_t b) {
  const int e = (b >> fmt.mant_bits) & ((1 << fmt.exp_bits) - 1);
  return e == (1 << fmt.exp_bits) - 1 && (b & ((1 << fmt.mant_bits) - 1)) != 0;
}

// Round |x| (finite, any double) to the format with an unbounded exponent above: scale so the
// format's quantum at x is 1, let nearbyint (ties to even) round, and scale back. A result at or
// above 2^(max_exp+1) means overflow to Inf.
double ref_round_magnitude(const Format& fmt, double x) {
  if (x == 0) return 0;
  int ex;
  std::frexp(x, &ex);  // x = f * 2^ex, f in [0.5, 1)
  const int quantum = std::max(ex - 1, fmt.min_exp()) - fmt.mant_bits;
  return std::ldexp(std::nearbyint(std::ldexp(x, -quantum)), quantum);
}

// Encode a value that is exactly representable (or >= 2^(max_exp+1): Inf) from its fields.
uint16_t ref_encode_magnitude(const Format& fmt, double v) {
  if (v >= std::ldexp(1.0, fmt.max_exp() + 1)) return fmt.inf_bits();
  if (v < std::ldexp(1.0, fmt.min_exp())) {
    return uint16_t(std::ldexp(v, fmt.mant_bits - fmt.min_exp()));  // subnormal count (or 0)
  }
  int ex;
  std::frexp(v, &ex);
  const int e = ex - 1;
  const double frac = std::ldexp(v, -e) - 1.0;  // in [0, 1), exact
  return uint16_t(((e + fmt.bias()) << fmt.mant_bits) | int(std::ldexp(frac, fmt.mant_bits)));
}

// Reference conversion of a non-NaN double (floats are widened exactly).
uint16_t ref_convert(const Format& fmt, double x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isinf(x)) return sign | fmt.inf_bits();
  return sign | ref_encode_magnitude(fmt, ref_round_magnitude(fmt, std::fabs(x)));
}

uint16_t to16(const Format& fmt, float f) {
  return fmt.exp_bits == 5 ? float_to_half_bits(f) : float_to_bf16_bits(f);
}
uint16_t to16(const Format& fmt, double d) {
  return fmt.exp_bits == 5 ? double_to_half_bits(d) : double_to_bf16_bits(d);
}
float from16(const Format& fmt, uint16_t b) {
  return fmt.exp_bits == 5 ? half_bits_to_float(b) : bf16_bits_to_float(b);
}

std::string hex(uint32_t v) {
  std::ostringstream ss;
  ss << "0x" << std::hex << v;
  return ss.str();
}

class FormatTest : public ::testing::TestWithParam<Format> {};
INSTANTIATE_TEST_SUITE_P(Formats, FormatTest, ::testing::Values(kF16, kBF16),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- decoding ------------------------------------------------------------------------------

TEST_P(FormatTest, DecodesEveryPatternLikeTheFieldFormula) {
  const Format fmt = GetParam();
  for (uint32_t b = 0; b < 65536; ++b) {
    const float got = from16(fmt, uint16_t(b));
    if (ref_is_nan(fmt, uint16_t(b))) {
      ASSERT_TRUE(std::isnan(got)) << hex(b);
      ASSERT_EQ(std::signbit(got), (b & 0x8000) != 0) << hex(b);
      // The payload survives in the top mantissa bits, and the NaN comes out quiet for F16
      // (F16C behaviour) and bit-exact for BF16 (a plain widening).
      const uint32_t fb = float_bits(got);
      const int drop = 23 - fmt.mant_bits;
      ASSERT_EQ((fb >> drop) & ((1u << (fmt.mant_bits - 1)) - 1),
                b & ((1u << (fmt.mant_bits - 1)) - 1))
          << hex(b);
      if (fmt.exp_bits == 5) {
        ASSERT_NE(fb & 0x00400000u, 0u) << hex(b);
      } else {
        ASSERT_EQ(fb, b << 16) << hex(b);
      }
      continue;
    }
    const double want = ref_decode(fmt, uint16_t(b));
    ASSERT_EQ(float_bits(got), float_bits(float(want))) << fmt.name << " " << hex(b);
    ASSERT_EQ(double(got), want) << hex(b);  // float(want) was exact
  }
}

TEST_P(FormatTest, RoundTripsEveryNonNanPattern) {
  const Format fmt = GetParam();
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = from16(fmt, uint16_t(b));
    if (std::isnan(f)) {
      const uint16_t back = to16(fmt, f);
      ASSERT_TRUE(ref_is_nan(fmt, back)) << hex(b);
      ASSERT_EQ(back & 0x8000, b & 0x8000) << hex(b);
      // A quiet NaN comes back unchanged.
      if ((b >> (fmt.mant_bits - 1)) & 1) {
        ASSERT_EQ(back, b) << hex(b);
      }
      continue;
    }
    ASSERT_EQ(to16(fmt, f), b) << fmt.name << " " << hex(b);
    ASSERT_EQ(to16(fmt, double(f)), b) << fmt.name << " " << hex(b);
  }
}

// ---- rounding boundaries -------------------------------------------------------------------

// Walks every adjacent pair (lo, hi) of non-negative values, Inf counted as 2^(max_exp+1) above
// the largest finite value, and checks the midpoint (ties to even), a float ulp either side of
// it and the values themselves, with both signs.
TEST_P(FormatTest, RoundsEveryMidpointToNearestEven) {
  const Format fmt = GetParam();
  const float kInf = std::numeric_limits<float>::infinity();
  for (uint32_t lo_bits = 0; lo_bits <= fmt.max_finite_bits(); ++lo_bits) {
    const uint16_t hi_bits = uint16_t(lo_bits + 1);
    const double lo = ref_decode(fmt, uint16_t(lo_bits));
    const double hi = hi_bits == fmt.inf_bits() ? std::ldexp(1.0, fmt.max_exp() + 1)
                                                : ref_decode(fmt, hi_bits);
    const double mid_d = lo + (hi - lo) / 2;  // exact in double
    const float mid = float(mid_d);
    ASSERT_EQ(double(mid), mid_d) << "midpoint not exact in float";
    const uint16_t even = (lo_bits & 1) == 0 ? uint16_t(lo_bits) : hi_bits;
    for (int s = 0; s < 2; ++s) {
      const uint16_t sign = s ? 0x8000 : 0;
      const float m = s ? -mid : mid;
      const float away = s ? -kInf : kInf;
      ASSERT_EQ(to16(fmt, m), sign | even) << fmt.name << " tie above " << hex(lo_bits);
      ASSERT_EQ(to16(fmt, std::nextafter(m, away)), sign | hi_bits) << hex(lo_bits);
      ASSERT_EQ(to16(fmt, std::nextafter(m, 0.0f)), sign | lo_bits) << hex(lo_bits);
      ASSERT_EQ(to16(fmt, s ? -float(lo) : float(lo)), sign | lo_bits) << hex(lo_bits);
      // Directly from double: the tie and values far closer to it than any float can be.
      const double md = s ? -mid_d : mid_d;
      const double tiny = std::ldexp(std::fabs(mid_d), -45);
      ASSERT_EQ(to16(fmt, md), sign | even) << hex(lo_bits);
      ASSERT_EQ(to16(fmt, s ? md - tiny : md + tiny), sign | hi_bits) << hex(lo_bits);
      ASSERT_EQ(to16(fmt, s ? md + tiny : md - tiny), sign | lo_bits) << hex(lo_bits);
    }
  }
}

TEST(HalfRounding, OverflowBoundary) {
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00);
  EXPECT_EQ(float_to_half_bits(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(float_to_half_bits(-65520.0f), 0xfc00);
  EXPECT_EQ(float_to_half_bits(-std::nextafter(65520.0f, 0.0f)), 0xfbff);
  EXPECT_EQ(float_to_half_bits(65536.0f), 0x7c00);
  EXPECT_EQ(float_to_half_bits(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(float_to_half_bits(-std::numeric_limits<float>::max()), 0xfc00);
  EXPECT_EQ(double_to_half_bits(65520.0), 0x7c00);
  EXPECT_EQ(double_to_half_bits(std::nextafter(65520.0, 0.0)), 0x7bff);
  EXPECT_EQ(double_to_half_bits(1e300), 0x7c00);
  EXPECT_EQ(double_to_half_bits(-std::numeric_limits<double>::max()), 0xfc00);
}

TEST(HalfRounding, SubnormalRange) {
  const float min_sub = std::ldexp(1.0f, -24);
  EXPECT_EQ(float_to_half_bits(min_sub), 0x0001);
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -25)), 0x0000);  // tie goes to even (zero)
  EXPECT_EQ(float_to_half_bits(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(float_to_half_bits(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(float_to_half_bits(-std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x8001);
  EXPECT_EQ(float_to_half_bits(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp -> even 2
  EXPECT_EQ(float_to_half_bits(5 * std::ldexp(1.0f, -25)), 0x0002);  // 2.5 ulp -> even 2
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -26)), 0x0000);
  EXPECT_EQ(float_to_half_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_half_bits(-std::numeric_limits<float>::denorm_min()), 0x8000);
  // Largest subnormal, and the carry from it into the smallest normal.
  EXPECT_EQ(float_to_half_bits(1023 * min_sub), 0x03ff);
  EXPECT_EQ(float_to_half_bits(1023.5f * min_sub), 0x0400);
  EXPECT_EQ(float_to_half_bits(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(half_bits_to_float(0x0001), min_sub);
  EXPECT_EQ(half_bits_to_float(0x03ff), 1023 * min_sub);
  EXPECT_EQ(double_to_half_bits(std::ldexp(1.0, -25)), 0x0000);
  EXPECT_EQ(double_to_half_bits(std::nextafter(std::ldexp(1.0, -25), 1.0)), 0x0001);
  EXPECT_EQ(double_to_half_bits(std::numeric_limits<double>::denorm_min()), 0x0000);
  EXPECT_EQ(double_to_half_bits(-1e-300), 0x8000);
}

TEST(BFloat16Rounding, SubnormalAndOverflow) {
  const float min_sub = std::ldexp(1.0f, -133);
  EXPECT_EQ(float_to_bf16_bits(min_sub), 0x0001);
  EXPECT_EQ(float_to_bf16_bits(std::ldexp(1.0f, -134)), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(std::nextafter(std::ldexp(1.0f, -134), 1.0f)), 0x0001);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_bf16_bits(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_EQ(bf16_bits_to_float(0x0001), min_sub);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16_bits(bits_float(0x7f7f7fff)), 0x7f7f);
  EXPECT_EQ(float_to_bf16_bits(bits_float(0x7f7f8000)), 0x7f80);  // tie, 0x7f7f is odd
  EXPECT_EQ(double_to_bf16_bits(1e300), 0x7f80);
  EXPECT_EQ(double_to_bf16_bits(-1e300), 0xff80);
  EXPECT_EQ(double_to_bf16_bits(std::numeric_limits<double>::denorm_min()), 0x0000);
  EXPECT_EQ(double_to_bf16_bits(std::ldexp(1.0, -134)), 0x0000);
  EXPECT_EQ(double_to_bf16_bits(std::nextafter(std::ldexp(1.0, -134), 1.0)), 0x0001);
}

TEST_P(FormatTest, InfinitiesZerosAndNans) {
  const Format fmt = GetParam();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(to16(fmt, inf), fmt.inf_bits());
  EXPECT_EQ(to16(fmt, -inf), 0x8000 | fmt.inf_bits());
  EXPECT_EQ(to16(fmt, double(inf)), fmt.inf_bits());
  EXPECT_EQ(to16(fmt, -double(inf)), 0x8000 | fmt.inf_bits());
  EXPECT_EQ(to16(fmt, 0.0f), 0x0000);
  EXPECT_EQ(to16(fmt, -0.0f), 0x8000);
  EXPECT_EQ(to16(fmt, 0.0), 0x0000);
  EXPECT_EQ(to16(fmt, -0.0), 0x8000);
  EXPECT_EQ(float_bits(from16(fmt, fmt.inf_bits())), 0x7f800000u);
  EXPECT_EQ(float_bits(from16(fmt, 0x8000)), 0x80000000u);
  // Every float NaN payload shape: quiet, signalling, payload only in the bits that are dropped
  // (truncation alone would turn those into Inf), payload only in the kept bits.
  for (uint32_t payload : {0x400000u, 0x000001u, 0x001fffu, 0x002000u, 0x00ffffu, 0x010000u,
                           0x3fffffu, 0x7fffffu, 0x155555u, 0x2aaaaau}) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      const float nan = bits_float(sign | 0x7f800000u | payload);
      ASSERT_TRUE(std::isnan(nan));
      const uint16_t b = to16(fmt, nan);
      EXPECT_TRUE(ref_is_nan(fmt, b)) << hex(payload);
      EXPECT_EQ((b & 0x8000) != 0, sign != 0) << hex(payload);
      EXPECT_NE(b & (1u << (fmt.mant_bits - 1)), 0u) << "not quiet: " << hex(payload);
      const double dnan = bits_double((uint64_t(sign) << 32) | 0x7ff0000000000000ull |
                                      (uint64_t(payload) << 29));
      const uint16_t bd = to16(fmt, dnan);
      EXPECT_TRUE(ref_is_nan(fmt, bd)) << hex(payload);
      EXPECT_EQ((bd & 0x8000) != 0, sign != 0) << hex(payload);
    }
  }
  EXPECT_TRUE(ref_is_nan(fmt, to16(fmt, std::numeric_limits<double>::quiet_NaN())));
  EXPECT_TRUE(ref_is_nan(fmt, to16(fmt, -std::numeric_limits<float>::signaling_NaN())));
}

// ---- random inputs against the reference ----------------------------------------------------

TEST_P(FormatTest, TenMillionRandomFloatsMatchReference) {
  const Format fmt = GetParam();
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  std::mt19937 rng(20240611u);
  constexpr int kCount = 10'000'000;
  int nans = 0;
  for (int i = 0; i < kCount; ++i) {
    const uint32_t u = rng();  // uniform bit patterns: every exponent, both signs, NaNs
    const float f = bits_float(u);
    const uint16_t got = to16(fmt, f);
    if (std::isnan(f)) {
      ++nans;
      ASSERT_TRUE(ref_is_nan(fmt, got)) << hex(u);
      continue;
    }
    const uint16_t want = ref_convert(fmt, double(f));
    if (got != want) {
      FAIL() << fmt.name << " float " << hex(u) << " got " << hex(got) << " want " << hex(want);
    }
  }
  EXPECT_GT(nans, 0);
}

TEST_P(FormatTest, RandomDoublesRoundOnceMatchReference) {
  const Format fmt = GetParam();
  std::mt19937_64 rng(77u);
  // Exponents across the whole interesting range, with full 52-bit mantissas: these are the
  // inputs where rounding through float first would round twice.
  std::uniform_int_distribution<int> exp_dist(1023 - 160, 1023 + 140);
  for (int i = 0; i < 2'000'000; ++i) {
    const uint64_t r = rng();
    const uint64_t u = (r & 0x800fffffffffffffull) | (uint64_t(exp_dist(rng)) << 52);
    const double d = bits_double(u);
    const uint16_t want = ref_convert(fmt, d);
    const uint16_t got = to16(fmt, d);
    if (got != want) {
      FAIL() << fmt.name << " double " << d << " got " << hex(got) << " want " << hex(want);
    }
  }
}

// ---- double -> 16-bit rounds once ----------------------------------------------------------

TEST(DoubleConversion, RoundsDirectlyNotThroughFloat) {
  // 1 + 2^-11 is the F16 tie between 1 and 1 + 2^-10. A double just above it must round up;
  // through float it would first collapse onto the tie and then go to even (down).
  const double tie = 1.0 + std::ldexp(1.0, -11);
  const double above = tie + std::ldexp(1.0, -40);
  EXPECT_EQ(float(above), float(tie));  // float loses the difference
  EXPECT_EQ(float_to_half_bits(float(above)), 0x3c00);
  EXPECT_EQ(double_to_half_bits(above), 0x3c01);
  EXPECT_EQ(double_to_half_bits(tie - std::ldexp(1.0, -40)), 0x3c00);
  EXPECT_EQ(double_to_half_bits(tie), 0x3c00);
  EXPECT_EQ(Half(above).bits, 0x3c01);
  EXPECT_EQ(Half(float(above)).bits, 0x3c00);

  const double btie = 1.0 + std::ldexp(1.0, -8);
  EXPECT_EQ(double_to_bf16_bits(btie + std::ldexp(1.0, -40)), 0x3f81);
  EXPECT_EQ(float_to_bf16_bits(float(btie + std::ldexp(1.0, -40))), 0x3f80);
  EXPECT_EQ(double_to_bf16_bits(btie), 0x3f80);
  EXPECT_EQ(BFloat16(btie + std::ldexp(1.0, -40)).bits, 0x3f81);

  // Same near the F16 overflow and subnormal edges.
  EXPECT_EQ(double_to_half_bits(65520.0 - std::ldexp(1.0, -30)), 0x7bff);
  EXPECT_EQ(double_to_half_bits(std::ldexp(1.0, -25) + std::ldexp(1.0, -70)), 0x0001);
  // A double just above a float value that is a BF16 tie in the subnormal range.
  EXPECT_EQ(double_to_bf16_bits(std::ldexp(1.0, -134) * (1 + std::ldexp(1.0, -40))), 0x0001);
}

TEST(DoubleConversion, IntegersRoundOnce) {
  EXPECT_EQ(Half(0).bits, 0x0000);
  EXPECT_EQ(Half(1).bits, 0x3c00);
  EXPECT_EQ(Half(-2).bits, 0xc000);
  EXPECT_EQ(Half(2049).bits, Half(2048.0f).bits);  // tie to even
  EXPECT_EQ(Half(2051).bits, Half(2052.0f).bits);
  EXPECT_EQ(Half(65519).bits, 0x7bff);
  EXPECT_EQ(Half(65520).bits, 0x7c00);
  EXPECT_EQ(Half(std::numeric_limits<int64_t>::min()).bits, 0xfc00);
  EXPECT_EQ(BFloat16(uint8_t(255)).bits, BFloat16(255.0f).bits);  // exact: 8 significant bits
  EXPECT_EQ(BFloat16(uint16_t(257)).bits, BFloat16(256.0f).bits);  // tie to even
  EXPECT_EQ(BFloat16(259).bits, BFloat16(260.0f).bits);
  // 2^62 + 2^54 + 1: just above the BF16 tie; int64 -> double alone would land on the tie.
  const int64_t big = (int64_t(1) << 62) + (int64_t(1) << 54) + 1;
  EXPECT_EQ(BFloat16(big).bits, BFloat16(std::ldexp(1.0f, 62) + std::ldexp(1.0f, 55)).bits);
  EXPECT_EQ(BFloat16(-big).bits, 0x8000 | BFloat16(big).bits);
  EXPECT_EQ(BFloat16(uint64_t(1) << 63).bits, 0x5f00);
}

// ---- storage types ------------------------------------------------------------------------

TEST(StorageTypes, LayoutAndConstexpr) {
  static_assert(sizeof(Half) == 2 && alignof(Half) == 2);
  static_assert(sizeof(BFloat16) == 2 && alignof(BFloat16) == 2);
  static_assert(std::is_trivially_copyable_v<Half> && std::is_trivial_v<Half>);
  static_assert(std::is_trivially_copyable_v<BFloat16> && std::is_trivial_v<BFloat16>);
  constexpr Half qnan = Half::from_bits(0x7e00);
  constexpr BFloat16 binf = BFloat16::from_bits(0xff80);
  static_assert(qnan.bits == 0x7e00 && is_nan(qnan) && !is_inf(qnan) && !is_finite(qnan));
  static_assert(is_inf(binf) && !is_nan(binf) && !is_finite(binf));
  static_assert(!is_nan(Half::from_bits(0x7c00)) && is_nan(BFloat16::from_bits(0xff81)));
  static_assert(is_finite(Half::from_bits(0x7bff)) && is_finite(BFloat16::from_bits(0x0001)));

  Half h = 1.5f;  // implicit from float
  float f = h;    // implicit to float
  EXPECT_EQ(h.bits, 0x3e00);
  EXPECT_EQ(f, 1.5f);
  BFloat16 b = -3.0f;
  EXPECT_EQ(b.bits, 0xc040);
  EXPECT_EQ(float(b) * 2, -6.0f);  // arithmetic happens in float
  EXPECT_EQ(Half(0.1).bits, double_to_half_bits(0.1));
  std::ostringstream ss;
  ss << Half(0.5f) << " " << BFloat16(-2.0f);
  EXPECT_EQ(ss.str(), "0.5 -2");
}

// ---- bulk conversion paths ------------------------------------------------------------------

constexpr ConvertPath kAllPaths[] = {ConvertPath::Scalar, ConvertPath::Avx2, ConvertPath::Avx512,
                                     ConvertPath::Avx512Bf16};

std::vector<ConvertPath> supported_paths() {
  std::vector<ConvertPath> paths;
  for (ConvertPath p : kAllPaths) {
    if (kernels::convert_path_supported(p)) paths.push_back(p);
  }
  return paths;
}

// Runs convert(src + src_off, dst + dst_off, n) into a guarded buffer and compares it bytewise
// with want[src_off .. src_off + n), the scalar result for the whole of src. Bytes around the
// written range must keep the guard value.
template <typename S, typename D, typename F>
void expect_matches_scalar(const std::string& what, F&& convert, const std::vector<S>& src,
                           const std::vector<D>& want, int64_t n, int src_off, int dst_off) {
  SCOPED_TRACE(what + " n=" + std::to_string(n) + " src_off=" + std::to_string(src_off) +
               " dst_off=" + std::to_string(dst_off));
  constexpr unsigned char kGuard = 0xa5;
  std::vector<D> out(size_t(n + dst_off + 8));
  std::memset(out.data(), kGuard, out.size() * sizeof(D));
  convert(src.data() + src_off, out.data() + dst_off, n);
  const auto* bytes = reinterpret_cast<const unsigned char*>(out.data());
  for (size_t k = 0; k < size_t(dst_off) * sizeof(D); ++k) ASSERT_EQ(bytes[k], kGuard) << "before";
  for (size_t k = size_t(n + dst_off) * sizeof(D); k < out.size() * sizeof(D); ++k) {
    ASSERT_EQ(bytes[k], kGuard) << "after the end";
  }
  if (std::memcmp(out.data() + dst_off, want.data() + src_off, size_t(n) * sizeof(D)) == 0) return;
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(&out[dst_off + i], &want[src_off + i], sizeof(D)) != 0) {
      uint32_t in = 0, got = 0, exp = 0;
      std::memcpy(&in, &src[src_off + i], sizeof(S));
      std::memcpy(&got, &out[dst_off + i], sizeof(D));
      std::memcpy(&exp, &want[src_off + i], sizeof(D));
      FAIL() << "index " << i << ": input " << hex(in) << " got " << hex(got) << " want "
             << hex(exp);
    }
  }
}

// Runs all four conversions on one path (or the dispatched one) against the scalar results.
struct BulkCase {
  const std::vector<float>& f32;
  const std::vector<Half>& f16;       // scalar F16 of f32
  const std::vector<BFloat16>& bf16;  // scalar BF16 of f32
  const std::vector<float>& f16_wide;   // scalar widening of f16
  const std::vector<float>& bf16_wide;  // scalar widening of bf16

  void check(const std::optional<ConvertPath>& path, int64_t n, int src_off, int dst_off) const {
    const std::string name = path ? kernels::convert_path_name(*path) : "dispatched";
    // Calls the chosen path's overload, or the dispatching one when no path is given.
    auto via = [&path](auto convert) {
      return [convert, path](const auto* s, auto* d, int64_t k) {
        if (path) {
          convert(s, d, k, *path);
        } else {
          convert(s, d, k);
        }
      };
    };
    auto f32_to_f16 = [](auto... args) { kernels::convert_f32_to_f16(args...); };
    auto f32_to_bf16 = [](auto... args) { kernels::convert_f32_to_bf16(args...); };
    auto f16_to_f32 = [](auto... args) { kernels::convert_f16_to_f32(args...); };
    auto bf16_to_f32 = [](auto... args) { kernels::convert_bf16_to_f32(args...); };
    expect_matches_scalar(name + " f32->f16", via(f32_to_f16), f32, f16, n, src_off, dst_off);
    expect_matches_scalar(name + " f32->bf16", via(f32_to_bf16), f32, bf16, n, src_off, dst_off);
    expect_matches_scalar(name + " f16->f32", via(f16_to_f32), f16, f16_wide, n, src_off, dst_off);
    expect_matches_scalar(name + " bf16->f32", via(bf16_to_f32), bf16, bf16_wide, n, src_off,
                          dst_off);
  }
};

// Scalar results for a float array, and the widening of those results.
struct ScalarResults {
  std::vector<Half> f16;
  std::vector<BFloat16> bf16;
  std::vector<float> f16_wide, bf16_wide;
  explicit ScalarResults(const std::vector<float>& f32)
      : f16(f32.size()), bf16(f32.size()), f16_wide(f32.size()), bf16_wide(f32.size()) {
    const int64_t n = int64_t(f32.size());
    kernels::convert_f32_to_f16_scalar(f32.data(), f16.data(), n);
    kernels::convert_f32_to_bf16_scalar(f32.data(), bf16.data(), n);
    kernels::convert_f16_to_f32_scalar(f16.data(), f16_wide.data(), n);
    kernels::convert_bf16_to_f32_scalar(bf16.data(), bf16_wide.data(), n);
  }
  BulkCase with(const std::vector<float>& f32) const {
    return {f32, f16, bf16, f16_wide, bf16_wide};
  }
};

TEST(BulkConvert, ReportsItsPath) {
  const std::string isa = kernels::convert_isa();
  EXPECT_EQ(isa, kernels::convert_path_name(kernels::convert_path()));
  EXPECT_TRUE(kernels::convert_path_supported(kernels::convert_path()));
  EXPECT_TRUE(kernels::convert_path_supported(ConvertPath::Scalar));
  std::cout << "[ convert ] dispatched path: " << isa << "; supported:";
  for (ConvertPath p : supported_paths()) std::cout << " " << kernels::convert_path_name(p);
  std::cout << "\n";
  for (ConvertPath p : kAllPaths) {
    if (!kernels::convert_path_supported(p)) {
      float x = 1;
      Half y;
      EXPECT_THROW(kernels::convert_f32_to_f16(&x, &y, 1, p), Error);
    }
  }
}

TEST(BulkConvert, WideningEveryPatternMatchesScalar) {
  std::vector<Half> h(65536);
  std::vector<BFloat16> b(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    h[i] = Half::from_bits(uint16_t(i));
    b[i] = BFloat16::from_bits(uint16_t(i));
  }
  std::vector<float> want_h(65536), want_b(65536);
  kernels::convert_f16_to_f32_scalar(h.data(), want_h.data(), 65536);
  kernels::convert_bf16_to_f32_scalar(b.data(), want_b.data(), 65536);
  for (ConvertPath p : supported_paths()) {
    const std::string name = kernels::convert_path_name(p);
    expect_matches_scalar(
        name + " f16->f32",
        [p](const Half* s, float* d, int64_t k) { kernels::convert_f16_to_f32(s, d, k, p); }, h,
        want_h, 65536, 0, 0);
    expect_matches_scalar(
        name + " bf16->f32",
        [p](const BFloat16* s, float* d, int64_t k) { kernels::convert_bf16_to_f32(s, d, k, p); },
        b, want_b, 65536, 0, 0);
  }
}

// 2^24 floats: for each of the 512 sign/exponent fields, mantissas that sit on and beside every
// possible rounding position (which moves with the exponent in the F16 subnormal range), special
// payloads for Inf/NaN, and random fill.
std::vector<float> narrowing_inputs() {
  constexpr int kPerExponent = 1 << 15;
  std::vector<float> v;
  v.reserve(size_t(512) * kPerExponent);
  std::mt19937 rng(12345u);
  for (uint32_t se = 0; se < 512; ++se) {
    const uint32_t high = ((se & 256u) << 23) | ((se & 255u) << 23);
    const size_t start = v.size();
    for (uint32_t m : {0u, 1u, 2u, 0x7fffffu, 0x400000u, 0x3fffffu, 0x1fffu, 0x2000u, 0x1000u,
                       0xfffu, 0x1001u, 0x3000u, 0x8000u, 0x7fffu, 0x8001u, 0x18000u}) {
      v.push_back(bits_float(high | m));
    }
    for (int k = 0; k < 23; ++k) {  // tie bit position
      for (int delta = -3; delta <= 3; ++delta) {
        for (uint32_t fill = 0; fill < 8; ++fill) {
          uint32_t upper = k + 1 < 23 ? (rng() << (k + 1)) & 0x7fffffu : 0u;
          if (fill == 0) upper = 0;
          if (fill == 1) upper = 0x7fffffu & ~((2u << k) - 1);
          const uint32_t m = (upper | (1u << k)) + uint32_t(delta);
          v.push_back(bits_float(high | (m & 0x7fffffu)));
        }
      }
    }
    while (v.size() - start < kPerExponent) v.push_back(bits_float(high | (rng() & 0x7fffffu)));
  }
  return v;
}

// Arrays this large also take the streaming-store path, so the misaligned pass covers its
// peeling up to a cache-line boundary.
TEST(BulkConvert, SixteenMillionSpecialFloatsMatchScalar) {
  const std::vector<float> src = narrowing_inputs();
  const int64_t n = int64_t(src.size());
  ASSERT_GE(n, 16'000'000);
  const ScalarResults want(src);
  const BulkCase bulk = want.with(src);
  for (ConvertPath p : supported_paths()) {
    if (p != ConvertPath::Scalar) bulk.check(p, n, 0, 0);
  }
  bulk.check(std::nullopt, n, 0, 0);
  bulk.check(std::nullopt, n - 1, 1, 3);
}

// Odd lengths exercise every vector tail; offsets make every pointer miss 16/32/64-byte alignment.
TEST(BulkConvert, TailsAndMisalignedPointers) {
  std::mt19937 rng(99u);
  std::vector<float> src(1'000'003 + 8);
  for (float& f : src) f = bits_float(rng());
  const ScalarResults want(src);
  const BulkCase bulk = want.with(src);
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(15), int64_t(16), int64_t(17),
                    int64_t(31), int64_t(32), int64_t(33), int64_t(1000), int64_t(65537),
                    int64_t(1'000'003)}) {
    for (int src_off : {0, 1, 3}) {
      for (int dst_off : {0, 1, 5}) {
        for (ConvertPath p : supported_paths()) bulk.check(p, n, src_off, dst_off);
        bulk.check(std::nullopt, n, src_off, dst_off);
      }
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
// Frameworks often turn on flush-to-zero / denormals-are-zero for speed (torch.set_flush_denormal).
// Conversions must still keep 16-bit subnormals. Short arrays run on this thread, whose MXCSR
// is the one changed here.
TEST(BulkConvert, IgnoresFlushToZeroMode) {
  std::vector<float> src;
  for (int e = -160; e <= -10; ++e) {
    for (float m : {1.0f, 1.25f, 1.5f, 1.75f, 1.9999999f}) {
      src.push_back(std::ldexp(m, e));
      src.push_back(-std::ldexp(m, e));
    }
  }
  for (uint32_t k = 1; k < 300; ++k) src.push_back(bits_float(k * 27961u));  // float subnormals
  const ScalarResults want(src);
  const BulkCase bulk = want.with(src);
  const unsigned int saved = _mm_getcsr();
  _mm_setcsr(saved | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
  for (ConvertPath p : supported_paths()) bulk.check(p, int64_t(src.size()), 0, 0);
  const bool scalar_unchanged = ScalarResults(src).f16_wide == want.f16_wide;
  _mm_setcsr(saved);
  EXPECT_TRUE(scalar_unchanged);
}
#endif

}  // namespace
}  // namespace mantissa
