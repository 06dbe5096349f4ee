// MNIST-format data sets (MNIST digits, Fashion-MNIST, KMNIST, ... any drop-in set) read from
// IDX files, plain or gzip-compressed. Images stay uint8 in memory; samples come out as F32
// [1, rows, cols] in [0, 1] with I64 targets, like torchvision's MNIST + ToTensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "data/dataset.h"

namespace mantissa::data {

// IDX magic numbers: 0x00000803 (unsigned bytes, 3 dims) and 0x00000801 (unsigned bytes, 1 dim).
inline constexpr uint32_t kIdxImagesMagic = 2051;
inline constexpr uint32_t kIdxLabelsMagic = 2049;

// Parse one IDX file held in memory (gzip-compressed or not). `name` (usually the path) is
// named in every error; the header must agree exactly with the bytes present.
Tensor parse_idx_images(const uint8_t* data, size_t size, const std::string& name);  // U8 [N, rows, cols]
Tensor parse_idx_labels(const uint8_t* data, size_t size, const std::string& name);  // U8 [N]

class MNIST : public Dataset {
 public:
  // Reads <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte, also spelled train-images.idx3-ubyte,
  // each optionally with .gz. Labels must lie in 0..num_classes-1 (num_classes 1..256).
  explicit MNIST(const std::string& root, Split split = Split::Train, int64_t num_classes = 10);
  // From tensors already in memory: images U8 [N, rows, cols], targets integer [N].
  MNIST(Tensor images, Tensor targets, int64_t num_classes = 10);

  size_t size() const override { return static_cast<size_t>(images_.size(0)); }
  Example get(size_t index) const override;                             // [1, rows, cols] F32, 0-dim I64
  Example get_batch(const std::vector<size_t>& indices) const override;  // [B, 1, rows, cols], [B]

  const Tensor& images() const { return images_; }    // U8 [N, rows, cols]
  const Tensor& targets() const { return targets_; }  // I64 [N]
  int64_t num_classes() const { return num_classes_; }
  const std::string& images_path() const { return images_path_; }  // empty when built from tensors
  const std::string& labels_path() const { return labels_path_; }

 private:
  Tensor images_;
  Tensor targets_;
  int64_t num_classes_;
  std::string images_path_;
  std::string labels_path_;
};

}  // namespace mantissa::data
