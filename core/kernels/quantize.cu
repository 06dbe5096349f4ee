// CUDA quantization kernels: the same quant_round.h rule as the CPU, through cuda_map (scale and
// zero point broadcast per tensor or per channel).
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/quant_round.h"
#include "core/kernels/quantize.h"

namespace mantissa::kernels::cuda {

namespace {
struct QuantizeF {
  int32_t qmin, qmax;
  __device__ int32_t operator()(float v, float s, int32_t zp) const {
    return quantize_value(v, quant_inv_scale(s), zp, qmin, qmax);
  }
};
struct DequantizeF {
  __device__ float operator()(int32_t q, float s, int32_t zp) const { return dequantize_value(q, s, zp); }
};
template <typename T>
struct FakeQuantF {
  int32_t qmin, qmax;
  __device__ float operator()(T v, float s, int32_t zp) const {
    return dequantize_value(quantize_value(static_cast<float>(v), quant_inv_scale(s), zp, qmin, qmax), s, zp);
  }
};
template <typename T>
struct InRangeF {
  int32_t qmin, qmax;
  __device__ bool operator()(T v, float s, int32_t zp) const {
    return quant_in_range(static_cast<float>(v), quant_inv_scale(s), zp, qmin, qmax);
  }
};
}  // namespace

void quantize(const Tensor& q, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int32_t qmin,
              int32_t qmax) {
  if (q.dtype() == DType::I8)
    cuda_map<int8_t, float, float, int32_t>("quantize", QuantizeF{qmin, qmax}, q, {x, scale, zero_point});
  else if (q.dtype() == DType::U8)
    cuda_map<uint8_t, float, float, int32_t>("quantize", QuantizeF{qmin, qmax}, q, {x, scale, zero_point});
  else
    MANTISSA_ERROR("quantize: codes are stored as I8 or U8, got ", q.dtype());
}

void dequantize(const Tensor& out, const Tensor& q, const Tensor& scale, const Tensor& zero_point) {
  if (q.dtype() == DType::I8)
    cuda_map<float, int8_t, float, int32_t>("dequantize", DequantizeF{}, out, {q, scale, zero_point});
  else if (q.dtype() == DType::U8)
    cuda_map<float, uint8_t, float, int32_t>("dequantize", DequantizeF{}, out, {q, scale, zero_point});
  else
    MANTISSA_ERROR("dequantize: codes are stored as I8 or U8, got ", q.dtype());
}

namespace {
template <typename T>
void fake_quantize_typed(const Tensor& out, const Tensor& mask, const Tensor& x, const Tensor& scale,
                         const Tensor& zero_point, int32_t qmin, int32_t qmax) {
  using C = dev_compute_t<T>;
  cuda_map<T, T, float, int32_t>("fake_quantize", FakeQuantF<C>{qmin, qmax}, out, {x, scale, zero_point});
  if (mask.defined())
    cuda_map<bool, T, float, int32_t>("fake_quantize", InRangeF<C>{qmin, qmax}, mask, {x, scale, zero_point});
}
}  // namespace

void fake_quantize(const Tensor& out, const Tensor& mask, const Tensor& x, const Tensor& scale,
                   const Tensor& zero_point, int32_t qmin, int32_t qmax) {
  switch (x.dtype()) {
    case DType::F64: return fake_quantize_typed<double>(out, mask, x, scale, zero_point, qmin, qmax);
    case DType::F32: return fake_quantize_typed<float>(out, mask, x, scale, zero_point, qmin, qmax);
    case DType::F16: return fake_quantize_typed<Half>(out, mask, x, scale, zero_point, qmin, qmax);
    case DType::BF16: return fake_quantize_typed<BFloat16>(out, mask, x, scale, zero_point, qmin, qmax);
    default: MANTISSA_ERROR("fake_quantize: expected a floating input, got ", x.dtype());
  }
}

namespace {
// Which of the three LSQ gradients a pass writes.
template <int Which>
struct LsqF {
  int32_t qmin, qmax;
  float grad_factor;
  bool per_tensor_order;
  __device__ float operator()(float v, float g, float s, float z) const {
    LsqGrads r = lsq_grads(v, g, s, z, qmin, qmax, grad_factor, per_tensor_order);
    return Which == 0 ? r.dx : Which == 1 ? r.dscale : r.dzero_point;
  }
};
}  // namespace

void fake_quantize_learnable_backward(const Tensor& dx, const Tensor& dscale, const Tensor& dzero_point,
                                      const Tensor& x, const Tensor& dy, const Tensor& scale,
                                      const Tensor& zero_point, int32_t qmin, int32_t qmax, float grad_factor,
                                      bool per_tensor_order) {
  const char* op = "fake_quantize_learnable";
  cuda_map<float, float, float, float, float>(op, LsqF<0>{qmin, qmax, grad_factor, per_tensor_order}, dx,
                                              {x, dy, scale, zero_point});
  cuda_map<float, float, float, float, float>(op, LsqF<1>{qmin, qmax, grad_factor, per_tensor_order}, dscale,
                                              {x, dy, scale, zero_point});
  cuda_map<float, float, float, float, float>(op, LsqF<2>{qmin, qmax, grad_factor, per_tensor_order}, dzero_point,
                                              {x, dy, scale, zero_point});
}

}  // namespace mantissa::kernels::cuda
