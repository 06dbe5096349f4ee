// Observers against torch.ao.quantization (1.13): the running range after each of three
// batches and the final qparams, per tensor and per channel (axes 0 and 1), MinMax and moving
// average, int8/uint8 affine and int8 symmetric (tests/golden/make_quant_golden.py).
#include <gtest/gtest.h>

#include <cstring>

#include "quant/observer.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using nlohmann::json;
using quant::QDType;
using quant::QScheme;
using quant::QSpec;

const json& golden() { return testing::golden_json("quant.json")["observers"]; }

void expect_floats(const Tensor& t, const json& want, const std::string& what) {
  Tensor c = t.contiguous();
  std::vector<float> w;
  if (want.is_array()) for (const auto& e : want) w.push_back(e.get<float>());
  else w.push_back(want.get<float>());
  ASSERT_EQ(c.numel(), static_cast<int64_t>(w.size())) << what;
  for (size_t i = 0; i < w.size(); ++i) {
    const float v = c.data<float>()[i];
    ASSERT_EQ(std::memcmp(&v, &w[i], 4), 0) << what << " [" << i << "]: " << v << " vs " << w[i];
  }
}

std::shared_ptr<quant::Observer> make(const json& c) {
  QSpec spec;
  spec.dtype = c["dtype"] == "uint8" ? QDType::UInt8 : QDType::Int8;
  spec.scheme = c["symmetric"].get<bool>() ? QScheme::Symmetric : QScheme::Affine;
  const std::string kind = c["observer"];
  const int64_t axis = c["axis"];
  if (kind == "minmax") return std::make_shared<quant::MinMaxObserver>(spec);
  if (kind == "moving_average") return std::make_shared<quant::MovingAverageMinMaxObserver>(spec);
  if (kind == "per_channel_minmax") return quant::make_per_channel_min_max_observer(spec, axis);
  return quant::make_moving_average_per_channel_observer(spec, axis);
}

TEST(Observer, RunningRangesAndQParamsMatchPyTorch) {
  Shape shape;
  for (const auto& d : golden()["shape"]) shape.push_back(d.get<int64_t>());
  std::vector<Tensor> batches;
  for (const auto& b : golden()["batches"]) {
    std::vector<float> v;
    for (const auto& e : b) v.push_back(e.get<float>());
    batches.push_back(from_vector(v, shape));
  }
  int cases = 0;
  for (const json& c : golden()["cases"]) {
    const std::string name = c["name"];
    auto obs = make(c);
    EXPECT_FALSE(obs->has_data()) << name;
    for (size_t k = 0; k < batches.size(); ++k) {
      Tensor out = (*obs)(batches[k]);
      EXPECT_TRUE(out.is_same(batches[k])) << name;  // observers pass their input through
      expect_floats(obs->min_val(), c["steps"][k]["min"], name + " min step " + std::to_string(k));
      expect_floats(obs->max_val(), c["steps"][k]["max"], name + " max step " + std::to_string(k));
    }
    quant::QParams qp = obs->calculate_qparams();
    expect_floats(qp.scale, c["scale"], name + " scale");
    Tensor zp = qp.zero_point.to(DType::I64).contiguous();
    for (size_t i = 0; i < c["zero_point"].size(); ++i)
      EXPECT_EQ(zp.data<int64_t>()[i], c["zero_point"][i].get<int64_t>()) << name << " zero_point " << i;
    ++cases;
  }
  EXPECT_EQ(cases, 18);
}

TEST(Observer, BeforeAnyDataGivesUnitQParams) {
  quant::MinMaxObserver obs;
  quant::QParams qp = obs.calculate_qparams();
  EXPECT_EQ(qp.scale.item<float>(), 1.0f);
  EXPECT_EQ(qp.zero_point.item<int32_t>(), 0);
  obs(zeros({0, 3}));  // an empty batch changes nothing
  EXPECT_FALSE(obs.has_data());
}

TEST(Observer, ResetForgetsTheRangeAndStateDictCarriesIt) {
  auto obs = quant::make_per_channel_min_max_observer({}, 1);
  (*obs)(randn({2, 3, 4}));
  EXPECT_EQ(obs->min_val().numel(), 3);
  auto sd = obs->state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "min_val");
  EXPECT_EQ(sd[1].first, "max_val");
  EXPECT_EQ(sd[0].second.numel(), 3);
  obs->reset();
  EXPECT_FALSE(obs->has_data());
}

TEST(Observer, ChannelCountChangeAndBadAxisAreErrors) {
  auto obs = quant::make_per_channel_min_max_observer({}, 0);
  (*obs)(randn({3, 4}));
  EXPECT_THROW((*obs)(randn({5, 4})), Error);
  auto bad = quant::make_per_channel_min_max_observer({}, 3);
  EXPECT_THROW((*bad)(randn({3, 4})), Error);
  EXPECT_THROW(quant::MovingAverageMinMaxObserver({}, 0.0), Error);
  quant::MinMaxObserver ints;
  EXPECT_THROW(ints(zeros({3}, DType::I32)), Error);
}

TEST(Observer, SixteenBitInputsAreObservedInF32) {
  quant::MinMaxObserver a, b;
  Tensor x = randn({64});
  a(x.to(DType::BF16));
  b(x.to(DType::BF16).to(DType::F32));
  EXPECT_EQ(a.min_val().item<float>(), b.min_val().item<float>());
  EXPECT_EQ(a.min_val().dtype(), DType::F32);
}

}  // namespace
}  // namespace mantissa
