// Int8 inference kernels: u8/s8 activations x s8 per-channel weights, exact int32 accumulation,
// then fbgemm-style requantization to u8/s8 codes. A linear layer and an NCHW conv2d: on the CPU
// through oneDNN's int8 matmul / convolution (weights packed once per layer in a QWeightCache) or
// a reference loop; on CUDA through cuBLASLt int8 GEMMs or a dp4a kernel (qgemm.cu).
#pragma once

#include <cstdint>
#include <memory>

#include "core/kernels/conv.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// The requantization of one layer. Real values: x = (q_x - x_zp) * x_scale, w[c] = q_w * w_scale[c]
// (symmetric, zero point 0), bias[c] = q_b * x_scale * w_scale[c] (I32), out = (q_out - out_zp) * out_scale.
//   acc[c]   = sum (q_x - x_zp) * q_w[c]  + q_b[c]          (int32: the sum is exact for a reduction
//                                                             depth up to 65536 (deeper is refused), the
//                                                             bias is added saturating in the reference)
//   M[c]     = (x_scale * w_scale[c]) / out_scale            (F32, two F32 roundings, as PyTorch
//                                                             computes act_times_w_scale / out_scale)
//   q_out    = clamp(rint(float(acc) * M[c]) + out_zp, lo, hi)
// float(acc) is exact while |acc| < 2^24; the product is one F32 rounding; rint rounds half to
// even (fbgemm's _mm256_cvtps_epi32 under the default MXCSR). lo, hi: the range of out's dtype
// (U8: [0, 255], I8: [-128, 127]).
// The oneDNN path folds out_zp into the rounding, rint(float(acc) * M[c] + out_zp): identical except
// at an exact .5 tie with an odd out_zp, where it may differ by one code.
struct Requant {
  float x_scale = 1.0f;
  int32_t x_zp = 0;
  Tensor w_scale;  // F32 [C], contiguous, on the CPU
  float out_scale = 1.0f;
  int32_t out_zp = 0;
};

enum class QGemmImpl : uint8_t {
  Auto,       // oneDNN when built with it, else the reference (CUDA tensors: always the CUDA kernels)
  Reference,  // the plain loops (tests compare the two)
};

// The packed (oneDNN-reordered) weights of one layer, kept between calls so the int8 weights are
// not reordered on every forward. A layer owns one and passes it to every call with its weights.
// Packed forms are reused while the weight tensor is the same one, unchanged: same storage (held
// weakly, so a freed and reallocated buffer is never mistaken for it), offset, shape and
// version() (every in-place op, copy_ and load_state_dict among them, bumps it); anything else
// drops them. Each packed form is also tied to the primitive's weight layout, which oneDNN picks
// from the shapes, dtypes and requantization (it may fold zero-point compensation into it), so a
// call with other parameters packs again instead of reading a mismatched layout. Writes through
// raw data pointers must call bump_version(), as for autograd. Thread-safe. Without oneDNN, on
// the reference path and for CUDA tensors it is not used (nothing is packed there).
class QWeightCache {
 public:
  QWeightCache();
  ~QWeightCache();
  QWeightCache(const QWeightCache&) = delete;
  QWeightCache& operator=(const QWeightCache&) = delete;

  void clear();             // drops every packed form
  uint64_t packs() const;   // weight reorders done through this cache (tests and statistics)
  uint64_t reuses() const;  // calls served by an already packed form

  struct State;
  std::unique_ptr<State> state;
};

// out [N, C] (U8 or I8) = requant(x [N, K] (U8 or I8) . w [C, K]^T (I8) + bias [C] (I32, optional)).
// All operands contiguous, on one device (CPU or CUDA); r.w_scale on the CPU or on that device.
void qlinear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r,
             QGemmImpl impl = QGemmImpl::Auto, QWeightCache* cache = nullptr);

// out [N, O, Ho, Wo] (U8 or I8) = requant(conv(x [N, C, H, W], w [O, C/groups, kh, kw]) + bias [O]).
// Padding reads as the real value 0, i.e. the code x_zp (as PyTorch's quantized conv does).
// Devices as for qlinear.
void qconv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
             const Requant& r, QGemmImpl impl = QGemmImpl::Auto, QWeightCache* cache = nullptr);

// The dynamic-quantization linear: u8/s8 activations x s8 per-channel symmetric weights, exact
// int32 accumulation as above, then the accumulator dequantized to F32 instead of requantized:
//   out[n, c] = float(acc[n, c]) * m[c] + bias[c],   m[c] = x_scale * w_scale[c] (one F32 rounding),
// acc = sum (q_x - x_zp) * q_w[c] (exact in int32, depth <= 65536); float(acc) is exact while
// |acc| < 2^24, the product is one F32 rounding and the bias add another (no FMA: both paths
// round the product first, so they agree bit for bit). bias is F32 [C] or undefined.
// x_scale and x_zp change with every batch, so the oneDNN primitive takes them at run time
// (one cached primitive per shape, not per batch).
// out [N, C] (F32), x [N, K] (U8 or I8), w [C, K] (I8), bias [C] (F32): contiguous tensors on one
// device (CPU or CUDA); w_scale [C] (F32) on the CPU or on that device.
void qlinear_dequant(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, float x_scale,
                     int32_t x_zp, const Tensor& w_scale, QGemmImpl impl = QGemmImpl::Auto,
                     QWeightCache* cache = nullptr);

// The requantization multipliers M[c] above (F32 [C], on the CPU; r.w_scale on the CPU).
Tensor requant_multipliers(const Requant& r);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
// The CUDA kernels behind the entry points above, called by them after every check (shapes,
// dtypes, devices, zero points, scales, depth <= 65536) with out.numel() > 0 and r.w_scale /
// w_scale on the CPU. Bit-identical to QGemmImpl::Reference: the int32 accumulator is exact on
// both sides and the requantization / dequantization is the same F32 arithmetic (qgemm.cu).
void qlinear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r);
void qconv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
             const Requant& r);
void qlinear_dequant(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, float x_scale,
                     int32_t x_zp, const Tensor& w_scale);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
