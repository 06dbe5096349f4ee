// nn::init: PyTorch's parameter initializers (torch.nn.init) with the same formulas for gains,
// fans and bounds. Each fills a tensor in place under no-grad, drawing from the given generator
// (the default one when null), and returns the same handle.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "core/tensor.h"

namespace mantissa {
class Generator;
}

namespace mantissa::nn::init {

// Recommended gain for a nonlinearity: "linear", "conv1d", "conv2d", "conv3d",
// "conv_transpose1d/2d/3d", "sigmoid" -> 1; "tanh" -> 5/3; "relu" -> sqrt(2);
// "leaky_relu" -> sqrt(2 / (1 + slope^2)) with slope = param (0.01 when absent); "selu" -> 3/4.
double calculate_gain(const std::string& nonlinearity, std::optional<double> param = std::nullopt);

// {fan_in, fan_out} of a weight [out, in, k...]: fan_in = in * prod(k), fan_out = out * prod(k).
// Error for fewer than 2 dims.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor);
// mode "fan_in" or "fan_out".
int64_t calculate_correct_fan(const Tensor& tensor, const std::string& mode);

Tensor uniform_(Tensor tensor, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor tensor, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(Tensor tensor, double value);
Tensor zeros_(Tensor tensor);
Tensor ones_(Tensor tensor);

// He et al.: std = gain(nonlinearity, a) / sqrt(fan); uniform bound sqrt(3) * std.
// nn layers use kaiming_uniform_(w, sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
Tensor kaiming_uniform_(Tensor tensor, double a = 0.0, const std::string& mode = "fan_in",
                        const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
Tensor kaiming_normal_(Tensor tensor, double a = 0.0, const std::string& mode = "fan_in",
                       const std::string& nonlinearity = "leaky_relu", Generator* gen = nullptr);
// Glorot & Bengio: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound sqrt(3) * std.
Tensor xavier_uniform_(Tensor tensor, double gain = 1.0, Generator* gen = nullptr);
Tensor xavier_normal_(Tensor tensor, double gain = 1.0, Generator* gen = nullptr);

}  // namespace mantissa::nn::init
