// QuantStub and DeQuantStub (torch.ao.quantization's): where a model's float input becomes a
// quantized tensor and where its quantized output goes back to float. Identity in a float model;
// prepare / prepare_qat attach an activation fake quantizer to QuantStub (observing, and in QAT
// fake-quantizing, the model input); after quant::convert QuantStub quantizes with the qparams it
// observed and DeQuantStub dequantizes.
#pragma once

#include <string>

#include "nn/module.h"
#include "quant/qparams.h"

namespace mantissa::quant {

class QuantStub : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "QuantStub"; }
  std::string extra_repr() const override;

  // Registers fq as the child "activation_post_process" (PyTorch's name); set once.
  void set_activation_post_process(nn::ModulePtr fq);
  const nn::ModulePtr& activation_post_process() const { return activation_post_process_; }

  // Called by quant::convert: from now on forward quantizes a float input with qp (per tensor,
  // int8 or uint8 with the full code range), kept as the buffers "scale" and "zero_point".
  void convert(const QParams& qp);
  bool converted() const { return converted_; }

 private:
  nn::ModulePtr activation_post_process_;
  bool converted_ = false;
  QSpec spec_;
  Tensor scale_, zero_point_;
};

class DeQuantStub : public nn::Module {
 public:
  // Dequantizes a quantized tensor to F32; a float tensor passes through (as Tensor.dequantize()).
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "DeQuantStub"; }
};

}  // namespace mantissa::quant
