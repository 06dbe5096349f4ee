// Whether this build has kernels for a tensor's device: the CPU always, CUDA only when the
// CUDA backend is compiled in. Ops call it before dispatch so the error names the op.
#pragma once

#include "core/error.h"
#include "core/tensor.h"

namespace mantissa::autograd {

inline void check_backend(const Tensor& t, const char* op) {
#ifdef MANTISSA_HAVE_CUDA
  (void)t;
  (void)op;
#else
  MANTISSA_CHECK(!t.is_cuda(), op, ": ", t.device(), " tensors need a build with CUDA (configure with -DMANTISSA_CUDA=ON)");
#endif
}

}  // namespace mantissa::autograd
