// amp::GradScaler: dynamic loss scaling for F16 training with PyTorch's algorithm and defaults
// (torch.cuda.amp.GradScaler): scale the loss, unscale the gradients in one fused pass that also
// finds Inf/NaN, skip the optimizer step when any was found, and grow or back off the scale.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "optim/optimizer.h"

namespace mantissa::amp {

// The usual step (what torch.cuda.amp documents, and what Mantissa's examples do):
//
//   amp::GradScaler scaler;                       // scale 65536, x2 every 2000 clean steps
//   for (...) {
//     optimizer.zero_grad();
//     Tensor loss;
//     { amp::AutocastGuard autocast(DeviceType::CUDA, DType::F16); loss = criterion((*model)(x), y); }
//     scaler.scale(loss).backward();
//     scaler.unscale_(optimizer);                 // optional: only to look at or clip true gradients
//     optim::clip_grad_norm_(model->parameters(), 1.0);
//     amp::StepResult r = scaler.step(optimizer); // skipped (r.applied false) on Inf/NaN gradients
//     scaler.update();
//   }
//
// Clipping: only after unscale_. Clipping scaled gradients compares max_norm with gradients
// `scale` times too large, so nearly every step is clipped hard and training silently stalls.
//
// Gradient accumulation over k micro-batches: scale every micro-batch's loss (divided by k as
// usual) and call backward each time, so the gradients accumulate scaled by the same factor;
// then unscale_ (if clipping), step and update once, on the real step only. The scale must not
// change between the micro-batches of one step, which is why update() belongs after step().
//
//   for (int m = 0; m < k; ++m) scaler.scale(div(loss_of(m), k)).backward();
//   scaler.unscale_(optimizer); optim::clip_grad_norm_(params, 1.0);
//   scaler.step(optimizer); scaler.update(); optimizer.zero_grad();
//
// Several optimizers: scale(loss).backward() once, then unscale_/step each optimizer, then one
// update(): any optimizer that found Inf/NaN backs the scale off for all.

// libtorch-style options: GradScalerOptions().init_scale(1024).growth_interval(100).
class GradScalerOptions {
 public:
  GradScalerOptions& init_scale(double v) { init_scale_ = v; return *this; }
  GradScalerOptions& growth_factor(double v) { growth_factor_ = v; return *this; }
  GradScalerOptions& backoff_factor(double v) { backoff_factor_ = v; return *this; }
  GradScalerOptions& growth_interval(int64_t v) { growth_interval_ = v; return *this; }
  GradScalerOptions& enabled(bool v) { enabled_ = v; return *this; }
  GradScalerOptions& min_scale(std::optional<double> v) { min_scale_ = v; return *this; }
  GradScalerOptions& max_scale(std::optional<double> v) { max_scale_ = v; return *this; }
  double init_scale() const { return init_scale_; }
  double growth_factor() const { return growth_factor_; }
  double backoff_factor() const { return backoff_factor_; }
  int64_t growth_interval() const { return growth_interval_; }
  bool enabled() const { return enabled_; }
  std::optional<double> min_scale() const { return min_scale_; }
  std::optional<double> max_scale() const { return max_scale_; }

 private:
  double init_scale_ = 65536.0;     // 2^16; positive, finite
  double growth_factor_ = 2.0;      // > 1
  double backoff_factor_ = 0.5;     // in (0, 1)
  int64_t growth_interval_ = 2000;  // consecutive clean steps before growing; >= 1
  bool enabled_ = true;             // false: scale() returns the loss, step() just steps
  // Beyond PyTorch, unset (neutral) by default. Backoff never takes the scale below min_scale
  // (a scale halving toward 0 means the model itself produces Inf/NaN); growth never takes it
  // above max_scale (Apex caps it at 2^24).
  std::optional<double> min_scale_;
  std::optional<double> max_scale_;
};

// What step() did.
struct StepResult {
  bool applied = false;  // optimizer.step() ran
  // When skipped: the first parameter (optimizer order) whose gradient holds an Inf/NaN, by the
  // name given to set_parameter_names, else "group <g> parameter <i>" (index within the group).
  std::string first_nonfinite;
};

// The scaler's state: PyTorch's five entries, plus Mantissa's bounds and skip counters.
// to_json() writes PyTorch's key names ("scale", "growth_factor", "backoff_factor",
// "growth_interval", "_growth_tracker") and "min_scale"/"max_scale" (null when unset),
// "skipped_steps", "consecutive_skipped_steps"; a disabled scaler's state is "{}", as PyTorch's
// empty dict. from_json accepts PyTorch's five keys alone (the extras then take their defaults).
struct GradScalerState {
  bool enabled = true;
  double scale = 65536.0;  // an F32 value
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  int64_t growth_tracker = 0;
  std::optional<double> min_scale;
  std::optional<double> max_scale;
  int64_t skipped_steps = 0;
  int64_t consecutive_skipped_steps = 0;

  std::string to_json() const;
  // Throws mantissa::Error naming the bad or missing key.
  static GradScalerState from_json(const std::string& text);
};

// Where the state lives: the scale (an F32 value) and the growth tracker are host numbers, not
// device tensors as in PyTorch. Our optimizers cannot skip an update on the device, so step()
// must read the found-inf flag on the host anyway (the one synchronization of an iteration);
// with that value known, update() is host arithmetic. The flags themselves stay on the device
// from unscale_ until that read, so unscale_ + clip_grad_norm_ do not synchronize.
//
// One deliberate difference: growth triggers when the tracker reaches *at least*
// growth_interval (PyTorch tests ==, which never fires again once the interval is lowered
// below the tracker by set_growth_interval or load_state_dict).
class GradScaler {
 public:
  // Per optimizer, between two update() calls: READY -> (unscale_) UNSCALED -> (step) STEPPED.
  enum class Stage { Ready, Unscaled, Stepped };

  explicit GradScaler(const GradScalerOptions& options = GradScalerOptions());

  // loss * scale. The result is F32 (F16/BF16 losses are widened first, as PyTorch's F32 scale
  // tensor promotes them; F64 stays F64). Disabled: the loss itself.
  Tensor scale(const Tensor& loss) const;
  std::vector<Tensor> scale(const std::vector<Tensor>& outputs) const;

  // Multiplies every gradient of the optimizer's parameters by 1/scale (the reciprocal taken in
  // F64, then rounded to F32) in one fused pass per device that also records whether any value
  // was Inf/NaN (kept on the device for CUDA gradients). Throws if called twice before update()
  // or after step(), and for F16/BF16 gradients (use an FP32 master-weight policy). An optimizer
  // whose unscale_grads_ hook takes over (optim::MasterWeights: 16-bit gradients widened and
  // unscaled into F32 master gradients in one pass) is handed the same F32 inv_scale and one
  // device flag per device instead. No-op when disabled.
  void unscale_(optim::Optimizer& optimizer);

  // unscale_ if not done yet, then one host read of the found-inf flag(s); optimizer.step()
  // runs only when every gradient was finite. Throws if called twice before update() or when no
  // parameter of the optimizer has a gradient. Disabled: optimizer.step(), applied.
  StepResult step(optim::Optimizer& optimizer);

  // End of the iteration. With new_scale: the scale becomes float(new_scale) (finite, > 0; not
  // clamped to min/max) and the growth tracker is kept. Otherwise, from the flags of every
  // optimizer unscaled since the last update: any Inf/NaN -> scale *= backoff_factor (computed in
  // F64, rounded to F32; not below min_scale), tracker = 0; else tracker += 1 and at
  // growth_interval scale *= growth_factor when the result is finite (capped at max_scale),
  // tracker = 0. Throws when no optimizer was unscaled. Resets every optimizer's stage.
  void update(std::optional<double> new_scale = std::nullopt);

  // The current scale (an F32 value); 1.0 when disabled.
  double get_scale() const;
  int64_t get_growth_tracker() const { return enabled_ ? growth_tracker_ : 0; }
  bool is_enabled() const { return enabled_; }
  double get_growth_factor() const { return growth_factor_; }
  void set_growth_factor(double v);
  double get_backoff_factor() const { return backoff_factor_; }
  void set_backoff_factor(double v);
  int64_t get_growth_interval() const { return growth_interval_; }
  void set_growth_interval(int64_t v);
  std::optional<double> min_scale() const { return min_scale_; }
  std::optional<double> max_scale() const { return max_scale_; }

  // Metrics: optimizer steps skipped since construction (or as loaded), and skipped in a row
  // since the last applied one.
  int64_t skipped_steps() const { return skipped_steps_; }
  int64_t consecutive_skipped_steps() const { return consecutive_skipped_; }
  // Whether the last step() skipped the update.
  bool last_step_skipped() const { return last_skipped_; }

  Stage stage(const optim::Optimizer& optimizer) const;

  // Names for StepResult::first_nonfinite, usually model->named_parameters().
  void set_parameter_names(const std::vector<std::pair<std::string, Tensor>>& named_parameters);

  // Call after update() to checkpoint a step boundary.
  GradScalerState state_dict() const;
  // Validates first (a failing load changes nothing). A disabled scaler ignores the call; an
  // enabled one refuses a disabled scaler's (empty) state, as PyTorch does.
  void load_state_dict(const GradScalerState& state);

 private:
  struct PerOptimizer {
    Stage stage = Stage::Ready;
    bool recorded = false;         // unscale_ saw at least one gradient
    bool cpu_found_inf = false;    // CPU gradients' result (known on the host at once)
    std::vector<Tensor> device_flags;  // one per CUDA device, read at most once
    std::optional<bool> found_inf;     // the combined value once read
  };
  PerOptimizer& state_of(const optim::Optimizer& optimizer);
  bool read_found_inf(PerOptimizer& st);
  std::string first_nonfinite(const optim::Optimizer& optimizer) const;

  bool enabled_;
  float scale_;
  double growth_factor_;
  double backoff_factor_;
  int64_t growth_interval_;
  int64_t growth_tracker_ = 0;
  std::optional<double> min_scale_, max_scale_;
  int64_t skipped_steps_ = 0;
  int64_t consecutive_skipped_ = 0;
  bool last_skipped_ = false;
  std::unordered_map<const optim::Optimizer*, PerOptimizer> per_optimizer_;
  std::unordered_map<const TensorImpl*, std::string> names_;
};

const char* stage_name(GradScaler::Stage stage);  // "READY", "UNSCALED", "STEPPED"

}  // namespace mantissa::amp
