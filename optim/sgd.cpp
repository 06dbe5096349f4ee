// SGD: option checks with PyTorch's rules, and a step that gathers every parameter of a group
// into one fused kernel call (momentum buffers created on first use, as PyTorch does).
#include "optim/sgd.h"

#include <cmath>

#include "autograd/grad_mode.h"

namespace mantissa::optim {

std::vector<OptimizerOptions::Hyperparameter> SGDOptions::hyperparameters() const {
  return {{"lr", lr_},
          {"momentum", momentum_},
          {"dampening", dampening_},
          {"weight_decay", weight_decay_},
          {"nesterov", nesterov_ ? 1.0 : 0.0, true}};
}

void SGDOptions::set_hyperparameter(const std::string& name, double value) {
  if (name == "lr") lr_ = value;
  else if (name == "momentum") momentum_ = value;
  else if (name == "dampening") dampening_ = value;
  else if (name == "weight_decay") weight_decay_ = value;
  else if (name == "nesterov") nesterov_ = value != 0.0;
  else MANTISSA_ERROR("SGDOptions: unknown hyperparameter \"", name, "\" (expected lr, momentum, dampening, "
                      "weight_decay or nesterov)");
}

void SGDOptions::validate(const std::string& optimizer) const {
  MANTISSA_CHECK(lr_ >= 0.0 && std::isfinite(lr_), optimizer, ": invalid learning rate ", lr_,
                 " (must be finite and >= 0)");
  MANTISSA_CHECK(momentum_ >= 0.0 && std::isfinite(momentum_), optimizer, ": invalid momentum ", momentum_,
                 " (must be finite and >= 0)");
  MANTISSA_CHECK(std::isfinite(dampening_), optimizer, ": invalid dampening ", dampening_, " (must be finite)");
  MANTISSA_CHECK(weight_decay_ >= 0.0 && std::isfinite(weight_decay_), optimizer, ": invalid weight_decay ",
                 weight_decay_, " (must be finite and >= 0)");
  MANTISSA_CHECK(!nesterov_ || (momentum_ > 0.0 && dampening_ == 0.0), optimizer,
                 ": Nesterov momentum requires a momentum > 0 and zero dampening (got momentum ", momentum_,
                 ", dampening ", dampening_, ")");
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& options)
    : SGD(std::vector<ParamGroup>{ParamGroup(std::move(params))}, options) {
  MANTISSA_CHECK(!groups_[0].params().empty(), "SGD: got an empty parameter list");
}

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& defaults)
    : Optimizer("SGD", std::move(groups), defaults.clone()) {}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const SGDOptions& o = group_options<SGDOptions>(g);
    const bool momentum = o.momentum() != 0.0;
    const auto& entries = collect(g);
    // Check every existing buffer before creating any, so a failing step leaves no buffer
    // allocated but never filled.
    for (const Entry& e : entries) {
      if (momentum && e.state->momentum_buffer.defined())
        check_state_tensor(e.state->momentum_buffer, e, "momentum_buffer");
      if (e.state->compensation.defined()) check_state_tensor(e.state->compensation, e, "compensation");
    }
    for (const Entry& e : entries) {
      kernels::OptimSlot s;
      s.param = e.param->data_ptr();
      s.grad = e.grad.data_ptr();
      s.numel = e.param->numel();
      if (momentum) {
        Tensor& buf = e.state->momentum_buffer;
        if (!buf.defined()) {
          buf = empty_like(*e.param);  // the kernel fills it from this step's d_p
          s.first = true;
        }
        s.state0 = buf.data_ptr();
      }
      prepare_compensation(e, s);
      s.step = ++e.state->step;
      s.index = e.index;
      add_slot(*e.param, s);
    }
    const kernels::SGDHyper h{o.lr(), o.momentum(), o.dampening(), o.weight_decay(), o.nesterov()};
    const kernels::LowPrecisionUpdate lp = low_precision();
    run_slots([&](Device dev, DType dt, std::span<const kernels::OptimSlot> slots) {
      kernels::sgd_step(dev, dt, slots, h, lp);
    });
  }
}

void SGD::check_loaded_state(const ParamState&, size_t) const {}

}  // namespace mantissa::optim
