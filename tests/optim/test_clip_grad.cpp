// clip_grad_norm_ (L2, inf, L1) and clip_grad_value_ against PyTorch 1.13 (tests/golden/optim.json),
// plus F64 and F16 gradients, large and non-contiguous gradients, skipped undefined gradients and
// the non-finite error.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/golden.h"

#include "optim/clip_grad.h"

namespace mantissa::optim {
namespace {

using nlohmann::json;

const json& golden() { return mantissa::testing::golden_json("optim.json"); }

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const json& c : golden()["clipping"]) names.push_back(c["name"]);
  return names;
}

double arg(const json& args, const char* key, double fallback) {
  if (!args.contains(key)) return fallback;
  const json& v = args[key];
  return v.is_string() ? std::numeric_limits<double>::infinity() : v.get<double>();
}

class GoldenClip : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenClip, MatchesPyTorch) {
  const json* found = nullptr;
  for (const json& c : golden()["clipping"])
    if (c["name"] == GetParam()) found = &c;
  ASSERT_NE(found, nullptr);
  const json& c = *found;
  const std::vector<Shape> shapes{{3, 2}, {2}};
  std::vector<Tensor> params;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor p = zeros(shapes[i]).requires_grad_();
    p.set_grad(from_vector(c["grads_in"][i].get<std::vector<double>>(), shapes[i]).to(DType::F32));
    params.push_back(p);
  }
  const json& args = c["args"];
  if (GetParam() == "value") {
    clip_grad_value_(params, arg(args, "clip_value", 0));
  } else {
    const double total = clip_grad_norm_(params, arg(args, "max_norm", 0), arg(args, "norm_type", 2.0));
    const double want = c["total_norm"];
    EXPECT_LE(std::fabs(total - want), 1e-6 * want) << "total norm " << total << ", PyTorch " << want;
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<double> got = to_vector<double>(params[i].grad());
    const std::vector<double> want = c["grads_out"][i].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < got.size(); ++k)
      EXPECT_LE(std::fabs(got[k] - want[k]), 1e-6 * std::fabs(want[k]) + 1e-7)
          << GetParam() << " grad " << i << " element " << k << ": got " << got[k] << ", PyTorch " << want[k];
  }
}

INSTANTIATE_TEST_SUITE_P(Optim, GoldenClip, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

TEST(ClipGrad, NormOverManyTensorsAndDTypes) {
  // 3-4-5 triangles spread over an F32, an F64 (non-contiguous) and an F16 gradient; one
  // parameter without a gradient is skipped.
  Tensor a = zeros({100000}).requires_grad_();
  a.set_grad(full({100000}, 0.03));  // sum of squares 90
  Tensor b = zeros({2, 2}, DType::F64).requires_grad_();
  b.set_grad(from_vector(std::vector<double>{4, 0, 0, 0}, {2, 2}).transpose(0, 1));  // 16
  Tensor h = zeros({2}, DType::F16).requires_grad_();
  h.set_grad(from_vector(std::vector<float>{3, 3}, {2}).to(DType::F16));  // 18
  Tensor none = zeros({3}).requires_grad_();
  const double total = clip_grad_norm_({a, none, b, h}, 2.0);
  EXPECT_NEAR(total, std::sqrt(124.0), 2e-6);
  const double coef = 2.0 / (std::sqrt(124.0) + 1e-6);
  EXPECT_NEAR(to_vector<double>(a.grad())[12345], 0.03 * coef, 1e-7);
  EXPECT_NEAR(to_vector<double>(b.grad())[0], 4 * coef, 1e-6);
  EXPECT_NEAR(to_vector<double>(h.grad())[1], 3 * coef, 2e-3);
  EXPECT_FALSE(none.grad().defined());
}

TEST(ClipGrad, F64OnlyComputesInF64) {
  Tensor p = zeros({2}, DType::F64).requires_grad_();
  p.set_grad(from_vector(std::vector<double>{3, 4}, {2}));
  EXPECT_EQ(clip_grad_norm_(p, 1.0), 5.0);
  const std::vector<double> g = to_vector<double>(p.grad());
  EXPECT_DOUBLE_EQ(g[0], 3.0 / (5.0 + 1e-6));
  EXPECT_DOUBLE_EQ(g[1], 4.0 / (5.0 + 1e-6));
}

TEST(ClipGrad, GeneralPAndZeroNorms) {
  Tensor p = zeros({3}).requires_grad_();
  p.set_grad(from_vector(std::vector<float>{1, -2, 0}, {3}));
  EXPECT_NEAR(clip_grad_norm_(p, 100.0, 3.0), std::cbrt(9.0), 1e-6);
  Tensor q = zeros({3}).requires_grad_();
  q.set_grad(from_vector(std::vector<float>{1, -2, 0}, {3}));
  EXPECT_EQ(clip_grad_norm_({p, q}, 100.0, 0.0), 2.0);  // PyTorch: tensors with a nonzero norm
  Tensor none = zeros({3}).requires_grad_();
  EXPECT_EQ(clip_grad_norm_(none, 1.0), 0.0);
}

TEST(ClipGrad, NonFinite) {
  Tensor p = zeros({3}).requires_grad_();
  p.set_grad(from_vector(std::vector<float>{1, NAN, 2}, {3}));
  try {
    clip_grad_norm_(p, 1.0, 2.0, true);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is nan (non-finite)"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::isnan(clip_grad_norm_(p, 1.0, INFINITY)));
  EXPECT_TRUE(std::isnan(to_vector<float>(p.grad())[0]));  // scaled by NaN, as PyTorch does
  EXPECT_THROW(clip_grad_norm_(p, 1.0, -1.0), Error);
}

TEST(ClipGrad, ValueKeepsNaNAndClampsEverything) {
  Tensor p = zeros({5}).requires_grad_();
  p.set_grad(from_vector(std::vector<float>{-3, -0.5f, NAN, 0.5f, 3}, {5}));
  const uint32_t v = p.grad().version();
  clip_grad_value_(p, 1.0);
  const std::vector<float> g = to_vector<float>(p.grad());
  EXPECT_EQ(g[0], -1.0f);
  EXPECT_EQ(g[1], -0.5f);
  EXPECT_TRUE(std::isnan(g[2]));
  EXPECT_EQ(g[3], 0.5f);
  EXPECT_EQ(g[4], 1.0f);
  EXPECT_GT(p.grad().version(), v);
  Tensor i = zeros({2}).requires_grad_();
  EXPECT_NO_THROW(clip_grad_value_(i, 1.0));  // no gradient: nothing to do
}

}  // namespace
}  // namespace mantissa::optim
