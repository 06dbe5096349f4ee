// OpRows for the elementwise family (binary, comparisons, where, unary, clamp): broadcasting,
// non-contiguous and 0-d operands. References are naive loops over F64 values with their own
// broadcasting index arithmetic, never the ops under test.
#pragma once

#include <cmath>

#include "support/op_check.h"

namespace mantissa::testing {

namespace ew_ref {

// Row-major values of a broadcast operand at output multi-index idx.
inline double bcast_at(const std::vector<double>& v, const Shape& s, const Shape& out, const Shape& idx) {
  const size_t lead = out.size() - s.size();
  int64_t flat = 0;
  for (size_t d = 0; d < s.size(); ++d) flat = flat * s[d] + (s[d] == 1 ? 0 : idx[lead + d]);
  return v[flat];
}

inline Shape bshape(const std::vector<Shape>& shapes) {
  size_t n = 0;
  for (const Shape& s : shapes) n = std::max(n, s.size());
  Shape out(n, 1);
  for (const Shape& s : shapes)
    for (size_t d = 0; d < s.size(); ++d) {
      int64_t& o = out[n - s.size() + d];
      if (s[d] != 1) o = s[d];
    }
  return out;
}

// out[idx] = f(x0[idx], x1[idx], ...) with every input broadcast, as doubles.
template <typename F>
Tensor nary(const std::vector<Tensor>& xs, F f, DType out_dtype = DType::F64) {
  std::vector<Shape> shapes;
  std::vector<std::vector<double>> vals;
  for (const Tensor& x : xs) {
    shapes.push_back(x.sizes());
    vals.push_back(to_vector<double>(x));
  }
  const Shape out = bshape(shapes);
  int64_t n = 1;
  for (int64_t s : out) n *= s;
  std::vector<double> res(n);
  Shape idx(out.size(), 0);
  std::vector<double> args(xs.size());
  for (int64_t k = 0; k < n; ++k) {
    for (size_t i = 0; i < xs.size(); ++i) args[i] = bcast_at(vals[i], shapes[i], out, idx);
    res[k] = f(args);
    for (int64_t d = static_cast<int64_t>(out.size()) - 1; d >= 0; --d) {
      if (++idx[d] < out[d]) break;
      idx[d] = 0;
    }
  }
  Tensor r = from_vector(res, out, DType::F64);
  return out_dtype == DType::F64 ? r : r.to(out_dtype);
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace ew_ref

inline std::vector<OpRow> rows_elementwise() {
  using V = std::vector<double>;
  using T = std::vector<Tensor>;
  using ew_ref::nary;
  std::vector<OpRow> rows;
  auto bin = [](auto f) { return [f](const T& x) { return nary(x, [f](const V& a) { return f(a[0], a[1]); }); }; };
  auto un = [](auto f) { return [f](const T& x) { return nary(x, [f](const V& a) { return f(a[0]); }); }; };
  auto cmp = [](auto f) {
    return [f](const T& x) { return nary(x, [f](const V& a) { return f(a[0], a[1]) ? 1.0 : 0.0; }, DType::Bool); };
  };
  const Input nc34{{3, 4}, Gen::Normal, true, true};

  // add / sub --------------------------------------------------------------------------------
  rows.push_back({OpId::add, "add/same_shape", {{{3, 4}}, {{3, 4}}}, [](const T& x) { return add(x[0], x[1]); },
                  bin([](double a, double b) { return a + b; })});
  rows.push_back({OpId::add, "add/broadcast_3x1x4_2x4", {{{3, 1, 4}}, {{2, 4}}},
                  [](const T& x) { return x[0] + x[1]; }, bin([](double a, double b) { return a + b; })});
  rows.push_back({OpId::add, "add/alpha_non_contiguous", {nc34, {{4}}}, [](const T& x) { return add(x[0], x[1], 2.5); },
                  bin([](double a, double b) { return a + 2.5 * b; })});
  rows.push_back({OpId::add, "add/zero_dim", {{{}}, {{2, 3}}}, [](const T& x) { return add(x[0], x[1]); },
                  bin([](double a, double b) { return a + b; })});
  rows.push_back({OpId::add, "add/scalar", {{{2, 3}}}, [](const T& x) { return x[0] + 1.5; },
                  un([](double a) { return a + 1.5; })});
  rows.push_back({OpId::add, "add/scalar_first", {{{2, 3}}}, [](const T& x) { return 0.25 + x[0]; },
                  un([](double a) { return 0.25 + a; })});
  rows.push_back({OpId::sub, "sub/broadcast_alpha", {{{4, 1}}, {{3}}}, [](const T& x) { return sub(x[0], x[1], 0.5); },
                  bin([](double a, double b) { return a - 0.5 * b; })});
  rows.push_back({OpId::sub, "sub/operator_non_contiguous", {nc34, nc34}, [](const T& x) { return x[0] - x[1]; },
                  bin([](double a, double b) { return a - b; })});
  rows.push_back({OpId::sub, "sub/scalar", {{{5}}}, [](const T& x) { return x[0] - 0.75; },
                  un([](double a) { return a - 0.75; })});
  rows.push_back({OpId::sub, "sub/scalar_first", {{{2, 3}}}, [](const T& x) { return 2.0 - x[0]; },
                  un([](double a) { return 2.0 - a; })});

  // mul / div --------------------------------------------------------------------------------
  rows.push_back({OpId::mul, "mul/broadcast_3x1x4_2x4", {{{3, 1, 4}}, {{2, 4}}}, [](const T& x) { return x[0] * x[1]; },
                  bin([](double a, double b) { return a * b; })});
  rows.push_back({OpId::mul, "mul/non_contiguous", {nc34, {{3, 1}}}, [](const T& x) { return mul(x[0], x[1]); },
                  bin([](double a, double b) { return a * b; })});
  rows.push_back({OpId::mul, "mul/zero_dim_both", {{{}}, {{}}}, [](const T& x) { return mul(x[0], x[1]); },
                  bin([](double a, double b) { return a * b; })});
  rows.push_back({OpId::mul, "mul/scalar", {{{2, 3}}}, [](const T& x) { return -1.5 * x[0]; },
                  un([](double a) { return -1.5 * a; })});
  rows.push_back({OpId::div, "div/broadcast", {{{2, 3}}, {{3}, Gen::Positive}}, [](const T& x) { return x[0] / x[1]; },
                  bin([](double a, double b) { return a / b; })});
  rows.push_back({OpId::div, "div/non_contiguous_zero_dim", {nc34, {{}, Gen::Positive}},
                  [](const T& x) { return div(x[0], x[1]); }, bin([](double a, double b) { return a / b; })});
  rows.push_back({OpId::div, "div/scalar", {{{2, 3}}}, [](const T& x) { return x[0] / 4.0; },
                  un([](double a) { return a / 4.0; })});
  rows.push_back({OpId::div, "div/scalar_first", {{{2, 3}, Gen::Positive}}, [](const T& x) { return 2.0 / x[0]; },
                  un([](double a) { return 2.0 / a; })});

  // pow --------------------------------------------------------------------------------------
  rows.push_back({OpId::pow, "pow/tensor_tensor", {{{2, 3}, Gen::Positive}, {{2, 3}}},
                  [](const T& x) { return pow(x[0], x[1]); }, bin([](double a, double b) { return std::pow(a, b); })});
  rows.push_back({OpId::pow, "pow/broadcast_non_contiguous", {{{3, 1}, Gen::Positive}, {{4}, Gen::Unit, true, true}},
                  [](const T& x) { return pow(x[0], x[1]); }, bin([](double a, double b) { return std::pow(a, b); })});
  rows.push_back({OpId::pow, "pow/scalar_2_5", {{{2, 3}, Gen::Positive}}, [](const T& x) { return pow(x[0], 2.5); },
                  un([](double a) { return std::pow(a, 2.5); })});
  rows.push_back({OpId::pow, "pow/scalar_square_negative_base", {{{2, 3}}}, [](const T& x) { return x[0].pow(2.0); },
                  un([](double a) { return a * a; })});
  rows.push_back({OpId::pow, "pow/scalar_cube", {{{5}}}, [](const T& x) { return pow(x[0], 3.0); },
                  un([](double a) { return a * a * a; })});

  // maximum / minimum: Distinct operands of different sizes never tie ----------------------
  rows.push_back({OpId::maximum, "maximum/broadcast", {{{3, 4}, Gen::Distinct}, {{4}, Gen::Distinct}},
                  [](const T& x) { return maximum(x[0], x[1]); },
                  bin([](double a, double b) { return std::max(a, b); })});
  rows.push_back({OpId::maximum, "maximum/zero_dim", {{{}, Gen::Distinct}, {{5}, Gen::Distinct}},
                  [](const T& x) { return maximum(x[0], x[1]); },
                  bin([](double a, double b) { return std::max(a, b); })});
  rows.push_back({OpId::minimum, "minimum/broadcast_non_contiguous",
                  {{{2, 3}, Gen::Distinct, true, true}, {{2, 1}, Gen::Distinct}},
                  [](const T& x) { return minimum(x[0], x[1]); },
                  bin([](double a, double b) { return std::min(a, b); })});

  // where ------------------------------------------------------------------------------------
  rows.push_back({OpId::where, "where/broadcast", {{{2, 1, 4}, Gen::Bool}, {{3, 4}}, {{4}}},
                  [](const T& x) { return where(x[0], x[1], x[2]); },
                  [](const T& x) { return nary(x, [](const V& a) { return a[0] != 0 ? a[1] : a[2]; }); }});
  rows.push_back({OpId::where, "where/zero_dim_non_contiguous", {{{3, 4}, Gen::Bool}, nc34, {{}}},
                  [](const T& x) { return where(x[0], x[1], x[2]); },
                  [](const T& x) { return nary(x, [](const V& a) { return a[0] != 0 ? a[1] : a[2]; }); }});

  // comparisons: Bool results, nothing recorded ---------------------------------------------
  auto compare_row = [&](const char* name, std::vector<Input> in, OpFn fn, OpFn ref) {
    OpRow r{OpId::compare, name, std::move(in), std::move(fn), std::move(ref)};
    r.differentiable = false;
    rows.push_back(r);
  };
  const Input idx34{{3, 4}, Gen::Index, true, false, 3};
  const Input idx4{{4}, Gen::Index, true, false, 3};
  compare_row("compare/eq_int_broadcast", {idx34, idx4}, [](const T& x) { return eq(x[0], x[1]); },
              cmp([](double a, double b) { return a == b; }));
  compare_row("compare/ne_int", {idx34, idx34}, [](const T& x) { return ne(x[0], x[1]); },
              cmp([](double a, double b) { return a != b; }));
  compare_row("compare/lt_broadcast", {{{3, 1, 4}, Gen::Distinct}, {{2, 4}, Gen::Distinct}},
              [](const T& x) { return lt(x[0], x[1]); }, cmp([](double a, double b) { return a < b; }));
  compare_row("compare/le_int_vs_float", {idx34, {{3, 4}, Gen::Unit}}, [](const T& x) { return le(x[0], x[1]); },
              cmp([](double a, double b) { return a <= b; }));
  compare_row("compare/gt_non_contiguous", {nc34, {{}}}, [](const T& x) { return gt(x[0], x[1]); },
              cmp([](double a, double b) { return a > b; }));
  compare_row("compare/ge_scalar", {{{3, 4}}}, [](const T& x) { return ge(x[0], 0.25); },
              [](const T& x) { return nary(x, [](const V& a) { return a[0] >= 0.25 ? 1.0 : 0.0; }, DType::Bool); });
  compare_row("compare/eq_scalar_int", {idx34}, [](const T& x) { return eq(x[0], 1.0); },
              [](const T& x) { return nary(x, [](const V& a) { return a[0] == 1.0 ? 1.0 : 0.0; }, DType::Bool); });

  // unary ------------------------------------------------------------------------------------
  rows.push_back({OpId::neg, "neg/basic", {{{3, 4}}}, [](const T& x) { return -x[0]; },
                  un([](double a) { return -a; })});
  rows.push_back({OpId::neg, "neg/non_contiguous", {nc34}, [](const T& x) { return neg(x[0]); },
                  un([](double a) { return -a; })});
  rows.push_back({OpId::exp, "exp/basic", {{{3, 4}}}, [](const T& x) { return exp(x[0]); },
                  un([](double a) { return std::exp(a); })});
  rows.push_back({OpId::exp, "exp/non_contiguous", {nc34}, [](const T& x) { return x[0].exp(); },
                  un([](double a) { return std::exp(a); })});
  rows.push_back({OpId::log, "log/positive", {{{3, 4}, Gen::Positive}}, [](const T& x) { return log(x[0]); },
                  un([](double a) { return std::log(a); })});
  rows.push_back({OpId::sqrt, "sqrt/positive", {{{3, 4}, Gen::Positive}}, [](const T& x) { return sqrt(x[0]); },
                  un([](double a) { return std::sqrt(a); })});
  rows.push_back({OpId::rsqrt, "rsqrt/positive", {{{3, 4}, Gen::Positive, true, true}},
                  [](const T& x) { return rsqrt(x[0]); }, un([](double a) { return 1.0 / std::sqrt(a); })});
  rows.push_back({OpId::abs, "abs/away_from_zero", {{{3, 4}, Gen::AwayFromZero}}, [](const T& x) { return abs(x[0]); },
                  un([](double a) { return std::fabs(a); })});
  rows.push_back({OpId::relu, "relu/away_from_zero", {{{3, 4}, Gen::AwayFromZero}},
                  [](const T& x) { return relu(x[0]); }, un([](double a) { return a > 0 ? a : 0.0; })});
  rows.push_back({OpId::relu, "relu/non_contiguous", {{{3, 4}, Gen::AwayFromZero, true, true}},
                  [](const T& x) { return x[0].relu(); }, un([](double a) { return a > 0 ? a : 0.0; })});
  rows.push_back({OpId::gelu, "gelu/none", {{{3, 4}}}, [](const T& x) { return gelu(x[0]); },
                  un([](double a) { return 0.5 * a * (1.0 + std::erf(a / std::sqrt(2.0))); })});
  rows.push_back({OpId::gelu, "gelu/tanh", {{{3, 4}, Gen::Normal, true, true}},
                  [](const T& x) { return gelu(x[0], "tanh"); }, un([](double a) {
                    const double k = 0.7978845608028654;  // sqrt(2 / pi)
                    return 0.5 * a * (1.0 + std::tanh(k * (a + 0.044715 * a * a * a)));
                  })});
  rows.push_back({OpId::sigmoid, "sigmoid/basic", {{{3, 4}}}, [](const T& x) { return sigmoid(x[0]); },
                  un([](double a) { return ew_ref::sigmoid(a); })});
  rows.push_back({OpId::tanh, "tanh/basic", {{{3, 4}}}, [](const T& x) { return tanh(x[0]); },
                  un([](double a) { return std::tanh(a); })});
  rows.push_back({OpId::silu, "silu/basic", {{{3, 4}, Gen::Normal, true, true}}, [](const T& x) { return silu(x[0]); },
                  un([](double a) { return a * ew_ref::sigmoid(a); })});
  rows.push_back({OpId::clamp, "clamp/both", {{{3, 4}, Gen::AwayFromZero}},
                  [](const T& x) { return clamp(x[0], -1.25, 0.75); },
                  un([](double a) { return std::min(std::max(a, -1.25), 0.75); })});
  rows.push_back({OpId::clamp, "clamp/min_only_non_contiguous", {{{3, 4}, Gen::AwayFromZero, true, true}},
                  [](const T& x) { return clamp(x[0], 0.9, std::nullopt); },
                  un([](double a) { return std::max(a, 0.9); })});
  rows.push_back({OpId::clamp, "clamp/max_only", {{{2, 3}, Gen::AwayFromZero}},
                  [](const T& x) { return clamp(x[0], std::nullopt, -0.7); },
                  un([](double a) { return std::min(a, -0.7); })});
  return rows;
}

}  // namespace mantissa::testing
