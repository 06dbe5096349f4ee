// CPU kernels of the unary family: neg/abs/relu (all numeric dtypes), the floating-point math
// ops, scalar pow, clamp, and their fused backward formulas. The scalar formulas themselves live
// in elementwise_math.h. Each entry point sends CUDA outputs to elementwise.cu first.
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/elementwise_loops.h"
#include "core/kernels/elementwise_math.h"
#include "core/kernels/elementwise_scalars.h"

namespace mantissa::kernels {

const char* unary_op_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Gelu:
    case UnaryOp::GeluTanh: return "gelu";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Silu: return "silu";
  }
  return "unary";
}

namespace {

const char* unary_name(UnaryOp op) { return unary_op_name(op); }

// Exact (erf) GELU for F32 compute, written so map()'s loops vectorize it: libm's erfcf is a
// call per element and made GELU the largest non-convolution cost of a CIFAR training step.
// Phi(-|x|) = erfc(|x| / sqrt2) / 2 = t e^(-x^2/2) e^(P(t)) / 2 with t = 1 / (1 + |x| / (2 sqrt2))
// (the Chebyshev fit of Numerical Recipes' erfcc, relative error < 1.2e-7 everywhere). x^2 / 2
// is carried exactly as hi + lo (fma gives x*x's rounding error), so the tail has no error from
// rounding the exponent's argument; the former erfcf(-x * (1/sqrt2)) rounded that argument
// first. Over every 7th float in [-20, 20] against a double-precision reference: GELU max 12
// ulp (in the subnormal tail near x = -13; libm path: 197 ulp), mean 0.235 ulp (0.232); the
// derivative mean 0.35 ulp (0.27), max error below the libm path's. |x| is clamped to 20
// beyond which e^(-x^2/2) is 0 in F32 (keeps inf * 0 out of the exponent; NaN still reaches the
// result through the factor x).
struct GeluParts {
  float cdf, pdf;  // Phi(x), phi(x)
};

inline __attribute__((always_inline)) GeluParts gelu_parts_f32(float x) {
  using mantissa::detail::bit_cast;
  const int32_t abs_bits = bit_cast<int32_t>(x) & 0x7fffffff;
  const float ax = bit_cast<float>(abs_bits < 0x41a00000 ? abs_bits : 0x41a00000);  // min(|x|, 20)
  const float xx = ax * ax;
  const float hi = 0.5f * xx;
  const float lo = 0.5f * std::fma(ax, ax, -xx);
  // e^-(hi + lo) = e^-hi (1 - lo) to within lo^2, lo being at most half an ulp of hi.
  const float e = math::exp_f32(-hi) * (1.0f - lo);
  const float t = 1.0f / (1.0f + ax * 0.35355339059327376f);  // 1 / (1 + |x| / (2 sqrt2))
  float p = 0.17087277f;
  p = std::fma(p, t, -0.82215223f);
  p = std::fma(p, t, 1.48851587f);
  p = std::fma(p, t, -1.13520398f);
  p = std::fma(p, t, 0.27886807f);
  p = std::fma(p, t, -0.18628806f);
  p = std::fma(p, t, 0.09678418f);
  p = std::fma(p, t, 0.37409196f);
  p = std::fma(p, t, 1.00002368f);
  p = std::fma(p, t, -1.26551223f);
  const float tail = 0.5f * t * e * math::exp_f32(p);  // Phi(-|x|)
  // Phi(x) = tail for negative x, 1 - tail otherwise; selected on the sign bit with integer
  // logic (a float compare would keep GCC from if-converting the loop).
  const int32_t neg = bit_cast<int32_t>(x) >> 31;
  const int32_t cdf = (bit_cast<int32_t>(tail) & neg) | (bit_cast<int32_t>(1.0f - tail) & ~neg);
  return {bit_cast<float>(cdf), 0.39894228040143267794f * e};
}

inline __attribute__((always_inline)) float gelu_f32(float x) { return x * gelu_parts_f32(x).cdf; }

// d gelu / dx = Phi(x) + x phi(x).
inline __attribute__((always_inline)) float gelu_grad_f32(float x) {
  const GeluParts g = gelu_parts_f32(x);
  return std::fma(x, g.pdf, g.cdf);
}

// Contiguous F32/BF16 GELU and its backward on AVX-512 machines: the same formulas, 16 lanes
// instead of AVX2's 8 (GELU is compute-bound: ~45 operations per element). Results are
// bit-identical to the AVX2 and scalar code (-std=c++20 leaves contraction off, so each lane
// rounds the same operations the same way). Elsewhere map() runs the formulas.
#if defined(__x86_64__) && defined(__GNUC__)
#define MANTISSA_GELU_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")))

// BF16 <-> F32 on the raw bits, written out so the loops vectorize (BFloat16's own conversion
// branches on NaN); bit-identical to core/half.h's float_to_bf16_bits / bf16_bits_to_float.
template <typename T>
inline __attribute__((always_inline)) float widen_lane(T v) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return mantissa::detail::bit_cast<float>(static_cast<uint32_t>(v.bits) << 16);
  } else {
    return v;
  }
}
template <typename T>
inline __attribute__((always_inline)) T narrow_lane(float f) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    const uint32_t x = mantissa::detail::bit_cast<uint32_t>(f);
    const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (x >> 16) | 0x0040u;
    return BFloat16::from_bits(static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded));
  } else {
    return f;
  }
}

template <typename T>
MANTISSA_GELU_AVX512 void gelu_block_avx512(const T* __restrict x, T* __restrict y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = narrow_lane<T>(gelu_f32(widen_lane(x[i])));
}

template <typename T>
MANTISSA_GELU_AVX512 void gelu_grad_block_avx512(const T* __restrict g, const T* __restrict x, T* __restrict y,
                                                 int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = narrow_lane<T>(widen_lane(g[i]) * gelu_grad_f32(widen_lane(x[i])));
}

bool gelu_avx512_usable() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return ok;
}

// True when it ran: F32 or BF16, every operand contiguous with out's element count.
template <typename T>
bool gelu_avx512(const Tensor& out, const Tensor& x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, BFloat16>) {
    if (!gelu_avx512_usable() || !out.is_contiguous() || !x.is_contiguous() || x.numel() != out.numel()) return false;
    const T* xp = x.data<T>();
    T* yp = out.data<T>();
    parallel_for(out.numel(), kParallelGrain, [&](int64_t b, int64_t e) { gelu_block_avx512(xp + b, yp + b, e - b); });
    return true;
  }
  return false;
}

template <typename T>
bool gelu_grad_avx512(const Tensor& out, const Tensor& g, const Tensor& x) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, BFloat16>) {
    if (!gelu_avx512_usable() || !out.is_contiguous() || !g.is_contiguous() || !x.is_contiguous() ||
        x.numel() != out.numel() || g.numel() != out.numel())
      return false;
    const T* gp = g.data<T>();
    const T* xp = x.data<T>();
    T* yp = out.data<T>();
    parallel_for(out.numel(), kParallelGrain,
                 [&](int64_t b, int64_t e) { gelu_grad_block_avx512(gp + b, xp + b, yp + b, e - b); });
    return true;
  }
  return false;
}
#else
template <typename T>
bool gelu_avx512(const Tensor&, const Tensor&) {
  return false;
}
template <typename T>
bool gelu_grad_avx512(const Tensor&, const Tensor&, const Tensor&) {
  return false;
}
#endif

template <typename T>
void unary_typed(UnaryOp op, const Tensor& out, const Tensor& x) {
  using C = compute_t<T>;
  auto run = [&](auto f) { map_fast<T, T>(out, f, x); };
  if constexpr (std::is_integral_v<C>) {
    switch (op) {
      case UnaryOp::Neg: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::wrap_neg(v); }); return;
      case UnaryOp::Abs:
        if constexpr (std::is_signed_v<C>) {
          run([](C v) MANTISSA_KERNEL_LAMBDA { return v < C(0) ? math::wrap_neg(v) : v; });
        } else {
          run([](C v) MANTISSA_KERNEL_LAMBDA { return v; });
        }
        return;
      case UnaryOp::Relu: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::relu(v); }); return;
      default: break;
    }
    MANTISSA_ERROR(unary_name(op), ": integer inputs must be promoted to a floating dtype by the caller");
  } else {
    switch (op) {
      case UnaryOp::Neg: run([](C v) MANTISSA_KERNEL_LAMBDA { return -v; }); return;
      case UnaryOp::Exp: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::exp(v); }); return;
      case UnaryOp::Log: run([](C v) MANTISSA_KERNEL_LAMBDA { return std::log(v); }); return;
      case UnaryOp::Sqrt: run([](C v) MANTISSA_KERNEL_LAMBDA { return std::sqrt(v); }); return;
      case UnaryOp::Rsqrt: run([](C v) MANTISSA_KERNEL_LAMBDA { return C(1) / std::sqrt(v); }); return;
      case UnaryOp::Abs: run([](C v) MANTISSA_KERNEL_LAMBDA { return std::fabs(v); }); return;
      case UnaryOp::Relu: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::relu(v); }); return;
      case UnaryOp::Gelu:
        if (gelu_avx512<T>(out, x)) return;
        if constexpr (std::is_same_v<C, float>) run([](C v) MANTISSA_KERNEL_LAMBDA { return gelu_f32(v); });
        else run([](C v) MANTISSA_KERNEL_LAMBDA { return math::gelu(v); });
        return;
      case UnaryOp::GeluTanh: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::gelu_tanh(v); }); return;
      case UnaryOp::Sigmoid: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::sigmoid(v); }); return;
      case UnaryOp::Tanh: run([](C v) MANTISSA_KERNEL_LAMBDA { return std::tanh(v); }); return;
      case UnaryOp::Silu: run([](C v) MANTISSA_KERNEL_LAMBDA { return math::silu(v); }); return;
    }
  }
}

}  // namespace

void unary(UnaryOp op, const Tensor& out, const Tensor& x) {
  check_same_device(unary_name(op), out, {&x});
  MANTISSA_CUDA_DISPATCH(out, unary_name(op), cuda::unary(op, out, x));
  visit_dtype<kNumericTypes>(out.dtype(), unary_name(op), [&]<typename T>() { unary_typed<T>(op, out, x); });
}

void pow_scalar(const Tensor& out, const Tensor& x, double p) {
  check_same_device("pow", out, {&x});
  MANTISSA_CUDA_DISPATCH(out, "pow", cuda::pow_scalar(out, x, p));
  visit_dtype<kNumericTypes>(out.dtype(), "pow", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_integral_v<C>) {
      const int64_t e = static_cast<int64_t>(p);
      map_fast<T, T>(out, [e](C v) MANTISSA_KERNEL_LAMBDA { return math::int_pow(v, e); }, x);
    } else if (p == 2.0) {
      // x*x is correctly rounded like pow(x, 2) and much cheaper.
      map_fast<T, T>(out, [](C v) MANTISSA_KERNEL_LAMBDA { return v * v; }, x);
    } else {
      const C e = static_cast<C>(p);
      map_fast<T, T>(out, [e](C v) MANTISSA_KERNEL_LAMBDA { return std::pow(v, e); }, x);
    }
  });
}

void clamp(const Tensor& out, const Tensor& x, double lo, double hi) {
  check_same_device("clamp", out, {&x});
  MANTISSA_CUDA_DISPATCH(out, "clamp", cuda::clamp(out, x, lo, hi));
  visit_dtype<kNumericTypes>(out.dtype(), "clamp", [&]<typename T>() {
    using C = compute_t<T>;
    if constexpr (std::is_integral_v<C>) {
      const C l = scalars::int_clamp_bound<C>(lo, true), h = scalars::int_clamp_bound<C>(hi, false);
      map_fast<T, T>(out, [l, h](C v) MANTISSA_KERNEL_LAMBDA { return v < l ? (l > h ? h : l) : (v > h ? h : v); }, x);
    } else {
      const C l = static_cast<C>(lo), h = static_cast<C>(hi);
      map_fast<T, T>(out, [l, h](C v) MANTISSA_KERNEL_LAMBDA { return math::minimum(math::maximum(v, l), h); }, x);
    }
  });
}

void unary_backward(UnaryGradOp op, const Tensor& out, const Tensor& g, const Tensor& saved, double p) {
  check_same_device("unary backward", out, {&g, &saved});
  MANTISSA_CUDA_DISPATCH(out, "unary backward", cuda::unary_backward(op, out, g, saved, p));
  visit_dtype<kFloatTypes>(out.dtype(), "unary backward", [&]<typename T>() {
    using C = compute_t<T>;
    auto run = [&](auto f) { map_fast<T, T, T>(out, f, g, saved); };
    switch (op) {
      case UnaryGradOp::Exp: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return gv * y; }); return;
      case UnaryGradOp::Log: run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv / x; }); return;
      case UnaryGradOp::Sqrt: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return gv / (C(2) * y); }); return;
      case UnaryGradOp::Rsqrt: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return C(-0.5) * gv * y * y * y; }); return;
      case UnaryGradOp::Abs: run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * math::sign(x); }); return;
      case UnaryGradOp::Relu: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return y > C(0) ? gv : C(0); }); return;
      case UnaryGradOp::Gelu:
        if (gelu_grad_avx512<T>(out, g, saved)) return;
        if constexpr (std::is_same_v<C, float>) run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * gelu_grad_f32(x); });
        else run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * math::gelu_grad(x); });
        return;
      case UnaryGradOp::GeluTanh:
        run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * math::gelu_tanh_grad(x); });
        return;
      case UnaryGradOp::Sigmoid: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return gv * y * (C(1) - y); }); return;
      case UnaryGradOp::Tanh: run([](C gv, C y) MANTISSA_KERNEL_LAMBDA { return gv * (C(1) - y * y); }); return;
      case UnaryGradOp::Silu: run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * math::silu_grad(x); }); return;
      case UnaryGradOp::PowScalar: {
        const C e = static_cast<C>(p);
        if (p == 0.0) run([](C, C) MANTISSA_KERNEL_LAMBDA { return C(0); });
        else if (p == 2.0) run([](C gv, C x) MANTISSA_KERNEL_LAMBDA { return C(2) * gv * x; });
        else run([e](C gv, C x) MANTISSA_KERNEL_LAMBDA { return gv * e * std::pow(x, e - C(1)); });
        return;
      }
    }
  });
}

void clamp_backward(const Tensor& out, const Tensor& g, const Tensor& x, double lo, double hi) {
  check_same_device("clamp backward", out, {&g, &x});
  MANTISSA_CUDA_DISPATCH(out, "clamp backward", cuda::clamp_backward(out, g, x, lo, hi));
  visit_dtype<kFloatTypes>(out.dtype(), "clamp backward", [&]<typename T>() {
    using C = compute_t<T>;
    const C l = static_cast<C>(lo), h = static_cast<C>(hi);
    map_fast<T, T, T>(out, [l, h](C gv, C v) MANTISSA_KERNEL_LAMBDA { return (v >= l && v <= h) ? gv : C(0); }, g, x);
  });
}

}  // namespace mantissa::kernels
