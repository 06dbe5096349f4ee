// Softmax, log_softmax and the losses (cross_entropy, nll_loss, mse_loss): argument checks,
// dispatch to core/kernels/{softmax,loss}, reduction of per-position losses, and each backward
// under its forward. 16-bit inputs are computed in F32 and the result rounded to their dtype.
#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/loss.h"
#include "core/kernels/reduce.h"
#include "core/kernels/softmax.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

void check_cpu(const Tensor& x, const char* op, const char* what) {
  MANTISSA_CHECK(x.defined(), op, ": the ", what, " is an undefined tensor");
  autograd::check_backend(x, op);
}

DType acc_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// A contiguous tensor with t's values, without autograd history (kernels read raw memory).
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  kernels::copy(c, t);
  return c;
}

// A gradient in `dtype`, contiguous.
Tensor dense_as(const Tensor& g, DType dtype) {
  Tensor c = empty(g.sizes(), TensorOptions(dtype).device(g.device()));
  kernels::copy(c, g);
  return c;
}

// Per-position losses (accumulate dtype) -> the op's result in `dtype`, rounded once. Mean
// divides by `count` (the non-ignored targets), so count 0 gives NaN, as in PyTorch.
Tensor reduce_losses(const Tensor& losses, Reduction reduction, int64_t count, DType dtype) {
  if (reduction == Reduction::None) {
    Tensor out = empty(losses.sizes(), TensorOptions(dtype).device(losses.device()));
    kernels::copy(out, losses);
    return out;
  }
  Tensor total = empty({}, TensorOptions(losses.dtype()).device(losses.device()));
  kernels::sum(total, losses, std::vector<bool>(losses.dim(), true));
  if (!losses.is_cpu()) {
    // On a GPU the mean stays on the device (no host read per loss); the division happens in
    // the accumulate dtype and the result is rounded once to the op's dtype.
    if (reduction == Reduction::Mean) kernels::binary_scalar(kernels::BinaryOp::Div, total, total, static_cast<double>(count));
    Tensor out = empty({}, TensorOptions(dtype).device(losses.device()));
    kernels::copy(out, total);
    return out;
  }
  double v = total.item_double();
  if (reduction == Reduction::Mean) v /= static_cast<double>(count);
  return full({}, v, TensorOptions(dtype).device(losses.device()));
}

// How the gradient of a reduced loss reaches each position: w = scale * g_pos[position].
struct LossGrad {
  Tensor g_pos;  // per position (reduction none), accumulate dtype; undefined otherwise
  double scale = 1.0;
};

LossGrad loss_grad(const Tensor& g, Reduction reduction, int64_t count, DType dtype) {
  LossGrad lg;
  if (reduction == Reduction::None) {
    lg.g_pos = dense_as(g, acc_dtype(dtype));
  } else {
    lg.scale = g.item_double();
    if (reduction == Reduction::Mean) lg.scale /= static_cast<double>(count);
  }
  return lg;
}

// Shared checks of cross_entropy and nll_loss: input [N, C, d...] (or [C]) floating, target
// [N, d...] (or 0-d) of I64/I32 class indices.
void check_classification(const Tensor& x, const Tensor& target, const char* op, const char* input_name) {
  check_cpu(x, op, input_name);
  check_cpu(target, op, "target");
  MANTISSA_CHECK(is_floating(x.dtype()), op, ": ", input_name, " must be floating point, got ", x.dtype(), " (shape ",
                 shape_str(x.sizes()), ")");
  MANTISSA_CHECK(!is_floating(target.dtype()), op, ": target has dtype ", target.dtype(), " (shape ",
                 shape_str(target.sizes()), "); class-probability targets are not supported, pass class indices "
                 "as I64");
  MANTISSA_CHECK(target.dtype() == DType::I64 || target.dtype() == DType::I32, op,
                 ": target must hold class indices as I64 (or I32), got ", target.dtype());
  MANTISSA_CHECK(x.dim() >= 1, op, ": ", input_name, " must have a class dimension ([N, C, ...] or [C]), got shape ",
                 shape_str(x.sizes()));
  Shape expected;
  if (x.dim() >= 2) {
    expected.push_back(x.size(0));
    for (int64_t d = 2; d < x.dim(); ++d) expected.push_back(x.size(d));
  }
  MANTISSA_CHECK(target.sizes() == expected, op, ": target shape ", shape_str(target.sizes()), " does not match ",
                 input_name, " shape ", shape_str(x.sizes()), " (expected target shape ", shape_str(expected), ")");
}

int64_t class_count(const Tensor& x) { return x.dim() == 1 ? x.size(0) : x.size(1); }

Tensor softmax_op(const Tensor& x, int64_t dim, bool log) {
  if (auto c = autograd::autocast(log ? OpId::log_softmax : OpId::softmax, x)) return softmax_op((*c)[0], dim, log);
  const char* op = log ? "log_softmax" : "softmax";
  check_cpu(x, op, "input");
  MANTISSA_CHECK(is_floating(x.dtype()), op, ": expected a floating-point input, got ", x.dtype(), " (shape ",
                 shape_str(x.sizes()), ")");
  dim = wrap_dim(dim, x.dim(), op);
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::softmax(out, dense(x), dim, log);
  if (autograd::needs_grad(x)) {
    record(log ? OpId::log_softmax : OpId::softmax, {x}, {out},
           [ys = SavedTensor(out), dim, log](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor y = ys.unpack();
             Tensor gx = empty(y.sizes(), TensorOptions(y.dtype()).device(y.device()));
             kernels::softmax_backward(gx, dense_as(g[0], y.dtype()), dense(y), dim, log);
             return {gx};
           });
  }
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true); }

Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction, int64_t ignore_index,
                     double label_smoothing) {
  if (auto c = autograd::autocast(OpId::cross_entropy, logits, target))
    return cross_entropy((*c)[0], (*c)[1], reduction, ignore_index, label_smoothing);
  check_classification(logits, target, "cross_entropy", "logits");
  MANTISSA_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
                 "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  const int64_t count = kernels::count_valid_targets(target, class_count(logits), ignore_index, "cross_entropy");
  const Tensor x = dense(logits), t = dense(target);
  const DType acc = acc_dtype(logits.dtype());
  Tensor losses = empty(target.sizes(), TensorOptions(acc).device(logits.device()));
  Tensor lse = empty(target.sizes(), TensorOptions(acc).device(logits.device()));
  kernels::cross_entropy_forward(losses, lse, x, t, ignore_index, label_smoothing);
  Tensor out = reduce_losses(losses, reduction, count, logits.dtype());
  if (autograd::needs_grad(logits)) {
    record(OpId::cross_entropy, {logits, target}, {out},
           [xs = SavedTensor(logits), ts = SavedTensor(target), lse, reduction, count, ignore_index,
            label_smoothing](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xv = xs.unpack();
             LossGrad lg = loss_grad(g[0], reduction, count, xv.dtype());
             Tensor gx = empty(xv.sizes(), TensorOptions(xv.dtype()).device(xv.device()));
             kernels::cross_entropy_backward(gx, dense(xv), lse, dense(ts.unpack()), lg.g_pos, lg.scale, ignore_index,
                                             label_smoothing);
             return {gx, Tensor()};
           });
  }
  return out;
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction, int64_t ignore_index) {
  if (auto c = autograd::autocast(OpId::nll_loss, log_probs, target)) return nll_loss((*c)[0], (*c)[1], reduction, ignore_index);
  check_classification(log_probs, target, "nll_loss", "input");
  const int64_t count = kernels::count_valid_targets(target, class_count(log_probs), ignore_index, "nll_loss");
  Tensor losses = empty(target.sizes(), TensorOptions(acc_dtype(log_probs.dtype())).device(log_probs.device()));
  kernels::nll_loss_forward(losses, dense(log_probs), dense(target), ignore_index);
  Tensor out = reduce_losses(losses, reduction, count, log_probs.dtype());
  if (autograd::needs_grad(log_probs)) {
    record(OpId::nll_loss, {log_probs, target}, {out},
           [ts = SavedTensor(target), in_shape = log_probs.sizes(), dtype = log_probs.dtype(), reduction, count,
            ignore_index](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             LossGrad lg = loss_grad(g[0], reduction, count, dtype);
             Tensor gx = empty(in_shape, TensorOptions(dtype).device(g[0].device()));
             kernels::nll_loss_backward(gx, dense(ts.unpack()), lg.g_pos, lg.scale, ignore_index);
             return {gx, Tensor()};
           });
  }
  return out;
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  if (auto c = autograd::autocast(OpId::mse_loss, input, target)) return mse_loss((*c)[0], (*c)[1], reduction);
  check_cpu(input, "mse_loss", "input");
  check_cpu(target, "mse_loss", "target");
  MANTISSA_CHECK(is_floating(input.dtype()) && is_floating(target.dtype()),
                 "mse_loss: input and target must be floating point, got ", input.dtype(), " and ", target.dtype());
  const Shape shape = broadcast_shapes(input.sizes(), target.sizes(), "mse_loss");
  const DType dt = promote_types(input.dtype(), target.dtype());
  const Tensor x = to_dtype(input, dt), t = to_dtype(target, dt);
  Tensor losses = empty(shape, TensorOptions(acc_dtype(dt)).device(input.device()));
  kernels::mse_forward(losses, x, t);
  const int64_t n = shape_numel(shape);
  Tensor out = reduce_losses(losses, reduction, n, dt);
  if (autograd::needs_grad(x, t)) {
    record(OpId::mse_loss, {x, t}, {out},
           [xs = SavedTensor(x), ts = SavedTensor(t), shape, reduction, n, gx_needed = x.requires_grad(),
            gt_needed = t.requires_grad()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xv = xs.unpack(), tv = ts.unpack();
             const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0;
             Tensor gg = dense_as(g[0], xv.dtype());
             Tensor gx, gt;
             if (gx_needed) {
               gx = empty(shape, TensorOptions(xv.dtype()).device(xv.device()));
               kernels::mse_backward(gx, xv, tv, gg, scale);
             }
             if (gt_needed) {
               gt = empty(shape, TensorOptions(xv.dtype()).device(xv.device()));
               kernels::mse_backward(gt, tv, xv, gg, scale);
             }
             return {gx, gt};
           });
  }
  return out;
}

}  // namespace mantissa
