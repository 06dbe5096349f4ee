// nn::Module: the base of every layer, libtorch style (modules are held by std::shared_ptr).
// Owns the ordered registries of parameters, buffers and child modules from which dotted names
// ("features.0.weight"), train/eval, to(dtype/device), zero_grad and state_dict all derive.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/tensor.h"

namespace mantissa::nn {

// Ordered name -> tensor pairs; the same type safetensors::save takes and File::tensors holds.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module;
using ModulePtr = std::shared_ptr<Module>;
using NamedModules = std::vector<std::pair<std::string, ModulePtr>>;

// What a non-strict load_state_dict skipped (PyTorch's _IncompatibleKeys).
struct LoadStateDictResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Copying would alias the registries' tensors; share modules through shared_ptr instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name without namespaces ("Linear", or a user's "Net"); used by repr and errors.
  virtual std::string name() const;

  // Registration. Names are unique among one module's parameters, buffers and children and
  // contain no '.'. An undefined tensor registers a placeholder that every listing skips (a
  // Linear without bias), as in libtorch. Parameters must be leaves.
  // The returned handle is the registered tensor itself (assign it to a member).
  Tensor register_parameter(const std::string& name, Tensor tensor, bool requires_grad = true);
  // Non-persistent buffers move with to() but stay out of state_dict.
  Tensor register_buffer(const std::string& name, Tensor tensor, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  // Swaps a registered child for another (quantization and fusion passes do this).
  template <typename M>
  std::shared_ptr<M> replace_module(const std::string& name, std::shared_ptr<M> module) {
    set_child(name, module);
    return module;
  }
  // An optional child kept in a layer's own slot (nn::Linear / nn::Conv2d's QAT fake quantizers):
  // registers `module` under `name` the first time, replaces it afterwards, and stores the handle
  // in `slot`. A null module is an Error naming `setter` (an attached child cannot be removed).
  void set_optional_child(ModulePtr& slot, const std::string& name, ModulePtr module, const char* setter);
  // Unregisters a parameter, buffer or child by name (quant::convert replaces a layer's float
  // weights by int8 buffers in place this way); returns the removed tensor / module. Unknown names
  // are an Error naming the module and what it has.
  Tensor remove_parameter(const std::string& name);
  Tensor remove_buffer(const std::string& name);
  ModulePtr remove_module(const std::string& name);
  bool has_parameter(const std::string& name) const;
  bool has_buffer(const std::string& name) const;

  // Listings, recursive by default, in registration order (pre-order over modules), each
  // tensor once even when shared (tied weights), with PyTorch's dotted names.
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<ModulePtr> children() const;
  NamedModules named_children() const;
  // Self first (with name ""), then every descendant once. Needs *this held by a shared_ptr.
  std::vector<ModulePtr> modules(bool include_self = true);
  NamedModules named_modules(const std::string& prefix = "", bool include_self = true);
  // Calls fn on this module and every descendant, pre-order.
  void apply(const std::function<void(Module&)>& fn);

  // Mode ------------------------------------------------------------------------------------
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const noexcept { return training_; }

  // Conversion in place: every parameter and buffer keeps its handle (Tensor::set_data), so
  // members, the registry and an optimizer holding the parameters all see the new data.
  // to(dtype) converts floating tensors only (num_batches_tracked stays I64), grads included.
  void to(Device device);
  void to(DType dtype);
  void to(Device device, DType dtype);

  // set_to_none drops the .grad; otherwise it is zeroed in place (and detached).
  void zero_grad(bool set_to_none = true);

  // Persistent parameters and buffers, detached (sharing storage), in PyTorch's order: each
  // module's parameters, then its buffers, then its children.
  NamedTensors state_dict() const;
  // Copies values in place (dtype converted, under no-grad). Validates everything first: a
  // failing load changes nothing and its Error lists every missing and unexpected key (strict)
  // and every shape mismatch (always, as PyTorch does).
  LoadStateDictResult load_state_dict(const NamedTensors& state_dict, bool strict = true);

  // Forward -------------------------------------------------------------------------------
  virtual Tensor forward(const Tensor& input);
  // forward(), then the forward hooks. Children called through operator() run their hooks too
  // (nn::Sequential calls them so); a direct forward() call skips them, like PyTorch's .forward().
  Tensor operator()(const Tensor& input) {
    Tensor output = forward(input);
    if (!forward_hooks_.empty()) run_forward_hooks(input, output);
    return output;
  }
  // PyTorch's register_forward_hook, observe-only: hook(module, input, output) runs after every
  // call through operator(), in registration order. The handle removes it (remove_forward_hook
  // returns false for an unknown handle); a hook may remove itself while it runs.
  using ForwardHook = std::function<void(Module& module, const Tensor& input, const Tensor& output)>;
  int64_t register_forward_hook(ForwardHook hook);
  bool remove_forward_hook(int64_t handle);

  // PyTorch's module printing: "Linear(in_features=784, out_features=10, bias=True)", and a
  // container as "Name(\n  (key): child\n)" with children indented.
  virtual std::string extra_repr() const { return ""; }
  virtual std::string repr() const;

 protected:
  // The registered children themselves, for containers' forward loops (no copies).
  const NamedModules& children_ref() const { return children_; }

  bool training_ = true;

 private:
  struct Slot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void check_new_name(const std::string& name, const char* what) const;
  void add_child(const std::string& name, ModulePtr module);
  void set_child(const std::string& name, ModulePtr module);
  // Visits (prefix + name, tensor) for every defined slot, pre-order.
  void visit_slots(const std::string& prefix, bool params, bool bufs, bool persistent_only, bool recurse,
                   const std::function<void(const std::string&, const Tensor&)>& fn) const;
  void collect_modules(const std::string& prefix, NamedModules& out, std::vector<const Module*>& seen);

  std::vector<Slot> parameters_;
  std::vector<Slot> buffers_;
  NamedModules children_;

  void run_forward_hooks(const Tensor& input, const Tensor& output);
  std::vector<std::pair<int64_t, ForwardHook>> forward_hooks_;
  int64_t next_forward_hook_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Module& m);

namespace detail {
// Python's repr of a float ("0.1", "1e-05", "1.0") and of a tuple ("(3, 3)", "(16,)"), for
// extra_repr strings that read exactly like PyTorch's.
std::string py_float(double v);
std::string py_tuple(const std::vector<int64_t>& v);
inline const char* py_bool(bool b) { return b ? "True" : "False"; }
}  // namespace detail

}  // namespace mantissa::nn
