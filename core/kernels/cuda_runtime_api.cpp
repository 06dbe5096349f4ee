// cuda_runtime_api.h in a build without CUDA: statistics are zero, the current stream is the
// (nonexistent) default stream, and everything that needs a device throws a clear Error.
#ifndef MANTISSA_HAVE_CUDA

#include "core/kernels/cuda_runtime_api.h"

#include "core/error.h"

namespace mantissa::kernels {

namespace {
[[noreturn]] void no_cuda(const char* op) {
  MANTISSA_ERROR(op, ": Mantissa was built without CUDA (configure with -DMANTISSA_CUDA=ON on a machine with nvcc)");
}
}  // namespace

void* current_stream_handle(int) { return nullptr; }
void set_current_stream_handle(int, void*) { no_cuda("set_current_stream"); }
void* cuda_stream_create(int) { no_cuda("Stream"); }
void cuda_stream_destroy(int, void*) {}
void cuda_stream_synchronize(int, void*) { no_cuda("synchronize"); }
bool cuda_stream_query(int, void*) { no_cuda("Stream::query"); }

CudaMemoryStats cuda_memory_stats(int) { return {}; }
void cuda_reset_peak_memory_stats(int) {}
void cuda_empty_cache(int) {}
void cuda_synchronize(int) { no_cuda("synchronize"); }

bool pinned_memory_available() { return false; }
void* pinned_alloc(size_t) { no_cuda("pin_memory"); }
void pinned_free(void*) {}
void pinned_record_stream(void*, int, void*) { no_cuda("pinned_record_stream"); }
PinnedMemoryStats pinned_memory_stats() { return {}; }
void pinned_empty_cache() {}

}  // namespace mantissa::kernels

#endif  // MANTISSA_HAVE_CUDA
