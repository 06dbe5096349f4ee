// Kernels of the indexing family: index range checks, row selection (index_select and
// embedding), gather, their scatter-add backward passes (accumulated in F32 for F16/BF16), and
// the dropout mask multiply. Copies move raw elements, so every dtype works. CPU in index.cpp,
// CUDA in index.cu; each entry point below routes by the output's device.
#pragma once

#include <optional>

#include "core/tensor.h"

namespace mantissa::kernels {

// The first value of `index` (I32/I64, any strides) outside [0, n), if any.
std::optional<int64_t> find_out_of_range(const Tensor& index, int64_t n);

// out [outer, k, inner] = x [outer, n, inner] at rows index[0..k) of the middle dim. x and out
// contiguous, same dtype; index 1-D (any stride), already range-checked.
void index_select(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index);

// grad [outer, n, inner] += g [outer, k, inner] at rows index[0..k). grad contiguous in
// compute_t of g's dtype (F32 for F16/BF16, so repeated indices do not round per add); g contiguous.
void index_add_rows(const Tensor& grad, const Tensor& g, int64_t outer, int64_t n, int64_t inner, const Tensor& index);

// out[p] = x[p with coordinate `dim` replaced by index[p]]; out contiguous with index's shape,
// x and index any strides, index already range-checked.
void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index);

// grad (contiguous, x's shape, compute_t of g's dtype) += g scattered back along dim at index.
void gather_backward(const Tensor& grad, const Tensor& g, int64_t dim, const Tensor& index);

// out = x * mask * scale, mask holding 0/1 in x's dtype; computed in F32 (F64) and rounded once.
void dropout_apply(const Tensor& out, const Tensor& x, const Tensor& mask, double scale);

#ifdef MANTISSA_HAVE_CUDA
// index.cu: the same kernels on CUDA tensors, reached through the entry points above. The
// scatter-adds use atomicAdd into the F32/F64 accumulator (so the order of additions, and with
// it the last bits of a sum over repeated indices, may vary from run to run); 16-bit gradients
// are widened before the add and rounded once when the caller converts the accumulator.
namespace cuda {
// One device-to-host read: the value at the first (row-major) out-of-range position, if any.
std::optional<int64_t> find_out_of_range(const Tensor& index, int64_t n);
void index_select(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index);
void index_add_rows(const Tensor& grad, const Tensor& g, int64_t outer, int64_t n, int64_t inner, const Tensor& index);
void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index);
void gather_backward(const Tensor& grad, const Tensor& g, int64_t dim, const Tensor& index);
void dropout_apply(const Tensor& out, const Tensor& x, const Tensor& mask, double scale);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
