// optim::MasterWeights under the fp16-master / bf16-master policies: F32 masters of 16-bit
// parameters (BatchNorm stays F32 and is its own master), gradients widened (and unscaled, fused)
// into the masters, masters rounded back, trajectories identical to an F32 run fed the same
// gradients, checkpoints that restore the masters bit for bit, and scaler-skipped steps that
// leave everything untouched.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/policy.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/amp_scale.h"
#include "core/kernels/device_memory.h"
#include "nn/nn.h"
#include "nn/safetensors.h"
#include "optim/optim.h"

namespace mantissa {
namespace {

using optim::MasterWeights;

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an Error containing \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Bits of any floating tensor, widened exactly to F64 (F16/BF16/F32 all fit).
std::vector<double> values(const Tensor& t) { return to_vector<double>(t.detach().to(DType::F64)); }

// Linear -> BatchNorm1d -> ReLU -> Linear: a model with parameters of both kinds.
class Net : public nn::Module {
 public:
  Net() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 16));
    bn = register_module("bn", std::make_shared<nn::BatchNorm1d>(nn::BatchNormOptions(16)));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(16, 4));
  }
  Tensor forward(const Tensor& x) override { return fc2->forward(relu(bn->forward(fc1->forward(x)))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::BatchNorm1d> bn;
};

struct Batch {
  Tensor x, y;
};

Batch batch(uint64_t seed) {
  Generator gen(seed);
  Batch b;
  b.x = randn({32, 8}, {}, &gen);
  std::vector<int64_t> labels(32);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>((i * 5 + seed) % 4);
  b.y = from_vector(labels, {32});
  return b;
}

// One training step of the policy: forward + loss under autocast, backward (scaled when the
// scaler is on), scaler step or plain step.
void train_step(nn::Module& model, optim::Optimizer& opt, amp::GradScaler& scaler, const amp::Precision& p,
                const Batch& b) {
  opt.zero_grad();
  Tensor loss;
  {
    amp::AutocastGuard autocast(DeviceType::CPU, p.autocast.value_or(DType::BF16), p.autocast.has_value());
    loss = cross_entropy(model.forward(b.x), b.y);
  }
  EXPECT_EQ(loss.dtype(), DType::F32);
  scaler.scale(loss).backward();
  scaler.step(opt);
  scaler.update();
}

struct Rig {
  std::shared_ptr<Net> model;
  std::unique_ptr<optim::Optimizer> opt;
  MasterWeights* mw = nullptr;
};

Rig make_setup(const std::string& policy, uint64_t seed = 1) {
  manual_seed(seed);
  Rig s;
  s.model = std::make_shared<Net>();
  const amp::Precision p = amp::parse_precision(policy);
  amp::prepare_model(*s.model, p);
  s.opt = amp::make_optimizer(p, {s.model->parameters()}, optim::AdamWOptions(1e-2));
  s.mw = dynamic_cast<MasterWeights*>(s.opt.get());
  return s;
}

TEST(MasterWeights, MastersAreF32AndBatchNormStaysF32) {
  Rig s = make_setup("bf16-master");
  ASSERT_NE(s.mw, nullptr);
  EXPECT_EQ(s.opt->name(), "MasterWeights(AdamW)");
  Net& m = *s.model;
  EXPECT_EQ(m.fc1->weight.dtype(), DType::BF16);
  EXPECT_EQ(m.fc2->bias.dtype(), DType::BF16);
  for (const Tensor& t : {m.bn->weight, m.bn->bias, m.bn->running_mean, m.bn->running_var})
    EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(m.bn->num_batches_tracked.dtype(), DType::I64);
  // Masters: exact F32 copies for the 16-bit parameters, the parameter itself for BatchNorm's.
  const Tensor& w1 = s.mw->master(m.fc1->weight);
  EXPECT_EQ(w1.dtype(), DType::F32);
  EXPECT_FALSE(w1.is_same(m.fc1->weight));
  EXPECT_EQ(values(w1), values(m.fc1->weight));
  EXPECT_TRUE(s.mw->master(m.bn->weight).is_same(m.bn->weight));
  for (const optim::ParamGroup& g : s.opt->param_groups())
    for (const Tensor& p : g.params()) EXPECT_EQ(p.dtype(), DType::F32) << "param_groups are the masters";
  expect_error([&] { s.mw->master(ones({2})); }, "is not one of this optimizer's working parameters");

  amp::GradScaler scaler(amp::GradScalerOptions().enabled(false));
  for (uint64_t k = 0; k < 3; ++k) train_step(m, *s.opt, scaler, amp::parse_precision("bf16-master"), batch(k));
  for (const Tensor& t : {m.bn->weight, m.bn->bias, m.bn->running_mean, m.bn->running_var})
    EXPECT_EQ(t.dtype(), DType::F32) << "BatchNorm keeps F32 through training";
  EXPECT_EQ(m.fc1->weight.dtype(), DType::BF16);
  EXPECT_EQ(m.bn->num_batches_tracked.item<int64_t>(), 3);
}

TEST(MasterWeights, GradientsReachTheMastersAsF32) {
  Rig s = make_setup("bf16-master");
  const Batch b = batch(3);
  {
    amp::AutocastGuard autocast(DeviceType::CPU, DType::BF16);
    cross_entropy(s.model->forward(b.x), b.y).backward();
  }
  const Tensor& w = s.model->fc1->weight;
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::BF16);
  EXPECT_FALSE(s.mw->master(w).grad().defined()) << "nothing widened before prepare_grads/step";
  s.mw->prepare_grads();
  for (const Tensor& p : s.model->parameters()) {
    const Tensor& g = s.mw->master(p).grad();
    ASSERT_TRUE(g.defined());
    EXPECT_EQ(g.dtype(), DType::F32);
    EXPECT_EQ(values(g), values(p.grad())) << "widening is exact";
  }
  // zero_grad clears both sides.
  s.opt->zero_grad();
  for (const Tensor& p : s.model->parameters()) {
    EXPECT_FALSE(p.grad().defined());
    EXPECT_FALSE(s.mw->master(p).grad().defined());
  }
}

TEST(MasterWeights, FusedUnscaleMatchesWidenThenMultiply) {
  const std::vector<float> gv = {1.0f, -3.5f, 65504.0f, 6e-8f, 0.1f, -0.0f, 1024.0f};
  for (bool prepared_first : {false, true}) {
    SCOPED_TRACE(prepared_first ? "prepare_grads, then the scaler's hook" : "the fused hook alone");
    Tensor h = from_vector(std::vector<float>(7, 0.5f), {7}).to(DType::F16).requires_grad_();
    Tensor f = ones({3}).requires_grad_();
    MasterWeights mw({h, f}, optim::SGDOptions(0.1));
    h.set_grad(from_vector(gv, {7}).to(DType::F16));
    f.set_grad(from_vector(std::vector<float>{2.0f, 4.0f, 8.0f}, {3}));
    if (prepared_first) mw.prepare_grads();
    Tensor flag = kernels::make_found_inf(kCPU);
    EXPECT_TRUE(mw.unscale_grads_(0.25f, [&](const Device&) { return flag; }));
    std::vector<double> want;
    for (float x : to_vector<float>(h.grad().to(DType::F32))) want.push_back(static_cast<double>(x * 0.25f));
    EXPECT_EQ(values(mw.master(h).grad()), want);
    EXPECT_EQ(values(f.grad()), (std::vector<double>{0.5, 1.0, 2.0})) << "F32 gradients unscaled in place";
    EXPECT_FALSE(kernels::read_found_inf(flag));
  }
  // An Inf anywhere raises the flag.
  Tensor h = zeros({4}, DType::BF16).requires_grad_();
  MasterWeights mw({h}, optim::SGDOptions(0.1));
  h.set_grad(from_vector(std::vector<float>{1, INFINITY, 2, 3}, {4}).to(DType::BF16));
  Tensor flag = kernels::make_found_inf(kCPU);
  mw.unscale_grads_(0.5f, [&](const Device&) { return flag; });
  EXPECT_TRUE(kernels::read_found_inf(flag));
}

// Master policies with SGD/Adam/AdamW: fed the same (16-bit) gradients, the masters follow the
// F32 run bit for bit and the working copies are its round-to-nearest values.
TEST(MasterWeights, TrajectoriesMatchF32Reference) {
  using OptFactory = std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>, bool master)>;
  const std::vector<std::pair<std::string, OptFactory>> optimizers = {
      {"sgd", [](std::vector<Tensor> p, bool master) -> std::unique_ptr<optim::Optimizer> {
         const auto o = optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3);
         if (master) return std::make_unique<MasterWeights>(p, o);
         return std::make_unique<optim::SGD>(p, o);
       }},
      {"adam", [](std::vector<Tensor> p, bool master) -> std::unique_ptr<optim::Optimizer> {
         const auto o = optim::AdamOptions(1e-2).amsgrad(true).weight_decay(1e-2);
         if (master) return std::make_unique<MasterWeights>(p, o);
         return std::make_unique<optim::Adam>(p, o);
       }},
      {"adamw", [](std::vector<Tensor> p, bool master) -> std::unique_ptr<optim::Optimizer> {
         const auto o = optim::AdamWOptions(1e-2);
         if (master) return std::make_unique<MasterWeights>(p, o);
         return std::make_unique<optim::AdamW>(p, o);
       }},
  };
  for (const std::string policy : {"fp16-master", "bf16-master"}) {
    const DType low = amp::parse_precision(policy).param_dtype;
    for (const auto& [name, make] : optimizers) {
      SCOPED_TRACE(policy + " " + name);
      Generator gen(17);
      std::vector<Tensor> work, ref;
      for (const Shape& shape : {Shape{37}, Shape{5, 7}}) {
        const Tensor init = randn(shape, {}, &gen).to(low);
        work.push_back(init.clone().requires_grad_());
        ref.push_back(init.to(DType::F32).requires_grad_());
      }
      auto opt = make(work, true);
      auto ref_opt = make(ref, false);
      optim::StepLR sched(*opt, 3, 0.5), ref_sched(*ref_opt, 3, 0.5);
      auto* mw = dynamic_cast<MasterWeights*>(opt.get());
      for (int t = 0; t < 10; ++t) {
        for (size_t k = 0; k < work.size(); ++k) {
          const Tensor g = randn(work[k].sizes(), {}, &gen).to(low);
          work[k].set_grad(g);
          ref[k].set_grad(g.to(DType::F32));
        }
        opt->step();
        ref_opt->step();
        sched.step();
        ref_sched.step();
        for (size_t k = 0; k < work.size(); ++k) {
          ASSERT_EQ(values(mw->master(work[k])), values(ref[k])) << "step " << t << " parameter " << k;
          ASSERT_EQ(values(work[k]), values(ref[k].to(low))) << "working copy = RNE(master)";
        }
      }
      EXPECT_DOUBLE_EQ(opt->param_groups()[0].options().get_lr(), ref_opt->param_groups()[0].options().get_lr());
    }
  }
}

// A model + MasterWeights checkpoint (the examples' layout: model tensors, then the optimizer's
// under "optimizer.") restores the masters bit-exactly, and training continues identically.
TEST(MasterWeights, CheckpointRoundTripIsBitExact) {
  const amp::Precision p = amp::parse_precision("fp16-master");
  Rig a = make_setup("fp16-master", 1);
  amp::GradScaler scaler_a;
  for (uint64_t k = 0; k < 3; ++k) train_step(*a.model, *a.opt, scaler_a, p, batch(k));

  char path[] = "/tmp/mantissa_master_ckpt_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    nn::NamedTensors tensors = a.model->state_dict();
    const optim::OptimizerStateDict sd = a.opt->state_dict();
    safetensors::Metadata meta;
    for (const auto& [name, t] : sd.tensors) tensors.emplace_back("optimizer." + name, t);
    for (const auto& [k, v] : sd.metadata) meta["optimizer." + k] = v;
    safetensors::save(path, tensors, meta);
  }
  size_t masters_saved = 0;
  for (const auto& [name, t] : a.opt->state_dict().tensors)
    if (name.ends_with(".master")) {
      ++masters_saved;
      EXPECT_EQ(t.dtype(), DType::F32);
    }
  EXPECT_EQ(masters_saved, 4u) << "fc1/fc2 weight and bias; BatchNorm's are their own masters";

  Rig b = make_setup("fp16-master", 99);  // different initial weights
  {
    safetensors::File f = safetensors::load(path);
    nn::NamedTensors model_state;
    optim::OptimizerStateDict sd;
    for (auto& [name, t] : f.tensors) {
      if (name.starts_with("optimizer.")) sd.tensors.emplace_back(name.substr(10), t);
      else model_state.emplace_back(name, t);
    }
    for (const auto& [k, v] : f.metadata)
      if (k.starts_with("optimizer.")) sd.metadata[k.substr(10)] = v;
    b.model->load_state_dict(model_state);
    b.opt->load_state_dict(sd);
  }
  std::remove(path);
  for (size_t i = 0; i < a.mw->master_params().size(); ++i) {
    EXPECT_EQ(values(b.mw->master_params()[i]), values(a.mw->master_params()[i])) << "master " << i;
    EXPECT_EQ(values(b.mw->working_params()[i]), values(a.mw->working_params()[i])) << "working " << i;
  }
  // Continue both: identical bits.
  amp::GradScaler scaler_b;
  scaler_b.load_state_dict(scaler_a.state_dict());
  for (uint64_t k = 3; k < 6; ++k) {
    train_step(*a.model, *a.opt, scaler_a, p, batch(k));
    train_step(*b.model, *b.opt, scaler_b, p, batch(k));
  }
  for (size_t i = 0; i < a.mw->master_params().size(); ++i)
    EXPECT_EQ(values(b.mw->master_params()[i]), values(a.mw->master_params()[i])) << "master " << i << " after resume";
}

TEST(MasterWeights, LoadStateDictErrors) {
  Rig s = make_setup("bf16-master");
  amp::GradScaler off(amp::GradScalerOptions().enabled(false));
  train_step(*s.model, *s.opt, off, amp::parse_precision("bf16-master"), batch(0));
  const optim::OptimizerStateDict good = s.opt->state_dict();

  optim::OptimizerStateDict plain = s.mw->inner().state_dict();
  expect_error([&] { s.opt->load_state_dict(plain); }, "a plain optimizer keeps no F32 masters");

  optim::OptimizerStateDict missing = good;
  std::erase_if(missing.tensors, [](const auto& nt) { return nt.first == "state.0.master"; });
  expect_error([&] { s.opt->load_state_dict(missing); }, "has no master for parameter 0");

  optim::OptimizerStateDict wrong_shape = good;
  for (auto& [name, t] : wrong_shape.tensors)
    if (name == "state.0.master") t = zeros({3});
  expect_error([&] { s.opt->load_state_dict(wrong_shape); }, "\"state.0.master\" has shape [3]");

  optim::OptimizerStateDict bn_master = good;
  bn_master.tensors.emplace_back("state.2.master", zeros({16}));  // bn.weight: its own master
  expect_error([&] { s.opt->load_state_dict(bn_master); }, "which is F32 and its own master");

  // A failed load changed nothing; a good one restores the same values.
  const std::vector<double> before = values(s.mw->master_params()[0]);
  s.opt->load_state_dict(good);
  EXPECT_EQ(values(s.mw->master_params()[0]), before);
}

TEST(MasterWeights, ConstructorErrors) {
  Tensor d = ones({2}, DType::F64).requires_grad_();
  expect_error([&] { MasterWeights({d}, optim::SGDOptions(0.1)); }, "has dtype F64");
  Tensor h = ones({2}, DType::F16).requires_grad_();
  expect_error([&] { MasterWeights({h, h}, optim::SGDOptions(0.1)); }, "appears more than once");
  expect_error([&] { MasterWeights(std::vector<Tensor>{}, optim::SGDOptions(0.1)); }, "got an empty parameter list");
  Tensor base = ones({4, 4}, DType::F16).requires_grad_();
  Tensor nonleaf = mul(base, base);
  expect_error([&] { MasterWeights({nonleaf}, optim::SGDOptions(0.1)); }, "is not a leaf tensor");
}

// A step the scaler skips (an Inf in a 16-bit gradient) leaves masters, working copies and the
// optimizer state exactly as they were, and backs the scale off.
TEST(MasterWeights, ScalerSkippedStepChangesNothing) {
  const amp::Precision p = amp::parse_precision("fp16-master");
  Rig s = make_setup("fp16-master");
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(1024.0));  // no overflow on its own
  train_step(*s.model, *s.opt, scaler, p, batch(0));  // state exists from here on
  ASSERT_EQ(scaler.skipped_steps(), 0);

  auto snapshot = [&] {
    std::vector<std::vector<double>> out;
    for (const Tensor& t : s.mw->master_params()) out.push_back(values(t));
    for (const Tensor& t : s.mw->working_params()) out.push_back(values(t));
    for (const Tensor& t : s.mw->master_params()) {
      const optim::ParamState* st = s.mw->inner().state(t);
      out.push_back({static_cast<double>(st->step)});
      out.push_back(values(st->exp_avg));
      out.push_back(values(st->exp_avg_sq));
    }
    return out;
  };
  const auto before = snapshot();
  const double scale = scaler.get_scale();

  s.opt->zero_grad();
  Tensor loss;
  {
    amp::AutocastGuard autocast(DeviceType::CPU, DType::F16);
    loss = cross_entropy(s.model->forward(batch(1).x), batch(1).y);
  }
  scaler.scale(loss).backward();
  {
    NoGradGuard no_grad;
    Tensor& g = s.model->fc2->weight.mutable_grad();
    g = g.clone();
    g.fill_(INFINITY);  // what an F16 overflow in the backward pass produces
  }
  const amp::StepResult r = scaler.step(*s.opt);  // the fused widen + unscale finds the Inf
  scaler.update();
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(scaler.get_scale(), scale * 0.5);
  EXPECT_EQ(snapshot(), before);

  // The next clean step goes through.
  train_step(*s.model, *s.opt, scaler, p, batch(2));
  EXPECT_NE(snapshot(), before);
}

// The same master-weight steps (widen + unscale with an Inf check, Adam on the masters, RNE back)
// on CUDA give the CPU's bits.
TEST(MasterWeights, CudaMatchesCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  for (DType low : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(low));
    Generator gen(4);
    std::vector<Tensor> cpu, dev;
    for (const Shape& shape : {Shape{3}, Shape{129, 65}, Shape{70001}}) {
      const Tensor init = randn(shape, {}, &gen).to(low);
      cpu.push_back(init.clone().requires_grad_());
      dev.push_back(init.to(kCUDA).requires_grad_());
    }
    MasterWeights a(cpu, optim::AdamOptions(1e-2).weight_decay(1e-2)), b(dev, optim::AdamOptions(1e-2).weight_decay(1e-2));
    for (int t = 0; t < 3; ++t) {
      for (size_t k = 0; k < cpu.size(); ++k) {
        const Tensor g = mul(randn(cpu[k].sizes(), {}, &gen), 512.0).to(low);
        cpu[k].set_grad(g);
        dev[k].set_grad(g.to(kCUDA));
      }
      Tensor fa = kernels::make_found_inf(kCPU), fb = kernels::make_found_inf(kCUDA);
      a.unscale_grads_(1.0f / 512.0f, [&](const Device&) { return fa; });
      b.unscale_grads_(1.0f / 512.0f, [&](const Device&) { return fb; });
      EXPECT_FALSE(kernels::read_found_inf(fa));
      EXPECT_FALSE(kernels::read_found_inf(fb));
      a.step();
      b.step();
      for (size_t k = 0; k < cpu.size(); ++k) {
        EXPECT_EQ(values(b.master_params()[k].cpu()), values(a.master_params()[k])) << "master " << k;
        EXPECT_EQ(values(dev[k].cpu()), values(cpu[k])) << "working " << k;
      }
    }
  }
}

}  // namespace
}  // namespace mantissa
