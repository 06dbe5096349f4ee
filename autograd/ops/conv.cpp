// conv2d: argument checks (shapes, groups, padded size, dtypes), the forward through
// kernels::conv2d_forward and the backward (input, weight and bias gradients) right under it.
// Accepts [N, C, H, W] or unbatched [C, H, W] input, like PyTorch.
#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/conv.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

// A 1- or 2-element option as (h, w).
std::pair<int64_t, int64_t> pair_option(const std::vector<int64_t>& v, const char* name) {
  MANTISSA_CHECK(v.size() == 1 || v.size() == 2, "conv2d: ", name, " must have 1 or 2 elements, got ", shape_str(v));
  return v.size() == 1 ? std::pair{v[0], v[0]} : std::pair{v[0], v[1]};
}

kernels::Conv2dParams conv_params(const Conv2dOptions& o) {
  kernels::Conv2dParams p;
  std::tie(p.stride_h, p.stride_w) = pair_option(o.stride, "stride");
  std::tie(p.pad_h, p.pad_w) = pair_option(o.padding, "padding");
  std::tie(p.dilation_h, p.dilation_w) = pair_option(o.dilation, "dilation");
  p.groups = o.groups;
  MANTISSA_CHECK(p.stride_h > 0 && p.stride_w > 0, "conv2d: stride must be positive, got ", shape_str(o.stride));
  MANTISSA_CHECK(p.pad_h >= 0 && p.pad_w >= 0, "conv2d: padding must be non-negative, got ", shape_str(o.padding));
  MANTISSA_CHECK(p.dilation_h > 0 && p.dilation_w > 0, "conv2d: dilation must be positive, got ",
                 shape_str(o.dilation));
  MANTISSA_CHECK(p.groups > 0, "conv2d: groups must be positive, got ", p.groups);
  return p;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dOptions& options) {
  if (auto c = autograd::autocast(OpId::conv2d, x, weight, bias)) return conv2d((*c)[0], (*c)[1], (*c)[2], options);
  MANTISSA_CHECK(x.defined() && weight.defined(), "conv2d: got an undefined input or weight");
  const kernels::Conv2dParams p = conv_params(options);
  MANTISSA_CHECK(x.dim() == 3 || x.dim() == 4, "conv2d: expected a 3-D [C, H, W] or 4-D [N, C, H, W] input, got shape ",
                 shape_str(x.sizes()));
  MANTISSA_CHECK(weight.dim() == 4, "conv2d: expected a 4-D weight [out_channels, in_channels / groups, kh, kw], got shape ",
                 shape_str(weight.sizes()));
  MANTISSA_CHECK(x.device() == weight.device() && (!bias.defined() || bias.device() == x.device()),
                 "conv2d: expected input, weight and bias on one device, got ", x.device(), ", ", weight.device(),
                 bias.defined() ? " and " : "", bias.defined() ? bias.device().str() : std::string());
  MANTISSA_CHECK(x.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == x.dtype()),
                 "conv2d: expected input, weight and bias to have the same dtype, got ", dtype_name(x.dtype()), ", ",
                 dtype_name(weight.dtype()), bias.defined() ? " and " : "", bias.defined() ? dtype_name(bias.dtype()) : "",
                 " (there is no implicit promotion; cast with .to())");
  MANTISSA_CHECK(is_floating(x.dtype()), "conv2d: dtype ", dtype_name(x.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  autograd::check_backend(x, "conv2d");

  const Shape x4 = x.dim() == 4 ? x.sizes() : Shape{1, x.size(0), x.size(1), x.size(2)};
  const int64_t n = x4[0], c = x4[1], h = x4[2], w = x4[3];
  const int64_t o = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  MANTISSA_CHECK(c % p.groups == 0, "conv2d: input channels ", c, " (input ", shape_str(x.sizes()),
                 ") are not divisible by groups ", p.groups);
  MANTISSA_CHECK(o % p.groups == 0, "conv2d: out channels ", o, " (weight ", shape_str(weight.sizes()),
                 ") are not divisible by groups ", p.groups);
  MANTISSA_CHECK(weight.size(1) * p.groups == c, "conv2d: given groups=", p.groups, ", weight ",
                 shape_str(weight.sizes()), " expects input ", shape_str(x.sizes()), " to have ",
                 weight.size(1) * p.groups, " channels, but it has ", c);
  MANTISSA_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == o), "conv2d: bias ",
                 shape_str(bias.defined() ? bias.sizes() : Shape{}), " does not match weight ",
                 shape_str(weight.sizes()), " (out_channels ", o, ")");
  const int64_t eff_h = (kh - 1) * p.dilation_h + 1, eff_w = (kw - 1) * p.dilation_w + 1;
  const int64_t padded_h = h + 2 * p.pad_h, padded_w = w + 2 * p.pad_w;
  MANTISSA_CHECK(kh > 0 && kw > 0 && eff_h <= padded_h && eff_w <= padded_w, "conv2d: kernel ",
                 shape_str({kh, kw}), " (dilation ", shape_str({p.dilation_h, p.dilation_w}), ", effective ",
                 shape_str({eff_h, eff_w}), ") is larger than the padded input ", shape_str({padded_h, padded_w}),
                 " (input ", shape_str(x.sizes()), ", padding ", shape_str({p.pad_h, p.pad_w}), ")");
  const int64_t ho = (padded_h - eff_h) / p.stride_h + 1, wo = (padded_w - eff_w) / p.stride_w + 1;

  Tensor out4 = empty({n, o, ho, wo}, TensorOptions(x.dtype()).device(x.device()));
  kernels::conv2d_forward(out4, x.detach().reshape(x4), weight.detach(), bias.defined() ? bias.detach() : bias, p);
  Tensor out = x.dim() == 4 ? out4 : out4.view({o, ho, wo});

  if (autograd::needs_grad(x, weight, bias)) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record(OpId::conv2d, {x, weight, bias}, {out},
           [sx = need_w ? SavedTensor(x) : SavedTensor(), sw = need_x ? SavedTensor(weight) : SavedTensor(), need_x,
            need_w, need_b, x4, x_shape = x.sizes(), w_shape = weight.sizes(), out4_shape = out4.sizes(),
            p](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             const Tensor g4 = g[0].reshape(out4_shape);
             const TensorOptions opts = TensorOptions(g4.dtype()).device(g4.device());
             Tensor dx, dw, db;
             if (need_x) {
               dx = empty(x4, opts);
               kernels::conv2d_backward_input(dx, g4, sw.unpack(), p);
               dx = dx.view(x_shape);
             }
             if (need_w || need_b) {
               db = need_b ? empty({out4_shape[1]}, opts) : Tensor();
               if (need_w) {
                 dw = empty(w_shape, opts);
                 kernels::conv2d_backward_weight(dw, db, g4, sx.unpack().reshape(x4), p);
               } else {
                 db = sum(g4, {0, 2, 3});
               }
             }
             return {dx, dw, db};
           });
  }
  return out;
}

}  // namespace mantissa
