// optim::Optimizer: parameter groups with per-group options, lazily created per-parameter
// state, zero_grad, and state_dict/load_state_dict (state tensors named "state.<i>.<name>" plus
// string metadata). SGD, Adam and AdamW derive from it and run fused kernels in step().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/kernels/optim_step.h"
#include "core/tensor.h"

namespace mantissa::optim {

// Hyperparameters of one parameter group. Each optimizer derives its options type with libtorch's
// chained setters (SGDOptions(0.1).momentum(0.9)); this base holds what schedulers read and write.
class OptimizerOptions {
 public:
  virtual ~OptimizerOptions() = default;
  virtual std::unique_ptr<OptimizerOptions> clone() const = 0;
  virtual const char* type_name() const = 0;  // "SGDOptions"

  double get_lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  // The momentum a cyclic schedule (OneCycleLR) moves: SGD's momentum, Adam's beta1.
  virtual bool has_momentum() const { return false; }
  virtual double get_momentum() const;
  virtual void set_momentum(double value);

  // Every hyperparameter by name (betas as beta1/beta2), for state_dict.
  struct Hyperparameter {
    std::string name;
    double value;
    bool is_bool = false;
  };
  virtual std::vector<Hyperparameter> hyperparameters() const = 0;
  // Sets one by name (bools from 0/1); throws for a name this type does not have.
  virtual void set_hyperparameter(const std::string& name, double value) = 0;
  // Throws an Error naming `optimizer` and the offending value when out of range.
  virtual void validate(const std::string& optimizer) const = 0;

 protected:
  explicit OptimizerOptions(double lr) : lr_(lr) {}
  OptimizerOptions(const OptimizerOptions&) = default;
  OptimizerOptions& operator=(const OptimizerOptions&) = default;
  double lr_;
};

// Parameters that share options. Without options a group takes the optimizer's defaults; to
// override a few, copy the defaults: ParamGroup(params, SGDOptions(defaults).lr(0.01)).
class ParamGroup {
 public:
  ParamGroup(std::vector<Tensor> params);  // NOLINT: implicit, so {params} reads naturally
  ParamGroup(std::vector<Tensor> params, const OptimizerOptions& options);
  ParamGroup(const ParamGroup& other);
  ParamGroup& operator=(const ParamGroup& other);
  ParamGroup(ParamGroup&&) noexcept = default;
  ParamGroup& operator=(ParamGroup&&) noexcept = default;

  std::vector<Tensor>& params() { return params_; }
  const std::vector<Tensor>& params() const { return params_; }
  bool has_options() const { return options_ != nullptr; }
  OptimizerOptions& options();
  const OptimizerOptions& options() const;
  void set_options(std::unique_ptr<OptimizerOptions> options) { options_ = std::move(options); }

  // PyTorch's group['initial_lr']: set by the first LR scheduler attached, read by later ones.
  std::optional<double> initial_lr;

 private:
  std::vector<Tensor> params_;
  std::unique_ptr<OptimizerOptions> options_;
};

// Per-parameter state, created on the parameter's first step. Which members are used depends on
// the optimizer; unused tensors stay undefined.
struct ParamState {
  int64_t step = 0;        // steps taken with this parameter
  Tensor momentum_buffer;  // SGD with momentum
  Tensor exp_avg;          // Adam/AdamW
  Tensor exp_avg_sq;
  Tensor max_exp_avg_sq;   // amsgrad
  Tensor compensation;     // BF16 parameters under Kahan rounding: the residual not yet applied
};

// What state_dict() returns and load_state_dict() takes: the state tensors, named
// "state.<global parameter index>.<name>" (index over all groups' params in order), and string
// metadata: "optimizer" (the type name, "Adam"), "param_groups" (JSON text: a list of objects
// holding each group's hyperparameters, its "params" indices and its "initial_lr" when set) and
// "state" (JSON text: {"<index>": {"step": n}} for every parameter with state). Both containers
// fit a safetensors file as they are.
struct OptimizerStateDict {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "SGD", "Adam", "AdamW".
  const std::string& name() const { return name_; }

  // One update of every parameter whose .grad is defined (the others are skipped), under
  // no-grad; bumps each updated parameter's version. Parameters: F32 and F64 on the CPU or a
  // CUDA device, and BF16 once set_update_rounding has chosen how updates are written back
  // (F16/BF16 models otherwise train through optim::MasterWeights).
  virtual void step() = 0;
  // set_to_none drops each .grad (the next backward allocates it again); otherwise the
  // gradients are zeroed in place.
  virtual void zero_grad(bool set_to_none = true);

  // GradScaler support for optimizers that step on copies of their parameters' gradients
  // (MasterWeights: F32 masters of 16-bit working parameters). GradScaler::unscale_ calls this
  // first; when it returns true the optimizer has produced the gradients its step reads,
  // multiplied by inv_scale in the same pass, and set found_inf_for(device) (a one-element F32
  // flag, kernels::make_found_inf) to 1 for any Inf/NaN source value; the scaler then unscales
  // nothing else and reads param_groups()' .grad only to name an offender. The default returns
  // false: the scaler unscales each parameter's .grad in place.
  virtual bool unscale_grads_(float inv_scale, const std::function<Tensor(const Device&)>& found_inf_for) {
    (void)inv_scale;
    (void)found_inf_for;
    return false;
  }

  // Pure BF16 training: lets BF16 parameters (with BF16 state) be updated in place, each update
  // computed in F32 and written back by `rounding`; `seed` keys stochastic rounding. Saved in
  // state_dict ("update_rounding"), and a load requires the same setting.
  void set_update_rounding(kernels::UpdateRounding rounding, uint64_t seed = 0);
  const std::optional<kernels::LowPrecisionUpdate>& update_rounding() const { return low_precision_; }

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  const OptimizerOptions& defaults() const { return *defaults_; }
  // Checks the group as the constructor does (options type and values, no parameter listed
  // twice) and appends it, taking the defaults if it has no options.
  void add_param_group(ParamGroup group);

  // The parameter's state, or nullptr before its first step.
  ParamState* state(const Tensor& param);
  const ParamState* state(const Tensor& param) const;

  // The state tensors are the live state (shared storage, as in PyTorch): write them out before
  // the next step.
  virtual OptimizerStateDict state_dict() const;
  // Validates everything first (optimizer type, group and parameter counts, tensor names,
  // shapes, hyperparameter names); a failing load changes nothing. State tensors are copied into
  // fresh tensors of each parameter's dtype.
  virtual void load_state_dict(const OptimizerStateDict& state_dict);

 protected:
  // Checks the defaults and every group (see add_param_group); `name` prefixes every error.
  Optimizer(std::string name, std::vector<ParamGroup> groups, std::unique_ptr<OptimizerOptions> defaults);

  // The parameters of group `g` that have a gradient, checked (dtype F32/F64, or BF16 with an
  // update rounding; contiguous; grad matching; a non-contiguous grad is made contiguous),
  // paired with their state (created empty if new) and with their version bumped. Reuses
  // internal buffers, so a warmed-up step allocates nothing. The entries stay valid until the
  // next call.
  struct Entry {
    Tensor* param;
    Tensor grad;
    ParamState* state;
    size_t index;  // global parameter index, for errors
  };
  const std::vector<Entry>& collect(size_t g);

  // The options of group g as the optimizer's type, checked (type and values) each step, since
  // schedulers and users change them between steps.
  template <typename O>
  const O& group_options(size_t g) const;
  // Throws unless a state tensor still matches its parameter (a parameter converted with
  // set_data after its first step no longer does).
  void check_state_tensor(const Tensor& t, const Entry& e, const char* what) const;

  // For BF16 parameters under Kahan rounding: the compensation buffer (created as zeros on
  // first use, checked like any state tensor). Sets slot.compensation. Call after collect().
  void prepare_compensation(const Entry& e, kernels::OptimSlot& slot);
  // The options the kernels take for the update rounding (nearest when none is set).
  kernels::LowPrecisionUpdate low_precision() const { return low_precision_.value_or(kernels::LowPrecisionUpdate{}); }

  // The group's kernel slots, one list per (device, dtype): add them, then run_slots calls
  // kernel(device, dtype, slots) for each list present and empties the lists.
  void add_slot(const Tensor& param, const kernels::OptimSlot& slot);
  template <typename Kernel>
  void run_slots(const Kernel& kernel);

  // The names of the state tensors this optimizer keeps, for load_state_dict validation.
  virtual std::vector<std::string> state_tensor_names() const = 0;
  // Throws when a loaded state is inconsistent for this optimizer (e.g. exp_avg without
  // exp_avg_sq); `index` is the global parameter index.
  virtual void check_loaded_state(const ParamState& state, size_t index) const = 0;

  std::string name_;
  std::vector<ParamGroup> groups_;
  std::unique_ptr<OptimizerOptions> defaults_;
  std::unordered_map<const TensorImpl*, ParamState> state_;

 private:
  void check_group(const ParamGroup& group, size_t group_index) const;
  std::vector<Entry> entries_;
  struct SlotList {
    Device device;
    DType dtype;
    std::vector<kernels::OptimSlot> slots;
  };
  std::vector<SlotList> slot_lists_;  // kept across steps, so their capacity is reused
  std::optional<kernels::LowPrecisionUpdate> low_precision_;
};

template <typename O>
const O& Optimizer::group_options(size_t g) const {
  const auto* o = dynamic_cast<const O*>(&groups_[g].options());
  MANTISSA_CHECK(o != nullptr, name_, ": parameter group ", g, " has ", groups_[g].options().type_name(),
                 "; expected ", defaults_->type_name());
  o->validate(name_);
  return *o;
}

template <typename Kernel>
void Optimizer::run_slots(const Kernel& kernel) {
  for (SlotList& l : slot_lists_) {
    if (!l.slots.empty()) kernel(l.device, l.dtype, std::span<const kernels::OptimSlot>(l.slots));
    l.slots.clear();
  }
}

}  // namespace mantissa::optim
