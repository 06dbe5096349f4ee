// conv2d (cuDNN) and pooling on CUDA against the CPU kernels on the same rounded inputs:
// forward, input, weight and bias gradients over strides, padding, dilation, groups, 1x1 and
// batch 1 in F32/F16/BF16 (and F64); pools bit for bit, with ceil_mode, ties, NaN and -inf.
// Every case but one CPU-only check skips without a usable CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cuda_flags.h"
#include "core/kernels/conv.h"
#include "core/kernels/copy.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/pool.h"
#include "support/op_check.h"

namespace mantissa {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                         \
    if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason(); \
  } while (0)

// Values uniform in [-1, 1), rounded once to dtype on the CPU.
Tensor random_cpu(const Shape& shape, DType dtype, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(gen);
  Tensor t = empty(shape, TensorOptions(dtype));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

Tensor to_cuda(const Tensor& cpu) {
  Tensor d = empty(cpu.sizes(), TensorOptions(cpu.dtype()).device(kCUDA));
  kernels::copy(d, cpu);
  return d;
}

Tensor to_host(const Tensor& dev) {
  Tensor h = empty(dev.sizes(), TensorOptions(dev.dtype()));
  kernels::copy(h, dev);
  return h;
}

std::vector<double> values(const Tensor& t) { return to_vector<double>(t.is_cuda() ? to_host(t) : t); }

// GPU against CPU, both rounded once from F32 (F64) accumulations in another order: each side
// is within tolerance(dtype) of the exact value, so they may differ by twice that. The absolute
// part is relative to the largest reference magnitude (a convolution's outputs scale with its
// reduction length). F64 is held to 1e-10 so a double kernel computing through float fails.
void expect_close(const Tensor& got_dev, const Tensor& want_cpu, const std::string& what) {
  SCOPED_TRACE(what);
  const std::vector<double> got = values(got_dev), want = values(want_cpu);
  ASSERT_EQ(got.size(), want.size());
  const DType dt = want_cpu.dtype();
  const testing::Tolerance base = testing::tolerance(dt);
  const double rtol = dt == DType::F64 ? 1e-10 : 2 * base.rtol;
  const double atol = dt == DType::F64 ? 1e-10 : 2 * base.atol;
  double scale = 1.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    if (!(err <= rtol * std::abs(want[i]) + atol * scale)) {
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i] << " (" << dtype_name(dt) << ")";
      if (++reported == 5) return;
    }
  }
}

// Bit-for-bit equality (NaN equals NaN).
void expect_same(const Tensor& got_dev, const Tensor& want_cpu, const std::string& what) {
  SCOPED_TRACE(what);
  const std::vector<double> got = values(got_dev), want = values(want_cpu);
  ASSERT_EQ(got.size(), want.size());
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = (std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i];
    if (!same) {
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i];
      if (++reported == 5) return;
    }
  }
}

// ---- convolution -----------------------------------------------------------------------------

struct ConvCase {
  std::string name;
  int64_t n, c, h, w, o, kh, kw;
  kernels::Conv2dParams p;
  bool bias;
};

int64_t conv_out(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

kernels::Conv2dParams params(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  kernels::Conv2dParams p;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_h = ph;
  p.pad_w = pw;
  p.dilation_h = dh;
  p.dilation_w = dw;
  p.groups = groups;
  return p;
}

std::vector<ConvCase> conv_cases() {
  return {
      {"3x3_pad1_bias", 2, 3, 9, 9, 4, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
      {"3x3_stride2_nobias", 3, 4, 11, 10, 6, 3, 3, params(2, 2, 0, 0, 1, 1, 1), false},
      {"3x3_dilation2", 2, 3, 12, 12, 5, 3, 3, params(1, 1, 2, 2, 2, 2, 1), true},
      {"groups2", 2, 4, 8, 8, 6, 3, 3, params(1, 1, 1, 1, 1, 1, 2), true},
      {"depthwise_stride2", 2, 8, 10, 10, 8, 3, 3, params(2, 2, 1, 1, 1, 1, 8), false},
      {"1x1_bias", 2, 16, 7, 7, 8, 1, 1, params(1, 1, 0, 0, 1, 1, 1), true},
      {"1x1_stride2", 2, 6, 9, 9, 12, 1, 1, params(2, 2, 0, 0, 1, 1, 1), false},
      {"batch1_rect_mixed", 1, 5, 6, 13, 7, 2, 4, params(1, 2, 1, 0, 1, 2, 1), true},
      {"wide_reduction", 2, 64, 6, 6, 16, 3, 3, params(1, 1, 1, 1, 1, 1, 1), true},
  };
}

struct ConvRun {
  Tensor out, grad_x, grad_w, grad_b;
};

// One forward and both backward kernels on x, w, b, grad_out (all on one device).
ConvRun run_conv(const ConvCase& cc, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& go) {
  const TensorOptions opts = TensorOptions(x.dtype()).device(x.device());
  ConvRun r;
  r.out = empty(go.sizes(), opts);
  kernels::conv2d_forward(r.out, x, w, b, cc.p);
  r.grad_x = empty(x.sizes(), opts);
  kernels::conv2d_backward_input(r.grad_x, go, w, cc.p);
  r.grad_w = empty(w.sizes(), opts);
  r.grad_b = cc.bias ? empty({cc.o}, opts) : Tensor();
  kernels::conv2d_backward_weight(r.grad_w, r.grad_b, go, x, cc.p);
  return r;
}

void check_conv_case(const ConvCase& cc, DType dt) {
  SCOPED_TRACE(cc.name + " " + dtype_name(dt));
  const int64_t ho = conv_out(cc.h, cc.kh, cc.p.stride_h, cc.p.pad_h, cc.p.dilation_h);
  const int64_t wo = conv_out(cc.w, cc.kw, cc.p.stride_w, cc.p.pad_w, cc.p.dilation_w);
  const Tensor x = random_cpu({cc.n, cc.c, cc.h, cc.w}, dt, 1);
  const Tensor w = random_cpu({cc.o, cc.c / cc.p.groups, cc.kh, cc.kw}, dt, 2);
  const Tensor b = cc.bias ? random_cpu({cc.o}, dt, 3) : Tensor();
  const Tensor go = random_cpu({cc.n, cc.o, ho, wo}, dt, 4);
  const ConvRun cpu = run_conv(cc, x, w, b, go);
  const ConvRun gpu = run_conv(cc, to_cuda(x), to_cuda(w), cc.bias ? to_cuda(b) : Tensor(), to_cuda(go));
  expect_close(gpu.out, cpu.out, "forward");
  expect_close(gpu.grad_x, cpu.grad_x, "grad input");
  expect_close(gpu.grad_w, cpu.grad_w, "grad weight");
  if (cc.bias) expect_close(gpu.grad_b, cpu.grad_b, "grad bias");
}

TEST(CudaConv, MatchesCpuF32F16BF16) {
  SKIP_WITHOUT_CUDA();
  // F32 without TF32 must agree with the CPU to F32 rounding: a TF32 kernel (10-bit mantissa
  // inputs) would miss the tolerance by two orders of magnitude on the wide reduction.
  cuda::set_allow_tf32(false);
  for (const ConvCase& cc : conv_cases())
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) check_conv_case(cc, dt);
}

TEST(CudaConv, MatchesCpuF64) {
  SKIP_WITHOUT_CUDA();
  const std::vector<ConvCase> cases = conv_cases();
  for (const ConvCase& cc : {cases[0], cases[3], cases[7]}) check_conv_case(cc, DType::F64);
}

TEST(CudaConv, Tf32IsOptIn) {
  SKIP_WITHOUT_CUDA();
  // With TF32 allowed the F32 result is within TF32's error (inputs rounded to 10 bits:
  // ~2^-11 relative per product) of the CPU's; the plan is cached separately from the strict one.
  const ConvCase cc = conv_cases().back();
  const Tensor x = random_cpu({cc.n, cc.c, cc.h, cc.w}, DType::F32, 5);
  const Tensor w = random_cpu({cc.o, cc.c, cc.kh, cc.kw}, DType::F32, 6);
  const Tensor b = random_cpu({cc.o}, DType::F32, 7);
  Tensor want = empty({cc.n, cc.o, cc.h, cc.w}, TensorOptions(DType::F32));
  kernels::conv2d_forward(want, x, w, b, cc.p);
  cuda::set_allow_tf32(true);
  Tensor got = empty(want.sizes(), TensorOptions(DType::F32).device(kCUDA));
  kernels::conv2d_forward(got, to_cuda(x), to_cuda(w), to_cuda(b), cc.p);
  cuda::set_allow_tf32(false);
  const std::vector<double> g = values(got), e = values(want);
  double scale = 1.0, worst = 0.0;
  for (size_t i = 0; i < e.size(); ++i) {
    scale = std::max(scale, std::abs(e[i]));
    worst = std::max(worst, std::abs(g[i] - e[i]));
  }
  EXPECT_LE(worst, 5e-3 * scale);
  // And strict F32 again afterwards (a different cached plan).
  Tensor strict = empty(want.sizes(), TensorOptions(DType::F32).device(kCUDA));
  kernels::conv2d_forward(strict, to_cuda(x), to_cuda(w), to_cuda(b), cc.p);
  expect_close(strict, want, "strict F32 after TF32");
}

TEST(CudaConv, NonContiguousAndMisalignedOperands) {
  SKIP_WITHOUT_CUDA();
  const ConvCase cc = conv_cases()[0];
  const int64_t ho = 9, wo = 9;
  for (DType dt : {DType::F32, DType::F16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = random_cpu({cc.n, cc.c, cc.h, cc.w}, dt, 8);
    const Tensor w = random_cpu({cc.o, cc.c, cc.kh, cc.kw}, dt, 9);
    const Tensor b = random_cpu({cc.o}, dt, 10);
    Tensor want = empty({cc.n, cc.o, ho, wo}, TensorOptions(dt));
    kernels::conv2d_forward(want, x, w, b, cc.p);
    // x as a transposed view of a [N, C, W, H] copy: the kernel must pack it.
    Tensor xt_cpu = empty({cc.n, cc.c, cc.w, cc.h}, TensorOptions(dt));
    kernels::copy(xt_cpu, x.transpose(2, 3));
    const Tensor x_view = to_cuda(xt_cpu).transpose(2, 3);
    ASSERT_FALSE(x_view.is_contiguous());
    // The output as a contiguous view one image into a larger buffer: 4*9*9 = 324 elements,
    // an offset of 648 bytes in F16 (not 16-byte aligned) and 1296 in F32 (aligned).
    Tensor big = empty({cc.n + 1, cc.o, ho, wo}, TensorOptions(dt).device(kCUDA));
    Tensor out = big.narrow(0, 1, cc.n);
    ASSERT_TRUE(out.is_contiguous());
    kernels::conv2d_forward(out, x_view, to_cuda(w), to_cuda(b), cc.p);
    expect_close(out, want, "strided input, offset output");
    // A bias seen through a stride-2 view.
    Tensor b2_cpu = empty({cc.o, 2}, TensorOptions(dt));
    kernels::copy(b2_cpu.select(1, 0), b);
    kernels::copy(b2_cpu.select(1, 1), b);
    Tensor out2 = empty(want.sizes(), TensorOptions(dt).device(kCUDA));
    kernels::conv2d_forward(out2, to_cuda(x), to_cuda(w), to_cuda(b2_cpu).select(1, 1), cc.p);
    expect_close(out2, want, "strided bias");
  }
}

TEST(CudaConv, WeightGradientIsDeterministic) {
  SKIP_WITHOUT_CUDA();
  // Deterministic cuDNN algorithms are preferred: the same inputs give the same bits.
  const ConvCase cc = conv_cases()[8];
  for (DType dt : {DType::F32, DType::F16}) {
    const Tensor x = to_cuda(random_cpu({cc.n, cc.c, cc.h, cc.w}, dt, 11));
    const Tensor go = to_cuda(random_cpu({cc.n, cc.o, cc.h, cc.w}, dt, 12));
    const TensorOptions opts = TensorOptions(dt).device(kCUDA);
    Tensor w1 = empty({cc.o, cc.c, 3, 3}, opts), w2 = empty({cc.o, cc.c, 3, 3}, opts);
    Tensor b1 = empty({cc.o}, opts), b2 = empty({cc.o}, opts);
    Tensor x1 = empty(x.sizes(), opts), x2 = empty(x.sizes(), opts);
    kernels::conv2d_backward_weight(w1, b1, go, x, cc.p);
    kernels::conv2d_backward_weight(w2, b2, go, x, cc.p);
    kernels::conv2d_backward_input(x1, go, w1, cc.p);
    kernels::conv2d_backward_input(x2, go, w1, cc.p);
    expect_same(w2, to_host(w1), "grad weight twice");
    expect_same(b2, to_host(b1), "grad bias twice");
    expect_same(x2, to_host(x1), "grad input twice");
  }
}

TEST(CudaConv, EmptyBatchGivesZeroGradients) {
  SKIP_WITHOUT_CUDA();
  const kernels::Conv2dParams p = params(1, 1, 1, 1, 1, 1, 1);
  const TensorOptions opts = TensorOptions(DType::F32).device(kCUDA);
  const Tensor x = empty({0, 3, 5, 5}, opts), go = empty({0, 4, 5, 5}, opts);
  Tensor gw = full({4, 3, 3, 3}, 7.0, TensorOptions(DType::F32));
  Tensor gb = full({4}, 7.0, TensorOptions(DType::F32));
  Tensor gw_d = to_cuda(gw), gb_d = to_cuda(gb);
  kernels::conv2d_backward_weight(gw_d, gb_d, go, x, p);
  for (double v : values(gw_d)) EXPECT_EQ(v, 0.0);
  for (double v : values(gb_d)) EXPECT_EQ(v, 0.0);
}

TEST(CudaConv, MixedDevicesAreAnError) {
  SKIP_WITHOUT_CUDA();
  const kernels::Conv2dParams p = params(1, 1, 0, 0, 1, 1, 1);
  const Tensor x = random_cpu({1, 2, 4, 4}, DType::F32, 13), w = random_cpu({3, 2, 1, 1}, DType::F32, 14);
  Tensor out = empty({1, 3, 4, 4}, TensorOptions(DType::F32).device(kCUDA));
  EXPECT_THROW(kernels::conv2d_forward(out, x, to_cuda(w), Tensor(), p), Error);
  Tensor out_cpu = empty({1, 3, 4, 4}, TensorOptions(DType::F32));
  EXPECT_THROW(kernels::conv2d_forward(out_cpu, to_cuda(x), w, Tensor(), p), Error);
}

// ---- pooling ---------------------------------------------------------------------------------

// Values on a coarse grid (many ties), with NaN and -inf sprinkled in when asked.
Tensor pool_input(const Shape& shape, DType dt, uint32_t seed, bool specials) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> level(-4, 4);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = 0.25 * level(gen);
  if (specials && v.size() > 40) {
    v[3] = std::nan("");
    v[17] = -std::numeric_limits<double>::infinity();
    v[18] = -std::numeric_limits<double>::infinity();
    v[30] = std::nan("");
    v[31] = std::nan("");
  }
  Tensor t = empty(shape, TensorOptions(dt));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

kernels::Pool2dParams pool_params(int64_t k, int64_t s, int64_t pad, bool ceil, bool include_pad = true) {
  kernels::Pool2dParams p;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.pad_h = p.pad_w = pad;
  p.ceil_mode = ceil;
  p.count_include_pad = include_pad;
  return p;
}

struct PoolCase {
  std::string name;
  Shape x;
  kernels::Pool2dParams p;
};

std::vector<PoolCase> pool_cases() {
  return {
      {"2x2_s2_odd", {2, 3, 7, 9}, pool_params(2, 2, 0, false)},
      {"2x2_s2_ceil", {2, 3, 7, 9}, pool_params(2, 2, 0, true)},
      {"3x3_s2_p1", {2, 2, 11, 10}, pool_params(3, 2, 1, false)},
      {"3x3_s2_p1_ceil", {2, 2, 10, 11}, pool_params(3, 2, 1, true)},
      {"3x3_s1_p1_overlap", {1, 3, 6, 6}, pool_params(3, 1, 1, false)},
      {"3x3_s3_ceil_exclude_pad", {1, 2, 8, 8}, pool_params(3, 3, 1, true, false)},
      {"4x4_s2_p2_ceil_exclude_pad", {1, 2, 9, 7}, pool_params(4, 2, 2, true, false)},
  };
}

Shape pool_out(const Shape& x, const kernels::Pool2dParams& p) {
  return {x[0], x[1], kernels::pool_output_size(x[2], p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode),
          kernels::pool_output_size(x[3], p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode)};
}

TEST(CudaPool, MaxPoolMatchesCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  for (const PoolCase& pc : pool_cases()) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
      SCOPED_TRACE(pc.name + " " + dtype_name(dt));
      const Tensor x = pool_input(pc.x, dt, 21, true);
      const Shape os = pool_out(pc.x, pc.p);
      Tensor out = empty(os, TensorOptions(dt)), idx = empty(os, TensorOptions(DType::I64));
      kernels::max_pool2d_forward(out, idx, x, pc.p);
      const TensorOptions dev = TensorOptions(dt).device(kCUDA);
      Tensor out_d = empty(os, dev), idx_d = empty(os, TensorOptions(DType::I64).device(kCUDA));
      kernels::max_pool2d_forward(out_d, idx_d, to_cuda(x), pc.p);
      expect_same(out_d, out, "values");
      EXPECT_EQ(to_vector<int64_t>(to_host(idx_d)), to_vector<int64_t>(idx)) << "indices";

      const Tensor go = random_cpu(os, dt, 22);
      Tensor gx = empty(pc.x, TensorOptions(dt));
      kernels::max_pool2d_backward(gx, go, idx);
      // With the window parameters: a gather in the CPU's order, bit for bit.
      Tensor gx_gather = empty(pc.x, dev);
      kernels::max_pool2d_backward(gx_gather, to_cuda(go), idx_d, pc.p);
      expect_same(gx_gather, gx, "backward (gather)");
      // Argmax only: atomics, so three or more additions to one element may come in another order.
      Tensor gx_scatter = empty(pc.x, dev);
      kernels::max_pool2d_backward(gx_scatter, to_cuda(go), idx_d);
      expect_close(gx_scatter, gx, "backward (scatter)");
    }
  }
}

TEST(CudaPool, MaxPoolBackwardWithParamsMatchesArgmaxOnlyOnCpu) {
  // The overload taking the window parameters (for the CUDA gather) computes the same
  // gradient as the argmax-only one; on the CPU both run the same scatter.
  const PoolCase pc = pool_cases()[3];
  for (DType dt : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor x = pool_input(pc.x, dt, 23, true);
    const Shape os = pool_out(pc.x, pc.p);
    Tensor out = empty(os, TensorOptions(dt)), idx = empty(os, TensorOptions(DType::I64));
    kernels::max_pool2d_forward(out, idx, x, pc.p);
    const Tensor go = random_cpu(os, dt, 24);
    Tensor a = empty(pc.x, TensorOptions(dt)), b = empty(pc.x, TensorOptions(dt));
    kernels::max_pool2d_backward(a, go, idx);
    kernels::max_pool2d_backward(b, go, idx, pc.p);
    expect_same(b, a, "with parameters");
    double total = 0.0;
    for (double v : values(go)) total += v;
    double routed = 0.0;
    for (double v : values(a)) routed += v;
    EXPECT_NEAR(routed, total, 1e-2 * static_cast<double>(os[0] * os[1] * os[2] * os[3])) << "every gradient routed";
  }
}

TEST(CudaPool, AvgPoolMatchesCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  for (const PoolCase& pc : pool_cases()) {
    for (bool include_pad : {true, false}) {
      kernels::Pool2dParams p = pc.p;
      p.count_include_pad = include_pad;
      for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
        SCOPED_TRACE(pc.name + (include_pad ? " include_pad " : " exclude_pad ") + dtype_name(dt));
        const Tensor x = random_cpu(pc.x, dt, 31);
        const Shape os = pool_out(pc.x, p);
        Tensor out = empty(os, TensorOptions(dt));
        kernels::avg_pool2d_forward(out, x, p);
        Tensor out_d = empty(os, TensorOptions(dt).device(kCUDA));
        kernels::avg_pool2d_forward(out_d, to_cuda(x), p);
        expect_same(out_d, out, "forward");
        const Tensor go = random_cpu(os, dt, 32);
        Tensor gx = empty(pc.x, TensorOptions(dt));
        kernels::avg_pool2d_backward(gx, go, p);
        Tensor gx_d = empty(pc.x, TensorOptions(dt).device(kCUDA));
        kernels::avg_pool2d_backward(gx_d, to_cuda(go), p);
        expect_same(gx_d, gx, "backward");
      }
    }
  }
}

TEST(CudaPool, AdaptiveAvgPoolMatchesCpuBitForBit) {
  SKIP_WITHOUT_CUDA();
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{2, 3, 10, 7}, {3, 4}}, {{1, 2, 5, 5}, {5, 5}}, {{2, 2, 7, 9}, {1, 1}}, {{1, 3, 4, 4}, {6, 5}}};
  for (const auto& [xs, hw] : cases) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
      SCOPED_TRACE(shape_str(xs) + " -> " + shape_str(hw) + " " + dtype_name(dt));
      const Shape os{xs[0], xs[1], hw[0], hw[1]};
      const Tensor x = random_cpu(xs, dt, 41);
      Tensor out = empty(os, TensorOptions(dt));
      kernels::adaptive_avg_pool2d_forward(out, x);
      Tensor out_d = empty(os, TensorOptions(dt).device(kCUDA));
      kernels::adaptive_avg_pool2d_forward(out_d, to_cuda(x));
      expect_same(out_d, out, "forward");
      const Tensor go = random_cpu(os, dt, 42);
      Tensor gx = empty(xs, TensorOptions(dt));
      kernels::adaptive_avg_pool2d_backward(gx, go);
      Tensor gx_d = empty(xs, TensorOptions(dt).device(kCUDA));
      kernels::adaptive_avg_pool2d_backward(gx_d, to_cuda(go));
      expect_same(gx_d, gx, "backward");
    }
  }
}

TEST(CudaPool, StridedInputs) {
  SKIP_WITHOUT_CUDA();
  // The pools read x and grad_out through their strides (no packing copy).
  const kernels::Pool2dParams p = pool_params(3, 2, 1, true);
  const Shape xs{2, 3, 9, 8};
  const Tensor x = pool_input(xs, DType::F32, 51, false);
  Tensor xt = empty({2, 3, 8, 9}, TensorOptions(DType::F32));
  kernels::copy(xt, x.transpose(2, 3));
  const Tensor x_view = to_cuda(xt).transpose(2, 3);
  const Shape os = pool_out(xs, p);
  Tensor out = empty(os, TensorOptions(DType::F32)), idx = empty(os, TensorOptions(DType::I64));
  kernels::max_pool2d_forward(out, idx, x, p);
  Tensor out_d = empty(os, TensorOptions(DType::F32).device(kCUDA));
  Tensor idx_d = empty(os, TensorOptions(DType::I64).device(kCUDA));
  kernels::max_pool2d_forward(out_d, idx_d, x_view, p);
  expect_same(out_d, out, "max values");
  EXPECT_EQ(to_vector<int64_t>(to_host(idx_d)), to_vector<int64_t>(idx));
  Tensor avg = empty(os, TensorOptions(DType::F32));
  kernels::avg_pool2d_forward(avg, x, p);
  Tensor avg_d = empty(os, TensorOptions(DType::F32).device(kCUDA));
  kernels::avg_pool2d_forward(avg_d, x_view, p);
  expect_same(avg_d, avg, "avg values");
}

}  // namespace
}  // namespace mantissa
