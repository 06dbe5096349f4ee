// FakeQuantize: observe (when enabled), refresh scale/zero point buffers, then fake quantize
// in F32 through the differentiable op (autocast never lowers it: ops.def says F32).
#include "quant/fake_quantize.h"

#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::quant {

FakeQuantize::FakeQuantize(std::shared_ptr<Observer> observer) : observer_(std::move(observer)) {
  MANTISSA_CHECK(observer_ != nullptr, "FakeQuantize: needs an observer");
  register_module("activation_post_process", observer_);
  const Shape shape = observer_->spec().per_channel() ? Shape{1} : Shape{};
  scale_ = register_buffer("scale", ones(shape));
  zero_point_ = register_buffer("zero_point", zeros(shape, DType::I32));
}

Tensor FakeQuantize::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined() && x.is_floating_point(), "FakeQuantize: expected a floating tensor, got ",
                 x.defined() ? dtype_name(x.dtype()) : "undefined");
  if (observer_enabled_) {
    (*observer_)(x);
    stale_ = true;
  }
  if (!fake_quant_enabled_) return x;
  MANTISSA_CHECK(observer_->has_data(), "FakeQuantize: fake quantization is on but the observer (", observer_->name(),
                 ", ", observer_->spec().str(), ") has seen no data, so there are no qparams yet; keep the observer ",
                 "enabled for at least one batch first");
  if (stale_) refresh();
  const QSpec& spec = observer_->spec();
  Tensor s = scale_.device() == x.device() ? scale_ : scale_.to(x.device());
  Tensor z = zero_point_.device() == x.device() ? zero_point_ : zero_point_.to(x.device());
  if (spec.per_channel()) return fake_quantize_per_channel_affine(x, s, z, spec.axis, spec.qmin(), spec.qmax());
  return fake_quantize_per_tensor_affine(x, s, z, spec.qmin(), spec.qmax());
}

void FakeQuantize::refresh() const {
  QParams qp = observer_->calculate_qparams();
  NoGradGuard ng;
  const Device d = scale_.device();
  scale_.set_data(qp.scale.to(d));
  zero_point_.set_data(qp.zero_point.to(d));
  stale_ = false;
}

QParams FakeQuantize::qparams() const {
  if (stale_) refresh();
  return QParams{scale_, zero_point_, observer_->spec()};
}

std::string FakeQuantize::extra_repr() const {
  std::ostringstream os;
  os << "fake_quant_enabled=" << (fake_quant_enabled_ ? "true" : "false")
     << ", observer_enabled=" << (observer_enabled_ ? "true" : "false") << ", " << observer_->spec().str();
  return os.str();
}

}  // namespace mantissa::quant
