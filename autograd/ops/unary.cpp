// Elementwise unary ops (neg, exp, log, sqrt, rsqrt, abs, relu, gelu, sigmoid, tanh, silu, clamp):
// dtype rules (integer inputs to the transcendental ops compute in F32, as PyTorch), forward
// dispatch to core/kernels/elementwise.h, and the backward formula right under each forward.
#include <cmath>
#include <limits>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/kernels/elementwise.h"
#include "core/quantized.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;
using kernels::UnaryGradOp;
using kernels::UnaryOp;

namespace {

Tensor cast(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t;
  Tensor out = empty(t.sizes(), TensorOptions(dt).device(t.device()));
  kernels::copy(out, t);
  return out;
}

// Which tensor the backward formula reads: the input, or the output when the derivative is
// cheapest from it (exp, sqrt, rsqrt, sigmoid, tanh, relu).
enum class Save { Input, Output };

// The backward of a unary op: g * f'(saved), fused and rounded once.
void record_unary(OpId id, const Tensor& x, const Tensor& out, UnaryGradOp grad_op, const Tensor& saved) {
  record(id, {x}, {out}, [grad_op, s = SavedTensor(saved)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
    Tensor sv = s.unpack();
    Tensor gg = cast(g[0], sv.dtype());
    Tensor r = empty(gg.sizes(), TensorOptions(gg.dtype()).device(gg.device()));
    kernels::unary_backward(grad_op, r, gg, sv);
    return {r};
  });
}

// Ops defined on floating values only: integer and Bool inputs compute in F32.
Tensor floating_unary(OpId id, UnaryOp op, UnaryGradOp grad_op, Save save, const Tensor& x) {
  if (auto c = autograd::autocast(id, x)) return floating_unary(id, op, grad_op, save, (*c)[0]);
  const DType dt = is_floating(x.dtype()) ? x.dtype() : DType::F32;
  Tensor xc = cast(x, dt);
  Tensor out = empty(x.sizes(), TensorOptions(dt).device(x.device()));
  kernels::unary(op, out, xc);
  if (autograd::needs_grad(x)) record_unary(id, x, out, grad_op, save == Save::Input ? xc : out);
  return out;
}

// Ops that keep an integer dtype (Bool has no sign or order to work on: rejected).
Tensor same_dtype_unary(const char* name, UnaryOp op, const Tensor& x) {
  MANTISSA_CHECK(x.dtype() != DType::Bool, name, ": not supported for Bool tensors (shape ", shape_str(x.sizes()),
                 "); convert to an integer or floating dtype first");
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::unary(op, out, x);
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) {
  if (auto c = autograd::autocast(OpId::neg, x)) return neg((*c)[0]);
  Tensor out = same_dtype_unary("neg", UnaryOp::Neg, x);
  if (autograd::needs_grad(x)) {
    record(OpId::neg, {x}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {neg(g[0])}; });
  }
  return out;
}

Tensor exp(const Tensor& x) { return floating_unary(OpId::exp, UnaryOp::Exp, UnaryGradOp::Exp, Save::Output, x); }
Tensor log(const Tensor& x) { return floating_unary(OpId::log, UnaryOp::Log, UnaryGradOp::Log, Save::Input, x); }
Tensor sqrt(const Tensor& x) { return floating_unary(OpId::sqrt, UnaryOp::Sqrt, UnaryGradOp::Sqrt, Save::Output, x); }
Tensor rsqrt(const Tensor& x) {
  return floating_unary(OpId::rsqrt, UnaryOp::Rsqrt, UnaryGradOp::Rsqrt, Save::Output, x);
}
Tensor sigmoid(const Tensor& x) {
  return floating_unary(OpId::sigmoid, UnaryOp::Sigmoid, UnaryGradOp::Sigmoid, Save::Output, x);
}
Tensor tanh(const Tensor& x) { return floating_unary(OpId::tanh, UnaryOp::Tanh, UnaryGradOp::Tanh, Save::Output, x); }
Tensor silu(const Tensor& x) { return floating_unary(OpId::silu, UnaryOp::Silu, UnaryGradOp::Silu, Save::Input, x); }

Tensor gelu(const Tensor& x, const std::string& approximate) {
  MANTISSA_CHECK(approximate == "none" || approximate == "tanh",
                 "gelu: approximate must be \"none\" or \"tanh\" (got \"", approximate, "\")");
  const bool tanh_form = approximate == "tanh";
  return floating_unary(OpId::gelu, tanh_form ? UnaryOp::GeluTanh : UnaryOp::Gelu,
                        tanh_form ? UnaryGradOp::GeluTanh : UnaryGradOp::Gelu, Save::Input, x);
}

Tensor abs(const Tensor& x) {
  if (auto c = autograd::autocast(OpId::abs, x)) return abs((*c)[0]);
  Tensor out = same_dtype_unary("abs", UnaryOp::Abs, x);
  if (autograd::needs_grad(x)) record_unary(OpId::abs, x, out, UnaryGradOp::Abs, x);
  return out;
}

Tensor relu(const Tensor& x) {
  if (x.is_quantized()) return quantized_relu(x);  // codes max(q, zero_point), same qparams
  if (auto c = autograd::autocast(OpId::relu, x)) return relu((*c)[0]);
  Tensor out = same_dtype_unary("relu", UnaryOp::Relu, x);
  // y > 0 exactly where x > 0, so the output serves (as in PyTorch's threshold_backward).
  if (autograd::needs_grad(x)) record_unary(OpId::relu, x, out, UnaryGradOp::Relu, out);
  return out;
}

Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  if (auto c = autograd::autocast(OpId::clamp, x)) return clamp((*c)[0], min, max);
  MANTISSA_CHECK(min.has_value() || max.has_value(), "clamp: at least one of min and max must be given (shape ",
                 shape_str(x.sizes()), ", dtype ", x.dtype(), ")");
  MANTISSA_CHECK(is_floating(x.dtype()) || ((!min || !std::isnan(*min)) && (!max || !std::isnan(*max))),
                 "clamp: a NaN bound is not allowed for integer tensors (dtype ", x.dtype(), ")");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double lo = min.value_or(-kInf), hi = max.value_or(kInf);
  MANTISSA_CHECK(x.dtype() != DType::Bool, "clamp: not supported for Bool tensors (shape ", shape_str(x.sizes()), ")");
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::clamp(out, x, lo, hi);
  if (autograd::needs_grad(x)) {
    record(OpId::clamp, {x}, {out}, [sx = SavedTensor(x), lo, hi](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor xv = sx.unpack();
      Tensor gg = cast(g[0], xv.dtype());
      Tensor r = empty(gg.sizes(), TensorOptions(gg.dtype()).device(gg.device()));
      kernels::clamp_backward(r, gg, xv, lo, hi);
      return {r};
    });
  }
  return out;
}

}  // namespace mantissa
