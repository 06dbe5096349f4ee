// SGD, Adam and AdamW against PyTorch 1.13 trajectories (tests/golden/optim.json): every
// parameter after every step, parameter groups and StepLR inside the loop; plus the fused kernel
// on large tensors, state_dict round trips (bit-identical resume) and argument errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/golden.h"

#include "autograd/grad_mode.h"
#include "optim/optim.h"

// Counts every operator new of the process (library included), to check that a warmed-up step
// allocates nothing. GCC sees the replaced new/delete pair inlined as malloc/free and would
// flag every delete-expression in this file as mismatched.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
std::atomic<int64_t> g_news{0};
}  // namespace
void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace mantissa::optim {
namespace {

using nlohmann::json;

const json& golden() { return mantissa::testing::golden_json("optim.json"); }

const json& optimizer_case(const std::string& name) {
  for (const json& c : golden()["optimizers"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no golden case " << name;
  static const json none;
  return none;
}

Shape shape_of(const json& s) { return s.get<std::vector<int64_t>>(); }

template <typename T>
Tensor tensor_of(const json& values, const Shape& shape) {
  std::vector<double> v = values.get<std::vector<double>>();
  Tensor t = from_vector(v, shape).to(dtype_of<T>);
  return t;
}

// The optimizer (and optional scheduler) each golden case was made with, mirroring
// tests/golden/make_optim_golden.py.
struct Setup {
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<LRScheduler> sched;
};

Setup make_case(const std::string& name, std::vector<Tensor> params) {
  Setup s;
  if (name == "sgd") s.opt = std::make_unique<SGD>(params, SGDOptions(0.1));
  else if (name == "sgd_momentum") s.opt = std::make_unique<SGD>(params, SGDOptions(0.1).momentum(0.9));
  else if (name == "sgd_dampening_wd")
    s.opt = std::make_unique<SGD>(params, SGDOptions(0.05).momentum(0.9).dampening(0.1).weight_decay(0.01));
  else if (name == "sgd_nesterov")
    s.opt = std::make_unique<SGD>(params, SGDOptions(0.05).momentum(0.8).nesterov(true).weight_decay(0.001));
  else if (name == "adam") s.opt = std::make_unique<Adam>(params, AdamOptions(0.01));
  else if (name == "adam_wd_betas")
    s.opt = std::make_unique<Adam>(params, AdamOptions(0.02).betas({0.8, 0.99}).eps(1e-6).weight_decay(0.1));
  else if (name == "adam_amsgrad") s.opt = std::make_unique<Adam>(params, AdamOptions(0.01).amsgrad(true));
  else if (name == "adamw") s.opt = std::make_unique<AdamW>(params, AdamWOptions(0.01).weight_decay(0.05));
  else if (name == "adamw_amsgrad")
    s.opt = std::make_unique<AdamW>(params, AdamWOptions(0.01).weight_decay(0.01).amsgrad(true));
  else if (name == "sgd_groups") {
    const SGDOptions defaults = SGDOptions(0.1).momentum(0.5);
    std::vector<ParamGroup> groups{ParamGroup({params[0]}, SGDOptions(defaults).lr(0.2)),
                                   ParamGroup({params[1]}, SGDOptions(defaults).lr(0.01).weight_decay(0.1))};
    s.opt = std::make_unique<SGD>(std::move(groups), defaults);
  } else if (name == "sgd_steplr") {
    s.opt = std::make_unique<SGD>(params, SGDOptions(0.1).momentum(0.9));
    s.sched = std::make_unique<StepLR>(*s.opt, 2, 0.5);
  } else {
    ADD_FAILURE() << "unknown golden case " << name;
  }
  return s;
}

std::vector<std::string> case_names() {
  std::vector<std::string> names;
  for (const json& c : golden()["optimizers"]) names.push_back(c["name"]);
  return names;
}

double rel_err(double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-3); }

// Runs a golden case in dtype T and checks every parameter after every step, and every lr.
template <typename T>
void run_golden(const std::string& name, double tol) {
  const json& c = optimizer_case(name);
  std::vector<Tensor> params;
  for (size_t i = 0; i < c["shapes"].size(); ++i)
    params.push_back(tensor_of<T>(c["init"][i], shape_of(c["shapes"][i])).requires_grad_());
  Setup s = make_case(name, params);
  ASSERT_TRUE(s.opt);
  const size_t steps = c["grads"].size();
  double worst = 0.0;
  for (size_t st = 0; st < steps; ++st) {
    for (size_t i = 0; i < params.size(); ++i)
      params[i].set_grad(tensor_of<T>(c["grads"][st][i], shape_of(c["shapes"][i])));
    s.opt->step();
    if (s.sched) s.sched->step();
    for (size_t i = 0; i < params.size(); ++i) {
      const std::vector<double> got = to_vector<double>(params[i]);
      const std::vector<double> want = c["params"][st][i].get<std::vector<double>>();
      ASSERT_EQ(got.size(), want.size());
      for (size_t k = 0; k < got.size(); ++k) {
        worst = std::max(worst, rel_err(got[k], want[k]));
        ASSERT_LE(rel_err(got[k], want[k]), tol) << name << " step " << st << " param " << i << " element " << k
                                                  << ": got " << got[k] << ", PyTorch " << want[k];
      }
    }
    for (size_t g = 0; g < s.opt->param_groups().size(); ++g) {
      const double want = c["lrs"][st][g];
      EXPECT_LE(std::fabs(s.opt->param_groups()[g].options().get_lr() - want), 1e-9 * std::fabs(want))
          << name << " step " << st << " group " << g;
    }
  }
  std::ostringstream ss;
  ss << std::scientific << worst;
  ::testing::Test::RecordProperty("worst_rel_err", ss.str());
}

class GoldenOptimizer : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenOptimizer, MatchesPyTorchF32) { run_golden<float>(GetParam(), 1e-6); }
// The F64 path against PyTorch's F32 trajectory: agreement to F32 roundoff.
TEST_P(GoldenOptimizer, MatchesPyTorchF64) { run_golden<double>(GetParam(), 2e-5); }

INSTANTIATE_TEST_SUITE_P(Optim, GoldenOptimizer, ::testing::ValuesIn(case_names()),
                         [](const auto& info) { return info.param; });

// Large tensors: vector body, scalar tail, thread chunks that split tensors, several tensors in
// one call, against a plain double-precision loop of the same formulas.
struct AdamRef {
  std::vector<double> p, m, v, vmax;
};

TEST(Optimizer, FusedAdamMatchesReferenceOnLargeTensors) {
  for (bool amsgrad : {false, true}) {
    for (bool decoupled : {false, true}) {
      std::mt19937 rng(7);
      std::normal_distribution<float> nd;
      const std::vector<int64_t> sizes{40003, 5, 30001, 1};  // > one thread's grain
      std::vector<Tensor> params;
      std::vector<AdamRef> ref;
      for (int64_t n : sizes) {
        std::vector<float> v(n);
        for (float& x : v) x = nd(rng);
        params.push_back(from_vector(v, {n}).requires_grad_());
        ref.push_back({std::vector<double>(v.begin(), v.end()), std::vector<double>(n), std::vector<double>(n),
                       std::vector<double>(n)});
      }
      const double lr = 0.01, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.05;
      std::unique_ptr<Optimizer> opt;
      if (decoupled)
        opt = std::make_unique<AdamW>(params, AdamWOptions(lr).betas({b1, b2}).weight_decay(wd).amsgrad(amsgrad));
      else
        opt = std::make_unique<Adam>(params, AdamOptions(lr).betas({b1, b2}).weight_decay(wd).amsgrad(amsgrad));
      for (int t = 1; t <= 3; ++t) {
        for (size_t i = 0; i < params.size(); ++i) {
          std::vector<float> g(sizes[i]);
          for (float& x : g) x = nd(rng);
          params[i].set_grad(from_vector(g, {sizes[i]}));
          AdamRef& r = ref[i];
          const double bc1 = 1 - std::pow(b1, t), bc2_sqrt = std::sqrt(1 - std::pow(b2, t));
          for (int64_t k = 0; k < sizes[i]; ++k) {
            double gk = g[k];
            if (decoupled) r.p[k] *= 1 - lr * wd;
            else gk += wd * r.p[k];
            r.m[k] = b1 * r.m[k] + (1 - b1) * gk;
            r.v[k] = b2 * r.v[k] + (1 - b2) * gk * gk;
            r.vmax[k] = std::max(r.vmax[k], r.v[k]);
            const double denom = std::sqrt(amsgrad ? r.vmax[k] : r.v[k]) / bc2_sqrt + eps;
            r.p[k] -= lr / bc1 * r.m[k] / denom;
          }
        }
        opt->step();
      }
      for (size_t i = 0; i < params.size(); ++i) {
        const std::vector<double> got = to_vector<double>(params[i]);
        for (int64_t k = 0; k < sizes[i]; ++k)
          ASSERT_NEAR(got[k], ref[i].p[k], 2e-5 * std::max(1.0, std::fabs(ref[i].p[k])))
              << "amsgrad " << amsgrad << " decoupled " << decoupled << " tensor " << i << " element " << k;
      }
    }
  }
}

TEST(Optimizer, FusedSGDMatchesReferenceOnLargeTensors) {
  for (bool nesterov : {false, true}) {
    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    const int64_t n = 65537;
    std::vector<double> p0(n);
    for (double& x : p0) x = nd(rng);
    Tensor p = from_vector(p0, {n}).requires_grad_();  // F64 parameters
    std::vector<double> rp = p0, buf(n);
    const double lr = 0.1, m = 0.9, damp = nesterov ? 0.0 : 0.2, wd = 0.01;
    SGD opt({p}, SGDOptions(lr).momentum(m).dampening(damp).weight_decay(wd).nesterov(nesterov));
    for (int t = 0; t < 3; ++t) {
      std::vector<double> g(n);
      for (double& x : g) x = nd(rng);
      p.set_grad(from_vector(g, {n}));
      opt.step();
      for (int64_t k = 0; k < n; ++k) {
        double d = g[k] + wd * rp[k];
        buf[k] = t == 0 ? d : m * buf[k] + (1 - damp) * d;
        d = nesterov ? d + m * buf[k] : buf[k];
        rp[k] -= lr * d;
      }
    }
    const std::vector<double> got = to_vector<double>(p);
    for (int64_t k = 0; k < n; ++k) ASSERT_NEAR(got[k], rp[k], 1e-13) << "element " << k;
  }
}

TEST(Optimizer, MixedDTypesInOneGroup) {
  Tensor a = from_vector(std::vector<float>{1, 2, 3}, {3}).requires_grad_();
  Tensor b = from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  SGD opt({a, b}, SGDOptions(0.5));
  a.set_grad(ones({3}));
  b.set_grad(ones({3}, DType::F64));
  opt.step();
  EXPECT_EQ(to_vector<double>(a), (std::vector<double>{0.5, 1.5, 2.5}));
  EXPECT_EQ(to_vector<double>(b), (std::vector<double>{0.5, 1.5, 2.5}));
}

TEST(Optimizer, StepSkipsParametersWithoutGradAndBumpsVersion) {
  Tensor a = ones({4}).requires_grad_();
  Tensor b = ones({2}).requires_grad_();
  Adam opt({a, b}, AdamOptions(0.1));
  a.set_grad(ones({4}));
  const uint32_t va = a.version(), vb = b.version();
  opt.step();
  EXPECT_GT(a.version(), va);
  EXPECT_EQ(b.version(), vb);
  EXPECT_EQ(to_vector<float>(b), (std::vector<float>{1, 1}));
  EXPECT_NE(opt.state(a), nullptr);
  EXPECT_EQ(opt.state(b), nullptr);
  EXPECT_EQ(opt.state(a)->step, 1);
  // The first Adam step moves every element by lr (m/sqrt(v) = sign(g) after bias correction).
  for (float v : to_vector<float>(a)) EXPECT_NEAR(v, 0.9f, 1e-6f);
}

TEST(Optimizer, NonContiguousGradient) {
  Tensor w = zeros({2, 3}).requires_grad_();
  SGD opt({w}, SGDOptions(1.0));
  Tensor g = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}).transpose(0, 1);  // [[1,3,5],[2,4,6]]
  w.set_grad(g);
  opt.step();
  EXPECT_EQ(to_vector<float>(w), (std::vector<float>{-1, -3, -5, -2, -4, -6}));
}

TEST(Optimizer, ZeroGrad) {
  Tensor a = ones({3}).requires_grad_();
  SGD opt({a}, SGDOptions(0.1));
  a.set_grad(ones({3}));
  Tensor g = a.grad();
  opt.zero_grad(false);
  ASSERT_TRUE(a.grad().defined());
  EXPECT_TRUE(a.grad().is_same(g));  // zeroed in place
  EXPECT_EQ(to_vector<float>(a.grad()), (std::vector<float>{0, 0, 0}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  opt.zero_grad();  // nothing to do
}

TEST(Optimizer, GroupsTakeDefaultsAndSchedulersSeeThem) {
  Tensor a = ones({2}).requires_grad_();
  Tensor b = ones({2}).requires_grad_();
  Adam opt(std::vector<ParamGroup>{ParamGroup({a}), ParamGroup({b}, AdamOptions(0.5).betas({0.5, 0.9}))},
           AdamOptions(0.01));
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[0].options().get_lr(), 0.01);
  EXPECT_EQ(opt.param_groups()[1].options().get_lr(), 0.5);
  EXPECT_EQ(opt.param_groups()[1].options().get_momentum(), 0.5);
  opt.param_groups()[0].options().set_lr(0.02);
  EXPECT_EQ(opt.param_groups()[0].options().get_lr(), 0.02);
  Tensor c = ones({1}).requires_grad_();
  opt.add_param_group(ParamGroup({c}));
  EXPECT_EQ(opt.param_groups()[2].options().get_lr(), 0.01);
}

// Resuming from a state_dict continues bit-identically to the uninterrupted run.
template <typename Opt, typename Options>
void check_resume(const Options& options) {
  auto make_params = [] {
    return std::vector<Tensor>{from_vector(std::vector<float>{0.5f, -1.f, 2.f, 0.25f}, {2, 2}).requires_grad_(),
                               from_vector(std::vector<float>{0.1f, 0.2f, 0.3f}, {3}).requires_grad_()};
  };
  auto grad_at = [](int t, const Tensor& p) {
    std::vector<float> g(p.numel());
    for (size_t k = 0; k < g.size(); ++k) g[k] = std::sin(0.7f * t + 1.3f * k) * (t + 1);
    return from_vector(g, p.sizes());
  };
  auto params_a = make_params();
  Opt a(params_a, options);
  for (int t = 0; t < 6; ++t) {
    for (auto& p : params_a) p.set_grad(grad_at(t, p));
    a.step();
  }
  auto params_b = make_params();
  Opt b(params_b, options);
  for (int t = 0; t < 3; ++t) {
    for (auto& p : params_b) p.set_grad(grad_at(t, p));
    b.step();
  }
  OptimizerStateDict sd = b.state_dict();
  // A fresh optimizer over parameters holding the checkpointed values.
  std::vector<Tensor> params_c;
  for (auto& p : params_b) params_c.push_back(p.detach().clone().requires_grad_());
  Opt c(params_c, Options(options).lr(123.0));  // the lr comes back from the state dict
  c.load_state_dict(sd);
  EXPECT_EQ(c.param_groups()[0].options().get_lr(), options.lr());
  for (int t = 3; t < 6; ++t) {
    for (auto& p : params_c) p.set_grad(grad_at(t, p));
    c.step();
  }
  for (size_t i = 0; i < params_a.size(); ++i) EXPECT_EQ(to_vector<float>(params_a[i]), to_vector<float>(params_c[i]));
}

TEST(Optimizer, StateDictResumeIsBitIdentical) {
  check_resume<SGD>(SGDOptions(0.1).momentum(0.9).weight_decay(0.01));
  check_resume<Adam>(AdamOptions(0.01).amsgrad(true).weight_decay(0.1));
  check_resume<AdamW>(AdamWOptions(0.01));
}

TEST(Optimizer, StateDictFormat) {
  Tensor a = ones({2, 3}).requires_grad_();
  Tensor b = ones({4}).requires_grad_();
  Adam opt(std::vector<ParamGroup>{ParamGroup({a}), ParamGroup({b}, AdamOptions(0.5).amsgrad(true))},
           AdamOptions(0.01));
  b.set_grad(ones({4}));
  opt.step();
  const OptimizerStateDict sd = opt.state_dict();
  ASSERT_EQ(sd.tensors.size(), 3u);
  EXPECT_EQ(sd.tensors[0].first, "state.1.exp_avg");
  EXPECT_EQ(sd.tensors[1].first, "state.1.exp_avg_sq");
  EXPECT_EQ(sd.tensors[2].first, "state.1.max_exp_avg_sq");
  EXPECT_EQ(sd.metadata.at("optimizer"), "Adam");
  const json groups = json::parse(sd.metadata.at("param_groups"));
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[1]["lr"], 0.5);
  EXPECT_EQ(groups[1]["amsgrad"], true);
  EXPECT_EQ(groups[1]["beta2"], 0.999);
  EXPECT_EQ(groups[1]["params"], json::array({1}));
  EXPECT_EQ(json::parse(sd.metadata.at("state")), json::parse(R"({"1": {"step": 1}})"));
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Optimizer, LoadStateDictErrors) {
  Tensor a = ones({2, 3}).requires_grad_();
  Adam opt({a}, AdamOptions(0.01));
  a.set_grad(ones({2, 3}));
  opt.step();
  const OptimizerStateDict good = opt.state_dict();

  Tensor s = ones({2, 3}).requires_grad_();
  SGD sgd({s}, SGDOptions(0.1));
  expect_error([&] { sgd.load_state_dict(good); }, "saved by Adam, not SGD");

  Tensor w = ones({3, 2}).requires_grad_();
  Adam other({w}, AdamOptions(0.01));
  expect_error([&] { other.load_state_dict(good); }, "has shape [2, 3] but parameter 0 has shape [3, 2]");

  Tensor x = ones({2, 3}).requires_grad_(), y = ones({1}).requires_grad_();
  Adam two(std::vector<ParamGroup>{ParamGroup({x}), ParamGroup({y})});
  expect_error([&] { two.load_state_dict(good); }, "has 1 parameter groups; this optimizer has 2");

  Adam same({s}, AdamOptions(0.01));
  OptimizerStateDict bad = good;
  bad.tensors.emplace_back("state.0.momentum", zeros({2, 3}));
  expect_error([&] { same.load_state_dict(bad); }, "Adam keeps no state named \"momentum\"");
  bad = good;
  bad.tensors.emplace_back("state.7.exp_avg", zeros({2, 3}));
  expect_error([&] { same.load_state_dict(bad); }, "is for parameter 7, but this optimizer has 1 parameters");
  bad = good;
  bad.metadata["param_groups"] = "[{";
  expect_error([&] { same.load_state_dict(bad); }, "not valid JSON");
  bad = good;
  bad.metadata["param_groups"] = R"([{"lr": 0.1, "momentum": 0.9, "params": [0]}])";
  expect_error([&] { same.load_state_dict(bad); }, "unknown hyperparameter \"momentum\"");
  bad = good;
  bad.metadata["param_groups"] = R"([{"lr": -0.1, "params": [0]}])";
  expect_error([&] { same.load_state_dict(bad); }, "invalid learning rate -0.1");
  bad = good;
  bad.tensors.pop_back();  // exp_avg without exp_avg_sq
  expect_error([&] { same.load_state_dict(bad); }, "exp_avg without exp_avg_sq");
  // Nothing changed by the failed loads.
  EXPECT_EQ(same.state(s), nullptr);
  EXPECT_EQ(same.param_groups()[0].options().get_lr(), 0.01);
}

TEST(Optimizer, InvalidHyperparameters) {
  Tensor p = ones({2}).requires_grad_();
  expect_error([&] { SGD({p}, SGDOptions(-0.1)); }, "SGD: invalid learning rate -0.1");
  expect_error([&] { SGD({p}, SGDOptions(0.1).momentum(-1)); }, "invalid momentum -1");
  expect_error([&] { SGD({p}, SGDOptions(0.1).weight_decay(-0.5)); }, "invalid weight_decay -0.5");
  expect_error([&] { SGD({p}, SGDOptions(0.1).nesterov(true)); }, "Nesterov momentum requires a momentum > 0");
  expect_error([&] { SGD({p}, SGDOptions(0.1).momentum(0.9).dampening(0.1).nesterov(true)); },
               "zero dampening (got momentum 0.9, dampening 0.1)");
  expect_error([&] { Adam({p}, AdamOptions(0.1).betas({1.0, 0.999})); }, "Adam: invalid beta1 1");
  expect_error([&] { Adam({p}, AdamOptions(0.1).betas({0.9, -0.1})); }, "invalid beta2 -0.1");
  expect_error([&] { AdamW({p}, AdamWOptions(0.1).eps(-1e-8)); }, "AdamW: invalid eps -1e-08");
  expect_error([&] { Adam({p}, AdamOptions(-1)); }, "invalid learning rate -1");
  // A schedule or a user writing a bad value is caught at the next step.
  SGD opt({p}, SGDOptions(0.1));
  opt.param_groups()[0].options().set_lr(-2);
  p.set_grad(ones({2}));
  expect_error([&] { opt.step(); }, "invalid learning rate -2");
}

TEST(Optimizer, InvalidParameters) {
  Tensor p = ones({2}).requires_grad_();
  expect_error([&] { SGD(std::vector<Tensor>{}, SGDOptions(0.1)); }, "SGD: got an empty parameter list");
  expect_error([&] { SGD({p, p}, SGDOptions(0.1)); }, "appears more than once");
  expect_error([&] { Adam({from_vector(std::vector<int64_t>{1, 2}, {2})}); }, "has dtype I64");
  expect_error(
      [&] {
        SGD(std::vector<ParamGroup>{ParamGroup({p}, AdamOptions(0.1))}, SGDOptions(0.1));
      },
      "parameter group 0 has AdamOptions; expected SGDOptions");
  expect_error([&] { Adam(std::vector<ParamGroup>{ParamGroup({p}, AdamWOptions(0.1))}); },
               "has AdamWOptions; expected AdamOptions");

  Tensor h = ones({2}, DType::F16).requires_grad_();
  Adam opt({h});
  h.set_grad(ones({2}, DType::F16));
  expect_error([&] { opt.step(); }, "has dtype F16; F16/BF16 parameters need an FP32 master-weight policy");

  Tensor w = ones({2, 2}).requires_grad_();
  SGD sgd({w}, SGDOptions(0.1).momentum(0.9));
  w.set_grad(ones({2, 2}));
  sgd.step();
  w.set_data(ones({2, 2}, DType::F64));  // converted after the first step
  w.set_grad(ones({2, 2}, DType::F64));
  expect_error([&] { sgd.step(); }, "the momentum_buffer of parameter 0 is [2, 2] F32");
}

TEST(Optimizer, WarmedUpStepAllocatesNothing) {
  auto make_params = [] {
    std::vector<Tensor> ps{full({50000}, 0.5).requires_grad_(), full({3, 7}, 0.5).requires_grad_(),
                           full({40000}, 0.5, DType::F64).requires_grad_()};
    for (Tensor& p : ps) p.set_grad(full_like(p, 0.01));
    return ps;
  };
  std::vector<Tensor> p1 = make_params(), p2 = make_params(), p3 = make_params();
  SGD sgd(p1, SGDOptions(0.1).momentum(0.9).nesterov(true));
  Adam adam(p2, AdamOptions(0.01).amsgrad(true).weight_decay(0.1));
  AdamW adamw(p3, AdamWOptions(0.01));
  StepLR step_lr(sgd, 2);
  OneCycleLR one_cycle(adam, OneCycleLROptions(0.1).total_steps(100));
  auto train_step = [&] {
    for (Optimizer* o : std::initializer_list<Optimizer*>{&sgd, &adam, &adamw}) {
      o->step();
      o->zero_grad(false);
    }
    clip_grad_norm_(p1, 1.0);
    clip_grad_value_(p2, 1.0);
    step_lr.step();
    one_cycle.step();
  };
  train_step();
  train_step();
  const int64_t before = g_news.load();
  for (int i = 0; i < 5; ++i) train_step();
  EXPECT_EQ(g_news.load() - before, 0) << "operator new calls in 5 warmed-up steps";
}

TEST(Optimizer, ZeroSizeParameters) {
  Tensor e = zeros({0, 3}).requires_grad_();
  Tensor p = ones({2}).requires_grad_();
  Adam opt({e, p});
  e.set_grad(zeros({0, 3}));
  p.set_grad(ones({2}));
  opt.step();
  EXPECT_EQ(e.numel(), 0);
  EXPECT_NE(to_vector<float>(p)[0], 1.0f);
}

}  // namespace
}  // namespace mantissa::optim
