// Gradient clipping kernels: norm partials accumulated in F64 with OpenMP reductions (a
// gradient of millions of F32 elements keeps full F32 accuracy), scale and clamp in place.
#include "core/kernels/grad_clip.h"

#include <cmath>
#include <limits>

#include "core/kernels/loops.h"
#include "core/kernels/operand_device.h"

namespace mantissa::kernels {
namespace {

template <typename T>
double norm_partial_typed(const T* __restrict x, int64_t n, double p) {
  const bool par = n > kParallelGrain;
  if (std::isinf(p)) {
    double mx = 0.0;
    int64_t nans = 0;
#pragma omp parallel for simd reduction(max : mx) reduction(+ : nans) if (par)
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(load(x[i])));
      mx = a > mx ? a : mx;
      nans += a != a;
    }
    return nans ? std::numeric_limits<double>::quiet_NaN() : mx;
  }
  double acc = 0.0;
  if (p == 0.0) {
#pragma omp parallel for simd reduction(+ : acc) if (par)
    for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(load(x[i])) != 0.0 ? 1.0 : 0.0;
  } else if (p == 1.0) {
#pragma omp parallel for simd reduction(+ : acc) if (par)
    for (int64_t i = 0; i < n; ++i) acc += std::fabs(static_cast<double>(load(x[i])));
  } else if (p == 2.0) {
#pragma omp parallel for simd reduction(+ : acc) if (par)
    for (int64_t i = 0; i < n; ++i) {
      const double v = static_cast<double>(load(x[i]));
      acc += v * v;
    }
  } else {
#pragma omp parallel for reduction(+ : acc) if (par)
    for (int64_t i = 0; i < n; ++i) acc += std::pow(std::fabs(static_cast<double>(load(x[i]))), p);
  }
  return acc;
}

}  // namespace

double grad_norm_partial(const Tensor& g, double norm_type) {
  if (operands_on_cuda("clip_grad_norm_", {&g})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::grad_norm_partial(g, norm_type);
#else
    cuda_build_required("clip_grad_norm_", g.device());
#endif
  }
  MANTISSA_ASSERT(g.is_contiguous() && g.is_cpu());
  return visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_norm_", [&]<typename T>() {
    return norm_partial_typed<T>(static_cast<const T*>(g.data_ptr()), g.numel(), norm_type);
  });
}

void grad_scale_(const Tensor& g, double coef) {
  if (operands_on_cuda("clip_grad_norm_", {&g})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::grad_scale_(g, coef);
#else
    cuda_build_required("clip_grad_norm_", g.device());
#endif
  }
  MANTISSA_ASSERT(g.is_contiguous() && g.is_cpu());
  visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_norm_", [&]<typename T>() {
    using C = compute_t<T>;
    const C c = static_cast<C>(coef);
    T* __restrict x = static_cast<T*>(g.data_ptr());
    parallel_for(g.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) x[i] = store<T>(load(x[i]) * c);
    });
  });
}

void grad_clamp_(const Tensor& g, double lo, double hi) {
  if (operands_on_cuda("clip_grad_value_", {&g})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::grad_clamp_(g, lo, hi);
#else
    cuda_build_required("clip_grad_value_", g.device());
#endif
  }
  MANTISSA_ASSERT(g.is_contiguous() && g.is_cpu());
  visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_value_", [&]<typename T>() {
    using C = compute_t<T>;
    const C l = static_cast<C>(lo), h = static_cast<C>(hi);
    T* __restrict x = static_cast<T*>(g.data_ptr());
    parallel_for(g.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        // min(max(v, lo), hi) as torch.clamp (hi wins when lo > hi); comparisons with NaN are
        // false, so NaN passes through.
        C v = load(x[i]);
        v = v < l ? l : v;
        x[i] = store<T>(v > h ? h : v);
      }
    });
  });
}

}  // namespace mantissa::kernels
