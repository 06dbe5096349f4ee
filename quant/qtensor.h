// A quantized activation: integer codes (U8 or I8) with the per-tensor qparams they were made
// with, and the quantize / dequantize helpers the int8 modules (quantized_modules.h) take and give.
// Also the bridge to first-class quantized Tensors (core/quantized.h): quantize_per_tensor,
// dequantize, and to_qtensor / to_tensor between the two forms.
#pragma once

#include "core/quantized.h"
#include "quant/qparams.h"

namespace mantissa::quant {

struct QTensor {
  Tensor codes;  // U8 (uint8 spec) or I8 (int8 spec), any shape, CPU
  QParams qp;    // per tensor (axis -1)

  Shape sizes() const { return codes.sizes(); }
  float scale() const;       // qp.scale as a float
  int32_t zero_point() const;  // qp.zero_point as an int
};

// codes = quantize(x, qp) (round half to even, quant_round.h); qp must be per tensor, int8 or uint8.
QTensor quantize_tensor(const Tensor& x, const QParams& qp);
// F32 (codes - zero_point) * scale.
Tensor dequantize_tensor(const QTensor& q);

// A quantized Tensor (torch.quantize_per_tensor): codes = quantize(x) with the one rounding rule
// (quant_round.h), dtype UInt8 -> quint8 (U8 codes) or Int8 -> qint8 (I8 codes), on x's device.
Tensor quantize_per_tensor(const Tensor& x, float scale, int32_t zero_point, QDType dtype);
// F32 (q - zero_point) * scale of a quantized Tensor, on its device (torch.dequantize).
Tensor dequantize(const Tensor& q);
// The same codes (shared storage) and qparams as a QTensor (affine per-tensor spec, CPU qparams).
QTensor to_qtensor(const Tensor& q);
// A quantized Tensor sharing q's codes; q must hold per-tensor qparams of its codes' dtype.
Tensor to_tensor(const QTensor& q);

}  // namespace mantissa::quant
