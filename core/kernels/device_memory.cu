// CUDA side of device_memory.h: the device probe, byte copies and memset. Allocation goes
// through the caching allocator (cuda_allocator.cu). Every runtime call is checked; copies run
// on the current stream of the CUDA side and wait for it, so they are synchronous for the host
// yet ordered after the kernels this thread queued on that stream.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels {

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

void cuda_copy(void* dst, const Device& dst_device, const void* src, const Device& src_device, size_t nbytes) {
  if (nbytes == 0) return;
  // The stream of the CUDA side (the source's for device -> device): queued after this thread's
  // kernels that produce or consume the bytes.
  const int device = src_device.is_cuda() ? src_device.index : dst_device.index;
  cuda::DeviceGuard guard(device);
  auto stream = static_cast<cudaStream_t>(current_stream_handle(device));
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    // Peer copy: the destination's stream may still have readers or writers of dst.
    auto dst_stream = static_cast<cudaStream_t>(current_stream_handle(dst_device.index));
    cuda::DeviceGuard dst_guard(dst_device.index);
    MANTISSA_CUDA_CHECK(cudaStreamSynchronize(dst_stream), "copy");
  }
  // cudaMemcpyDefault infers the direction from unified virtual addresses.
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, stream), "copy");
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(stream), "copy");
}

void cuda_zero(void* dst, int device, size_t nbytes) {
  if (nbytes == 0) return;
  cuda::DeviceGuard guard(device);
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, static_cast<cudaStream_t>(current_stream_handle(device))),
                      "zero");
}

}  // namespace mantissa::kernels
