// OpRows for matmul/mm/bmm/linear, conv2d and the pools. References are naive loops over F64
// values (direct convolution sums, explicit pooling windows), independent of the kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "support/op_check.h"

namespace mantissa::testing {

namespace linalg_ref {

using Vec = std::vector<double>;

// Row-major index of idx in shape, with size-1 dims of shape broadcast (idx may be longer:
// leading entries beyond shape's rank are ignored).
inline int64_t bcast_index(const Shape& shape, const Shape& idx) {
  int64_t flat = 0;
  const size_t lead = idx.size() - shape.size();
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + (shape[d] == 1 ? 0 : idx[lead + d]);
  return flat;
}

// torch.matmul for operands of rank >= 2 (1-D handled by the callers' reshapes).
inline Tensor matmul(const Tensor& a, const Tensor& b) {
  const Vec av = to_vector<double>(a), bv = to_vector<double>(b);
  const Shape as = a.sizes(), bs = b.sizes();
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  const Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  Shape batch(std::max(ab.size(), bb.size()), 1);
  for (size_t i = 0; i < batch.size(); ++i) {
    const int64_t da = i + ab.size() >= batch.size() ? ab[i + ab.size() - batch.size()] : 1;
    const int64_t db = i + bb.size() >= batch.size() ? bb[i + bb.size() - batch.size()] : 1;
    batch[i] = std::max(da, db);
  }
  const int64_t nb = shape_numel(batch);
  Vec out(static_cast<size_t>(nb * m * n), 0.0);
  Shape idx(batch.size(), 0);
  for (int64_t t = 0; t < nb; ++t) {
    const int64_t ia = bcast_index(ab, idx), ib = bcast_index(bb, idx);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += av[(ia * m + i) * k + p] * bv[(ib * k + p) * n + j];
        out[(t * m + i) * n + j] = s;
      }
    for (int64_t d = static_cast<int64_t>(idx.size()) - 1; d >= 0; --d) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  Shape shape = batch;
  shape.push_back(m);
  shape.push_back(n);
  return from_vector(out, shape, DType::F64);
}

// x [rows, in] W^T [in, out] + b.
inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const Vec xv = to_vector<double>(x), wv = to_vector<double>(w);
  const Vec bv = b.defined() ? to_vector<double>(b) : Vec();
  const int64_t in = w.size(1), out_f = w.size(0), rows = x.numel() / in;
  Vec out(static_cast<size_t>(rows * out_f));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out_f; ++o) {
      double s = bv.empty() ? 0.0 : bv[o];
      for (int64_t i = 0; i < in; ++i) s += xv[r * in + i] * wv[o * in + i];
      out[r * out_f + o] = s;
    }
  Shape shape = x.sizes();
  shape.back() = out_f;
  return from_vector(out, shape, DType::F64);
}

// Direct convolution, zero padding, NCHW.
inline Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  const Vec xv = to_vector<double>(x), wv = to_vector<double>(w);
  const Vec bv = b.defined() ? to_vector<double>(b) : Vec();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t oc = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3), g = o.groups;
  const int64_t sh = o.stride[0], sw = o.stride[1], ph = o.padding[0], pw = o.padding[1];
  const int64_t dh = o.dilation[0], dw = o.dilation[1];
  const int64_t ho = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1, wo = (wd + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  Vec out(static_cast<size_t>(n * oc * ho * wo));
  for (int64_t in = 0; in < n; ++in)
    for (int64_t co = 0; co < oc; ++co) {
      const int64_t grp = co / (oc / g);
      for (int64_t y = 0; y < ho; ++y)
        for (int64_t xx = 0; xx < wo; ++xx) {
          double s = bv.empty() ? 0.0 : bv[co];
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iy = y * sh - ph + i * dh, ix = xx * sw - pw + j * dw;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                s += xv[((in * c + grp * cg + ci) * h + iy) * wd + ix] * wv[((co * cg + ci) * kh + i) * kw + j];
              }
          out[((in * oc + co) * ho + y) * wo + xx] = s;
        }
    }
  (void)c;
  return from_vector(out, {n, oc, ho, wo}, DType::F64);
}

inline int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const double span = static_cast<double>(in + 2 * p - k) / static_cast<double>(s);
  int64_t out = static_cast<int64_t>(ceil_mode ? std::ceil(span) : std::floor(span)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

enum class Pool { Max, Avg, AvgNoPad };

// Max or average pooling with square parameters over each plane of an NCHW tensor.
inline Tensor pool2d(const Tensor& x, Pool kind, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const Vec xv = to_vector<double>(x);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = pool_out(h, k, s, p, ceil_mode), wo = pool_out(w, k, s, p, ceil_mode);
  Vec out;
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t y = 0; y < ho; ++y)
      for (int64_t xx = 0; xx < wo; ++xx) {
        double best = -std::numeric_limits<double>::infinity(), sum = 0;
        int64_t count = 0, padded = 0;
        for (int64_t i = y * s - p; i < y * s - p + k; ++i)
          for (int64_t j = xx * s - p; j < xx * s - p + k; ++j) {
            if (i < h + p && j < w + p) ++padded;  // inside the padded frame
            if (i < 0 || i >= h || j < 0 || j >= w) continue;
            const double v = xv[(pl * h + i) * w + j];
            best = std::max(best, v);
            sum += v;
            ++count;
          }
        out.push_back(kind == Pool::Max ? best : sum / static_cast<double>(kind == Pool::Avg ? padded : count));
      }
  return from_vector(out, {x.size(0), x.size(1), ho, wo}, DType::F64);
}

inline Tensor adaptive_avg(const Tensor& x, int64_t ho, int64_t wo) {
  const Vec xv = to_vector<double>(x);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  Vec out;
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t y = 0; y < ho; ++y)
      for (int64_t xx = 0; xx < wo; ++xx) {
        const auto h0 = static_cast<int64_t>(std::floor(double(y) * h / ho));
        const auto h1 = static_cast<int64_t>(std::ceil(double(y + 1) * h / ho));
        const auto w0 = static_cast<int64_t>(std::floor(double(xx) * w / wo));
        const auto w1 = static_cast<int64_t>(std::ceil(double(xx + 1) * w / wo));
        double sum = 0;
        for (int64_t i = h0; i < h1; ++i)
          for (int64_t j = w0; j < w1; ++j) sum += xv[(pl * h + i) * w + j];
        out.push_back(sum / static_cast<double>((h1 - h0) * (w1 - w0)));
      }
  return from_vector(out, {x.size(0), x.size(1), ho, wo}, DType::F64);
}

inline Conv2dOptions conv_opts(int64_t stride, int64_t pad, int64_t dil, int64_t groups) {
  Conv2dOptions o;
  o.stride = {stride, stride};
  o.padding = {pad, pad};
  o.dilation = {dil, dil};
  o.groups = groups;
  return o;
}

}  // namespace linalg_ref

inline std::vector<OpRow> rows_linalg_conv_pool() {
  namespace R = linalg_ref;
  using V = std::vector<Tensor>;
  std::vector<OpRow> rows;

  // ---- matmul: every promotion rule of torch.matmul.
  rows.push_back({OpId::matmul, "matmul/1d_1d_dot", {{{5}}, {{5}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0].view({1, 5}), x[1].view({5, 1})).view({}); }});
  rows.push_back({OpId::matmul, "matmul/2d_2d", {{{3, 4}}, {{4, 5}, Gen::Normal, true, true}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1]); }});
  rows.push_back({OpId::matmul, "matmul/1d_2d", {{{4}}, {{4, 3}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0].view({1, 4}), x[1]).view({3}); }});
  rows.push_back({OpId::matmul, "matmul/2d_1d", {{{3, 4}}, {{4}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1].view({4, 1})).view({3}); }});
  rows.push_back({OpId::matmul, "matmul/batched_broadcast", {{{2, 1, 3, 4}}, {{3, 4, 2}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1]); }});
  rows.push_back({OpId::matmul, "matmul/3d_2d_folded", {{{2, 3, 4}, Gen::Normal, true, true}, {{4, 2}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1]); }});
  rows.push_back({OpId::matmul, "matmul/1d_3d", {{{3}}, {{2, 3, 4}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0].view({1, 3}), x[1]).view({2, 4}); }});
  rows.push_back({OpId::matmul, "matmul/3d_1d", {{{2, 3, 4}}, {{4}}},
                  [](const V& x) { return matmul(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1].view({4, 1})).view({2, 3}); }});
  rows.push_back({OpId::matmul, "matmul/transposed_batch", {{{2, 4, 3}}, {{2, 5, 4}}},
                  [](const V& x) { return matmul(x[0].transpose(1, 2), x[1].transpose(1, 2)); },
                  [](const V& x) {
                    return R::matmul(x[0].transpose(1, 2).contiguous(), x[1].transpose(1, 2).contiguous());
                  }});

  // ---- mm / bmm: plain, transposed and strided operands.
  rows.push_back({OpId::mm, "mm/plain", {{{3, 4}}, {{4, 5}}},
                  [](const V& x) { return mm(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1]); }});
  rows.push_back({OpId::mm, "mm/transposed_and_strided", {{{4, 3}}, {{5, 4}, Gen::Normal, true, true}},
                  [](const V& x) { return mm(x[0].t(), x[1].t()); },
                  [](const V& x) { return R::matmul(x[0].t().contiguous(), x[1].t().contiguous()); }});
  rows.push_back({OpId::bmm, "bmm/plain", {{{2, 3, 4}}, {{2, 4, 2}}},
                  [](const V& x) { return bmm(x[0], x[1]); },
                  [](const V& x) { return R::matmul(x[0], x[1]); }});
  rows.push_back({OpId::bmm, "bmm/transposed", {{{2, 3, 4}}, {{2, 5, 4}}},
                  [](const V& x) { return bmm(x[0], x[1].transpose(1, 2)); },
                  [](const V& x) { return R::matmul(x[0], x[1].transpose(1, 2).contiguous()); }});

  // ---- linear
  rows.push_back({OpId::linear, "linear/no_bias", {{{3, 4}}, {{5, 4}}},
                  [](const V& x) { return linear(x[0], x[1]); },
                  [](const V& x) { return R::linear(x[0], x[1], Tensor()); }});
  rows.push_back({OpId::linear, "linear/bias", {{{3, 4}}, {{5, 4}}, {{5}}},
                  [](const V& x) { return linear(x[0], x[1], x[2]); },
                  [](const V& x) { return R::linear(x[0], x[1], x[2]); }});
  rows.push_back({OpId::linear, "linear/3d_input", {{{2, 3, 4}, Gen::Normal, true, true}, {{3, 4}}, {{3}}},
                  [](const V& x) { return linear(x[0], x[1], x[2]); },
                  [](const V& x) { return R::linear(x[0], x[1], x[2]); }});

  // ---- conv2d
  auto conv_row = [&](const std::string& name, Shape xs, Shape ws, bool bias, Conv2dOptions o) {
    std::vector<Input> in{{xs}, {ws}};
    if (bias) in.push_back({{ws[0]}});
    rows.push_back({OpId::conv2d, name, in,
                    [o, bias](const V& x) { return conv2d(x[0], x[1], bias ? x[2] : Tensor(), o); },
                    [o, bias](const V& x) { return R::conv2d(x[0], x[1], bias ? x[2] : Tensor(), o); }});
  };
  conv_row("conv2d/pad1_bias", {1, 2, 5, 5}, {3, 2, 3, 3}, true, R::conv_opts(1, 1, 1, 1));
  conv_row("conv2d/stride2_pad1", {2, 1, 5, 5}, {2, 1, 3, 3}, false, R::conv_opts(2, 1, 1, 1));
  conv_row("conv2d/dilation2", {1, 1, 7, 7}, {2, 1, 2, 2}, true, R::conv_opts(1, 0, 2, 1));
  conv_row("conv2d/groups2_bias", {1, 4, 3, 4}, {4, 2, 2, 2}, true, R::conv_opts(1, 1, 1, 2));
  conv_row("conv2d/pointwise", {2, 3, 3, 3}, {2, 3, 1, 1}, true, R::conv_opts(1, 0, 1, 1));
  rows.push_back({OpId::conv2d, "conv2d/unbatched_asymmetric", {{{1, 5, 6}, Gen::Normal, true, true}, {{2, 1, 3, 2}}},
                  [](const V& x) {
                    Conv2dOptions o;
                    o.stride = {2, 1};
                    o.padding = {1, 0};
                    return conv2d(x[0], x[1], Tensor(), o);
                  },
                  [](const V& x) {
                    Conv2dOptions o;
                    o.stride = {2, 1};
                    o.padding = {1, 0};
                    return R::conv2d(x[0].view({1, 1, 5, 6}), x[1], Tensor(), o).view({2, 3, 5});
                  }});

  // ---- pools (Distinct values: no ties for the max, no kinks inside the finite differences)
  rows.push_back({OpId::max_pool2d, "max_pool2d/k2", {{{1, 2, 4, 4}, Gen::Distinct}},
                  [](const V& x) { return max_pool2d(x[0], {2}); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::Max, 2, 2, 0, false); }});
  rows.push_back({OpId::max_pool2d, "max_pool2d/pad1_ceil", {{{1, 1, 6, 6}, Gen::Distinct, true, true}},
                  [](const V& x) { return max_pool2d(x[0], {3}, {2}, {1}, true); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::Max, 3, 2, 1, true); }});
  rows.push_back({OpId::max_pool2d, "max_pool2d/overlapping_stride1", {{{2, 1, 4, 5}, Gen::Distinct}},
                  [](const V& x) { return max_pool2d(x[0], {2}, {1}); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::Max, 2, 1, 0, false); }});
  rows.push_back({OpId::avg_pool2d, "avg_pool2d/k2", {{{1, 2, 4, 4}}},
                  [](const V& x) { return avg_pool2d(x[0], {2}); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::Avg, 2, 2, 0, false); }});
  rows.push_back({OpId::avg_pool2d, "avg_pool2d/pad1_ceil_include_pad", {{{1, 1, 6, 6}}},
                  [](const V& x) { return avg_pool2d(x[0], {3}, {2}, {1}, true, true); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::Avg, 3, 2, 1, true); }});
  rows.push_back({OpId::avg_pool2d, "avg_pool2d/pad1_exclude_pad", {{{1, 2, 5, 5}, Gen::Normal, true, true}},
                  [](const V& x) { return avg_pool2d(x[0], {3}, {2}, {1}, false, false); },
                  [](const V& x) { return R::pool2d(x[0], R::Pool::AvgNoPad, 3, 2, 1, false); }});
  rows.push_back({OpId::adaptive_avg_pool2d, "adaptive_avg_pool2d/non_divisible", {{{1, 2, 5, 6}}},
                  [](const V& x) { return adaptive_avg_pool2d(x[0], {3, 4}); },
                  [](const V& x) { return R::adaptive_avg(x[0], 3, 4); }});
  rows.push_back({OpId::adaptive_avg_pool2d, "adaptive_avg_pool2d/upsampling_bins", {{{1, 1, 3, 2}}},
                  [](const V& x) { return adaptive_avg_pool2d(x[0], {4, 3}); },
                  [](const V& x) { return R::adaptive_avg(x[0], 4, 3); }});
  return rows;
}

}  // namespace mantissa::testing
