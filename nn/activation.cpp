// Activation and dropout layers: thin modules over the unary ops, softmax and dropout.
#include "nn/activation.h"

namespace mantissa::nn {

Tensor ReLU::forward(const Tensor& input) { return relu(input); }

GELU::GELU(const GELUOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.approximate() == "none" || options.approximate() == "tanh", "GELU: approximate '",
                 options.approximate(), "' is not supported (expected 'none' or 'tanh')");
}
Tensor GELU::forward(const Tensor& input) { return gelu(input, options.approximate()); }
std::string GELU::extra_repr() const { return "approximate='" + options.approximate() + "'"; }

Tensor SiLU::forward(const Tensor& input) { return silu(input); }
Tensor Tanh::forward(const Tensor& input) { return tanh(input); }
Tensor Sigmoid::forward(const Tensor& input) { return sigmoid(input); }

Tensor Softmax::forward(const Tensor& input) { return softmax(input, dim); }
std::string Softmax::extra_repr() const { return "dim=" + std::to_string(dim); }
Tensor LogSoftmax::forward(const Tensor& input) { return log_softmax(input, dim); }
std::string LogSoftmax::extra_repr() const { return "dim=" + std::to_string(dim); }

Dropout::Dropout(const DropoutOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.p() >= 0.0 && options.p() <= 1.0, "Dropout: probability p must be in [0, 1], got ",
                 options.p());
}
Tensor Dropout::forward(const Tensor& input) { return dropout(input, options.p(), is_training()); }
std::string Dropout::extra_repr() const { return "p=" + detail::py_float(options.p()) + ", inplace=False"; }

}  // namespace mantissa::nn
