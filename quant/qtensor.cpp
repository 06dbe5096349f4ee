// QTensor helpers (see qtensor.h).
#include "quant/qtensor.h"

#include "autograd/grad_mode.h"
#include "core/error.h"

namespace mantissa::quant {

namespace {
void check_activation_qparams(const QParams& qp, const char* op) {
  MANTISSA_CHECK(qp.scale.defined() && qp.zero_point.defined(), op, ": qparams are not set");
  MANTISSA_CHECK(!qp.spec.per_channel() && qp.scale.numel() == 1 && qp.zero_point.numel() == 1, op,
                 ": activations take per-tensor qparams, got ", qp.spec.str(), " with scale of shape ",
                 shape_str(qp.scale.sizes()));
  MANTISSA_CHECK(qp.spec.dtype == QDType::UInt8 || qp.spec.dtype == QDType::Int8, op,
                 ": activations are int8 or uint8, got ", qp.spec.str());
}
}  // namespace

float QTensor::scale() const {
  MANTISSA_CHECK(qp.scale.defined() && qp.scale.numel() == 1, "QTensor::scale: expected a per-tensor scale");
  return static_cast<float>(qp.scale.to(Device()).item<float>());
}

int32_t QTensor::zero_point() const {
  MANTISSA_CHECK(qp.zero_point.defined() && qp.zero_point.numel() == 1,
                 "QTensor::zero_point: expected a per-tensor zero point");
  return qp.zero_point.to(Device()).item<int32_t>();
}

QTensor quantize_tensor(const Tensor& x, const QParams& qp) {
  check_activation_qparams(qp, "quantize_tensor");
  return QTensor{quantize(x, qp), qp};
}

Tensor dequantize_tensor(const QTensor& q) {
  check_activation_qparams(q.qp, "dequantize_tensor");
  return dequantize(q.codes, q.qp);
}

namespace {
QSpec activation_spec(DType codes) {
  QSpec spec;
  spec.dtype = codes == DType::U8 ? QDType::UInt8 : QDType::Int8;
  spec.scheme = QScheme::Affine;
  return spec;
}

// The qparams as 0-d tensors on the device of the data they describe (the kernels need both
// on one device).
QParams qparams_on(float scale, int32_t zero_point, DType codes, Device device) {
  QParams qp = make_qparams(scale, zero_point, activation_spec(codes));
  if (!device.is_cpu()) {
    qp.scale = qp.scale.to(device);
    qp.zero_point = qp.zero_point.to(device);
  }
  return qp;
}
}  // namespace

Tensor quantize_per_tensor(const Tensor& x, float scale, int32_t zero_point, QDType dtype) {
  constexpr const char* op = "quantize_per_tensor";
  MANTISSA_CHECK(x.defined(), op, ": got an undefined tensor");
  MANTISSA_CHECK(!x.is_quantized(), op, ": the input is already quantized (", quantized_dtype_name(x.dtype()),
                 ", scale ", x.q_scale(), ", zero point ", x.q_zero_point(), "); dequantize(x) it first");
  MANTISSA_CHECK(dtype == QDType::UInt8 || dtype == QDType::Int8, op, ": quantized tensors are uint8 or int8, got ",
                 QSpec{dtype}.str());
  MANTISSA_CHECK(x.is_floating_point(), op, ": expected a floating-point input, got ", x.dtype(), " of shape ",
                 shape_str(x.sizes()));
  const DType codes = dtype == QDType::UInt8 ? DType::U8 : DType::I8;
  const QParams qp = qparams_on(scale, zero_point, codes, x.device());
  NoGradGuard no_grad;
  return make_per_tensor_quantized(quantize(x.detach(), qp), scale, zero_point);
}

Tensor dequantize(const Tensor& q) {
  MANTISSA_CHECK(q.defined() && q.is_quantized(), "dequantize: expected a quantized tensor, got ",
                 q.defined() ? std::string("an ordinary ") + dtype_name(q.dtype()) + " tensor of shape " +
                                   shape_str(q.sizes())
                             : std::string("an undefined tensor"));
  return dequantize(int_repr(q), qparams_on(q.q_scale(), q.q_zero_point(), q.dtype(), q.device()));
}

QTensor to_qtensor(const Tensor& q) {
  MANTISSA_CHECK(q.defined() && q.is_quantized(), "to_qtensor: expected a quantized tensor, got ",
                 q.defined() ? std::string("an ordinary ") + dtype_name(q.dtype()) + " tensor" : std::string("an undefined tensor"));
  return QTensor{int_repr(q), make_qparams(q.q_scale(), q.q_zero_point(), activation_spec(q.dtype()))};
}

Tensor to_tensor(const QTensor& q) {
  check_activation_qparams(q.qp, "to_tensor");
  MANTISSA_CHECK(q.codes.defined() && q.codes.dtype() == (q.qp.spec.dtype == QDType::UInt8 ? DType::U8 : DType::I8),
                 "to_tensor: ", q.codes.defined() ? dtype_name(q.codes.dtype()) : "undefined", " codes do not match ",
                 q.qp.spec.str());
  return make_per_tensor_quantized(q.codes, q.scale(), q.zero_point());
}

}  // namespace mantissa::quant
