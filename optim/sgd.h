// SGD with momentum, dampening, Nesterov momentum and L2 weight decay, exactly as PyTorch 1.13's
// single-tensor torch.optim.SGD; the update runs as one fused kernel per parameter group.
#pragma once

#include "optim/optimizer.h"

namespace mantissa::optim {

class SGDOptions final : public OptimizerOptions {
 public:
  explicit SGDOptions(double lr) : OptimizerOptions(lr) {}

  SGDOptions& lr(double v) { lr_ = v; return *this; }
  SGDOptions& momentum(double v) { momentum_ = v; return *this; }
  SGDOptions& dampening(double v) { dampening_ = v; return *this; }
  SGDOptions& weight_decay(double v) { weight_decay_ = v; return *this; }
  SGDOptions& nesterov(bool v) { nesterov_ = v; return *this; }
  double lr() const { return lr_; }
  double momentum() const { return momentum_; }
  double dampening() const { return dampening_; }
  double weight_decay() const { return weight_decay_; }
  bool nesterov() const { return nesterov_; }

  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<SGDOptions>(*this); }
  const char* type_name() const override { return "SGDOptions"; }
  bool has_momentum() const override { return true; }
  double get_momentum() const override { return momentum_; }
  void set_momentum(double v) override { momentum_ = v; }
  std::vector<Hyperparameter> hyperparameters() const override;
  void set_hyperparameter(const std::string& name, double value) override;
  // lr >= 0, momentum >= 0, weight_decay >= 0; nesterov needs momentum > 0 and dampening 0.
  void validate(const std::string& optimizer) const override;

 private:
  double momentum_ = 0.0;
  double dampening_ = 0.0;
  double weight_decay_ = 0.0;
  bool nesterov_ = false;
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<ParamGroup> groups, const SGDOptions& defaults);

  void step() override;

 protected:
  std::vector<std::string> state_tensor_names() const override { return {"momentum_buffer"}; }
  void check_loaded_state(const ParamState& state, size_t index) const override;
};

}  // namespace mantissa::optim
