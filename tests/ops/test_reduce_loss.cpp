// Specific tests of reductions, softmax and losses beyond the op table: PyTorch golden values,
// accumulation precision, NaN and tie rules, error messages, zero-size inputs and the
// kernel paths (column sums, split regions, strided full reductions) against plain loops.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <string>

#include "autograd/ops.h"
#include "core/generator.h"

namespace mantissa {
namespace {

// Runs f and returns the Error message it throws ("" if it does not throw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_near_vec(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

// ---- golden values ------------------------------------------------------------------------

// Logits/targets of the cross-entropy golden test; the values below are from torch 1.13:
//   F.cross_entropy(x, t, reduction=r, ignore_index=-1, label_smoothing=0.1) with x in float64.
Tensor golden_logits() {
  return from_vector(std::vector<double>{1.5, -0.3, 0.2, 2.0, 0.1, 0.4, -1.2, 0.7, -2.0, 1.0, 0.5, 0.0, 0.3, 0.3, 0.3,
                                         3.0, 1.1, -0.8, 2.2, -0.5},
                     {5, 4});
}
Tensor golden_targets() { return from_vector(std::vector<int64_t>{3, 1, -1, 0, 2}, {5}); }

TEST(CrossEntropy, MatchesTorchWithLabelSmoothingAndIgnoreIndex) {
  Tensor x = golden_logits(), t = golden_targets();
  // from torch 1.13
  expect_near_vec(to_vector<double>(cross_entropy(x, t, Reduction::None, -1, 0.1)),
                  {0.742054594706181, 1.2316694918960338, 0.0, 2.816167765431061, 0.5414695277399885}, 1e-12);
  EXPECT_NEAR(cross_entropy(x, t, Reduction::Mean, -1, 0.1).item_double(), 1.3328403449433157, 1e-12);  // torch 1.13
  EXPECT_NEAR(cross_entropy(x, t, Reduction::Sum, -1, 0.1).item_double(), 5.331361379773263, 1e-12);    // torch 1.13

  Tensor xg = x.detach().requires_grad_();
  cross_entropy(xg, t, Reduction::Mean, -1, 0.1).backward();
  // from torch 1.13
  expect_near_vec(to_vector<double>(xg.grad()),
                  {0.07474653072147151, 0.007138636478064824, 0.015824129747057117, -0.09770929694659353,
                   0.0499991779056022, -0.15532155178521337, 0.00907968931130293, 0.0962426845683082, 0.0, 0.0, 0.0,
                   0.0, -0.217267687298282, 0.007732312701718017, 0.007732312701718017, 0.20180306189484595,
                   0.05114696286248576, 0.0023347844829148586, -0.05881999429080506, 0.005338246945404423},
                  1e-12);

  // F32 logits: computed in F32, same values to F32 accuracy.
  EXPECT_NEAR(cross_entropy(x.to(DType::F32), t, Reduction::Mean, -1, 0.1).item_double(), 1.3328403449433157, 1e-6);
}

TEST(CrossEntropy, MatchesTorchWithTrailingDims) {
  // x = torch.arange(12, dtype=float64).reshape(2, 3, 2).sin(); t = [[0, 2], [1, 1]]
  std::vector<double> v(12);
  for (int i = 0; i < 12; ++i) v[i] = std::sin(static_cast<double>(i));
  Tensor x = from_vector(v, {2, 3, 2});
  Tensor t = from_vector(std::vector<int64_t>{0, 2, 1, 1}, {2, 2});
  // from torch 1.13: F.cross_entropy(x, t, ignore_index=2, label_smoothing=0.2)
  EXPECT_NEAR(cross_entropy(x, t, Reduction::Mean, 2, 0.2).item_double(), 0.9855850483755435, 1e-12);
}

TEST(CrossEntropy, UnbatchedLogitsTakeAZeroDimTarget) {
  Tensor x = golden_logits().select(0, 0);  // [4]
  Tensor t = scalar_tensor(3, DType::I64);
  // from torch 1.13 (first row of the golden test)
  EXPECT_NEAR(cross_entropy(x, t, Reduction::Mean, -1, 0.1).item_double(), 0.742054594706181, 1e-12);
  EXPECT_EQ(cross_entropy(x, t, Reduction::None).dim(), 0);
  EXPECT_NEAR(nll_loss(x, t).item_double(), -2.0, 0);
}

TEST(CrossEntropy, AllIgnoredMeanIsNan) {
  Tensor x = from_vector(std::vector<float>{0.f, 1.f}, {1, 2});
  Tensor t = from_vector(std::vector<int64_t>{-100}, {1});
  EXPECT_TRUE(std::isnan(cross_entropy(x, t).item_double()));
  EXPECT_TRUE(std::isnan(cross_entropy(x, t, Reduction::Mean, -100, 0.1).item_double()));
  EXPECT_EQ(cross_entropy(x, t, Reduction::Sum).item_double(), 0.0);
}

TEST(CrossEntropy, LowPrecisionOutputKeepsDtype) {
  Tensor x = golden_logits(), t = golden_targets();
  for (DType dt : {DType::F16, DType::BF16}) {
    Tensor l = cross_entropy(x.to(dt), t, Reduction::Mean, -1, 0.1);
    EXPECT_EQ(l.dtype(), dt);
    Tensor ref = cross_entropy(x.to(dt).to(DType::F64), t, Reduction::Mean, -1, 0.1);
    EXPECT_NEAR(l.item_double(), ref.item_double(), dt == DType::F16 ? 2e-3 : 1e-2);
  }
}

// ---- softmax -------------------------------------------------------------------------------

TEST(Softmax, LogSoftmaxOfLargeLogitsStaysFinite) {
  for (DType dt : {DType::F32, DType::F16, DType::F64}) {
    Tensor x = from_vector(std::vector<double>{1000.0, 1001.0}, {2}).to(dt);
    std::vector<double> y = to_vector<double>(log_softmax(x, 0));
    const double tol = dt == DType::F16 ? 1e-3 : 1e-6;
    // from torch 1.13: torch.log_softmax(torch.tensor([1000., 1001.]), 0)
    EXPECT_NEAR(y[0], -1.31326162815094, tol) << dtype_name(dt);
    EXPECT_NEAR(y[1], -0.31326165795326233, tol) << dtype_name(dt);
    std::vector<double> p = to_vector<double>(softmax(x, 0));
    EXPECT_TRUE(std::isfinite(p[0]) && std::isfinite(p[1]));
  }
  // BF16 rounds 1001 to 1000 (spacing 8 there): two equal logits, log(1/2) each.
  std::vector<double> yb = to_vector<double>(log_softmax(from_vector(std::vector<double>{1000.0, 1001.0}, {2}).to(DType::BF16), 0));
  EXPECT_NEAR(yb[0], -std::log(2.0), 1e-2);
  EXPECT_NEAR(yb[1], -std::log(2.0), 1e-2);
}

// Host values drawn once (no ops under test): normal * scale.
std::vector<double> normal_values(int64_t n, uint64_t seed, double scale = 1.0) {
  Generator gen(seed);
  std::vector<double> v = to_vector<double>(randn({n}, DType::F64, &gen));
  for (double& x : v) x *= scale;
  return v;
}

TEST(Softmax, RowsSumToOne) {
  Tensor x = from_vector(normal_values(54, 7, 5.0), {6, 9}).to(DType::F32);
  for (int64_t dim : {0, 1}) {
    for (double v : to_vector<double>(sum(softmax(x, dim), {dim}))) EXPECT_NEAR(v, 1.0, 1e-6);
    const std::vector<double> ls = to_vector<double>(log_softmax(x, dim));
    const int64_t n = x.size(dim), other = x.size(1 - dim);
    for (int64_t j = 0; j < other; ++j) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(dim == 1 ? ls[j * 9 + i] : ls[i * 9 + j]);
      EXPECT_NEAR(s, 1.0, 1e-5);
    }
  }
}

TEST(Softmax, NonFloatInputIsAnError) {
  Tensor x = from_vector(std::vector<int64_t>{1, 2}, {2});
  EXPECT_NE(error_of([&] { softmax(x, 0); }).find("softmax"), std::string::npos);
}

// ---- accumulation precision ----------------------------------------------------------------

TEST(Sum, HalfOnesAccumulateInF32) {
  // A naive F16 accumulator stalls at 2048 (2048 + 1 rounds back to 2048); F32 does not.
  Tensor s = sum(ones({4096}, DType::F16));
  EXPECT_EQ(s.dtype(), DType::F16);
  EXPECT_EQ(s.item_double(), 4096.0);
  // Rows, columns and a strided view take other kernel paths; same exact answer.
  for (double v : to_vector<double>(sum(ones({3, 4096}, DType::F16), {1}))) EXPECT_EQ(v, 4096.0);
  for (double v : to_vector<double>(sum(ones({4096, 20}, DType::F16), {0}))) EXPECT_EQ(v, 4096.0);
  EXPECT_EQ(sum(ones({4096, 2}, DType::F16).select(1, 1)).item_double(), 4096.0);
  // BF16 stalls at 256 with a naive accumulator.
  EXPECT_EQ(sum(ones({4096}, DType::BF16)).item_double(), 4096.0);
}

TEST(Mean, BFloat16IsRoundedOnceFromF32) {
  // 10000 values near 0.1: the mean must be the exact mean rounded once to BF16 (within one
  // BF16 ulp), not an accumulation of BF16 roundings.
  std::vector<double> v = normal_values(10000, 11, 0.01);
  for (double& x : v) x += 0.1;
  Tensor xb = from_vector(v, {10000}).to(DType::BF16);
  std::vector<double> rounded = to_vector<double>(xb);
  double exact = 0;
  for (double x : rounded) exact += x;
  exact /= 10000.0;
  const double got = mean(xb).item_double();
  EXPECT_EQ(mean(xb).dtype(), DType::BF16);
  EXPECT_LE(std::fabs(got - exact), std::ldexp(1.0, -8) * std::fabs(exact));  // within one ulp
  EXPECT_EQ(got, from_vector(std::vector<double>{exact}, {1}).to(DType::BF16).item_double());
}

TEST(Sum, IntegerAndBoolSumToI64) {
  Tensor b = from_vector(std::vector<uint8_t>{1, 0, 1, 1}, {4}).to(DType::Bool);
  EXPECT_EQ(sum(b).dtype(), DType::I64);
  EXPECT_EQ(sum(b).item<int64_t>(), 3);
  Tensor i8 = from_vector(std::vector<int64_t>{100, 100, 100}, {3}).to(DType::I8);
  EXPECT_EQ(sum(i8).dtype(), DType::I64);
  EXPECT_EQ(sum(i8).item<int64_t>(), 300);  // no int8 overflow
  Tensor neg = from_vector(std::vector<int64_t>{-100, -100, -100, 7}, {4}).to(DType::I8);
  EXPECT_EQ(sum(neg).item<int64_t>(), -293);
  std::vector<int64_t> cols(40 * 17);
  for (size_t i = 0; i < cols.size(); ++i) cols[i] = static_cast<int64_t>(i % 7) - 3;
  std::vector<int64_t> col_sums = to_vector<int64_t>(sum(from_vector(cols, {40, 17}).to(DType::I32), {0}));
  for (int64_t j = 0; j < 17; ++j) {
    int64_t want = 0;
    for (int64_t i = 0; i < 40; ++i) want += cols[i * 17 + j];
    EXPECT_EQ(col_sums[j], want);
  }
  Tensor i32 = from_vector(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(to_vector<int64_t>(sum(i32, {0})), (std::vector<int64_t>{5, 7, 9}));
}

TEST(Sum, LargeF32SumIsAccurate) {
  // 1M values: pairwise blocks keep the F32 error near u * log(n), far below u * n.
  const int64_t n = 1 << 20;
  std::vector<double> v = normal_values(n, 3);
  for (double& x : v) x += 1.0;
  Tensor x = from_vector(v, {n}).to(DType::F32);
  double exact = 0;
  for (double a : to_vector<double>(x)) exact += a;
  EXPECT_NEAR(sum(x).item_double(), exact, 1e-5 * std::fabs(exact));
  EXPECT_NEAR(mean(x).item_double(), exact / n, 1e-5 * std::fabs(exact / n));
}

// Every kernel path (rows, columns, split regions for few outputs, strided full reductions,
// permuted inputs) against plain loops in double.
TEST(Sum, KernelPathsMatchPlainLoops) {
  auto check = [](const Tensor& x, const Shape& dims) {
    Tensor x64 = x.to(DType::F64).contiguous();
    std::vector<double> v = to_vector<double>(x64);
    Tensor got = sum(x, dims);
    // Reference: accumulate each element into its output slot.
    const int64_t nd = x.dim();
    std::vector<bool> red(nd, dims.empty());
    for (int64_t d : dims) red[(d + nd) % nd] = true;
    Shape keep = x.sizes();
    for (int64_t d = 0; d < nd; ++d)
      if (red[d]) keep[d] = 1;
    std::vector<double> ref(shape_numel(keep), 0.0);
    Shape idx(nd, 0);
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t o = 0;
      for (int64_t d = 0; d < nd; ++d) o = o * keep[d] + (red[d] ? 0 : idx[d]);
      ref[o] += v[i];
      for (int64_t d = nd - 1; d >= 0; --d) {
        if (++idx[d] < x.size(d)) break;
        idx[d] = 0;
      }
    }
    std::vector<double> g = to_vector<double>(got);
    ASSERT_EQ(g.size(), ref.size()) << shape_str(x.sizes());
    // The F32 sum is rounded once to the output dtype: allow one unit roundoff of it.
    const double u = x.dtype() == DType::BF16 ? std::ldexp(1.0, -8) : (x.dtype() == DType::F16 ? std::ldexp(1.0, -11) : 0);
    for (size_t i = 0; i < g.size(); ++i)
      EXPECT_NEAR(g[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])) + u * std::fabs(ref[i]))
          << shape_str(x.sizes()) << " dims " << shape_str(dims) << " element " << i;
  };
  auto make = [](Shape s, uint64_t seed) { return from_vector(normal_values(shape_numel(s), seed), s).to(DType::F32); };
  check(make({300, 40}, 1), {0});                              // column path
  check(make({40, 300}, 2).t(), {1});                          // permuted: reduced dim contiguous
  check(make({40, 300}, 3).t(), {0});                          // permuted: strided rows
  check(make({5, 7, 33}, 4), {0, 2});                          // two reduced dims around a kept one
  check(make({7, 5, 33}, 5).permute({2, 0, 1}), {});           // full reduction of a permuted tensor
  check(make({200, 700}, 6).slice(1, 0, 700, 3), {});          // strided full reduction
  check(make({1, 40}, 12).expand({50, 40}), {0});              // broadcast (stride 0) input, as sum_to sees
  check(make({3, 1}, 13).expand({3, 20}), {1});
  check(make({3, 70000}, 7).to(DType::F16), {1});              // 16-bit rows
  check(make({70000, 17}, 8).to(DType::BF16), {0});            // 16-bit columns
  const int saved = omp_get_max_threads();
  omp_set_num_threads(4);                                      // few outputs, long regions: split
  check(make({2, 3, 50000}, 9), {1, 2});
  check(make({2, 70000}, 10).t(), {0});
  check(make({140000}, 11), {});
  omp_set_num_threads(saved);
}

TEST(Sum, ResultsDoNotDependOnThreadCount) {
  auto make = [](Shape s, uint64_t seed) { return from_vector(normal_values(shape_numel(s), seed), s).to(DType::F32); };
  const std::vector<std::pair<Tensor, Shape>> cases = {
      {make({1 << 18}, 1), {}},                   // one long run
      {make({2, 3, 40000}, 2), {1, 2}},           // few outputs, contiguous region
      {make({3, 40000}, 3).t(), {0}},             // few outputs, strided runs
      {make({5, 300, 70}, 4), {0, 2}},            // several runs per output
      {make({200, 300}, 5).slice(1, 0, 300, 2), {}},
  };
  const int saved = omp_get_max_threads();
  for (const auto& [x, dims] : cases) {
    omp_set_num_threads(1);
    std::vector<float> one = to_vector<float>(sum(x, dims));
    std::vector<float> var1 = to_vector<float>(var(x, dims));
    omp_set_num_threads(4);
    EXPECT_EQ(to_vector<float>(sum(x, dims)), one) << shape_str(x.sizes());
    EXPECT_EQ(to_vector<float>(var(x, dims)), var1) << shape_str(x.sizes());
  }
  omp_set_num_threads(saved);
}

TEST(Var, MatchesPlainLoopsAndCorrectionEdgeCases) {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2});
  EXPECT_DOUBLE_EQ(var(x, {}).item_double(), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(var(x, {}, 0).item_double(), 1.25);
  expect_near_vec(to_vector<double>(var(x, {0})), {2.0, 2.0}, 1e-15);
  // from torch 1.13: torch.var(torch.tensor([1., 2., 3.]), dim=0, correction=5) -> inf;
  // a single element with correction 1 -> nan (0 / 0).
  EXPECT_TRUE(std::isinf(var(from_vector(std::vector<float>{1, 2, 3}, {3}), {0}, 5).item_double()));
  EXPECT_TRUE(std::isnan(var(from_vector(std::vector<float>{5}, {1}), {0}).item_double()));
  // Large offset: two passes keep the variance exact where E[x^2] - E[x]^2 in F32 would not.
  Tensor big = from_vector(std::vector<float>{1e4f + 1, 1e4f + 2, 1e4f + 3, 1e4f + 4}, {4});
  EXPECT_NEAR(var(big, {0}).item_double(), 5.0 / 3.0, 1e-6);
}

// ---- max / min ----------------------------------------------------------------------------

TEST(MaxMin, NanPropagatesWithItsIndex) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // from torch 1.13: torch.max(torch.tensor([1., nan, 3., nan]), 0) -> (nan, 1); min the same.
  for (DType dt : {DType::F32, DType::F16, DType::F64}) {
    Tensor x = from_vector(std::vector<double>{1, nan, 3, nan}, {4}).to(dt);
    auto [mx, imx] = max(x, 0);
    auto [mn, imn] = min(x, 0);
    EXPECT_TRUE(std::isnan(mx.item_double()));
    EXPECT_TRUE(std::isnan(mn.item_double()));
    EXPECT_EQ(imx.item<int64_t>(), 1);
    EXPECT_EQ(imn.item<int64_t>(), 1);
    EXPECT_EQ(argmax(x, 0).item<int64_t>(), 1);
    EXPECT_EQ(argmin(x, 0).item<int64_t>(), 1);
    EXPECT_TRUE(std::isnan(max(x).item_double()));
    EXPECT_TRUE(std::isnan(min(x).item_double()));
  }
  // NaN in the middle of a long vectorized run.
  std::vector<double> v(10000, 1.0);
  v[6789] = nan;
  EXPECT_TRUE(std::isnan(max(from_vector(v, {10000}).to(DType::F32)).item_double()));
  EXPECT_EQ(argmax(from_vector(v, {10000}), 0).item<int64_t>(), 6789);
}

TEST(MaxMin, TiesGiveTheFirstIndex) {
  Tensor x = from_vector(std::vector<double>{3, 1, 3, 1}, {4});
  // from torch 1.13: max -> (3, 0), min -> (1, 1)
  EXPECT_EQ(std::get<1>(max(x, 0)).item<int64_t>(), 0);
  EXPECT_EQ(std::get<1>(min(x, 0)).item<int64_t>(), 1);
  EXPECT_EQ(argmax(x, 0).item<int64_t>(), 0);
  EXPECT_EQ(argmin(x, 0).item<int64_t>(), 1);
  Tensor m = from_vector(std::vector<double>{1, 5, 5, 2, 2, 0}, {2, 3});
  EXPECT_EQ(to_vector<int64_t>(argmax(m, 1)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(to_vector<int64_t>(argmax(m, 1, true)), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(argmax(m, 1, true).sizes(), (Shape{2, 1}));
}

TEST(MaxMin, GradientOfFullReductionIsSharedAmongTies) {
  // from torch 1.13: x = [1, 3, 3, 2]; torch.max(x).backward() -> [0, 0.5, 0.5, 0];
  // torch.max(x, 0)[0].backward() -> [0, 1, 0, 0].
  Tensor x = from_vector(std::vector<double>{1, 3, 3, 2}, {4}).requires_grad_();
  max(x).backward();
  expect_near_vec(to_vector<double>(x.grad()), {0, 0.5, 0.5, 0}, 0);
  Tensor y = from_vector(std::vector<double>{1, 3, 3, 2}, {4}).requires_grad_();
  std::get<0>(max(y, 0)).backward();
  expect_near_vec(to_vector<double>(y.grad()), {0, 1, 0, 0}, 0);
}

TEST(MaxMin, IntegerInputs) {
  Tensor x = from_vector(std::vector<int64_t>{4, -2, 9, 9}, {4});
  EXPECT_EQ(max(x).item<int64_t>(), 9);
  EXPECT_EQ(min(x).item<int64_t>(), -2);
  EXPECT_EQ(std::get<1>(max(x, 0)).item<int64_t>(), 2);
  // Long inputs take the split (multi-threaded) path, Bool included.
  std::vector<uint8_t> bits(200000, 0);
  bits[123456] = 1;
  Tensor b = from_vector(bits, {200000}).to(DType::Bool);
  EXPECT_TRUE(max(b).item<bool>());
  EXPECT_FALSE(min(b).item<bool>());
  std::vector<double> v(200000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>((i * 7919) % 200000);
  EXPECT_EQ(max(from_vector(v, {200000}).to(DType::F32)).item_double(), 199999.0);
  EXPECT_EQ(min(from_vector(v, {200000}).to(DType::BF16)).item_double(), 0.0);
}

// ---- errors --------------------------------------------------------------------------------

TEST(ReduceErrors, MessagesNameTheProblem) {
  Tensor x = zeros({2, 3});
  std::string e = error_of([&] { sum(x, {2}); });
  EXPECT_NE(e.find("sum"), std::string::npos) << e;
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;
  e = error_of([&] { sum(x, {0, -2}); });
  EXPECT_NE(e.find("appears multiple times"), std::string::npos) << e;
  e = error_of([&] { max(x, 5); });
  EXPECT_NE(e.find("max"), std::string::npos) << e;
  e = error_of([&] { mean(from_vector(std::vector<int64_t>{1, 2}, {2})); });
  EXPECT_NE(e.find("mean"), std::string::npos) << e;
  EXPECT_NE(e.find("I64"), std::string::npos) << e;
  e = error_of([&] { max(zeros({0})); });
  EXPECT_NE(e.find("max"), std::string::npos) << e;
  EXPECT_NE(e.find("empty"), std::string::npos) << e;
  e = error_of([&] { min(zeros({2, 0}), 1); });
  EXPECT_NE(e.find("min"), std::string::npos) << e;
  EXPECT_NE(e.find("size 0"), std::string::npos) << e;
}

TEST(LossErrors, MessagesNameTheProblem) {
  Tensor logits = zeros({3, 4});
  std::string e = error_of([&] { cross_entropy(logits, from_vector(std::vector<int64_t>{0, 7, 1}, {3})); });
  EXPECT_NE(e.find("cross_entropy"), std::string::npos) << e;
  EXPECT_NE(e.find("7"), std::string::npos) << e;
  EXPECT_NE(e.find("4 classes"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(logits, from_vector(std::vector<int64_t>{0, -3, 1}, {3})); });
  EXPECT_NE(e.find("-3"), std::string::npos) << e;
  e = error_of([&] { nll_loss(logits, from_vector(std::vector<int64_t>{0, 4, 1}, {3})); });
  EXPECT_NE(e.find("nll_loss"), std::string::npos) << e;
  EXPECT_NE(e.find("4"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(logits, from_vector(std::vector<int64_t>{0, 1}, {2})); });
  EXPECT_NE(e.find("target shape [2]"), std::string::npos) << e;
  EXPECT_NE(e.find("[3]"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(logits, zeros({3})); });
  EXPECT_NE(e.find("class-probability"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(logits, zeros({3, 4})); });
  EXPECT_NE(e.find("class-probability"), std::string::npos) << e;
  e = error_of([&] { cross_entropy(logits, from_vector(std::vector<int64_t>{0, 1, 2}, {3}), Reduction::Mean, -100, 1.5); });
  EXPECT_NE(e.find("label_smoothing"), std::string::npos) << e;
  e = error_of([&] { mse_loss(zeros({3, 4}), zeros({2, 4})); });
  EXPECT_NE(e.find("mse_loss"), std::string::npos) << e;
  // I32 targets are accepted.
  EXPECT_NO_THROW(cross_entropy(logits, from_vector(std::vector<int32_t>{0, 3, 1}, {3})));
}

// ---- zero-size -----------------------------------------------------------------------------

TEST(ZeroSize, ReductionsOfEmptyTensors) {
  EXPECT_EQ(sum(zeros({0})).item_double(), 0.0);
  EXPECT_TRUE(std::isnan(mean(zeros({0})).item_double()));
  EXPECT_TRUE(std::isnan(var(zeros({0}), {}).item_double()));
  Tensor e = zeros({0, 3});
  EXPECT_EQ(sum(e, {0}).sizes(), (Shape{3}));
  EXPECT_EQ(to_vector<double>(sum(e, {0})), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(sum(e, {1}).sizes(), (Shape{0}));
  EXPECT_TRUE(std::isnan(to_vector<double>(mean(e, {0}))[1]));
  EXPECT_EQ(std::get<0>(max(e, 1)).sizes(), (Shape{0}));
  EXPECT_EQ(argmax(e, 1).sizes(), (Shape{0}));
  EXPECT_EQ(softmax(e, 1).sizes(), (Shape{0, 3}));
  EXPECT_EQ(sum(zeros({0}, DType::I32)).item<int64_t>(), 0);
  // Losses over an empty batch: sum 0, mean NaN (0 / 0), none empty.
  Tensor t = zeros({0}, DType::I64);
  EXPECT_EQ(cross_entropy(zeros({0, 4}), t, Reduction::Sum).item_double(), 0.0);
  EXPECT_TRUE(std::isnan(cross_entropy(zeros({0, 4}), t).item_double()));
  EXPECT_EQ(cross_entropy(zeros({0, 4}), t, Reduction::None).sizes(), (Shape{0}));
  EXPECT_TRUE(std::isnan(mse_loss(zeros({0}), zeros({0})).item_double()));
  // Backward through an empty reduction gives an empty gradient.
  Tensor x = zeros({0, 3}).requires_grad_();
  sum(x).backward();
  EXPECT_EQ(x.grad().sizes(), (Shape{0, 3}));
}

TEST(Sum, ZeroDimTensors) {
  Tensor s = scalar_tensor(2.5);
  EXPECT_EQ(sum(s).item_double(), 2.5);
  EXPECT_EQ(sum(s, {0}).item_double(), 2.5);
  EXPECT_EQ(sum(s, {-1}, true).dim(), 0);
  EXPECT_EQ(std::get<1>(max(s, 0)).item<int64_t>(), 0);
  EXPECT_EQ(softmax(s, 0).item_double(), 1.0);
}

}  // namespace
}  // namespace mantissa
