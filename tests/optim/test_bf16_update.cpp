// Pure BF16 training: SGD/Adam/AdamW on BF16 parameters with BF16 state, the update computed in
// F32 and written back by round-to-nearest, stochastic rounding or Kahan compensation. Tiny
// updates vanish, survive on average, or accumulate; stochastic rounding is reproducible; and
// the CUDA kernels match the CPU ones bit for bit (skipped without a GPU).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/optim_math.h"
#include "optim/optim.h"

namespace mantissa::optim {
namespace {

using kernels::UpdateRounding;

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

Tensor bf16(const std::vector<float>& v) { return from_vector(v, {static_cast<int64_t>(v.size())}).to(DType::BF16); }
std::vector<float> floats(const Tensor& t) { return to_vector<float>(t.to(DType::F32)); }

// Values in [lo, hi) that are exact BF16 numbers (draws that round up to hi are redrawn: hi
// may start a binade with twice the ulp).
std::vector<float> bf16_values(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = static_cast<float>(BFloat16(d(rng)));
    while (x >= hi);
  }
  return v;
}

// The spacing of BF16 numbers at x (8 significant bits).
double bf16_ulp(double x) { return std::ldexp(1.0, std::ilogb(x) - 7); }

// ---- the write-back rules ------------------------------------------------------------------

TEST(PureBF16, StochasticRoundingBitRule) {
  using kernels::optim_math::float_to_bf16_bits_stochastic;
  const float x = 1.0f + 0x1p-10f;  // between 1 and 1 + 2^-7, an eighth of the way up
  EXPECT_EQ(float_to_bf16_bits_stochastic(x, 0), BFloat16(1.0f).bits);
  EXPECT_EQ(float_to_bf16_bits_stochastic(x, 0xdfff), BFloat16(1.0f).bits);           // 0xdfff + 0x2000 < 2^16
  EXPECT_EQ(float_to_bf16_bits_stochastic(x, 0xe000), BFloat16(1.0f + 0x1p-7f).bits);  // carries
  EXPECT_EQ(float_to_bf16_bits_stochastic(-x, 0xe000), BFloat16(-1.0f - 0x1p-7f).bits);  // magnitude up
  // Exact BF16 values never move, whatever the random bits.
  for (uint32_t r : {0u, 1u, 0x8000u, 0xffffu}) {
    EXPECT_EQ(float_to_bf16_bits_stochastic(1.5f, r), BFloat16(1.5f).bits);
    EXPECT_EQ(float_to_bf16_bits_stochastic(-0.0f, r), BFloat16(-0.0f).bits);
  }
  EXPECT_EQ(float_to_bf16_bits_stochastic(INFINITY, 0xffff), BFloat16(INFINITY).bits);
  EXPECT_EQ(float_to_bf16_bits_stochastic(-INFINITY, 0xffff), BFloat16(-INFINITY).bits);
  EXPECT_TRUE(is_nan(BFloat16::from_bits(float_to_bf16_bits_stochastic(NAN, 0xffff))));
  // Just below the largest BF16 value's upper neighbour: rounding up overflows to Inf, as it should.
  const float big = std::nextafter(0x1.fep127f, INFINITY);
  EXPECT_EQ(float_to_bf16_bits_stochastic(big, 0xffff), BFloat16(INFINITY).bits);
  EXPECT_EQ(float_to_bf16_bits_stochastic(big, 0), BFloat16(0x1.fep127f).bits);
}

TEST(PureBF16, KahanStoreKeepsTheResidual) {
  uint16_t p = 0, c = 0;
  kernels::optim_math::kahan_store(1.0f, 1.0f + 0x1p-10f, 0.0f, p, c);
  EXPECT_EQ(p, BFloat16(1.0f).bits);
  EXPECT_EQ(bf16_bits_to_float(c), 0x1p-10f);
  kernels::optim_math::kahan_store(1.0f, 1.0f + 0x1p-10f * 5, 0x1p-10f * 3, p, c);  // 8/1024: one ulp
  EXPECT_EQ(p, BFloat16(1.0f + 0x1p-7f).bits);
  EXPECT_EQ(bf16_bits_to_float(c), 0.0f);
}

// ---- tiny updates: lost, unbiased, accumulated --------------------------------------------

// SGD (lr 1) with gradient -2^-10 on weights in [1, 2): an update of 2^-10, an eighth of an ulp.
struct TinySgd {
  static constexpr float kUpdate = 0x1p-10f;
  std::vector<float> w0;
  Tensor w;
  std::unique_ptr<SGD> opt;
  TinySgd(size_t n, UpdateRounding r, uint64_t seed = 7) {
    w0 = bf16_values(n, 1.0f, 2.0f, 11);
    w = bf16(w0).requires_grad_();
    opt = std::make_unique<SGD>(std::vector<Tensor>{w}, SGDOptions(1.0));
    opt->set_update_rounding(r, seed);
  }
  void step() {
    w.set_grad(full({static_cast<int64_t>(w0.size())}, -kUpdate, DType::BF16));
    opt->step();
  }
};

TEST(PureBF16, NearestLosesAnUpdateBelowHalfAnUlp) {
  TinySgd s(4096, UpdateRounding::Nearest);
  for (int i = 0; i < 20; ++i) s.step();
  EXPECT_EQ(floats(s.w), s.w0) << "20 updates of 2^-10 on weights in [1, 2) round away every time";
}

TEST(PureBF16, StochasticRoundingIsUnbiased) {
  const size_t n = 65536;
  TinySgd s(n, UpdateRounding::Stochastic);
  s.step();
  const std::vector<float> w = floats(s.w);
  double sum = 0.0;
  size_t up = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(w[i]) - s.w0[i];
    ASSERT_TRUE(d == 0.0 || d == 0x1p-7) << "element " << i << " moved by " << d << ": not a neighbour";
    sum += d;
    up += d != 0.0;
  }
  // Each element rounds up with probability 1/8: the mean update is 2^-10 with standard error
  // 2^-7 sqrt(p(1-p)/n).
  const double p = 0.125, sigma = 0x1p-7 * std::sqrt(p * (1 - p) / static_cast<double>(n));
  EXPECT_NEAR(sum / static_cast<double>(n), TinySgd::kUpdate, 4 * sigma);
  EXPECT_NEAR(static_cast<double>(up) / static_cast<double>(n), p, 4 * std::sqrt(p * (1 - p) / static_cast<double>(n)));
}

TEST(PureBF16, KahanAccumulatesTinyUpdates) {
  TinySgd s(1024, UpdateRounding::Kahan);
  for (int k = 1; k <= 64; ++k) {
    s.step();
    const std::vector<float> w = floats(s.w);
    const std::vector<float> c = floats(s.opt->state(s.w)->compensation);
    for (size_t i = 0; i < w.size(); ++i) {
      // Every quantity is a multiple of 2^-10 here, so weight + residual is the exact sum.
      ASSERT_EQ(static_cast<double>(w[i]) + c[i], static_cast<double>(s.w0[i]) + k * 0x1p-10) << "step " << k;
      ASSERT_LE(std::fabs(c[i]), 0.5 * bf16_ulp(w[i])) << "the residual stays within half an ulp";
    }
  }
  EXPECT_EQ(s.opt->state(s.w)->compensation.dtype(), DType::BF16);
}

// Adam on 4096 weights in [0.5, 1) (ulp 2^-8) for 200 steps of about lr = 1e-4 each, with
// gradients of a fixed sign per element: the F32 trajectory moves ~5 ulps, every single update
// is under half an ulp.
struct AdamRun {
  std::vector<float> w;
  std::vector<Tensor> state;  // exp_avg, exp_avg_sq
};

AdamRun run_adam(DType dtype, std::optional<UpdateRounding> r, int steps, bool adamw = false) {
  const size_t n = 4096;
  const std::vector<float> w0 = bf16_values(n, 0.5f, 1.0f, 3);
  Tensor w = from_vector(w0, {static_cast<int64_t>(n)}).to(dtype).requires_grad_();
  std::unique_ptr<Optimizer> opt;
  if (adamw) opt = std::make_unique<AdamW>(std::vector<Tensor>{w}, AdamWOptions(1e-4).weight_decay(0.1));
  else opt = std::make_unique<Adam>(std::vector<Tensor>{w}, AdamOptions(1e-4));
  if (r) opt->set_update_rounding(*r, 123);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> noise(-0.5f, 0.5f);
  for (int t = 0; t < steps; ++t) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = static_cast<float>(BFloat16((i % 2 ? 1.0f : -1.0f) * (1.0f + noise(rng))));
    w.set_grad(from_vector(g, {static_cast<int64_t>(n)}).to(dtype));
    opt->step();
  }
  return {floats(w), {opt->state(w)->exp_avg, opt->state(w)->exp_avg_sq}};
}

TEST(PureBF16, AdamTrajectoriesAgainstF32) {
  for (bool adamw : {false, true}) {
    SCOPED_TRACE(adamw ? "AdamW" : "Adam");
    const int steps = 200;
    const std::vector<float> w0 = bf16_values(4096, 0.5f, 1.0f, 3);
    const AdamRun ref = run_adam(DType::F32, std::nullopt, steps, adamw);
    const AdamRun nearest = run_adam(DType::BF16, UpdateRounding::Nearest, steps, adamw);
    const AdamRun sr = run_adam(DType::BF16, UpdateRounding::Stochastic, steps, adamw);
    const AdamRun kahan = run_adam(DType::BF16, UpdateRounding::Kahan, steps, adamw);
    EXPECT_EQ(sr.state[0].dtype(), DType::BF16);
    EXPECT_EQ(sr.state[1].dtype(), DType::BF16);
    const double ulp = 0x1p-8;  // in [0.5, 1), where the weights start
    double moved = 0, kahan_max = 0, sr_mean = 0, sr_abs = 0, nearest_moved = 0;
    for (size_t i = 0; i < w0.size(); ++i) {
      moved += std::fabs(ref.w[i] - w0[i]);
      nearest_moved += std::fabs(nearest.w[i] - w0[i]);
      // In ulps of the larger value: a weight may have crossed into [1, 2).
      const double scale = bf16_ulp(std::max(std::fabs(kahan.w[i]), std::fabs(ref.w[i]))) / ulp;
      kahan_max = std::max(kahan_max, std::fabs(static_cast<double>(kahan.w[i]) - ref.w[i]) / scale);
      sr_mean += static_cast<double>(sr.w[i]) - ref.w[i];
      sr_abs += std::fabs(static_cast<double>(sr.w[i]) - ref.w[i]);
    }
    const double n = static_cast<double>(w0.size());
    const std::string tag = adamw ? "adamw_" : "adam_";
    ::testing::Test::RecordProperty(tag + "f32_moved_ulps", std::to_string(moved / n / ulp));
    ::testing::Test::RecordProperty(tag + "kahan_max_err_ulps", std::to_string(kahan_max / ulp));
    ::testing::Test::RecordProperty(tag + "sr_mean_err_ulps", std::to_string(sr_mean / n / ulp));
    ::testing::Test::RecordProperty(tag + "sr_mean_abs_err_ulps", std::to_string(sr_abs / n / ulp));
    EXPECT_GT(moved / n, 4 * ulp) << "the F32 run moves several ulps";
    EXPECT_EQ(nearest_moved, 0.0) << "round-to-nearest loses every update";
    EXPECT_LE(kahan_max, ulp) << "Kahan stays within one ulp of the F32 trajectory";
    // Stochastic rounding random-walks around the F32 trajectory: unbiased on average (standard
    // error ~0.04 ulp here), a few ulps per element at most.
    EXPECT_LE(std::fabs(sr_mean / n), 0.25 * ulp);
    EXPECT_LE(sr_abs / n, 4 * ulp);
  }
}

// ---- reproducibility ---------------------------------------------------------------------

std::vector<float> sr_run(size_t n, uint64_t seed, int threads, int steps) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const std::vector<float> w0 = bf16_values(n, -1.0f, 1.0f, 9);
  Tensor w = bf16(w0).requires_grad_();
  Adam opt({w}, AdamOptions(1e-3).amsgrad(true));
  opt.set_update_rounding(UpdateRounding::Stochastic, seed);
  for (int t = 0; t < steps; ++t) {
    w.set_grad(bf16(bf16_values(n, -1.0f, 1.0f, 100 + t)));
    opt.step();
  }
  omp_set_num_threads(saved);
  return floats(w);
}

TEST(PureBF16, StochasticRoundingIsDeterministic) {
  const size_t n = 40000;  // several thread chunks
  const std::vector<float> a = sr_run(n, 42, 2, 3);
  EXPECT_EQ(a, sr_run(n, 42, 2, 3)) << "same seed: same bits";
  EXPECT_EQ(a, sr_run(n, 42, 1, 3)) << "the thread count does not change the stream";
  EXPECT_NE(a, sr_run(n, 43, 2, 3)) << "another seed rounds differently";
}

OptimizerStateDict deep_copy(const OptimizerStateDict& sd) {
  OptimizerStateDict out = sd;
  for (auto& [name, t] : out.tensors) t = t.clone();
  return out;
}

TEST(PureBF16, ResumedRunRoundsTheSame) {
  for (UpdateRounding r : {UpdateRounding::Stochastic, UpdateRounding::Kahan}) {
    SCOPED_TRACE(kernels::update_rounding_name(r));
    const size_t n = 3000;
    auto grad = [&](int t) { return bf16(bf16_values(n, -1.0f, 1.0f, 500 + t)); };
    Tensor w = bf16(bf16_values(n, -1.0f, 1.0f, 1)).requires_grad_();
    SGD opt({w}, SGDOptions(0.01).momentum(0.9).weight_decay(1e-3));
    opt.set_update_rounding(r, 99);
    Tensor saved_w;
    OptimizerStateDict saved;
    for (int t = 0; t < 10; ++t) {
      if (t == 5) {
        saved_w = w.detach().clone();
        saved = deep_copy(opt.state_dict());
      }
      w.set_grad(grad(t));
      opt.step();
    }
    Tensor w2 = saved_w.requires_grad_();
    SGD opt2({w2}, SGDOptions(0.01).momentum(0.9).weight_decay(1e-3));
    opt2.set_update_rounding(r, 99);
    opt2.load_state_dict(saved);
    for (int t = 5; t < 10; ++t) {
      w2.set_grad(grad(t));
      opt2.step();
    }
    EXPECT_EQ(floats(w2), floats(w));
    EXPECT_EQ(floats(opt2.state(w2)->momentum_buffer), floats(opt.state(w)->momentum_buffer));
  }
}

TEST(PureBF16, StateDictRecordsTheRounding) {
  Tensor w = bf16({1, 2, 3}).requires_grad_();
  Adam opt({w});
  opt.set_update_rounding(UpdateRounding::Kahan);
  w.set_grad(bf16({0.5f, -0.5f, 0.25f}));
  opt.step();
  const OptimizerStateDict sd = opt.state_dict();
  EXPECT_EQ(sd.metadata.at("update_rounding"), "kahan");
  bool has_comp = false;
  for (const auto& [name, t] : sd.tensors) has_comp = has_comp || (name == "state.0.compensation" && t.dtype() == DType::BF16);
  EXPECT_TRUE(has_comp);

  Tensor v = bf16({1, 2, 3}).requires_grad_();
  Adam other({v});
  other.set_update_rounding(UpdateRounding::Stochastic, 5);
  expect_error([&] { other.load_state_dict(sd); },
               "saved with update rounding kahan but this optimizer has stochastic seed 5");
  Adam plain({v});
  expect_error([&] { plain.load_state_dict(sd); }, "saved with update rounding kahan but this optimizer has none");
  Adam same({v});
  same.set_update_rounding(UpdateRounding::Kahan);
  same.load_state_dict(sd);
  EXPECT_EQ(floats(same.state(v)->compensation), floats(opt.state(w)->compensation));
}

TEST(PureBF16, NeedsAnExplicitRounding) {
  Tensor w = bf16({1, 2}).requires_grad_();
  SGD opt({w}, SGDOptions(0.1));
  w.set_grad(bf16({1, 1}));
  expect_error([&] { opt.step(); }, "has dtype BF16; F16/BF16 parameters need an FP32 master-weight policy");
  expect_error([&] { opt.step(); }, "set_update_rounding");
  // F16 has no pure policy (its 5-bit exponent cannot hold small updates and moments).
  Tensor h = ones({2}, DType::F16).requires_grad_();
  SGD hopt({h}, SGDOptions(0.1));
  hopt.set_update_rounding(UpdateRounding::Nearest);
  h.set_grad(ones({2}, DType::F16));
  expect_error([&] { hopt.step(); }, "has dtype F16; F16/BF16 parameters need an FP32 master-weight policy");
  // Once set, F32 parameters in the same optimizer are unaffected.
  Tensor f = ones({2}).requires_grad_();
  SGD mixed({f, w}, SGDOptions(0.5));
  mixed.set_update_rounding(UpdateRounding::Stochastic, 1);
  f.set_grad(ones({2}));
  mixed.step();
  EXPECT_EQ(to_vector<float>(f), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_EQ(floats(w), (std::vector<float>{0.5f, 1.5f}));
}

// The 8-lane body and the scalar tail give the same bits: one 37-element tensor (vector body +
// tail) against 37 one-element tensors (tail only). Stochastic rounding keys its bits by the
// element's position, so it is compared through CUDA below instead.
TEST(PureBF16, VectorAndScalarPathsAgree) {
  for (UpdateRounding r : {UpdateRounding::Nearest, UpdateRounding::Kahan}) {
    for (int which = 0; which < 2; ++which) {
      SCOPED_TRACE(std::string(kernels::update_rounding_name(r)) + (which ? " AdamW amsgrad" : " SGD nesterov"));
      const std::vector<float> w0 = bf16_values(37, -1.0f, 1.0f, 61);
      Tensor whole = bf16(w0).requires_grad_();
      std::vector<Tensor> singles;
      for (float v : w0) singles.push_back(bf16({v}).requires_grad_());
      auto make = [&](std::vector<Tensor> ps) -> std::unique_ptr<Optimizer> {
        std::unique_ptr<Optimizer> o;
        if (which) o = std::make_unique<AdamW>(ps, AdamWOptions(1e-2).amsgrad(true));
        else o = std::make_unique<SGD>(ps, SGDOptions(0.03).momentum(0.9).nesterov(true).weight_decay(0.01));
        o->set_update_rounding(r, 3);
        return o;
      };
      auto a = make({whole});
      auto b = make(singles);
      for (int t = 0; t < 4; ++t) {
        const std::vector<float> g = bf16_values(37, -1.0f, 1.0f, 70 + t);
        whole.set_grad(bf16(g));
        for (size_t i = 0; i < g.size(); ++i) singles[i].set_grad(bf16({g[i]}));
        a->step();
        b->step();
      }
      const std::vector<float> got = floats(whole);
      for (size_t i = 0; i < w0.size(); ++i) ASSERT_EQ(got[i], floats(singles[i])[0]) << "element " << i;
    }
  }
}

// ---- CUDA against the CPU ------------------------------------------------------------------

struct StepCase {
  std::string name;
  std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)> make;
};

std::vector<StepCase> step_cases() {
  return {
      {"sgd", [](std::vector<Tensor> p) { return std::make_unique<SGD>(p, SGDOptions(0.05)); }},
      {"sgd_nesterov_wd",
       [](std::vector<Tensor> p) {
         return std::make_unique<SGD>(p, SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-2));
       }},
      {"adam_amsgrad", [](std::vector<Tensor> p) { return std::make_unique<Adam>(p, AdamOptions(1e-2).amsgrad(true)); }},
      {"adamw", [](std::vector<Tensor> p) { return std::make_unique<AdamW>(p, AdamWOptions(1e-2)); }},
  };
}

// The same steps on the CPU and on CUDA must give the same bits for F32, F64 and BF16 under
// every rounding mode (the CUDA kernels do each operation in the CPU's order and rounding).
TEST(OptimStepCuda, MatchesCpuBitForBit) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  struct Mode {
    DType dtype;
    std::optional<UpdateRounding> r;
  };
  const std::vector<Mode> modes = {{DType::F32, std::nullopt},
                                   {DType::F64, std::nullopt},
                                   {DType::BF16, UpdateRounding::Nearest},
                                   {DType::BF16, UpdateRounding::Stochastic},
                                   {DType::BF16, UpdateRounding::Kahan}};
  const std::vector<int64_t> sizes = {1, 7, 1000, 70001};  // odd sizes: tails of every kernel
  for (const StepCase& c : step_cases()) {
    for (const Mode& m : modes) {
      SCOPED_TRACE(c.name + " " + dtype_name(m.dtype) + (m.r ? std::string(" ") + kernels::update_rounding_name(*m.r) : ""));
      std::vector<Tensor> cpu, dev;
      for (size_t k = 0; k < sizes.size(); ++k) {
        Tensor init = from_vector(bf16_values(static_cast<size_t>(sizes[k]), -1.0f, 1.0f, 20 + k), {sizes[k]}).to(m.dtype);
        cpu.push_back(init.clone().requires_grad_());
        dev.push_back(init.to(kCUDA).requires_grad_());
      }
      auto opt_cpu = c.make(cpu), opt_dev = c.make(dev);
      if (m.r) {
        opt_cpu->set_update_rounding(*m.r, 77);
        opt_dev->set_update_rounding(*m.r, 77);
      }
      for (int t = 0; t < 3; ++t) {
        for (size_t k = 0; k < sizes.size(); ++k) {
          Tensor g = from_vector(bf16_values(static_cast<size_t>(sizes[k]), -2.0f, 2.0f, 40 + t * 10 + k), {sizes[k]}).to(m.dtype);
          cpu[k].set_grad(g);
          dev[k].set_grad(g.to(kCUDA));
        }
        opt_cpu->step();
        opt_dev->step();
      }
      for (size_t k = 0; k < sizes.size(); ++k) {
        EXPECT_EQ(to_vector<double>(dev[k].cpu().to(DType::F64)), to_vector<double>(cpu[k].to(DType::F64)))
            << "parameter " << k;
      }
    }
  }
}

TEST(OptimStepCuda, WidenUnscaleAndRoundMatchCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  for (DType src : {DType::F16, DType::BF16, DType::F32}) {
    SCOPED_TRACE(dtype_name(src));
    std::vector<float> v = bf16_values(5003, -3.0f, 3.0f, 8);
    Tensor g = from_vector(v, {5003}).to(src);
    Tensor out_cpu = empty({5003}), out_dev = empty({5003}, kCUDA);
    Tensor flag_cpu = zeros({1}), flag_dev = zeros({1}, kCUDA);
    Tensor g_dev = g.to(kCUDA);
    const kernels::CastSlot sc{g.data_ptr(), out_cpu.data_ptr(), 5003};
    const kernels::CastSlot sd{g_dev.data_ptr(), out_dev.data_ptr(), 5003};
    kernels::widen_unscale_grads(kCPU, src, std::span(&sc, 1), 0.125f, flag_cpu);
    kernels::widen_unscale_grads(kCUDA, src, std::span(&sd, 1), 0.125f, flag_dev);
    EXPECT_EQ(to_vector<float>(out_dev.cpu()), to_vector<float>(out_cpu));
    EXPECT_EQ(to_vector<float>(flag_dev.cpu())[0], 0.0f);
    // One NaN anywhere raises the device flag.
    v[4000] = NAN;
    Tensor bad = from_vector(v, {5003}).to(src).to(kCUDA);
    const kernels::CastSlot sb{bad.data_ptr(), out_dev.data_ptr(), 5003};
    kernels::widen_unscale_grads(kCUDA, src, std::span(&sb, 1), 1.0f, flag_dev);
    EXPECT_EQ(to_vector<float>(flag_dev.cpu())[0], 1.0f);
  }
  for (DType dst : {DType::F16, DType::BF16}) {
    Tensor m = randn({4099});
    Tensor w_dev = empty({4099}, TensorOptions(dst).device(kCUDA));
    Tensor m_dev = m.to(kCUDA);
    const kernels::CastSlot s{m_dev.data_ptr(), w_dev.data_ptr(), 4099};
    kernels::round_masters(kCUDA, dst, std::span(&s, 1));
    EXPECT_EQ(to_vector<float>(w_dev.cpu().to(DType::F32)), to_vector<float>(m.to(dst).to(DType::F32)));
  }
}

}  // namespace
}  // namespace mantissa::optim
