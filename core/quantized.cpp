// Quantized tensors: construction, int_repr, relu and quantized add (see quantized.h).
#include "core/quantized.h"

#include <cmath>

#include "core/error.h"
#include "core/kernels/qtensor_ops.h"

namespace mantissa {

namespace {

int32_t code_min(DType t) { return t == DType::U8 ? 0 : -128; }
int32_t code_max(DType t) { return t == DType::U8 ? 255 : 127; }

// A new handle on t's storage and geometry, without autograd state, with the given meta.
Tensor rewrap(const Tensor& t, std::shared_ptr<const QuantMeta> meta) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.storage();
  impl->sizes = t.sizes();
  impl->strides = t.strides();
  impl->offset = t.storage_offset();
  impl->dtype = t.dtype();
  impl->quant = std::move(meta);
  return Tensor(std::move(impl));
}

void check_quantized(const Tensor& q, const char* op, const char* arg) {
  MANTISSA_CHECK(q.defined(), op, ": ", arg, " is an undefined tensor");
  MANTISSA_CHECK(q.is_quantized(), op, ": ", arg, " must be a quantized tensor, got an ordinary ", q.dtype(),
                 " tensor of shape ", shape_str(q.sizes()), "; quantize it with quant::quantize_per_tensor first");
}

}  // namespace

const char* quantized_dtype_name(DType codes) { return codes == DType::U8 ? "quint8" : "qint8"; }

Tensor make_per_tensor_quantized(const Tensor& codes, float scale, int32_t zero_point) {
  constexpr const char* op = "make_per_tensor_quantized";
  MANTISSA_CHECK(codes.defined(), op, ": got an undefined tensor of codes");
  MANTISSA_CHECK(!codes.is_quantized(), op, ": the codes are already a quantized tensor (",
                 quantized_dtype_name(codes.dtype()), ", scale ", codes.q_scale(), ", zero point ",
                 codes.q_zero_point(), "); pass int_repr(q) to requantize its codes");
  MANTISSA_CHECK(codes.dtype() == DType::U8 || codes.dtype() == DType::I8, op, ": codes must be U8 (quint8) or I8 ",
                 "(qint8), got ", codes.dtype(), " of shape ", shape_str(codes.sizes()));
  MANTISSA_CHECK(!codes.requires_grad(), op, ": the codes require grad; quantized tensors have no gradients "
                 "(detach() the codes first)");
  MANTISSA_CHECK(std::isfinite(scale) && scale > 0.0f, op, ": scale must be finite and positive, got ", scale);
  const int32_t lo = code_min(codes.dtype()), hi = code_max(codes.dtype());
  MANTISSA_CHECK(zero_point >= lo && zero_point <= hi, op, ": zero point ", zero_point, " is outside the ",
                 quantized_dtype_name(codes.dtype()), " range [", lo, ", ", hi, "]");
  return rewrap(codes, std::make_shared<const QuantMeta>(QuantMeta{scale, zero_point}));
}

Tensor int_repr(const Tensor& q) {
  check_quantized(q, "int_repr", "the input");
  return rewrap(q, nullptr);
}

Tensor with_quant_meta_of(const Tensor& codes, const Tensor& like) {
  MANTISSA_ASSERT(like.is_quantized() && codes.dtype() == like.dtype(), "with_quant_meta_of: ", codes.dtype(),
                  " codes cannot take the meta of a ", like.dtype(), " tensor");
  return rewrap(codes, like.quant_meta());
}

Tensor quantized_relu(const Tensor& q) {
  check_quantized(q, "relu", "the input");
  // A zero point at the lowest code (uint8 with zero point 0: the output of a ReLU-fused layer,
  // whose observer saw no negative value) makes max(q, zp) = q for every code: return q itself.
  const int32_t lowest = q.dtype() == DType::U8 ? 0 : -128;
  if (q.q_zero_point() <= lowest) return q;
  Tensor out = empty(q.sizes(), TensorOptions(q.dtype()).device(q.device()));
  kernels::quantized_relu(out, int_repr(q), q.q_zero_point());
  return with_quant_meta_of(out, q);
}

Tensor quantized_add(const Tensor& a, const Tensor& b, float scale, int32_t zero_point, bool relu) {
  const char* op = relu ? "quantized_add_relu" : "quantized_add";
  check_quantized(a, op, "a");
  check_quantized(b, op, "b");
  MANTISSA_CHECK(a.dtype() == b.dtype(), op, ": a is ", quantized_dtype_name(a.dtype()), " but b is ",
                 quantized_dtype_name(b.dtype()), "; both operands must have the same quantized dtype");
  MANTISSA_CHECK(a.sizes() == b.sizes(), op, ": shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
                 " differ; quantized add does not broadcast (expand and contiguous() the smaller operand)");
  MANTISSA_CHECK(a.device() == b.device(), op, ": a is on ", a.device(), " but b is on ", b.device());
  MANTISSA_CHECK(std::isfinite(scale) && scale > 0.0f, op, ": output scale must be finite and positive, got ", scale);
  const int32_t lo = code_min(a.dtype()), hi = code_max(a.dtype());
  MANTISSA_CHECK(zero_point >= lo && zero_point <= hi, op, ": output zero point ", zero_point, " is outside the ",
                 quantized_dtype_name(a.dtype()), " range [", lo, ", ", hi, "]");
  kernels::QAddParams p{a.q_scale(), a.q_zero_point(), b.q_scale(), b.q_zero_point(), kernels::quant_inv_scale(scale),
                        zero_point, lo, hi, relu};
  Tensor out = empty(a.sizes(), TensorOptions(a.dtype()).device(a.device()));
  kernels::quantized_add(out, int_repr(a), int_repr(b), p);
  return make_per_tensor_quantized(out, scale, zero_point);
}

}  // namespace mantissa
