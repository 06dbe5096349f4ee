// Raw memory on each device: allocate, free, copy between devices, fill with zero bytes.
// CPU code lives in device_memory.cpp; CUDA code in device_memory.cu (built when nvcc exists).
#pragma once

#include <cstddef>

#include "core/device.h"

namespace mantissa::kernels {

void* device_alloc(const Device& device, size_t nbytes);
void device_free(const Device& device, void* ptr, size_t nbytes);
// Copies nbytes between any two devices; synchronous with respect to the host.
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t nbytes);
void zero_bytes(void* dst, const Device& device, size_t nbytes);

// Number of usable CUDA devices: 0 when built without CUDA or when no driver/device is present.
int cuda_device_count();
inline bool cuda_is_available() { return cuda_device_count() > 0; }
// Why CUDA is unusable ("built without CUDA", the driver's error string), for skip messages.
const char* cuda_unavailable_reason();

#ifdef MANTISSA_HAVE_CUDA
// The caching allocator (cuda_allocator.cu): blocks are reused on the stream that was current
// when they were allocated.
void* cuda_alloc(int device, size_t nbytes);
void cuda_free(int device, void* ptr);
// Called once `stream` has finished all its work and is about to be destroyed: its blocks move
// to the legacy default stream, so the cache neither strands them nor hands them to a new
// stream that happens to get the same handle.
void cuda_allocator_retire_stream(int device, void* stream);
void cuda_copy(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t nbytes);
void cuda_zero(void* dst, int device, size_t nbytes);
int cuda_probe_device_count(const char** reason);
#endif

}  // namespace mantissa::kernels
