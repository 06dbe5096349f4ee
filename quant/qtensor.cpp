// QTensor helpers (see qtensor.h).
#include "quant/qtensor.h"

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

}  // namespace mantissa::quant
