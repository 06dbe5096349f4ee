// FakeQuantize (torch.ao.quantization.FakeQuantize): an observer plus quantize-dequantize in
// the forward pass, with switches to stop observing (freeze the qparams) and to pass values
// through unquantized; the backward is the straight-through estimator of the fake_quantize op.
#pragma once

#include <memory>

#include "nn/module.h"
#include "quant/observer.h"

namespace mantissa::quant {

class FakeQuantize : public nn::Module {
 public:
  explicit FakeQuantize(std::shared_ptr<Observer> observer);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "FakeQuantize"; }
  std::string extra_repr() const override;

  void enable_observer(bool on = true) { observer_enabled_ = on; }
  void disable_observer() { observer_enabled_ = false; }
  void enable_fake_quant(bool on = true) { fake_quant_enabled_ = on; }
  void disable_fake_quant() { fake_quant_enabled_ = false; }
  bool observer_enabled() const { return observer_enabled_; }
  bool fake_quant_enabled() const { return fake_quant_enabled_; }

  // The qparams in use: refreshed from the observer on every observed batch.
  QParams qparams() const { return QParams{scale_, zero_point_, observer_->spec()}; }
  Observer& observer() { return *observer_; }

 private:
  std::shared_ptr<Observer> observer_;
  Tensor scale_, zero_point_;
  bool observer_enabled_ = true;
  bool fake_quant_enabled_ = true;
};

}  // namespace mantissa::quant
