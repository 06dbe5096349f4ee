// Reductions: sum, mean, var, max/min (all elements, or along a dim with indices), argmax and
// argmin. Argument checks, dispatch to core/kernels/reduce, and each backward under its forward.
#include <algorithm>

#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/reduce.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

void check_cpu(const Tensor& x, const char* op) {
  MANTISSA_CHECK(x.defined(), op, ": the input is an undefined tensor");
  autograd::check_backend(x, op);
}

// Which dims a dims list reduces: empty = all; negative dims wrap; a repeat is an error.
std::vector<bool> reduce_mask(const Tensor& x, const Shape& dims, const char* op) {
  const int64_t nd = x.dim();
  std::vector<bool> m(nd, dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, nd, op);
    if (nd == 0) continue;  // a 0-d tensor accepts dim 0 / -1 and has nothing to reduce
    MANTISSA_CHECK(!m[w], op, ": dimension ", w, " appears multiple times in the list of dims ", shape_str(dims),
                   " (input shape ", shape_str(x.sizes()), ")");
    m[w] = true;
  }
  return m;
}

std::vector<bool> dim_mask(const Tensor& x, int64_t dim) {
  std::vector<bool> m(x.dim(), false);
  if (x.dim() > 0) m[dim] = true;
  return m;
}

Shape keep_shape(const Shape& sizes, const std::vector<bool>& m) {
  Shape s = sizes;
  for (size_t d = 0; d < s.size(); ++d)
    if (m[d]) s[d] = 1;
  return s;
}

Shape drop_shape(const Shape& sizes, const std::vector<bool>& m) {
  Shape s;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (!m[d]) s.push_back(sizes[d]);
  return s;
}

int64_t reduced_count(const Shape& sizes, const std::vector<bool>& m) {
  int64_t n = 1;
  for (size_t d = 0; d < sizes.size(); ++d)
    if (m[d]) n *= sizes[d];
  return n;
}

// The kernels write the keepdim shape; without keepdim the reduced dims are viewed away.
Tensor finish_shape(const Tensor& out_keep, const Shape& in_sizes, const std::vector<bool>& m, bool keepdim) {
  return keepdim ? out_keep : out_keep.view(drop_shape(in_sizes, m));
}

// A gradient of a reduced output seen in the keepdim shape (a view with the size-1 dims back).
Tensor to_keepdim(const Tensor& g, const std::vector<bool>& m, bool keepdim) {
  if (keepdim) return g;
  Tensor r = g;
  for (size_t d = 0; d < m.size(); ++d)
    if (m[d]) r = r.unsqueeze(static_cast<int64_t>(d));
  return r;
}

DType acc_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

void check_floating(const Tensor& x, const char* op) {
  MANTISSA_CHECK(is_floating(x.dtype()), op, ": could not infer the output dtype; the input dtype must be floating "
                 "point, got ", x.dtype(), " (shape ", shape_str(x.sizes()), "); convert it with to(DType::F32) first");
}

std::tuple<Tensor, Tensor> max_min_dim(const Tensor& x, int64_t dim, bool keepdim, bool is_max, bool want_values,
                                       const char* op) {
  if (auto c = autograd::autocast(want_values ? (is_max ? OpId::max : OpId::min) : (is_max ? OpId::argmax : OpId::argmin), x))
    return max_min_dim((*c)[0], dim, keepdim, is_max, want_values, op);
  check_cpu(x, op);
  dim = wrap_dim(dim, x.dim(), op);
  MANTISSA_CHECK(x.dim() == 0 || x.size(dim) > 0, op, ": cannot reduce over dimension ", dim,
                 " of size 0 (input shape ", shape_str(x.sizes()), "); the reduction has no identity");
  const std::vector<bool> m = dim_mask(x, dim);
  const Shape keep = keep_shape(x.sizes(), m);
  Tensor values = want_values ? empty(keep, TensorOptions(x.dtype()).device(x.device())) : Tensor();
  Tensor indices = empty(keep, TensorOptions(DType::I64).device(x.device()));
  kernels::max_min_dim(values, indices, x, dim, is_max);
  Tensor idx_keep = indices;
  if (want_values) values = finish_shape(values, x.sizes(), m, keepdim);
  indices = finish_shape(indices, x.sizes(), m, keepdim);
  if (want_values && autograd::needs_grad(x)) {
    record(is_max ? OpId::max : OpId::min, {x}, {values, indices},
           [idx = SavedTensor(idx_keep), in_shape = x.sizes(), m, dim, keepdim](const std::vector<Tensor>& g)
               -> std::vector<Tensor> {
             if (!g[0].defined()) return {Tensor()};
             Tensor gx = empty(in_shape, TensorOptions(g[0].dtype()).device(g[0].device()));
             kernels::scatter_along_dim(gx, to_keepdim(g[0], m, keepdim), idx.unpack(), dim);
             return {gx};
           });
  }
  return {values, indices};
}

Tensor max_min_all(const Tensor& x, bool is_max, const char* op) {
  if (auto c = autograd::autocast(is_max ? OpId::max : OpId::min, x)) return max_min_all((*c)[0], is_max, op);
  check_cpu(x, op);
  MANTISSA_CHECK(x.numel() > 0, op, ": cannot reduce an empty tensor (shape ", shape_str(x.sizes()),
                 ") over all elements; the reduction has no identity (reduce over a non-empty dim instead)");
  Tensor out = empty({}, TensorOptions(x.dtype()).device(x.device()));
  kernels::max_min_all(out, x, is_max);
  if (autograd::needs_grad(x)) {
    record(is_max ? OpId::max : OpId::min, {x}, {out},
           [xs = SavedTensor(x), os = SavedTensor(out)](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xv = xs.unpack();
             Tensor gx = empty(xv.sizes(), TensorOptions(xv.dtype()).device(xv.device()));
             kernels::distribute_to_extreme(gx, g[0], xv, os.unpack());
             return {gx};
           });
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  if (auto c = autograd::autocast(OpId::sum, x)) return sum((*c)[0], dims, keepdim);
  check_cpu(x, "sum");
  const std::vector<bool> m = reduce_mask(x, dims, "sum");
  // Integer and Bool sums widen to I64, as in PyTorch.
  const DType od = is_floating(x.dtype()) ? x.dtype() : DType::I64;
  Tensor out = empty(keep_shape(x.sizes(), m), TensorOptions(od).device(x.device()));
  kernels::sum(out, x, m);
  out = finish_shape(out, x.sizes(), m, keepdim);
  if (autograd::needs_grad(x)) {
    record(OpId::sum, {x}, {out}, [m, keepdim, in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
      return {to_keepdim(g[0], m, keepdim).expand(in_shape)};
    });
  }
  return out;
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  if (auto c = autograd::autocast(OpId::mean, x)) return mean((*c)[0], dims, keepdim);
  check_cpu(x, "mean");
  check_floating(x, "mean");
  const std::vector<bool> m = reduce_mask(x, dims, "mean");
  Tensor out = empty(keep_shape(x.sizes(), m), TensorOptions(x.dtype()).device(x.device()));
  kernels::mean(out, x, m);
  out = finish_shape(out, x.sizes(), m, keepdim);
  if (autograd::needs_grad(x)) {
    const int64_t n = reduced_count(x.sizes(), m);
    record(OpId::mean, {x}, {out},
           [m, keepdim, n, in_shape = x.sizes()](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor gx = empty(in_shape, TensorOptions(g[0].dtype()).device(g[0].device()));
             kernels::expand_scale(gx, to_keepdim(g[0], m, keepdim), 1.0 / static_cast<double>(n));
             return {gx};
           });
  }
  return out;
}

std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  return max_min_dim(x, dim, keepdim, true, true, "max");
}
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim) {
  return max_min_dim(x, dim, keepdim, false, true, "min");
}
Tensor max(const Tensor& x) { return max_min_all(x, true, "max"); }
Tensor min(const Tensor& x) { return max_min_all(x, false, "min"); }
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return std::get<1>(max_min_dim(x, dim, keepdim, true, false, "argmax"));
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return std::get<1>(max_min_dim(x, dim, keepdim, false, false, "argmin"));
}

Tensor var(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) {
  if (auto c = autograd::autocast(OpId::var, x)) return var((*c)[0], dims, correction, keepdim);
  check_cpu(x, "var");
  check_floating(x, "var");
  const std::vector<bool> m = reduce_mask(x, dims, "var");
  const Shape keep = keep_shape(x.sizes(), m);
  Tensor out = empty(keep, TensorOptions(x.dtype()).device(x.device()));
  kernels::var(out, x, m, correction);
  out = finish_shape(out, x.sizes(), m, keepdim);
  if (autograd::needs_grad(x)) {
    // d var / dx = 2 (x - mean) / dof with the forward's dof = max(0, N - correction).
    const int64_t dof = std::max<int64_t>(0, reduced_count(x.sizes(), m) - correction);
    record(OpId::var, {x}, {out},
           [xs = SavedTensor(x), m, keep, keepdim, dof](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor xv = xs.unpack();
             Tensor mu = empty(keep, TensorOptions(acc_dtype(xv.dtype())).device(xv.device()));
             kernels::mean(mu, xv, m);
             Tensor gx = empty(xv.sizes(), TensorOptions(xv.dtype()).device(xv.device()));
             kernels::var_backward(gx, to_keepdim(g[0], m, keepdim), xv, mu, 2.0 / static_cast<double>(dof));
             return {gx};
           });
  }
  return out;
}

}  // namespace mantissa
