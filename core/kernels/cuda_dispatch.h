// Device routing shared by the CPU entry points of the kernel families: a CUDA output goes to
// the family's kernels::cuda:: twin (or raises a clear error in a CPU-only build), and the CPU
// path refuses any operand that lives on another device, so a host loop never dereferences a
// device pointer. Plain C++: included by the .cpp files, never by nvcc.
#pragma once

#include <initializer_list>

#include "core/error.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// Every defined tensor in `ts` must be on `out`'s device.
inline void check_same_device(const char* op, const Tensor& out, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    MANTISSA_CHECK(!t->defined() || t->device() == out.device(), op, ": expected every tensor on ", out.device(),
                   " (where the output is), got one on ", t->device(), " with shape ", shape_str(t->sizes()),
                   " and dtype ", t->dtype());
  }
}

}  // namespace mantissa::kernels

// `if (t is on CUDA) { call; return; }` in a CUDA build; in a CPU-only build, the error that
// says which build is needed. Used at the top of void entry points.
#ifdef MANTISSA_HAVE_CUDA
#define MANTISSA_CUDA_DISPATCH(t, op, call) \
  do {                                      \
    if ((t).is_cuda()) {                    \
      call;                                 \
      return;                               \
    }                                       \
  } while (0)
#else
#define MANTISSA_CUDA_DISPATCH(t, op, call)                                                                 \
  do {                                                                                                      \
    if ((t).is_cuda())                                                                                      \
      MANTISSA_ERROR(op, ": ", (t).device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)"); \
  } while (0)
#endif
