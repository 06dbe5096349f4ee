// Fused SGD and Adam/AdamW updates over raw contiguous arrays. One update body per optimizer is
// written once over a value type V and instantiated for an AVX2 vector (8 floats, 4 doubles) and
// for the scalar tail, so every element rounds the same way; explicit vectors because GCC will
// not vectorize std::sqrt while math errno is on.
#include "core/kernels/optim_step.h"

#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "core/kernels/loops.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MANTISSA_OPTIM_AVX2 1
#endif

namespace mantissa::kernels {
namespace {

// Threads pay off from a few thousand parameters: each element moves ~16-28 bytes.
constexpr int64_t kOptimGrain = 16384;

// Scalar operations of the update bodies. max(a, b) returns b when either is NaN, as MAXPS does.
template <typename T>
inline T vfma(T a, T b, T c) { return std::fma(a, b, c); }
template <typename T>
inline T vsqrt(T a) { return std::sqrt(a); }
template <typename T>
inline T vmax(T a, T b) { return a > b ? a : b; }

template <typename T>
struct Simd {  // no vector unit: the scalar path covers everything
  using V = T;
  static constexpr int kWidth = 1;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V splat(T v) { return v; }
};

#ifdef MANTISSA_OPTIM_AVX2
struct F32x8 { __m256 v; };
inline F32x8 operator+(F32x8 a, F32x8 b) { return {_mm256_add_ps(a.v, b.v)}; }
inline F32x8 operator*(F32x8 a, F32x8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline F32x8 operator/(F32x8 a, F32x8 b) { return {_mm256_div_ps(a.v, b.v)}; }
inline F32x8 vfma(F32x8 a, F32x8 b, F32x8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline F32x8 vsqrt(F32x8 a) { return {_mm256_sqrt_ps(a.v)}; }
inline F32x8 vmax(F32x8 a, F32x8 b) { return {_mm256_max_ps(a.v, b.v)}; }

struct F64x4 { __m256d v; };
inline F64x4 operator+(F64x4 a, F64x4 b) { return {_mm256_add_pd(a.v, b.v)}; }
inline F64x4 operator*(F64x4 a, F64x4 b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline F64x4 operator/(F64x4 a, F64x4 b) { return {_mm256_div_pd(a.v, b.v)}; }
inline F64x4 vfma(F64x4 a, F64x4 b, F64x4 c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
inline F64x4 vsqrt(F64x4 a) { return {_mm256_sqrt_pd(a.v)}; }
inline F64x4 vmax(F64x4 a, F64x4 b) { return {_mm256_max_pd(a.v, b.v)}; }

template <>
struct Simd<float> {
  using V = F32x8;
  static constexpr int kWidth = 8;
  static V load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v.v); }
  static V splat(float v) { return {_mm256_set1_ps(v)}; }
};
template <>
struct Simd<double> {
  using V = F64x4;
  static constexpr int kWidth = 4;
  static V load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v.v); }
  static V splat(double v) { return {_mm256_set1_pd(v)}; }
};
#endif

// Calls f(std::bool_constant<b>{}) so runtime flags become template parameters.
template <typename F>
inline void with_bool(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

// Runs range(slot, begin, end) over the flat concatenation of all slots' elements, split into
// contiguous chunks across threads.
template <typename F>
void for_each_chunk(std::span<const OptimSlot> slots, const F& range) {
  int64_t total = 0;
  for (const OptimSlot& s : slots) total += s.numel;
  parallel_for(total, kOptimGrain, [&](int64_t b, int64_t e) {
    int64_t offset = 0;
    for (const OptimSlot& s : slots) {
      const int64_t lo = std::max(b, offset), hi = std::min(e, offset + s.numel);
      if (lo < hi) range(s, lo - offset, hi - offset);
      offset += s.numel;
      if (offset >= e) break;
    }
  });
}

// ---- SGD ---------------------------------------------------------------------------------

template <typename V>
struct SGDConsts {
  V wd, momentum, one_minus_dampening, neg_lr;
};

// PyTorch's scalar arguments are Python doubles cast to the tensor's type; each line names the
// 1.13 operation it mirrors (its add with alpha is a fused multiply-add on vectors).
template <bool kWd, bool kMomentum, bool kFirst, bool kNesterov, typename V>
inline void sgd_update(V& p, V g, V& buf, const SGDConsts<V>& c) {
  V d = g;
  if constexpr (kWd) d = vfma(p, c.wd, d);  // d_p = d_p.add(param, alpha=weight_decay)
  if constexpr (kMomentum) {
    if constexpr (kFirst) buf = d;                                // buf = clone(d_p)
    else buf = vfma(d, c.one_minus_dampening, buf * c.momentum);  // buf.mul_(m).add_(d_p, alpha=1-damp)
    if constexpr (kNesterov) d = vfma(buf, c.momentum, d);        // d_p = d_p.add(buf, alpha=m)
    else d = buf;
  }
  p = vfma(d, c.neg_lr, p);  // param.add_(d_p, alpha=-lr)
}

template <typename T, bool kWd, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_range(const OptimSlot& s, int64_t b, int64_t e, const SGDHyper& h) {
  using S = Simd<T>;
  using V = typename S::V;
  const SGDConsts<T> ct{static_cast<T>(h.weight_decay), static_cast<T>(h.momentum),
                        static_cast<T>(1.0 - h.dampening), static_cast<T>(-h.lr)};
  const SGDConsts<V> cv{S::splat(ct.wd), S::splat(ct.momentum), S::splat(ct.one_minus_dampening),
                        S::splat(ct.neg_lr)};
  T* __restrict p = static_cast<T*>(s.param);
  const T* __restrict g = static_cast<const T*>(s.grad);
  T* __restrict buf = static_cast<T*>(s.state0);
  int64_t i = b;
  for (; i + S::kWidth <= e; i += S::kWidth) {
    V pv = S::load(p + i), bv{};
    if constexpr (kMomentum && !kFirst) bv = S::load(buf + i);
    sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, S::load(g + i), bv, cv);
    S::store(p + i, pv);
    if constexpr (kMomentum) S::store(buf + i, bv);
  }
  for (; i < e; ++i) {
    T pv = p[i], bv{};
    if constexpr (kMomentum && !kFirst) bv = buf[i];
    sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, g[i], bv, ct);
    p[i] = pv;
    if constexpr (kMomentum) buf[i] = bv;
  }
}

template <typename T>
void sgd_typed(std::span<const OptimSlot> slots, const SGDHyper& h) {
  with_bool(h.weight_decay != 0.0, [&](auto wd) {
    with_bool(h.momentum != 0.0, [&](auto mom) {
      with_bool(h.nesterov, [&](auto nest) {
        for_each_chunk(slots, [&](const OptimSlot& s, int64_t b, int64_t e) {
          with_bool(s.first, [&](auto first) {
            sgd_range<T, decltype(wd)::value, decltype(mom)::value, decltype(first)::value,
                      decltype(nest)::value>(s, b, e, h);
          });
        });
      });
    });
  });
}

// ---- Adam / AdamW ------------------------------------------------------------------------

template <typename V>
struct AdamConsts {
  V decay, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
};

template <bool kDecoupled, bool kWd, bool kAmsgrad, typename V>
inline void adam_update(V& p, V g, V& m, V& v, V& vmax_, const AdamConsts<V>& c) {
  if constexpr (kDecoupled) p = p * c.decay;  // AdamW: param.mul_(1 - lr*weight_decay)
  if constexpr (kWd) g = vfma(p, c.wd, g);    // Adam: grad = grad.add(param, alpha=weight_decay)
  m = vfma(g, c.one_minus_beta1, m * c.beta1);  // exp_avg.mul_(b1).add_(grad, alpha=1-b1)
  v = v * c.beta2 + c.one_minus_beta2 * g * g;  // exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1-b2)
  V s = v;
  if constexpr (kAmsgrad) {
    vmax_ = vmax(vmax_, v);  // torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    s = vmax_;
  }
  const V denom = vsqrt(s) / c.bias_correction2_sqrt + c.eps;  // (v.sqrt() / sqrt(bc2)).add_(eps)
  p = p + c.neg_step_size * m / denom;                          // param.addcdiv_(m, denom, value=-step_size)
}

template <typename T, bool kDecoupled, bool kWd, bool kAmsgrad>
void adam_range(const OptimSlot& s, int64_t b, int64_t e, const AdamHyper& h) {
  using S = Simd<T>;
  using V = typename S::V;
  // Python computes the step's scalars in double; each reaches the kernel cast to T.
  const double steps = static_cast<double>(s.step);
  const double bias_correction1 = 1.0 - std::pow(h.beta1, steps);
  const double bias_correction2 = 1.0 - std::pow(h.beta2, steps);
  const AdamConsts<T> ct{static_cast<T>(1.0 - h.lr * h.weight_decay),
                         static_cast<T>(h.weight_decay),
                         static_cast<T>(h.beta1),
                         static_cast<T>(1.0 - h.beta1),
                         static_cast<T>(h.beta2),
                         static_cast<T>(1.0 - h.beta2),
                         static_cast<T>(std::sqrt(bias_correction2)),
                         static_cast<T>(h.eps),
                         static_cast<T>(-(h.lr / bias_correction1))};
  const AdamConsts<V> cv{S::splat(ct.decay), S::splat(ct.wd), S::splat(ct.beta1),
                         S::splat(ct.one_minus_beta1), S::splat(ct.beta2), S::splat(ct.one_minus_beta2),
                         S::splat(ct.bias_correction2_sqrt), S::splat(ct.eps), S::splat(ct.neg_step_size)};
  T* __restrict p = static_cast<T*>(s.param);
  const T* __restrict g = static_cast<const T*>(s.grad);
  T* __restrict m = static_cast<T*>(s.state0);
  T* __restrict v = static_cast<T*>(s.state1);
  T* __restrict vm = static_cast<T*>(s.state2);
  int64_t i = b;
  for (; i + S::kWidth <= e; i += S::kWidth) {
    V pv = S::load(p + i), mv = S::load(m + i), vv = S::load(v + i), xv{};
    if constexpr (kAmsgrad) xv = S::load(vm + i);
    adam_update<kDecoupled, kWd, kAmsgrad>(pv, S::load(g + i), mv, vv, xv, cv);
    S::store(p + i, pv);
    S::store(m + i, mv);
    S::store(v + i, vv);
    if constexpr (kAmsgrad) S::store(vm + i, xv);
  }
  for (; i < e; ++i) {
    T pv = p[i], mv = m[i], vv = v[i], xv{};
    if constexpr (kAmsgrad) xv = vm[i];
    adam_update<kDecoupled, kWd, kAmsgrad>(pv, g[i], mv, vv, xv, ct);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
    if constexpr (kAmsgrad) vm[i] = xv;
  }
}

template <typename T>
void adam_typed(std::span<const OptimSlot> slots, const AdamHyper& h) {
  const bool decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;  // p * 1 is exact: skip
  const bool coupled = !h.decoupled_weight_decay && h.weight_decay != 0.0;
  with_bool(decoupled, [&](auto dec) {
    with_bool(coupled, [&](auto wd) {
      with_bool(h.amsgrad, [&](auto ams) {
        for_each_chunk(slots, [&](const OptimSlot& s, int64_t b, int64_t e) {
          adam_range<T, decltype(dec)::value, decltype(wd)::value, decltype(ams)::value>(s, b, e, h);
        });
      });
    });
  });
}

constexpr DTypeSet kOptimTypes = dtype_bit(DType::F32) | dtype_bit(DType::F64);

}  // namespace

void sgd_step(DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h) {
  visit_dtype<kOptimTypes>(dtype, "SGD step", [&]<typename T>() { sgd_typed<T>(slots, h); });
}

void adam_step(DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h) {
  visit_dtype<kOptimTypes>(dtype, "Adam step", [&]<typename T>() { adam_typed<T>(slots, h); });
}

}  // namespace mantissa::kernels
