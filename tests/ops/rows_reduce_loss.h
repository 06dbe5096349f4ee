// OpRows for reductions, softmax and losses. References walk the F64 input values with plain
// index arithmetic (multi-index loops), never the op under test.
#pragma once

#include <cmath>
#include <limits>

#include "support/op_check.h"

namespace mantissa::testing {

namespace reduce_ref {

enum class Kind { Sum, Mean, Var, Max, Min, ArgMax, ArgMin };

// Reduces x (contiguous) over dims (empty = all) by kind; keepdim as the op.
inline Tensor reduce(const Tensor& x, Shape dims, bool keepdim, Kind kind, int64_t correction = 1) {
  const std::vector<double> v = to_vector<double>(x);
  const Shape s = x.sizes();
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, dims.empty());
  for (int64_t d : dims) red[(d + nd) % nd] = true;
  Shape keep = s, out_shape;
  for (int64_t d = 0; d < nd; ++d) {
    if (red[d]) keep[d] = 1;
    if (!red[d] || keepdim) out_shape.push_back(keep[d]);
  }
  const int64_t n_out = shape_numel(keep);
  // Output slot of every input element, and its position along the (single) reduced dim.
  std::vector<int64_t> slot(v.size()), pos(v.size(), 0);
  Shape idx(nd, 0);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t o = 0;
    for (int64_t d = 0; d < nd; ++d) {
      o = o * keep[d] + (red[d] ? 0 : idx[d]);
      if (red[d]) pos[i] = idx[d];
    }
    slot[i] = o;
    for (int64_t d = nd - 1; d >= 0; --d) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
  std::vector<double> acc(n_out, 0.0), cnt(n_out, 0.0), best(n_out, std::nan("")), arg(n_out, -1.0);
  for (size_t i = 0; i < v.size(); ++i) {
    acc[slot[i]] += v[i];
    cnt[slot[i]] += 1;
    const bool first = arg[slot[i]] < 0;
    const bool better = (kind == Kind::Max || kind == Kind::ArgMax) ? v[i] > best[slot[i]] : v[i] < best[slot[i]];
    if (first || better) {
      best[slot[i]] = v[i];
      arg[slot[i]] = static_cast<double>(pos[i]);
    }
  }
  std::vector<double> out(n_out);
  for (int64_t o = 0; o < n_out; ++o) {
    switch (kind) {
      case Kind::Sum: out[o] = acc[o]; break;
      case Kind::Mean: out[o] = acc[o] / cnt[o]; break;
      case Kind::Max:
      case Kind::Min: out[o] = best[o]; break;
      case Kind::ArgMax:
      case Kind::ArgMin: out[o] = arg[o]; break;
      case Kind::Var: out[o] = 0; break;
    }
  }
  if (kind == Kind::Var) {
    for (size_t i = 0; i < v.size(); ++i) {
      const double dlt = v[i] - acc[slot[i]] / cnt[slot[i]];
      out[slot[i]] += dlt * dlt;
    }
    for (int64_t o = 0; o < n_out; ++o) out[o] /= std::max(0.0, cnt[o] - static_cast<double>(correction));
  }
  if (kind == Kind::ArgMax || kind == Kind::ArgMin) {
    std::vector<int64_t> iv(out.begin(), out.end());
    return from_vector(iv, out_shape);
  }
  return from_vector(out, out_shape, DType::F64);
}

// Softmax / log_softmax of x (contiguous) along dim.
inline Tensor softmax(const Tensor& x, int64_t dim, bool log) {
  const std::vector<double> v = to_vector<double>(x);
  const int64_t nd = x.dim();
  dim = (dim + nd) % nd;
  int64_t outer = 1, n = x.size(dim), inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.size(d);
  for (int64_t d = dim + 1; d < nd; ++d) inner *= x.size(d);
  std::vector<double> out(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      double m = -INFINITY, s = 0;
      for (int64_t c = 0; c < n; ++c) m = std::max(m, v[(o * n + c) * inner + j]);
      for (int64_t c = 0; c < n; ++c) s += std::exp(v[(o * n + c) * inner + j] - m);
      for (int64_t c = 0; c < n; ++c) {
        const double z = v[(o * n + c) * inner + j] - m;
        out[(o * n + c) * inner + j] = log ? z - std::log(s) : std::exp(z) / s;
      }
    }
  return from_vector(out, x.sizes(), DType::F64);
}

inline double finish(const std::vector<double>& per, double count, Reduction r, std::vector<double>& none_out) {
  double total = 0;
  for (double p : per) total += p;
  none_out = per;
  return r == Reduction::Mean ? total / count : total;
}

// Cross-entropy (log_probs = false) or NLL (log_probs = true) over logits [N, C, S...] with
// targets [N, S...], as PyTorch defines them (label smoothing only for cross-entropy).
inline Tensor classification(const Tensor& x, const Tensor& target, Reduction r, int64_t ignore, double eps,
                             bool nll) {
  const std::vector<double> v = to_vector<double>(x);
  const std::vector<int64_t> t = to_vector<int64_t>(target);
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  std::vector<double> per(n * s, 0.0);
  double count = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < s; ++k) {
      const int64_t tv = t[i * s + k];
      if (tv == ignore) continue;
      count += 1;
      auto at = [&](int64_t cls) { return v[(i * c + cls) * s + k]; };
      if (nll) {
        per[i * s + k] = -at(tv);
        continue;
      }
      double m = -INFINITY, se = 0, sum_logp = 0;
      for (int64_t cls = 0; cls < c; ++cls) m = std::max(m, at(cls));
      for (int64_t cls = 0; cls < c; ++cls) se += std::exp(at(cls) - m);
      const double lse = m + std::log(se);
      for (int64_t cls = 0; cls < c; ++cls) sum_logp += at(cls) - lse;
      per[i * s + k] = (1 - eps) * (lse - at(tv)) + eps * (-sum_logp / static_cast<double>(c));
    }
  std::vector<double> none;
  const double total = finish(per, count, r, none);
  if (r == Reduction::None) return from_vector(none, target.sizes(), DType::F64);
  return from_vector(std::vector<double>{total}, {}, DType::F64);
}

inline Tensor mse(const Tensor& x, const Tensor& t, Reduction r) {
  const std::vector<double> a = to_vector<double>(x), b = to_vector<double>(t);
  std::vector<double> per(a.size());
  const size_t tn = b.size();  // t broadcasts along leading dims (t's shape is a suffix of x's)
  for (size_t i = 0; i < a.size(); ++i) per[i] = (a[i] - b[i % tn]) * (a[i] - b[i % tn]);
  std::vector<double> none;
  const double total = finish(per, static_cast<double>(a.size()), r, none);
  if (r == Reduction::None) return from_vector(none, x.sizes(), DType::F64);
  return from_vector(std::vector<double>{total}, {}, DType::F64);
}

}  // namespace reduce_ref

inline std::vector<OpRow> rows_reduce_loss() {
  using reduce_ref::Kind;
  using V = const std::vector<Tensor>&;
  std::vector<OpRow> rows;
  auto red_row = [&](OpId op, const std::string& name, Input in, OpFn fn, Shape dims, bool keepdim, Kind kind,
                     int64_t correction = 1) {
    OpRow r{op, name, {in}, std::move(fn),
            [dims, keepdim, kind, correction](V x) { return reduce_ref::reduce(x[0], dims, keepdim, kind, correction); }};
    if (kind == Kind::ArgMax || kind == Kind::ArgMin) r.differentiable = false;
    rows.push_back(r);
  };
  const Gen N = Gen::Normal, D = Gen::Distinct;

  // sum: all, one dim, several dims with keepdim, negative dim on a strided view, the column
  // path (kept innermost dim of >= 16), a full reduction of a strided view.
  red_row(OpId::sum, "sum/all", {{3, 4}}, [](V x) { return sum(x[0]); }, {}, false, Kind::Sum);
  red_row(OpId::sum, "sum/dim1", {{3, 4}}, [](V x) { return sum(x[0], {1}); }, {1}, false, Kind::Sum);
  red_row(OpId::sum, "sum/dims02_keepdim", {{2, 3, 4}}, [](V x) { return sum(x[0], {0, 2}, true); }, {0, 2}, true,
          Kind::Sum);
  red_row(OpId::sum, "sum/neg_dim_noncontig", {{4, 5}, N, true, true}, [](V x) { return sum(x[0], {-1}); }, {-1},
          false, Kind::Sum);
  red_row(OpId::sum, "sum/column_dim0", {{3, 16}}, [](V x) { return sum(x[0], {0}); }, {0}, false, Kind::Sum);
  red_row(OpId::sum, "sum/all_noncontig", {{3, 5}, N, true, true}, [](V x) { return sum(x[0], {}); }, {}, false,
          Kind::Sum);
  red_row(OpId::sum, "sum/transposed_dim0", {{4, 6}},
          [](V x) { return sum(transpose(x[0], 0, 1), {0}); }, {1}, false, Kind::Sum);

  // mean
  red_row(OpId::mean, "mean/all", {{3, 4}}, [](V x) { return mean(x[0]); }, {}, false, Kind::Mean);
  red_row(OpId::mean, "mean/dim0_keepdim_noncontig", {{4, 3}, N, true, true},
          [](V x) { return mean(x[0], {0}, true); }, {0}, true, Kind::Mean);
  red_row(OpId::mean, "mean/dims12", {{2, 3, 4}}, [](V x) { return mean(x[0], {1, 2}); }, {1, 2}, false, Kind::Mean);
  red_row(OpId::mean, "mean/column_dims01", {{2, 2, 16}}, [](V x) { return mean(x[0], {0, 1}); }, {0, 1}, false,
          Kind::Mean);

  // max / min: along a dim (values; indices come from argmax rows) and over all elements.
  red_row(OpId::max, "max/dim1", {{3, 5}, D}, [](V x) { return std::get<0>(max(x[0], 1)); }, {1}, false, Kind::Max);
  red_row(OpId::max, "max/dim0_keepdim_noncontig", {{4, 3}, D, true, true},
          [](V x) { return std::get<0>(max(x[0], 0, true)); }, {0}, true, Kind::Max);
  red_row(OpId::max, "max/all", {{3, 4}, D}, [](V x) { return max(x[0]); }, {}, false, Kind::Max);
  red_row(OpId::min, "min/dim1", {{3, 5}, D}, [](V x) { return std::get<0>(min(x[0], -1)); }, {1}, false, Kind::Min);
  red_row(OpId::min, "min/dim1_keepdim_3d", {{2, 4, 3}, D},
          [](V x) { return std::get<0>(min(x[0], 1, true)); }, {1}, true, Kind::Min);
  red_row(OpId::min, "min/all_noncontig", {{3, 4}, D, true, true}, [](V x) { return min(x[0]); }, {}, false,
          Kind::Min);

  red_row(OpId::argmax, "argmax/dim1", {{3, 5}, D}, [](V x) { return argmax(x[0], 1); }, {1}, false, Kind::ArgMax);
  red_row(OpId::argmax, "argmax/dim0_keepdim_noncontig", {{4, 3}, D, true, true},
          [](V x) { return argmax(x[0], 0, true); }, {0}, true, Kind::ArgMax);
  red_row(OpId::argmin, "argmin/dim1", {{3, 5}, D}, [](V x) { return argmin(x[0], 1); }, {1}, false, Kind::ArgMin);
  red_row(OpId::argmin, "argmin/dim0_3d", {{4, 2, 3}, D}, [](V x) { return argmin(x[0], 0); }, {0}, false,
          Kind::ArgMin);

  // var with correction 1 and 0
  red_row(OpId::var, "var/dim1_c1", {{3, 5}}, [](V x) { return var(x[0], {1}); }, {1}, false, Kind::Var, 1);
  red_row(OpId::var, "var/all_c0", {{4, 5}}, [](V x) { return var(x[0], {}, 0); }, {}, false, Kind::Var, 0);
  red_row(OpId::var, "var/dims02_keepdim_c1_noncontig", {{2, 3, 4}, N, true, true},
          [](V x) { return var(x[0], {0, 2}, 1, true); }, {0, 2}, true, Kind::Var, 1);

  // softmax / log_softmax over the last dim (rows), dim 0 and a middle dim (inner > 1).
  for (bool log : {false, true}) {
    const OpId op = log ? OpId::log_softmax : OpId::softmax;
    const std::string p = log ? "log_softmax/" : "softmax/";
    auto sm = [log](const Tensor& x, int64_t dim) { return log ? log_softmax(x, dim) : softmax(x, dim); };
    rows.push_back({op, p + "last", {{{3, 5}}}, [sm](V x) { return sm(x[0], -1); },
                    [log](V x) { return reduce_ref::softmax(x[0], -1, log); }});
    rows.push_back({op, p + "dim0", {{{4, 3}}}, [sm](V x) { return sm(x[0], 0); },
                    [log](V x) { return reduce_ref::softmax(x[0], 0, log); }});
    rows.push_back({op, p + "dim1_3d_noncontig", {{{2, 4, 3}, N, true, true}}, [sm](V x) { return sm(x[0], 1); },
                    [log](V x) { return reduce_ref::softmax(x[0], 1, log); }});
  }

  // cross_entropy: each reduction, ignore_index (a class value, so some targets are ignored),
  // label smoothing, trailing dims [N, C, d], I32 targets and strided logits.
  auto ce_row = [&](const std::string& name, Shape logits, Shape target, Reduction r, int64_t ignore, double eps,
                    bool noncontig = false, DType tdt = DType::I64) {
    Input t{target, Gen::Index, false, false, logits.size() > 1 ? logits[1] : logits[0], tdt};
    rows.push_back({OpId::cross_entropy, name, {{logits, N, true, noncontig}, t},
                    [r, ignore, eps](V x) { return cross_entropy(x[0], x[1], r, ignore, eps); },
                    [r, ignore, eps](V x) { return reduce_ref::classification(x[0], x[1], r, ignore, eps, false); }});
  };
  ce_row("cross_entropy/mean", {6, 4}, {6}, Reduction::Mean, -100, 0.0);
  ce_row("cross_entropy/sum_smoothing", {6, 4}, {6}, Reduction::Sum, -100, 0.1);
  ce_row("cross_entropy/none_ignore", {6, 4}, {6}, Reduction::None, 1, 0.0);
  ce_row("cross_entropy/mean_ignore_smoothing", {8, 3}, {8}, Reduction::Mean, 2, 0.2);
  ce_row("cross_entropy/nd_mean_smoothing", {2, 3, 4}, {2, 4}, Reduction::Mean, -100, 0.1);
  ce_row("cross_entropy/noncontig_i32_none", {5, 4}, {5}, Reduction::None, -100, 0.05, true, DType::I32);

  auto nll_row = [&](const std::string& name, Shape in, Shape target, Reduction r, int64_t ignore) {
    Input t{target, Gen::Index, false, false, in[1]};
    rows.push_back({OpId::nll_loss, name, {{in}, t}, [r, ignore](V x) { return nll_loss(x[0], x[1], r, ignore); },
                    [r, ignore](V x) { return reduce_ref::classification(x[0], x[1], r, ignore, 0.0, true); }});
  };
  nll_row("nll_loss/mean", {6, 4}, {6}, Reduction::Mean, -100);
  nll_row("nll_loss/none_ignore", {6, 4}, {6}, Reduction::None, 0);
  nll_row("nll_loss/sum_nd_ignore", {2, 3, 4}, {2, 4}, Reduction::Sum, 1);

  auto mse_row = [&](const std::string& name, Shape a, Shape b, Reduction r) {
    rows.push_back({OpId::mse_loss, name, {{a}, {b}}, [r](V x) { return mse_loss(x[0], x[1], r); },
                    [r](V x) { return reduce_ref::mse(x[0], x[1], r); }});
  };
  mse_row("mse_loss/mean", {3, 4}, {3, 4}, Reduction::Mean);
  mse_row("mse_loss/sum", {3, 4}, {3, 4}, Reduction::Sum);
  mse_row("mse_loss/none", {3, 4}, {3, 4}, Reduction::None);
  mse_row("mse_loss/broadcast_target", {4, 3}, {3}, Reduction::Mean);
  return rows;
}

}  // namespace mantissa::testing
