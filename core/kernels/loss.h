// Loss kernels (CPU; CUDA in loss.cu, chosen by the device): the fused cross-entropy
// (log-softmax + NLL + label smoothing) forward and backward, NLL, MSE, and target validation.
// Per-position losses come out in the accumulate dtype (F32; F64 for F64 inputs) and the op
// reduces them.
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// Every target must be ignore_index or a class in [0, classes); throws an Error naming op,
// the offending value, its position and the class count. Returns the number not ignored.
// target: I64 or I32, any layout.
int64_t count_valid_targets(const Tensor& target, int64_t classes, int64_t ignore_index, const char* op);

// Logits [N, C, S] and target [N, S] contiguous (targets validated); losses and lse contiguous
// [N, S] in the accumulate dtype. loss = (1 - eps) (lse - x_t) + eps (lse - mean_c x_c), with
// lse = log sum_c exp(x_c); ignored positions get loss 0.
void cross_entropy_forward(const Tensor& losses, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double label_smoothing);
// grad [N, C, S] (logits dtype) = w * (softmax - (1 - eps) onehot(t) - eps / C) per position,
// w = scale * g_pos[position] (g_pos: [N, S] accumulate dtype, or undefined for 1); ignored
// positions get 0.
void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                            const Tensor& g_pos, double scale, int64_t ignore_index, double label_smoothing);

// losses[n, s] = -log_probs[n, t, s] (0 where ignored); same layouts as above.
void nll_loss_forward(const Tensor& losses, const Tensor& log_probs, const Tensor& target, int64_t ignore_index);
// grad [N, C, S] = -w at the target class, 0 elsewhere; w as for cross_entropy_backward.
void nll_loss_backward(const Tensor& grad, const Tensor& target, const Tensor& g_pos, double scale,
                       int64_t ignore_index);

// losses (accumulate dtype, broadcast shape) = (x - t)^2, with x and t of one floating dtype.
void mse_forward(const Tensor& losses, const Tensor& x, const Tensor& t);
// gx (broadcast shape, x's dtype) = 2 (x - t) * g * scale, g broadcast (0-d or per element).
void mse_backward(const Tensor& gx, const Tensor& x, const Tensor& t, const Tensor& g, double scale);

#ifdef MANTISSA_HAVE_CUDA
// The same contracts on CUDA tensors (loss.cu); every operand on one CUDA device.
// count_valid_targets reads its result back with one synchronizing device-to-host copy.
namespace cuda {
int64_t count_valid_targets(const Tensor& target, int64_t classes, int64_t ignore_index, const char* op);
void cross_entropy_forward(const Tensor& losses, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double label_smoothing);
void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                            const Tensor& g_pos, double scale, int64_t ignore_index, double label_smoothing);
void nll_loss_forward(const Tensor& losses, const Tensor& log_probs, const Tensor& target, int64_t ignore_index);
void nll_loss_backward(const Tensor& grad, const Tensor& target, const Tensor& g_pos, double scale,
                       int64_t ignore_index);
void mse_forward(const Tensor& losses, const Tensor& x, const Tensor& t);
void mse_backward(const Tensor& gx, const Tensor& x, const Tensor& t, const Tensor& g, double scale);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
