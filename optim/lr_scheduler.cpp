// LR schedulers: every formula is PyTorch 1.13's, evaluated in the same order in double, so the
// learning rates agree to the last bit or two (the recursive cosine form included).
#include "optim/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mantissa::optim {

using nlohmann::json;

namespace {
constexpr double kPi = std::numbers::pi;

// Python's a % b for b > 0 (never negative).
int64_t py_mod(int64_t a, int64_t b) { return ((a % b) + b) % b; }

json parse_scheduler_json(const std::string& text, const char* who) {
  try {
    json j = json::parse(text);
    MANTISSA_CHECK(j.is_object(), who, ".load_state_dict: the state must be a JSON object");
    return j;
  } catch (const json::exception& e) {
    MANTISSA_ERROR(who, ".load_state_dict: the state is not valid JSON (", e.what(), ")");
  }
}

std::vector<double> read_doubles(const json& j, const char* key, size_t n, const char* who) {
  const auto it = j.find(key);
  MANTISSA_CHECK(it != j.end() && it->is_array() && it->size() == n, who, ".load_state_dict: \"", key,
                 "\" must be a list of ", n, " numbers (one per parameter group)");
  std::vector<double> out;
  for (const json& v : *it) {
    MANTISSA_CHECK(v.is_number(), who, ".load_state_dict: \"", key, "\" holds ", v.dump(), ", not a number");
    out.push_back(v.get<double>());
  }
  return out;
}

int64_t read_int(const json& j, const char* key, const char* who) {
  const auto it = j.find(key);
  MANTISSA_CHECK(it != j.end() && it->is_number_integer(), who, ".load_state_dict: \"", key,
                 "\" must be an integer");
  return it->get<int64_t>();
}
}  // namespace

// Base ----------------------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer) : optimizer_(optimizer) {
  for (ParamGroup& g : optimizer_.param_groups()) {
    if (!g.initial_lr) g.initial_lr = g.options().get_lr();
    base_lrs_.push_back(*g.initial_lr);
  }
  last_lr_.resize(base_lrs_.size());
}

void LRScheduler::initial_step() {
  step_count_ = 0;
  step();
}

void LRScheduler::step() {
  check_next_epoch(last_epoch_ + 1);
  ++step_count_;
  ++last_epoch_;
  set_lrs(false);
}

void LRScheduler::step_to(int64_t epoch) {
  check_next_epoch(epoch);
  ++step_count_;
  last_epoch_ = epoch;
  set_lrs(true);
}

void LRScheduler::set_lrs(bool closed_form) {
  std::vector<ParamGroup>& groups = optimizer_.param_groups();
  MANTISSA_CHECK(groups.size() == base_lrs_.size(), name(), ": the optimizer has ", groups.size(),
                 " parameter groups, but the scheduler was built for ", base_lrs_.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const double current = groups[g].options().get_lr();
    const double lr = closed_form ? closed_form_lr(g, current) : get_lr(g, current);
    groups[g].options().set_lr(lr);
    last_lr_[g] = lr;
  }
}

std::string LRScheduler::state_dict() const {
  json j{{"type", name()},         {"last_epoch", last_epoch_}, {"step_count", step_count_},
         {"base_lrs", base_lrs_}, {"last_lr", last_lr_}};
  return j.dump();
}

namespace {
struct SchedulerState {
  int64_t last_epoch, step_count;
  std::vector<double> base_lrs, last_lr;
};

// Reads and validates the state of a scheduler called `who` over `groups` parameter groups.
SchedulerState read_scheduler_state(const json& j, const char* who, size_t groups) {
  const auto type = j.find("type");
  MANTISSA_CHECK(type != j.end() && type->is_string() && type->get<std::string>() == who, who,
                 ".load_state_dict: the state is for ", type != j.end() ? type->dump() : "an unknown scheduler",
                 ", not ", who);
  SchedulerState st{read_int(j, "last_epoch", who), read_int(j, "step_count", who),
                    read_doubles(j, "base_lrs", groups, who), read_doubles(j, "last_lr", groups, who)};
  MANTISSA_CHECK(st.last_epoch >= -1 && st.step_count >= 0, who, ".load_state_dict: invalid last_epoch ",
                 st.last_epoch, " or step_count ", st.step_count);
  return st;
}
}  // namespace

void LRScheduler::load_state_dict(const std::string& json_text) {
  SchedulerState st = read_scheduler_state(parse_scheduler_json(json_text, name()), name(), base_lrs_.size());
  last_epoch_ = st.last_epoch;
  step_count_ = st.step_count;
  base_lrs_ = std::move(st.base_lrs);
  last_lr_ = std::move(st.last_lr);
}

// StepLR ----------------------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  MANTISSA_CHECK(step_size >= 1, "StepLR: step_size must be >= 1, got ", step_size);
  initial_step();
}

double StepLR::get_lr(size_t, double current) {
  if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return current;
  return current * gamma_;
}

double StepLR::closed_form_lr(size_t g, double) {
  return base_lrs_[g] * std::pow(gamma_, static_cast<double>(last_epoch_ / step_size_));
}

// MultiStepLR -----------------------------------------------------------------------------------

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  initial_step();
}

double MultiStepLR::get_lr(size_t, double current) {
  const auto [lo, hi] = std::equal_range(milestones_.begin(), milestones_.end(), last_epoch_);
  if (lo == hi) return current;
  return current * std::pow(gamma_, static_cast<double>(hi - lo));
}

double MultiStepLR::closed_form_lr(size_t g, double) {
  const auto passed = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin();
  return base_lrs_[g] * std::pow(gamma_, static_cast<double>(passed));
}

// CosineAnnealingLR -----------------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  MANTISSA_CHECK(T_max >= 1, "CosineAnnealingLR: T_max must be >= 1, got ", T_max);
  initial_step();
}

double CosineAnnealingLR::get_lr(size_t g, double current) {
  const double e = static_cast<double>(last_epoch_), t = static_cast<double>(t_max_);
  const double base = base_lrs_[g];
  if (last_epoch_ == 0) return current;
  if (step_count_ == 1 && last_epoch_ > 0) return eta_min_ + (base - eta_min_) * (1 + std::cos(e * kPi / t)) / 2;
  if (py_mod(last_epoch_ - 1 - t_max_, 2 * t_max_) == 0)
    return current + (base - eta_min_) * (1 - std::cos(kPi / t)) / 2;
  return (1 + std::cos(kPi * e / t)) / (1 + std::cos(kPi * (e - 1) / t)) * (current - eta_min_) + eta_min_;
}

double CosineAnnealingLR::closed_form_lr(size_t g, double) {
  const double e = static_cast<double>(last_epoch_), t = static_cast<double>(t_max_);
  return eta_min_ + (base_lrs_[g] - eta_min_) * (1 + std::cos(kPi * e / t)) / 2;
}

// LinearLR --------------------------------------------------------------------------------------

LinearLR::LinearLR(Optimizer& optimizer, double start_factor, double end_factor, int64_t total_iters)
    : LRScheduler(optimizer), start_factor_(start_factor), end_factor_(end_factor), total_iters_(total_iters) {
  MANTISSA_CHECK(start_factor > 0.0 && start_factor <= 1.0, "LinearLR: start_factor must be in (0, 1], got ",
                 start_factor);
  MANTISSA_CHECK(end_factor >= 0.0 && end_factor <= 1.0, "LinearLR: end_factor must be in [0, 1], got ", end_factor);
  MANTISSA_CHECK(total_iters >= 1, "LinearLR: total_iters must be >= 1, got ", total_iters);
  initial_step();
}

double LinearLR::get_lr(size_t, double current) {
  if (last_epoch_ == 0) return current * start_factor_;
  if (last_epoch_ > total_iters_) return current;
  const double d = end_factor_ - start_factor_;
  return current * (1.0 + d / (static_cast<double>(total_iters_) * start_factor_ +
                               static_cast<double>(last_epoch_ - 1) * d));
}

double LinearLR::closed_form_lr(size_t g, double) {
  return base_lrs_[g] * (start_factor_ + (end_factor_ - start_factor_) *
                                             static_cast<double>(std::min(total_iters_, last_epoch_)) /
                                             static_cast<double>(total_iters_));
}

// OneCycleLR ------------------------------------------------------------------------------------

namespace {
enum { kInitialLr = 0, kMaxLr = 1, kMinLr = 2 };
enum { kMaxMomentum = 0, kBaseMomentum = 1 };
}  // namespace

OneCycleLR::OneCycleLR(Optimizer& optimizer, const OneCycleLROptions& o)
    : LRScheduler(optimizer),
      cos_(o.anneal_strategy_ == AnnealStrategy::Cos),
      cycle_momentum_(o.cycle_momentum_) {
  if (o.total_steps_ != 0) {
    MANTISSA_CHECK(o.total_steps_ > 0, "OneCycleLR: expected a positive total_steps, got ", o.total_steps_);
    total_steps_ = o.total_steps_;
  } else {
    MANTISSA_CHECK(o.epochs_ != 0 || o.steps_per_epoch_ != 0,
                   "OneCycleLR: define either total_steps or (epochs and steps_per_epoch)");
    MANTISSA_CHECK(o.epochs_ > 0, "OneCycleLR: expected a positive epochs, got ", o.epochs_);
    MANTISSA_CHECK(o.steps_per_epoch_ > 0, "OneCycleLR: expected a positive steps_per_epoch, got ",
                   o.steps_per_epoch_);
    total_steps_ = o.epochs_ * o.steps_per_epoch_;
  }
  MANTISSA_CHECK(o.pct_start_ >= 0.0 && o.pct_start_ <= 1.0, "OneCycleLR: pct_start must be in [0, 1], got ",
                 o.pct_start_);
  const double total = static_cast<double>(total_steps_);
  if (o.three_phase_) {
    phases_ = {{o.pct_start_ * total - 1, kInitialLr, kMaxLr, kMaxMomentum, kBaseMomentum},
               {2 * o.pct_start_ * total - 2, kMaxLr, kInitialLr, kBaseMomentum, kMaxMomentum},
               {total - 1, kInitialLr, kMinLr, kMaxMomentum, kMaxMomentum}};
  } else {
    phases_ = {{o.pct_start_ * total - 1, kInitialLr, kMaxLr, kMaxMomentum, kBaseMomentum},
               {total - 1, kMaxLr, kMinLr, kBaseMomentum, kMaxMomentum}};
  }

  std::vector<ParamGroup>& groups = optimizer_.param_groups();
  MANTISSA_CHECK(o.max_lr_.size() == 1 || o.max_lr_.size() == groups.size(), "OneCycleLR: expected ",
                 groups.size(), " values for max_lr (one per parameter group) or one, got ", o.max_lr_.size());
  if (cycle_momentum_) {
    MANTISSA_CHECK(optimizer_.defaults().has_momentum(), "OneCycleLR: the optimizer (", optimizer_.name(),
                   ") must support momentum with cycle_momentum enabled");
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const double max_lr = o.max_lr_.size() == 1 ? o.max_lr_[0] : o.max_lr_[g];
    Anchors a{};
    a.lr[kInitialLr] = max_lr / o.div_factor_;
    a.lr[kMaxLr] = max_lr;
    a.lr[kMinLr] = a.lr[kInitialLr] / o.final_div_factor_;
    a.momentum[kMaxMomentum] = o.max_momentum_;
    a.momentum[kBaseMomentum] = o.base_momentum_;
    anchors_.push_back(a);
    // The schedule defines initial_lr (PyTorch overwrites the group's), hence base_lrs too.
    groups[g].initial_lr = a.lr[kInitialLr];
    base_lrs_[g] = a.lr[kInitialLr];
    if (cycle_momentum_) groups[g].options().set_momentum(o.max_momentum_);
  }
  initial_step();
}

double OneCycleLR::anneal(double start, double end, double pct) const {
  if (cos_) {
    const double cos_out = std::cos(kPi * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

void OneCycleLR::check_next_epoch(int64_t epoch) const {
  MANTISSA_CHECK(epoch <= total_steps_, "OneCycleLR: tried to step ", epoch + 1,
                 " times; the specified number of total steps is ", total_steps_);
}

double OneCycleLR::get_lr(size_t g, double) {
  const double step_num = static_cast<double>(last_epoch_);
  const Anchors& a = anchors_[g];
  double start_step = 0.0;
  for (size_t i = 0; i < phases_.size(); ++i) {
    const Phase& ph = phases_[i];
    if (step_num <= ph.end_step || i + 1 == phases_.size()) {
      const double span = ph.end_step - start_step;
      const double pct = span != 0.0 ? (step_num - start_step) / span : 1.0;
      if (cycle_momentum_) {
        optimizer_.param_groups()[g].options().set_momentum(
            anneal(a.momentum[ph.start_momentum], a.momentum[ph.end_momentum], pct));
      }
      return anneal(a.lr[ph.start_lr], a.lr[ph.end_lr], pct);
    }
    start_step = ph.end_step;
  }
  MANTISSA_ASSERT(false, "OneCycleLR: no phase");
  return 0.0;
}

// SequentialLR ----------------------------------------------------------------------------------

SequentialLR::SequentialLR(Optimizer& optimizer, std::vector<std::shared_ptr<LRScheduler>> schedulers,
                           std::vector<int64_t> milestones)
    : LRScheduler(optimizer), schedulers_(std::move(schedulers)), milestones_(std::move(milestones)) {
  MANTISSA_CHECK(!schedulers_.empty(), "SequentialLR: expects at least one scheduler");
  for (size_t i = 0; i < schedulers_.size(); ++i) {
    MANTISSA_CHECK(schedulers_[i] != nullptr, "SequentialLR: scheduler ", i, " is null");
    MANTISSA_CHECK(&schedulers_[i]->optimizer() == &optimizer, "SequentialLR: scheduler ", i, " (",
                   schedulers_[i]->name(), ") belongs to another optimizer");
  }
  MANTISSA_CHECK(milestones_.size() + 1 == schedulers_.size(), "SequentialLR: expects one milestone fewer than "
                 "schedulers, got ", schedulers_.size(), " schedulers and ", milestones_.size(), " milestones");
  MANTISSA_CHECK(std::is_sorted(milestones_.begin(), milestones_.end()), "SequentialLR: milestones must be "
                 "increasing");
  last_epoch_ = 0;
  // Back to the initial lrs, undo the schedulers' construction steps, restart the first one.
  for (ParamGroup& g : optimizer_.param_groups()) g.options().set_lr(*g.initial_lr);
  for (auto& s : schedulers_) --s->last_epoch_;
  schedulers_[0]->initial_step();
  last_lr_ = schedulers_[0]->get_last_lr();
}

void SequentialLR::step() {
  ++last_epoch_;
  ++step_count_;
  const size_t idx = std::upper_bound(milestones_.begin(), milestones_.end(), last_epoch_) - milestones_.begin();
  LRScheduler& s = *schedulers_[idx];
  if (idx > 0 && milestones_[idx - 1] == last_epoch_) s.step_to(0);
  else s.step();
  last_lr_ = s.get_last_lr();
}

std::string SequentialLR::state_dict() const {
  json j = json::parse(LRScheduler::state_dict());
  json subs = json::array();
  for (const auto& s : schedulers_) subs.push_back(json::parse(s->state_dict()));
  j["schedulers"] = std::move(subs);
  return j.dump();
}

void SequentialLR::load_state_dict(const std::string& json_text) {
  const json j = parse_scheduler_json(json_text, name());
  const auto subs = j.find("schedulers");
  MANTISSA_CHECK(subs != j.end() && subs->is_array() && subs->size() == schedulers_.size(), name(),
                 ".load_state_dict: \"schedulers\" must list the states of ", schedulers_.size(), " schedulers");
  // Validate every level before changing any.
  read_scheduler_state(j, name(), base_lrs_.size());
  for (size_t i = 0; i < schedulers_.size(); ++i)
    read_scheduler_state((*subs)[i], schedulers_[i]->name(), schedulers_[i]->base_lrs().size());
  LRScheduler::load_state_dict(json_text);
  for (size_t i = 0; i < schedulers_.size(); ++i) schedulers_[i]->load_state_dict((*subs)[i].dump());
}

}  // namespace mantissa::optim
