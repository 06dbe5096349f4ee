// Tests for the CIFAR-10 example networks (examples/common/cifar_nets.h): shapes and parameter
// counts, the Jacobi eigen-solver, the whitening conv really whitening 2x2 patches, frozen
// parameters, BatchNorm kept F32 under 16-bit policies, and a few SGD steps lowering the loss.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "amp/autocast.h"
#include "amp/policy.h"
#include "core/generator.h"
#include "examples/common/cifar_nets.h"
#include "optim/optim.h"

namespace mantissa::examples {
namespace {

int64_t count(const std::vector<Tensor>& params, bool trainable_only) {
  int64_t n = 0;
  for (const Tensor& p : params)
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// Images with correlated channels and neighbouring pixels (as photographs have) plus white noise,
// so the 2x2 patch covariance is far from the identity but well conditioned.
Tensor correlated_images(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> base(static_cast<size_t>(n * 33 * 33));
  for (float& v : base) v = normal(rng);
  std::vector<float> out(static_cast<size_t>(n * 3 * 32 * 32));
  const float mix[3][2] = {{1.0f, 0.1f}, {0.8f, 0.5f}, {0.6f, -0.4f}};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 32; ++x) {
          const float* b = &base[static_cast<size_t>(i * 33 * 33)];
          const float smooth = b[y * 33 + x] + b[y * 33 + x + 1] + b[(y + 1) * 33 + x] + b[(y + 1) * 33 + x + 1];
          const float edge = b[y * 33 + x] - b[(y + 1) * 33 + x + 1];
          out[static_cast<size_t>(((i * 3 + c) * 32 + y) * 32 + x)] =
              mix[c][0] * smooth + mix[c][1] * edge + 0.3f * normal(rng) + 0.5f;
        }
  return from_vector(out, {n, 3, 32, 32});
}

TEST(CifarNets, ResNet20ShapesAndParameterCount) {
  manual_seed(1);
  ResNet20 model;
  EXPECT_EQ(count(model.parameters(), false), ResNet20::kParameterCount);
  EXPECT_EQ(count(model.parameters(), false), 272474);  // option A would be 269,722
  // Two projection shortcuts (option B), at the first block of stages 2 and 3 only.
  EXPECT_EQ(model.layer1->at<nn::BasicBlock>(0)->downsample, nullptr);
  EXPECT_NE(model.layer2->at<nn::BasicBlock>(0)->downsample, nullptr);
  EXPECT_NE(model.layer3->at<nn::BasicBlock>(0)->downsample, nullptr);
  EXPECT_EQ(model.layer3->at<nn::BasicBlock>(1)->downsample, nullptr);
  // He init, fan_out: a 64-channel 3x3 conv's weight std is sqrt(2 / (64 * 9)) ~ 0.059.
  const std::vector<float> w = to_vector<float>(model.layer3->at<nn::BasicBlock>(1)->conv1->weight);
  double ss = 0.0;
  for (float v : w) ss += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(ss / static_cast<double>(w.size())), std::sqrt(2.0 / (64 * 9)), 0.005);

  const Tensor x = randn({2, 3, 32, 32});
  const Tensor logits = model.forward(x);
  EXPECT_EQ(logits.sizes(), (Shape{2, 10}));
  cross_entropy(logits, from_vector(std::vector<int64_t>{3, 7}, {2})).backward();
  for (const auto& [name, p] : model.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
}

TEST(CifarNets, Airbench94ShapesParameterCountAndFrozenTensors) {
  manual_seed(2);
  Airbench94 model;
  EXPECT_EQ(count(model.parameters(), false), Airbench94::kParameterCount);
  EXPECT_EQ(count(model.parameters(), false), 1972792);
  EXPECT_EQ(count(model.parameters(), true), Airbench94::kTrainableParameterCount);
  EXPECT_FALSE(model.whiten->weight.requires_grad());
  EXPECT_TRUE(model.whiten->bias.requires_grad());
  for (const auto& bn : {model.block1->norm1, model.block1->norm2, model.block2->norm1, model.block3->norm2}) {
    EXPECT_FALSE(bn->weight.requires_grad());
    EXPECT_TRUE(bn->bias.requires_grad());
    EXPECT_EQ(bn->options.eps(), 1e-12);
    EXPECT_EQ(bn->options.momentum().value(), 0.4);
  }
  EXPECT_FALSE(model.head->bias.defined());
  // The groups: 6 BatchNorm shifts; 6 convs, the head and the whitening bias.
  EXPECT_EQ(model.norm_biases().size(), 6u);
  EXPECT_EQ(model.other_parameters().size(), 8u);
  // Dirac init: the first C_in filters of a conv pass their input channel through.
  const std::vector<float> w = to_vector<float>(model.block2->conv1->weight);  // [256, 64, 3, 3]
  EXPECT_EQ(w[(5 * 64 + 5) * 9 + 4], 1.0f);
  EXPECT_EQ(w[(5 * 64 + 6) * 9 + 4], 0.0f);
  EXPECT_EQ(w[(5 * 64 + 5) * 9 + 0], 0.0f);
  EXPECT_NE(w[(100 * 64 + 5) * 9 + 4], 0.0f);  // beyond C_in: PyTorch's default init

  model.init_whitening(correlated_images(4, 3));
  const Tensor logits = model.forward(randn({2, 3, 32, 32}));
  EXPECT_EQ(logits.sizes(), (Shape{2, 10}));
  cross_entropy(logits, from_vector(std::vector<int64_t>{1, 9}, {2})).backward();
  EXPECT_FALSE(model.whiten->weight.grad().defined());
  EXPECT_FALSE(model.block1->norm1->weight.grad().defined());
  EXPECT_TRUE(model.whiten->bias.grad().defined());
  EXPECT_TRUE(model.block3->norm2->bias.grad().defined());
  EXPECT_TRUE(model.head->weight.grad().defined());
}

TEST(CifarNets, SymmetricEigenReconstructsTheMatrix) {
  const int64_t n = 12;
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> b(static_cast<size_t>(n * n)), a(static_cast<size_t>(n * n), 0.0);
  for (double& v : b) v = normal(rng);
  for (int64_t i = 0; i < n; ++i)  // A = B B^T: symmetric positive semi-definite
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k) a[i * n + j] += b[i * n + k] * b[j * n + k];
  const SymmetricEigen e = symmetric_eigen(a, n);
  for (int64_t k = 1; k < n; ++k) EXPECT_GE(e.values[k - 1], e.values[k]);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double r = 0.0, dot = 0.0;
      for (int64_t k = 0; k < n; ++k) {
        r += e.vectors[k * n + i] * e.values[k] * e.vectors[k * n + j];
        dot += e.vectors[i * n + k] * e.vectors[j * n + k];
      }
      EXPECT_NEAR(r, a[i * n + j], 1e-10);
      EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-12);
    }
  // Diagonal input: the eigenvalues sorted, eigenvectors the unit vectors.
  const SymmetricEigen d = symmetric_eigen({1.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0}, 3);
  EXPECT_EQ(d.values, (std::vector<double>{3.0, 2.0, 1.0}));
  EXPECT_EQ(std::abs(d.vectors[0 * 3 + 1]), 1.0);
  EXPECT_THROW(symmetric_eigen({1.0, 2.0}, 2), Error);
}

TEST(CifarNets, WhiteningConvWhitensPatches) {
  manual_seed(3);
  Airbench94 model;
  const Tensor images = correlated_images(24, 11);
  const std::vector<double> before = patch_covariance(images, 2);
  EXPECT_GT(std::abs(before[0 * 12 + 4]), 0.5);  // R and G at the same pixel: strongly correlated
  model.init_whitening(images);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = model.whiten->forward(images);  // bias 0 at init: the linear map alone
  }
  ASSERT_EQ(out.sizes(), (Shape{24, 24, 31, 31}));
  const std::vector<float> o = to_vector<float>(out);
  // E[o o^T] over every position: the identity for the first 12 channels (up to the eps
  // shrinkage l / (l + 5e-4), under 1% here), the next 12 are their negations.
  const int64_t hw = 31 * 31;
  std::vector<double> cov(144, 0.0);
  for (int64_t i = 0; i < 24; ++i)
    for (int64_t p = 0; p < hw; ++p)
      for (int64_t r = 0; r < 12; ++r) {
        const double vr = o[static_cast<size_t>((i * 24 + r) * hw + p)];
        EXPECT_EQ(o[static_cast<size_t>((i * 24 + r + 12) * hw + p)], static_cast<float>(-vr));
        for (int64_t s = 0; s < 12; ++s) cov[r * 12 + s] += vr * o[static_cast<size_t>((i * 24 + s) * hw + p)];
      }
  for (int64_t r = 0; r < 12; ++r)
    for (int64_t s = 0; s < 12; ++s)
      EXPECT_NEAR(cov[r * 12 + s] / static_cast<double>(24 * hw), r == s ? 1.0 : 0.0, 1e-2) << r << "," << s;
  EXPECT_THROW(model.init_whitening(zeros({2, 1, 32, 32})), Error);
}

TEST(CifarNets, BatchNormStaysF32UnderBf16Policies) {
  for (const char* policy : {"bf16-master", "bf16-pure"}) {
    manual_seed(4);
    for (const std::string kind : {"resnet20", "airbench"}) {
      nn::ModulePtr model = make_cifar_model(kind);
      const amp::Precision p = amp::parse_precision(policy);
      amp::prepare_model(*model, p);
      if (auto* air = dynamic_cast<Airbench94*>(model.get())) {
        air->init_whitening(correlated_images(2, 5));  // into a BF16 weight
        EXPECT_EQ(air->whiten->weight.dtype(), DType::BF16);
      }
      int64_t norms = 0;
      for (const auto& [name, m] : model->named_modules()) {
        if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(m.get())) {
          ++norms;
          EXPECT_EQ(bn->weight.dtype(), DType::F32) << policy << " " << kind << " " << name;
          EXPECT_EQ(bn->bias.dtype(), DType::F32) << name;
          EXPECT_EQ(bn->running_mean.dtype(), DType::F32) << name;
          EXPECT_EQ(bn->running_var.dtype(), DType::F32) << name;
        } else if (auto* conv = dynamic_cast<nn::Conv2d*>(m.get())) {
          EXPECT_EQ(conv->weight.dtype(), DType::BF16) << policy << " " << kind << " " << name;
        }
      }
      EXPECT_EQ(norms, kind == "resnet20" ? 21 : 6);
      amp::AutocastGuard autocast(DeviceType::CPU, DType::BF16);
      const Tensor loss = cross_entropy((*model)(randn({2, 3, 32, 32})), from_vector(std::vector<int64_t>{0, 5}, {2}));
      EXPECT_EQ(loss.dtype(), DType::F32);
      EXPECT_TRUE(std::isfinite(loss.item_double()));
      loss.backward();
    }
  }
}

TEST(CifarNets, SgdStepsReduceTheLoss) {
  for (const std::string kind : {"resnet20", "airbench"}) {
    manual_seed(5);
    nn::ModulePtr model = make_cifar_model(kind);
    const Tensor x = correlated_images(8, 21);
    const Tensor y = from_vector(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}, {8});
    std::vector<optim::ParamGroup> groups;
    if (auto* air = dynamic_cast<Airbench94*>(model.get())) {
      air->init_whitening(x);
      groups = {{air->other_parameters()}, {air->norm_biases()}};
    } else {
      groups = {{model->parameters()}};
    }
    optim::SGD opt(groups, optim::SGDOptions(0.02).momentum(0.9).nesterov(true));
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 8; ++step) {
      opt.zero_grad();
      const Tensor loss = cross_entropy((*model)(x), y, Reduction::Mean, -100, 0.2);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item_double();
    }
    EXPECT_LT(last, 0.8 * first) << kind << ": " << first << " -> " << last;
  }
}

TEST(CifarNets, UnknownModelIsAnError) {
  EXPECT_THROW(make_cifar_model("resnet18"), Error);
}

}  // namespace
}  // namespace mantissa::examples
