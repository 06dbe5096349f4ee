// FakeQuantize module: observe -> qparams -> fake quantize, the two switches, the STE gradient
// through the module, per-channel weights, and F32 computation under autocast.
#include <gtest/gtest.h>

#include <cstring>

#include "amp/autocast.h"
#include "autograd/ops.h"
#include "quant/fake_quantize.h"
#include "quant/learnable_fake_quantize.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using quant::QScheme;
using quant::QSpec;

bool bit_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.sizes() == y.sizes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

TEST(FakeQuantizeModule, ObservesThenQuantizesWithTheObserversQParams) {
  auto fq = std::make_shared<quant::FakeQuantize>(std::make_shared<quant::MinMaxObserver>(QSpec{}));
  Tensor x = randn({8, 5});
  Tensor y = (*fq)(x);
  quant::MinMaxObserver ref;
  ref(x);
  quant::QParams qp = ref.calculate_qparams();
  EXPECT_TRUE(bit_equal(fq->qparams().scale, qp.scale));
  EXPECT_TRUE(bit_equal(y, fake_quantize_per_tensor_affine(x, qp.scale, qp.zero_point, -128, 127)));
  // Fake quantized values sit on the grid: at most 256 distinct values.
  EXPECT_FALSE(bit_equal(y, x));
}

TEST(FakeQuantizeModule, SwitchesFreezeQParamsAndBypass) {
  auto fq = std::make_shared<quant::FakeQuantize>(std::make_shared<quant::MinMaxObserver>(QSpec{}));
  (*fq)(randn({16}));
  Tensor frozen = fq->qparams().scale.clone();
  fq->disable_observer();
  (*fq)(mul(randn({16}), 100.0));  // a wider batch must not move the frozen range
  EXPECT_TRUE(bit_equal(fq->qparams().scale, frozen));
  fq->disable_fake_quant();
  Tensor x = randn({4});
  EXPECT_TRUE((*fq)(x).is_same(x));
  EXPECT_NE(fq->repr().find("fake_quant_enabled=false"), std::string::npos);
}

TEST(FakeQuantizeModule, GradientIsStraightThroughInsideTheRange) {
  auto fq = std::make_shared<quant::FakeQuantize>(std::make_shared<quant::MinMaxObserver>(QSpec{}));
  (*fq)(from_vector(std::vector<float>{-1.0f, 1.0f}, {2}));  // range [-1, 1]
  fq->disable_observer();
  Tensor x = from_vector(std::vector<float>{-3.0f, -0.5f, 0.25f, 0.9f, 4.0f}, {5}).requires_grad_(true);
  sum((*fq)(x)).backward();
  Tensor g = x.grad();
  const float want[] = {0, 1, 1, 1, 0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(g.data<float>()[i], want[i]) << i;
}

TEST(FakeQuantizeModule, PerChannelWeights) {
  QSpec spec;
  spec.scheme = QScheme::Symmetric;
  auto fq = std::make_shared<quant::FakeQuantize>(quant::make_moving_average_per_channel_observer(spec, 0));
  Tensor w = randn({4, 3, 3, 3});
  Tensor y = (*fq)(w);
  EXPECT_EQ(fq->qparams().scale.numel(), 4);
  EXPECT_TRUE(bit_equal(y, fake_quantize_per_channel_affine(w, fq->qparams().scale, fq->qparams().zero_point, 0,
                                                            -128, 127)));
}

TEST(FakeQuantizeModule, RunsInF32UnderAutocast) {
  auto fq = std::make_shared<quant::FakeQuantize>(std::make_shared<quant::MinMaxObserver>(QSpec{}));
  Tensor x = randn({6}).to(DType::BF16);
  amp::AutocastGuard guard(DeviceType::CPU, DType::BF16);
  EXPECT_EQ((*fq)(x).dtype(), DType::F32);
}

Tensor floats(const nlohmann::json& v, const Shape& shape) {
  std::vector<float> x;
  for (const auto& e : v) x.push_back(e.get<float>());
  return from_vector(x, shape);
}

TEST(LearnableFakeQuantize, OpMatchesPyTorchsLearnableKernels) {
  for (const auto& c : testing::golden_json("quant.json")["lsq"]) {
    Shape shape;
    for (const auto& d : c["shape"]) shape.push_back(d.get<int64_t>());
    const int64_t axis = c["axis"], channels = static_cast<int64_t>(c["scale"].size());
    const std::string what = "lsq axis " + std::to_string(axis) + " qmax " + std::to_string(c["qmax"].get<int>());
    Tensor x = floats(c["x"], shape).requires_grad_(true);
    Tensor scale = floats(c["scale"], {channels}).requires_grad_(true);
    Tensor zp = floats(c["zero_point"], {channels}).requires_grad_(true);
    const double gf = c["grad_factor"];
    Tensor y = axis < 0 ? fake_quantize_learnable_per_tensor_affine(x, scale, zp, c["qmin"], c["qmax"], gf)
                        : fake_quantize_learnable_per_channel_affine(x, scale, zp, axis, c["qmin"], c["qmax"], gf);
    EXPECT_TRUE(bit_equal(y, floats(c["y"], shape))) << what;
    y.backward(floats(c["dy"], shape));
    EXPECT_TRUE(bit_equal(x.grad(), floats(c["dx"], shape))) << what;
    // Scale and zero-point gradients are sums over elements: equal up to summation order.
    Tensor ds = floats(c["dscale"], {channels}), dz = floats(c["dzero_point"], {channels});
    for (int64_t i = 0; i < channels; ++i) {
      const float a = scale.grad().data<float>()[i], b = ds.data<float>()[i];
      EXPECT_NEAR(a, b, 1e-5 * (1 + std::abs(b))) << what << " dscale " << i;
      const float za = zp.grad().data<float>()[i], zb = dz.data<float>()[i];
      EXPECT_NEAR(za, zb, 1e-6 * (1 + std::abs(zb))) << what << " dzero_point " << i;
    }
  }
}

TEST(LearnableFakeQuantize, StaticEstimateThenLearning) {
  auto obs = std::make_shared<quant::MovingAverageMinMaxObserver>(QSpec{quant::QDType::UInt8});
  auto lfq = std::make_shared<quant::LearnableFakeQuantize>(obs, /*use_grad_scaling=*/true);
  Tensor x = randn({32});
  (*lfq)(x);
  quant::MovingAverageMinMaxObserver ref(QSpec{quant::QDType::UInt8});
  ref(x);
  EXPECT_TRUE(bit_equal(lfq->scale().reshape({}), ref.calculate_qparams().scale));
  lfq->enable_param_learning();
  Tensor before = lfq->scale().clone();
  Tensor loss = sum(mul((*lfq)(mul(x, 3.0)), (*lfq)(mul(x, 3.0))));
  loss.backward();
  ASSERT_TRUE(lfq->scale().grad().defined());
  EXPECT_NE(lfq->scale().grad().item<float>(), 0.0f);  // clipped values pull the scale
  EXPECT_TRUE(bit_equal(lfq->scale(), before));          // the observer no longer moves it
  EXPECT_EQ(lfq->parameters().size(), 2u);
}

TEST(LearnableFakeQuantize, SymmetricPinsTheZeroPointAndScaleStaysPositive) {
  QSpec spec;
  spec.scheme = QScheme::Symmetric;
  auto lfq = std::make_shared<quant::LearnableFakeQuantize>(std::make_shared<quant::MinMaxObserver>(spec));
  lfq->enable_param_learning();
  {
    NoGradGuard ng;
    lfq->scale().set_data(full({1}, -1.0));
    lfq->zero_point().set_data(full({1}, 5.0));
  }
  (*lfq)(randn({8}));
  EXPECT_GT(lfq->scale().item<float>(), 0.0f);
  EXPECT_EQ(lfq->zero_point().item<float>(), 0.0f);
}

}  // namespace
}  // namespace mantissa
