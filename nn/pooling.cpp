// Pooling layers: option checks at construction, the op vectors built once, then the ops.
// repr prints a size as an int when all dims agree, as PyTorch prints the int it was given.
#include "nn/pooling.h"

namespace mantissa::nn {

namespace {

std::string size_repr(const ExpandingArray<2>& a) {
  return a.all_equal() ? std::to_string(a[0]) : detail::py_tuple(a.vec());
}

void check_pool(const char* layer, const ExpandingArray<2>& kernel, const ExpandingArray<2>& stride,
                const ExpandingArray<2>& padding) {
  for (size_t i = 0; i < 2; ++i) {
    MANTISSA_CHECK(kernel[i] > 0 && stride[i] > 0, layer, ": kernel_size ", size_repr(kernel), " and stride ",
                   size_repr(stride), " must be positive");
    MANTISSA_CHECK(padding[i] >= 0 && 2 * padding[i] <= kernel[i], layer, ": padding ", size_repr(padding),
                   " must be non-negative and at most half of kernel_size ", size_repr(kernel));
  }
}

void check_nchw(const char* op, const Tensor& input) {
  MANTISSA_CHECK(input.defined(), op, ": the input is an undefined tensor");
  MANTISSA_CHECK(input.dim() == 4, op, ": expected 4D [N, C, H, W] input, got ", input.dim(), "D input of shape ",
                 shape_str(input.sizes()));
}

}  // namespace

MaxPool2d::MaxPool2d(const MaxPool2dOptions& opts) : options(opts) {
  if (!options.stride()) options.stride(options.kernel_size());
  check_pool("MaxPool2d", options.kernel_size(), *options.stride(), options.padding());
  kernel_ = options.kernel_size().vec();
  stride_ = options.stride()->vec();
  padding_ = options.padding().vec();
}

Tensor MaxPool2d::forward(const Tensor& input) {
  check_nchw("max_pool2d", input);
  return max_pool2d(input, kernel_, stride_, padding_, options.ceil_mode());
}

std::string MaxPool2d::extra_repr() const {
  return "kernel_size=" + size_repr(options.kernel_size()) + ", stride=" + size_repr(*options.stride()) +
         ", padding=" + size_repr(options.padding()) + ", dilation=1, ceil_mode=" + detail::py_bool(options.ceil_mode());
}

AvgPool2d::AvgPool2d(const AvgPool2dOptions& opts) : options(opts) {
  if (!options.stride()) options.stride(options.kernel_size());
  check_pool("AvgPool2d", options.kernel_size(), *options.stride(), options.padding());
  kernel_ = options.kernel_size().vec();
  stride_ = options.stride()->vec();
  padding_ = options.padding().vec();
}

Tensor AvgPool2d::forward(const Tensor& input) {
  check_nchw("avg_pool2d", input);
  return avg_pool2d(input, kernel_, stride_, padding_, options.ceil_mode(), options.count_include_pad());
}

std::string AvgPool2d::extra_repr() const {
  return "kernel_size=" + size_repr(options.kernel_size()) + ", stride=" + size_repr(*options.stride()) +
         ", padding=" + size_repr(options.padding());
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(const AdaptiveAvgPool2dOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.output_size()[0] > 0 && options.output_size()[1] > 0, "AdaptiveAvgPool2d: output_size ",
                 size_repr(options.output_size()), " must be positive");
  output_size_ = options.output_size().vec();
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& input) {
  check_nchw("adaptive_avg_pool2d", input);
  return adaptive_avg_pool2d(input, output_size_);
}

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + size_repr(options.output_size()); }

}  // namespace mantissa::nn
