// Quantization-aware training (torch.ao.quantization.prepare_qat, in place): a QConfig names the
// fake quantizers for weights and activations, prepare_qat attaches them to every nn::Linear and
// nn::Conv2d of a model (the layers stay the ones the model's members point to), and a QATSchedule
// switches fake quant, observers and BatchNorm statistics on or off by training step.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "nn/module.h"
#include "quant/fake_quantize.h"

namespace mantissa::quant {

// Factories: each call makes a fresh fake quantizer (one per layer, never shared).
struct QConfig {
  std::function<std::shared_ptr<FakeQuantizeBase>()> weight;
  std::function<std::shared_ptr<FakeQuantizeBase>()> activation;
};

// PyTorch's default QAT qconfig for x86/fbgemm, without reduce_range: weights int8 symmetric per
// output channel (axis 0, [-128, 127]) with a moving-average per-channel min/max observer;
// activations uint8 affine per tensor with a moving-average min/max observer (constant 0.01).
QConfig default_qat_qconfig();

// Attaches qconfig.weight() as weight_fake_quant and qconfig.activation() as
// activation_post_process to every nn::Linear and nn::Conv2d reachable from model (model itself
// included), moved to the layer's weight device, and qconfig.activation() to every
// quant::QuantStub and quant::FloatFunctional (quant/stubs.h). Layers that already carry a fake quantizer are
// left as they are, so calling it twice changes nothing. Returns the number of layers prepared.
// Like PyTorch's prepare_qat it quantizes each layer's output, not its input: the model input is
// quantized only where a QuantStub says so. A null factory skips that half (weight-only or
// activation-only QAT).
int64_t prepare_qat(nn::Module& model, const QConfig& qconfig = default_qat_qconfig());

// Every fake quantizer attached to a layer, QuantStub or FloatFunctional of model (weight and output ones), in
// module order.
std::vector<std::shared_ptr<FakeQuantizeBase>> attached_fake_quantizers(nn::Module& model);

// The usual QAT recipe by step (PyTorch's tutorial does it by epoch): observe from step 0, fake
// quantize from start_fake_quant_step (before it the layers train in float while the observers
// calibrate), freeze the qparams from freeze_observer_step, and use BatchNorm's running
// statistics from freeze_bn_step. A step of never_step keeps a switch off.
struct QATSchedule {
  static constexpr int64_t never_step = std::numeric_limits<int64_t>::max();
  int64_t start_fake_quant_step = 0;
  int64_t freeze_observer_step = never_step;
  int64_t freeze_bn_step = never_step;

  // Sets every attached fake quantizer's switches for this step: fake quant on iff step >=
  // start_fake_quant_step, observer on iff step < freeze_observer_step. For a
  // LearnableFakeQuantize "observer on" is static estimation and "off" is learning scale and zero
  // point by gradient (LSQ), so freeze_observer_step is when LSQ starts learning.
  // BatchNorm has no "freeze statistics while training" mode here, so from freeze_bn_step every
  // BatchNorm1d/2d is put in eval() (normalizes with, and stops updating, its running stats;
  // its affine weight and bias still train); before it they follow model.is_training(). As
  // model.train() resets the BatchNorms to training, call apply after model.train(), each step.
  void apply(nn::Module& model, int64_t step) const;
};

}  // namespace mantissa::quant
