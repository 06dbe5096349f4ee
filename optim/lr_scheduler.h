// Learning-rate schedulers with PyTorch 1.13's exact semantics: constructing one performs the
// initial step (epoch 0) and step() advances one epoch, writing each group's lr (OneCycleLR also
// its momentum or beta1). StepLR, MultiStepLR, CosineAnnealingLR (the recursive form), LinearLR
// (warmup), OneCycleLR and SequentialLR (one schedule after another at milestones).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace mantissa::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  virtual const char* name() const = 0;  // "StepLR"
  // Advances last_epoch by one and writes the new learning rates into the optimizer's groups.
  // Call it after optimizer.step(), as in PyTorch.
  virtual void step();
  // The learning rates written by the latest step, one per group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  Optimizer& optimizer() const { return optimizer_; }

  // The progress of the schedule as JSON text (type, last_epoch, step count, base and last lrs;
  // SequentialLR includes its schedulers'), for checkpoints. load_state_dict validates the type
  // and group count. The schedule's configuration is not included: construct the scheduler
  // as before, then load the optimizer's state and this.
  virtual std::string state_dict() const;
  virtual void load_state_dict(const std::string& json_text);

 protected:
  // Records each group's initial_lr (the first scheduler attached sets it from the group's lr)
  // as base_lrs. Derived constructors finish by calling initial_step().
  explicit LRScheduler(Optimizer& optimizer);
  void initial_step();
  // The lr of group g at last_epoch() (already advanced) from its current lr. May write other
  // hyperparameters of the group (OneCycleLR's momentum).
  virtual double get_lr(size_t g, double current_lr) = 0;
  // PyTorch's _get_closed_form_lr, used when stepping to an explicit epoch (SequentialLR's
  // milestones); schedulers without one use get_lr.
  virtual double closed_form_lr(size_t g, double current_lr) { return get_lr(g, current_lr); }
  // Throws before last_epoch advances past what the schedule allows.
  virtual void check_next_epoch(int64_t) const {}
  // PyTorch's step(epoch): jumps to `epoch` and uses the closed form.
  void step_to(int64_t epoch);
  void set_lrs(bool closed_form);

  Optimizer& optimizer_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;

  friend class SequentialLR;
};

// lr *= gamma every step_size epochs.
class StepLR final : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  const char* name() const override { return "StepLR"; }

 protected:
  double get_lr(size_t g, double current_lr) override;
  double closed_form_lr(size_t g, double current_lr) override;

 private:
  int64_t step_size_;
  double gamma_;
};

// lr *= gamma at each milestone epoch (a milestone listed twice multiplies twice).
class MultiStepLR final : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  const char* name() const override { return "MultiStepLR"; }

 protected:
  double get_lr(size_t g, double current_lr) override;
  double closed_form_lr(size_t g, double current_lr) override;

 private:
  std::vector<int64_t> milestones_;  // sorted
  double gamma_;
};

// Cosine annealing from the base lr to eta_min over T_max epochs (and back up, periodically),
// with PyTorch's recursive update so that lr changes made by others are respected.
class CosineAnnealingLR final : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0.0);
  const char* name() const override { return "CosineAnnealingLR"; }

 protected:
  double get_lr(size_t g, double current_lr) override;
  double closed_form_lr(size_t g, double current_lr) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

// Multiplies the base lr by a factor going linearly from start_factor to end_factor over
// total_iters epochs: the usual linear warmup.
class LinearLR final : public LRScheduler {
 public:
  LinearLR(Optimizer& optimizer, double start_factor = 1.0 / 3.0, double end_factor = 1.0, int64_t total_iters = 5);
  const char* name() const override { return "LinearLR"; }

 protected:
  double get_lr(size_t g, double current_lr) override;
  double closed_form_lr(size_t g, double current_lr) override;

 private:
  double start_factor_, end_factor_;
  int64_t total_iters_;
};

enum class AnnealStrategy { Cos, Linear };

struct OneCycleLROptions {
  explicit OneCycleLROptions(double max_lr) : max_lr_({max_lr}) {}
  explicit OneCycleLROptions(std::vector<double> max_lr_per_group) : max_lr_(std::move(max_lr_per_group)) {}

  OneCycleLROptions& total_steps(int64_t v) { total_steps_ = v; return *this; }
  OneCycleLROptions& epochs(int64_t v) { epochs_ = v; return *this; }
  OneCycleLROptions& steps_per_epoch(int64_t v) { steps_per_epoch_ = v; return *this; }
  OneCycleLROptions& pct_start(double v) { pct_start_ = v; return *this; }
  OneCycleLROptions& anneal_strategy(AnnealStrategy v) { anneal_strategy_ = v; return *this; }
  OneCycleLROptions& cycle_momentum(bool v) { cycle_momentum_ = v; return *this; }
  OneCycleLROptions& base_momentum(double v) { base_momentum_ = v; return *this; }
  OneCycleLROptions& max_momentum(double v) { max_momentum_ = v; return *this; }
  OneCycleLROptions& div_factor(double v) { div_factor_ = v; return *this; }
  OneCycleLROptions& final_div_factor(double v) { final_div_factor_ = v; return *this; }
  OneCycleLROptions& three_phase(bool v) { three_phase_ = v; return *this; }

  std::vector<double> max_lr_;   // one value for every group, or one per group
  int64_t total_steps_ = 0;      // 0: epochs * steps_per_epoch
  int64_t epochs_ = 0;
  int64_t steps_per_epoch_ = 0;
  double pct_start_ = 0.3;
  AnnealStrategy anneal_strategy_ = AnnealStrategy::Cos;
  bool cycle_momentum_ = true;
  double base_momentum_ = 0.85;
  double max_momentum_ = 0.95;
  double div_factor_ = 25.0;
  double final_div_factor_ = 1e4;
  bool three_phase_ = false;
};

// The 1cycle policy: lr rises from max_lr/div_factor to max_lr over pct_start of total_steps,
// then anneals to initial_lr/final_div_factor (three_phase: back to initial_lr first); momentum
// (SGD's momentum or Adam's beta1) moves the opposite way between max and base momentum.
// Stepping more than total_steps times is an Error, as in PyTorch.
class OneCycleLR final : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& options);
  const char* name() const override { return "OneCycleLR"; }
  int64_t total_steps() const { return total_steps_; }

 protected:
  double get_lr(size_t g, double current_lr) override;
  void check_next_epoch(int64_t epoch) const override;

 private:
  struct Phase {
    double end_step;
    int start_lr, end_lr, start_momentum, end_momentum;  // indices into a group's anchors
  };
  struct Anchors {
    double lr[3];        // initial, max, min
    double momentum[2];  // max, base
  };
  double anneal(double start, double end, double pct) const;

  int64_t total_steps_;
  bool cos_;
  bool cycle_momentum_;
  std::vector<Phase> phases_;
  std::vector<Anchors> anchors_;  // per group
};

// Runs schedulers one after another: schedulers[i] from milestones[i-1] on, restarted at its
// milestone (PyTorch's SequentialLR, e.g. LinearLR warmup then CosineAnnealingLR). The
// schedulers must have been built on the same optimizer, in order, just before this.
class SequentialLR final : public LRScheduler {
 public:
  SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
               std::vector<int64_t> milestones);
  const char* name() const override { return "SequentialLR"; }
  void step() override;
  std::string state_dict() const override;
  void load_state_dict(const std::string& json_text) override;

 protected:
  double get_lr(size_t, double current_lr) override { return current_lr; }

 private:
  std::vector<std::shared_ptr<LRScheduler>> schedulers_;
  std::vector<int64_t> milestones_;
};

}  // namespace mantissa::optim
