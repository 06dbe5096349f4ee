// nn::functional: the stateless form of every layer (torch.nn.functional / libtorch's F::).
// Mostly the ops themselves, plus overloads taking the layers' option structs. embedding takes
// (input, weight) like F.embedding; the op mantissa::embedding takes (weight, indices).
#pragma once

#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/options.h"
#include "nn/pooling.h"

namespace mantissa::nn::functional {

using mantissa::adaptive_avg_pool2d;
using mantissa::avg_pool2d;
using mantissa::batch_norm;
using mantissa::conv2d;
using mantissa::cross_entropy;
using mantissa::dropout;
using mantissa::flatten;
using mantissa::gelu;
using mantissa::layer_norm;
using mantissa::linear;
using mantissa::log_softmax;
using mantissa::max_pool2d;
using mantissa::mse_loss;
using mantissa::nll_loss;
using mantissa::relu;
using mantissa::sigmoid;
using mantissa::silu;
using mantissa::softmax;
using mantissa::tanh;

using Conv2dFuncOptions = mantissa::Conv2dOptions;
using MaxPool2dFuncOptions = MaxPool2dOptions;
using AvgPool2dFuncOptions = AvgPool2dOptions;
using AdaptiveAvgPool2dFuncOptions = AdaptiveAvgPool2dOptions;
using GELUFuncOptions = GELUOptions;
using FlattenFuncOptions = FlattenOptions;
using CrossEntropyFuncOptions = CrossEntropyLossOptions;
using NLLLossFuncOptions = NLLLossOptions;
using MSELossFuncOptions = MSELossOptions;

struct DropoutFuncOptions {
  MANTISSA_ARG(double, p) = 0.5;
  MANTISSA_ARG(bool, training) = true;
};

struct BatchNormFuncOptions {
  MANTISSA_ARG(Tensor, weight);
  MANTISSA_ARG(Tensor, bias);
  MANTISSA_ARG(bool, training) = false;
  MANTISSA_ARG(double, momentum) = 0.1;
  MANTISSA_ARG(double, eps) = 1e-5;
};

struct LayerNormFuncOptions {
  explicit LayerNormFuncOptions(Shape normalized_shape) : normalized_shape_(std::move(normalized_shape)) {}
  MANTISSA_ARG(Shape, normalized_shape);
  MANTISSA_ARG(Tensor, weight);
  MANTISSA_ARG(Tensor, bias);
  MANTISSA_ARG(double, eps) = 1e-5;
};

inline Tensor embedding(const Tensor& input, const Tensor& weight) { return mantissa::embedding(weight, input); }

inline Tensor max_pool2d(const Tensor& x, const MaxPool2dFuncOptions& o) {
  return mantissa::max_pool2d(x, o.kernel_size().vec(), o.stride().value_or(o.kernel_size()).vec(),
                              o.padding().vec(), o.ceil_mode());
}
inline Tensor avg_pool2d(const Tensor& x, const AvgPool2dFuncOptions& o) {
  return mantissa::avg_pool2d(x, o.kernel_size().vec(), o.stride().value_or(o.kernel_size()).vec(),
                              o.padding().vec(), o.ceil_mode(), o.count_include_pad());
}
inline Tensor adaptive_avg_pool2d(const Tensor& x, const AdaptiveAvgPool2dFuncOptions& o) {
  return mantissa::adaptive_avg_pool2d(x, o.output_size().vec());
}
inline Tensor dropout(const Tensor& x, const DropoutFuncOptions& o) {
  MANTISSA_CHECK(o.p() >= 0.0 && o.p() <= 1.0, "dropout: probability p must be in [0, 1], got ", o.p());
  return mantissa::dropout(x, o.p(), o.training());
}
inline Tensor gelu(const Tensor& x, const GELUFuncOptions& o) { return mantissa::gelu(x, o.approximate()); }
inline Tensor flatten(const Tensor& x, const FlattenFuncOptions& o) {
  return mantissa::flatten(x, o.start_dim(), o.end_dim());
}
inline Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                         const BatchNormFuncOptions& o) {
  return mantissa::batch_norm(x, o.weight(), o.bias(), running_mean, running_var, o.training(), o.momentum(),
                              o.eps());
}
inline Tensor layer_norm(const Tensor& x, const LayerNormFuncOptions& o) {
  return mantissa::layer_norm(x, o.normalized_shape(), o.weight(), o.bias(), o.eps());
}
inline Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyFuncOptions& o) {
  return mantissa::cross_entropy(input, target, o.reduction(), o.ignore_index(), o.label_smoothing());
}
inline Tensor nll_loss(const Tensor& input, const Tensor& target, const NLLLossFuncOptions& o) {
  return mantissa::nll_loss(input, target, o.reduction(), o.ignore_index());
}
inline Tensor mse_loss(const Tensor& input, const Tensor& target, const MSELossFuncOptions& o) {
  return mantissa::mse_loss(input, target, o.reduction());
}

}  // namespace mantissa::nn::functional

namespace mantissa::nn {
namespace F = functional;  // nn::F::relu(x), as libtorch users write F::relu
}
