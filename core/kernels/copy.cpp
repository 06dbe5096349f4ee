#include "core/kernels/copy.h"

#include "core/kernels/convert.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/loops.h"

#include <cstring>
#include <limits>

namespace mantissa::kernels {

namespace {
bool same_layout_contiguous(const Tensor& dst, const Tensor& src) {
  return dst.is_contiguous() && src.is_contiguous() && dst.numel() == src.numel();
}

// Fast paths for the casts that training does all the time.
bool try_convert_fast(const Tensor& dst, const Tensor& src) {
  if (!same_layout_contiguous(dst, src)) return false;
  const int64_t n = dst.numel();
  DType d = dst.dtype(), s = src.dtype();
  if (s == DType::F32 && d == DType::F16) convert_f32_to_f16(src.data<float>(), dst.data<Half>(), n);
  else if (s == DType::F16 && d == DType::F32) convert_f16_to_f32(src.data<Half>(), dst.data<float>(), n);
  else if (s == DType::F32 && d == DType::BF16) convert_f32_to_bf16(src.data<float>(), dst.data<BFloat16>(), n);
  else if (s == DType::BF16 && d == DType::F32) convert_bf16_to_f32(src.data<BFloat16>(), dst.data<float>(), n);
  else return false;
  return true;
}

template <typename D, typename S>
D convert_value(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return static_cast<compute_t<S>>(v) != compute_t<S>(0);
  } else if constexpr (std::is_same_v<D, Half> || std::is_same_v<D, BFloat16>) {
    if constexpr (std::is_same_v<S, double>) {
      return D(v);  // direct from double: no double rounding through float
    } else {
      return D(static_cast<float>(static_cast<compute_t<S>>(v)));
    }
  } else if constexpr (std::is_integral_v<D> && (std::is_floating_point_v<compute_t<S>>)) {
    // Float -> integer truncates toward zero like PyTorch; NaN/Inf/out-of-range are undefined
    // in C++, so saturate instead of invoking UB.
    using C = compute_t<S>;
    C x = static_cast<C>(v);
    if (!(x == x)) return D(0);
    if (x <= static_cast<C>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
    if (x >= static_cast<C>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(x);
  } else {
    return static_cast<D>(static_cast<compute_t<S>>(v));
  }
}
}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.device() != src.device()) {
    MANTISSA_CHECK(dst.is_contiguous() && dst.sizes() == src.sizes(), "copy: a cross-device copy from ", src.device(),
                   " to ", dst.device(), " needs a contiguous destination of the source's shape (got ",
                   shape_str(src.sizes()), " -> ", shape_str(dst.sizes()), ")");
    Tensor staged = src;
    if (src.dtype() != dst.dtype() || !src.is_contiguous()) {
      staged = empty(src.sizes(), TensorOptions(dst.dtype()).device(src.device()));
      copy(staged, src);
    }
    copy_bytes(dst.data_ptr(), dst.device(), staged.data_ptr(), staged.device(), dst.nbytes());
    return;
  }
  MANTISSA_CHECK(dst.is_cpu(), "copy: CUDA kernels are not part of this build's CPU backend (device ", dst.device(),
                 ")");
  if (try_convert_fast(dst, src)) return;
  if (dst.dtype() == src.dtype() && same_layout_contiguous(dst, src)) {
    // Split large copies across threads: one core cannot saturate memory bandwidth.
    char* d = static_cast<char*>(dst.data_ptr());
    const char* s = static_cast<const char*>(src.data_ptr());
    parallel_for(static_cast<int64_t>(dst.nbytes()), int64_t(1) << 20,
                 [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
    return;
  }
  visit_dtype<kAllTypes>(dst.dtype(), "copy", [&]<typename D>() {
    visit_dtype<kAllTypes>(src.dtype(), "copy", [&]<typename S>() {
      map<D, S>(dst, [](auto v) { return convert_value<D>(static_cast<S>(v)); }, src);
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  MANTISSA_CHECK(dst.is_cpu(), "fill: CUDA kernels are not part of this build's CPU backend (device ", dst.device(),
                 ")");
  visit_dtype<kAllTypes>(dst.dtype(), "fill", [&]<typename D>() {
    const D v = convert_value<D>(value);
    map<D>(dst, [v]() { return v; });
  });
}

}  // namespace mantissa::kernels
