// LearnableFakeQuantize: the static/learning switch, scale floored at the observer eps while
// learning, zero point pinned to 0 for symmetric schemes, and the LSQ gradient scale.
#include "quant/learnable_fake_quantize.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::quant {

LearnableFakeQuantize::LearnableFakeQuantize(std::shared_ptr<Observer> observer, bool use_grad_scaling,
                                             double init_scale, double init_zero_point)
    : observer_(std::move(observer)), use_grad_scaling_(use_grad_scaling) {
  MANTISSA_CHECK(observer_ != nullptr, "LearnableFakeQuantize: needs an observer");
  MANTISSA_CHECK(std::isfinite(init_scale) && init_scale > 0, "LearnableFakeQuantize: init_scale must be positive, got ",
                 init_scale);
  register_module("activation_post_process", observer_);
  scale_ = register_parameter("scale", full({1}, init_scale));
  zero_point_ = register_parameter("zero_point", full({1}, init_zero_point));
}

void LearnableFakeQuantize::enable_static_estimate() {
  static_enabled_ = true;
  learning_enabled_ = false;
  fake_quant_enabled_ = true;
}

void LearnableFakeQuantize::enable_param_learning() {
  static_enabled_ = false;
  learning_enabled_ = true;
  fake_quant_enabled_ = true;
}

void LearnableFakeQuantize::enable_observer(bool on) {
  const bool fq = fake_quant_enabled_;
  if (on) enable_static_estimate();
  else enable_param_learning();
  fake_quant_enabled_ = fq;  // the fake-quant switch is the schedule's other knob
}

QParams LearnableFakeQuantize::qparams() const {
  NoGradGuard ng;
  const QSpec& spec = observer_->spec();
  Tensor s = clamp(scale_.detach(), static_cast<double>(kScaleEps), std::nullopt).to(DType::F32).to(Device());
  Tensor zf = zero_point_.detach().to(Device()).to(DType::F32).contiguous();
  Tensor z = empty(zf.sizes(), TensorOptions(DType::I32));
  for (int64_t i = 0; i < zf.numel(); ++i) {
    // The learnable op rounds its F32 zero point half to even and clamps it (quant_round.h).
    const float r = spec.scheme == QScheme::Symmetric ? 0.0f : std::nearbyint(zf.data<float>()[i]);
    z.data<int32_t>()[i] = static_cast<int32_t>(
        std::clamp(r, static_cast<float>(spec.qmin()), static_cast<float>(spec.qmax())));
  }
  if (!spec.per_channel()) {
    s = s.reshape({});
    z = z.reshape({});
  }
  return QParams{s, z, spec};
}

Tensor LearnableFakeQuantize::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined() && x.is_floating_point(), "LearnableFakeQuantize: expected a floating tensor, got ",
                 x.defined() ? dtype_name(x.dtype()) : "undefined");
  const QSpec& spec = observer_->spec();
  {
    NoGradGuard ng;
    if (static_enabled_) {
      (*observer_)(x);
      QParams qp = observer_->calculate_qparams();
      scale_.set_data(qp.scale.reshape({qp.scale.numel()}).to(x.device()));
      zero_point_.set_data(qp.zero_point.reshape({qp.zero_point.numel()}).to(DType::F32).to(x.device()));
    } else {
      // A learned scale must stay positive: floored at the observer eps, as PyTorch.
      scale_.set_data(clamp(scale_, static_cast<double>(kScaleEps), std::nullopt));
    }
  }
  if (!fake_quant_enabled_) return x;
  if (spec.scheme == QScheme::Symmetric) {
    NoGradGuard ng;
    zero_point_.set_data(zeros_like(zero_point_));
  }
  const double grad_factor =
      use_grad_scaling_ ? 1.0 / std::sqrt(static_cast<double>(x.numel()) * static_cast<double>(spec.qmax())) : 1.0;
  if (spec.per_channel())
    return fake_quantize_learnable_per_channel_affine(x, scale_, zero_point_, spec.axis, spec.qmin(), spec.qmax(),
                                                      grad_factor);
  return fake_quantize_learnable_per_tensor_affine(x, scale_, zero_point_, spec.qmin(), spec.qmax(), grad_factor);
}

std::string LearnableFakeQuantize::extra_repr() const {
  std::ostringstream os;
  os << observer_->spec().str() << ", learning=" << (learning_enabled_ ? "true" : "false")
     << ", static=" << (static_enabled_ ? "true" : "false") << ", grad_scaling=" << (use_grad_scaling_ ? "true" : "false");
  return os.str();
}

}  // namespace mantissa::quant
