// nn::Conv2d: configuration checks at construction, input checks naming the layer's channels,
// then the conv2d op.
#include "nn/conv.h"

#include <cmath>

#include "nn/init.h"

namespace mantissa::nn {

Conv2d::Conv2d(const Conv2dOptions& opts) : options(opts) {
  const int64_t in = options.in_channels(), out = options.out_channels(), g = options.groups();
  MANTISSA_CHECK(in > 0 && out > 0, "Conv2d: in_channels and out_channels must be positive (got ", in, " and ", out,
                 ")");
  MANTISSA_CHECK(g > 0 && in % g == 0 && out % g == 0, "Conv2d: groups ", g,
                 " must be positive and divide in_channels ", in, " and out_channels ", out);
  for (size_t i = 0; i < 2; ++i) {
    MANTISSA_CHECK(options.kernel_size()[i] > 0 && options.stride()[i] > 0 && options.dilation()[i] > 0 &&
                       options.padding()[i] >= 0,
                   "Conv2d: kernel_size ", detail::py_tuple(options.kernel_size().vec()), ", stride ",
                   detail::py_tuple(options.stride().vec()), " and dilation ",
                   detail::py_tuple(options.dilation().vec()), " must be positive and padding ",
                   detail::py_tuple(options.padding().vec()), " non-negative");
  }
  op_options_.stride = options.stride().vec();
  op_options_.padding = options.padding().vec();
  op_options_.dilation = options.dilation().vec();
  op_options_.groups = g;
  weight = register_parameter("weight", empty({out, in / g, options.kernel_size()[0], options.kernel_size()[1]}));
  bias = register_parameter("bias", options.bias() ? empty({out}) : Tensor());
  reset_parameters();
}

void Conv2d::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = init::calculate_fan_in_and_fan_out(weight).first;
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Conv2d::forward(const Tensor& input) {
  MANTISSA_CHECK(input.defined(), "conv2d: the input is an undefined tensor");
  MANTISSA_CHECK(input.dim() == 4 && input.size(1) == options.in_channels(), "conv2d: input ",
                 shape_str(input.sizes()), " does not match weight ", shape_str(weight.sizes()),
                 " (expected [N, ", options.in_channels(), ", H, W]: in_channels ", options.in_channels(), ")");
  return conv2d(input, weight, bias, op_options_);
}

std::string Conv2d::extra_repr() const {
  std::string s = std::to_string(options.in_channels()) + ", " + std::to_string(options.out_channels()) +
                  ", kernel_size=" + detail::py_tuple(options.kernel_size().vec()) +
                  ", stride=" + detail::py_tuple(options.stride().vec());
  if (!(options.padding() == ExpandingArray<2>(0))) s += ", padding=" + detail::py_tuple(options.padding().vec());
  if (!(options.dilation() == ExpandingArray<2>(1))) s += ", dilation=" + detail::py_tuple(options.dilation().vec());
  if (options.groups() != 1) s += ", groups=" + std::to_string(options.groups());
  if (!bias.defined()) s += ", bias=False";
  return s;
}

}  // namespace mantissa::nn
