// oneDNN plumbing shared by the matmul and convolution kernels: the CPU engine, a stream per
// thread, and a small mutex-guarded primitive cache (creating a primitive JIT-compiles code,
// far too slow to do on every call). Only included when MANTISSA_HAVE_DNNL is defined.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/dtype.h"

namespace mantissa::kernels::dnnl_ctx {

// Debian's libdnnl uses the OpenMP runtime (libgomp), the same one our parallel_for uses: it
// runs on omp_get_max_threads() threads of the same pool, so there is nothing to configure.
dnnl::engine& engine();
dnnl::stream& stream();  // one per thread; executions are synchronous on the CPU

using Key = std::vector<int64_t>;

// Keyed by everything that decides the primitive (dtypes, dims, strides, flags). Bounded: when
// full it is simply emptied (the working set of a training loop is a handful of entries).
template <typename V>
class Cache {
 public:
  template <typename Make>
  std::shared_ptr<const V> get(const Key& key, const Make& make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    // Built outside the lock: two threads may race to build the same entry, which is harmless.
    auto value = std::make_shared<const V>(make());
    std::lock_guard<std::mutex> lock(mutex_);
    if (map_.size() >= kCapacity) map_.clear();
    return map_.emplace(key, std::move(value)).first->second;
  }

 private:
  static constexpr size_t kCapacity = 256;
  std::mutex mutex_;
  std::map<Key, std::shared_ptr<const V>> map_;
};

// F32 and BF16 only: the dtypes the oneDNN paths take (F16 runs as F32, F64 has no primitive).
inline dnnl::memory::data_type data_type(DType t) {
  return t == DType::BF16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

}  // namespace mantissa::kernels::dnnl_ctx
