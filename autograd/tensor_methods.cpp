// Tensor's methods that are autograd state or op calls: defined here, above the op API,
// so core/tensor.h stays free of autograd.
#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/quantized.h"

namespace mantissa {

using autograd::meta;
using autograd::meta_or_null;

bool Tensor::requires_grad() const {
  auto* m = meta_or_null(*this);
  return m != nullptr && m->requires_grad;
}

Tensor& Tensor::requires_grad_(bool on) {
  auto* m = meta_or_null(*this);
  MANTISSA_CHECK(!(m && m->grad_fn) || on, "requires_grad_: only leaf tensors can stop requiring grad; "
                 "use detach() for a non-leaf tensor");
  // Quantized tensors never enter the autograd graph: the engine and every backward formula
  // would read their codes as plain integers.
  MANTISSA_CHECK(!on || !is_quantized(), "requires_grad_: a quantized tensor (", quantized_dtype_name(dtype()),
                 ", scale ", q_scale(), ", zero point ", q_zero_point(), ", shape ", shape_str(sizes()),
                 ") cannot require gradients; train in float (or with fake quantization) and quantize afterwards");
  MANTISSA_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require "
                 "gradients (dtype ", dtype(), ")");
  meta(*this).requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  auto* m = meta_or_null(*this);
  return m ? m->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined()) {
    MANTISSA_CHECK(g.sizes() == sizes() && g.dtype() == dtype() && g.device() == device(), "set_grad: gradient ",
                   shape_str(g.sizes()), " ", g.dtype(), " on ", g.device(), " does not match the tensor ",
                   shape_str(sizes()), " ", dtype(), " on ", device());
  }
  meta(*this).grad = g;
}

Tensor& Tensor::mutable_grad() const { return meta(*this).grad; }

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> kNone;
  auto* m = meta_or_null(*this);
  return m ? m->grad_fn : kNone;
}

std::string Tensor::grad_fn_name() const {
  const auto& fn = grad_fn();
  return fn ? fn->name() : std::string();
}

uint32_t Tensor::output_nr() const {
  auto* m = meta_or_null(*this);
  return m ? m->output_nr : 0;
}

bool Tensor::is_leaf() const { return grad_fn() == nullptr; }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward({*this}, gradient.defined() ? std::vector<Tensor>{gradient} : std::vector<Tensor>{},
                     retain_graph);
}

void Tensor::register_hook(std::function<Tensor(const Tensor&)> hook) const {
  MANTISSA_CHECK(requires_grad(), "register_hook: cannot register a hook on a tensor that does not require grad");
  auto& m = meta(*this);
  if (m.grad_fn) {
    m.grad_fn->pre_hooks[m.output_nr].push_back(std::move(hook));
  } else {
    m.leaf_hooks.push_back(std::move(hook));
  }
}

void Tensor::retain_grad() const {
  MANTISSA_CHECK(requires_grad(), "retain_grad: the tensor does not require grad");
  auto& m = meta(*this);
  if (!m.grad_fn || m.retains_grad) return;
  m.retains_grad = true;
  std::weak_ptr<TensorImpl> weak = impl_ptr();
  m.grad_fn->pre_hooks[m.output_nr].push_back([weak](const Tensor& g) -> Tensor {
    if (auto impl = weak.lock()) {
      Tensor self(impl);
      auto& mm = meta(self);
      if (!mm.grad.defined()) {
        mm.grad = g.clone();
      } else {
        mm.grad = add(mm.grad, g);
      }
    }
    return Tensor();
  });
}

void Tensor::set_data(const Tensor& src) const {
  MANTISSA_CHECK(defined() && src.defined(), "set_data: both tensors must be defined");
  MANTISSA_CHECK(!requires_grad() || is_floating(src.dtype()), "set_data: a tensor that requires grad cannot take ",
                 src.dtype(), " data");
  TensorImpl& t = *impl();
  const TensorImpl& s = *src.impl();
  t.storage = s.storage;
  t.sizes = s.sizes;
  t.strides = s.strides;
  t.offset = s.offset;
  t.dtype = s.dtype;
  t.quant = s.quant;
  // Keep the grad only while it still matches the new data.
  auto* m = meta_or_null(*this);
  if (m && m->grad.defined() &&
      (m->grad.sizes() != t.sizes || m->grad.dtype() != t.dtype || m->grad.device() != device())) {
    m->grad = Tensor();
  }
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = storage();
  impl->sizes = sizes();
  impl->strides = strides();
  impl->offset = storage_offset();
  impl->dtype = dtype();
  impl->quant = impl_->quant;
  return Tensor(std::move(impl));
}

Tensor& Tensor::detach_() {
  auto* m = meta_or_null(*this);
  if (m) {
    m->grad_fn.reset();
    m->requires_grad = false;
    m->output_nr = 0;
  }
  return *this;
}

// Views and conversions -----------------------------------------------------------------------
Tensor Tensor::view(const Shape& s) const { return mantissa::view(*this, s); }
Tensor Tensor::reshape(const Shape& s) const { return mantissa::reshape(*this, s); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return mantissa::transpose(*this, a, b); }
Tensor Tensor::t() const {
  MANTISSA_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dimensions, got shape ", shape_str(sizes()));
  return dim() < 2 ? *this : mantissa::transpose(*this, 0, 1);
}
Tensor Tensor::permute(const Shape& d) const { return mantissa::permute(*this, d); }
Tensor Tensor::narrow(int64_t d, int64_t s, int64_t l) const { return mantissa::narrow(*this, d, s, l); }
Tensor Tensor::slice(int64_t d, int64_t s, int64_t e, int64_t st) const { return mantissa::slice(*this, d, s, e, st); }
Tensor Tensor::select(int64_t d, int64_t i) const { return mantissa::select(*this, d, i); }
Tensor Tensor::expand(const Shape& s) const { return mantissa::expand(*this, s); }
Tensor Tensor::squeeze() const { return mantissa::squeeze(*this); }
Tensor Tensor::squeeze(int64_t d) const { return mantissa::squeeze(*this, d); }
Tensor Tensor::unsqueeze(int64_t d) const { return mantissa::unsqueeze(*this, d); }
Tensor Tensor::flatten(int64_t s, int64_t e) const { return mantissa::flatten(*this, s, e); }
Tensor Tensor::contiguous() const { return mantissa::contiguous(*this); }
Tensor Tensor::clone() const { return mantissa::clone(*this); }
Tensor Tensor::to(DType d) const { return to_dtype(*this, d); }
Tensor Tensor::to(Device d) const { return to_device(*this, d); }
Tensor Tensor::to(Device d, DType t) const { return to_dtype(to_device(*this, d), t); }

// In-place ------------------------------------------------------------------------------------
void autograd::check_inplace(const Tensor& self, const char* op) {
  if (!GradMode::is_enabled() || !self.requires_grad()) return;
  if (self.is_leaf()) {
    MANTISSA_ERROR(op, ": a leaf tensor that requires grad (shape ", shape_str(self.sizes()),
                   ") is used in an in-place operation; do it under NoGradGuard (as optimizers do)");
  }
  MANTISSA_ERROR(op, ": in-place operations on a tensor that is part of the autograd graph (", self.grad_fn_name(),
                 ", shape ", shape_str(self.sizes()), ") are not supported; use the out-of-place form");
}

namespace {
// Writes an out-of-place result back into self: the result must keep self's shape.
Tensor& assign_result(Tensor& self, const Tensor& r, const char* op) {
  MANTISSA_CHECK(r.sizes() == self.sizes(), op, ": the result shape ", shape_str(r.sizes()),
                 " does not match the in-place destination ", shape_str(self.sizes()));
  kernels::copy(self, r);
  self.bump_version();
  return self;
}
}  // namespace

namespace {
// Writing codes is only meaningful between tensors that read them the same way: both plain, or
// both quantized with the same dtype, scale and zero point.
void check_quantized_write(const Tensor& dst, const Tensor* src, const char* op) {
  if (!dst.is_quantized() && !(src && src->is_quantized())) return;
  if (src && dst.is_quantized() && src->is_quantized() && dst.dtype() == src->dtype() &&
      dst.q_scale() == src->q_scale() && dst.q_zero_point() == src->q_zero_point()) {
    return;
  }
  const Tensor& q = dst.is_quantized() ? dst : *src;
  MANTISSA_ERROR(op, ": got a quantized tensor (", quantized_dtype_name(q.dtype()), ", scale ", q.q_scale(),
                 ", zero point ", q.q_zero_point(), ", shape ", shape_str(q.sizes()), ") as the ",
                 dst.is_quantized() ? "destination" : "source", "; quantized tensors are written only by copying from "
                 "one with the same dtype, scale and zero point: call quant::dequantize / quant::quantize_per_tensor");
}
}  // namespace

Tensor& Tensor::copy_(const Tensor& src) {
  autograd::check_inplace(*this, "copy_");
  check_quantized_write(*this, &src, "copy_");
  MANTISSA_CHECK(src.dim() <= dim() && broadcast_shapes(src.sizes(), sizes(), "copy_") == sizes(), "copy_: source ",
                 shape_str(src.sizes()), " cannot be broadcast to destination ", shape_str(sizes()));
  kernels::copy(*this, src);
  bump_version();
  return *this;
}

Tensor& Tensor::fill_(double value) {
  autograd::check_inplace(*this, "fill_");
  check_quantized_write(*this, nullptr, "fill_");
  kernels::fill(*this, value);
  bump_version();
  return *this;
}

Tensor& Tensor::zero_() { return fill_(0.0); }

#define MANTISSA_INPLACE(NAME, EXPR)                        \
  autograd::check_inplace(*this, #NAME);                    \
  Tensor r;                                                 \
  {                                                         \
    NoGradGuard no_grad;                                    \
    r = (EXPR);                                             \
  }                                                         \
  return assign_result(*this, r, #NAME)

Tensor& Tensor::add_(const Tensor& o, double alpha) { MANTISSA_INPLACE(add_, mantissa::add(*this, o, alpha)); }
Tensor& Tensor::add_(double v) { MANTISSA_INPLACE(add_, mantissa::add(*this, v)); }
Tensor& Tensor::sub_(const Tensor& o, double alpha) { MANTISSA_INPLACE(sub_, mantissa::sub(*this, o, alpha)); }
Tensor& Tensor::mul_(const Tensor& o) { MANTISSA_INPLACE(mul_, mantissa::mul(*this, o)); }
Tensor& Tensor::mul_(double v) { MANTISSA_INPLACE(mul_, mantissa::mul(*this, v)); }
Tensor& Tensor::div_(const Tensor& o) { MANTISSA_INPLACE(div_, mantissa::div(*this, o)); }
Tensor& Tensor::div_(double v) { MANTISSA_INPLACE(div_, mantissa::div(*this, v)); }
Tensor& Tensor::clamp_(std::optional<double> lo, std::optional<double> hi) {
  MANTISSA_INPLACE(clamp_, mantissa::clamp(*this, lo, hi));
}
Tensor& Tensor::relu_() { MANTISSA_INPLACE(relu_, mantissa::relu(*this)); }
#undef MANTISSA_INPLACE

// Common ops --------------------------------------------------------------------------------------
Tensor Tensor::sum() const { return mantissa::sum(*this); }
Tensor Tensor::sum(const Shape& d, bool k) const { return mantissa::sum(*this, d, k); }
Tensor Tensor::mean() const { return mantissa::mean(*this); }
Tensor Tensor::mean(const Shape& d, bool k) const { return mantissa::mean(*this, d, k); }
Tensor Tensor::matmul(const Tensor& o) const { return mantissa::matmul(*this, o); }
Tensor Tensor::exp() const { return mantissa::exp(*this); }
Tensor Tensor::log() const { return mantissa::log(*this); }
Tensor Tensor::sqrt() const { return mantissa::sqrt(*this); }
Tensor Tensor::abs() const { return mantissa::abs(*this); }
Tensor Tensor::neg() const { return mantissa::neg(*this); }
Tensor Tensor::pow(double e) const { return mantissa::pow(*this, e); }
Tensor Tensor::relu() const { return mantissa::relu(*this); }
Tensor Tensor::sigmoid() const { return mantissa::sigmoid(*this); }
Tensor Tensor::tanh() const { return mantissa::tanh(*this); }
Tensor Tensor::argmax(int64_t d, bool k) const { return mantissa::argmax(*this, d, k); }

}  // namespace mantissa
