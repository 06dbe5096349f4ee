// Adam/AdamW: option checks with PyTorch's rules, and a step that gathers every parameter of a
// group into one fused kernel call with per-parameter bias corrections.
#include "optim/adam.h"

#include <cmath>

#include "autograd/grad_mode.h"

namespace mantissa::optim {

std::vector<OptimizerOptions::Hyperparameter> AdamOptionsBase::hyperparameters() const {
  return {{"lr", lr_},
          {"beta1", std::get<0>(betas_)},
          {"beta2", std::get<1>(betas_)},
          {"eps", eps_},
          {"weight_decay", weight_decay_},
          {"amsgrad", amsgrad_ ? 1.0 : 0.0, true}};
}

void AdamOptionsBase::set_hyperparameter(const std::string& name, double value) {
  if (name == "lr") lr_ = value;
  else if (name == "beta1") std::get<0>(betas_) = value;
  else if (name == "beta2") std::get<1>(betas_) = value;
  else if (name == "eps") eps_ = value;
  else if (name == "weight_decay") weight_decay_ = value;
  else if (name == "amsgrad") amsgrad_ = value != 0.0;
  else MANTISSA_ERROR(type_name(), ": unknown hyperparameter \"", name, "\" (expected lr, beta1, beta2, eps, "
                      "weight_decay or amsgrad)");
}

void AdamOptionsBase::validate(const std::string& optimizer) const {
  MANTISSA_CHECK(lr_ >= 0.0 && std::isfinite(lr_), optimizer, ": invalid learning rate ", lr_,
                 " (must be finite and >= 0)");
  MANTISSA_CHECK(eps_ >= 0.0 && std::isfinite(eps_), optimizer, ": invalid eps ", eps_, " (must be finite and >= 0)");
  const auto [b1, b2] = betas_;
  MANTISSA_CHECK(b1 >= 0.0 && b1 < 1.0, optimizer, ": invalid beta1 ", b1, " (betas must be in [0, 1))");
  MANTISSA_CHECK(b2 >= 0.0 && b2 < 1.0, optimizer, ": invalid beta2 ", b2, " (betas must be in [0, 1))");
  MANTISSA_CHECK(weight_decay_ >= 0.0 && std::isfinite(weight_decay_), optimizer, ": invalid weight_decay ",
                 weight_decay_, " (must be finite and >= 0)");
}

namespace detail {

AdamFamily::AdamFamily(std::string name, std::vector<ParamGroup> groups, std::unique_ptr<OptimizerOptions> defaults,
                       bool decoupled_weight_decay)
    : Optimizer(std::move(name), std::move(groups), std::move(defaults)), decoupled_(decoupled_weight_decay) {}

void AdamFamily::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const AdamOptionsBase& o = group_options<AdamOptionsBase>(g);
    const auto& entries = collect(g);
    // Check every existing state before touching any, so a failing step changes nothing.
    for (const Entry& e : entries) {
      const ParamState& st = *e.state;
      if (st.exp_avg.defined()) check_state_tensor(st.exp_avg, e, "exp_avg");
      if (st.exp_avg_sq.defined()) check_state_tensor(st.exp_avg_sq, e, "exp_avg_sq");
      if (o.amsgrad() && st.max_exp_avg_sq.defined()) check_state_tensor(st.max_exp_avg_sq, e, "max_exp_avg_sq");
      if (st.compensation.defined()) check_state_tensor(st.compensation, e, "compensation");
    }
    for (const Entry& e : entries) {
      ParamState& st = *e.state;
      if (!st.exp_avg.defined()) st.exp_avg = zeros_like(*e.param);
      if (!st.exp_avg_sq.defined()) st.exp_avg_sq = zeros_like(*e.param);
      // Turning amsgrad on later starts its running max from zero.
      if (o.amsgrad() && !st.max_exp_avg_sq.defined()) st.max_exp_avg_sq = zeros_like(*e.param);
      kernels::OptimSlot s;
      s.param = e.param->data_ptr();
      s.grad = e.grad.data_ptr();
      s.state0 = st.exp_avg.data_ptr();
      s.state1 = st.exp_avg_sq.data_ptr();
      s.state2 = o.amsgrad() ? st.max_exp_avg_sq.data_ptr() : nullptr;
      s.numel = e.param->numel();
      prepare_compensation(e, s);
      s.step = ++st.step;
      s.index = e.index;
      add_slot(*e.param, s);
    }
    const auto [b1, b2] = o.betas();
    const kernels::AdamHyper h{o.lr(), b1, b2, o.eps(), o.weight_decay(), o.amsgrad(), decoupled_};
    const kernels::LowPrecisionUpdate lp = low_precision();
    run_slots([&](Device dev, DType dt, std::span<const kernels::OptimSlot> slots) {
      kernels::adam_step(dev, dt, slots, h, lp);
    });
  }
}

void AdamFamily::check_loaded_state(const ParamState& st, size_t index) const {
  MANTISSA_CHECK(st.exp_avg.defined() == st.exp_avg_sq.defined(), name_, ".load_state_dict: the state of parameter ",
                 index, " has ", st.exp_avg.defined() ? "exp_avg without exp_avg_sq" : "exp_avg_sq without exp_avg");
  MANTISSA_CHECK(!st.exp_avg.defined() || st.step >= 1, name_, ".load_state_dict: the state of parameter ", index,
                 " has moments but step ", st.step, " (expected >= 1)");
  MANTISSA_CHECK(!st.max_exp_avg_sq.defined() || st.exp_avg.defined(), name_,
                 ".load_state_dict: the state of parameter ", index, " has max_exp_avg_sq without exp_avg");
}

}  // namespace detail

Adam::Adam(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {
  MANTISSA_CHECK(!groups_[0].params().empty(), "Adam: got an empty parameter list");
}

Adam::Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults)
    : AdamFamily("Adam", std::move(groups), defaults.clone(), false) {}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& options)
    : AdamW(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {
  MANTISSA_CHECK(!groups_[0].params().empty(), "AdamW: got an empty parameter list");
}

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults)
    : AdamFamily("AdamW", std::move(groups), defaults.clone(), true) {}

}  // namespace mantissa::optim
