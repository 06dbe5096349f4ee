// DataLoader: batches from a Dataset with seeded per-epoch shuffling, drop_last, per-channel
// normalization, optional augmentation (random crop with zero padding, horizontal flip) and a
// background prefetch thread. A batch is a pure function of (seed, epoch, batch index): the
// order and the augmentation draws come from counter-based Philox streams, so prefetch on or
// off and thread timing never change a batch.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "data/dataset.h"

namespace mantissa::data {

struct DataLoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  // Per-channel (dim 1 of the batch) normalization (x - mean) / std after augmentation; empty =
  // none, one value = every channel.
  std::vector<float> mean;
  std::vector<float> std;
  // Augmentation of [B, C, H, W] F32 batches, in [0, 1] space before normalization (as
  // torchvision's RandomCrop(padding) and RandomHorizontalFlip on the image).
  int64_t random_crop_padding = 0;  // pad by P with zeros, crop back to H x W at a random offset
  bool random_flip = false;         // flip left-right with probability 0.5
  bool prefetch = true;             // assemble batches on a background thread
  int64_t num_batches_prefetched = 2;
  // Batches in page-locked memory (Tensor::pin_memory), so `.to(cuda)` is one asynchronous DMA
  // on the current stream instead of a staged copy. The values are the same either way; without
  // a usable CUDA driver the batches stay in ordinary memory.
  bool pin_memory = false;

  DataLoaderOptions() = default;
  DataLoaderOptions(int64_t batch) : batch_size(batch) {}  // NOLINT: implicit, as libtorch's
  DataLoaderOptions& set_batch_size(int64_t v) { batch_size = v; return *this; }
  DataLoaderOptions& set_shuffle(bool v) { shuffle = v; return *this; }
  DataLoaderOptions& set_seed(uint64_t v) { seed = v; return *this; }
  DataLoaderOptions& set_drop_last(bool v) { drop_last = v; return *this; }
  DataLoaderOptions& set_normalize(std::vector<float> m, std::vector<float> s) {
    mean = std::move(m);
    std = std::move(s);
    return *this;
  }
  DataLoaderOptions& set_random_crop(int64_t padding) { random_crop_padding = padding; return *this; }
  DataLoaderOptions& set_random_flip(bool v) { random_flip = v; return *this; }
  DataLoaderOptions& set_prefetch(bool v) { prefetch = v; return *this; }
  DataLoaderOptions& set_num_batches_prefetched(int64_t v) { num_batches_prefetched = v; return *this; }
  DataLoaderOptions& set_pin_memory(bool v) { pin_memory = v; return *this; }
};

class DataLoader {
 public:
  class Iterator;

  DataLoader(std::shared_ptr<Dataset> dataset, DataLoaderOptions options = {});
  ~DataLoader();  // stops and joins the prefetch thread, even mid-epoch
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // begin() starts epoch epoch() (stopping any epoch still running, e.g. after a break) and
  // advances epoch() by one, so `for (auto& batch : loader)` reshuffles each time it runs.
  Iterator begin();
  Iterator end();
  size_t size() const;  // batches per epoch
  size_t len() const { return size(); }

  void set_epoch(uint64_t epoch);  // the epoch the next begin() runs, e.g. when resuming
  uint64_t epoch() const { return next_epoch_; }

  // The batch an epoch yields at `batch_index`, computed here and now (what the iteration
  // yields, without the thread); and the sample order of an epoch.
  Example batch(uint64_t epoch, size_t batch_index) const;
  std::vector<size_t> order(uint64_t epoch) const;

  const DataLoaderOptions& options() const { return options_; }
  const std::shared_ptr<Dataset>& dataset() const { return dataset_; }

  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Example;
    using difference_type = std::ptrdiff_t;
    using pointer = Example*;
    using reference = Example&;

    Iterator() = default;
    Example& operator*() const;
    Example* operator->() const { return &**this; }
    Iterator& operator++();
    bool operator==(const Iterator& other) const { return position_ == other.position_; }
    size_t position() const { return position_; }  // batches consumed before this one

   private:
    friend class DataLoader;
    Iterator(DataLoader* loader, uint64_t generation, size_t position)
        : loader_(loader), generation_(generation), position_(position) {}
    DataLoader* loader_ = nullptr;
    uint64_t generation_ = 0;
    size_t position_ = 0;
  };

 private:
  struct Slot {
    Example batch;
    std::exception_ptr error;
  };

  void stop_worker();
  void worker_loop(uint64_t epoch, std::shared_ptr<const std::vector<size_t>> order, size_t batches);
  Example make_batch(uint64_t epoch, const std::vector<size_t>& order, size_t batch_index) const;
  void advance();  // loads batch `position_` of the running epoch into current_
  void check_iterator(const Iterator& it) const;

  std::shared_ptr<Dataset> dataset_;
  DataLoaderOptions options_;
  uint64_t next_epoch_ = 0;

  // The running epoch.
  uint64_t generation_ = 0;  // bumped by every begin(), so stale iterators are detected
  uint64_t running_epoch_ = 0;
  std::shared_ptr<const std::vector<size_t>> order_;
  size_t position_ = 0;      // index of the batch in current_
  Example current_;

  // Prefetch: the worker pushes batches in order into a queue of at most
  // num_batches_prefetched; the consumer pops them.
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<Slot> queue_;
  bool stop_ = false;
  bool worker_done_ = false;  // the worker has exited (all batches queued, stopped, or failed)
};

}  // namespace mantissa::data
