// The one autocast call every op makes at entry: when an autocast region is active on this
// thread, the op's tensor arguments are cast per its ops.def category (amp/autocast.cpp does the
// casting and caching) and the op re-enters itself with the cast tensors. Outside autocast it
// costs one thread-local load. The same entry refuses quantized tensors (core/quantized.h): the
// few ops defined on them (relu, max_pool2d, dropout in eval, views and copies) handle them before
// this call, so any quantized argument reaching it is an error; that check is one pointer test
// per tensor.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <vector>

#include "autograd/op_id.h"
#include "core/tensor.h"

namespace mantissa::autograd {

namespace detail {
// Number of devices whose autocast is enabled on this thread (amp::AutocastGuard keeps it).
extern thread_local int autocast_enabled_devices;
}  // namespace detail

inline bool autocast_active() { return detail::autocast_enabled_devices > 0; }

namespace detail {
// Throws the Error for a quantized tensor given to op as argument `index` (autograd/quantized_check.cpp).
[[noreturn]] void refuse_quantized(OpId op, const Tensor& t, size_t index);

inline void check_not_quantized(OpId op, const Tensor* ts, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const TensorImpl* impl = ts[i].impl();
    if (impl != nullptr && impl->quant != nullptr) [[unlikely]] refuse_quantized(op, ts[i], i);
  }
}
}  // namespace detail

// Casts ts[0..n) in place per op's policy; returns whether any tensor changed. Undefined
// tensors stay undefined. Defined in amp/autocast.cpp.
bool autocast_cast(OpId op, Tensor* ts, size_t n);

// `if (auto c = autograd::autocast(OpId::mm, a, b)) return mm((*c)[0], (*c)[1]);`
template <typename... Ts>
inline std::optional<std::array<Tensor, sizeof...(Ts)>> autocast(OpId op, const Ts&... ts) {
  {
    const Tensor* args[] = {&ts...};
    for (size_t i = 0; i < sizeof...(Ts); ++i) {
      const TensorImpl* impl = args[i]->impl();
      if (impl != nullptr && impl->quant != nullptr) [[unlikely]] detail::refuse_quantized(op, *args[i], i);
    }
  }
  if (!autocast_active()) return std::nullopt;
  std::array<Tensor, sizeof...(Ts)> c{ts...};
  if (!autocast_cast(op, c.data(), c.size())) return std::nullopt;
  return c;
}

// The list form for cat/stack.
inline std::optional<std::vector<Tensor>> autocast_list(OpId op, const std::vector<Tensor>& ts) {
  detail::check_not_quantized(op, ts.data(), ts.size());
  if (!autocast_active()) return std::nullopt;
  std::vector<Tensor> c = ts;
  if (!autocast_cast(op, c.data(), c.size())) return std::nullopt;
  return c;
}

}  // namespace mantissa::autograd
