// mantissa::cuda: the user-facing CUDA runtime API (torch.cuda's names): availability, device
// synchronization, the caching allocator's memory statistics, and streams with an RAII guard
// that makes a stream current for this thread. Every function works in a build without CUDA or
// on a machine without a GPU: queries return 0 / false / zeros, actions throw a clear Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mantissa::cuda {

bool is_available();
int device_count();
// Why CUDA cannot be used ("Mantissa was built without CUDA", the driver's error, ...); empty
// when it can.
std::string unavailable_reason();

// Waits for all work queued on the device, on every stream.
void synchronize(int device = 0);

// The caching device allocator (bytes). Allocated: held by live tensors (rounded block sizes);
// reserved: obtained from the driver, i.e. allocated plus cached for reuse.
size_t memory_allocated(int device = 0);
size_t memory_reserved(int device = 0);
size_t max_memory_allocated(int device = 0);
size_t max_memory_reserved(int device = 0);
// Peaks restart from the current values; the counters of memory_stats restart from zero.
void reset_peak_memory_stats(int device = 0);
// Returns every cached, unused device block of every device and the unused pinned host
// blocks to the driver (other processes can use the memory; the next allocations pay for
// cudaMalloc again). Tensors alive keep their memory.
void empty_cache();

struct MemoryStats {
  size_t allocated = 0;
  size_t reserved = 0;
  size_t peak_allocated = 0;
  size_t peak_reserved = 0;
  uint64_t alloc_calls = 0;    // allocations served since the last reset
  uint64_t cache_hits = 0;     // of those, served from the cache without cudaMalloc
  uint64_t driver_allocs = 0;  // cudaMalloc calls (segments obtained)
  uint64_t driver_frees = 0;   // segments returned (empty_cache or the out-of-memory retry)
  size_t pinned_allocated = 0; // page-locked host memory in use (shared by all devices)
  size_t pinned_cached = 0;    // page-locked host memory held for reuse
};
MemoryStats memory_stats(int device = 0);

// A new CUDA stream on `device`. It is blocking: it waits for earlier work of the legacy
// default stream (the current stream of a thread that never set one) and that stream waits for
// it, so tensors may be handed between the two without explicit synchronization; two created
// streams run independently. Destroying it waits for the work queued on it.
class Stream {
 public:
  explicit Stream(int device = 0);
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  int device() const { return device_; }
  void* handle() const { return handle_; }  // the cudaStream_t
  void synchronize() const;                  // waits for the work queued on this stream
  bool query() const;                        // true when that work has finished

 private:
  int device_ = 0;
  void* handle_ = nullptr;
};

// The cudaStream_t this thread's kernels on `device` go to (nullptr: the legacy default stream).
void* current_stream(int device = 0);

// Makes `stream` current for this thread on its device for the guard's scope, then restores
// the previous one. Guards nest; the stream must outlive the guard.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_ = 0;
  void* previous_ = nullptr;
};

}  // namespace mantissa::cuda
