// OpRows for views, copies and casts: the forward is a data movement, so the reference reads
// the input values through plain index arithmetic.
#pragma once

#include "support/op_check.h"

namespace mantissa::testing {

namespace view_ref {
// Element (i0, i1, ...) of a contiguous F64 tensor given as values + shape.
inline double at(const std::vector<double>& v, const Shape& shape, const Shape& idx) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return v[flat];
}
// Builds out[idx] = f(idx) over `shape` in row-major order.
template <typename F>
Tensor build(const Shape& shape, F f) {
  std::vector<double> out(shape_numel(shape));
  Shape idx(shape.size(), 0);
  for (size_t k = 0; k < out.size(); ++k) {
    out[k] = f(idx);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return from_vector(out, shape, DType::F64);
}
}  // namespace view_ref

inline std::vector<OpRow> rows_view() {
  using view_ref::at;
  using view_ref::build;
  std::vector<OpRow> rows;
  rows.push_back({OpId::view, "view/merge", {{{2, 3, 4}}},
                  [](const std::vector<Tensor>& x) { return view(x[0], {6, -1}); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {6, 4}, DType::F64); }});
  rows.push_back({OpId::view, "reshape/non_contiguous_copies", {{{3, 4}, Gen::Normal, true, true}},
                  [](const std::vector<Tensor>& x) { return reshape(x[0], {2, 6}); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {2, 6}, DType::F64); }});
  rows.push_back({OpId::transpose, "transpose/0_2", {{{2, 3, 4}}},
                  [](const std::vector<Tensor>& x) { return transpose(x[0], 0, 2).contiguous(); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({4, 3, 2}, [&](const Shape& i) { return at(v, {2, 3, 4}, {i[2], i[1], i[0]}); });
                  }});
  rows.push_back({OpId::permute, "permute/2_0_1", {{{2, 3, 4}, Gen::Normal, true, true}},
                  [](const std::vector<Tensor>& x) { return mul(permute(x[0], {2, 0, 1}), 1.0); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({4, 2, 3}, [&](const Shape& i) { return at(v, {2, 3, 4}, {i[1], i[2], i[0]}); });
                  }});
  rows.push_back({OpId::slice, "slice/step2", {{{4, 7}}},
                  [](const std::vector<Tensor>& x) { return slice(x[0], 1, 1, 6, 2).contiguous(); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({4, 3}, [&](const Shape& i) { return at(v, {4, 7}, {i[0], 1 + 2 * i[1]}); });
                  }});
  rows.push_back({OpId::slice, "narrow/negative_start", {{{5, 3}}},
                  [](const std::vector<Tensor>& x) { return narrow(x[0], 0, -3, 2).contiguous(); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({2, 3}, [&](const Shape& i) { return at(v, {5, 3}, {2 + i[0], i[1]}); });
                  }});
  rows.push_back({OpId::select, "select/middle", {{{3, 4, 2}}},
                  [](const std::vector<Tensor>& x) { return select(x[0], 1, -2).contiguous(); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({3, 2}, [&](const Shape& i) { return at(v, {3, 4, 2}, {i[0], 2, i[1]}); });
                  }});
  rows.push_back({OpId::expand, "expand/new_and_singleton_dims", {{{3, 1}}},
                  [](const std::vector<Tensor>& x) { return expand(x[0], {2, 3, 4}).contiguous(); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    return build({2, 3, 4}, [&](const Shape& i) { return v[i[1]]; });
                  }});
  rows.push_back({OpId::squeeze, "squeeze/all", {{{3, 1, 4, 1}}},
                  [](const std::vector<Tensor>& x) { return squeeze(x[0]); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {3, 4}, DType::F64); }});
  rows.push_back({OpId::squeeze, "squeeze/dim", {{{3, 1, 4}}},
                  [](const std::vector<Tensor>& x) { return squeeze(x[0], 1); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {3, 4}, DType::F64); }});
  rows.push_back({OpId::unsqueeze, "unsqueeze/last", {{{3, 4}, Gen::Normal, true, true}},
                  [](const std::vector<Tensor>& x) { return unsqueeze(x[0], -1); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {3, 4, 1}, DType::F64); }});
  rows.push_back({OpId::view, "flatten/middle", {{{2, 3, 2, 2}}},
                  [](const std::vector<Tensor>& x) { return flatten(x[0], 1, 2); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {2, 6, 2}, DType::F64); }});
  rows.push_back({OpId::clone, "clone/non_contiguous", {{{3, 5}, Gen::Normal, true, true}},
                  [](const std::vector<Tensor>& x) { return clone(x[0]); },
                  [](const std::vector<Tensor>& x) { return from_vector(to_vector<double>(x[0]), {3, 5}, DType::F64); }});
  // Widen to F64, compute, narrow back: in the F32/F16/BF16 runs both casts record nodes and the
  // gradients are compared with F64's (a cast to F32 inside gradcheck's F64 run would turn
  // eps-sized perturbations into rounding noise).
  rows.push_back({OpId::to_dtype, "to_dtype/widen_and_narrow", {{{4, 3}}},
                  [](const std::vector<Tensor>& x) { return to_dtype(mul(to_dtype(x[0], DType::F64), 3.0), x[0].dtype()); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    for (double& d : v) d *= 3;
                    return from_vector(v, {4, 3}, DType::F64);
                  }});
  // To the CPU and back to the inputs' device: on the CPU both moves are no-ops; on CUDA the
  // forward and both backward copies cross devices.
  rows.push_back({OpId::to_device, "to_device/cpu", {{{3, 2}}},
                  [](const std::vector<Tensor>& x) { return mul(to_device(to_device(x[0], kCPU), device_of(x)), 2.0); },
                  [](const std::vector<Tensor>& x) {
                    auto v = to_vector<double>(x[0]);
                    for (double& d : v) d *= 2;
                    return from_vector(v, {3, 2}, DType::F64);
                  }});
  return rows;
}

}  // namespace mantissa::testing
