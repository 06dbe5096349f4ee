// CUDA side of device_memory.h: every runtime call is checked and a failure becomes a
// mantissa::Error naming the operation and CUDA's error string.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels {

namespace {
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state
    MANTISSA_ERROR(what, ": CUDA error ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
  }
}

struct DeviceScope {
  int previous = 0;
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous), "cudaGetDevice");
    if (previous != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous); }
};
}  // namespace

int cuda_probe_device_count(const char** reason) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    *reason = cudaGetErrorString(err);
    cudaGetLastError();
    return 0;
  }
  if (count == 0) *reason = "no CUDA device is present";
  return count;
}

void* cuda_alloc(int device, size_t nbytes) {
  DeviceScope scope(device);
  void* p = nullptr;
  check(cudaMalloc(&p, nbytes == 0 ? 1 : nbytes), "cudaMalloc");
  return p;
}

void cuda_free(int device, void* ptr) {
  DeviceScope scope(device);
  cudaFree(ptr);  // a destructor path: never throws
}

void cuda_copy(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t nbytes) {
  cudaMemcpyKind kind = dst_device.is_cpu() ? cudaMemcpyDeviceToHost
                        : src_device.is_cpu() ? cudaMemcpyHostToDevice
                                              : cudaMemcpyDeviceToDevice;
  check(cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy");
}

void cuda_zero(void* dst, int device, size_t nbytes) {
  DeviceScope scope(device);
  check(cudaMemset(dst, 0, nbytes), "cudaMemset");
}

}  // namespace mantissa::kernels
