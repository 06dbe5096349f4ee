// Kernels behind clip_grad_norm_ and clip_grad_value_ (CPU; CUDA in grad_clip.cu, chosen by the
// device): a norm partial over one gradient accumulated in F64, and in-place scale and clamp
// computed in the gradient's compute type (F32 for F32/F16/BF16, rounded once on store; F64
// for F64).
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// Over the contiguous floating tensor g: sum of |g|^p for finite p > 0, max |g| for p = inf
// (NaN when any element is NaN), the count of nonzero elements for p = 0.
double grad_norm_partial(const Tensor& g, double norm_type);

// g *= coef for a contiguous floating tensor, coef first rounded to g's compute type.
void grad_scale_(const Tensor& g, double coef);

// g = clamp(g, lo, hi) for a contiguous floating tensor; NaN stays NaN.
void grad_clamp_(const Tensor& g, double lo, double hi);

#ifdef MANTISSA_HAVE_CUDA
// The same contracts on a contiguous CUDA tensor (grad_clip.cu); grad_norm_partial reduces on
// the device in F64 and returns through one synchronizing device-to-host copy.
namespace cuda {
double grad_norm_partial(const Tensor& g, double norm_type);
void grad_scale_(const Tensor& g, double coef);
void grad_clamp_(const Tensor& g, double lo, double hi);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
