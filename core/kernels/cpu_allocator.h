// The CPU caching allocator behind Storage. Large blocks (>= 1 MiB) are rounded to 2 MiB,
// backed by transparent huge pages where the kernel allows, and kept for reuse when freed,
// so a training step that allocates the same activation sizes every iteration stops paying
// for mmap + page faults after the first one. Small blocks go straight to aligned_alloc.
#pragma once

#include <cstddef>

namespace mantissa::kernels {

void* cpu_alloc(size_t nbytes);
void cpu_free(void* ptr, size_t nbytes);

struct CpuAllocatorStats {
  size_t allocated_bytes = 0;  // live large blocks (rounded sizes)
  size_t cached_bytes = 0;     // large blocks held for reuse
  size_t peak_bytes = 0;       // max of allocated + cached
  size_t hits = 0;             // large allocations served from the cache
  size_t misses = 0;
};
CpuAllocatorStats cpu_allocator_stats();
// Returns every cached block to the system.
void cpu_empty_cache();
// Upper bound on cached bytes (MANTISSA_CPU_CACHE_MB from the environment; unset: the larger of
// 2 GiB and four times the most bytes live at once so far, so a steady training loop reuses its whole
// working set).
void cpu_set_cache_limit(size_t bytes);

}  // namespace mantissa::kernels
