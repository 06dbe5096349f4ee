// Views (share storage, backward reshapes the gradient back), copies and casts. Views, clones
// and device moves of a quantized tensor keep its quantization meta (core/quantized.h).
#include <numeric>

#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/kernels/copy.h"
#include "core/quantized.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

Tensor make_view(const Tensor& x, Shape sizes, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->sizes = std::move(sizes);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = x.dtype();
  impl->quant = x.quant_meta();
  return Tensor(std::move(impl));
}

Shape infer_size(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MANTISSA_CHECK(infer < 0, op, ": only one dimension can be -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      MANTISSA_CHECK(shape[i] >= 0, op, ": invalid size ", shape[i], " in ", shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MANTISSA_CHECK(known != 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for input of shape ",
                   shape_str(from), " (", numel, " elements)");
    out[infer] = numel / known;
  } else {
    MANTISSA_CHECK(known == numel, op, ": shape ", shape_str(shape), " is invalid for input of shape ",
                   shape_str(from), " (", numel, " elements)");
  }
  return out;
}

// Strides for viewing (sizes, strides) as new_sizes without a copy, if possible (the
// chunk-matching algorithm: each run of merged old dims must map to a run of new dims).
std::optional<Shape> view_strides(const Shape& sizes, const Shape& strides, const Shape& new_sizes) {
  Shape out(new_sizes.size());
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  if (numel == 0) return contiguous_strides(new_sizes);
  int64_t view_d = static_cast<int64_t>(new_sizes.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) {
    // Trailing size-1 dims of the new shape.
    while (view_d >= 0) {
      if (new_sizes[view_d] != 1) return std::nullopt;
      out[view_d] = 1;
      --view_d;
    }
  }
  return out;
}

Tensor slice_backward(const Tensor& g, const Shape& in_shape, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Tensor z = zeros(in_shape, TensorOptions(g.dtype()).device(g.device()));
  kernels::copy(z.slice(dim, start, end, step), g);
  return z;
}

}  // namespace

Tensor view(const Tensor& x, const Shape& shape) {
  Shape sizes = infer_size(shape, x.numel(), "view", x.sizes());
  auto st = view_strides(x.sizes(), x.strides(), sizes);
  MANTISSA_CHECK(st.has_value(), "view: shape ", shape_str(shape), " is not compatible with input of shape ",
                 shape_str(x.sizes()), " and strides ", shape_str(x.strides()),
                 " (at least one dimension spans two contiguous chunks); use reshape() instead");
  Tensor out = make_view(x, sizes, *st, x.storage_offset());
  if (autograd::needs_grad(x)) {
    record(OpId::view, {x}, {out}, [in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].reshape(in_shape)};
    });
  }
  return out;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  Shape sizes = infer_size(shape, x.numel(), "reshape", x.sizes());
  if (view_strides(x.sizes(), x.strides(), sizes).has_value()) return view(x, sizes);
  return view(clone(x), sizes);
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  int64_t nd = x.dim();
  d0 = wrap_dim(d0, nd, "transpose");
  d1 = wrap_dim(d1, nd, "transpose");
  Shape sizes = x.sizes(), strides = x.strides();
  if (nd > 0) {
    std::swap(sizes[d0], sizes[d1]);
    std::swap(strides[d0], strides[d1]);
  }
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  if (autograd::needs_grad(x)) {
    record(OpId::transpose, {x}, {out}, [d0, d1](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].transpose(d0, d1)};
    });
  }
  return out;
}

Tensor permute(const Tensor& x, const Shape& dims) {
  int64_t nd = x.dim();
  MANTISSA_CHECK(static_cast<int64_t>(dims.size()) == nd, "permute: got ", dims.size(), " dims ", shape_str(dims),
                 " for a ", nd, "-d tensor of shape ", shape_str(x.sizes()));
  Shape sizes(nd), strides(nd), inverse(nd);
  std::vector<bool> used(nd, false);
  for (int64_t i = 0; i < nd; ++i) {
    int64_t d = wrap_dim(dims[i], nd, "permute");
    MANTISSA_CHECK(!used[d], "permute: dimension ", d, " repeats in ", shape_str(dims));
    used[d] = true;
    sizes[i] = x.sizes()[d];
    strides[i] = x.strides()[d];
    inverse[d] = i;
  }
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  if (autograd::needs_grad(x)) {
    record(OpId::permute, {x}, {out}, [inverse](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].permute(inverse)};
    });
  }
  return out;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  MANTISSA_CHECK(x.dim() > 0, "slice: cannot slice a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "slice");
  MANTISSA_CHECK(step > 0, "slice: step must be positive (got ", step, ")");
  const int64_t n = x.size(dim);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sizes = x.sizes(), strides = x.strides();
  sizes[dim] = (end - start + step - 1) / step;
  strides[dim] *= step;
  Tensor out = make_view(x, sizes, strides, x.storage_offset() + start * x.stride(dim));
  if (autograd::needs_grad(x)) {
    record(OpId::slice, {x}, {out},
           [in_shape = x.sizes(), dim, start, end, step](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             return {slice_backward(g[0], in_shape, dim, start, end, step)};
           });
  }
  return out;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  MANTISSA_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.size(dim);
  if (start < 0) start += n;
  MANTISSA_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: start ", start, " and length ", length,
                 " are out of range for dimension ", dim, " of size ", n, " (shape ", shape_str(x.sizes()), ")");
  return slice(x, dim, start, start + length, 1);
}

Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  MANTISSA_CHECK(x.dim() > 0, "select: cannot select from a 0-d tensor");
  dim = wrap_dim(dim, x.dim(), "select");
  const int64_t n = x.size(dim);
  MANTISSA_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for dimension ", dim,
                 " of size ", n, " (shape ", shape_str(x.sizes()), ")");
  if (index < 0) index += n;
  Shape sizes = x.sizes(), strides = x.strides();
  int64_t offset = x.storage_offset() + index * strides[dim];
  sizes.erase(sizes.begin() + dim);
  strides.erase(strides.begin() + dim);
  Tensor out = make_view(x, sizes, strides, offset);
  if (autograd::needs_grad(x)) {
    record(OpId::select, {x}, {out}, [in_shape = x.sizes(), dim, index](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor z = zeros(in_shape, TensorOptions(g[0].dtype()).device(g[0].device()));
      kernels::copy(z.select(dim, index), g[0]);
      return {z};
    });
  }
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  MANTISSA_CHECK(nd >= x.dim(), "expand: the number of sizes ", shape_str(shape), " must be at least the tensor's ",
                 x.dim(), " dims (shape ", shape_str(x.sizes()), ")");
  Shape sizes(nd), strides(nd);
  const int64_t lead = nd - x.dim();
  for (int64_t i = 0; i < nd; ++i) {
    if (i < lead) {
      MANTISSA_CHECK(shape[i] >= 0, "expand: size -1 is not allowed in a new leading dimension (", shape_str(shape), ")");
      sizes[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    int64_t have = x.sizes()[i - lead];
    int64_t want = shape[i] == -1 ? have : shape[i];
    MANTISSA_CHECK(have == want || have == 1, "expand: the expanded size ", want, " must match the existing size ",
                   have, " at non-singleton dimension ", i, " (shape ", shape_str(x.sizes()), " to ", shape_str(shape),
                   ")");
    sizes[i] = want;
    strides[i] = have == want ? x.strides()[i - lead] : 0;
  }
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  if (autograd::needs_grad(x)) {
    record(OpId::expand, {x}, {out}, [in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {autograd::sum_to(g[0], in_shape)};
    });
  }
  return out;
}

namespace {
Tensor reshape_view(const Tensor& x, const Shape& sizes, const Shape& strides, OpId op) {
  Tensor out = make_view(x, sizes, strides, x.storage_offset());
  if (autograd::needs_grad(x)) {
    record(op, {x}, {out}, [in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {g[0].reshape(in_shape)};
    });
  }
  return out;
}
}  // namespace

Tensor squeeze(const Tensor& x) {
  Shape sizes, strides;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.sizes()[d] == 1) continue;
    sizes.push_back(x.sizes()[d]);
    strides.push_back(x.strides()[d]);
  }
  return reshape_view(x, sizes, strides, OpId::squeeze);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  if (x.dim() == 0) return reshape_view(x, {}, {}, OpId::squeeze);
  dim = wrap_dim(dim, x.dim(), "squeeze");
  if (x.sizes()[dim] != 1) return reshape_view(x, x.sizes(), x.strides(), OpId::squeeze);
  Shape sizes = x.sizes(), strides = x.strides();
  sizes.erase(sizes.begin() + dim);
  strides.erase(strides.begin() + dim);
  return reshape_view(x, sizes, strides, OpId::squeeze);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape sizes = x.sizes(), strides = x.strides();
  int64_t st = dim < x.dim() ? x.strides()[dim] * x.sizes()[dim] : 1;
  sizes.insert(sizes.begin() + dim, 1);
  strides.insert(strides.begin() + dim, st);
  return reshape_view(x, sizes, strides, OpId::unsqueeze);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  if (x.dim() == 0) return reshape(x, {1});
  start_dim = wrap_dim(start_dim, x.dim(), "flatten");
  end_dim = wrap_dim(end_dim, x.dim(), "flatten");
  MANTISSA_CHECK(start_dim <= end_dim, "flatten: start_dim ", start_dim, " must not come after end_dim ", end_dim);
  Shape sizes;
  for (int64_t d = 0; d < start_dim; ++d) sizes.push_back(x.sizes()[d]);
  int64_t n = 1;
  for (int64_t d = start_dim; d <= end_dim; ++d) n *= x.sizes()[d];
  sizes.push_back(n);
  for (int64_t d = end_dim + 1; d < x.dim(); ++d) sizes.push_back(x.sizes()[d]);
  return reshape(x, sizes);
}

Tensor clone(const Tensor& x) {
  Tensor out = empty_like(x);
  kernels::copy(out, x);
  if (x.is_quantized()) return with_quant_meta_of(out, x);  // codes copied as they are
  if (autograd::needs_grad(x)) {
    record(OpId::clone, {x}, {out}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> { return {g[0]}; });
  }
  return out;
}

Tensor contiguous(const Tensor& x) { return x.is_contiguous() ? x : clone(x); }

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  MANTISSA_CHECK(!x.is_quantized(), "to: cannot convert a quantized tensor (", quantized_dtype_name(x.dtype()),
                 ", scale ", x.q_scale(), ", zero point ", x.q_zero_point(), ", shape ", shape_str(x.sizes()), ") to ",
                 dtype, "; call quant::dequantize(x) for its F32 values or int_repr(x) for its codes");
  Tensor out = empty_like(x, dtype);
  kernels::copy(out, x);
  if (is_floating(x.dtype()) && is_floating(dtype) && autograd::needs_grad(x)) {
    record(OpId::to_dtype, {x}, {out}, [in = x.dtype()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {to_dtype(g[0], in)};
    });
  }
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  Tensor src = x.is_contiguous() ? x : clone(x).detach();
  Tensor out = empty(x.sizes(), TensorOptions(x.dtype()).device(device));
  kernels::copy(out, src);
  if (x.is_quantized()) return with_quant_meta_of(out, x);
  if (autograd::needs_grad(x)) {
    record(OpId::to_device, {x}, {out}, [in = x.device()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {to_device(g[0], in)};
    });
  }
  return out;
}

}  // namespace mantissa
