// The "bytes saved for backward" statistic (autograd::saved_tensor_bytes): each storage once,
// at its full size; released by backward and by dropping the graph; the peak and its reset; and
// a small MLP whose number is worked out by hand from what each op saves.
#include <gtest/gtest.h>

#include "autograd/function.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mantissa {
namespace {

// Braced float lists would be ambiguous between from_vector's float and double overloads.
Tensor fv(const std::vector<float>& values, const Shape& shape, TensorOptions options = {}) {
  return from_vector(values, shape, options);
}

using autograd::SavedTensor;
using autograd::saved_tensor_bytes;
using autograd::saved_tensor_peak_bytes;

TEST(SavedTensorBytes, CountsEachStorageOnceAtItsFullSize) {
  const size_t base = saved_tensor_bytes();
  const Tensor big = zeros({100});  // 400 bytes
  {
    SavedTensor a(big.narrow(0, 10, 5));  // a view keeps the whole storage alive
    EXPECT_EQ(saved_tensor_bytes(), base + 400);
    SavedTensor b(big);                   // the same storage again: no change
    SavedTensor c = a;                    // copies share the registration
    EXPECT_EQ(saved_tensor_bytes(), base + 400);
    SavedTensor d(zeros({3}, TensorOptions(DType::F64)));  // 24 more
    EXPECT_EQ(saved_tensor_bytes(), base + 424);
    SavedTensor none{Tensor()};
    EXPECT_EQ(saved_tensor_bytes(), base + 424);
  }
  EXPECT_EQ(saved_tensor_bytes(), base);
}

TEST(SavedTensorBytes, PeakAndReset) {
  const size_t base = saved_tensor_bytes();
  autograd::reset_saved_tensor_peak();
  EXPECT_EQ(saved_tensor_peak_bytes(), base);
  {
    SavedTensor a(zeros({10}));
    SavedTensor b(zeros({20}));
  }
  EXPECT_EQ(saved_tensor_bytes(), base);
  EXPECT_EQ(saved_tensor_peak_bytes(), base + 120);
  autograd::reset_saved_tensor_peak();
  EXPECT_EQ(saved_tensor_peak_bytes(), base);
}

// x [4, 3] (no grad) -> Linear(3, 5) -> ReLU -> Linear(5, 2) -> cross_entropy with I64 targets.
// What the graph holds, by op:
//   linear 1: x (its weight's gradient needs it; x needs no gradient, so W1 is not saved)  48 B
//   relu:     its output h [4, 5]                                                           80 B
//   linear 2: h again (same storage: not counted twice) and W2 [2, 5] (h needs a gradient)  40 B
//   cross_entropy: the logits [4, 2] and the targets [4] (I64)                          32 + 32 B
// Total 232 bytes (312 if h were counted per save).
TEST(SavedTensorBytes, SmallMLPMatchesTheHandCount) {
  const Tensor x = fv({0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, -0.9f, 1.0f, 1.1f, 1.2f}, {4, 3});
  const Tensor t = from_vector(std::vector<int64_t>{0, 1, 1, 0}, {4});
  const Tensor w1 = mul(ones({5, 3}), 0.1).requires_grad_(), b1 = zeros({5}).requires_grad_();
  const Tensor w2 = mul(ones({2, 5}), -0.2).requires_grad_(), b2 = zeros({2}).requires_grad_();
  const size_t base = saved_tensor_bytes();
  autograd::reset_saved_tensor_peak();
  {
    Tensor loss = cross_entropy(linear(relu(linear(x, w1, b1)), w2, b2), t);
    EXPECT_EQ(saved_tensor_bytes() - base, 232u);
    loss.backward(Tensor(), /*retain_graph=*/true);
    EXPECT_EQ(saved_tensor_bytes() - base, 232u);  // retained
    loss.backward();                                // frees the saved tensors
    EXPECT_EQ(saved_tensor_bytes(), base);
  }
  EXPECT_EQ(saved_tensor_peak_bytes() - base, 232u);
  {
    Tensor loss = cross_entropy(linear(relu(linear(x, w1, b1)), w2, b2), t);
    EXPECT_EQ(saved_tensor_bytes() - base, 232u);
  }  // dropping the graph without backward releases everything too
  EXPECT_EQ(saved_tensor_bytes(), base);
  {
    NoGradGuard no_grad;  // nothing is recorded, nothing saved
    Tensor loss = cross_entropy(linear(relu(linear(x, w1, b1)), w2, b2), t);
    EXPECT_EQ(saved_tensor_bytes(), base);
  }
}

}  // namespace
}  // namespace mantissa
