// Storage: one allocation of bytes on one device, shared by every view of it. It also
// carries the version counter, so all views of the same memory see the same version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace mantissa {

class Storage {
 public:
  // Allocates nbytes on device (64-byte aligned on the CPU). Zero bytes is a valid storage.
  // pinned (CPU only): page-locked memory from the CUDA pinned cache, so host<->device copies
  // are DMA transfers that can run asynchronously; without a usable CUDA driver the storage is
  // ordinary memory and pinned() is false.
  Storage(size_t nbytes, Device device, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }
  bool pinned() const { return pinned_; }

  uint32_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  bool pinned_ = false;
  uint32_t version_ = 0;
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace mantissa
