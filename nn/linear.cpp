// nn::Linear, nn::Flatten: shape checks that name the layer's configuration, then the ops;
// Linear's optional QAT fake quantizers wrap its weight and output.
#include "nn/linear.h"

#include <cmath>

#include "nn/init.h"

namespace mantissa::nn {

Linear::Linear(const LinearOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.in_features() >= 0 && options.out_features() >= 0,
                 "Linear: in_features and out_features must be non-negative (got ", options.in_features(), " and ",
                 options.out_features(), ")");
  weight = register_parameter("weight", empty({options.out_features(), options.in_features()}));
  bias = register_parameter("bias", options.bias() ? empty({options.out_features()}) : Tensor());
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const int64_t fan_in = options.in_features();
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& input) {
  if (quantized_) return (*quantized_)(input);
  MANTISSA_CHECK(input.defined(), "linear: the input is an undefined tensor");
  MANTISSA_CHECK(input.dim() >= 1 && input.size(-1) == options.in_features(), "linear: input ",
                 shape_str(input.sizes()), " does not match weight ", shape_str(weight.sizes()), " (in_features ",
                 options.in_features(), ")");
  if (!weight_fake_quant_ && !activation_post_process_ && !fused_relu_) return linear(input, weight, bias);
  // Through operator() so forward hooks on the fake quantizers fire (amp::Inspector sees them).
  const Tensor w = weight_fake_quant_ ? (*weight_fake_quant_)(weight) : weight;
  Tensor y = linear(input, w, bias);
  if (fused_relu_) y = relu(y);
  return activation_post_process_ ? (*activation_post_process_)(y) : y;
}

void Linear::set_weight_fake_quant(ModulePtr fq) {
  set_optional_child(weight_fake_quant_, "weight_fake_quant", std::move(fq), "set_weight_fake_quant");
}

void Linear::set_activation_post_process(ModulePtr fq) {
  set_optional_child(activation_post_process_, "activation_post_process", std::move(fq),
                     "set_activation_post_process");
}

std::string Linear::extra_repr() const {
  return "in_features=" + std::to_string(options.in_features()) +
         ", out_features=" + std::to_string(options.out_features()) + ", bias=" + detail::py_bool(bias.defined());
}

Tensor Flatten::forward(const Tensor& input) {
  MANTISSA_CHECK(input.defined(), "Flatten: the input is an undefined tensor");
  return flatten(input, options.start_dim(), options.end_dim());
}

std::string Flatten::extra_repr() const {
  return "start_dim=" + std::to_string(options.start_dim()) + ", end_dim=" + std::to_string(options.end_dim());
}

void Linear::set_quantized(ModulePtr engine) {
  MANTISSA_CHECK(engine != nullptr, "Linear::set_quantized: the int8 module is null");
  MANTISSA_CHECK(!quantized_, "Linear::set_quantized: this layer is already quantized");
  quantized_ = register_module("quantized", std::move(engine));
}

}  // namespace mantissa::nn
