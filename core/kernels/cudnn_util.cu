// Host-side cuDNN helpers of cudnn_util.h: error conversion, the per-thread, per-device handles,
// descriptors, the dtype mapping and device scratch buffers.
#include "core/kernels/cudnn_util.h"

#include <climits>
#include <vector>

#include "core/error.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels::cuda {

void throw_cudnn_error(cudnnStatus_t status, const char* op, const char* call) {
  // cuDNN 9 keeps a more specific message for the last failure of this thread (which
  // parameter, which engine); it is appended when present.
  char detail[512] = {0};
  cudnnGetLastErrorString(detail, sizeof(detail));
  detail[sizeof(detail) - 1] = '\0';
  if (detail[0] != '\0') {
    MANTISSA_ERROR(op, ": ", call, " failed: cuDNN error ", cudnnGetErrorString(status), " (", detail, ")");
  }
  MANTISSA_ERROR(op, ": ", call, " failed: cuDNN error ", cudnnGetErrorString(status));
}

namespace {

struct ThreadHandles {
  std::vector<cudnnHandle_t> handles;
  ~ThreadHandles() {
    // Thread exit: a destructor must not throw, and a failure here leaves nothing to undo.
    for (cudnnHandle_t h : handles)
      if (h != nullptr) cudnnDestroy(h);
  }
};

}  // namespace

cudnnHandle_t cudnn_handle(const Tensor& t, const char* op) {
  thread_local ThreadHandles per_thread;
  const int device = t.device().index;
  MANTISSA_CHECK(t.is_cuda() && device >= 0, op, ": a cuDNN handle needs a CUDA tensor, got one on ", t.device());
  if (per_thread.handles.size() <= static_cast<size_t>(device)) per_thread.handles.resize(device + 1, nullptr);
  cudnnHandle_t& h = per_thread.handles[device];
  if (h == nullptr) MANTISSA_CUDNN_CHECK(cudnnCreate(&h), op);
  // The current stream can change between calls (stream guards), so bind it every time; this
  // only stores the pointer.
  MANTISSA_CUDNN_CHECK(cudnnSetStream(h, stream_for(t)), op);
  return h;
}

cudnnDataType_t cudnn_dtype(DType t) {
  switch (t) {
#define MANTISSA_DTYPE(name, ctype, size, kind, acc, cublas, cudnn, ...) \
  case DType::name:                                                      \
    return cudnn;
#include "core/dtype.def"
#undef MANTISSA_DTYPE
  }
  MANTISSA_ASSERT(false, "cudnn_dtype: unknown dtype");
  return CUDNN_DATA_FLOAT;
}

int cudnn_int(int64_t v, const char* op, const char* what) {
  MANTISSA_CHECK(v >= 0 && v <= INT_MAX, op, ": ", what, " ", v,
                 " does not fit cuDNN's 32-bit extents (at most 2^31 - 1 elements per tensor; split the batch)");
  return static_cast<int>(v);
}

TensorDescriptor::TensorDescriptor(const char* op) { MANTISSA_CUDNN_CHECK(cudnnCreateTensorDescriptor(&desc_), op); }
TensorDescriptor::~TensorDescriptor() {
  if (desc_ != nullptr) cudnnDestroyTensorDescriptor(desc_);
}
void TensorDescriptor::set_nchw(DType dtype, int64_t n, int64_t c, int64_t h, int64_t w, const char* op) {
  // cuDNN computes offsets in 32 bits: the whole tensor, not only each extent, must fit.
  cudnn_int(n * c * h * w, op, "tensor element count");
  MANTISSA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(desc_, CUDNN_TENSOR_NCHW, cudnn_dtype(dtype), cudnn_int(n, op, "N"),
                                                  cudnn_int(c, op, "C"), cudnn_int(h, op, "H"), cudnn_int(w, op, "W")),
                       op);
}

FilterDescriptor::FilterDescriptor(const char* op) { MANTISSA_CUDNN_CHECK(cudnnCreateFilterDescriptor(&desc_), op); }
FilterDescriptor::~FilterDescriptor() {
  if (desc_ != nullptr) cudnnDestroyFilterDescriptor(desc_);
}
void FilterDescriptor::set_oihw(DType dtype, int64_t o, int64_t i, int64_t kh, int64_t kw, const char* op) {
  cudnn_int(o * i * kh * kw, op, "filter element count");
  MANTISSA_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(desc_, cudnn_dtype(dtype), CUDNN_TENSOR_NCHW, cudnn_int(o, op, "O"),
                                 cudnn_int(i, op, "C/groups"), cudnn_int(kh, op, "kh"), cudnn_int(kw, op, "kw")),
      op);
}

ConvolutionDescriptor::ConvolutionDescriptor(const char* op) {
  MANTISSA_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&desc_), op);
}
ConvolutionDescriptor::~ConvolutionDescriptor() {
  if (desc_ != nullptr) cudnnDestroyConvolutionDescriptor(desc_);
}

DeviceBuffer::DeviceBuffer(const Device& device, size_t nbytes) : device_(device), nbytes_(nbytes) {
  if (nbytes > 0) ptr_ = device_alloc(device, nbytes);
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) device_free(device_, ptr_, nbytes_);
}

}  // namespace mantissa::kernels::cuda
