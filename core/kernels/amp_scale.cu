// CUDA side of the fused unscale-and-check (amp_scale.h): a multi-tensor kernel. The host cuts
// every tensor into fixed chunks of kChunk elements and passes a table (tensor pointers and
// sizes, and which tensor/chunk each block handles) by value in the kernel arguments, launching
// again whenever the table fills up. The found-inf flag is a device float written only by blocks
// that saw an Inf/NaN; nothing here synchronizes with the host except amp_read_flag.
#include "core/kernels/amp_scale.h"
#include "core/kernels/cuda_common.cuh"

#include <vector>

namespace mantissa::kernels::cuda {
namespace {

constexpr const char* kOp = "unscale_and_check";

// Table capacity, sized to keep the argument block (about 2.9 KB) under the classic 4 KB
// kernel-parameter limit.
constexpr int kMaxTensors = 48;
constexpr int kMaxBlocks = 320;
// Elements per block; a multiple of 8 so every chunk of a 16-byte-aligned tensor starts aligned
// for the vector path (8 x 16-bit, 4 x F32, 2 x F64).
constexpr int64_t kChunk = 65536;
constexpr int kThreads = 256;

struct TensorTable {
  void* ptr[kMaxTensors];
  int64_t numel[kMaxTensors];
  int32_t block_tensor[kMaxBlocks];  // index into ptr/numel
  int32_t block_chunk[kMaxBlocks];   // chunk index inside that tensor
};

// Exponent all ones <=> Inf or NaN, on the loaded compute value.
__device__ __forceinline__ bool nonfinite(float v) { return (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u; }
__device__ __forceinline__ bool nonfinite(double v) {
  return (static_cast<unsigned long long>(__double_as_longlong(v)) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

// One element by the rule in amp_scale.h: check the scaled value, then multiply (in F64 for
// F64 data, F32 otherwise) unless inv is exactly 1.
template <typename T>
__device__ __forceinline__ bool unscale_one(T* p, dev_compute_t<T> inv, bool multiply) {
  const dev_compute_t<T> v = load(p);
  const bool bad = nonfinite(v);
  if (multiply) store(p, v * inv);
  return bad;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) unscale_kernel(TensorTable table, float inv_scale, float* found_inf) {
  const int t = table.block_tensor[blockIdx.x];
  const int64_t n = table.numel[t];
  const int64_t begin = static_cast<int64_t>(table.block_chunk[blockIdx.x]) * kChunk;
  const int64_t end = begin + kChunk < n ? begin + kChunk : n;
  T* base = static_cast<T*>(table.ptr[t]);
  using C = dev_compute_t<T>;
  const C inv = static_cast<C>(inv_scale);
  const bool multiply = inv_scale != 1.0f;
  bool bad = false;

  constexpr int K = static_cast<int>(16 / sizeof(T));
  if ((reinterpret_cast<uintptr_t>(base) & 15u) == 0) {
    // begin is a multiple of kChunk, hence of K: base + begin is 16-byte aligned too.
    struct alignas(16) Vec { T v[K]; };
    const int64_t vec_end = begin + (end - begin) / K * K;
    for (int64_t i = begin + static_cast<int64_t>(threadIdx.x) * K; i < vec_end; i += int64_t(blockDim.x) * K) {
      Vec x = *reinterpret_cast<const Vec*>(base + i);
#pragma unroll
      for (int j = 0; j < K; ++j) bad |= unscale_one(&x.v[j], inv, multiply);
      if (multiply) *reinterpret_cast<Vec*>(base + i) = x;
    }
    for (int64_t i = vec_end + threadIdx.x; i < end; i += blockDim.x) bad |= unscale_one(base + i, inv, multiply);
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) bad |= unscale_one(base + i, inv, multiply);
  }
  // One write per block that saw a non-finite value; concurrent writers all store 1.
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1.0f;
}

template <typename T>
void launch(const TensorTable& table, int blocks, float inv_scale, float* found_inf, cudaStream_t stream) {
  unscale_kernel<T><<<blocks, kThreads, 0, stream>>>(table, inv_scale, found_inf);
  MANTISSA_CUDA_LAUNCH_CHECK(kOp);
}

void launch_for(DType dtype, const TensorTable& table, int blocks, float inv_scale, float* found_inf,
                cudaStream_t stream) {
  switch (dtype) {
    case DType::F32: return launch<float>(table, blocks, inv_scale, found_inf, stream);
    case DType::F64: return launch<double>(table, blocks, inv_scale, found_inf, stream);
    case DType::F16: return launch<Half>(table, blocks, inv_scale, found_inf, stream);
    case DType::BF16: return launch<BFloat16>(table, blocks, inv_scale, found_inf, stream);
    default: MANTISSA_ERROR(kOp, ": dtype ", dtype, " is not a floating dtype");
  }
}

// Fills tables with the chunks of every tensor of one dtype and launches each full table.
void run_dtype(DType dtype, std::span<const AmpChunk> chunks, float inv_scale, float* found_inf, cudaStream_t stream) {
  TensorTable table;
  int tensors = 0, blocks = 0;
  for (const AmpChunk& c : chunks) {
    if (c.dtype != dtype || c.numel == 0) continue;
    const int64_t nchunks = (c.numel + kChunk - 1) / kChunk;
    MANTISSA_CHECK(nchunks <= INT32_MAX, kOp, ": a tensor of ", c.numel, " elements is too large");
    table.ptr[tensors] = c.data;
    table.numel[tensors] = c.numel;
    ++tensors;
    for (int64_t k = 0; k < nchunks; ++k) {
      table.block_tensor[blocks] = tensors - 1;
      table.block_chunk[blocks] = static_cast<int32_t>(k);
      ++blocks;
      const bool table_full = blocks == kMaxBlocks;
      const bool last_chunk = k == nchunks - 1;
      if (table_full || (last_chunk && tensors == kMaxTensors)) {
        launch_for(dtype, table, blocks, inv_scale, found_inf, stream);
        blocks = 0;
        if (last_chunk) {
          tensors = 0;
        } else {
          // The current tensor continues in the next table as its first entry.
          table.ptr[0] = c.data;
          table.numel[0] = c.numel;
          tensors = 1;
        }
      }
    }
  }
  if (blocks > 0) launch_for(dtype, table, blocks, inv_scale, found_inf, stream);
}

}  // namespace

void amp_unscale_chunks(int device, std::span<const AmpChunk> chunks, float inv_scale, float* found_inf) {
  if (chunks.empty()) return;
  for (const AmpChunk& c : chunks)
    MANTISSA_CHECK(is_floating(c.dtype) && c.numel >= 0, kOp, ": chunk of dtype ", c.dtype, " and ", c.numel,
                   " elements; expected a floating dtype");
  DeviceGuard guard(device);
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream_handle(device));
  // One pass per dtype present (PyTorch also groups by dtype); F32 first, the common case.
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    bool present = false;
    for (const AmpChunk& c : chunks) present = present || (c.dtype == dtype && c.numel > 0);
    if (present) run_dtype(dtype, chunks, inv_scale, found_inf, stream);
  }
}

void amp_zero_flag(const Tensor& found_inf) {
  DeviceGuard guard(found_inf);
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(found_inf.data_ptr(), 0, sizeof(float), stream_for(found_inf)),
                      "make_found_inf");
}

bool amp_read_flag(const Tensor& found_inf) {
  DeviceGuard guard(found_inf);
  cudaStream_t stream = stream_for(found_inf);
  float value = 0.0f;
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(&value, found_inf.data_ptr(), sizeof(float), cudaMemcpyDeviceToHost, stream),
                      "read_found_inf");
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(stream), "read_found_inf");
  return value != 0.0f;
}

}  // namespace mantissa::kernels::cuda
