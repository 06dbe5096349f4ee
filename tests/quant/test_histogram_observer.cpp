// HistogramObserver against torch 1.13 (histogram after every batch, the L2-searched range, the
// qparams) and PercentileObserver against torch.quantile with a moving average
// (tests/golden/make_histogram_golden.py -> histogram.json). Every value is compared bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "quant/histogram_observer.h"
#include "quant/percentile_observer.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using nlohmann::json;
using quant::QDType;
using quant::QScheme;
using quant::QSpec;

const json& golden() { return testing::golden_json("histogram.json"); }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

std::vector<Tensor> batches(const std::string& name) {
  std::vector<Tensor> out;
  for (const auto& b : golden()["data"][name]) {
    std::vector<float> v;
    for (const auto& e : b) v.push_back(e.get<float>());
    out.push_back(from_vector(v, {static_cast<int64_t>(v.size())}));
  }
  return out;
}

QSpec spec_of(const json& c) {
  QSpec spec;
  spec.dtype = c["dtype"] == "uint8" ? QDType::UInt8 : QDType::Int8;
  spec.scheme = c["symmetric"].get<bool>() ? QScheme::Symmetric : QScheme::Affine;
  return spec;
}

void expect_qparams(const quant::QParams& qp, const json& c, const std::string& name) {
  const float want = c["scale"].get<float>();
  EXPECT_TRUE(same_bits(qp.scale.item<float>(), want)) << name << " scale " << qp.scale.item<float>() << " vs " << want;
  EXPECT_EQ(qp.zero_point.item<int32_t>(), c["zero_point"].get<int32_t>()) << name << " zero point";
}

TEST(HistogramObserver, HistogramsSearchAndQParamsMatchPyTorch) {
  int cases = 0;
  for (const json& c : golden()["histogram"]) {
    const std::string name = c["name"];
    quant::HistogramObserver obs(spec_of(c));
    EXPECT_FALSE(obs.has_data()) << name;
    const auto xs = batches(c["data"]);
    ASSERT_EQ(xs.size(), c["steps"].size()) << name;
    for (size_t k = 0; k < xs.size(); ++k) {
      const json& s = c["steps"][k];
      const std::string at = name + " step " + std::to_string(k);
      EXPECT_TRUE(obs(xs[k]).is_same(xs[k])) << at;
      EXPECT_TRUE(same_bits(obs.min_val().item<float>(), s["min"].get<float>()))
          << at << " min " << obs.min_val().item<float>() << " vs " << s["min"].get<float>();
      EXPECT_TRUE(same_bits(obs.max_val().item<float>(), s["max"].get<float>()))
          << at << " max " << obs.max_val().item<float>() << " vs " << s["max"].get<float>();
      if (!s.contains("histogram")) continue;  // stored once per data set (it ignores the spec)
      std::vector<float> want(2048, 0.0f);
      for (const auto& e : s["histogram"]) want[e[0].get<size_t>()] = e[1].get<float>();
      Tensor h = obs.histogram().contiguous();
      ASSERT_EQ(h.numel(), 2048) << at;
      int bad = 0;
      for (int64_t i = 0; i < 2048 && bad < 5; ++i) {
        if (same_bits(h.data<float>()[i], want[static_cast<size_t>(i)])) continue;
        ADD_FAILURE() << at << " histogram[" << i << "] " << h.data<float>()[i] << " vs " << want[static_cast<size_t>(i)];
        ++bad;
      }
    }
    auto [lo, hi] = obs.search_range();
    EXPECT_TRUE(same_bits(lo.item<float>(), c["search_min"].get<float>()))
        << name << " search min " << lo.item<float>() << " vs " << c["search_min"].get<float>();
    EXPECT_TRUE(same_bits(hi.item<float>(), c["search_max"].get<float>()))
        << name << " search max " << hi.item<float>() << " vs " << c["search_max"].get<float>();
    // Through the base class, as FakeQuantize calls it.
    const quant::Observer& base = obs;
    expect_qparams(base.calculate_qparams(), c, name);
    ++cases;
  }
  EXPECT_EQ(cases, 32);
}

TEST(HistogramObserver, SearchRangeIsWholeBinsInsideTheHistogramAndResetRestarts) {
  // The search only ever drops whole bins from the ends: the kept range is [min + a*w, min + b*w]
  // with w = (max - min) / 2048 and 0 <= a < b <= 2048.
  const auto xs = batches("growing");
  quant::HistogramObserver obs;
  for (const auto& x : xs) obs(x);
  auto [lo, hi] = obs.search_range();
  const float mn = obs.min_val().item<float>(), mx = obs.max_val().item<float>();
  EXPECT_GE(lo.item<float>(), mn);
  EXPECT_LE(hi.item<float>(), mx);
  EXPECT_LT(lo.item<float>(), hi.item<float>());
  const double w = (static_cast<double>(mx) - mn) / 2048.0;
  const double a = (lo.item<float>() - mn) / w, b = (hi.item<float>() - mn) / w;
  EXPECT_NEAR(a, std::round(a), 1e-3);
  EXPECT_NEAR(b, std::round(b), 1e-3);
  EXPECT_LT(b - a, 2048.0);  // this data has sparse tails: something was dropped
  const auto sd = obs.state_dict();
  ASSERT_EQ(sd.size(), 3u);
  EXPECT_EQ(sd[2].first, "histogram");
  obs.reset();
  EXPECT_FALSE(obs.has_data());
  EXPECT_EQ(obs.calculate_qparams().scale.item<float>(), 1.0f);  // unit qparams before data
  obs(full({4}, 2.0));
  EXPECT_TRUE(obs.has_data());
}

TEST(HistogramObserver, BadSpecsAndInputsAreErrors) {
  QSpec per_channel;
  per_channel.axis = 0;
  EXPECT_THROW(quant::HistogramObserver{per_channel}, Error);
  EXPECT_THROW(quant::HistogramObserver({}, 0), Error);
  quant::HistogramObserver obs;
  EXPECT_THROW(obs(zeros({3}, DType::I32)), Error);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_THROW(obs(from_vector(std::vector<float>{1.0f, inf}, {2})), Error);
  EXPECT_THROW(obs.search_range(), Error);  // nothing observed yet
}

TEST(PercentileObserver, RangesAndQParamsMatchTorchQuantile) {
  int cases = 0;
  for (const json& c : golden()["percentile"]) {
    const std::string name = c["name"];
    quant::PercentileObserver obs(spec_of(c), c["percentile"].get<double>(), c["averaging_constant"].get<double>());
    const auto xs = batches(c["data"]);
    for (size_t k = 0; k < xs.size(); ++k) {
      const json& s = c["steps"][k];
      const std::string at = name + " step " + std::to_string(k);
      EXPECT_TRUE(obs(xs[k]).is_same(xs[k])) << at;
      EXPECT_TRUE(same_bits(obs.min_val().item<float>(), s["min"].get<float>()))
          << at << " min " << obs.min_val().item<float>() << " vs " << s["min"].get<float>();
      EXPECT_TRUE(same_bits(obs.max_val().item<float>(), s["max"].get<float>()))
          << at << " max " << obs.max_val().item<float>() << " vs " << s["max"].get<float>();
    }
    expect_qparams(obs.calculate_qparams(), c, name);
    ++cases;
  }
  EXPECT_EQ(cases, 36);
}

TEST(PercentileObserver, QuantileMatchesTorchLinearInterpolation) {
  int cases = 0;
  for (const json& c : golden()["quantile"]) {
    std::vector<float> v;
    for (const auto& e : c["x"]) v.push_back(e.get<float>());
    const float got = quant::PercentileObserver::quantile(from_vector(v, {static_cast<int64_t>(v.size())}),
                                                          c["q"].get<double>());
    EXPECT_TRUE(same_bits(got, c["value"].get<float>()))
        << c["name"].get<std::string>() << " q=" << c["q"].get<double>() << ": " << got << " vs " << c["value"];
    ++cases;
  }
  EXPECT_EQ(cases, 20);
}

TEST(PercentileObserver, BadArgumentsAreErrors) {
  EXPECT_THROW(quant::PercentileObserver({}, 50.0), Error);
  EXPECT_THROW(quant::PercentileObserver({}, -1.0), Error);
  EXPECT_THROW(quant::PercentileObserver({}, 0.01, 0.0), Error);
  quant::PercentileObserver obs;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(obs(from_vector(std::vector<float>{1.0f, nan}, {2})), Error);
  EXPECT_THROW(quant::PercentileObserver::quantile(zeros({4}), 1.5), Error);
}

}  // namespace
}  // namespace mantissa
