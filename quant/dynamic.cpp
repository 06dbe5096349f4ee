// Dynamic int8 linear and the quantize_dynamic model pass (see dynamic.h).
#include "quant/dynamic.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <typeinfo>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "core/kernels/loops.h"
#include "core/kernels/quant_round.h"
#include "quant/quantized_modules.h"

namespace mantissa::quant {

namespace {

Tensor f32_cpu_contiguous(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor c = t.detach().to(Device());
  if (c.dtype() != DType::F32) c = c.to(DType::F32);
  return c.contiguous();
}

QSpec activation_spec() {
  QSpec s;
  s.dtype = QDType::UInt8;
  s.scheme = QScheme::Affine;
  return s;
}

constexpr const char* kOp = "QuantizedLinearDynamic";

void check_input(const Tensor& input, int64_t in_features) {
  MANTISSA_CHECK(input.defined(), kOp, ": the input is undefined");
  MANTISSA_CHECK(input.device().is_cpu(), kOp, ": runs on the CPU only, got an input on ", input.device());
  MANTISSA_CHECK(input.is_floating_point(), kOp, ": expected a floating input, got ", input.dtype());
  MANTISSA_CHECK(input.dim() >= 1 && input.size(-1) == in_features, kOp, ": expected input [..., ", in_features,
                 "], got ", shape_str(input.sizes()));
}

// The batch's range as 0-d F32 tensors, reduced in parallel over fixed chunks (min/max are exact,
// so the split never changes the result). Non-finite values are refused: they would give a
// non-finite scale, or a NaN that min/max would silently skip.
std::pair<Tensor, Tensor> batch_range(const Tensor& x) {
  const float* p = x.data<float>();
  const int64_t n = x.numel();
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<float> lo(static_cast<size_t>(chunks)), hi(static_cast<size_t>(chunks));
  std::vector<char> finite(static_cast<size_t>(chunks));
  kernels::parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t ch = b; ch < e; ++ch) {
      const int64_t s = ch * kChunk, t = std::min(n, s + kChunk);
      float mn = p[s], mx = p[s];
      bool ok = true;
      for (int64_t i = s; i < t; ++i) {
        const float v = p[i];
        ok &= std::isfinite(v);
        mn = std::min(mn, v);
        mx = std::max(mx, v);
      }
      lo[ch] = mn;
      hi[ch] = mx;
      finite[ch] = ok;
    }
  });
  float mn = lo[0], mx = hi[0];
  for (int64_t ch = 0; ch < chunks; ++ch) {
    MANTISSA_CHECK(finite[ch], kOp, ": the input holds Inf or NaN; dynamic quantization needs a finite range");
    mn = std::min(mn, lo[ch]);
    mx = std::max(mx, hi[ch]);
  }
  return {full({}, mn, DType::F32), full({}, mx, DType::F32)};
}

// uint8 codes of x with per-tensor qp by the one rounding rule of quant::quantize
// (kernels::quantize_value: rint(x * inv_scale), clamp to [qmin - zp, qmax - zp], + zp), in a plain
// parallel loop. x is finite here (batch_range refused anything else), so the NaN handling of
// fmaxf / fminf is not needed and plain comparisons give the same codes while vectorizing (fmaxf
// is a libm call without -ffinite-math-only; the generic path cost more than the gemm itself).
Tensor quantize_u8(const Tensor& x, const QParams& qp) {
  const float inv = kernels::quant_inv_scale(qp.scale.item<float>());
  const int32_t zp = qp.zero_point.item<int32_t>();
  const float lo = static_cast<float>(qp.spec.qmin() - zp), hi = static_cast<float>(qp.spec.qmax() - zp);
  Tensor codes = empty(x.sizes(), TensorOptions(DType::U8));
  const float* p = x.data<float>();
  uint8_t* q = codes.data<uint8_t>();
  kernels::parallel_for(x.numel(), 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float r = kernels::quant_round(p[i], inv);
      r = r < lo ? lo : r;
      r = r > hi ? hi : r;
      q[i] = static_cast<uint8_t>(static_cast<int32_t>(r) + zp);
    }
  });
  return codes;
}

}  // namespace

QuantizedLinearDynamic::QuantizedLinearDynamic(const nn::Linear& linear)
    : in_features(linear.options.in_features()), out_features(linear.options.out_features()) {
  MANTISSA_CHECK(linear.weight.defined() && linear.weight.dim() == 2 && linear.weight.size(0) == out_features &&
                     linear.weight.size(1) == in_features,
                 kOp, ": the Linear's weight must be [", out_features, ", ", in_features, "]");
  const Tensor w = f32_cpu_contiguous(linear.weight);
  const QParams wq = weight_qparams(w);  // checks the weight is finite
  weight_codes = register_buffer("weight_codes", quantize(w, wq).contiguous());
  weight_scale = register_buffer("weight_scale", wq.scale.contiguous());
  Tensor b;
  if (linear.bias.defined()) {
    b = f32_cpu_contiguous(linear.bias).clone();
    const float* bp = b.data<float>();
    for (int64_t i = 0; i < b.numel(); ++i)
      MANTISSA_CHECK(std::isfinite(bp[i]), kOp, ": bias ", i, " of the Linear is not finite");
  }
  bias = register_buffer("bias", b);
  training_ = false;
}

QParams QuantizedLinearDynamic::input_qparams(const Tensor& input) const {
  check_input(input, in_features);
  MANTISSA_CHECK(input.numel() > 0, kOp, ": an empty input has no range to quantize");
  NoGradGuard no_grad;
  auto [lo, hi] = batch_range(f32_cpu_contiguous(input));
  return calculate_qparams(lo, hi, activation_spec());
}

QTensor QuantizedLinearDynamic::quantize_input(const Tensor& input) const {
  check_input(input, in_features);
  MANTISSA_CHECK(input.numel() > 0, kOp, ": an empty input has no range to quantize");
  NoGradGuard no_grad;
  const Tensor x = f32_cpu_contiguous(input);
  auto [lo, hi] = batch_range(x);
  const QParams qp = calculate_qparams(lo, hi, activation_spec());
  return QTensor{quantize_u8(x, qp), qp};
}

Tensor QuantizedLinearDynamic::forward(const Tensor& input) {
  check_input(input, in_features);
  NoGradGuard no_grad;
  Shape out_shape = input.sizes();
  out_shape.back() = out_features;
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < input.dim(); ++d) rows *= input.size(d);
  Tensor out = empty({rows, out_features}, TensorOptions(DType::F32));
  if (rows == 0 || out_features == 0) return out.view(out_shape);
  if (in_features == 0) {
    // An empty reduction: the accumulator is 0, the output is the bias.
    float* op = out.data<float>();
    const float* bp = bias.defined() ? bias.data<float>() : nullptr;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < out_features; ++c) op[i * out_features + c] = bp ? bp[c] : 0.0f;
    return out.view(out_shape);
  }
  const QTensor qx = quantize_input(input);
  const Tensor codes = qx.codes.view({rows, in_features});
  kernels::qlinear_dequant(out, codes, weight_codes, bias, qx.scale(), qx.zero_point(), weight_scale, impl,
                           weight_cache.get());
  return out.view(out_shape);
}

std::string QuantizedLinearDynamic::extra_repr() const {
  std::ostringstream s;
  s << "in_features=" << in_features << ", out_features=" << out_features
    << ", bias=" << (bias.defined() ? "True" : "False")
    << ", weight=int8 symmetric per-channel, activation=uint8 affine per-tensor (dynamic)";
  return s.str();
}

// ---- quantize_dynamic ------------------------------------------------------------------------

int64_t quantize_dynamic(nn::Module& model) {
  // Collected first (model itself included), converted after: set_quantized registers a child,
  // which the walk must not see mid-iteration. A Linear shared by several parents is one object,
  // visited once, so it becomes one shared int8 layer.
  std::vector<nn::Linear*> linears;
  model.apply([&](nn::Module& m) {
    auto* lin = dynamic_cast<nn::Linear*>(&m);
    if (lin && typeid(m) == typeid(nn::Linear) && !lin->quantized() &&
        std::find(linears.begin(), linears.end(), lin) == linears.end())
      linears.push_back(lin);
  });
  for (nn::Linear* lin : linears) {
    MANTISSA_CHECK(!lin->weight_fake_quant() && !lin->activation_post_process(),
                   "quantize_dynamic: a Linear carries fake quantizers (prepared for QAT or static PTQ); use "
                   "quant::convert for it instead. Nothing was changed");
  }
  // Everything is built before anything changes, so a failing construction changes nothing.
  std::vector<std::shared_ptr<QuantizedLinearDynamic>> built;
  built.reserve(linears.size());
  for (nn::Linear* lin : linears) built.push_back(std::make_shared<QuantizedLinearDynamic>(*lin));
  for (size_t i = 0; i < linears.size(); ++i) {
    nn::Linear& lin = *linears[i];
    if (lin.has_parameter("weight")) lin.remove_parameter("weight");
    if (lin.has_parameter("bias")) lin.remove_parameter("bias");
    lin.weight = Tensor();
    lin.bias = Tensor();
    lin.set_quantized(built[i]);
  }
  return static_cast<int64_t>(linears.size());
}

}  // namespace mantissa::quant
