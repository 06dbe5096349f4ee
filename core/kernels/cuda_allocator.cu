// The caching device allocator behind every CUDA Storage (device_memory.h's cuda_alloc /
// cuda_free) and its statistics (cuda_runtime_api.h). Memory comes from the driver in segments
// and goes back only on cuda_empty_cache or when a cudaMalloc fails (then the cache is freed and
// the call retried once), because cudaMalloc/cudaFree synchronize the device and cost tens of
// microseconds to milliseconds, while a training step allocates the same sizes every iteration.
//
// Sizes: requests up to 1 MiB are "small", rounded up to 512 B and carved out of 2 MiB
// segments; larger requests are rounded up to 2 MiB and get a segment of their own size (or a
// best-fitting cached block, split when 2 MiB or more would be left over). Freed blocks merge
// with free neighbours of their segment.
//
// Streams: a block belongs to the stream that was current when it was allocated and is reused
// only by allocations on that same stream, so a free followed by a reuse is ordered on the GPU
// exactly like the kernels that used it (no synchronization needed). Using a tensor on another
// stream is safe when that stream is blocking (all streams of cuda_stream_create are). When a
// stream is destroyed (after it has drained), its blocks move to the legacy default stream.
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels {

namespace {
constexpr size_t kSmallLimit = size_t(1) << 20;    // requests up to this are small
constexpr size_t kSmallRound = 512;
constexpr size_t kSmallSegment = size_t(2) << 20;  // small blocks share 2 MiB segments
constexpr size_t kLargeRound = size_t(2) << 20;

struct Block {
  void* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  bool small = false;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours within the segment (address order)
  Block* next = nullptr;
};

struct BlockLess {
  bool operator()(const Block* a, const Block* b) const {
    auto key = [](const Block* x) {
      return std::make_tuple(reinterpret_cast<uintptr_t>(x->stream), x->size, reinterpret_cast<uintptr_t>(x->ptr));
    };
    return key(a) < key(b);
  }
};
using FreeSet = std::set<Block*, BlockLess>;

size_t round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) return std::max(kSmallRound, (nbytes + kSmallRound - 1) / kSmallRound * kSmallRound);
  return (nbytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

std::string bytes_str(size_t n) {
  char buf[64];
  if (n >= (size_t(1) << 30)) std::snprintf(buf, sizeof(buf), "%.2f GiB", double(n) / double(size_t(1) << 30));
  else if (n >= (size_t(1) << 20)) std::snprintf(buf, sizeof(buf), "%.2f MiB", double(n) / double(size_t(1) << 20));
  else std::snprintf(buf, sizeof(buf), "%zu bytes", n);
  return buf;
}

class DeviceCache {
 public:
  explicit DeviceCache(int device) : device_(device) {}

  void* allocate(size_t nbytes, cudaStream_t stream) {
    const size_t size = round_size(nbytes);
    const bool small = nbytes <= kSmallLimit;
    std::lock_guard<std::mutex> lock(mu_);
    FreeSet& pool = small ? small_free_ : large_free_;
    Block* b = take_from(pool, size, stream);
    if (b != nullptr) {
      ++stats_.cache_hits;
    } else {
      b = new_segment(small ? kSmallSegment : size, stream, small, nbytes);
    }
    split(b, size, pool);
    b->allocated = true;
    live_.emplace(b->ptr, b);
    ++stats_.alloc_calls;
    stats_.allocated += b->size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return b->ptr;
  }

  void free(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    MANTISSA_ASSERT(it != live_.end(), "cuda_free of a pointer this allocator did not hand out");
    Block* b = it->second;
    live_.erase(it);
    b->allocated = false;
    stats_.allocated -= b->size;
    FreeSet& pool = b->small ? small_free_ : large_free_;
    // Merge with free neighbours: they are in the pool and must leave it before their keys change.
    if (b->prev != nullptr && !b->prev->allocated) {
      Block* p = b->prev;
      pool.erase(p);
      p->size += b->size;
      p->next = b->next;
      if (b->next != nullptr) b->next->prev = p;
      delete b;
      b = p;
    }
    if (b->next != nullptr && !b->next->allocated) {
      Block* n = b->next;
      pool.erase(n);
      b->size += n->size;
      b->next = n->next;
      if (n->next != nullptr) n->next->prev = b;
      delete n;
    }
    pool.insert(b);
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_free_segments();
  }

  void retire_stream(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    for (FreeSet* pool : {&small_free_, &large_free_}) {
      std::vector<Block*> moved;
      for (auto it = pool->begin(); it != pool->end();) {
        if ((*it)->stream == stream) {
          moved.push_back(*it);
          it = pool->erase(it);
        } else {
          ++it;
        }
      }
      for (Block* b : moved) {
        b->stream = nullptr;
        pool->insert(b);
      }
    }
    for (auto& [ptr, b] : live_) {
      if (b->stream == stream) b->stream = nullptr;
    }
  }

  CudaMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void reset_peaks() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
    stats_.peak_reserved = stats_.reserved;
    stats_.alloc_calls = 0;
    stats_.cache_hits = 0;
    stats_.driver_allocs = 0;
    stats_.driver_frees = 0;
  }

 private:
  // Smallest free block of at least `size` on `stream` (best fit keeps big blocks whole).
  Block* take_from(FreeSet& pool, size_t size, cudaStream_t stream) {
    Block key;
    key.stream = stream;
    key.size = size;
    key.ptr = nullptr;
    auto it = pool.lower_bound(&key);
    if (it == pool.end() || (*it)->stream != stream) return nullptr;
    Block* b = *it;
    pool.erase(it);
    return b;
  }

  // Leaves the first `size` bytes in b and returns the rest to the pool when worth keeping.
  void split(Block* b, size_t size, FreeSet& pool) {
    const size_t rest = b->size - size;
    if (rest < (b->small ? kSmallRound : kLargeRound)) return;
    Block* r = new Block;
    r->ptr = static_cast<char*>(b->ptr) + size;
    r->size = rest;
    r->stream = b->stream;
    r->small = b->small;
    r->prev = b;
    r->next = b->next;
    if (b->next != nullptr) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool.insert(r);
  }

  Block* new_segment(size_t size, cudaStream_t stream, bool small, size_t requested) {
    cuda::DeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      // Out of memory: cached blocks may be what is missing. Give them all back and retry once.
      cudaGetLastError();
      MANTISSA_CUDA_CHECK(cudaDeviceSynchronize(), "allocate");
      release_free_segments();
      err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        MANTISSA_ERROR("allocate: CUDA out of memory on cuda:", device_, ": tried to allocate ", bytes_str(requested),
                       " (", bytes_str(size), " segment); ", bytes_str(stats_.allocated), " allocated by Mantissa, ",
                       bytes_str(stats_.reserved), " reserved, ", bytes_str(free_b), " free of ", bytes_str(total_b),
                       " on the device");
      }
    }
    MANTISSA_CUDA_CHECK(err, "allocate");
    ++stats_.driver_allocs;
    stats_.reserved += size;
    stats_.peak_reserved = std::max(stats_.peak_reserved, stats_.reserved);
    Block* b = new Block;
    b->ptr = p;
    b->size = size;
    b->stream = stream;
    b->small = small;
    return b;
  }

  // Frees every segment that is one whole free block. The caller holds mu_.
  void release_free_segments() {
    bool any = false;
    for (FreeSet* pool : {&small_free_, &large_free_}) {
      for (auto it = pool->begin(); it != pool->end();) {
        Block* b = *it;
        if (b->prev == nullptr && b->next == nullptr) {
          if (!any) {
            // Blocks were freed in stream order: work queued before the free may still read them.
            cuda::DeviceGuard guard(device_);
            cudaDeviceSynchronize();
            any = true;
          }
          cuda::DeviceGuard guard(device_);
          cudaFree(b->ptr);
          ++stats_.driver_frees;
          stats_.reserved -= b->size;
          delete b;
          it = pool->erase(it);
        } else {
          ++it;
        }
      }
    }
    cudaGetLastError();
  }

  int device_;
  std::mutex mu_;
  FreeSet small_free_;
  FreeSet large_free_;
  std::unordered_map<void*, Block*> live_;
  CudaMemoryStats stats_;
};

class Allocator {
 public:
  Allocator() {
    const int n = cuda_device_count();
    for (int d = 0; d < n; ++d) devices_.push_back(std::make_unique<DeviceCache>(d));
  }
  DeviceCache* get(int device) {
    if (device < 0 || device >= static_cast<int>(devices_.size())) return nullptr;
    return devices_[static_cast<size_t>(device)].get();
  }
  DeviceCache& checked(int device, const char* op) {
    DeviceCache* c = get(device);
    MANTISSA_CHECK(c != nullptr, op, ": device cuda:", device, " does not exist (", devices_.size(),
                   " CUDA device(s)", devices_.empty() ? std::string(": ") + cuda_unavailable_reason() : "", ")");
    return *c;
  }

 private:
  std::vector<std::unique_ptr<DeviceCache>> devices_;
};

Allocator& allocator() {
  // Never destroyed: storages may be freed during static destruction, after the driver is gone.
  static Allocator* a = new Allocator();
  return *a;
}
}  // namespace

void* cuda_alloc(int device, size_t nbytes) {
  DeviceCache& c = allocator().checked(device, "allocate");
  if (nbytes == 0) return nullptr;
  return c.allocate(nbytes, static_cast<cudaStream_t>(current_stream_handle(device)));
}

void cuda_free(int device, void* ptr) {
  if (ptr == nullptr) return;
  DeviceCache* c = allocator().get(device);
  MANTISSA_ASSERT(c != nullptr, "cuda_free on device ", device);
  c->free(ptr);
}

void cuda_allocator_retire_stream(int device, void* stream) {
  if (DeviceCache* c = allocator().get(device)) c->retire_stream(static_cast<cudaStream_t>(stream));
}

CudaMemoryStats cuda_memory_stats(int device) {
  DeviceCache* c = allocator().get(device);
  return c != nullptr ? c->stats() : CudaMemoryStats{};
}

void cuda_reset_peak_memory_stats(int device) {
  if (DeviceCache* c = allocator().get(device)) c->reset_peaks();
}

void cuda_empty_cache(int device) {
  if (DeviceCache* c = allocator().get(device)) c->empty_cache();
}

}  // namespace mantissa::kernels
