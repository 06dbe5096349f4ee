// Elementwise ops beyond the op table: type promotion, integer arithmetic, IEEE special values,
// rounding once in F16/BF16, broadcasting and dtype errors, zero-size tensors, in-place methods,
// operators, gradient conventions (ties, masks) and values computed by PyTorch.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "autograd/ops.h"
#include "core/generator.h"

namespace mantissa {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor f32(std::vector<float> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return from_vector(v, {n});
}
Tensor of(std::vector<double> v, DType dt) {
  const int64_t n = static_cast<int64_t>(v.size());
  return from_vector(v, {n}, dt);
}
std::vector<double> vals(const Tensor& t) { return to_vector<double>(t); }

// The message of the Error that fn throws ("" and a test failure when it throws none).
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a mantissa::Error";
  return "";
}
#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

TEST(ElementwisePromotion, TensorTensorTable) {
  Tensor h = ones({2}, DType::F16), b = ones({2}, DType::BF16), f = ones({2}, DType::F32);
  EXPECT_EQ(add(h, f).dtype(), DType::F32);
  EXPECT_EQ(mul(h, b).dtype(), DType::F32);
  EXPECT_EQ(add(ones({2}, DType::I64), h).dtype(), DType::F16);
  EXPECT_EQ(sub(ones({2}, DType::U8), ones({2}, DType::I8)).dtype(), DType::I32);
  EXPECT_EQ(add(ones({2}, DType::I32), ones({2}, DType::I64)).dtype(), DType::I64);
  EXPECT_EQ(maximum(h, ones({2}, DType::F64)).dtype(), DType::F64);
  // A 0-d operand of the same kind does not promote; of a higher kind it gives the default.
  EXPECT_EQ(add(h, scalar_tensor(1.0, DType::F32)).dtype(), DType::F16);
  EXPECT_EQ(add(h, scalar_tensor(1.0, DType::F64)).dtype(), DType::F16);
  EXPECT_EQ(add(ones({2}, DType::I32), scalar_tensor(1.5, DType::F64)).dtype(), DType::F32);
  EXPECT_EQ(where(ones({2}, DType::Bool), h, f).dtype(), DType::F32);
}

TEST(ElementwisePromotion, TensorScalar) {
  EXPECT_EQ(add(ones({2}, DType::I32), 2.5).dtype(), DType::F32);
  EXPECT_EQ(vals(add(ones({2}, DType::I32), 2.5)), (std::vector<double>{3.5, 3.5}));
  EXPECT_EQ(add(ones({2}, DType::I32), 2.0).dtype(), DType::I32);
  EXPECT_EQ(mul(ones({2}, DType::F16), 1e10).dtype(), DType::F16);
  EXPECT_EQ(add(ones({2}, DType::Bool), 1.0).dtype(), DType::I64);
  EXPECT_EQ(vals(add(ones({2}, DType::Bool), 1.0)), (std::vector<double>{2, 2}));
  EXPECT_EQ(div(ones({2}, DType::I64), 2.0).dtype(), DType::F32);
  EXPECT_EQ(pow(ones({2}, DType::I32), 2.0).dtype(), DType::I32);
  EXPECT_EQ(pow(ones({2}, DType::I32), 0.5).dtype(), DType::F32);
  EXPECT_EQ(lt(ones({2}, DType::F16), 0.5).dtype(), DType::Bool);
}

TEST(ElementwisePromotion, BoolArithmetic) {
  Tensor a = from_vector(std::vector<uint8_t>{0, 0, 1, 1}, {4}).to(DType::Bool);
  Tensor b = from_vector(std::vector<uint8_t>{0, 1, 0, 1}, {4}).to(DType::Bool);
  Tensor s = add(a, b);
  EXPECT_EQ(s.dtype(), DType::Bool);
  EXPECT_EQ(vals(s), (std::vector<double>{0, 1, 1, 1}));
  EXPECT_EQ(vals(mul(a, b)), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(vals(maximum(a, b)), (std::vector<double>{0, 1, 1, 1}));
  EXPECT_EQ(vals(eq(a, b)), (std::vector<double>{1, 0, 0, 1}));
  EXPECT_EQ(div(a, b).dtype(), DType::F32);
  EXPECT_CONTAINS(error_of([&] { sub(a, b); }), "sub");
  EXPECT_CONTAINS(error_of([&] { neg(a); }), "Bool");
}

TEST(ElementwiseInteger, ArithmeticWrapsLikeTwosComplement) {
  Tensor a = from_vector(std::vector<int32_t>{7, -7, 100000, 2147483647}, {4});
  Tensor b = from_vector(std::vector<int32_t>{2, 2, 100000, 1}, {4});
  EXPECT_EQ(to_vector<int32_t>(add(a, b)), (std::vector<int32_t>{9, -5, 200000, -2147483647 - 1}));
  EXPECT_EQ(to_vector<int32_t>(sub(a, b, 3.0)), (std::vector<int32_t>{1, -13, -200000, 2147483644}));
  EXPECT_EQ(to_vector<int32_t>(mul(a, b)), (std::vector<int32_t>{14, -14, 1410065408, 2147483647}));
  Tensor i8 = from_vector(std::vector<int64_t>{127, -128, 5}, {3}, DType::I8);
  EXPECT_EQ(to_vector<int8_t>(add(i8, 1.0)), (std::vector<int8_t>{-128, -127, 6}));
  EXPECT_EQ(to_vector<int8_t>(neg(i8)), (std::vector<int8_t>{-127, -128, -5}));
  EXPECT_EQ(to_vector<int8_t>(abs(i8)), (std::vector<int8_t>{127, -128, 5}));
  // True division, in F32.
  Tensor q = div(a, b);
  EXPECT_EQ(q.dtype(), DType::F32);
  EXPECT_EQ(to_vector<float>(q)[0], 3.5f);
  EXPECT_EQ(to_vector<float>(q)[1], -3.5f);
  // Integer pow, maximum, relu, clamp (bounds to ceil/floor).
  Tensor x = from_vector(std::vector<int64_t>{-3, -1, 0, 2, 5}, {5});
  EXPECT_EQ(to_vector<int64_t>(pow(x, 3.0)), (std::vector<int64_t>{-27, -1, 0, 8, 125}));
  EXPECT_EQ(to_vector<int64_t>(pow(x, from_vector(std::vector<int64_t>{2, -1, 0, -2, 1}, {5}))),
            (std::vector<int64_t>{9, -1, 1, 0, 5}));
  EXPECT_EQ(to_vector<int64_t>(maximum(x, from_vector(std::vector<int64_t>{0}, {1}))),
            (std::vector<int64_t>{0, 0, 0, 2, 5}));
  EXPECT_EQ(to_vector<int64_t>(relu(x)), (std::vector<int64_t>{0, 0, 0, 2, 5}));
  EXPECT_EQ(clamp(x, -1.5, 2.5).dtype(), DType::I64);
  EXPECT_EQ(to_vector<int64_t>(clamp(x, -1.5, 2.5)), (std::vector<int64_t>{-1, -1, 0, 2, 2}));
  EXPECT_EQ(to_vector<int64_t>(clamp(x, std::nullopt, 1e30)), (std::vector<int64_t>{-3, -1, 0, 2, 5}));
  // U8 wraps.
  Tensor u = from_vector(std::vector<uint8_t>{0, 200}, {2});
  EXPECT_EQ(to_vector<uint8_t>(add(u, 100.0)), (std::vector<uint8_t>{100, 44}));
  EXPECT_EQ(to_vector<uint8_t>(sub(u, 1.0)), (std::vector<uint8_t>{255, 199}));
}

TEST(ElementwiseInteger, TranscendentalOpsPromoteToF32) {
  Tensor x = from_vector(std::vector<int64_t>{0, 1, 4}, {3});
  for (Tensor r : {exp(x), log(x), sqrt(x), rsqrt(x), sigmoid(x), tanh(x), gelu(x), silu(x)}) {
    EXPECT_EQ(r.dtype(), DType::F32);
  }
  EXPECT_EQ(vals(sqrt(x)), (std::vector<double>{0, 1, 2}));
  EXPECT_EQ(neg(x).dtype(), DType::I64);
  EXPECT_EQ(abs(x).dtype(), DType::I64);
}

TEST(ElementwiseIntegerScalarCompare, ExactAgainstNonIntegralScalars) {
  Tensor x = from_vector(std::vector<int64_t>{1, 2, 3}, {3});
  EXPECT_EQ(vals(lt(x, 2.5)), (std::vector<double>{1, 1, 0}));
  EXPECT_EQ(vals(eq(x, 2.0)), (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(vals(eq(x, 2.5)), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(vals(ne(x, kNaN)), (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(vals(gt(x, -kInf)), (std::vector<double>{1, 1, 1}));
  // A floating tensor compares with the scalar rounded to its dtype, as PyTorch.
  EXPECT_EQ(vals(eq(of({0.1}, DType::F16), 0.1)), (std::vector<double>{1}));
  EXPECT_EQ(vals(eq(of({0.1}, DType::F32), 0.1)), (std::vector<double>{1}));
}

TEST(ElementwiseIEEE, DivisionByZeroAndSpecialValues) {
  Tensor num = f32({1, -1, 0, 2});
  std::vector<double> q = vals(div(num, zeros({4})));
  EXPECT_EQ(q[0], kInf);
  EXPECT_EQ(q[1], -kInf);
  EXPECT_TRUE(std::isnan(q[2]));
  EXPECT_EQ(vals(div(num, -0.0))[0], -kInf);
  // Integer division by zero is floating division: no trap.
  std::vector<double> qi = vals(div(from_vector(std::vector<int64_t>{3, 0}, {2}), zeros({2}, DType::I64)));
  EXPECT_EQ(qi[0], kInf);
  EXPECT_TRUE(std::isnan(qi[1]));
  EXPECT_TRUE(std::isnan(vals(log(f32({-1})))[0]));
  EXPECT_EQ(vals(log(f32({0})))[0], -kInf);
  EXPECT_EQ(vals(rsqrt(f32({0})))[0], kInf);
  EXPECT_EQ(vals(exp(f32({1000})))[0], kInf);
}

TEST(ElementwiseIEEE, NaNPropagates) {
  Tensor x = of({kNaN, 1.0, -kInf}, DType::F32);
  Tensor one = ones({3});
  std::vector<double> r;
  for (Tensor t : {add(x, one), maximum(x, one), minimum(one, x), relu(x), clamp(x, 0.0, 0.5), abs(x), sigmoid(x),
                   tanh(x), gelu(x), silu(x), mul(x, 2.0)}) {
    EXPECT_TRUE(std::isnan(vals(t)[0])) << t;
  }
  EXPECT_EQ(vals(maximum(x, one))[2], 1.0);
  EXPECT_EQ(vals(minimum(x, one))[2], -kInf);
  EXPECT_TRUE(std::isnan(vals(maximum(one, x))[0]));
  EXPECT_EQ(vals(eq(x, x)), (std::vector<double>{0, 1, 1}));
  EXPECT_EQ(vals(ne(x, x)), (std::vector<double>{1, 0, 0}));
  EXPECT_TRUE(std::isnan(vals(clamp(of({1.0}, DType::F32), kNaN, std::nullopt))[0]));
  for (DType dt : {DType::F16, DType::BF16, DType::F64}) {
    EXPECT_TRUE(std::isnan(vals(relu(of({kNaN}, dt)))[0])) << dt;
    EXPECT_TRUE(std::isnan(vals(maximum(of({kNaN}, dt), of({0.0}, dt)))[0])) << dt;
  }
}

TEST(ElementwiseIEEE, SigmoidIsStableForLargeMagnitudes) {
  for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    std::vector<double> s = vals(sigmoid(of({-1e4, -100, 100, 1e4, -kInf, kInf}, dt)));
    EXPECT_EQ(s[0], 0.0) << dt;
    EXPECT_LT(s[1], 1e-40) << dt;
    EXPECT_GE(s[1], 0.0) << dt;
    EXPECT_EQ(s[2], 1.0) << dt;
    EXPECT_EQ(s[3], 1.0) << dt;
    EXPECT_EQ(s[4], 0.0) << dt;
    EXPECT_EQ(s[5], 1.0) << dt;
    std::vector<double> z = vals(silu(of({-1e4, 1e4}, dt)));
    EXPECT_EQ(z[0], 0.0) << dt;
    EXPECT_EQ(z[1], vals(of({1e4}, dt))[0]) << dt;
  }
  // The left tail of exact GELU keeps relative precision (erfc form): x Phi(x) at x = -10.
  EXPECT_NEAR(vals(gelu(of({-10.0}, DType::F64)))[0] / -7.619853024160527e-23, 1.0, 1e-12);
}

TEST(ElementwiseRounding, F16AndBF16RoundOnceToNearestEven) {
  // 2048 + 1 = 2049 is halfway between the F16 neighbours 2048 and 2050: ties go to even.
  Tensor a = of({2048, 2048, 65504, 65504, 1}, DType::F16);
  Tensor b = of({1, 3, 32, 15, 0.0009765625}, DType::F16);
  std::vector<double> s = vals(add(a, b));
  EXPECT_EQ(s[0], 2048);
  EXPECT_EQ(s[1], 2052);
  EXPECT_EQ(s[2], kInf);  // 65536 rounds past the F16 maximum
  EXPECT_EQ(s[3], 65504);
  EXPECT_EQ(s[4], 1.0009765625);
  // 256 + 1 ties between the BF16 neighbours 256 and 258.
  EXPECT_EQ(vals(add(of({256, 256}, DType::BF16), of({1, 3}, DType::BF16))), (std::vector<double>{256, 260}));
  // A double scalar is applied in F32 (as PyTorch's CUDA kernels do), not rounded to F16
  // first: 3 * 0.1 = 0.3 rounds to 0.300048828125, whereas 3 * F16(0.1) = 0.2999267578125 is a
  // tie that rounds down to 0.2998046875 (what torch 1.13's CPU kernel gives).
  EXPECT_EQ(vals(mul(of({3.0}, DType::F16), 0.1))[0], 0.300048828125);
  // F16 multiply of 0.1 * 3 is computed in F32 and rounded once.
  const float p = static_cast<float>(Half(0.1)) * 3.0f;
  EXPECT_EQ(to_vector<Half>(mul(of({0.1}, DType::F16), of({3}, DType::F16)))[0].bits, Half(p).bits);
}

TEST(ElementwiseRounding, F16FlatPathIsBitExactOnEveryValue) {
  // Every F16 bit pattern (subnormals, Inf, NaN included) against a per-element reference in
  // F32 rounded once; 65536 + 3 elements also exercise the parallel split and the vector tails.
  const int64_t n = 65536 + 3;
  std::vector<Half> a(n), b(n);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = Half::from_bits(static_cast<uint16_t>(i));
    b[i] = Half::from_bits(static_cast<uint16_t>((i * 7919) & 0xffff));
  }
  Tensor ta = empty({n}, DType::F16), tb = empty({n}, DType::F16);
  std::copy(a.begin(), a.end(), ta.data<Half>());
  std::copy(b.begin(), b.end(), tb.data<Half>());
  std::vector<Half> s = to_vector<Half>(add(ta, tb)), m = to_vector<Half>(mul(ta, tb));
  std::vector<Half> e = to_vector<Half>(exp(ta));
  std::vector<float> e32 = to_vector<float>(exp(ta.to(DType::F32)));
  std::vector<bool> lt_ab = to_vector<bool>(lt(ta, tb));
  auto same = [](Half x, float ref) {
    const Half r(ref);
    return x.bits == r.bits || (is_nan(x) && is_nan(r));
  };
  for (int64_t i = 0; i < n; ++i) {
    const float x = a[i], y = b[i];
    ASSERT_TRUE(same(s[i], x + y)) << i;
    ASSERT_TRUE(same(m[i], x * y)) << i;
    ASSERT_TRUE(same(e[i], e32[i])) << i;
    ASSERT_EQ(lt_ab[i], x < y) << i;
  }
}

// Error of a float result in units of the last place of the correctly rounded value.
double ulps(float got, double exact) {
  const float rounded = static_cast<float>(exact);
  if (std::isinf(rounded) || exact == 0) return got == rounded ? 0 : 1e9;
  const double ulp = std::nextafter(std::fabs(rounded), std::numeric_limits<float>::infinity()) - std::fabs(rounded);
  return std::fabs(static_cast<double>(got) - exact) / ulp;
}

TEST(ElementwiseAccuracy, F32ExpAndSigmoidWithinAFewUlpsEverywhere) {
  // Every 4099th float bit pattern (both signs, subnormals to Inf) plus the edges of the range.
  std::vector<float> x;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
    const float v = std::bit_cast<float>(static_cast<uint32_t>(u));
    if (!std::isnan(v)) x.push_back(v);
  }
  for (float v : {0.0f, -0.0f, 1.0f, 88.72283f, 88.72284f, -87.33654f, -103.2789f, -103.9721f, -104.0f, 89.0f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    x.push_back(v);
  }
  const int64_t n = static_cast<int64_t>(x.size());
  Tensor t = from_vector(x, {n});
  std::vector<float> e = to_vector<float>(exp(t)), s = to_vector<float>(sigmoid(t));
  double worst_exp = 0, worst_sig = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double xd = x[i];
    worst_exp = std::max(worst_exp, ulps(e[i], std::exp(xd)));
    worst_sig = std::max(worst_sig, ulps(s[i], xd >= 0 ? 1 / (1 + std::exp(-xd)) : std::exp(xd) / (1 + std::exp(xd))));
  }
  EXPECT_LE(worst_exp, 1.0);
  EXPECT_LE(worst_sig, 3.0);
  EXPECT_EQ(to_vector<float>(exp(f32({0})))[0], 1.0f);
  EXPECT_TRUE(std::isnan(to_vector<float>(exp(f32({std::numeric_limits<float>::quiet_NaN()})))[0]));
  EXPECT_TRUE(std::isnan(to_vector<float>(exp(f32({-std::numeric_limits<float>::quiet_NaN()})))[0]));
}

TEST(ElementwiseErrors, BroadcastMessageNamesBothShapes) {
  std::string msg = error_of([] { add(zeros({2, 3}), zeros({4})); });
  EXPECT_CONTAINS(msg, "add");
  EXPECT_CONTAINS(msg, "[2, 3]");
  EXPECT_CONTAINS(msg, "[4]");
  msg = error_of([] { where(zeros({3}, DType::Bool), zeros({2, 3}), zeros({2, 2})); });
  EXPECT_CONTAINS(msg, "[2, 3]");
  EXPECT_CONTAINS(msg, "[2, 2]");
  EXPECT_CONTAINS(error_of([] { lt(zeros({5}), zeros({3})); }), "[5]");
}

TEST(ElementwiseErrors, DtypeAndArgumentErrors) {
  EXPECT_CONTAINS(error_of([] { where(zeros({2}), ones({2}), ones({2})); }), "F32");
  EXPECT_CONTAINS(error_of([] { gelu(ones({2}), "fast"); }), "fast");
  EXPECT_CONTAINS(error_of([] { clamp(ones({2}), std::nullopt, std::nullopt); }), "clamp");
  EXPECT_CONTAINS(error_of([] { pow(ones({2}, DType::I64), -1.0); }), "negative");
  EXPECT_CONTAINS(error_of([] { add(ones({2}, DType::I64), ones({2}, DType::I64), 0.5); }), "alpha");
  EXPECT_CONTAINS(error_of([] { relu(ones({2}, DType::Bool)); }), "relu");
  EXPECT_CONTAINS(error_of([] { clamp(ones({2}, DType::Bool), 0.0, 1.0); }), "Bool");
  EXPECT_CONTAINS(error_of([] { add(Tensor(), ones({2})); }), "undefined");
}

TEST(ElementwiseShapes, ZeroSizeAndZeroDim) {
  Tensor e = add(zeros({0, 3}), ones({3}));
  EXPECT_EQ(e.sizes(), (Shape{0, 3}));
  EXPECT_EQ(add(zeros({0}), ones({1})).sizes(), (Shape{0}));
  EXPECT_EQ(mul(zeros({2, 0}), 3.0).sizes(), (Shape{2, 0}));
  EXPECT_EQ(relu(zeros({0})).numel(), 0);
  EXPECT_EQ(gelu(zeros({4, 0}, DType::F16)).sizes(), (Shape{4, 0}));
  EXPECT_EQ(lt(zeros({0, 2}), zeros({1, 2})).sizes(), (Shape{0, 2}));
  EXPECT_EQ(where(zeros({0}, DType::Bool), zeros({1}), zeros({})).sizes(), (Shape{0}));
  EXPECT_EQ(clamp(zeros({0}, DType::I32), 0.0, 1.0).sizes(), (Shape{0}));
  Tensor s = add(scalar_tensor(2.0), scalar_tensor(3.0));
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item<float>(), 5.0f);
  EXPECT_EQ(mul(scalar_tensor(2.0), f32({1, 2})).sizes(), (Shape{2}));
  EXPECT_EQ(add(zeros({3, 1, 4}), zeros({2, 4})).sizes(), (Shape{3, 2, 4}));
}

TEST(ElementwiseShapes, LargeTensorsMatchNaiveLoops) {
  // Above the parallel grain: the flat path and the strided (broadcast, transposed) path.
  Generator gen(7);
  Tensor a = randn({300, 257}, {}, &gen), b = randn({257}, {}, &gen), c = randn({257, 300}, {}, &gen);
  std::vector<float> av = to_vector<float>(a), bv = to_vector<float>(b), cv = to_vector<float>(c);
  std::vector<float> s = to_vector<float>(add(a, b));
  std::vector<float> m = to_vector<float>(mul(a, c.t()));
  std::vector<float> r = to_vector<float>(relu(a));
  for (int64_t i = 0; i < 300; ++i) {
    for (int64_t j = 0; j < 257; ++j) {
      const int64_t k = i * 257 + j;
      ASSERT_EQ(s[k], av[k] + bv[j]);
      ASSERT_EQ(m[k], av[k] * cv[j * 300 + i]);
      ASSERT_EQ(r[k], av[k] < 0 ? 0.0f : av[k]);
    }
  }
}

TEST(ElementwiseInplace, MethodsBumpVersionAndWriteThrough) {
  Tensor x = f32({1, 2, 3, 4});
  Tensor view = x.slice(0, 1, 3);
  uint32_t v0 = x.version();
  x.add_(f32({1, 1, 1, 1}), 2.0);
  EXPECT_EQ(vals(x), (std::vector<double>{3, 4, 5, 6}));
  EXPECT_GT(x.version(), v0);
  x.mul_(2.0).sub_(f32({1, 1, 1, 1}));
  EXPECT_EQ(vals(x), (std::vector<double>{5, 7, 9, 11}));
  view.div_(2.0);  // through the view, into x's storage
  EXPECT_EQ(vals(x), (std::vector<double>{5, 3.5, 4.5, 11}));
  x.clamp_(4.0, 10.0).add_(-5.0);
  EXPECT_EQ(vals(x), (std::vector<double>{0, -1, -0.5, 5}));
  x.relu_();
  EXPECT_EQ(vals(x), (std::vector<double>{0, 0, 0, 5}));
  x.mul_(f32({1, 1, 1, 2})).div_(f32({1, 1, 1, 5}));
  EXPECT_EQ(vals(x), (std::vector<double>{0, 0, 0, 2}));
  EXPECT_EQ(x.version(), view.version());
  // An in-place op keeps the destination's shape and dtype.
  EXPECT_CONTAINS(error_of([&] { x.add_(zeros({2, 4})); }), "[2, 4]");
  Tensor h = of({1.0}, DType::F16);
  h.add_(of({0.5}, DType::F32));
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(vals(h)[0], 1.5);
}

TEST(ElementwiseInplace, RefusesGraphTensors) {
  Tensor w = f32({1, 2}).requires_grad_();
  EXPECT_CONTAINS(error_of([&] { w.add_(1.0); }), "leaf");
  EXPECT_CONTAINS(error_of([&] { w.mul_(f32({1, 1})); }), "leaf");
  Tensor y = mul(w, 2.0);
  EXPECT_CONTAINS(error_of([&] { y.relu_(); }), "relu_");
  {
    NoGradGuard no_grad;
    w.sub_(f32({1, 1}));  // what an optimizer does
  }
  EXPECT_EQ(vals(w), (std::vector<double>{0, 1}));
}

TEST(ElementwiseInplace, ModifyingASavedTensorIsDetected) {
  Tensor w = f32({1, 2}).requires_grad_();
  Tensor a = f32({3, 4});
  Tensor y = mul(w, a);  // saves a for w's gradient
  a.mul_(2.0);
  Tensor g = ones({2});
  std::string msg = error_of([&] { y.backward(g); });
  EXPECT_CONTAINS(msg, "MulBackward");
  EXPECT_CONTAINS(msg, "version");
}

TEST(ElementwiseOperators, MatchTheNamedOps) {
  Tensor a = f32({1, 2, 4}), b = f32({2, 4, 8});
  EXPECT_EQ(vals(a + b), (std::vector<double>{3, 6, 12}));
  EXPECT_EQ(vals(a - b), (std::vector<double>{-1, -2, -4}));
  EXPECT_EQ(vals(a * b), (std::vector<double>{2, 8, 32}));
  EXPECT_EQ(vals(a / b), (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(vals(a + 1.0), (std::vector<double>{2, 3, 5}));
  EXPECT_EQ(vals(a - 1.0), (std::vector<double>{0, 1, 3}));
  EXPECT_EQ(vals(a * 0.5), (std::vector<double>{0.5, 1, 2}));
  EXPECT_EQ(vals(a / 2.0), (std::vector<double>{0.5, 1, 2}));
  EXPECT_EQ(vals(1.0 + a), (std::vector<double>{2, 3, 5}));
  EXPECT_EQ(vals(1.0 - a), (std::vector<double>{0, -1, -3}));
  EXPECT_EQ(vals(3.0 * a), (std::vector<double>{3, 6, 12}));
  EXPECT_EQ(vals(8.0 / a), (std::vector<double>{8, 4, 2}));
  EXPECT_EQ(vals(-a), (std::vector<double>{-1, -2, -4}));
  EXPECT_EQ((1.0 - from_vector(std::vector<int64_t>{1, 5}, {2})).dtype(), DType::I64);
  EXPECT_EQ(vals(1.0 - from_vector(std::vector<int64_t>{1, 5}, {2})), (std::vector<double>{0, -4}));
  EXPECT_EQ((1.0 / from_vector(std::vector<int64_t>{2}, {1})).dtype(), DType::F32);
  EXPECT_EQ(vals(1.0 / from_vector(std::vector<int64_t>{2}, {1}))[0], 0.5);
}

// Gradient conventions --------------------------------------------------------------------------
std::vector<Tensor> grads_of(const Tensor& out, const std::vector<Tensor>& inputs) {
  return autograd::grad({out}, inputs, {ones(out.sizes(), out.dtype())}, false, true);
}

TEST(ElementwiseGrad, MaximumMinimumSplitTiesInHalf) {
  Tensor a = of({1, 2, 3}, DType::F64).requires_grad_(), b = of({1, 5, 0}, DType::F64).requires_grad_();
  auto g = grads_of(maximum(a, b), {a, b});
  EXPECT_EQ(vals(g[0]), (std::vector<double>{0.5, 0, 1}));
  EXPECT_EQ(vals(g[1]), (std::vector<double>{0.5, 1, 0}));
  g = grads_of(minimum(a, b), {a, b});
  EXPECT_EQ(vals(g[0]), (std::vector<double>{0.5, 1, 0}));
  EXPECT_EQ(vals(g[1]), (std::vector<double>{0.5, 0, 1}));
}

TEST(ElementwiseGrad, PowIsFiniteAtZeroBase) {
  Tensor a = of({0, 0, 2}, DType::F64).requires_grad_(), b = of({2, 0, 3}, DType::F64).requires_grad_();
  auto g = grads_of(pow(a, b), {a, b});
  EXPECT_EQ(vals(g[0]), (std::vector<double>{0, 0, 12}));  // b * a^(b-1); 0 where b == 0
  EXPECT_EQ(vals(g[1])[0], 0.0);                           // a^b log a masked where a == 0, b >= 0
  EXPECT_EQ(vals(g[1])[1], 0.0);
  EXPECT_NEAR(vals(g[1])[2], 8 * std::log(2.0), 1e-12);
  Tensor x = of({0, 3}, DType::F64).requires_grad_();
  EXPECT_EQ(vals(grads_of(pow(x, 0.0), {x})[0]), (std::vector<double>{0, 0}));
  EXPECT_EQ(vals(grads_of(pow(x, 2.0), {x})[0]), (std::vector<double>{0, 6}));
}

TEST(ElementwiseGrad, KinksFollowPyTorch) {
  Tensor x = of({-1, 0, 0.5, 1, 2}, DType::F64).requires_grad_();
  EXPECT_EQ(vals(grads_of(relu(x), {x})[0]), (std::vector<double>{0, 0, 1, 1, 1}));
  EXPECT_EQ(vals(grads_of(abs(x), {x})[0]), (std::vector<double>{-1, 0, 1, 1, 1}));
  // clamp passes the gradient on the closed interval [min, max].
  EXPECT_EQ(vals(grads_of(clamp(x, 0.0, 1.0), {x})[0]), (std::vector<double>{0, 1, 1, 1, 0}));
  EXPECT_EQ(vals(grads_of(clamp(x, 0.5, std::nullopt), {x})[0]), (std::vector<double>{0, 0, 1, 1, 1}));
}

TEST(ElementwiseGrad, WhereRoutesAndComparisonsRecordNothing) {
  Tensor c = from_vector(std::vector<uint8_t>{1, 0, 1}, {3}).to(DType::Bool);
  Tensor a = of({1, 2, 3}, DType::F64).requires_grad_(), b = of({4}, DType::F64).requires_grad_();
  auto g = grads_of(where(c, a, b), {a, b});
  EXPECT_EQ(vals(g[0]), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(vals(g[1]), (std::vector<double>{1}));  // summed over the broadcast
  Tensor r = lt(a, b);
  EXPECT_FALSE(r.requires_grad());
  EXPECT_EQ(r.grad_fn(), nullptr);
  EXPECT_FALSE(eq(a, 2.0).requires_grad());
}

TEST(ElementwiseGrad, MixedDtypeGradientsComeBackInEachInputsDtype) {
  Tensor a = of({1, 2}, DType::F16).requires_grad_(), b = of({3, 4}, DType::F32).requires_grad_();
  Tensor y = mul(a, b);
  EXPECT_EQ(y.dtype(), DType::F32);
  auto g = grads_of(y, {a, b});
  EXPECT_EQ(g[0].dtype(), DType::F16);
  EXPECT_EQ(g[1].dtype(), DType::F32);
  EXPECT_EQ(vals(g[0]), (std::vector<double>{3, 4}));
  EXPECT_EQ(vals(g[1]), (std::vector<double>{1, 2}));
  EXPECT_EQ(y.grad_fn_name(), "MulBackward");
  EXPECT_EQ(add(a, 1.0).grad_fn_name(), "AddBackward");
  EXPECT_EQ((2.0 / b).grad_fn_name(), "DivBackward");
  auto gd = grads_of(2.0 / b, {b});
  EXPECT_NEAR(vals(gd[0])[0], -2.0 / 9, 1e-7);
  EXPECT_NEAR(vals(gd[0])[1], -2.0 / 16, 1e-7);
}

// Values from PyTorch -----------------------------------------------------------------------
TEST(ElementwiseTorchValues, GeluSigmoidSilu) {
  // Computed by torch 1.13 (python3-torch) in float64 at these inputs.
  const std::vector<double> x{-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0};
  const std::vector<double> gelu_none{-0.00404969409489031, -0.15865525393145702, -0.15426876936299344, 0.0,
                                      0.34573123063700656,  0.841344746068543,    2.99595030590511};
  const std::vector<double> gelu_tanh{-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.0,
                                      0.34571400982514394,    0.8411919906082768,   2.996362607918227};
  const std::vector<double> sig{0.04742587317756678, 0.2689414213699951, 0.3775406687981454, 0.5,
                                0.6224593312018546,  0.7310585786300049, 0.9525741268224334};
  const std::vector<double> silu_v{-0.14227761953270035, -0.2689414213699951, -0.1887703343990727, 0.0,
                                   0.3112296656009273,   0.7310585786300049,  2.8577223804672998};
  const std::vector<double> gelu_grad{-0.01194564720418392, -0.08331547058768635, 0.13250487534383712, 0.5,
                                      0.8674951246561629,   1.0833154705876864,   1.011945647204184};
  const std::vector<double> gelu_tanh_grad{-0.011584166630969648, -0.08296408384578252, 0.13263009646535764, 0.5,
                                           0.8673699035346424,    1.0829640838457826,   1.0115841666309695};
  auto close = [](const std::vector<double>& a, const std::vector<double>& e, double tol) {
    ASSERT_EQ(a.size(), e.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], tol * std::max(1.0, std::fabs(e[i]))) << i;
  };
  Tensor t = of(x, DType::F64).requires_grad_();
  close(vals(gelu(t)), gelu_none, 1e-14);
  close(vals(gelu(t, "tanh")), gelu_tanh, 1e-14);
  close(vals(sigmoid(t)), sig, 1e-15);
  close(vals(silu(t)), silu_v, 1e-15);
  close(vals(grads_of(gelu(t), {t})[0]), gelu_grad, 1e-14);
  close(vals(grads_of(gelu(t, "tanh"), {t})[0]), gelu_tanh_grad, 1e-14);
  // F32: torch 1.13 gives these for gelu at the same inputs.
  const std::vector<double> gelu_f32{-0.004049867391586304, -0.1586552858352661, -0.1542687863111496, 0.0,
                                     0.3457311987876892,    0.8413447141647339,  2.995950222015381};
  close(vals(gelu(of(x, DType::F32))), gelu_f32, 2e-7);
}

}  // namespace
}  // namespace mantissa
