// Per-tensor-affine quantized tensors (PyTorch's quint8 / qint8 per_tensor_affine): an ordinary
// U8/I8 tensor whose elements are codes q, with a QuantMeta {scale, zero_point} saying they stand
// for (q - zero_point) * scale. Views, copies and moves keep the meta; relu, max_pool2d and
// dropout in eval work on the codes; every other op refuses a quantized tensor (autocast_hook.h).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa {

// Wraps U8/I8 codes as a quantized tensor sharing their storage (no copy). Checks: codes defined,
// not quantized already, not requiring grad, dtype U8 or I8, scale finite and > 0, zero point
// within the dtype's range ([0, 255] or [-128, 127]).
Tensor make_per_tensor_quantized(const Tensor& codes, float scale, int32_t zero_point);

// The codes of a quantized tensor as an ordinary U8/I8 tensor sharing its storage.
Tensor int_repr(const Tensor& q);

// PyTorch's quantized::add (relu = false) and quantized::add_relu: a and b quantized, same shape,
// same dtype, same device; the result has a's dtype and the given output scale and zero point.
// Numerics in core/kernels/qtensor_ops.h (QAddParams).
Tensor quantized_add(const Tensor& a, const Tensor& b, float scale, int32_t zero_point, bool relu = false);

// relu on a quantized tensor: codes max(q, zero_point), same qparams (what relu(x) dispatches to).
// When the zero point is the lowest code, every code already is >= it and q itself is returned.
Tensor quantized_relu(const Tensor& q);

// "quint8" / "qint8", PyTorch's names for the dtype of a quantized tensor with U8 / I8 codes.
const char* quantized_dtype_name(DType codes);

// Gives `codes` (a fresh tensor, e.g. an op's output) the quantization meta of `like`.
Tensor with_quant_meta_of(const Tensor& codes, const Tensor& like);

}  // namespace mantissa
