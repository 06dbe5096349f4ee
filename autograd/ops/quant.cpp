// Fake quantization ops: checks, the quantize-dequantize forward (core/kernels/quantize) and the
// straight-through backward (the incoming gradient where x was representable, zero elsewhere).
#include <cmath>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/quantize.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

constexpr int64_t kCodeMin = -(int64_t(1) << 31), kCodeMax = (int64_t(1) << 31) - 1;

void check_fake_quant(const char* op, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                      int64_t qmin, int64_t qmax) {
  MANTISSA_CHECK(x.defined() && scale.defined() && zero_point.defined(), op, ": got an undefined tensor");
  MANTISSA_CHECK(x.is_floating_point(), op, ": expected a floating input, got ", x.dtype());
  autograd::check_backend(x, op);
  MANTISSA_CHECK(qmin <= qmax && qmin >= kCodeMin && qmax <= kCodeMax, op, ": expected qmin <= qmax within int32, got [",
                 qmin, ", ", qmax, "]");
  MANTISSA_CHECK(scale.dtype() == DType::F32, op, ": scale must be F32, got ", scale.dtype());
  MANTISSA_CHECK(zero_point.dtype() == DType::I32, op, ": zero_point must be I32, got ", zero_point.dtype());
  MANTISSA_CHECK(scale.device() == x.device() && zero_point.device() == x.device(), op,
                 ": expected x, scale and zero_point on one device, got ", x.device(), ", ", scale.device(), " and ",
                 zero_point.device());
  if (axis < 0) {
    MANTISSA_CHECK(scale.numel() == 1 && zero_point.numel() == 1, op,
                   ": expected one scale and one zero point, got shapes ", shape_str(scale.sizes()), " and ",
                   shape_str(zero_point.sizes()));
  } else {
    MANTISSA_CHECK(axis < x.dim(), op, ": axis ", axis, " is out of range for input ", shape_str(x.sizes()));
    MANTISSA_CHECK(scale.dim() == 1 && scale.numel() == x.size(axis) && zero_point.sizes() == scale.sizes(), op,
                   ": expected scale and zero_point of shape [", x.size(axis), "] (dim ", axis, " of ",
                   shape_str(x.sizes()), "), got ", shape_str(scale.sizes()), " and ", shape_str(zero_point.sizes()));
  }
}

// scale / zero point viewed to broadcast against x.
Tensor along(const Tensor& p, int64_t axis, int64_t x_dim) {
  Tensor c = p.detach().contiguous();
  if (axis < 0) return c.reshape({});
  Shape shape(static_cast<size_t>(x_dim), 1);
  shape[static_cast<size_t>(axis)] = c.numel();
  return c.view(shape);
}

Tensor fake_quant(OpId id, const char* op, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                  int64_t qmin, int64_t qmax) {
  check_fake_quant(op, x, scale, zero_point, axis, qmin, qmax);
  if (auto c = autograd::autocast(id, x)) return fake_quant(id, op, (*c)[0], scale, zero_point, axis, qmin, qmax);
  const TensorOptions opts = TensorOptions(x.dtype()).device(x.device());
  Tensor out = empty(x.sizes(), opts);
  const bool grad = autograd::needs_grad(x);
  Tensor mask = grad ? empty(x.sizes(), TensorOptions(DType::Bool).device(x.device())) : Tensor();
  kernels::fake_quantize(out, mask, x.detach(), along(scale, axis, x.dim()), along(zero_point, axis, x.dim()),
                         static_cast<int32_t>(qmin), static_cast<int32_t>(qmax));
  if (grad) {
    // Only the Bool mask is saved (one byte per element), as PyTorch's cachemask variant.
    record(id, {x}, {out}, [mask](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor zero = zeros({}, TensorOptions(g[0].dtype()).device(g[0].device()));
      return {where(mask, g[0], zero)};
    });
  }
  return out;
}

// The zero point as the LSQ kernels use it: the forward rounds half to even; PyTorch's
// per-tensor backward adds 0.5 and truncates instead (the per-channel one rounds like the
// forward); both clamp to [qmin, qmax].
Tensor lsq_zero_point(const Tensor& zp, int64_t qmin, int64_t qmax, bool truncate_half_up) {
  Tensor z = zp.detach().contiguous().cpu();
  Tensor r = empty(z.sizes(), DType::F32);
  for (int64_t i = 0; i < z.numel(); ++i) {
    const float v = z.data<float>()[i];
    float q = truncate_half_up ? v + 0.5f : std::nearbyint(v);
    q = std::fmin(std::fmax(q, static_cast<float>(qmin)), static_cast<float>(qmax));
    r.data<float>()[i] = truncate_half_up ? std::trunc(q) : q;
  }
  return r.to(zp.device());
}

Tensor fake_quant_learnable(const char* op, const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                            int64_t axis, int64_t qmin, int64_t qmax, double grad_factor) {
  MANTISSA_CHECK(x.defined() && scale.defined() && zero_point.defined(), op, ": got an undefined tensor");
  MANTISSA_CHECK(zero_point.dtype() == DType::F32, op, ": zero_point must be F32 (it is learned), got ",
                 zero_point.dtype());
  MANTISSA_CHECK(std::isfinite(grad_factor), op, ": grad_factor must be finite, got ", grad_factor);
  const int64_t channels = axis < 0 ? 1 : (axis < x.dim() ? x.size(axis) : -1);
  MANTISSA_CHECK(scale.dim() == 1 && scale.numel() == channels && zero_point.sizes() == scale.sizes(), op,
                 ": expected scale and zero_point of shape [", channels, "], got ", shape_str(scale.sizes()), " and ",
                 shape_str(zero_point.sizes()));
  // The forward is the plain fake quantization with the rounded zero point.
  Tensor zp_int = lsq_zero_point(zero_point, qmin, qmax, false).to(DType::I32);
  check_fake_quant(op, x, scale, zp_int, axis, qmin, qmax);
  if (auto c = autograd::autocast(OpId::fake_quantize_learnable, x))
    return fake_quant_learnable(op, (*c)[0], scale, zero_point, axis, qmin, qmax, grad_factor);
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::fake_quantize(out, Tensor(), x.detach(), along(scale, axis, x.dim()), along(zp_int, axis, x.dim()),
                         static_cast<int32_t>(qmin), static_cast<int32_t>(qmax));
  if (autograd::needs_grad(x, scale, zero_point)) {
    record(OpId::fake_quantize_learnable, {x, scale, zero_point}, {out},
           [sx = SavedTensor(x), ss = SavedTensor(scale), sz = SavedTensor(zero_point), axis, qmin, qmax,
            grad_factor](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xv = sx.unpack(), sv = ss.unpack();
             Tensor xf = xv.dtype() == DType::F32 ? xv : xv.to(DType::F32);
             Tensor dy = g[0].dtype() == DType::F32 ? g[0] : g[0].to(DType::F32);
             const TensorOptions f32 = TensorOptions(DType::F32).device(xv.device());
             Tensor zb = lsq_zero_point(sz.unpack(), qmin, qmax, axis < 0);
             Tensor dx = empty(xv.sizes(), f32), dscale = empty(xv.sizes(), f32), dzp = empty(xv.sizes(), f32);
             kernels::fake_quantize_learnable_backward(dx, dscale, dzp, xf, dy, along(sv, axis, xv.dim()),
                                                       along(zb, axis, xv.dim()), static_cast<int32_t>(qmin),
                                                       static_cast<int32_t>(qmax), static_cast<float>(grad_factor),
                                                       axis < 0);
             Shape dims;
             for (int64_t d = 0; d < xv.dim(); ++d)
               if (d != axis) dims.push_back(d);
             Tensor gs = axis < 0 ? sum(dscale).reshape({1}) : sum(dscale, dims);
             Tensor gz = axis < 0 ? sum(dzp).reshape({1}) : sum(dzp, dims);
             return {dx, gs, gz};
           });
  }
  return out;
}

}  // namespace

Tensor fake_quantize_learnable_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                 int64_t qmin, int64_t qmax, double grad_factor) {
  return fake_quant_learnable("fake_quantize_learnable_per_tensor_affine", x, scale, zero_point, -1, qmin, qmax,
                              grad_factor);
}

Tensor fake_quantize_learnable_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                  int64_t axis, int64_t qmin, int64_t qmax, double grad_factor) {
  MANTISSA_CHECK(axis >= 0, "fake_quantize_learnable_per_channel_affine: axis must be >= 0, got ", axis);
  return fake_quant_learnable("fake_quantize_learnable_per_channel_affine", x, scale, zero_point, axis, qmin, qmax,
                              grad_factor);
}

Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t qmin,
                                       int64_t qmax) {
  return fake_quant(OpId::fake_quantize, "fake_quantize_per_tensor_affine", x, scale, zero_point, -1, qmin, qmax);
}

Tensor fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  MANTISSA_CHECK(std::isfinite(scale) && scale > 0, "fake_quantize_per_tensor_affine: scale must be positive and "
                 "finite, got ", scale);
  MANTISSA_CHECK(zero_point >= qmin && zero_point <= qmax, "fake_quantize_per_tensor_affine: zero_point ", zero_point,
                 " is outside [", qmin, ", ", qmax, "]");
  const Device d = x.defined() ? x.device() : kCPU;
  return fake_quantize_per_tensor_affine(x, full({}, scale, TensorOptions(DType::F32).device(d)),
                                         full({}, static_cast<double>(zero_point), TensorOptions(DType::I32).device(d)),
                                         qmin, qmax);
}

Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                                        int64_t qmin, int64_t qmax) {
  MANTISSA_CHECK(axis >= 0, "fake_quantize_per_channel_affine: axis must be >= 0, got ", axis);
  return fake_quant(OpId::fake_quantize, "fake_quantize_per_channel_affine", x, scale, zero_point, axis, qmin, qmax);
}

}  // namespace mantissa
