// The CUDA reduction, softmax, loss and gradient-clipping kernels against the CPU kernels on the
// same inputs, per dtype: sums/means/vars within accumulation-order tolerances, max/min values
// and indices exact (ties, NaN), softmax on logits of 1e4, cross-entropy with ignore_index and
// label smoothing; small rows, 1M-element rows, outer-dim reductions, non-contiguous and
// zero-size inputs. Every case skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/copy.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/grad_clip.h"
#include "core/kernels/loss.h"
#include "core/kernels/reduce.h"
#include "core/kernels/softmax.h"
#include "core/tensor.h"

namespace mantissa {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                         \
    if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason(); \
  } while (0)

const std::vector<DType> kFloats{DType::F64, DType::F32, DType::F16, DType::BF16};
constexpr int64_t kMillion = int64_t(1) << 20;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

DType acc_of(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// |cuda - cpu| <= atol + rtol |cpu|, NaN only where the CPU has NaN, infinities equal.
struct Tol {
  double rtol, atol;
};
// About one rounding of the output dtype (plus F32 accumulation-order noise for F32).
Tol tol_for(DType t) {
  switch (t) {
    case DType::F64:
      return {1e-10, 1e-12};
    case DType::F32:
      return {2e-5, 1e-6};
    case DType::F16:
      return {2e-3, 1e-5};
    case DType::BF16:
      return {1.6e-2, 1e-5};
    default:
      return {0.0, 0.0};
  }
}
const Tol kExact{0.0, 0.0};

// Values uniform in [lo, hi), rounded once to dtype on the CPU.
Tensor random_cpu(const Shape& shape, DType dtype, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(gen);
  Tensor t = empty(shape, TensorOptions(dtype));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

Tensor from_doubles(const std::vector<double>& v, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, TensorOptions(dtype));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

Tensor to_cuda(const Tensor& cpu) {
  Tensor c = cpu.is_contiguous() ? cpu : cpu.contiguous();
  Tensor d = empty(cpu.sizes(), TensorOptions(cpu.dtype()).device(kCUDA));
  kernels::copy(d, c);
  return d;
}

// Row-major values of a CPU or (contiguous) CUDA tensor as doubles.
std::vector<double> values(const Tensor& t) { return to_vector<double>(t); }

void expect_close(const Tensor& cpu, const Tensor& cuda, Tol tol, const std::string& what) {
  ASSERT_TRUE(cuda.is_cuda()) << what;
  ASSERT_EQ(cpu.sizes(), cuda.sizes()) << what;
  ASSERT_EQ(cpu.dtype(), cuda.dtype()) << what;
  const std::vector<double> a = values(cpu), b = values(cuda);
  int64_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    bool ok;
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      ok = std::isnan(a[i]) && std::isnan(b[i]);
    } else {
      ok = a[i] == b[i] || std::fabs(a[i] - b[i]) <= tol.atol + tol.rtol * std::fabs(a[i]);
    }
    if (!ok && ++bad <= 5) ADD_FAILURE() << what << ": element " << i << ": CPU " << a[i] << ", CUDA " << b[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << a.size() << " elements differ";
}

void expect_all_finite(const Tensor& t, const std::string& what) {
  for (double v : values(t)) {
    if (!std::isfinite(v)) {
      ADD_FAILURE() << what << ": non-finite value " << v;
      return;
    }
  }
}

std::vector<bool> mask_of(int64_t nd, const std::vector<int64_t>& dims) {
  std::vector<bool> m(nd, false);
  for (int64_t d : dims) m[d] = true;
  return m;
}

Shape keep_shape(const Shape& s, const std::vector<bool>& m) {
  Shape k = s;
  for (size_t d = 0; d < k.size(); ++d)
    if (m[d]) k[d] = 1;
  return k;
}

// A CPU tensor and the same values on the device, seen through the same view.
struct Pair {
  Tensor cpu, cuda;
};

enum class View { None, Transpose, StepSlice, Expand };

Tensor view_of(const Tensor& t, View v) {
  switch (v) {
    case View::None:
      return t;
    case View::Transpose:
      return t.transpose(0, t.dim() - 1);
    case View::StepSlice:
      return t.slice(0, 1, t.size(0), 2);
    case View::Expand: {
      Shape s = t.sizes();
      s[0] = 50;
      return t.expand(s);
    }
  }
  return t;
}

Pair make_pair(const Tensor& base_cpu, View v) { return {view_of(base_cpu, v), view_of(to_cuda(base_cpu), v)}; }

std::string label(const char* op, DType t, const Shape& s, const std::vector<int64_t>& dims, View v) {
  std::string r = std::string(op) + " " + dtype_name(t) + " " + shape_str(s) + " dims {";
  for (int64_t d : dims) r += std::to_string(d) + ",";
  return r + "} view " + std::to_string(static_cast<int>(v));
}

// ---- sum / mean / var -------------------------------------------------------------------------

struct ReduceCase {
  Shape base;  // shape before the view
  std::vector<int64_t> dims;
  View view;
};

const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> cases{
      {{37, 5}, {1}, View::None},           // small rows: a warp per row
      {{3, kMillion}, {1}, View::None},     // long rows: split over blocks, vector loads
      {{kMillion + 3}, {0}, View::None},    // one 1M row, unaligned tail
      {{1000, 64}, {0}, View::None},        // outer dim: columns, coalesced across outputs
      {{4096, 3}, {0}, View::None},         // narrow columns
      {{8, 50, 33}, {0, 2}, View::None},    // several reduced dims around a kept one
      {{64, 300}, {1}, View::Transpose},    // transposed: the kept dim is the contiguous one
      {{64, 300}, {0}, View::Transpose},    // reduced dim contiguous after the transpose
      {{41, 30}, {0, 1}, View::StepSlice},  // non-contiguous full reduction
      {{1, 100}, {0}, View::Expand},        // stride-0 reduced dim
      {{0, 5}, {0}, View::None},            // empty reduction: 0 / NaN
      {{5, 0}, {0}, View::None},            // no outputs
      {{6, 1, 4}, {1}, View::None},         // size-1 reduced dim
  };
  return cases;
}

TEST(CudaReduce, SumAndMeanMatchTheCpuPerDtype) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    for (const ReduceCase& c : reduce_cases()) {
      // Positive values: no cancellation, so a relative tolerance is meaningful.
      const Pair x = make_pair(random_cpu(c.base, dt, 11, 0.5, 1.5), c.view);
      const std::vector<bool> m = mask_of(x.cpu.dim(), c.dims);
      const Shape keep = keep_shape(x.cpu.sizes(), m);
      // Output in the input dtype and (16-bit inputs) in F32: a 1M sum overflows F16.
      for (DType od : {dt, acc_of(dt)}) {
        Tensor s_cpu = empty(keep, TensorOptions(od)), s_dev = empty(keep, TensorOptions(od).device(kCUDA));
        kernels::sum(s_cpu, x.cpu, m);
        kernels::sum(s_dev, x.cuda, m);
        expect_close(s_cpu, s_dev, tol_for(od), label("sum", dt, c.base, c.dims, c.view) + " out " + dtype_name(od));
        Tensor m_cpu = empty(keep, TensorOptions(od)), m_dev = empty(keep, TensorOptions(od).device(kCUDA));
        kernels::mean(m_cpu, x.cpu, m);
        kernels::mean(m_dev, x.cuda, m);
        expect_close(m_cpu, m_dev, tol_for(od), label("mean", dt, c.base, c.dims, c.view) + " out " + dtype_name(od));
      }
    }
  }
}

TEST(CudaReduce, ZeroDimTensorSumsToItself) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    Tensor x = from_doubles({2.75}, {}, dt);
    Tensor out = empty({}, TensorOptions(dt).device(kCUDA));
    kernels::sum(out, to_cuda(x), {});
    EXPECT_EQ(values(out)[0], 2.75) << dtype_name(dt);
  }
}

TEST(CudaReduce, IntegerAndBoolSumsAreExactAndWrapLikeTheCpu) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(5);
  std::uniform_int_distribution<int64_t> small(-1000, 1000);
  std::vector<double> v(3 * 70001);
  for (double& e : v) e = static_cast<double>(small(gen));
  for (DType dt : {DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool}) {
    for (const std::vector<int64_t>& dims : {std::vector<int64_t>{1}, {0}, {0, 1}}) {
      const Tensor x = from_doubles(v, {3, 70001}, dt);
      const std::vector<bool> m = mask_of(2, dims);
      Tensor a = empty(keep_shape(x.sizes(), m), TensorOptions(DType::I64));
      Tensor b = empty(keep_shape(x.sizes(), m), TensorOptions(DType::I64).device(kCUDA));
      kernels::sum(a, x, m);
      kernels::sum(b, to_cuda(x), m);
      EXPECT_EQ(to_vector<int64_t>(a), to_vector<int64_t>(b)) << dtype_name(dt);
    }
  }
  // I64 sums past 2^63 wrap (two's complement) on both devices.
  const std::vector<int64_t> big(64, int64_t(1) << 61);
  Tensor x = from_vector(big, {64});
  Tensor a = empty({1}, TensorOptions(DType::I64)), b = empty({1}, TensorOptions(DType::I64).device(kCUDA));
  kernels::sum(a, x, {true});
  kernels::sum(b, to_cuda(x), {true});
  EXPECT_EQ(to_vector<int64_t>(a), to_vector<int64_t>(b));
}

TEST(CudaReduce, VarMatchesTheCpuWithEveryCorrection) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    for (const ReduceCase& c : reduce_cases()) {
      const Pair x = make_pair(random_cpu(c.base, dt, 12, -1.0, 1.0), c.view);
      const std::vector<bool> m = mask_of(x.cpu.dim(), c.dims);
      const Shape keep = keep_shape(x.cpu.sizes(), m);
      int64_t n = 1;
      for (size_t d = 0; d < m.size(); ++d)
        if (m[d]) n *= x.cpu.size(static_cast<int64_t>(d));
      for (int64_t corr : {int64_t(0), int64_t(1), n}) {
        Tensor a = empty(keep, TensorOptions(dt)), b = empty(keep, TensorOptions(dt).device(kCUDA));
        kernels::var(a, x.cpu, m, corr);
        kernels::var(b, x.cuda, m, corr);
        Tol tol = tol_for(dt);
        if (dt == DType::F32) tol.rtol = 1e-4;  // two passes of F32 sums in different orders
        expect_close(a, b, tol, label("var", dt, c.base, c.dims, c.view) + " correction " + std::to_string(corr));
      }
    }
  }
}

// ---- max / min ------------------------------------------------------------------------------

// Small integers (many ties), with NaNs for floating types at fixed positions.
Tensor tie_heavy(const Shape& shape, DType dt, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(dt == DType::Bool ? 0 : -3, dt == DType::Bool ? 1 : 3);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& e : v) e = d(gen);
  if (dt == DType::U8)
    for (double& e : v) e += 3;
  if (is_floating(dt) && v.size() > 40) {
    v[17] = kNaN;
    v[v.size() / 2 + 3] = kNaN;
    v[v.size() - 5] = kNaN;
  }
  return from_doubles(v, shape, dt);
}

void check_max_min_dim(const Pair& x, int64_t dim, const std::string& what) {
  for (bool is_max : {true, false}) {
    Shape keep = x.cpu.sizes();
    if (x.cpu.dim() > 0) keep[dim] = 1;
    Tensor v_cpu = empty(keep, TensorOptions(x.cpu.dtype())), i_cpu = empty(keep, TensorOptions(DType::I64));
    Tensor v_dev = empty(keep, TensorOptions(x.cpu.dtype()).device(kCUDA));
    Tensor i_dev = empty(keep, TensorOptions(DType::I64).device(kCUDA));
    kernels::max_min_dim(v_cpu, i_cpu, x.cpu, dim, is_max);
    kernels::max_min_dim(v_dev, i_dev, x.cuda, dim, is_max);
    const std::string w = what + (is_max ? " max" : " min");
    EXPECT_EQ(to_vector<int64_t>(i_cpu), to_vector<int64_t>(i_dev)) << w << ": indices";
    expect_close(v_cpu, v_dev, kExact, w + ": values");
    // Indices alone (argmax) take the same path.
    Tensor i_only = empty(keep, TensorOptions(DType::I64).device(kCUDA));
    kernels::max_min_dim(Tensor(), i_only, x.cuda, dim, is_max);
    EXPECT_EQ(to_vector<int64_t>(i_cpu), to_vector<int64_t>(i_only)) << w << ": indices without values";
  }
}

TEST(CudaReduce, MaxMinAlongADimAreExactWithTiesAndNaN) {
  SKIP_WITHOUT_CUDA();
  for (DType dt :
       {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool}) {
    const Tensor a = tie_heavy({37, 129}, dt, 3);
    check_max_min_dim(make_pair(a, View::None), 1, std::string(dtype_name(dt)) + " [37, 129] dim 1");
    check_max_min_dim(make_pair(a, View::None), 0, std::string(dtype_name(dt)) + " [37, 129] dim 0");
    check_max_min_dim(make_pair(a, View::Transpose), 1, std::string(dtype_name(dt)) + " transposed dim 1");
    check_max_min_dim(make_pair(tie_heavy({5, 1, 3}, dt, 4), View::None), 1,
                      std::string(dtype_name(dt)) + " size-1 dim");
    check_max_min_dim(make_pair(from_doubles({1.0}, {}, dt), View::None), 0, std::string(dtype_name(dt)) + " 0-d");
  }
}

TEST(CudaReduce, MaxAlongAMillionElementRowFindsTheFirstOfTiesAcrossBlocks) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    // Row 0: two equal maxima far apart (different split blocks); row 1: two NaNs, the later
    // one in an earlier-launched position order; row 2: all equal.
    std::vector<double> v(3 * kMillion, 0.0);
    v[700000] = 5;
    v[900000] = 5;
    v[kMillion + 800000] = kNaN;
    v[kMillion + 300001] = kNaN;
    v[kMillion + 5] = 7;
    for (int64_t i = 0; i < kMillion; ++i) v[2 * kMillion + i] = -2;
    const Tensor x = from_doubles(v, {3, kMillion}, dt);
    check_max_min_dim(make_pair(x, View::None), 1, std::string(dtype_name(dt)) + " [3, 1M] dim 1");
    // The same data as columns: the reduced dim is the outer one.
    check_max_min_dim(make_pair(x.t().contiguous(), View::None), 0, std::string(dtype_name(dt)) + " [1M, 3] dim 0");
  }
}

TEST(CudaReduce, MaxMinOfAllElementsPropagateNaN) {
  SKIP_WITHOUT_CUDA();
  for (DType dt :
       {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool}) {
    for (const Shape& s : {Shape{37, 129}, Shape{3, kMillion}, Shape{}}) {
      const Tensor with_nan = tie_heavy(s, dt, 8);
      for (View v : {View::None, View::Transpose}) {
        if (s.empty() && v != View::None) continue;
        const Pair x = make_pair(with_nan, v);
        for (bool is_max : {true, false}) {
          Tensor a = empty({}, TensorOptions(dt)), b = empty({}, TensorOptions(dt).device(kCUDA));
          kernels::max_min_all(a, x.cpu, is_max);
          kernels::max_min_all(b, x.cuda, is_max);
          expect_close(a, b, kExact, std::string(dtype_name(dt)) + " " + shape_str(s) + (is_max ? " max" : " min"));
        }
      }
    }
  }
  // Without NaN the extreme is a number, found across many blocks.
  for (DType dt : kFloats) {
    Tensor x = random_cpu({kMillion + 1}, dt, 9, -100.0, 100.0);
    for (bool is_max : {true, false}) {
      Tensor a = empty({}, TensorOptions(dt)), b = empty({}, TensorOptions(dt).device(kCUDA));
      kernels::max_min_all(a, x, is_max);
      kernels::max_min_all(b, to_cuda(x), is_max);
      expect_close(a, b, kExact, std::string(dtype_name(dt)) + " 1M numbers");
    }
  }
}

// ---- backward helpers -------------------------------------------------------------------------

TEST(CudaReduce, BackwardHelpersMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    for (DType gd : kFloats) {
      const std::string w = std::string(dtype_name(dt)) + " grad " + dtype_name(gd);
      // expand_scale: g [7, 1] broadcast over [7, 9], converted to dt first.
      const Tensor g = random_cpu({7, 1}, gd, 21);
      Tensor a = empty({7, 9}, TensorOptions(dt)), b = empty({7, 9}, TensorOptions(dt).device(kCUDA));
      kernels::expand_scale(a, g, 1.0 / 9.0);
      kernels::expand_scale(b, to_cuda(g), 1.0 / 9.0);
      expect_close(a, b, tol_for(dt), "expand_scale " + w);

      // var_backward with the mean in the accumulate dtype.
      const Tensor x = random_cpu({7, 9}, dt, 22);
      Tensor mu = empty({7, 1}, TensorOptions(acc_of(dt)));
      kernels::mean(mu, x, {false, true});
      kernels::var_backward(a, g, x, mu, 2.0 / 8.0);
      kernels::var_backward(b, to_cuda(g), to_cuda(x), to_cuda(mu), 2.0 / 8.0);
      expect_close(a, b, tol_for(dt), "var_backward " + w);

      // scatter_along_dim: g at the saved index along dim 1 of [4, 6, 5], zero elsewhere.
      const Tensor xs = tie_heavy({4, 6, 5}, dt, 23);
      Tensor vals = empty({4, 1, 5}, TensorOptions(dt)), idx = empty({4, 1, 5}, TensorOptions(DType::I64));
      kernels::max_min_dim(vals, idx, xs, 1, true);
      const Tensor gk = random_cpu({4, 1, 5}, gd, 24);
      Tensor sa = empty({4, 6, 5}, TensorOptions(dt)), sb = empty({4, 6, 5}, TensorOptions(dt).device(kCUDA));
      kernels::scatter_along_dim(sa, gk, idx, 1);
      kernels::scatter_along_dim(sb, to_cuda(gk), to_cuda(idx), 1);
      expect_close(sa, sb, kExact, "scatter_along_dim " + w);
    }
    // distribute_to_extreme: three tied maxima share the gradient; NaN matches NaN.
    for (bool with_nan : {false, true}) {
      std::vector<double> v{1, 4, -2, 4, 0, 4, 3, 1, 2};
      if (with_nan) v[6] = kNaN;
      const Tensor x = from_doubles(v, {3, 3}, dt);
      Tensor mx = empty({}, TensorOptions(dt));
      kernels::max_min_all(mx, x, true);
      const Tensor g = from_doubles({0.75}, {}, DType::F32);
      Tensor a = empty({3, 3}, TensorOptions(dt)), b = empty({3, 3}, TensorOptions(dt).device(kCUDA));
      kernels::distribute_to_extreme(a, g, x, mx);
      // Transposed on the device: the kernel reads x through its strides.
      const Tensor xt = to_cuda(x.t().contiguous()).t();
      kernels::distribute_to_extreme(b, to_cuda(g), xt, to_cuda(mx));
      expect_close(a, b, kExact, std::string("distribute_to_extreme ") + dtype_name(dt));
    }
  }
}

// ---- softmax ----------------------------------------------------------------------------------

struct SoftmaxCase {
  Shape shape;
  int64_t dim;
};

const std::vector<SoftmaxCase>& softmax_cases() {
  static const std::vector<SoftmaxCase> cases{
      {{64, 10}, 1},       // a warp per row, one register per lane
      {{8, 1000}, 1},      // a warp per row, 32 registers per lane
      {{3, 5000}, 1},      // a block per row
      {{2, kMillion}, 1},  // long rows
      {{4, 7, 9}, 1},      // a middle dim: strided
      {{4, 7, 9}, 0},      // the outer dim
      {{300, 2, 3}, 0},    // long strided reduction
      {{6, 1}, 1},         // one element per row
      {{0, 10}, 1},        // empty
  };
  return cases;
}

TEST(CudaSoftmax, ForwardAndBackwardMatchTheCpuAndStayFiniteOnLogitsOf1e4) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    for (const SoftmaxCase& c : softmax_cases()) {
      for (double scale : {3.0, 1e4}) {
        const Tensor x = random_cpu(c.shape, dt, 31, -scale, scale);
        const Tensor xd = to_cuda(x);
        for (bool log : {false, true}) {
          const std::string w = std::string(log ? "log_softmax " : "softmax ") + dtype_name(dt) + " " +
                                shape_str(c.shape) + " dim " + std::to_string(c.dim) + " scale " +
                                std::to_string(scale);
          Tensor a = empty(c.shape, TensorOptions(dt)), b = empty(c.shape, TensorOptions(dt).device(kCUDA));
          kernels::softmax(a, x, c.dim, log);
          kernels::softmax(b, xd, c.dim, log);
          Tol tol = tol_for(dt);
          // log_softmax of 1e4 logits: values near -2e4 keep an absolute error of ulp(2e4).
          if (log && scale > 100) tol.atol = 4.0 * scale * (dt == DType::F64 ? 1e-16 : 6e-8);
          expect_close(a, b, tol, w);
          expect_all_finite(b, w);
          // Backward from the CPU's output, so only the backward kernel differs.
          const Tensor g = random_cpu(c.shape, dt, 32);
          Tensor ga = empty(c.shape, TensorOptions(dt)), gb = empty(c.shape, TensorOptions(dt).device(kCUDA));
          kernels::softmax_backward(ga, g, a, c.dim, log);
          kernels::softmax_backward(gb, to_cuda(g), to_cuda(a), c.dim, log);
          Tol btol = tol_for(dt);
          if (log) btol.atol *= 10;  // g - exp(y) sum(g): sum(g) over a 1M row is ~1e3
          expect_close(ga, gb, btol, w + " backward");
        }
      }
    }
  }
}

// ---- losses -----------------------------------------------------------------------------------

struct LossCase {
  Shape logits;  // [N, C, S...] or [C]
};

Shape target_shape(const Shape& logits) {
  if (logits.size() == 1) return {};
  Shape t{logits[0]};
  for (size_t d = 2; d < logits.size(); ++d) t.push_back(logits[d]);
  return t;
}

// Class indices in [0, C), about a quarter replaced by ignore_index.
Tensor random_targets(const Shape& shape, int64_t classes, int64_t ignore_index, DType dt, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> cls(0, classes - 1);
  std::uniform_int_distribution<int> coin(0, 3);
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (int64_t& e : v) e = coin(gen) == 0 ? ignore_index : cls(gen);
  Tensor t = empty(shape, TensorOptions(dt));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

TEST(CudaLoss, CrossEntropyMatchesTheCpuWithIgnoreIndexAndLabelSmoothing) {
  SKIP_WITHOUT_CUDA();
  const std::vector<Shape> shapes{{64, 10}, {16, 5000}, {8, 7, 5}, {10}, {0, 4}};
  for (DType dt : kFloats) {
    for (const Shape& s : shapes) {
      const int64_t classes = s.size() == 1 ? s[0] : s[1];
      const Shape ts = target_shape(s);
      for (double scale : {3.0, 1e4}) {
        const Tensor x = random_cpu(s, dt, 41, -scale, scale);
        for (DType tdt : {DType::I64, DType::I32}) {
          for (int64_t ignore : {int64_t(-100), int64_t(2)}) {
            const Tensor t = random_targets(ts, classes, ignore, tdt, 42);
            for (double eps : {0.0, 0.1}) {
              const std::string w = std::string("cross_entropy ") + dtype_name(dt) + " " + shape_str(s) + " target " +
                                    dtype_name(tdt) + " ignore " + std::to_string(ignore) + " eps " +
                                    std::to_string(eps) + " scale " + std::to_string(scale);
              const DType acc = acc_of(dt);
              EXPECT_EQ(kernels::count_valid_targets(t, classes, ignore, "cross_entropy"),
                        kernels::count_valid_targets(to_cuda(t), classes, ignore, "cross_entropy"))
                  << w;
              Tensor la = empty(ts, TensorOptions(acc)), ea = empty(ts, TensorOptions(acc));
              Tensor lb = empty(ts, TensorOptions(acc).device(kCUDA)), eb = empty(ts, TensorOptions(acc).device(kCUDA));
              kernels::cross_entropy_forward(la, ea, x, t, ignore, eps);
              kernels::cross_entropy_forward(lb, eb, to_cuda(x), to_cuda(t), ignore, eps);
              // lse = max + log(sum): at logits of 1e4 both sides round it at ulp(1e4).
              Tol tol = acc == DType::F64 ? Tol{1e-10, 1e-10} : Tol{1e-5, scale > 100 ? 4e-3 : 1e-5};
              expect_close(ea, eb, tol, w + " lse");
              expect_close(la, lb, tol, w + " losses");
              expect_all_finite(lb, w + " losses");
              // Backward from the CPU's lse, with per-position weights and with a scale.
              const Tensor gpos = random_cpu(ts, acc, 43);
              for (bool per_position : {false, true}) {
                Tensor ga = empty(s, TensorOptions(dt)), gb = empty(s, TensorOptions(dt).device(kCUDA));
                const Tensor gp_cpu = per_position ? gpos : Tensor();
                const Tensor gp_dev = per_position ? to_cuda(gpos) : Tensor();
                kernels::cross_entropy_backward(ga, x, ea, t, gp_cpu, 0.37, ignore, eps);
                kernels::cross_entropy_backward(gb, to_cuda(x), to_cuda(ea), to_cuda(t), gp_dev, 0.37, ignore, eps);
                expect_close(ga, gb, tol_for(dt), w + (per_position ? " backward per position" : " backward"));
              }
            }
          }
        }
      }
    }
  }
}

TEST(CudaLoss, NllAndMseMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    const DType acc = acc_of(dt);
    for (const Shape& s : {Shape{64, 10}, Shape{8, 7, 5}, Shape{10}}) {
      const int64_t classes = s.size() == 1 ? s[0] : s[1];
      const Shape ts = target_shape(s);
      const Tensor lp = random_cpu(s, dt, 51, -5.0, 0.0);
      const Tensor t = random_targets(ts, classes, -100, DType::I64, 52);
      const std::string w = std::string(dtype_name(dt)) + " " + shape_str(s);
      Tensor la = empty(ts, TensorOptions(acc)), lb = empty(ts, TensorOptions(acc).device(kCUDA));
      kernels::nll_loss_forward(la, lp, t, -100);
      kernels::nll_loss_forward(lb, to_cuda(lp), to_cuda(t), -100);
      expect_close(la, lb, kExact, "nll_loss " + w);
      const Tensor gpos = random_cpu(ts, acc, 53);
      for (bool per_position : {false, true}) {
        Tensor ga = empty(s, TensorOptions(dt)), gb = empty(s, TensorOptions(dt).device(kCUDA));
        kernels::nll_loss_backward(ga, t, per_position ? gpos : Tensor(), 0.5, -100);
        kernels::nll_loss_backward(gb, to_cuda(t), per_position ? to_cuda(gpos) : Tensor(), 0.5, -100);
        expect_close(ga, gb, kExact, "nll_loss backward " + w);
      }
    }
    // MSE with a broadcast target, and its backward with a per-element and a 0-d gradient.
    const Tensor x = random_cpu({33, 17}, dt, 54), y = random_cpu({17}, dt, 55);
    Tensor la = empty({33, 17}, TensorOptions(acc)), lb = empty({33, 17}, TensorOptions(acc).device(kCUDA));
    kernels::mse_forward(la, x, y);
    kernels::mse_forward(lb, to_cuda(x), to_cuda(y));
    expect_close(la, lb, tol_for(acc), std::string("mse_loss ") + dtype_name(dt));
    for (const Tensor& g : {random_cpu({33, 17}, dt, 56), from_doubles({0.25}, {}, dt)}) {
      Tensor ga = empty({33, 17}, TensorOptions(dt)), gb = empty({33, 17}, TensorOptions(dt).device(kCUDA));
      kernels::mse_backward(ga, x, y, g, 1.0 / 561.0);
      kernels::mse_backward(gb, to_cuda(x), to_cuda(y), to_cuda(g), 1.0 / 561.0);
      expect_close(ga, gb, tol_for(dt), std::string("mse_loss backward ") + dtype_name(dt));
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CudaLoss, OutOfRangeTargetsRaiseTheCpuError) {
  SKIP_WITHOUT_CUDA();
  for (DType tdt : {DType::I64, DType::I32}) {
    std::vector<int64_t> v(40, 1);
    v[7] = -100;
    v[23] = 12;  // two bad values: which is first depends on the view
    v[5] = -3;
    Tensor base = empty({5, 8}, TensorOptions(tdt));
    kernels::copy(base, from_vector(v, {5, 8}));
    for (bool transposed : {false, true}) {
      const Tensor t_cpu = transposed ? base.t() : base;
      const Tensor t_dev = transposed ? to_cuda(base).t() : to_cuda(base);
      const std::string want = error_of([&] { kernels::count_valid_targets(t_cpu, 10, -100, "nll_loss"); });
      const std::string got = error_of([&] { kernels::count_valid_targets(t_dev, 10, -100, "nll_loss"); });
      EXPECT_NE(want, "");
      EXPECT_EQ(want, got) << dtype_name(tdt) << (transposed ? " transposed" : "");
    }
  }
}

// ---- gradient clipping ------------------------------------------------------------------------

TEST(CudaGradClip, NormPartialsScaleAndClampMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kFloats) {
    for (bool with_nan : {false, true}) {
      // One element past a 16-byte boundary: the kernel's scalar head, vectors, then a tail.
      Tensor base = random_cpu({kMillion + 7}, dt, 61, -3.0, 3.0);
      if (with_nan) {
        Tensor nan = from_doubles({kNaN}, {1}, dt);
        kernels::copy(base.narrow(0, 4242, 1), nan);
      }
      const Tensor g = base.narrow(0, 1, kMillion + 5);
      const Tensor gd = to_cuda(base).narrow(0, 1, kMillion + 5);
      for (double p : {0.0, 1.0, 2.0, 3.5, std::numeric_limits<double>::infinity()}) {
        const double a = kernels::grad_norm_partial(g, p), b = kernels::grad_norm_partial(gd, p);
        const std::string w = std::string(dtype_name(dt)) + " p " + std::to_string(p) + (with_nan ? " NaN" : "");
        if (std::isnan(a)) {
          EXPECT_TRUE(std::isnan(b)) << w << ": CUDA " << b;
        } else {
          EXPECT_NEAR(a, b, 1e-12 * std::fabs(a)) << w;
        }
      }
    }
    Tensor g = random_cpu({100003}, dt, 62, -3.0, 3.0);
    Tensor gd = to_cuda(g);
    kernels::grad_scale_(g, 0.3);
    kernels::grad_scale_(gd, 0.3);
    expect_close(g, gd, kExact, std::string("grad_scale_ ") + dtype_name(dt));
    kernels::grad_clamp_(g, -0.5, 0.25);
    kernels::grad_clamp_(gd, -0.5, 0.25);
    expect_close(g, gd, kExact, std::string("grad_clamp_ ") + dtype_name(dt));
    EXPECT_EQ(kernels::grad_norm_partial(to_cuda(empty({0}, TensorOptions(dt))), 2.0), 0.0);
  }
}

// ---- device checks ----------------------------------------------------------------------------

TEST(CudaReduce, MixedDevicesAreAnError) {
  SKIP_WITHOUT_CUDA();
  const Tensor x = random_cpu({4, 5}, DType::F32, 71);
  Tensor out = empty({4, 1}, TensorOptions(DType::F32).device(kCUDA));
  const std::string e = error_of([&] { kernels::sum(out, x, {false, true}); });
  EXPECT_NE(e.find("sum: expected every tensor on cuda"), std::string::npos) << e;
  Tensor cpu_out = empty({4, 5}, TensorOptions(DType::F32));
  const std::string e2 = error_of([&] { kernels::softmax(cpu_out, to_cuda(x), 1, false); });
  EXPECT_NE(e2.find("softmax: expected every tensor on cpu"), std::string::npos) << e2;
}

}  // namespace
}  // namespace mantissa
