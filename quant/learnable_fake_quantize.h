// LearnableFakeQuantize (LSQ, torch.ao's _LearnableFakeQuantize): scale and zero point are
// parameters trained with the model. Static estimation (the observer sets them) until learning
// is enabled; then the observer is bypassed and the gradients of the learnable fake-quant op move
// them, optionally scaled by LSQ's 1/sqrt(numel * qmax).
#pragma once

#include <memory>

#include "nn/module.h"
#include "quant/fake_quantize.h"
#include "quant/observer.h"

namespace mantissa::quant {

class LearnableFakeQuantize : public FakeQuantizeBase {
 public:
  explicit LearnableFakeQuantize(std::shared_ptr<Observer> observer, bool use_grad_scaling = false,
                                 double init_scale = 1.0, double init_zero_point = 0.0);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "LearnableFakeQuantize"; }
  std::string extra_repr() const override;

  // PyTorch's switches: static estimation (observer drives the qparams), parameter learning
  // (gradients drive them), and the fake quantization itself.
  void enable_static_estimate();
  void enable_param_learning();
  void enable_fake_quant(bool on = true) override { fake_quant_enabled_ = on; }
  bool fake_quant_enabled() const override { return fake_quant_enabled_; }
  bool learning_enabled() const { return learning_enabled_; }
  // The FakeQuantizeBase view used by QATSchedule: observing = static estimation; turning it off
  // starts learning scale and zero point (enable_param_learning).
  void enable_observer(bool on = true) override;
  bool observer_enabled() const override { return static_enabled_; }

  Tensor scale() const { return scale_; }
  Tensor zero_point() const { return zero_point_; }
  // scale as F32, zero point rounded half to even and clamped to the code range as I32 (what the
  // forward computes with), 0-d per tensor, [C] per channel.
  QParams qparams() const override;
  Observer& observer() override { return *observer_; }

 private:
  std::shared_ptr<Observer> observer_;
  Tensor scale_, zero_point_;
  bool use_grad_scaling_;
  bool static_enabled_ = true;
  bool learning_enabled_ = false;
  bool fake_quant_enabled_ = true;
};

}  // namespace mantissa::quant
