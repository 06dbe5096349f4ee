// AccumulateGrad takes an incoming gradient as the leaf's .grad without copying when nothing
// else can see it; these tests pin down that it copies whenever something else can (a shared
// pass-through gradient, a hook or a caller keeping it, a view), so .grad never aliases.
#include <gtest/gtest.h>

#include <vector>

#include "autograd/ops.h"

namespace mantissa {
namespace {

Tensor leaf(std::vector<float> v) {
  const auto n = static_cast<int64_t>(v.size());
  return from_vector(v, {n}).requires_grad_();
}

TEST(AccumulateGrad, PassThroughGradientIsNotSharedBetweenLeaves) {
  Tensor a = leaf({1, 2, 3}), b = leaf({4, 5, 6});
  Tensor s = (a + b).sum();  // add's backward hands the same gradient to both inputs
  s.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_NE(a.grad().storage(), b.grad().storage());
  s.backward();  // accumulates in place into each .grad
  EXPECT_EQ(to_vector<float>(a.grad()), (std::vector<float>{2, 2, 2}));
  EXPECT_EQ(to_vector<float>(b.grad()), (std::vector<float>{2, 2, 2}));
}

TEST(AccumulateGrad, GradientKeptByAHookIsCopied) {
  Tensor c = leaf({1, 2});
  Tensor kept;
  c.register_hook([&](const Tensor& g) {
    kept = g;
    return Tensor();
  });
  (c * 3.0).sum().backward();
  ASSERT_TRUE(kept.defined());
  EXPECT_NE(kept.storage(), c.grad().storage());
  kept.fill_(100);
  EXPECT_EQ(to_vector<float>(c.grad()), (std::vector<float>{3, 3}));
}

TEST(AccumulateGrad, CallersGradientIsCopied) {
  Tensor d = leaf({1, 2, 3, 4});
  Tensor g = ones({4});
  d.backward(g);
  g.fill_(7);
  EXPECT_EQ(to_vector<float>(d.grad()), (std::vector<float>{1, 1, 1, 1}));
}

TEST(AccumulateGrad, FreshGradientIsTakenAndStaysCorrectOverSteps) {
  Tensor w = leaf({1, -2, 3});
  for (int step = 1; step <= 3; ++step) {
    w.mutable_grad() = Tensor();  // zero_grad(set_to_none)
    (w * w).sum().backward();     // d/dw = 2w, a fresh tensor each time
    EXPECT_EQ(to_vector<float>(w.grad()), (std::vector<float>{2, -4, 6}));
    EXPECT_TRUE(w.grad().is_contiguous());
    EXPECT_FALSE(w.grad().requires_grad());
  }
}

TEST(AccumulateGrad, ViewGradientIsCopiedIntoOwnMemory) {
  // sum's backward expands a one-element gradient: a stride-0 view, never taken as is.
  Tensor e = leaf({1, 2, 3});
  e.sum().backward();
  EXPECT_TRUE(e.grad().is_contiguous());
  EXPECT_EQ(e.grad().strides(), (Shape{1}));
  EXPECT_EQ(to_vector<float>(e.grad()), (std::vector<float>{1, 1, 1}));
}

}  // namespace
}  // namespace mantissa
