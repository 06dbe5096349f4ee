// Optimizer base: group checks, per-step gathering of (param, grad, state) without allocation,
// zero_grad, and the state_dict format (state tensors + JSON metadata) with a validating load.
#include "optim/optimizer.h"

#include <algorithm>
#include <charconv>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/kernels/copy.h"

namespace mantissa::optim {

using nlohmann::json;

// Options ------------------------------------------------------------------------------------

double OptimizerOptions::get_momentum() const {
  MANTISSA_ERROR(type_name(), " has no momentum (cycle_momentum needs SGD's momentum or Adam's beta1)");
}

void OptimizerOptions::set_momentum(double) {
  MANTISSA_ERROR(type_name(), " has no momentum (cycle_momentum needs SGD's momentum or Adam's beta1)");
}

// ParamGroup ---------------------------------------------------------------------------------

ParamGroup::ParamGroup(std::vector<Tensor> params) : params_(std::move(params)) {}

ParamGroup::ParamGroup(std::vector<Tensor> params, const OptimizerOptions& options)
    : params_(std::move(params)), options_(options.clone()) {}

ParamGroup::ParamGroup(const ParamGroup& other)
    : initial_lr(other.initial_lr),
      params_(other.params_),
      options_(other.options_ ? other.options_->clone() : nullptr) {}

ParamGroup& ParamGroup::operator=(const ParamGroup& other) {
  if (this != &other) {
    initial_lr = other.initial_lr;
    params_ = other.params_;
    options_ = other.options_ ? other.options_->clone() : nullptr;
  }
  return *this;
}

OptimizerOptions& ParamGroup::options() {
  MANTISSA_CHECK(options_ != nullptr, "ParamGroup: this group has no options (it takes the optimizer's defaults "
                                      "once added to an optimizer)");
  return *options_;
}

const OptimizerOptions& ParamGroup::options() const {
  MANTISSA_CHECK(options_ != nullptr, "ParamGroup: this group has no options (it takes the optimizer's defaults "
                                      "once added to an optimizer)");
  return *options_;
}

// Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, std::vector<ParamGroup> groups, std::unique_ptr<OptimizerOptions> defaults)
    : name_(std::move(name)), defaults_(std::move(defaults)) {
  MANTISSA_ASSERT(defaults_ != nullptr);
  defaults_->validate(name_);
  MANTISSA_CHECK(!groups.empty(), name_, ": got an empty parameter list");
  for (ParamGroup& g : groups) add_param_group(std::move(g));
}

void Optimizer::check_group(const ParamGroup& group, size_t group_index) const {
  if (group.has_options()) {
    const OptimizerOptions& o = group.options();
    MANTISSA_CHECK(std::string(o.type_name()) == defaults_->type_name(), name_, ": parameter group ", group_index,
                   " has ", o.type_name(), "; expected ", defaults_->type_name());
    o.validate(name_ + " (parameter group " + std::to_string(group_index) + ")");
  }
  std::unordered_set<const TensorImpl*> seen;
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params()) seen.insert(p.impl());
  for (size_t i = 0; i < group.params().size(); ++i) {
    const Tensor& p = group.params()[i];
    MANTISSA_CHECK(p.defined(), name_, ": parameter ", i, " of group ", group_index, " is an undefined tensor");
    MANTISSA_CHECK(p.is_floating_point(), name_, ": parameter ", i, " of group ", group_index, " has dtype ",
                   p.dtype(), "; optimizers update floating-point tensors");
    MANTISSA_CHECK(p.is_leaf(), name_, ": parameter ", i, " of group ", group_index, " (shape ",
                   shape_str(p.sizes()), ") is not a leaf tensor (it has ", p.grad_fn_name(),
                   "); optimize the leaf it was computed from");
    MANTISSA_CHECK(seen.insert(p.impl()).second, name_, ": parameter ", i, " of group ", group_index, " (shape ",
                   shape_str(p.sizes()), ") appears more than once in the parameter groups");
  }
}

void Optimizer::add_param_group(ParamGroup group) {
  check_group(group, groups_.size());
  if (!group.has_options()) group.set_options(defaults_->clone());
  groups_.push_back(std::move(group));
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (ParamGroup& g : groups_) {
    for (Tensor& p : g.params()) {
      if (!p.grad().defined()) continue;
      Tensor& grad = p.mutable_grad();
      if (set_to_none) {
        grad = Tensor();
      } else {
        if (grad.grad_fn()) grad.detach_();
        else if (grad.requires_grad()) grad.requires_grad_(false);
        grad.zero_();
      }
    }
  }
}

ParamState* Optimizer::state(const Tensor& param) {
  auto it = state_.find(param.impl());
  return it == state_.end() ? nullptr : &it->second;
}

const ParamState* Optimizer::state(const Tensor& param) const {
  auto it = state_.find(param.impl());
  return it == state_.end() ? nullptr : &it->second;
}

const std::vector<Optimizer::Entry>& Optimizer::collect(size_t g) {
  entries_.clear();
  size_t base = 0;
  for (size_t k = 0; k < g; ++k) base += groups_[k].params().size();
  std::vector<Tensor>& params = groups_[g].params();
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor& p = params[i];
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const size_t index = base + i;
    // Pure BF16 (a rounding mode set): the update is computed in F32 and written back by it.
    const bool pure_bf16 = p.dtype() == DType::BF16 && low_precision_.has_value();
    if (!pure_bf16) {
      MANTISSA_CHECK(!is_low_precision(p.dtype()), name_, ": parameter ", index, " (shape ", shape_str(p.sizes()),
                     ") has dtype ", p.dtype(), "; F16/BF16 parameters need an FP32 master-weight policy "
                     "(optim::MasterWeights: precision fp16-master/bf16-master) or, for BF16, an explicit update "
                     "rounding (set_update_rounding: precision bf16-pure, bf16-pure-sr, bf16-pure-kahan)");
      MANTISSA_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, name_, ": parameter ", index,
                     " has dtype ", p.dtype(), "; expected F32 or F64");
    }
    MANTISSA_CHECK(p.is_contiguous(), name_, ": parameter ", index, " (shape ", shape_str(p.sizes()),
                   ", strides ", shape_str(p.strides()), ") is not contiguous");
    MANTISSA_CHECK(grad.sizes() == p.sizes() && grad.dtype() == p.dtype() && grad.device() == p.device(), name_,
                   ": the gradient of parameter ", index, " is ", shape_str(grad.sizes()), " ", grad.dtype(), " on ",
                   grad.device(), " but the parameter is ", shape_str(p.sizes()), " ", p.dtype(), " on ",
                   p.device());
    if (!grad.is_contiguous()) {
      Tensor dense = empty_like(p);
      kernels::copy(dense, grad);
      grad = dense;
    }
    ParamState& st = state_[p.impl()];
    p.bump_version();
    entries_.push_back(Entry{&p, std::move(grad), &st, index});
  }
  return entries_;
}

void Optimizer::check_state_tensor(const Tensor& t, const Entry& e, const char* what) const {
  const Tensor& p = *e.param;
  MANTISSA_CHECK(t.sizes() == p.sizes() && t.dtype() == p.dtype() && t.device() == p.device() && t.is_contiguous(),
                 name_, ": the ", what, " of parameter ", e.index, " is ", shape_str(t.sizes()), " ", t.dtype(), " on ",
                 t.device(), " but the parameter is now ", shape_str(p.sizes()), " ", p.dtype(), " on ", p.device(),
                 " (convert parameters before the optimizer's first step, or load a state dict)");
}

void Optimizer::add_slot(const Tensor& param, const kernels::OptimSlot& slot) {
  const Device device = param.device();
  const DType dtype = param.dtype();
  MANTISSA_ASSERT(dtype == DType::F32 || dtype == DType::F64 || dtype == DType::BF16);
  for (SlotList& l : slot_lists_) {
    if (l.device == device && l.dtype == dtype) {
      l.slots.push_back(slot);
      return;
    }
  }
  slot_lists_.push_back(SlotList{device, dtype, {slot}});
}

void Optimizer::set_update_rounding(kernels::UpdateRounding rounding, uint64_t seed) {
  low_precision_ = kernels::LowPrecisionUpdate{rounding, seed};
}

void Optimizer::prepare_compensation(const Entry& e, kernels::OptimSlot& slot) {
  if (e.param->dtype() != DType::BF16 || !low_precision_ ||
      low_precision_->rounding != kernels::UpdateRounding::Kahan)
    return;
  Tensor& c = e.state->compensation;
  if (c.defined()) check_state_tensor(c, e, "compensation");
  else c = zeros_like(*e.param);
  slot.compensation = c.data_ptr();
}

// state_dict ---------------------------------------------------------------------------------

namespace {

// The state tensors by name, in the order state_dict writes them.
struct StateTensor {
  const char* name;
  Tensor ParamState::*member;
};
constexpr StateTensor kStateTensors[] = {
    {"momentum_buffer", &ParamState::momentum_buffer},
    {"exp_avg", &ParamState::exp_avg},
    {"exp_avg_sq", &ParamState::exp_avg_sq},
    {"max_exp_avg_sq", &ParamState::max_exp_avg_sq},
    {"compensation", &ParamState::compensation},
};

// The update rounding as state_dict records it: "none", "nearest", "stochastic seed 7", "kahan".
std::string rounding_text(const std::optional<kernels::LowPrecisionUpdate>& lp) {
  if (!lp) return "none";
  std::string s = kernels::update_rounding_name(lp->rounding);
  if (lp->rounding == kernels::UpdateRounding::Stochastic) s += " seed " + std::to_string(lp->seed);
  return s;
}

json parse_json(const std::map<std::string, std::string>& meta, const std::string& key, const std::string& who) {
  auto it = meta.find(key);
  MANTISSA_CHECK(it != meta.end(), who, ": the state dict has no \"", key, "\" metadata entry");
  try {
    return json::parse(it->second);
  } catch (const json::exception& e) {
    MANTISSA_ERROR(who, ": the \"", key, "\" metadata entry is not valid JSON (", e.what(), ")");
  }
}

// Parses a non-negative decimal index ("12"), or returns false.
bool parse_index(std::string_view s, size_t& out) {
  if (s.empty() || s.size() > 18) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

OptimizerStateDict Optimizer::state_dict() const {
  OptimizerStateDict sd;
  json groups = json::array();
  json states = json::object();
  size_t index = 0;
  for (const ParamGroup& g : groups_) {
    json gj = json::object();
    for (const auto& h : g.options().hyperparameters()) {
      if (h.is_bool) gj[h.name] = h.value != 0.0;
      else gj[h.name] = h.value;
    }
    if (g.initial_lr) gj["initial_lr"] = *g.initial_lr;
    json ids = json::array();
    for (const Tensor& p : g.params()) {
      ids.push_back(index);
      if (const ParamState* st = state(p)) {
        states[std::to_string(index)] = json{{"step", st->step}};
        for (const StateTensor& t : kStateTensors) {
          const Tensor& v = st->*t.member;
          if (v.defined()) sd.tensors.emplace_back("state." + std::to_string(index) + "." + t.name, v);
        }
      }
      ++index;
    }
    gj["params"] = std::move(ids);
    groups.push_back(std::move(gj));
  }
  sd.metadata["optimizer"] = name_;
  sd.metadata["param_groups"] = groups.dump();
  sd.metadata["state"] = states.dump();
  if (low_precision_) sd.metadata["update_rounding"] = rounding_text(low_precision_);
  return sd;
}

void Optimizer::load_state_dict(const OptimizerStateDict& sd) {
  const std::string who = name_ + ".load_state_dict";
  auto type_it = sd.metadata.find("optimizer");
  MANTISSA_CHECK(type_it != sd.metadata.end(), who, ": the state dict has no \"optimizer\" metadata entry");
  MANTISSA_CHECK(type_it->second == name_, who, ": the state dict was saved by ", type_it->second, ", not ", name_);

  // A resumed run must write its updates back as the saved one did (stochastic rounding: with
  // the same stream).
  const auto rounding_it = sd.metadata.find("update_rounding");
  const std::string saved_rounding = rounding_it == sd.metadata.end() ? "none" : rounding_it->second;
  MANTISSA_CHECK(saved_rounding == rounding_text(low_precision_), who, ": the state dict was saved with update "
                 "rounding ", saved_rounding, " but this optimizer has ", rounding_text(low_precision_),
                 " (call set_update_rounding to match)");

  // Parameters by global index, as state_dict numbers them.
  std::vector<const Tensor*> params;
  for (const ParamGroup& g : groups_)
    for (const Tensor& p : g.params()) params.push_back(&p);

  // Groups: counts, parameter indices and hyperparameters, staged.
  const json groups = parse_json(sd.metadata, "param_groups", who);
  MANTISSA_CHECK(groups.is_array(), who, ": \"param_groups\" must be a JSON list");
  MANTISSA_CHECK(groups.size() == groups_.size(), who, ": the state dict has ", groups.size(),
                 " parameter groups; this optimizer has ", groups_.size());
  std::vector<std::unique_ptr<OptimizerOptions>> new_options;
  std::vector<std::optional<double>> new_initial_lr;
  size_t base = 0;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const json& gj = groups[gi];
    MANTISSA_CHECK(gj.is_object(), who, ": parameter group ", gi, " must be a JSON object");
    const auto ids = gj.find("params");
    MANTISSA_CHECK(ids != gj.end() && ids->is_array(), who, ": parameter group ", gi, " has no \"params\" list");
    const size_t n = groups_[gi].params().size();
    MANTISSA_CHECK(ids->size() == n, who, ": parameter group ", gi, " has ", ids->size(),
                   " parameters in the state dict but ", n, " in this optimizer");
    for (size_t k = 0; k < n; ++k) {
      const json& id = (*ids)[k];
      MANTISSA_CHECK(id.is_number_unsigned() && id.get<size_t>() == base + k, who, ": parameter group ", gi,
                     " lists parameter ", id.dump(), " at position ", k, "; expected ", base + k);
    }
    base += n;
    auto opts = groups_[gi].options().clone();
    std::optional<double> initial_lr;
    for (auto it = gj.begin(); it != gj.end(); ++it) {
      if (it.key() == "params") continue;
      MANTISSA_CHECK(it->is_number() || it->is_boolean(), who, ": hyperparameter \"", it.key(), "\" of group ", gi,
                     " must be a number or a bool, got ", it->dump());
      const double v = it->is_boolean() ? (it->get<bool>() ? 1.0 : 0.0) : it->get<double>();
      if (it.key() == "initial_lr") initial_lr = v;
      else opts->set_hyperparameter(it.key(), v);
    }
    opts->validate(who + " (parameter group " + std::to_string(gi) + ")");
    new_options.push_back(std::move(opts));
    new_initial_lr.push_back(initial_lr);
  }

  // Steps, then tensors, into fresh states.
  std::vector<std::optional<ParamState>> staged(params.size());
  const json state = parse_json(sd.metadata, "state", who);
  MANTISSA_CHECK(state.is_object(), who, ": \"state\" must be a JSON object");
  for (auto it = state.begin(); it != state.end(); ++it) {
    size_t idx = 0;
    MANTISSA_CHECK(parse_index(it.key(), idx) && idx < params.size(), who, ": state for parameter \"", it.key(),
                   "\", but this optimizer has ", params.size(), " parameters");
    const auto step = it->find("step");
    MANTISSA_CHECK(it->is_object() && step != it->end() && step->is_number_integer() && step->get<int64_t>() >= 0,
                   who, ": the state of parameter ", idx, " needs a non-negative integer \"step\", got ", it->dump());
    staged[idx].emplace().step = step->get<int64_t>();
  }
  std::vector<std::string> allowed = state_tensor_names();
  if (low_precision_ && low_precision_->rounding == kernels::UpdateRounding::Kahan) allowed.push_back("compensation");
  for (const auto& [name, t] : sd.tensors) {
    // "state.<index>.<name>"
    const std::string_view s(name);
    const size_t dot = s.find('.', 6);
    size_t idx = 0;
    MANTISSA_CHECK(s.starts_with("state.") && dot != std::string_view::npos &&
                       parse_index(s.substr(6, dot - 6), idx),
                   who, ": unexpected tensor \"", name, "\" (expected state.<parameter index>.<name>)");
    MANTISSA_CHECK(idx < params.size(), who, ": tensor \"", name, "\" is for parameter ", idx,
                   ", but this optimizer has ", params.size(), " parameters");
    const std::string key(s.substr(dot + 1));
    MANTISSA_CHECK(std::find(allowed.begin(), allowed.end(), key) != allowed.end(), who, ": unexpected tensor \"",
                   name, "\" (", name_, " keeps no state named \"", key, "\")");
    MANTISSA_CHECK(staged[idx].has_value(), who, ": tensor \"", name, "\" has no step entry in \"state\"");
    const Tensor& p = *params[idx];
    MANTISSA_CHECK(t.defined() && t.is_floating_point(), who, ": tensor \"", name, "\" must be a defined floating "
                   "tensor");
    MANTISSA_CHECK(t.sizes() == p.sizes(), who, ": tensor \"", name, "\" has shape ", shape_str(t.sizes()),
                   " but parameter ", idx, " has shape ", shape_str(p.sizes()));
    Tensor fresh = empty_like(p);
    kernels::copy(fresh, t);
    for (const StateTensor& st : kStateTensors)
      if (key == st.name) {
        Tensor& slot = (*staged[idx]).*st.member;
        MANTISSA_CHECK(!slot.defined(), who, ": tensor \"", name, "\" appears twice");
        slot = fresh;
      }
  }
  for (size_t i = 0; i < staged.size(); ++i)
    if (staged[i]) check_loaded_state(*staged[i], i);

  // Commit.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    groups_[gi].set_options(std::move(new_options[gi]));
    groups_[gi].initial_lr = new_initial_lr[gi];
  }
  state_.clear();
  for (size_t i = 0; i < staged.size(); ++i)
    if (staged[i]) state_.emplace(params[i]->impl(), std::move(*staged[i]));
}

}  // namespace mantissa::optim
