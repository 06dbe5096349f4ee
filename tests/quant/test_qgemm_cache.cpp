// kernels::QWeightCache (core/kernels/qgemm.h): int8 weights packed once per layer give the same
// codes as the uncached oneDNN call, and every way the weights can change (copy_, a raw write with
// bump_version, a new tensor, load_state_dict into a module) repacks instead of reading stale
// packed weights; other requantization parameters with the same weights stay correct. Also prints
// the cached vs uncached timing of a 256 x 784 -> 512 linear and the MNIST CNN's conv2 at batch 256.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/qgemm.h"
#include "nn/linear.h"
#include "quant/dynamic.h"
#include "quant/quantized_modules.h"

namespace mantissa {
namespace {

Tensor random_codes(const Shape& shape, DType t, std::mt19937& gen) {
  Tensor c = empty(shape, TensorOptions(t));
  std::uniform_int_distribution<int> dist(t == DType::U8 ? 0 : -128, t == DType::U8 ? 255 : 127);
  if (t == DType::U8) {
    uint8_t* p = c.data<uint8_t>();
    for (int64_t i = 0; i < c.numel(); ++i) p[i] = static_cast<uint8_t>(dist(gen));
  } else {
    int8_t* p = c.data<int8_t>();
    for (int64_t i = 0; i < c.numel(); ++i) p[i] = static_cast<int8_t>(dist(gen));
  }
  return c;
}

kernels::Requant make_requant(int64_t channels, int32_t x_zp, int32_t out_zp, float out_scale, std::mt19937& gen) {
  kernels::Requant r;
  r.x_scale = 0.0173f;
  r.x_zp = x_zp;
  r.w_scale = empty({channels}, TensorOptions(DType::F32));
  std::uniform_real_distribution<float> dist(0.002f, 0.012f);
  for (int64_t c = 0; c < channels; ++c) r.w_scale.data<float>()[c] = dist(gen);
  r.out_scale = out_scale;
  r.out_zp = out_zp;
  return r;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

// Codes that are not all saturated: an equality between two outputs says something.
int64_t unsaturated(const Tensor& t) {
  int64_t n = 0;
  if (t.dtype() == DType::U8) {
    for (int64_t i = 0; i < t.numel(); ++i) n += t.data<uint8_t>()[i] != 0 && t.data<uint8_t>()[i] != 255;
  } else {
    for (int64_t i = 0; i < t.numel(); ++i) n += t.data<int8_t>()[i] != -128 && t.data<int8_t>()[i] != 127;
  }
  return n;
}

// The packing counters move only where oneDNN keeps the weights in a blocked layout (a build
// without oneDNN, or a plain layout, packs nothing): then each call either packs or reuses.
void expect_counts(const kernels::QWeightCache& cache, uint64_t packs, uint64_t calls) {
  if (cache.packs() + cache.reuses() == 0) return;
  EXPECT_EQ(cache.packs(), packs);
  EXPECT_EQ(cache.packs() + cache.reuses(), calls);
}

TEST(QWeightCache, LinearReusesPacksAndRepacksOnEveryChange) {
  NoGradGuard ng;
  std::mt19937 gen(1);
  const int64_t n = 33, k = 96, c = 40;
  Tensor x = random_codes({n, k}, DType::U8, gen), w = random_codes({c, k}, DType::I8, gen);
  Tensor bias = empty({c}, TensorOptions(DType::I32));
  for (int64_t i = 0; i < c; ++i) bias.data<int32_t>()[i] = static_cast<int32_t>(i * 37) - 700;
  const kernels::Requant r = make_requant(c, 131, 118, 3.1f, gen);
  kernels::QWeightCache cache;
  auto run = [&](const Tensor& wt, const kernels::Requant& rq, kernels::QWeightCache* cp) {
    Tensor out = empty({n, c}, TensorOptions(DType::U8));
    kernels::qlinear(out, x, wt, bias, rq, kernels::QGemmImpl::Auto, cp);
    return out;
  };
  const Tensor want = run(w, r, nullptr);
  EXPECT_GT(unsaturated(want), want.numel() / 2);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(same_bytes(run(w, r, &cache), want)) << "call " << i;
  expect_counts(cache, 1, 3);

  // copy_ bumps the version: the next call repacks and sees the new codes.
  const Tensor w2 = random_codes({c, k}, DType::I8, gen);
  w.copy_(w2);
  const Tensor want2 = run(w2, r, nullptr);
  ASSERT_FALSE(same_bytes(want2, want));
  EXPECT_TRUE(same_bytes(run(w, r, &cache), want2));
  expect_counts(cache, 2, 4);

  // A raw write followed by bump_version (the documented contract for writes through pointers).
  for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>(-w2.data<int8_t>()[i] / 2);
  w.bump_version();
  const Tensor want3 = run(w.clone(), r, nullptr);
  ASSERT_FALSE(same_bytes(want3, want2));
  EXPECT_TRUE(same_bytes(run(w, r, &cache), want3));
  expect_counts(cache, 3, 5);

  // Another tensor with the same shape (and possibly a recycled address): repacked.
  Tensor w4 = random_codes({c, k}, DType::I8, gen);
  EXPECT_TRUE(same_bytes(run(w4, r, &cache), run(w4, r, nullptr)));
  expect_counts(cache, 4, 6);
  // A view of the same storage at another offset is other weights too.
  Tensor big = random_codes({2 * c, k}, DType::I8, gen);
  const Tensor lower = big.narrow(0, c, c);
  EXPECT_TRUE(same_bytes(run(big.narrow(0, 0, c), r, &cache), run(big.narrow(0, 0, c).clone(), r, nullptr)));
  EXPECT_TRUE(same_bytes(run(lower, r, &cache), run(lower.clone(), r, nullptr)));

  // Same weights, other requantization (zero points, scales): the packed layout is tied to the
  // primitive, so whatever it needs is right.
  kernels::Requant r2 = make_requant(c, 3, 200, 2.3f, gen);
  EXPECT_TRUE(same_bytes(run(w4, r2, &cache), run(w4, r2, nullptr)));
  EXPECT_TRUE(same_bytes(run(w4, r, &cache), run(w4, r, nullptr)));

  cache.clear();
  EXPECT_TRUE(same_bytes(run(w4, r, &cache), run(w4, r, nullptr)));
}

TEST(QWeightCache, ConvAndDequantFollowTheWeights) {
  NoGradGuard ng;
  std::mt19937 gen(2);
  kernels::Conv2dParams p;
  p.pad_h = p.pad_w = 1;
  p.groups = 2;
  Tensor x = random_codes({2, 6, 9, 8}, DType::U8, gen), w = random_codes({8, 3, 3, 3}, DType::I8, gen);
  const kernels::Requant r = make_requant(8, 77, 128, 1.3f, gen);
  kernels::QWeightCache cache;
  auto conv = [&](const Tensor& wt, kernels::QWeightCache* cp) {
    Tensor out = empty({2, 8, 9, 8}, TensorOptions(DType::U8));
    kernels::qconv2d(out, x, wt, Tensor(), p, r, kernels::QGemmImpl::Auto, cp);
    return out;
  };
  const Tensor want = conv(w, nullptr);
  EXPECT_GT(unsaturated(want), want.numel() / 2);
  EXPECT_TRUE(same_bytes(conv(w, &cache), want));
  EXPECT_TRUE(same_bytes(conv(w, &cache), want));
  expect_counts(cache, 1, 2);
  w.copy_(random_codes({8, 3, 3, 3}, DType::I8, gen));
  const Tensor want2 = conv(w.clone(), nullptr);
  ASSERT_FALSE(same_bytes(want2, want));
  EXPECT_TRUE(same_bytes(conv(w, &cache), want2));
  expect_counts(cache, 2, 3);

  // Dynamic linear: scales and the zero point change with every batch; the packed weights don't.
  const int64_t n = 17, k = 70, c = 24;
  Tensor xd = random_codes({n, k}, DType::U8, gen), wd = random_codes({c, k}, DType::I8, gen);
  Tensor ws = make_requant(c, 0, 0, 1.0f, gen).w_scale;
  kernels::QWeightCache dcache;
  auto dyn = [&](const Tensor& wt, float xs, int32_t zp, kernels::QWeightCache* cp) {
    Tensor out = empty({n, c}, TensorOptions(DType::F32));
    kernels::qlinear_dequant(out, xd, wt, Tensor(), xs, zp, ws, kernels::QGemmImpl::Auto, cp);
    return out;
  };
  EXPECT_TRUE(same_bytes(dyn(wd, 0.02f, 100, &dcache), dyn(wd, 0.02f, 100, nullptr)));
  EXPECT_TRUE(same_bytes(dyn(wd, 0.5f, 7, &dcache), dyn(wd, 0.5f, 7, nullptr)));
  expect_counts(dcache, 1, 2);
  wd.copy_(random_codes({c, k}, DType::I8, gen));
  EXPECT_TRUE(same_bytes(dyn(wd, 0.5f, 7, &dcache), dyn(wd.clone(), 0.5f, 7, nullptr)));
  expect_counts(dcache, 2, 3);
}

TEST(QWeightCache, LoadStateDictIntoModulesRepacks) {
  NoGradGuard ng;
  Generator g1(7), g2(8);
  nn::Linear a(50, 30), b(50, 30);
  {
    // Different float weights for a and b.
    Tensor wa = randn({30, 50}, {}, &g1), wb = randn({30, 50}, {}, &g2);
    a.weight.copy_(wa);
    b.weight.copy_(wb);
  }

  Tensor x = randn({9, 50}, {}, &g1);

  quant::QuantizedLinearDynamic qa(a), qb(b);
  const Tensor ya = qa.forward(x).clone();
  const Tensor yb = qb.forward(x);
  ASSERT_FALSE(same_bytes(ya, yb));
  EXPECT_TRUE(same_bytes(qa.forward(x), ya));  // served from the cache
  qa.load_state_dict(qb.state_dict());
  EXPECT_TRUE(same_bytes(qa.forward(x), yb)) << "stale packed weights after load_state_dict";

  // The static module: same story through QuantizedLinear's kernel call.
  // Zero biases: the static modules' I32 bias codes depend on the weight scales and are made at
  // construction (not part of the state_dict), so only bias-free weights load completely.
  a.bias.copy_(full({30}, 0.0, DType::F32));
  b.bias.copy_(full({30}, 0.0, DType::F32));
  quant::QParams in_qp = quant::calculate_qparams(full({}, -4.0, DType::F32), full({}, 4.0, DType::F32),
                                                  quant::QSpec{});
  quant::QParams out_qp = quant::calculate_qparams(full({}, -6.0, DType::F32), full({}, 6.0, DType::F32),
                                                   quant::QSpec{});
  quant::QuantizedLinear sa(a, in_qp, out_qp), sb(b, in_qp, out_qp);
  const Tensor za = sa.forward(x).clone(), zb = sb.forward(x);
  ASSERT_FALSE(same_bytes(za, zb));
  EXPECT_TRUE(same_bytes(sa.forward(x), za));
  sa.load_state_dict(sb.state_dict());
  EXPECT_TRUE(same_bytes(sa.forward(x), zb));
}

// Cached vs uncached oneDNN int8 (the weights reordered on every call), best of 20. The thread
// count is the process's (OMP_NUM_THREADS; the reported figures use 2).
TEST(QWeightCache, Timing) {
  NoGradGuard ng;
  std::mt19937 gen(3);
  auto best_ms = [](const std::function<void()>& f) {
    for (int i = 0; i < 3; ++i) f();
    double best = 1e30;
    for (int i = 0; i < 20; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  {
    Tensor x = random_codes({256, 784}, DType::U8, gen), w = random_codes({512, 784}, DType::I8, gen);
    const kernels::Requant r = make_requant(512, 120, 128, 8.0f, gen);
    Tensor out = empty({256, 512}, TensorOptions(DType::U8));
    kernels::QWeightCache cache;
    const double plain = best_ms([&] { kernels::qlinear(out, x, w, Tensor(), r); });
    const double cached = best_ms([&] { kernels::qlinear(out, x, w, Tensor(), r, kernels::QGemmImpl::Auto, &cache); });
    std::printf("[timing] qlinear 256x784->512, %d thread(s), best of 20: uncached %.3f ms, cached %.3f ms "
                "(packs %llu)\n",
                omp_get_max_threads(), plain, cached, static_cast<unsigned long long>(cache.packs()));
  }
  {
    kernels::Conv2dParams p;
    Tensor x = random_codes({256, 32, 26, 26}, DType::U8, gen), w = random_codes({64, 32, 3, 3}, DType::I8, gen);
    const kernels::Requant r = make_requant(64, 120, 128, 8.0f, gen);
    Tensor out = empty({256, 64, 24, 24}, TensorOptions(DType::U8));
    kernels::QWeightCache cache;
    const double plain = best_ms([&] { kernels::qconv2d(out, x, w, Tensor(), p, r); });
    const double cached =
        best_ms([&] { kernels::qconv2d(out, x, w, Tensor(), p, r, kernels::QGemmImpl::Auto, &cache); });
    std::printf("[timing] qconv2d 256x32x26x26 -> 64, 3x3, %d thread(s), best of 20: uncached %.3f ms, cached "
                "%.3f ms (packs %llu)\n",
                omp_get_max_threads(), plain, cached, static_cast<unsigned long long>(cache.packs()));
  }
}

}  // namespace
}  // namespace mantissa
