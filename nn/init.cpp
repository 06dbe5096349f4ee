// nn::init formulas (torch.nn.init), each filling in place under no-grad. Zero-element tensors
// are left alone, as PyTorch does, instead of dividing by a zero fan.
#include "nn/init.h"

#include <cmath>

#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::nn::init {

double calculate_gain(const std::string& nonlinearity, std::optional<double> param) {
  static const char* const kLinear[] = {"linear",           "conv1d",           "conv2d",          "conv3d",
                                        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "sigmoid"};
  for (const char* n : kLinear)
    if (nonlinearity == n) return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") {
    const double slope = param.value_or(0.01);
    return std::sqrt(2.0 / (1.0 + slope * slope));
  }
  if (nonlinearity == "selu") return 3.0 / 4.0;
  MANTISSA_ERROR("calculate_gain: unsupported nonlinearity '", nonlinearity,
                 "' (expected linear, conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, "
                 "sigmoid, tanh, relu, leaky_relu or selu)");
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor) {
  MANTISSA_CHECK(tensor.defined(), "calculate_fan_in_and_fan_out: the tensor is undefined");
  MANTISSA_CHECK(tensor.dim() >= 2, "calculate_fan_in_and_fan_out: fan in and fan out cannot be computed for a tensor "
                 "with fewer than 2 dimensions (got shape ", shape_str(tensor.sizes()), ")");
  int64_t receptive = 1;
  for (int64_t d = 2; d < tensor.dim(); ++d) receptive *= tensor.size(d);
  return {tensor.size(1) * receptive, tensor.size(0) * receptive};
}

int64_t calculate_correct_fan(const Tensor& tensor, const std::string& mode) {
  MANTISSA_CHECK(mode == "fan_in" || mode == "fan_out", "calculate_correct_fan: mode '", mode,
                 "' is not supported (expected fan_in or fan_out)");
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor);
  return mode == "fan_in" ? fan_in : fan_out;
}

namespace {

void check_target(const Tensor& t, const char* fn) {
  MANTISSA_CHECK(t.defined(), fn, ": the tensor is undefined");
  MANTISSA_CHECK(t.is_floating_point(), fn, ": expected a floating-point tensor, got ", t.dtype());
}

}  // namespace

Tensor uniform_(Tensor tensor, double a, double b, Generator* gen) {
  check_target(tensor, "uniform_");
  NoGradGuard no_grad;
  mantissa::uniform_(tensor, a, b, gen);
  return tensor;
}

Tensor normal_(Tensor tensor, double mean, double std, Generator* gen) {
  check_target(tensor, "normal_");
  NoGradGuard no_grad;
  mantissa::normal_(tensor, mean, std, gen);
  return tensor;
}

Tensor constant_(Tensor tensor, double value) {
  MANTISSA_CHECK(tensor.defined(), "constant_: the tensor is undefined");
  NoGradGuard no_grad;
  tensor.fill_(value);
  return tensor;
}

Tensor zeros_(Tensor tensor) { return constant_(std::move(tensor), 0.0); }
Tensor ones_(Tensor tensor) { return constant_(std::move(tensor), 1.0); }

namespace {

double kaiming_std(const Tensor& t, double a, const std::string& mode, const std::string& nonlinearity) {
  const int64_t fan = calculate_correct_fan(t, mode);
  return calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}

double xavier_std(const Tensor& t, double gain) {
  auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
  return gain * std::sqrt(2.0 / static_cast<double>(fan_in + fan_out));
}

}  // namespace

Tensor kaiming_uniform_(Tensor tensor, double a, const std::string& mode, const std::string& nonlinearity,
                        Generator* gen) {
  check_target(tensor, "kaiming_uniform_");
  const double std = kaiming_std(tensor, a, mode, nonlinearity);
  if (tensor.numel() == 0) return tensor;
  const double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(tensor), -bound, bound, gen);
}

Tensor kaiming_normal_(Tensor tensor, double a, const std::string& mode, const std::string& nonlinearity,
                       Generator* gen) {
  check_target(tensor, "kaiming_normal_");
  const double std = kaiming_std(tensor, a, mode, nonlinearity);
  if (tensor.numel() == 0) return tensor;
  return normal_(std::move(tensor), 0.0, std, gen);
}

Tensor xavier_uniform_(Tensor tensor, double gain, Generator* gen) {
  check_target(tensor, "xavier_uniform_");
  const double std = xavier_std(tensor, gain);
  if (tensor.numel() == 0) return tensor;
  const double bound = std::sqrt(3.0) * std;
  return uniform_(std::move(tensor), -bound, bound, gen);
}

Tensor xavier_normal_(Tensor tensor, double gain, Generator* gen) {
  check_target(tensor, "xavier_normal_");
  const double std = xavier_std(tensor, gain);
  if (tensor.numel() == 0) return tensor;
  return normal_(std::move(tensor), 0.0, std, gen);
}

}  // namespace mantissa::nn::init
