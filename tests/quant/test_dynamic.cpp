// Dynamic int8 linear (quant/dynamic.h, kernels::qlinear_dequant): the output against the F32
// computation on the same fake-quantized operands, oneDNN against the reference loops, the
// quantize_dynamic model pass (in place, so typed member pointers run the int8 layer too), clear errors for
// bad input, and a printed timing of dynamic int8 vs F32 linear (batch 256, 784 -> 512).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/qgemm.h"
#include "nn/activation.h"
#include "nn/container.h"
#include "nn/linear.h"
#include "quant/dynamic.h"
#include "quant/quantized_modules.h"

namespace mantissa {
namespace {

using quant::QuantizedLinearDynamic;

std::vector<float> values(const Tensor& t) {
  Tensor c = t.detach().to(DType::F32).contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

// x shifted so the batch range is asymmetric (a non-trivial uint8 zero point).
Tensor make_input(const Shape& shape, Generator& gen, double lo, double hi) {
  NoGradGuard ng;
  Tensor x = rand(shape, {}, &gen);
  return add(mul(x, full({}, hi - lo)), full({}, lo));
}

// Integer codes uniform in [lo, hi] of dtype t.
Tensor make_codes(const Shape& shape, DType t, int lo, int hi, Generator& gen) {
  const std::vector<float> u = values(rand(shape, {}, &gen));
  Tensor c = empty(shape, TensorOptions(t));
  for (size_t i = 0; i < u.size(); ++i) {
    const int v = std::min(hi, lo + static_cast<int>(u[i] * (hi - lo + 1)));
    if (t == DType::U8) c.data<uint8_t>()[i] = static_cast<uint8_t>(v);
    else c.data<int8_t>()[i] = static_cast<int8_t>(v);
  }
  return c;
}

// Checks out against the computation on dequantized operands: x_dq = (q_x - zp) * s_x with the
// batch's own qparams, w_dq = q_w * s_w[c]. The double reference is exact up to the final
// rounding; the int8 path rounds s_x * s_w[c] and the product, so it may differ by a few F32 ulps
// of sum |x_dq * w_dq| + |b| (the scale of the terms, not of a possibly cancelled result).
void check_against_dequantized(QuantizedLinearDynamic& q, const Tensor& input, const Tensor& out) {
  const int64_t k = q.in_features, c = q.out_features;
  const quant::QParams qp = q.input_qparams(input);
  const Tensor xdq = quant::dequantize(quant::quantize(input.contiguous(), qp), qp).contiguous();
  const std::vector<float> xs = values(xdq);
  const std::vector<float> wc = values(q.weight_codes), ws = values(q.weight_scale), o = values(out);
  const std::vector<float> b = q.bias.defined() ? values(q.bias) : std::vector<float>(c, 0.0f);
  const int64_t rows = xdq.numel() / k;
  ASSERT_EQ(static_cast<int64_t>(o.size()), rows * c);
  // The F32 layer on dequantized operands (what a fake-quant model computes).
  Tensor wdq = mul(q.weight_codes.to(DType::F32), q.weight_scale.view({c, 1}));
  const std::vector<float> f32 = values(linear(xdq.view({rows, k}), wdq, q.bias));
  int64_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < c; ++j) {
      double ref = b[j], mag = std::fabs(b[j]);
      for (int64_t i = 0; i < k; ++i) {
        const double t = static_cast<double>(xs[r * k + i]) * (static_cast<double>(wc[j * k + i]) * ws[j]);
        ref += t;
        mag += std::fabs(t);
      }
      const double tol = 1e-5 * mag + 1e-30;
      if (std::fabs(o[r * c + j] - ref) > tol || std::fabs(f32[r * c + j] - ref) > tol) {
        if (++bad <= 5)
          ADD_FAILURE() << "row " << r << " col " << j << ": dynamic " << o[r * c + j] << ", F32 on dequantized "
                        << f32[r * c + j] << ", exact " << ref << " (tolerance " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(QuantDynamic, MatchesF32OnDequantizedOperands) {
  Generator gen(11);
  for (bool with_bias : {true, false}) {
    nn::Linear lin(96, 40, with_bias);
    QuantizedLinearDynamic q(lin);
    // 3-D input: all leading dims share one batch range.
    Tensor x = make_input({3, 7, 96}, gen, -0.7, 2.3);
    Tensor y = q.forward(x);
    EXPECT_EQ(y.sizes(), (Shape{3, 7, 40}));
    EXPECT_EQ(y.dtype(), DType::F32);
    check_against_dequantized(q, x, y);
    // The qparams are the batch's own: uint8 affine over [min, max] widened to 0.
    const quant::QParams qp = q.input_qparams(x);
    EXPECT_EQ(qp.spec.dtype, quant::QDType::UInt8);
    const std::vector<float> xv = values(x);
    const float lo = *std::min_element(xv.begin(), xv.end()), hi = *std::max_element(xv.begin(), xv.end());
    EXPECT_FLOAT_EQ(qp.scale.item<float>(), (hi - lo) / 255.0f);
    // A second batch with another range gets other qparams, and still matches.
    Tensor x2 = make_input({5, 96}, gen, 0.5, 9.0);  // all positive: the range is widened to 0
    EXPECT_NE(q.input_qparams(x2).scale.item<float>(), qp.scale.item<float>());
    EXPECT_EQ(q.input_qparams(x2).zero_point.item<int32_t>(), 0);
    check_against_dequantized(q, x2, q.forward(x2));
    // Close to the float layer too (the quantization error, loosely).
    NoGradGuard ng;
    const std::vector<float> yf = values(lin.forward(x2)), yq = values(q.forward(x2));
    double err = 0, ref = 0;
    for (size_t i = 0; i < yf.size(); ++i) err = std::max(err, double(std::fabs(yf[i] - yq[i]))), ref = std::max(ref, double(std::fabs(yf[i])));
    EXPECT_LT(err, 0.05 * ref);
  }
}

TEST(QuantDynamic, InputCodesAreQuantizeOfTheBatchRange) {
  Generator gen(21);
  nn::Linear lin(300, 4);
  QuantizedLinearDynamic q(lin);
  // Several chunks of the parallel range reduction; the extremes planted in the last one.
  for (const Shape& shape : {Shape{1, 300}, Shape{7, 11, 300}, Shape{200, 300}}) {
    Tensor x = make_input(shape, gen, -1.5, 0.8);
    const int64_t n = x.numel();
    x.data<float>()[n - 1] = 4.25f;
    x.data<float>()[n - 2] = -2.0f;
    const quant::QParams qp = q.input_qparams(x);
    EXPECT_FLOAT_EQ(qp.scale.item<float>(), 6.25f / 255.0f);
    const quant::QTensor qx = q.quantize_input(x);
    EXPECT_EQ(qx.codes.dtype(), DType::U8);
    EXPECT_EQ(qx.scale(), qp.scale.item<float>());
    EXPECT_EQ(qx.zero_point(), qp.zero_point.item<int32_t>());
    EXPECT_EQ(values(qx.codes), values(quant::quantize(x, qp)));
  }
}

TEST(QuantDynamic, WeightsQuantizedOnceAsQuantizedLinear) {
  nn::Linear lin(20, 6);
  QuantizedLinearDynamic q(lin);
  const quant::QParams wq = quant::weight_qparams(lin.weight);
  EXPECT_EQ(values(q.weight_scale), values(wq.scale));
  EXPECT_EQ(values(q.weight_codes), values(quant::quantize(lin.weight.detach(), wq)));
  EXPECT_EQ(values(q.bias), values(lin.bias));
  // The float layer may change afterwards; the dynamic layer keeps its own copy.
  {
    NoGradGuard ng;
    lin.weight.fill_(0.0);
  }
  EXPECT_NE(values(q.weight_codes), values(quant::quantize(lin.weight.detach(), wq)));
}

// Exact integer reference of the kernel formula.
std::vector<float> kernel_formula(const Tensor& x, const Tensor& w, const Tensor& bias, float xs, int32_t zp,
                                  const Tensor& ws) {
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const std::vector<float> xv = values(x), wv = values(w), sv = values(ws);
  const std::vector<float> bv = bias.defined() ? values(bias) : std::vector<float>(c, 0.0f);
  std::vector<float> out(n * c);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < c; ++j) {
      int64_t acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += (static_cast<int64_t>(xv[r * k + i]) - zp) * static_cast<int64_t>(wv[j * k + i]);
      const float m = xs * sv[j];
      volatile float prod = static_cast<float>(acc) * m;
      out[r * c + j] = prod + bv[j];
    }
  return out;
}

TEST(QuantDynamic, OneDnnEqualsReferenceAndFormula) {
  Generator gen(5);
  struct Case { int64_t n, k, c; DType xt; int32_t zp; bool bias; };
  for (const Case& cs : {Case{1, 1, 1, DType::U8, 0, true}, Case{7, 33, 5, DType::U8, 131, true},
                         Case{16, 784, 64, DType::U8, 255, false}, Case{9, 50, 17, DType::I8, -5, true},
                         Case{4, 300, 12, DType::I8, 127, false}}) {
    NoGradGuard ng;
    Tensor x = cs.xt == DType::U8 ? make_codes({cs.n, cs.k}, DType::U8, 0, 255, gen)
                                  : make_codes({cs.n, cs.k}, DType::I8, -128, 127, gen);
    Tensor w = make_codes({cs.c, cs.k}, DType::I8, -128, 127, gen);
    Tensor ws = make_input({cs.c}, gen, 1e-4, 2e-2);
    Tensor b = cs.bias ? make_input({cs.c}, gen, -3, 3) : Tensor();
    const float xs = 0.0137f;
    Tensor a = empty({cs.n, cs.c}, TensorOptions(DType::F32)), r = empty({cs.n, cs.c}, TensorOptions(DType::F32));
    kernels::qlinear_dequant(a, x, w, b, xs, cs.zp, ws);
    kernels::qlinear_dequant(r, x, w, b, xs, cs.zp, ws, kernels::QGemmImpl::Reference);
    EXPECT_EQ(values(a), values(r)) << "n " << cs.n << " k " << cs.k << " c " << cs.c;
    EXPECT_EQ(values(r), kernel_formula(x, w, b, xs, cs.zp, ws));
  }
  // The module through both paths, on batches with different qparams (one cached primitive).
  nn::Linear lin(128, 24);
  QuantizedLinearDynamic q(lin);
  for (int i = 0; i < 3; ++i) {
    Tensor x = make_input({10, 128}, gen, -1.0 - i, 1.0 + 3 * i);
    q.impl = kernels::QGemmImpl::Auto;
    const std::vector<float> a = values(q.forward(x));
    q.impl = kernels::QGemmImpl::Reference;
    EXPECT_EQ(a, values(q.forward(x)));
  }
}

TEST(QuantDynamic, EdgeShapes) {
  nn::Linear lin(8, 3);
  QuantizedLinearDynamic q(lin);
  EXPECT_EQ(q.forward(zeros({0, 8})).sizes(), (Shape{0, 3}));
  // A constant batch: scale floored at kScaleEps, the output is still finite and close.
  Tensor c = full({2, 8}, 0.25);
  const std::vector<float> y = values(q.forward(c));
  NoGradGuard ng;
  const std::vector<float> yf = values(lin.forward(c));
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], yf[i], 0.02);
  // Half inputs are converted to F32 first; the output is F32 without autograd history.
  Tensor xh = full({1, 8}, 0.5).to(DType::F16);
  EXPECT_EQ(q.forward(xh).dtype(), DType::F32);
}

// A model that reaches its layers only through the registry.
std::shared_ptr<nn::Sequential> make_mlp() {
  return std::make_shared<nn::Sequential>(
      std::make_shared<nn::Linear>(12, 16), std::make_shared<nn::ReLU>(),
      std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(16, 8), std::make_shared<nn::ReLU>()),
      std::make_shared<nn::Linear>(8, 4));
}

TEST(QuantDynamic, QuantizeDynamicConvertsLinearsInPlace) {
  Generator gen(3);
  auto model = make_mlp();
  // Expected: each layer converted by hand, run in sequence. The typed handles stay valid: the
  // Linears are converted where they are.
  auto l0 = std::static_pointer_cast<nn::Linear>(model->named_children()[0].second);
  auto inner = model->named_children()[2].second;
  auto l1 = std::static_pointer_cast<nn::Linear>(inner->named_children()[0].second);
  auto l2 = std::static_pointer_cast<nn::Linear>(model->named_children()[3].second);
  QuantizedLinearDynamic q0(*l0), q1(*l1), q2(*l2);
  EXPECT_EQ(quant::quantize_dynamic(*model), 3);
  for (const auto& l : {l0, l1, l2}) {
    ASSERT_NE(l->quantized(), nullptr);
    EXPECT_EQ(l->quantized()->name(), "QuantizedLinearDynamic");
    EXPECT_FALSE(l->weight.defined());
  }
  // The state_dict holds the int8 weights and no float ones.
  for (const auto& [k, t] : model->state_dict()) {
    EXPECT_NE(k.find("quantized."), std::string::npos) << k;
    if (k.size() >= 6 && k.compare(k.size() - 6, 6, "weight") == 0) {
      EXPECT_EQ(t.dtype(), DType::I8) << k;
    }
  }
  Tensor x = make_input({6, 12}, gen, -2, 2);
  NoGradGuard ng;
  Tensor expect = q2.forward(relu(q1.forward(relu(q0.forward(x)))));
  EXPECT_EQ(values(model->forward(x)), values(expect));
  EXPECT_EQ(values(l0->forward(x)), values(q0.forward(x)));
  // Converting again finds nothing left to convert.
  EXPECT_EQ(quant::quantize_dynamic(*model), 0);
  EXPECT_EQ(values(model->forward(x)), values(expect));
}

TEST(QuantDynamic, SharedLinearBecomesOneSharedModule) {
  auto shared = std::make_shared<nn::Linear>(5, 5);
  auto model = std::make_shared<nn::Sequential>(shared, std::make_shared<nn::ReLU>(), shared);
  EXPECT_EQ(quant::quantize_dynamic(*model), 1);
  ASSERT_NE(shared->quantized(), nullptr);
}

// The libtorch pattern: forward() calls a typed member pointer, bypassing the registry.
struct TypedNet : nn::Module {
  TypedNet() { fc = register_module("fc", std::make_shared<nn::Linear>(4, 3)); }
  Tensor forward(const Tensor& x) override { return fc->forward(x); }
  std::shared_ptr<nn::Linear> fc;
};

TEST(QuantDynamic, TypedMemberPointerRunsTheInt8Layer) {
  TypedNet net;
  Generator gen(5);
  Tensor x = make_input({3, 4}, gen, -1, 1);
  QuantizedLinearDynamic expect(*net.fc);
  EXPECT_EQ(quant::quantize_dynamic(net), 1);
  NoGradGuard ng;
  EXPECT_EQ(values(net.forward(x)), values(expect.forward(x)));
  // A bare Linear converts itself.
  nn::Linear lin(2, 2);
  EXPECT_EQ(quant::quantize_dynamic(lin), 1);
  EXPECT_NE(lin.quantized(), nullptr);
  // A Linear prepared for QAT / static PTQ is refused, and nothing changes.
  auto prepared = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(2, 2), std::make_shared<nn::Linear>(2, 2));
  std::static_pointer_cast<nn::Linear>(prepared->named_children()[1].second)
      ->set_weight_fake_quant(std::make_shared<nn::Identity>());
  EXPECT_THROW(quant::quantize_dynamic(*prepared), Error);
  EXPECT_EQ(std::static_pointer_cast<nn::Linear>(prepared->named_children()[0].second)->quantized(), nullptr);
}

TEST(QuantDynamic, Errors) {
  nn::Linear lin(8, 3);
  QuantizedLinearDynamic q(lin);
  EXPECT_THROW(q.forward(zeros({2, 7})), Error);                        // wrong in_features
  EXPECT_THROW(q.forward(zeros({2, 8}, DType::I32)), Error);            // not floating
  EXPECT_THROW(q.forward(Tensor()), Error);                             // undefined
  Tensor nan_x = zeros({2, 8});
  nan_x.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(q.forward(nan_x), Error);
  Tensor inf_x = zeros({2, 8});
  inf_x.data<float>()[0] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(q.forward(inf_x), Error);
  EXPECT_THROW(q.input_qparams(zeros({0, 8})), Error);
  {
    NoGradGuard ng;
    lin.weight.data<float>()[0] = std::numeric_limits<float>::infinity();
  }
  EXPECT_THROW(QuantizedLinearDynamic{lin}, Error);

  // The kernel.
  Tensor x = zeros({2, 4}, DType::U8), w = zeros({3, 4}, DType::I8), ws = full({3}, 0.1);
  Tensor out = empty({2, 3}, TensorOptions(DType::F32));
  EXPECT_NO_THROW(kernels::qlinear_dequant(out, x, w, Tensor(), 0.5f, 3, ws));
  EXPECT_THROW(kernels::qlinear_dequant(empty({2, 3}, TensorOptions(DType::U8)), x, w, Tensor(), 0.5f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, zeros({2, 5}, DType::U8), w, Tensor(), 0.5f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x.to(DType::F32), w, Tensor(), 0.5f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w.to(DType::U8), Tensor(), 0.5f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, zeros({3}, DType::I32), 0.5f, 3, ws), Error);  // bias must be F32
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, zeros({4}), 0.5f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, Tensor(), 0.0f, 3, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, Tensor(), 0.5f, 256, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x.to(DType::I8), w, Tensor(), 0.5f, 200, ws), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, Tensor(), 0.5f, 3, full({3}, -0.1)), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, x, w, Tensor(), 0.5f, 3, full({2}, 0.1)), Error);
  EXPECT_THROW(kernels::qlinear_dequant(out, zeros({4, 2}, DType::U8).t(), w, Tensor(), 0.5f, 3, ws), Error);
}

TEST(QuantDynamic, TimingBatch256) {
  Generator gen(1);
  nn::Linear lin(784, 512);
  QuantizedLinearDynamic q(lin);
  Tensor x = rand({256, 784}, {}, &gen);
  NoGradGuard ng;
  Tensor y = lin.forward(x), yq = q.forward(x);
  const std::vector<float> a = values(y), b = values(yq);
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) err = std::max(err, double(std::fabs(a[i] - b[i])));
  EXPECT_LT(err, 0.05);
  auto time_ms = [](const std::function<void()>& f) {
    for (int i = 0; i < 3; ++i) f();
    double best = 1e30;
    for (int i = 0; i < 20; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double f32 = time_ms([&] { y = lin.forward(x); });
  const double dyn = time_ms([&] { yq = q.forward(x); });
  q.impl = kernels::QGemmImpl::Reference;
  const double ref = time_ms([&] { yq = q.forward(x); });
  std::printf("[timing] linear 256x784->512, %d thread(s), best of 20: F32 %.3f ms, dynamic int8 (range + quantize + "
              "int8 gemm + F32 out) %.3f ms, dynamic int8 reference loops %.3f ms (max |diff| vs F32 %.3g)\n",
              omp_get_max_threads(), f32, dyn, ref, err);
}

}  // namespace
}  // namespace mantissa
