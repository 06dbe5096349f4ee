// Fused SGD and Adam/AdamW updates over raw contiguous arrays on the CPU, and the master-weight
// passes. F32/F64: the shared update bodies (optim_math.h) run on an AVX2 vector (8 floats, 4
// doubles) and on the scalar tail, so every element rounds the same way; explicit vectors because
// GCC will not vectorize std::sqrt while math errno is on. BF16: each element is widened, updated
// by the same body in F32 and written back per the rounding mode.
#include "core/kernels/optim_step.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "core/kernels/convert.h"
#include "core/kernels/loops.h"
#include "core/kernels/optim_math.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MANTISSA_OPTIM_AVX2 1
#endif

namespace mantissa::kernels {

const char* update_rounding_name(UpdateRounding r) {
  switch (r) {
    case UpdateRounding::Nearest: return "nearest";
    case UpdateRounding::Stochastic: return "stochastic";
    case UpdateRounding::Kahan: return "kahan";
  }
  return "?";
}

namespace {

using optim_math::AdamConsts;
using optim_math::SGDConsts;

// Threads pay off from a few thousand parameters: each element moves ~16-28 bytes.
constexpr int64_t kOptimGrain = 16384;

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

// Eight BF16 values widened exactly (a BF16 is the top half of an F32).
inline F32x8 load_bf16x8(const BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
}

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

template <typename F>
inline void with_rounding(UpdateRounding r, F&& f) {
  switch (r) {
    case UpdateRounding::Nearest: f(std::integral_constant<UpdateRounding, UpdateRounding::Nearest>{}); break;
    case UpdateRounding::Stochastic: f(std::integral_constant<UpdateRounding, UpdateRounding::Stochastic>{}); break;
    case UpdateRounding::Kahan: f(std::integral_constant<UpdateRounding, UpdateRounding::Kahan>{}); break;
  }
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

template <typename T>
SGDConsts<typename Simd<T>::V> splat(const SGDConsts<T>& c) {
  using S = Simd<T>;
  return {S::splat(c.wd), S::splat(c.momentum), S::splat(c.one_minus_dampening), S::splat(c.neg_lr)};
}

template <typename T>
AdamConsts<typename Simd<T>::V> splat(const AdamConsts<T>& c) {
  using S = Simd<T>;
  return {S::splat(c.decay), S::splat(c.wd), S::splat(c.beta1), S::splat(c.one_minus_beta1), S::splat(c.beta2),
          S::splat(c.one_minus_beta2), S::splat(c.bias_correction2_sqrt), S::splat(c.eps),
          S::splat(c.neg_step_size)};
}

// ---- BF16 write-back ----------------------------------------------------------------------

// Stores one element's new parameter and state values under rounding mode R. The Philox block
// of each stream is computed once per 8 elements and reused.
template <UpdateRounding R>
class Bf16Writer {
 public:
  Bf16Writer(const OptimSlot& s, const LowPrecisionUpdate& lp)
      : seed_(lp.seed), step_(s.step), index_(s.index), comp_(static_cast<BFloat16*>(s.compensation)) {}

  void param(BFloat16* p, int64_t i, float p_old, float p_new) {
    if constexpr (R == UpdateRounding::Nearest) {
      p[i] = BFloat16(p_new);
    } else if constexpr (R == UpdateRounding::Stochastic) {
      p[i].bits = optim_math::float_to_bf16_bits_stochastic(p_new, bits(optim_math::kStreamParam, i));
    } else {
      optim_math::kahan_store(p_old, p_new, static_cast<float>(comp_[i]), p[i].bits, comp_[i].bits);
    }
  }

  void state(BFloat16* st, int64_t i, uint32_t stream, float v) {
    if constexpr (R == UpdateRounding::Stochastic) st[i].bits = optim_math::float_to_bf16_bits_stochastic(v, bits(stream, i));
    else st[i] = BFloat16(v);
  }

 private:
  uint32_t bits(uint32_t stream, int64_t i) {
    const int64_t block = i / optim_math::kSRElementsPerBlock;
    if (block_[stream] != block) {
      optim_math::sr_block(seed_, step_, index_, stream, i, words_[stream]);
      block_[stream] = block;
    }
    return optim_math::sr_bits(words_[stream], i);
  }

  uint64_t seed_;
  int64_t step_;
  uint64_t index_;
  BFloat16* comp_;
  int64_t block_[4] = {-1, -1, -1, -1};
  uint32_t words_[4][4] = {};
};

// ---- SGD ---------------------------------------------------------------------------------

template <typename T, bool kWd, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_range(const OptimSlot& s, int64_t b, int64_t e, const SGDHyper& h) {
  using S = Simd<T>;
  using V = typename S::V;
  const SGDConsts<T> ct = optim_math::sgd_consts<T>(h);
  const SGDConsts<V> cv = splat(ct);
  T* __restrict p = static_cast<T*>(s.param);
  const T* __restrict g = static_cast<const T*>(s.grad);
  T* __restrict buf = static_cast<T*>(s.state0);
  int64_t i = b;
  for (; i + S::kWidth <= e; i += S::kWidth) {
    V pv = S::load(p + i), bv{};
    if constexpr (kMomentum && !kFirst) bv = S::load(buf + i);
    optim_math::sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, S::load(g + i), bv, cv);
    S::store(p + i, pv);
    if constexpr (kMomentum) S::store(buf + i, bv);
  }
  for (; i < e; ++i) {
    T pv = p[i], bv{};
    if constexpr (kMomentum && !kFirst) bv = buf[i];
    optim_math::sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, g[i], bv, ct);
    p[i] = pv;
    if constexpr (kMomentum) buf[i] = bv;
  }
}

template <UpdateRounding R, bool kWd, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_range_bf16(const OptimSlot& s, int64_t b, int64_t e, const SGDHyper& h, const LowPrecisionUpdate& lp) {
  const SGDConsts<float> c = optim_math::sgd_consts<float>(h);
  BFloat16* p = static_cast<BFloat16*>(s.param);
  const BFloat16* g = static_cast<const BFloat16*>(s.grad);
  BFloat16* buf = static_cast<BFloat16*>(s.state0);
  Bf16Writer<R> w(s, lp);
  int64_t i = b;
#ifdef MANTISSA_OPTIM_AVX2
  // The update on 8 lanes (the same operations as the scalar body, so the same bits), then the
  // per-element write-back.
  const SGDConsts<F32x8> cv = splat(c);
  for (; i + 8 <= e; i += 8) {
    F32x8 pv = load_bf16x8(p + i), bv{};
    if constexpr (kMomentum && !kFirst) bv = load_bf16x8(buf + i);
    alignas(32) float p_old[8], p_new[8], b_new[8];
    _mm256_store_ps(p_old, pv.v);
    optim_math::sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, load_bf16x8(g + i), bv, cv);
    _mm256_store_ps(p_new, pv.v);
    if constexpr (kMomentum) _mm256_store_ps(b_new, bv.v);
    for (int j = 0; j < 8; ++j) {
      w.param(p, i + j, p_old[j], p_new[j]);
      if constexpr (kMomentum) w.state(buf, i + j, optim_math::kStreamState0, b_new[j]);
    }
  }
#endif
  for (; i < e; ++i) {
    const float p_old = p[i];
    float pv = p_old, bv = 0.0f;
    if constexpr (kMomentum && !kFirst) bv = buf[i];
    optim_math::sgd_update<kWd, kMomentum, kFirst, kNesterov>(pv, static_cast<float>(g[i]), bv, c);
    w.param(p, i, p_old, pv);
    if constexpr (kMomentum) w.state(buf, i, optim_math::kStreamState0, bv);
  }
}

template <typename T>
void sgd_typed(std::span<const OptimSlot> slots, const SGDHyper& h, const LowPrecisionUpdate& lp) {
  with_bool(h.weight_decay != 0.0, [&](auto wd) {
    with_bool(h.momentum != 0.0, [&](auto mom) {
      with_bool(h.nesterov, [&](auto nest) {
        for_each_chunk(slots, [&](const OptimSlot& s, int64_t b, int64_t e) {
          with_bool(s.first, [&](auto first) {
            constexpr bool kWd = decltype(wd)::value, kMom = decltype(mom)::value;
            constexpr bool kFirst = decltype(first)::value, kNest = decltype(nest)::value;
            if constexpr (std::is_same_v<T, BFloat16>) {
              with_rounding(lp.rounding, [&](auto r) {
                sgd_range_bf16<decltype(r)::value, kWd, kMom, kFirst, kNest>(s, b, e, h, lp);
              });
            } else {
              sgd_range<T, kWd, kMom, kFirst, kNest>(s, b, e, h);
            }
          });
        });
      });
    });
  });
}

// ---- Adam / AdamW ------------------------------------------------------------------------

template <typename T, bool kDecoupled, bool kWd, bool kAmsgrad>
void adam_range(const OptimSlot& s, int64_t b, int64_t e, const AdamHyper& h) {
  using S = Simd<T>;
  using V = typename S::V;
  const AdamConsts<T> ct = optim_math::adam_consts<T>(h, s.step);
  const AdamConsts<V> cv = splat(ct);
  T* __restrict p = static_cast<T*>(s.param);
  const T* __restrict g = static_cast<const T*>(s.grad);
  T* __restrict m = static_cast<T*>(s.state0);
  T* __restrict v = static_cast<T*>(s.state1);
  T* __restrict vm = static_cast<T*>(s.state2);
  int64_t i = b;
  for (; i + S::kWidth <= e; i += S::kWidth) {
    V pv = S::load(p + i), mv = S::load(m + i), vv = S::load(v + i), xv{};
    if constexpr (kAmsgrad) xv = S::load(vm + i);
    optim_math::adam_update<kDecoupled, kWd, kAmsgrad>(pv, S::load(g + i), mv, vv, xv, cv);
    S::store(p + i, pv);
    S::store(m + i, mv);
    S::store(v + i, vv);
    if constexpr (kAmsgrad) S::store(vm + i, xv);
  }
  for (; i < e; ++i) {
    T pv = p[i], mv = m[i], vv = v[i], xv{};
    if constexpr (kAmsgrad) xv = vm[i];
    optim_math::adam_update<kDecoupled, kWd, kAmsgrad>(pv, g[i], mv, vv, xv, ct);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
    if constexpr (kAmsgrad) vm[i] = xv;
  }
}

template <UpdateRounding R, bool kDecoupled, bool kWd, bool kAmsgrad>
void adam_range_bf16(const OptimSlot& s, int64_t b, int64_t e, const AdamHyper& h, const LowPrecisionUpdate& lp) {
  const AdamConsts<float> c = optim_math::adam_consts<float>(h, s.step);
  BFloat16* p = static_cast<BFloat16*>(s.param);
  const BFloat16* g = static_cast<const BFloat16*>(s.grad);
  BFloat16* m = static_cast<BFloat16*>(s.state0);
  BFloat16* v = static_cast<BFloat16*>(s.state1);
  BFloat16* vm = static_cast<BFloat16*>(s.state2);
  Bf16Writer<R> w(s, lp);
  int64_t i = b;
#ifdef MANTISSA_OPTIM_AVX2
  const AdamConsts<F32x8> cv = splat(c);
  for (; i + 8 <= e; i += 8) {
    F32x8 pv = load_bf16x8(p + i), mv = load_bf16x8(m + i), vv = load_bf16x8(v + i), xv{};
    if constexpr (kAmsgrad) xv = load_bf16x8(vm + i);
    alignas(32) float p_old[8], p_new[8], m_new[8], v_new[8], x_new[8];
    _mm256_store_ps(p_old, pv.v);
    optim_math::adam_update<kDecoupled, kWd, kAmsgrad>(pv, load_bf16x8(g + i), mv, vv, xv, cv);
    _mm256_store_ps(p_new, pv.v);
    _mm256_store_ps(m_new, mv.v);
    _mm256_store_ps(v_new, vv.v);
    if constexpr (kAmsgrad) _mm256_store_ps(x_new, xv.v);
    for (int j = 0; j < 8; ++j) {
      w.param(p, i + j, p_old[j], p_new[j]);
      w.state(m, i + j, optim_math::kStreamState0, m_new[j]);
      w.state(v, i + j, optim_math::kStreamState1, v_new[j]);
      if constexpr (kAmsgrad) w.state(vm, i + j, optim_math::kStreamState2, x_new[j]);
    }
  }
#endif
  for (; i < e; ++i) {
    const float p_old = p[i];
    float pv = p_old, mv = m[i], vv = v[i], xv = 0.0f;
    if constexpr (kAmsgrad) xv = vm[i];
    optim_math::adam_update<kDecoupled, kWd, kAmsgrad>(pv, static_cast<float>(g[i]), mv, vv, xv, c);
    w.param(p, i, p_old, pv);
    w.state(m, i, optim_math::kStreamState0, mv);
    w.state(v, i, optim_math::kStreamState1, vv);
    if constexpr (kAmsgrad) w.state(vm, i, optim_math::kStreamState2, xv);
  }
}

template <typename T>
void adam_typed(std::span<const OptimSlot> slots, const AdamHyper& h, const LowPrecisionUpdate& lp) {
  const bool decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;  // p * 1 is exact: skip
  const bool coupled = !h.decoupled_weight_decay && h.weight_decay != 0.0;
  with_bool(decoupled, [&](auto dec) {
    with_bool(coupled, [&](auto wd) {
      with_bool(h.amsgrad, [&](auto ams) {
        constexpr bool kDec = decltype(dec)::value, kWd = decltype(wd)::value, kAms = decltype(ams)::value;
        for_each_chunk(slots, [&](const OptimSlot& s, int64_t b, int64_t e) {
          if constexpr (std::is_same_v<T, BFloat16>) {
            with_rounding(lp.rounding, [&](auto r) { adam_range_bf16<decltype(r)::value, kDec, kWd, kAms>(s, b, e, h, lp); });
          } else {
            adam_range<T, kDec, kWd, kAms>(s, b, e, h);
          }
        });
      });
    });
  });
}

constexpr DTypeSet kOptimTypes = dtype_bit(DType::F32) | dtype_bit(DType::F64) | dtype_bit(DType::BF16);

// ---- master weights ----------------------------------------------------------------------

// d[i] *= inv in place (unless inv == 1); returns whether any d[i] was Inf or NaN before.
bool scale_check_f32(float* d, int64_t n, float inv) {
  std::atomic<bool> found{false};
  parallel_for(n, kParallelGrain, [&](int64_t b, int64_t e) {
    uint32_t nonfinite = 0;
    if (inv == 1.0f) {
      for (int64_t i = b; i < e; ++i) {
        uint32_t bits;
        std::memcpy(&bits, d + i, sizeof bits);
        nonfinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
      }
    } else {
      for (int64_t i = b; i < e; ++i) {
        uint32_t bits;
        std::memcpy(&bits, d + i, sizeof bits);
        nonfinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        d[i] = d[i] * inv;
      }
    }
    if (nonfinite != 0) found.store(true, std::memory_order_relaxed);
  });
  return found.load();
}

void check_flag(const Tensor& t, const Device& device) {
  MANTISSA_CHECK(!t.defined() || (t.numel() == 1 && t.dtype() == DType::F32 && t.device() == device &&
                                  t.is_contiguous()),
                 "widen_unscale_grads: found_inf must be a one-element F32 tensor on ", device, ", got ",
                 t.defined() ? shape_str(t.sizes()) + " " + dtype_name(t.dtype()) + " on " + t.device().str()
                             : std::string());
}

}  // namespace

void sgd_step(Device device, DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h,
              const LowPrecisionUpdate& lp) {
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::sgd_step(device.index, dtype, slots, h, lp);
#else
    MANTISSA_ERROR("SGD step: ", device, " parameters need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  visit_dtype<kOptimTypes>(dtype, "SGD step", [&]<typename T>() { sgd_typed<T>(slots, h, lp); });
}

void adam_step(Device device, DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h,
               const LowPrecisionUpdate& lp) {
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::adam_step(device.index, dtype, slots, h, lp);
#else
    MANTISSA_ERROR("Adam step: ", device, " parameters need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  visit_dtype<kOptimTypes>(dtype, "Adam step", [&]<typename T>() { adam_typed<T>(slots, h, lp); });
}

void widen_unscale_grads(Device device, DType src_dtype, std::span<const CastSlot> slots, float inv_scale,
                         const Tensor& found_inf) {
  check_flag(found_inf, device);
  MANTISSA_CHECK(src_dtype == DType::F16 || src_dtype == DType::BF16 || src_dtype == DType::F32,
                 "widen_unscale_grads: gradients of dtype ", src_dtype, " (expected F16, BF16 or F32)");
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::widen_unscale_grads(device.index, src_dtype, slots, inv_scale,
                                     found_inf.defined() ? found_inf.data<float>() : nullptr);
#else
    MANTISSA_ERROR("widen_unscale_grads: ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  bool found = false;
  for (const CastSlot& s : slots) {
    float* dst = static_cast<float*>(s.dst);
    if (src_dtype == DType::F16) convert_f16_to_f32(static_cast<const Half*>(s.src), dst, s.numel);
    else if (src_dtype == DType::BF16) convert_bf16_to_f32(static_cast<const BFloat16*>(s.src), dst, s.numel);
    else if (s.src != s.dst) std::memcpy(dst, s.src, static_cast<size_t>(s.numel) * sizeof(float));
    // Conversions keep Inf and NaN, so checking the widened values checks the sources.
    if (inv_scale != 1.0f || found_inf.defined()) found = scale_check_f32(dst, s.numel, inv_scale) || found;
  }
  if (found && found_inf.defined()) *found_inf.data<float>() = 1.0f;
}

void round_masters(Device device, DType dst_dtype, std::span<const CastSlot> slots) {
  MANTISSA_CHECK(dst_dtype == DType::F16 || dst_dtype == DType::BF16, "round_masters: working copies of dtype ",
                 dst_dtype, " (expected F16 or BF16)");
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::round_masters(device.index, dst_dtype, slots);
#else
    MANTISSA_ERROR("round_masters: ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  for (const CastSlot& s : slots) {
    const float* src = static_cast<const float*>(s.src);
    if (dst_dtype == DType::F16) convert_f32_to_f16(src, static_cast<Half*>(s.dst), s.numel);
    else convert_f32_to_bf16(src, static_cast<BFloat16*>(s.dst), s.numel);
  }
}

}  // namespace mantissa::kernels
