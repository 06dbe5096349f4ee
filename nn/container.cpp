// nn::Sequential: indexed access and the chained forward; nn::Functional.
#include "nn/container.h"

namespace mantissa::nn {

const ModulePtr& Sequential::operator[](size_t index) const {
  MANTISSA_CHECK(index < size(), "Sequential: index ", index, " is out of range for a Sequential of ", size(),
                 " modules");
  return children_ref()[index].second;
}

Tensor Sequential::forward(const Tensor& input) {
  Tensor x = input;
  for (const auto& child : children_ref()) x = (*child.second)(x);  // operator(): runs the child's hooks
  return x;
}

Functional::Functional(std::function<Tensor(const Tensor&)> fn) : fn_(std::move(fn)) {
  MANTISSA_CHECK(fn_ != nullptr, "Functional: the function is empty");
}

}  // namespace mantissa::nn
