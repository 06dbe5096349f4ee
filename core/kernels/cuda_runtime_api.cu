// CUDA side of cuda_runtime_api.h's stream and synchronization services: the per-thread
// current stream of each device, stream creation, queries and device-wide synchronization.
// The caching allocator lives in cuda_allocator.cu, pinned host memory in cuda_host_allocator.cu.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels {

namespace {
constexpr int kMaxDevices = 64;
// nullptr is the legacy default stream, the initial current stream of every thread and device.
thread_local void* tls_current_stream[kMaxDevices] = {};

void check_device(int device, const char* op) {
  const int n = cuda_device_count();
  MANTISSA_CHECK(device >= 0 && device < n, op, ": device cuda:", device, " does not exist (", n, " CUDA device(s)",
                 n == 0 ? std::string(": ") + cuda_unavailable_reason() : std::string(), ")");
  MANTISSA_ASSERT(device < kMaxDevices, "more than ", kMaxDevices, " CUDA devices");
}
}  // namespace

void* current_stream_handle(int device) {
  if (device < 0 || device >= kMaxDevices) return nullptr;
  return tls_current_stream[device];
}

void set_current_stream_handle(int device, void* stream) {
  check_device(device, "set_current_stream");
  tls_current_stream[device] = stream;
}

void* cuda_stream_create(int device) {
  check_device(device, "Stream");
  cuda::DeviceGuard guard(device);
  cudaStream_t s = nullptr;
  MANTISSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault), "Stream");
  return s;
}

void cuda_stream_destroy(int device, void* stream) {
  if (stream == nullptr || device < 0 || device >= cuda_device_count()) return;
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = device;
  if (previous != device) cudaSetDevice(device);
  // Drain first: the allocator's blocks of this stream then belong to nobody in flight and can
  // move to the default stream.
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  cuda_allocator_retire_stream(device, stream);
  cudaStreamDestroy(static_cast<cudaStream_t>(stream));
  if (previous != device) cudaSetDevice(previous);
  cudaGetLastError();
}

void cuda_stream_synchronize(int device, void* stream) {
  check_device(device, "synchronize");
  cuda::DeviceGuard guard(device);
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "synchronize");
}

bool cuda_stream_query(int device, void* stream) {
  check_device(device, "Stream::query");
  cuda::DeviceGuard guard(device);
  cudaError_t err = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  MANTISSA_CUDA_CHECK(err, "Stream::query");
  return true;
}

void cuda_synchronize(int device) {
  check_device(device, "synchronize");
  cuda::DeviceGuard guard(device);
  MANTISSA_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize");
}

}  // namespace mantissa::kernels
