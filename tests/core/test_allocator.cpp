// The CPU caching allocator: large blocks are reused, the cache respects its limit, and
// tensors built on reused memory hold exactly what they are given.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/kernels/cpu_allocator.h"

namespace mantissa {
namespace {

TEST(CpuAllocator, ReusesFreedLargeBlocks) {
  kernels::cpu_empty_cache();
  auto before = kernels::cpu_allocator_stats();
  void* first;
  {
    Tensor a = empty({1 << 20});  // 4 MiB
    first = a.data_ptr();
  }
  Tensor b = empty({1 << 20});
  auto after = kernels::cpu_allocator_stats();
  EXPECT_EQ(b.data_ptr(), first);
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 64, 0u);
}

TEST(CpuAllocator, SmallBlocksAreNotCachedAndAligned) {
  auto before = kernels::cpu_allocator_stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = empty({3, 5});
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u);
  }
  auto after = kernels::cpu_allocator_stats();
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.misses, before.misses);
}

TEST(CpuAllocator, CacheLimitAndEmptyCache) {
  kernels::cpu_set_cache_limit(size_t(4) << 20);
  { Tensor a = empty({3 << 20}); }  // 12 MiB: over the limit, released at once
  EXPECT_LE(kernels::cpu_allocator_stats().cached_bytes, size_t(4) << 20);
  { Tensor a = empty({1 << 19}); }  // 2 MiB: cached
  EXPECT_GT(kernels::cpu_allocator_stats().cached_bytes, 0u);
  kernels::cpu_empty_cache();
  EXPECT_EQ(kernels::cpu_allocator_stats().cached_bytes, 0u);
  kernels::cpu_set_cache_limit(size_t(2) << 30);
}

TEST(CpuAllocator, ReusedMemoryHoldsNewValues) {
  { Tensor a = full({1 << 20}, 7.0); }
  Tensor z = zeros({1 << 20});
  for (float v : to_vector<float>(z.slice(0, 0, 1000))) EXPECT_EQ(v, 0.0f);
  Tensor s = add(ones({1 << 20}), 1.0);
  EXPECT_EQ(sum(s).item<float>(), 2.0f * (1 << 20));
}

}  // namespace
}  // namespace mantissa
