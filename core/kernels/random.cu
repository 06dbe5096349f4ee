// CUDA fills for uniform, normal and bernoulli draws (random.h). One thread per Philox counter
// block, mapped exactly as the CPU maps it (core/philox.h): block offset + b holds elements
// 4b .. 4b+3 of a 32-bit draw (2b, 2b+1 of a 64-bit one), and the values come from the same
// host-device functions, so a (seed, offset, n) gives the same bits on both devices.
#include <cstdint>

#include "core/dtype.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/random.h"
#include "core/philox.h"

namespace mantissa::kernels::cuda {

namespace {

// Each distribution turns one block's four words into Per values of type V.
struct Uniform32 {
  static constexpr int kPer = 4;
  using V = float;
  float lo, hi;
  __device__ void operator()(const uint32_t w[4], float v[4]) const {
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = uniform_in_range(uint32_to_uniform_float(w[k]), lo, hi);
  }
};

struct Normal32 {
  static constexpr int kPer = 4;
  using V = float;
  float mean, stddev;
  __device__ void operator()(const uint32_t w[4], float v[4]) const {
    float z[4];
    box_muller_float(w[0], w[1], z[0], z[1]);
    box_muller_float(w[2], w[3], z[2], z[3]);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = normal_affine(z[k], mean, stddev);
  }
};

struct Bernoulli32 {
  static constexpr int kPer = 4;
  using V = float;
  float p;
  __device__ void operator()(const uint32_t w[4], float v[4]) const {
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = uint32_to_bernoulli(w[k], p) ? 1.0f : 0.0f;
  }
};

struct Uniform64 {
  static constexpr int kPer = 2;
  using V = double;
  double lo, hi;
  __device__ void operator()(const uint32_t w[4], double v[2]) const {
    v[0] = uniform_in_range(uint32x2_to_uniform_double(w[0], w[1]), lo, hi);
    v[1] = uniform_in_range(uint32x2_to_uniform_double(w[2], w[3]), lo, hi);
  }
};

struct Normal64 {
  static constexpr int kPer = 2;
  using V = double;
  double mean, stddev;
  __device__ void operator()(const uint32_t w[4], double v[2]) const {
    double z0, z1;
    box_muller_double(w, z0, z1);
    v[0] = normal_affine(z0, mean, stddev);
    v[1] = normal_affine(z1, mean, stddev);
  }
};

// Grid-stride over counter blocks; the last block may be partial (n not a multiple of kPer).
// Values are rounded once into T by store() (F16/BF16 round to nearest even, as the CPU's copy).
template <typename T, typename Dist>
__global__ void philox_fill_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, Dist dist) {
  constexpr int kPer = Dist::kPer;
  const int64_t blocks = (n + kPer - 1) / kPer;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(blockDim.x) * gridDim.x) {
    uint32_t w[4];
    philox_block(seed, offset + static_cast<uint64_t>(b), w);
    typename Dist::V v[kPer];
    dist(w, v);
    const int64_t first = b * kPer;
    if (first + kPer <= n) {
#pragma unroll
      for (int k = 0; k < kPer; ++k) store(out + first + k, v[k]);
    } else {
      for (int k = 0; first + k < n; ++k) store(out + first + k, v[k]);
    }
  }
}

void check_cuda_target(const char* op, const Tensor& out) {
  MANTISSA_CHECK(out.is_cuda(), op, ": expected a CUDA tensor, got one on ", out.device());
  MANTISSA_CHECK(out.is_contiguous(), op, ": the output must be contiguous (got shape ", shape_str(out.sizes()),
                 " with strides ", shape_str(out.strides()), ")");
}

template <typename T, typename Dist>
void launch(const char* op, const Tensor& out, uint64_t seed, uint64_t offset, const Dist& dist) {
  const int64_t n = out.numel();
  if (n == 0) return;
  DeviceGuard guard(out);
  const int64_t blocks = (n + Dist::kPer - 1) / Dist::kPer;
  philox_fill_kernel<T, Dist><<<grid_for(blocks), kBlock, 0, stream_for(out)>>>(out.data<T>(), n, seed, offset, dist);
  MANTISSA_CUDA_LAUNCH_CHECK(op);
}

// F64 takes the 64-bit stream (Dist64), the other floating dtypes the 32-bit one (Dist32).
template <typename Dist32, typename Dist64>
void fill_floating(const char* op, const Tensor& out, uint64_t seed, uint64_t offset, const Dist32& d32,
                   const Dist64& d64) {
  check_cuda_target(op, out);
  visit_dtype<kFloatTypes>(out.dtype(), op, [&]<typename T>() {
    if constexpr (std::is_same_v<T, double>) launch<T>(op, out, seed, offset, d64);
    else launch<T>(op, out, seed, offset, d32);
  });
}

}  // namespace

void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  fill_floating("fill_uniform", out, seed, offset, Uniform32{static_cast<float>(lo), static_cast<float>(hi)},
                Uniform64{lo, hi});
}

void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  fill_floating("fill_normal", out, seed, offset, Normal32{static_cast<float>(mean), static_cast<float>(std)},
                Normal64{mean, std});
}

void fill_bernoulli(const Tensor& out, uint64_t seed, uint64_t offset, double p) {
  check_cuda_target("fill_bernoulli", out);
  const Bernoulli32 dist{static_cast<float>(p)};
  visit_dtype<kAllTypes>(out.dtype(), "fill_bernoulli",
                         [&]<typename T>() { launch<T>("fill_bernoulli", out, seed, offset, dist); });
}

}  // namespace mantissa::kernels::cuda
