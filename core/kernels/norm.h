// Fused kernels for batch norm (parallel over channels) and layer norm (parallel over rows):
// statistics in the accumulate type (F32 for F16/BF16/F32, F64 for F64), normalize + affine in
// one pass with one rounding, and the matching backward passes. CPU in norm.cpp; tensors on
// CUDA go to the kernels of norm.cu (same semantics). Every tensor of a call is on one device.
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// Batch-norm geometry: x viewed as a contiguous [n, c, s] block (s = product of spatial dims).
struct BatchNormShape {
  int64_t n = 0, c = 0, s = 0;
};

// Accumulate dtype of the statistics for an input dtype: F64 for F64, else F32.
inline DType norm_acc_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// Per-channel batch mean and biased variance, and invstd = 1/sqrt(var + eps). x contiguous;
// mean, var, invstd contiguous [c] in the accumulate dtype.
void batch_norm_stats(const Tensor& x, BatchNormShape shp, double eps, const Tensor& mean, const Tensor& var,
                      const Tensor& invstd);

// running = (1 - momentum) * running + momentum * batch, with the unbiased variance
// var * count / (count - 1). Running stats: any floating dtype, any stride; batch stats: acc [c].
void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, double momentum, int64_t count);

// mean = running_mean and invstd = 1/sqrt(running_var + eps), in the accumulate dtype.
void batch_norm_eval_stats(const Tensor& running_mean, const Tensor& running_var, double eps, const Tensor& mean,
                           const Tensor& invstd);

// y = (x - mean) * invstd * weight + bias, rounded once into y (x's dtype). weight/bias are
// accumulate-dtype [c] vectors or undefined (1 and 0).
void batch_norm_apply(const Tensor& y, const Tensor& x, BatchNormShape shp, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias);

// Backward. g and x contiguous [n, c, s]. Each output may be undefined (not needed):
// grad_x in x's dtype; grad_weight = sum(g * xhat), grad_bias = sum(g) in the accumulate dtype.
// training: grad_x includes the paths through the batch mean and variance.
void batch_norm_backward(const Tensor& g, const Tensor& x, BatchNormShape shp, const Tensor& mean,
                         const Tensor& invstd, const Tensor& weight, bool training, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias);

// Layer norm over rows of length d of a contiguous [rows, d] x. mean/rstd: acc [rows] outputs;
// weight/bias: acc [d] vectors or undefined.
void layer_norm_forward(const Tensor& y, const Tensor& x, int64_t rows, int64_t d, const Tensor& weight,
                        const Tensor& bias, double eps, const Tensor& mean, const Tensor& rstd);

// grad_x (x's dtype), grad_weight, grad_bias (acc [d]); each may be undefined.
void layer_norm_backward(const Tensor& g, const Tensor& x, int64_t rows, int64_t d, const Tensor& mean,
                         const Tensor& rstd, const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
// The CUDA twins of the entry points above, on operands whose devices the entry points checked.
void batch_norm_stats(const Tensor& x, BatchNormShape shp, double eps, const Tensor& mean, const Tensor& var,
                      const Tensor& invstd);
void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, double momentum, int64_t count);
void batch_norm_eval_stats(const Tensor& running_mean, const Tensor& running_var, double eps, const Tensor& mean,
                           const Tensor& invstd);
void batch_norm_apply(const Tensor& y, const Tensor& x, BatchNormShape shp, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias);
void batch_norm_backward(const Tensor& g, const Tensor& x, BatchNormShape shp, const Tensor& mean,
                         const Tensor& invstd, const Tensor& weight, bool training, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias);
void layer_norm_forward(const Tensor& y, const Tensor& x, int64_t rows, int64_t d, const Tensor& weight,
                        const Tensor& bias, double eps, const Tensor& mean, const Tensor& rstd);
void layer_norm_backward(const Tensor& g, const Tensor& x, int64_t rows, int64_t d, const Tensor& mean,
                         const Tensor& rstd, const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
