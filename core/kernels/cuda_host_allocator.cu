// Pinned (page-locked) host memory for host<->device staging and DataLoader batches
// (cuda_runtime_api.h's pinned_*). cudaHostAlloc is slow (it maps and locks pages) and
// synchronizes, so freed blocks are cached and reused, like device blocks. A block that an
// asynchronous copy still reads or writes carries a CUDA event per use (pinned_record_stream)
// and is handed out again only after all its events have completed.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

namespace mantissa::kernels {

namespace {
constexpr size_t kSmallLimit = size_t(1) << 20;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t(2) << 20;

size_t round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) return std::max(kSmallRound, (nbytes + kSmallRound - 1) / kSmallRound * kSmallRound);
  return (nbytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct Use {
  int device;
  cudaEvent_t event;
};

struct HostBlock {
  size_t size = 0;
  bool allocated = false;
  std::vector<Use> uses;  // events recorded after asynchronous copies touching the block
};

class HostCache {
 public:
  void* allocate(size_t nbytes) {
    const size_t size = round_size(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    collect_pending();
    ++stats_.alloc_calls;
    // Reuse a ready block of at least `size` but not more than twice it (a huge cached block
    // should not be pinned down by a small request).
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= 2 * size) {
      char* p = it->second;
      free_.erase(it);
      HostBlock& b = blocks_.at(p);
      b.allocated = true;
      stats_.cached -= b.size;
      stats_.allocated += b.size;
      ++stats_.cache_hits;
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    if (err != cudaSuccess) {
      cudaGetLastError();
      release_ready();
      err = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    }
    if (err != cudaSuccess) cuda::throw_cuda_error(err, "pinned_alloc", "cudaHostAlloc");
    HostBlock& b = blocks_[static_cast<char*>(p)];
    b.size = size;
    b.allocated = true;
    stats_.allocated += size;
    return p;
  }

  void free(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(static_cast<char*>(ptr));
    MANTISSA_ASSERT(it != blocks_.end() && it->second.allocated, "pinned_free of a pointer pinned_alloc did not return");
    HostBlock& b = it->second;
    b.allocated = false;
    stats_.allocated -= b.size;
    stats_.cached += b.size;
    if (b.uses.empty()) free_.emplace(b.size, it->first);
    else pending_.push_back(it->first);
  }

  void record(void* ptr, int device, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    // The block holding ptr: the last one starting at or before it.
    auto it = blocks_.upper_bound(static_cast<char*>(ptr));
    MANTISSA_CHECK(it != blocks_.begin(), "pinned_record_stream: pointer is not pinned memory of this allocator");
    --it;
    MANTISSA_CHECK(static_cast<char*>(ptr) < it->first + it->second.size && it->second.allocated,
                   "pinned_record_stream: pointer is not live pinned memory of this allocator");
    cuda::DeviceGuard guard(device);
    cudaEvent_t ev = take_event(device);
    cudaError_t err = cudaEventRecord(ev, stream);
    if (err != cudaSuccess) {
      events_.emplace_back(device, ev);
      cuda::throw_cuda_error(err, "pinned_record_stream", "cudaEventRecord");
    }
    it->second.uses.push_back({device, ev});
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    collect_pending();
    release_ready();
  }

  PinnedMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  cudaEvent_t take_event(int device) {
    for (auto it = events_.begin(); it != events_.end(); ++it) {
      if (it->first == device) {
        cudaEvent_t ev = it->second;
        events_.erase(it);
        return ev;
      }
    }
    cudaEvent_t ev = nullptr;
    MANTISSA_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "pinned_record_stream");
    return ev;
  }

  // Moves freed blocks whose copies have all finished to the ready list. Never throws: an error
  // here (a dead context) means the copies will never run, so the block is treated as idle.
  void collect_pending() {
    for (size_t i = 0; i < pending_.size();) {
      HostBlock& b = blocks_.at(pending_[i]);
      auto done = [&](const Use& u) {
        int previous = -1;
        cudaGetDevice(&previous);
        if (previous != u.device) cudaSetDevice(u.device);
        cudaError_t err = cudaEventQuery(u.event);
        if (previous != u.device && previous >= 0) cudaSetDevice(previous);
        if (err == cudaErrorNotReady) {
          cudaGetLastError();
          return false;
        }
        cudaGetLastError();
        events_.emplace_back(u.device, u.event);
        return true;
      };
      b.uses.erase(std::remove_if(b.uses.begin(), b.uses.end(), done), b.uses.end());
      if (b.uses.empty()) {
        free_.emplace(b.size, pending_[i]);
        pending_[i] = pending_.back();
        pending_.pop_back();
      } else {
        ++i;
      }
    }
  }

  // Returns every ready cached block to the driver. The caller holds mu_.
  void release_ready() {
    for (auto& [size, p] : free_) {
      cudaFreeHost(p);
      stats_.cached -= size;
      blocks_.erase(p);
    }
    free_.clear();
    cudaGetLastError();
  }

  std::mutex mu_;
  std::map<char*, HostBlock> blocks_;        // every block from the driver, by address
  std::multimap<size_t, char*> free_;        // free and idle, by size
  std::vector<char*> pending_;               // free, but a recorded copy may still use it
  std::vector<std::pair<int, cudaEvent_t>> events_;  // idle events for reuse, by device
  PinnedMemoryStats stats_;
};

HostCache& host_cache() {
  static HostCache* c = new HostCache();  // never destroyed, like the device allocator
  return *c;
}
}  // namespace

bool pinned_memory_available() { return cuda_device_count() > 0; }

void* pinned_alloc(size_t nbytes) {
  MANTISSA_CHECK(pinned_memory_available(), "pin_memory: page-locked memory needs a CUDA device (",
                 cuda_unavailable_reason(), ")");
  return host_cache().allocate(nbytes);
}

void pinned_free(void* ptr) {
  if (ptr != nullptr) host_cache().free(ptr);
}

void pinned_record_stream(void* ptr, int device, void* stream) {
  host_cache().record(ptr, device, static_cast<cudaStream_t>(stream));
}

PinnedMemoryStats pinned_memory_stats() {
  return pinned_memory_available() ? host_cache().stats() : PinnedMemoryStats{};
}

void pinned_empty_cache() {
  if (pinned_memory_available()) host_cache().empty_cache();
}

}  // namespace mantissa::kernels
