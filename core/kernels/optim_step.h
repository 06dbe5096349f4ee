// Fused optimizer updates over a whole parameter group (one pass over each parameter's value,
// gradient and state arrays), and the two multi-tensor passes of the FP32 master-weight policy:
// widen (+ unscale + Inf/NaN check) 16-bit gradients into F32, and round F32 masters back.
// CPU reference in optim_step.cpp, CUDA in optim_step.cu; the arithmetic is shared
// (optim_math.h) and follows PyTorch 1.13's single-tensor SGD/Adam/AdamW operation by operation.
#pragma once

#include <cstdint>
#include <span>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// One parameter tensor: contiguous arrays of `numel` elements of the kernel's dtype, all on the
// kernel's device.
struct OptimSlot {
  void* param = nullptr;
  const void* grad = nullptr;
  void* state0 = nullptr;        // SGD: momentum buffer; Adam: exp_avg
  void* state1 = nullptr;        // Adam: exp_avg_sq
  void* state2 = nullptr;        // Adam with amsgrad: max_exp_avg_sq
  void* compensation = nullptr;  // BF16 with Kahan rounding: the residual the parameter could not hold
  int64_t numel = 0;
  int64_t step = 0;              // this parameter's step count, already incremented (>= 1)
  uint64_t index = 0;            // global parameter index: keys the stochastic-rounding stream
  bool first = false;            // SGD: the momentum buffer is (re)started from this step's d_p
};

// How a BF16 parameter and its BF16 state are written back. The update is always computed in
// F32 registers from the widened values; only the final store differs.
//  Nearest:    round to nearest even. An update below half an ulp (|u| < 2^-9 |w|) is lost.
//  Stochastic: round up with probability equal to the discarded fraction (unbiased: the stored
//              value equals the F32 result on average). Randomness: Philox keyed by the seed,
//              counter (element / 8, step, parameter index, stream), 16 bits per element, so a
//              resumed run (same seed, same per-parameter step counts) rounds identically on any
//              device and thread count. The state is stochastically rounded too (streams 1-3).
//  Kahan:      the parameter keeps a BF16 compensation buffer: y = update + c, w' = rne(w + y),
//              c' = y - (w' - w). The state is rounded to nearest.
// Under Nearest and Kahan the state has BF16's limits too: a moment update smaller than half an
// ulp (relative 2^-9) is lost, so with beta2 = 0.999 Adam's exp_avg_sq can never decay (a decay
// step is at most 0.1%) and grows only when g^2 exceeds about 3v, as in PyTorch with BF16
// parameters; Stochastic rounding keeps the moments unbiased.
enum class UpdateRounding : uint8_t { Nearest, Stochastic, Kahan };
const char* update_rounding_name(UpdateRounding r);  // "nearest", "stochastic", "kahan"

struct LowPrecisionUpdate {
  UpdateRounding rounding = UpdateRounding::Nearest;
  uint64_t seed = 0;
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
// dtype: F32, F64 (computed in that dtype) or BF16 (computed in F32, stored per `lp`).
void sgd_step(Device device, DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h,
              const LowPrecisionUpdate& lp = {});

// m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; [vmax = max(vmax, v)];
// p += (-lr/(1-b1^t)) * m / (sqrt(v or vmax)/sqrt(1-b2^t) + eps), bias corrections per slot.
// Adam adds wd*p to g; AdamW scales p by 1 - lr*wd first. dtype: F32, F64 or BF16 as for SGD.
void adam_step(Device device, DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h,
               const LowPrecisionUpdate& lp = {});

// Master weights ---------------------------------------------------------------------------

// src: `numel` contiguous elements of the pass's 16-bit (or F32) dtype; dst: F32. dst may equal
// src when the source dtype is F32 (in-place unscale), otherwise they must not overlap.
struct CastSlot {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t numel = 0;
};

// dst[i] = float(src[i]) * inv_scale for every slot (the multiplication skipped when inv_scale is
// exactly 1: a plain widening); found_inf is set to 1 when any source value is Inf or NaN (never
// cleared here), the rule of kernels::unscale_and_check_ / PyTorch's
// _amp_foreach_non_finite_check_and_unscale_, fused with the widening so the 16-bit gradients
// are read once. found_inf: a one-element F32 tensor on `device` (kept there: no host
// synchronization on CUDA), or undefined to skip the record. src_dtype: F16, BF16 or F32.
void widen_unscale_grads(Device device, DType src_dtype, std::span<const CastSlot> slots, float inv_scale,
                         const Tensor& found_inf);

// dst[i] = round_to_nearest_even(src[i]): F32 masters into their F16/BF16 working copies.
void round_masters(Device device, DType dst_dtype, std::span<const CastSlot> slots);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
void sgd_step(int device, DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h,
              const LowPrecisionUpdate& lp);
void adam_step(int device, DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h,
               const LowPrecisionUpdate& lp);
// found_inf: a device pointer to one float, or nullptr.
void widen_unscale_grads(int device, DType src_dtype, std::span<const CastSlot> slots, float inv_scale,
                         float* found_inf);
void round_masters(int device, DType dst_dtype, std::span<const CastSlot> slots);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
