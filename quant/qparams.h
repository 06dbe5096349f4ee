// Quantization parameters (torch.ao numerics): the integer formats (int8, uint8, int4 held in
// int8), affine or symmetric schemes per tensor or per channel, qparams from an observed range,
// and quantize / dequantize between float tensors and integer codes.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace mantissa::quant {

enum class QDType : uint8_t { Int8, UInt8, Int4 };
enum class QScheme : uint8_t { Affine, Symmetric };

// How a tensor is quantized: format, scheme, and granularity (axis -1 = per tensor).
struct QSpec {
  QDType dtype = QDType::Int8;
  QScheme scheme = QScheme::Affine;
  // Symmetric int8 on [-127, 127] instead of [-128, 127] (so +-max map to +-127 exactly).
  bool restricted_range = false;
  int64_t axis = -1;

  int32_t qmin() const;
  int32_t qmax() const;
  bool per_channel() const { return axis >= 0; }
  std::string str() const;  // "int8 symmetric per-channel(axis 0)"
};

// Smallest scale a range can produce: PyTorch's observer eps, float32's machine epsilon (2^-23).
inline constexpr float kScaleEps = 1.1920928955078125e-07f;

// scale (F32) and zero point (I32), 0-d per tensor or [C] per channel, with the spec they belong to.
struct QParams {
  Tensor scale;
  Tensor zero_point;
  QSpec spec;
};

// qparams from an observed range (F32 tensors, 0-d or [C]), as torch.ao's observers compute
// them in F32 tensor math: the range is first widened to include 0; affine: scale = (max - min)
// / (qmax - qmin), zero_point = qmin - round(min / scale) clamped to [qmin, qmax]; symmetric:
// scale = max(|min|, |max|) / ((qmax - qmin) / 2), zero point 0 (128 for uint8, the midpoint for a
// custom range). scale is floored at kScaleEps, so constant and all-zero tensors stay finite.
QParams calculate_qparams(const Tensor& min_val, const Tensor& max_val, const QSpec& spec);

// Per-tensor qparams from explicit values (checks: scale > 0 finite, zero point in range).
QParams make_qparams(double scale, int64_t zero_point, const QSpec& spec);

// Integer codes (I8 for int8/int4, U8 for uint8) of an F32 tensor; per channel along spec.axis.
Tensor quantize(const Tensor& x, const QParams& qp);
// F32 values (q - zero_point) * scale of codes made by quantize().
Tensor dequantize(const Tensor& q, const QParams& qp);

// scale and zero point viewed so they broadcast against a tensor of x_dim dims (per channel:
// [C] -> [1, .., C, .., 1] along the axis).
Tensor broadcast_qparam(const Tensor& p, int64_t axis, int64_t x_dim);

}  // namespace mantissa::quant
