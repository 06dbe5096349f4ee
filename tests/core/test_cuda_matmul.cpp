// matmul (cuBLASLt) and the batch/layer-norm kernels on CUDA against the CPU kernels on the same
// rounded inputs, per dtype: odd and tiny sizes, transposed, strided, batched and broadcast
// operands, bias and bias+ReLU; the TF32 switch (F32 results move only when it is on). The flag
// round trip and the CPU matmul_relu run everywhere; every CUDA case skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/cuda_flags.h"
#include "core/kernels/copy.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/matmul.h"
#include "core/kernels/norm.h"
#include "support/op_check.h"

namespace mantissa {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                         \
    if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason(); \
  } while (0)

// Values uniform in [-1, 1), rounded once to dtype on the CPU.
Tensor random_cpu(const Shape& shape, DType dtype, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(gen);
  Tensor t = empty(shape, TensorOptions(dtype));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

Tensor to_cuda(const Tensor& cpu) {
  Tensor d = empty(cpu.sizes(), TensorOptions(cpu.dtype()).device(kCUDA));
  kernels::copy(d, cpu);
  return d;
}

Tensor to_host(const Tensor& dev) {
  Tensor h = empty(dev.sizes(), TensorOptions(dev.dtype()));
  kernels::copy(h, dev);
  return h;
}

// Logical (row-major) values of any tensor on any device.
std::vector<double> values(const Tensor& t) {
  Tensor h = t.is_cuda() ? to_host(t) : t;
  Tensor c = empty(h.sizes(), TensorOptions(DType::F64));
  kernels::copy(c, h);
  return to_vector<double>(c);
}

// Restores the TF32 switch however a test ends.
struct Tf32Guard {
  bool saved = cuda::allow_tf32();
  ~Tf32Guard() { cuda::set_allow_tf32(saved); }
};

// ---- the switch and the CPU epilogue (run everywhere) ------------------------------------------

TEST(CudaFlags, AllowTf32IsOffByDefaultAndRoundTrips) {
  Tf32Guard guard;
  EXPECT_FALSE(cuda::allow_tf32()) << "TF32 must be opt-in: an F32 run has to be an F32 run";
  cuda::set_allow_tf32(true);
  EXPECT_TRUE(cuda::allow_tf32());
  cuda::set_allow_tf32(false);
  EXPECT_FALSE(cuda::allow_tf32());
}

TEST(MatmulRelu, CpuMatchesMatmulThenRelu) {
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor a = random_cpu({5, 7}, dt, 1), b = random_cpu({7, 9}, dt, 2), bias = random_cpu({9}, dt, 3);
    Tensor plain = empty({5, 9}, TensorOptions(dt)), fused = empty({5, 9}, TensorOptions(dt));
    kernels::matmul(plain, a, b, bias);
    kernels::matmul_relu(fused, a, b, bias);
    const std::vector<double> p = values(plain), f = values(fused);
    int negatives = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      negatives += p[i] < 0;
      EXPECT_EQ(f[i], std::max(p[i], 0.0)) << i;
    }
    EXPECT_GT(negatives, 0) << "the case must exercise the clamp";
  }
}

// ---- matmul on CUDA ----------------------------------------------------------------------------

// How an operand is handed to the kernel.
enum class Layout {
  RowMajor,    // contiguous [..., rows, cols]
  Transposed,  // a transposed view of a contiguous [..., cols, rows] (column-major)
  Strided,     // every other column of a [..., rows, 2 * cols] tensor: not BLAS-addressable
};

// A CPU operand of logical shape `shape` in `layout`, and the same view on CUDA over a copy of the
// same storage.
struct Operand {
  Tensor cpu, dev;
};

Operand make_operand(Shape shape, Layout layout, DType dt, uint32_t seed) {
  const size_t nd = shape.size();
  Shape storage = shape;
  if (layout == Layout::Transposed) std::swap(storage[nd - 1], storage[nd - 2]);
  if (layout == Layout::Strided) storage[nd - 1] *= 2;
  const Tensor base = random_cpu(storage, dt, seed);
  const Tensor base_dev = to_cuda(base);
  auto view = [&](const Tensor& t) {
    const int64_t last = static_cast<int64_t>(nd) - 1;
    if (layout == Layout::Transposed) return t.transpose(last - 1, last);
    if (layout == Layout::Strided) return t.slice(last, 0, storage[nd - 1], 2);
    return t;
  };
  return {view(base), view(base_dev)};
}

// sum_k |a_ik| |b_kj| + |bias_j| per output element, with broadcast batch dims: the scale of the
// rounding error of each output (a dot product's error is relative to it, not to the result).
std::vector<double> abs_dot(const Tensor& a, const Tensor& b, const Tensor& bias, const Shape& out_shape) {
  const std::vector<double> av = values(a), bv = values(b);
  const std::vector<double> cv = bias.defined() ? values(bias) : std::vector<double>();
  const int64_t nd = static_cast<int64_t>(out_shape.size());
  const int64_t m = out_shape[nd - 2], n = out_shape[nd - 1], k = a.size(-1);
  int64_t batch = 1;
  for (int64_t d = 0; d < nd - 2; ++d) batch *= out_shape[d];
  std::vector<double> out(static_cast<size_t>(batch * m * n));
  for (int64_t bi = 0; bi < batch; ++bi) {
    // Linear batch index of a and b: broadcast (size-1) dims contribute nothing.
    int64_t rem = bi, ia = 0, ib = 0, sa = 1, sb = 1;
    for (int64_t d = nd - 3; d >= 0; --d) {
      const int64_t idx = rem % out_shape[d];
      rem /= out_shape[d];
      if (a.size(d) != 1) ia += idx * sa;
      if (b.size(d) != 1) ib += idx * sb;
      sa *= a.size(d);
      sb *= b.size(d);
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = cv.empty() ? 0.0 : std::abs(cv[static_cast<size_t>(j)]);
        for (int64_t kk = 0; kk < k; ++kk)
          s += std::abs(av[static_cast<size_t>((ia * m + i) * k + kk)]) *
               std::abs(bv[static_cast<size_t>((ib * k + kk) * n + j)]);
        out[static_cast<size_t>((bi * m + i) * n + j)] = s;
      }
  }
  return out;
}

// Largest |got - want| / scale over the elements (scale = abs_dot, floored to avoid 0/0).
double max_scaled_error(const std::vector<double>& got, const std::vector<double>& want,
                        const std::vector<double>& scale) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]) / std::max(scale[i], 1e-30);
    if (!(err <= worst)) worst = err;  // NaN propagates as a failure
  }
  return worst;
}

// Per-dtype bound on |gpu - cpu| / abs_dot: each side is within the dtype's tolerance of the
// exact value (one rounding of an F32 accumulation for the 16-bit types), so twice it.
double matmul_bound(DType dt) { return testing::device_tolerance(dt).rtol; }

struct MatmulCase {
  Shape a_batch, b_batch;
  int64_t m, n, k;
  Layout la = Layout::RowMajor, lb = Layout::RowMajor;
  bool bias = false, relu = false;
  bool expand_b = false;  // b's batch dim of size 1 expanded to a's (a stride-0 batch dim)
};

std::string describe(const MatmulCase& c) {
  return "a " + shape_str(c.a_batch) + " b " + shape_str(c.b_batch) + " m=" + std::to_string(c.m) +
         " n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) + " la=" + std::to_string(int(c.la)) +
         " lb=" + std::to_string(int(c.lb)) + (c.bias ? " bias" : "") + (c.relu ? " relu" : "") +
         (c.expand_b ? " expanded" : "");
}

// Runs c on CPU and CUDA in dt; returns max_scaled_error (and checks shapes/devices).
double run_matmul_case(const MatmulCase& c, DType dt, uint32_t seed) {
  Shape as = c.a_batch, bs = c.b_batch, os;
  as.insert(as.end(), {c.m, c.k});
  bs.insert(bs.end(), {c.k, c.n});
  for (size_t d = 0; d < c.a_batch.size(); ++d) os.push_back(std::max(c.a_batch[d], c.b_batch[d]));
  os.insert(os.end(), {c.m, c.n});
  Operand a = make_operand(as, c.la, dt, seed), b = make_operand(bs, c.lb, dt, seed + 1);
  if (c.expand_b) {
    Shape full = bs;
    for (size_t d = 0; d < c.a_batch.size(); ++d) full[d] = os[d];
    b.cpu = b.cpu.expand(full);
    b.dev = b.dev.expand(full);
  }
  Tensor bias_cpu, bias_dev;
  if (c.bias) {
    bias_cpu = random_cpu({c.n}, dt, seed + 2);
    bias_dev = to_cuda(bias_cpu);
  }
  Tensor want = empty(os, TensorOptions(dt)), got = empty(os, TensorOptions(dt).device(kCUDA));
  if (c.relu) {
    kernels::matmul_relu(want, a.cpu, b.cpu, bias_cpu);
    kernels::matmul_relu(got, a.dev, b.dev, bias_dev);
  } else {
    kernels::matmul(want, a.cpu, b.cpu, bias_cpu);
    kernels::matmul(got, a.dev, b.dev, bias_dev);
  }
  EXPECT_TRUE(got.is_cuda());
  EXPECT_EQ(got.dtype(), dt);
  return max_scaled_error(values(got), values(want), abs_dot(a.cpu, b.cpu, bias_cpu, os));
}

std::vector<MatmulCase> matmul_cases() {
  std::vector<MatmulCase> cases;
  // Sizes 1..300, odd ones included, with and without bias.
  const int64_t sizes[][3] = {{1, 1, 1},    {1, 7, 5},     {7, 1, 3},      {3, 5, 1},     {2, 3, 4},
                              {17, 33, 65}, {64, 64, 64},  {127, 255, 129}, {300, 1, 300}, {1, 300, 299},
                              {300, 300, 300}, {33, 8, 257}};
  for (const auto& s : sizes) {
    cases.push_back({{}, {}, s[0], s[1], s[2]});
    cases.push_back({{}, {}, s[0], s[1], s[2], Layout::RowMajor, Layout::RowMajor, true});
  }
  // Every operand layout pair (BLAS's N/T combinations and the copy path).
  for (Layout la : {Layout::RowMajor, Layout::Transposed, Layout::Strided})
    for (Layout lb : {Layout::RowMajor, Layout::Transposed, Layout::Strided})
      cases.push_back({{}, {}, 37, 19, 23, la, lb, true});
  // Batched: plain, broadcast a or b (size-1 batch dim), expanded (stride 0), 4-D with an outer
  // loop, transposed batched operands, and the empty sum (k = 0: out = bias).
  cases.push_back({{5}, {5}, 9, 11, 13});
  cases.push_back({{5}, {1}, 9, 11, 13, Layout::RowMajor, Layout::RowMajor, true});
  cases.push_back({{1}, {4}, 16, 3, 8, Layout::Transposed, Layout::RowMajor});
  cases.push_back({{6}, {1}, 7, 5, 3, Layout::RowMajor, Layout::Transposed, true, false, true});
  cases.push_back({{2, 3}, {2, 1}, 10, 12, 14, Layout::Transposed, Layout::Transposed, true});
  cases.push_back({{3}, {3}, 31, 29, 65, Layout::Strided, Layout::Transposed, true});
  cases.push_back({{}, {}, 5, 7, 0, Layout::RowMajor, Layout::RowMajor, true});
  cases.push_back({{2}, {2}, 4, 6, 0});
  // Fused bias+ReLU and ReLU alone.
  cases.push_back({{}, {}, 45, 67, 29, Layout::RowMajor, Layout::Transposed, true, true});
  cases.push_back({{}, {}, 128, 96, 64, Layout::RowMajor, Layout::RowMajor, false, true});
  cases.push_back({{4}, {1}, 21, 13, 40, Layout::RowMajor, Layout::RowMajor, true, true});
  return cases;
}

TEST(CudaMatmul, MatchesCpuPerDtype) {
  SKIP_WITHOUT_CUDA();
  Tf32Guard guard;
  cuda::set_allow_tf32(false);
  uint32_t seed = 10;
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    for (const MatmulCase& c : matmul_cases()) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " " + describe(c));
      const double err = run_matmul_case(c, dt, seed += 3);
      EXPECT_LE(err, matmul_bound(dt));
    }
  }
}

TEST(CudaMatmul, Tf32ChangesF32ResultsOnlyWhenOn) {
  SKIP_WITHOUT_CUDA();
  Tf32Guard guard;
  // Large enough that cuBLAS picks tensor-core kernels whenever TF32 is allowed.
  const MatmulCase c{{}, {}, 512, 512, 512};
  cuda::set_allow_tf32(false);
  const double off = run_matmul_case(c, DType::F32, 7);
  cuda::set_allow_tf32(true);
  const double on = run_matmul_case(c, DType::F32, 7);
  // Off: F32 products and sums. On: inputs rounded to 10 mantissa bits (2^-11 relative each),
  // so the error relative to sum |a||b| grows to ~1e-4..1e-3 but stays below 2^-9.
  EXPECT_LE(off, matmul_bound(DType::F32));
  EXPECT_GT(on, 10 * matmul_bound(DType::F32)) << "TF32 on must change F32 results";
  EXPECT_LE(on, std::ldexp(1.0, -9));

  // 16-bit inputs ignore the switch: bit-identical results with it on and off.
  const Operand a = make_operand({64, 96}, Layout::RowMajor, DType::F16, 3);
  const Operand b = make_operand({96, 80}, Layout::RowMajor, DType::F16, 4);
  Tensor r_on = empty({64, 80}, TensorOptions(DType::F16).device(kCUDA));
  Tensor r_off = empty({64, 80}, TensorOptions(DType::F16).device(kCUDA));
  kernels::matmul(r_on, a.dev, b.dev);
  cuda::set_allow_tf32(false);
  kernels::matmul(r_off, a.dev, b.dev);
  EXPECT_EQ(values(r_on), values(r_off));
}

TEST(CudaMatmul, RejectsMixedDevicesAndDtypes) {
  SKIP_WITHOUT_CUDA();
  const Tensor a = to_cuda(random_cpu({4, 5}, DType::F32, 1));
  const Tensor b_cpu = random_cpu({5, 6}, DType::F32, 2);
  Tensor out = empty({4, 6}, TensorOptions(DType::F32).device(kCUDA));
  EXPECT_THROW(kernels::matmul(out, a, b_cpu), Error);
  const Tensor b_half = to_cuda(random_cpu({5, 6}, DType::F16, 2));
  EXPECT_THROW(kernels::matmul(out, a, b_half), Error);
}

// ---- norms on CUDA -----------------------------------------------------------------------------

// |got - want| <= rtol * |want| + atol * max(1, max |want|), element by element.
void expect_close(const Tensor& got_dev, const Tensor& want_cpu, double rtol, double atol, const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_EQ(got_dev.defined(), want_cpu.defined());
  if (!want_cpu.defined()) return;
  EXPECT_EQ(got_dev.dtype(), want_cpu.dtype());
  const std::vector<double> got = values(got_dev), want = values(want_cpu);
  ASSERT_EQ(got.size(), want.size());
  double scale = 1.0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]);
    if (!(err <= rtol * std::abs(want[i]) + atol * scale)) {
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", want " << want[i];
      if (++reported == 5) return;
    }
  }
}

// Tolerances: outputs in x's dtype as device_tolerance(); statistics and parameter gradients
// (F32, or F64 for F64) are sums in a different order on each side.
testing::Tolerance out_tol(DType dt) { return testing::device_tolerance(dt); }
testing::Tolerance stat_tol(DType dt) {
  return dt == DType::F64 ? testing::Tolerance{1e-10, 1e-10} : testing::Tolerance{2e-5, 2e-5};
}

Tensor zeros_on(const Shape& s, DType dt, const Device& dev) { return zeros(s, TensorOptions(dt).device(dev)); }
Tensor maybe_cuda(const Tensor& t) { return t.defined() ? to_cuda(t) : t; }

const DType kNormDtypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64};

TEST(CudaNorm, BatchNormMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  // [n, c] rows, small and split channel reductions, spatial runs shorter and longer than a block.
  const kernels::BatchNormShape shapes[] = {{7, 5, 1},  {3000, 70, 1}, {4, 3, 37},
                                            {2, 8, 1000}, {16, 4, 4096}, {1, 2, 3}};
  uint32_t seed = 100;
  for (DType dt : kNormDtypes) {
    const DType acc = kernels::norm_acc_dtype(dt);
    for (const kernels::BatchNormShape& shp : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " n=" + std::to_string(shp.n) + " c=" + std::to_string(shp.c) +
                   " s=" + std::to_string(shp.s));
      const Shape xs{shp.n, shp.c, shp.s};
      // An offset mean per channel: the two-pass variance must not cancel.
      const Tensor x = random_cpu(xs, dt, seed++, 2.0, 4.0), g = random_cpu(xs, dt, seed++);
      const Tensor xd = to_cuda(x), gd = to_cuda(g);
      const Tensor w = random_cpu({shp.c}, acc, seed++, 0.5, 1.5), b = random_cpu({shp.c}, acc, seed++);
      const Tensor wd = to_cuda(w), bd = to_cuda(b);
      const double eps = 1e-5;
      Tensor mean = zeros_on({shp.c}, acc, kCPU), var = zeros_on({shp.c}, acc, kCPU),
             invstd = zeros_on({shp.c}, acc, kCPU);
      Tensor mean_d = zeros_on({shp.c}, acc, kCUDA), var_d = zeros_on({shp.c}, acc, kCUDA),
             invstd_d = zeros_on({shp.c}, acc, kCUDA);
      kernels::batch_norm_stats(x, shp, eps, mean, var, invstd);
      kernels::batch_norm_stats(xd, shp, eps, mean_d, var_d, invstd_d);
      const testing::Tolerance st = stat_tol(dt);
      expect_close(mean_d, mean, st.rtol, st.atol, "mean");
      expect_close(var_d, var, st.rtol, st.atol, "var");
      expect_close(invstd_d, invstd, st.rtol, st.atol, "invstd");

      // Running statistics in F16, every other element of a longer buffer (any dtype and stride).
      const Tensor run_buf = random_cpu({2 * shp.c}, DType::F16, seed++, 0.5, 1.0);
      Tensor rm = run_buf.slice(0, 0, 2 * shp.c, 2), rv = random_cpu({shp.c}, DType::BF16, seed++, 0.5, 1.0);
      Tensor rm_d = to_cuda(run_buf).slice(0, 0, 2 * shp.c, 2), rv_d = to_cuda(rv);
      const int64_t count = shp.n * shp.s;
      if (count > 1) {
        kernels::batch_norm_update_running(rm, rv, mean, var, 0.1, count);
        kernels::batch_norm_update_running(rm_d, rv_d, mean_d, var_d, 0.1, count);
        expect_close(rm_d, rm, out_tol(DType::F16).rtol, out_tol(DType::F16).atol, "running_mean");
        expect_close(rv_d, rv, out_tol(DType::BF16).rtol, out_tol(DType::BF16).atol, "running_var");
      }
      Tensor em = zeros_on({shp.c}, acc, kCPU), ei = zeros_on({shp.c}, acc, kCPU);
      Tensor em_d = zeros_on({shp.c}, acc, kCUDA), ei_d = zeros_on({shp.c}, acc, kCUDA);
      kernels::batch_norm_eval_stats(rm, rv, eps, em, ei);
      kernels::batch_norm_eval_stats(rm_d, rv_d, eps, em_d, ei_d);
      expect_close(em_d, em, st.rtol, st.atol, "eval mean");
      expect_close(ei_d, ei, st.rtol, st.atol, "eval invstd");

      const testing::Tolerance ot = out_tol(dt);
      for (bool affine : {true, false}) {
        Tensor y = empty(xs, TensorOptions(dt)), y_d = empty(xs, TensorOptions(dt).device(kCUDA));
        kernels::batch_norm_apply(y, x, shp, mean, invstd, affine ? w : Tensor(), affine ? b : Tensor());
        kernels::batch_norm_apply(y_d, xd, shp, mean_d, invstd_d, affine ? wd : Tensor(), affine ? bd : Tensor());
        expect_close(y_d, y, ot.rtol, ot.atol, affine ? "apply affine" : "apply");
      }
      for (bool training : {true, false}) {
        for (int mask : {7, 1, 6}) {  // bit 0: grad_x, 1: grad_weight, 2: grad_bias
          SCOPED_TRACE(std::string(training ? "training" : "eval") + " outputs " + std::to_string(mask));
          auto out = [&](int bit, const Shape& s, DType t, const Device& dev) {
            return (mask & bit) ? empty(s, TensorOptions(t).device(dev)) : Tensor();
          };
          Tensor gx = out(1, xs, dt, kCPU), gw = out(2, {shp.c}, acc, kCPU), gb = out(4, {shp.c}, acc, kCPU);
          Tensor gx_d = out(1, xs, dt, kCUDA), gw_d = out(2, {shp.c}, acc, kCUDA), gb_d = out(4, {shp.c}, acc, kCUDA);
          kernels::batch_norm_backward(g, x, shp, mean, invstd, w, training, gx, gw, gb);
          kernels::batch_norm_backward(gd, xd, shp, mean_d, invstd_d, wd, training, gx_d, gw_d, gb_d);
          expect_close(gx_d, gx, testing::kGradToleranceFactor * ot.rtol, testing::kGradToleranceFactor * ot.atol,
                       "grad_x");
          expect_close(gw_d, gw, st.rtol, st.atol, "grad_weight");
          expect_close(gb_d, gb, st.rtol, st.atol, "grad_bias");
        }
      }
    }
  }
}

TEST(CudaNorm, LayerNormMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  // Warp-per-row lengths (1, odd, exactly 1024) and block-per-row ones (1025, 5000).
  const int64_t shapes[][2] = {{3, 1}, {5, 33}, {300, 7}, {64, 1024}, {3, 1025}, {2, 5000}, {1000, 96}};
  uint32_t seed = 500;
  for (DType dt : kNormDtypes) {
    const DType acc = kernels::norm_acc_dtype(dt);
    for (const auto& sh : shapes) {
      const int64_t rows = sh[0], d = sh[1];
      SCOPED_TRACE(std::string(dtype_name(dt)) + " rows=" + std::to_string(rows) + " d=" + std::to_string(d));
      const Tensor x = random_cpu({rows, d}, dt, seed++, -3.0, 5.0), g = random_cpu({rows, d}, dt, seed++);
      const Tensor xd = to_cuda(x), gd = to_cuda(g);
      const Tensor w = random_cpu({d}, acc, seed++, 0.5, 1.5), b = random_cpu({d}, acc, seed++);
      const testing::Tolerance ot = out_tol(dt), st = stat_tol(dt);
      for (bool affine : {true, false}) {
        SCOPED_TRACE(affine ? "affine" : "plain");
        const Tensor wc = affine ? w : Tensor(), bc = affine ? b : Tensor();
        const Tensor wdev = maybe_cuda(wc), bdev = maybe_cuda(bc);
        Tensor y = empty({rows, d}, TensorOptions(dt)), y_d = empty({rows, d}, TensorOptions(dt).device(kCUDA));
        Tensor mean = zeros_on({rows}, acc, kCPU), rstd = zeros_on({rows}, acc, kCPU);
        Tensor mean_d = zeros_on({rows}, acc, kCUDA), rstd_d = zeros_on({rows}, acc, kCUDA);
        kernels::layer_norm_forward(y, x, rows, d, wc, bc, 1e-5, mean, rstd);
        kernels::layer_norm_forward(y_d, xd, rows, d, wdev, bdev, 1e-5, mean_d, rstd_d);
        expect_close(y_d, y, ot.rtol, ot.atol, "y");
        expect_close(mean_d, mean, st.rtol, st.atol, "mean");
        expect_close(rstd_d, rstd, st.rtol, st.atol, "rstd");

        Tensor gx = empty({rows, d}, TensorOptions(dt)), gx_d = empty({rows, d}, TensorOptions(dt).device(kCUDA));
        Tensor gw = zeros_on({d}, acc, kCPU), gb = zeros_on({d}, acc, kCPU);
        Tensor gw_d = zeros_on({d}, acc, kCUDA), gb_d = zeros_on({d}, acc, kCUDA);
        kernels::layer_norm_backward(g, x, rows, d, mean, rstd, wc, gx, gw, gb);
        kernels::layer_norm_backward(gd, xd, rows, d, mean_d, rstd_d, wdev, gx_d, gw_d, gb_d);
        expect_close(gx_d, gx, testing::kGradToleranceFactor * ot.rtol, testing::kGradToleranceFactor * ot.atol,
                     "grad_x");
        expect_close(gw_d, gw, st.rtol, st.atol, "grad_weight");
        expect_close(gb_d, gb, st.rtol, st.atol, "grad_bias");
      }
    }
  }
}

TEST(CudaNorm, RejectsMixedDevices) {
  SKIP_WITHOUT_CUDA();
  const Tensor x = to_cuda(random_cpu({4, 6}, DType::F32, 1));
  Tensor y = empty({4, 6}, TensorOptions(DType::F32).device(kCUDA));
  Tensor mean = zeros({4}, TensorOptions(DType::F32)), rstd = zeros({4}, TensorOptions(DType::F32));
  EXPECT_THROW(kernels::layer_norm_forward(y, x, 4, 6, Tensor(), Tensor(), 1e-5, mean, rstd), Error);
}

}  // namespace
}  // namespace mantissa
