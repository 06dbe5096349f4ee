// Fused CPU optimizer updates: one pass over each parameter's value, gradient and state arrays,
// with all of a group's tensors split across the OpenMP threads together. The arithmetic follows
// PyTorch 1.13's single-tensor SGD/Adam/AdamW operation by operation, in the parameter's dtype.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"

namespace mantissa::kernels {

// One parameter tensor: contiguous arrays of `numel` elements, all of the kernel's dtype.
struct OptimSlot {
  void* param = nullptr;
  const void* grad = nullptr;
  void* state0 = nullptr;  // SGD: momentum buffer; Adam: exp_avg
  void* state1 = nullptr;  // Adam: exp_avg_sq
  void* state2 = nullptr;  // Adam with amsgrad: max_exp_avg_sq
  int64_t numel = 0;
  int64_t step = 0;        // Adam: this parameter's step count, already incremented (>= 1)
  bool first = false;      // SGD: the momentum buffer is (re)started from this step's d_p
};

struct SGDHyper {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
};

struct AdamHyper {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // AdamW: p *= 1 - lr * wd before the moments
};

// d_p = g + wd*p; buf = d_p (first) or momentum*buf + (1-dampening)*d_p; d_p = d_p + momentum*buf
// (nesterov) or buf; p -= lr*d_p. With momentum 0 there is no buffer (state0 unused).
// dtype: F32 or F64 (anything else throws).
void sgd_step(DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h);

// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; [vmax = max(vmax, v)];
// p += (-lr/(1-b1^t)) * m / (sqrt(v or vmax)/sqrt(1-b2^t) + eps), bias corrections per slot.
// Adam adds wd*p to g; AdamW scales p by 1 - lr*wd first. dtype: F32 or F64.
void adam_step(DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h);

}  // namespace mantissa::kernels
