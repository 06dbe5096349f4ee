// cuDNN plumbing for the CUDA kernel files that call cuDNN: checked calls (a failure becomes a
// mantissa::Error naming the op, the call and cudnnGetErrorString), one handle per device and
// host thread bound to the current stream, RAII descriptors, the dtype mapping, and workspace.
// Include only from .cu files: cudnn.h is on the library's private include path.
#pragma once

#include <cudnn.h>

#include <cstddef>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace mantissa::kernels::cuda {

[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* op, const char* call);

#define MANTISSA_CUDNN_CHECK(expr, op)                                           \
  do {                                                                           \
    cudnnStatus_t mantissa_status_ = (expr);                                     \
    if (mantissa_status_ != CUDNN_STATUS_SUCCESS)                                \
      ::mantissa::kernels::cuda::throw_cudnn_error(mantissa_status_, op, #expr); \
  } while (0)

// The calling thread's cuDNN handle for t's device, bound to stream_for(t). A cuDNN handle must
// not be used by two threads at once and carries its stream, so each (thread, device) pair owns
// one, created on first use. The caller holds a DeviceGuard for t's device.
cudnnHandle_t cudnn_handle(const Tensor& t, const char* op);

// CUDNN_DATA_* of a dtype (the cuDNN column of dtype.def).
cudnnDataType_t cudnn_dtype(DType t);

// cuDNN takes every extent as int: an Error naming op when a value does not fit.
int cudnn_int(int64_t v, const char* op, const char* what);

// RAII wrappers; create in the constructor, destroy (never throwing) in the destructor.
class TensorDescriptor {
 public:
  explicit TensorDescriptor(const char* op);
  ~TensorDescriptor();
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  // A packed NCHW tensor.
  void set_nchw(DType dtype, int64_t n, int64_t c, int64_t h, int64_t w, const char* op);
  cudnnTensorDescriptor_t get() const { return desc_; }

 private:
  cudnnTensorDescriptor_t desc_ = nullptr;
};

class FilterDescriptor {
 public:
  explicit FilterDescriptor(const char* op);
  ~FilterDescriptor();
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  // A packed [O, C/groups, kh, kw] filter.
  void set_oihw(DType dtype, int64_t o, int64_t i, int64_t kh, int64_t kw, const char* op);
  cudnnFilterDescriptor_t get() const { return desc_; }

 private:
  cudnnFilterDescriptor_t desc_ = nullptr;
};

class ConvolutionDescriptor {
 public:
  explicit ConvolutionDescriptor(const char* op);
  ~ConvolutionDescriptor();
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  cudnnConvolutionDescriptor_t get() const { return desc_; }

 private:
  cudnnConvolutionDescriptor_t desc_ = nullptr;
};

// Scratch memory on one device from the caching allocator (kernels::device_alloc), returned on
// destruction. Like a temporary tensor's storage it may be returned while work queued on the
// current stream still uses it; the allocator's stream ordering is what makes that safe.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const Device& device, size_t nbytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t size() const { return nbytes_; }

 private:
  Device device_;
  void* ptr_ = nullptr;
  size_t nbytes_ = 0;
};

}  // namespace mantissa::kernels::cuda
