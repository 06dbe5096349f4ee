// Generator state and the process-wide default generator.
// Every accessor takes the lock: reserve() must be a single read-modify-write.
#include "core/generator.h"

namespace mantissa {

Generator::Generator(uint64_t seed) : seed_(seed) {}

void Generator::manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(mutex_);
  seed_ = seed;
  offset_ = 0;
}

uint64_t Generator::seed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return seed_;
}

uint64_t Generator::offset() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return offset_;
}

GeneratorState Generator::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return GeneratorState{seed_, offset_};
}

void Generator::set_state(uint64_t seed, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mutex_);
  seed_ = seed;
  offset_ = offset;
}

void Generator::set_state(const GeneratorState& state) { set_state(state.seed, state.offset); }

uint64_t Generator::reserve(uint64_t blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t start = offset_;
  offset_ += blocks;
  return start;
}

GeneratorState Generator::reserve_state(uint64_t blocks) {
  std::lock_guard<std::mutex> lock(mutex_);
  const GeneratorState start{seed_, offset_};
  offset_ += blocks;
  return start;
}

Generator& default_generator() {
  // Function-local static: constructed on first use, so it is ready during static init of
  // other translation units.
  static Generator generator;
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace mantissa
