// qparams, quantize, dequantize and fake quantize against torch.ao.quantization (1.13) golden
// values (tests/golden/make_quant_golden.py): observer qparams for int8/uint8/int4, affine and
// symmetric, per tensor and per channel; ties with odd zero points; values outside the range;
// constant and all-zero tensors; the straight-through gradient mask.
#include <gtest/gtest.h>

#include <cstring>

#include "autograd/ops.h"
#include "core/kernels/device_memory.h"
#include "quant/qparams.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using nlohmann::json;
using quant::QDType;
using quant::QScheme;
using quant::QSpec;

const json& golden() { return testing::golden_json("quant.json"); }

Tensor f32_tensor(const json& v, const Shape& shape) {
  std::vector<float> x;
  for (const auto& e : v) x.push_back(e.get<float>());
  return from_vector(x, shape);
}

QSpec spec_of(const json& c) {
  QSpec s;
  const int qmin = c["qmin"], qmax = c["qmax"];
  s.scheme = c["symmetric"].get<bool>() ? QScheme::Symmetric : QScheme::Affine;
  if (c["dtype"] == "uint8") s.dtype = QDType::UInt8;
  else if (qmin == -8 && qmax == 7) s.dtype = QDType::Int4;
  else s.dtype = QDType::Int8;
  s.restricted_range = s.scheme == QScheme::Symmetric && qmin == -127;
  if (c.contains("axis")) s.axis = c["axis"];
  EXPECT_EQ(s.qmin(), qmin) << c["name"];
  EXPECT_EQ(s.qmax(), qmax) << c["name"];
  return s;
}

// Exact float equality, NaN-free data; reports the first mismatch.
void expect_floats(const Tensor& t, const json& want, const std::string& what) {
  Tensor c = t.to(DType::F32).contiguous();
  ASSERT_EQ(c.numel(), static_cast<int64_t>(want.size())) << what;
  const float* p = c.data<float>();
  for (size_t i = 0; i < want.size(); ++i) {
    const float w = want[i].get<float>();
    ASSERT_EQ(std::memcmp(&p[i], &w, 4), 0) << what << " [" << i << "]: " << p[i] << " vs " << w;
  }
}

void expect_codes(const Tensor& q, const json& want, const std::string& what) {
  Tensor c = q.to(DType::I64).contiguous();
  ASSERT_EQ(c.numel(), static_cast<int64_t>(want.size())) << what;
  const int64_t* p = c.data<int64_t>();
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(p[i], want[i].get<int64_t>()) << what << " [" << i << "]";
}

TEST(QParams, PerTensorMatchesPyTorchObservers) {
  int checked = 0;
  for (const json& c : golden()["per_tensor"]) {
    if (!c.contains("min")) continue;
    const std::string name = c["name"];
    QSpec spec = spec_of(c);
    quant::QParams qp = quant::calculate_qparams(full({}, c["min"].get<double>()), full({}, c["max"].get<double>()), spec);
    const float s = qp.scale.item<float>(), want_s = c["scale"].get<float>();
    EXPECT_EQ(std::memcmp(&s, &want_s, 4), 0) << name << ": scale " << s << " vs " << want_s;
    EXPECT_EQ(qp.zero_point.item<int32_t>(), c["zero_point"].get<int32_t>()) << name;
    ++checked;
  }
  EXPECT_GE(checked, 40);
}

TEST(QParams, PerChannelMatchesPyTorchObservers) {
  for (const json& c : golden()["per_channel"]) {
    const std::string name = c["name"];
    QSpec spec = spec_of(c);
    const int64_t channels = static_cast<int64_t>(c["min"].size());
    quant::QParams qp = quant::calculate_qparams(f32_tensor(c["min"], {channels}), f32_tensor(c["max"], {channels}), spec);
    expect_floats(qp.scale, c["scale"], name + " scale");
    expect_codes(qp.zero_point, c["zero_point"], name + " zero_point");
  }
}

TEST(Quantize, PerTensorCodesAndValuesMatchPyTorch) {
  int with_codes = 0;
  for (const json& c : golden()["per_tensor"]) {
    const std::string name = c["name"];
    QSpec spec = spec_of(c);
    const int64_t n = static_cast<int64_t>(c["x"].size());
    Tensor x = f32_tensor(c["x"], {n});
    quant::QParams qp = quant::make_qparams(c["scale"].get<double>(), c["zero_point"].get<int64_t>(), spec);
    if (c.contains("q")) {
      Tensor q = quant::quantize(x, qp);
      EXPECT_EQ(q.dtype(), spec.dtype == QDType::UInt8 ? DType::U8 : DType::I8);
      expect_codes(q, c["q"], name + " q");
      if (c.contains("dq")) expect_floats(quant::dequantize(q, qp), c["dq"], name + " dequantize");
      ++with_codes;
    }
    expect_floats(fake_quantize_per_tensor_affine(x, c["scale"].get<double>(), c["zero_point"].get<int64_t>(),
                                                  spec.qmin(), spec.qmax()),
                  c["fake"], name + " fake");
  }
  EXPECT_GE(with_codes, 20);
}

TEST(Quantize, PerChannelCodesAndValuesMatchPyTorch) {
  for (const json& c : golden()["per_channel"]) {
    const std::string name = c["name"];
    QSpec spec = spec_of(c);
    Shape shape;
    for (const auto& d : c["shape"]) shape.push_back(d.get<int64_t>());
    Tensor w = f32_tensor(c["x"], shape);
    const int64_t channels = static_cast<int64_t>(c["scale"].size());
    Tensor scale = f32_tensor(c["scale"], {channels});
    std::vector<int64_t> zp;
    for (const auto& z : c["zero_point"]) zp.push_back(z.get<int64_t>());
    Tensor zero_point = from_vector(zp, {channels}).to(DType::I32);
    quant::QParams qp{scale, zero_point, spec};
    if (c.contains("q")) {
      Tensor q = quant::quantize(w, qp);
      expect_codes(q, c["q"], name + " q");
      expect_floats(quant::dequantize(q, qp), c["dq"], name + " dequantize");
    }
    expect_floats(fake_quantize_per_channel_affine(w, scale, zero_point, spec.axis, spec.qmin(), spec.qmax()),
                  c["fake"], name + " fake");
  }
}

TEST(FakeQuantize, StraightThroughGradientMatchesPyTorch) {
  for (const json& c : golden()["ste"]) {
    const int64_t n = static_cast<int64_t>(c["x"].size());
    Tensor x = f32_tensor(c["x"], {n}).requires_grad_(true);
    Tensor y = fake_quantize_per_tensor_affine(x, c["scale"].get<double>(), c["zero_point"].get<int64_t>(),
                                               c["qmin"].get<int64_t>(), c["qmax"].get<int64_t>());
    expect_floats(y, c["y"], "ste forward");
    y.backward(f32_tensor(c["g"], {n}));
    expect_floats(x.grad(), c["grad"], "ste grad");
  }
}

TEST(FakeQuantize, SixteenBitInputsQuantizeInF32AndRoundOnce) {
  Tensor x = from_vector(std::vector<float>{-1.3f, 0.2f, 0.77f, 2.9f}, {4});
  Tensor ref = fake_quantize_per_tensor_affine(x.to(DType::BF16).to(DType::F32), 0.1, 3, -128, 127);
  Tensor got = fake_quantize_per_tensor_affine(x.to(DType::BF16), 0.1, 3, -128, 127);
  EXPECT_EQ(got.dtype(), DType::BF16);
  expect_floats(got, json(std::vector<float>{float(BFloat16(ref.data<float>()[0])), float(BFloat16(ref.data<float>()[1])),
                                             float(BFloat16(ref.data<float>()[2])), float(BFloat16(ref.data<float>()[3]))}),
                "bf16");
}

TEST(QParams, BadInputGetsClearErrors) {
  QSpec spec;
  EXPECT_THROW(quant::make_qparams(0.0, 0, spec), Error);
  EXPECT_THROW(quant::make_qparams(0.1, 200, spec), Error);
  EXPECT_THROW(quant::calculate_qparams(full({}, 1.0), full({}, -1.0), spec), Error);  // min > max
  EXPECT_THROW(quant::calculate_qparams(full({}, -1.0), full({}, INFINITY), spec), Error);
  QSpec pc = spec;
  pc.axis = 0;
  EXPECT_THROW(quant::calculate_qparams(full({}, -1.0), full({}, 1.0), pc), Error);  // needs [C]
  Tensor x = zeros({3, 4});
  quant::QParams bad{ones({4}), zeros({4}, DType::I32), pc};  // 4 scales for 3 channels
  EXPECT_THROW(quant::quantize(x, bad), Error);
  EXPECT_THROW(fake_quantize_per_tensor_affine(x, 0.1, 0, 5, 1), Error);  // qmin > qmax
  EXPECT_THROW(fake_quantize_per_channel_affine(x, ones({4}), zeros({4}, DType::I32), 0, -128, 127), Error);
  EXPECT_THROW(fake_quantize_per_tensor_affine(zeros({2}, DType::I32), 0.1, 0, -128, 127), Error);
}

TEST(QParams, ConstantAndZeroTensorsStayFinite) {
  for (QScheme scheme : {QScheme::Affine, QScheme::Symmetric}) {
    QSpec spec;
    spec.scheme = scheme;
    quant::QParams qp = quant::calculate_qparams(full({}, 0.0), full({}, 0.0), spec);
    EXPECT_EQ(qp.scale.item<float>(), quant::kScaleEps);
    Tensor q = quant::quantize(zeros({5}), qp);
    Tensor dq = quant::dequantize(q, qp);
    EXPECT_EQ(dq.abs().sum().item<float>(), 0.0f);
  }
}

TEST(QuantizeCuda, MatchesTheCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  Tensor x = randn({4, 3, 5, 5});
  QSpec spec;
  spec.axis = 0;
  spec.scheme = QScheme::Symmetric;
  quant::QParams qp = quant::calculate_qparams(std::get<0>(min(x.reshape({4, -1}), 1)),
                                               std::get<0>(max(x.reshape({4, -1}), 1)), spec);
  quant::QParams qpc{qp.scale.to(kCUDA), qp.zero_point.to(kCUDA), spec};
  Tensor qc = quant::quantize(x.to(kCUDA), qpc).cpu(), q = quant::quantize(x, qp);
  EXPECT_EQ(std::memcmp(qc.data_ptr(), q.data_ptr(), q.nbytes()), 0);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    Tensor a = fake_quantize_per_channel_affine(x.to(dt), qp.scale, qp.zero_point, 0, -128, 127);
    Tensor b = fake_quantize_per_channel_affine(x.to(dt).to(kCUDA), qpc.scale, qpc.zero_point, 0, -128, 127).cpu();
    EXPECT_EQ(std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()), 0) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace mantissa
