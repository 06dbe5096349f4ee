// 2-D convolution kernels, NCHW: forward, gradient of the input and gradient of the weight
// (and bias). CPU (conv.cpp): oneDNN for F32/BF16 when built with it; im2col + the reference
// GEMM for F64 and without oneDNN; F16 is computed in F32 on the F16 values and rounded once.
// CUDA (conv.cu): cuDNN with F32 accumulation for F16/BF16 (TF32 for F32 only when
// mantissa::cuda::allow_tf32()), F64 in F64.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// out [N, O, Ho, Wo] = conv(x [N, C, H, W], w [O, C/groups, kh, kw]) + bias [O] (optional).
// Shapes are checked by the caller; x, w and bias may have any strides; out is contiguous.
void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                    const Conv2dParams& p);
// grad_x [N, C, H, W] (contiguous) from grad_out [N, O, Ho, Wo] and w.
void conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w, const Conv2dParams& p);
// grad_w [O, C/groups, kh, kw] (contiguous) from grad_out and x; grad_bias [O] too when defined.
void conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                            const Conv2dParams& p);

#ifdef MANTISSA_HAVE_CUDA
// The CUDA twins (conv.cu), reached through the entry points above for CUDA tensors.
namespace cuda {
void conv2d_forward(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
void conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w, const Conv2dParams& p);
void conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                            const Conv2dParams& p);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
