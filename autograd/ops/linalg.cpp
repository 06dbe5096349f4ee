// matmul, mm, bmm and linear: argument checks, torch.matmul's promotion rules (1-D operands,
// broadcast batch dims), the forward through kernels::matmul and the backward formulas. Operands
// must share one floating dtype: like PyTorch, there is no implicit promotion.
#include "autograd/autocast_hook.h"
#include "autograd/function.h"
#include "autograd/ops/backend_check.h"
#include "autograd/ops.h"
#include "core/kernels/matmul.h"

namespace mantissa {

using autograd::record;
using autograd::SavedTensor;

namespace {

void check_operand_pair(const char* op, const Tensor& a, const Tensor& b) {
  MANTISSA_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  MANTISSA_CHECK(a.device() == b.device(), op, ": expected both operands on the same device, got ", a.device(),
                 " and ", b.device());
  MANTISSA_CHECK(a.dtype() == b.dtype(), op, ": expected both operands to have the same dtype, got ",
                 dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
                 " (there is no implicit promotion; cast one with .to())");
  MANTISSA_CHECK(is_floating(a.dtype()), op, ": dtype ", dtype_name(a.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  autograd::check_backend(a, op);
}

void check_inner(const char* op, const Tensor& a, const Tensor& b, int64_t ka, int64_t kb) {
  MANTISSA_CHECK(ka == kb, op, ": shapes ", shape_str(a.sizes()), " and ", shape_str(b.sizes()),
                 " cannot be multiplied (", ka, " != ", kb, ")");
}

Shape leading(const Shape& s, size_t drop) { return Shape(s.begin(), s.end() - static_cast<int64_t>(drop)); }

int64_t product(const Shape& s) {
  int64_t p = 1;
  for (int64_t v : s) p *= v;
  return p;
}

// Batch dims of a [..., M, K] and b [..., K, N] broadcast together, as torch.matmul does.
Shape broadcast_batch(const Tensor& a, const Tensor& b) {
  Shape ba = leading(a.sizes(), 2), bb = leading(b.sizes(), 2);
  const size_t nd = std::max(ba.size(), bb.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t da = i + ba.size() >= nd ? ba[i + ba.size() - nd] : 1;
    const int64_t db = i + bb.size() >= nd ? bb[i + bb.size() - nd] : 1;
    MANTISSA_CHECK(da == db || da == 1 || db == 1, "matmul: batch dimensions ", shape_str(ba), " and ",
                   shape_str(bb), " cannot be broadcast (shapes ", shape_str(a.sizes()), " and ",
                   shape_str(b.sizes()), ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// a with size-1 dims prepended up to nd dims (a view, no history: a is detached).
Tensor with_dims(Tensor a, int64_t nd) {
  while (a.dim() < nd) a = a.unsqueeze(0);
  return a;
}

// a [..., M, K] @ b [..., K, N] (+ bias [N]) with batch broadcasting, no autograd.
Tensor matmul_nd(const Tensor& a, const Tensor& b, const Tensor& bias = Tensor()) {
  Shape shape = broadcast_batch(a, b);
  shape.push_back(a.size(-2));
  shape.push_back(b.size(-1));
  const int64_t nd = static_cast<int64_t>(shape.size());
  Tensor out = empty(shape, TensorOptions(a.dtype()).device(a.device()));
  kernels::matmul(out, with_dims(a.detach(), nd), with_dims(b.detach(), nd), bias.defined() ? bias.detach() : bias);
  return out;
}

// The forward of torch.matmul on detached operands.
Tensor matmul_forward(const Tensor& a, const Tensor& b) {
  Tensor a2 = a.dim() == 1 ? a.detach().unsqueeze(0) : a.detach();
  Tensor b2 = b.dim() == 1 ? b.detach().unsqueeze(1) : b.detach();
  Tensor out2;
  if (a2.dim() > 2 && b2.dim() == 2) {
    // One matrix on the right: fold a's batch into rows for a single, taller GEMM.
    const Shape batch = leading(a2.sizes(), 2);
    const int64_t m = a2.size(-2), k = a2.size(-1);
    out2 = matmul_nd(a2.reshape({product(batch) * m, k}), b2);
    Shape shape = batch;
    shape.push_back(m);
    shape.push_back(b2.size(1));
    out2 = out2.view(shape);
  } else {
    out2 = matmul_nd(a2, b2);
  }
  // Drop the promoted dims again: M (second to last) for a 1-D a, N (last) for a 1-D b.
  Shape shape = out2.sizes();
  if (a.dim() == 1) shape.erase(shape.end() - 2);
  if (b.dim() == 1) shape.erase(shape.end() - 1);
  return out2.view(shape);
}

// Gradients of torch.matmul: dA = g B^T, dB = A^T g, summed over the broadcast batch dims and
// reshaped back through the 1-D promotions.
std::vector<Tensor> matmul_backward(const Tensor& g, const Tensor& a, const Tensor& b, bool need_a, bool need_b) {
  const Tensor a2 = a.dim() == 1 ? a.unsqueeze(0) : a;
  const Tensor b2 = b.dim() == 1 ? b.unsqueeze(1) : b;
  Shape shape = broadcast_batch(a2, b2);
  const Shape batch = shape;
  const int64_t m = a2.size(-2), k = a2.size(-1), n = b2.size(-1);
  shape.push_back(m);
  shape.push_back(n);
  const Tensor g2 = g.reshape(shape);
  Tensor da, db;
  if (need_a) {
    da = autograd::sum_to(matmul_forward(g2, b2.transpose(-1, -2)), a2.sizes()).reshape(a.sizes());
  }
  if (need_b) {
    if (b2.dim() == 2 && a2.dim() > 2) {
      // dB = sum over the batch of A_i^T g_i = A_flat^T g_flat: one GEMM with K = batch * M.
      const int64_t rows = product(batch) * m;
      db = mm(a2.reshape({rows, k}).t(), g2.reshape({rows, n}));
    } else {
      db = autograd::sum_to(matmul_forward(a2.transpose(-1, -2), g2), b2.sizes());
    }
    db = db.reshape(b.sizes());
  }
  return {da, db};
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::matmul, a, b)) return matmul((*c)[0], (*c)[1]);
  check_operand_pair("matmul", a, b);
  MANTISSA_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments need at least 1 dimension, got shapes ",
                 shape_str(a.sizes()), " and ", shape_str(b.sizes()));
  check_inner("matmul", a, b, a.size(-1), b.dim() == 1 ? b.size(0) : b.size(-2));
  Tensor out = matmul_forward(a, b);
  if (autograd::needs_grad(a, b)) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record(OpId::matmul, {a, b}, {out},
           [sa = need_b ? SavedTensor(a) : SavedTensor(), sb = need_a ? SavedTensor(b) : SavedTensor(), need_a,
            need_b, a_shape = a.sizes(), b_shape = b.sizes(), dtype = a.dtype(), dev = a.device()](
               const std::vector<Tensor>& g) -> std::vector<Tensor> {
             // The operand a gradient does not read is only needed for its shape.
             Tensor A = need_b ? sa.unpack() : empty(a_shape, TensorOptions(dtype).device(dev));
             Tensor B = need_a ? sb.unpack() : empty(b_shape, TensorOptions(dtype).device(dev));
             return matmul_backward(g[0], A, B, need_a, need_b);
           });
  }
  return out;
}

Tensor mm(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::mm, a, b)) return mm((*c)[0], (*c)[1]);
  check_operand_pair("mm", a, b);
  MANTISSA_CHECK(a.dim() == 2 && b.dim() == 2, "mm: expected two 2-D tensors, got shapes ", shape_str(a.sizes()),
                 " and ", shape_str(b.sizes()));
  check_inner("mm", a, b, a.size(1), b.size(0));
  Tensor out = empty({a.size(0), b.size(1)}, TensorOptions(a.dtype()).device(a.device()));
  kernels::matmul(out, a.detach(), b.detach());
  if (autograd::needs_grad(a, b)) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record(OpId::mm, {a, b}, {out},
           [sa = need_b ? SavedTensor(a) : SavedTensor(), sb = need_a ? SavedTensor(b) : SavedTensor(), need_a,
            need_b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor da = need_a ? mm(g[0], sb.unpack().t()) : Tensor();
             Tensor db = need_b ? mm(sa.unpack().t(), g[0]) : Tensor();
             return {da, db};
           });
  }
  return out;
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (auto c = autograd::autocast(OpId::bmm, a, b)) return bmm((*c)[0], (*c)[1]);
  check_operand_pair("bmm", a, b);
  MANTISSA_CHECK(a.dim() == 3 && b.dim() == 3, "bmm: expected two 3-D tensors, got shapes ", shape_str(a.sizes()),
                 " and ", shape_str(b.sizes()));
  MANTISSA_CHECK(a.size(0) == b.size(0), "bmm: batch sizes differ: shapes ", shape_str(a.sizes()), " and ",
                 shape_str(b.sizes()), " (", a.size(0), " != ", b.size(0), ")");
  check_inner("bmm", a, b, a.size(2), b.size(1));
  Tensor out = empty({a.size(0), a.size(1), b.size(2)}, TensorOptions(a.dtype()).device(a.device()));
  kernels::matmul(out, a.detach(), b.detach());
  if (autograd::needs_grad(a, b)) {
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record(OpId::bmm, {a, b}, {out},
           [sa = need_b ? SavedTensor(a) : SavedTensor(), sb = need_a ? SavedTensor(b) : SavedTensor(), need_a,
            need_b](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             Tensor da = need_a ? bmm(g[0], sb.unpack().transpose(1, 2)) : Tensor();
             Tensor db = need_b ? bmm(sa.unpack().transpose(1, 2), g[0]) : Tensor();
             return {da, db};
           });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (auto c = autograd::autocast(OpId::linear, x, weight, bias)) return linear((*c)[0], (*c)[1], (*c)[2]);
  MANTISSA_CHECK(x.defined() && weight.defined(), "linear: got an undefined input or weight");
  MANTISSA_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out_features, in_features], got shape ",
                 shape_str(weight.sizes()));
  MANTISSA_CHECK(x.dim() >= 1, "linear: input must have at least 1 dimension, got a 0-d tensor");
  MANTISSA_CHECK(x.device() == weight.device() && (!bias.defined() || bias.device() == x.device()),
                 "linear: expected input, weight and bias on one device, got ", x.device(), ", ", weight.device(),
                 bias.defined() ? " and " : "", bias.defined() ? bias.device().str() : std::string());
  MANTISSA_CHECK(x.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == x.dtype()),
                 "linear: expected input, weight and bias to have the same dtype, got ", dtype_name(x.dtype()), ", ",
                 dtype_name(weight.dtype()), bias.defined() ? " and " : "",
                 bias.defined() ? dtype_name(bias.dtype()) : "",
                 " (there is no implicit promotion; cast with .to())");
  MANTISSA_CHECK(is_floating(x.dtype()), "linear: dtype ", dtype_name(x.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  autograd::check_backend(x, "linear");
  const int64_t out_f = weight.size(0), in_f = weight.size(1);
  MANTISSA_CHECK(x.size(-1) == in_f, "linear: input ", shape_str(x.sizes()), " does not match weight ",
                 shape_str(weight.sizes()), " (in_features ", in_f, ")");
  MANTISSA_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out_f), "linear: bias ",
                 shape_str(bias.defined() ? bias.sizes() : Shape{}), " does not match weight ",
                 shape_str(weight.sizes()), " (out_features ", out_f, ")");

  const Shape lead = leading(x.sizes(), 1);
  const int64_t rows = product(lead);
  Tensor x2 = x.detach().reshape({rows, in_f});
  Tensor out2 = empty({rows, out_f}, TensorOptions(x.dtype()).device(x.device()));
  kernels::matmul(out2, x2, weight.detach().t(), bias.defined() ? bias.detach() : bias);
  Shape out_shape = lead;
  out_shape.push_back(out_f);
  Tensor out = out2.view(out_shape);

  if (autograd::needs_grad(x, weight, bias)) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record(OpId::linear, {x, weight, bias}, {out},
           [sx = need_w ? SavedTensor(x) : SavedTensor(), sw = need_x ? SavedTensor(weight) : SavedTensor(), need_x,
            need_w, need_b, x_shape = x.sizes(), rows, in_f, out_f](const std::vector<Tensor>& g) -> std::vector<Tensor> {
             const Tensor g2 = g[0].reshape({rows, out_f});
             Tensor dx = need_x ? mm(g2, sw.unpack()).view(x_shape) : Tensor();
             Tensor dw = need_w ? mm(g2.t(), sx.unpack().reshape({rows, in_f})) : Tensor();
             Tensor db = need_b ? sum(g2, {0}) : Tensor();
             return {dx, dw, db};
           });
  }
  return out;
}

}  // namespace mantissa
