// Activation and dropout layers: ReLU, GELU (exact or tanh approximation), SiLU, Tanh, Sigmoid,
// Softmax/LogSoftmax over a dim, and Dropout (active only in training mode).
#pragma once

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

struct GELUOptions {
  MANTISSA_ARG(std::string, approximate) = "none";  // "none" (erf) or "tanh"
};

class GELU : public Module {
 public:
  explicit GELU(const GELUOptions& options = {});
  explicit GELU(const std::string& approximate) : GELU(GELUOptions().approximate(approximate)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  GELUOptions options;
};

class SiLU : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& input) override;
};

class Softmax : public Module {
 public:
  explicit Softmax(int64_t dim) : dim(dim) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  int64_t dim;
};

class LogSoftmax : public Module {
 public:
  explicit LogSoftmax(int64_t dim) : dim(dim) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;
  int64_t dim;
};

struct DropoutOptions {
  DropoutOptions(double p = 0.5) : p_(p) {}  // NOLINT: implicit, like libtorch
  MANTISSA_ARG(double, p);
};

// Zeroes each element with probability p in training and scales the rest by 1/(1-p); identity
// in eval mode.
class Dropout : public Module {
 public:
  explicit Dropout(const DropoutOptions& options = {});
  explicit Dropout(double p) : Dropout(DropoutOptions(p)) {}
  Tensor forward(const Tensor& input) override;
  std::string extra_repr() const override;

  DropoutOptions options;
};

}  // namespace mantissa::nn
