// Autocast: a thread-local, nestable region in which ops run in the dtype their ops.def
// category chooses (Lower -> F16/BF16, F32, F32Acc, Promote, Same), the policy table that
// can be printed and overridden per op, and the cache of parameter casts for one region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "autograd/op_id.h"
#include "core/device.h"
#include "core/dtype.h"

namespace mantissa::amp {

// Turns autocast on (or off, enabled = false) for one device type until the guard dies; the
// previous state is restored then. dtype is F16 or BF16. Guards nest; the cast cache lives until
// the outermost guard of this thread exits.
class AutocastGuard {
 public:
  AutocastGuard(DeviceType device, DType dtype, bool enabled = true);
  explicit AutocastGuard(DeviceType device, bool enabled = true);  // keeps the current dtype
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DeviceType device_;
  bool prev_enabled_;
  DType prev_dtype_;
};

bool is_autocast_enabled(DeviceType device);
// The low dtype of the device's region (default: F16 on CUDA, BF16 on the CPU, as PyTorch).
DType autocast_dtype(DeviceType device);

// The policy table: every op's category, from ops.def unless overridden.
AutocastCategory op_policy(OpId op);
void set_op_policy(OpId op, AutocastCategory category);  // process-wide, for all threads
void reset_op_policies();
// One line per op: "matmul       lower   (F16/BF16)", marking overrides; for people.
std::string policy_table();

// Cast cache of this thread's region: entries, and casts served from it / made for it.
struct CastCacheStats {
  size_t entries = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
};
CastCacheStats cast_cache_stats();
void clear_cast_cache();

}  // namespace mantissa::amp
