// Dynamic post-training quantization (torch.ao.nn.quantized.dynamic numerics): QuantizedLinearDynamic
// keeps per-channel symmetric int8 weights quantized once and quantizes each batch of activations
// on the fly (uint8 affine, qparams from that batch's min/max), returning F32; quantize_dynamic
// converts a model's nn::Linear layers to it in place.
#pragma once

#include <memory>
#include <string>

#include "core/kernels/qgemm.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "quant/qparams.h"
#include "quant/qtensor.h"

namespace mantissa::quant {

// Inference-only linear layer, F32 in and out (PyTorch's dynamic quantized Linear with
// reduce_range=false):
//   weights: quantized at construction per output channel, symmetric int8 on [-128, 127]
//            (scale = max|w_c| / 127.5, zero point 0: weight_qparams() of quantized_modules.h);
//   input:   every forward() quantizes its batch (all leading dims together, one tensor) to uint8
//            affine with calculate_qparams(min(x), max(x), uint8 affine per tensor), so the
//            range always holds 0 and the scale is floored at kScaleEps;
//   output:  out = float(acc_int32) * (s_x * s_w[c]) + bias (F32, kernels::qlinear_dequant),
//            no output requantization.
// Input: CPU floating tensor [..., in_features] (F16/BF16/F64 converted to F32 first, non-finite
// values refused); output [..., out_features] F32 with no autograd history.
class QuantizedLinearDynamic : public nn::Module {
 public:
  explicit QuantizedLinearDynamic(const nn::Linear& linear);

  Tensor forward(const Tensor& input) override;
  // The qparams forward() would quantize `input` with, and the codes it would feed the kernel
  // (the same codes as quant::quantize(input, input_qparams(input))), for tests and inspection.
  QParams input_qparams(const Tensor& input) const;
  QTensor quantize_input(const Tensor& input) const;
  std::string name() const override { return "QuantizedLinearDynamic"; }
  std::string extra_repr() const override;

  // The kernel path forward() uses (tests force the reference loops to compare with oneDNN).
  kernels::QGemmImpl impl = kernels::QGemmImpl::Auto;

  int64_t in_features, out_features;
  Tensor weight_codes;  // I8 [out, in]
  Tensor weight_scale;  // F32 [out]
  Tensor bias;          // F32 [out], undefined without bias
  // weight_codes packed for oneDNN, kept between forward() calls; repacked by itself when the
  // codes change (load_state_dict, copy_, a new tensor: see kernels::QWeightCache).
  std::shared_ptr<kernels::QWeightCache> weight_cache = std::make_shared<kernels::QWeightCache>();
};

// Converts, in place, every nn::Linear reachable from model (model itself included; exactly
// nn::Linear, not a subclass; not already quantized) into the int8 dynamic layer: the Linear keeps
// its place, so a forward() that calls typed member pointers (std::shared_ptr<nn::Linear> fc1)
// runs the int8 layer too. Its float weight and bias leave the registry and state_dict, the
// QuantizedLinearDynamic is registered as its child "quantized" (state_dict: fc1.quantized.weight
// codes, .weight_scale, .bias) and Linear::forward hands the input to it. A Linear with fake
// quantizers attached (prepare / prepare_qat) is refused, changing nothing: quant::convert is for
// those. Returns the number of layers converted (0 the second time).
int64_t quantize_dynamic(nn::Module& model);

}  // namespace mantissa::quant
