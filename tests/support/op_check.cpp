#include "support/op_check.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <sstream>

#include "core/error.h"

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

// The same values as `t` (on the CPU), laid out so the tensor handed to the op is a strided
// view on `device`. The strided buffer is filled on the CPU and copied whole, so a device
// receives exactly the CPU's layout and values without running any of its own kernels.
Tensor make_non_contiguous(const Tensor& t, const Device& device) {
  if (t.dim() == 0) return t.to(device);
  Shape bigger = t.sizes();
  bigger.back() *= 2;
  Tensor big = zeros(bigger, TensorOptions(t.dtype()));
  Tensor view = big.slice(-1, 0, bigger.back(), 2);
  view.copy_(t);
  if (device.is_cpu()) return view;
  return big.to(device).slice(-1, 0, bigger.back(), 2);
}

bool is_float_input(const Input& in) { return in.gen != Gen::Index && in.gen != Gen::Bool; }
}  // namespace

std::vector<Tensor> make_inputs(const OpRow& row, uint64_t seed) {
  Generator gen(seed);
  std::vector<Tensor> out;
  for (const Input& in : row.inputs) out.push_back(generate(in, gen));
  return out;
}

Device device_of(const std::vector<Tensor>& inputs) {
  if (inputs.empty()) return kCPU;
  const Device d = inputs[0].device();
  for (const Tensor& t : inputs) {
    MANTISSA_CHECK(t.device() == d, "op_check: the inputs of one row live on ", d, " and ", t.device());
  }
  return d;
}

std::vector<Tensor> cast_inputs(const OpRow& row, const std::vector<Tensor>& inputs, DType dtype,
                                const Device& device) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Input& in = row.inputs[i];
    Tensor t = inputs[i];
    MANTISSA_CHECK(t.is_cpu(), "op_check: cast_inputs expects the CPU inputs of make_inputs, got one on ", t.device());
    if (is_float_input(in)) t = t.to(dtype);
    t = in.non_contiguous ? make_non_contiguous(t, device) : t.to(device);
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
        gt.rtol *= kGradToleranceFactor;
        gt.atol *= kGradToleranceFactor;
        expect_close(g_lo[i], g_hi[i], gt, row.name + " gradient " + std::to_string(i) + " " + dtype_name(dt) + " vs F64");
      }
    }
  }
}

namespace {

// One dtype of check_row_on_device: the CPU run and the device run on the same values.
void compare_on_device(const OpRow& row, const std::vector<Tensor>& base, DType dt, const Device& device) {
  const std::string what = row.name + " on " + device.str() + " in " + dtype_name(dt);
  std::vector<Tensor> in_cpu = cast_inputs(row, base, dt, kCPU);
  std::vector<Tensor> in_dev = cast_inputs(row, base, dt, device);
  for (size_t i = 0; i < in_dev.size(); ++i) {
    ASSERT_EQ(in_dev[i].device(), device) << what << ": input " << i << " was not moved to the device";
  }
  Tensor out_cpu = row.fn(in_cpu);
  Tensor out_dev = row.fn(in_dev);
  ASSERT_TRUE(out_dev.defined()) << what << ": no output";
  EXPECT_EQ(out_dev.device(), device) << what << ": the output left the device";
  EXPECT_EQ(out_dev.dtype(), out_cpu.dtype()) << what << ": output dtype differs from the CPU's";
  const bool floating = is_floating(out_cpu.dtype());
  // Integer and boolean results (argmax, comparisons) have no rounding to forgive.
  Tolerance tol = floating ? device_tolerance(dt) : Tolerance{0, 0};
  tol.rtol *= row.tol_scale;
  tol.atol *= row.tol_scale;
  Tensor back;
  {
    NoGradGuard no_grad;
    back = out_dev.detach().to(kCPU);
  }
  expect_close(back, out_cpu.detach(), tol, what + " forward vs CPU");

  const bool lower = dt != DType::F64;
  if (!row.differentiable || (lower && !row.check_lower_grads)) return;
  if (!out_cpu.requires_grad() || !out_dev.requires_grad()) {
    EXPECT_EQ(out_dev.requires_grad(), out_cpu.requires_grad()) << what << ": requires_grad of the output";
    return;
  }
  // The cotangent check_row uses, rounded to dt on the CPU and copied: both sides start the
  // backward from identical values.
  Generator g(99);
  const Tensor v_cpu = randn(out_cpu.sizes(), DType::F64, &g).to(out_cpu.dtype());
  const Tensor v_dev = v_cpu.to(device);
  std::vector<Tensor> cpu_leaves, dev_leaves;
  std::vector<size_t> leaf_input;
  for (size_t i = 0; i < in_cpu.size(); ++i) {
    if (in_cpu[i].requires_grad()) {
      cpu_leaves.push_back(in_cpu[i]);
      dev_leaves.push_back(in_dev[i]);
      leaf_input.push_back(i);
    }
  }
  const auto g_cpu = autograd::grad({out_cpu}, cpu_leaves, {v_cpu}, false, true);
  const auto g_dev = autograd::grad({out_dev}, dev_leaves, {v_dev}, false, true);
  Tolerance gt = tol;
  gt.rtol *= kGradToleranceFactor;
  gt.atol *= kGradToleranceFactor;
  for (size_t k = 0; k < g_cpu.size(); ++k) {
    const std::string gwhat = what + " gradient " + std::to_string(leaf_input[k]);
    if (!g_cpu[k].defined()) {
      EXPECT_FALSE(g_dev[k].defined()) << gwhat << ": defined on the device but not on the CPU";
      continue;
    }
    if (!g_dev[k].defined()) {
      ADD_FAILURE() << gwhat << ": undefined on the device";
      continue;
    }
    EXPECT_EQ(g_dev[k].device(), device) << gwhat << ": computed off the device";
    EXPECT_EQ(g_dev[k].dtype(), g_cpu[k].dtype()) << gwhat << ": dtype differs from the CPU's";
    expect_close(g_dev[k].to(kCPU), g_cpu[k], gt, gwhat + " vs CPU");
  }
}

}  // namespace

void check_row_on_device(const OpRow& row, const Device& device) {
  SCOPED_TRACE(row.name + " on " + device.str());
  const std::vector<Tensor> base = make_inputs(row, 20240611);
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    if (!(row.dtypes & dtype_bit(dt))) continue;
    try {
      compare_on_device(row, base, dt, device);
    } catch (const std::exception& e) {
      ADD_FAILURE() << row.name << " on " << device.str() << " in " << dtype_name(dt) << ": " << e.what();
    }
  }
}

}  // namespace mantissa::testing
