// Host-side CUDA runtime services every backend file and user code can call without nvcc:
// the per-thread current stream, the caching allocator's statistics, synchronization and
// pinned host memory. Implemented in cuda_runtime_api.cu, cuda_allocator.cu and
// cuda_host_allocator.cu; without CUDA (cuda_runtime_api.cpp) every call that needs a device
// throws "built without CUDA", statistics are zero and the current stream is nullptr.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mantissa::kernels {

// The stream kernels launched by this thread on `device` go to (a cudaStream_t). Each thread
// starts on the legacy default stream (nullptr) of every device: it orders against every
// blocking stream, so code that never touches streams needs no synchronization at all. Set
// with set_current_stream_handle or mantissa::cuda::StreamGuard (core/cuda.h).
void* current_stream_handle(int device);
void set_current_stream_handle(int device, void* stream);

// Streams as opaque handles (cudaStream_t). Created streams are blocking: work on them waits
// for earlier work on the legacy default stream and the default stream waits for them, which
// keeps the caching allocator's stream-ordered reuse safe when tensors cross streams.
void* cuda_stream_create(int device);
void cuda_stream_destroy(int device, void* stream);  // drains it first; never throws
void cuda_stream_synchronize(int device, void* stream);
bool cuda_stream_query(int device, void* stream);    // true when all queued work has finished

// Caching allocator statistics for one device, in bytes.
struct CudaMemoryStats {
  size_t allocated = 0;       // bytes in live tensors (rounded block sizes)
  size_t reserved = 0;        // bytes held from the driver (live + cached)
  size_t peak_allocated = 0;  // max of allocated since the last reset
  size_t peak_reserved = 0;
  uint64_t alloc_calls = 0;   // allocations served
  uint64_t cache_hits = 0;    // served without a driver call
  uint64_t driver_allocs = 0; // cudaMalloc calls made (segments)
  uint64_t driver_frees = 0;  // segments returned to the driver (empty_cache, OOM retry)
};
// Zeros for a device index that is not present (or without CUDA).
CudaMemoryStats cuda_memory_stats(int device);
// Peaks restart from the current values; the call counters restart from zero.
void cuda_reset_peak_memory_stats(int device);
// Returns every cached, unused block to the driver.
void cuda_empty_cache(int device);
// Waits for all work on the device (every stream).
void cuda_synchronize(int device);

// Page-locked host memory for staging host<->device copies (cached like device blocks).
// pinned_alloc throws when no CUDA driver/device is usable; check pinned_memory_available().
bool pinned_memory_available();
void* pinned_alloc(size_t nbytes);
void pinned_free(void* ptr);  // the pointer pinned_alloc returned; never throws
// Marks the pinned block holding `ptr` as in use by the work queued so far on `stream` of
// `device`: a freed block is handed out again only after that work has finished, so an
// asynchronous copy out of (or into) pinned memory never races with its next owner.
void pinned_record_stream(void* ptr, int device, void* stream);
struct PinnedMemoryStats {
  size_t allocated = 0;  // bytes handed out (rounded)
  size_t cached = 0;     // bytes held for reuse, including blocks waiting for their streams
  uint64_t alloc_calls = 0;
  uint64_t cache_hits = 0;
};
PinnedMemoryStats pinned_memory_stats();
void pinned_empty_cache();

}  // namespace mantissa::kernels
