// Int8 inference modules built from trained float layers (torch.ao.nn.quantized numerics):
// QuantizedLinear and QuantizedConv2d (s8 per-channel symmetric weights, I32 bias, u8/s8
// activations, fbgemm-style requantization in core/kernels/qgemm.h), and ReLU / max_pool2d /
// flatten applied directly to codes.
#pragma once

#include <vector>

#include "core/kernels/conv.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "quant/qtensor.h"

namespace mantissa::quant {

// Interface: forward(QTensor) takes codes made with input_qp (checked: same dtype, scale and zero
// point) and returns codes with output_qp. forward(Tensor) is the float convenience: quantize with
// input_qp, run the int8 layer, dequantize the output codes to F32.
//
// At construction the float weight is quantized per output channel, symmetric int8 on [-128, 127]
// (scale = max|w_c| / 127.5, zero point 0, as PyTorch's per_channel_symmetric qint8 observer) and
// the float bias to I32 codes q_b[c] = rint(b[c] / (x_scale * w_scale[c])) (half to even, the
// division in F64, clamped to int32): the bias joins the int32 accumulator, as in QNNPACK / ONNX.
class QuantizedLinear : public nn::Module {
 public:
  QuantizedLinear(const nn::Linear& linear, const QParams& input_qp, const QParams& output_qp);

  // x [N, in_features] codes -> [N, out_features] codes. Leading dims beyond one are flattened.
  QTensor forward(const QTensor& x) const;
  Tensor forward(const Tensor& input) override;
  std::string name() const override { return "QuantizedLinear"; }
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight_codes;  // I8 [out, in]
  Tensor weight_scale;  // F32 [out]
  Tensor bias_codes;    // I32 [out], undefined without bias
  QParams input_qp, output_qp;
};

class QuantizedConv2d : public nn::Module {
 public:
  QuantizedConv2d(const nn::Conv2d& conv, const QParams& input_qp, const QParams& output_qp);

  // x [N, C, H, W] codes -> [N, O, Ho, Wo] codes.
  QTensor forward(const QTensor& x) const;
  Tensor forward(const Tensor& input) override;
  std::string name() const override { return "QuantizedConv2d"; }
  std::string extra_repr() const override;

  kernels::Conv2dParams params;
  Tensor weight_codes;  // I8 [O, C/groups, kh, kw]
  Tensor weight_scale;  // F32 [O]
  Tensor bias_codes;    // I32 [O], undefined without bias
  QParams input_qp, output_qp;
};

// Operations on codes. Affine quantization with a positive scale is monotone, so these commute
// with dequantize exactly: the output keeps the input's qparams.
// relu: max(q, zero_point) (the code of 0.0).
QTensor relu(const QTensor& x);
// max_pool2d over [N, C, H, W] codes; padding never wins the max (PyTorch's -inf padding).
QTensor max_pool2d(const QTensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride = {},
                   std::vector<int64_t> padding = {0, 0});
// Flattens dims start_dim..end_dim of the codes (a view when contiguous).
QTensor flatten(const QTensor& x, int64_t start_dim = 1, int64_t end_dim = -1);

// The per-channel symmetric int8 qparams (axis 0) the modules quantize a float weight with.
QParams weight_qparams(const Tensor& weight);

}  // namespace mantissa::quant
