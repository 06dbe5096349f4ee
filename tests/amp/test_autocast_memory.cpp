// The memory bf16 autocast saves: bytes held for backward by the MNIST cnn at batch 256 under
// bf16 autocast against fp32 (autograd::saved_tensor_peak_bytes, distinct storages held by
// SavedTensors). Matmul/conv inputs and ReLU outputs are saved in BF16, half of F32's bytes.
#include <gtest/gtest.h>

#include "amp/autocast.h"
#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "examples/common/mnist_nets.h"

namespace mantissa {
namespace {

size_t saved_peak(bool bf16) {
  manual_seed(0);
  auto model = examples::make_mnist_model("cnn");
  model->train();
  Tensor x = randn({256, 1, 28, 28});
  Tensor target = from_vector(std::vector<int64_t>(256, 3), {256});
  autograd::reset_saved_tensor_peak();
  const size_t before = autograd::saved_tensor_bytes();
  Tensor loss;
  {
    amp::AutocastGuard guard(DeviceType::CPU, DType::BF16, bf16);
    loss = cross_entropy((*model)(x), target);
  }
  const size_t peak = autograd::saved_tensor_peak_bytes() - before;
  loss.backward();
  return peak;
}

TEST(AutocastMemory, Bf16SavesAtMostSixtyPercentOfFp32ForTheMnistCnn) {
  const size_t fp32 = saved_peak(false), bf16 = saved_peak(true);
  const double ratio = static_cast<double>(bf16) / static_cast<double>(fp32);
  std::printf("saved for backward, MNIST cnn, batch 256: fp32 %.1f MiB, bf16 autocast %.1f MiB (%.1f%%)\n",
              fp32 / 1048576.0, bf16 / 1048576.0, 100.0 * ratio);
  EXPECT_GT(fp32, size_t(256) * 32 * 26 * 26 * 4);  // at least conv2's F32 input
  EXPECT_LE(ratio, 0.60);
}

}  // namespace
}  // namespace mantissa
