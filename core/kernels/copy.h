// Copy with broadcasting and dtype conversion, and fill. The contiguous F32<->F16/BF16 cases
// go through the vectorized converters of convert.h; everything else through map().
#pragma once

#include "core/tensor.h"

namespace mantissa::kernels {

// dst[...] = src[...] converted to dst's dtype; src broadcasts to dst's shape. Works across
// devices when dst is contiguous and src has dst's shape.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);

}  // namespace mantissa::kernels
