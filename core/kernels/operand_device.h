// Device dispatch for kernel entry points: every defined operand must live on one device (a
// CPU kernel must never dereference a device pointer, nor a CUDA kernel a host one), and a
// CUDA tensor in a build without CUDA is an Error that says how to get the backend.
#pragma once

#include <initializer_list>

#include "core/error.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// True when the defined operands live on a CUDA device, false when on the CPU (or when none is
// defined); an Error naming op and both devices when they disagree.
inline bool operands_on_cuda(const char* op, std::initializer_list<const Tensor*> operands) {
  const Tensor* first = nullptr;
  for (const Tensor* t : operands) {
    if (!t->defined()) continue;
    if (first == nullptr) {
      first = t;
      continue;
    }
    MANTISSA_CHECK(t->device() == first->device(), op, ": expected every tensor on ", first->device(), ", got a ",
                   shape_str(t->sizes()), " ", t->dtype(), " tensor on ", t->device());
  }
  return first != nullptr && first->is_cuda();
}

[[noreturn]] inline void cuda_build_required(const char* op, const Device& device) {
  MANTISSA_ERROR(op, ": ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
}

}  // namespace mantissa::kernels
