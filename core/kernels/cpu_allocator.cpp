#include "core/kernels/cpu_allocator.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include "core/error.h"

namespace mantissa::kernels {

namespace {
constexpr size_t kAlignment = 64;
constexpr size_t kLargeThreshold = size_t(1) << 20;
constexpr size_t kHugePage = size_t(2) << 20;

size_t default_limit() {
  if (const char* env = std::getenv("MANTISSA_CPU_CACHE_MB")) {
    char* end = nullptr;
    unsigned long long mb = std::strtoull(env, &end, 10);
    if (end != env) return static_cast<size_t>(mb) << 20;
  }
  return size_t(2) << 30;
}

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // rounded size -> block
  CpuAllocatorStats stats;
  size_t limit = default_limit();

  void trim_locked(size_t target) {
    // Drop the largest blocks first: they cost the most to keep and are the rarest sizes.
    while (stats.cached_bytes > target && !free_blocks.empty()) {
      auto it = std::prev(free_blocks.end());
      stats.cached_bytes -= it->first;
      std::free(it->second);
      free_blocks.erase(it);
    }
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: storages may be freed during static destruction
  return *c;
}

size_t round_large(size_t nbytes) { return (nbytes + kHugePage - 1) / kHugePage * kHugePage; }
}  // namespace

void* cpu_alloc(size_t nbytes) {
  if (nbytes < kLargeThreshold) {
    size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
    MANTISSA_CHECK(p != nullptr, "allocate: out of CPU memory allocating ", nbytes, " bytes");
    return p;
  }
  const size_t size = round_large(nbytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.stats.cached_bytes -= size;
      c.stats.allocated_bytes += size;
      ++c.stats.hits;
      return p;
    }
    ++c.stats.misses;
  }
  void* p = std::aligned_alloc(kHugePage, size);
  if (p == nullptr) {
    // Out of memory with blocks cached: give them back and try once more.
    {
      std::lock_guard<std::mutex> lock(c.mu);
      c.trim_locked(0);
    }
    p = std::aligned_alloc(kHugePage, size);
  }
  MANTISSA_CHECK(p != nullptr, "allocate: out of CPU memory allocating ", nbytes, " bytes");
  // Huge pages make first touch of a fresh block ~15x cheaper; the kernel may ignore the hint.
  madvise(p, size, MADV_HUGEPAGE);
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.allocated_bytes += size;
  c.stats.peak_bytes = std::max(c.stats.peak_bytes, c.stats.allocated_bytes + c.stats.cached_bytes);
  return p;
}

void cpu_free(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  if (nbytes < kLargeThreshold) {
    std::free(ptr);
    return;
  }
  const size_t size = round_large(nbytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.stats.allocated_bytes -= size;
  if (size > c.limit) {
    std::free(ptr);
    return;
  }
  c.free_blocks.emplace(size, ptr);
  c.stats.cached_bytes += size;
  c.trim_locked(c.limit);
}

CpuAllocatorStats cpu_allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.stats;
}

void cpu_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.trim_locked(0);
}

void cpu_set_cache_limit(size_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = bytes;
  c.trim_locked(bytes);
}

}  // namespace mantissa::kernels
