// Precision policies: every name parses to the settings of DESIGN.md's table and describes
// itself; unknown names list the valid ones; prepare_model converts all but the norm layers;
// make_optimizer builds the right optimizer; and a few steps of every policy train a small
// model (loss finite and falling, BatchNorm F32 throughout).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/policy.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace mantissa::amp {
namespace {

using kernels::UpdateRounding;

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Precision, EveryNameParsesToItsTableRow) {
  struct Row {
    const char* name;
    std::optional<DType> autocast;
    bool scaler, masters;
    DType params;
    std::optional<UpdateRounding> rounding;
  };
  const std::vector<Row> rows = {
      {"fp32", std::nullopt, false, false, DType::F32, std::nullopt},
      {"fp16", DType::F16, true, false, DType::F32, std::nullopt},
      {"bf16", DType::BF16, false, false, DType::F32, std::nullopt},
      {"fp16-noscale", DType::F16, false, false, DType::F32, std::nullopt},
      {"fp16-master", DType::F16, true, true, DType::F16, std::nullopt},
      {"bf16-master", DType::BF16, false, true, DType::BF16, std::nullopt},
      {"bf16-pure", DType::BF16, false, false, DType::BF16, UpdateRounding::Nearest},
      {"bf16-pure-sr", DType::BF16, false, false, DType::BF16, UpdateRounding::Stochastic},
      {"bf16-pure-kahan", DType::BF16, false, false, DType::BF16, UpdateRounding::Kahan},
  };
  ASSERT_EQ(precision_names().size(), rows.size());
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    const Precision p = parse_precision(r.name);
    EXPECT_EQ(p.name, r.name);
    EXPECT_EQ(p.autocast, r.autocast);
    EXPECT_EQ(p.grad_scaler, r.scaler);
    EXPECT_EQ(p.master_weights, r.masters);
    EXPECT_EQ(p.param_dtype, r.params);
    EXPECT_EQ(p.update_rounding, r.rounding);
  }
}

TEST(Precision, DescribesItself) {
  EXPECT_EQ(parse_precision("fp32").describe(), "fp32: no autocast, no loss scaling, F32 parameters and optimizer state");
  EXPECT_EQ(parse_precision("fp16").describe(),
            "fp16: autocast F16, dynamic loss scaling, F32 parameters and optimizer state");
  EXPECT_EQ(parse_precision("fp16-master").describe(),
            "fp16-master: autocast F16, dynamic loss scaling, F16 working parameters with F32 master weights and F32 "
            "optimizer state");
  EXPECT_EQ(parse_precision("bf16-pure-sr").describe(),
            "bf16-pure-sr: autocast BF16, no loss scaling, BF16 parameters updated in place with stochastic rounding, "
            "BF16 optimizer state");
  EXPECT_NE(parse_precision("bf16-pure-kahan").describe().find("Kahan-compensated"), std::string::npos);
}

TEST(Precision, UnknownNameListsTheValidOnes) {
  expect_error([] { parse_precision("fp8"); },
               "precision: unknown policy \"fp8\" (valid: fp32, fp16, bf16, fp16-noscale, fp16-master, bf16-master, "
               "bf16-pure, bf16-pure-sr, bf16-pure-kahan)");
  expect_error([] { parse_precision("BF16"); }, "unknown policy \"BF16\"");
}

class Net : public nn::Module {
 public:
  Net() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 16));
    bn = register_module("bn", std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(16)));
    ln = register_module("ln", std::make_shared<nn::LayerNorm>(nn::LayerNormOptions({16})));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 4));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(ln->forward(bn->forward(fc1->forward(x))))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::BatchNorm1d> bn;
  std::shared_ptr<nn::LayerNorm> ln;
};

TEST(Precision, PrepareModelKeepsNormLayersF32) {
  for (const std::string& name : precision_names()) {
    SCOPED_TRACE(name);
    const Precision p = parse_precision(name);
    Net net;
    prepare_model(net, p);
    EXPECT_EQ(net.fc1->weight.dtype(), p.param_dtype);
    EXPECT_EQ(net.fc2->bias.dtype(), p.param_dtype);
    for (const Tensor& t : {net.bn->weight, net.bn->bias, net.bn->running_mean, net.bn->running_var, net.ln->weight,
                            net.ln->bias})
      EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(net.bn->num_batches_tracked.dtype(), DType::I64);
    EXPECT_TRUE(net.fc1->weight.requires_grad());
  }
}

TEST(Precision, MakeOptimizerFollowsThePolicy) {
  for (const std::string& name : precision_names()) {
    SCOPED_TRACE(name);
    const Precision p = parse_precision(name);
    Net net;
    prepare_model(net, p);
    auto opt = make_optimizer(p, {net.parameters()}, optim::SGDOptions(0.1).momentum(0.9), 42);
    if (p.master_weights) {
      EXPECT_EQ(opt->name(), "MasterWeights(SGD)");
      EXPECT_NE(dynamic_cast<optim::MasterWeights*>(opt.get()), nullptr);
      EXPECT_FALSE(opt->update_rounding().has_value());
    } else {
      EXPECT_EQ(opt->name(), "SGD");
      EXPECT_EQ(opt->update_rounding().has_value(), p.update_rounding.has_value());
      if (p.update_rounding) {
        EXPECT_EQ(opt->update_rounding()->rounding, *p.update_rounding);
        EXPECT_EQ(opt->update_rounding()->seed, 42u);
      }
    }
  }
  Net net;
  EXPECT_EQ(make_optimizer(parse_precision("bf16-master"), {net.parameters()}, optim::AdamOptions())->name(),
            "MasterWeights(Adam)");
  EXPECT_EQ(make_optimizer(parse_precision("fp32"), {net.parameters()}, optim::AdamWOptions())->name(), "AdamW");
}

// 40 steps of every policy on a learnable toy problem (the label is the argmax of the first
// four inputs): the loss is finite and falls, and a master policy's masters stay F32.
TEST(Precision, EveryPolicyTrains) {
  Generator data_gen(7);
  const Tensor x = randn({256, 8}, {}, &data_gen);
  const Tensor y = argmax(x.narrow(1, 0, 4), 1);
  for (const std::string& name : precision_names()) {
    SCOPED_TRACE(name);
    const Precision p = parse_precision(name);
    manual_seed(3);
    auto net = std::make_shared<Net>();
    prepare_model(*net, p);
    auto opt = make_optimizer(p, {net->parameters()}, optim::AdamWOptions(1e-2), 5);
    GradScaler scaler(GradScalerOptions().enabled(p.grad_scaler));
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
      opt->zero_grad();
      Tensor loss;
      {
        AutocastGuard autocast(DeviceType::CPU, p.autocast.value_or(DType::BF16), p.autocast.has_value());
        loss = cross_entropy(net->forward(x), y);
      }
      ASSERT_EQ(loss.dtype(), DType::F32);
      scaler.scale(loss).backward();
      scaler.step(*opt);
      scaler.update();
      const double l = loss.item_double();
      ASSERT_TRUE(std::isfinite(l)) << "step " << step;
      if (step == 0) first = l;
      last = l;
    }
    EXPECT_LT(last, 0.7 * first) << "first loss " << first << ", last " << last;
    EXPECT_EQ(net->fc1->weight.dtype(), p.param_dtype);
    EXPECT_EQ(net->bn->running_var.dtype(), DType::F32);
  }
}

}  // namespace
}  // namespace mantissa::amp
