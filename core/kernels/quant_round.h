// The one quantization rounding rule, shared by the CPU and CUDA kernels (torch.ao numerics):
// q = clamp(round_half_even(x * inv_scale) + zero_point, q_min, q_max) with inv_scale = 1.0f /
// scale in F32. Rounding happens before the zero point is added, as PyTorch does, which matters
// at ties when the zero point is odd. NaN quantizes to q_min; +-inf to the range ends.
#pragma once

#include <math.h>

#include <cstdint>

#include "core/macros.h"

namespace mantissa::kernels {

MANTISSA_INLINE float quant_inv_scale(float scale) { return 1.0f / scale; }

// The rounded value before clamping, as a float (exact: |value| < 2^24 after clamping below).
MANTISSA_INLINE float quant_round(float x, float inv_scale) { return rintf(x * inv_scale); }

MANTISSA_INLINE int32_t quantize_value(float x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  // Clamp in float first so huge values never overflow the integer conversion.
  float r = quant_round(x, inv_scale);
  r = fmaxf(r, static_cast<float>(qmin - zero_point));  // NaN -> the lower bound
  r = fminf(r, static_cast<float>(qmax - zero_point));
  return static_cast<int32_t>(r) + zero_point;
}

MANTISSA_INLINE float dequantize_value(int32_t q, float scale, int32_t zero_point) {
  return static_cast<float>(q - zero_point) * scale;
}

// Whether x lies inside the representable range (the straight-through estimator's mask):
// round(x * inv_scale) + zero_point within [q_min, q_max] before clamping.
MANTISSA_INLINE bool quant_in_range(float x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  float r = quant_round(x, inv_scale) + static_cast<float>(zero_point);
  return r >= static_cast<float>(qmin) && r <= static_cast<float>(qmax);
}

// LSQ gradients of one element (torch._fake_quantize_learnable_*): the code before clamping,
// then d/dscale and d/dzero_point of the clamped quantize-dequantize, scaled by grad_factor.
struct LsqGrads {
  float dx, dscale, dzero_point;
};
MANTISSA_INLINE LsqGrads lsq_grads(float x, float dy, float scale, float zero_point, int32_t qmin, int32_t qmax,
                                   float grad_factor, bool per_tensor_order) {
  const float inv = 1.0f / scale;
  const float xq = per_tensor_order ? rintf(zero_point + x * inv) : rintf(x * inv) + zero_point;
  LsqGrads g;
  if (xq < static_cast<float>(qmin) || xq > static_cast<float>(qmax)) {
    g.dx = dy * 0.0f;  // a signed zero, as PyTorch's dy * mask
    g.dzero_point = dy * -1.0f * scale * grad_factor;
    g.dscale = (xq < static_cast<float>(qmin) ? dy * (static_cast<float>(qmin) - zero_point)
                                               : dy * (static_cast<float>(qmax) - zero_point)) * grad_factor;
  } else {
    const float xfq = (xq - zero_point) * scale;
    g.dx = dy;
    g.dzero_point = 0.0f;
    g.dscale = dy * (xfq - x) * inv * grad_factor;
  }
  return g;
}

}  // namespace mantissa::kernels
