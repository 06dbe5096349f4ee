// Int8 inference modules built from trained float layers (torch.ao.nn.quantized numerics):
// QuantizedLinear and QuantizedConv2d (s8 per-channel symmetric weights, I32 bias, u8/s8
// activations, fbgemm-style requantization in core/kernels/qgemm.h), and ReLU / max_pool2d /
// flatten applied directly to codes.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "core/kernels/conv.h"
#include "core/kernels/qgemm.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "quant/qtensor.h"

namespace mantissa::quant {

// Two ways to build one:
// - fixed input qparams: QuantizedLinear(linear, input_qp, output_qp). forward(QTensor) takes codes
//   made with input_qp (checked: same dtype, scale and zero point) and returns codes with output_qp;
//   forward(Tensor) of a float tensor quantizes it with input_qp, runs the int8 layer and
//   dequantizes the output to F32. The float weight is quantized per output channel, symmetric
//   int8 on [-128, 127] (weight_qparams() below); the float bias to I32 codes
//   q_b[c] = rint(b[c] / (x_scale * w_scale[c])) (half to even, the division in F64, clamped to
//   int32), joining the int32 accumulator as in QNNPACK / ONNX.
// - conversion (quant::convert): QuantizedLinear(weight, bias, weight_qp, output_qp, relu). The
//   weight is quantized with weight_qp (symmetric: zero point 0, per tensor or per output channel,
//   int8 or int4 codes: what the QAT weight fake quantizer or the calibrated weight observer
//   used); forward(Tensor) takes a quantized tensor (Tensor::is_quantized) and reads the input
//   qparams from it, quantizing the bias for that input scale on each call; the result is a
//   quantized tensor with output_qp. relu = a fused ReLU: output codes floored at the zero point.
// state_dict: "weight" (I8 codes), "weight_scale" (F32 [out]), "bias" (F32, the float bias),
// "scale" and "zero_point" (output qparams, 0-d F32 / I32).
class QuantizedLinear : public nn::Module {
 public:
  QuantizedLinear(const nn::Linear& linear, const QParams& input_qp, const QParams& output_qp);
  QuantizedLinear(const Tensor& weight, const Tensor& bias, const QParams& weight_qp, const QParams& output_qp,
                  bool relu = false);

  // x [N, in_features] codes -> [N, out_features] codes. Leading dims beyond one are flattened.
  QTensor forward(const QTensor& x) const;
  Tensor forward(const Tensor& input) override;
  std::string name() const override { return "QuantizedLinear"; }
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight_codes;  // I8 [out, in]
  Tensor weight_scale;  // F32 [out]
  Tensor bias;          // F32 [out], undefined without bias
  Tensor bias_codes;    // I32 [out] for input_qp at construction (fixed form; forward requantizes the
                        // bias from `bias` on every call, so a loaded state_dict takes effect)
  QParams input_qp;     // fixed form only (scale undefined in the conversion form)
  QParams output_qp;
  bool relu = false;  // weight_codes packed for oneDNN, kept between calls (repacked when they change).
  std::shared_ptr<kernels::QWeightCache> weight_cache = std::make_shared<kernels::QWeightCache>();
};

// As QuantizedLinear, for NCHW convolution (both construction forms, same state_dict names).
class QuantizedConv2d : public nn::Module {
 public:
  QuantizedConv2d(const nn::Conv2d& conv, const QParams& input_qp, const QParams& output_qp);
  // The conversion form; weight and bias may differ from conv's (BatchNorm folded in).
  QuantizedConv2d(const nn::Conv2d& conv, const Tensor& weight, const Tensor& bias, const QParams& weight_qp,
                  const QParams& output_qp, bool relu = false);

  // x [N, C, H, W] codes -> [N, O, Ho, Wo] codes.
  QTensor forward(const QTensor& x) const;
  Tensor forward(const Tensor& input) override;
  std::string name() const override { return "QuantizedConv2d"; }
  std::string extra_repr() const override;

  kernels::Conv2dParams params;
  Tensor weight_codes;  // I8 [O, C/groups, kh, kw]
  Tensor weight_scale;  // F32 [O]
  Tensor bias;          // F32 [O], undefined without bias
  Tensor bias_codes;    // I32 [O], fixed form only
  QParams input_qp, output_qp;
  bool relu = false;  // weight_codes packed for oneDNN, kept between calls (repacked when they change).
  std::shared_ptr<kernels::QWeightCache> weight_cache = std::make_shared<kernels::QWeightCache>();
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

// weight codes (I8) and per-output-channel scales (F32 [C]) of weight under weight_qp, which must
// be symmetric (zero point 0) per tensor or per channel along axis 0, int8 or int4.
std::pair<Tensor, Tensor> quantize_weight(const Tensor& weight, const QParams& weight_qp, const char* op);

}  // namespace mantissa::quant
