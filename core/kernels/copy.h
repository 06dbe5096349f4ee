// Copy with broadcasting and dtype conversion, and fill, on any device. The contiguous
// F32<->F16/BF16 CPU cases go through the vectorized converters of convert.h; other CPU cases
// through map(); CUDA tensors through copy.cu; copies between devices stage the bytes.
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>

#include "core/tensor.h"

namespace mantissa::kernels {

// dst[...] = src[...] converted to dst's dtype; src broadcasts to dst's shape. Any layouts, any
// two devices: a cross-device copy moves src's bytes (made contiguous on its own device) and
// converts on dst's device. Host -> device copies are asynchronous on the current stream (the
// host bytes are staged in, or already are, pinned memory); device -> host copies return when
// the bytes have arrived.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);

// The element conversion every copy uses (CUDA's store() in cuda_common.cuh is its device
// twin): F16/BF16 round to nearest even once (straight from double for F64 sources); floating
// -> integer truncates toward zero, saturates at the type's range and maps NaN to 0 (C++ leaves
// those undefined); -> bool is "!= 0".
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

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
// Both tensors on the same CUDA device; src broadcasts to dst. Same dtype copies bits exactly.
void copy(const Tensor& dst, const Tensor& src);
void fill(const Tensor& dst, double value);
// Raw transfers on `device`'s current stream. Host -> device: from `src_pinned_block` (the
// pinned allocation holding src) directly and asynchronously, or when it is null through
// pinned staging buffers; returns before the copy finishes either way (the staging buffers are
// reused only after it has). Device -> host: waits until the bytes are in dst.
void copy_host_to_device(void* dst, int device, const void* src, size_t nbytes, void* src_pinned_block);
void copy_device_to_host(void* dst, const void* src, int device, size_t nbytes, bool dst_pinned);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
