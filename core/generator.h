// Generator: the (seed, offset) state of one Philox stream (core/philox.h) and the process-wide
// default generator. A random op reserves its counter blocks here under the lock and computes
// outside it, so concurrent draws never overlap and each is reproducible from its offset.
#pragma once

#include <cstdint>
#include <mutex>

namespace mantissa {

// PyTorch's default seed, so an unseeded program starts from a familiar state.
inline constexpr uint64_t kDefaultSeed = 67280421310721ull;

// One consistent snapshot; seed() and offset() read separately may straddle another thread's draw.
struct GeneratorState {
  uint64_t seed = kDefaultSeed;
  uint64_t offset = 0;
};

class Generator {
 public:
  explicit Generator(uint64_t seed = kDefaultSeed);
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Re-keys the stream and rewinds it: the next draw starts at offset 0.
  void manual_seed(uint64_t seed);
  uint64_t seed() const;
  // Counter blocks consumed so far (not elements; see philox_blocks_for).
  uint64_t offset() const;
  GeneratorState state() const;
  void set_state(uint64_t seed, uint64_t offset);
  void set_state(const GeneratorState& state);
  // Returns the offset the caller's draw starts at and advances past its `blocks` blocks.
  uint64_t reserve(uint64_t blocks);
  // reserve() plus the seed in the same lock: a manual_seed from another thread can then never
  // pair the new seed with an offset reserved under the old one.
  GeneratorState reserve_state(uint64_t blocks);

 private:
  mutable std::mutex mutex_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The generator random ops use when none is passed, like at::default_generator.
Generator& default_generator();

// Re-seeds the default generator (and rewinds it), like torch::manual_seed.
void manual_seed(uint64_t seed);

}  // namespace mantissa
