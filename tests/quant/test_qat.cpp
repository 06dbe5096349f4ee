// Quantization-aware training in place: prepare_qat on the MNIST CNN reproduces a manual
// observe -> fake-quantize computation, gradients reach the float weights through the STE, float
// layers are untouched when nothing is attached, the schedule's switches, and F32 under autocast.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "examples/common/mnist_nets.h"
#include "quant/observer.h"
#include "quant/qat.h"

namespace mantissa {
namespace {

using quant::FakeQuantize;
using quant::QDType;
using quant::QScheme;
using quant::QSpec;

bool bit_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.sizes() == y.sizes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

std::vector<std::string> keys(const nn::NamedTensors& sd) {
  std::vector<std::string> k;
  for (const auto& p : sd) k.push_back(p.first);
  return k;
}

bool has_key(const nn::NamedTensors& sd, const std::string& key) {
  return std::any_of(sd.begin(), sd.end(), [&](const auto& p) { return p.first == key; });
}

// The manual computation for one layer after one observed batch (fresh observers see the same
// tensors the attached ones saw): per-channel symmetric int8 weight qparams, fake-quantized
// weight, the float op, then per-tensor uint8 affine output qparams and fake quantization.
template <typename Op>
Tensor manual_layer(const Tensor& weight, const Op& op) {
  QSpec wspec;
  wspec.scheme = QScheme::Symmetric;
  auto wobs = quant::make_moving_average_per_channel_observer(wspec, 0);
  (*wobs)(weight);
  quant::QParams wq = wobs->calculate_qparams();
  Tensor w = fake_quantize_per_channel_affine(weight, wq.scale, wq.zero_point, 0, -128, 127);
  Tensor y = op(w);
  QSpec aspec;
  aspec.dtype = QDType::UInt8;
  quant::MovingAverageMinMaxObserver aobs(aspec);
  aobs(y);
  quant::QParams aq = aobs.calculate_qparams();
  return fake_quantize_per_tensor_affine(y, aq.scale, aq.zero_point, 0, 255);
}

TEST(Qat, PreparedMnistCnnMatchesManualFakeQuantization) {
  manual_seed(0);
  auto model = std::make_shared<examples::MnistCnn>();
  EXPECT_EQ(quant::prepare_qat(*model), 5);  // four layers and the input QuantStub
  EXPECT_EQ(quant::prepare_qat(*model), 0);  // idempotent: already prepared layers are left alone
  EXPECT_EQ(quant::attached_fake_quantizers(*model).size(), 9u);
  model->eval();  // dropout off; fake quantizers keep observing (their switches, not the mode, decide)

  Tensor conv1_in, fc2_in;
  model->conv1->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor&) { conv1_in = in; });
  model->fc2->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor&) { fc2_in = in; });
  Tensor x = randn({2, 1, 28, 28});
  Tensor out = (*model)(x);

  Tensor expect_fc2 =
      manual_layer(model->fc2->weight, [&](const Tensor& w) { return linear(fc2_in, w, model->fc2->bias); });
  EXPECT_TRUE(bit_equal(out, expect_fc2));
  // And the fake quantization actually changed something: the float layer differs.
  EXPECT_FALSE(bit_equal(out, linear(fc2_in, model->fc2->weight, model->fc2->bias)));

  Conv2dOptions copt;  // conv1: stride 1, no padding
  Tensor expect_conv1 = manual_layer(model->conv1->weight,
                                     [&](const Tensor& w) { return conv2d(conv1_in, w, model->conv1->bias, copt); });
  Tensor got_conv1 = (*model->conv1)(conv1_in);  // second batch: same data, the moving average stays put
  EXPECT_TRUE(bit_equal(got_conv1, expect_conv1));

  // Observer state joins state_dict under PyTorch's names.
  nn::NamedTensors sd = model->state_dict();
  for (const char* k : {"fc2.weight_fake_quant.scale", "fc2.weight_fake_quant.zero_point",
                        "fc2.weight_fake_quant.activation_post_process.min_val", "fc2.activation_post_process.scale",
                        "conv1.activation_post_process.zero_point"}) {
    EXPECT_TRUE(has_key(sd, k)) << k;
  }
  auto wfq = std::dynamic_pointer_cast<FakeQuantize>(model->fc2->weight_fake_quant());
  ASSERT_NE(wfq, nullptr);
  EXPECT_EQ(wfq->qparams().scale.sizes(), (Shape{10}));
}

TEST(Qat, GradientsReachFloatWeightsThroughTheSte) {
  manual_seed(1);
  auto net = std::make_shared<nn::Linear>(6, 4);
  quant::prepare_qat(*net);
  Tensor x = randn({5, 6});
  sum((*net)(x)).backward();
  ASSERT_TRUE(net->weight.grad().defined());
  EXPECT_GT(net->weight.grad().abs().sum().item<float>(), 0.0f);

  // Expected, by the chain rule through both straight-through estimators: dL/dy is the output
  // STE's mask m_a (1 where y's code fell in [0, 255]), dL/dW_q = m_a^T x, and the weight STE
  // passes it where W's code fell in [-128, 127]. The masks come from the op on leaf copies.
  const quant::QParams wq = std::dynamic_pointer_cast<FakeQuantize>(net->weight_fake_quant())->qparams();
  const quant::QParams aq = std::dynamic_pointer_cast<FakeQuantize>(net->activation_post_process())->qparams();
  Tensor w_leaf = net->weight.detach().clone();
  w_leaf.requires_grad_(true);
  Tensor w_q = fake_quantize_per_channel_affine(w_leaf, wq.scale, wq.zero_point, 0, -128, 127);
  sum(w_q).backward();
  Tensor mask_w = w_leaf.grad();
  Tensor y_leaf;
  {
    NoGradGuard ng;
    y_leaf = linear(x, w_q.detach(), net->bias.detach()).clone();
  }
  y_leaf.requires_grad_(true);
  sum(fake_quantize_per_tensor_affine(y_leaf, aq.scale, aq.zero_point, 0, 255)).backward();
  Tensor mask_a = y_leaf.grad();  // [5, 4]
  Tensor expect_w = mask_w * matmul(mask_a.transpose(0, 1), x);
  Tensor expect_b = sum(mask_a, {0});
  EXPECT_LT(max(abs(net->weight.grad() - expect_w)).item<float>(), 1e-5f);
  EXPECT_LT(max(abs(net->bias.grad() - expect_b)).item<float>(), 1e-6f);
}

TEST(Qat, FloatModelIsUnchangedWithoutFakeQuantizers) {
  manual_seed(2);
  auto model = std::make_shared<examples::MnistCnn>();
  const std::vector<std::string> expected = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                             "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias"};
  EXPECT_EQ(keys(model->state_dict()), expected);
  EXPECT_EQ(model->fc2->weight_fake_quant(), nullptr);
  EXPECT_EQ(model->conv1->activation_post_process(), nullptr);
  Tensor h = randn({3, 128});
  EXPECT_TRUE(bit_equal((*model->fc2)(h), linear(h, model->fc2->weight, model->fc2->bias)));
  // Null is refused (an attached quantizer is switched off, not removed).
  EXPECT_THROW(model->fc2->set_weight_fake_quant(nullptr), Error);
  // Attaching registers the child; swapping keeps a single child of that name.
  model->fc2->set_activation_post_process(quant::default_qat_qconfig().activation());
  model->fc2->set_activation_post_process(quant::default_qat_qconfig().activation());
  EXPECT_EQ(model->fc2->named_children().size(), 1u);
  EXPECT_EQ(model->fc2->named_children()[0].first, "activation_post_process");
}

TEST(Qat, ScheduleSwitchesAtItsSteps) {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>();
  auto fc = std::make_shared<nn::Linear>(4, 3);
  auto bn = std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(3));
  net->push_back(fc);
  net->push_back(bn);
  quant::prepare_qat(*net);
  auto afq = std::dynamic_pointer_cast<FakeQuantize>(fc->activation_post_process());
  ASSERT_NE(afq, nullptr);
  quant::QATSchedule sched{/*start_fake_quant_step=*/2, /*freeze_observer_step=*/4, /*freeze_bn_step=*/3};
  net->train();
  Tensor x = randn({8, 4});
  for (int64_t step = 0; step < 6; ++step) {
    sched.apply(*net, step);
    for (const auto& fq : quant::attached_fake_quantizers(*net)) {
      EXPECT_EQ(fq->fake_quant_enabled(), step >= 2) << step;
      EXPECT_EQ(fq->observer_enabled(), step < 4) << step;
    }
    EXPECT_EQ(bn->is_training(), step < 3) << step;
    EXPECT_TRUE(fc->is_training()) << step;
    Tensor y = (*fc)(x);
    // Float until fake quant starts, fake-quantized after.
    EXPECT_EQ(bit_equal(y, linear(x, fc->weight, fc->bias)), step < 2) << step;
  }
  // Observers frozen: new data leaves the range (and so the qparams) where it was.
  Tensor before = afq->observer().max_val().clone();
  (*fc)(x * 10.0);
  EXPECT_TRUE(bit_equal(afq->observer().max_val(), before));
  // Unfrozen again in eval: BatchNorm follows the model's mode.
  net->eval();
  sched.apply(*net, 0);
  EXPECT_FALSE(bn->is_training());
}

TEST(Qat, FakeQuantRunsInF32UnderAutocast) {
  manual_seed(4);
  auto model = std::make_shared<examples::MnistMlp>();
  quant::prepare_qat(*model);
  DType wq_dtype = DType::F64, lin_in_dtype = DType::F64;
  model->fc2->weight_fake_quant()->register_forward_hook(
      [&](nn::Module&, const Tensor&, const Tensor& out) { wq_dtype = out.dtype(); });
  model->fc3->register_forward_hook([&](nn::Module&, const Tensor& in, const Tensor&) { lin_in_dtype = in.dtype(); });
  Tensor out;
  {
    amp::AutocastGuard guard(DeviceType::CPU, DType::BF16);
    out = (*model)(randn({2, 1, 28, 28}));
  }
  EXPECT_EQ(wq_dtype, DType::F32);      // weight fake quant in F32 (the BF16 cast happens in linear after it)
  EXPECT_EQ(out.dtype(), DType::F32);   // the output fake quant turns the BF16 linear output into F32
  EXPECT_EQ(lin_in_dtype, DType::F32);  // relu of an F32 fake-quantized activation stays F32
  auto afq = std::dynamic_pointer_cast<FakeQuantize>(model->fc3->activation_post_process());
  EXPECT_EQ(afq->qparams().scale.dtype(), DType::F32);
}

}  // namespace
}  // namespace mantissa
