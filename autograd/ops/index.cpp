// Dropout, embedding, joining (cat, stack) and indexing (index_select, gather). Every index is
// range-checked before a kernel reads memory with it; backward passes split the gradient
// (joins) or scatter-add it into zeros accumulated in F32 for F16/BF16 (indexing).
#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/quantized.h"
#include "core/kernels/copy.h"
#include "core/kernels/index.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

void check_cpu(const Tensor& t, const char* op) {
  autograd::check_backend(t, op);
}

Tensor dense(const Tensor& x) {
  if (x.is_contiguous()) return x.detach();
  Tensor out = empty_like(x);
  kernels::copy(out, x);
  return out;
}

void check_index_tensor(const Tensor& index, const char* op, const char* what) {
  MANTISSA_CHECK(index.defined(), op, ": ", what, " is an undefined tensor");
  MANTISSA_CHECK(index.dtype() == DType::I32 || index.dtype() == DType::I64, op, ": ", what,
                 " must be I32 or I64 (got ", index.dtype(), ")");
}

void check_range(const Tensor& index, int64_t n, const char* op, const std::string& where) {
  auto bad = kernels::find_out_of_range(index, n);
  MANTISSA_CHECK(!bad, op, ": index ", bad.value_or(0), " is out of range [0, ", n, ") ", where);
}

// Accumulate dtype of a gradient of dtype t: F32 for F16/BF16, else t.
DType grad_acc_dtype(DType t) { return is_low_precision(t) ? DType::F32 : t; }

}  // namespace

// Dropout --------------------------------------------------------------------------------------
Tensor dropout(const Tensor& x, double p, bool training) {
  if (x.defined() && x.is_quantized()) {
    // Evaluation-mode dropout is the identity, so a converted model's forward() keeps working;
    // training-mode dropout would rescale the codes by 1 / (1 - p), which no quantized tensor holds.
    MANTISSA_CHECK(!training, "dropout: got a quantized tensor (", quantized_dtype_name(x.dtype()), ", scale ",
                   x.q_scale(), ", zero point ", x.q_zero_point(), ", shape ", shape_str(x.sizes()),
                   ") with training = true; dropout on quantized tensors runs in eval mode only (module.eval())");
    MANTISSA_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1] (got ", p, ")");
    return x;
  }
  if (auto c = autograd::autocast(OpId::dropout, x)) return dropout((*c)[0], p, training);
  MANTISSA_CHECK(x.defined(), "dropout: the input is an undefined tensor");
  MANTISSA_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1] (got ", p, ")");
  if (!training || p == 0.0 || x.numel() == 0) return x;
  MANTISSA_CHECK(is_floating(x.dtype()), "dropout: the input must be floating point (got ", x.dtype(), ")");
  check_cpu(x, "dropout");
  if (p == 1.0) {
    Tensor y = zeros(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
    if (autograd::needs_grad(x)) {
      record(OpId::dropout, {x}, {y}, [](const std::vector<Tensor>& g) -> std::vector<Tensor> {
        return {zeros(g[0].sizes(), TensorOptions(g[0].dtype()).device(g[0].device()))};
      });
    }
    return y;
  }
  // The mask draws in F32 for every dtype (random.cpp), so one seed gives one mask whatever
  // the dtype or device.
  Tensor mask = bernoulli(x.sizes(), 1.0 - p, TensorOptions(x.dtype()).device(x.device()), nullptr);
  const double scale = 1.0 / (1.0 - p);
  Tensor y = empty(x.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::dropout_apply(y, x, mask, scale);
  if (autograd::needs_grad(x)) {
    record(OpId::dropout, {x}, {y}, [mask, scale](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      Tensor gc = g[0].dtype() == mask.dtype() ? g[0] : g[0].to(mask.dtype());
      Tensor gx = empty(gc.sizes(), TensorOptions(gc.dtype()).device(gc.device()));
      kernels::dropout_apply(gx, gc, mask, scale);
      return {gx};
    });
  }
  return y;
}

// Embedding ------------------------------------------------------------------------------------
Tensor embedding(const Tensor& weight, const Tensor& indices) {
  if (auto c = autograd::autocast(OpId::embedding, weight)) return embedding((*c)[0], indices);
  MANTISSA_CHECK(weight.defined(), "embedding: weight is an undefined tensor");
  MANTISSA_CHECK(weight.dim() == 2, "embedding: weight must be 2-D [num_embeddings, embedding_dim], got shape ",
                 shape_str(weight.sizes()));
  check_index_tensor(indices, "embedding", "indices");
  MANTISSA_CHECK(indices.device() == weight.device(), "embedding: indices are on ", indices.device(),
                 " but weight is on ", weight.device());
  check_cpu(weight, "embedding");
  const int64_t vocab = weight.size(0), width = weight.size(1);
  check_range(indices, vocab, "embedding", "(weight has " + std::to_string(vocab) + " rows, shape " +
                                               shape_str(weight.sizes()) + ")");
  Tensor flat = dense(indices).reshape({indices.numel()});
  Shape out_shape = indices.sizes();
  out_shape.push_back(width);
  Tensor y = empty(out_shape, TensorOptions(weight.dtype()).device(weight.device()));
  kernels::index_select(y, dense(weight), 1, vocab, width, flat);
  if (autograd::needs_grad(weight)) {
    record(OpId::embedding, {weight}, {y},
           [flat, vocab, width](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor gc = dense(g[0]);
             Tensor gw = zeros({vocab, width}, TensorOptions(grad_acc_dtype(gc.dtype())).device(gc.device()));
             kernels::index_add_rows(gw, gc, 1, vocab, width, flat);
             return {gw};
           });
  }
  return y;
}

// Joining --------------------------------------------------------------------------------------
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (auto c = autograd::autocast_list(OpId::cat, tensors)) return cat(*c, dim);
  MANTISSA_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  // Legacy rule kept by PyTorch: 1-D empty tensors ([0]) are skipped whatever the other shapes.
  auto skipped = [](const Tensor& t) { return t.dim() == 1 && t.size(0) == 0; };
  int64_t ref = -1;
  DType dtype = tensors[0].defined() ? tensors[0].dtype() : DType::F32;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MANTISSA_CHECK(t.defined(), "cat: tensor ", i, " is an undefined tensor");
    MANTISSA_CHECK(t.dim() > 0, "cat: zero-dimensional tensor (at position ", i, ") cannot be concatenated");
    MANTISSA_CHECK(t.device() == tensors[0].device(), "cat: tensor ", i, " is on ", t.device(), " but tensor 0 is on ",
                   tensors[0].device());
    dtype = promote_types(dtype, t.dtype());
    if (ref < 0 && !skipped(t)) ref = static_cast<int64_t>(i);
  }
  check_cpu(tensors[0], "cat");
  if (ref < 0) {
    // Only [0] tensors: the result is an empty [0] tensor with no graph to speak of.
    return empty({0}, TensorOptions(dtype).device(tensors[0].device()));
  }
  const Tensor& r = tensors[ref];
  dim = wrap_dim(dim, r.dim(), "cat");
  Shape out_shape = r.sizes();
  out_shape[dim] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (skipped(t)) continue;
    bool match = t.dim() == r.dim();
    int64_t bad_dim = -1;
    for (int64_t d = 0; match && d < t.dim(); ++d) {
      if (d != dim && t.size(d) != r.size(d)) {
        match = false;
        bad_dim = d;
      }
    }
    MANTISSA_CHECK(match, "cat: sizes of tensors must match except in dimension ", dim, ": tensor ", ref,
                   " has shape ", shape_str(r.sizes()), " but tensor ", i, " has shape ", shape_str(t.sizes()),
                   bad_dim >= 0 ? " (mismatch in dimension " + std::to_string(bad_dim) + ")"
                                : " (different number of dimensions)");
    out_shape[dim] += t.size(dim);
  }
  Tensor y = empty(out_shape, TensorOptions(dtype).device(r.device()));
  std::vector<int64_t> offsets(tensors.size(), -1), lengths(tensors.size(), 0);
  int64_t off = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (skipped(tensors[i])) continue;
    offsets[i] = off;
    lengths[i] = tensors[i].size(dim);
    kernels::copy(y.detach().narrow(dim, off, lengths[i]), tensors[i]);
    off += lengths[i];
  }
  if (autograd::needs_grad(tensors)) {
    record(OpId::cat, tensors, {y}, [dim, offsets, lengths](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      std::vector<Tensor> out(offsets.size());
      for (size_t i = 0; i < offsets.size(); ++i) {
        if (offsets[i] >= 0) out[i] = g[0].narrow(dim, offsets[i], lengths[i]);
      }
      return out;
    });
  }
  return y;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (auto c = autograd::autocast_list(OpId::stack, tensors)) return stack(*c, dim);
  MANTISSA_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  for (size_t i = 0; i < tensors.size(); ++i)
    MANTISSA_CHECK(tensors[i].defined(), "stack: tensor ", i, " is an undefined tensor");
  const Tensor& r = tensors[0];
  DType dtype = r.dtype();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MANTISSA_CHECK(t.sizes() == r.sizes(), "stack: expects each tensor to be equal size, but got ",
                   shape_str(r.sizes()), " at entry 0 and ", shape_str(t.sizes()), " at entry ", i);
    MANTISSA_CHECK(t.device() == r.device(), "stack: tensor ", i, " is on ", t.device(), " but tensor 0 is on ",
                   r.device());
    dtype = promote_types(dtype, t.dtype());
  }
  check_cpu(r, "stack");
  dim = wrap_dim(dim, r.dim() + 1, "stack");
  Shape out_shape = r.sizes();
  out_shape.insert(out_shape.begin() + dim, static_cast<int64_t>(tensors.size()));
  Tensor y = empty(out_shape, TensorOptions(dtype).device(r.device()));
  for (size_t i = 0; i < tensors.size(); ++i) {
    kernels::copy(y.detach().select(dim, static_cast<int64_t>(i)), tensors[i]);
  }
  if (autograd::needs_grad(tensors)) {
    record(OpId::stack, tensors, {y}, [dim, n = tensors.size()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      std::vector<Tensor> out(n);
      for (size_t i = 0; i < n; ++i) out[i] = g[0].select(dim, static_cast<int64_t>(i));
      return out;
    });
  }
  return y;
}

// Indexing -------------------------------------------------------------------------------------
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  if (auto c = autograd::autocast(OpId::index_select, x)) return index_select((*c)[0], dim, index);
  MANTISSA_CHECK(x.defined(), "index_select: the input is an undefined tensor");
  check_index_tensor(index, "index_select", "index");
  MANTISSA_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got shape ", shape_str(index.sizes()));
  MANTISSA_CHECK(x.dim() > 0, "index_select: cannot index a 0-d tensor; reshape it to [1] first");
  MANTISSA_CHECK(index.device() == x.device(), "index_select: index is on ", index.device(), " but the input is on ",
                 x.device());
  check_cpu(x, "index_select");
  dim = wrap_dim(dim, x.dim(), "index_select");
  const int64_t n = x.size(dim);
  check_range(index, n, "index_select",
              "for dimension " + std::to_string(dim) + " of input shape " + shape_str(x.sizes()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  Shape out_shape = x.sizes();
  out_shape[dim] = index.numel();
  Tensor idx = index.dim() == 0 ? index.reshape({1}) : index;
  Tensor y = empty(out_shape, TensorOptions(x.dtype()).device(x.device()));
  kernels::index_select(y, dense(x), outer, n, inner, idx);
  if (autograd::needs_grad(x)) {
    record(OpId::index_select, {x}, {y},
           [idx, in_shape = x.sizes(), outer, n, inner](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor gc = dense(g[0]);
             Tensor gx = zeros(in_shape, TensorOptions(grad_acc_dtype(gc.dtype())).device(gc.device()));
             kernels::index_add_rows(gx, gc, outer, n, inner, idx);
             return {gx};
           });
  }
  return y;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  if (auto c = autograd::autocast(OpId::gather, x)) return gather((*c)[0], dim, index);
  MANTISSA_CHECK(x.defined(), "gather: the input is an undefined tensor");
  check_index_tensor(index, "gather", "index");
  MANTISSA_CHECK(index.dim() == x.dim() || (x.dim() <= 1 && index.dim() <= 1), "gather: index ",
                 shape_str(index.sizes()), " must have as many dimensions as the input ", shape_str(x.sizes()));
  MANTISSA_CHECK(index.device() == x.device(), "gather: index is on ", index.device(), " but the input is on ",
                 x.device());
  check_cpu(x, "gather");
  // 0-d operands behave as one-element vectors.
  Tensor xv = x.dim() == 0 ? x.detach().reshape({1}) : x.detach();
  Tensor iv = index.dim() == 0 ? index.reshape({1}) : index;
  dim = wrap_dim(dim, xv.dim(), "gather");
  for (int64_t d = 0; d < xv.dim(); ++d) {
    MANTISSA_CHECK(d == dim || iv.size(d) <= xv.size(d), "gather: index ", shape_str(index.sizes()),
                   " is larger than the input ", shape_str(x.sizes()), " in dimension ", d,
                   " (only dimension ", dim, " may differ)");
  }
  check_range(iv, xv.size(dim), "gather",
              "for dimension " + std::to_string(dim) + " of input shape " + shape_str(x.sizes()));
  Tensor y = empty(iv.sizes(), TensorOptions(x.dtype()).device(x.device()));
  kernels::gather(y, xv, dim, iv);
  if (index.dim() == 0) y = y.reshape({});
  if (autograd::needs_grad(x)) {
    record(OpId::gather, {x}, {y},
           [iv, dim, xshape = xv.sizes(), in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor gv = g[0].dim() == 0 ? g[0].reshape({1}) : g[0];
             Tensor gx = zeros(xshape, TensorOptions(grad_acc_dtype(gv.dtype())).device(gv.device()));
             kernels::gather_backward(gx, gv, dim, iv);
             return {gx.reshape(in_shape)};
           });
  }
  return y;
}

}  // namespace mantissa
