// GradScaler: the per-optimizer stage machine, the gradient gathering around the fused
// unscale-and-check kernel (core/kernels/amp_scale.h), PyTorch's scale update rule
// (_amp_update_scale_) with the optional bounds, and the JSON state.
#include "amp/grad_scaler.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/kernels/amp_scale.h"
#include "core/kernels/copy.h"

namespace mantissa::amp {

using nlohmann::ordered_json;

namespace {

// A scale must be a positive finite F32 value.
float checked_scale(double value, const char* who, const char* what) {
  MANTISSA_CHECK(std::isfinite(value) && value > 0.0, who, ": ", what, " must be a positive finite number, got ",
                 value);
  const float f = static_cast<float>(value);
  MANTISSA_CHECK(std::isfinite(f) && f > 0.0f, who, ": ", what, " ", value,
                 " is not representable as a positive finite F32 value");
  return f;
}

void check_factors(double growth, double backoff, int64_t interval, const char* who) {
  MANTISSA_CHECK(std::isfinite(growth) && growth > 1.0, who, ": growth_factor must be > 1 (and finite), got ", growth);
  MANTISSA_CHECK(backoff > 0.0 && backoff < 1.0, who, ": backoff_factor must be in (0, 1), got ", backoff);
  MANTISSA_CHECK(interval >= 1, who, ": growth_interval must be >= 1, got ", interval);
}

void check_bounds(std::optional<double> min_scale, std::optional<double> max_scale, double scale, const char* who) {
  if (min_scale) checked_scale(*min_scale, who, "min_scale");
  if (max_scale) checked_scale(*max_scale, who, "max_scale");
  MANTISSA_CHECK(!min_scale || !max_scale || *min_scale <= *max_scale, who, ": min_scale ", *min_scale,
                 " is larger than max_scale ", *max_scale);
  MANTISSA_CHECK(!min_scale || scale >= *min_scale, who, ": the scale ", scale, " is below min_scale ", *min_scale);
  MANTISSA_CHECK(!max_scale || scale <= *max_scale, who, ": the scale ", scale, " is above max_scale ", *max_scale);
}

std::string param_label(size_t group, size_t index) {
  return "group " + std::to_string(group) + " parameter " + std::to_string(index);
}

}  // namespace

const char* stage_name(GradScaler::Stage stage) {
  switch (stage) {
    case GradScaler::Stage::Ready: return "READY";
    case GradScaler::Stage::Unscaled: return "UNSCALED";
    case GradScaler::Stage::Stepped: return "STEPPED";
  }
  return "?";
}

GradScaler::GradScaler(const GradScalerOptions& o)
    : enabled_(o.enabled()),
      scale_(static_cast<float>(o.init_scale())),
      growth_factor_(o.growth_factor()),
      backoff_factor_(o.backoff_factor()),
      growth_interval_(o.growth_interval()),
      min_scale_(o.min_scale()),
      max_scale_(o.max_scale()) {
  // PyTorch checks the options only when the scaler is enabled; so do we.
  if (!enabled_) return;
  constexpr const char* kWho = "GradScaler";
  scale_ = checked_scale(o.init_scale(), kWho, "init_scale");
  check_factors(growth_factor_, backoff_factor_, growth_interval_, kWho);
  check_bounds(min_scale_, max_scale_, scale_, kWho);
}

// scale --------------------------------------------------------------------------------------

Tensor GradScaler::scale(const Tensor& loss) const {
  if (!enabled_) return loss;
  MANTISSA_CHECK(loss.defined(), "GradScaler.scale: the loss is an undefined tensor");
  MANTISSA_CHECK(loss.is_floating_point(), "GradScaler.scale: the loss has dtype ", loss.dtype(),
                 " (shape ", shape_str(loss.sizes()), "); expected a floating tensor");
  // PyTorch multiplies by its F32 scale tensor of shape [1], which promotes F16/BF16 to F32.
  const Tensor l = is_low_precision(loss.dtype()) ? loss.to(DType::F32) : loss;
  return mul(l, static_cast<double>(scale_));
}

std::vector<Tensor> GradScaler::scale(const std::vector<Tensor>& outputs) const {
  std::vector<Tensor> out;
  out.reserve(outputs.size());
  for (const Tensor& t : outputs) out.push_back(scale(t));
  return out;
}

// unscale_ / step ----------------------------------------------------------------------------

GradScaler::PerOptimizer& GradScaler::state_of(const optim::Optimizer& optimizer) {
  return per_optimizer_[&optimizer];
}

GradScaler::Stage GradScaler::stage(const optim::Optimizer& optimizer) const {
  auto it = per_optimizer_.find(&optimizer);
  return it == per_optimizer_.end() ? Stage::Ready : it->second.stage;
}

void GradScaler::unscale_(optim::Optimizer& optimizer) {
  if (!enabled_) return;
  constexpr const char* kWho = "GradScaler.unscale_";
  PerOptimizer& st = state_of(optimizer);
  MANTISSA_CHECK(st.stage != Stage::Unscaled, kWho, ": unscale_() has already been called on this ", optimizer.name(),
                 " optimizer since the last update()");
  MANTISSA_CHECK(st.stage != Stage::Stepped, kWho, ": unscale_() is being called after step() (on this ",
                 optimizer.name(), " optimizer, before update())");
  NoGradGuard no_grad;
  // FP32 division can be imprecise under some compile options, so PyTorch takes the reciprocal
  // in F64 and rounds it to F32; the product g * inv is then exactly PyTorch's.
  const float inv = static_cast<float>(1.0 / static_cast<double>(scale_));
  st.cpu_found_inf = false;
  st.device_flags.clear();
  st.found_inf.reset();

  // An optimizer that steps on copies of its parameters' gradients (MasterWeights: F32 masters
  // of 16-bit parameters) produces them unscaled itself, raising one flag per device.
  {
    std::map<std::pair<int, int>, Tensor> flags;
    const std::function<Tensor(const Device&)> found_inf_for = [&flags](const Device& d) {
      Tensor& f = flags[{static_cast<int>(d.type), d.index}];
      if (!f.defined()) f = kernels::make_found_inf(d);
      return f;
    };
    if (optimizer.unscale_grads_(inv, found_inf_for)) {
      for (auto& [key, flag] : flags) st.device_flags.push_back(flag);
      st.recorded = !flags.empty();
      st.stage = Stage::Unscaled;
      return;
    }
  }

  // Gather every gradient, checked, by device; non-contiguous ones through a dense copy.
  std::vector<Tensor> cpu;
  std::map<int, std::vector<Tensor>> cuda;
  std::vector<std::pair<Tensor, Tensor>> write_back;  // (gradient, dense copy)
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const Tensor& p = groups[g].params()[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      auto label = [&] {
        auto it = names_.find(p.impl());
        return it != names_.end() ? "'" + it->second + "' (" + param_label(g, i) + ")" : param_label(g, i);
      };
      MANTISSA_CHECK(grad.is_floating_point(), kWho, ": the gradient of ", label(), " has dtype ", grad.dtype(),
                     "; expected a floating dtype");
      MANTISSA_CHECK(!is_low_precision(grad.dtype()), kWho, ": the gradient of ", label(), " (shape ",
                     shape_str(grad.sizes()), ") is ", grad.dtype(), ". PyTorch refuses to unscale 16-bit gradients "
                     "(\"Attempting to unscale FP16 gradients\") and so does GradScaler: keep the parameters in F32 "
                     "under autocast (their gradients come back F32), or use an FP32 master-weight policy "
                     "(fp16-master / bf16-master), which unscales into F32 master gradients");
      if (!grad.is_contiguous()) {
        Tensor dense = empty_like(grad);
        kernels::copy(dense, grad);
        write_back.emplace_back(grad, dense);
        grad = dense;
      }
      if (grad.is_cuda()) cuda[grad.device().index].push_back(grad);
      else cpu.push_back(grad);
    }
  }

  st.recorded = !cpu.empty() || !cuda.empty();
  if (!cpu.empty()) st.cpu_found_inf = kernels::unscale_and_check(cpu, inv);
  for (auto& [index, grads] : cuda) {
    Tensor flag = kernels::make_found_inf(Device(DeviceType::CUDA, index));
    kernels::unscale_and_check_(grads, inv, flag);  // no host synchronization
    st.device_flags.push_back(flag);
  }
  for (auto& [grad, dense] : write_back) {
    kernels::copy(grad, dense);
    grad.bump_version();
  }
  st.stage = Stage::Unscaled;
}

bool GradScaler::read_found_inf(PerOptimizer& st) {
  if (!st.found_inf) {
    bool found = st.cpu_found_inf;
    for (const Tensor& flag : st.device_flags) found = kernels::read_found_inf(flag) || found;
    st.found_inf = found;
    st.device_flags.clear();
  }
  return *st.found_inf;
}

std::string GradScaler::first_nonfinite(const optim::Optimizer& optimizer) const {
  // Runs only on skipped steps: a plain check (inv_scale 1 writes nothing) per gradient in
  // optimizer order until one holds an Inf/NaN.
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t i = 0; i < groups[g].params().size(); ++i) {
      const Tensor& p = groups[g].params()[i];
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (!grad.is_contiguous()) {
        Tensor dense = empty_like(grad);
        kernels::copy(dense, grad);
        grad = dense;
      }
      const Tensor list[] = {grad};
      if (kernels::unscale_and_check(list, 1.0f)) {
        auto it = names_.find(p.impl());
        return it != names_.end() ? it->second : param_label(g, i);
      }
    }
  }
  return "";  // a gradient fixed after unscale_ (or a flag from another path)
}

StepResult GradScaler::step(optim::Optimizer& optimizer) {
  StepResult result;
  if (!enabled_) {
    optimizer.step();
    result.applied = true;
    return result;
  }
  constexpr const char* kWho = "GradScaler.step";
  MANTISSA_CHECK(state_of(optimizer).stage != Stage::Stepped, kWho, ": step() has already been called on this ",
                 optimizer.name(), " optimizer since the last update()");
  if (state_of(optimizer).stage == Stage::Ready) unscale_(optimizer);
  PerOptimizer& st = state_of(optimizer);  // element references are stable in unordered_map
  MANTISSA_CHECK(st.recorded, kWho, ": no parameter of this ", optimizer.name(), " optimizer has a gradient, so no "
                 "inf checks were recorded (run backward on scaler.scale(loss) before step)");
  if (!read_found_inf(st)) {
    optimizer.step();
    result.applied = true;
    consecutive_skipped_ = 0;
    last_skipped_ = false;
  } else {
    ++skipped_steps_;
    ++consecutive_skipped_;
    last_skipped_ = true;
    result.first_nonfinite = first_nonfinite(optimizer);
  }
  st.stage = Stage::Stepped;
  return result;
}

// update -------------------------------------------------------------------------------------

void GradScaler::update(std::optional<double> new_scale) {
  if (!enabled_) return;
  constexpr const char* kWho = "GradScaler.update";
  if (new_scale) {
    scale_ = checked_scale(*new_scale, kWho, "new_scale");
  } else {
    bool recorded = false, found = false;
    for (auto& [opt, st] : per_optimizer_) {
      if (!st.recorded) continue;
      recorded = true;
      found = read_found_inf(st) || found;
    }
    MANTISSA_CHECK(recorded, kWho, ": no inf checks were recorded since the last update() (call unscale_ or step on "
                   "an optimizer whose parameters have gradients first)");
    // PyTorch's _amp_update_scale_: the products are taken in F64 (the factors are doubles) and
    // rounded to the F32 scale.
    if (found) {
      double next = static_cast<double>(scale_) * backoff_factor_;
      if (min_scale_ && next < *min_scale_) next = *min_scale_;
      scale_ = static_cast<float>(next);
      growth_tracker_ = 0;
    } else {
      const int64_t successful = growth_tracker_ + 1;
      // PyTorch tests == growth_interval; >= also grows when the interval was lowered below
      // the tracker (set_growth_interval, load_state_dict), where == would never fire again.
      if (successful >= growth_interval_) {
        double grown = static_cast<double>(scale_) * growth_factor_;
        if (max_scale_ && grown > *max_scale_) grown = std::max(*max_scale_, static_cast<double>(scale_));
        const float g = static_cast<float>(grown);
        if (std::isfinite(g)) scale_ = g;
        growth_tracker_ = 0;
      } else {
        growth_tracker_ = successful;
      }
    }
  }
  per_optimizer_.clear();
}

// accessors ----------------------------------------------------------------------------------

double GradScaler::get_scale() const { return enabled_ ? static_cast<double>(scale_) : 1.0; }

void GradScaler::set_growth_factor(double v) {
  check_factors(v, backoff_factor_, growth_interval_, "GradScaler.set_growth_factor");
  growth_factor_ = v;
}

void GradScaler::set_backoff_factor(double v) {
  check_factors(growth_factor_, v, growth_interval_, "GradScaler.set_backoff_factor");
  backoff_factor_ = v;
}

void GradScaler::set_growth_interval(int64_t v) {
  check_factors(growth_factor_, backoff_factor_, v, "GradScaler.set_growth_interval");
  growth_interval_ = v;
}

void GradScaler::set_parameter_names(const std::vector<std::pair<std::string, Tensor>>& named_parameters) {
  names_.clear();
  for (const auto& [name, t] : named_parameters)
    if (t.defined()) names_[t.impl()] = name;
}

// state --------------------------------------------------------------------------------------

GradScalerState GradScaler::state_dict() const {
  GradScalerState s;
  s.enabled = enabled_;
  s.scale = scale_;
  s.growth_factor = growth_factor_;
  s.backoff_factor = backoff_factor_;
  s.growth_interval = growth_interval_;
  s.growth_tracker = growth_tracker_;
  s.min_scale = min_scale_;
  s.max_scale = max_scale_;
  s.skipped_steps = skipped_steps_;
  s.consecutive_skipped_steps = consecutive_skipped_;
  return s;
}

void GradScaler::load_state_dict(const GradScalerState& s) {
  if (!enabled_) return;
  constexpr const char* kWho = "GradScaler.load_state_dict";
  MANTISSA_CHECK(s.enabled, kWho, ": the source state dict is empty, possibly because it was saved from a disabled "
                 "GradScaler");
  const float scale = checked_scale(s.scale, kWho, "scale");
  MANTISSA_CHECK(static_cast<double>(scale) == s.scale, kWho, ": scale ", s.scale, " is not an F32 value");
  check_factors(s.growth_factor, s.backoff_factor, s.growth_interval, kWho);
  check_bounds(s.min_scale, s.max_scale, s.scale, kWho);
  MANTISSA_CHECK(s.growth_tracker >= 0 && s.skipped_steps >= 0 && s.consecutive_skipped_steps >= 0 &&
                     s.consecutive_skipped_steps <= s.skipped_steps,
                 kWho, ": growth tracker ", s.growth_tracker, ", skipped steps ", s.skipped_steps,
                 " and consecutive skipped steps ", s.consecutive_skipped_steps,
                 " must be >= 0 (consecutive at most the total)");
  scale_ = scale;
  growth_factor_ = s.growth_factor;
  backoff_factor_ = s.backoff_factor;
  growth_interval_ = s.growth_interval;
  growth_tracker_ = s.growth_tracker;
  min_scale_ = s.min_scale;
  max_scale_ = s.max_scale;
  skipped_steps_ = s.skipped_steps;
  consecutive_skipped_ = s.consecutive_skipped_steps;
  last_skipped_ = false;
}

std::string GradScalerState::to_json() const {
  if (!enabled) return "{}";
  ordered_json j;
  j["scale"] = scale;
  j["growth_factor"] = growth_factor;
  j["backoff_factor"] = backoff_factor;
  j["growth_interval"] = growth_interval;
  j["_growth_tracker"] = growth_tracker;
  j["min_scale"] = min_scale ? ordered_json(*min_scale) : ordered_json(nullptr);
  j["max_scale"] = max_scale ? ordered_json(*max_scale) : ordered_json(nullptr);
  j["skipped_steps"] = skipped_steps;
  j["consecutive_skipped_steps"] = consecutive_skipped_steps;
  return j.dump();
}

GradScalerState GradScalerState::from_json(const std::string& text) {
  constexpr const char* kWho = "GradScalerState.from_json";
  ordered_json j;
  try {
    j = ordered_json::parse(text);
  } catch (const ordered_json::exception& e) {
    MANTISSA_ERROR(kWho, ": not valid JSON (", e.what(), ")");
  }
  MANTISSA_CHECK(j.is_object(), kWho, ": expected a JSON object, got ", j.dump());
  GradScalerState s;
  if (j.empty()) {
    s.enabled = false;
    return s;
  }
  static const std::set<std::string> kKnown = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                                               "_growth_tracker", "min_scale", "max_scale", "skipped_steps",
                                               "consecutive_skipped_steps"};
  for (auto it = j.begin(); it != j.end(); ++it)
    MANTISSA_CHECK(kKnown.count(it.key()) != 0, kWho, ": unknown key \"", it.key(), "\"");
  auto number = [&](const char* key) {
    auto it = j.find(key);
    MANTISSA_CHECK(it != j.end(), kWho, ": missing key \"", key, "\"");
    MANTISSA_CHECK(it->is_number(), kWho, ": \"", key, "\" must be a number, got ", it->dump());
    return it->get<double>();
  };
  auto integer = [&](const char* key, std::optional<int64_t> fallback) -> int64_t {
    auto it = j.find(key);
    if (it == j.end() && fallback) return *fallback;
    MANTISSA_CHECK(it != j.end(), kWho, ": missing key \"", key, "\"");
    MANTISSA_CHECK(it->is_number_integer(), kWho, ": \"", key, "\" must be an integer, got ", it->dump());
    return it->get<int64_t>();
  };
  auto optional_number = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    MANTISSA_CHECK(it->is_number(), kWho, ": \"", key, "\" must be a number or null, got ", it->dump());
    return it->get<double>();
  };
  s.scale = number("scale");
  s.growth_factor = number("growth_factor");
  s.backoff_factor = number("backoff_factor");
  s.growth_interval = integer("growth_interval", std::nullopt);
  s.growth_tracker = integer("_growth_tracker", std::nullopt);
  s.min_scale = optional_number("min_scale");
  s.max_scale = optional_number("max_scale");
  s.skipped_steps = integer("skipped_steps", 0);
  s.consecutive_skipped_steps = integer("consecutive_skipped_steps", 0);
  return s;
}

}  // namespace mantissa::amp
