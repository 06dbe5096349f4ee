#include "core/tensor.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/kernels/copy.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/loops.h"

namespace mantissa {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  MANTISSA_CHECK(dim >= lo && dim <= hi, op, ": dimension ", dim, " is out of range for a ", ndim,
                 "-d tensor (expected in [", lo, ", ", hi, "])");
  return dim < 0 ? dim + (ndim == 0 ? 1 : ndim) : dim;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    MANTISSA_CHECK(s >= 0, "shape: negative size ", s, " in ", shape_str(shape));
    MANTISSA_CHECK(s == 0 || n <= std::numeric_limits<int64_t>::max() / s, "shape: ", shape_str(shape),
                   " has too many elements");
    n *= s;
  }
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MANTISSA_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                   " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

DType result_type(const Tensor& a, const Tensor& b) {
  DType da = a.dtype(), db = b.dtype();
  auto kind_rank = [](DType t) { return is_floating(t) ? 2 : (t == DType::Bool ? 0 : 1); };
  bool sa = a.dim() == 0, sb = b.dim() == 0;
  if (sa != sb) {
    // A 0-dim tensor participates only when it is of a higher kind than the other operand.
    const Tensor& dims = sa ? b : a;
    const Tensor& scal = sa ? a : b;
    if (kind_rank(scal.dtype()) <= kind_rank(dims.dtype())) return dims.dtype();
    return is_floating(scal.dtype()) ? DType::F32 : DType::I64;
  }
  return promote_types(da, db);
}

// Metadata ------------------------------------------------------------------------------------
namespace {
const TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  MANTISSA_CHECK(p != nullptr, "tensor: operation on an undefined tensor (default-constructed Tensor)");
  return *p;
}
}  // namespace

const Shape& Tensor::sizes() const { return checked(impl_).sizes; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::size(int64_t d) const { return sizes()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : sizes()) n *= s;
  return n;
}
int64_t Tensor::storage_offset() const { return checked(impl_).offset; }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device(); }
const StoragePtr& Tensor::storage() const { return checked(impl_).storage; }

const std::shared_ptr<const QuantMeta>& Tensor::quant_meta() const { return checked(impl_).quant; }

float Tensor::q_scale() const {
  MANTISSA_CHECK(is_quantized(), "q_scale: the tensor (", dtype(), ", shape ", shape_str(sizes()),
                 ") is not quantized; make one with make_per_tensor_quantized or quant::quantize_per_tensor");
  return impl_->quant->scale;
}

int32_t Tensor::q_zero_point() const {
  MANTISSA_CHECK(is_quantized(), "q_zero_point: the tensor (", dtype(), ", shape ", shape_str(sizes()),
                 ") is not quantized; make one with make_per_tensor_quantized or quant::quantize_per_tensor");
  return impl_->quant->zero_point;
}
void* Tensor::data_ptr() const {
  const TensorImpl& t = checked(impl_);
  return static_cast<char*>(t.storage->data()) + t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked(impl_);
  int64_t expected = 1;
  for (int64_t d = static_cast<int64_t>(t.sizes.size()) - 1; d >= 0; --d) {
    if (t.sizes[d] == 1) continue;
    if (t.sizes[d] == 0) return true;
    if (t.strides[d] != expected) return false;
    expected *= t.sizes[d];
  }
  return true;
}

// Factories -----------------------------------------------------------------------------------
Tensor empty_strided(const Shape& shape, const Shape& strides, TensorOptions options) {
  MANTISSA_CHECK(shape.size() == strides.size(), "empty_strided: shape ", shape_str(shape), " and strides ",
                 shape_str(strides), " differ in length");
  int64_t n = shape_numel(shape);
  int64_t extent = 0;
  if (n > 0) {
    for (size_t i = 0; i < shape.size(); ++i) {
      MANTISSA_CHECK(strides[i] >= 0, "empty_strided: negative stride in ", shape_str(strides));
      extent += (shape[i] - 1) * strides[i];
    }
    extent += 1;
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(extent) * dtype_size(options.dtype_), options.device_,
                                            options.pinned_memory_);
  impl->sizes = shape;
  impl->strides = strides;
  impl->dtype = options.dtype_;
  Tensor t(std::move(impl));
  if (options.requires_grad_) t.requires_grad_(true);
  return t;
}

Tensor empty(const Shape& shape, TensorOptions options) {
  return empty_strided(shape, contiguous_strides(shape), options);
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  bool rg = options.requires_grad_;
  options.requires_grad_ = false;
  Tensor t = empty(shape, options);
  kernels::fill(t, value);
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor zeros(const Shape& shape, TensorOptions options) {
  bool rg = options.requires_grad_;
  options.requires_grad_ = false;
  Tensor t = empty(shape, options);
  kernels::zero_bytes(t.data_ptr(), t.device(), t.nbytes());
  if (rg) t.requires_grad_(true);
  return t;
}

Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1.0, options); }
Tensor scalar_tensor(double value, TensorOptions options) { return full({}, value, options); }

Tensor arange(double end, TensorOptions options) { return arange(0.0, end, 1.0, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  MANTISSA_CHECK(step != 0 && std::isfinite(step) && std::isfinite(start) && std::isfinite(end),
                 "arange: start ", start, ", end ", end, " and step ", step, " must be finite with step != 0");
  MANTISSA_CHECK((step > 0 && end >= start) || (step < 0 && end <= start), "arange: step ", step,
                 " has the wrong sign for the range [", start, ", ", end, ")");
  double count = std::ceil((end - start) / step);
  MANTISSA_CHECK(count < 9e15, "arange: too many elements");
  int64_t n = static_cast<int64_t>(count);
  Tensor t64 = empty({n}, DType::F64);
  double* p = t64.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + static_cast<double>(i) * step;
  bool rg = options.requires_grad_;
  options.requires_grad_ = false;
  Tensor out = empty({n}, TensorOptions(options.dtype_));
  kernels::copy(out, t64);
  if (!options.device_.is_cpu()) out = out.to(options.device_);
  if (rg) out.requires_grad_(true);
  return out;
}

Tensor Tensor::pin_memory() const {
  MANTISSA_CHECK(is_cpu(), "pin_memory: only CPU tensors can be pinned, got one on ", device());
  if (is_pinned() && is_contiguous()) return *this;
  Tensor out = empty(sizes(), TensorOptions(dtype()).pinned_memory());
  kernels::copy(out, *this);
  out.impl()->quant = impl_->quant;  // a quantized tensor's codes keep their meaning
  return out;
}

bool Tensor::is_pinned() const { return storage()->pinned(); }

Tensor empty_like(const Tensor& t) { return empty(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor empty_like(const Tensor& t, DType dtype) { return empty(t.sizes(), TensorOptions(dtype).device(t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.sizes(), TensorOptions(t.dtype()).device(t.device())); }
Tensor full_like(const Tensor& t, double value) {
  return full(t.sizes(), value, TensorOptions(t.dtype()).device(t.device()));
}

namespace {
template <typename S>
Tensor from_host(const std::vector<S>& values, const Shape& shape, TensorOptions options) {
  int64_t n = shape_numel(shape);
  MANTISSA_CHECK(n == static_cast<int64_t>(values.size()), "from_vector: ", values.size(),
                 " values do not fill shape ", shape_str(shape), " (", n, " elements)");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(values.size() * sizeof(S), kCPU);
  impl->sizes = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype_of<S>;
  if (!values.empty()) std::memcpy(impl->storage->data(), values.data(), values.size() * sizeof(S));
  Tensor host(std::move(impl));
  Tensor out = host;
  if (options.dtype_ != host.dtype()) {
    out = empty(shape, TensorOptions(options.dtype_));
    kernels::copy(out, host);
  }
  if (!options.device_.is_cpu()) out = out.to(options.device_);
  if (options.requires_grad_) out.requires_grad_(true);
  return out;
}
}  // namespace

Tensor from_vector(const std::vector<float>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<int32_t>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }
Tensor from_vector(const std::vector<uint8_t>& v, const Shape& s, TensorOptions o) { return from_host(v, s, o); }

template <typename T>
std::vector<T> to_vector(const Tensor& t) {
  Tensor c = t.to(kCPU);
  if (c.dtype() != dtype_of<T> || !c.is_contiguous()) {
    Tensor conv = empty(c.sizes(), TensorOptions(dtype_of<T>));
    kernels::copy(conv, c);
    c = conv;
  }
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> to_vector<float>(const Tensor&);
template std::vector<double> to_vector<double>(const Tensor&);
template std::vector<int64_t> to_vector<int64_t>(const Tensor&);
template std::vector<int32_t> to_vector<int32_t>(const Tensor&);
template std::vector<uint8_t> to_vector<uint8_t>(const Tensor&);
template std::vector<int8_t> to_vector<int8_t>(const Tensor&);
template std::vector<bool> to_vector<bool>(const Tensor&);
template std::vector<Half> to_vector<Half>(const Tensor&);
template std::vector<BFloat16> to_vector<BFloat16>(const Tensor&);

template <typename T>
T Tensor::item() const {
  MANTISSA_CHECK(numel() == 1, "item: only a tensor with one element can be converted to a scalar (got shape ",
                 shape_str(sizes()), ")");
  return to_vector<T>(*this)[0];
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template int32_t Tensor::item<int32_t>() const;
template bool Tensor::item<bool>() const;
double Tensor::item_double() const { return item<double>(); }

// Printing ------------------------------------------------------------------------------------
namespace {
struct Formatter {
  bool integral = true;   // all finite values are whole numbers
  bool sci = false;
  int width = 1;
  bool is_float = true;

  std::string fmt(double v) const {
    char buf[64];
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (!is_float) {
      std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(v));
    } else if (sci) {
      std::snprintf(buf, sizeof(buf), "%.4e", v);
    } else if (integral) {
      std::snprintf(buf, sizeof(buf), "%.0f.", v);
    } else {
      std::snprintf(buf, sizeof(buf), "%.4f", v);
    }
    return buf;
  }
};

void print_rec(std::ostringstream& os, const std::vector<double>& vals, const Shape& sizes, size_t dim,
               int64_t offset, const Formatter& f, int indent, bool bools) {
  int64_t stride = 1;
  for (size_t d = dim + 1; d < sizes.size(); ++d) stride *= sizes[d];
  const int64_t n = sizes[dim];
  const bool summarize = n > 6 && static_cast<int64_t>(vals.size()) > 1000;
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && i == 3) {
      os << (dim + 1 == sizes.size() ? "...," : "...,\n" + std::string(indent + 1, ' '));
      if (dim + 1 == sizes.size()) os << " ";
      i = n - 3;
    }
    if (dim + 1 == sizes.size()) {
      double v = vals[offset + i];
      std::string s = bools ? (v != 0 ? "True" : "False") : f.fmt(v);
      os << std::string(std::max<int>(0, f.width - static_cast<int>(s.size())), ' ') << s;
    } else {
      print_rec(os, vals, sizes, dim + 1, offset + i * stride, f, indent + 1, bools);
    }
    if (i + 1 < n) {
      os << ",";
      if (dim + 1 == sizes.size()) {
        os << " ";
      } else {
        os << std::string(sizes.size() - dim - 1, '\n') << std::string(indent + 1, ' ');
      }
    }
  }
  os << "]";
}
}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "[ undefined Tensor ]";
  std::vector<double> vals = to_vector<double>(*this);
  const bool quantized = is_quantized();
  if (quantized) {
    // PyTorch prints the values a quantized tensor stands for, computed as dequantize does
    // (F32 (q - zero_point) * scale), then its quantization parameters.
    for (double& v : vals) v = static_cast<float>(static_cast<int32_t>(v) - q_zero_point()) * q_scale();
  }
  Formatter f;
  f.is_float = quantized || is_floating(dtype());
  double amax = 0, amin = std::numeric_limits<double>::infinity();
  for (double v : vals) {
    if (!std::isfinite(v)) continue;
    if (v != std::nearbyint(v)) f.integral = false;
    amax = std::max(amax, std::fabs(v));
    if (v != 0) amin = std::min(amin, std::fabs(v));
  }
  if (f.is_float && amax > 0) {
    if (f.integral) f.sci = amax >= 1e8;
    else f.sci = amax / amin > 1000.0 || amax > 1e8 || amin < 1e-4;
  }
  for (double v : vals) f.width = std::max<int>(f.width, static_cast<int>(f.fmt(v).size()));
  std::ostringstream os;
  os << "tensor(";
  bool bools = dtype() == DType::Bool;
  if (dim() == 0) {
    os << (bools ? (vals[0] != 0 ? "True" : "False") : f.fmt(vals[0]));
  } else if (numel() == 0) {
    os << "[]";
  } else {
    f.width = bools ? 5 : f.width;
    print_rec(os, vals, sizes(), 0, 0, f, 7, bools);
  }
  if ((numel() == 0 && dim() > 1) || quantized) {
    std::string s = shape_str(sizes());
    os << ", size=(" << s.substr(1, s.size() - 2) << (dim() == 1 ? ",)" : ")");
  }
  if (!device().is_cpu()) os << ", device='" << device() << "'";
  if (quantized) {
    // The scale printed as the shortest decimal that reads back to the same float.
    char buf[32];
    auto res = std::to_chars(buf, buf + sizeof(buf), q_scale());
    os << ", dtype=" << (dtype() == DType::U8 ? "quint8" : "qint8") << ",\n       quantization_scheme=per_tensor_affine"
       << ", scale=" << std::string(buf, res.ptr) << ", zero_point=" << q_zero_point();
  } else if (dtype() != DType::F32 && dtype() != DType::I64 && dtype() != DType::Bool) {
    os << ", dtype=" << dtype_name(dtype());
  }
  if (grad_fn()) {
    os << ", grad_fn=<" << grad_fn_name() << ">";
  } else if (requires_grad()) {
    os << ", requires_grad=True";
  }
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace mantissa

namespace mantissa::kernels {

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  const Shape& ts = t.sizes();
  const Shape& st = t.strides();
  MANTISSA_ASSERT(ts.size() <= shape.size(), "broadcast of ", shape_str(ts), " to ", shape_str(shape));
  Shape out(shape.size(), 0);
  size_t lead = shape.size() - ts.size();
  for (size_t i = 0; i < ts.size(); ++i) {
    MANTISSA_ASSERT(ts[i] == shape[lead + i] || ts[i] == 1, "broadcast of ", shape_str(ts), " to ", shape_str(shape));
    out[lead + i] = ts[i] == 1 ? 0 : st[i];
  }
  return out;
}

}  // namespace mantissa::kernels
