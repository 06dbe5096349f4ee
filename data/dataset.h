// Dataset: the random-access interface every data source implements (libtorch style), the
// Example a sample or a batch comes in, and the train/test Split the file readers take.
// get_batch exists for speed: readers fill one preallocated batch instead of stacking samples.
#pragma once

#include <cstddef>
#include <vector>

#include "core/tensor.h"

namespace mantissa::data {

// One sample (data [C, H, W], target 0-dim) or one batch (data [B, C, H, W], target [B]).
struct Example {
  Tensor data;
  Tensor target;
};

enum class Split { Train, Test };
const char* split_name(Split split);  // "train" / "test"

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual size_t size() const = 0;
  virtual Example get(size_t index) const = 0;

  // The samples at `indices` stacked along a new leading dim. The default calls get() per
  // index and copies into one preallocated batch; every sample must have the same shape and
  // dtype. Must be safe to call from another thread (the DataLoader's prefetch worker) while
  // the dataset is not being modified.
  virtual Example get_batch(const std::vector<size_t>& indices) const;

 protected:
  // Throws an Error naming `who`, the index and the size when index >= size().
  void check_index(size_t index, const char* who) const;
};

}  // namespace mantissa::data
