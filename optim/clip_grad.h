// Gradient clipping as PyTorch 1.13's torch.nn.utils: clip_grad_norm_ scales every gradient by
// min(max_norm / (total_norm + 1e-6), 1) computed in F32 (F64 when every gradient is F64);
// clip_grad_value_ clamps each gradient to [-clip_value, clip_value]. Undefined grads are skipped.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mantissa::optim {

// Returns the total norm of all gradients together (as one vector): norm_type 2, 1, any p > 0,
// infinity (max |g|), or 0 (PyTorch's count semantics). error_if_nonfinite throws when the
// total is NaN or infinite instead of scaling by it. 0 when no parameter has a gradient.
double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);
double clip_grad_norm_(const Tensor& parameter, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value);
void clip_grad_value_(const Tensor& parameter, double clip_value);

}  // namespace mantissa::optim
