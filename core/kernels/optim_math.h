// The element-level arithmetic of the fused optimizer steps, shared by the CPU kernels (scalar
// and AVX2 vectors) and the CUDA kernels, plus the BF16 write-back rules (nearest, stochastic,
// Kahan). Written once over a value type V so every device rounds each operation the same way.
#pragma once

#include <math.h>

#include <cstdint>

#include "core/half.h"
#include "core/kernels/optim_step.h"
#include "core/macros.h"
#include "core/philox.h"

namespace mantissa::kernels::optim_math {

// Scalar primitives for V = float/double. On the device the kernels use wrapper types whose
// operators are the _rn intrinsics instead, because nvcc would otherwise contract a*b + c into
// an FMA where the CPU rounds twice. max(a, b) returns b when either is NaN, as MAXPS does.
MANTISSA_INLINE float vfma(float a, float b, float c) { return ::fmaf(a, b, c); }
MANTISSA_INLINE double vfma(double a, double b, double c) { return ::fma(a, b, c); }
MANTISSA_INLINE float vsqrt(float a) { return ::sqrtf(a); }
MANTISSA_INLINE double vsqrt(double a) { return ::sqrt(a); }
MANTISSA_INLINE float vmax(float a, float b) { return a > b ? a : b; }
MANTISSA_INLINE double vmax(double a, double b) { return a > b ? a : b; }

// ---- SGD -----------------------------------------------------------------------------------

template <typename V>
struct SGDConsts {
  V wd, momentum, one_minus_dampening, neg_lr;
};

// PyTorch's scalar arguments are Python doubles cast to the tensor's type (F32 for BF16
// parameters, whose update runs in F32); each line names the 1.13 operation it mirrors (its add
// with alpha is a fused multiply-add on vectors).
template <typename T>
inline SGDConsts<T> sgd_consts(const SGDHyper& h) {
  return {static_cast<T>(h.weight_decay), static_cast<T>(h.momentum), static_cast<T>(1.0 - h.dampening),
          static_cast<T>(-h.lr)};
}

template <bool kWd, bool kMomentum, bool kFirst, bool kNesterov, typename V>
MANTISSA_INLINE void sgd_update(V& p, V g, V& buf, const SGDConsts<V>& c) {
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

// ---- Adam / AdamW --------------------------------------------------------------------------

template <typename V>
struct AdamConsts {
  V decay, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
};

// Python computes the step's scalars in double; each reaches the kernel cast to T.
template <typename T>
inline AdamConsts<T> adam_consts(const AdamHyper& h, int64_t step) {
  const double steps = static_cast<double>(step);
  const double bias_correction1 = 1.0 - ::pow(h.beta1, steps);
  const double bias_correction2 = 1.0 - ::pow(h.beta2, steps);
  return {static_cast<T>(1.0 - h.lr * h.weight_decay),
          static_cast<T>(h.weight_decay),
          static_cast<T>(h.beta1),
          static_cast<T>(1.0 - h.beta1),
          static_cast<T>(h.beta2),
          static_cast<T>(1.0 - h.beta2),
          static_cast<T>(::sqrt(bias_correction2)),
          static_cast<T>(h.eps),
          static_cast<T>(-(h.lr / bias_correction1))};
}

template <bool kDecoupled, bool kWd, bool kAmsgrad, typename V>
MANTISSA_INLINE void adam_update(V& p, V g, V& m, V& v, V& vmax_, const AdamConsts<V>& c) {
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

// ---- BF16 write-back -----------------------------------------------------------------------

// Streams of one parameter's stochastic rounding: its value and up to three state tensors.
inline constexpr uint32_t kStreamParam = 0, kStreamState0 = 1, kStreamState1 = 2, kStreamState2 = 3;
// Each Philox block (4 words) supplies 16 bits to each of 8 consecutive elements.
inline constexpr int64_t kSRElementsPerBlock = 8;

// Block `element / 8` of the stream (seed; step, parameter index, stream). The step and the
// index occupy their own counter words, so two steps or two parameters never share randomness.
MANTISSA_INLINE void sr_block(uint64_t seed, int64_t step, uint64_t index, uint32_t stream, int64_t element,
                              uint32_t out[4]) {
  const uint64_t block = static_cast<uint64_t>(element) / kSRElementsPerBlock;
  const uint32_t ctr[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                           static_cast<uint32_t>(step), static_cast<uint32_t>(index << 2) | stream};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  philox4x32_10(ctr, key, out);
}

// The 16 random bits of `element` within its block.
MANTISSA_INLINE uint32_t sr_bits(const uint32_t w[4], int64_t element) {
  return (w[(element & 7) >> 1] >> ((element & 1) * 16)) & 0xffffu;
}

// F32 -> BF16 rounding the magnitude up with probability (discarded 16 bits) / 2^16: adding a
// uniform 16-bit value to the bits carries into the kept part exactly that often, and the carry
// crosses binades (and overflows to Inf) like any rounding up. NaN and Inf round as usual.
MANTISSA_INLINE uint16_t float_to_bf16_bits_stochastic(float x, uint32_t r16) {
  const uint32_t bits = ::mantissa::detail::bit_cast<uint32_t>(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return float_to_bf16_bits(x);
  return static_cast<uint16_t>((bits + r16) >> 16);
}

// Kahan-compensated store of p_new (the F32 result of an update of p_old, a BF16 value) with
// the residual c carried from earlier steps: the part of the update the BF16 parameter cannot
// hold stays in c and is added back next time, so many tiny updates still accumulate.
MANTISSA_INLINE void kahan_store(float p_old, float p_new, float c, uint16_t& p_bits, uint16_t& c_bits) {
  const float y = (p_new - p_old) + c;
  const uint16_t stored = float_to_bf16_bits(p_old + y);
  // Both values are BF16 of nearby magnitude, so their difference is exact in F32.
  const float applied = bf16_bits_to_float(stored) - p_old;
  p_bits = stored;
  c_bits = float_to_bf16_bits(y - applied);
}

}  // namespace mantissa::kernels::optim_math
