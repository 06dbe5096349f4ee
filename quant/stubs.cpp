// QuantStub / DeQuantStub / FloatFunctional: identity or float add until prepared, fake
// quantizer while prepared, quantize / dequantize / quantized add once converted.
#include "quant/stubs.h"

#include <sstream>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/quantized.h"
#include "quant/qtensor.h"

namespace mantissa::quant {

void OutputQuantizer::set_activation_post_process(nn::ModulePtr fq) {
  MANTISSA_CHECK(fq != nullptr, name(), "::set_activation_post_process: the fake quantizer is null");
  MANTISSA_CHECK(!activation_post_process_ && !converted_, name(),
                 "::set_activation_post_process: this module already has one (or is converted)");
  activation_post_process_ = register_module("activation_post_process", std::move(fq));
}

void OutputQuantizer::convert(const QParams& qp) {
  const std::string op = name() + "::convert";
  MANTISSA_CHECK(!converted_, op, ": already converted");
  MANTISSA_CHECK(!qp.spec.per_channel() && qp.scale.numel() == 1 && qp.zero_point.numel() == 1, op,
                 ": activations take per-tensor qparams, got ", qp.spec.str());
  MANTISSA_CHECK(qp.spec.dtype == QDType::UInt8 || qp.spec.dtype == QDType::Int8, op,
                 ": activations are quantized to int8 or uint8, got ", qp.spec.str());
  MANTISSA_CHECK(!qp.spec.restricted_range, op, ": quantized tensors use the full code range, got ", qp.spec.str());
  spec_ = qp.spec;
  scale_ = register_buffer("scale", qp.scale.to(Device()).to(DType::F32).reshape({}).clone());
  zero_point_ = register_buffer("zero_point", qp.zero_point.to(Device()).to(DType::I32).reshape({}).clone());
  if (activation_post_process_) {
    remove_module("activation_post_process");
    activation_post_process_.reset();
  }
  converted_ = true;
}

float OutputQuantizer::out_scale() const { return scale_.to(Device()).item<float>(); }
int32_t OutputQuantizer::out_zero_point() const { return zero_point_.to(Device()).item<int32_t>(); }

std::string OutputQuantizer::extra_repr() const {
  if (!converted_) return "";
  std::ostringstream s;
  s << "scale=" << out_scale() << ", zero_point=" << out_zero_point() << ", " << spec_.str();
  return s.str();
}

Tensor QuantStub::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined(), "QuantStub: the input is an undefined tensor");
  if (!converted()) return observe(x);
  MANTISSA_CHECK(!x.is_quantized(), "QuantStub: the input is already quantized (scale ", x.q_scale(), ", zero point ",
                 x.q_zero_point(), "); QuantStub takes the float input of the model");
  return quantize_per_tensor(x, out_scale(), out_zero_point(), out_spec().dtype);
}

Tensor DeQuantStub::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined(), "DeQuantStub: the input is an undefined tensor");
  return x.is_quantized() ? dequantize(x) : x;
}

Tensor FloatFunctional::add(const Tensor& a, const Tensor& b) { return add_impl(a, b, false, "FloatFunctional::add"); }

Tensor FloatFunctional::add_relu(const Tensor& a, const Tensor& b) {
  return add_impl(a, b, true, "FloatFunctional::add_relu");
}

Tensor FloatFunctional::add_impl(const Tensor& a, const Tensor& b, bool relu, const char* op) {
  MANTISSA_CHECK(a.defined() && b.defined(), op, ": an argument is an undefined tensor");
  if (converted()) {
    MANTISSA_CHECK(a.is_quantized() && b.is_quantized(), op, ": the model is converted, so both arguments must be ",
                   "quantized tensors (got ", a.is_quantized() ? "quantized" : "float", " and ",
                   b.is_quantized() ? "quantized" : "float", ")");
    return quantized_add(a, b, out_scale(), out_zero_point(), relu);
  }
  Tensor y = mantissa::add(a, b);
  return observe(relu ? mantissa::relu(y) : y);
}

Tensor FloatFunctional::forward(const Tensor&) {
  MANTISSA_ERROR("FloatFunctional: call add(a, b) or add_relu(a, b); it has no single-input forward");
}

}  // namespace mantissa::quant
