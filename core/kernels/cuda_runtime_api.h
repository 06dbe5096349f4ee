// Host-side CUDA runtime services every backend file and user code can call without nvcc:
// the per-thread current stream, the caching allocator's statistics, synchronization and
// pinned host memory. Implemented in cuda_runtime_api.cu; without CUDA every call reports
// "built without CUDA" (statistics are zero).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mantissa::kernels {

// The stream kernels launched by this thread on `device` go to (a cudaStream_t; nullptr is
// the legacy default stream). Set with set_current_stream_handle / CUDAStreamGuard.
void* current_stream_handle(int device);
void set_current_stream_handle(int device, void* stream);

// Caching allocator statistics for one device, in bytes.
struct CudaMemoryStats {
  size_t allocated = 0;       // bytes in live tensors
  size_t reserved = 0;        // bytes held from the driver (live + cached)
  size_t peak_allocated = 0;  // max of allocated since the last reset
  size_t peak_reserved = 0;
  uint64_t alloc_calls = 0;   // allocations served
  uint64_t cache_hits = 0;    // served without a driver call
};
CudaMemoryStats cuda_memory_stats(int device);
void cuda_reset_peak_memory_stats(int device);
// Returns every cached, unused block to the driver.
void cuda_empty_cache(int device);
void cuda_synchronize(int device);

// Page-locked host memory for staging host<->device copies (cached like device blocks).
void* pinned_alloc(size_t nbytes);
void pinned_free(void* ptr);

}  // namespace mantissa::kernels
