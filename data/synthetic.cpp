// SyntheticDataset: smooth per-class sinusoid prototypes plus Philox Gaussian noise, generated
// on demand from (seed, index) so a sample never depends on what was generated before it.
#include "data/synthetic.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/philox.h"

namespace mantissa::data {

namespace {

// splitmix64: turns (seed, purpose) into well-mixed, independent Philox keys.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

enum Stream : uint64_t { kPrototype = 1, kNoise = 2, kLabel = 3 };
uint64_t key(uint64_t seed, Stream s) { return mix(mix(seed) ^ s); }

}  // namespace

SyntheticDataset::SyntheticDataset(SyntheticOptions options) : options_(std::move(options)) {
  const Shape& s = options_.sample_shape;
  MANTISSA_CHECK(options_.size >= 0, "synthetic: size must be >= 0, got ", options_.size);
  MANTISSA_CHECK(options_.num_classes >= 1, "synthetic: num_classes must be >= 1, got ", options_.num_classes);
  MANTISSA_CHECK(!s.empty() && std::all_of(s.begin(), s.end(), [](int64_t d) { return d > 0; }),
                 "synthetic: sample_shape must have at least one dim, all positive, got ", shape_str(s));
  MANTISSA_CHECK(std::isfinite(options_.noise) && options_.noise >= 0.0f, "synthetic: noise must be >= 0, got ",
                 options_.noise);
  numel_ = shape_numel(s);

  // View the sample as [planes, H, W] with the last two dims as the image.
  const int64_t w = s.back();
  const int64_t h = s.size() >= 2 ? s[s.size() - 2] : 1;
  const int64_t planes = numel_ / (h * w);
  prototypes_.resize(static_cast<size_t>(options_.num_classes * numel_));
  const uint64_t k = key(options_.seed, kPrototype);
  for (int64_t c = 0; c < options_.num_classes; ++c) {
    for (int64_t p = 0; p < planes; ++p) {
      uint32_t wd[4];
      philox_block(k, static_cast<uint64_t>(c * planes + p), wd);
      // Frequencies of 0.5..3 periods per image side: smooth enough that a small crop or a
      // flip keeps the class recognisable.
      const float fy = 0.5f + 2.5f * uint32_to_uniform_float(wd[0]);
      const float fx = 0.5f + 2.5f * uint32_to_uniform_float(wd[1]);
      const float phase = 6.2831853f * uint32_to_uniform_float(wd[2]);
      const float amp = 0.2f + 0.2f * uint32_to_uniform_float(wd[3]);
      float* out = prototypes_.data() + (c * planes + p) * h * w;
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          const float arg = 6.2831853f * (fy * static_cast<float>(y) / static_cast<float>(h) +
                                          fx * static_cast<float>(x) / static_cast<float>(w)) + phase;
          out[y * w + x] = 0.5f + amp * std::sin(arg);
        }
      }
    }
  }
}

int64_t SyntheticDataset::label(size_t index) const {
  const uint64_t shift = key(options_.seed, kLabel) % static_cast<uint64_t>(options_.num_classes);
  return static_cast<int64_t>((index + shift) % static_cast<uint64_t>(options_.num_classes));
}

void SyntheticDataset::fill_sample(size_t index, float* out) const {
  const float* proto = prototypes_.data() + label(index) * numel_;
  const uint64_t k = key(options_.seed, kNoise);
  const uint64_t blocks = philox_blocks_for(numel_, false);
  const float noise = options_.noise;
  for (uint64_t b = 0; b < blocks; ++b) {
    uint32_t wd[4];
    philox_block(k, index * blocks + b, wd);
    float z[4];
    box_muller_float(wd[0], wd[1], z[0], z[1]);
    box_muller_float(wd[2], wd[3], z[2], z[3]);
    const int64_t base = static_cast<int64_t>(b) * 4;
    const int64_t n = std::min<int64_t>(4, numel_ - base);
    for (int64_t j = 0; j < n; ++j) {
      out[base + j] = std::clamp(proto[base + j] + noise * z[j], 0.0f, 1.0f);
    }
  }
}

Example SyntheticDataset::get(size_t index) const {
  check_index(index, "synthetic");
  Example b = get_batch({index});
  return {b.data.select(0, 0), b.target.select(0, 0)};
}

Example SyntheticDataset::get_batch(const std::vector<size_t>& indices) const {
  for (size_t i : indices) check_index(i, "synthetic");
  const int64_t b = static_cast<int64_t>(indices.size());
  Shape shape{b};
  shape.insert(shape.end(), options_.sample_shape.begin(), options_.sample_shape.end());
  Example out{empty(shape), empty({b}, DType::I64)};
  float* d = out.data.data<float>();
  int64_t* t = out.target.data<int64_t>();
  for (int64_t k = 0; k < b; ++k) {
    const size_t i = indices[static_cast<size_t>(k)];
    fill_sample(i, d + k * numel_);
    t[k] = label(i);
  }
  return out;
}

}  // namespace mantissa::data
