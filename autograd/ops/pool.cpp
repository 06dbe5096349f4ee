// max_pool2d, avg_pool2d and adaptive_avg_pool2d: PyTorch's argument rules (stride defaults to
// the kernel, padding at most half the kernel, ceil_mode), the forward through core/kernels/pool
// and the backward (max pooling routes to the argmax saved by the forward).
#include <limits>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/pool.h"
#include "core/kernels/qtensor_ops.h"
#include "core/quantized.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

std::pair<int64_t, int64_t> pair_arg(const char* op, const std::vector<int64_t>& v, const char* name) {
  MANTISSA_CHECK(v.size() == 1 || v.size() == 2, op, ": ", name, " must have 1 or 2 elements, got ", shape_str(v));
  return v.size() == 1 ? std::pair{v[0], v[0]} : std::pair{v[0], v[1]};
}

// The input as [N, C, H, W] (an unbatched [C, H, W] gets N = 1), after the common checks.
Shape pool_input_shape(const char* op, const Tensor& x) {
  MANTISSA_CHECK(x.defined(), op, ": got an undefined input");
  MANTISSA_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape ",
                 shape_str(x.sizes()));
  MANTISSA_CHECK(is_floating(x.dtype()), op, ": dtype ", dtype_name(x.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  autograd::check_backend(x, op);
  const Shape s = x.dim() == 4 ? x.sizes() : Shape{1, x.size(0), x.size(1), x.size(2)};
  MANTISSA_CHECK(s[1] > 0 && s[2] > 0 && s[3] > 0, op, ": expected non-zero channels, height and width, got input ",
                 shape_str(x.sizes()));
  return s;
}

kernels::Pool2dParams pool_params(const char* op, const Shape& x4, const std::vector<int64_t>& kernel,
                                  const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                                  bool ceil_mode) {
  kernels::Pool2dParams p;
  std::tie(p.kernel_h, p.kernel_w) = pair_arg(op, kernel, "kernel_size");
  std::tie(p.stride_h, p.stride_w) = stride.empty() ? std::pair{p.kernel_h, p.kernel_w} : pair_arg(op, stride, "stride");
  std::tie(p.pad_h, p.pad_w) = pair_arg(op, padding, "padding");
  p.ceil_mode = ceil_mode;
  MANTISSA_CHECK(p.kernel_h > 0 && p.kernel_w > 0, op, ": kernel_size must be greater than zero, got ",
                 shape_str({p.kernel_h, p.kernel_w}));
  MANTISSA_CHECK(p.stride_h > 0 && p.stride_w > 0, op, ": stride must be greater than zero, got ",
                 shape_str({p.stride_h, p.stride_w}));
  MANTISSA_CHECK(p.pad_h >= 0 && p.pad_w >= 0, op, ": padding must be non-negative, got ",
                 shape_str({p.pad_h, p.pad_w}));
  MANTISSA_CHECK(p.pad_h <= p.kernel_h / 2 && p.pad_w <= p.kernel_w / 2, op,
                 ": pad should be at most half of kernel size, but got padding ", shape_str({p.pad_h, p.pad_w}),
                 " and kernel_size ", shape_str({p.kernel_h, p.kernel_w}));
  const int64_t ho = kernels::pool_output_size(x4[2], p.kernel_h, p.stride_h, p.pad_h, ceil_mode);
  const int64_t wo = kernels::pool_output_size(x4[3], p.kernel_w, p.stride_w, p.pad_w, ceil_mode);
  MANTISSA_CHECK(ho >= 1 && wo >= 1, op, ": given input ", shape_str(x4), ", kernel_size ",
                 shape_str({p.kernel_h, p.kernel_w}), " and padding ", shape_str({p.pad_h, p.pad_w}),
                 ", the calculated output size ", shape_str({ho, wo}), " is too small");
  return p;
}

// The output shape for an input of x's rank.
Shape out_shape(const Tensor& x, const Shape& out4) {
  return x.dim() == 4 ? out4 : Shape{out4[1], out4[2], out4[3]};
}

// max_pool2d of a quantized tensor: the max of codes is the code of the max (affine quantization
// with a positive scale is monotone), so the output keeps the input's scale and zero point.
Tensor quantized_max_pool2d(const Tensor& x, const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                            const std::vector<int64_t>& padding, bool ceil_mode) {
  constexpr const char* op = "max_pool2d";
  MANTISSA_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape ",
                 shape_str(x.sizes()), " (", quantized_dtype_name(x.dtype()), ")");
  const Shape x4 = x.dim() == 4 ? x.sizes() : Shape{1, x.size(0), x.size(1), x.size(2)};
  MANTISSA_CHECK(x4[1] > 0 && x4[2] > 0 && x4[3] > 0, op, ": expected non-zero channels, height and width, got input ",
                 shape_str(x.sizes()));
  const kernels::Pool2dParams p = pool_params(op, x4, kernel, stride, padding, ceil_mode);
  const Shape o4{x4[0], x4[1], kernels::pool_output_size(x4[2], p.kernel_h, p.stride_h, p.pad_h, ceil_mode),
                 kernels::pool_output_size(x4[3], p.kernel_w, p.stride_w, p.pad_w, ceil_mode)};
  Tensor out4 = empty(o4, TensorOptions(x.dtype()).device(x.device()));
  kernels::quantized_max_pool2d(out4, int_repr(x).reshape(x4).contiguous(), p);
  return with_quant_meta_of(out4.view(out_shape(x, o4)), x);
}

}  // namespace

Tensor max_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride,
                  std::vector<int64_t> padding, bool ceil_mode) {
  if (x.defined() && x.is_quantized()) return quantized_max_pool2d(x, kernel, stride, padding, ceil_mode);
  if (auto c = autograd::autocast(OpId::max_pool2d, x)) return max_pool2d((*c)[0], kernel, stride, padding, ceil_mode);
  const Shape x4 = pool_input_shape("max_pool2d", x);
  const kernels::Pool2dParams p = pool_params("max_pool2d", x4, kernel, stride, padding, ceil_mode);
  const Shape o4{x4[0], x4[1], kernels::pool_output_size(x4[2], p.kernel_h, p.stride_h, p.pad_h, ceil_mode),
                 kernels::pool_output_size(x4[3], p.kernel_w, p.stride_w, p.pad_w, ceil_mode)};
  Tensor out4 = empty(o4, TensorOptions(x.dtype()).device(x.device()));
  Tensor indices = empty(o4, TensorOptions(DType::I64).device(x.device()));
  kernels::max_pool2d_forward(out4, indices, x.detach().reshape(x4), p);
  Tensor out = out4.view(out_shape(x, o4));
  if (autograd::needs_grad(x)) {
    // The argmax indices (flat positions within one H*W plane) are kept as I32 while they wait
    // for backward: half the bytes of I64, which under 16-bit autocast is the largest saved
    // tensor of a conv net. I64 is restored for the kernel.
    const bool narrow = x4[2] * x4[3] <= std::numeric_limits<int32_t>::max();
    Tensor kept = narrow ? indices.to(DType::I32) : indices;
    record(OpId::max_pool2d, {x}, {out},
           [indices = SavedTensor(kept), x4, o4, p, x_shape = x.sizes()](const std::vector<Tensor>& g)
               -> std::vector<Tensor> {
             Tensor dx = empty(x4, TensorOptions(g[0].dtype()).device(g[0].device()));
             Tensor idx = indices.unpack();
             if (idx.dtype() != DType::I64) idx = idx.to(DType::I64);
             // With the window parameters the CUDA backward gathers in a fixed order
             // (deterministic, bit-identical to the CPU) instead of scattering with atomics.
             kernels::max_pool2d_backward(dx, g[0].reshape(o4), idx, p);
             return {dx.view(x_shape)};
           });
  }
  return out;
}

Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride,
                  std::vector<int64_t> padding, bool ceil_mode, bool count_include_pad) {
  if (auto c = autograd::autocast(OpId::avg_pool2d, x))
    return avg_pool2d((*c)[0], kernel, stride, padding, ceil_mode, count_include_pad);
  const Shape x4 = pool_input_shape("avg_pool2d", x);
  kernels::Pool2dParams p = pool_params("avg_pool2d", x4, kernel, stride, padding, ceil_mode);
  p.count_include_pad = count_include_pad;
  const Shape o4{x4[0], x4[1], kernels::pool_output_size(x4[2], p.kernel_h, p.stride_h, p.pad_h, ceil_mode),
                 kernels::pool_output_size(x4[3], p.kernel_w, p.stride_w, p.pad_w, ceil_mode)};
  Tensor out4 = empty(o4, TensorOptions(x.dtype()).device(x.device()));
  kernels::avg_pool2d_forward(out4, x.detach().reshape(x4), p);
  Tensor out = out4.view(out_shape(x, o4));
  if (autograd::needs_grad(x)) {
    record(OpId::avg_pool2d, {x}, {out},
           [p, x4, o4, x_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor dx = empty(x4, TensorOptions(g[0].dtype()).device(g[0].device()));
             kernels::avg_pool2d_backward(dx, g[0].reshape(o4), p);
             return {dx.view(x_shape)};
           });
  }
  return out;
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::vector<int64_t> output_size) {
  if (auto c = autograd::autocast(OpId::adaptive_avg_pool2d, x)) return adaptive_avg_pool2d((*c)[0], output_size);
  const Shape x4 = pool_input_shape("adaptive_avg_pool2d", x);
  const auto [ho, wo] = pair_arg("adaptive_avg_pool2d", output_size, "output_size");
  MANTISSA_CHECK(ho >= 1 && wo >= 1, "adaptive_avg_pool2d: output_size must be positive, got ",
                 shape_str(output_size));
  const Shape o4{x4[0], x4[1], ho, wo};
  Tensor out4 = empty(o4, TensorOptions(x.dtype()).device(x.device()));
  kernels::adaptive_avg_pool2d_forward(out4, x.detach().reshape(x4));
  Tensor out = out4.view(out_shape(x, o4));
  if (autograd::needs_grad(x)) {
    record(OpId::adaptive_avg_pool2d, {x}, {out},
           [x4, o4, x_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor dx = empty(x4, TensorOptions(g[0].dtype()).device(g[0].device()));
             kernels::adaptive_avg_pool2d_backward(dx, g[0].reshape(o4));
             return {dx.view(x_shape)};
           });
  }
  return out;
}

}  // namespace mantissa
