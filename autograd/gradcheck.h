// gradcheck: compares the autograd gradient of a function against central differences in
// F64 (eps 1e-6, atol 1e-5, rtol 1e-3, as torch.autograd.gradcheck), via vector-Jacobian
// products with a random cotangent so the cost is two forwards per input element.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mantissa::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 1234;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // the first mismatch: input, element, analytical vs numerical
};

// fn maps the inputs to one output. Inputs that require grad are checked; they must be F64.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

}  // namespace mantissa::autograd
