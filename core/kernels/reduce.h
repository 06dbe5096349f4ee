// Reductions over any set of dims of a strided tensor (sum, mean, var, max/min with and without
// indices) and the backward helpers of those ops: CPU in reduce.cpp, CUDA in reduce.cu (each
// entry point dispatches on the device). F16/BF16/F32 accumulate in F32, F64 in F64, integers
// and Bool in int64.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mantissa::kernels {

// Accumulation order, the same for every reduction that adds: a contiguous run is cut into
// 4096-element blocks; each block is summed into 64 (F32) or 32 (F64/int64) interleaved lane
// accumulators that are then combined as a binary tree; block sums are combined pairwise. The
// tree depends only on the length, never on the thread count, so results are reproducible.
// A strided run is cut into the same blocks, each added in order. When an output reduces
// several runs (more than one reduced dim after coalescing), runs are grouped into pieces of
// about 4 blocks, added in order within a piece, and pieces are combined pairwise.
// Reducing the outer dims of a tensor whose innermost dim is kept ("column" sums) adds rows in
// order into per-column accumulators, flushed into a second accumulator every 256 rows.
inline constexpr int64_t kReduceBlock = 4096;

// In every function below, `reduce[d]` says whether dim d of x is reduced, and outputs are
// contiguous with x's shape where reduced dims have size 1 (the keepdim shape). The output
// dtype is x's dtype or, for floating x, its accumulate dtype (F32 for F16/BF16); I64 for
// integer and Bool x (sum only). Reducing zero elements gives 0 (sum) or NaN (mean, var).
void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce);
void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce);
// Two passes in the accumulate type: the mean, then the sum of squared deviations, divided by
// max(0, N - correction) (so a correction >= N gives inf, or NaN when all deviations are 0).
void var(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction);

// Max/min along one dim with its index (I64). Ties give the first index; a NaN is the extreme
// and the first NaN's index is returned. Either output may be undefined. size(dim) > 0.
void max_min_dim(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t dim, bool is_max);
// Max/min of all elements (NaN propagates) into a 0-d tensor of x's dtype. x is not empty.
void max_min_all(const Tensor& out, const Tensor& x, bool is_max);

// Backward helpers ------------------------------------------------------------------------------
// out (x's shape, any float dtype) = g broadcast from the keepdim shape, times scale.
void expand_scale(const Tensor& out, const Tensor& g_keep, double scale);
// out = g_keep * (x - mean_keep) * factor; mean_keep in x's dtype or its accumulate dtype.
void var_backward(const Tensor& out, const Tensor& g_keep, const Tensor& x, const Tensor& mean_keep, double factor);
// out (contiguous, zeroed here) gets g_keep at the position indices_keep names along dim.
void scatter_along_dim(const Tensor& out, const Tensor& g_keep, const Tensor& indices_keep, int64_t dim);
// out = g / count at the elements of x equal to value (NaN matches NaN), 0 elsewhere, where
// count is the number of such elements (torch.max(x)'s backward: ties share the gradient).
void distribute_to_extreme(const Tensor& out, const Tensor& g, const Tensor& x, const Tensor& value);

#ifdef MANTISSA_HAVE_CUDA
// The same contracts on CUDA tensors (reduce.cu): every operand on one CUDA device, x of any
// layout. Sums accumulate in the same types but not in the CPU's order (results agree to
// rounding); max/min values and indices are exact. No host synchronization.
namespace cuda {
void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce);
void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce);
void var(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction);
void max_min_dim(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t dim, bool is_max);
void max_min_all(const Tensor& out, const Tensor& x, bool is_max);
void expand_scale(const Tensor& out, const Tensor& g_keep, double scale);
void var_backward(const Tensor& out, const Tensor& g_keep, const Tensor& x, const Tensor& mean_keep, double factor);
void scatter_along_dim(const Tensor& out, const Tensor& g_keep, const Tensor& indices_keep, int64_t dim);
void distribute_to_extreme(const Tensor& out, const Tensor& g, const Tensor& x, const Tensor& value);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
