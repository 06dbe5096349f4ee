// The differentiable op API (namespace mantissa), libtorch-style free functions. Each op
// checks its arguments, dispatches to core/kernels, and records its backward when needed.
// Implementations live in autograd/ops/<family>.cpp, one family per file.
#pragma once

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/tensor.h"

namespace mantissa {

enum class Reduction { None, Mean, Sum };

// Views, copies, casts (autograd/ops/view.cpp) ---------------------------------------------
Tensor view(const Tensor& x, const Shape& shape);       // one dim may be -1
Tensor reshape(const Tensor& x, const Shape& shape);    // view when possible, else a copy
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const Shape& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);     // -1 keeps a dim
Tensor squeeze(const Tensor& x);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType dtype);          // differentiable cast
Tensor to_device(const Tensor& x, Device device);

// Elementwise binary with broadcasting and type promotion (autograd/ops/binary.cpp) ---------
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Comparisons give Bool and are not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);

// Elementwise unary (autograd/ops/unary.cpp) -----------------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, const std::string& approximate = "none");  // "none" (erf) or "tanh"
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);

// Reductions (autograd/ops/reduce.cpp). Empty dims = all dims. F16/BF16 accumulate in F32.
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const Shape& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim = false);
std::tuple<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);  // values, indices (I64)
std::tuple<Tensor, Tensor> min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor var(const Tensor& x, const Shape& dims, int64_t correction = 1, bool keepdim = false);

// Linear algebra (autograd/ops/linalg.cpp). F32/F64 and BF16 via oneDNN; F16 is computed
// in F32 on F16 inputs and rounded once.
Tensor matmul(const Tensor& a, const Tensor& b);   // torch.matmul semantics (1-D, 2-D, batched)
Tensor mm(const Tensor& a, const Tensor& b);
Tensor bmm(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());  // x W^T + b

// Convolution and pooling, NCHW (autograd/ops/conv.cpp, autograd/ops/pool.cpp) -------------
struct Conv2dOptions {
  std::vector<int64_t> stride{1, 1};
  std::vector<int64_t> padding{0, 0};
  std::vector<int64_t> dilation{1, 1};
  int64_t groups = 1;
};
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dOptions& options = {});
Tensor max_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride = {},
                  std::vector<int64_t> padding = {0, 0}, bool ceil_mode = false);
Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> kernel, std::vector<int64_t> stride = {},
                  std::vector<int64_t> padding = {0, 0}, bool ceil_mode = false, bool count_include_pad = true);
Tensor adaptive_avg_pool2d(const Tensor& x, std::vector<int64_t> output_size);

// Normalization (autograd/ops/norm.cpp). Statistics are computed in F32 (F64 for F64).
// batch_norm updates running_mean/running_var in place when training and they are defined
// (unbiased variance, like PyTorch).
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5);
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

// Softmax and losses (autograd/ops/loss.cpp). Numerically stable (max subtracted).
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// logits [N, C] (or [N, C, d...]); target I64 class indices [N] (or [N, d...]).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, Reduction reduction = Reduction::Mean,
                     int64_t ignore_index = -100, double label_smoothing = 0.0);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, Reduction reduction = Reduction::Mean,
                int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);

// Fake quantization (autograd/ops/quant.cpp) ---------------------------------------------
// torch.fake_quantize_per_tensor_affine / _per_channel_affine: x quantized
// to [qmin, qmax] codes and dequantized, in F32 (quant/ has the rounding rule); the gradient is
// the straight-through estimator: it passes where x is representable and is zero outside.
// scale is F32, zero_point I32: 0-d (per tensor) or [C] along axis (per channel).
Tensor fake_quantize_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t qmin,
                                       int64_t qmax);
Tensor fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point, int64_t qmin, int64_t qmax);
Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                                        int64_t qmin, int64_t qmax);
// LSQ (torch._fake_quantize_learnable_per_tensor_affine / _per_channel_affine): scale and
// zero_point (F32, [1] or [C]) are learned too; their gradients are the per-element clamp
// derivatives summed over the elements, times grad_factor (LSQ's 1/sqrt(numel * qmax)).
// The forward rounds the zero point to an integer; the result has x's dtype, computed in F32.
Tensor fake_quantize_learnable_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                 int64_t qmin, int64_t qmax, double grad_factor = 1.0);
Tensor fake_quantize_learnable_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                  int64_t axis, int64_t qmin, int64_t qmax, double grad_factor = 1.0);

// Dropout, embedding, joining, indexing (autograd/ops/index.cpp) ----------------------------

// Dropout draws its mask from the default generator (Philox), scaling kept values by 1/(1-p).
Tensor dropout(const Tensor& x, double p, bool training);
Tensor embedding(const Tensor& weight, const Tensor& indices);  // indices I32/I64, any shape
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

// Random factories (autograd/ops/random.cpp): Philox streams from a generator, default
// the global one.
class Generator;
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);
Tensor bernoulli(const Shape& shape, double p, TensorOptions options = {}, Generator* gen = nullptr);
Tensor& uniform_(Tensor& t, double lo, double hi, Generator* gen = nullptr);
Tensor& normal_(Tensor& t, double mean, double std, Generator* gen = nullptr);

// Autograd entry points (autograd/engine.cpp) -------------------------------------------------
namespace autograd {
// Gradients of outputs w.r.t. inputs without touching any .grad. grad_outputs may be empty
// for scalar outputs. allow_unused: an input the outputs do not depend on yields an
// undefined tensor instead of an error.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool allow_unused = false);
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              bool retain_graph = false);
}  // namespace autograd

}  // namespace mantissa
