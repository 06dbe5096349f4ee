// CIFAR-10 from its binary batches (data_batch_1..5.bin, test_batch.bin): records of one label
// byte and 3072 pixel bytes (R, G, B planes of 32x32, row-major). Images stay uint8 in memory;
// samples come out as F32 [3, 32, 32] in [0, 1] with I64 targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace mantissa::data {

inline constexpr int64_t kCifarImageBytes = 3 * 32 * 32;
inline constexpr int64_t kCifarRecordBytes = 1 + kCifarImageBytes;
inline constexpr const char* kCifarUrl = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

// Parse one binary batch held in memory (gzip-compressed or not); `name` is named in errors.
// Returns images U8 [n, 3, 32, 32] and labels I64 [n].
Example parse_cifar10_batch(const uint8_t* data, size_t size, const std::string& name);

class CIFAR10 : public Dataset {
 public:
  // root holds the .bin files, directly or in the archive's cifar-10-batches-bin/ folder.
  explicit CIFAR10(const std::string& root, Split split = Split::Train);
  // From tensors already in memory: images U8 [N, 3, 32, 32], targets integer [N] in 0..9.
  CIFAR10(Tensor images, Tensor targets);

  size_t size() const override { return static_cast<size_t>(images_.size(0)); }
  Example get(size_t index) const override;                             // [3, 32, 32] F32, 0-dim I64
  Example get_batch(const std::vector<size_t>& indices) const override;  // [B, 3, 32, 32], [B]

  const Tensor& images() const { return images_; }    // U8 [N, 3, 32, 32]
  const Tensor& targets() const { return targets_; }  // I64 [N]
  static constexpr int64_t num_classes() { return 10; }
  static const char* class_name(int64_t label);       // "airplane", ..., "truck"
  const std::vector<std::string>& files() const { return files_; }

 private:
  Tensor images_;
  Tensor targets_;
  std::vector<std::string> files_;
};

}  // namespace mantissa::data
