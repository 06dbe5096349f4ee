// Storage of the CUDA backend switches of cuda_flags.h (compiled in every build).
#include "core/cuda_flags.h"

#include <atomic>

namespace mantissa::cuda {

namespace {
// Relaxed ordering is enough: the flag is a setting read at launch time, not a synchronization
// point between threads.
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void set_allow_tf32(bool allow) { g_allow_tf32.store(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

}  // namespace mantissa::cuda
