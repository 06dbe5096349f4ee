// DataLoader: epoch order (seeded Fisher-Yates), batch assembly with one fused augmentation +
// normalization pass, and the prefetch thread with its bounded queue. Every random draw is a
// Philox block keyed by (seed, epoch, purpose) and counted by sample index, so nothing depends
// on which thread assembled a batch or when.
#include "data/loader.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/philox.h"

namespace mantissa::data {

namespace {

constexpr const char* kWho = "DataLoader";

uint64_t mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

enum Stream : uint64_t { kShuffle = 1, kAugment = 2 };
uint64_t epoch_key(uint64_t seed, uint64_t epoch, Stream s) { return mix(mix(mix(seed) ^ s) + epoch); }

struct Augment {
  int64_t dy = 0, dx = 0;  // crop offset into the padded image, 0..2P
  bool flip = false;
};

Augment draw_augment(uint64_t key, size_t index, int64_t padding, bool random_flip) {
  uint32_t w[4];
  philox_block(key, index, w);
  Augment a;
  if (padding > 0) {
    const uint32_t span = static_cast<uint32_t>(2 * padding + 1);
    a.dy = static_cast<int64_t>(w[0] % span);
    a.dx = static_cast<int64_t>(w[1] % span);
  }
  a.flip = random_flip && uint32_to_bernoulli(w[2], 0.5f);
  return a;
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<Dataset> dataset, DataLoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  const auto& o = options_;
  MANTISSA_CHECK(dataset_ != nullptr, kWho, ": the dataset is null");
  MANTISSA_CHECK(o.batch_size >= 1, kWho, ": batch_size must be >= 1, got ", o.batch_size);
  MANTISSA_CHECK(o.num_batches_prefetched >= 1, kWho, ": num_batches_prefetched must be >= 1, got ",
                 o.num_batches_prefetched);
  MANTISSA_CHECK(o.random_crop_padding >= 0, kWho, ": random_crop_padding must be >= 0, got ",
                 o.random_crop_padding);
  MANTISSA_CHECK(o.mean.size() == o.std.size(), kWho, ": normalization has ", o.mean.size(), " means but ",
                 o.std.size(), " stds; give one of each per channel");
  for (size_t c = 0; c < o.std.size(); ++c) {
    MANTISSA_CHECK(std::isfinite(o.mean[c]) && std::isfinite(o.std[c]) && o.std[c] > 0.0f, kWho,
                   ": normalization for channel ", c, " has mean ", o.mean[c], " and std ", o.std[c],
                   "; both must be finite and std > 0");
  }
}

DataLoader::~DataLoader() { stop_worker(); }

size_t DataLoader::size() const {
  const size_t n = dataset_->size();
  const size_t b = static_cast<size_t>(options_.batch_size);
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::set_epoch(uint64_t epoch) { next_epoch_ = epoch; }

std::vector<size_t> DataLoader::order(uint64_t epoch) const {
  std::vector<size_t> idx(dataset_->size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  if (!options_.shuffle || idx.size() < 2) return idx;
  // Fisher-Yates: draw t picks j in [0, i] for i = n-1 down to 1, from 64-bit uniforms (two
  // per Philox block); the modulo bias is below n / 2^64.
  const uint64_t key = epoch_key(options_.seed, epoch, kShuffle);
  uint32_t w[4];
  uint64_t t = 0;
  for (size_t i = idx.size() - 1; i > 0; --i, ++t) {
    if (t % 2 == 0) philox_block(key, t / 2, w);
    const uint32_t* p = w + 2 * (t % 2);
    const uint64_t r = (uint64_t{p[0]} << 32) | p[1];
    std::swap(idx[i], idx[static_cast<size_t>(r % (i + 1))]);
  }
  return idx;
}

Example DataLoader::batch(uint64_t epoch, size_t batch_index) const {
  MANTISSA_CHECK(batch_index < size(), kWho, ": batch ", batch_index, " is out of range for an epoch of ", size(),
                 " batches");
  return make_batch(epoch, order(epoch), batch_index);
}

Example DataLoader::make_batch(uint64_t epoch, const std::vector<size_t>& order, size_t batch_index) const {
  const auto& o = options_;
  const size_t begin = batch_index * static_cast<size_t>(o.batch_size);
  const size_t end = std::min(order.size(), begin + static_cast<size_t>(o.batch_size));
  const std::vector<size_t> indices(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                    order.begin() + static_cast<std::ptrdiff_t>(end));
  Example b = dataset_->get_batch(indices);
  const int64_t n = static_cast<int64_t>(indices.size());
  MANTISSA_CHECK(b.data.defined() && b.target.defined() && b.data.dim() >= 1 && b.target.dim() >= 1 &&
                     b.data.size(0) == n && b.target.size(0) == n,
                 kWho, ": the dataset's get_batch returned data ",
                 b.data.defined() ? shape_str(b.data.sizes()) : "(undefined)", " and target ",
                 b.target.defined() ? shape_str(b.target.sizes()) : "(undefined)", " for ", n,
                 " indices; both need ", n, " rows");

  const bool augment = o.random_crop_padding > 0 || o.random_flip;
  const bool normalize = !o.mean.empty();
  // Only CPU tensors can be pinned; a dataset that already yields device tensors is left alone.
  auto pinned = [&](const Tensor& t) { return o.pin_memory && t.is_cpu() ? t.pin_memory() : t; };
  if (!augment && !normalize) return {pinned(b.data), pinned(b.target)};

  const Tensor src = b.data.contiguous();
  MANTISSA_CHECK(src.dtype() == DType::F32 && src.is_cpu(), kWho,
                 ": normalization and augmentation need CPU F32 data, but the dataset gives ", src.dtype(), " on ",
                 src.device());
  MANTISSA_CHECK(!augment || src.dim() == 4, kWho, ": random crop and flip need image batches [B, C, H, W], got ",
                 shape_str(src.sizes()));
  const int64_t channels = src.dim() >= 2 ? src.size(1) : 1;
  MANTISSA_CHECK(!normalize || o.mean.size() == 1 || static_cast<int64_t>(o.mean.size()) == channels, kWho,
                 ": normalization has ", o.mean.size(), " mean/std values but the data ", shape_str(src.sizes()),
                 " has ", channels, " channels (dim 1); give one value per channel or a single value");
  const int64_t h = src.dim() == 4 ? src.size(2) : 1;
  const int64_t w = src.dim() == 4 ? src.size(3) : (n > 0 && channels > 0 ? src.numel() / (n * channels) : 0);

  Tensor out = empty(src.sizes(), TensorOptions().pinned_memory(o.pin_memory));
  const float* s = src.data<float>();
  float* d = out.data<float>();
  const int64_t pad = o.random_crop_padding;
  const uint64_t key = epoch_key(o.seed, epoch, kAugment);
  for (int64_t k = 0; k < n; ++k) {
    const Augment a = augment ? draw_augment(key, indices[static_cast<size_t>(k)], pad, o.random_flip) : Augment{};
    for (int64_t c = 0; c < channels; ++c) {
      // (x - mean) / std as torchvision's Normalize computes it, so values match bit for bit.
      const size_t ci = o.mean.size() == 1 ? 0 : static_cast<size_t>(c);
      const float m = normalize ? o.mean[ci] : 0.0f;
      const float sd = normalize ? o.std[ci] : 1.0f;
      const float* plane = s + (k * channels + c) * h * w;
      float* op = d + (k * channels + c) * h * w;
      if (!augment) {
        for (int64_t j = 0; j < h * w; ++j) op[j] = (plane[j] - m) / sd;
        continue;
      }
      const float zero = (0.0f - m) / sd;  // the zero padding, normalized like any pixel
      for (int64_t y = 0; y < h; ++y) {
        const int64_t sy = y + a.dy - pad;
        float* orow = op + y * w;
        if (sy < 0 || sy >= h) {
          std::fill(orow, orow + w, zero);
          continue;
        }
        const float* srow = plane + sy * w;
        for (int64_t x = 0; x < w; ++x) {
          // Crop first, then flip the crop (torchvision's order): output column x reads crop
          // column w-1-x when flipped.
          const int64_t cx = a.flip ? w - 1 - x : x;
          const int64_t sx = cx + a.dx - pad;
          orow[x] = (sx < 0 || sx >= w) ? zero : (srow[sx] - m) / sd;
        }
      }
    }
  }
  return {out, pinned(b.target)};
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  not_full_.notify_all();
  not_empty_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  queue_.clear();
  stop_ = false;
  worker_done_ = false;
}

void DataLoader::worker_loop(uint64_t epoch, std::shared_ptr<const std::vector<size_t>> order, size_t batches) {
  const size_t capacity = static_cast<size_t>(options_.num_batches_prefetched);
  for (size_t b = 0; b < batches; ++b) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) break;
    }
    Slot slot;
    try {
      slot.batch = make_batch(epoch, *order, b);
    } catch (...) {
      slot.error = std::current_exception();
    }
    const bool failed = slot.error != nullptr;
    std::unique_lock<std::mutex> lock(mutex_);
    not_full_.wait(lock, [&] { return stop_ || queue_.size() < capacity; });
    if (stop_) break;
    queue_.push_back(std::move(slot));
    lock.unlock();
    not_empty_.notify_one();
    if (failed) break;  // the consumer rethrows; nothing after a failed batch is produced
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    worker_done_ = true;
  }
  not_empty_.notify_all();
}

void DataLoader::advance() {
  if (!options_.prefetch) {
    current_ = make_batch(running_epoch_, *order_, position_);
    return;
  }
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty() || worker_done_; });
    MANTISSA_CHECK(!queue_.empty(), kWho, ": batch ", position_, " of epoch ", running_epoch_,
                   " is not available: the epoch stopped after an earlier error; call begin() to start again");
    slot = std::move(queue_.front());
    queue_.pop_front();
  }
  not_full_.notify_one();
  if (slot.error) std::rethrow_exception(slot.error);
  current_ = std::move(slot.batch);
}

DataLoader::Iterator DataLoader::begin() {
  stop_worker();
  ++generation_;
  running_epoch_ = next_epoch_++;
  order_ = std::make_shared<const std::vector<size_t>>(order(running_epoch_));
  position_ = 0;
  current_ = Example{};
  const size_t batches = size();
  if (options_.prefetch && batches > 0) {
    worker_ = std::thread(&DataLoader::worker_loop, this, running_epoch_, order_, batches);
  }
  if (batches > 0) advance();
  return Iterator(this, generation_, 0);
}

DataLoader::Iterator DataLoader::end() { return Iterator(this, generation_, size()); }

void DataLoader::check_iterator(const Iterator& it) const {
  MANTISSA_CHECK(it.loader_ == this && it.generation_ == generation_, kWho,
                 ": this iterator belongs to an earlier epoch (begin() was called again since)");
  MANTISSA_CHECK(it.position_ < size(), kWho, ": the iterator is past the last batch (", size(), " per epoch)");
}

Example& DataLoader::Iterator::operator*() const {
  MANTISSA_CHECK(loader_ != nullptr, kWho, ": dereferencing an iterator that belongs to no DataLoader");
  loader_->check_iterator(*this);
  return loader_->current_;
}

DataLoader::Iterator& DataLoader::Iterator::operator++() {
  MANTISSA_CHECK(loader_ != nullptr, kWho, ": incrementing an iterator that belongs to no DataLoader");
  loader_->check_iterator(*this);
  ++position_;
  loader_->position_ = position_;
  if (position_ < loader_->size()) loader_->advance();
  return *this;
}

}  // namespace mantissa::data
