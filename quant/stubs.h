// The activation points of a model that are not layers: QuantStub and DeQuantStub
// (torch.ao.quantization's), where the float input becomes a quantized tensor and where the
// quantized output goes back to float, and FloatFunctional, the add of two activations (a
// residual connection) as a module. Identity / plain add in a float model; prepare and
// prepare_qat attach an activation fake quantizer to QuantStub and FloatFunctional (observing,
// and in QAT fake-quantizing, their outputs); after quant::convert QuantStub quantizes with the
// qparams it observed, FloatFunctional adds quantized tensors into its own output qparams, and
// DeQuantStub dequantizes.
#pragma once

#include <string>

#include "nn/module.h"
#include "quant/qparams.h"

namespace mantissa::quant {

// What QuantStub and FloatFunctional share: an optional activation fake quantizer and, once
// converted, the per-tensor qparams of their output (buffers "scale" and "zero_point").
class OutputQuantizer : public nn::Module {
 public:
  // Registers fq as the child "activation_post_process" (PyTorch's name); set once.
  void set_activation_post_process(nn::ModulePtr fq);
  const nn::ModulePtr& activation_post_process() const { return activation_post_process_; }

  // Called by quant::convert: from now on the output is quantized with qp (per tensor, int8 or
  // uint8 with the full code range); the fake quantizer leaves the module.
  void convert(const QParams& qp);
  bool converted() const { return converted_; }
  std::string extra_repr() const override;

 protected:
  // The prepared (or float) path: the fake quantizer applied to y, or y.
  Tensor observe(const Tensor& y) { return activation_post_process_ ? (*activation_post_process_)(y) : y; }
  float out_scale() const;
  int32_t out_zero_point() const;
  const QSpec& out_spec() const { return spec_; }

 private:
  nn::ModulePtr activation_post_process_;
  bool converted_ = false;
  QSpec spec_;
  Tensor scale_, zero_point_;
};

class QuantStub : public OutputQuantizer {
 public:
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "QuantStub"; }
};

class DeQuantStub : public nn::Module {
 public:
  // Dequantizes a quantized tensor to F32; a float tensor passes through (as Tensor.dequantize()).
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "DeQuantStub"; }
};

// torch.ao.nn.quantized.FloatFunctional's add / add_relu: call fn->add(a, b) in forward() where a
// model adds two activations. Float or prepared: a + b (relu'd), through the fake quantizer.
// Converted: both arguments must be quantized tensors; the result is quantized_add(a, b) with this
// module's output qparams (core/quantized.h: PyTorch's quantized::add numerics).
class FloatFunctional : public OutputQuantizer {
 public:
  Tensor add(const Tensor& a, const Tensor& b);
  Tensor add_relu(const Tensor& a, const Tensor& b);
  // A FloatFunctional has no single-input forward (an Error says to call add / add_relu).
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "FloatFunctional"; }

 private:
  Tensor add_impl(const Tensor& a, const Tensor& b, bool relu, const char* op);
};

}  // namespace mantissa::quant
