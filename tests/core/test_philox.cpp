// Tests for the Philox4x32-10 stream (core/philox.h), the Generator (core/generator.h) and the
// CPU random fills (core/kernels/random.h): known answers, the (seed, offset) convention,
// thread-count independence and distribution checks on 1M samples with fixed seeds.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/generator.h"
#include "core/kernels/random.h"
#include "core/philox.h"

namespace mantissa {
namespace {

constexpr int64_t kSamples = 1 << 20;

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t expected[4];
};

void expect_kat(const Kat& kat) {
  uint32_t out[4];
  philox4x32_10(kat.ctr, kat.key, out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], kat.expected[i]) << "word " << i;
}

// Random123 kat_vectors, philox4x32 10 rows.
TEST(PhiloxKat, ZeroCounterZeroKey) {
  expect_kat({{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
}

TEST(PhiloxKat, AllOnesCounterAndKey) {
  expect_kat({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
              {0xffffffff, 0xffffffff},
              {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
}

TEST(PhiloxKat, PiDigitsCounterAndKey) {
  expect_kat({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
              {0xa4093822, 0x299f31d0},
              {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST(PhiloxStream, BlockIsCounterLowHighAndSeedLowHigh) {
  const uint64_t seed = 0x0123456789abcdefull;
  const uint64_t block = 0xfedcba9876543210ull;
  const uint32_t ctr[4] = {0x76543210u, 0xfedcba98u, 0u, 0u};
  const uint32_t key[2] = {0x89abcdefu, 0x01234567u};
  uint32_t expected[4];
  uint32_t got[4];
  philox4x32_10(ctr, key, expected);
  philox_block(seed, block, got);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], expected[i]) << "word " << i;
}

TEST(PhiloxStream, BlocksForRoundsUpPerWidth) {
  EXPECT_EQ(philox_blocks_for(0, false), 0u);
  EXPECT_EQ(philox_blocks_for(-5, false), 0u);
  EXPECT_EQ(philox_blocks_for(1, false), 1u);
  EXPECT_EQ(philox_blocks_for(4, false), 1u);
  EXPECT_EQ(philox_blocks_for(5, false), 2u);
  EXPECT_EQ(philox_blocks_for(1, true), 1u);
  EXPECT_EQ(philox_blocks_for(2, true), 1u);
  EXPECT_EQ(philox_blocks_for(3, true), 2u);
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(philox_blocks_for(big, false), static_cast<uint64_t>(big / 4 + 1));
  EXPECT_EQ(philox_blocks_for(big, true), static_cast<uint64_t>(big / 2 + 1));
}

TEST(PhiloxConvert, UniformFloatUses24BitGrid) {
  EXPECT_EQ(uint32_to_uniform_float(0u), 0.0f);
  EXPECT_EQ(uint32_to_uniform_float(0xffu), 0.0f);
  EXPECT_EQ(uint32_to_uniform_float(0x100u), 0x1p-24f);
  EXPECT_EQ(uint32_to_uniform_float(0x80000000u), 0.5f);
  EXPECT_EQ(uint32_to_uniform_float(0xffffffffu), 1.0f - 0x1p-24f);
  EXPECT_EQ(uint32_to_positive_uniform_float(0u), 0x1p-24f);
  EXPECT_EQ(uint32_to_positive_uniform_float(0xffffffffu), 1.0f);
}

TEST(PhiloxConvert, UniformDoubleUses53BitsHighWordFirst) {
  EXPECT_EQ(uint32x2_to_uniform_double(0u, 0u), 0.0);
  EXPECT_EQ(uint32x2_to_uniform_double(0x80000000u, 0u), 0.5);
  EXPECT_EQ(uint32x2_to_uniform_double(0u, 0x800u), 0x1p-53);
  EXPECT_EQ(uint32x2_to_uniform_double(0xffffffffu, 0xffffffffu), 1.0 - 0x1p-53);
  EXPECT_EQ(uint32x2_to_positive_uniform_double(0u, 0u), 0x1p-53);
  EXPECT_EQ(uint32x2_to_positive_uniform_double(0xffffffffu, 0xffffffffu), 1.0);
}

TEST(PhiloxConvert, UniformInRangeStaysBelowHi) {
  const float top = uint32_to_uniform_float(0xffffffffu);
  // Near 1 + 2^-10 the float grid (2^-23) is coarser than the step (2^-34): rounds onto hi.
  const float lo = 1.0f;
  const float hi = 1.0f + 0x1p-10f;
  EXPECT_LT(uniform_in_range(top, lo, hi), hi);
  EXPECT_EQ(uniform_in_range(top, lo, hi), std::nextafter(hi, 0.0f));
  EXPECT_EQ(uniform_in_range(0.0f, lo, hi), lo);
  // -FLT_MAX + 2 FLT_MAX (1 - 2^-24) = FLT_MAX (1 - 2^-23): two float ulps below FLT_MAX.
  EXPECT_EQ(uniform_in_range(top, -FLT_MAX, FLT_MAX), std::nextafter(std::nextafter(FLT_MAX, 0.0f), 0.0f));
  EXPECT_EQ(uniform_in_range(0.0f, -FLT_MAX, FLT_MAX), -FLT_MAX);
  EXPECT_EQ(uniform_in_range(top, -1.0f, 0.0f), -0x1p-24f);
  EXPECT_EQ(uniform_in_range(top, 3.0f, 3.0f), 3.0f);

  const double dtop = uint32x2_to_uniform_double(0xffffffffu, 0xffffffffu);
  EXPECT_LT(uniform_in_range(dtop, 1.0, 1.0 + 0x1p-40), 1.0 + 0x1p-40);
  EXPECT_LT(uniform_in_range(dtop, -DBL_MAX, DBL_MAX), DBL_MAX);
  EXPECT_TRUE(std::isfinite(uniform_in_range(dtop, -DBL_MAX, DBL_MAX)));
  EXPECT_EQ(uniform_in_range(0.0, -DBL_MAX, DBL_MAX), -DBL_MAX);
  EXPECT_EQ(uniform_in_range(dtop, 0.0, 0.0), 0.0);
}

TEST(PhiloxConvert, BoxMullerIsRadiusCosThenSin) {
  const uint32_t w0 = 0x12345678u;
  const uint32_t w1 = 0x9abcdef0u;
  float z0, z1;
  box_muller_float(w0, w1, z0, z1);
  const double u1 = ((w0 >> 8) + 1.0) * 0x1p-24;
  const double u2 = (w1 >> 8) * 0x1p-24;
  const double r = std::sqrt(-2.0 * std::log(u1));
  EXPECT_NEAR(z0, r * std::cos(2 * std::numbers::pi * u2), 1e-5);
  EXPECT_NEAR(z1, r * std::sin(2 * std::numbers::pi * u2), 1e-5);

  const uint32_t w[4] = {w0, w1, 0x0badf00du, 0xdeadbeefu};
  double d0, d1;
  box_muller_double(w, d0, d1);
  const double v1 = uint32x2_to_positive_uniform_double(w[0], w[1]);
  const double v2 = uint32x2_to_uniform_double(w[2], w[3]);
  const double rd = std::sqrt(-2.0 * std::log(v1));
  EXPECT_NEAR(d0, rd * std::cos(2 * std::numbers::pi * v2), 1e-14);
  EXPECT_NEAR(d1, rd * std::sin(2 * std::numbers::pi * v2), 1e-14);
}

TEST(PhiloxConvert, BoxMullerFiniteAtExtremeWords) {
  for (uint32_t a : {0u, 1u, 0xffu, 0xffffffffu}) {
    for (uint32_t b : {0u, 0x40000000u, 0xffffffffu}) {
      float z0, z1;
      box_muller_float(a, b, z0, z1);
      EXPECT_TRUE(std::isfinite(z0) && std::isfinite(z1)) << a << " " << b;
      EXPECT_LE(std::hypot(z0, z1), 5.8f);
      const uint32_t w[4] = {a, a, b, b};
      double d0, d1;
      box_muller_double(w, d0, d1);
      EXPECT_TRUE(std::isfinite(d0) && std::isfinite(d1)) << a << " " << b;
      EXPECT_LE(std::hypot(d0, d1), 8.6);
    }
  }
}

// The conceptual stream, one element at a time, straight from the convention in philox.h.
std::array<uint32_t, 4> block_words(uint64_t seed, uint64_t block) {
  std::array<uint32_t, 4> w;
  philox_block(seed, block, w.data());
  return w;
}

float stream_uniform(uint64_t seed, uint64_t offset, int64_t i, float lo, float hi) {
  const auto w = block_words(seed, offset + i / 4);
  return uniform_in_range(uint32_to_uniform_float(w[i % 4]), lo, hi);
}

double stream_uniform_double(uint64_t seed, uint64_t offset, int64_t i, double lo, double hi) {
  const auto w = block_words(seed, offset + i / 2);
  const int k = static_cast<int>(i % 2);
  return uniform_in_range(uint32x2_to_uniform_double(w[2 * k], w[2 * k + 1]), lo, hi);
}

float stream_normal(uint64_t seed, uint64_t offset, int64_t i, float mean, float std) {
  const auto w = block_words(seed, offset + i / 4);
  const int pair = static_cast<int>(i % 4) / 2;
  float z[2];
  box_muller_float(w[2 * pair], w[2 * pair + 1], z[0], z[1]);
  return normal_affine(z[i % 2], mean, std);
}

double stream_normal_double(uint64_t seed, uint64_t offset, int64_t i, double mean, double std) {
  const auto w = block_words(seed, offset + i / 2);
  double z[2];
  box_muller_double(w.data(), z[0], z[1]);
  return normal_affine(z[i % 2], mean, std);
}

float stream_bernoulli(uint64_t seed, uint64_t offset, int64_t i, float p) {
  const auto w = block_words(seed, offset + i / 4);
  return uint32_to_bernoulli(w[i % 4], p) ? 1.0f : 0.0f;
}

// All six fills of one (seed, offset, n), to compare runs wholesale.
struct Draws {
  std::vector<float> uf, nf, bf;
  std::vector<double> ud, nd;
  std::vector<uint8_t> bm;
  bool operator==(const Draws&) const = default;
};

Draws draw_all(uint64_t seed, uint64_t offset, int64_t n) {
  Draws d{std::vector<float>(n), std::vector<float>(n), std::vector<float>(n),
          std::vector<double>(n), std::vector<double>(n), std::vector<uint8_t>(n)};
  kernels::fill_uniform(d.uf.data(), n, seed, offset, -2.0f, 3.0f);
  kernels::fill_normal(d.nf.data(), n, seed, offset, 1.0f, 2.0f);
  kernels::fill_bernoulli(d.bf.data(), n, seed, offset, 0.3f);
  kernels::fill_uniform(d.ud.data(), n, seed, offset, -2.0, 3.0);
  kernels::fill_normal(d.nd.data(), n, seed, offset, 1.0, 2.0);
  kernels::fill_bernoulli(d.bm.data(), n, seed, offset, 0.3f);
  return d;
}

// The library is built with -march=x86-64-v3 (FMA) and this file without, so this also checks
// that no result depends on whether the compiler contracts a multiply-add.
TEST(RandomFill, MatchesConceptualStreamElementwise) {
  const uint64_t seed = 0xdecafbadull << 20;
  const uint64_t offset = (uint64_t{1} << 32) - 3;  // crosses into the counter's high word
  const int64_t n = 37;
  const Draws d = draw_all(seed, offset, n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(d.uf[i], stream_uniform(seed, offset, i, -2.0f, 3.0f)) << i;
    EXPECT_EQ(d.nf[i], stream_normal(seed, offset, i, 1.0f, 2.0f)) << i;
    EXPECT_EQ(d.bf[i], stream_bernoulli(seed, offset, i, 0.3f)) << i;
    EXPECT_EQ(d.ud[i], stream_uniform_double(seed, offset, i, -2.0, 3.0)) << i;
    EXPECT_EQ(d.nd[i], stream_normal_double(seed, offset, i, 1.0, 2.0)) << i;
    EXPECT_EQ(static_cast<float>(d.bm[i]), d.bf[i]) << i;
  }
}

TEST(RandomFill, SameSeedAndOffsetReproduce) {
  EXPECT_TRUE(draw_all(42, 7, 1001) == draw_all(42, 7, 1001));
  const Draws base = draw_all(42, 7, 1001);
  EXPECT_NE(base.uf, draw_all(43, 7, 1001).uf);
  EXPECT_NE(base.uf, draw_all(42, 8, 1001).uf);
  EXPECT_NE(base.nd, draw_all(42, 8, 1001).nd);
}

TEST(RandomFill, ConsecutiveDrawsAreSlicesOfOneStream) {
  const uint64_t seed = 2024;
  Generator gen(seed);
  // n = 10 floats leaves half a block unused; the next draw starts on a fresh block.
  const int64_t n = 10, m = 7;
  std::vector<float> a(n), b(m);
  const uint64_t off_a = gen.reserve(philox_blocks_for(n, false));
  kernels::fill_uniform(a.data(), n, seed, off_a, 0.0f, 1.0f);
  const uint64_t off_b = gen.reserve(philox_blocks_for(m, false));
  kernels::fill_uniform(b.data(), m, seed, off_b, 0.0f, 1.0f);
  EXPECT_EQ(off_a, 0u);
  EXPECT_EQ(off_b, 3u);
  EXPECT_EQ(gen.offset(), 5u);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(a[i], stream_uniform(seed, 0, i, 0.0f, 1.0f)) << i;
  for (int64_t i = 0; i < m; ++i) EXPECT_EQ(b[i], stream_uniform(seed, 0, 12 + i, 0.0f, 1.0f)) << i;

  // Block-aligned draws concatenate exactly into one draw of n + m.
  const int64_t n4 = 12;
  std::vector<double> whole(n4 + m), first(n4), second(m);
  gen.manual_seed(seed);
  kernels::fill_normal(first.data(), n4, seed, gen.reserve(philox_blocks_for(n4, true)), 0.0, 1.0);
  kernels::fill_normal(second.data(), m, seed, gen.reserve(philox_blocks_for(m, true)), 0.0, 1.0);
  kernels::fill_normal(whole.data(), n4 + m, seed, 0, 0.0, 1.0);
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(first, whole);
}

TEST(RandomFill, IndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  const int64_t n = kSamples + 3;  // a ragged final block
  omp_set_num_threads(1);
  const Draws one = draw_all(99, 5, n);
  omp_set_num_threads(2);
  const Draws two = draw_all(99, 5, n);
  omp_set_num_threads(3);
  const Draws three = draw_all(99, 5, n);
  omp_set_num_threads(saved);
  EXPECT_TRUE(one == two);
  EXPECT_TRUE(one == three);
}

TEST(RandomFill, UniformNeverReturnsHi) {
  struct Range {
    float lo, hi;
  };
  for (const Range r : {Range{0.0f, 1.0f}, Range{1.0f, 1.0f + 0x1p-10f}, Range{-1.0f, -0.999f},
                        Range{-FLT_MAX, FLT_MAX}, Range{1e30f, 3e30f}}) {
    std::vector<float> out(kSamples);
    kernels::fill_uniform(out.data(), kSamples, 5, 0, r.lo, r.hi);
    const auto [mn, mx] = std::minmax_element(out.begin(), out.end());
    EXPECT_GE(*mn, r.lo) << r.lo << " " << r.hi;
    EXPECT_LT(*mx, r.hi) << r.lo << " " << r.hi;
  }
  std::vector<double> out(kSamples);
  kernels::fill_uniform(out.data(), kSamples, 5, 0, 1.0, 1.0 + 0x1p-45);
  EXPECT_LT(*std::max_element(out.begin(), out.end()), 1.0 + 0x1p-45);
  kernels::fill_uniform(out.data(), kSamples, 5, 0, -DBL_MAX, DBL_MAX);
  EXPECT_LT(*std::max_element(out.begin(), out.end()), DBL_MAX);

  std::vector<float> same(9);
  kernels::fill_uniform(same.data(), 9, 5, 0, 2.5f, 2.5f);
  for (float v : same) EXPECT_EQ(v, 2.5f);
}

TEST(RandomFill, NormalNeverInfOrNaN) {
  std::vector<float> f(kSamples);
  kernels::fill_normal(f.data(), kSamples, 11, 0, 0.0f, 1.0f);
  EXPECT_TRUE(std::all_of(f.begin(), f.end(), [](float v) { return std::isfinite(v); }));
  EXPECT_LE(*std::max_element(f.begin(), f.end()), 5.8f);
  std::vector<double> d(kSamples);
  kernels::fill_normal(d.data(), kSamples, 11, 0, 0.0, 1.0);
  EXPECT_TRUE(std::all_of(d.begin(), d.end(), [](double v) { return std::isfinite(v); }));
  kernels::fill_normal(f.data(), kSamples, 11, 0, 0.0f, 1e37f);
  EXPECT_TRUE(std::all_of(f.begin(), f.end(), [](float v) { return std::isfinite(v); }));
}

TEST(RandomFill, ZeroStdAndZeroLengthAreFine) {
  std::vector<float> f(6, -1.0f);
  kernels::fill_normal(f.data(), 6, 1, 0, 4.0f, 0.0f);
  for (float v : f) EXPECT_EQ(v, 4.0f);
  kernels::fill_uniform(static_cast<float*>(nullptr), 0, 1, 0, 0.0f, 1.0f);
}

TEST(RandomFill, RejectsBadArguments) {
  std::vector<float> f(4);
  std::vector<double> d(4);
  std::vector<uint8_t> m(4);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(kernels::fill_uniform(f.data(), -1, 0, 0, 0.0f, 1.0f), Error);
  EXPECT_THROW(kernels::fill_uniform(static_cast<float*>(nullptr), 4, 0, 0, 0.0f, 1.0f), Error);
  EXPECT_THROW(kernels::fill_uniform(f.data(), 4, 0, 0, 1.0f, 0.0f), Error);
  EXPECT_THROW(kernels::fill_uniform(f.data(), 4, 0, 0, nan, 1.0f), Error);
  EXPECT_THROW(kernels::fill_uniform(d.data(), 4, 0, 0, 0.0, HUGE_VAL), Error);
  EXPECT_THROW(kernels::fill_normal(f.data(), 4, 0, 0, 0.0f, -1.0f), Error);
  EXPECT_THROW(kernels::fill_normal(d.data(), 4, 0, 0, 0.0, std::nan("")), Error);
  EXPECT_THROW(kernels::fill_bernoulli(f.data(), 4, 0, 0, 1.5f), Error);
  EXPECT_THROW(kernels::fill_bernoulli(m.data(), 4, 0, 0, -0.1f), Error);
  EXPECT_THROW(kernels::fill_bernoulli(m.data(), 4, 0, 0, nan), Error);
}

struct Moments {
  double mean, var;
};

template <typename T>
Moments moments(const std::vector<T>& x) {
  double sum = 0.0;
  for (T v : x) sum += v;
  const double mean = sum / static_cast<double>(x.size());
  double ss = 0.0;
  for (T v : x) ss += (v - mean) * (v - mean);
  return {mean, ss / static_cast<double>(x.size() - 1)};
}

// Kolmogorov-Smirnov statistic against `cdf`; 1.95 / sqrt(n) is the 0.1% critical value.
template <typename T, typename Cdf>
double ks_statistic(std::vector<T> x, Cdf cdf) {
  std::sort(x.begin(), x.end());
  const double n = static_cast<double>(x.size());
  double d = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double f = cdf(static_cast<double>(x[i]));
    d = std::max({d, f - static_cast<double>(i) / n, static_cast<double>(i + 1) / n - f});
  }
  return d;
}

// Lag-1 correlation: catches a Box-Muller pair or a block's words leaking into each other.
template <typename T>
double lag1_correlation(const std::vector<T>& x) {
  const Moments m = moments(x);
  double c = 0.0;
  for (size_t i = 0; i + 1 < x.size(); ++i) c += (x[i] - m.mean) * (x[i + 1] - m.mean);
  return c / static_cast<double>(x.size() - 1) / m.var;
}

double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

const double kN = static_cast<double>(kSamples);
const double kKsBound = 1.95 / std::sqrt(kN);
const double kCorrBound = 5.0 / std::sqrt(kN);

TEST(RandomStats, UniformFloatMomentsChiSquareAndKs) {
  std::vector<float> u(kSamples);
  kernels::fill_uniform(u.data(), kSamples, 12345, 0, 0.0f, 1.0f);
  const Moments m = moments(u);
  EXPECT_NEAR(m.mean, 0.5, 5.0 * std::sqrt(1.0 / 12.0 / kN));
  EXPECT_NEAR(m.var, 1.0 / 12.0, 5.0 * std::sqrt((1.0 / 80.0 - 1.0 / 144.0) / kN));

  // 1000 equal bins, 999 degrees of freedom: mean 999, sd ~44.7; both tails flagged.
  constexpr int kBins = 1000;
  std::vector<int64_t> counts(kBins, 0);
  for (float v : u) ++counts[std::min(kBins - 1, static_cast<int>(v * kBins))];
  const double expected = kN / kBins;
  double chi2 = 0.0;
  for (int64_t c : counts) chi2 += (c - expected) * (c - expected) / expected;
  EXPECT_GT(chi2, 800.0);
  EXPECT_LT(chi2, 1250.0);

  EXPECT_LT(ks_statistic(u, [](double x) { return x; }), kKsBound);
  EXPECT_LT(std::abs(lag1_correlation(u)), kCorrBound);
}

TEST(RandomStats, UniformDoubleMomentsAndKs) {
  std::vector<double> u(kSamples);
  kernels::fill_uniform(u.data(), kSamples, 12345, 0, -1.0, 3.0);
  const Moments m = moments(u);
  EXPECT_NEAR(m.mean, 1.0, 5.0 * std::sqrt(16.0 / 12.0 / kN));
  EXPECT_NEAR(m.var, 16.0 / 12.0, 5.0 * 16.0 * std::sqrt((1.0 / 80.0 - 1.0 / 144.0) / kN));
  EXPECT_LT(ks_statistic(u, [](double x) { return (x + 1.0) / 4.0; }), kKsBound);
  EXPECT_LT(std::abs(lag1_correlation(u)), kCorrBound);
}

TEST(RandomStats, NormalFloatMomentsAndKs) {
  std::vector<float> z(kSamples);
  kernels::fill_normal(z.data(), kSamples, 777, 0, 0.0f, 1.0f);
  const Moments m = moments(z);
  EXPECT_NEAR(m.mean, 0.0, 5.0 / std::sqrt(kN));
  EXPECT_NEAR(m.var, 1.0, 5.0 * std::sqrt(2.0 / kN));
  EXPECT_LT(ks_statistic(z, normal_cdf), kKsBound);
  EXPECT_LT(std::abs(lag1_correlation(z)), kCorrBound);

  std::vector<float> s(kSamples);
  kernels::fill_normal(s.data(), kSamples, 778, 0, 3.0f, 0.5f);
  const Moments ms = moments(s);
  EXPECT_NEAR(ms.mean, 3.0, 5.0 * 0.5 / std::sqrt(kN));
  EXPECT_NEAR(ms.var, 0.25, 5.0 * 0.25 * std::sqrt(2.0 / kN));
}

TEST(RandomStats, NormalDoubleMomentsAndKs) {
  std::vector<double> z(kSamples);
  kernels::fill_normal(z.data(), kSamples, 777, 0, 0.0, 1.0);
  const Moments m = moments(z);
  EXPECT_NEAR(m.mean, 0.0, 5.0 / std::sqrt(kN));
  EXPECT_NEAR(m.var, 1.0, 5.0 * std::sqrt(2.0 / kN));
  EXPECT_LT(ks_statistic(z, normal_cdf), kKsBound);
  EXPECT_LT(std::abs(lag1_correlation(z)), kCorrBound);
}

TEST(RandomStats, BernoulliRateAndMaskAgree) {
  for (float p : {0.0f, 0.1f, 0.5f, 0.9f, 1.0f}) {
    std::vector<float> f(kSamples);
    std::vector<uint8_t> mask(kSamples);
    kernels::fill_bernoulli(f.data(), kSamples, 31337, 0, p);
    kernels::fill_bernoulli(mask.data(), kSamples, 31337, 0, p);
    const Moments m = moments(f);
    EXPECT_NEAR(m.mean, p, 5.0 * std::sqrt(p * (1.0 - p) / kN) + 1e-12) << p;
    EXPECT_NEAR(m.var, p * (1.0 - p), 5e-3) << p;
    for (int64_t i = 0; i < kSamples; ++i) {
      ASSERT_EQ(static_cast<float>(mask[i]), f[i]) << "p=" << p << " i=" << i;
    }
  }
}

TEST(Generator, DefaultSeedMatchesPyTorch) {
  Generator gen;
  EXPECT_EQ(gen.seed(), 67280421310721ull);
  EXPECT_EQ(gen.offset(), 0u);
}

TEST(Generator, ReserveReturnsStartAndAdvances) {
  Generator gen(3);
  EXPECT_EQ(gen.reserve(5), 0u);
  EXPECT_EQ(gen.reserve(0), 5u);
  EXPECT_EQ(gen.reserve(2), 5u);
  EXPECT_EQ(gen.offset(), 7u);
  EXPECT_EQ(gen.seed(), 3u);
}

TEST(Generator, ReserveStateReturnsSeedAndStartTogether) {
  Generator gen(77);
  gen.reserve(4);
  const GeneratorState s = gen.reserve_state(3);
  EXPECT_EQ(s.seed, 77u);
  EXPECT_EQ(s.offset, 4u);
  EXPECT_EQ(gen.offset(), 7u);
}

TEST(Generator, ManualSeedRewindsAndSetStateRoundTrips) {
  Generator gen(3);
  gen.reserve(10);
  gen.manual_seed(4);
  EXPECT_EQ(gen.seed(), 4u);
  EXPECT_EQ(gen.offset(), 0u);
  gen.set_state(9, 1234);
  const GeneratorState s = gen.state();
  EXPECT_EQ(s.seed, 9u);
  EXPECT_EQ(s.offset, 1234u);
  gen.reserve(6);
  gen.set_state(s);
  EXPECT_EQ(gen.offset(), 1234u);
}

TEST(Generator, ConcurrentReservesAreDisjoint) {
  Generator gen(1);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<uint64_t>> starts(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) starts[t].push_back(gen.reserve(3));
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (const auto& s : starts) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], 3u * i);
  EXPECT_EQ(gen.offset(), 3u * kThreads * kPerThread);
}

TEST(DefaultGenerator, ManualSeedResetsIt) {
  manual_seed(42);
  EXPECT_EQ(default_generator().seed(), 42u);
  EXPECT_EQ(default_generator().offset(), 0u);
  std::vector<float> a(8), b(8);
  const GeneratorState sa = default_generator().state();
  kernels::fill_normal(a.data(), 8, sa.seed, default_generator().reserve(philox_blocks_for(8, false)),
                       0.0f, 1.0f);
  EXPECT_EQ(default_generator().offset(), 2u);
  manual_seed(42);
  EXPECT_EQ(default_generator().offset(), 0u);
  kernels::fill_normal(b.data(), 8, default_generator().seed(),
                       default_generator().reserve(philox_blocks_for(8, false)), 0.0f, 1.0f);
  EXPECT_EQ(a, b);
  manual_seed(kDefaultSeed);
}

}  // namespace
}  // namespace mantissa
