// Autocast state (thread-local per device type), the per-op policy table with overrides, the
// casting rules of each category and the cast cache of parameter copies for one region.
#include "amp/autocast.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <sstream>
#include <unordered_map>

#include "autograd/autocast_hook.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::autograd::detail {
thread_local int autocast_enabled_devices = 0;
}  // namespace mantissa::autograd::detail

namespace mantissa::amp {

namespace {

struct DeviceState {
  bool enabled = false;
  DType dtype;
};

struct CacheEntry {
  std::shared_ptr<TensorImpl> source;  // keeps the key's address from being reused
  uint32_t version = 0;
  bool grad_mode = true;
  Tensor cast;
};

struct ThreadState {
  // PyTorch's defaults: F16 on CUDA, BF16 on the CPU.
  std::array<DeviceState, 2> devices{DeviceState{false, DType::BF16}, DeviceState{false, DType::F16}};
  int guards = 0;  // live guards; the cache dies with the outermost
  std::unordered_map<const TensorImpl*, CacheEntry> cache;
  uint64_t hits = 0;
  uint64_t misses = 0;
};

ThreadState& state() {
  thread_local ThreadState s;
  return s;
}

size_t slot(DeviceType d) { return d == DeviceType::CPU ? 0 : 1; }

void recount(ThreadState& s) {
  int n = 0;
  for (const DeviceState& d : s.devices) n += d.enabled ? 1 : 0;
  autograd::detail::autocast_enabled_devices = n;
}

constexpr int8_t kNoOverride = -1;
std::array<std::atomic<int8_t>, kNumOps>& overrides() {
  static std::array<std::atomic<int8_t>, kNumOps> o;
  static const bool initialized = [] {
    for (auto& x : o) x.store(kNoOverride);
    return true;
  }();
  (void)initialized;
  return o;
}

void check_low(DType dtype, const char* what) {
  MANTISSA_CHECK(dtype == DType::F16 || dtype == DType::BF16, what, ": autocast runs in F16 or BF16, got ", dtype,
                 " (for F32, leave autocast off)");
}

// Floating, not F64, on a device whose autocast is on: the tensors autocast may touch.
bool eligible(const Tensor& t, const ThreadState& s) {
  if (!t.defined() || !t.is_floating_point() || t.dtype() == DType::F64) return false;
  return s.devices[slot(t.device().type)].enabled;
}

Tensor cast_to(const Tensor& t, DType target, ThreadState& s) {
  // Only parameters (leaves that require grad) are cached: their casts are reused by every op
  // of the region. The version check makes an in-place update inside the region recast.
  const bool cacheable = target != DType::F32 && t.dtype() == DType::F32 && t.is_leaf() && t.requires_grad();
  if (!cacheable) return to_dtype(t, target);
  const bool gm = GradMode::is_enabled();
  auto it = s.cache.find(t.impl());
  if (it != s.cache.end() && it->second.version == t.version() && it->second.grad_mode == gm &&
      it->second.cast.dtype() == target) {
    ++s.hits;
    return it->second.cast;
  }
  ++s.misses;
  Tensor c = to_dtype(t, target);
  s.cache[t.impl()] = CacheEntry{t.impl_ptr(), t.version(), gm, c};
  return c;
}

const char* category_dtype_text(AutocastCategory c) {
  switch (c) {
    case AutocastCategory::Lower: return "the autocast dtype (F16/BF16), F32 accumulation";
    case AutocastCategory::F32: return "F32 (16-bit inputs widened)";
    case AutocastCategory::F32Acc: return "F32 output, accumulates in F32";
    case AutocastCategory::Promote: return "the widest floating input";
    case AutocastCategory::Same: return "its input dtype";
  }
  return "?";
}

}  // namespace

AutocastGuard::AutocastGuard(DeviceType device, DType dtype, bool enabled) : device_(device) {
  if (enabled) check_low(dtype, "AutocastGuard");
  ThreadState& s = state();
  DeviceState& d = s.devices[slot(device)];
  prev_enabled_ = d.enabled;
  prev_dtype_ = d.dtype;
  d.enabled = enabled;
  if (enabled) d.dtype = dtype;
  ++s.guards;
  recount(s);
}

AutocastGuard::AutocastGuard(DeviceType device, bool enabled)
    : AutocastGuard(device, state().devices[slot(device)].dtype, enabled) {}

AutocastGuard::~AutocastGuard() {
  ThreadState& s = state();
  DeviceState& d = s.devices[slot(device_)];
  d.enabled = prev_enabled_;
  d.dtype = prev_dtype_;
  if (--s.guards == 0) s.cache.clear();
  recount(s);
}

bool is_autocast_enabled(DeviceType device) { return state().devices[slot(device)].enabled; }
DType autocast_dtype(DeviceType device) { return state().devices[slot(device)].dtype; }

AutocastCategory op_policy(OpId op) {
  int8_t o = overrides()[static_cast<size_t>(op)].load(std::memory_order_relaxed);
  return o == kNoOverride ? op_autocast_category(op) : static_cast<AutocastCategory>(o);
}

void set_op_policy(OpId op, AutocastCategory category) {
  overrides()[static_cast<size_t>(op)].store(static_cast<int8_t>(category));
}

void reset_op_policies() {
  for (auto& o : overrides()) o.store(kNoOverride);
}

std::string policy_table() {
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof line, "%-20s %-15s %s\n", "op", "category", "runs in");
  os << line;
  for (int i = 0; i < kNumOps; ++i) {
    auto op = static_cast<OpId>(i);
    AutocastCategory c = op_policy(op);
    bool overridden = c != op_autocast_category(op);
    std::snprintf(line, sizeof line, "%-20s %-15s %s%s\n", op_name(op), autocast_category_name(c),
                  category_dtype_text(c), overridden ? "  [overridden]" : "");
    os << line;
  }
  return os.str();
}

CastCacheStats cast_cache_stats() {
  const ThreadState& s = state();
  return CastCacheStats{s.cache.size(), s.hits, s.misses};
}

void clear_cast_cache() {
  ThreadState& s = state();
  s.cache.clear();
  s.hits = s.misses = 0;
}

}  // namespace mantissa::amp

namespace mantissa::autograd {

bool autocast_cast(OpId op, Tensor* ts, size_t n) {
  using amp::ThreadState;
  ThreadState& s = amp::state();
  const AutocastCategory cat = amp::op_policy(op);
  if (cat == AutocastCategory::Same) return false;
  bool changed = false;
  if (cat == AutocastCategory::Promote) {
    // Widest floating dtype among the eligible inputs (F16 with BF16 gives F32).
    bool any = false;
    DType widest = DType::F16;
    for (size_t i = 0; i < n; ++i) {
      if (!amp::eligible(ts[i], s)) continue;
      widest = any ? promote_types(widest, ts[i].dtype()) : ts[i].dtype();
      any = true;
    }
    if (!any) return false;
    for (size_t i = 0; i < n; ++i) {
      if (amp::eligible(ts[i], s) && ts[i].dtype() != widest) {
        ts[i] = amp::cast_to(ts[i], widest, s);
        changed = true;
      }
    }
    return changed;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!amp::eligible(ts[i], s)) continue;
    DType target = cat == AutocastCategory::Lower ? s.devices[amp::slot(ts[i].device().type)].dtype : DType::F32;
    if (ts[i].dtype() != target) {
      ts[i] = amp::cast_to(ts[i], target, s);
      changed = true;
    }
  }
  return changed;
}

}  // namespace mantissa::autograd
