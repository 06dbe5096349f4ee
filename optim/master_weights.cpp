// MasterWeights: master creation and checks, the widen/unscale and round-back passes (grouped
// per device and dtype into one fused kernel call each), and the state_dict that carries the
// masters next to the inner optimizer's state.
#include "optim/master_weights.h"

#include <charconv>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/kernels/copy.h"
#include "optim/adam.h"
#include "optim/sgd.h"

namespace mantissa::optim {

namespace {

const char* inner_name(const OptimizerOptions& o) {
  if (dynamic_cast<const SGDOptions*>(&o)) return "SGD";
  if (dynamic_cast<const AdamWOptions*>(&o)) return "AdamW";
  if (dynamic_cast<const AdamOptions*>(&o)) return "Adam";
  MANTISSA_ERROR("MasterWeights: no inner optimizer takes ", o.type_name(),
                 " (expected SGDOptions, AdamOptions or AdamWOptions)");
}

std::unique_ptr<Optimizer> make_inner(std::vector<ParamGroup> groups, const OptimizerOptions& defaults) {
  if (const auto* o = dynamic_cast<const SGDOptions*>(&defaults)) return std::make_unique<SGD>(std::move(groups), *o);
  if (const auto* o = dynamic_cast<const AdamWOptions*>(&defaults))
    return std::make_unique<AdamW>(std::move(groups), *o);
  if (const auto* o = dynamic_cast<const AdamOptions*>(&defaults)) return std::make_unique<Adam>(std::move(groups), *o);
  MANTISSA_ERROR("MasterWeights: no inner optimizer takes ", defaults.type_name(),
                 " (expected SGDOptions, AdamOptions or AdamWOptions)");
}

// Lists of kernel slots keyed by (device, dtype), reused across steps.
struct CastList {
  Device device;
  DType dtype;
  std::vector<kernels::CastSlot> slots;
};

void add_cast(std::vector<CastList>& lists, const Device& device, DType dtype, const kernels::CastSlot& slot) {
  for (CastList& l : lists) {
    if (l.device == device && l.dtype == dtype) {
      l.slots.push_back(slot);
      return;
    }
  }
  lists.push_back(CastList{device, dtype, {slot}});
}

thread_local std::vector<CastList> t_cast_lists;

}  // namespace

MasterWeights::Prepared MasterWeights::prepare(std::vector<ParamGroup> groups, const OptimizerOptions& defaults) {
  Prepared p;
  p.name = std::string("MasterWeights(") + inner_name(defaults) + ")";
  const std::string& name = p.name;
  MANTISSA_CHECK(!groups.empty(), name, ": got an empty parameter list");
  NoGradGuard no_grad;
  std::unordered_set<const TensorImpl*> seen;
  for (size_t g = 0; g < groups.size(); ++g) {
    std::vector<Tensor> ms;
    const std::vector<Tensor>& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& w = params[i];
      MANTISSA_CHECK(w.defined(), name, ": parameter ", i, " of group ", g, " is an undefined tensor");
      MANTISSA_CHECK(w.dtype() == DType::F16 || w.dtype() == DType::BF16 || w.dtype() == DType::F32, name,
                     ": parameter ", i, " of group ", g, " (shape ", shape_str(w.sizes()), ") has dtype ", w.dtype(),
                     "; master weights serve F16/BF16 working parameters (F32 ones, e.g. BatchNorm's, are their "
                     "own masters)");
      MANTISSA_CHECK(w.is_leaf(), name, ": parameter ", i, " of group ", g, " (shape ", shape_str(w.sizes()),
                     ") is not a leaf tensor (it has ", w.grad_fn_name(), ")");
      MANTISSA_CHECK(w.is_contiguous(), name, ": parameter ", i, " of group ", g, " (shape ", shape_str(w.sizes()),
                     ", strides ", shape_str(w.strides()), ") is not contiguous");
      MANTISSA_CHECK(seen.insert(w.impl()).second, name, ": parameter ", i, " of group ", g, " (shape ",
                     shape_str(w.sizes()), ") appears more than once in the parameter groups");
      Tensor m = w;
      if (is_low_precision(w.dtype())) {
        // Widening is exact: the masters start equal to the model.
        m = w.detach().to(DType::F32);
        m.requires_grad_(true);
      }
      ms.push_back(m);
      p.working.push_back(w);
      p.masters.push_back(m);
    }
    ParamGroup mg = groups[g].has_options() ? ParamGroup(std::move(ms), groups[g].options()) : ParamGroup(std::move(ms));
    mg.initial_lr = groups[g].initial_lr;
    p.master_groups.push_back(std::move(mg));
  }
  return p;
}

MasterWeights::MasterWeights(std::vector<Tensor> params, const OptimizerOptions& defaults)
    : MasterWeights(std::vector<ParamGroup>{ParamGroup(std::move(params))}, defaults) {
  MANTISSA_CHECK(!working_.empty(), name_, ": got an empty parameter list");
}

MasterWeights::MasterWeights(std::vector<ParamGroup> groups, const OptimizerOptions& defaults)
    : MasterWeights(prepare(std::move(groups), defaults), defaults) {}

MasterWeights::MasterWeights(Prepared&& p, const OptimizerOptions& defaults)
    : Optimizer(std::move(p.name), std::move(p.master_groups), defaults.clone()),
      working_(std::move(p.working)),
      masters_(std::move(p.masters)),
      grad_buffers_(working_.size()) {
  for (size_t i = 0; i < working_.size(); ++i) index_of_.emplace(working_[i].impl(), i);
  inner_ = make_inner(groups_, defaults);
}

const Tensor& MasterWeights::master(const Tensor& working) const {
  auto it = index_of_.find(working.impl());
  MANTISSA_CHECK(working.defined() && it != index_of_.end(), name_, ".master: the tensor (shape ",
                 working.defined() ? shape_str(working.sizes()) : std::string("undefined"),
                 ") is not one of this optimizer's working parameters");
  return masters_[it->second];
}

// The outer groups (what schedulers and users change) are the truth; the inner optimizer gets
// a copy of their options right before it reads them.
void MasterWeights::sync_inner_options() const {
  std::vector<ParamGroup>& inner_groups = inner_->param_groups();
  MANTISSA_CHECK(inner_groups.size() == groups_.size(), name_, ": has ", groups_.size(), " parameter groups but ",
                 inner_groups.size(), " were given at construction; add_param_group is not supported here (build a "
                 "new MasterWeights over all groups)");
  for (size_t g = 0; g < groups_.size(); ++g) {
    inner_groups[g].set_options(groups_[g].options().clone());
    inner_groups[g].initial_lr = groups_[g].initial_lr;
  }
}

void MasterWeights::fill_master_grads(float inv_scale, const std::function<Tensor(const Device&)>* found_inf_for) {
  NoGradGuard no_grad;
  const bool unscale = inv_scale != 1.0f || found_inf_for != nullptr;
  std::vector<CastList>& lists = t_cast_lists;
  std::vector<Tensor> dense;  // contiguous copies of strided gradients, alive until the kernels ran
  for (size_t i = 0; i < working_.size(); ++i) {
    const Tensor& w = working_[i];
    Tensor g = w.grad();
    if (g.defined()) {
      MANTISSA_CHECK(g.sizes() == w.sizes() && g.dtype() == w.dtype() && g.device() == w.device(), name_,
                     ": the gradient of parameter ", i, " is ", shape_str(g.sizes()), " ", g.dtype(), " on ",
                     g.device(), " but the parameter is ", shape_str(w.sizes()), " ", w.dtype(), " on ", w.device());
    }
    const Tensor& m = masters_[i];
    if (m.is_same(w)) {
      // An F32 parameter is its own master: its gradient only needs the unscale, in place.
      if (!g.defined() || !unscale) continue;
      if (!g.is_contiguous()) {
        g = g.contiguous();
        w.mutable_grad() = g;
      }
      g.bump_version();
      add_cast(lists, w.device(), DType::F32, kernels::CastSlot{g.data_ptr(), g.data_ptr(), g.numel()});
      continue;
    }
    if (!g.defined()) {
      m.mutable_grad() = Tensor();  // no gradient this iteration: the inner step skips the master
      continue;
    }
    if (grads_ready_ && m.grad().defined()) {
      // Widened already (prepare_grads): unscale the F32 copy in place. Widening is exact, so
      // this gives the same bits as the fused pass.
      if (unscale) {
        const Tensor& mg = m.grad();
        mg.bump_version();
        add_cast(lists, w.device(), DType::F32, kernels::CastSlot{mg.data_ptr(), mg.data_ptr(), mg.numel()});
      }
      continue;
    }
    if (!g.is_contiguous()) {
      dense.push_back(g.contiguous());
      g = dense.back();
    }
    Tensor& buf = grad_buffers_[i];
    if (!buf.defined()) buf = empty_like(m);
    buf.bump_version();
    add_cast(lists, w.device(), w.dtype(), kernels::CastSlot{g.data_ptr(), buf.data_ptr(), g.numel()});
    if (!m.grad().is_same(buf)) m.mutable_grad() = buf;
  }
  for (CastList& l : lists) {
    if (!l.slots.empty()) {
      const Tensor flag = found_inf_for != nullptr ? (*found_inf_for)(l.device) : Tensor();
      kernels::widen_unscale_grads(l.device, l.dtype, l.slots, inv_scale, flag);
    }
    l.slots.clear();
  }
  grads_ready_ = true;
}

bool MasterWeights::unscale_grads_(float inv_scale, const std::function<Tensor(const Device&)>& found_inf_for) {
  fill_master_grads(inv_scale, &found_inf_for);
  return true;
}

void MasterWeights::prepare_grads() {
  if (!grads_ready_) fill_master_grads(1.0f, nullptr);
}

void MasterWeights::round_into_working() {
  std::vector<CastList>& lists = t_cast_lists;
  for (size_t i = 0; i < working_.size(); ++i) {
    const Tensor& w = working_[i];
    const Tensor& m = masters_[i];
    if (m.is_same(w) || !m.grad().defined()) continue;  // own master, or not stepped
    w.bump_version();
    add_cast(lists, w.device(), w.dtype(), kernels::CastSlot{m.data_ptr(), w.data_ptr(), m.numel()});
  }
  for (CastList& l : lists) {
    if (!l.slots.empty()) kernels::round_masters(l.device, l.dtype, l.slots);
    l.slots.clear();
  }
}

void MasterWeights::step() {
  NoGradGuard no_grad;
  if (!grads_ready_) fill_master_grads(1.0f, nullptr);
  sync_inner_options();
  grads_ready_ = false;
  inner_->step();
  round_into_working();
}

void MasterWeights::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (size_t i = 0; i < working_.size(); ++i) {
    const Tensor& w = working_[i];
    if (!masters_[i].is_same(w)) masters_[i].mutable_grad() = Tensor();
    if (!w.grad().defined()) continue;
    Tensor& grad = w.mutable_grad();
    if (set_to_none) {
      grad = Tensor();
    } else {
      if (grad.grad_fn()) grad.detach_();
      else if (grad.requires_grad()) grad.requires_grad_(false);
      grad.zero_();
    }
  }
  grads_ready_ = false;
}

OptimizerStateDict MasterWeights::state_dict() const {
  sync_inner_options();
  OptimizerStateDict sd = inner_->state_dict();
  sd.metadata["optimizer"] = name_;
  for (size_t i = 0; i < masters_.size(); ++i)
    if (!masters_[i].is_same(working_[i]))
      sd.tensors.emplace_back("state." + std::to_string(i) + ".master", masters_[i].detach());
  return sd;
}

void MasterWeights::load_state_dict(const OptimizerStateDict& sd) {
  const std::string who = name_ + ".load_state_dict";
  auto type_it = sd.metadata.find("optimizer");
  MANTISSA_CHECK(type_it != sd.metadata.end(), who, ": the state dict has no \"optimizer\" metadata entry");
  MANTISSA_CHECK(type_it->second == name_, who, ": the state dict was saved by ", type_it->second, ", not ", name_,
                 type_it->second == inner_->name() ? " (a plain optimizer keeps no F32 masters)" : "");

  // Masters out, everything else to the inner optimizer.
  OptimizerStateDict inner_sd;
  inner_sd.metadata = sd.metadata;
  inner_sd.metadata["optimizer"] = inner_->name();
  std::vector<Tensor> loaded(masters_.size());
  for (const auto& [name, t] : sd.tensors) {
    const std::string_view s(name);
    if (!(s.starts_with("state.") && s.ends_with(".master"))) {
      inner_sd.tensors.emplace_back(name, t);
      continue;
    }
    const std::string_view digits = s.substr(6, s.size() - 6 - 7);
    size_t idx = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), idx);
    MANTISSA_CHECK(!digits.empty() && ec == std::errc() && ptr == digits.data() + digits.size(), who,
                   ": unexpected tensor \"", name, "\" (expected state.<parameter index>.master)");
    MANTISSA_CHECK(idx < masters_.size(), who, ": tensor \"", name, "\" is for parameter ", idx,
                   ", but this optimizer has ", masters_.size(), " parameters");
    MANTISSA_CHECK(!masters_[idx].is_same(working_[idx]), who, ": tensor \"", name, "\" is a master for parameter ",
                   idx, ", which is ", working_[idx].dtype(), " and its own master");
    MANTISSA_CHECK(!loaded[idx].defined(), who, ": tensor \"", name, "\" appears twice");
    MANTISSA_CHECK(t.defined() && t.is_floating_point(), who, ": tensor \"", name,
                   "\" must be a defined floating tensor");
    MANTISSA_CHECK(t.sizes() == masters_[idx].sizes(), who, ": tensor \"", name, "\" has shape ",
                   shape_str(t.sizes()), " but parameter ", idx, " has shape ", shape_str(masters_[idx].sizes()));
    loaded[idx] = t;
  }
  for (size_t i = 0; i < masters_.size(); ++i) {
    MANTISSA_CHECK(masters_[i].is_same(working_[i]) || loaded[i].defined(), who,
                   ": the state dict has no master for parameter ", i, " (", shape_str(working_[i].sizes()), " ",
                   working_[i].dtype(), "); expected a tensor \"state.", i, ".master\"");
  }
  inner_->load_state_dict(inner_sd);  // validates everything before it changes anything

  // Commit: the masters, their rounded working copies, and the loaded options on the outer groups.
  NoGradGuard no_grad;
  std::vector<CastList>& lists = t_cast_lists;
  for (size_t i = 0; i < masters_.size(); ++i) {
    if (!loaded[i].defined()) continue;
    kernels::copy(masters_[i], loaded[i]);
    masters_[i].bump_version();
    masters_[i].mutable_grad() = Tensor();
    working_[i].bump_version();
    add_cast(lists, working_[i].device(), working_[i].dtype(),
             kernels::CastSlot{masters_[i].data_ptr(), working_[i].data_ptr(), masters_[i].numel()});
  }
  for (CastList& l : lists) {
    if (!l.slots.empty()) kernels::round_masters(l.device, l.dtype, l.slots);
    l.slots.clear();
  }
  const std::vector<ParamGroup>& inner_groups = inner_->param_groups();
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].set_options(inner_groups[g].options().clone());
    groups_[g].initial_lr = inner_groups[g].initial_lr;
  }
  grads_ready_ = false;
}

}  // namespace mantissa::optim
