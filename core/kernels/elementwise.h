// Elementwise kernels: binary arithmetic, comparisons, where, unary math, clamp, and the fused
// backward formulas of those ops. Operands arrive already promoted to one dtype and broadcast
// to `out`; F16/BF16 compute in F32 and round once on store (core/kernels/loops.h).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };
enum class UnaryOp : uint8_t { Neg, Exp, Log, Sqrt, Rsqrt, Abs, Relu, Gelu, GeluTanh, Sigmoid, Tanh, Silu };

// Gradients that read the operands (the rest are plain mul/div/neg of the incoming gradient).
enum class BinaryGradOp : uint8_t {
  DivOther,      // -g * a / b^2
  PowSelf,       // g * b * a^(b-1), 0 where b == 0
  PowExponent,   // g * a^b * log(a), 0 where a == 0 and b >= 0
  MaximumSelf,   // g where a > b, g/2 on ties, 0 where a < b
  MaximumOther,
  MinimumSelf,
  MinimumOther,
};
// Gradients of unary ops from the saved input x or output y (named per op).
enum class UnaryGradOp : uint8_t {
  Exp,       // g * y
  Log,       // g / x
  Sqrt,      // g / (2 y)
  Rsqrt,     // -g y^3 / 2
  Abs,       // g * sign(x)
  Relu,      // g where y > 0
  Gelu,      // g * (Phi(x) + x phi(x))
  GeluTanh,  // g * d/dx of the tanh approximation
  Sigmoid,   // g * y (1 - y)
  Tanh,      // g * (1 - y^2)
  Silu,      // g * s (1 + x (1 - s))
  PowScalar, // g * p * x^(p-1), 0 where p == 0
};

// Integer and Bool dtypes are accepted where the op is defined on them (not Div: the caller
// promotes integer division to floating). Add/Sub compute a + alpha*b / a - alpha*b.
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha = 1.0);
// out = a op s (or s op a when scalar_first), s taken in a's compute type (F32 for F16/BF16,
// so the scalar is not rounded to 16 bits first); integer dtypes take s as an integer.
void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first = false);
// out (Bool) = a cmp b; a and b share one dtype.
void compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b);
// out (Bool) = a cmp s: floating a compares with s rounded to a's dtype (as PyTorch casts a
// wrapped scalar); integer a compares exactly against s.
void compare_scalar(CompareOp op, const Tensor& out, const Tensor& a, double s);
// out = cond ? a : b; cond is Bool, a/b/out share one dtype.
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);

// out = op(x); same dtype in and out (transcendental ops are floating only).
void unary(UnaryOp op, const Tensor& out, const Tensor& x);
// out = x ^ p (floating: in the compute type; integers: p a non-negative integer).
void pow_scalar(const Tensor& out, const Tensor& x, double p);
// out = min(max(x, lo), hi), NaN propagating; missing bounds are passed as +-infinity.
// Integer dtypes clamp to ceil(lo) / floor(hi), saturated to the type's range.
void clamp(const Tensor& out, const Tensor& x, double lo, double hi);

// Fused backward formulas, computed in the compute type and rounded once. g, the saved
// tensors and out share one floating dtype; inputs broadcast to out.
void binary_backward(BinaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& a, const Tensor& b);
void unary_backward(UnaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& saved, double p = 0.0);
// out = g where lo <= x <= hi (inclusive, as PyTorch), else 0.
void clamp_backward(const Tensor& out, const Tensor& g, const Tensor& x, double lo, double hi);

#ifdef MANTISSA_HAVE_CUDA
// The same kernels on CUDA tensors (elementwise.cu), reached through the entry points above
// when `out` is on a CUDA device; same contracts, same scalar formulas (elementwise_math.h).
namespace cuda {
void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha);
void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first);
void compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b);
void compare_scalar(CompareOp op, const Tensor& out, const Tensor& a, double s);
void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b);
void unary(UnaryOp op, const Tensor& out, const Tensor& x);
void pow_scalar(const Tensor& out, const Tensor& x, double p);
void clamp(const Tensor& out, const Tensor& x, double lo, double hi);
void binary_backward(BinaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& a, const Tensor& b);
void unary_backward(UnaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& saved, double p);
void clamp_backward(const Tensor& out, const Tensor& g, const Tensor& x, double lo, double hi);
}  // namespace cuda
#endif

// Names used in error messages ("add", "gelu", ...), shared by the CPU and CUDA files.
const char* binary_op_name(BinaryOp op);
const char* unary_op_name(UnaryOp op);

}  // namespace mantissa::kernels
