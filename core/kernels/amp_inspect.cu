// CUDA side of the range statistics (amp_inspect.h): a grid-stride pass with per-thread counters,
// a warp-shuffle and shared-memory block reduction, then one atomicAdd per field per block into
// the stats slot and an atomicMax on the bits of max |x| (non-negative doubles order like their
// bit patterns). Only amp_stats_copy_to_host synchronizes with the host.
#include "core/kernels/amp_inspect.h"
#include "core/kernels/cuda_common.cuh"

#include <cfloat>

namespace mantissa::kernels::cuda {
namespace {

constexpr const char* kOp = "amp_inspect";
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

struct Counts {
  unsigned long long zero = 0, sub = 0, norm = 0, over = 0, nonfinite = 0;
  double max_abs = 0.0;
};

// F32 math for F32/F16/BF16 (the loaded value is exact), F64 for F64: the thresholds are powers
// of two and 65504, exact in both.
template <typename V>
__device__ __forceinline__ void count(V a, Counts& c) {
  constexpr V kFiniteMax = sizeof(V) == 4 ? V(FLT_MAX) : V(DBL_MAX);
  const bool fin = a <= kFiniteMax;  // false for NaN and Inf
  c.zero += a == V(0);
  c.sub += (a > V(0)) & (a < V(kF16SmallestSubnormal));
  c.norm += (a > V(0)) & (a < V(kF16SmallestNormal));
  c.over += fin & (a > V(kF16Max));
  c.nonfinite += !fin;
  if (fin && static_cast<double>(a) > c.max_abs) c.max_abs = static_cast<double>(a);
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_max(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) stats_kernel(const T* __restrict__ x, int64_t n, unsigned long long* slot) {
  Counts c;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const auto v = load(x + i);
    count(v < 0 ? -v : v, c);  // -0 and NaN: the comparisons handle both
  }
  // Block reduction: warps first, then warp 0 over the warps' partials.
  __shared__ unsigned long long part[5][kWarps];
  __shared__ double part_max[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  unsigned long long v[5] = {warp_sum(c.zero), warp_sum(c.sub), warp_sum(c.norm), warp_sum(c.over),
                             warp_sum(c.nonfinite)};
  const double m = warp_max(c.max_abs);
  if (lane == 0) {
#pragma unroll
    for (int f = 0; f < 5; ++f) part[f][warp] = v[f];
    part_max[warp] = m;
  }
  __syncthreads();
  if (warp == 0) {
    unsigned long long w[5];
#pragma unroll
    for (int f = 0; f < 5; ++f) w[f] = warp_sum(lane < kWarps ? part[f][lane] : 0ull);
    const double bm = warp_max(lane < kWarps ? part_max[lane] : 0.0);
    if (lane == 0) {
      // Slot layout: numel, zero, under_sub, under_norm, over, nonfinite, max bits.
      if (blockIdx.x == 0) atomicAdd(slot + 0, static_cast<unsigned long long>(n));
#pragma unroll
      for (int f = 0; f < 5; ++f)
        if (w[f] != 0) atomicAdd(slot + 1 + f, w[f]);
      if (bm > 0.0) atomicMax(slot + 6, static_cast<unsigned long long>(__double_as_longlong(bm)));
    }
  }
}

template <typename T>
void launch(const Tensor& x, unsigned long long* slot, cudaStream_t stream) {
  const int64_t n = x.numel();
  // Enough blocks to fill the GPU a few times over; each thread then loops.
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 4096) blocks = 4096;
  if (blocks < 1) blocks = 1;
  stats_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(static_cast<const T*>(x.data_ptr()), n, slot);
  MANTISSA_CUDA_LAUNCH_CHECK(kOp);
}

}  // namespace

void amp_stats_zero(const Tensor& buffer) {
  if (buffer.numel() == 0) return;
  DeviceGuard guard(buffer);
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(buffer.data_ptr(), 0, buffer.nbytes(), stream_for(buffer)), "amp_stats_buffer");
}

void amp_stats_accumulate(const Tensor& x, const Tensor& buffer, int64_t slot_index) {
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  auto* slot = reinterpret_cast<unsigned long long*>(buffer.data<int64_t>() + slot_index * kAmpStatFields);
  if (x.numel() == 0) return;
  switch (x.dtype()) {
    case DType::F32: return launch<float>(x, slot, stream);
    case DType::F64: return launch<double>(x, slot, stream);
    case DType::F16: return launch<Half>(x, slot, stream);
    case DType::BF16: return launch<BFloat16>(x, slot, stream);
    default: MANTISSA_ERROR(kOp, ": dtype ", x.dtype(), " is not a floating dtype");
  }
}

void amp_stats_copy_to_host(const Tensor& buffer, int64_t* host) {
  DeviceGuard guard(buffer);
  cudaStream_t stream = stream_for(buffer);
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(host, buffer.data_ptr(), buffer.nbytes(), cudaMemcpyDeviceToHost, stream),
                      "amp_stats_read");
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(stream), "amp_stats_read");
}

}  // namespace mantissa::kernels::cuda
