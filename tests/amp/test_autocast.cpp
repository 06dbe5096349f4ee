// Autocast: the policy table covers every op, output dtypes per category, nesting and
// thread-locality, the parameter cast cache (once per region, recast after an in-place update),
// gradients reaching F32 parameters as F32, per-op overrides, and bit-identity with explicit casts.
#include <gtest/gtest.h>

#include <thread>

#include "amp/autocast.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"

namespace mantissa {
namespace {

using amp::AutocastGuard;

Tensor param(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  Tensor t = randn(shape, {}, &g);
  t.requires_grad_(true);
  return t;
}

Tensor data(const Shape& shape, uint64_t seed, DType dt = DType::F32) {
  Generator g(seed);
  return randn(shape, {}, &g).to(dt);
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.sizes() != b.sizes()) return false;
  Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

TEST(AutocastPolicy, EveryOpHasAnEntryInThePrintedTable) {
  const std::string table = amp::policy_table();
  for (int i = 0; i < kNumOps; ++i) {
    auto op = static_cast<OpId>(i);
    EXPECT_NE(table.find(std::string("\n") + op_name(op) + " "), std::string::npos) << op_name(op);
    EXPECT_EQ(amp::op_policy(op), op_autocast_category(op));
  }
}

TEST(AutocastPolicy, FollowsPyTorchsListsForSharedOps) {
  for (OpId op : {OpId::matmul, OpId::mm, OpId::bmm, OpId::linear, OpId::conv2d})
    EXPECT_EQ(amp::op_policy(op), AutocastCategory::Lower) << op_name(op);
  for (OpId op : {OpId::exp, OpId::log, OpId::pow, OpId::rsqrt, OpId::layer_norm, OpId::cross_entropy,
                  OpId::nll_loss, OpId::mse_loss})
    EXPECT_EQ(amp::op_policy(op), AutocastCategory::F32) << op_name(op);
  for (OpId op : {OpId::softmax, OpId::log_softmax, OpId::sum, OpId::mean})
    EXPECT_EQ(amp::op_policy(op), AutocastCategory::F32Acc) << op_name(op);
  for (OpId op : {OpId::add, OpId::mul, OpId::cat, OpId::stack, OpId::where})
    EXPECT_EQ(amp::op_policy(op), AutocastCategory::Promote) << op_name(op);
  for (OpId op : {OpId::relu, OpId::max_pool2d, OpId::batch_norm, OpId::dropout})
    EXPECT_EQ(amp::op_policy(op), AutocastCategory::Same) << op_name(op);
}

TEST(Autocast, OutputDtypesFollowTheCategories) {
  Tensor x = data({4, 8}, 1), w = data({3, 8}, 2), b = data({3}, 3);
  Tensor target = zeros({4}, DType::I64);
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  Tensor y = linear(x, w, b);
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_EQ(matmul(x, w.t()).dtype(), DType::BF16);
  EXPECT_EQ(relu(y).dtype(), DType::BF16);                 // same
  EXPECT_EQ(softmax(y, 1).dtype(), DType::F32);            // f32 with accumulation
  EXPECT_EQ(sum(y).dtype(), DType::F32);
  EXPECT_EQ(exp(y).dtype(), DType::F32);                   // f32
  EXPECT_EQ(cross_entropy(y, target).dtype(), DType::F32);
  EXPECT_EQ(add(y, x.narrow(1, 0, 3)).dtype(), DType::F32);  // promote to the widest
  EXPECT_EQ(cat({y, x.narrow(1, 0, 3)}, 0).dtype(), DType::F32);
  EXPECT_EQ(mul(y, y).dtype(), DType::BF16);
  // F64 and integer tensors are never touched.
  EXPECT_EQ(matmul(x.to(DType::F64), w.t().to(DType::F64)).dtype(), DType::F64);
  EXPECT_EQ(add(target, target).dtype(), DType::I64);
}

TEST(Autocast, OutsideARegionNothingChanges) {
  Tensor x = data({4, 8}, 1), w = data({3, 8}, 2);
  { AutocastGuard guard(DeviceType::CPU, DType::BF16); }
  EXPECT_EQ(linear(x, w).dtype(), DType::F32);
  EXPECT_EQ(softmax(x.to(DType::BF16), 1).dtype(), DType::BF16);
  EXPECT_FALSE(amp::is_autocast_enabled(DeviceType::CPU));
}

TEST(Autocast, GuardsNestAndRestore) {
  Tensor x = data({2, 4}, 1), w = data({3, 4}, 2);
  AutocastGuard outer(DeviceType::CPU, DType::BF16);
  {
    AutocastGuard off(DeviceType::CPU, /*enabled=*/false);
    EXPECT_EQ(linear(x, w).dtype(), DType::F32);
    {
      AutocastGuard f16(DeviceType::CPU, DType::F16);
      EXPECT_EQ(linear(x, w).dtype(), DType::F16);
    }
    EXPECT_FALSE(amp::is_autocast_enabled(DeviceType::CPU));
  }
  EXPECT_TRUE(amp::is_autocast_enabled(DeviceType::CPU));
  EXPECT_EQ(amp::autocast_dtype(DeviceType::CPU), DType::BF16);
  EXPECT_EQ(linear(x, w).dtype(), DType::BF16);
  // CUDA autocast is a separate switch: turning it on does not touch CPU tensors' policy.
  AutocastGuard cuda(DeviceType::CUDA, DType::F16);
  EXPECT_EQ(linear(x, w).dtype(), DType::BF16);
}

TEST(Autocast, StateIsThreadLocal) {
  Tensor x = data({2, 4}, 1), w = data({3, 4}, 2);
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  DType other = DType::F64;
  std::thread t([&] { other = linear(x, w).dtype(); });
  t.join();
  EXPECT_EQ(other, DType::F32);
  EXPECT_EQ(linear(x, w).dtype(), DType::BF16);
}

TEST(Autocast, RejectsANon16BitDtype) {
  EXPECT_THROW(AutocastGuard(DeviceType::CPU, DType::F32), Error);
  EXPECT_THROW(AutocastGuard(DeviceType::CPU, DType::I8), Error);
}

TEST(AutocastCache, ASharedWeightIsConvertedOncePerRegion) {
  Tensor w = param({3, 8}, 2);
  Tensor x = data({4, 8}, 1);
  amp::clear_cast_cache();
  {
    AutocastGuard guard(DeviceType::CPU, DType::BF16);
    Tensor y1 = linear(x, w);
    Tensor y2 = linear(relu(x), w);
    amp::CastCacheStats s = amp::cast_cache_stats();
    EXPECT_EQ(s.entries, 1u);
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.hits, 1u);
    // Inputs that are not parameters are not cached.
    Tensor y3 = linear(x, w);
    EXPECT_EQ(amp::cast_cache_stats().entries, 1u);
  }
  EXPECT_EQ(amp::cast_cache_stats().entries, 0u);  // cleared when the outermost region ends
  amp::clear_cast_cache();
}

TEST(AutocastCache, NestedRegionsShareTheOuterCache) {
  Tensor w = param({3, 8}, 2);
  Tensor x = data({4, 8}, 1);
  amp::clear_cast_cache();
  AutocastGuard outer(DeviceType::CPU, DType::BF16);
  { AutocastGuard inner(DeviceType::CPU, DType::BF16); linear(x, w); }
  EXPECT_EQ(amp::cast_cache_stats().entries, 1u);  // the inner exit does not clear it
  linear(x, w);
  EXPECT_EQ(amp::cast_cache_stats().hits, 1u);
}

TEST(AutocastCache, AnInPlaceUpdateInsideTheRegionIsRecast) {
  Tensor w = param({3, 8}, 2);
  Tensor x = data({4, 8}, 1);
  amp::clear_cast_cache();
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  Tensor before = linear(x, w);
  {
    NoGradGuard ng;
    w.mul_(2.0);  // exact in BF16: the new cast is the old one doubled
  }
  Tensor after = linear(x, w);
  EXPECT_EQ(amp::cast_cache_stats().misses, 2u);  // recast, not served stale
  EXPECT_TRUE(bit_equal(after.to(DType::F32), mul(before.to(DType::F32), 2.0)));
}

TEST(Autocast, GradientsReachF32ParametersAsF32) {
  Tensor w = param({3, 8}, 2), b = param({3}, 3);
  Tensor x = data({4, 8}, 1);
  Tensor target = from_vector(std::vector<int64_t>{0, 2, 1, 2}, {4});
  Tensor loss;
  {
    AutocastGuard guard(DeviceType::CPU, DType::BF16);
    loss = cross_entropy(linear(x, w, b), target);
  }
  EXPECT_EQ(loss.dtype(), DType::F32);
  loss.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_EQ(b.grad().dtype(), DType::F32);

  // The same graph built with explicit casts gives bit-identical gradients: autocast is only
  // the casts, recorded as autograd ops.
  Tensor w2 = w.detach().clone().requires_grad_(true), b2 = b.detach().clone().requires_grad_(true);
  Tensor y = linear(x.to(DType::BF16), to_dtype(w2, DType::BF16), to_dtype(b2, DType::BF16));
  Tensor loss2 = cross_entropy(y.to(DType::F32), target);
  loss2.backward();
  EXPECT_TRUE(bit_equal(loss, loss2));
  EXPECT_TRUE(bit_equal(w.grad(), w2.grad()));
  EXPECT_TRUE(bit_equal(b.grad(), b2.grad()));
}

TEST(Autocast, BackwardInsideARegionRunsInTheForwardDtypes) {
  Tensor w = param({3, 8}, 2);
  Tensor x = data({4, 8}, 1);
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  Tensor loss = sum(linear(x, w));
  loss.backward();
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_TRUE(amp::is_autocast_enabled(DeviceType::CPU));
}

TEST(Autocast, ConvAndNormsUnderBF16) {
  Tensor x = data({2, 3, 6, 6}, 1);
  Tensor w = param({4, 3, 3, 3}, 2);
  Tensor gamma = ones({4}).requires_grad_(true), beta = zeros({4}).requires_grad_(true);
  Tensor rm = zeros({4}), rv = ones({4});
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  Tensor y = conv2d(x, w);
  EXPECT_EQ(y.dtype(), DType::BF16);
  Tensor z = batch_norm(y, gamma, beta, rm, rv, true, 0.1, 1e-5);
  EXPECT_EQ(z.dtype(), DType::BF16);   // BN keeps its input dtype; its statistics are F32
  EXPECT_EQ(rm.dtype(), DType::F32);
  EXPECT_NE(rm.abs().sum().item<float>(), 0.0f);  // the module's own buffer was updated
  Tensor ln = layer_norm(y, {4}, Tensor(), Tensor(), 1e-5);
  EXPECT_EQ(ln.dtype(), DType::F32);
  sum(z).backward();
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_EQ(gamma.grad().dtype(), DType::F32);
}

TEST(AutocastPolicy, AnOverrideChangesWhereAnOpRuns) {
  Tensor y = data({4, 3}, 1, DType::BF16);
  AutocastGuard guard(DeviceType::CPU, DType::BF16);
  EXPECT_EQ(relu(y).dtype(), DType::BF16);
  amp::set_op_policy(OpId::relu, AutocastCategory::F32);
  EXPECT_EQ(relu(y).dtype(), DType::F32);
  EXPECT_NE(amp::policy_table().find("[overridden]"), std::string::npos);
  amp::reset_op_policies();
  EXPECT_EQ(relu(y).dtype(), DType::BF16);
  EXPECT_EQ(amp::policy_table().find("[overridden]"), std::string::npos);
}

TEST(Autocast, MatchesExplicitCastsBitForBit) {
  Tensor x = data({5, 16}, 1), w = data({7, 16}, 2), b = data({7}, 3);
  Tensor explicit_ = linear(x.to(DType::F16), w.to(DType::F16), b.to(DType::F16));
  AutocastGuard guard(DeviceType::CPU, DType::F16);
  EXPECT_TRUE(bit_equal(linear(x, w, b), explicit_));
}

TEST(AutocastCuda, LowersMatmulsAndKeepsLossesInF32) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  Tensor w = param({3, 8}, 2).detach().to(kCUDA).requires_grad_(true);
  Tensor x = data({4, 8}, 1).to(kCUDA);
  Tensor target = from_vector(std::vector<int64_t>{0, 2, 1, 2}, {4}).to(kCUDA);
  Tensor y, loss;
  {
    AutocastGuard guard(DeviceType::CUDA, DType::F16);
    y = linear(x, w);
    loss = cross_entropy(y, target);
    // CPU tensors are untouched by a CUDA region.
    EXPECT_EQ(linear(x.cpu(), w.detach().cpu()).dtype(), DType::F32);
  }
  EXPECT_EQ(y.dtype(), DType::F16);
  EXPECT_EQ(loss.dtype(), DType::F32);
  loss.backward();
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_TRUE(w.grad().is_cuda());
}

}  // namespace
}  // namespace mantissa
