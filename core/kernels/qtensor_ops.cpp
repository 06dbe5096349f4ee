// CPU kernels on quantized codes (see qtensor_ops.h); CUDA tensors go to qtensor_ops.cu.
#include "core/kernels/qtensor_ops.h"

#include <algorithm>
#include <limits>

#include "core/kernels/loops.h"
#include "core/kernels/operand_device.h"

namespace mantissa::kernels {

namespace {
constexpr DTypeSet kCodeTypes = dtype_bit(DType::U8) | dtype_bit(DType::I8);
}  // namespace

void quantized_relu(const Tensor& out, const Tensor& x, int32_t zero_point) {
  constexpr const char* op = "quantized relu";
  if (operands_on_cuda(op, {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::quantized_relu(out, x, zero_point);
#else
    cuda_build_required(op, out.device());
#endif
  }
  MANTISSA_ASSERT(out.dtype() == x.dtype() && out.sizes() == x.sizes(), op, ": operands disagree");
  visit_dtype<kCodeTypes>(x.dtype(), op, [&]<typename T>() {
    const T z = static_cast<T>(zero_point);
    map<T, T>(out, [z](auto q) { return std::max<decltype(q)>(q, z); }, x);
  });
}

namespace {
// The common 2x2 / stride-2 window with every window inside the input: two rows, pairwise maxima,
// no bounds tests, so the compiler vectorizes it (the generic loop runs ~10x slower on codes).
template <typename T>
void qmax_pool_2x2_plane(const T* __restrict src, T* __restrict dst, int64_t w, int64_t ho, int64_t wo) {
  for (int64_t oy = 0; oy < ho; ++oy) {
    const T* r0 = src + 2 * oy * w;
    const T* r1 = r0 + w;
    T* d = dst + oy * wo;
    for (int64_t ox = 0; ox < wo; ++ox) {
      const T a = std::max(r0[2 * ox], r0[2 * ox + 1]);
      const T b = std::max(r1[2 * ox], r1[2 * ox + 1]);
      d[ox] = std::max(a, b);
    }
  }
}
}  // namespace

void quantized_max_pool2d(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  constexpr const char* op = "quantized max_pool2d";
  if (operands_on_cuda(op, {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::quantized_max_pool2d(out, x, p);
#else
    cuda_build_required(op, out.device());
#endif
  }
  MANTISSA_ASSERT(x.dim() == 4 && out.dim() == 4 && x.is_contiguous() && out.is_contiguous() &&
                      out.dtype() == x.dtype(), op, ": expected contiguous 4-D codes of one dtype");
  if (out.numel() == 0) return;
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = out.size(2), wo = out.size(3);
  visit_dtype<kCodeTypes>(x.dtype(), op, [&]<typename T>() {
    const T* xp = x.data<T>();
    T* op_ = out.data<T>();
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, h * w));
    const bool fast2x2 = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                         p.pad_w == 0 && 2 * ho <= h && 2 * wo <= w;
    parallel_for(planes, grain, [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* src = xp + pl * h * w;
        T* dst = op_ + pl * ho * wo;
        if (fast2x2) {
          qmax_pool_2x2_plane(src, dst, w, ho, wo);
          continue;
        }
        for (int64_t oy = 0; oy < ho; ++oy) {
          // The window clipped to the input: padded positions are skipped, never compared.
          const int64_t y0 = oy * p.stride_h - p.pad_h;
          const int64_t ys = std::max<int64_t>(y0, 0), ye = std::min<int64_t>(y0 + p.kernel_h, h);
          for (int64_t ox = 0; ox < wo; ++ox) {
            const int64_t x0 = ox * p.stride_w - p.pad_w;
            const int64_t xs = std::max<int64_t>(x0, 0), xe = std::min<int64_t>(x0 + p.kernel_w, w);
            T best = std::numeric_limits<T>::lowest();
            for (int64_t iy = ys; iy < ye; ++iy)
              for (int64_t ix = xs; ix < xe; ++ix) best = std::max(best, src[iy * w + ix]);
            dst[oy * wo + ox] = best;
          }
        }
      }
    });
  });
}

void quantized_add(const Tensor& out, const Tensor& a, const Tensor& b, const QAddParams& p) {
  constexpr const char* op = "quantized_add";
  if (operands_on_cuda(op, {&out, &a, &b})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::quantized_add(out, a, b, p);
#else
    cuda_build_required(op, out.device());
#endif
  }
  MANTISSA_ASSERT(a.dtype() == b.dtype() && out.dtype() == a.dtype() && a.sizes() == b.sizes() &&
                      out.sizes() == a.sizes(), op, ": operands disagree");
  visit_dtype<kCodeTypes>(a.dtype(), op, [&]<typename T>() {
    map<T, T, T>(out, [p](auto qa, auto qb) {
      return qadd_value(static_cast<int32_t>(qa), static_cast<int32_t>(qb), p);
    }, a, b);
  });
}

}  // namespace mantissa::kernels
