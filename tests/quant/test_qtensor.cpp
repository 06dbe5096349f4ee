// First-class quantized tensors (core/quantized.h, quant/qtensor.h): the quantization meta through
// views, copies and device moves; relu, max_pool2d and eval dropout on quantized tensors against
// the QTensor code ops; the refusal every other op gives; printing; quantized_add against
// PyTorch 1.13 (tests/golden/make_qadd_golden.py); CUDA against the CPU (skipped without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"
#include "core/quantized.h"
#include "nn/activation.h"
#include "nn/linear.h"
#include "nn/pooling.h"
#include "quant/qtensor.h"
#include "quant/quantized_modules.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using nlohmann::json;
using quant::QDType;

Tensor u8(const std::vector<int>& v, const Shape& shape) {
  std::vector<uint8_t> b(v.begin(), v.end());
  return from_vector(b, shape);
}

Tensor s8(const std::vector<int>& v, const Shape& shape) {
  std::vector<int32_t> b(v.begin(), v.end());
  return from_vector(b, shape).to(DType::I8);
}

// Random codes over the whole range of dtype (U8 or I8).
Tensor random_codes(const Shape& shape, DType dtype, uint64_t seed) {
  Generator gen(seed);
  Tensor r = rand(shape, {}, &gen);  // [0, 1)
  const double lo = dtype == DType::U8 ? 0 : -128;
  Tensor v = add(mul(r, 256.0), lo);  // [lo, lo + 256)
  Tensor c = empty(shape, TensorOptions(dtype));
  c.copy_(clamp(v, lo, lo + 255));  // truncation toward zero keeps every code reachable
  return c;
}

std::vector<int> codes_of(const Tensor& q) {
  Tensor c = q.is_quantized() ? int_repr(q) : q;
  std::vector<int32_t> v = to_vector<int32_t>(c.to(kCPU).contiguous().to(DType::I32));
  return std::vector<int>(v.begin(), v.end());
}

void expect_meta(const Tensor& t, const Tensor& q, const std::string& what) {
  EXPECT_TRUE(t.is_quantized()) << what;
  if (!t.is_quantized()) return;
  EXPECT_EQ(t.dtype(), q.dtype()) << what;
  EXPECT_EQ(t.q_scale(), q.q_scale()) << what;
  EXPECT_EQ(t.q_zero_point(), q.q_zero_point()) << what;
}

// The Error message of f, or "" when it does not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// --- construction ---------------------------------------------------------------------------------

TEST(QTensor, MakePerTensorQuantizedSharesStorageAndChecks) {
  Tensor codes = u8({0, 3, 10, 255}, {2, 2});
  Tensor q = make_per_tensor_quantized(codes, 0.1f, 3);
  EXPECT_TRUE(q.is_quantized());
  EXPECT_FALSE(codes.is_quantized());
  EXPECT_EQ(q.q_scale(), 0.1f);
  EXPECT_EQ(q.q_zero_point(), 3);
  EXPECT_EQ(q.dtype(), DType::U8);
  EXPECT_EQ(q.data_ptr(), codes.data_ptr());
  Tensor r = int_repr(q);
  EXPECT_FALSE(r.is_quantized());
  EXPECT_EQ(r.data_ptr(), codes.data_ptr());
  EXPECT_EQ(codes_of(r), (std::vector<int>{0, 3, 10, 255}));

  EXPECT_NE(error_of([&] { make_per_tensor_quantized(codes.to(DType::F32), 0.1f, 3); }).find("U8"), std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(codes, 0.0f, 3); }).find("scale"), std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(codes, NAN, 3); }).find("scale"), std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(codes, 0.1f, 256); }).find("[0, 255]"), std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(codes, 0.1f, -1); }).find("[0, 255]"), std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(s8({1}, {1}), 0.1f, 128); }).find("[-128, 127]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_per_tensor_quantized(q, 0.1f, 3); }).find("already"), std::string::npos);
  EXPECT_NE(error_of([&] { int_repr(codes); }).find("int_repr"), std::string::npos);
  EXPECT_NE(error_of([&] { codes.q_scale(); }).find("not quantized"), std::string::npos);
  EXPECT_NE(error_of([&] { codes.q_zero_point(); }).find("not quantized"), std::string::npos);
}

TEST(QTensor, QuantizePerTensorMatchesQuantizeAndDequantizes) {
  Tensor x = from_vector(std::vector<float>{-1.0f, -0.05f, 0.0f, 0.05f, 0.15f, 0.25f, 3.0f, 100.0f}, {8});
  for (QDType dt : {QDType::UInt8, QDType::Int8}) {
    const int32_t zp = dt == QDType::UInt8 ? 10 : -3;
    Tensor q = quant::quantize_per_tensor(x, 0.1f, zp, dt);
    quant::QSpec spec;
    spec.dtype = dt;
    Tensor ref = quant::quantize(x, quant::make_qparams(0.1f, zp, spec));
    EXPECT_EQ(codes_of(q), codes_of(ref));
    EXPECT_EQ(q.dtype(), dt == QDType::UInt8 ? DType::U8 : DType::I8);
    Tensor d = quant::dequantize(q);
    EXPECT_EQ(d.dtype(), DType::F32);
    std::vector<float> dv = to_vector<float>(d);
    std::vector<int> cv = codes_of(q);
    for (size_t i = 0; i < dv.size(); ++i) EXPECT_EQ(dv[i], static_cast<float>(cv[i] - zp) * 0.1f) << i;

    quant::QTensor qt = quant::to_qtensor(q);
    EXPECT_EQ(qt.scale(), 0.1f);
    EXPECT_EQ(qt.zero_point(), zp);
    EXPECT_EQ(qt.codes.data_ptr(), q.data_ptr());
    Tensor back = quant::to_tensor(qt);
    expect_meta(back, q, "to_tensor");
    EXPECT_EQ(back.data_ptr(), q.data_ptr());
  }
  EXPECT_NE(error_of([&] { quant::dequantize(x); }).find("expected a quantized tensor"), std::string::npos);
  EXPECT_NE(error_of([&] { quant::quantize_per_tensor(x, 0.1f, 0, QDType::Int4); }).find("uint8 or int8"),
            std::string::npos);
}

// --- meta propagation -------------------------------------------------------------------------------

TEST(QTensor, ViewsCopiesAndMovesKeepTheMeta) {
  Tensor q = make_per_tensor_quantized(random_codes({2, 3, 4}, DType::U8, 1), 0.25f, 7);
  const std::vector<int> c = codes_of(q);
  expect_meta(q.view({6, 4}), q, "view");
  expect_meta(q.reshape({4, 6}), q, "reshape");
  expect_meta(q.flatten(1), q, "flatten");
  expect_meta(q.permute({2, 0, 1}), q, "permute");
  expect_meta(q.transpose(0, 2), q, "transpose");
  expect_meta(q.unsqueeze(0), q, "unsqueeze");
  expect_meta(q.unsqueeze(0).squeeze(0), q, "squeeze(dim)");
  expect_meta(q.unsqueeze(1).squeeze(), q, "squeeze");
  expect_meta(q.select(1, 2), q, "select");
  expect_meta(q.slice(2, 1, 4, 2), q, "slice");
  expect_meta(q.narrow(0, 1, 1), q, "narrow");
  expect_meta(q.select(0, 0).unsqueeze(0).expand({5, 3, 4}), q, "expand");
  expect_meta(q.detach(), q, "detach");
  expect_meta(q.clone(), q, "clone");
  expect_meta(q.contiguous(), q, "contiguous");
  expect_meta(q.to(kCPU), q, "to(cpu)");
  expect_meta(q.to(DType::U8), q, "to(same dtype)");
  expect_meta(q.pin_memory(), q, "pin_memory");

  // Copies hold the same codes; a non-contiguous reshape copies with the meta.
  EXPECT_EQ(codes_of(q.clone()), c);
  EXPECT_NE(q.clone().data_ptr(), q.data_ptr());
  Tensor t = q.transpose(0, 2);
  Tensor tc = t.contiguous();
  expect_meta(tc, q, "contiguous of a transposed view");
  EXPECT_TRUE(tc.is_contiguous());
  EXPECT_EQ(codes_of(tc), codes_of(int_repr(q).transpose(0, 2)));
  Tensor rs = t.reshape({24});
  expect_meta(rs, q, "reshape of a transposed view");
  EXPECT_EQ(codes_of(rs), codes_of(int_repr(q).transpose(0, 2).reshape({24})));
  EXPECT_EQ(codes_of(q.select(1, 2)), codes_of(int_repr(q).select(1, 2)));

  // set_data carries the meta both ways.
  Tensor holder = zeros({1});
  holder.set_data(q);
  expect_meta(holder, q, "set_data");
  holder.set_data(zeros({1}));
  EXPECT_FALSE(holder.is_quantized());
}

// --- ops that work on quantized tensors ----------------------------------------------------------------

TEST(QTensor, ReluMatchesQTensorReluAndKeepsMeta) {
  for (DType dt : {DType::U8, DType::I8}) {
    const int32_t zp = dt == DType::U8 ? 100 : -20;
    Tensor codes = random_codes({3, 5, 7}, dt, 2);
    Tensor q = make_per_tensor_quantized(codes, 0.05f, zp);
    Tensor r = relu(q);
    expect_meta(r, q, "relu");
    quant::QTensor ref = quant::relu(quant::to_qtensor(q));
    EXPECT_EQ(codes_of(r), codes_of(ref.codes));
    // A non-contiguous view and the method form agree with the contiguous op.
    Tensor rt = q.transpose(0, 2).relu();
    expect_meta(rt, q, "relu of a view");
    EXPECT_EQ(codes_of(rt), codes_of(int_repr(r).transpose(0, 2)));
    // relu commutes with dequantize exactly.
    EXPECT_EQ(to_vector<float>(quant::dequantize(r)), to_vector<float>(relu(quant::dequantize(q))));
    EXPECT_FALSE(r.requires_grad());
  }
  // Zero point at the lowest code: nothing lies below it, relu is the identity (no copy).
  for (DType dt : {DType::U8, DType::I8}) {
    Tensor q = make_per_tensor_quantized(random_codes({4, 6}, dt, 5), 0.1f, dt == DType::U8 ? 0 : -128);
    Tensor r = relu(q);
    EXPECT_EQ(codes_of(r), codes_of(q));
    EXPECT_EQ(codes_of(r), codes_of(quant::relu(quant::to_qtensor(q)).codes));
  }
}

TEST(QTensor, MaxPool2dMatchesQTensorPathAndFloatPooling) {
  for (DType dt : {DType::U8, DType::I8}) {
    Tensor q = make_per_tensor_quantized(random_codes({2, 3, 7, 6}, dt, 3), 0.125f, dt == DType::U8 ? 9 : 4);
    for (std::vector<int64_t> pad : {std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}}) {
      Tensor p = max_pool2d(q, {3, 3}, {2, 2}, pad);
      expect_meta(p, q, "max_pool2d");
      quant::QTensor ref = quant::max_pool2d(quant::to_qtensor(q), {3, 3}, {2, 2}, pad);
      EXPECT_EQ(p.sizes(), ref.codes.sizes());
      EXPECT_EQ(codes_of(p), codes_of(ref.codes));
    }
    // ceil_mode, a 3-D input and a strided input against float pooling of the dequantized values
    // (monotone quantization: pooling commutes with dequantize exactly).
    Tensor pc = max_pool2d(q, {2, 2}, {2, 2}, {1, 1}, true);
    EXPECT_EQ(to_vector<float>(quant::dequantize(pc)),
              to_vector<float>(max_pool2d(quant::dequantize(q), {2, 2}, {2, 2}, {1, 1}, true)));
    Tensor q3 = q.select(0, 1);
    Tensor p3 = max_pool2d(q3, {2, 3});
    expect_meta(p3, q, "max_pool2d 3-D");
    EXPECT_EQ(p3.dim(), 3);
    EXPECT_EQ(to_vector<float>(quant::dequantize(p3)), to_vector<float>(max_pool2d(quant::dequantize(q3), {2, 3})));
    Tensor qt = q.transpose(2, 3);
    EXPECT_EQ(to_vector<float>(quant::dequantize(max_pool2d(qt, {2, 2}))),
              to_vector<float>(max_pool2d(quant::dequantize(qt), {2, 2})));
    // The 2x2 / stride-2 fast path (odd sizes: the last row and column are dropped) against the
    // generic loop of the QTensor path.
    Tensor q2 = make_per_tensor_quantized(random_codes({3, 5, 9, 11}, dt, 8), 0.5f, 0);
    EXPECT_EQ(codes_of(max_pool2d(q2, {2, 2})), codes_of(quant::max_pool2d(quant::to_qtensor(q2), {2, 2}).codes));
  }
  Tensor q = make_per_tensor_quantized(random_codes({1, 1, 4, 4}, DType::U8, 4), 0.1f, 0);
  EXPECT_NE(error_of([&] { max_pool2d(q, {2, 2}, {}, {2, 2}); }).find("pad should be at most half"), std::string::npos);
  EXPECT_NE(error_of([&] { max_pool2d(q.flatten(), {2, 2}); }).find("3-D [C, H, W] or 4-D"), std::string::npos);
}

TEST(QTensor, DropoutInEvalIsIdentityAndRefusesTraining) {
  Tensor q = make_per_tensor_quantized(random_codes({4, 4}, DType::U8, 5), 0.1f, 3);
  Tensor d = dropout(q, 0.5, false);
  EXPECT_TRUE(d.is_same(q));
  const std::string msg = error_of([&] { dropout(q, 0.5, true); });
  EXPECT_NE(msg.find("dropout: got a quantized tensor (quint8, scale 0.1, zero point 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("eval"), std::string::npos) << msg;
}

// A converted model's ordinary forward (relu, max_pool2d, flatten, dropout in eval) on quantized
// activations gives the codes the float ops give on the dequantized values.
TEST(QTensor, OrdinaryForwardRunsOnQuantizedActivations) {
  Generator gen(11);
  Tensor x = randn({2, 3, 8, 8}, {}, &gen);
  auto forward = [](const Tensor& h) {
    Tensor y = relu(h);
    y = max_pool2d(y, {2, 2});
    y = y.flatten(1);
    return dropout(y, 0.25, false);
  };
  Tensor q = quant::quantize_per_tensor(x, 0.03f, 128, QDType::UInt8);
  Tensor out = forward(q);
  expect_meta(out, q, "forward");
  EXPECT_EQ(out.sizes(), (Shape{2, 48}));
  EXPECT_EQ(to_vector<float>(quant::dequantize(out)), to_vector<float>(forward(quant::dequantize(q))));

  // The same through the nn modules, with Dropout in eval mode.
  nn::ReLU act;
  nn::MaxPool2d pool(2);
  nn::Flatten flat;
  nn::Dropout drop(0.25);
  drop.eval();
  Tensor m = drop.forward(flat.forward(pool.forward(act.forward(q))));
  expect_meta(m, q, "modules");
  EXPECT_EQ(codes_of(m), codes_of(out));
  drop.train();
  EXPECT_THROW(drop.forward(m), Error);
}

// --- refusals ---------------------------------------------------------------------------------------

TEST(QTensor, OtherOpsRefuseQuantizedTensors) {
  Tensor q = make_per_tensor_quantized(u8({1, 2, 3, 4, 5, 6}, {2, 3}), 0.1f, 3);
  Tensor f = ones({2, 3});
  const std::string expected = "got a quantized tensor (quint8, scale 0.1, zero point 3";
  struct Case {
    const char* op;
    std::function<void()> fn;
  };
  const std::vector<Case> cases = {
      {"add", [&] { add(q, q); }},
      {"add", [&] { add(f, q); }},
      {"add", [&] { (void)(q + 1.0); }},
      {"mul", [&] { mul(q, 2.0); }},
      {"matmul", [&] { matmul(q, q.t()); }},
      {"mm", [&] { mm(q, q.t()); }},
      {"sum", [&] { sum(q); }},
      {"mean", [&] { q.mean(); }},
      {"max", [&] { max(q); }},
      {"argmax", [&] { argmax(q, 1); }},
      {"exp", [&] { exp(q); }},
      {"neg", [&] { neg(q); }},
      {"clamp", [&] { clamp(q, 0.0, 1.0); }},
      {"softmax", [&] { softmax(q, 1); }},
      {"linear", [&] { linear(f, q); }},
      {"conv2d", [&] { conv2d(q.view({1, 1, 2, 3}), ones({1, 1, 1, 1})); }},
      {"avg_pool2d", [&] { avg_pool2d(q.view({1, 1, 2, 3}), {1, 1}); }},
      {"cat", [&] { cat({f, q}); }},
      {"stack", [&] { stack({q, q}); }},
      {"mse_loss", [&] { mse_loss(q, f); }},
      {"index_select", [&] { index_select(q, 0, from_vector(std::vector<int64_t>{0}, {1})); }},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(c.fn);
    EXPECT_EQ(msg.rfind(std::string(c.op) + ": " + expected, 0), 0u) << c.op << ": " << msg;
    EXPECT_NE(msg.find("quant::dequantize(x)"), std::string::npos) << msg;
  }
  std::string msg = error_of([&] { q.requires_grad_(true); });
  EXPECT_NE(msg.find("requires_grad_: a quantized tensor (quint8, scale 0.1, zero point 3"), std::string::npos) << msg;
  msg = error_of([&] { q.to(DType::F32); });
  EXPECT_NE(msg.find("quant::dequantize"), std::string::npos) << msg;
  msg = error_of([&] { q.fill_(1.0); });
  EXPECT_NE(msg.find("fill_: got a quantized tensor"), std::string::npos) << msg;
  msg = error_of([&] { f.copy_(q); });
  EXPECT_NE(msg.find("copy_: got a quantized tensor"), std::string::npos) << msg;
  msg = error_of([&] { Tensor qq = make_per_tensor_quantized(zeros({2, 3}, DType::U8), 0.2f, 3); qq.copy_(q); });
  EXPECT_NE(msg.find("copy_: got a quantized tensor"), std::string::npos) << msg;
  // Same dtype, scale and zero point: copying codes keeps their meaning.
  Tensor same = make_per_tensor_quantized(zeros({2, 3}, DType::U8), 0.1f, 3);
  same.copy_(q);
  EXPECT_EQ(codes_of(same), codes_of(q));
  EXPECT_FALSE(relu(q).requires_grad());
}

// --- printing ---------------------------------------------------------------------------------------

TEST(QTensor, PrintsValuesThenQuantizationParameters) {
  Tensor q = make_per_tensor_quantized(u8({4, 8, 0}, {3}), 0.1f, 3);
  EXPECT_EQ(q.str(),
            "tensor([ 0.1000,  0.5000, -0.3000], size=(3,), dtype=quint8,\n"
            "       quantization_scheme=per_tensor_affine, scale=0.1, zero_point=3)");
  Tensor s = make_per_tensor_quantized(s8({-1, 1, 3, 5}, {2, 2}), 0.5f, 1);
  EXPECT_EQ(s.str(),
            "tensor([[-1.,  0.],\n"
            "        [ 1.,  2.]], size=(2, 2), dtype=qint8,\n"
            "       quantization_scheme=per_tensor_affine, scale=0.5, zero_point=1)");
}

// --- quantized add -----------------------------------------------------------------------------------

Tensor golden_codes(const json& v, const std::string& dtype, const Shape& shape) {
  std::vector<int> c = v.get<std::vector<int>>();
  return dtype == "quint8" ? u8(c, shape) : s8(c, shape);
}

TEST(QTensor, QuantizedAddMatchesPyTorch) {
  const json& g = testing::golden_json("qadd.json");
  ASSERT_TRUE(g.contains("cases"));
  int checked = 0;
  for (const json& c : g["cases"]) {
    const std::string dt = c["dtype"];
    const Shape shape = c["shape"].get<Shape>();
    Tensor a = make_per_tensor_quantized(golden_codes(c["a"], dt, shape), c["a_scale"].get<float>(),
                                         c["a_zero_point"].get<int32_t>());
    Tensor b = make_per_tensor_quantized(golden_codes(c["b"], dt, shape), c["b_scale"].get<float>(),
                                         c["b_zero_point"].get<int32_t>());
    Tensor out = quantized_add(a, b, c["scale"].get<float>(), c["zero_point"].get<int32_t>(), c["relu"].get<bool>());
    EXPECT_EQ(out.q_scale(), c["scale"].get<float>());
    EXPECT_EQ(out.q_zero_point(), c["zero_point"].get<int32_t>());
    EXPECT_EQ(out.dtype(), a.dtype());
    EXPECT_EQ(codes_of(out), c["out"].get<std::vector<int>>()) << c["name"];
    // Strided operands give the same codes.
    Tensor at = make_per_tensor_quantized(int_repr(a).t().contiguous().t(), a.q_scale(), a.q_zero_point());
    EXPECT_EQ(codes_of(quantized_add(at, b, out.q_scale(), out.q_zero_point(), c["relu"].get<bool>())), codes_of(out));
    ++checked;
  }
  EXPECT_EQ(checked, 18);
}

TEST(QTensor, QuantizedAddChecksItsOperands) {
  Tensor a = make_per_tensor_quantized(u8({1, 2, 3, 4}, {4}), 0.1f, 0);
  Tensor b = make_per_tensor_quantized(u8({1, 2}, {2}), 0.1f, 0);
  Tensor s = make_per_tensor_quantized(s8({1, 2, 3, 4}, {4}), 0.1f, 0);
  EXPECT_NE(error_of([&] { quantized_add(a, b, 0.1f, 0); }).find("does not broadcast"), std::string::npos);
  EXPECT_NE(error_of([&] { quantized_add(a, s, 0.1f, 0); }).find("same quantized dtype"), std::string::npos);
  EXPECT_NE(error_of([&] { quantized_add(a, int_repr(a), 0.1f, 0); }).find("must be a quantized tensor"),
            std::string::npos);
  EXPECT_NE(error_of([&] { quantized_add(a, a, -1.0f, 0); }).find("scale"), std::string::npos);
  EXPECT_NE(error_of([&] { quantized_add(s, s, 0.1f, 200); }).find("[-128, 127]"), std::string::npos);
}

// --- CUDA --------------------------------------------------------------------------------------------

TEST(QTensorCuda, MatchesCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  const Device gpu = Device(DeviceType::CUDA, 0);
  for (DType dt : {DType::U8, DType::I8}) {
    const int32_t zp = dt == DType::U8 ? 77 : -9;
    Tensor q = make_per_tensor_quantized(random_codes({3, 4, 9, 11}, dt, 21), 0.07f, zp);
    Tensor qg = q.to(gpu);
    expect_meta(qg, q, "to(cuda)");
    EXPECT_TRUE(qg.is_cuda());
    expect_meta(qg.to(kCPU), q, "to(cpu)");
    EXPECT_EQ(codes_of(qg), codes_of(q));

    Tensor rg = relu(qg);
    expect_meta(rg, q, "cuda relu");
    EXPECT_TRUE(rg.is_cuda());
    EXPECT_EQ(codes_of(rg), codes_of(relu(q)));
    EXPECT_EQ(codes_of(relu(qg.transpose(1, 3))), codes_of(relu(q.transpose(1, 3))));

    for (bool ceil : {false, true}) {
      Tensor pg = max_pool2d(qg, {3, 2}, {2, 2}, {1, 1}, ceil);
      expect_meta(pg, q, "cuda max_pool2d");
      EXPECT_EQ(codes_of(pg), codes_of(max_pool2d(q, {3, 2}, {2, 2}, {1, 1}, ceil)));
    }

    Tensor b = make_per_tensor_quantized(random_codes({3, 4, 9, 11}, dt, 22), 0.11f, dt == DType::U8 ? 3 : 5);
    for (bool r : {false, true}) {
      Tensor og = quantized_add(qg, b.to(gpu), 0.09f, dt == DType::U8 ? 128 : 0, r);
      EXPECT_TRUE(og.is_cuda());
      EXPECT_EQ(codes_of(og), codes_of(quantized_add(q, b, 0.09f, dt == DType::U8 ? 128 : 0, r)));
      Tensor ogt = quantized_add(qg.transpose(0, 2), b.to(gpu).transpose(0, 2), 0.09f, 1, r);
      EXPECT_EQ(codes_of(ogt), codes_of(quantized_add(q.transpose(0, 2), b.transpose(0, 2), 0.09f, 1, r)));
    }
    EXPECT_EQ(to_vector<float>(quant::dequantize(qg)), to_vector<float>(quant::dequantize(q)));
    Tensor xg = quant::dequantize(q).to(gpu);
    EXPECT_EQ(codes_of(quant::quantize_per_tensor(xg, 0.07f, zp, dt == DType::U8 ? QDType::UInt8 : QDType::Int8)),
              codes_of(q));
  }
}

}  // namespace
}  // namespace mantissa
