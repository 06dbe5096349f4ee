// nn::Module: registries, recursive listings with dotted names, mode, conversion, zero_grad,
// state_dict/load_state_dict (validate-everything-then-copy) and PyTorch-style printing.
#include "nn/module.h"

#include <algorithm>

#include <cxxabi.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <sstream>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>

namespace mantissa::nn {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Every line but the first indented by n spaces (torch.nn.modules.module._addindent).
std::string add_indent(const std::string& s, int n) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    out += c;
    if (c == '\n') out.append(static_cast<size_t>(n), ' ');
  }
  return out;
}

}  // namespace

std::string Module::name() const {
  const char* mangled = typeid(*this).name();
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string full = (status == 0 && demangled) ? demangled : mangled;
  std::free(demangled);
  // Strip namespaces but not template arguments: the last "::" outside any <...>.
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    if (full[i] == '<') ++depth;
    if (full[i] == '>') --depth;
    if (depth == 0 && full[i] == ':' && i + 1 < full.size() && full[i + 1] == ':') start = i + 2;
  }
  return full.substr(start);
}

// Registration --------------------------------------------------------------------------------

void Module::check_new_name(const std::string& name, const char* what) const {
  MANTISSA_CHECK(!name.empty(), what, ": the name must not be empty (in ", this->name(), ")");
  MANTISSA_CHECK(name.find('.') == std::string::npos, what, ": the name '", name,
                 "' must not contain '.' (dots separate the levels of nested names)");
  for (const auto& s : parameters_)
    MANTISSA_CHECK(s.name != name, what, ": ", this->name(), " already has a parameter named '", name, "'");
  for (const auto& s : buffers_)
    MANTISSA_CHECK(s.name != name, what, ": ", this->name(), " already has a buffer named '", name, "'");
  for (const auto& c : children_)
    MANTISSA_CHECK(c.first != name, what, ": ", this->name(), " already has a submodule named '", name, "'");
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor, bool requires_grad) {
  check_new_name(name, "register_parameter");
  if (tensor.defined()) {
    MANTISSA_CHECK(tensor.is_leaf(), "register_parameter: '", name, "' of ", this->name(),
                   " is not a leaf tensor (it was computed by ", tensor.grad_fn_name(),
                   "); register tensor.detach() instead");
    MANTISSA_CHECK(!requires_grad || tensor.is_floating_point(), "register_parameter: '", name, "' of ",
                   this->name(), " has dtype ", tensor.dtype(),
                   " and cannot require grad; pass requires_grad=false or a floating tensor");
    if (requires_grad != tensor.requires_grad()) tensor.requires_grad_(requires_grad);
  }
  parameters_.push_back({name, std::move(tensor), true});
  return parameters_.back().tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor, bool persistent) {
  check_new_name(name, "register_buffer");
  buffers_.push_back({name, std::move(tensor), persistent});
  return buffers_.back().tensor;
}

void Module::add_child(const std::string& name, ModulePtr module) {
  check_new_name(name, "register_module");
  MANTISSA_CHECK(module != nullptr, "register_module: submodule '", name, "' of ", this->name(), " is null");
  MANTISSA_CHECK(module.get() != this, "register_module: ", this->name(), " cannot be its own submodule '", name, "'");
  children_.emplace_back(name, std::move(module));
}

void Module::set_child(const std::string& name, ModulePtr module) {
  MANTISSA_CHECK(module != nullptr, "replace_module: the new submodule '", name, "' of ", this->name(), " is null");
  for (auto& c : children_) {
    if (c.first == name) {
      c.second = std::move(module);
      return;
    }
  }
  MANTISSA_ERROR("replace_module: ", this->name(), " has no submodule named '", name, "'");
}

namespace {
template <typename Slots>
auto find_slot(Slots& slots, const std::string& name) {
  return std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.name == name; });
}
}  // namespace

Tensor Module::remove_parameter(const std::string& name) {
  auto it = find_slot(parameters_, name);
  MANTISSA_CHECK(it != parameters_.end(), "remove_parameter: ", this->name(), " has no parameter named '", name, "'");
  Tensor t = std::move(it->tensor);
  parameters_.erase(it);
  return t;
}

Tensor Module::remove_buffer(const std::string& name) {
  auto it = find_slot(buffers_, name);
  MANTISSA_CHECK(it != buffers_.end(), "remove_buffer: ", this->name(), " has no buffer named '", name, "'");
  Tensor t = std::move(it->tensor);
  buffers_.erase(it);
  return t;
}

ModulePtr Module::remove_module(const std::string& name) {
  auto it = std::find_if(children_.begin(), children_.end(), [&](const auto& c) { return c.first == name; });
  MANTISSA_CHECK(it != children_.end(), "remove_module: ", this->name(), " has no submodule named '", name, "'");
  ModulePtr m = std::move(it->second);
  children_.erase(it);
  return m;
}

void Module::set_optional_child(ModulePtr& slot, const std::string& name, ModulePtr module, const char* setter) {
  MANTISSA_CHECK(module != nullptr, this->name(), "::", setter, ": the fake quantizer is null (an attached one cannot ",
                 "be removed; disable it with FakeQuantize::disable_fake_quant)");
  if (slot) {
    set_child(name, module);
  } else {
    add_child(name, module);
  }
  slot = std::move(module);
}

bool Module::has_parameter(const std::string& name) const { return find_slot(parameters_, name) != parameters_.end(); }
bool Module::has_buffer(const std::string& name) const { return find_slot(buffers_, name) != buffers_.end(); }

// Listings ------------------------------------------------------------------------------------

void Module::visit_slots(const std::string& prefix, bool params, bool bufs, bool persistent_only, bool recurse,
                         const std::function<void(const std::string&, const Tensor&)>& fn) const {
  if (params) {
    for (const auto& s : parameters_)
      if (s.tensor.defined()) fn(join_name(prefix, s.name), s.tensor);
  }
  if (bufs) {
    for (const auto& s : buffers_)
      if (s.tensor.defined() && (s.persistent || !persistent_only)) fn(join_name(prefix, s.name), s.tensor);
  }
  if (recurse) {
    for (const auto& [name, child] : children_)
      child->visit_slots(join_name(prefix, name), params, bufs, persistent_only, true, fn);
  }
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  visit_slots("", true, false, false, recurse, [&](const std::string& n, const Tensor& t) {
    if (seen.insert(t.impl()).second) out.emplace_back(n, t);
  });
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::unordered_set<const TensorImpl*> seen;
  visit_slots("", false, true, false, recurse, [&](const std::string& n, const Tensor& t) {
    if (seen.insert(t.impl()).second) out.emplace_back(n, t);
  });
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_buffers(recurse)) out.push_back(t);
  return out;
}

NamedModules Module::named_children() const { return children_; }

std::vector<ModulePtr> Module::children() const {
  std::vector<ModulePtr> out;
  for (const auto& c : children_) out.push_back(c.second);
  return out;
}

void Module::collect_modules(const std::string& prefix, NamedModules& out, std::vector<const Module*>& seen) {
  for (const auto& [name, child] : children_) {
    bool dup = false;
    for (const Module* m : seen) dup = dup || m == child.get();
    if (dup) continue;
    seen.push_back(child.get());
    const std::string full = join_name(prefix, name);
    out.emplace_back(full, child);
    child->collect_modules(full, out, seen);
  }
}

NamedModules Module::named_modules(const std::string& prefix, bool include_self) {
  NamedModules out;
  std::vector<const Module*> seen{this};
  if (include_self) {
    ModulePtr self = weak_from_this().lock();
    MANTISSA_CHECK(self != nullptr, "named_modules: ", name(),
                   " is not held by a std::shared_ptr, so it cannot list itself (create it with std::make_shared, "
                   "or pass include_self=false)");
    out.emplace_back(prefix, self);
  }
  collect_modules(prefix, out, seen);
  return out;
}

std::vector<ModulePtr> Module::modules(bool include_self) {
  std::vector<ModulePtr> out;
  for (auto& [n, m] : named_modules("", include_self)) out.push_back(m);
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  fn(*this);
  for (auto& c : children_) c.second->apply(fn);
}

// Mode and conversion -------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

namespace {

// Converts every (distinct) tensor first and only then swaps the data in, so a conversion that
// fails (a device this build lacks) leaves the whole module as it was. Handles keep their
// identity (set_data); a grad follows its tensor.
template <typename Visit, typename F>
void convert_all(Visit&& visit, F&& convert) {
  NoGradGuard no_grad;
  struct Pending {
    Tensor target, data, grad;
  };
  std::vector<Pending> pending;
  std::unordered_set<const TensorImpl*> seen;
  visit([&](const std::string&, const Tensor& t) {
    if (!seen.insert(t.impl()).second) return;
    Tensor grad = t.grad();
    pending.push_back({t, convert(t.detach()), grad.defined() ? convert(grad.detach()) : Tensor()});
  });
  for (auto& p : pending) {
    if (!p.data.is_same(p.target)) p.target.set_data(p.data);
    if (p.grad.defined()) p.target.set_grad(p.grad);
  }
}

}  // namespace

void Module::to(Device device, DType dtype) {
  MANTISSA_CHECK(is_floating(dtype), "Module::to: ", name(), " can only be converted to a floating dtype (got ",
                 dtype, "); integer buffers keep their dtype");
  convert_all([&](auto&& fn) { visit_slots("", true, true, false, true, fn); },
              [&](const Tensor& x) { return x.is_floating_point() ? x.to(device, dtype) : x.to(device); });
}

void Module::to(Device device) {
  convert_all([&](auto&& fn) { visit_slots("", true, true, false, true, fn); },
              [&](const Tensor& x) { return x.to(device); });
}

void Module::to(DType dtype) {
  MANTISSA_CHECK(is_floating(dtype), "Module::to: ", name(), " can only be converted to a floating dtype (got ",
                 dtype, "); integer buffers keep their dtype");
  convert_all([&](auto&& fn) { visit_slots("", true, true, false, true, fn); },
              [&](const Tensor& x) { return x.is_floating_point() ? x.to(dtype) : x; });
}

void Module::zero_grad(bool set_to_none) {
  for (auto& s : parameters_) {
    if (!s.tensor.defined() || !s.tensor.grad().defined()) continue;
    if (set_to_none) {
      s.tensor.set_grad(Tensor());
    } else {
      Tensor& g = s.tensor.mutable_grad();
      if (!g.is_leaf()) g = g.detach();
      NoGradGuard no_grad;
      g.zero_();
    }
  }
  for (auto& c : children_) c.second->zero_grad(set_to_none);
}

// state_dict ----------------------------------------------------------------------------------

NamedTensors Module::state_dict() const {
  NamedTensors out;
  visit_slots("", true, true, true, true,
              [&](const std::string& n, const Tensor& t) { out.emplace_back(n, t.detach()); });
  return out;
}

LoadStateDictResult Module::load_state_dict(const NamedTensors& state_dict, bool strict) {
  NamedTensors own = this->state_dict();
  std::unordered_map<std::string, size_t> given;
  std::vector<std::string> errors;
  for (size_t i = 0; i < state_dict.size(); ++i) {
    const auto& [key, value] = state_dict[i];
    if (!given.emplace(key, i).second) errors.push_back("duplicate key \"" + key + "\" in the state_dict");
    if (!value.defined()) errors.push_back("the value of \"" + key + "\" is an undefined tensor");
  }

  LoadStateDictResult result;
  std::unordered_set<std::string> own_keys;
  std::vector<std::string> mismatches;
  for (const auto& [key, mine] : own) {
    own_keys.insert(key);
    auto it = given.find(key);
    if (it == given.end()) {
      result.missing_keys.push_back(key);
      continue;
    }
    const Tensor& src = state_dict[it->second].second;
    if (src.defined() && src.sizes() != mine.sizes()) {
      mismatches.push_back("size mismatch for " + key + ": copying a param with shape " + shape_str(src.sizes()) +
                           " from checkpoint, the shape in current model is " + shape_str(mine.sizes()) + ".");
    }
  }
  for (const auto& [key, value] : state_dict)
    if (!own_keys.count(key)) result.unexpected_keys.push_back(key);

  auto quoted_list = [](const std::vector<std::string>& keys) {
    std::string s;
    for (size_t i = 0; i < keys.size(); ++i) s += (i ? ", \"" : "\"") + keys[i] + "\"";
    return s;
  };
  // PyTorch's order: missing, unexpected, then per-tensor problems.
  std::vector<std::string> all;
  if (strict && !result.missing_keys.empty())
    all.push_back("Missing key(s) in state_dict: " + quoted_list(result.missing_keys) + ".");
  if (strict && !result.unexpected_keys.empty())
    all.push_back("Unexpected key(s) in state_dict: " + quoted_list(result.unexpected_keys) + ".");
  all.insert(all.end(), mismatches.begin(), mismatches.end());
  all.insert(all.end(), errors.begin(), errors.end());
  if (!all.empty()) {
    std::string msg = "Error(s) in loading state_dict for " + name() + ":";
    for (const auto& e : all) msg += "\n\t" + e;
    MANTISSA_ERROR(msg);
  }

  NoGradGuard no_grad;
  for (auto& [key, mine] : own) {
    auto it = given.find(key);
    if (it != given.end()) mine.copy_(state_dict[it->second].second);
  }
  return result;
}

// Forward and printing ------------------------------------------------------------------------

Tensor Module::forward(const Tensor&) {
  MANTISSA_ERROR(name(), ": this module has no forward(const Tensor&); override it, or call the forward it defines");
}

std::string Module::repr() const {
  std::vector<std::string> lines;
  const std::string extra = extra_repr();
  size_t extra_lines = 0;
  if (!extra.empty()) {
    std::istringstream ss(extra);
    for (std::string line; std::getline(ss, line);) {
      lines.push_back(line);
      ++extra_lines;
    }
  }
  for (const auto& [key, child] : children_) lines.push_back("(" + key + "): " + add_indent(child->repr(), 2));
  std::string s = name() + "(";
  if (!lines.empty()) {
    if (extra_lines == 1 && children_.empty()) {
      s += lines[0];
    } else {
      s += "\n";
      for (const auto& l : lines) s += "  " + l + "\n";
    }
  }
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Module& m) { return os << m.repr(); }

namespace detail {

std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  // Shortest round-trip digits, then Python's layout: exponent form when the decimal point
  // would sit more than 4 places left of the digits or 16 right of them.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp10 = std::stoi(sci.substr(e + 1));
  const int decpt = exp10 + 1;  // value = 0.digits x 10^decpt
  if (decpt <= -4 || decpt > 16) {
    std::string m = digits.substr(0, 1);
    if (digits.size() > 1) m += "." + digits.substr(1);
    char ebuf[16];
    std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    return sign + m + ebuf;
  }
  std::string s;
  if (decpt <= 0) {
    s = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    s = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    s = digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return sign + s;
}

std::string py_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

}  // namespace detail

// Forward hooks ------------------------------------------------------------------------------

int64_t Module::register_forward_hook(ForwardHook hook) {
  MANTISSA_CHECK(hook != nullptr, name(), ".register_forward_hook: the hook is empty");
  forward_hooks_.emplace_back(next_forward_hook_, std::move(hook));
  return next_forward_hook_++;
}

bool Module::remove_forward_hook(int64_t handle) {
  for (auto it = forward_hooks_.begin(); it != forward_hooks_.end(); ++it) {
    if (it->first == handle) {
      forward_hooks_.erase(it);
      return true;
    }
  }
  return false;
}

void Module::run_forward_hooks(const Tensor& input, const Tensor& output) {
  // A copy, so a hook that registers or removes hooks does not invalidate the loop.
  const std::vector<std::pair<int64_t, ForwardHook>> hooks = forward_hooks_;
  for (const auto& [handle, hook] : hooks) hook(*this, input, output);
}

}  // namespace mantissa::nn
