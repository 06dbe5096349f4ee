// Static PTQ (prepare -> calibrate -> convert) and QAT -> convert, in place, on models whose
// forward() calls typed member layers and functional ops: the int8 model runs on quantized tensors
// end to end, matches the fake-quant model it came from within one output step, holds int8 state
// in its state_dict (saved and loaded through safetensors), and refuses what it cannot do.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <filesystem>
#include <memory>
#include <string>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"
#include "core/quantized.h"
#include "nn/nn.h"
#include "nn/safetensors.h"
#include "optim/sgd.h"
#include "quant/convert.h"
#include "quant/fuse.h"
#include "quant/histogram_observer.h"
#include "quant/learnable_fake_quantize.h"
#include "quant/qtensor.h"
#include "quant/quantized_modules.h"
#include "quant/stubs.h"

namespace mantissa {
namespace {

using quant::QDType;
using quant::QScheme;
using quant::QSpec;

// A small CNN written as users write one: typed members, functional relu / max_pool2d / flatten,
// dropout, and the PyTorch stubs at the edges.
class Net : public nn::Module {
 public:
  explicit Net(bool with_bn = false) {
    quant = register_module("quant", std::make_shared<quant::QuantStub>());
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(1, 4, 3));
    if (with_bn) bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(4));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(4, 8, 3));
    drop = register_module("drop", std::make_shared<nn::Dropout>(0.25));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(8 * 4 * 4, 16));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 10));
    dequant = register_module("dequant", std::make_shared<quant::DeQuantStub>());
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*quant)(x);
    h = (*conv1)(h);
    if (bn1) h = (*bn1)(h);
    h = relu(h);
    h = relu((*conv2)(h));
    h = max_pool2d(h, {2, 2});
    h = (*drop)(h);
    h = flatten(h, 1);
    h = relu((*fc1)(h));
    return (*dequant)((*fc2)(h));
  }
  std::shared_ptr<quant::QuantStub> quant;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<quant::DeQuantStub> dequant;
};

bool bit_equal(const Tensor& a, const Tensor& b) {
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.sizes() == y.sizes() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

Tensor batch(int64_t n, uint64_t seed) {
  default_generator().manual_seed(seed);
  return randn({n, 1, 12, 12});
}

void fuse_relus(Net& net) {
  quant::fuse_conv_relu(net, "conv2");
  quant::fuse_linear_relu(net, "fc1");
  if (net.bn1) quant::fuse_conv_bn(net, "conv1", "bn1", true);
  else quant::fuse_conv_relu(net, "conv1");
}

// Freezes every fake quantizer and turns fake quantization on: the model is then the fake-quant
// simulation of the int8 model convert will build from it.
void freeze_and_fake_quantize(nn::Module& m) {
  for (const auto& fq : quant::attached_fake_quantizers(m)) {
    fq->disable_observer();
    fq->enable_fake_quant();
  }
}

// The fraction of elements of int8 output y (dequantized) equal to the fake-quant reference, and
// the largest difference in units of the output scale.
struct Agreement {
  double exact = 0, max_steps = 0;
};
Agreement agreement(const Tensor& ref, const Tensor& y, float step) {
  Tensor a = ref.contiguous(), b = y.contiguous();
  Agreement r;
  int64_t same = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]) / step;
    same += d < 1e-3;
    r.max_steps = std::max(r.max_steps, d);
  }
  r.exact = static_cast<double>(same) / static_cast<double>(a.numel());
  return r;
}

float output_step(Net& net) {
  auto q = std::dynamic_pointer_cast<quant::QuantizedLinear>(net.fc2->quantized());
  return q->output_qp.scale.item<float>();
}

TEST(Convert, StaticPtqMatchesFakeQuantModel) {
  default_generator().manual_seed(3);
  auto net = std::make_shared<Net>();
  net->eval();
  fuse_relus(*net);
  EXPECT_EQ(quant::prepare(*net), 5);  // quant stub + 4 layers
  Tensor before = (*net)(batch(8, 100));
  {
    NoGradGuard ng;
    for (uint64_t i = 0; i < 4; ++i) (*net)(batch(16, 10 + i));
  }
  // Observers alone do not change the float model's output.
  Tensor x = batch(32, 7);
  freeze_and_fake_quantize(*net);
  Tensor ref = (*net)(x);
  EXPECT_EQ(quant::convert(*net), 5);
  EXPECT_FALSE(net->is_training());
  Tensor y = (*net)(x);
  ASSERT_FALSE(y.is_quantized());
  ASSERT_EQ(y.sizes(), ref.sizes());
  const Agreement a = agreement(ref, y, output_step(*net));
  std::printf("int8 vs fake quant: %.4f%% equal, max %.3f output steps\n", 100 * a.exact, a.max_steps);
  EXPECT_GE(a.exact, 0.95) << "max " << a.max_steps << " steps";
  EXPECT_LE(a.max_steps, 1.0 + 1e-4);
  (void)before;
}

TEST(Convert, StateDictHoldsInt8AndRoundTripsThroughSafetensors) {
  default_generator().manual_seed(4);
  auto net = std::make_shared<Net>();
  net->eval();
  quant::prepare(*net);
  {
    NoGradGuard ng;
    for (uint64_t i = 0; i < 3; ++i) (*net)(batch(16, 20 + i));
  }
  const int64_t float_bytes = 4 * (4 * 9 + 4 + 8 * 4 * 9 + 8 + 128 * 16 + 16 + 16 * 10 + 10);
  quant::convert(*net);
  const nn::NamedTensors sd = net->state_dict();
  std::map<std::string, Tensor> by_name(sd.begin(), sd.end());
  ASSERT_TRUE(by_name.count("fc1.quantized.weight"));
  EXPECT_EQ(by_name["fc1.quantized.weight"].dtype(), DType::I8);
  EXPECT_EQ(by_name["fc1.quantized.weight_scale"].dtype(), DType::F32);
  EXPECT_EQ(by_name["fc1.quantized.bias"].dtype(), DType::F32);
  EXPECT_EQ(by_name["conv1.quantized.scale"].dim(), 0);
  EXPECT_EQ(by_name["conv1.quantized.zero_point"].dtype(), DType::I32);
  EXPECT_TRUE(by_name.count("quant.scale"));
  EXPECT_FALSE(by_name.count("fc1.weight"));
  for (const auto& [k, t] : sd) EXPECT_EQ(k.find("activation_post_process"), std::string::npos) << k;
  EXPECT_LT(quant::state_dict_bytes(*net), float_bytes / 2);

  const std::string path = (std::filesystem::temp_directory_path() / "mantissa_test_convert.safetensors").string();
  safetensors::save(path, sd);
  Tensor x = batch(8, 9);
  Tensor y = (*net)(x);

  // A fresh model with other weights, prepared, calibrated on other data and converted, then
  // loaded: same outputs bit for bit.
  default_generator().manual_seed(99);
  auto other = std::make_shared<Net>();
  other->eval();
  quant::prepare(*other);
  {
    NoGradGuard ng;
    (*other)(batch(4, 55));
  }
  quant::convert(*other);
  Tensor before = (*other)(x);
  other->load_state_dict(safetensors::load(path).tensors);
  Tensor z = (*other)(x);
  std::remove(path.c_str());
  EXPECT_TRUE(bit_equal(y, z));
  EXPECT_FALSE(bit_equal(y, before));
}

TEST(Convert, QatThenConvertMatchesFakeQuantModel) {
  default_generator().manual_seed(5);
  auto net = std::make_shared<Net>(/*with_bn=*/true);
  fuse_relus(*net);
  EXPECT_EQ(quant::prepare_qat(*net), 5);
  optim::SGD opt(net->parameters(), optim::SGDOptions(0.05).momentum(0.9));
  quant::QATSchedule sched;
  sched.freeze_observer_step = 6;
  sched.freeze_bn_step = 4;
  std::vector<int64_t> lv(16);
  for (int64_t i = 0; i < 16; ++i) lv[static_cast<size_t>(i)] = (i * 7) % 10;
  Tensor labels = from_vector(lv, {16});
  for (int64_t step = 0; step < 8; ++step) {
    net->train();
    sched.apply(*net, step);
    opt.zero_grad();
    Tensor loss = cross_entropy((*net)(batch(16, 200 + static_cast<uint64_t>(step))), labels);
    ASSERT_TRUE(std::isfinite(loss.item<float>()));
    loss.backward();
    opt.step();
  }
  net->eval();
  freeze_and_fake_quantize(*net);
  Tensor x = batch(32, 8);
  Tensor ref;
  {
    NoGradGuard ng;
    ref = (*net)(x);
  }
  EXPECT_EQ(quant::convert(*net), 5);
  const nn::NamedTensors sd = net->state_dict();
  for (const auto& [k, t] : sd) EXPECT_EQ(k.rfind("bn1.", 0), std::string::npos) << k;  // folded away
  Tensor y = (*net)(x);
  const Agreement a = agreement(ref, y, output_step(*net));
  std::printf("int8 vs fake quant: %.4f%% equal, max %.3f output steps\n", 100 * a.exact, a.max_steps);
  EXPECT_GE(a.exact, 0.95) << "max " << a.max_steps << " steps";
  EXPECT_LE(a.max_steps, 1.0 + 1e-4);
}

TEST(Convert, Int4WeightsKeepTheirCodes) {
  default_generator().manual_seed(11);
  auto net = std::make_shared<Net>();
  quant::QConfig qc = quant::default_qat_qconfig();
  qc.weight = [] {
    QSpec s;
    s.dtype = QDType::Int4;
    s.scheme = QScheme::Symmetric;
    return std::make_shared<quant::FakeQuantize>(quant::make_moving_average_per_channel_observer(s, 0));
  };
  quant::prepare_qat(*net, qc);
  net->eval();
  {
    NoGradGuard ng;
    (*net)(batch(16, 1));
  }
  quant::convert(*net);
  auto q = std::dynamic_pointer_cast<quant::QuantizedLinear>(net->fc1->quantized());
  ASSERT_TRUE(q);
  Tensor c = q->weight_codes.contiguous();
  int lo = 0, hi = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    lo = std::min<int>(lo, c.data<int8_t>()[i]);
    hi = std::max<int>(hi, c.data<int8_t>()[i]);
  }
  EXPECT_GE(lo, -8);
  EXPECT_LE(hi, 7);
  EXPECT_TRUE(std::isfinite((*net)(batch(4, 2)).sum().item<float>()));
}

TEST(Convert, LearnableFakeQuantizeFollowsTheSchedule) {
  auto lsq = [] {
    QSpec s;
    s.dtype = QDType::UInt8;
    return std::make_shared<quant::LearnableFakeQuantize>(std::make_shared<quant::MovingAverageMinMaxObserver>(s));
  };
  quant::QConfig qc = quant::default_qat_qconfig();
  qc.activation = lsq;
  auto net = std::make_shared<Net>();
  quant::prepare_qat(*net, qc);
  quant::QATSchedule sched;
  sched.start_fake_quant_step = 2;
  sched.freeze_observer_step = 3;
  auto fqs = quant::attached_fake_quantizers(*net);
  int learnable = 0;
  for (int64_t step : {0, 2, 3}) {
    sched.apply(*net, step);
    (*net)(batch(4, static_cast<uint64_t>(step)));
    for (const auto& fq : fqs) {
      EXPECT_EQ(fq->fake_quant_enabled(), step >= 2);
      EXPECT_EQ(fq->observer_enabled(), step < 3);
      if (auto* l = dynamic_cast<quant::LearnableFakeQuantize*>(fq.get())) {
        EXPECT_EQ(l->learning_enabled(), step >= 3);
        learnable += step == 3;
      }
    }
  }
  EXPECT_EQ(learnable, 5);  // the stub and the four layer outputs
  // A learned output scale is what convert uses.
  net->train();
  default_generator().manual_seed(1);
  sched.apply(*net, 3);
  (*net)(batch(4, 3)).sum().backward();
  auto l = std::dynamic_pointer_cast<quant::LearnableFakeQuantize>(net->fc2->activation_post_process());
  ASSERT_TRUE(l->scale().grad().defined());
  const float learned = l->scale().item<float>();
  quant::convert(*net);
  EXPECT_FLOAT_EQ(output_step(*net), learned);
}

// A residual block: the add of two activations goes through quant::FloatFunctional, so the
// converted model adds quantized tensors into the add's own observed qparams.
class ResidualNet : public nn::Module {
 public:
  ResidualNet() {
    quant = register_module("quant", std::make_shared<quant::QuantStub>());
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(12, 12));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(12, 12));
    skip = register_module("skip", std::make_shared<quant::FloatFunctional>());
    head = register_module("head", std::make_shared<nn::Linear>(12, 5));
    dequant = register_module("dequant", std::make_shared<quant::DeQuantStub>());
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*quant)(x);
    Tensor r = (*fc2)(relu((*fc1)(h)));
    return (*dequant)((*head)(skip->add_relu(h, r)));
  }
  std::shared_ptr<quant::QuantStub> quant;
  std::shared_ptr<nn::Linear> fc1, fc2, head;
  std::shared_ptr<quant::FloatFunctional> skip;
  std::shared_ptr<quant::DeQuantStub> dequant;
};

TEST(Convert, QuantizedAddThroughFloatFunctional) {
  default_generator().manual_seed(21);
  auto net = std::make_shared<ResidualNet>();
  net->eval();
  Tensor x = randn({64, 12});
  Tensor float_out = (*net)(x);
  EXPECT_EQ(quant::prepare(*net), 5);  // stub, three layers, the add
  EXPECT_TRUE(bit_equal((*net)(x), float_out));  // observing changes nothing
  {
    NoGradGuard ng;
    for (uint64_t i = 0; i < 4; ++i) {
      default_generator().manual_seed(30 + i);
      (*net)(randn({32, 12}));
    }
  }
  freeze_and_fake_quantize(*net);
  Tensor ref = (*net)(x);
  EXPECT_EQ(quant::convert(*net), 5);
  const nn::NamedTensors sd = net->state_dict();
  std::map<std::string, Tensor> by_name(sd.begin(), sd.end());
  EXPECT_TRUE(by_name.count("skip.scale") && by_name.count("skip.zero_point"));
  Tensor y = (*net)(x);
  auto q = std::dynamic_pointer_cast<quant::QuantizedLinear>(net->head->quantized());
  const Agreement a = agreement(ref, y, q->output_qp.scale.item<float>());
  std::printf("int8 residual vs fake quant: %.4f%% equal, max %.3f output steps\n", 100 * a.exact, a.max_steps);
  EXPECT_GE(a.exact, 0.95);
  EXPECT_LE(a.max_steps, 1.0 + 1e-4);
  // Converted, the add takes quantized tensors only.
  EXPECT_THROW(net->skip->add(x, x), Error);
  EXPECT_THROW((*net->skip)(x), Error);
}

// The converted model on a GPU gives the CPU's codes: every int8 kernel is exact integer
// arithmetic plus one F32 rounding, the same on both devices.
TEST(ConvertCuda, Int8ModelMatchesCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  default_generator().manual_seed(13);
  auto net = std::make_shared<Net>();
  net->eval();
  fuse_relus(*net);
  quant::prepare(*net);
  {
    NoGradGuard ng;
    for (uint64_t i = 0; i < 3; ++i) (*net)(batch(16, 40 + i));
  }
  quant::convert(*net);
  Tensor x = batch(32, 77);
  Tensor cpu_out = (*net)(x);
  net->to(Device("cuda"));
  Tensor gpu_out = (*net)(x.to(Device("cuda"))).to(Device());
  EXPECT_TRUE(bit_equal(cpu_out, gpu_out));
}

TEST(Convert, Errors) {
  {
    // No calibration: the output observers saw nothing.
    auto net = std::make_shared<Net>();
    quant::prepare(*net);
    EXPECT_THROW(quant::convert(*net), Error);
  }
  {
    // A converted layer fed a float tensor says where the QuantStub goes.
    auto lin = std::make_shared<nn::Linear>(4, 3);
    quant::prepare(*lin);
    lin->eval();
    (*lin)(randn({2, 4}));
    quant::convert(*lin);
    try {
      (*lin)(randn({2, 4}));
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("QuantStub"), std::string::npos) << e.what();
    }
    Tensor q = quant::quantize_per_tensor(randn({2, 4}), 0.05f, 128, QDType::UInt8);
    EXPECT_TRUE((*lin)(q).is_quantized());
  }
  {
    // Affine weights cannot go to the int8 kernels (zero point 0 only).
    auto lin = std::make_shared<nn::Linear>(4, 3);
    QSpec affine;
    affine.dtype = QDType::Int8;
    quant::prepare(*lin, quant::make_qconfig([affine] { return std::make_shared<quant::MinMaxObserver>(affine); },
                                             [] {
                                               QSpec a;
                                               a.dtype = QDType::UInt8;
                                               return std::make_shared<quant::MinMaxObserver>(a);
                                             }));
    (*lin)(randn({2, 4}) + 3.0);
    EXPECT_THROW(quant::convert(*lin), Error);
  }
  {
    // Converting twice changes nothing; float ops refuse the quantized activations.
    auto net = std::make_shared<Net>();
    net->eval();
    quant::prepare(*net);
    (*net)(batch(4, 1));
    EXPECT_EQ(quant::convert(*net), 5);
    EXPECT_EQ(quant::convert(*net), 0);
    Tensor q = (*net->quant)(batch(2, 2));
    EXPECT_THROW(sigmoid(q), Error);
  }
}

}  // namespace
}  // namespace mantissa
