// Int8 inference modules and code-level ops (see quantized_modules.h).
#include "quant/quantized_modules.h"

#include <math.h>

#include <algorithm>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "core/kernels/qgemm.h"
#include "core/kernels/qtensor_ops.h"

namespace mantissa::quant {

namespace {

DType code_dtype(const QSpec& s) { return s.dtype == QDType::UInt8 ? DType::U8 : DType::I8; }

float scale_of(const QParams& qp) { return qp.scale.to(Device()).item<float>(); }
int32_t zp_of(const QParams& qp) { return qp.zero_point.to(Device()).item<int32_t>(); }

void check_activation_qp(const QParams& qp, const char* op, const char* which) {
  MANTISSA_CHECK(qp.scale.defined() && qp.zero_point.defined(), op, ": ", which, " qparams are not set");
  MANTISSA_CHECK(!qp.spec.per_channel() && qp.scale.numel() == 1 && qp.zero_point.numel() == 1, op, ": ", which,
                 " qparams must be per tensor, got ", qp.spec.str());
  MANTISSA_CHECK(qp.spec.dtype == QDType::UInt8 || qp.spec.dtype == QDType::Int8, op, ": ", which,
                 " activations must be int8 or uint8, got ", qp.spec.str());
  // The kernels clamp to the full code range of the dtype, so a narrower range (restricted int8)
  // would not be honoured: refuse it rather than produce codes outside the spec.
  const bool full_range = qp.spec.dtype == QDType::UInt8 ? (qp.spec.qmin() == 0 && qp.spec.qmax() == 255)
                                                         : (qp.spec.qmin() == -128 && qp.spec.qmax() == 127);
  MANTISSA_CHECK(full_range, op, ": ", which, " activations need the full code range of their dtype, got ",
                 qp.spec.str(), " [", qp.spec.qmin(), ", ", qp.spec.qmax(), "]");
  MANTISSA_CHECK(qp.scale.dtype() == DType::F32 && qp.zero_point.dtype() == DType::I32, op, ": ", which,
                 " qparams must hold an F32 scale and an I32 zero point");
  const float s = scale_of(qp);
  const int32_t zp = zp_of(qp);
  MANTISSA_CHECK(std::isfinite(s) && s > 0, op, ": ", which, " scale must be positive and finite, got ", s);
  MANTISSA_CHECK(zp >= qp.spec.qmin() && zp <= qp.spec.qmax(), op, ": ", which, " zero point ", zp,
                 " is outside [", qp.spec.qmin(), ", ", qp.spec.qmax(), "]");
}

// The codes a module is fed must be the ones its input qparams describe.
void check_input(const QTensor& x, const QParams& qp, const char* op) {
  MANTISSA_CHECK(x.codes.defined(), op, ": the input codes are undefined");
  MANTISSA_CHECK(x.codes.dtype() == code_dtype(qp.spec), op, ": expected ", code_dtype(qp.spec),
                 " codes for input qparams ", qp.spec.str(), ", got ", x.codes.dtype());
  check_activation_qp(x.qp, op, "input");
  MANTISSA_CHECK(scale_of(x.qp) == scale_of(qp) && zp_of(x.qp) == zp_of(qp), op, ": the input was quantized with scale ",
                 scale_of(x.qp), " zero point ", zp_of(x.qp), " but the module expects scale ", scale_of(qp),
                 " zero point ", zp_of(qp));
}

// The conversion form takes whatever per-tensor qparams the input carries.
void check_codes_of(const QTensor& x, const char* op) {
  MANTISSA_CHECK(x.codes.defined(), op, ": the input codes are undefined");
  check_activation_qp(x.qp, op, "input");
  MANTISSA_CHECK(x.codes.dtype() == code_dtype(x.qp.spec), op, ": ", x.codes.dtype(), " codes do not match ",
                 x.qp.spec.str());
}

Tensor f32_contiguous(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor c = t.detach().to(Device());
  if (c.dtype() != DType::F32) c = c.to(DType::F32);
  return c.contiguous();
}

// q_b[c] = rint(b[c] / (x_scale * w_scale[c])), the product in F32 as the kernel's multiplier uses it.
// Computed on the host (C values) and placed on `device`, where the layer runs.
Tensor quantize_bias(const Tensor& bias, const Tensor& w_scale, float x_scale, Device device = Device()) {
  if (!bias.defined()) return Tensor();
  Tensor b = f32_contiguous(bias);
  Tensor wsc = f32_contiguous(w_scale);
  const int64_t c = b.numel();
  Tensor q = empty({c}, TensorOptions(DType::I32));
  const float* bp = b.data<float>();
  const float* ws = wsc.data<float>();
  int32_t* qp = q.data<int32_t>();
  for (int64_t i = 0; i < c; ++i) {
    const double v = rint(static_cast<double>(bp[i]) / static_cast<double>(x_scale * ws[i]));
    MANTISSA_CHECK(std::isfinite(bp[i]), "quantize bias: bias ", i, " is not finite");
    qp[i] = static_cast<int32_t>(std::clamp(v, static_cast<double>(std::numeric_limits<int32_t>::min()),
                                            static_cast<double>(std::numeric_limits<int32_t>::max())));
  }
  return device.is_cpu() ? q : q.to(device);
}

// Both devices: the layer's weights and its input must be on one.
void check_device(const Tensor& codes, const Tensor& weight_codes, const char* op) {
  MANTISSA_CHECK(codes.device() == weight_codes.device(), op, ": the input is on ", codes.device(),
                 " but the layer's int8 weights are on ", weight_codes.device(), "; move one with .to()");
}

// A fused ReLU on output codes: max(q, zero point), on the codes' device.
Tensor floor_at_zero_point(const Tensor& codes, int32_t zp) {
  if (zp <= (codes.dtype() == DType::U8 ? 0 : -128)) return codes;  // nothing below the zero point
  Tensor r = empty(codes.sizes(), TensorOptions(codes.dtype()).device(codes.device()));
  kernels::quantized_relu(r, codes, zp);
  return r;
}

std::string qp_repr(const QParams& qp) {
  std::ostringstream s;
  s << "scale=" << scale_of(qp) << ", zero_point=" << zp_of(qp) << ", " << qp.spec.str();
  return s.str();
}

}  // namespace

QParams weight_qparams(const Tensor& weight) {
  MANTISSA_CHECK(weight.defined() && weight.dim() >= 1 && weight.size(0) > 0, "weight_qparams: expected a weight with ",
                 "at least one output channel");
  Tensor w = f32_contiguous(weight);
  const int64_t c = w.size(0), per = w.numel() / c;
  Tensor lo = empty({c}, TensorOptions(DType::F32)), hi = empty({c}, TensorOptions(DType::F32));
  const float* wp = w.data<float>();
  for (int64_t i = 0; i < c; ++i) {
    float mn = 0.0f, mx = 0.0f;  // the range always holds 0 (calculate_qparams widens to it anyway)
    for (int64_t j = 0; j < per; ++j) {
      const float v = wp[i * per + j];
      MANTISSA_CHECK(std::isfinite(v), "weight_qparams: weight of channel ", i, " is not finite");
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    lo.data<float>()[i] = mn;
    hi.data<float>()[i] = mx;
  }
  QSpec spec;
  spec.dtype = QDType::Int8;
  spec.scheme = QScheme::Symmetric;
  spec.axis = 0;
  return calculate_qparams(lo, hi, spec);
}

std::pair<Tensor, Tensor> quantize_weight(const Tensor& weight, const QParams& wq, const char* op) {
  MANTISSA_CHECK(weight.defined() && weight.dim() >= 1 && weight.size(0) > 0, op, ": expected a weight with at least ",
                 "one output channel");
  MANTISSA_CHECK(wq.scale.defined() && wq.zero_point.defined(), op, ": weight qparams are not set");
  MANTISSA_CHECK(wq.spec.dtype == QDType::Int8 || wq.spec.dtype == QDType::Int4, op,
                 ": int8 kernels take int8 (or int4) weight codes, got ", wq.spec.str());
  const int64_t c = weight.size(0);
  MANTISSA_CHECK(!wq.spec.per_channel() || wq.spec.axis == 0, op, ": per-channel weight qparams must be along the ",
                 "output channels (axis 0), got ", wq.spec.str());
  Tensor zp = wq.zero_point.to(Device()).to(DType::I32).contiguous();
  for (int64_t i = 0; i < zp.numel(); ++i)
    MANTISSA_CHECK(zp.data<int32_t>()[i] == 0, op, ": int8 kernels take symmetric weights (zero point 0), got zero ",
                   "point ", zp.data<int32_t>()[i], " (", wq.spec.str(), ")");
  Tensor w = f32_contiguous(weight);
  Tensor codes = quantize(w, QParams{wq.scale.to(Device()), wq.zero_point.to(Device()), wq.spec});
  Tensor sc = wq.scale.to(Device()).to(DType::F32).contiguous();
  Tensor scales = empty({c}, TensorOptions(DType::F32));
  MANTISSA_CHECK(sc.numel() == 1 || sc.numel() == c, op, ": ", sc.numel(), " weight scales for ", c, " channels");
  for (int64_t i = 0; i < c; ++i) scales.data<float>()[i] = sc.data<float>()[sc.numel() == 1 ? 0 : i];
  if (codes.dtype() != DType::I8) codes = codes.to(DType::I8);
  return {codes.contiguous(), scales};
}

namespace {

void check_output_qp(const QParams& qp, const char* op) { check_activation_qp(qp, op, "output"); }

// The output qparams as 0-d tensors registered under PyTorch's names.
QParams register_output_qp(nn::Module& m, const QParams& qp) {
  QParams r = qp;
  r.scale = m.register_buffer("scale", qp.scale.to(Device()).to(DType::F32).reshape({}).clone());
  r.zero_point = m.register_buffer("zero_point", qp.zero_point.to(Device()).to(DType::I32).reshape({}).clone());
  return r;
}

// The quantized input of the conversion form: codes, their qparams, and checks.
QTensor quantized_input(const Tensor& input, const char* op) {
  MANTISSA_CHECK(input.defined(), op, ": the input is an undefined tensor");
  MANTISSA_CHECK(input.is_quantized(), op, ": expected a quantized tensor, got a float ", input.dtype(),
                 " tensor; put a quant::QuantStub where the model's float input enters (as in PyTorch), or ",
                 "quantize it with quant::quantize_per_tensor");
  return to_qtensor(input);
}

}  // namespace

// ---- QuantizedLinear -------------------------------------------------------------------------

QuantizedLinear::QuantizedLinear(const nn::Linear& linear, const QParams& in_qp, const QParams& out_qp)
    : in_features(linear.options.in_features()), out_features(linear.options.out_features()), input_qp(in_qp) {
  check_activation_qp(in_qp, "QuantizedLinear", "input");
  check_output_qp(out_qp, "QuantizedLinear");
  auto [codes, scales] = quantize_weight(linear.weight, weight_qparams(linear.weight), "QuantizedLinear");
  weight_codes = register_buffer("weight", codes);
  weight_scale = register_buffer("weight_scale", scales);
  bias = register_buffer("bias", linear.bias.defined() ? f32_contiguous(linear.bias).clone() : Tensor());
  bias_codes = quantize_bias(bias, weight_scale, scale_of(in_qp));
  output_qp = register_output_qp(*this, out_qp);
}

QuantizedLinear::QuantizedLinear(const Tensor& weight, const Tensor& b, const QParams& weight_qp, const QParams& out_qp,
                                 bool fused_relu)
    : relu(fused_relu) {
  constexpr const char* op = "QuantizedLinear";
  MANTISSA_CHECK(weight.defined() && weight.dim() == 2, op, ": expected a weight [out, in], got ",
                 weight.defined() ? shape_str(weight.sizes()) : "undefined");
  in_features = weight.size(1);
  out_features = weight.size(0);
  MANTISSA_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == out_features), op, ": bias ", shape_str(b.sizes()),
                 " does not match ", out_features, " outputs");
  check_output_qp(out_qp, op);
  auto [codes, scales] = quantize_weight(weight, weight_qp, op);
  weight_codes = register_buffer("weight", codes);
  weight_scale = register_buffer("weight_scale", scales);
  bias = register_buffer("bias", b.defined() ? f32_contiguous(b).clone() : Tensor());
  output_qp = register_output_qp(*this, out_qp);
}

namespace {
// Shared by both forms: x codes [rows, K] with (x_scale, x_zp) -> output codes [rows, C].
Tensor run_linear(const Tensor& x2, float x_scale, int32_t x_zp, const Tensor& w, const Tensor& w_scale,
                  const Tensor& bias_codes, const QParams& out_qp, bool relu, kernels::QWeightCache* cache) {
  Tensor out = empty({x2.size(0), w.size(0)}, TensorOptions(code_dtype(out_qp.spec)).device(x2.device()));
  kernels::qlinear(out, x2, w, bias_codes, kernels::Requant{x_scale, x_zp, w_scale, scale_of(out_qp), zp_of(out_qp)},
                   kernels::QGemmImpl::Auto, cache);
  return relu ? floor_at_zero_point(out, zp_of(out_qp)) : out;
}
}  // namespace

QTensor QuantizedLinear::forward(const QTensor& x) const {
  constexpr const char* op = "QuantizedLinear";
  if (input_qp.scale.defined()) check_input(x, input_qp, op);
  else check_codes_of(x, op);
  MANTISSA_CHECK(x.codes.dim() >= 1 && x.codes.size(-1) == in_features, op, ": expected input [..., ", in_features,
                 "], got ", shape_str(x.codes.sizes()));
  check_device(x.codes, weight_codes, op);
  const int64_t rows = x.codes.numel() / in_features;
  Tensor x2 = x.codes.contiguous().view({rows, in_features});
  const float xs = scale_of(x.qp);
  // Quantized per call (C values): follows load_state_dict and the layer's device.
  Tensor bq = quantize_bias(bias, weight_scale, xs, x.codes.device());
  Tensor out = run_linear(x2, xs, zp_of(x.qp), weight_codes, weight_scale, bq, output_qp, relu, weight_cache.get());
  Shape shape = x.codes.sizes();
  shape.back() = out_features;
  return QTensor{out.view(shape), output_qp};
}

Tensor QuantizedLinear::forward(const Tensor& input) {
  if (input.defined() && input.is_quantized()) return to_tensor(forward(to_qtensor(input)));
  if (input_qp.scale.defined()) return dequantize_tensor(forward(quantize_tensor(input, input_qp)));
  return to_tensor(forward(quantized_input(input, "QuantizedLinear")));
}

std::string QuantizedLinear::extra_repr() const {
  std::ostringstream s;
  s << "in_features=" << in_features << ", out_features=" << out_features << ", bias=" << (bias.defined() ? "True" : "False");
  if (input_qp.scale.defined()) s << ", input(" << qp_repr(input_qp) << ")";
  s << ", output(" << qp_repr(output_qp) << ")";
  if (relu) s << ", relu=True";
  return s.str();
}

// ---- QuantizedConv2d -------------------------------------------------------------------------

namespace {
kernels::Conv2dParams conv_params(const nn::Conv2d& conv) {
  const auto& o = conv.options;
  kernels::Conv2dParams p;
  p.stride_h = o.stride()[0];
  p.stride_w = o.stride()[1];
  p.pad_h = o.padding()[0];
  p.pad_w = o.padding()[1];
  p.dilation_h = o.dilation()[0];
  p.dilation_w = o.dilation()[1];
  p.groups = o.groups();
  return p;
}
}  // namespace

QuantizedConv2d::QuantizedConv2d(const nn::Conv2d& conv, const QParams& in_qp, const QParams& out_qp)
    : params(conv_params(conv)), input_qp(in_qp) {
  check_activation_qp(in_qp, "QuantizedConv2d", "input");
  check_output_qp(out_qp, "QuantizedConv2d");
  auto [codes, scales] = quantize_weight(conv.weight, weight_qparams(conv.weight), "QuantizedConv2d");
  weight_codes = register_buffer("weight", codes);
  weight_scale = register_buffer("weight_scale", scales);
  bias = register_buffer("bias", conv.bias.defined() ? f32_contiguous(conv.bias).clone() : Tensor());
  bias_codes = quantize_bias(bias, weight_scale, scale_of(in_qp));
  output_qp = register_output_qp(*this, out_qp);
}

QuantizedConv2d::QuantizedConv2d(const nn::Conv2d& conv, const Tensor& weight, const Tensor& b,
                                 const QParams& weight_qp, const QParams& out_qp, bool fused_relu)
    : params(conv_params(conv)), relu(fused_relu) {
  constexpr const char* op = "QuantizedConv2d";
  MANTISSA_CHECK(weight.defined() && weight.sizes() == conv.weight.sizes(), op, ": weight ",
                 weight.defined() ? shape_str(weight.sizes()) : "undefined", " does not match the layer's ",
                 shape_str(conv.weight.sizes()));
  MANTISSA_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == weight.size(0)), op, ": bias ", shape_str(b.sizes()),
                 " does not match ", weight.size(0), " output channels");
  check_output_qp(out_qp, op);
  auto [codes, scales] = quantize_weight(weight, weight_qp, op);
  weight_codes = register_buffer("weight", codes);
  weight_scale = register_buffer("weight_scale", scales);
  bias = register_buffer("bias", b.defined() ? f32_contiguous(b).clone() : Tensor());
  output_qp = register_output_qp(*this, out_qp);
}

QTensor QuantizedConv2d::forward(const QTensor& x) const {
  constexpr const char* op = "QuantizedConv2d";
  if (input_qp.scale.defined()) check_input(x, input_qp, op);
  else check_codes_of(x, op);
  const Shape& xs = x.codes.sizes();
  const Shape& ws = weight_codes.sizes();
  MANTISSA_CHECK(xs.size() == 4 && xs[1] == ws[1] * params.groups, op, ": expected input [N, ", ws[1] * params.groups,
                 ", H, W], got ", shape_str(xs));
  const int64_t ho = (xs[2] + 2 * params.pad_h - params.dilation_h * (ws[2] - 1) - 1) / params.stride_h + 1;
  const int64_t wo = (xs[3] + 2 * params.pad_w - params.dilation_w * (ws[3] - 1) - 1) / params.stride_w + 1;
  MANTISSA_CHECK(ho >= 1 && wo >= 1, op, ": input ", shape_str(xs), " is smaller than the (dilated) kernel ",
                 shape_str(ws));
  check_device(x.codes, weight_codes, op);
  const float x_scale = scale_of(x.qp);
  Tensor bq = quantize_bias(bias, weight_scale, x_scale, x.codes.device());
  Tensor out = empty({xs[0], ws[0], ho, wo}, TensorOptions(code_dtype(output_qp.spec)).device(x.codes.device()));
  kernels::qconv2d(out, x.codes.contiguous(), weight_codes, bq, params,
                   kernels::Requant{x_scale, zp_of(x.qp), weight_scale, scale_of(output_qp), zp_of(output_qp)},
                   kernels::QGemmImpl::Auto, weight_cache.get());
  if (relu) out = floor_at_zero_point(out, zp_of(output_qp));
  return QTensor{out, output_qp};
}

Tensor QuantizedConv2d::forward(const Tensor& input) {
  if (input.defined() && input.is_quantized()) return to_tensor(forward(to_qtensor(input)));
  if (input_qp.scale.defined()) return dequantize_tensor(forward(quantize_tensor(input, input_qp)));
  return to_tensor(forward(quantized_input(input, "QuantizedConv2d")));
}

std::string QuantizedConv2d::extra_repr() const {
  std::ostringstream s;
  const Shape& ws = weight_codes.sizes();
  s << ws[1] * params.groups << ", " << ws[0] << ", kernel_size=(" << ws[2] << ", " << ws[3] << "), stride=("
    << params.stride_h << ", " << params.stride_w << "), padding=(" << params.pad_h << ", " << params.pad_w
    << "), dilation=(" << params.dilation_h << ", " << params.dilation_w << "), groups=" << params.groups
    << ", bias=" << (bias.defined() ? "True" : "False");
  if (input_qp.scale.defined()) s << ", input(" << qp_repr(input_qp) << ")";
  s << ", output(" << qp_repr(output_qp) << ")";
  if (relu) s << ", relu=True";
  return s.str();
}

// ---- ops on codes ----------------------------------------------------------------------------

namespace {
template <typename F>
void visit_code(DType t, const F& f) {
  if (t == DType::U8) f.template operator()<uint8_t>();
  else f.template operator()<int8_t>();
}

void check_codes(const QTensor& x, const char* op) {
  MANTISSA_CHECK(x.codes.defined() && x.codes.is_cpu() && (x.codes.dtype() == DType::U8 || x.codes.dtype() == DType::I8),
                 op, ": expected CPU U8 or I8 codes, got ",
                 x.codes.defined() ? dtype_name(x.codes.dtype()) : "undefined");
  check_activation_qp(x.qp, op, "input");
  MANTISSA_CHECK(x.codes.dtype() == code_dtype(x.qp.spec), op, ": ", x.codes.dtype(), " codes do not match ",
                 x.qp.spec.str());
}
}  // namespace

QTensor relu(const QTensor& x) {
  check_codes(x, "quantized relu");
  const int32_t zp = zp_of(x.qp);
  Tensor in = x.codes.contiguous();
  Tensor out = empty(in.sizes(), TensorOptions(in.dtype()));
  visit_code(in.dtype(), [&]<typename T>() {
    const T* ip = in.data<T>();
    T* op = out.data<T>();
    const T z = static_cast<T>(zp);
    for (int64_t i = 0, n = in.numel(); i < n; ++i) op[i] = std::max(ip[i], z);
  });
  return QTensor{out, x.qp};
}

QTensor max_pool2d(const QTensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride,
                   std::vector<int64_t> padding) {
  constexpr const char* op = "quantized max_pool2d";
  check_codes(x, op);
  if (stride.empty()) stride = kernel;
  MANTISSA_CHECK(x.codes.dim() == 4, op, ": expected [N, C, H, W] codes, got ", shape_str(x.codes.sizes()));
  MANTISSA_CHECK(kernel.size() == 2 && stride.size() == 2 && padding.size() == 2, op,
                 ": kernel, stride and padding take two values each");
  MANTISSA_CHECK(kernel[0] >= 1 && kernel[1] >= 1 && stride[0] >= 1 && stride[1] >= 1 && padding[0] >= 0 &&
                     padding[1] >= 0 && 2 * padding[0] <= kernel[0] && 2 * padding[1] <= kernel[1],
                 op, ": kernel and stride must be >= 1, padding in [0, kernel / 2]");
  Tensor in = x.codes.contiguous();
  const int64_t n = in.size(0), c = in.size(1), h = in.size(2), w = in.size(3);
  const int64_t ho = (h + 2 * padding[0] - kernel[0]) / stride[0] + 1;
  const int64_t wo = (w + 2 * padding[1] - kernel[1]) / stride[1] + 1;
  MANTISSA_CHECK(ho >= 1 && wo >= 1, op, ": input ", shape_str(in.sizes()), " is smaller than the kernel");
  Tensor out = empty({n, c, ho, wo}, TensorOptions(in.dtype()));
  visit_code(in.dtype(), [&]<typename T>() {
    const T* ip = in.data<T>();
    T* outp = out.data<T>();
    for (int64_t plane = 0; plane < n * c; ++plane) {
      const T* src = ip + plane * h * w;
      T* dst = outp + plane * ho * wo;
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          T best = std::numeric_limits<T>::lowest();
          for (int64_t ky = 0; ky < kernel[0]; ++ky) {
            const int64_t iy = oy * stride[0] - padding[0] + ky;
            if (iy < 0 || iy >= h) continue;
            for (int64_t kx = 0; kx < kernel[1]; ++kx) {
              const int64_t ix = ox * stride[1] - padding[1] + kx;
              if (ix >= 0 && ix < w) best = std::max(best, src[iy * w + ix]);
            }
          }
          dst[oy * wo + ox] = best;
        }
      }
    }
  });
  return QTensor{out, x.qp};
}

QTensor flatten(const QTensor& x, int64_t start_dim, int64_t end_dim) {
  constexpr const char* op = "quantized flatten";
  check_codes(x, op);
  const int64_t d = x.codes.dim();
  if (start_dim < 0) start_dim += d;
  if (end_dim < 0) end_dim += d;
  MANTISSA_CHECK(d >= 1 && start_dim >= 0 && end_dim < d && start_dim <= end_dim, op, ": dims [", start_dim, ", ",
                 end_dim, "] are out of range for ", shape_str(x.codes.sizes()));
  Shape shape;
  int64_t merged = 1;
  for (int64_t i = 0; i < d; ++i) {
    if (i < start_dim || i > end_dim) {
      shape.push_back(x.codes.size(i));
    } else {
      merged *= x.codes.size(i);
      if (i == end_dim) shape.push_back(merged);
    }
  }
  return QTensor{x.codes.reshape(shape), x.qp};
}

}  // namespace mantissa::quant
