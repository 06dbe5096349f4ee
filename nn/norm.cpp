// nn::BatchNorm1d/2d and nn::LayerNorm: PyTorch's module logic around the batch_norm and
// layer_norm ops (which momentum factor, when batch statistics are used, the counter update).
#include "nn/norm.h"

#include "nn/init.h"

namespace mantissa::nn {

BatchNormBase::BatchNormBase(const BatchNormOptions& opts) : options(opts) {
  const int64_t c = options.num_features();
  MANTISSA_CHECK(c > 0, "BatchNorm: num_features must be positive (got ", c, ")");
  MANTISSA_CHECK(options.eps() >= 0, "BatchNorm: eps must be non-negative (got ", options.eps(), ")");
  if (options.affine()) {
    weight = register_parameter("weight", empty({c}));
    bias = register_parameter("bias", empty({c}));
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", empty({c}));
    running_var = register_buffer("running_var", empty({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::I64));
  }
  reset_parameters();
}

void BatchNormBase::reset_running_stats() {
  if (!options.track_running_stats()) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNormBase::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

void BatchNormBase::check_input(const Tensor& input) const {
  MANTISSA_CHECK(input.defined(), name(), ": the input is an undefined tensor");
  check_input_dim(input);
  MANTISSA_CHECK(input.size(1) == options.num_features(), name(), ": input ", shape_str(input.sizes()), " has ",
                 input.size(1), " channels (dim 1) but the layer has num_features ", options.num_features());
}

Tensor BatchNormBase::forward(const Tensor& input) {
  if (folded_into_conv_) {
    // Already normalized inside the fused conv's forward; see set_folded_into_conv.
    check_input(input);
    return input;
  }
  return normalize(input);
}

Tensor BatchNormBase::normalize(const Tensor& input) {
  check_input(input);
  double factor = options.momentum().value_or(0.0);
  if (is_training() && options.track_running_stats()) {
    NoGradGuard no_grad;
    num_batches_tracked.add_(1.0);
    if (!options.momentum()) factor = 1.0 / static_cast<double>(num_batches_tracked.item<int64_t>());
  }
  // Batch statistics in training, and in eval too when no running statistics are kept.
  const bool use_batch_stats = is_training() || !running_mean.defined();
  const bool pass_running = !is_training() || options.track_running_stats();
  return batch_norm(input, weight, bias, pass_running ? running_mean : Tensor(),
                    pass_running ? running_var : Tensor(), use_batch_stats, factor, options.eps());
}

std::string BatchNormBase::extra_repr() const {
  return std::to_string(options.num_features()) + ", eps=" + detail::py_float(options.eps()) +
         ", momentum=" + (options.momentum() ? detail::py_float(*options.momentum()) : std::string("None")) +
         ", affine=" + detail::py_bool(options.affine()) +
         ", track_running_stats=" + detail::py_bool(options.track_running_stats());
}

void BatchNorm1d::check_input_dim(const Tensor& input) const {
  MANTISSA_CHECK(input.dim() == 2 || input.dim() == 3, "BatchNorm1d: expected 2D [N, C] or 3D [N, C, L] input, got ",
                 input.dim(), "D input of shape ", shape_str(input.sizes()));
}

void BatchNorm2d::check_input_dim(const Tensor& input) const {
  MANTISSA_CHECK(input.dim() == 4, "BatchNorm2d: expected 4D [N, C, H, W] input, got ", input.dim(),
                 "D input of shape ", shape_str(input.sizes()));
}

LayerNorm::LayerNorm(const LayerNormOptions& opts) : options(opts) {
  for (int64_t d : options.normalized_shape())
    MANTISSA_CHECK(d > 0, "LayerNorm: normalized_shape ", shape_str(options.normalized_shape()),
                   " must have positive sizes");
  MANTISSA_CHECK(!options.normalized_shape().empty(), "LayerNorm: normalized_shape must not be empty");
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", empty(options.normalized_shape()));
    bias = register_parameter("bias", empty(options.normalized_shape()));
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (!options.elementwise_affine()) return;
  init::ones_(weight);
  init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& input) {
  MANTISSA_CHECK(input.defined(), "LayerNorm: the input is an undefined tensor");
  const Shape& ns = options.normalized_shape();
  const int64_t k = static_cast<int64_t>(ns.size());
  bool ok = input.dim() >= k;
  for (int64_t i = 0; ok && i < k; ++i) ok = input.size(input.dim() - k + i) == ns[static_cast<size_t>(i)];
  MANTISSA_CHECK(ok, "layer_norm: input ", shape_str(input.sizes()), " does not end with normalized_shape ",
                 shape_str(ns));
  return layer_norm(input, ns, weight, bias, options.eps());
}

std::string LayerNorm::extra_repr() const {
  return detail::py_tuple(options.normalized_shape()) + ", eps=" + detail::py_float(options.eps()) +
         ", elementwise_affine=" + detail::py_bool(options.elementwise_affine());
}

}  // namespace mantissa::nn
