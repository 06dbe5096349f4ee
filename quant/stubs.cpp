// QuantStub / DeQuantStub: identity until prepared, fake quantizer while prepared, quantize /
// dequantize once converted.
#include "quant/stubs.h"

#include <sstream>

#include "core/error.h"
#include "quant/qtensor.h"

namespace mantissa::quant {

Tensor QuantStub::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined(), "QuantStub: the input is an undefined tensor");
  if (converted_) {
    MANTISSA_CHECK(!x.is_quantized(), "QuantStub: the input is already quantized (scale ", x.q_scale(),
                   ", zero point ", x.q_zero_point(), "); QuantStub takes the float input of the model");
    return quantize_per_tensor(x, scale_.item<float>(), zero_point_.item<int32_t>(), spec_.dtype);
  }
  return activation_post_process_ ? (*activation_post_process_)(x) : x;
}

void QuantStub::set_activation_post_process(nn::ModulePtr fq) {
  MANTISSA_CHECK(fq != nullptr, "QuantStub::set_activation_post_process: the fake quantizer is null");
  MANTISSA_CHECK(!activation_post_process_ && !converted_,
                 "QuantStub::set_activation_post_process: this stub already has one (or is converted)");
  activation_post_process_ = register_module("activation_post_process", std::move(fq));
}

void QuantStub::convert(const QParams& qp) {
  MANTISSA_CHECK(!converted_, "QuantStub::convert: already converted");
  MANTISSA_CHECK(!qp.spec.per_channel() && qp.scale.numel() == 1 && qp.zero_point.numel() == 1,
                 "QuantStub::convert: the model input takes per-tensor qparams, got ", qp.spec.str());
  MANTISSA_CHECK(qp.spec.dtype == QDType::UInt8 || qp.spec.dtype == QDType::Int8,
                 "QuantStub::convert: the model input is quantized to int8 or uint8, got ", qp.spec.str());
  MANTISSA_CHECK(!qp.spec.restricted_range, "QuantStub::convert: quantized tensors use the full code range, got ",
                 qp.spec.str());
  spec_ = qp.spec;
  scale_ = register_buffer("scale", qp.scale.to(Device()).to(DType::F32).reshape({}).clone());
  zero_point_ = register_buffer("zero_point", qp.zero_point.to(Device()).to(DType::I32).reshape({}).clone());
  if (activation_post_process_) {
    remove_module("activation_post_process");
    activation_post_process_.reset();
  }
  converted_ = true;
}

std::string QuantStub::extra_repr() const {
  if (!converted_) return "";
  std::ostringstream s;
  s << "scale=" << scale_.item<float>() << ", zero_point=" << zero_point_.item<int32_t>() << ", " << spec_.str();
  return s.str();
}

Tensor DeQuantStub::forward(const Tensor& x) {
  MANTISSA_CHECK(x.defined(), "DeQuantStub: the input is an undefined tensor");
  return x.is_quantized() ? dequantize(x) : x;
}

}  // namespace mantissa::quant
