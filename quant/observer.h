// Observers (torch.ao.quantization.observer): modules that watch the tensors passing through
// them, keep a running range, and turn it into qparams for a QSpec. MinMax, MovingAverageMinMax
// (averaging constant 0.01), and their per-channel forms; the range math is F32 tensor math in
// PyTorch's order, so the qparams match torch's bit for bit.
#pragma once

#include <memory>
#include <string>

#include "nn/module.h"
#include "quant/qparams.h"

namespace mantissa::quant {

class Observer : public nn::Module {
 public:
  explicit Observer(QSpec spec);
  // Records x's range (x unchanged, no autograd history touched) and returns x.
  Tensor forward(const Tensor& x) override;
  // qparams of the range seen so far; before any data: scale 1, zero point 0 (as PyTorch, which
  // warns), so a model converted without calibration still runs.
  // Virtual so observers that narrow the range first (HistogramObserver) are used through Observer&.
  virtual QParams calculate_qparams() const;
  bool has_data() const;
  const QSpec& spec() const { return spec_; }
  // Running range (F32; 0-d per tensor, [C] per channel; +inf/-inf before any data).
  Tensor min_val() const { return min_val_; }
  Tensor max_val() const { return max_val_; }
  // Restarts the range (used when a QAT schedule re-enables observation).
  void reset();
  std::string extra_repr() const override;

 protected:
  // Range of x: 0-d per tensor; [C] along spec.axis per channel (x made F32 first).
  std::pair<Tensor, Tensor> batch_range(const Tensor& x) const;
  virtual void update(const Tensor& lo, const Tensor& hi) = 0;
  void set_range(const Tensor& lo, const Tensor& hi);

  QSpec spec_;
  Tensor min_val_, max_val_;
};

// Running min and max over every batch.
class MinMaxObserver : public Observer {
 public:
  explicit MinMaxObserver(QSpec spec = {});
  std::string name() const override { return spec_.per_channel() ? "PerChannelMinMaxObserver" : "MinMaxObserver"; }

 protected:
  void update(const Tensor& lo, const Tensor& hi) override;
};

// Exponential moving average of each batch's min and max: r += c * (batch - r); the first batch
// sets r. Damps outliers, the default for QAT activations.
class MovingAverageMinMaxObserver : public Observer {
 public:
  explicit MovingAverageMinMaxObserver(QSpec spec = {}, double averaging_constant = 0.01);
  std::string name() const override {
    return spec_.per_channel() ? "MovingAveragePerChannelMinMaxObserver" : "MovingAverageMinMaxObserver";
  }
  std::string extra_repr() const override;

 protected:
  void update(const Tensor& lo, const Tensor& hi) override;

 private:
  double averaging_constant_;
};

// PyTorch's names for the per-channel forms: the spec's axis selects the channel dim.
std::shared_ptr<MinMaxObserver> make_per_channel_min_max_observer(QSpec spec, int64_t axis);
std::shared_ptr<MovingAverageMinMaxObserver> make_moving_average_per_channel_observer(QSpec spec, int64_t axis,
                                                                                     double averaging_constant = 0.01);

}  // namespace mantissa::quant
