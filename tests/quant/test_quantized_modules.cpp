// Int8 inference (core/kernels/qgemm.h, quant/quantized_modules.h): QuantizedLinear and
// QuantizedConv2d against the fake-quant float model (fake-quantized input and weights, F32
// linear / conv, fake-quantized output), the oneDNN path against the reference loops, ops on
// codes against the float ops, and clear errors for bad qparams and shapes. Also prints a micro
// timing of an int8 vs F32 linear (batch 256, 784 -> 512).
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <functional>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/qgemm.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "quant/quantized_modules.h"

namespace mantissa {
namespace {

using quant::QDType;
using quant::QParams;
using quant::QScheme;
using quant::QSpec;
using quant::QTensor;

QSpec act_spec(QDType t) {
  QSpec s;
  s.dtype = t;
  s.scheme = QScheme::Affine;
  return s;
}

// Affine per-tensor qparams covering the values of t.
QParams range_qparams(const Tensor& t, QDType dtype) {
  NoGradGuard ng;
  return quant::calculate_qparams(min(t).detach(), max(t).detach(), act_spec(dtype));
}

float scalar(const Tensor& t) { return t.to(DType::F32).item<float>(); }

std::vector<float> values(const Tensor& t) {
  Tensor c = t.detach().to(DType::F32).contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}
float max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> va = values(a), vb = values(b);
  EXPECT_EQ(va.size(), vb.size());
  float m = 0.0f;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}

struct Agreement {
  int64_t n = 0, exact = 0, within_one = 0;
  double exact_frac() const { return n ? static_cast<double>(exact) / n : 1.0; }
};

// Compares the int8 module's output with the fake-quant model's in units of the output step.
Agreement compare(const Tensor& int8_out, const Tensor& fq_out, float step) {
  Tensor a = int8_out.contiguous(), b = fq_out.detach().contiguous();
  EXPECT_EQ(a.sizes(), b.sizes());
  Agreement g;
  const float* ap = a.data<float>();
  const float* bp = b.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(static_cast<double>(ap[i]) - bp[i]) / step;
    ++g.n;
    if (d < 1e-3) ++g.exact;
    if (d < 1.0 + 1e-3) ++g.within_one;
  }
  return g;
}

void expect_agreement(const Agreement& g, const std::string& what) {
  std::printf("[agreement] %s: %lld/%lld exact, %lld within one step\n", what.c_str(), static_cast<long long>(g.exact),
              static_cast<long long>(g.n), static_cast<long long>(g.within_one));
  EXPECT_EQ(g.within_one, g.n) << what << ": every element within one quantization step";
  EXPECT_GE(g.exact_frac(), 0.999) << what << ": " << g.exact << " of " << g.n << " exact";
}

// The fake-quant float model of one layer: returns the fake-quantized output for input x.
Tensor fq(const Tensor& x, const QParams& qp) {
  return fake_quantize_per_tensor_affine(x, qp.scale, qp.zero_point, qp.spec.qmin(), qp.spec.qmax());
}
Tensor fq_weight(const Tensor& w) {
  QParams wq = quant::weight_qparams(w);
  return fake_quantize_per_channel_affine(w.detach(), wq.scale, wq.zero_point, 0, -128, 127);
}
// The bias the int8 layer really adds: its I32 codes times x_scale * w_scale[c] (in F32).
Tensor dequantized_bias(const Tensor& bias_codes, const Tensor& w_scale, const QParams& in) {
  if (!bias_codes.defined()) return Tensor();
  return bias_codes.to(DType::F32) * (w_scale * scalar(in.scale));
}

struct LinearCase {
  int64_t n, k, c;
  bool bias;
  QDType act;
};

void run_linear(const LinearCase& lc, uint64_t seed) {
  NoGradGuard ng;
  Generator gen(seed);
  nn::Linear lin(lc.k, lc.c, lc.bias);
  Tensor x = randn({lc.n, lc.k}, {}, &gen) * 1.5 + 0.3;
  QParams in_qp = range_qparams(x, lc.act);
  Tensor y_float = lin.forward(fq(x, in_qp));
  QParams out_qp = range_qparams(y_float, lc.act);
  quant::QuantizedLinear ql(lin, in_qp, out_qp);

  Tensor wf = fq_weight(lin.weight);
  // Reference A: the plain fake-quant model (float bias); reference B: with the bias the int8 layer adds.
  Tensor ref_a = fq(linear(fq(x, in_qp), wf, lin.bias), out_qp);
  Tensor ref_b = fq(linear(fq(x, in_qp), wf, dequantized_bias(ql.bias_codes, ql.weight_scale, in_qp)), out_qp);
  Tensor got = ql.forward(x);
  const float step = scalar(out_qp.scale);
  const std::string what = "linear " + std::to_string(lc.n) + "x" + std::to_string(lc.k) + "->" +
                           std::to_string(lc.c) + (lc.bias ? " bias" : "");
  Agreement a = compare(got, ref_a, step);
  std::printf("[agreement] %s vs float-bias model: %lld/%lld exact, %lld within one step\n", what.c_str(),
              static_cast<long long>(a.exact), static_cast<long long>(a.n), static_cast<long long>(a.within_one));
  EXPECT_GE(static_cast<double>(a.within_one) / a.n, 0.999) << what << " vs the float-bias fake-quant model";
  expect_agreement(compare(got, ref_b, step), what);

  // The QTensor interface gives the same codes, with the output qparams.
  QTensor qy = ql.forward(quant::quantize_tensor(x, in_qp));
  EXPECT_EQ(qy.codes.dtype(), lc.act == QDType::UInt8 ? DType::U8 : DType::I8);
  EXPECT_EQ(max_abs_diff(quant::dequantize_tensor(qy), got), 0.0f);
}

TEST(QuantizedLinear, MatchesFakeQuantModel) {
  run_linear({64, 96, 40, true, QDType::UInt8}, 1);
  run_linear({33, 200, 17, false, QDType::UInt8}, 2);
  run_linear({16, 64, 24, true, QDType::Int8}, 3);
}

TEST(QuantizedLinear, LeadingDimsFlatten) {
  NoGradGuard ng;
  Generator gen(4);
  nn::Linear lin(12, 5);
  Tensor x = randn({2, 3, 12}, {}, &gen);
  QParams in_qp = range_qparams(x, QDType::UInt8), out_qp = range_qparams(lin.forward(x), QDType::UInt8);
  quant::QuantizedLinear ql(lin, in_qp, out_qp);
  Tensor y3 = ql.forward(x);
  Tensor y2 = ql.forward(x.reshape({6, 12}));
  EXPECT_EQ(y3.sizes(), (Shape{2, 3, 5}));
  EXPECT_EQ(max_abs_diff(y3.reshape({6, 5}), y2), 0.0f);
}

struct ConvCase {
  int64_t n, c, h, w, o, k, stride, pad, dilation, groups;
  bool bias;
};

void run_conv(const ConvCase& cc, uint64_t seed) {
  NoGradGuard ng;
  Generator gen(seed);
  nn::Conv2d conv(nn::Conv2dOptions(cc.c, cc.o, cc.k)
                      .stride(cc.stride)
                      .padding(cc.pad)
                      .dilation(cc.dilation)
                      .groups(cc.groups)
                      .bias(cc.bias));
  Tensor x = randn({cc.n, cc.c, cc.h, cc.w}, {}, &gen) + 0.5;
  QParams in_qp = range_qparams(x, QDType::UInt8);
  Tensor y_float = conv.forward(fq(x, in_qp));
  QParams out_qp = range_qparams(y_float, QDType::UInt8);
  quant::QuantizedConv2d qc(conv, in_qp, out_qp);

  Conv2dOptions o;
  o.stride = {cc.stride, cc.stride};
  o.padding = {cc.pad, cc.pad};
  o.dilation = {cc.dilation, cc.dilation};
  o.groups = cc.groups;
  Tensor wf = fq_weight(conv.weight);
  Tensor ref_a = fq(conv2d(fq(x, in_qp), wf, conv.bias, o), out_qp);
  Tensor ref_b = fq(conv2d(fq(x, in_qp), wf, dequantized_bias(qc.bias_codes, qc.weight_scale, in_qp), o), out_qp);
  Tensor got = qc.forward(x);
  const float step = scalar(out_qp.scale);
  const std::string what = "conv c" + std::to_string(cc.c) + " o" + std::to_string(cc.o) + " k" +
                           std::to_string(cc.k) + " s" + std::to_string(cc.stride) + " p" + std::to_string(cc.pad) +
                           " d" + std::to_string(cc.dilation) + " g" + std::to_string(cc.groups) +
                           (cc.bias ? " bias" : "");
  Agreement a = compare(got, ref_a, step);
  std::printf("[agreement] %s vs float-bias model: %lld/%lld exact, %lld within one step\n", what.c_str(),
              static_cast<long long>(a.exact), static_cast<long long>(a.n), static_cast<long long>(a.within_one));
  EXPECT_GE(static_cast<double>(a.within_one) / a.n, 0.999) << what << " vs the float-bias fake-quant model";
  expect_agreement(compare(got, ref_b, step), what);
}

TEST(QuantizedConv2d, MatchesFakeQuantModel) {
  run_conv({2, 4, 11, 9, 6, 3, 1, 1, 1, 1, true}, 10);
  run_conv({3, 6, 12, 12, 8, 3, 2, 0, 1, 2, false}, 11);   // groups, stride, no padding, no bias
  run_conv({2, 8, 10, 10, 8, 3, 1, 2, 2, 8, true}, 12);    // depthwise, dilated, padded
  run_conv({2, 16, 7, 7, 12, 1, 1, 0, 1, 1, true}, 13);    // 1x1
  run_conv({1, 6, 9, 13, 9, 5, 3, 2, 1, 3, false}, 14);    // 5x5, stride 3, groups 3
}

// ---- kernels: oneDNN (Auto) against the reference loops -------------------------------------

Tensor random_codes(const Shape& shape, DType t, Generator& gen) {
  NoGradGuard ng;
  const float lo = t == DType::U8 ? 0 : -128, hi = t == DType::U8 ? 255 : 127;
  std::vector<float> u = values(rand(shape, {}, &gen));
  for (float& v : u) v = std::min(hi, std::floor(v * (hi - lo + 1) + lo));
  return from_vector(u, shape).to(t);
}

kernels::Requant random_requant(int64_t channels, int32_t x_zp, int32_t out_zp, float out_scale, Generator& gen) {
  NoGradGuard ng;
  kernels::Requant r;
  r.x_scale = 0.0173f;
  r.x_zp = x_zp;
  r.w_scale = (rand({channels}, {}, &gen) * 0.01 + 0.002).contiguous();
  r.out_scale = out_scale;
  r.out_zp = out_zp;
  return r;
}

int64_t count_diff(const Tensor& a, const Tensor& b, int64_t* max_abs) {
  const std::vector<float> va = values(a), vb = values(b);
  int64_t n = 0;
  *max_abs = 0;
  for (size_t i = 0; i < va.size(); ++i) {
    const int64_t d = static_cast<int64_t>(std::fabs(va[i] - vb[i]));
    *max_abs = std::max(*max_abs, d);
    n += d > 0;
  }
  return n;
}

TEST(QGemm, OneDnnMatchesReferenceLinear) {
  Generator gen(20);
  for (DType xt : {DType::U8, DType::I8}) {
    for (DType ot : {DType::U8, DType::I8}) {
      for (bool with_bias : {true, false}) {
        const int64_t n = 37, k = 150, c = 29;
        Tensor x = random_codes({n, k}, xt, gen), w = random_codes({c, k}, DType::I8, gen);
        Tensor bias = with_bias ? random_codes({c}, DType::I8, gen).to(DType::I32) * 300 : Tensor();
        if (with_bias) bias = bias.contiguous();
        auto r = random_requant(c, xt == DType::U8 ? 131 : -7, ot == DType::U8 ? 118 : 3, 3.1f, gen);
        Tensor a = empty({n, c}, TensorOptions(ot)), b = empty({n, c}, TensorOptions(ot));
        kernels::qlinear(a, x, w, bias, r, kernels::QGemmImpl::Auto);
        kernels::qlinear(b, x, w, bias, r, kernels::QGemmImpl::Reference);
        int64_t max_abs = 0;
        const int64_t diff = count_diff(a, b, &max_abs);
        EXPECT_LE(max_abs, 1) << "only a tie can differ, by one code";
        EXPECT_LE(diff, a.numel() / 1000) << dtype_name(xt) << " -> " << dtype_name(ot) << " bias " << with_bias;
        // Not everything saturated: the comparison means something.
        const std::vector<float> vb = values(b);
        const float top = ot == DType::U8 ? 255.0f : 127.0f, bottom = ot == DType::U8 ? 0.0f : -128.0f;
        EXPECT_GT(std::count_if(vb.begin(), vb.end(), [&](float v) { return v != top && v != bottom; }),
                  static_cast<int64_t>(vb.size() / 2));
      }
    }
  }
}

TEST(QGemm, OneDnnMatchesReferenceConv) {
  Generator gen(21);
  struct G {
    int64_t n, c, h, w, o, k;
    kernels::Conv2dParams p;
  };
  kernels::Conv2dParams p1, p2, p3;
  p1.pad_h = p1.pad_w = 1;
  p2.stride_h = 2;
  p2.stride_w = 1;
  p2.groups = 2;
  p2.pad_h = 2;
  p3.groups = 6;
  p3.dilation_h = p3.dilation_w = 2;
  p3.pad_h = p3.pad_w = 1;
  for (const G& g : {G{2, 5, 9, 8, 7, 3, p1}, G{2, 6, 10, 11, 4, 3, p2}, G{1, 6, 9, 9, 12, 3, p3}}) {
    for (bool with_bias : {true, false}) {
      const int64_t ho = (g.h + 2 * g.p.pad_h - g.p.dilation_h * (g.k - 1) - 1) / g.p.stride_h + 1;
      const int64_t wo = (g.w + 2 * g.p.pad_w - g.p.dilation_w * (g.k - 1) - 1) / g.p.stride_w + 1;
      Tensor x = random_codes({g.n, g.c, g.h, g.w}, DType::U8, gen);
      Tensor w = random_codes({g.o, g.c / g.p.groups, g.k, g.k}, DType::I8, gen);
      Tensor bias = with_bias ? (random_codes({g.o}, DType::I8, gen).to(DType::I32) * 100).contiguous() : Tensor();
      auto r = random_requant(g.o, 77, 128, 1.3f, gen);
      Tensor a = empty({g.n, g.o, ho, wo}, TensorOptions(DType::U8)), b = empty(a.sizes(), TensorOptions(DType::U8));
      kernels::qconv2d(a, x, w, bias, g.p, r, kernels::QGemmImpl::Auto);
      kernels::qconv2d(b, x, w, bias, g.p, r, kernels::QGemmImpl::Reference);
      int64_t max_abs = 0;
      const int64_t diff = count_diff(a, b, &max_abs);
      EXPECT_LE(max_abs, 1);
      EXPECT_LE(diff, std::max<int64_t>(1, a.numel() / 1000)) << "groups " << g.p.groups << " bias " << with_bias;
    }
  }
}

// The requantization rule itself on hand-made accumulators: ties round half to even, then the
// zero point is added, then the clamp. x codes with zero point 0 and one weight 1 make acc = x;
// M = 0.5 (x_scale 1, w_scale 1, out_scale 2) puts half the products on a .5 tie.
TEST(QGemm, RequantizationRoundsHalfToEven) {
  const std::vector<float> acc{1, 2, 3, 5, 7, 255, 0};
  Tensor x = from_vector(acc, {7, 1}).to(DType::U8);
  Tensor w = from_vector(std::vector<float>{1}, {1, 1}).to(DType::I8);
  kernels::Requant r;
  r.w_scale = from_vector(std::vector<float>{1.0f}, {1});
  r.out_scale = 2.0f;
  for (int32_t zp : {1, 2, 200}) {
    r.out_zp = zp;
    Tensor ref = empty({7, 1}, TensorOptions(DType::U8)), onednn = empty({7, 1}, TensorOptions(DType::U8));
    kernels::qlinear(ref, x, w, Tensor(), r, kernels::QGemmImpl::Reference);
    kernels::qlinear(onednn, x, w, Tensor(), r, kernels::QGemmImpl::Auto);
    for (size_t i = 0; i < acc.size(); ++i) {
      // rint(acc * M) + zp: 0.5 -> 0, 1 -> 1, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 127.5 -> 128, 0 -> 0.
      const float expected = std::min(255.0f, std::nearbyint(acc[i] * 0.5f) + static_cast<float>(zp));
      EXPECT_EQ(ref.data<uint8_t>()[i], expected) << "acc " << acc[i] << " zp " << zp;
      // oneDNN adds the zero point before rounding: the same except at a tie with an odd zero point.
      const float folded = std::min(255.0f, std::nearbyint(acc[i] * 0.5f + static_cast<float>(zp)));
      const uint8_t got = onednn.data<uint8_t>()[i];
      EXPECT_TRUE(got == expected || got == folded) << "acc " << acc[i] << " zp " << zp << " got " << int(got);
      if (zp % 2 == 0) {
        EXPECT_EQ(got, expected) << "an even zero point leaves ties alone";
      }
    }
  }
}

// ---- ops on codes ----------------------------------------------------------------------------

TEST(QuantizedOps, ReluMaxPoolFlattenCommuteWithDequantize) {
  NoGradGuard ng;
  Generator gen(30);
  Tensor x = randn({2, 3, 7, 6}, {}, &gen);
  QParams qp = range_qparams(x, QDType::UInt8);
  QTensor q = quant::quantize_tensor(x, qp);
  Tensor xd = quant::dequantize_tensor(q);

  QTensor r = quant::relu(q);
  EXPECT_EQ(max_abs_diff(quant::dequantize_tensor(r), relu(xd)), 0.0f);
  const std::vector<float> vx = values(xd);
  EXPECT_GT(std::count_if(vx.begin(), vx.end(), [](float v) { return v < 0; }), 0);  // relu had something to clip

  QTensor mp = quant::max_pool2d(q, {3, 2}, {2, 2}, {1, 1});
  Tensor ref = max_pool2d(xd, {3, 2}, {2, 2}, {1, 1});
  EXPECT_EQ(mp.codes.sizes(), ref.sizes());
  EXPECT_EQ(max_abs_diff(quant::dequantize_tensor(mp), ref), 0.0f);

  QTensor f = quant::flatten(q);
  EXPECT_EQ(f.codes.sizes(), (Shape{2, 3 * 7 * 6}));
  EXPECT_EQ(max_abs_diff(quant::dequantize_tensor(f), xd.reshape({2, 126})), 0.0f);

  QTensor qi = quant::quantize_tensor(x, range_qparams(x, QDType::Int8));
  EXPECT_EQ(max_abs_diff(quant::dequantize_tensor(quant::relu(qi)), relu(quant::dequantize_tensor(qi))), 0.0f);
}

// ---- errors ------------------------------------------------------------------------------------

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(QuantizedModules, ClearErrors) {
  NoGradGuard ng;
  Generator gen(40);
  nn::Linear lin(8, 4);
  QParams u8 = quant::make_qparams(0.05, 128, act_spec(QDType::UInt8));
  QParams other = quant::make_qparams(0.07, 120, act_spec(QDType::UInt8));
  QSpec pc = act_spec(QDType::UInt8);
  pc.axis = 0;
  QParams per_channel{full({4}, 0.1, DType::F32), full({4}, 3.0, DType::I32), pc};
  expect_error([&] { quant::QuantizedLinear(lin, per_channel, u8); }, "per tensor");
  QParams bad_scale{full({}, -1.0, DType::F32), full({}, 0.0, DType::I32), act_spec(QDType::UInt8)};
  expect_error([&] { quant::QuantizedLinear(lin, u8, bad_scale); }, "positive and finite");

  QSpec restricted;
  restricted.dtype = QDType::Int8;
  restricted.scheme = QScheme::Symmetric;
  restricted.restricted_range = true;
  expect_error([&] { quant::QuantizedLinear(lin, u8, quant::make_qparams(0.1, 0, restricted)); }, "full code range");
  quant::QuantizedLinear ql(lin, u8, u8);
  Tensor x = randn({3, 8}, {}, &gen);
  expect_error([&] { ql.forward(quant::quantize_tensor(x, other)); }, "module expects scale");
  expect_error([&] { ql.forward(randn({3, 7}, {}, &gen)); }, "expected input [..., 8]");
  expect_error([&] { ql.forward(QTensor{quant::quantize_tensor(x, u8).codes.to(DType::I8), u8}); }, "U8 codes");

  nn::Conv2d conv(nn::Conv2dOptions(4, 6, 3).groups(2));
  quant::QuantizedConv2d qc(conv, u8, u8);
  expect_error([&] { qc.forward(randn({1, 3, 5, 5}, {}, &gen)); }, "expected input [N, 4, H, W]");
  expect_error([&] { qc.forward(randn({1, 4, 2, 5}, {}, &gen)); }, "smaller than");

  // Kernel-level checks.
  Tensor xc = random_codes({3, 8}, DType::U8, gen), wc = random_codes({4, 8}, DType::I8, gen);
  kernels::Requant r;
  r.w_scale = full({4}, 0.01, DType::F32);
  r.x_zp = 10;
  Tensor out = empty({3, 4}, TensorOptions(DType::U8));
  expect_error([&] { kernels::qlinear(out, xc.to(DType::F32), wc, Tensor(), r); }, "U8 or I8 codes");
  expect_error([&] { kernels::qlinear(out, xc, wc.to(DType::U8), Tensor(), r); }, "weights must be I8");
  expect_error([&] { kernels::qlinear(out, xc, random_codes({4, 9}, DType::I8, gen), Tensor(), r); },
               "expected x [N, K], w [C, K]");
  expect_error([&] { kernels::qlinear(out, xc, wc, full({5}, 1.0, DType::I32), r); }, "bias must be");
  kernels::Requant bad = r;
  bad.x_zp = 300;
  expect_error([&] { kernels::qlinear(out, xc, wc, Tensor(), bad); }, "input zero point 300");
  bad = r;
  bad.w_scale = full({3}, 0.01, DType::F32);
  expect_error([&] { kernels::qlinear(out, xc, wc, Tensor(), bad); }, "weight scales");
  kernels::Conv2dParams p;
  p.groups = 3;
  Tensor cout = empty({1, 6, 3, 3}, TensorOptions(DType::U8));
  expect_error([&] { kernels::qconv2d(cout, random_codes({1, 4, 5, 5}, DType::U8, gen),
                                      random_codes({6, 2, 3, 3}, DType::I8, gen), Tensor(), p, r); },
               "groups do not fit");
  expect_error([&] { quant::max_pool2d(quant::quantize_tensor(randn({2, 5}, {}, &gen), u8), {2, 2}); },
               "expected [N, C, H, W]");
}

// ---- micro timing (printed, not asserted) ------------------------------------------------------

TEST(QuantizedLinear, TimingInt8VsF32) {
  NoGradGuard ng;
  Generator gen(50);
  nn::Linear lin(784, 512);
  Tensor x = rand({256, 784}, {}, &gen);
  QParams in_qp = range_qparams(x, QDType::UInt8);
  QParams out_qp = range_qparams(lin.forward(x), QDType::UInt8);
  quant::QuantizedLinear ql(lin, in_qp, out_qp);
  QTensor qx = quant::quantize_tensor(x, in_qp);
  Tensor y = lin.forward(x);
  QTensor qy = ql.forward(qx);
  // The int8 layer computes the same function, within a couple of output steps of the F32 layer.
  EXPECT_LE(max_abs_diff(quant::dequantize_tensor(qy), y), 3.0f * scalar(out_qp.scale));

  // The fastest of 20 calls: on a shared machine the mean mostly measures preemption.
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
  const kernels::Requant rq{scalar(in_qp.scale), qx.zero_point(), ql.weight_scale, scalar(out_qp.scale),
                            qy.zero_point()};
  // The thread count is the process's (OMP_NUM_THREADS): oneDNN fixes a primitive's thread count
  // when it is created, so changing it here would time a mix.
  {
    const int t = omp_get_max_threads();
    const double f32 = time_ms([&] { y = lin.forward(x); });
    const double i8 = time_ms([&] { qy = ql.forward(qx); });
    const double i8_float_io = time_ms([&] { (void)ql.forward(x); });
    const double i8_ref = time_ms([&] {
      Tensor out = empty({256, 512}, TensorOptions(DType::U8));
      kernels::qlinear(out, qx.codes, ql.weight_codes, ql.bias_codes, rq, kernels::QGemmImpl::Reference);
    });
    std::printf("[timing] linear 256x784->512, %d thread(s), best of 20: F32 %.3f ms, int8 codes in/out %.3f ms, "
                "int8 float in/out (quantize + dequantize) %.3f ms, int8 reference loops %.3f ms\n",
                t, f32, i8, i8_float_io, i8_ref);
  }
}

}  // namespace
}  // namespace mantissa
