// The one autocast call every op makes at entry: when an autocast region is active on this
// thread, the op's tensor arguments are cast per its ops.def category (amp/autocast.cpp does the
// casting and caching) and the op re-enters itself with the cast tensors. Outside autocast it
// costs one thread-local load.
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

// Casts ts[0..n) in place per op's policy; returns whether any tensor changed. Undefined
// tensors stay undefined. Defined in amp/autocast.cpp.
bool autocast_cast(OpId op, Tensor* ts, size_t n);

// `if (auto c = autograd::autocast(OpId::mm, a, b)) return mm((*c)[0], (*c)[1]);`
template <typename... Ts>
inline std::optional<std::array<Tensor, sizeof...(Ts)>> autocast(OpId op, const Ts&... ts) {
  if (!autocast_active()) return std::nullopt;
  std::array<Tensor, sizeof...(Ts)> c{ts...};
  if (!autocast_cast(op, c.data(), c.size())) return std::nullopt;
  return c;
}

// The list form for cat/stack.
inline std::optional<std::vector<Tensor>> autocast_list(OpId op, const std::vector<Tensor>& ts) {
  if (!autocast_active()) return std::nullopt;
  std::vector<Tensor> c = ts;
  if (!autocast_cast(op, c.data(), c.size())) return std::nullopt;
  return c;
}

}  // namespace mantissa::autograd
