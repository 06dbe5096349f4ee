// qparams arithmetic in F32 exactly as torch.ao's _ObserverBase._calculate_qparams, and the
// quantize/dequantize entry points over core/kernels/quantize.
#include "quant/qparams.h"

#include <cmath>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/kernels/quantize.h"

namespace mantissa::quant {

int32_t QSpec::qmin() const {
  switch (dtype) {
    case QDType::Int8: return scheme == QScheme::Symmetric && restricted_range ? -127 : -128;
    case QDType::UInt8: return 0;
    case QDType::Int4: return scheme == QScheme::Symmetric && restricted_range ? -7 : -8;
  }
  return 0;
}

int32_t QSpec::qmax() const {
  switch (dtype) {
    case QDType::Int8: return 127;
    case QDType::UInt8: return 255;
    case QDType::Int4: return 7;
  }
  return 0;
}

std::string QSpec::str() const {
  std::ostringstream os;
  os << (dtype == QDType::Int8 ? "int8" : dtype == QDType::UInt8 ? "uint8" : "int4") << ' '
     << (scheme == QScheme::Affine ? "affine" : restricted_range ? "symmetric(restricted)" : "symmetric") << ' ';
  if (per_channel()) os << "per-channel(axis " << axis << ")";
  else os << "per-tensor";
  return os.str();
}

namespace {

void check_range_tensor(const Tensor& t, const char* what) {
  MANTISSA_CHECK(t.defined() && t.dtype() == DType::F32 && t.dim() <= 1, "calculate_qparams: ", what,
                 " must be an F32 tensor, 0-d or [C], got ",
                 t.defined() ? dtype_name(t.dtype()) : "undefined", t.defined() ? shape_str(t.sizes()) : "");
}

// The zero point a symmetric scheme uses: 0 for signed formats, the middle of an unsigned one
// (128 for the full uint8 range, as PyTorch).
int32_t symmetric_zero_point(const QSpec& spec) {
  if (spec.dtype != QDType::UInt8) return 0;
  return (spec.qmin() + spec.qmax() + 1) / 2;
}

}  // namespace

QParams calculate_qparams(const Tensor& min_val, const Tensor& max_val, const QSpec& spec) {
  check_range_tensor(min_val, "min_val");
  check_range_tensor(max_val, "max_val");
  MANTISSA_CHECK(min_val.sizes() == max_val.sizes(), "calculate_qparams: min_val ", shape_str(min_val.sizes()),
                 " and max_val ", shape_str(max_val.sizes()), " differ in shape");
  MANTISSA_CHECK(spec.per_channel() == (min_val.dim() == 1), "calculate_qparams: a ",
                 spec.per_channel() ? "per-channel" : "per-tensor", " spec needs ",
                 spec.per_channel() ? "[C]" : "0-d", " ranges, got ", shape_str(min_val.sizes()));
  NoGradGuard no_grad;
  Tensor lo = min_val.contiguous().cpu(), hi = max_val.contiguous().cpu();
  const int64_t n = lo.numel();
  Tensor scale = empty(lo.sizes(), DType::F32), zp = empty(lo.sizes(), DType::I32);
  const float* pl = lo.data<float>();
  const float* ph = hi.data<float>();
  float* ps = scale.data<float>();
  int32_t* pz = zp.data<int32_t>();
  const int32_t qmin = spec.qmin(), qmax = spec.qmax();
  for (int64_t i = 0; i < n; ++i) {
    MANTISSA_CHECK(!(pl[i] > ph[i]), "calculate_qparams: min ", pl[i], " > max ", ph[i],
                   (n > 1 ? " at channel " : ""), (n > 1 ? std::to_string(i) : std::string()),
                   "; the observer saw no data or its range is corrupt");
    const float neg = std::fmin(pl[i], 0.0f), pos = std::fmax(ph[i], 0.0f);
    float s;
    int32_t z;
    if (spec.scheme == QScheme::Symmetric) {
      const float m = std::fmax(-neg, pos);
      s = m / (static_cast<float>(qmax - qmin) / 2.0f);
      s = std::fmax(s, kScaleEps);
      z = symmetric_zero_point(spec);
    } else {
      s = (pos - neg) / static_cast<float>(qmax - qmin);
      s = std::fmax(s, kScaleEps);
      const float r = std::nearbyint(neg / s);
      float zf = static_cast<float>(qmin) - r;
      zf = std::fmin(std::fmax(zf, static_cast<float>(qmin)), static_cast<float>(qmax));
      z = static_cast<int32_t>(zf);
    }
    MANTISSA_CHECK(std::isfinite(s), "calculate_qparams: the range [", pl[i], ", ", ph[i],
                   "] gives a non-finite scale; the observed tensor held Inf or NaN");
    ps[i] = s;
    pz[i] = z;
  }
  return QParams{scale.to(min_val.device()), zp.to(min_val.device()), spec};
}

QParams make_qparams(double scale, int64_t zero_point, const QSpec& spec) {
  MANTISSA_CHECK(!spec.per_channel(), "make_qparams: gives per-tensor qparams; the spec is ", spec.str());
  MANTISSA_CHECK(std::isfinite(scale) && scale > 0, "make_qparams: scale must be positive and finite, got ", scale);
  MANTISSA_CHECK(zero_point >= spec.qmin() && zero_point <= spec.qmax(), "make_qparams: zero point ", zero_point,
                 " is outside [", spec.qmin(), ", ", spec.qmax(), "] of ", spec.str());
  return QParams{full({}, scale, DType::F32), full({}, static_cast<double>(zero_point), DType::I32), spec};
}

Tensor broadcast_qparam(const Tensor& p, int64_t axis, int64_t x_dim) {
  if (axis < 0) return p.dim() == 0 ? p : p.view({});
  Shape shape(static_cast<size_t>(x_dim), 1);
  shape[static_cast<size_t>(axis)] = p.numel();
  return p.view(shape);
}

namespace {
void check_qparams_for(const Tensor& x, const QParams& qp, const char* op) {
  MANTISSA_CHECK(qp.scale.defined() && qp.zero_point.defined(), op, ": qparams are not set (scale/zero point undefined)");
  MANTISSA_CHECK(qp.scale.dtype() == DType::F32 && qp.zero_point.dtype() == DType::I32, op,
                 ": expected an F32 scale and an I32 zero point, got ", qp.scale.dtype(), " and ", qp.zero_point.dtype());
  if (qp.spec.per_channel()) {
    MANTISSA_CHECK(qp.spec.axis < x.dim(), op, ": channel axis ", qp.spec.axis, " is out of range for shape ",
                   shape_str(x.sizes()));
    MANTISSA_CHECK(qp.scale.dim() == 1 && qp.scale.numel() == x.size(qp.spec.axis) &&
                       qp.zero_point.sizes() == qp.scale.sizes(),
                   op, ": per-channel qparams of shape ", shape_str(qp.scale.sizes()), " do not match dim ",
                   qp.spec.axis, " of ", shape_str(x.sizes()));
  } else {
    MANTISSA_CHECK(qp.scale.numel() == 1 && qp.zero_point.numel() == 1, op,
                   ": per-tensor qparams must hold one scale and one zero point, got ", shape_str(qp.scale.sizes()));
  }
}
}  // namespace

Tensor quantize(const Tensor& x, const QParams& qp) {
  MANTISSA_CHECK(x.defined() && x.is_floating_point(), "quantize: expected a floating tensor, got ",
                 x.defined() ? dtype_name(x.dtype()) : "undefined");
  check_qparams_for(x, qp, "quantize");
  NoGradGuard no_grad;
  Tensor xf = x.dtype() == DType::F32 ? x : x.to(DType::F32);
  Tensor q = empty(x.sizes(), TensorOptions(qp.spec.dtype == QDType::UInt8 ? DType::U8 : DType::I8).device(x.device()));
  kernels::quantize(q, xf, broadcast_qparam(qp.scale, qp.spec.axis, x.dim()),
                    broadcast_qparam(qp.zero_point, qp.spec.axis, x.dim()), qp.spec.qmin(), qp.spec.qmax());
  return q;
}

Tensor dequantize(const Tensor& q, const QParams& qp) {
  MANTISSA_CHECK(q.defined() && (q.dtype() == DType::I8 || q.dtype() == DType::U8),
                 "dequantize: expected I8 or U8 codes, got ", q.defined() ? dtype_name(q.dtype()) : "undefined");
  check_qparams_for(q, qp, "dequantize");
  Tensor out = empty(q.sizes(), TensorOptions(DType::F32).device(q.device()));
  kernels::dequantize(out, q, broadcast_qparam(qp.scale, qp.spec.axis, q.dim()),
                      broadcast_qparam(qp.zero_point, qp.spec.axis, q.dim()));
  return out;
}

}  // namespace mantissa::quant
