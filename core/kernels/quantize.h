// Quantization kernels: quantize (float -> int8/uint8 codes), dequantize, and fake quantize
// (quantize-dequantize in F32 with the straight-through mask). Scale (F32) and zero point (I32)
// arrive already broadcastable to x: one element per tensor, or per channel viewed along the axis.
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// q (I8 or U8) = quantize_value(x, 1/scale, zp, qmin, qmax); x is F32.
void quantize(const Tensor& q, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int32_t qmin,
              int32_t qmax);
// out (F32) = (q - zp) * scale.
void dequantize(const Tensor& out, const Tensor& q, const Tensor& scale, const Tensor& zero_point);
// out (x's dtype) = dequantize(quantize(x)) computed in F32, rounded once; mask (Bool, may be
// undefined) = whether x was inside the representable range.
void fake_quantize(const Tensor& out, const Tensor& mask, const Tensor& x, const Tensor& scale,
                   const Tensor& zero_point, int32_t qmin, int32_t qmax);

// Learnable fake quantization (LSQ) backward, per element, all F32: dx (the STE mask times dy),
// and the per-element scale and zero-point gradients (summed by the caller). zero_point holds
// integer values already rounded as the forward used them. per_tensor_order selects PyTorch's
// per-tensor rounding round(zp + x / s) instead of the per-channel round(x / s) + zp.
void fake_quantize_learnable_backward(const Tensor& dx, const Tensor& dscale, const Tensor& dzero_point,
                                      const Tensor& x, const Tensor& dy, const Tensor& scale,
                                      const Tensor& zero_point, int32_t qmin, int32_t qmax, float grad_factor,
                                      bool per_tensor_order);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
void fake_quantize_learnable_backward(const Tensor& dx, const Tensor& dscale, const Tensor& dzero_point,
                                      const Tensor& x, const Tensor& dy, const Tensor& scale,
                                      const Tensor& zero_point, int32_t qmin, int32_t qmax, float grad_factor,
                                      bool per_tensor_order);
void quantize(const Tensor& q, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int32_t qmin,
              int32_t qmax);
void dequantize(const Tensor& out, const Tensor& q, const Tensor& scale, const Tensor& zero_point);
void fake_quantize(const Tensor& out, const Tensor& mask, const Tensor& x, const Tensor& scale,
                   const Tensor& zero_point, int32_t qmin, int32_t qmax);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
