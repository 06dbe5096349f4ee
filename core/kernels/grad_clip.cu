// CUDA kernels behind clip_grad_norm_ / clip_grad_value_ (grad_clip.h): the norm partial of one
// contiguous gradient accumulated in F64 (per-block trees with 16-byte loads, then one block
// combining the block results in a fixed order, read back once), and in-place scale and clamp
// in the gradient's compute type, rounded once on store.
#include <cmath>
#include <limits>

#include "core/kernels/grad_clip.h"
#include "core/kernels/reduce_cuda.cuh"

namespace mantissa::kernels::cuda {

namespace {

enum class NormKind { Count, L1, L2, Lp, Max };

// Max of |g| where any NaN wins, so the partial of a gradient holding a NaN is NaN.
struct NanMaxComb {
  __device__ __forceinline__ double operator()(double a, double b) const {
    if (a != a) return a;
    if (b != b) return b;
    return b > a ? b : a;
  }
};

template <NormKind kKind>
__device__ __forceinline__ double norm_fold(double a, double v, double p) {
  if constexpr (kKind == NormKind::Count) return a + (v != 0.0 ? 1.0 : 0.0);
  if constexpr (kKind == NormKind::L1) return a + fabs(v);
  if constexpr (kKind == NormKind::L2) return a + v * v;
  if constexpr (kKind == NormKind::Lp) return a + pow(fabs(v), p);
  if constexpr (kKind == NormKind::Max) return NanMaxComb{}(a, fabs(v));
}

template <NormKind kKind>
__device__ __forceinline__ double norm_block_reduce(double a, double* scratch) {
  if constexpr (kKind == NormKind::Max) {
    return block_reduce(a, NanMaxComb{}, 0.0, scratch);
  } else {
    return block_reduce(a, SumComb{}, 0.0, scratch);
  }
}

// partials[b] = this block's fold over a grid-strided share of g.
template <typename T, NormKind kKind>
__global__ void norm_partial_kernel(const T* __restrict__ g, int64_t n, double p, double* partials) {
  constexpr int K = 16 / sizeof(T);
  __shared__ double scratch[32];
  const int tid = blockIdx.x * blockDim.x + threadIdx.x;
  const int nt = gridDim.x * blockDim.x;
  double a = 0.0;
  row_loop(
      g, n, true, tid, nt, [&](int64_t i) { a = norm_fold<kKind>(a, static_cast<double>(load(g + i)), p); },
      [&](int64_t i) {
        const auto q = load_vec(g + i);
#pragma unroll
        for (int j = 0; j < K; ++j) a = norm_fold<kKind>(a, static_cast<double>(load(&q.v[j])), p);
      });
  a = norm_block_reduce<kKind>(a, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = a;
}

// One block: out = the partials combined (lanes in order, then the block tree).
template <NormKind kKind>
__global__ void norm_finish_kernel(const double* __restrict__ partials, int count, double* out) {
  __shared__ double scratch[32];
  double a = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    if constexpr (kKind == NormKind::Max) {
      a = NanMaxComb{}(a, partials[i]);
    } else {
      a += partials[i];
    }
  }
  a = norm_block_reduce<kKind>(a, scratch);
  if (threadIdx.x == 0) *out = a;
}

template <typename T>
struct ScaleF {
  using C = dev_compute_t<T>;
  C c;
  __device__ __forceinline__ C operator()(C v) const { return v * c; }
};

template <typename T>
struct ClampF {
  using C = dev_compute_t<T>;
  C lo, hi;
  // min(max(v, lo), hi) as torch.clamp (hi wins when lo > hi); NaN fails both tests and stays.
  __device__ __forceinline__ C operator()(C v) const {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
  }
};

void check_grad(const Tensor& g, const char* op) {
  MANTISSA_CHECK(g.is_cuda(), op, ": expected a CUDA gradient, got one on ", g.device());
  MANTISSA_ASSERT(g.is_contiguous(), op, ": gradient kernels take contiguous tensors");
}

}  // namespace

double grad_norm_partial(const Tensor& g, double norm_type) {
  check_grad(g, "clip_grad_norm_");
  const int64_t n = g.numel();
  if (n == 0) return 0.0;
  DeviceGuard guard(g);
  cudaStream_t s = stream_for(g);
  const int blocks =
      static_cast<int>(std::min<int64_t>(grid_for(n, 8), int64_t(multiprocessor_count(g.device().index)) * 4));
  Tensor work = empty({blocks + 1}, TensorOptions(DType::F64).device(g.device()));
  double* partials = work.data<double>();
  double* result = partials + blocks;
  visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_norm_", [&]<typename T>() {
    auto run = [&]<NormKind kKind>() {
      norm_partial_kernel<T, kKind><<<blocks, kBlock, 0, s>>>(g.data<T>(), n, norm_type, partials);
      MANTISSA_CUDA_LAUNCH_CHECK("clip_grad_norm_");
      norm_finish_kernel<kKind><<<1, kBlock, 0, s>>>(partials, blocks, result);
      MANTISSA_CUDA_LAUNCH_CHECK("clip_grad_norm_");
    };
    if (std::isinf(norm_type)) {
      run.template operator()<NormKind::Max>();
    } else if (norm_type == 0.0) {
      run.template operator()<NormKind::Count>();
    } else if (norm_type == 1.0) {
      run.template operator()<NormKind::L1>();
    } else if (norm_type == 2.0) {
      run.template operator()<NormKind::L2>();
    } else {
      run.template operator()<NormKind::Lp>();
    }
  });
  double host = 0.0;
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(&host, result, sizeof(double), cudaMemcpyDeviceToHost, s), "clip_grad_norm_");
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(s), "clip_grad_norm_");
  return host;
}

void grad_scale_(const Tensor& g, double coef) {
  check_grad(g, "clip_grad_norm_");
  DeviceGuard guard(g);
  visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_norm_", [&]<typename T>() {
    cuda_map<T, T>("clip_grad_norm_", ScaleF<T>{static_cast<dev_compute_t<T>>(coef)}, g, {g});
  });
}

void grad_clamp_(const Tensor& g, double lo, double hi) {
  check_grad(g, "clip_grad_value_");
  DeviceGuard guard(g);
  visit_dtype<kFloatTypes>(g.dtype(), "clip_grad_value_", [&]<typename T>() {
    using C = dev_compute_t<T>;
    cuda_map<T, T>("clip_grad_value_", ClampF<T>{static_cast<C>(lo), static_cast<C>(hi)}, g, {g});
  });
}

}  // namespace mantissa::kernels::cuda
