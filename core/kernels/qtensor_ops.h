// Kernels on the codes of per-tensor-affine quantized tensors (core/quantized.h): relu as
// max(q, zero_point), max pooling of codes, and PyTorch's quantized add / add_relu. CPU loops in
// qtensor_ops.cpp, CUDA twins in qtensor_ops.cu; both use the element math below.
#pragma once

#include <cstdint>

#include "core/kernels/pool.h"
#include "core/kernels/quant_round.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// One element of a quantized add, as ATen's vectorized qadd kernel computes it on x86 (AVX2 /
// AVX-512, the path that handles all but the last n % 64 elements of a contiguous tensor):
// each input is dequantized with one fused multiply-add, fma(scale, q, -zero_point * scale) with
// the product -zero_point * scale rounded to F32 first; the two are summed in F32, clamped at 0
// for add_relu, and requantized as q = clamp(rint(v * (1 / scale)) + zero_point, qmin, qmax),
// multiplying by the F32 reciprocal as fbgemm's Quantize does. (ATen's scalar tail computes
// (q - zero_point) * scale instead, which differs in the last bit and so, at rare exact ties,
// by one output code.) fmaf is explicit so the CPU and CUDA round identically.
struct QAddParams {
  float a_scale;
  int32_t a_zero_point;
  float b_scale;
  int32_t b_zero_point;
  float inv_scale;  // 1 / output scale, in F32
  int32_t zero_point;
  int32_t qmin, qmax;
  bool relu;
};

MANTISSA_INLINE int32_t qadd_value(int32_t a, int32_t b, const QAddParams& p) {
  const float a_premul = p.a_scale * static_cast<float>(-p.a_zero_point);
  const float b_premul = p.b_scale * static_cast<float>(-p.b_zero_point);
  const float da = fmaf(p.a_scale, static_cast<float>(a), a_premul);
  const float db = fmaf(p.b_scale, static_cast<float>(b), b_premul);
  float v = da + db;
  if (p.relu) v = fmaxf(v, 0.0f);
  return quantize_value(v, p.inv_scale, p.zero_point, p.qmin, p.qmax);
}

// out[i] = max(x[i], zero_point): the code of max(real value, 0.0). out and x: same shape, U8/I8,
// any strides; zero_point must lie in the dtype's range (checked by the caller).
void quantized_relu(const Tensor& out, const Tensor& x, int32_t zero_point);

// out [N, C, Ho, Wo] contiguous = max of the codes of x [N, C, H, W] (contiguous) over each
// window; padding never wins (PyTorch pads with -inf), so the output codes keep x's qparams.
void quantized_max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);

// out = quantized add of a and b (same shape and dtype, U8/I8, any strides) with p.
void quantized_add(const Tensor& out, const Tensor& a, const Tensor& b, const QAddParams& p);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
void quantized_relu(const Tensor& out, const Tensor& x, int32_t zero_point);
void quantized_max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void quantized_add(const Tensor& out, const Tensor& a, const Tensor& b, const QAddParams& p);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
