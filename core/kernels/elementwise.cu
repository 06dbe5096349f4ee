// CUDA kernels of the elementwise family (elementwise.h): binary/scalar arithmetic, comparisons,
// where, unary math, scalar pow, clamp and the fused backward formulas. Every kernel is one
// cuda_map over a functor that calls the same scalar formulas as the CPU (elementwise_math.h),
// with scalars converted on the host exactly as binary.cpp / unary.cpp convert them.
#include <cmath>
#include <type_traits>

#include "core/dtype.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/elementwise.h"
#include "core/kernels/elementwise_math.h"
#include "core/kernels/elementwise_scalars.h"

namespace mantissa::kernels::cuda {

namespace {

namespace m = ::mantissa::kernels::math;

template <typename T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// math::int_pow with an int64 exponent. For unsigned bases its negative-exponent rule (1 for
// base 1, 0 otherwise: no unsigned value equals -1) is spelled out here, because instantiating
// the signed branch for an unsigned base is a "pointless comparison" error under nvcc -Werror.
template <typename C>
__device__ __forceinline__ C int_pow_i64(C x, int64_t e) {
  if constexpr (std::is_unsigned_v<C>) {
    if (e < 0) return x == C(1) ? C(1) : C(0);
    return m::int_pow(x, static_cast<uint64_t>(e));
  } else {
    return m::int_pow(x, e);
  }
}

// ---- binary: C is the compute type (float for F16/BF16, T otherwise). The wrap_* helpers are
// plain arithmetic for floating C and two's complement wrapping for integers, as on the CPU.
template <typename C>
struct AddOp {
  __device__ C operator()(C x, C y) const { return m::wrap_add(x, y); }
};
template <typename C>
struct AddAlphaOp {
  C al;
  __device__ C operator()(C x, C y) const { return m::wrap_add(x, m::wrap_mul(al, y)); }
};
template <typename C>
struct SubOp {
  __device__ C operator()(C x, C y) const { return m::wrap_sub(x, y); }
};
template <typename C>
struct SubAlphaOp {
  C al;
  __device__ C operator()(C x, C y) const { return m::wrap_sub(x, m::wrap_mul(al, y)); }
};
template <typename C>
struct MulOp {
  __device__ C operator()(C x, C y) const { return m::wrap_mul(x, y); }
};
template <typename C>
struct DivOp {
  __device__ C operator()(C x, C y) const { return x / y; }
};
template <typename C>
struct PowOp {
  __device__ C operator()(C x, C y) const {
    if constexpr (std::is_integral_v<C>) return m::int_pow(x, y);
    else return std::pow(x, y);
  }
};
template <typename C>
struct MaximumOp {
  __device__ C operator()(C x, C y) const { return m::maximum(x, y); }
};
template <typename C>
struct MinimumOp {
  __device__ C operator()(C x, C y) const { return m::minimum(x, y); }
};
// Bool arithmetic: add/maximum are "or", mul/minimum are "and" (as on the CPU).
struct OrOp {
  __device__ bool operator()(bool x, bool y) const { return x || y; }
};
struct AndOp {
  __device__ bool operator()(bool x, bool y) const { return x && y; }
};

// ---- tensor-scalar: v already converted on the host (scalars::as_int or static_cast<C>).
template <typename C>
struct AddScalarOp {
  C v;
  __device__ C operator()(C x) const { return m::wrap_add(x, v); }
};
template <typename C>
struct SubScalarOp {  // x - v, or v - x when first
  C v;
  bool first;
  __device__ C operator()(C x) const { return first ? m::wrap_sub(v, x) : m::wrap_sub(x, v); }
};
template <typename C>
struct MulScalarOp {
  C v;
  __device__ C operator()(C x) const { return m::wrap_mul(x, v); }
};
template <typename C>
struct DivScalarOp {
  C v;
  bool first;
  __device__ C operator()(C x) const { return first ? v / x : x / v; }
};
template <typename C>
struct PowScalarFloatOp {  // x^v, or v^x when first
  C v;
  bool first;
  __device__ C operator()(C x) const { return first ? std::pow(v, x) : std::pow(x, v); }
};
template <typename C>
struct IntPowBaseOp {  // v^x, integer exponent from the tensor
  C v;
  __device__ C operator()(C x) const { return m::int_pow(v, x); }
};
template <typename C>
struct IntPowExpOp {  // x^e, e an int64 exponent
  int64_t e;
  __device__ C operator()(C x) const { return int_pow_i64(x, e); }
};
template <typename C>
struct MaximumScalarOp {
  C v;
  __device__ C operator()(C x) const { return m::maximum(x, v); }
};
template <typename C>
struct MinimumScalarOp {
  C v;
  __device__ C operator()(C x) const { return m::minimum(x, v); }
};
struct OrScalarOp {
  bool v;
  __device__ bool operator()(bool x) const { return x || v; }
};
struct AndScalarOp {
  bool v;
  __device__ bool operator()(bool x) const { return x && v; }
};

// ---- comparisons
template <CompareOp Op, typename X, typename Y>
__device__ __forceinline__ bool compare_values(X x, Y y) {
  if constexpr (Op == CompareOp::Eq) return x == y;
  else if constexpr (Op == CompareOp::Ne) return x != y;
  else if constexpr (Op == CompareOp::Lt) return x < y;
  else if constexpr (Op == CompareOp::Le) return x <= y;
  else if constexpr (Op == CompareOp::Gt) return x > y;
  else return x >= y;
}
template <typename C, CompareOp Op>
struct CompareFn {
  __device__ bool operator()(C x, C y) const { return compare_values<Op>(x, y); }
};
// Element converted to W, then compared with s (W: C for floating, int64_t or double for integers).
template <typename C, typename W, CompareOp Op>
struct CompareScalarFn {
  W s;
  __device__ bool operator()(C x) const { return compare_values<Op>(static_cast<W>(x), s); }
};

template <typename C>
struct WhereOp {
  __device__ C operator()(bool c, C x, C y) const { return c ? x : y; }
};

// ---- unary
template <typename C>
struct NegOp {
  __device__ C operator()(C v) const {
    if constexpr (std::is_integral_v<C>) return m::wrap_neg(v);
    else return -v;
  }
};
template <typename C>
struct AbsOp {
  __device__ C operator()(C v) const {
    if constexpr (std::is_floating_point_v<C>) return std::fabs(v);
    else if constexpr (std::is_signed_v<C>) return v < C(0) ? m::wrap_neg(v) : v;
    else return v;
  }
};
template <typename C>
struct ReluOp {
  __device__ C operator()(C v) const {
    if constexpr (std::is_unsigned_v<C>) return v;  // relu is the identity; skips an unsigned "< 0"
    else return m::relu(v);
  }
};
template <typename C>
struct ExpOp {
  __device__ C operator()(C v) const { return m::exp(v); }
};
template <typename C>
struct LogOp {
  __device__ C operator()(C v) const { return std::log(v); }
};
template <typename C>
struct SqrtOp {
  __device__ C operator()(C v) const { return std::sqrt(v); }
};
template <typename C>
struct RsqrtOp {  // correctly rounded sqrt, then a correctly rounded division: as the CPU
  __device__ C operator()(C v) const { return C(1) / std::sqrt(v); }
};
template <typename C>
struct GeluOp {
  __device__ C operator()(C v) const { return m::gelu(v); }
};
template <typename C>
struct GeluTanhOp {
  __device__ C operator()(C v) const { return m::gelu_tanh(v); }
};
template <typename C>
struct SigmoidOp {
  __device__ C operator()(C v) const { return m::sigmoid(v); }
};
template <typename C>
struct TanhOp {
  __device__ C operator()(C v) const { return std::tanh(v); }
};
template <typename C>
struct SiluOp {
  __device__ C operator()(C v) const { return m::silu(v); }
};

template <typename C>
struct SquareOp {
  __device__ C operator()(C v) const { return v * v; }
};
template <typename C>
struct PowFloatExpOp {
  C e;
  __device__ C operator()(C v) const { return std::pow(v, e); }
};
template <typename C>
struct ClampIntOp {
  C l, h;
  __device__ C operator()(C v) const { return v < l ? (l > h ? h : l) : (v > h ? h : v); }
};
template <typename C>
struct ClampFloatOp {
  C l, h;
  __device__ C operator()(C v) const { return m::minimum(m::maximum(v, l), h); }
};

// ---- backward formulas (see elementwise.h for each; the CPU writes the same expressions)
template <typename C>
struct DivOtherGrad {
  // (a / b) / b instead of a / b^2: b^2 overflows long before the gradient does.
  __device__ C operator()(C gv, C x, C y) const { return -(gv * (x / y)) / y; }
};
template <typename C>
struct PowSelfGrad {
  __device__ C operator()(C gv, C x, C y) const { return y == C(0) ? C(0) : gv * y * std::pow(x, y - C(1)); }
};
template <typename C>
struct PowExponentGrad {
  __device__ C operator()(C gv, C x, C y) const {
    return (x == C(0) && y >= C(0)) ? C(0) : gv * std::pow(x, y) * std::log(x);
  }
};
// Ties split the gradient in half. Maximum's self and minimum's other input get 0 where x < y,
// the other two where x > y; a NaN on either side compares false everywhere and passes g.
template <typename C, bool ZeroWhenLess>
struct MaxMinGrad {
  __device__ C operator()(C gv, C x, C y) const {
    const bool zero = ZeroWhenLess ? x < y : x > y;
    return zero ? C(0) : (x == y ? gv * C(0.5) : gv);
  }
};

template <typename C>
struct ExpGrad {
  __device__ C operator()(C gv, C y) const { return gv * y; }
};
template <typename C>
struct LogGrad {
  __device__ C operator()(C gv, C x) const { return gv / x; }
};
template <typename C>
struct SqrtGrad {
  __device__ C operator()(C gv, C y) const { return gv / (C(2) * y); }
};
template <typename C>
struct RsqrtGrad {
  __device__ C operator()(C gv, C y) const { return C(-0.5) * gv * y * y * y; }
};
template <typename C>
struct AbsGrad {
  __device__ C operator()(C gv, C x) const { return gv * m::sign(x); }
};
template <typename C>
struct ReluGrad {
  __device__ C operator()(C gv, C y) const { return y > C(0) ? gv : C(0); }
};
template <typename C>
struct GeluGrad {
  __device__ C operator()(C gv, C x) const { return gv * m::gelu_grad(x); }
};
template <typename C>
struct GeluTanhGrad {
  __device__ C operator()(C gv, C x) const { return gv * m::gelu_tanh_grad(x); }
};
template <typename C>
struct SigmoidGrad {
  __device__ C operator()(C gv, C y) const { return gv * y * (C(1) - y); }
};
template <typename C>
struct TanhGrad {
  __device__ C operator()(C gv, C y) const { return gv * (C(1) - y * y); }
};
template <typename C>
struct SiluGrad {
  __device__ C operator()(C gv, C x) const { return gv * m::silu_grad(x); }
};
template <typename C>
struct ZeroGrad {
  __device__ C operator()(C, C) const { return C(0); }
};
template <typename C>
struct SquareGrad {
  __device__ C operator()(C gv, C x) const { return C(2) * gv * x; }
};
template <typename C>
struct PowScalarGrad {
  C e;
  __device__ C operator()(C gv, C x) const { return gv * e * std::pow(x, e - C(1)); }
};
template <typename C>
struct ClampGrad {
  C l, h;
  __device__ C operator()(C gv, C v) const { return (v >= l && v <= h) ? gv : C(0); }
};

// ---- typed dispatch --------------------------------------------------------------------------

template <typename T>
void binary_typed(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  using C = compute_t<T>;
  const char* name = binary_op_name(op);
  auto bin = [&](auto f) { cuda_map<T, T, T>(name, f, out, {a, b}); };
  if constexpr (std::is_same_v<T, bool>) {
    switch (op) {
      case BinaryOp::Add:
      case BinaryOp::Maximum: bin(OrOp{}); return;
      case BinaryOp::Mul:
      case BinaryOp::Minimum: bin(AndOp{}); return;
      default: break;
    }
    MANTISSA_ERROR(name, ": not supported for Bool tensors");
  } else {
    // alpha as the CPU takes it: wrapped to T for integers, in the compute type for floats.
    C al;
    if constexpr (kIsInt<T>) al = scalars::as_int<T>(alpha);
    else al = static_cast<C>(alpha);
    switch (op) {
      case BinaryOp::Add:
        if (alpha == 1.0) bin(AddOp<C>{});
        else bin(AddAlphaOp<C>{al});
        return;
      case BinaryOp::Sub:
        if (alpha == 1.0) bin(SubOp<C>{});
        else bin(SubAlphaOp<C>{al});
        return;
      case BinaryOp::Mul: bin(MulOp<C>{}); return;
      case BinaryOp::Div:
        if constexpr (kIsInt<T>) {
          MANTISSA_ERROR("div: integer division must be promoted to a floating dtype by the caller");
        } else {
          bin(DivOp<C>{});
        }
        return;
      case BinaryOp::Pow: bin(PowOp<C>{}); return;
      case BinaryOp::Maximum: bin(MaximumOp<C>{}); return;
      case BinaryOp::Minimum: bin(MinimumOp<C>{}); return;
    }
  }
}

template <typename T>
void binary_scalar_typed(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first) {
  using C = compute_t<T>;
  const char* name = binary_op_name(op);
  auto un = [&](auto f) { cuda_map<T, T>(name, f, out, {a}); };
  if constexpr (std::is_same_v<T, bool>) {
    // The CPU wraps s in a Bool tensor (s != 0) and runs the Bool tensor-tensor op; "or" and
    // "and" are symmetric, so scalar_first does not matter.
    const bool v = s != 0.0;
    switch (op) {
      case BinaryOp::Add:
      case BinaryOp::Maximum: un(OrScalarOp{v}); return;
      case BinaryOp::Mul:
      case BinaryOp::Minimum: un(AndScalarOp{v}); return;
      default: break;
    }
    MANTISSA_ERROR(name, ": not supported for Bool tensors");
  } else if constexpr (kIsInt<T>) {
    const T v = scalars::as_int<T>(s);
    switch (op) {
      case BinaryOp::Add: un(AddScalarOp<C>{v}); return;
      case BinaryOp::Sub: un(SubScalarOp<C>{v, scalar_first}); return;
      case BinaryOp::Mul: un(MulScalarOp<C>{v}); return;
      case BinaryOp::Pow:
        if (scalar_first) un(IntPowBaseOp<C>{v});
        else un(IntPowExpOp<C>{static_cast<int64_t>(s)});
        return;
      case BinaryOp::Maximum: un(MaximumScalarOp<C>{v}); return;
      case BinaryOp::Minimum: un(MinimumScalarOp<C>{v}); return;
      case BinaryOp::Div: break;
    }
    MANTISSA_ERROR("div: integer division must be promoted to a floating dtype by the caller");
  } else {
    // s in the compute type (F32 for F16/BF16): the scalar is not rounded to 16 bits first.
    const C v = static_cast<C>(s);
    switch (op) {
      case BinaryOp::Add: un(AddScalarOp<C>{v}); return;
      case BinaryOp::Sub: un(SubScalarOp<C>{v, scalar_first}); return;
      case BinaryOp::Mul: un(MulScalarOp<C>{v}); return;
      case BinaryOp::Div: un(DivScalarOp<C>{v, scalar_first}); return;
      case BinaryOp::Pow: un(PowScalarFloatOp<C>{v, scalar_first}); return;
      case BinaryOp::Maximum: un(MaximumScalarOp<C>{v}); return;
      case BinaryOp::Minimum: un(MinimumScalarOp<C>{v}); return;
    }
  }
}

template <typename T>
void compare_typed(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  using C = compute_t<T>;
  auto run = [&](auto f) { cuda_map<bool, T, T>("compare", f, out, {a, b}); };
  switch (op) {
    case CompareOp::Eq: run(CompareFn<C, CompareOp::Eq>{}); return;
    case CompareOp::Ne: run(CompareFn<C, CompareOp::Ne>{}); return;
    case CompareOp::Lt: run(CompareFn<C, CompareOp::Lt>{}); return;
    case CompareOp::Le: run(CompareFn<C, CompareOp::Le>{}); return;
    case CompareOp::Gt: run(CompareFn<C, CompareOp::Gt>{}); return;
    case CompareOp::Ge: run(CompareFn<C, CompareOp::Ge>{}); return;
  }
}

template <typename T, typename W>
void compare_scalar_in(CompareOp op, const Tensor& out, const Tensor& a, W s) {
  using C = compute_t<T>;
  auto run = [&](auto f) { cuda_map<bool, T>("compare", f, out, {a}); };
  switch (op) {
    case CompareOp::Eq: run(CompareScalarFn<C, W, CompareOp::Eq>{s}); return;
    case CompareOp::Ne: run(CompareScalarFn<C, W, CompareOp::Ne>{s}); return;
    case CompareOp::Lt: run(CompareScalarFn<C, W, CompareOp::Lt>{s}); return;
    case CompareOp::Le: run(CompareScalarFn<C, W, CompareOp::Le>{s}); return;
    case CompareOp::Gt: run(CompareScalarFn<C, W, CompareOp::Gt>{s}); return;
    case CompareOp::Ge: run(CompareScalarFn<C, W, CompareOp::Ge>{s}); return;
  }
}

template <typename T>
void unary_typed(UnaryOp op, const Tensor& out, const Tensor& x) {
  using C = compute_t<T>;
  const char* name = unary_op_name(op);
  auto run = [&](auto f) { cuda_map<T, T>(name, f, out, {x}); };
  switch (op) {
    case UnaryOp::Neg: run(NegOp<C>{}); return;
    case UnaryOp::Abs: run(AbsOp<C>{}); return;
    case UnaryOp::Relu: run(ReluOp<C>{}); return;
    default: break;
  }
  if constexpr (std::is_integral_v<C>) {
    MANTISSA_ERROR(name, ": integer inputs must be promoted to a floating dtype by the caller");
  } else {
    switch (op) {
      case UnaryOp::Exp: run(ExpOp<C>{}); return;
      case UnaryOp::Log: run(LogOp<C>{}); return;
      case UnaryOp::Sqrt: run(SqrtOp<C>{}); return;
      case UnaryOp::Rsqrt: run(RsqrtOp<C>{}); return;
      case UnaryOp::Gelu: run(GeluOp<C>{}); return;
      case UnaryOp::GeluTanh: run(GeluTanhOp<C>{}); return;
      case UnaryOp::Sigmoid: run(SigmoidOp<C>{}); return;
      case UnaryOp::Tanh: run(TanhOp<C>{}); return;
      case UnaryOp::Silu: run(SiluOp<C>{}); return;
      default: return;  // Neg, Abs, Relu handled above
    }
  }
}

template <typename T>
void binary_backward_typed(BinaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& a, const Tensor& b) {
  using C = compute_t<T>;
  auto run = [&](auto f) { cuda_map<T, T, T, T>("binary backward", f, out, {g, a, b}); };
  switch (op) {
    case BinaryGradOp::DivOther: run(DivOtherGrad<C>{}); return;
    case BinaryGradOp::PowSelf: run(PowSelfGrad<C>{}); return;
    case BinaryGradOp::PowExponent: run(PowExponentGrad<C>{}); return;
    case BinaryGradOp::MaximumSelf: run(MaxMinGrad<C, true>{}); return;
    case BinaryGradOp::MaximumOther: run(MaxMinGrad<C, false>{}); return;
    case BinaryGradOp::MinimumSelf: run(MaxMinGrad<C, false>{}); return;
    case BinaryGradOp::MinimumOther: run(MaxMinGrad<C, true>{}); return;
  }
}

template <typename T>
void unary_backward_typed(UnaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& saved, double p) {
  using C = compute_t<T>;
  auto run = [&](auto f) { cuda_map<T, T, T>("unary backward", f, out, {g, saved}); };
  switch (op) {
    case UnaryGradOp::Exp: run(ExpGrad<C>{}); return;
    case UnaryGradOp::Log: run(LogGrad<C>{}); return;
    case UnaryGradOp::Sqrt: run(SqrtGrad<C>{}); return;
    case UnaryGradOp::Rsqrt: run(RsqrtGrad<C>{}); return;
    case UnaryGradOp::Abs: run(AbsGrad<C>{}); return;
    case UnaryGradOp::Relu: run(ReluGrad<C>{}); return;
    case UnaryGradOp::Gelu: run(GeluGrad<C>{}); return;
    case UnaryGradOp::GeluTanh: run(GeluTanhGrad<C>{}); return;
    case UnaryGradOp::Sigmoid: run(SigmoidGrad<C>{}); return;
    case UnaryGradOp::Tanh: run(TanhGrad<C>{}); return;
    case UnaryGradOp::Silu: run(SiluGrad<C>{}); return;
    case UnaryGradOp::PowScalar:
      if (p == 0.0) run(ZeroGrad<C>{});
      else if (p == 2.0) run(SquareGrad<C>{});
      else run(PowScalarGrad<C>{static_cast<C>(p)});
      return;
  }
}

}  // namespace

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  visit_dtype<kAllTypes>(out.dtype(), binary_op_name(op),
                         [&]<typename T>() { binary_typed<T>(op, out, a, b, alpha); });
}

void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first) {
  visit_dtype<kAllTypes>(out.dtype(), binary_op_name(op),
                         [&]<typename T>() { binary_scalar_typed<T>(op, out, a, s, scalar_first); });
}

void compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  visit_dtype<kAllTypes>(a.dtype(), "compare", [&]<typename T>() { compare_typed<T>(op, out, a, b); });
}

void compare_scalar(CompareOp op, const Tensor& out, const Tensor& a, double s) {
  visit_dtype<kAllTypes>(a.dtype(), "compare", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_floating_point_v<C>) {
      // PyTorch casts the wrapped scalar to the tensor's dtype before comparing: T(s) rounds s
      // straight from double to T (F16: one rounding, not via F32).
      compare_scalar_in<T, C>(op, out, a, static_cast<C>(T(s)));
    } else if (scalars::is_int64_exact(s)) {
      compare_scalar_in<T, int64_t>(op, out, a, static_cast<int64_t>(s));
    } else {
      compare_scalar_in<T, double>(op, out, a, s);
    }
  });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  visit_dtype<kAllTypes>(out.dtype(), "where", [&]<typename T>() {
    cuda_map<T, bool, T, T>("where", WhereOp<compute_t<T>>{}, out, {cond, a, b});
  });
}

void unary(UnaryOp op, const Tensor& out, const Tensor& x) {
  visit_dtype<kNumericTypes>(out.dtype(), unary_op_name(op), [&]<typename T>() { unary_typed<T>(op, out, x); });
}

void pow_scalar(const Tensor& out, const Tensor& x, double p) {
  visit_dtype<kNumericTypes>(out.dtype(), "pow", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_integral_v<C>) {
      cuda_map<T, T>("pow", IntPowExpOp<C>{static_cast<int64_t>(p)}, out, {x});
    } else if (p == 2.0) {
      // x*x is correctly rounded like pow(x, 2) and much cheaper.
      cuda_map<T, T>("pow", SquareOp<C>{}, out, {x});
    } else {
      cuda_map<T, T>("pow", PowFloatExpOp<C>{static_cast<C>(p)}, out, {x});
    }
  });
}

void clamp(const Tensor& out, const Tensor& x, double lo, double hi) {
  visit_dtype<kNumericTypes>(out.dtype(), "clamp", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_integral_v<C>) {
      const C l = scalars::int_clamp_bound<C>(lo, true), h = scalars::int_clamp_bound<C>(hi, false);
      cuda_map<T, T>("clamp", ClampIntOp<C>{l, h}, out, {x});
    } else {
      cuda_map<T, T>("clamp", ClampFloatOp<C>{static_cast<C>(lo), static_cast<C>(hi)}, out, {x});
    }
  });
}

void binary_backward(BinaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& a, const Tensor& b) {
  visit_dtype<kFloatTypes>(out.dtype(), "binary backward",
                           [&]<typename T>() { binary_backward_typed<T>(op, out, g, a, b); });
}

void unary_backward(UnaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& saved, double p) {
  visit_dtype<kFloatTypes>(out.dtype(), "unary backward",
                           [&]<typename T>() { unary_backward_typed<T>(op, out, g, saved, p); });
}

void clamp_backward(const Tensor& out, const Tensor& g, const Tensor& x, double lo, double hi) {
  visit_dtype<kFloatTypes>(out.dtype(), "clamp backward", [&]<typename T>() {
    using C = compute_t<T>;
    cuda_map<T, T, T>("clamp backward", ClampGrad<C>{static_cast<C>(lo), static_cast<C>(hi)}, out, {g, x});
  });
}

}  // namespace mantissa::kernels::cuda
