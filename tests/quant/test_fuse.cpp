// Conv2d + BatchNorm2d (+ ReLU) fusion for QAT: PyTorch's ConvBnReLU2d / ConvBn2d (two training
// steps and an eval forward, tests/golden/convbn_qat.json) against fuse_conv_bn + prepare_qat on
// a model with typed members; gamma = 0 stays finite with the unfused gradients; fold_batch_norm
// against fuse_conv_bn_weights; Linear/Conv + ReLU; state_dict keys; the error cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "nn/container.h"
#include "nn/resnet_block.h"
#include "quant/fuse.h"
#include "quant/qat.h"
#include "support/golden.h"

namespace mantissa {
namespace {

using quant::FakeQuantize;

// The usual user model: typed member layers called directly in forward(), a separate relu.
struct ConvBnNet : nn::Module {
  ConvBnNet(int64_t cin, int64_t cout, int64_t stride, int64_t padding, bool bias, bool use_relu,
            nn::BatchNormOptions bn_options = nn::BatchNormOptions(0))
      : use_relu(use_relu) {
    conv = register_module(
        "conv", std::make_shared<nn::Conv2d>(nn::Conv2dOptions(cin, cout, 3).stride(stride).padding(padding).bias(bias)));
    if (bn_options.num_features() == 0) bn_options = nn::BatchNormOptions(cout);
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(bn_options));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*bn)((*conv)(x));
    return use_relu ? relu(h) : h;
  }
  std::string name() const override { return "ConvBnNet"; }

  std::shared_ptr<nn::Conv2d> conv;
  std::shared_ptr<nn::BatchNorm2d> bn;
  bool use_relu;
};

Tensor floats(const nlohmann::json& v, const Shape& shape) {
  std::vector<float> x;
  for (const auto& e : v) x.push_back(e.get<float>());
  return from_vector(x, shape);
}

Shape shape_of(const nlohmann::json& v) {
  Shape s;
  for (const auto& d : v) s.push_back(d.get<int64_t>());
  return s;
}

std::vector<float> values(const Tensor& t) {
  Tensor c = t.detach().to(DType::F32).contiguous();
  return std::vector<float>(c.data<float>(), c.data<float>() + c.numel());
}

// Largest |a - b| / (1 + |b|) over the elements; NaN and size mismatches count as infinite.
double max_err(const Tensor& a, const Tensor& b) {
  if (a.sizes() != b.sizes()) return INFINITY;
  const std::vector<float> x = values(a), y = values(b);
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double e = std::abs(static_cast<double>(x[i]) - y[i]) / (1.0 + std::abs(static_cast<double>(y[i])));
    if (!(e == e)) return INFINITY;
    m = std::max(m, e);
  }
  return m;
}

bool all_finite(const Tensor& t) {
  for (float v : values(t))
    if (!std::isfinite(v)) return false;
  return true;
}

std::vector<std::string> keys(const nn::NamedTensors& sd) {
  std::vector<std::string> k;
  for (const auto& p : sd) k.push_back(p.first);
  return k;
}

void set_values(Tensor& t, const Tensor& src) {
  NoGradGuard g;
  t.copy_(src);
}

void sgd_step(const std::vector<Tensor>& params, double lr) {
  NoGradGuard g;
  for (const Tensor& p : params) {
    Tensor q = p;
    q.sub_(p.grad(), lr);
  }
}

void run_golden_case(const std::string& case_name) {
  const nlohmann::json& c = testing::golden_json("convbn_qat.json")[case_name];
  const int64_t cin = c["in_channels"], cout = c["out_channels"];
  const bool bias = c["bias"], use_relu = c["relu"];
  // PyTorch's fuse_modules turns the model's ReLU into an Identity; the in-place fusion cannot,
  // so the reference model here has no ReLU of its own (see OuterReluOnlyMasksZeroCodes).
  auto net = std::make_shared<ConvBnNet>(cin, cout, c["stride"], c["padding"], bias, /*use_relu=*/false);
  set_values(net->conv->weight, floats(c["weight"], net->conv->weight.sizes()));
  if (bias) set_values(net->conv->bias, floats(c["conv_bias"], {cout}));
  set_values(net->bn->weight, floats(c["gamma"], {cout}));
  set_values(net->bn->bias, floats(c["beta"], {cout}));
  ASSERT_DOUBLE_EQ(net->bn->options.eps(), c["eps"].get<double>());

  quant::fuse_conv_bn(*net, "conv", "bn", use_relu);
  ASSERT_EQ(quant::prepare_qat(*net), 1);
  auto act_fq = std::dynamic_pointer_cast<FakeQuantize>(net->conv->activation_post_process());
  auto w_fq = std::dynamic_pointer_cast<FakeQuantize>(net->conv->weight_fake_quant());
  ASSERT_TRUE(act_fq && w_fq);
  Tensor pre_fq;  // what the output fake quantizer saw (ConvBnReLU2d's own output in PyTorch)
  act_fq->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor&) { pre_fq = in; });

  std::vector<Tensor> params{net->conv->weight, net->bn->weight, net->bn->bias};
  if (bias) params.push_back(net->conv->bias);
  double e_pre = 0, e_y = 0, e_gx = 0, e_gw = 0, e_gg = 0, e_gb = 0, e_stats = 0;
  int64_t quant_step_flips = 0;
  for (const auto& s : c["steps"]) {
    const Shape out_shape = shape_of(s["output_shape"]);
    Tensor x = floats(s["x"], shape_of(c["input_shape"])).requires_grad_(true);
    net->zero_grad();
    Tensor y = (*net)(x);
    y.backward(floats(s["dy"], out_shape));

    EXPECT_LE(max_err(w_fq->qparams().scale, floats(s["weight_scale"], {cout})), 1e-6) << case_name;
    const double act_scale = s["act_scale"];
    EXPECT_NEAR(act_fq->qparams().scale.item<float>(), act_scale, 1e-5 * act_scale) << case_name;
    EXPECT_EQ(act_fq->qparams().zero_point.item<int32_t>(), s["act_zero_point"].get<int>()) << case_name;
    e_pre = std::max(e_pre, max_err(pre_fq, floats(s["pre_fq"], out_shape)));
    // The fake-quantized output: a value whose float sum lands within rounding of a code
    // boundary may take the neighbouring code (one scale away); count those separately.
    const std::vector<float> ours = values(y), gold = values(floats(s["y"], out_shape));
    ASSERT_EQ(ours.size(), gold.size());
    for (size_t i = 0; i < ours.size(); ++i) {
      const double d = std::abs(static_cast<double>(ours[i]) - gold[i]);
      if (d > 1e-5) {
        ++quant_step_flips;
        EXPECT_LE(d, act_scale * 1.001) << case_name << " y[" << i << "]";
      } else {
        e_y = std::max(e_y, d);
      }
    }
    e_gx = std::max(e_gx, max_err(x.grad(), floats(s["grad_x"], x.sizes())));
    e_gw = std::max(e_gw, max_err(net->conv->weight.grad(), floats(s["grad_weight"], net->conv->weight.sizes())));
    e_gg = std::max(e_gg, max_err(net->bn->weight.grad(), floats(s["grad_gamma"], {cout})));
    e_gb = std::max(e_gb, max_err(net->bn->bias.grad(), floats(s["grad_beta"], {cout})));
    if (bias) e_gb = std::max(e_gb, max_err(net->conv->bias.grad(), floats(s["grad_conv_bias"], {cout})));
    e_stats = std::max(e_stats, max_err(net->bn->running_mean, floats(s["running_mean"], {cout})));
    e_stats = std::max(e_stats, max_err(net->bn->running_var, floats(s["running_var"], {cout})));
    sgd_step(params, c["lr"]);
  }
  net->eval();
  const auto& ev = c["eval"];
  Tensor y = (*net)(floats(ev["x"], shape_of(c["input_shape"])));
  const double e_eval = max_err(pre_fq, floats(ev["pre_fq"], pre_fq.sizes()));
  const double e_eval_y = max_err(y, floats(ev["y"], y.sizes()));
  quant::FoldedConv f = quant::fold_batch_norm(*net->conv, *net->bn);
  const double e_fw = max_err(f.weight, floats(c["fold"]["weight"], net->conv->weight.sizes()));
  const double e_fb = max_err(f.bias, floats(c["fold"]["bias"], {cout}));

  std::printf("[%s] max rel err vs PyTorch: pre-fq out %.3g, fq out %.3g (+%lld one-step code flips), grad x %.3g, "
              "grad w %.3g, grad gamma %.3g, grad beta/bias %.3g, running stats %.3g, eval pre-fq %.3g, eval fq "
              "%.3g, fold w %.3g b %.3g\n",
              case_name.c_str(), e_pre, e_y, static_cast<long long>(quant_step_flips), e_gx, e_gw, e_gg, e_gb,
              e_stats, e_eval, e_eval_y, e_fw, e_fb);
  EXPECT_LE(e_pre, 1e-5);
  EXPECT_LE(e_y, 1e-5);
  EXPECT_LE(quant_step_flips, 2);
  EXPECT_LE(e_gx, 1e-5);
  EXPECT_LE(e_gw, 1e-5);
  EXPECT_LE(e_gg, 1e-5);
  EXPECT_LE(e_gb, 1e-5);
  EXPECT_LE(e_stats, 1e-6);
  EXPECT_LE(e_eval, 1e-5);
  EXPECT_LE(e_eval_y, 2e-2);  // at most a code flip, checked tightly through pre-fq
  EXPECT_LE(e_fw, 1e-6);
  EXPECT_LE(e_fb, 1e-6);
}

TEST(FuseConvBn, ConvBnReLUMatchesPyTorchQAT) { run_golden_case("conv_bn_relu"); }
TEST(FuseConvBn, ConvBnNoBiasStride2MatchesPyTorchQAT) { run_golden_case("conv_bn"); }

// The model's own relu after a relu-fused layer: the forward is unchanged (relu of values >= 0),
// but relu's backward passes gradient only where its output is > 0, so an output that the
// activation fake quantizer rounded to code 0 (a pre-quantization value in (0, scale/2)) gets
// no gradient, where PyTorch's fused model (its ReLU replaced by Identity) passes it through
// the STE. The gradients are exactly those of the golden model with dy masked by (y > 0).
TEST(FuseConvBn, OuterReluOnlyMasksZeroCodes) {
  const nlohmann::json& c = testing::golden_json("convbn_qat.json")["conv_bn_relu"];
  const auto& s = c["steps"][0];
  std::shared_ptr<ConvBnNet> nets[2];
  for (int k = 0; k < 2; ++k) {
    nets[k] = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, /*use_relu=*/k == 1);
    set_values(nets[k]->conv->weight, floats(c["weight"], nets[k]->conv->weight.sizes()));
    set_values(nets[k]->conv->bias, floats(c["conv_bias"], {3}));
    set_values(nets[k]->bn->weight, floats(c["gamma"], {3}));
    set_values(nets[k]->bn->bias, floats(c["beta"], {3}));
    quant::fuse_conv_bn(*nets[k], "conv", "bn", true);
    quant::prepare_qat(*nets[k]);
  }
  Tensor x0 = floats(s["x"], shape_of(c["input_shape"])).requires_grad_(true);
  Tensor x1 = floats(s["x"], shape_of(c["input_shape"])).requires_grad_(true);
  Tensor dy = floats(s["dy"], shape_of(s["output_shape"]));
  Tensor y0 = (*nets[0])(x0), y1 = (*nets[1])(x1);
  EXPECT_EQ(values(y0), values(y1));
  int64_t zero_codes = 0;
  const std::vector<float> yv = values(y0), pre = values(floats(s["pre_fq"], y0.sizes()));
  for (size_t i = 0; i < yv.size(); ++i) zero_codes += yv[i] == 0.0f && pre[i] > 0.0f;
  y0.backward(dy * gt(y0.detach(), 0.0).to(DType::F32));
  y1.backward(dy);
  EXPECT_EQ(values(x0.grad()), values(x1.grad()));
  EXPECT_EQ(values(nets[0]->conv->weight.grad()), values(nets[1]->conv->weight.grad()));
  std::printf("outer relu after a relu-fused conv: %lld of %lld positive outputs rounded to code 0 lose their gradient\n",
              static_cast<long long>(zero_codes), static_cast<long long>(y0.numel()));
}

TEST(FoldBatchNorm, MatchesFuseConvBnWeightsWithZeroGammaAndNoBias) {
  const auto& c = testing::golden_json("convbn_qat.json")["fold_zero_gamma"];
  auto conv = std::make_shared<nn::Conv2d>(nn::Conv2dOptions(2, 3, 3).bias(false));
  auto bn = std::make_shared<nn::BatchNorm2d>(nn::BatchNormOptions(3).eps(c["eps"].get<double>()));
  set_values(conv->weight, floats(c["weight"], conv->weight.sizes()));
  set_values(bn->running_mean, floats(c["running_mean"], {3}));
  set_values(bn->running_var, floats(c["running_var"], {3}));
  set_values(bn->weight, floats(c["gamma"], {3}));
  set_values(bn->bias, floats(c["beta"], {3}));
  quant::FoldedConv f = quant::fold_batch_norm(*conv, *bn);
  EXPECT_EQ(f.weight.dtype(), DType::F32);
  EXPECT_FALSE(f.weight.requires_grad());
  EXPECT_TRUE(all_finite(f.weight) && all_finite(f.bias));
  const double ew = max_err(f.weight, floats(c["fold_weight"], conv->weight.sizes()));
  const double eb = max_err(f.bias, floats(c["fold_bias"], {3}));
  std::printf("fold_batch_norm vs fuse_conv_bn_weights: max rel err w %.3g b %.3g\n", ew, eb);
  EXPECT_LE(ew, 1e-6);
  EXPECT_LE(eb, 1e-6);
  // The gamma = 0 channel: zero weights, bias beta.
  for (float v : values(f.weight.select(0, 1))) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(values(f.bias)[1], values(bn->bias)[1]);
}

// Two copies of one model with the same parameters, one fused.
struct Pair {
  std::shared_ptr<ConvBnNet> plain, fused;
};
Pair make_pair_with_zero_gamma(bool relu) {
  manual_seed(7);
  Pair p{std::make_shared<ConvBnNet>(2, 3, 1, 1, true, relu), std::make_shared<ConvBnNet>(2, 3, 1, 1, true, relu)};
  p.fused->load_state_dict(p.plain->state_dict());
  for (auto& m : {p.plain, p.fused}) {
    set_values(m->bn->weight, from_vector(std::vector<float>{0.8f, 0.0f, 1.3f}, {3}));
    set_values(m->bn->bias, from_vector(std::vector<float>{0.1f, -0.2f, 0.05f}, {3}));
  }
  quant::fuse_conv_bn(*p.fused, "conv", "bn", relu);
  return p;
}

void expect_same_training_step(Pair& p, const char* what) {
  Tensor x = randn({2, 2, 5, 5});
  Tensor dy = randn({2, 3, 5, 5});
  Tensor x1 = x.clone().requires_grad_(true), x2 = x.clone().requires_grad_(true);
  Tensor y1 = (*p.plain)(x1), y2 = (*p.fused)(x2);
  EXPECT_TRUE(all_finite(y2)) << what;
  y1.backward(dy);
  y2.backward(dy);
  EXPECT_LE(max_err(y2, y1), 1e-5) << what;
  EXPECT_LE(max_err(x2.grad(), x1.grad()), 1e-5) << what;
  EXPECT_TRUE(all_finite(p.fused->conv->weight.grad())) << what;
  EXPECT_LE(max_err(p.fused->conv->weight.grad(), p.plain->conv->weight.grad()), 1e-5) << what;
  EXPECT_LE(max_err(p.fused->conv->bias.grad(), p.plain->conv->bias.grad()), 1e-5) << what;
  EXPECT_LE(max_err(p.fused->bn->weight.grad(), p.plain->bn->weight.grad()), 1e-5) << what;
  EXPECT_LE(max_err(p.fused->bn->bias.grad(), p.plain->bn->bias.grad()), 1e-5) << what;
  EXPECT_LE(max_err(p.fused->bn->running_mean, p.plain->bn->running_mean), 1e-6) << what;
  EXPECT_LE(max_err(p.fused->bn->running_var, p.plain->bn->running_var), 1e-6) << what;
  // The gamma = 0 channel outputs beta (relu'd), finite.
  for (float v : values(y2.select(1, 1))) EXPECT_FLOAT_EQ(v, std::max(p.fused->use_relu ? 0.0f : -1e9f, -0.2f));
}

TEST(FuseConvBn, ZeroGammaIsFiniteWithUnfusedGradients) {
  Pair p = make_pair_with_zero_gamma(false);
  expect_same_training_step(p, "float, training");
  Pair q = make_pair_with_zero_gamma(true);
  expect_same_training_step(q, "float + relu, training");
  // Fake quantizers attached but switched off (observers still run): still the float model.
  Pair r = make_pair_with_zero_gamma(true);
  quant::prepare_qat(*r.fused);
  for (const auto& fq : quant::attached_fake_quantizers(*r.fused)) fq->disable_fake_quant();
  expect_same_training_step(r, "qat, fake quant off");
  // And with fake quant on, still finite everywhere.
  Pair s = make_pair_with_zero_gamma(true);
  quant::prepare_qat(*s.fused);
  Tensor x = randn({2, 2, 5, 5}).requires_grad_(true);
  Tensor y = (*s.fused)(x);
  sum(y * randn(y.sizes())).backward();
  EXPECT_TRUE(all_finite(y) && all_finite(x.grad()) && all_finite(s.fused->conv->weight.grad()) &&
              all_finite(s.fused->bn->weight.grad()) && all_finite(s.fused->bn->bias.grad()));
}

TEST(FuseConvBn, EvalForwardEqualsConvWithFoldedWeights) {
  manual_seed(3);
  auto net = std::make_shared<ConvBnNet>(3, 4, 2, 1, true, true);
  quant::fuse_conv_bn(*net, "conv", "bn", true);
  for (int i = 0; i < 3; ++i) (*net)(randn({4, 3, 8, 8}) * 2.0 + 0.5);  // running stats away from 0/1
  net->eval();
  Tensor x = randn({2, 3, 8, 8});
  Tensor y = (*net)(x);
  quant::FoldedConv f = quant::fold_batch_norm(*net->conv, *net->bn);
  Conv2dOptions o;
  o.stride = {2, 2};
  o.padding = {1, 1};
  Tensor ref = relu(conv2d(x, f.weight, f.bias, o));
  const double e = max_err(y, ref);
  std::printf("eval forward vs conv with folded weights: max rel err %.3g\n", e);
  EXPECT_LE(e, 1e-5);
}

TEST(FuseConvBn, FrozenBatchNormUsesRunningStatistics) {
  manual_seed(5);
  auto net = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, false);
  quant::fuse_conv_bn(*net, "conv", "bn");
  quant::prepare_qat(*net);
  quant::QATSchedule sched;
  sched.start_fake_quant_step = 0;
  sched.freeze_bn_step = 1;
  sched.freeze_observer_step = 1;  // so the eval forward below sees the same qparams
  net->train();
  sched.apply(*net, 0);
  (*net)(randn({2, 2, 6, 6}) + 1.0);
  const std::vector<float> mean_after_step0 = values(net->bn->running_mean);
  net->train();
  sched.apply(*net, 1);
  EXPECT_FALSE(net->bn->is_training());
  Tensor x = randn({2, 2, 6, 6});
  Tensor y_frozen = (*net)(x);
  EXPECT_EQ(values(net->bn->running_mean), mean_after_step0);  // no update once frozen
  net->eval();
  EXPECT_EQ(values((*net)(x)), values(y_frozen));  // the frozen training forward is the eval one
}

TEST(FuseConvBn, StateDictKeysUnchangedAndBatchNormIdentityWhileFused) {
  auto plain = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true);
  auto fused = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true);
  const std::vector<std::string> before = keys(fused->state_dict());
  quant::fuse_conv_bn(*fused, "conv", "bn", true);
  EXPECT_EQ(keys(fused->state_dict()), before);
  EXPECT_TRUE(fused->bn->folded_into_conv());
  EXPECT_EQ(fused->conv->fused_batch_norm(), fused->bn);
  EXPECT_TRUE(fused->conv->fused_relu());
  Tensor h = randn({2, 3, 4, 4});
  EXPECT_EQ(values((*fused->bn)(h)), values(h));
  EXPECT_THROW((*fused->bn)(randn({2, 4, 4, 4})), Error);  // still checks its input
  quant::prepare_qat(*plain);
  quant::prepare_qat(*fused);
  EXPECT_EQ(keys(fused->state_dict()), keys(plain->state_dict()));
}

TEST(FuseConvBn, AffineFalseFusesWithUnitGamma) {
  manual_seed(11);
  auto plain = std::make_shared<ConvBnNet>(2, 3, 1, 1, false, false, nn::BatchNormOptions(3).affine(false));
  auto fused = std::make_shared<ConvBnNet>(2, 3, 1, 1, false, false, nn::BatchNormOptions(3).affine(false));
  fused->load_state_dict(plain->state_dict());
  quant::fuse_conv_bn(*fused, "conv", "bn");
  Tensor x = randn({2, 2, 5, 5});
  EXPECT_LE(max_err((*fused)(x), (*plain)(x)), 1e-5);
  fused->eval();
  plain->eval();
  quant::FoldedConv f = quant::fold_batch_norm(*fused->conv, *fused->bn);
  Conv2dOptions o;
  o.padding = {1, 1};
  EXPECT_LE(max_err(conv2d(x, f.weight, f.bias, o), (*plain)(x)), 1e-5);
}

struct LinearNet : nn::Module {
  LinearNet() {
    fc = register_module("fc", std::make_shared<nn::Linear>(6, 5));
  }
  Tensor forward(const Tensor& x) override { return relu((*fc)(x)); }
  std::string name() const override { return "LinearNet"; }
  std::shared_ptr<nn::Linear> fc;
};

TEST(FuseLinearRelu, OutputFakeQuantObservesAfterRelu) {
  manual_seed(2);
  auto net = std::make_shared<LinearNet>();
  quant::fuse_linear_relu(*net, "fc");
  EXPECT_TRUE(net->fc->fused_relu());
  quant::prepare_qat(*net);
  Tensor x = randn({8, 6});
  Tensor y = (*net)(x);
  auto act = std::dynamic_pointer_cast<FakeQuantize>(net->fc->activation_post_process());
  EXPECT_GE(act->observer().min_val().item<float>(), 0.0f);  // saw relu'd values only
  EXPECT_EQ(act->qparams().zero_point.item<int32_t>(), 0);
  // Unfused, the observer sees the negative pre-ReLU outputs too.
  auto plain = std::make_shared<LinearNet>();
  plain->load_state_dict(net->state_dict(), /*strict=*/false);
  quant::prepare_qat(*plain);
  (*plain)(x);
  auto pact = std::dynamic_pointer_cast<FakeQuantize>(plain->fc->activation_post_process());
  EXPECT_LT(pact->observer().min_val().item<float>(), 0.0f);
  for (float v : values(y)) EXPECT_GE(v, 0.0f);
}

TEST(FuseConvRelu, ReluBeforeOutputObserver) {
  auto net = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, false);
  quant::fuse_conv_relu(*net, "conv");
  Tensor x = randn({1, 2, 4, 4});
  Tensor ref = conv2d(x, net->conv->weight, net->conv->bias, [] {
    Conv2dOptions o;
    o.padding = {1, 1};
    return o;
  }());
  EXPECT_EQ(values((*net->conv)(x)), values(relu(ref)));
  EXPECT_THROW(quant::fuse_conv_relu(*net, "conv"), Error);
  // Conv+ReLU then BatchNorm would be the wrong order.
  EXPECT_THROW(quant::fuse_conv_bn(*net, "conv", "bn"), Error);
}

// Nested dotted paths through a Sequential and a torchvision-style block whose forward calls its
// members directly: fused in training (fake quant off) it computes what the unfused block does.
TEST(FuseConvBn, ResNetBlockByDottedPaths) {
  manual_seed(21);
  auto make = [] { return std::make_shared<nn::Sequential>(std::make_shared<nn::BasicBlock>(3, 4, 2)); };
  auto plain = make(), fused = make();
  fused->load_state_dict(plain->state_dict());
  const std::vector<std::string> before = keys(fused->state_dict());
  quant::fuse_conv_bn(*fused, "0.conv1", "0.bn1", /*relu=*/true);
  quant::fuse_conv_bn(*fused, "0.conv2", "0.bn2");  // its relu comes after the shortcut add
  quant::fuse_conv_bn(*fused, "0.downsample.0", "0.downsample.1");
  EXPECT_EQ(keys(fused->state_dict()), before);
  quant::prepare_qat(*fused);
  for (const auto& fq : quant::attached_fake_quantizers(*fused)) fq->disable_fake_quant();
  Tensor x = randn({2, 3, 6, 6});
  Tensor x1 = x.clone().requires_grad_(true), x2 = x.clone().requires_grad_(true);
  Tensor y1 = (*plain)(x1), y2 = (*fused)(x2);
  Tensor dy = randn(y1.sizes());
  y1.backward(dy);
  y2.backward(dy);
  EXPECT_LE(max_err(y2, y1), 1e-5);
  EXPECT_LE(max_err(x2.grad(), x1.grad()), 1e-5);
  const nn::NamedTensors p1 = plain->named_parameters(), p2 = fused->named_parameters();
  ASSERT_EQ(p1.size(), p2.size());
  for (size_t i = 0; i < p1.size(); ++i) {
    EXPECT_LE(max_err(p2[i].second.grad(), p1[i].second.grad()), 1e-5) << p1[i].first;
  }
  // Running statistics by name (the fused model's buffers also hold its observers' state).
  int64_t stats = 0;
  for (const auto& [name, b1] : plain->named_buffers()) {
    if (name.find("running") == std::string::npos) continue;
    for (const auto& [name2, b2] : fused->named_buffers()) {
      if (name2 != name) continue;
      EXPECT_LE(max_err(b2, b1), 1e-6) << name;
      ++stats;
    }
  }
  EXPECT_EQ(stats, 6);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FuseConvBn, ErrorCases) {
  auto net = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true);
  auto has = [](const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; };
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*net, "conv2", "bn"); }), "no submodule 'conv2'"));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*net, "conv.x", "bn"); }), "no submodule 'conv.x'"));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*net, "", "bn"); }), "empty module path"));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*net, "bn", "conv"); }), "'bn' is a BatchNorm2d, expected a Conv2d"));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_linear_relu(*net, "conv"); }), "'conv' is a Conv2d, expected a Linear"));

  auto mismatch = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true, nn::BatchNormOptions(4));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*mismatch, "conv", "bn"); }), "num_features 4"));
  auto no_stats =
      std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true, nn::BatchNormOptions(3).track_running_stats(false));
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*no_stats, "conv", "bn"); }), "track_running_stats=false"));
  EXPECT_THROW(quant::fold_batch_norm(*no_stats->conv, *no_stats->bn), Error);

  auto prepared = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true);
  quant::prepare_qat(*prepared);
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*prepared, "conv", "bn"); }), "before quant::prepare_qat"));

  quant::fuse_conv_bn(*net, "conv", "bn");
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*net, "conv", "bn"); }), "already fused with a BatchNorm2d"));
  // The same BatchNorm into a second conv.
  auto other = std::make_shared<ConvBnNet>(2, 3, 1, 1, true, true);
  other->replace_module("bn", net->bn);
  EXPECT_TRUE(has(error_of([&] { quant::fuse_conv_bn(*other, "conv", "bn"); }), "already fused into a conv"));
  EXPECT_THROW(net->conv->set_fused_batch_norm(nullptr), Error);
}

}  // namespace
}  // namespace mantissa

