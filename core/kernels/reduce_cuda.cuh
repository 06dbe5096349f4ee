// Device building blocks shared by the CUDA reduction, softmax, loss and clipping kernels:
// warp-shuffle and block tree reductions with a fixed combination order (so results do not
// depend on scheduling), the SM count for sizing grids, and F32/F64 exp/log overloads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/kernels/cuda_common.cuh"

namespace mantissa::kernels::cuda {

inline constexpr unsigned kFullWarp = 0xffffffffu;

// __shfl_down_sync for any trivially copyable value: arithmetic types directly (narrow ones
// widened to int), anything else (index/value pairs) word by word.
template <typename V>
__device__ __forceinline__ V shfl_down(V v, int delta) {
  if constexpr (std::is_same_v<V, bool>) {
    return __shfl_down_sync(kFullWarp, static_cast<int>(v), delta) != 0;
  } else if constexpr (std::is_integral_v<V> && sizeof(V) < 4) {
    return static_cast<V>(__shfl_down_sync(kFullWarp, static_cast<int>(v), delta));
  } else if constexpr (std::is_integral_v<V> && sizeof(V) == 8) {
    using W = std::conditional_t<std::is_signed_v<V>, long long, unsigned long long>;
    return static_cast<V>(__shfl_down_sync(kFullWarp, static_cast<W>(v), delta));
  } else if constexpr (std::is_arithmetic_v<V>) {
    return __shfl_down_sync(kFullWarp, v, delta);
  } else {
    static_assert(sizeof(V) % 4 == 0 && std::is_trivially_copyable_v<V>, "shfl_down: unsupported value type");
    int w[sizeof(V) / 4];
    memcpy(w, &v, sizeof(V));
#pragma unroll
    for (int k = 0; k < int(sizeof(V) / 4); ++k) w[k] = __shfl_down_sync(kFullWarp, w[k], delta);
    memcpy(&v, w, sizeof(V));
    return v;
  }
}

// Tree over the 32 lanes (every lane must call it); lane 0 holds the result. Lane i is
// combined with lane i + 16, then i + 8, ...: a fixed order, so sums are reproducible.
template <typename V, typename Comb>
__device__ __forceinline__ V warp_reduce(V v, const Comb& comb) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = comb(v, shfl_down(v, off));
  return v;
}

// Butterfly over the 32 lanes: every lane gets the result, and the same bits, since each
// step combines the same two values on both partners (a + b == b + a exactly).
template <typename V, typename Comb>
__device__ __forceinline__ V warp_allreduce(V v, const Comb& comb) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = comb(v, __shfl_xor_sync(kFullWarp, v, off));
  return v;
}

// Tree over a 1-D block (blockDim.x a multiple of 32, at most 1024): warp trees, then a tree
// of the warp results in warp 0. Every thread must call it; all threads get the result.
// `scratch` holds at least 32 values and may be reused right after the call returns.
template <typename V, typename Comb>
__device__ __forceinline__ V block_reduce(V v, const Comb& comb, V identity, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_reduce(v, comb);
  __syncthreads();  // the previous call's readers of scratch[0] are done
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? scratch[lane] : identity;
    v = warp_reduce(v, comb);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  return scratch[0];
}

struct SumComb {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return a + b;
  }
};

// Max that never lets a NaN win (as the CPU's `v > m ? v : m` scans): softmax's shift.
struct MaxComb {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return b > a ? b : a;
  }
};

// exp/log in the accumulate type: expf/logf (max 2 ulp, not the fast intrinsics) for F32.
__device__ __forceinline__ float acc_exp(float v) { return expf(v); }
__device__ __forceinline__ double acc_exp(double v) { return exp(v); }
__device__ __forceinline__ float acc_log(float v) { return logf(v); }
__device__ __forceinline__ double acc_log(double v) { return log(v); }

// One contiguous row of n elements of T walked by threads tid, tid + nt, ...: `scalar(i)` for
// single elements and `vector(i)` for K = 16 / sizeof(T) elements starting at i, 16-byte
// aligned. `first` is the row's first element pointer; `vec` says every row pointer the
// caller reads or writes has the same address mod 16 as `first` (else all is scalar).
template <typename T, typename S, typename V>
__device__ __forceinline__ void row_loop(const T* first, int64_t n, bool vec, int tid, int nt, const S& scalar,
                                         const V& vector) {
  constexpr int K = 16 / sizeof(T);
  int64_t head = n;
  if (vec) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(first);
    head = std::min<int64_t>(n, int64_t((16 - (addr & 15)) & 15) / int64_t(sizeof(T)));
  }
  for (int64_t i = tid; i < head; i += nt) scalar(i);
  const int64_t nvec = (n - head) / K;
  for (int64_t v = tid; v < nvec; v += nt) vector(head + v * K);
  for (int64_t i = head + nvec * K + tid; i < n; i += nt) scalar(i);
}

template <typename T>
__device__ __forceinline__ detail::Vec<T, 16 / sizeof(T)> load_vec(const T* p) {
  return *reinterpret_cast<const detail::Vec<T, 16 / sizeof(T)>*>(p);
}

template <typename T>
__device__ __forceinline__ void store_vec(T* p, const detail::Vec<T, 16 / sizeof(T)>& v) {
  *reinterpret_cast<detail::Vec<T, 16 / sizeof(T)>*>(p) = v;
}

__host__ __device__ __forceinline__ bool same_phase16(const void* a, const void* b) {
  return ((reinterpret_cast<uintptr_t>(a) ^ reinterpret_cast<uintptr_t>(b)) & 15u) == 0;
}

// Streaming multiprocessors of `device`, cached: grids are sized to fill the GPU.
inline int multiprocessor_count(int device) {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];
  if (device >= 0 && device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int count = 0;
  MANTISSA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "multiprocessor_count");
  if (count < 1) count = 1;
  if (device >= 0 && device < kMaxDevices) cache[device].store(count, std::memory_order_relaxed);
  return count;
}

// Smallest power of two >= v (v >= 1), capped at `cap` (a power of two).
inline int64_t pow2_at_least(int64_t v, int64_t cap) {
  int64_t p = 1;
  while (p < v && p < cap) p <<= 1;
  return p;
}

// A value of V rounded to the storage type T and widened back to T's compute type: how the
// CPU kernels see a gradient converted to the output dtype before they compute with it.
template <typename T, typename V>
__device__ __forceinline__ dev_compute_t<T> round_as(V v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return static_cast<float>(T(v));
  } else {
    return static_cast<T>(v);
  }
}

}  // namespace mantissa::kernels::cuda
