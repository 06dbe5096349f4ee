#include "core/storage.h"

#include "core/error.h"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa {

Storage::Storage(size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    MANTISSA_CHECK(kernels::cuda_is_available(), "allocate: device ", device, " requested but CUDA is unusable (",
                   kernels::cuda_unavailable_reason(), ")");
    MANTISSA_CHECK(device.index < kernels::cuda_device_count(), "allocate: device ", device, " does not exist (",
                   kernels::cuda_device_count(), " CUDA device(s))");
  }
  if (pinned) {
    MANTISSA_CHECK(device.is_cpu(), "allocate: pinned memory is host memory, but device ", device, " was requested");
    if (kernels::pinned_memory_available()) {
      data_ = kernels::pinned_alloc(nbytes);
      pinned_ = true;
      return;
    }
  }
  data_ = kernels::device_alloc(device, nbytes);
}

Storage::~Storage() {
  if (pinned_) kernels::pinned_free(data_);
  else kernels::device_free(device_, data_, nbytes_);
}

}  // namespace mantissa
