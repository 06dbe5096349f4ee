// nn layers: reprs and one full training-mode forward/backward against PyTorch (tests/golden/
// nn.json), gradient shapes through every layer, BatchNorm/Dropout modes, losses, functional
// forms, Sequential access, and the errors bad inputs get.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>

#include "golden_models.h"

namespace mantissa {
namespace {

using nlohmann::json;
using testing_nn::nn_golden;
using testing_nn::sequential_model;
namespace F = nn::functional;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], atol + rtol * std::fabs(want[i])) << what << " [" << i << "]";
}

TEST(Layers, ReprMatchesPyTorch) {
  using namespace nn;
  using std::make_shared;
  const std::map<std::string, ModulePtr> layers = {
      {"Linear(784, 10)", make_shared<Linear>(784, 10)},
      {"Linear(784, 10, bias=False)", make_shared<Linear>(LinearOptions(784, 10).bias(false))},
      {"Conv2d(1, 32, 3)", make_shared<Conv2d>(1, 32, 3)},
      {"Conv2d(3, 16, (3, 5), stride=2, padding=(1, 2), dilation=2, bias=False)",
       make_shared<Conv2d>(nn::Conv2dOptions(3, 16, {3, 5}).stride(2).padding({1, 2}).dilation(2).bias(false))},
      {"Conv2d(4, 8, 3, groups=2)", make_shared<Conv2d>(nn::Conv2dOptions(4, 8, 3).groups(2))},
      {"BatchNorm1d(32)", make_shared<BatchNorm1d>(32)},
      {"BatchNorm2d(64, eps=1e-3, momentum=None, affine=False, track_running_stats=False)",
       make_shared<BatchNorm2d>(
           BatchNormOptions(64).eps(1e-3).momentum(std::nullopt).affine(false).track_running_stats(false))},
      {"LayerNorm(16)", make_shared<LayerNorm>(LayerNormOptions({16}))},
      {"LayerNorm([4, 5], eps=1e-6, elementwise_affine=False)",
       make_shared<LayerNorm>(LayerNormOptions({4, 5}).eps(1e-6).elementwise_affine(false))},
      {"Dropout()", make_shared<Dropout>()},
      {"Dropout(0.25)", make_shared<Dropout>(0.25)},
      {"ReLU()", make_shared<ReLU>()},
      {"GELU()", make_shared<GELU>()},
      {"GELU(approximate='tanh')", make_shared<GELU>("tanh")},
      {"SiLU()", make_shared<SiLU>()},
      {"Tanh()", make_shared<Tanh>()},
      {"Sigmoid()", make_shared<Sigmoid>()},
      {"Softmax(dim=1)", make_shared<Softmax>(1)},
      {"LogSoftmax(dim=1)", make_shared<LogSoftmax>(1)},
      {"MaxPool2d(2)", make_shared<MaxPool2d>(2)},
      {"MaxPool2d(3, stride=2, padding=1)", make_shared<MaxPool2d>(MaxPool2dOptions(3).stride(2).padding(1))},
      {"AvgPool2d(2)", make_shared<AvgPool2d>(2)},
      {"AvgPool2d((2, 3))", make_shared<AvgPool2d>(ExpandingArray<2>({2, 3}))},
      {"AdaptiveAvgPool2d(1)", make_shared<AdaptiveAvgPool2d>(1)},
      {"AdaptiveAvgPool2d((2, 3))", make_shared<AdaptiveAvgPool2d>(ExpandingArray<2>({2, 3}))},
      {"Flatten()", make_shared<Flatten>()},
      {"Embedding(10, 3)", make_shared<Embedding>(10, 3)},
      {"CrossEntropyLoss()", make_shared<CrossEntropyLoss>()},
      {"NLLLoss()", make_shared<NLLLoss>()},
      {"MSELoss()", make_shared<MSELoss>()},
      {"BasicBlock(4, 4)", make_shared<BasicBlock>(4, 4)},
  };
  const json& golden = nn_golden()["reprs"];
  EXPECT_EQ(layers.size(), golden.size());
  for (const auto& [key, module] : layers) {
    ASSERT_TRUE(golden.contains(key)) << key;
    EXPECT_EQ(module->repr(), golden[key].get<std::string>()) << key;
  }
}

Tensor golden_tensor(const json& values, const Shape& shape, DType dtype = DType::F32) {
  return from_vector(values.get<std::vector<double>>(), shape, TensorOptions(dtype));
}

// One training step of the golden Sequential (convs, BatchNorm2d/1d, BasicBlocks with and without
// downsample, pooling, Linear, GELU) matches PyTorch: output, loss, every grad, running stats.
TEST(Layers, SequentialForwardBackwardMatchesPyTorch) {
  const json& g = nn_golden()["forward"];
  auto model = sequential_model();
  nn::NamedTensors sd;
  for (const auto& e : g["state_dict"]) {
    const std::string name = e[0];
    sd.emplace_back(name, golden_tensor(e[2], e[1].get<Shape>(),
                                        name.ends_with("num_batches_tracked") ? DType::I64 : DType::F32));
  }
  model->load_state_dict(sd);

  Tensor x = golden_tensor(g["input"], g["input_shape"].get<Shape>());
  Tensor target = from_vector(g["target"].get<std::vector<int64_t>>(), {2});
  model->train();
  Tensor out = (*model)(x);
  Tensor loss = cross_entropy(out, target);
  loss.backward();
  expect_close(to_vector<float>(out), g["train_output"].get<std::vector<float>>(), 1e-5, 1e-4, "train output");
  EXPECT_NEAR(loss.item<float>(), g["loss"].get<double>(), 1e-5);

  auto named = model->named_parameters();
  ASSERT_EQ(named.size(), g["grads"].size());
  for (size_t i = 0; i < named.size(); ++i) {
    ASSERT_EQ(named[i].first, g["grads"][i][0].get<std::string>());
    ASSERT_TRUE(named[i].second.grad().defined()) << named[i].first;
    expect_close(to_vector<float>(named[i].second.grad()), g["grads"][i][1].get<std::vector<float>>(), 1e-5, 1e-3,
                 "grad of " + named[i].first);
  }
  std::map<std::string, Tensor> state;
  for (auto& [n, t] : model->state_dict()) state[n] = t;
  for (const auto& e : g["buffers_after"]) {
    const std::string name = e[0];
    expect_close(to_vector<float>(state.at(name)), e[1].get<std::vector<float>>(), 1e-5, 1e-4, name);
  }

  model->eval();
  NoGradGuard no_grad;
  expect_close(to_vector<float>((*model)(x)), g["eval_output"].get<std::vector<float>>(), 1e-5, 1e-4, "eval output");
}

struct GradCase {
  std::string name;
  nn::ModulePtr module;
  Shape input;
  Shape output;
};

TEST(Layers, ForwardBackwardGivesGradsOfTheRightShapes) {
  using namespace nn;
  using std::make_shared;
  const std::vector<GradCase> cases = {
      {"Linear", make_shared<Linear>(5, 3), {4, 5}, {4, 3}},
      {"Linear3d", make_shared<Linear>(5, 3), {2, 4, 5}, {2, 4, 3}},
      {"Conv2d", make_shared<Conv2d>(nn::Conv2dOptions(2, 4, 3).stride(2).padding(1)), {2, 2, 5, 5}, {2, 4, 3, 3}},
      {"Conv2dGroups", make_shared<Conv2d>(nn::Conv2dOptions(4, 4, 3).groups(2).bias(false)), {1, 4, 4, 4}, {1, 4, 2, 2}},
      {"BatchNorm1d", make_shared<BatchNorm1d>(3), {4, 3}, {4, 3}},
      {"BatchNorm1dSeq", make_shared<BatchNorm1d>(3), {2, 3, 4}, {2, 3, 4}},
      {"BatchNorm2d", make_shared<BatchNorm2d>(3), {2, 3, 2, 2}, {2, 3, 2, 2}},
      {"LayerNorm", make_shared<LayerNorm>(LayerNormOptions({4})), {3, 4}, {3, 4}},
      {"Dropout", make_shared<Dropout>(0.5), {4, 4}, {4, 4}},
      {"ReLU", make_shared<ReLU>(), {3, 3}, {3, 3}},
      {"GELU", make_shared<GELU>(), {3, 3}, {3, 3}},
      {"GELUTanh", make_shared<GELU>("tanh"), {3, 3}, {3, 3}},
      {"SiLU", make_shared<SiLU>(), {3, 3}, {3, 3}},
      {"Tanh", make_shared<Tanh>(), {3, 3}, {3, 3}},
      {"Sigmoid", make_shared<Sigmoid>(), {3, 3}, {3, 3}},
      {"Softmax", make_shared<Softmax>(1), {2, 3}, {2, 3}},
      {"LogSoftmax", make_shared<LogSoftmax>(1), {2, 3}, {2, 3}},
      {"MaxPool2d", make_shared<MaxPool2d>(2), {1, 2, 4, 4}, {1, 2, 2, 2}},
      {"AvgPool2d", make_shared<AvgPool2d>(AvgPool2dOptions(3).stride(1).padding(1)), {1, 2, 4, 4}, {1, 2, 4, 4}},
      {"AdaptiveAvgPool2d", make_shared<AdaptiveAvgPool2d>(1), {2, 3, 5, 5}, {2, 3, 1, 1}},
      {"Flatten", make_shared<Flatten>(), {2, 3, 2, 2}, {2, 12}},
      {"BasicBlock", make_shared<BasicBlock>(2, 2), {2, 2, 4, 4}, {2, 2, 4, 4}},
      {"BasicBlockDownsample", make_shared<BasicBlock>(2, 4, 2), {2, 2, 4, 4}, {2, 4, 2, 2}},
      {"Sequential", sequential_model(), {2, 3, 6, 6}, {2, 3}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor x = randn(c.input, TensorOptions().requires_grad());
    Tensor y = (*c.module)(x);
    EXPECT_EQ(y.sizes(), c.output);
    mul(y, y).sum().backward();
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().sizes(), x.sizes());
    for (auto& [n, p] : c.module->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << n;
      EXPECT_EQ(p.grad().sizes(), p.sizes()) << n;
      EXPECT_EQ(p.grad().dtype(), p.dtype()) << n;
    }
  }
}

TEST(Layers, EmbeddingLooksUpRowsAndAccumulatesGrads) {
  nn::Embedding emb(5, 3);
  Tensor idx = from_vector(std::vector<int64_t>{1, 4, 1}, {3});
  Tensor y = emb(idx);
  EXPECT_EQ(y.sizes(), (Shape{3, 3}));
  auto w = to_vector<float>(emb.weight), out = to_vector<float>(y);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(out[static_cast<size_t>(j)], w[static_cast<size_t>(3 + j)]);
  y.sum().backward();
  auto g = to_vector<float>(emb.weight.grad());
  EXPECT_EQ(g[3], 2.0f);   // row 1 used twice
  EXPECT_EQ(g[12], 1.0f);  // row 4
  EXPECT_EQ(g[0], 0.0f);
  EXPECT_EQ(F::embedding(idx, emb.weight).sizes(), (Shape{3, 3}));
  EXPECT_THROW(emb(from_vector(std::vector<int64_t>{5}, {1})), Error);
}

TEST(Layers, BatchNormCountsBatchesAndUpdatesRunningStats) {
  nn::BatchNorm1d bn(2);
  Tensor x = from_vector(std::vector<float>{1, 10, 2, 20, 3, 30, 6, 40}, {4, 2});
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::I64);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 0);
  Tensor y = bn(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 1);
  // channel 0: mean 3, unbiased var 14/3; channel 1: mean 25, unbiased var 500/3.
  auto rm = to_vector<float>(bn.running_mean), rv = to_vector<float>(bn.running_var);
  EXPECT_NEAR(rm[0], 0.1 * 3.0, 1e-6);
  EXPECT_NEAR(rm[1], 0.1 * 25.0, 1e-5);
  EXPECT_NEAR(rv[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-5);
  EXPECT_NEAR(rv[1], 0.9 + 0.1 * 500.0 / 3.0, 1e-4);
  // Training output uses the biased batch variance.
  EXPECT_NEAR(to_vector<float>(y)[0], (1.0 - 3.0) / std::sqrt(3.5 + 1e-5), 1e-5);
  bn(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);

  bn.eval();
  Tensor ye = bn(x);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 2);  // eval does not count
  rm = to_vector<float>(bn.running_mean);
  rv = to_vector<float>(bn.running_var);
  EXPECT_NEAR(to_vector<float>(ye)[0], (1.0 - rm[0]) / std::sqrt(rv[0] + 1e-5), 1e-5);
}

TEST(Layers, BatchNormCumulativeMomentumAndNoRunningStats) {
  nn::BatchNorm1d cumulative(nn::BatchNormOptions(1).momentum(std::nullopt));
  cumulative(from_vector(std::vector<float>{1, 3}, {2, 1}));
  cumulative(from_vector(std::vector<float>{5, 7}, {2, 1}));
  EXPECT_NEAR(cumulative.running_mean.item<float>(), 4.0, 1e-6);  // average of the batch means 2 and 6
  EXPECT_NEAR(cumulative.running_var.item<float>(), 2.0, 1e-6);   // average of unbiased vars 2 and 2

  nn::BatchNorm2d stateless(nn::BatchNormOptions(2).track_running_stats(false).affine(false));
  EXPECT_TRUE(stateless.named_buffers().empty());
  EXPECT_TRUE(stateless.parameters().empty());
  stateless.eval();
  Tensor y = stateless(randn({3, 2, 2, 2}));  // batch statistics even in eval
  auto m = to_vector<float>(y.mean({0, 2, 3}));
  EXPECT_NEAR(m[0], 0.0, 1e-5);
  EXPECT_NEAR(m[1], 0.0, 1e-5);
}

TEST(Layers, BatchNormRejectsWrongDims) {
  nn::BatchNorm1d bn1(3);
  nn::BatchNorm2d bn2(3);
  EXPECT_EQ(error_of([&] { bn1(zeros({2, 3, 4, 4})); }),
            "BatchNorm1d: expected 2D [N, C] or 3D [N, C, L] input, got 4D input of shape [2, 3, 4, 4]");
  EXPECT_EQ(error_of([&] { bn2(zeros({2, 3})); }),
            "BatchNorm2d: expected 4D [N, C, H, W] input, got 2D input of shape [2, 3]");
  EXPECT_EQ(error_of([&] { bn2(zeros({2, 4, 2, 2})); }),
            "BatchNorm2d: input [2, 4, 2, 2] has 4 channels (dim 1) but the layer has num_features 3");
  EXPECT_EQ(bn1.num_batches_tracked.item<int64_t>(), 0);
}

TEST(Layers, DropoutOnlyInTraining) {
  nn::Dropout drop(0.5);
  Tensor x = ones({100, 100});
  auto y = to_vector<float>(drop(x));
  size_t zeros_seen = 0;
  for (float v : y) {
    EXPECT_TRUE(v == 0.0f || v == 2.0f) << v;
    zeros_seen += v == 0.0f;
  }
  EXPECT_NEAR(static_cast<double>(zeros_seen) / 10000.0, 0.5, 0.03);
  drop.eval();
  for (float v : to_vector<float>(drop(x))) EXPECT_EQ(v, 1.0f);
  EXPECT_THROW(nn::Dropout(1.5), Error);
  for (float v : to_vector<float>(F::dropout(x, F::DropoutFuncOptions().training(false)))) EXPECT_EQ(v, 1.0f);
}

TEST(Layers, BadInputErrorsNameShapes) {
  nn::Linear fc(784, 512);
  EXPECT_EQ(error_of([&] { fc(zeros({64, 780})); }),
            "linear: input [64, 780] does not match weight [512, 784] (in_features 784)");
  nn::Conv2d conv(1, 32, 3);
  EXPECT_EQ(error_of([&] { conv(zeros({2, 3, 28, 28})); }),
            "conv2d: input [2, 3, 28, 28] does not match weight [32, 1, 3, 3] (expected [N, 1, H, W]: in_channels 1)");
  EXPECT_NE(error_of([&] { conv(zeros({3, 28, 28})); }).find("[3, 28, 28]"), std::string::npos);
  nn::LayerNorm ln(nn::LayerNormOptions({4}));
  EXPECT_EQ(error_of([&] { ln(zeros({2, 5})); }), "layer_norm: input [2, 5] does not end with normalized_shape [4]");
  nn::MaxPool2d pool(2);
  EXPECT_EQ(error_of([&] { pool(zeros({2, 4, 4})); }),
            "max_pool2d: expected 4D [N, C, H, W] input, got 3D input of shape [2, 4, 4]");
  EXPECT_THROW(nn::Conv2d(nn::Conv2dOptions(3, 4, 3).groups(2)), Error);
  EXPECT_THROW(nn::Conv2d(nn::Conv2dOptions(3, 4, 0)), Error);
  EXPECT_THROW(nn::GELU("fast"), Error);
  EXPECT_THROW(nn::MaxPool2d(nn::MaxPool2dOptions(2).padding(2)), Error);
  EXPECT_THROW(nn::CrossEntropyLoss(nn::CrossEntropyLossOptions().label_smoothing(2.0)), Error);
}

TEST(Layers, LossModulesMatchTheOps) {
  Tensor logits = randn({4, 3});
  Tensor target = from_vector(std::vector<int64_t>{0, 2, 1, 2}, {4});
  nn::CrossEntropyLoss ce;
  EXPECT_FLOAT_EQ(ce(logits, target).item<float>(), cross_entropy(logits, target).item<float>());
  nn::CrossEntropyLoss ce_opts(
      nn::CrossEntropyLossOptions().reduction(Reduction::Sum).ignore_index(2).label_smoothing(0.1));
  EXPECT_FLOAT_EQ(ce_opts(logits, target).item<float>(),
                  cross_entropy(logits, target, Reduction::Sum, 2, 0.1).item<float>());
  EXPECT_FLOAT_EQ(F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().ignore_index(2)).item<float>(),
                  cross_entropy(logits, target, Reduction::Mean, 2).item<float>());

  Tensor logp = log_softmax(logits, 1);
  nn::NLLLoss nll;
  EXPECT_FLOAT_EQ(nll(logp, target).item<float>(), ce(logits, target).item<float>());
  nn::NLLLoss nll_none(nn::NLLLossOptions().reduction(Reduction::None));
  EXPECT_EQ(nll_none(logp, target).sizes(), (Shape{4}));

  Tensor a = randn({3, 2}), b = randn({3, 2});
  nn::MSELoss mse;
  nn::MSELoss mse_sum(Reduction::Sum);
  EXPECT_FLOAT_EQ(mse(a, b).item<float>(), mse_loss(a, b).item<float>());
  EXPECT_FLOAT_EQ(mse_sum(a, b).item<float>(), mse_loss(a, b, Reduction::Sum).item<float>());
  EXPECT_FLOAT_EQ(F::mse_loss(a, b, F::MSELossFuncOptions(Reduction::Sum)).item<float>(),
                  mse_sum(a, b).item<float>());
}

TEST(Layers, FunctionalFormsMatchModules) {
  Tensor x = randn({2, 3, 4, 4});
  auto same = [](const Tensor& a, const Tensor& b) { EXPECT_EQ(to_vector<float>(a), to_vector<float>(b)); };
  same(F::max_pool2d(x, F::MaxPool2dFuncOptions(2)), nn::MaxPool2d(2)(x));
  same(F::max_pool2d(x, {2, 2}), nn::MaxPool2d(2)(x));
  same(F::avg_pool2d(x, F::AvgPool2dFuncOptions(2).stride(1)), nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(1))(x));
  same(F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1)), nn::AdaptiveAvgPool2d(1)(x));
  same(F::gelu(x, F::GELUFuncOptions().approximate("tanh")), nn::GELU("tanh")(x));
  same(F::relu(x), nn::ReLU()(x));
  same(F::silu(x), nn::SiLU()(x));
  same(F::flatten(x, F::FlattenFuncOptions()), nn::Flatten()(x));
  EXPECT_EQ(F::flatten(x).sizes(), (Shape{96}));  // torch.flatten: start_dim 0

  nn::Conv2d conv(nn::Conv2dOptions(3, 2, 3).padding(1));
  F::Conv2dFuncOptions co;
  co.padding = {1, 1};
  same(F::conv2d(x, conv.weight, conv.bias, co), conv(x));
  nn::Linear fc(4, 2);
  same(F::linear(x, fc.weight, fc.bias), fc(x));

  nn::BatchNorm2d bn(3);
  bn.eval();
  same(F::batch_norm(x, bn.running_mean, bn.running_var,
                     F::BatchNormFuncOptions().weight(bn.weight).bias(bn.bias).eps(1e-5)),
       bn(x));
  nn::LayerNorm ln(nn::LayerNormOptions({4, 4}));
  same(F::layer_norm(x, F::LayerNormFuncOptions({4, 4}).weight(ln.weight).bias(ln.bias)), ln(x));
}

TEST(Layers, SequentialAccessAndChaining) {
  auto seq = std::make_shared<nn::Sequential>();
  EXPECT_TRUE(seq->is_empty());
  Tensor x = randn({2, 4});
  EXPECT_TRUE((*seq)(x).is_same(x));
  auto fc = seq->push_back(std::make_shared<nn::Linear>(4, 3));
  seq->push_back("act", std::make_shared<nn::Tanh>());
  EXPECT_EQ(seq->size(), 2u);
  EXPECT_EQ(seq->at<nn::Linear>(0).get(), fc.get());
  EXPECT_EQ(seq->named_children()[1].first, "act");
  EXPECT_THROW(seq->at<nn::ReLU>(0), Error);
  EXPECT_THROW((*seq)[2], Error);
  EXPECT_EQ(to_vector<float>((*seq)(x)), to_vector<float>(tanh((*fc)(x))));

  nn::Sequential from_list(std::vector<nn::ModulePtr>{std::make_shared<nn::ReLU>(), std::make_shared<nn::Sigmoid>()});
  EXPECT_EQ(from_list.size(), 2u);

  nn::Sequential with_fn(std::make_shared<nn::Functional>([](const Tensor& t) { return mul(t, 2.0); }),
                         std::make_shared<nn::Functional>(static_cast<Tensor (*)(const Tensor&)>(&relu)));
  EXPECT_EQ(to_vector<float>(with_fn(x)), to_vector<float>(relu(mul(x, 2.0))));
  EXPECT_EQ(with_fn.repr(), "Sequential(\n  (0): Functional()\n  (1): Functional()\n)");
}

TEST(Layers, BasicBlockShortcut) {
  nn::BasicBlock same(4, 4);
  EXPECT_EQ(same.downsample, nullptr);
  nn::BasicBlock wider(4, 8);
  ASSERT_NE(wider.downsample, nullptr);
  EXPECT_EQ(wider.downsample->at<nn::Conv2d>(0)->options.stride()[0], 1);
  nn::BasicBlock strided(4, 4, 2);
  ASSERT_NE(strided.downsample, nullptr);
  EXPECT_EQ(strided.conv1->options.stride()[0], 2);
  EXPECT_FALSE(strided.conv1->bias.defined());
  EXPECT_EQ(strided(randn({1, 4, 6, 6})).sizes(), (Shape{1, 4, 3, 3}));
}

}  // namespace
}  // namespace mantissa
