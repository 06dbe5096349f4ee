// LR schedulers against PyTorch 1.13 (tests/golden/optim.json): every lr (and OneCycle's momentum
// or beta1) after every step to 1e-9 relative; SequentialLR and three-phase OneCycle against
// values PyTorch printed (script in the comments); state_dict resume and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/golden.h"

#include "optim/optim.h"

namespace mantissa::optim {
namespace {

using nlohmann::json;

const json& golden() { return mantissa::testing::golden_json("optim.json"); }

std::unique_ptr<LRScheduler> make_scheduler(const std::string& name, Optimizer& opt) {
  if (name == "steplr") return std::make_unique<StepLR>(opt, 3, 0.5);
  if (name == "multisteplr") return std::make_unique<MultiStepLR>(opt, std::vector<int64_t>{2, 5, 9}, 0.1);
  if (name == "cosine") return std::make_unique<CosineAnnealingLR>(opt, 10, 0.001);
  if (name == "onecycle_sgd") return std::make_unique<OneCycleLR>(opt, OneCycleLROptions(0.1).total_steps(14));
  if (name == "onecycle_adam_linear")
    return std::make_unique<OneCycleLR>(opt, OneCycleLROptions(0.05)
                                                 .total_steps(14)
                                                 .pct_start(0.25)
                                                 .anneal_strategy(AnnealStrategy::Linear)
                                                 .div_factor(10.0)
                                                 .final_div_factor(100.0));
  if (name == "linear_warmup") return std::make_unique<LinearLR>(opt, 0.1, 1.0, 4);
  ADD_FAILURE() << "unknown golden scheduler " << name;
  return nullptr;
}

void expect_close(double got, double want, double rtol, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), rtol * std::fabs(want) + 1e-15) << what << ": got " << got << ", PyTorch " << want;
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const json& c : golden()["schedulers"]) names.push_back(c["name"]);
  return names;
}

class GoldenScheduler : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenScheduler, MatchesPyTorch) {
  const json* found = nullptr;
  for (const json& c : golden()["schedulers"])
    if (c["name"] == GetParam()) found = &c;
  ASSERT_NE(found, nullptr);
  const json& c = *found;
  Tensor p = zeros({1}).requires_grad_();
  std::unique_ptr<Optimizer> opt;
  if (c["optimizer"] == "sgd") opt = std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions(0.1).momentum(0.9));
  else opt = std::make_unique<Adam>(std::vector<Tensor>{p}, AdamOptions(0.1));
  auto sched = make_scheduler(GetParam(), *opt);
  ASSERT_TRUE(sched);
  for (size_t s = 0; s < c["lrs"].size(); ++s) {
    opt->step();  // no gradient: a no-op, as in the generator
    sched->step();
    const auto& group = opt->param_groups()[0].options();
    const std::string at = GetParam() + " step " + std::to_string(s);
    expect_close(group.get_lr(), c["lrs"][s].get<double>(), 1e-9, at + " lr");
    expect_close(sched->get_last_lr()[0], c["lrs"][s].get<double>(), 1e-9, at + " last_lr");
    expect_close(group.get_momentum(), c["momentum"][s].get<double>(), 1e-9, at + " momentum");
  }
}

INSTANTIATE_TEST_SUITE_P(Optim, GoldenScheduler, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

// PyTorch 1.13:
//   opt = SGD([p], lr=0.1, momentum=0.9)
//   w = LinearLR(opt, start_factor=0.1, total_iters=3); c = CosineAnnealingLR(opt, T_max=6, eta_min=0.001)
//   s = SequentialLR(opt, [w, c], milestones=[3]); lr after construction, then after each of 10 steps.
TEST(Scheduler, SequentialWarmupThenCosineMatchesPyTorch) {
  const std::vector<double> want{0.010000000000000002, 0.04, 0.07, 0.1, 0.09336825748732973, 0.07525000000000001,
                                 0.0505, 0.025750000000000012, 0.007631742512670284, 0.001, 0.007631742512670284};
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(0.1).momentum(0.9));
  auto warmup = std::make_shared<LinearLR>(opt, 0.1, 1.0, 3);
  auto cosine = std::make_shared<CosineAnnealingLR>(opt, 6, 0.001);
  SequentialLR sched(opt, {warmup, cosine}, {3});
  expect_close(opt.param_groups()[0].options().get_lr(), want[0], 1e-9, "construction");
  for (size_t s = 1; s < want.size(); ++s) {
    opt.step();
    sched.step();
    expect_close(opt.param_groups()[0].options().get_lr(), want[s], 1e-9, "step " + std::to_string(s));
    expect_close(sched.get_last_lr()[0], want[s], 1e-9, "last_lr " + std::to_string(s));
  }
}

// PyTorch 1.13:
//   opt = Adam([{'params': [p]}, {'params': [q], 'lr': 0.5}], lr=0.1)
//   s = OneCycleLR(opt, max_lr=[0.1, 0.2], epochs=2, steps_per_epoch=5, three_phase=True, pct_start=0.4)
TEST(Scheduler, OneCycleThreePhasePerGroupMatchesPyTorch) {
  const std::vector<std::vector<double>> lrs{
      {0.0040000000000000036, 0.008000000000000007}, {0.027999999999999997, 0.055999999999999994},
      {0.076, 0.152}, {0.1, 0.2}, {0.07600000000000001, 0.15200000000000002},
      {0.02800000000000001, 0.05600000000000002}, {0.004, 0.008}, {0.0030001, 0.0060002},
      {0.0010003000000000004, 0.002000600000000001}, {4e-07, 8e-07}, {0.001000299999999999, 0.002000599999999998}};
  const std::vector<double> beta1{0.95, 0.9249999999999999, 0.875, 0.85, 0.875, 0.9249999999999999,
                                  0.95, 0.95, 0.95, 0.95, 0.95};
  Tensor p = zeros({1}).requires_grad_(), q = zeros({1}).requires_grad_();
  Adam opt(std::vector<ParamGroup>{ParamGroup({p}), ParamGroup({q}, AdamOptions(0.5))}, AdamOptions(0.1));
  OneCycleLR sched(opt, OneCycleLROptions(std::vector<double>{0.1, 0.2})
                            .epochs(2)
                            .steps_per_epoch(5)
                            .three_phase(true)
                            .pct_start(0.4));
  EXPECT_EQ(sched.total_steps(), 10);
  for (size_t s = 0; s < lrs.size(); ++s) {
    if (s > 0) {
      opt.step();
      sched.step();
    }
    for (size_t g = 0; g < 2; ++g) {
      const auto& o = opt.param_groups()[g].options();
      const std::string at = "step " + std::to_string(s) + " group " + std::to_string(g);
      expect_close(o.get_lr(), lrs[s][g], 1e-9, at);
      expect_close(o.get_momentum(), beta1[s], 1e-9, at + " beta1");
    }
  }
  try {
    sched.step();
    ADD_FAILURE() << "stepping past total_steps must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tried to step 12 times; the specified number of total steps is 10"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(sched.last_epoch(), 10);  // the failed step changed nothing
}

TEST(Scheduler, StateDictResumeContinuesIdentically) {
  auto run = [](int total, int split) {
    Tensor p = zeros({1}).requires_grad_();
    auto opt = std::make_unique<SGD>(std::vector<Tensor>{p}, SGDOptions(0.1).momentum(0.9));
    auto sched = std::make_unique<OneCycleLR>(*opt, OneCycleLROptions(0.2).total_steps(total));
    std::vector<double> lrs;
    for (int s = 0; s < total; ++s) {
      if (s == split) {
        // Checkpoint, then rebuild everything from scratch and restore.
        const OptimizerStateDict osd = opt->state_dict();
        const std::string ssd = sched->state_dict();
        Tensor p2 = zeros({1}).requires_grad_();
        opt = std::make_unique<SGD>(std::vector<Tensor>{p2}, SGDOptions(0.1).momentum(0.9));
        sched = std::make_unique<OneCycleLR>(*opt, OneCycleLROptions(0.2).total_steps(total));
        opt->load_state_dict(osd);
        sched->load_state_dict(ssd);
      }
      opt->step();
      sched->step();
      lrs.push_back(opt->param_groups()[0].options().get_lr());
      lrs.push_back(opt->param_groups()[0].options().get_momentum());
    }
    return lrs;
  };
  EXPECT_EQ(run(12, 5), run(12, -1));
}

TEST(Scheduler, SequentialStateDictRoundTrip) {
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(0.1));
  auto make = [&] {
    auto w = std::make_shared<LinearLR>(opt, 0.1, 1.0, 3);
    auto c = std::make_shared<CosineAnnealingLR>(opt, 6, 0.001);
    return std::make_unique<SequentialLR>(opt, std::vector<std::shared_ptr<LRScheduler>>{w, c},
                                          std::vector<int64_t>{3});
  };
  auto a = make();
  for (int i = 0; i < 5; ++i) a->step();
  const std::string sd = a->state_dict();
  const OptimizerStateDict osd = opt.state_dict();
  std::vector<double> want;
  for (int i = 0; i < 3; ++i) {
    a->step();
    want.push_back(a->get_last_lr()[0]);
  }
  auto b = make();
  opt.load_state_dict(osd);
  b->load_state_dict(sd);
  EXPECT_EQ(b->last_epoch(), 5);
  for (int i = 0; i < 3; ++i) {
    b->step();
    EXPECT_EQ(b->get_last_lr()[0], want[i]) << i;
  }
  StepLR other(opt, 2);
  EXPECT_THROW(other.load_state_dict(sd), Error);
  EXPECT_THROW(other.load_state_dict("{"), Error);
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Scheduler, InvalidArguments) {
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(0.1));
  expect_error([&] { StepLR(opt, 0); }, "StepLR: step_size must be >= 1, got 0");
  expect_error([&] { CosineAnnealingLR(opt, 0); }, "T_max must be >= 1");
  expect_error([&] { LinearLR(opt, 0.0); }, "start_factor must be in (0, 1], got 0");
  expect_error([&] { LinearLR(opt, 0.5, 1.5); }, "end_factor must be in [0, 1], got 1.5");
  expect_error([&] { OneCycleLR(opt, OneCycleLROptions(0.1)); }, "define either total_steps or (epochs and");
  expect_error([&] { OneCycleLR(opt, OneCycleLROptions(0.1).total_steps(-3)); }, "positive total_steps, got -3");
  expect_error([&] { OneCycleLR(opt, OneCycleLROptions(0.1).total_steps(5).pct_start(1.5)); },
               "pct_start must be in [0, 1], got 1.5");
  expect_error([&] { OneCycleLR(opt, OneCycleLROptions(std::vector<double>{0.1, 0.2}).total_steps(5)); },
               "expected 1 values for max_lr");
  Tensor q = zeros({1}).requires_grad_();
  SGD other({q}, SGDOptions(0.1));
  auto foreign = std::make_shared<StepLR>(other, 2);
  auto mine = std::make_shared<StepLR>(opt, 2);
  expect_error([&] { SequentialLR(opt, {mine, foreign}, {2}); }, "scheduler 1 (StepLR) belongs to another optimizer");
  expect_error([&] { SequentialLR(opt, {mine}, {2}); }, "one milestone fewer than schedulers");
}

TEST(Scheduler, StepAndMultiStepClosedForms) {
  // After a SequentialLR milestone the next scheduler restarts from its closed form at epoch 0.
  Tensor p = zeros({1}).requires_grad_();
  SGD opt({p}, SGDOptions(1.0));
  auto a = std::make_shared<StepLR>(opt, 1, 0.5);
  auto b = std::make_shared<MultiStepLR>(opt, std::vector<int64_t>{1, 1, 3}, 0.1);
  SequentialLR s(opt, {a, b}, {2});
  std::vector<double> got{opt.param_groups()[0].options().get_lr()};
  for (int i = 0; i < 5; ++i) {
    s.step();
    got.push_back(opt.param_groups()[0].options().get_lr());
  }
  // StepLR: 1, 0.5; MultiStepLR restarts at 1 (epoch 0), x0.01 at epoch 1 (listed twice), epoch 2
  // unchanged, x0.1 at epoch 3.
  const std::vector<double> want{1.0, 0.5, 1.0, 0.01, 0.01, 0.001};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) expect_close(got[i], want[i], 1e-12, "epoch " + std::to_string(i));
}

}  // namespace
}  // namespace mantissa::optim
