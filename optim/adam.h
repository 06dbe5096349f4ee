// Adam and AdamW (optionally AMSGrad) with PyTorch 1.13's single-tensor formulas: Adam adds L2
// weight decay to the gradient, AdamW decays the weights (p *= 1 - lr*wd) before the moments.
// One fused kernel call per parameter group; state: step, exp_avg, exp_avg_sq, max_exp_avg_sq.
#pragma once

#include <tuple>

#include "optim/optimizer.h"

namespace mantissa::optim {

// The hyperparameters Adam and AdamW share; the two option types differ in the default
// weight_decay and in their type, so a group of one cannot be handed to the other.
class AdamOptionsBase : public OptimizerOptions {
 public:
  double lr() const { return lr_; }
  const std::tuple<double, double>& betas() const { return betas_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }
  bool amsgrad() const { return amsgrad_; }

  bool has_momentum() const override { return true; }
  double get_momentum() const override { return std::get<0>(betas_); }
  void set_momentum(double v) override { std::get<0>(betas_) = v; }
  std::vector<Hyperparameter> hyperparameters() const override;
  void set_hyperparameter(const std::string& name, double value) override;
  // lr >= 0, eps >= 0, both betas in [0, 1), weight_decay >= 0.
  void validate(const std::string& optimizer) const override;

 protected:
  AdamOptionsBase(double lr, double weight_decay) : OptimizerOptions(lr), weight_decay_(weight_decay) {}
  std::tuple<double, double> betas_{0.9, 0.999};
  double eps_ = 1e-8;
  double weight_decay_;
  bool amsgrad_ = false;
};

// Chained setters returning the concrete options type.
template <typename Self>
class AdamOptionsT : public AdamOptionsBase {
 public:
  Self& lr(double v) { lr_ = v; return self(); }
  Self& betas(const std::tuple<double, double>& v) { betas_ = v; return self(); }
  Self& eps(double v) { eps_ = v; return self(); }
  Self& weight_decay(double v) { weight_decay_ = v; return self(); }
  Self& amsgrad(bool v) { amsgrad_ = v; return self(); }
  using AdamOptionsBase::amsgrad;
  using AdamOptionsBase::betas;
  using AdamOptionsBase::eps;
  using AdamOptionsBase::lr;
  using AdamOptionsBase::weight_decay;

  std::unique_ptr<OptimizerOptions> clone() const override { return std::make_unique<Self>(self()); }

 protected:
  using AdamOptionsBase::AdamOptionsBase;
  Self& self() { return static_cast<Self&>(*this); }
  const Self& self() const { return static_cast<const Self&>(*this); }
};

class AdamOptions final : public AdamOptionsT<AdamOptions> {
 public:
  explicit AdamOptions(double lr = 1e-3) : AdamOptionsT(lr, 0.0) {}
  const char* type_name() const override { return "AdamOptions"; }
};

class AdamWOptions final : public AdamOptionsT<AdamWOptions> {
 public:
  explicit AdamWOptions(double lr = 1e-3) : AdamOptionsT(lr, 1e-2) {}
  const char* type_name() const override { return "AdamWOptions"; }
};

namespace detail {
// The shared step of Adam and AdamW.
class AdamFamily : public Optimizer {
 public:
  void step() override;

 protected:
  AdamFamily(std::string name, std::vector<ParamGroup> groups, std::unique_ptr<OptimizerOptions> defaults,
             bool decoupled_weight_decay);
  std::vector<std::string> state_tensor_names() const override { return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }
  void check_loaded_state(const ParamState& state, size_t index) const override;

 private:
  bool decoupled_;
};
}  // namespace detail

class Adam final : public detail::AdamFamily {
 public:
  explicit Adam(std::vector<Tensor> params, const AdamOptions& options = AdamOptions());
  explicit Adam(std::vector<ParamGroup> groups, const AdamOptions& defaults = AdamOptions());
};

class AdamW final : public detail::AdamFamily {
 public:
  explicit AdamW(std::vector<Tensor> params, const AdamWOptions& options = AdamWOptions());
  explicit AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults = AdamWOptions());
};

}  // namespace mantissa::optim
