// CPU quantization kernels over kernels::map (broadcast scale/zero point, F16/BF16 inputs read
// as float); the rounding rule is quant_round.h's, shared with quantize.cu.
#include "core/kernels/quantize.h"

#include "core/error.h"
#include "core/kernels/loops.h"
#include "core/kernels/quant_round.h"

namespace mantissa::kernels {

namespace {
void check_args(const char* op, const Tensor& x, const Tensor& scale, const Tensor& zero_point) {
  MANTISSA_CHECK(scale.dtype() == DType::F32 && zero_point.dtype() == DType::I32, op,
                 ": expected an F32 scale and an I32 zero point, got ", scale.dtype(), " and ", zero_point.dtype());
  MANTISSA_CHECK(scale.device() == x.device() && zero_point.device() == x.device(), op,
                 ": expected x, scale and zero point on one device, got ", x.device(), ", ", scale.device(), " and ",
                 zero_point.device());
}

#ifndef MANTISSA_HAVE_CUDA
[[noreturn]] void no_cuda(const char* op, const Tensor& t) {
  MANTISSA_ERROR(op, ": ", t.device(), " tensors need a build with CUDA (configure with -DMANTISSA_CUDA=ON)");
}
#endif
}  // namespace

void quantize(const Tensor& q, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int32_t qmin,
              int32_t qmax) {
  check_args("quantize", x, scale, zero_point);
  MANTISSA_CHECK(x.dtype() == DType::F32, "quantize: expected an F32 input, got ", x.dtype());
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::quantize(q, x, scale, zero_point, qmin, qmax);
#else
    no_cuda("quantize", x);
#endif
  }
  auto f = [qmin, qmax](float v, float s, int32_t zp) {
    return quantize_value(v, quant_inv_scale(s), zp, qmin, qmax);
  };
  if (q.dtype() == DType::I8) map<int8_t, float, float, int32_t>(q, f, x, scale, zero_point);
  else if (q.dtype() == DType::U8) map<uint8_t, float, float, int32_t>(q, f, x, scale, zero_point);
  else MANTISSA_ERROR("quantize: codes are stored as I8 or U8, got ", q.dtype());
}

void dequantize(const Tensor& out, const Tensor& q, const Tensor& scale, const Tensor& zero_point) {
  check_args("dequantize", q, scale, zero_point);
  MANTISSA_CHECK(out.dtype() == DType::F32, "dequantize: the output is F32, got ", out.dtype());
  if (q.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::dequantize(out, q, scale, zero_point);
#else
    no_cuda("dequantize", q);
#endif
  }
  auto f = [](auto v, float s, int32_t zp) { return dequantize_value(static_cast<int32_t>(v), s, zp); };
  if (q.dtype() == DType::I8) map<float, int8_t, float, int32_t>(out, f, q, scale, zero_point);
  else if (q.dtype() == DType::U8) map<float, uint8_t, float, int32_t>(out, f, q, scale, zero_point);
  else MANTISSA_ERROR("dequantize: codes are stored as I8 or U8, got ", q.dtype());
}

void fake_quantize(const Tensor& out, const Tensor& mask, const Tensor& x, const Tensor& scale,
                   const Tensor& zero_point, int32_t qmin, int32_t qmax) {
  check_args("fake_quantize", x, scale, zero_point);
  MANTISSA_CHECK(is_floating(x.dtype()) && out.dtype() == x.dtype(), "fake_quantize: expected a floating input and "
                 "an output of the same dtype, got ", x.dtype(), " and ", out.dtype());
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::fake_quantize(out, mask, x, scale, zero_point, qmin, qmax);
#else
    no_cuda("fake_quantize", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "fake_quantize", [&]<typename T>() {
    // F64 inputs are quantized in F32 too: the codes are F32 math in PyTorch for every dtype.
    map<T, T, float, int32_t>(out, [qmin, qmax](auto v, float s, int32_t zp) {
      const float inv = quant_inv_scale(s);
      return dequantize_value(quantize_value(static_cast<float>(v), inv, zp, qmin, qmax), s, zp);
    }, x, scale, zero_point);
    if (mask.defined()) {
      map<bool, T, float, int32_t>(mask, [qmin, qmax](auto v, float s, int32_t zp) {
        return quant_in_range(static_cast<float>(v), quant_inv_scale(s), zp, qmin, qmax);
      }, x, scale, zero_point);
    }
  });
}

void fake_quantize_learnable_backward(const Tensor& dx, const Tensor& dscale, const Tensor& dzero_point,
                                      const Tensor& x, const Tensor& dy, const Tensor& scale,
                                      const Tensor& zero_point, int32_t qmin, int32_t qmax, float grad_factor,
                                      bool per_tensor_order) {
  for (const Tensor* t : {&dx, &dscale, &dzero_point, &x, &dy, &scale, &zero_point})
    MANTISSA_CHECK(t->dtype() == DType::F32 && t->device() == x.device(), "fake_quantize_learnable: expected F32 "
                   "tensors on ", x.device(), ", got ", t->dtype(), " on ", t->device());
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::fake_quantize_learnable_backward(dx, dscale, dzero_point, x, dy, scale, zero_point, qmin, qmax,
                                                  grad_factor, per_tensor_order);
#else
    no_cuda("fake_quantize_learnable", x);
#endif
  }
  // Three passes, one output each: the formulas are cheap next to the memory traffic.
  auto args = [=](float v, float g, float s, float z) { return lsq_grads(v, g, s, z, qmin, qmax, grad_factor, per_tensor_order); };
  map<float, float, float, float, float>(dx, [&](float v, float g, float s, float z) { return args(v, g, s, z).dx; },
                                         x, dy, scale, zero_point);
  map<float, float, float, float, float>(dscale, [&](float v, float g, float s, float z) { return args(v, g, s, z).dscale; },
                                         x, dy, scale, zero_point);
  map<float, float, float, float, float>(
      dzero_point, [&](float v, float g, float s, float z) { return args(v, g, s, z).dzero_point; }, x, dy, scale,
      zero_point);
}

}  // namespace mantissa::kernels
