// CUDA kernels on quantized codes (see qtensor_ops.h): relu and quantized add through cuda_map
// (the element math is qtensor_ops.h's, shared with the CPU, so codes match bit for bit), and
// max pooling of contiguous NCHW codes with one thread per output element.
#include <limits>

#include "core/kernels/cuda_common.cuh"
#include "core/kernels/qtensor_ops.h"

namespace mantissa::kernels::cuda {

namespace {

constexpr DTypeSet kCodeTypes = dtype_bit(DType::U8) | dtype_bit(DType::I8);

template <typename T>
struct ReluCodes {
  T zero_point;
  __device__ T operator()(T q) const { return q > zero_point ? q : zero_point; }
};

template <typename T>
struct AddCodes {
  QAddParams p;
  __device__ T operator()(T a, T b) const {
    // qadd_value clamps to [qmin, qmax], the range of T, so the narrowing is exact.
    return static_cast<T>(qadd_value(static_cast<int32_t>(a), static_cast<int32_t>(b), p));
  }
};

struct PoolGeo {
  int64_t h, w, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
};

// out and x contiguous [planes, ho, wo] / [planes, h, w]; the window is clipped to the input,
// so padding never takes part in the max (PyTorch pads with -inf).
template <typename T>
__global__ void max_pool_codes_kernel(T* __restrict__ out, const T* __restrict__ x, PoolGeo g, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t ox = i % g.wo;
    const int64_t oy = (i / g.wo) % g.ho;
    const int64_t plane = i / (g.wo * g.ho);
    const T* src = x + plane * g.h * g.w;
    const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
    const int64_t ys = y0 > 0 ? y0 : 0, xs = x0 > 0 ? x0 : 0;
    const int64_t ye = y0 + g.kh < g.h ? y0 + g.kh : g.h, xe = x0 + g.kw < g.w ? x0 + g.kw : g.w;
    T best = std::numeric_limits<T>::lowest();
    for (int64_t iy = ys; iy < ye; ++iy) {
      for (int64_t ix = xs; ix < xe; ++ix) {
        const T v = src[iy * g.w + ix];
        best = v > best ? v : best;
      }
    }
    out[i] = best;
  }
}

void check_same_device(const char* op, const Tensor& out, std::initializer_list<const Tensor*> in) {
  MANTISSA_CHECK(out.is_cuda(), op, ": expected a CUDA output, got one on ", out.device());
  for (const Tensor* t : in)
    MANTISSA_CHECK(t->device() == out.device(), op, ": expected every tensor on ", out.device(), ", got a ",
                   shape_str(t->sizes()), " ", t->dtype(), " tensor on ", t->device());
}

}  // namespace

void quantized_relu(const Tensor& out, const Tensor& x, int32_t zero_point) {
  constexpr const char* op = "quantized relu";
  check_same_device(op, out, {&x});
  MANTISSA_CHECK(out.dtype() == x.dtype() && out.sizes() == x.sizes(), op, ": output ", shape_str(out.sizes()), " ",
                 out.dtype(), " does not match input ", shape_str(x.sizes()), " ", x.dtype());
  visit_dtype<kCodeTypes>(x.dtype(), op, [&]<typename T>() {
    cuda_map<T, T>(op, ReluCodes<T>{static_cast<T>(zero_point)}, out, {x});
  });
}

void quantized_add(const Tensor& out, const Tensor& a, const Tensor& b, const QAddParams& p) {
  constexpr const char* op = "quantized_add";
  check_same_device(op, out, {&a, &b});
  MANTISSA_CHECK(a.dtype() == b.dtype() && out.dtype() == a.dtype() && a.sizes() == b.sizes() &&
                     out.sizes() == a.sizes(),
                 op, ": operands ", shape_str(a.sizes()), " ", a.dtype(), " and ", shape_str(b.sizes()), " ", b.dtype(),
                 " do not match the output ", shape_str(out.sizes()), " ", out.dtype());
  visit_dtype<kCodeTypes>(a.dtype(), op, [&]<typename T>() { cuda_map<T, T, T>(op, AddCodes<T>{p}, out, {a, b}); });
}

void quantized_max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  constexpr const char* op = "quantized max_pool2d";
  check_same_device(op, out, {&x});
  MANTISSA_CHECK(x.dim() == 4 && out.dim() == 4 && x.is_contiguous() && out.is_contiguous() &&
                     out.dtype() == x.dtype() && out.size(0) == x.size(0) && out.size(1) == x.size(1),
                 op, ": expected contiguous [N, C, H, W] codes of one dtype, got input ", shape_str(x.sizes()), " ",
                 x.dtype(), " and output ", shape_str(out.sizes()), " ", out.dtype());
  const int64_t total = out.numel();
  if (total == 0) return;
  DeviceGuard guard(out);
  const PoolGeo g{x.size(2), x.size(3), out.size(2), out.size(3), p.kernel_h, p.kernel_w,
                  p.stride_h, p.stride_w, p.pad_h, p.pad_w};
  visit_dtype<kCodeTypes>(x.dtype(), op, [&]<typename T>() {
    max_pool_codes_kernel<T><<<grid_for(total), kBlock, 0, stream_for(out)>>>(out.data<T>(), x.data<T>(), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

}  // namespace mantissa::kernels::cuda
