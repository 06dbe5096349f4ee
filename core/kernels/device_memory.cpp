#include "core/kernels/device_memory.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"
#include "core/kernels/cpu_allocator.h"

namespace mantissa::kernels {

namespace {
#ifndef MANTISSA_HAVE_CUDA
[[noreturn]] void no_cuda(const char* what) {
  MANTISSA_ERROR(what, ": Mantissa was built without CUDA (configure with -DMANTISSA_CUDA=ON on a machine with nvcc)");
}
#endif
}  // namespace

void* device_alloc(const Device& device, size_t nbytes) {
  if (device.is_cpu()) {
    return cpu_alloc(nbytes);
  }
#ifdef MANTISSA_HAVE_CUDA
  return cuda_alloc(device.index, nbytes);
#else
  no_cuda("allocate");
#endif
}

void device_free(const Device& device, void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  if (device.is_cpu()) {
    cpu_free(ptr, nbytes);
    return;
  }
#ifdef MANTISSA_HAVE_CUDA
  cuda_free(device.index, ptr);
#endif
}

void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#ifdef MANTISSA_HAVE_CUDA
  cuda_copy(dst, dst_device, src, src_device, nbytes);
#else
  no_cuda("copy");
#endif
}

void zero_bytes(void* dst, const Device& device, size_t nbytes) {
  if (nbytes == 0) return;
  if (device.is_cpu()) {
    std::memset(dst, 0, nbytes);
    return;
  }
#ifdef MANTISSA_HAVE_CUDA
  cuda_zero(dst, device.index, nbytes);
#else
  no_cuda("zero");
#endif
}

namespace {
struct CudaProbe {
  int count = 0;
  const char* reason = "Mantissa was built without CUDA";
  CudaProbe() {
#ifdef MANTISSA_HAVE_CUDA
    count = cuda_probe_device_count(&reason);
#endif
  }
};
const CudaProbe& probe() {
  static const CudaProbe p;
  return p;
}
}  // namespace

int cuda_device_count() { return probe().count; }
const char* cuda_unavailable_reason() { return probe().count > 0 ? "" : probe().reason; }

}  // namespace mantissa::kernels
