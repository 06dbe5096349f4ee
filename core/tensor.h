// Tensor: a cheap-to-copy handle to shared state (storage, sizes, strides, offset, dtype and
// autograd metadata). Views share storage and therefore the version counter. Methods that are
// differentiable ops forward to the op API in autograd/ops.h, which defines them.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/storage.h"

namespace mantissa {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[64, 784]"

namespace autograd {
struct AutogradMeta;
class Node;
}  // namespace autograd

// Options for factories, libtorch style: zeros({2, 3}, TensorOptions().dtype(DType::F16)).
struct TensorOptions {
  DType dtype_ = DType::F32;
  Device device_ = kCPU;
  bool requires_grad_ = false;
  bool pinned_memory_ = false;  // CPU tensors in page-locked memory (see Tensor::pin_memory)

  TensorOptions() = default;
  TensorOptions(DType d) : dtype_(d) {}    // NOLINT: implicit, as in libtorch
  TensorOptions(Device d) : device_(d) {}  // NOLINT
  TensorOptions& dtype(DType d) { dtype_ = d; return *this; }
  TensorOptions& device(Device d) { device_ = d; return *this; }
  TensorOptions& requires_grad(bool r = true) { requires_grad_ = r; return *this; }
  TensorOptions& pinned_memory(bool p = true) { pinned_memory_ = p; return *this; }
};

// Per-tensor affine quantization of a U8/I8 tensor (PyTorch's per_tensor_affine): the tensor's
// own elements are the codes q, and the real values they stand for are (q - zero_point) * scale.
struct QuantMeta {
  float scale;
  int32_t zero_point;
};

struct TensorImpl {
  StoragePtr storage;
  Shape sizes;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::F32;
  std::shared_ptr<autograd::AutogradMeta> autograd;  // null for tensors that never touched autograd
  std::shared_ptr<const QuantMeta> quant;            // null for ordinary tensors (core/quantized.h)
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // Metadata ------------------------------------------------------------------
  const Shape& sizes() const;
  const Shape& strides() const;
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t dim() const { return static_cast<int64_t>(sizes().size()); }
  int64_t numel() const;
  int64_t storage_offset() const;
  DType dtype() const;
  Device device() const;
  bool is_cpu() const { return device().is_cpu(); }
  bool is_cuda() const { return device().is_cuda(); }
  bool is_floating_point() const { return is_floating(dtype()); }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype()); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  const StoragePtr& storage() const;

  // Quantized tensors (core/quantized.h): U8/I8 codes with a per-tensor scale and zero point.
  // Only views, copies, relu, max_pool2d and dropout in eval accept them; every other op refuses.
  bool is_quantized() const { return impl_ != nullptr && impl_->quant != nullptr; }
  float q_scale() const;          // throws on a tensor that is not quantized
  int32_t q_zero_point() const;
  const std::shared_ptr<const QuantMeta>& quant_meta() const;  // null when not quantized

  void* data_ptr() const;  // first element (storage + offset)
  template <typename T>
  T* data() const {
    MANTISSA_CHECK(dtype() == dtype_of<T>, "data: tensor has dtype ", dtype(), " but ", dtype_name(dtype_of<T>),
                   " was requested");
    return static_cast<T*>(data_ptr());
  }

  // Version counter, shared by all views of one storage; bumped by every in-place op.
  uint32_t version() const { return storage()->version(); }
  void bump_version() const { storage()->bump_version(); }

  // Autograd ------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);
  Tensor grad() const;                 // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g) const;
  Tensor& mutable_grad() const;        // for optimizers and zero_grad
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  std::string grad_fn_name() const;    // "AddBackward", or "" for leaves
  uint32_t output_nr() const;
  bool is_leaf() const;
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  // A hook sees the gradient flowing into this tensor and may return a replacement (or an
  // undefined Tensor to keep it). Runs before accumulation into .grad for leaves.
  void register_hook(std::function<Tensor(const Tensor&)> hook) const;
  void retain_grad() const;            // keep .grad for a non-leaf tensor
  Tensor detach() const;               // shares storage; no autograd history
  Tensor& detach_();

  // Replaces this tensor's data (storage, geometry, dtype) with src's while keeping its identity
  // and autograd state, like PyTorch's `param.data = src`: every handle to this tensor (a
  // module's member and its parameter list) sees the new data. A .grad of another shape or
  // dtype is dropped.
  void set_data(const Tensor& src) const;

  // Element access ------------------------------------------------------------
  template <typename T>
  T item() const;                      // single-element tensors only
  double item_double() const;

  // Views (share storage) -------------------------------------------------------
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const;                    // 2-D transpose
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor expand_as(const Tensor& other) const { return expand(other.sizes()); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;

  // Conversions -----------------------------------------------------------------
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor to(Device device, DType dtype) const;
  Tensor cpu() const { return to(kCPU); }
  // A contiguous copy in page-locked host memory, without autograd history (this tensor itself
  // when it already is pinned and contiguous). Copies from pinned memory to a GPU are
  // asynchronous on the current stream: do not write to the source until the stream is
  // synchronized. Without a usable CUDA driver the copy is ordinary memory and is_pinned()
  // stays false.
  Tensor pin_memory() const;
  bool is_pinned() const;

  // In-place (bump the version) --------------------------------------------------
  Tensor& copy_(const Tensor& src);    // broadcasting, dtype-converting copy
  Tensor& fill_(double value);
  Tensor& zero_();
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& add_(double value);
  Tensor& sub_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double value);
  Tensor& div_(const Tensor& other);
  Tensor& div_(double value);
  Tensor& clamp_(std::optional<double> min, std::optional<double> max);
  Tensor& relu_();

  // Common ops as methods ---------------------------------------------------------
  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor abs() const;
  Tensor neg() const;
  Tensor pow(double exponent) const;
  Tensor relu() const;
  Tensor sigmoid() const;
  Tensor tanh() const;
  Tensor argmax(int64_t dim, bool keepdim = false) const;

  std::string str() const;             // printed like PyTorch's repr

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Factories -------------------------------------------------------------------------
Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor empty_strided(const Shape& shape, const Shape& strides, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor arange(double end, TensorOptions options = {});
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = {});
Tensor scalar_tensor(double value, TensorOptions options = {});
Tensor empty_like(const Tensor& t);
Tensor empty_like(const Tensor& t, DType dtype);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

// From host data: converted element by element to options.dtype (F32 by default for
// floating point input, I64 for integers), like torch.tensor.
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions options = {});
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions options = {DType::F64});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, TensorOptions options = {DType::I64});
Tensor from_vector(const std::vector<int32_t>& values, const Shape& shape, TensorOptions options = {DType::I32});
Tensor from_vector(const std::vector<uint8_t>& values, const Shape& shape, TensorOptions options = {DType::U8});
// Copies the (contiguous) values out, converted to T. A quantized tensor gives its codes (use
// quant::dequantize for the values they stand for).
template <typename T>
std::vector<T> to_vector(const Tensor& t);

// Shape helpers shared by ops ---------------------------------------------------------
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);  // checks range, wraps negatives
int64_t shape_numel(const Shape& shape);                       // checks for overflow
Shape contiguous_strides(const Shape& shape);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Result dtype of a binary op on a and b: a 0-dim tensor only decides when it is of a
// higher kind (float over integer), as in PyTorch.
DType result_type(const Tensor& a, const Tensor& b);

}  // namespace mantissa
