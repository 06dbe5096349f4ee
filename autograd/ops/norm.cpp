// Normalization ops: batch_norm (training statistics + in-place running-stat update, or eval
// with running stats) and layer_norm over trailing dims. Statistics live in F32 (F64 for F64)
// whatever the input dtype, so F16/BF16 activations may come with F32 parameters and stats.
#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/kernels/norm.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

// A contiguous tensor with x's values: x itself when it already is, else a private copy.
Tensor dense(const Tensor& x) {
  if (x.is_contiguous()) return x.detach();
  Tensor out = empty_like(x);
  kernels::copy(out, x);
  return out;
}

// A private contiguous copy of a parameter vector in the accumulate dtype (undefined stays so).
Tensor to_acc(const Tensor& t, DType acc) {
  if (!t.defined()) return t;
  Tensor out = empty(t.sizes(), TensorOptions(acc).device(t.device()));
  kernels::copy(out, t);
  return out;
}

void check_cpu(const Tensor& t, const char* op, const char* what) {
  (void)what;
  autograd::check_backend(t, op);
}

// weight/bias/running stats of batch_norm: optional, floating, [C], on x's device.
void check_channel_vector(const Tensor& t, const char* what, int64_t channels, const Tensor& x) {
  if (!t.defined()) return;
  MANTISSA_CHECK(is_floating(t.dtype()), "batch_norm: ", what, " must be floating point (got ", t.dtype(), ")");
  MANTISSA_CHECK(t.dim() == 1 && t.size(0) == channels, "batch_norm: ", what, " has shape ", shape_str(t.sizes()),
                 " but the input ", shape_str(x.sizes()), " has ", channels, " channels (expected [", channels, "])");
  MANTISSA_CHECK(t.device() == x.device(), "batch_norm: ", what, " is on ", t.device(), " but the input is on ",
                 x.device());
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps) {
  // Running statistics are never cast: the update must land in the module's own buffers.
  if (auto c = autograd::autocast(OpId::batch_norm, x, weight, bias))
    return batch_norm((*c)[0], (*c)[1], (*c)[2], running_mean, running_var, training, momentum, eps);
  MANTISSA_CHECK(x.defined(), "batch_norm: the input is an undefined tensor");
  MANTISSA_CHECK(x.dim() >= 2, "batch_norm: expected an input of at least 2 dims [N, C, ...], got shape ",
                 shape_str(x.sizes()));
  MANTISSA_CHECK(is_floating(x.dtype()), "batch_norm: the input must be floating point (got ", x.dtype(), ")");
  const int64_t channels = x.size(1);
  check_channel_vector(weight, "weight", channels, x);
  check_channel_vector(bias, "bias", channels, x);
  check_channel_vector(running_mean, "running_mean", channels, x);
  check_channel_vector(running_var, "running_var", channels, x);
  MANTISSA_CHECK(running_mean.defined() == running_var.defined(),
                 "batch_norm: running_mean and running_var must be given together (got only ",
                 running_mean.defined() ? "running_mean" : "running_var", ")");
  MANTISSA_CHECK(training || running_mean.defined(),
                 "batch_norm: running_mean and running_var are required in eval mode (training=false); pass them, "
                 "or normalize with batch statistics (training=true)");
  MANTISSA_CHECK(eps >= 0, "batch_norm: eps must be non-negative (got ", eps, ")");
  check_cpu(x, "batch_norm", "the input");

  kernels::BatchNormShape shp{x.size(0), channels, 1};
  for (int64_t d = 2; d < x.dim(); ++d) shp.s *= x.size(d);
  const int64_t count = shp.n * shp.s;
  MANTISSA_CHECK(!training || count != 1, "batch_norm: expected more than 1 value per channel when training, got input "
                 "of shape ", shape_str(x.sizes()));

  const DType acc = kernels::norm_acc_dtype(x.dtype());
  Tensor xc = dense(x);
  Tensor mean = zeros({channels}, TensorOptions(acc).device(x.device())), invstd = zeros({channels}, acc);
  if (!training) {
    kernels::batch_norm_eval_stats(running_mean, running_var, eps, mean, invstd);
  } else if (count > 0) {
    Tensor var = empty({channels}, TensorOptions(acc).device(x.device()));
    kernels::batch_norm_stats(xc, shp, eps, mean, var, invstd);
    if (running_mean.defined()) {
      // Buffers, not graph inputs: updated in place outside autograd, versions bumped so a
      // backward that saved them notices.
      NoGradGuard no_grad;
      kernels::batch_norm_update_running(running_mean, running_var, mean, var, momentum, count);
      running_mean.bump_version();
      running_var.bump_version();
    }
  }
  // An empty batch yields an empty output and leaves the running stats alone, as in PyTorch.
  Tensor w = to_acc(weight, acc), b = to_acc(bias, acc);
  Tensor y = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel() > 0) kernels::batch_norm_apply(y, xc, shp, mean, invstd, w, b);

  if (autograd::needs_grad(x, weight, bias)) {
    const bool need_x = x.requires_grad();
    const bool need_w = weight.defined() && weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record(OpId::batch_norm, {x, weight, bias}, {y},
           [sx = SavedTensor(xc), w, mean, invstd, shp, training, need_x, need_w, need_b, acc](
               const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xs = sx.unpack();
             Tensor gc = dense(g[0]);
             if (gc.dtype() != xs.dtype()) gc = gc.to(xs.dtype());
             Tensor gx = need_x ? empty(xs.sizes(), TensorOptions(xs.dtype()).device(xs.device())) : Tensor();
             Tensor gw = need_w ? empty({shp.c}, TensorOptions(acc).device(xs.device())) : Tensor();
             Tensor gb = need_b ? empty({shp.c}, TensorOptions(acc).device(xs.device())) : Tensor();
             kernels::batch_norm_backward(gc, xs, shp, mean, invstd, w, training, gx, gw, gb);
             return {gx, gw, gb};
           });
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  if (auto c = autograd::autocast(OpId::layer_norm, x, weight, bias))
    return layer_norm((*c)[0], normalized_shape, (*c)[1], (*c)[2], eps);
  MANTISSA_CHECK(x.defined(), "layer_norm: the input is an undefined tensor");
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  MANTISSA_CHECK(k >= 1, "layer_norm: normalized_shape must have at least one dimension (got [])");
  MANTISSA_CHECK(is_floating(x.dtype()), "layer_norm: the input must be floating point (got ", x.dtype(), ")");
  bool trailing = x.dim() >= k;
  for (int64_t i = 0; trailing && i < k; ++i) trailing = x.size(x.dim() - k + i) == normalized_shape[i];
  MANTISSA_CHECK(trailing, "layer_norm: input of shape ", shape_str(x.sizes()), " does not end with normalized_shape ",
                 shape_str(normalized_shape));
  for (const auto& [t, what] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    MANTISSA_CHECK(is_floating(t->dtype()), "layer_norm: ", what, " must be floating point (got ", t->dtype(), ")");
    MANTISSA_CHECK(t->sizes() == normalized_shape, "layer_norm: ", what, " has shape ", shape_str(t->sizes()),
                   " but normalized_shape is ", shape_str(normalized_shape));
    MANTISSA_CHECK(t->device() == x.device(), "layer_norm: ", what, " is on ", t->device(), " but the input is on ",
                   x.device());
  }
  MANTISSA_CHECK(eps >= 0, "layer_norm: eps must be non-negative (got ", eps, ")");
  check_cpu(x, "layer_norm", "the input");

  const int64_t d = shape_numel(normalized_shape);
  int64_t rows = 1;
  for (int64_t i = 0; i < x.dim() - k; ++i) rows *= x.size(i);
  const DType acc = kernels::norm_acc_dtype(x.dtype());
  Tensor xc = dense(x);
  Tensor w = to_acc(weight, acc), b = to_acc(bias, acc);
  Tensor mean = zeros({rows}, TensorOptions(acc).device(x.device())), rstd = zeros({rows}, acc);
  Tensor y = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (x.numel() > 0) kernels::layer_norm_forward(y, xc, rows, d, w, b, eps, mean, rstd);

  if (autograd::needs_grad(x, weight, bias)) {
    const bool need_x = x.requires_grad();
    const bool need_w = weight.defined() && weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record(OpId::layer_norm, {x, weight, bias}, {y},
           [sx = SavedTensor(xc), w, mean, rstd, rows, d, need_x, need_w, need_b, acc, wshape = normalized_shape](
               const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xs = sx.unpack();
             Tensor gc = dense(g[0]);
             if (gc.dtype() != xs.dtype()) gc = gc.to(xs.dtype());
             Tensor gx = need_x ? empty(xs.sizes(), TensorOptions(xs.dtype()).device(xs.device())) : Tensor();
             Tensor gw = need_w ? zeros(wshape, TensorOptions(acc).device(xs.device())) : Tensor();
             Tensor gb = need_b ? zeros(wshape, TensorOptions(acc).device(xs.device())) : Tensor();
             if (xs.numel() > 0) kernels::layer_norm_backward(gc, xs, rows, d, mean, rstd, w, gx, gw, gb);
             return {gx, gw, gb};
           });
  }
  return y;
}

}  // namespace mantissa
