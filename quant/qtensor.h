// A quantized activation: integer codes (U8 or I8) with the per-tensor qparams they were made
// with, and the quantize / dequantize helpers the int8 modules (quantized_modules.h) take and give.
#pragma once

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

}  // namespace mantissa::quant
