// Host-side pieces of cuda_common.cuh: the CUDA error -> mantissa::Error conversion, the
// device guard, and broadcast strides for the strided launchers.
#include "core/kernels/cuda_common.cuh"

#include <string>

namespace mantissa::kernels::cuda {

void throw_cuda_error(cudaError_t err, const char* op, const char* call) {
  // Reset the per-thread "last error" so the next checked launch does not report this failure
  // again. Sticky errors (a kernel fault) cannot be cleared; every later call reports them.
  cudaGetLastError();
  MANTISSA_ERROR(op, ": ", call, " failed: CUDA error ", cudaGetErrorName(err), ": ", cudaGetErrorString(err));
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  MANTISSA_CUDA_CHECK(cudaGetDevice(&current), "DeviceGuard");
  if (current != device) {
    MANTISSA_CUDA_CHECK(cudaSetDevice(device), "DeviceGuard");
    previous = current;
  }
}

DeviceGuard::~DeviceGuard() {
  // A destructor must not throw; restoring a device that was valid a moment ago cannot fail
  // short of a sticky error, which the next checked call reports anyway.
  if (previous >= 0) {
    cudaSetDevice(previous);
  }
}

Shape broadcast_strides_to(const Tensor& t, const Shape& shape) {
  const Shape& ts = t.sizes();
  const Shape& st = t.strides();
  MANTISSA_CHECK(ts.size() <= shape.size(), "broadcast: tensor of shape ", shape_str(ts), " has more dims than ",
                 shape_str(shape));
  Shape out(shape.size(), 0);
  const size_t lead = shape.size() - ts.size();
  for (size_t i = 0; i < ts.size(); ++i) {
    MANTISSA_CHECK(ts[i] == shape[lead + i] || ts[i] == 1, "broadcast: shape ", shape_str(ts),
                   " cannot be broadcast to ", shape_str(shape), " (dimension ", i, ": ", ts[i], " vs ",
                   shape[lead + i], ")");
    out[lead + i] = ts[i] == 1 ? 0 : st[i];
  }
  return out;
}

}  // namespace mantissa::kernels::cuda
