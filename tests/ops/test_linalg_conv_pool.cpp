// Specific tests for matmul/linear, conv2d and pooling beyond the op table: error messages,
// the 16-bit rounding contract (F32 accumulation, one rounding), larger problems through the
// oneDNN paths against double references, pooling edge cases, empty batches, PyTorch goldens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>

#include "autograd/ops.h"
#include "core/generator.h"
#include "ops/rows_linalg_conv_pool.h"

namespace mantissa {
namespace {

namespace R = testing::linalg_ref;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Tensor randn64(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, TensorOptions(DType::F64), &g);
}

// Position of a 16-bit float on the number line, so neighbours differ by one.
int32_t ordered(uint16_t bits) {
  return (bits & 0x8000u) ? -static_cast<int32_t>(bits & 0x7fffu) : static_cast<int32_t>(bits);
}

template <typename T>
uint16_t bits_of(T v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}

// A 16-bit result that is "an F32 sum of the exact 16-bit products, rounded once": within one
// ulp of the double reference rounded once (accumulation order can cross a rounding boundary),
// or, where the sum cancels, within half an ulp plus the F32 accumulation error k u sum|ab|.
template <typename T>
void expect_rounded_once(const Tensor& actual, const Tensor& ref64, const Tensor& abs_bound, double k,
                         const std::string& what) {
  ASSERT_EQ(actual.sizes(), ref64.sizes()) << what;
  const Tensor a = actual.contiguous();
  const std::vector<double> r = to_vector<double>(ref64), bound = to_vector<double>(abs_bound);
  const T* p = a.data<T>();
  for (size_t i = 0; i < r.size(); ++i) {
    const int d = std::abs(ordered(bits_of(p[i])) - ordered(bits_of(T(r[i]))));
    if (d <= 1) continue;
    const double v = static_cast<float>(p[i]);
    const double half_ulp = std::fabs(v - static_cast<float>(T::from_bits(static_cast<uint16_t>(bits_of(p[i]) + 1)))) / 2;
    const double allowed = half_ulp + k * std::ldexp(1.0, -24) * bound[i];
    if (std::fabs(v - r[i]) > allowed) {
      ADD_FAILURE() << what << ": element " << i << " is " << v << ", reference " << r[i] << " rounds to "
                    << static_cast<float>(T(r[i])) << " (" << d << " ulps apart, allowed error " << allowed << ")";
      return;
    }
  }
}

// |actual - ref| <= tol * scale elementwise, scale = sum_k |a_ik||b_kj| style bounds given as a tensor.
void expect_bounded(const Tensor& actual, const Tensor& ref, const Tensor& bound, double tol, const std::string& what) {
  ASSERT_EQ(actual.sizes(), ref.sizes()) << what;
  const auto a = to_vector<double>(actual), r = to_vector<double>(ref), b = to_vector<double>(bound);
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - r[i]) <= tol * b[i] + 1e-30)) {
      ADD_FAILURE() << what << ": element " << i << " is " << a[i] << ", expected " << r[i] << " (bound "
                    << tol * b[i] << ")";
      return;
    }
  }
}

Tensor abs_values(const Tensor& t) {
  auto v = to_vector<double>(t);
  for (double& x : v) x = std::fabs(x);
  return from_vector(v, t.sizes(), DType::F64);
}

// ---- errors -----------------------------------------------------------------------------------

TEST(LinalgErrors, ShapeMessages) {
  EXPECT_EQ(error_of([] { matmul(zeros({64, 784}), zeros({512, 784})); }),
            "matmul: shapes [64, 784] and [512, 784] cannot be multiplied (784 != 512)");
  EXPECT_EQ(error_of([] { mm(zeros({2, 3}), zeros({4, 5})); }),
            "mm: shapes [2, 3] and [4, 5] cannot be multiplied (3 != 4)");
  EXPECT_NE(error_of([] { mm(zeros({2, 3, 1}), zeros({1, 5})); }).find("mm: expected two 2-D tensors"),
            std::string::npos);
  EXPECT_NE(error_of([] { bmm(zeros({2, 3, 4}), zeros({3, 4, 5})); }).find("bmm: batch sizes differ"),
            std::string::npos);
  EXPECT_NE(error_of([] { matmul(zeros({2, 3, 4}), zeros({5, 4, 2})); }).find("matmul: batch dimensions [2] and [5]"),
            std::string::npos);
  EXPECT_NE(error_of([] { matmul(zeros({}), zeros({3})); }).find("at least 1 dimension"), std::string::npos);
  EXPECT_EQ(error_of([] { linear(zeros({64, 780}), zeros({512, 784})); }),
            "linear: input [64, 780] does not match weight [512, 784] (in_features 784)");
  EXPECT_EQ(error_of([] { linear(zeros({64, 784}), zeros({512, 784}), zeros({10})); }),
            "linear: bias [10] does not match weight [512, 784] (out_features 512)");
}

TEST(LinalgErrors, DtypeMismatchNamesBothDtypes) {
  const std::string msg = error_of([] { matmul(zeros({2, 3}), zeros({3, 2}, DType::F16)); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("F32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("F16"), std::string::npos) << msg;
  const std::string lin = error_of([] { linear(zeros({2, 3}, DType::BF16), zeros({4, 3})); });
  EXPECT_NE(lin.find("BF16"), std::string::npos) << lin;
  EXPECT_NE(lin.find("F32"), std::string::npos) << lin;
  const std::string ints = error_of([] { mm(zeros({2, 3}, DType::I64), zeros({3, 2}, DType::I64)); });
  EXPECT_NE(ints.find("dtype I64 is not supported"), std::string::npos) << ints;
  EXPECT_NE(error_of([] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 2, 2}, DType::F64)); }).find("F64"),
            std::string::npos);
}

TEST(ConvErrors, ArgumentChecks) {
  Conv2dOptions g3;
  g3.groups = 3;
  EXPECT_NE(error_of([&] { conv2d(zeros({1, 4, 5, 5}), zeros({3, 1, 3, 3}), Tensor(), g3); })
                .find("input channels 4 (input [1, 4, 5, 5]) are not divisible by groups 3"),
            std::string::npos);
  Conv2dOptions g2;
  g2.groups = 2;
  EXPECT_NE(error_of([&] { conv2d(zeros({1, 4, 5, 5}), zeros({3, 2, 3, 3}), Tensor(), g2); })
                .find("out channels 3 (weight [3, 2, 3, 3]) are not divisible by groups 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { conv2d(zeros({1, 4, 5, 5}), zeros({3, 2, 3, 3})); }).find("to have 2 channels, but it has 4"),
            std::string::npos);
  Conv2dOptions dil;
  dil.dilation = {2, 2};
  dil.padding = {1, 1};
  EXPECT_EQ(error_of([&] { conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3}), Tensor(), dil); }),
            "conv2d: kernel [3, 3] (dilation [2, 2], effective [5, 5]) is larger than the padded input [4, 4] "
            "(input [1, 1, 2, 2], padding [1, 1])");
  EXPECT_NE(error_of([] { conv2d(zeros({1, 2, 5, 5}), zeros({3, 2, 3, 3}), zeros({4})); })
                .find("bias [4] does not match weight [3, 2, 3, 3]"),
            std::string::npos);
  EXPECT_NE(error_of([] { conv2d(zeros({5, 5}), zeros({1, 1, 3, 3})); }).find("expected a 3-D [C, H, W] or 4-D"),
            std::string::npos);
  Conv2dOptions bad;
  bad.stride = {0, 1};
  EXPECT_NE(error_of([&] { conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 2, 2}), Tensor(), bad); }).find("stride must be positive"),
            std::string::npos);
}

TEST(PoolErrors, ArgumentChecks) {
  EXPECT_NE(error_of([] { max_pool2d(zeros({1, 1, 5, 5}), {3}, {1}, {2}); })
                .find("max_pool2d: pad should be at most half of kernel size"),
            std::string::npos);
  EXPECT_NE(error_of([] { avg_pool2d(zeros({1, 1, 2, 2}), {3}); }).find("is too small"), std::string::npos);
  EXPECT_NE(error_of([] { max_pool2d(zeros({4, 4}), {2}); }).find("expected a 3-D [C, H, W] or 4-D"),
            std::string::npos);
  EXPECT_NE(error_of([] { adaptive_avg_pool2d(zeros({1, 1, 4, 4}), {0, 2}); }).find("must be positive"),
            std::string::npos);
  EXPECT_NE(error_of([] { max_pool2d(zeros({1, 1, 4, 4}), {0}); }).find("kernel_size must be greater than zero"),
            std::string::npos);
}

// ---- numerics of the 16-bit paths ------------------------------------------------------------

// BF16 matmul = F32 accumulation of the BF16 values, rounded once (accumulation order may move
// a result across a rounding boundary: one ulp).
TEST(LinalgNumerics, Bf16MatmulRoundsOnce) {
  const Tensor a = randn64({48, 200}, 1).to(DType::BF16), b = randn64({200, 40}, 2).to(DType::BF16);
  const Tensor ref = R::matmul(a.to(DType::F64), b.to(DType::F64));
  const Tensor bound = R::matmul(abs_values(a.to(DType::F64)), abs_values(b.to(DType::F64)));
  expect_rounded_once<BFloat16>(matmul(a, b), ref, bound, 200, "bf16 matmul");
  // Transposed operand and bias through linear: the bias joins the F32 sum before the rounding.
  const Tensor w = randn64({40, 200}, 3).to(DType::BF16), bias = randn64({40}, 4).to(DType::BF16);
  const Tensor lref = R::linear(a.to(DType::F64), w.to(DType::F64), bias.to(DType::F64));
  const Tensor lbound = R::linear(abs_values(a.to(DType::F64)), abs_values(w.to(DType::F64)), abs_values(bias.to(DType::F64)));
  expect_rounded_once<BFloat16>(linear(a, w, bias), lref, lbound, 201, "bf16 linear");
}

TEST(LinalgNumerics, F16MatmulRoundsOnce) {
  const Tensor a = randn64({2, 33, 100}, 5).to(DType::F16), b = randn64({100, 17}, 6).to(DType::F16);
  const Tensor ref = R::matmul(a.to(DType::F64), b.to(DType::F64));
  const Tensor bound = R::matmul(abs_values(a.to(DType::F64)), abs_values(b.to(DType::F64)));
  expect_rounded_once<Half>(matmul(a, b), ref, bound, 100, "f16 matmul");
  const Tensor w = randn64({17, 100}, 7).to(DType::F16), bias = randn64({17}, 8).to(DType::F16);
  const Tensor lref = R::linear(a.to(DType::F64), w.to(DType::F64), bias.to(DType::F64));
  const Tensor lbound = R::linear(abs_values(a.to(DType::F64)), abs_values(w.to(DType::F64)), abs_values(bias.to(DType::F64)));
  expect_rounded_once<Half>(linear(a, w, bias), lref, lbound, 101, "f16 linear");
}

// 256x300x200 with both operands transposed views (no copies: the GEMM reads the strides).
TEST(LinalgNumerics, LargeF32TransposedAgainstDouble) {
  const Tensor a64 = randn64({300, 256}, 9), b64 = randn64({200, 300}, 10);
  const Tensor a = a64.to(DType::F32).t(), b = b64.to(DType::F32).t();
  const Tensor out = matmul(a, b);
  const Tensor ref = R::matmul(a64.t().contiguous(), b64.t().contiguous());
  const Tensor bound = R::matmul(abs_values(a64.t().contiguous()), abs_values(b64.t().contiguous()));
  // Rigorous-style bound: K * u * sum |a||b|, u = 2^-24.
  expect_bounded(out, ref, bound, 300 * std::ldexp(1.0, -24) + 1e-7, "f32 256x300x200");
  // The F64 reference GEMM on the same values is accurate to roundoff.
  expect_bounded(matmul(a64.t(), b64.t()), ref, bound, 1e-13, "f64 256x300x200");
}

// Big enough for the oneDNN path that packs B into its blocked layout first (m >= 512, k n >=
// 2^20) and the one that reads a transposed B (as in linear) in place. The F64 result comes
// from the reference GEMM, itself checked against naive loops above.
TEST(LinalgNumerics, PackedWeightsPathF32AndBf16) {
  const Tensor a64 = randn64({512, 1024}, 30).to(DType::BF16).to(DType::F64);
  const Tensor w64 = randn64({1024, 1024}, 31).to(DType::BF16).to(DType::F64);
  const Tensor ref = matmul(a64, w64.t());
  const Tensor bound = matmul(abs_values(a64), abs_values(w64).t());
  expect_bounded(matmul(a64.to(DType::F32), w64.to(DType::F32).t()), ref, bound, 1024 * std::ldexp(1.0, -24) + 1e-7,
                 "f32 512x1024x1024");
  expect_rounded_once<BFloat16>(matmul(a64.to(DType::BF16), w64.to(DType::BF16).t()), ref, bound, 1024,
                                "bf16 512x1024x1024");
  const Tensor wt = w64.t().contiguous();
  expect_bounded(matmul(a64.to(DType::F32), wt.to(DType::F32)), ref, bound, 1024 * std::ldexp(1.0, -24) + 1e-7,
                 "f32 512x1024x1024 row-major B");
  expect_rounded_once<BFloat16>(matmul(a64.to(DType::BF16), wt.to(DType::BF16)), ref, bound, 1024,
                                "bf16 512x1024x1024 row-major B");
}

TEST(LinalgNumerics, BatchedBroadcastF32AgainstDouble) {
  const Tensor a64 = randn64({3, 1, 37, 70}, 11), b64 = randn64({4, 70, 29}, 12);
  const Tensor out = matmul(a64.to(DType::F32), b64.to(DType::F32));
  const Tensor ref = R::matmul(a64, b64);
  const Tensor bound = R::matmul(abs_values(a64), abs_values(b64));
  ASSERT_EQ(out.sizes(), (Shape{3, 4, 37, 29}));
  expect_bounded(out, ref, bound, 70 * std::ldexp(1.0, -24) + 1e-7, "broadcast batched matmul");
  // Gradients sum over the broadcast batch dims: compare F32 against F64 autograd.
  Tensor a = a64.to(DType::F32).requires_grad_(), b = b64.to(DType::F32).requires_grad_();
  Tensor a2 = a64.clone().requires_grad_(), b2 = b64.clone().requires_grad_();
  const Tensor g = randn64({3, 4, 37, 29}, 13);
  auto g32 = autograd::grad({matmul(a, b)}, {a, b}, {g.to(DType::F32)});
  auto g64 = autograd::grad({matmul(a2, b2)}, {a2, b2}, {g});
  testing::expect_close(g32[0], g64[0], {1e-5, 1e-5}, "dA");
  testing::expect_close(g32[1], g64[1], {1e-5, 1e-5}, "dB");
}

TEST(LinalgNumerics, RecordsItsOwnNodes) {
  Tensor a = randn64({3, 4}, 14).requires_grad_(), b = randn64({4, 2}, 15).requires_grad_();
  EXPECT_EQ(matmul(a, b).grad_fn_name(), "MatmulBackward");
  EXPECT_EQ(mm(a, b).grad_fn_name(), "MmBackward");
  EXPECT_EQ(linear(a, b.t()).grad_fn_name(), "LinearBackward");
  EXPECT_EQ(matmul(a, b.select(1, 0)).grad_fn_name(), "MatmulBackward");
}

// ---- conv2d against a double reference, oneDNN (F32/BF16) and reference (F64) paths ---------

struct ConvCase {
  Shape x, w;
  Conv2dOptions o;
};

std::vector<ConvCase> conv_cases() {
  return {
      {{2, 4, 9, 11}, {6, 4, 3, 3}, R::conv_opts(2, 1, 1, 1)},
      {{1, 6, 10, 8}, {4, 3, 3, 2}, R::conv_opts(1, 2, 2, 2)},
      {{2, 8, 7, 7}, {8, 1, 3, 3}, R::conv_opts(1, 1, 1, 8)},       // depthwise
      {{2, 16, 12, 12}, {32, 16, 3, 3}, R::conv_opts(1, 1, 1, 1)},  // blocked oneDNN layouts
  };
}

TEST(ConvNumerics, ForwardAndGradsAgainstDouble) {
  uint64_t seed = 100;
  for (const ConvCase& c : conv_cases()) {
    SCOPED_TRACE(shape_str(c.x) + " * " + shape_str(c.w) + " groups " + std::to_string(c.o.groups));
    const Tensor x64 = randn64(c.x, seed++), w64 = randn64(c.w, seed++), b64 = randn64({c.w[0]}, seed++);
    const Tensor ref = R::conv2d(x64, w64, b64, c.o);
    const Tensor bound = R::conv2d(abs_values(x64), abs_values(w64), abs_values(b64), c.o);
    const double k = static_cast<double>(c.w[1] * c.w[2] * c.w[3]) + 1;
    expect_bounded(conv2d(x64, w64, b64, c.o), ref, bound, 1e-14, "f64 forward");
    expect_bounded(conv2d(x64.to(DType::F32), w64.to(DType::F32), b64.to(DType::F32), c.o), ref, bound,
                   k * std::ldexp(1.0, -24) + 1e-7, "f32 forward");

    // BF16: F32 accumulation of the rounded values, rounded once.
    const Tensor xb = x64.to(DType::BF16), wb = w64.to(DType::BF16), bb = b64.to(DType::BF16);
    const Tensor ref_b = R::conv2d(xb.to(DType::F64), wb.to(DType::F64), bb.to(DType::F64), c.o);
    const Tensor bound_b = R::conv2d(abs_values(xb.to(DType::F64)), abs_values(wb.to(DType::F64)), abs_values(bb.to(DType::F64)), c.o);
    expect_rounded_once<BFloat16>(conv2d(xb, wb, bb, c.o), ref_b, bound_b, k, "bf16 forward");
    const Tensor xh = x64.to(DType::F16), wh = w64.to(DType::F16), bh = b64.to(DType::F16);
    const Tensor ref_h = R::conv2d(xh.to(DType::F64), wh.to(DType::F64), bh.to(DType::F64), c.o);
    const Tensor bound_h = R::conv2d(abs_values(xh.to(DType::F64)), abs_values(wh.to(DType::F64)), abs_values(bh.to(DType::F64)), c.o);
    expect_rounded_once<Half>(conv2d(xh, wh, bh, c.o), ref_h, bound_h, k, "f16 forward");

    // Gradients: F32 (oneDNN) against F64 (im2col reference), same values.
    Tensor x = x64.to(DType::F32).requires_grad_(), w = w64.to(DType::F32).requires_grad_();
    Tensor b = b64.to(DType::F32).requires_grad_();
    Tensor x2 = x64.clone().requires_grad_(), w2 = w64.clone().requires_grad_(), b2 = b64.clone().requires_grad_();
    const Tensor g = randn64(ref.sizes(), seed++);
    auto g32 = autograd::grad({conv2d(x, w, b, c.o)}, {x, w, b}, {g.to(DType::F32)});
    auto g64 = autograd::grad({conv2d(x2, w2, b2, c.o)}, {x2, w2, b2}, {g});
    testing::expect_close(g32[0], g64[0], {1e-5, 1e-5}, "grad input");
    testing::expect_close(g32[1], g64[1], {1e-5, 1e-5}, "grad weight");
    testing::expect_close(g32[2], g64[2], {1e-5, 1e-5}, "grad bias");
  }
}

// ---- pooling edge cases -----------------------------------------------------------------------

TEST(PoolEdges, CeilModeDropsWindowStartingInPadding) {
  // in 5, k 2, s 2, pad 1, ceil: a 4th window would start at 5 = in + pad - 1 + 1, inside the
  // right padding only, so PyTorch drops it: 3 outputs, not 4.
  const Tensor x = arange(25.0, TensorOptions(DType::F64)).view({1, 1, 5, 5});
  const Tensor m = max_pool2d(x, {2}, {2}, {1}, true);
  ASSERT_EQ(m.sizes(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(to_vector<double>(m), (std::vector<double>{0, 2, 4, 10, 12, 14, 20, 22, 24}));
  const Tensor a = avg_pool2d(x, {2}, {2}, {1}, true, true);
  ASSERT_EQ(a.sizes(), (Shape{1, 1, 3, 3}));
  // Corner window covers one real element and three padding zeros: 0 / 4.
  EXPECT_DOUBLE_EQ(to_vector<double>(a)[0], 0.0);
  EXPECT_DOUBLE_EQ(to_vector<double>(a)[4], (6 + 7 + 11 + 12) / 4.0);
  EXPECT_DOUBLE_EQ(to_vector<double>(a)[1], (1 + 2) / 4.0);
  const Tensor e = avg_pool2d(x, {2}, {2}, {1}, true, false);
  EXPECT_DOUBLE_EQ(to_vector<double>(e)[1], (1 + 2) / 2.0);
  EXPECT_DOUBLE_EQ(to_vector<double>(e)[8], (18 + 19 + 23 + 24) / 4.0);
}

TEST(PoolEdges, CeilModeWindowPastPaddedEdgeDividesByClippedSize) {
  // in 6, k 3, s 2, pad 1, ceil: the last window [5, 8) reaches past the padded edge 7; PyTorch
  // counts the padding only up to that edge (divisor 2 x 2 at the corner).
  const Tensor x = ones({1, 1, 6, 6}, TensorOptions(DType::F64));
  const Tensor a = avg_pool2d(x, {3}, {2}, {1}, true, true);
  ASSERT_EQ(a.sizes(), (Shape{1, 1, 4, 4}));
  EXPECT_DOUBLE_EQ(to_vector<double>(a)[15], 0.25);     // window [5,7) x [5,7): 1 real + 3 padded
  EXPECT_DOUBLE_EQ(to_vector<double>(a)[0], 4.0 / 9.0);  // top-left: 4 real of 9
}

TEST(PoolEdges, MaxPoolNanWinsAndGradientGoesToArgmax) {
  Tensor x = from_vector(std::vector<double>{1, 5, 2, 3, std::nan(""), 0, 4, 9, 7}, {1, 1, 3, 3}).requires_grad_();
  Tensor m = max_pool2d(x, {2}, {1});
  auto v = to_vector<double>(m);
  EXPECT_TRUE(std::isnan(v[0]) && std::isnan(v[1]) && std::isnan(v[2]) && std::isnan(v[3]));
  Tensor y = max_pool2d(x.detach().slice(2, 0, 1), {1, 2}, {1});
  EXPECT_EQ(to_vector<double>(y), (std::vector<double>{5, 5}));
  // Overlapping windows sharing a maximum accumulate its gradient.
  Tensor z = from_vector(std::vector<double>{1, 2, 3, 4, 9, 5, 6, 7, 8}, {1, 3, 3}).requires_grad_();
  auto g = autograd::grad({max_pool2d(z, {2}, {1})}, {z}, {ones({1, 2, 2}, TensorOptions(DType::F64))});
  EXPECT_EQ(to_vector<double>(g[0]), (std::vector<double>{0, 0, 0, 0, 4, 0, 0, 0, 0}));
}

// ---- empty tensors ----------------------------------------------------------------------------

TEST(EmptyTensors, ZeroBatchAndZeroInner) {
  Tensor x = zeros({0, 4}).requires_grad_(), w = randn64({3, 4}, 20).to(DType::F32).requires_grad_();
  Tensor b = randn64({3}, 21).to(DType::F32).requires_grad_();
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.sizes(), (Shape{0, 3}));
  auto g = autograd::grad({y}, {x, w, b}, {zeros({0, 3})});
  EXPECT_EQ(g[0].sizes(), (Shape{0, 4}));
  EXPECT_EQ(to_vector<double>(g[1]), std::vector<double>(12, 0.0));
  EXPECT_EQ(to_vector<double>(g[2]), std::vector<double>(3, 0.0));

  // K = 0: the product is all zeros (plus the bias).
  EXPECT_EQ(to_vector<double>(matmul(zeros({2, 0}), zeros({0, 3}))), std::vector<double>(6, 0.0));
  Tensor lk = linear(zeros({2, 0}), zeros({3, 0}), full({3}, 1.5));
  EXPECT_EQ(to_vector<double>(lk), std::vector<double>(6, 1.5));
  EXPECT_EQ(bmm(zeros({0, 2, 3}), zeros({0, 3, 4})).sizes(), (Shape{0, 2, 4}));
  EXPECT_EQ(matmul(zeros({2, 0, 3}), zeros({3, 5})).sizes(), (Shape{2, 0, 5}));

  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    Tensor cx = zeros({0, 2, 5, 5}, TensorOptions(dt)).requires_grad_();
    Tensor cw = ones({3, 2, 3, 3}, TensorOptions(dt)).requires_grad_(), cb = ones({3}, TensorOptions(dt)).requires_grad_();
    Tensor cy = conv2d(cx, cw, cb);
    EXPECT_EQ(cy.sizes(), (Shape{0, 3, 3, 3}));
    auto cg = autograd::grad({cy}, {cx, cw, cb}, {zeros({0, 3, 3, 3}, TensorOptions(dt))});
    EXPECT_EQ(to_vector<double>(cg[1]), std::vector<double>(54, 0.0));
    EXPECT_EQ(to_vector<double>(cg[2]), std::vector<double>(3, 0.0));
    Tensor px = zeros({0, 2, 4, 4}, TensorOptions(dt)).requires_grad_();
    EXPECT_EQ(max_pool2d(px, {2}).sizes(), (Shape{0, 2, 2, 2}));
    EXPECT_EQ(avg_pool2d(px, {2}).sizes(), (Shape{0, 2, 2, 2}));
    Tensor ap = adaptive_avg_pool2d(px, {3, 3});
    EXPECT_EQ(ap.sizes(), (Shape{0, 2, 3, 3}));
    auto pg = autograd::grad({ap}, {px}, {zeros({0, 2, 3, 3}, TensorOptions(dt))});
    EXPECT_EQ(pg[0].sizes(), (Shape{0, 2, 4, 4}));
  }
}

// ---- PyTorch goldens ----------------------------------------------------------------------------

// Values from PyTorch 1.13.1 (Debian python3-torch), float64:
//   x = sin(0.37 i + 0.1) for i < 60, shape [1, 2, 5, 6]; w = 0.5 cos(0.53 i) for i < 24,
//   shape [4, 1, 3, 2]; b = [0.1, -0.2, 0.3, -0.4];
//   torch.nn.functional.conv2d(x, w, b, stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
TEST(PyTorchGolden, Conv2dStridePadDilationGroups) {
  std::vector<double> xv(60), wv(24);
  for (int i = 0; i < 60; ++i) xv[i] = std::sin(0.37 * i + 0.1);
  for (int i = 0; i < 24; ++i) wv[i] = std::cos(0.53 * i) * 0.5;
  const Tensor x = from_vector(xv, {1, 2, 5, 6}), w = from_vector(wv, {4, 1, 3, 2});
  const Tensor b = from_vector(std::vector<double>{0.1, -0.2, 0.3, -0.4}, {4});
  Conv2dOptions o;
  o.stride = {2, 1};
  o.padding = {1, 1};
  o.dilation = {1, 2};
  o.groups = 2;
  const std::vector<double> expected{
      -0.09670910340512912,  -0.10978743989845077, 0.21318902862767564,   0.5208458931227832,   0.7715432402610549,
      0.5041230987606047,    -0.03255088591027394, -0.26469151836748545,  -0.6747725491515353,  -0.9799917500302577,
      -1.1390391340127168,   -0.5113190438146279,  0.42247916968648375,   0.8420961826989417,   0.9301229770913882,
      0.9057965208174444,    0.772409285613223,    0.35299869428468333,   0.009212238121205724, 0.038327815605198656,
      -0.28299226439386965,  -0.5930797307415401,  -0.8499656995537197,   -0.5970969853976197,  -0.07534375581327268,
      0.14854441099391247,   0.5649895174522859,   0.877896881451549,     1.0449159591892045,   0.42168159066886024,
      -0.5135360247431776,   -0.9308238151274554,  -1.0304031401514868,   -1.0175912957532476,  -0.8941223049689604,
      -0.4672152555269159,   -0.0900604780801813,  -0.556045520521326,    -0.5625751033037327,  -0.4523591923767142,
      -0.24031499423803124,  0.11206210216835125,  0.9662071595230379,    1.4883407677612552,   1.2422132610972478,
      0.8685616096659515,    0.41795781160945333,  0.3147855191517568,    0.013583018252121375, -0.0640742702999717,
      0.23559611213048315,   0.5439832586517801,   0.8193484156917674,    0.6226781099343826,   -0.018995204397577237,
      0.4466156535682516,    0.4642471999028513,   0.3649069420974947,    0.162040118019921,    -0.19897889769641763,
      -1.0655980908564218,   -1.6010375610167082,  -1.359805549776103,    -0.988668360024683,   -0.5378576693120362,
      -0.423581524829859,    -0.10104949793111295, -0.006104984010017932, -0.30404779311061847, -0.6149772832815451,
      -0.8968106066643414,   -0.7144664575080519};
  const Tensor want = from_vector(expected, {1, 4, 3, 6});
  testing::expect_close(conv2d(x, w, b, o), want, {1e-12, 1e-12}, "conv2d F64 vs PyTorch");
  testing::expect_close(conv2d(x.to(DType::F32), w.to(DType::F32), b.to(DType::F32), o), want, {1e-6, 1e-6},
                        "conv2d F32 vs PyTorch");
}

// PyTorch 1.13.1: p = sin(1.7 i) for i < 35, shape [1, 1, 5, 7];
//   max_pool2d(p, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), ceil_mode=True,
//   return_indices=True) and avg_pool2d(p, 3, 2, 1, ceil_mode=True, count_include_pad=True).
TEST(PyTorchGolden, MaxPoolCeilModeWithPadding) {
  std::vector<double> pv(35);
  for (int i = 0; i < 35; ++i) pv[i] = std::sin(1.7 * i);
  Tensor p = from_vector(pv, {1, 1, 5, 7}).requires_grad_();
  const std::vector<double> expected{0.0,
                                     0.9916648104524686,
                                     0.49411335113860816,
                                     0.9997929001426692,
                                     -0.6181371122370333,
                                     0.985600298790633,
                                     0.040693257349864856,
                                     0.9997929001426692,
                                     -0.45832545449176587,
                                     0.985600298790633,
                                     0.6496128616862011,
                                     0.9494038606867011};
  const std::vector<int> indices{0, 1, 4, 12, 7, 23, 24, 12, 28, 23, 31, 34};
  Tensor m = max_pool2d(p, {3, 2}, {2, 2}, {1, 1}, true);
  ASSERT_EQ(m.sizes(), (Shape{1, 1, 3, 4}));
  EXPECT_EQ(to_vector<double>(m), expected);
  // The gradient lands on PyTorch's argmax indices (12 and 23 are each picked twice).
  auto g = autograd::grad({m}, {p}, {ones({1, 1, 3, 4}, TensorOptions(DType::F64))});
  std::vector<double> want(35, 0.0);
  for (int i : indices) want[i] += 1.0;
  EXPECT_EQ(to_vector<double>(g[0]), want);

  const std::vector<double> avg{0.1369655014524368,   0.011645991356161943, 0.028464684875919948, 0.10997430330539343,
                                -0.1751170736040017,  0.18653565849404308,  -0.15451997948580792, 0.37222034550445116,
                                -0.27610969643989336, 0.13657116133736943,  -0.15124287955755805, 0.18578383876069335};
  testing::expect_close(avg_pool2d(p.detach(), {3}, {2}, {1}, true, true), from_vector(avg, {1, 1, 3, 4}),
                        {1e-12, 1e-12}, "avg_pool2d vs PyTorch");
}

}  // namespace
}  // namespace mantissa
