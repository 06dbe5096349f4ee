#include "support/op_check.h"

#include <cmath>
#include <sstream>

namespace mantissa::testing {

namespace {
Tensor generate(const Input& in, Generator& gen) {
  const Shape& s = in.shape;
  switch (in.gen) {
    case Gen::Normal: return randn(s, DType::F64, &gen);
    case Gen::Positive: return add(mul(rand(s, DType::F64, &gen), 1.5), 0.5);
    case Gen::Unit: return sub(mul(rand(s, DType::F64, &gen), 1.98), 0.99);
    case Gen::AwayFromZero: {
      Tensor mag = add(mul(rand(s, DType::F64, &gen), 1.5), 0.5);
      Tensor sign = sub(mul(bernoulli(s, 0.5, DType::F64, &gen), 2.0), 1.0);
      return mul(mag, sign);
    }
    case Gen::Index: {
      std::vector<double> u = to_vector<double>(rand(s, DType::F64, &gen));
      std::vector<int64_t> v(u.size());
      for (size_t i = 0; i < u.size(); ++i) v[i] = std::min<int64_t>(in.hi - 1, static_cast<int64_t>(u[i] * in.hi));
      return from_vector(v, s, TensorOptions(in.int_dtype));
    }
    case Gen::Bool: return to_dtype(bernoulli(s, 0.5, DType::F64, &gen), DType::Bool);
    case Gen::Distinct: {
      // Values k * 0.37 - n/5 in a random order: spacing 0.37 keeps finite differences off ties.
      int64_t n = shape_numel(s);
      std::vector<double> u = to_vector<double>(rand({n}, DType::F64, &gen));
      std::vector<int64_t> order(n);
      for (int64_t i = 0; i < n; ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return u[a] < u[b]; });
      std::vector<double> v(n);
      for (int64_t i = 0; i < n; ++i) v[order[i]] = static_cast<double>(i) * 0.37 - static_cast<double>(n) / 5.0;
      return from_vector(v, s, DType::F64);
    }
  }
  return Tensor();
}

// The same values as `t`, but laid out so the tensor handed to the op is a strided view.
Tensor make_non_contiguous(const Tensor& t) {
  if (t.dim() == 0) return t;
  Shape bigger = t.sizes();
  bigger.back() *= 2;
  Tensor big = zeros(bigger, TensorOptions(t.dtype()));
  Tensor view = big.slice(-1, 0, bigger.back(), 2);
  view.copy_(t);
  return view;
}

bool is_float_input(const Input& in) { return in.gen != Gen::Index && in.gen != Gen::Bool; }
}  // namespace

std::vector<Tensor> make_inputs(const OpRow& row, uint64_t seed) {
  Generator gen(seed);
  std::vector<Tensor> out;
  for (const Input& in : row.inputs) out.push_back(generate(in, gen));
  return out;
}

std::vector<Tensor> cast_inputs(const OpRow& row, const std::vector<Tensor>& inputs, DType dtype) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Input& in = row.inputs[i];
    Tensor t = inputs[i];
    if (is_float_input(in)) t = t.to(dtype);
    if (in.non_contiguous) t = make_non_contiguous(t);
    t = t.detach();
    if (is_float_input(in) && in.grad && row.differentiable) t.requires_grad_(true);
    out.push_back(t);
  }
  return out;
}

bool expect_close(const Tensor& actual, const Tensor& expected, Tolerance tol, const std::string& what) {
  if (actual.sizes() != expected.sizes()) {
    ADD_FAILURE() << what << ": shape " << shape_str(actual.sizes()) << " vs expected " << shape_str(expected.sizes());
    return false;
  }
  std::vector<double> a = to_vector<double>(actual), e = to_vector<double>(expected);
  double scale = 0;
  for (double v : e)
    if (std::isfinite(v)) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    bool both_nan = std::isnan(a[i]) && std::isnan(e[i]);
    bool same_inf = std::isinf(a[i]) && a[i] == e[i];
    double allowed = tol.atol * std::max(1.0, scale) + tol.rtol * std::fabs(e[i]);
    if (!(both_nan || same_inf || std::fabs(a[i] - e[i]) <= allowed)) {
      ADD_FAILURE() << what << ": element " << i << " is " << a[i] << ", expected " << e[i] << " (allowed error "
                    << allowed << ")";
      return false;
    }
  }
  return true;
}

void check_row(const OpRow& row) {
  SCOPED_TRACE(row.name);
  const std::vector<Tensor> base = make_inputs(row, 20240611);

  // 1. Forward in F64 against the plain reference.
  std::vector<Tensor> in64 = cast_inputs(row, base, DType::F64);
  Tensor out64 = row.fn(in64);
  if (row.reference) {
    std::vector<Tensor> ref_in;
    for (const Tensor& t : in64) ref_in.push_back(t.detach().contiguous());
    Tensor ref;
    {
      NoGradGuard no_grad;
      ref = row.reference(ref_in);
    }
    expect_close(out64, ref, {1e-10, 1e-10}, row.name + " forward vs reference (F64)");
  }

  // 2. gradcheck in F64.
  if (row.differentiable && out64.requires_grad()) {
    auto result = autograd::gradcheck(row.fn, in64);
    EXPECT_TRUE(result.ok) << row.name << ": " << result.message;
  }

  // 3. Lower dtypes against F64 computed on the same rounded inputs.
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    if (!(row.dtypes & dtype_bit(dt))) continue;
    std::vector<Tensor> rounded;
    for (size_t i = 0; i < base.size(); ++i) {
      rounded.push_back(is_float_input(row.inputs[i]) ? base[i].to(dt).to(DType::F64) : base[i]);
    }
    std::vector<Tensor> in_lo = cast_inputs(row, rounded, dt);
    std::vector<Tensor> in_hi = cast_inputs(row, rounded, DType::F64);
    Tensor out_lo = row.fn(in_lo);
    Tensor out_hi = row.fn(in_hi);
    if (is_floating(out_lo.dtype())) {
      EXPECT_EQ(out_lo.dtype(), dt) << row.name << ": output dtype in a " << dtype_name(dt) << " run";
    }
    Tolerance tol = tolerance(dt);
    tol.rtol *= row.tol_scale;
    tol.atol *= row.tol_scale;
    expect_close(out_lo, out_hi, tol, row.name + " forward " + dtype_name(dt) + " vs F64");

    if (row.differentiable && row.check_lower_grads && out_lo.requires_grad() && out_hi.requires_grad()) {
      Generator g(99);
      Tensor v = randn(out_hi.sizes(), DType::F64, &g);
      std::vector<Tensor> lo_leaves, hi_leaves;
      for (size_t i = 0; i < in_lo.size(); ++i) {
        if (in_lo[i].requires_grad()) {
          lo_leaves.push_back(in_lo[i]);
          hi_leaves.push_back(in_hi[i]);
        }
      }
      auto g_lo = autograd::grad({out_lo}, lo_leaves, {v.to(out_lo.dtype())}, false, true);
      auto g_hi = autograd::grad({out_hi}, hi_leaves, {v}, false, true);
      for (size_t i = 0; i < g_lo.size(); ++i) {
        if (!g_hi[i].defined()) continue;
        ASSERT_TRUE(g_lo[i].defined()) << row.name << ": no gradient for input " << i << " in " << dtype_name(dt);
        EXPECT_EQ(g_lo[i].dtype(), dt) << row.name << ": gradient dtype for input " << i;
        Tolerance gt = tol;
        gt.rtol *= 4;
        gt.atol *= 4;
        expect_close(g_lo[i], g_hi[i], gt, row.name + " gradient " + std::to_string(i) + " " + dtype_name(dt) + " vs F64");
      }
    }
  }
}

}  // namespace mantissa::testing
