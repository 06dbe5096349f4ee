// FakeQuantize (torch.ao.quantization.FakeQuantize): an observer plus quantize-dequantize in
// the forward pass, with switches to stop observing (freeze the qparams) and to pass values
// through unquantized; the backward is the straight-through estimator of the fake_quantize op.
#pragma once

#include <memory>

#include "nn/module.h"
#include "quant/observer.h"

namespace mantissa::quant {

// What quant::prepare_qat attaches and QATSchedule / quant::convert drive: a fake quantizer with
// an observer phase and a fake-quant switch, and the qparams conversion quantizes with.
class FakeQuantizeBase : public nn::Module {
 public:
  virtual void enable_fake_quant(bool on = true) = 0;
  // FakeQuantize: observe or freeze. LearnableFakeQuantize: static estimation (the observer sets
  // scale and zero point) or, when off, learning them by gradient.
  virtual void enable_observer(bool on = true) = 0;
  virtual bool fake_quant_enabled() const = 0;
  virtual bool observer_enabled() const = 0;
  void disable_fake_quant() { enable_fake_quant(false); }
  void disable_observer() { enable_observer(false); }
  // The qparams fake quantization uses now (what an int8 model converted from it must use).
  virtual QParams qparams() const = 0;
  virtual Observer& observer() = 0;
};

class FakeQuantize : public FakeQuantizeBase {
 public:
  explicit FakeQuantize(std::shared_ptr<Observer> observer);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "FakeQuantize"; }
  std::string extra_repr() const override;

  void enable_observer(bool on = true) override { observer_enabled_ = on; }
  void enable_fake_quant(bool on = true) override { fake_quant_enabled_ = on; }
  bool observer_enabled() const override { return observer_enabled_; }
  bool fake_quant_enabled() const override { return fake_quant_enabled_; }

  // The qparams in use, refreshed from the observer after every observed batch. While fake
  // quantization is off (calibration for static PTQ) the refresh waits until they are asked for,
  // so an expensive observer (HistogramObserver's L2 search) runs once, not per batch.
  QParams qparams() const override;
  Observer& observer() override { return *observer_; }

 private:
  void refresh() const;
  std::shared_ptr<Observer> observer_;
  Tensor scale_, zero_point_;
  bool observer_enabled_ = true;
  bool fake_quant_enabled_ = true;
  mutable bool stale_ = false;  // the observer saw data the buffers do not reflect yet
};

}  // namespace mantissa::quant
