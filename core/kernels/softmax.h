// Softmax and log_softmax along one dim and their backward kernels (CPU; CUDA in softmax.cu,
// chosen by the device). The max is subtracted before exp; exp and sums run in F32 for
// F16/BF16/F32 (F64 for F64), rounded once on store.
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// out and x: contiguous, same shape and floating dtype; dim already wrapped (0 for a 0-d x).
void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log);
// gx = y * (g - sum(g * y))  for softmax (y its output), or
// gx = g - exp(y) * sum(g)   for log_softmax; sums along dim. All contiguous, one dtype.
void softmax_backward(const Tensor& gx, const Tensor& g, const Tensor& y, int64_t dim, bool log);

#ifdef MANTISSA_HAVE_CUDA
// The same contracts on CUDA tensors (softmax.cu); every operand on one CUDA device.
namespace cuda {
void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log);
void softmax_backward(const Tensor& gx, const Tensor& g, const Tensor& y, int64_t dim, bool log);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
