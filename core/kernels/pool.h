// 2-D pooling kernels, NCHW: max pooling (with the argmax saved for the backward), average
// pooling and adaptive average pooling. CPU loops parallel over the N*C planes (pool.cpp), CUDA
// kernels in pool.cu; 16-bit inputs are summed in F32 (F64 for F64), every output rounded once.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg_pool2d only
};

// PyTorch's pooling_output_shape: floor (or ceil) of (in + 2 pad - k) / stride + 1, where a
// last window starting inside the right padding is dropped in ceil mode.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode);

// x [N, C, H, W] (any strides); out and indices [N, C, Ho, Wo] contiguous. indices (I64) is the
// flat position h * W + w of each maximum in its input plane. NaN wins, as in PyTorch.
void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p);
// grad_x [N, C, H, W] contiguous: each gradient goes to its saved argmax.
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices);
// The same with the forward's parameters, which let the CUDA kernel gather each input's
// gradients from the windows covering it in a fixed order (deterministic, bit-identical to the
// CPU); without them it scatters with atomics, whose order of three or more additions to one
// element varies between runs. The CPU result is the same either way.
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, const Pool2dParams& p);

void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p);

// Bin i of n over an input of size s covers [floor(i s / n), ceil((i + 1) s / n)).
void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x);
void adaptive_avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out);

#ifdef MANTISSA_HAVE_CUDA
// The CUDA twins (pool.cu), reached through the entry points above for CUDA tensors.
namespace cuda {
void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p);
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices);
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, const Pool2dParams& p);
void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p);
void avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p);
void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x);
void adaptive_avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
