// CPU kernels of the binary family: arithmetic (tensor-tensor and tensor-scalar), comparisons,
// where, and the fused backward formulas of div/pow/maximum/minimum. One map() instantiation
// per (op, dtype), chosen outside the loop, so every inner loop is a plain vectorizable body.
// Each entry point sends CUDA outputs to elementwise.cu first.
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/elementwise_loops.h"
#include "core/kernels/elementwise_math.h"
#include "core/kernels/elementwise_scalars.h"

namespace mantissa::kernels {

const char* binary_op_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
    case BinaryOp::Pow: return "pow";
    case BinaryOp::Maximum: return "maximum";
    case BinaryOp::Minimum: return "minimum";
  }
  return "binary";
}

namespace {

const char* binary_name(BinaryOp op) { return binary_op_name(op); }

template <typename T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <typename T>
T scalar_as_int(double s) {
  return scalars::as_int<T>(s);
}

template <typename T>
void binary_bool(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  auto bin = [&](auto f) { map_fast<bool, bool, bool>(out, f, a, b); };
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Maximum: bin([](bool x, bool y) MANTISSA_KERNEL_LAMBDA { return x || y; }); return;
    case BinaryOp::Mul:
    case BinaryOp::Minimum: bin([](bool x, bool y) MANTISSA_KERNEL_LAMBDA { return x && y; }); return;
    default: break;
  }
  MANTISSA_ERROR(binary_name(op), ": not supported for Bool tensors");
}

template <typename T>
void binary_typed(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  using C = compute_t<T>;
  auto bin = [&](auto f) { map_fast<T, T, T>(out, f, a, b); };
  if constexpr (std::is_same_v<T, bool>) {
    binary_bool<T>(op, out, a, b);
  } else if constexpr (kIsInt<T>) {
    const T al = scalar_as_int<T>(alpha);
    switch (op) {
      case BinaryOp::Add:
        if (alpha == 1.0) bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::wrap_add(x, y); });
        else bin([al](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::wrap_add(x, math::wrap_mul(al, y)); });
        return;
      case BinaryOp::Sub:
        if (alpha == 1.0) bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::wrap_sub(x, y); });
        else bin([al](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::wrap_sub(x, math::wrap_mul(al, y)); });
        return;
      case BinaryOp::Mul: bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::wrap_mul(x, y); }); return;
      case BinaryOp::Pow: bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::int_pow(x, y); }); return;
      case BinaryOp::Maximum: bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::maximum(x, y); }); return;
      case BinaryOp::Minimum: bin([](T x, T y) MANTISSA_KERNEL_LAMBDA { return math::minimum(x, y); }); return;
      case BinaryOp::Div: break;
    }
    MANTISSA_ERROR("div: integer division must be promoted to a floating dtype by the caller");
  } else {
    const C al = static_cast<C>(alpha);
    switch (op) {
      case BinaryOp::Add:
        if (alpha == 1.0) bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x + y; });
        else bin([al](C x, C y) MANTISSA_KERNEL_LAMBDA { return x + al * y; });
        return;
      case BinaryOp::Sub:
        if (alpha == 1.0) bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x - y; });
        else bin([al](C x, C y) MANTISSA_KERNEL_LAMBDA { return x - al * y; });
        return;
      case BinaryOp::Mul: bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x * y; }); return;
      case BinaryOp::Div: bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x / y; }); return;
      case BinaryOp::Pow: bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return std::pow(x, y); }); return;
      case BinaryOp::Maximum: bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return math::maximum(x, y); }); return;
      case BinaryOp::Minimum: bin([](C x, C y) MANTISSA_KERNEL_LAMBDA { return math::minimum(x, y); }); return;
    }
  }
}

template <typename T>
void binary_scalar_typed(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first) {
  using C = compute_t<T>;
  auto un = [&](auto f) { map_fast<T, T>(out, f, a); };
  if constexpr (std::is_same_v<T, bool>) {
    Tensor sb = full({}, s, TensorOptions(DType::Bool));
    if (scalar_first) binary_bool<T>(op, out, sb, a);
    else binary_bool<T>(op, out, a, sb);
  } else if constexpr (kIsInt<T>) {
    const T v = scalar_as_int<T>(s);
    switch (op) {
      case BinaryOp::Add: un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::wrap_add(x, v); }); return;
      case BinaryOp::Sub:
        if (scalar_first) un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::wrap_sub(v, x); });
        else un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::wrap_sub(x, v); });
        return;
      case BinaryOp::Mul: un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::wrap_mul(x, v); }); return;
      case BinaryOp::Pow: {
        if (scalar_first) {
          un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::int_pow(v, x); });
        } else {
          const int64_t e = static_cast<int64_t>(s);
          un([e](T x) MANTISSA_KERNEL_LAMBDA { return math::int_pow(x, e); });
        }
        return;
      }
      case BinaryOp::Maximum: un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::maximum(x, v); }); return;
      case BinaryOp::Minimum: un([v](T x) MANTISSA_KERNEL_LAMBDA { return math::minimum(x, v); }); return;
      case BinaryOp::Div: break;
    }
    MANTISSA_ERROR("div: integer division must be promoted to a floating dtype by the caller");
  } else {
    const C v = static_cast<C>(s);
    switch (op) {
      case BinaryOp::Add: un([v](C x) MANTISSA_KERNEL_LAMBDA { return x + v; }); return;
      case BinaryOp::Sub:
        if (scalar_first) un([v](C x) MANTISSA_KERNEL_LAMBDA { return v - x; });
        else un([v](C x) MANTISSA_KERNEL_LAMBDA { return x - v; });
        return;
      case BinaryOp::Mul: un([v](C x) MANTISSA_KERNEL_LAMBDA { return x * v; }); return;
      case BinaryOp::Div:
        if (scalar_first) un([v](C x) MANTISSA_KERNEL_LAMBDA { return v / x; });
        else un([v](C x) MANTISSA_KERNEL_LAMBDA { return x / v; });
        return;
      case BinaryOp::Pow:
        if (scalar_first) un([v](C x) MANTISSA_KERNEL_LAMBDA { return std::pow(v, x); });
        else un([v](C x) MANTISSA_KERNEL_LAMBDA { return std::pow(x, v); });
        return;
      case BinaryOp::Maximum: un([v](C x) MANTISSA_KERNEL_LAMBDA { return math::maximum(x, v); }); return;
      case BinaryOp::Minimum: un([v](C x) MANTISSA_KERNEL_LAMBDA { return math::minimum(x, v); }); return;
    }
  }
}

// Calls run(cmp) with the comparison functor of op on type C.
template <typename C, typename Run>
void compare_with(CompareOp op, const Run& run) {
  switch (op) {
    case CompareOp::Eq: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x == y; }); return;
    case CompareOp::Ne: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x != y; }); return;
    case CompareOp::Lt: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x < y; }); return;
    case CompareOp::Le: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x <= y; }); return;
    case CompareOp::Gt: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x > y; }); return;
    case CompareOp::Ge: run([](C x, C y) MANTISSA_KERNEL_LAMBDA { return x >= y; }); return;
  }
}

// Compares every element of a (converted to W) against s.
template <typename T, typename W>
void compare_scalar_in(CompareOp op, const Tensor& out, const Tensor& a, W s) {
  compare_with<W>(op, [&](auto cmp) {
    map_fast<bool, T>(out, [cmp, s](compute_t<T> x) MANTISSA_KERNEL_LAMBDA { return cmp(static_cast<W>(x), s); }, a);
  });
}

}  // namespace

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b, double alpha) {
  check_same_device(binary_name(op), out, {&a, &b});
  MANTISSA_CUDA_DISPATCH(out, binary_name(op), cuda::binary(op, out, a, b, alpha));
  visit_dtype<kAllTypes>(out.dtype(), binary_name(op),
                         [&]<typename T>() { binary_typed<T>(op, out, a, b, alpha); });
}

void binary_scalar(BinaryOp op, const Tensor& out, const Tensor& a, double s, bool scalar_first) {
  check_same_device(binary_name(op), out, {&a});
  MANTISSA_CUDA_DISPATCH(out, binary_name(op), cuda::binary_scalar(op, out, a, s, scalar_first));
  visit_dtype<kAllTypes>(out.dtype(), binary_name(op),
                         [&]<typename T>() { binary_scalar_typed<T>(op, out, a, s, scalar_first); });
}

void compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  check_same_device("compare", out, {&a, &b});
  MANTISSA_CUDA_DISPATCH(out, "compare", cuda::compare(op, out, a, b));
  visit_dtype<kAllTypes>(a.dtype(), "compare", [&]<typename T>() {
    using C = compute_t<T>;
    compare_with<C>(op, [&](auto cmp) { map_fast<bool, T, T>(out, cmp, a, b); });
  });
}

void compare_scalar(CompareOp op, const Tensor& out, const Tensor& a, double s) {
  check_same_device("compare", out, {&a});
  MANTISSA_CUDA_DISPATCH(out, "compare", cuda::compare_scalar(op, out, a, s));
  visit_dtype<kAllTypes>(a.dtype(), "compare", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_floating_point_v<C>) {
      // PyTorch casts the wrapped scalar to the tensor's dtype before comparing.
      const C v = static_cast<C>(T(s));
      compare_scalar_in<T, C>(op, out, a, v);
    } else {
      // Integers compare exactly: in int64 against an integral s, else in double.
      if (scalars::is_int64_exact(s)) compare_scalar_in<T, int64_t>(op, out, a, static_cast<int64_t>(s));
      else compare_scalar_in<T, double>(op, out, a, s);
    }
  });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_same_device("where", out, {&cond, &a, &b});
  MANTISSA_CUDA_DISPATCH(out, "where", cuda::where(out, cond, a, b));
  visit_dtype<kAllTypes>(out.dtype(), "where", [&]<typename T>() {
    using C = compute_t<T>;
    map_fast<T, bool, T, T>(out, [](bool c, C x, C y) MANTISSA_KERNEL_LAMBDA { return c ? x : y; }, cond, a, b);
  });
}

void binary_backward(BinaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& a, const Tensor& b) {
  check_same_device("binary backward", out, {&g, &a, &b});
  MANTISSA_CUDA_DISPATCH(out, "binary backward", cuda::binary_backward(op, out, g, a, b));
  visit_dtype<kFloatTypes>(out.dtype(), "binary backward", [&]<typename T>() {
    using C = compute_t<T>;
    auto run = [&](auto f) { map_fast<T, T, T, T>(out, f, g, a, b); };
    switch (op) {
      case BinaryGradOp::DivOther:
        // (a / b) / b instead of a / b^2: b^2 overflows long before the gradient does.
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return -(gv * (x / y)) / y; });
        return;
      case BinaryGradOp::PowSelf:
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return y == C(0) ? C(0) : gv * y * std::pow(x, y - C(1)); });
        return;
      case BinaryGradOp::PowExponent:
        // 0^b with b >= 0 has a finite limit; PyTorch masks the 0 * log(0) = NaN there.
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA {
          return (x == C(0) && y >= C(0)) ? C(0) : gv * std::pow(x, y) * std::log(x);
        });
        return;
      case BinaryGradOp::MaximumSelf:
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return x < y ? C(0) : (x == y ? gv * C(0.5) : gv); });
        return;
      case BinaryGradOp::MaximumOther:
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return x > y ? C(0) : (x == y ? gv * C(0.5) : gv); });
        return;
      case BinaryGradOp::MinimumSelf:
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return x > y ? C(0) : (x == y ? gv * C(0.5) : gv); });
        return;
      case BinaryGradOp::MinimumOther:
        run([](C gv, C x, C y) MANTISSA_KERNEL_LAMBDA { return x < y ? C(0) : (x == y ? gv * C(0.5) : gv); });
        return;
    }
  });
}

}  // namespace mantissa::kernels
