// nn::init: gains and fans against PyTorch's formulas, and the statistics (bounds, mean, std) of
// every initializer and of the layers' default initialization on large weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/generator.h"
#include "nn/nn.h"

namespace mantissa {
namespace {

namespace init = nn::init;

struct Stats {
  double min, max, mean, std;
};

Stats stats(const Tensor& t) {
  auto v = to_vector<double>(t);
  double sum = 0, sq = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  for (double x : v) sq += (x - mean) * (x - mean);
  return {*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), mean,
          std::sqrt(sq / static_cast<double>(v.size() - 1))};
}

// A U(-b, b) sample of n values: inside the bounds, reaching close to them, mean ~0, std b/sqrt(3).
void expect_uniform(const Tensor& t, double bound) {
  const Stats s = stats(t);
  const double n = static_cast<double>(t.numel());
  EXPECT_GE(s.min, -bound);
  EXPECT_LE(s.max, bound);
  EXPECT_LT(s.min, -0.99 * bound);
  EXPECT_GT(s.max, 0.99 * bound);
  const double std = bound / std::sqrt(3.0);
  EXPECT_NEAR(s.mean, 0.0, 5 * std / std::sqrt(n));
  EXPECT_NEAR(s.std, std, 0.01 * std);
}

void expect_normal(const Tensor& t, double mean, double std) {
  const Stats s = stats(t);
  EXPECT_NEAR(s.mean, mean, 5 * std / std::sqrt(static_cast<double>(t.numel())));
  EXPECT_NEAR(s.std, std, 0.01 * std);
}

TEST(Init, CalculateGain) {
  EXPECT_DOUBLE_EQ(init::calculate_gain("linear"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("conv2d"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("sigmoid"), 1.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu"), std::sqrt(2.0 / (1.0 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", 0.2), std::sqrt(2.0 / 1.04));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("selu"), 0.75);
  EXPECT_THROW(init::calculate_gain("softplus"), Error);
}

TEST(Init, Fans) {
  EXPECT_EQ(init::calculate_fan_in_and_fan_out(empty({512, 784})), (std::pair<int64_t, int64_t>{784, 512}));
  EXPECT_EQ(init::calculate_fan_in_and_fan_out(empty({32, 16, 3, 5})), (std::pair<int64_t, int64_t>{240, 480}));
  EXPECT_EQ(init::calculate_correct_fan(empty({32, 16, 3, 3}), "fan_out"), 288);
  EXPECT_THROW(init::calculate_correct_fan(empty({32, 16}), "fan_avg"), Error);
  try {
    init::calculate_fan_in_and_fan_out(empty({10}));
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than 2 dimensions"), std::string::npos) << e.what();
  }
  EXPECT_THROW(init::kaiming_uniform_(empty({10})), Error);
  EXPECT_THROW(init::xavier_normal_(empty({10})), Error);
}

TEST(Init, KaimingUniformOnLinearWeight) {
  // PyTorch's Linear default: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  Tensor w = empty({512, 784});
  init::kaiming_uniform_(w, std::sqrt(5.0));
  expect_uniform(w, 1.0 / std::sqrt(784.0));
  // Default a=0, leaky_relu: gain sqrt(2), bound sqrt(6/fan_in).
  init::kaiming_uniform_(w);
  expect_uniform(w, std::sqrt(6.0 / 784.0));
  init::kaiming_uniform_(w, 0.0, "fan_out", "relu");
  expect_uniform(w, std::sqrt(6.0 / 512.0));
}

TEST(Init, KaimingAndXavierNormal) {
  Tensor w = empty({256, 64, 3, 3});
  init::kaiming_normal_(w, 0.0, "fan_out", "relu");
  expect_normal(w, 0.0, std::sqrt(2.0) / std::sqrt(256.0 * 9.0));
  init::xavier_normal_(w, 2.0);
  expect_normal(w, 0.0, 2.0 * std::sqrt(2.0 / (64.0 * 9.0 + 256.0 * 9.0)));
  Tensor v = empty({300, 500});
  init::xavier_uniform_(v);
  expect_uniform(v, std::sqrt(6.0 / 800.0));
}

TEST(Init, UniformNormalConstant) {
  Tensor t = empty({300, 300});
  init::uniform_(t, -2.0, 2.0);
  expect_uniform(t, 2.0);
  init::normal_(t, 3.0, 0.5);
  expect_normal(t, 3.0, 0.5);
  init::constant_(t, 1.5);
  for (float v : to_vector<float>(t)) ASSERT_EQ(v, 1.5f);
  init::zeros_(t);
  EXPECT_EQ(stats(t).max, 0.0);
  init::ones_(t);
  EXPECT_EQ(stats(t).min, 1.0);
  EXPECT_THROW(init::uniform_(zeros({2}, DType::I64)), Error);
}

TEST(Init, ParametersStayLeavesAndDrawsAreSeeded) {
  nn::Linear a(30, 20);
  EXPECT_TRUE(a.weight.is_leaf());
  EXPECT_TRUE(a.weight.requires_grad());
  init::kaiming_normal_(a.weight);  // in place on a parameter: no grad_fn, no error
  EXPECT_TRUE(a.weight.is_leaf());

  manual_seed(123);
  nn::Linear b(30, 20);
  manual_seed(123);
  nn::Linear c(30, 20);
  EXPECT_EQ(to_vector<float>(b.weight), to_vector<float>(c.weight));
  EXPECT_EQ(to_vector<float>(b.bias), to_vector<float>(c.bias));
  EXPECT_NE(to_vector<float>(b.weight), to_vector<float>(a.weight));

  Generator gen(7), gen2(7);
  Tensor x = empty({10}), y = empty({10});
  init::normal_(x, 0.0, 1.0, &gen);
  init::normal_(y, 0.0, 1.0, &gen2);
  EXPECT_EQ(to_vector<float>(x), to_vector<float>(y));
}

TEST(Init, ZeroElementTensorsAreLeftAlone) {
  Tensor w = empty({0, 5});
  EXPECT_NO_THROW(init::kaiming_uniform_(w));
  EXPECT_NO_THROW(init::xavier_uniform_(w));
  nn::Linear empty_layer(0, 3);
  EXPECT_EQ(empty_layer.weight.numel(), 0);
  for (float v : to_vector<float>(empty_layer.bias)) EXPECT_EQ(v, 0.0f);  // bound 0 without inputs
}

TEST(Init, LayerDefaults) {
  nn::Linear fc(784, 512);
  expect_uniform(fc.weight, 1.0 / std::sqrt(784.0));
  const Stats bias = stats(fc.bias);
  EXPECT_LE(bias.max, 1.0 / std::sqrt(784.0));
  EXPECT_GE(bias.min, -1.0 / std::sqrt(784.0));

  nn::Conv2d conv(nn::Conv2dOptions(64, 128, 3));
  expect_uniform(conv.weight, 1.0 / std::sqrt(64.0 * 9.0));
  const Stats cb = stats(conv.bias);
  EXPECT_LE(cb.max, 1.0 / 24.0);
  EXPECT_GE(cb.min, -1.0 / 24.0);

  nn::Embedding emb(1000, 128);
  expect_normal(emb.weight, 0.0, 1.0);

  nn::BatchNorm2d bn(8);
  EXPECT_EQ(stats(bn.weight).min, 1.0);
  EXPECT_EQ(stats(bn.bias).max, 0.0);
  EXPECT_EQ(stats(bn.running_mean).max, 0.0);
  EXPECT_EQ(stats(bn.running_var).min, 1.0);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
  nn::LayerNorm ln(nn::LayerNormOptions({3, 4}));
  EXPECT_EQ(ln.weight.sizes(), (Shape{3, 4}));
  EXPECT_EQ(stats(ln.weight).min, 1.0);
  EXPECT_EQ(stats(ln.bias).max, 0.0);
}

}  // namespace
}  // namespace mantissa
