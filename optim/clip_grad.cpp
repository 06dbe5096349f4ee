// clip_grad_norm_ / clip_grad_value_: checks, the norm combined over all gradients in F64 and
// rounded to the gradients' type, PyTorch's clip coefficient, and the in-place kernels.
#include "optim/clip_grad.h"

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/kernels/copy.h"
#include "core/kernels/grad_clip.h"

namespace mantissa::optim {
namespace {

// Runs f on a contiguous view of g's values, writing back when g is not contiguous.
template <typename F>
void with_contiguous(const Tensor& g, const F& f, bool write_back) {
  if (g.is_contiguous()) {
    f(g);
    return;
  }
  Tensor dense = empty_like(g);
  kernels::copy(dense, g);
  f(dense);
  if (write_back) kernels::copy(g, dense);
}

void check_grad(const Tensor& g, size_t i, const char* op) {
  MANTISSA_CHECK(g.is_floating_point(), op, ": the gradient of parameter ", i, " has dtype ", g.dtype(),
                 "; expected a floating dtype");
#ifndef MANTISSA_HAVE_CUDA
  MANTISSA_CHECK(g.is_cpu(), op, ": the gradient of parameter ", i, " is on ", g.device(),
                 "; CUDA tensors need a build with CUDA (configure with -DMANTISSA_CUDA=ON)");
#endif
}

}  // namespace

double clip_grad_norm_(const std::vector<Tensor>& parameters, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  constexpr const char* kOp = "clip_grad_norm_";
  MANTISSA_CHECK(norm_type >= 0.0, kOp, ": norm_type must be >= 0 or inf, got ", norm_type);
  NoGradGuard no_grad;
  const bool inf = std::isinf(norm_type);
  bool any = false, all_f64 = true;
  double acc = 0.0;  // sum of partials, max for inf, nonzero-tensor count for 0
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor g = parameters[i].grad();
    if (!g.defined()) continue;
    check_grad(g, i, kOp);
    any = true;
    all_f64 = all_f64 && g.dtype() == DType::F64;
    double part = 0.0;
    with_contiguous(g, [&](const Tensor& d) { part = kernels::grad_norm_partial(d, norm_type); }, false);
    if (inf) acc = (std::isnan(part) || std::isnan(acc)) ? std::numeric_limits<double>::quiet_NaN() : std::max(acc, part);
    else if (norm_type == 0.0) acc += part != 0.0 ? 1.0 : 0.0;  // torch.norm(stack(counts), 0)
    else acc += part;
  }
  if (!any) return 0.0;
  double total = acc;
  if (!inf && norm_type != 0.0) total = norm_type == 1.0 ? acc : norm_type == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / norm_type);
  if (!all_f64) total = static_cast<float>(total);
  MANTISSA_CHECK(!error_if_nonfinite || std::isfinite(total), kOp, ": the total norm of order ", norm_type,
                 " of the gradients is ", total, " (non-finite), so they cannot be clipped; pass error_if_nonfinite=false to "
                 "scale them by the non-finite norm anyway");
  // PyTorch: clip_coef = max_norm / (total + 1e-6), evaluated as reciprocal(total + 1e-6) * max_norm
  // in the norm's dtype, then clamped to at most 1 (NaN stays NaN).
  double coef;
  if (all_f64) {
    coef = (1.0 / (total + 1e-6)) * max_norm;
    coef = coef > 1.0 ? 1.0 : coef;
  } else {
    float c = (1.0f / (static_cast<float>(total) + 1e-6f)) * static_cast<float>(max_norm);
    coef = c > 1.0f ? 1.0f : c;
  }
  if (coef == 1.0) return total;  // multiplying by 1 changes nothing
  for (const Tensor& p : parameters) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    with_contiguous(g, [&](const Tensor& d) { kernels::grad_scale_(d, coef); }, true);
    g.bump_version();
  }
  return total;
}

double clip_grad_norm_(const Tensor& parameter, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm_(std::vector<Tensor>{parameter}, max_norm, norm_type, error_if_nonfinite);
}

void clip_grad_value_(const std::vector<Tensor>& parameters, double clip_value) {
  constexpr const char* kOp = "clip_grad_value_";
  MANTISSA_CHECK(!std::isnan(clip_value), kOp, ": clip_value is NaN");
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor g = parameters[i].grad();
    if (!g.defined()) continue;
    check_grad(g, i, kOp);
    with_contiguous(g, [&](const Tensor& d) { kernels::grad_clamp_(d, -clip_value, clip_value); }, true);
    g.bump_version();
  }
}

void clip_grad_value_(const Tensor& parameter, double clip_value) {
  clip_grad_value_(std::vector<Tensor>{parameter}, clip_value);
}

}  // namespace mantissa::optim
