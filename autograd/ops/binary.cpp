// Elementwise binary ops (add, sub, mul, div, pow, maximum, minimum, where, comparisons) and the
// operator overloads: broadcasting, PyTorch type promotion, forward dispatch to
// core/kernels/elementwise.h, and each backward formula right under its forward.
#include <cmath>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/kernels/elementwise.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;
using kernels::BinaryGradOp;
using kernels::BinaryOp;
using kernels::CompareOp;

namespace {

void check_devices(const char* op, const Tensor& a, const Tensor& b) {
  MANTISSA_CHECK(a.device() == b.device(), op, ": expected both tensors on the same device, got ", a.device(), " (",
                 shape_str(a.sizes()), " ", a.dtype(), ") and ", b.device(), " (", shape_str(b.sizes()), " ",
                 b.dtype(), ")");
}

// A copy of t in dtype dt, outside autograd (the op records its own node on the originals).
Tensor cast(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t;
  Tensor out = empty(t.sizes(), TensorOptions(dt).device(t.device()));
  kernels::copy(out, t);
  return out;
}

// A double that an integer tensor can take without turning the result floating.
bool is_integral_scalar(double s) { return std::isfinite(s) && s == std::trunc(s) && std::fabs(s) < 9.2e18; }

// Dtype of `tensor op scalar`: a double keeps a floating tensor's dtype (the scalar does not
// promote), keeps an integer dtype when integral, and gives F32 otherwise. Bool with an
// integral scalar computes in I64, as PyTorch's bool + int.
DType scalar_result_type(const Tensor& x, double s) {
  if (is_floating(x.dtype())) return x.dtype();
  if (!is_integral_scalar(s)) return DType::F32;
  return x.dtype() == DType::Bool ? DType::I64 : x.dtype();
}

// Operands of a tensor-tensor op, promoted to the compute dtype, and the broadcast shape.
struct Operands {
  Tensor a, b;
  Shape shape;
  DType dtype;
};

Operands prepare(const char* op, const Tensor& a, const Tensor& b, DType dt) {
  check_devices(op, a, b);
  Operands o;
  o.shape = broadcast_shapes(a.sizes(), b.sizes(), op);
  o.dtype = dt;
  o.a = cast(a, dt);
  o.b = cast(b, dt);
  return o;
}

Tensor new_output(const Shape& shape, DType dt, const Tensor& like) {
  return empty(shape, TensorOptions(dt).device(like.device()));
}

// The gradient of the output in the dtype the op computed in (the engine hands it over in the
// output's dtype already; this only guards the invariant).
Tensor grad_in(const Tensor& g, DType dt) { return cast(g, dt); }

Tensor fused_grad(BinaryGradOp op, const Tensor& g, const Tensor& a, const Tensor& b) {
  Tensor out = new_output(g.sizes(), g.dtype(), g);
  kernels::binary_backward(op, out, g, a, b);
  return out;
}

Tensor binary_forward(BinaryOp op, const Operands& o, double alpha = 1.0) {
  Tensor out = new_output(o.shape, o.dtype, o.a);
  kernels::binary(op, out, o.a, o.b, alpha);
  return out;
}

void check_alpha(const char* op, DType dt, double alpha) {
  MANTISSA_CHECK(dt != DType::Bool || alpha == 1.0, op, ": alpha must be 1 for Bool tensors (got ", alpha, ")");
  MANTISSA_CHECK(is_floating(dt) || is_integral_scalar(alpha), op, ": alpha ", alpha,
                 " must be an integer for integer tensors (dtype ", dt, ")");
}

}  // namespace

// add / sub -----------------------------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b, double alpha) {
  if (auto c = autograd::autocast(OpId::add, a, b)) return add((*c)[0], (*c)[1], alpha);
  Operands o = prepare("add", a, b, result_type(a, b));
  check_alpha("add", o.dtype, alpha);
  Tensor out = binary_forward(BinaryOp::Add, o, alpha);
  if (autograd::needs_grad(a, b)) {
    record(OpId::add, {a, b}, {out}, [alpha](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0], alpha == 1.0 ? g[0] : mul(g[0], alpha)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, double alpha) {
  if (auto c = autograd::autocast(OpId::sub, a, b)) return sub((*c)[0], (*c)[1], alpha);
  Operands o = prepare("sub", a, b, result_type(a, b));
  MANTISSA_CHECK(o.dtype != DType::Bool, "sub: subtracting two Bool tensors (", shape_str(a.sizes()), " and ",
                 shape_str(b.sizes()), ") is not supported; to invert a mask use logical_not or eq(mask, false)");
  check_alpha("sub", o.dtype, alpha);
  Tensor out = binary_forward(BinaryOp::Sub, o, alpha);
  if (autograd::needs_grad(a, b)) {
    record(OpId::sub, {a, b}, {out}, [alpha](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0], alpha == 1.0 ? neg(g[0]) : mul(g[0], -alpha)};
    });
  }
  return out;
}

// mul / div -----------------------------------------------------------------------------------
Tensor mul(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::mul, a, b)) return mul((*c)[0], (*c)[1]);
  Operands o = prepare("mul", a, b, result_type(a, b));
  Tensor out = binary_forward(BinaryOp::Mul, o);
  if (autograd::needs_grad(a, b)) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    SavedTensor sa = gb ? o.a : Tensor(), sb = ga ? o.b : Tensor();
    record(OpId::mul, {a, b}, {out}, [ga, gb, sa, sb](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {ga ? mul(g[0], sb.unpack()) : Tensor(), gb ? mul(g[0], sa.unpack()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::div, a, b)) return div((*c)[0], (*c)[1]);
  // Integer (and Bool) division is true division, in F32 as PyTorch's default dtype.
  DType dt = result_type(a, b);
  if (!is_floating(dt)) dt = DType::F32;
  Operands o = prepare("div", a, b, dt);
  Tensor out = binary_forward(BinaryOp::Div, o);
  if (autograd::needs_grad(a, b)) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    SavedTensor sa = gb ? o.a : Tensor(), sb = o.b;
    record(OpId::div, {a, b}, {out}, [ga, gb, sa, sb, dt](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor gg = grad_in(g[0], dt), bv = sb.unpack();
      return {ga ? div(gg, bv) : Tensor(), gb ? fused_grad(BinaryGradOp::DivOther, gg, sa.unpack(), bv) : Tensor()};
    });
  }
  return out;
}

// pow -----------------------------------------------------------------------------------------
Tensor pow(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::pow, a, b)) return pow((*c)[0], (*c)[1]);
  Operands o = prepare("pow", a, b, result_type(a, b));
  MANTISSA_CHECK(o.dtype != DType::Bool, "pow: not supported for two Bool tensors (shapes ", shape_str(a.sizes()),
                 " and ", shape_str(b.sizes()), ")");
  Tensor out = binary_forward(BinaryOp::Pow, o);
  if (autograd::needs_grad(a, b)) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    SavedTensor sa = o.a, sb = o.b;
    const DType dt = o.dtype;
    record(OpId::pow, {a, b}, {out}, [ga, gb, sa, sb, dt](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor gg = grad_in(g[0], dt), av = sa.unpack(), bv = sb.unpack();
      return {ga ? fused_grad(BinaryGradOp::PowSelf, gg, av, bv) : Tensor(),
              gb ? fused_grad(BinaryGradOp::PowExponent, gg, av, bv) : Tensor()};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, double exponent) {
  if (auto c = autograd::autocast(OpId::pow, a)) return pow((*c)[0], exponent);
  DType dt = scalar_result_type(a, exponent);
  MANTISSA_CHECK(is_floating(dt) || exponent >= 0, "pow: integers to negative integer powers are not allowed (dtype ",
                 a.dtype(), ", exponent ", exponent, ")");
  Tensor x = cast(a, dt);
  Tensor out = new_output(a.sizes(), dt, a);
  kernels::pow_scalar(out, x, exponent);
  if (autograd::needs_grad(a)) {
    record(OpId::pow, {a}, {out}, [sx = SavedTensor(x), exponent](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor xv = sx.unpack();
      Tensor gg = grad_in(g[0], xv.dtype());
      Tensor r = new_output(gg.sizes(), gg.dtype(), gg);
      kernels::unary_backward(kernels::UnaryGradOp::PowScalar, r, gg, xv, exponent);
      return {r};
    });
  }
  return out;
}

// maximum / minimum: ties split the gradient in half between the operands, as PyTorch --------
namespace {
Tensor extremum(OpId id, BinaryOp op, BinaryGradOp self_grad, BinaryGradOp other_grad, const char* name,
                const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(id, a, b)) return extremum(id, op, self_grad, other_grad, name, (*c)[0], (*c)[1]);
  Operands o = prepare(name, a, b, result_type(a, b));
  Tensor out = binary_forward(op, o);
  if (autograd::needs_grad(a, b)) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    SavedTensor sa = o.a, sb = o.b;
    const DType dt = o.dtype;
    record(id, {a, b}, {out},
           [ga, gb, sa, sb, dt, self_grad, other_grad](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor gg = grad_in(g[0], dt), av = sa.unpack(), bv = sb.unpack();
             return {ga ? fused_grad(self_grad, gg, av, bv) : Tensor(),
                     gb ? fused_grad(other_grad, gg, av, bv) : Tensor()};
           });
  }
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return extremum(OpId::maximum, BinaryOp::Maximum, BinaryGradOp::MaximumSelf, BinaryGradOp::MaximumOther, "maximum",
                  a, b);
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return extremum(OpId::minimum, BinaryOp::Minimum, BinaryGradOp::MinimumSelf, BinaryGradOp::MinimumOther, "minimum",
                  a, b);
}

// Tensor-scalar arithmetic --------------------------------------------------------------------
namespace {
// x op s, or s op x when scalar_first. The scalar never becomes a tensor: it is applied in the
// compute type (F32 for F16/BF16 tensors), so the result is rounded once.
Tensor scalar_op(OpId id, BinaryOp op, const char* name, const Tensor& x, double s, bool scalar_first = false) {
  if (auto c = autograd::autocast(id, x)) return scalar_op(id, op, name, (*c)[0], s, scalar_first);
  DType dt = scalar_result_type(x, s);
  if (op == BinaryOp::Div && !is_floating(dt)) dt = DType::F32;
  MANTISSA_CHECK(!(op == BinaryOp::Sub && dt == DType::Bool), name,
                 ": subtraction with a Bool tensor is not supported (shape ", shape_str(x.sizes()), ")");
  Tensor xc = cast(x, dt);
  Tensor out = new_output(x.sizes(), dt, x);
  kernels::binary_scalar(op, out, xc, s, scalar_first);
  if (autograd::needs_grad(x)) {
    switch (op) {
      case BinaryOp::Add:
        record(id, {x}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
        break;
      case BinaryOp::Sub:
        record(id, {x}, {out}, [scalar_first](const std::vector<Tensor>& g) -> std::vector<Tensor> {
          return {scalar_first ? neg(g[0]) : g[0]};
        });
        break;
      case BinaryOp::Mul:
        record(id, {x}, {out}, [s](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {mul(g[0], s)}; });
        break;
      case BinaryOp::Div:
        if (scalar_first) {
          // d(s/x)/dx = -s/x^2 = -y/x, from the saved output and input.
          record(id, {x}, {out},
                 [sx = SavedTensor(xc), sy = SavedTensor(out)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                   return {neg(mul(div(g[0], sx.unpack()), sy.unpack()))};
                 });
        } else {
          record(id, {x}, {out}, [s](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {div(g[0], s)}; });
        }
        break;
      default: MANTISSA_ASSERT(false, "scalar_op: no backward for ", name);
    }
  }
  return out;
}
}  // namespace

Tensor add(const Tensor& a, double b) { return scalar_op(OpId::add, BinaryOp::Add, "add", a, b); }
Tensor sub(const Tensor& a, double b) { return scalar_op(OpId::sub, BinaryOp::Sub, "sub", a, b); }
Tensor mul(const Tensor& a, double b) { return scalar_op(OpId::mul, BinaryOp::Mul, "mul", a, b); }
Tensor div(const Tensor& a, double b) { return scalar_op(OpId::div, BinaryOp::Div, "div", a, b); }

// where ---------------------------------------------------------------------------------------
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::where, cond, a, b)) return where((*c)[0], (*c)[1], (*c)[2]);
  MANTISSA_CHECK(cond.dtype() == DType::Bool, "where: the condition must be a Bool tensor (got ", cond.dtype(),
                 " of shape ", shape_str(cond.sizes()), "); compare it first, e.g. ne(cond, 0)");
  check_devices("where", cond, a);
  Operands o = prepare("where", a, b, result_type(a, b));
  Shape shape = broadcast_shapes(cond.sizes(), o.shape, "where");
  Tensor out = new_output(shape, o.dtype, a);
  kernels::where(out, cond, o.a, o.b);
  if (autograd::needs_grad(a, b)) {
    const bool ga = a.requires_grad(), gb = b.requires_grad();
    record(OpId::where, {cond, a, b}, {out},
           [ga, gb, sc = SavedTensor(cond)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor c = sc.unpack();
             Tensor zero = zeros({}, TensorOptions(g[0].dtype()).device(g[0].device()));
             return {Tensor(), ga ? where(c, g[0], zero) : Tensor(), gb ? where(c, zero, g[0]) : Tensor()};
           });
  }
  return out;
}

// Comparisons: Bool results, never recorded ---------------------------------------------------
namespace {
Tensor compare_op(CompareOp op, const char* name, const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::compare, a, b)) return compare_op(op, name, (*c)[0], (*c)[1]);
  Operands o = prepare(name, a, b, result_type(a, b));
  Tensor out = new_output(o.shape, DType::Bool, a);
  kernels::compare(op, out, o.a, o.b);
  return out;
}
Tensor compare_scalar_op(CompareOp op, const Tensor& a, double s) {
  if (auto c = autograd::autocast(OpId::compare, a)) return compare_scalar_op(op, (*c)[0], s);
  Tensor out = new_output(a.sizes(), DType::Bool, a);
  kernels::compare_scalar(op, out, a, s);
  return out;
}
}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::Ge, "ge", a, b); }
Tensor eq(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Eq, a, b); }
Tensor ne(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Ne, a, b); }
Tensor lt(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Lt, a, b); }
Tensor le(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Le, a, b); }
Tensor gt(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Gt, a, b); }
Tensor ge(const Tensor& a, double b) { return compare_scalar_op(CompareOp::Ge, a, b); }

// Operators -----------------------------------------------------------------------------------
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { return scalar_op(OpId::sub, BinaryOp::Sub, "sub", b, a, true); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { return scalar_op(OpId::div, BinaryOp::Div, "div", b, a, true); }
Tensor operator-(const Tensor& a) { return neg(a); }

}  // namespace mantissa
