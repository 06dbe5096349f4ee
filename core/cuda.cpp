// mantissa::cuda (core/cuda.h) over the runtime services of core/kernels: it needs no CUDA
// headers, so the same file serves builds with and without CUDA.
#include "core/cuda.h"

#include <utility>

#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa::cuda {

bool is_available() { return kernels::cuda_is_available(); }
int device_count() { return kernels::cuda_device_count(); }
std::string unavailable_reason() { return kernels::cuda_unavailable_reason(); }

void synchronize(int device) { kernels::cuda_synchronize(device); }

size_t memory_allocated(int device) { return kernels::cuda_memory_stats(device).allocated; }
size_t memory_reserved(int device) { return kernels::cuda_memory_stats(device).reserved; }
size_t max_memory_allocated(int device) { return kernels::cuda_memory_stats(device).peak_allocated; }
size_t max_memory_reserved(int device) { return kernels::cuda_memory_stats(device).peak_reserved; }
void reset_peak_memory_stats(int device) { kernels::cuda_reset_peak_memory_stats(device); }

void empty_cache() {
  for (int d = 0; d < device_count(); ++d) kernels::cuda_empty_cache(d);
  kernels::pinned_empty_cache();
}

MemoryStats memory_stats(int device) {
  const kernels::CudaMemoryStats s = kernels::cuda_memory_stats(device);
  const kernels::PinnedMemoryStats p = kernels::pinned_memory_stats();
  MemoryStats m;
  m.allocated = s.allocated;
  m.reserved = s.reserved;
  m.peak_allocated = s.peak_allocated;
  m.peak_reserved = s.peak_reserved;
  m.alloc_calls = s.alloc_calls;
  m.cache_hits = s.cache_hits;
  m.driver_allocs = s.driver_allocs;
  m.driver_frees = s.driver_frees;
  m.pinned_allocated = p.allocated;
  m.pinned_cached = p.cached;
  return m;
}

Stream::Stream(int device) : device_(device), handle_(kernels::cuda_stream_create(device)) {}

Stream::~Stream() { kernels::cuda_stream_destroy(device_, handle_); }

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    kernels::cuda_stream_destroy(device_, handle_);
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

void Stream::synchronize() const { kernels::cuda_stream_synchronize(device_, handle_); }
bool Stream::query() const { return kernels::cuda_stream_query(device_, handle_); }

void* current_stream(int device) { return kernels::current_stream_handle(device); }

StreamGuard::StreamGuard(const Stream& stream)
    : device_(stream.device()), previous_(kernels::current_stream_handle(stream.device())) {
  kernels::set_current_stream_handle(device_, stream.handle());
}

StreamGuard::~StreamGuard() {
  // Cannot throw: the device was valid when the guard was made.
  try {
    kernels::set_current_stream_handle(device_, previous_);
  } catch (...) {
  }
}

}  // namespace mantissa::cuda
