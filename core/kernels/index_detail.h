// Dispatch helpers shared by the CPU (index.cpp) and CUDA (index.cu) index kernels: raw element
// moves by element size, the index dtypes, and the stride of dim 0 of a possibly 0-d tensor.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"

namespace mantissa::kernels::index_detail {

// Calls f.template operator()<E>() with E an unsigned integer of t's element size.
template <typename F>
void visit_element_size(const Tensor& t, const F& f) {
  switch (t.element_size()) {
    case 1: f.template operator()<uint8_t>(); return;
    case 2: f.template operator()<uint16_t>(); return;
    case 4: f.template operator()<uint32_t>(); return;
    case 8: f.template operator()<uint64_t>(); return;
    default: MANTISSA_ASSERT(false, "element size ", t.element_size());
  }
}

template <typename F>
void visit_index(const Tensor& index, const char* op, const F& f) {
  visit_dtype<kIndexTypes>(index.dtype(), op, f);
}

inline int64_t stride0(const Tensor& t) { return t.dim() == 0 ? 0 : t.stride(0); }

}  // namespace mantissa::kernels::index_detail
