// OpRows for normalization, dropout, embedding, joining and indexing: references are plain
// loops over the F64 input values. Ops with hidden state (batch_norm's running stats, dropout's
// generator) rebuild that state inside fn so that gradcheck's many calls all agree.
#pragma once

#include <cmath>

#include "support/op_check.h"

namespace mantissa::testing {

namespace norm_index_ref {

inline std::vector<double> vals(const Tensor& t) { return to_vector<double>(t); }
inline Tensor make(const std::vector<double>& v, const Shape& shape) { return from_vector(v, shape, DType::F64); }

// Batch norm over x [n, c, s...] with batch statistics (training) or the given running stats.
inline Tensor batch_norm(const std::vector<Tensor>& in, bool affine, bool training, double eps = 1e-5) {
  const Tensor& x = in[0];
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / std::max<int64_t>(1, n * c);
  std::vector<double> xv = vals(x), out(xv.size());
  std::vector<double> w = affine ? vals(in[1]) : std::vector<double>(c, 1.0);
  std::vector<double> b = affine ? vals(in[2]) : std::vector<double>(c, 0.0);
  std::vector<double> rm, rv;
  if (!training) {
    rm = vals(in[affine ? 3 : 1]);
    rv = vals(in[affine ? 4 : 2]);
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    double mean = 0, var = 0;
    if (training) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < s; ++j) mean += xv[(i * c + ch) * s + j];
      mean /= static_cast<double>(n * s);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < s; ++j) var += std::pow(xv[(i * c + ch) * s + j] - mean, 2);
      var /= static_cast<double>(n * s);
    } else {
      mean = rm[ch];
      var = rv[ch];
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t k = (i * c + ch) * s + j;
        out[k] = (xv[k] - mean) / std::sqrt(var + eps) * w[ch] + b[ch];
      }
  }
  return make(out, x.sizes());
}

// Layer norm of x over its trailing `k` dims, with optional elementwise affine.
inline Tensor layer_norm(const std::vector<Tensor>& in, int64_t k, bool affine, double eps = 1e-5) {
  const Tensor& x = in[0];
  int64_t d = 1;
  for (int64_t i = x.dim() - k; i < x.dim(); ++i) d *= x.size(i);
  const int64_t rows = x.numel() / d;
  std::vector<double> xv = vals(x), out(xv.size());
  std::vector<double> w = affine ? vals(in[1]) : std::vector<double>(d, 1.0);
  std::vector<double> b = affine ? vals(in[2]) : std::vector<double>(d, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < d; ++j) mean += xv[r * d + j];
    mean /= static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) var += std::pow(xv[r * d + j] - mean, 2);
    var /= static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) out[r * d + j] = (xv[r * d + j] - mean) / std::sqrt(var + eps) * w[j] + b[j];
  }
  return make(out, x.sizes());
}

// Row-major multi-index helpers.
inline Shape unravel(int64_t flat, const Shape& shape) {
  Shape idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}
inline int64_t ravel(const Shape& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

// Concatenation of contiguous F64 inputs along dim (non-negative).
inline Tensor cat(const std::vector<Tensor>& in, int64_t dim) {
  Shape shape = in[0].sizes();
  shape[dim] = 0;
  for (const Tensor& t : in) shape[dim] += t.size(dim);
  std::vector<double> out(shape_numel(shape));
  int64_t base = 0;
  for (const Tensor& t : in) {
    std::vector<double> v = vals(t);
    for (int64_t k = 0; k < t.numel(); ++k) {
      Shape idx = unravel(k, t.sizes());
      idx[dim] += base;
      out[ravel(idx, shape)] = v[k];
    }
    base += t.size(dim);
  }
  return make(out, shape);
}

inline Tensor stack(const std::vector<Tensor>& in, int64_t dim) {
  Shape shape = in[0].sizes();
  shape.insert(shape.begin() + dim, static_cast<int64_t>(in.size()));
  std::vector<double> out(shape_numel(shape));
  for (size_t i = 0; i < in.size(); ++i) {
    std::vector<double> v = vals(in[i]);
    for (int64_t k = 0; k < in[i].numel(); ++k) {
      Shape idx = unravel(k, in[i].sizes());
      idx.insert(idx.begin() + dim, static_cast<int64_t>(i));
      out[ravel(idx, shape)] = v[k];
    }
  }
  return make(out, shape);
}

inline Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  std::vector<int64_t> iv = to_vector<int64_t>(index);
  Shape shape = x.sizes();
  shape[dim] = static_cast<int64_t>(iv.size());
  std::vector<double> xv = vals(x), out(shape_numel(shape));
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, shape);
    idx[dim] = iv[idx[dim]];
    out[k] = xv[ravel(idx, x.sizes())];
  }
  return make(out, shape);
}

inline Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  std::vector<int64_t> iv = to_vector<int64_t>(index);
  std::vector<double> xv = vals(x), out(iv.size());
  for (int64_t k = 0; k < static_cast<int64_t>(out.size()); ++k) {
    Shape idx = unravel(k, index.sizes());
    idx[dim] = iv[k];
    out[k] = xv[ravel(idx, x.sizes())];
  }
  return make(out, index.sizes());
}

inline Tensor embedding(const Tensor& weight, const Tensor& indices) {
  std::vector<int64_t> iv = to_vector<int64_t>(indices);
  const int64_t d = weight.size(1);
  std::vector<double> wv = vals(weight), out;
  for (int64_t i : iv)
    for (int64_t j = 0; j < d; ++j) out.push_back(wv[i * d + j]);
  Shape shape = indices.sizes();
  shape.push_back(d);
  return make(out, shape);
}

// Fresh running stats per call (batch_norm updates them in place), F32 as a module keeps
// them, on the inputs' device.
inline Tensor bn_train(const std::vector<Tensor>& x, bool affine) {
  const int64_t c = x[0].size(1);
  const TensorOptions stats = TensorOptions(DType::F32).device(device_of(x));
  Tensor rm = zeros({c}, stats), rv = ones({c}, stats);
  return mantissa::batch_norm(x[0], affine ? x[1] : Tensor(), affine ? x[2] : Tensor(), rm, rv, true, 0.1, 1e-5);
}

}  // namespace norm_index_ref

inline std::vector<OpRow> rows_norm_index() {
  namespace ref = norm_index_ref;
  using V = std::vector<Tensor>;
  std::vector<OpRow> rows;

  // batch_norm ---------------------------------------------------------------------------------
  rows.push_back({OpId::batch_norm, "batch_norm/train_2d_affine", {{{6, 3}}, {{3}}, {{3}}},
                  [](const V& x) { return ref::bn_train(x, true); },
                  [](const V& x) { return ref::batch_norm(x, true, true); }});
  rows.push_back({OpId::batch_norm, "batch_norm/train_4d_affine", {{{2, 3, 2, 2}}, {{3}}, {{3}}},
                  [](const V& x) { return ref::bn_train(x, true); },
                  [](const V& x) { return ref::batch_norm(x, true, true); }});
  rows.push_back({OpId::batch_norm, "batch_norm/train_4d_plain", {{{3, 2, 2, 2}}},
                  [](const V& x) { return ref::bn_train(x, false); },
                  [](const V& x) { return ref::batch_norm(x, false, true); }});
  rows.push_back({OpId::batch_norm, "batch_norm/train_2d_plain_no_stats_non_contiguous",
                  {{{5, 4}, Gen::Normal, true, true}},
                  [](const V& x) { return batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                  [](const V& x) { return ref::batch_norm(x, false, true); }});
  rows.push_back({OpId::batch_norm, "batch_norm/eval_4d_affine",
                  {{{2, 3, 2, 2}}, {{3}}, {{3}}, {{3}, Gen::Normal, false}, {{3}, Gen::Positive, false}},
                  [](const V& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false); },
                  [](const V& x) { return ref::batch_norm(x, true, false); }});
  rows.push_back({OpId::batch_norm, "batch_norm/eval_2d_plain",
                  {{{4, 3}}, {{3}, Gen::Normal, false}, {{3}, Gen::Positive, false}},
                  [](const V& x) { return batch_norm(x[0], Tensor(), Tensor(), x[1], x[2], false); },
                  [](const V& x) { return ref::batch_norm(x, false, false); }});

  // layer_norm ---------------------------------------------------------------------------------
  rows.push_back({OpId::layer_norm, "layer_norm/last_dim_affine", {{{4, 5}}, {{5}}, {{5}}},
                  [](const V& x) { return layer_norm(x[0], {5}, x[1], x[2]); },
                  [](const V& x) { return ref::layer_norm(x, 1, true); }});
  rows.push_back({OpId::layer_norm, "layer_norm/two_dims_affine", {{{2, 3, 4}}, {{3, 4}}, {{3, 4}}},
                  [](const V& x) { return layer_norm(x[0], {3, 4}, x[1], x[2]); },
                  [](const V& x) { return ref::layer_norm(x, 2, true); }});
  rows.push_back({OpId::layer_norm, "layer_norm/last_dim_plain", {{{3, 6}}},
                  [](const V& x) { return layer_norm(x[0], {6}); },
                  [](const V& x) { return ref::layer_norm(x, 1, false); }});
  rows.push_back({OpId::layer_norm, "layer_norm/two_dims_plain_non_contiguous", {{{2, 2, 5}, Gen::Normal, true, true}},
                  [](const V& x) { return layer_norm(x[0], {2, 5}); },
                  [](const V& x) { return ref::layer_norm(x, 2, false); }});

  // dropout: re-seeding the default generator makes every call draw the same mask ---------------
  rows.push_back({OpId::dropout, "dropout/p03_training", {{{6, 7}}},
                  [](const V& x) {
                    manual_seed(7);
                    return dropout(x[0], 0.3, true);
                  },
                  [](const V& x) {
                    manual_seed(7);
                    std::vector<double> m = ref::vals(bernoulli(x[0].sizes(), 0.7, DType::F64));
                    std::vector<double> v = ref::vals(x[0]);
                    for (size_t i = 0; i < v.size(); ++i) v[i] = v[i] * m[i] / 0.7;
                    return ref::make(v, x[0].sizes());
                  }});
  rows.push_back({OpId::dropout, "dropout/eval_identity", {{{3, 4}}},
                  [](const V& x) { return clone(dropout(x[0], 0.5, false)); },
                  [](const V& x) { return ref::make(ref::vals(x[0]), x[0].sizes()); }});

  // embedding: weight gradient only (indices are integers) ---------------------------------------
  rows.push_back({OpId::embedding, "embedding/2d_indices", {{{5, 3}}, {{2, 3}, Gen::Index, false, false, 5}},
                  [](const V& x) { return embedding(x[0], x[1]); },
                  [](const V& x) { return ref::embedding(x[0], x[1]); }});
  rows.push_back({OpId::embedding, "embedding/i32_repeated",
                  {{{4, 2}}, {{9}, Gen::Index, false, false, 4, DType::I32}},
                  [](const V& x) { return embedding(x[0], x[1]); },
                  [](const V& x) { return ref::embedding(x[0], x[1]); }});

  // cat / stack ----------------------------------------------------------------------------------
  rows.push_back({OpId::cat, "cat/last_dim_three", {{{2, 3}}, {{2, 1}}, {{2, 2}, Gen::Normal, true, true}},
                  [](const V& x) { return cat(x, -1); },
                  [](const V& x) { return ref::cat(x, 1); }});
  rows.push_back({OpId::cat, "cat/dim0_skips_legacy_empty", {{{1, 3}}, {{0}}, {{2, 3}}},
                  [](const V& x) { return cat(x, 0); },
                  [](const V& x) { return ref::cat({x[0], x[2]}, 0); }});
  rows.push_back({OpId::stack, "stack/dim1_three", {{{2, 3}}, {{2, 3}, Gen::Normal, true, true}, {{2, 3}}},
                  [](const V& x) { return stack(x, 1); },
                  [](const V& x) { return ref::stack(x, 1); }});
  rows.push_back({OpId::stack, "stack/negative_dim", {{{3}}, {{3}}},
                  [](const V& x) { return stack(x, -1); },
                  [](const V& x) { return ref::stack(x, 1); }});

  // index_select / gather ------------------------------------------------------------------------
  rows.push_back({OpId::index_select, "index_select/dim0", {{{5, 3}}, {{4}, Gen::Index, false, false, 5}},
                  [](const V& x) { return index_select(x[0], 0, x[1]); },
                  [](const V& x) { return ref::index_select(x[0], 0, x[1]); }});
  rows.push_back({OpId::index_select, "index_select/last_dim_i32_non_contiguous",
                  {{{3, 4}, Gen::Normal, true, true}, {{6}, Gen::Index, false, false, 4, DType::I32}},
                  [](const V& x) { return index_select(x[0], -1, x[1]); },
                  [](const V& x) { return ref::index_select(x[0], 1, x[1]); }});
  rows.push_back({OpId::gather, "gather/dim1_longer_index", {{{3, 4}}, {{3, 5}, Gen::Index, false, false, 4}},
                  [](const V& x) { return gather(x[0], 1, x[1]); },
                  [](const V& x) { return ref::gather(x[0], 1, x[1]); }});
  rows.push_back({OpId::gather, "gather/dim0_smaller_index_i32",
                  {{{4, 3}, Gen::Normal, true, true}, {{2, 2}, Gen::Index, false, false, 4, DType::I32}},
                  [](const V& x) { return gather(x[0], 0, x[1]); },
                  [](const V& x) { return ref::gather(x[0], 0, x[1]); }});
  return rows;
}

}  // namespace mantissa::testing
