// Pooling layers over NCHW input: MaxPool2d, AvgPool2d (stride defaults to the kernel size, as
// in PyTorch) and AdaptiveAvgPool2d to a fixed output size.
#pragma once

#include <optional>

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

struct MaxPool2dOptions {
  MaxPool2dOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  MANTISSA_ARG(ExpandingArray<2>, kernel_size);
  MANTISSA_ARG(std::optional<ExpandingArray<2>>, stride);  // nullopt: kernel_size
  MANTISSA_ARG(ExpandingArray<2>, padding) = 0;
  MANTISSA_ARG(bool, ceil_mode) = false;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const MaxPool2dOptions& options);
  explicit MaxPool2d(ExpandingArray<2> kernel_size) : MaxPool2d(MaxPool2dOptions(kernel_size)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  MaxPool2dOptions options;

 private:
  std::vector<int64_t> kernel_, stride_, padding_;
};

struct AvgPool2dOptions {
  AvgPool2dOptions(ExpandingArray<2> kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  MANTISSA_ARG(ExpandingArray<2>, kernel_size);
  MANTISSA_ARG(std::optional<ExpandingArray<2>>, stride);  // nullopt: kernel_size
  MANTISSA_ARG(ExpandingArray<2>, padding) = 0;
  MANTISSA_ARG(bool, ceil_mode) = false;
  MANTISSA_ARG(bool, count_include_pad) = true;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const AvgPool2dOptions& options);
  explicit AvgPool2d(ExpandingArray<2> kernel_size) : AvgPool2d(AvgPool2dOptions(kernel_size)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  AvgPool2dOptions options;

 private:
  std::vector<int64_t> kernel_, stride_, padding_;
};

struct AdaptiveAvgPool2dOptions {
  AdaptiveAvgPool2dOptions(ExpandingArray<2> output_size) : output_size_(output_size) {}  // NOLINT
  MANTISSA_ARG(ExpandingArray<2>, output_size);
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(const AdaptiveAvgPool2dOptions& options);
  explicit AdaptiveAvgPool2d(ExpandingArray<2> output_size)
      : AdaptiveAvgPool2d(AdaptiveAvgPool2dOptions(output_size)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  AdaptiveAvgPool2dOptions options;

 private:
  std::vector<int64_t> output_size_;
};

}  // namespace mantissa::nn
