// Bad input, one row per error class and op: every call must throw mantissa::Error (never
// crash), and the message must name the op and the offending shapes / dtypes / values.
#include <gtest/gtest.h>

#include <functional>

#include "autograd/ops.h"
#include "core/kernels/device_memory.h"

namespace mantissa {
namespace {

struct ErrorRow {
  const char* name;
  std::function<void()> call;
  std::vector<std::string> expected;  // substrings of the message
};

Tensor f32(const Shape& s) { return zeros(s); }
Tensor idx(std::vector<int64_t> v) { return from_vector(v, {static_cast<int64_t>(v.size())}); }

std::vector<ErrorRow> rows() {
  return {
      // Shape mismatches.
      {"matmul_inner", [] { matmul(f32({64, 784}), f32({512, 784})); },
       {"matmul: shapes [64, 784] and [512, 784] cannot be multiplied (784 != 512)"}},
      {"linear_in_features", [] { linear(f32({64, 780}), f32({512, 784})); }, {"linear", "[64, 780]", "[512, 784]"}},
      {"add_broadcast", [] { add(f32({3, 4}), f32({5})); }, {"add", "[3, 4]", "[5]"}},
      {"bmm_batch", [] { bmm(f32({2, 3, 4}), f32({3, 4, 5})); }, {"bmm", "[2, 3, 4]", "[3, 4, 5]"}},
      {"conv2d_channels", [] { conv2d(f32({1, 3, 8, 8}), f32({4, 2, 3, 3})); }, {"conv2d", "[1, 3, 8, 8]", "[4, 2, 3, 3]"}},
      {"cat_shapes", [] { cat({f32({2, 3}), f32({2, 4})}, 0); }, {"cat", "[2, 3]", "[2, 4]"}},
      {"mse_shapes", [] { mse_loss(f32({3}), f32({4})); }, {"mse_loss", "[3]", "[4]"}},
      {"cross_entropy_target_shape", [] { cross_entropy(f32({4, 10}), idx({1, 2, 3})); }, {"cross_entropy", "[4, 10]", "[3]"}},
      {"view_incompatible", [] { f32({2, 3}).t().view({6}); }, {"view", "[3, 2]"}},
      {"batch_norm_channels", [] { batch_norm(f32({4, 3}), f32({5}), f32({5}), Tensor(), Tensor(), true); },
       {"batch_norm"}},
      // Dtype mismatches and unsupported dtypes.
      {"matmul_dtypes", [] { matmul(f32({2, 2}), zeros({2, 2}, DType::F16)); }, {"matmul", "F32", "F16"}},
      {"mean_of_integers", [] { mean(zeros({3}, DType::I64)); }, {"mean", "I64"}},
      {"cross_entropy_float_target", [] { cross_entropy(f32({2, 3}), f32({2})); }, {"cross_entropy", "F32"}},
      {"embedding_float_indices", [] { embedding(f32({4, 2}), f32({3})); }, {"embedding", "F32"}},
      {"softmax_integer", [] { softmax(zeros({3}, DType::I32), 0); }, {"softmax", "I32"}},
      // Out-of-range indices and dims.
      {"sum_dim", [] { sum(f32({2, 3}), {2}); }, {"sum", "dimension 2", "out of range"}},
      {"softmax_dim", [] { softmax(f32({2, 3}), -3); }, {"softmax", "-3"}},
      {"transpose_dim", [] { transpose(f32({2}), 0, 1); }, {"transpose", "dimension 1"}},
      {"index_select_value", [] { index_select(f32({3, 2}), 0, idx({0, 3})); }, {"index_select", "3"}},
      {"gather_value", [] { gather(f32({2, 2}), 1, from_vector(std::vector<int64_t>{0, 5, 1, 0}, {2, 2})); },
       {"gather", "5"}},
      {"embedding_value", [] { embedding(f32({4, 2}), idx({-1})); }, {"embedding", "-1"}},
      {"cross_entropy_class", [] { cross_entropy(f32({2, 3}), idx({0, 7})); }, {"cross_entropy", "7"}},
      {"nll_loss_class", [] { nll_loss(f32({2, 3}), idx({3, 0})); }, {"nll_loss", "3"}},
      {"select_index", [] { f32({2, 3}).select(1, 5); }, {"select", "5"}},
      {"narrow_range", [] { f32({4}).narrow(0, 3, 2); }, {"narrow"}},
      // Empty and zero-size tensors where the op has no answer.
      {"max_of_empty", [] { max(f32({0})); }, {"max"}},
      {"cat_nothing", [] { cat({}, 0); }, {"cat"}},
      {"stack_nothing", [] { stack({}, 0); }, {"stack"}},
      {"item_of_empty", [] { f32({0}).item<float>(); }, {"item"}},
      {"max_pool_kernel_too_big", [] { max_pool2d(f32({1, 1, 2, 2}), {3, 3}); }, {"max_pool2d"}},
      // Arguments out of their domain.
      {"dropout_p", [] { dropout(f32({3}), 1.5, true); }, {"dropout", "1.5"}},
      {"gelu_mode", [] { gelu(f32({3}), "fast"); }, {"gelu", "fast"}},
      {"clamp_nothing", [] { clamp(f32({3}), std::nullopt, std::nullopt); }, {"clamp"}},
      {"bernoulli_p", [] { bernoulli({3}, -0.1); }, {"bernoulli", "-0.1"}},
      {"undefined_tensor", [] { add(Tensor(), f32({1})); }, {"undefined"}},
  };
}

class Errors : public ::testing::TestWithParam<ErrorRow> {};

TEST_P(Errors, ThrowNamingTheOpAndOperands) {
  const ErrorRow& row = GetParam();
  try {
    row.call();
    ADD_FAILURE() << row.name << ": no error was thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& s : row.expected) {
      EXPECT_NE(msg.find(s), std::string::npos) << row.name << ": message \"" << msg << "\" lacks \"" << s << "\"";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Classes, Errors, ::testing::ValuesIn(rows()),
                         [](const ::testing::TestParamInfo<ErrorRow>& i) { return std::string(i.param.name); });

TEST(Errors, DeviceMismatchNamesBothDevices) {
  if (!kernels::cuda_is_available()) GTEST_SKIP() << "no usable CUDA device: " << kernels::cuda_unavailable_reason();
  Tensor a = zeros({2, 2});
  Tensor b = zeros({2, 2}).to(kCUDA);
  try {
    add(a, b);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("cpu"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
  }
}

TEST(Errors, ZeroSizeInputsGiveEmptyResults) {
  Tensor e = zeros({0, 4});
  EXPECT_EQ(add(e, 1.0).sizes(), (Shape{0, 4}));
  EXPECT_EQ(relu(e).numel(), 0);
  EXPECT_EQ(sum(e, {0}).sizes(), (Shape{4}));
  EXPECT_EQ(to_vector<float>(sum(e, {0})), (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(matmul(e, zeros({4, 3})).sizes(), (Shape{0, 3}));
  EXPECT_EQ(to_vector<float>(matmul(zeros({2, 0}), zeros({0, 3}))), std::vector<float>(6, 0.0f));
  EXPECT_EQ(softmax(e, 1).sizes(), (Shape{0, 4}));
  EXPECT_EQ(cat({e, zeros({1, 4})}, 0).sizes(), (Shape{1, 4}));
  EXPECT_EQ(index_select(zeros({3, 2}), 0, zeros({0}, DType::I64)).sizes(), (Shape{0, 2}));
}

}  // namespace
}  // namespace mantissa
