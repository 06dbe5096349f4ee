// nn::Sequential: children named "0", "1", ... in insertion order (PyTorch's dotted names
// "0.weight"), forward chaining the children through operator() (so their forward hooks run);
// nn::Functional wraps a function (e.g. an op) as a parameterless module so it can sit in a
// Sequential, as in libtorch.
#pragma once

#include <functional>
#include <string>

#include "nn/module.h"

namespace mantissa::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  template <typename M, typename... Ms>
  explicit Sequential(std::shared_ptr<M> first, std::shared_ptr<Ms>... rest) {
    push_back(std::move(first));
    (push_back(std::move(rest)), ...);
  }
  explicit Sequential(const std::vector<ModulePtr>& modules) {
    for (const auto& m : modules) push_back(m);
  }

  // Appends under the name str(size()), or under `name`.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  template <typename M>
  std::shared_ptr<M> push_back(const std::string& name, std::shared_ptr<M> module) {
    return register_module(name, std::move(module));
  }

  size_t size() const { return children_ref().size(); }
  bool is_empty() const { return size() == 0; }
  const ModulePtr& operator[](size_t index) const;
  // The child at index as an M; Error naming both types when it is not one.
  template <typename M>
  std::shared_ptr<M> at(size_t index) const {
    const ModulePtr& m = (*this)[index];
    auto typed = std::dynamic_pointer_cast<M>(m);
    MANTISSA_CHECK(typed != nullptr, "Sequential::at: module ", index, " is a ", m->name(),
                   ", not the requested type");
    return typed;
  }

  // Each child's output feeds the next; an empty Sequential returns its input.
  Tensor forward(const Tensor& input) override;
};

class Functional : public Module {
 public:
  explicit Functional(std::function<Tensor(const Tensor&)> fn);
  Tensor forward(const Tensor& input) override { return fn_(input); }

 private:
  std::function<Tensor(const Tensor&)> fn_;
};

}  // namespace mantissa::nn
