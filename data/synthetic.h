// A deterministic synthetic classification set for examples without real data and for tests:
// each class has a smooth random prototype image, each sample is its class prototype plus
// Gaussian noise, clamped to [0, 1] like pixels. Everything derives from (seed, index), so
// samples are generated on demand (no storage) and identical on every run and thread.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "data/dataset.h"

namespace mantissa::data {

struct SyntheticOptions {
  int64_t size = 1000;              // number of samples
  Shape sample_shape = {3, 32, 32};  // CIFAR-10's by default; [C, H, W], [H, W] or [F]
  int64_t num_classes = 10;
  uint64_t seed = 0;
  float noise = 0.2f;               // standard deviation of the per-pixel noise

  SyntheticOptions& set_size(int64_t v) { size = v; return *this; }
  SyntheticOptions& set_sample_shape(Shape v) { sample_shape = std::move(v); return *this; }
  SyntheticOptions& set_num_classes(int64_t v) { num_classes = v; return *this; }
  SyntheticOptions& set_seed(uint64_t v) { seed = v; return *this; }
  SyntheticOptions& set_noise(float v) { noise = v; return *this; }
};

class SyntheticDataset : public Dataset {
 public:
  explicit SyntheticDataset(SyntheticOptions options = {});

  size_t size() const override { return static_cast<size_t>(options_.size); }
  Example get(size_t index) const override;                             // sample_shape F32, 0-dim I64
  Example get_batch(const std::vector<size_t>& indices) const override;  // [B, ...sample_shape], [B]

  // Labels cycle through the classes in a seeded order, so every class is equally frequent.
  int64_t label(size_t index) const;
  const SyntheticOptions& options() const { return options_; }
  int64_t num_classes() const { return options_.num_classes; }

 private:
  void fill_sample(size_t index, float* out) const;

  SyntheticOptions options_;
  int64_t numel_ = 0;
  std::vector<float> prototypes_;  // [num_classes, numel]
};

}  // namespace mantissa::data
