// Observer range bookkeeping. Updates run as our own tensor ops (one op per kernel pass), so
// no multiply-add is contracted and the running ranges equal PyTorch's step by step.
#include "quant/observer.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::quant {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}

Observer::Observer(QSpec spec) : spec_(spec) {
  MANTISSA_CHECK(spec.axis >= -1, "Observer: axis must be -1 (per tensor) or a dim >= 0, got ", spec.axis);
  // Per channel the channel count is unknown until the first batch: the buffers start empty.
  const Shape shape = spec.per_channel() ? Shape{0} : Shape{};
  min_val_ = register_buffer("min_val", full(shape, kInf));
  max_val_ = register_buffer("max_val", full(shape, -kInf));
}

void Observer::reset() {
  const Shape shape = spec_.per_channel() ? Shape{0} : Shape{};
  min_val_.set_data(full(shape, kInf, TensorOptions(DType::F32).device(min_val_.device())));
  max_val_.set_data(full(shape, -kInf, TensorOptions(DType::F32).device(max_val_.device())));
}

bool Observer::has_data() const {
  if (min_val_.numel() == 0) return false;
  NoGradGuard ng;
  return !(std::isinf(min(min_val_).item<float>()) && min(min_val_).item<float>() > 0);
}

std::pair<Tensor, Tensor> Observer::batch_range(const Tensor& x) const {
  Tensor xf = x.detach();
  if (xf.dtype() != DType::F32) xf = xf.to(DType::F32);
  if (!spec_.per_channel()) return {min(xf), max(xf)};
  MANTISSA_CHECK(spec_.axis < xf.dim(), name(), ": channel axis ", spec_.axis, " is out of range for input ",
                 shape_str(xf.sizes()));
  Shape perm(static_cast<size_t>(xf.dim()));
  for (int64_t i = 0; i < xf.dim(); ++i) perm[static_cast<size_t>(i)] = i;
  std::swap(perm[0], perm[static_cast<size_t>(spec_.axis)]);
  Tensor y = xf.permute(perm).contiguous();
  y = y.reshape({y.size(0), -1});
  return {std::get<0>(mantissa::min(y, 1)), std::get<0>(mantissa::max(y, 1))};
}

void Observer::set_range(const Tensor& lo, const Tensor& hi) {
  min_val_.set_data(lo);
  max_val_.set_data(hi);
}

Tensor Observer::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined() && x.is_floating_point(), name(), ": expected a floating tensor, got ",
                 x.defined() ? dtype_name(x.dtype()) : "undefined");
  if (x.numel() == 0) return x;
  NoGradGuard ng;
  auto [lo, hi] = batch_range(x);
  if (spec_.per_channel() && min_val_.numel() != 0) {
    MANTISSA_CHECK(min_val_.numel() == lo.numel(), name(), ": saw ", min_val_.numel(), " channels before, now ",
                   lo.numel(), " (input ", shape_str(x.sizes()), ", axis ", spec_.axis, ")");
  }
  update(lo, hi);
  return x;
}

QParams Observer::calculate_qparams() const {
  NoGradGuard ng;
  if (!has_data()) {
    const Shape shape = spec_.per_channel() ? Shape{std::max<int64_t>(min_val_.numel(), 1)} : Shape{};
    return QParams{ones(shape), zeros(shape, DType::I32), spec_};
  }
  return quant::calculate_qparams(min_val_, max_val_, spec_);
}

std::string Observer::extra_repr() const { return spec_.str(); }

MinMaxObserver::MinMaxObserver(QSpec spec) : Observer(spec) {}

void MinMaxObserver::update(const Tensor& lo, const Tensor& hi) {
  if (min_val_.numel() == 0 || !has_data()) {
    set_range(lo, hi);
    return;
  }
  set_range(minimum(lo, min_val_), maximum(hi, max_val_));
}

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(QSpec spec, double averaging_constant)
    : Observer(spec), averaging_constant_(averaging_constant) {
  MANTISSA_CHECK(averaging_constant > 0 && averaging_constant <= 1,
                 "MovingAverageMinMaxObserver: averaging_constant must be in (0, 1], got ", averaging_constant);
}

void MovingAverageMinMaxObserver::update(const Tensor& lo, const Tensor& hi) {
  if (min_val_.numel() == 0 || !has_data()) {
    set_range(lo, hi);
    return;
  }
  const double c = averaging_constant_;
  set_range(add(min_val_, mul(sub(lo, min_val_), c)), add(max_val_, mul(sub(hi, max_val_), c)));
}

std::string MovingAverageMinMaxObserver::extra_repr() const {
  std::ostringstream os;
  os << spec_.str() << ", averaging_constant=" << averaging_constant_;
  return os.str();
}

std::shared_ptr<MinMaxObserver> make_per_channel_min_max_observer(QSpec spec, int64_t axis) {
  spec.axis = axis;
  MANTISSA_CHECK(axis >= 0, "PerChannelMinMaxObserver: axis must be >= 0, got ", axis);
  return std::make_shared<MinMaxObserver>(spec);
}

std::shared_ptr<MovingAverageMinMaxObserver> make_moving_average_per_channel_observer(QSpec spec, int64_t axis,
                                                                                     double averaging_constant) {
  spec.axis = axis;
  MANTISSA_CHECK(axis >= 0, "MovingAveragePerChannelMinMaxObserver: axis must be >= 0, got ", axis);
  return std::make_shared<MovingAverageMinMaxObserver>(spec, averaging_constant);
}

}  // namespace mantissa::quant
