// Tests for the DataLoader (data/loader.h), the Dataset default get_batch (data/dataset.h) and
// the SyntheticDataset (data/synthetic.h): order and epochs, drop_last, normalization, crop and
// flip against a reference on a tiny image, prefetch on/off equality, worker errors, early
// exits and teardown mid-epoch.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <set>
#include <thread>

#include "data/loader.h"
#include "data/mnist.h"
#include "data/synthetic.h"
#include "tests/data/data_files.h"

namespace mantissa::data {
namespace {

using testing::expect_error;

// Sample i: data [C, H, W] with value i * 1000 + flat position, target i. Implements only get()
// so the default get_batch is exercised; optionally throws at one index or sleeps.
class IndexDataset : public Dataset {
 public:
  IndexDataset(size_t n, Shape shape = {1, 1, 1}) : n_(n), shape_(std::move(shape)) {}
  size_t size() const override { return n_; }
  Example get(size_t i) const override {
    check_index(i, "index");
    if (static_cast<int64_t>(i) == fail_at && failures_left.load() > 0) {
      --failures_left;
      throw mantissa::Error("index: sample " + std::to_string(i) + " is broken");
    }
    if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    Tensor d = empty(shape_);
    float* p = d.data<float>();
    for (int64_t j = 0; j < d.numel(); ++j) p[j] = static_cast<float>(i) * 1000.0f + static_cast<float>(j);
    return {d, scalar_tensor(static_cast<double>(i), DType::I64)};
  }
  int64_t fail_at = -1;
  mutable std::atomic<int> failures_left{1 << 30};
  int sleep_us = 0;

 private:
  size_t n_;
  Shape shape_;
};

std::vector<int64_t> epoch_targets(DataLoader& loader, std::vector<size_t>* batch_sizes = nullptr) {
  std::vector<int64_t> all;
  for (auto& batch : loader) {
    const auto t = to_vector<int64_t>(batch.target);
    if (batch_sizes != nullptr) batch_sizes->push_back(t.size());
    all.insert(all.end(), t.begin(), t.end());
  }
  return all;
}

TEST(DataLoader, SizeAndDropLast) {
  auto ds = std::make_shared<IndexDataset>(10);
  DataLoader a(ds, DataLoaderOptions(3));
  EXPECT_EQ(a.size(), 4u);
  std::vector<size_t> sizes;
  EXPECT_EQ(epoch_targets(a, &sizes), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 3, 1}));
  DataLoader b(ds, DataLoaderOptions(3).set_drop_last(true));
  EXPECT_EQ(b.len(), 3u);
  sizes.clear();
  EXPECT_EQ(epoch_targets(b, &sizes).size(), 9u);
  EXPECT_EQ(sizes, (std::vector<size_t>{3, 3, 3}));
  DataLoader c(ds, DataLoaderOptions(20).set_drop_last(true));
  EXPECT_EQ(c.size(), 0u);
  EXPECT_TRUE(c.begin() == c.end());
}

TEST(DataLoader, DefaultGetBatchStacks) {
  IndexDataset ds(4, {2, 3});
  Example b = ds.get_batch({3, 1});
  EXPECT_EQ(b.data.sizes(), Shape({2, 2, 3}));
  EXPECT_EQ(b.target.sizes(), Shape({2}));
  EXPECT_EQ(to_vector<float>(b.data)[0], 3000.0f);
  EXPECT_EQ(to_vector<float>(b.data)[6 + 5], 1005.0f);
  EXPECT_EQ(to_vector<int64_t>(b.target), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(ds.get_batch({}).data.sizes(), Shape({0, 2, 3}));
  expect_error([&] { ds.get_batch({4}); }, {"index 4"});
}

TEST(DataLoader, ShuffleIsAPermutationPerEpochAndReproducible) {
  auto ds = std::make_shared<IndexDataset>(103);
  DataLoader a(ds, DataLoaderOptions(10).set_shuffle(true).set_seed(7));
  DataLoader b(ds, DataLoaderOptions(10).set_shuffle(true).set_seed(7));
  DataLoader c(ds, DataLoaderOptions(10).set_shuffle(true).set_seed(8));
  const auto a0 = epoch_targets(a), a1 = epoch_targets(a);  // epochs 0 and 1
  EXPECT_EQ(a.epoch(), 2u);
  for (const auto* e : {&a0, &a1}) {
    std::vector<int64_t> sorted = *e;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 103; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);  // each index exactly once
  }
  EXPECT_NE(a0, a1);
  EXPECT_EQ(epoch_targets(b), a0);
  EXPECT_EQ(epoch_targets(b), a1);
  EXPECT_NE(epoch_targets(c), a0);
  b.set_epoch(1);
  EXPECT_EQ(epoch_targets(b), a1);
  std::vector<int64_t> from_order;
  for (size_t i : a.order(0)) from_order.push_back(static_cast<int64_t>(i));
  EXPECT_EQ(from_order, a0);
}

TEST(DataLoader, NormalizationValues) {
  auto ds = std::make_shared<IndexDataset>(4, Shape{2, 1, 2});
  DataLoader l(ds, DataLoaderOptions(4).set_normalize({100.0f, -3.0f}, {2.0f, 0.5f}));
  auto it = l.begin();
  const auto v = to_vector<float>(it->data);
  ASSERT_EQ(it->data.sizes(), Shape({4, 2, 1, 2}));
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t c = 0; c < 2; ++c) {
      for (int64_t j = 0; j < 2; ++j) {
        const float x = static_cast<float>(i) * 1000.0f + static_cast<float>(c * 2 + j);
        const float expected = c == 0 ? (x - 100.0f) / 2.0f : (x + 3.0f) / 0.5f;
        EXPECT_EQ(v[static_cast<size_t>((i * 2 + c) * 2 + j)], expected);
      }
    }
  }
  DataLoader one(ds, DataLoaderOptions(4).set_normalize({1.0f}, {4.0f}));
  EXPECT_EQ(to_vector<float>(one.begin()->data)[3], (3.0f - 1.0f) / 4.0f);
  DataLoader bad(ds, DataLoaderOptions(4).set_normalize({0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}));
  expect_error([&] { bad.begin(); }, {"DataLoader", "3 mean/std values", "[4, 2, 1, 2]", "2 channels"});
  expect_error([&] { DataLoader(ds, DataLoaderOptions(4).set_normalize({0.f}, {0.f})); }, {"std 0"});
  expect_error([&] { DataLoader(ds, DataLoaderOptions(4).set_normalize({0.f}, {})); }, {"1 means but 0 stds"});
  expect_error([&] { DataLoader(ds, DataLoaderOptions(0)); }, {"batch_size must be >= 1"});
}

// Reference: pad by p with zeros, crop at (dy, dx), then flip, on one [C, H, W] image.
std::vector<float> reference_aug(const std::vector<float>& img, int64_t c, int64_t h, int64_t w, int64_t p,
                                 int64_t dy, int64_t dx, bool flip) {
  std::vector<float> padded(static_cast<size_t>(c * (h + 2 * p) * (w + 2 * p)), 0.0f);
  const int64_t pw = w + 2 * p, ph = h + 2 * p;
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        padded[static_cast<size_t>((ch * ph + y + p) * pw + x + p)] = img[static_cast<size_t>((ch * h + y) * w + x)];
  std::vector<float> out(img.size());
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const float v = padded[static_cast<size_t>((ch * ph + y + dy) * pw + x + dx)];
        const int64_t ox = flip ? w - 1 - x : x;
        out[static_cast<size_t>((ch * h + y) * w + ox)] = v;
      }
  return out;
}

TEST(DataLoader, RandomCropAndFlipMatchReference) {
  const int64_t c = 2, h = 3, w = 4, p = 1;
  auto ds = std::make_shared<IndexDataset>(64, Shape{c, h, w});
  DataLoader l(ds, DataLoaderOptions(16).set_random_crop(p).set_random_flip(true).set_seed(3));
  std::set<std::tuple<int64_t, int64_t, bool>> seen;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (auto& batch : l) {
      const auto v = to_vector<float>(batch.data);
      const auto t = to_vector<int64_t>(batch.target);
      for (size_t k = 0; k < t.size(); ++k) {
        const auto orig = to_vector<float>(ds->get(static_cast<size_t>(t[k])).data);
        const std::vector<float> got(v.begin() + static_cast<std::ptrdiff_t>(k * orig.size()),
                                     v.begin() + static_cast<std::ptrdiff_t>((k + 1) * orig.size()));
        bool matched = false;
        for (int64_t dy = 0; dy <= 2 * p && !matched; ++dy)
          for (int64_t dx = 0; dx <= 2 * p && !matched; ++dx)
            for (bool flip : {false, true})
              if (reference_aug(orig, c, h, w, p, dy, dx, flip) == got) {
                seen.insert({dy, dx, flip});
                matched = true;
                break;
              }
        ASSERT_TRUE(matched) << "sample " << t[k] << " is no crop/flip of its image";
      }
    }
  }
  EXPECT_EQ(seen.size(), 18u);  // every offset and both flips occur over 192 draws
}

TEST(DataLoader, AugmentationZeroPaddingIsNormalizedAndDeterministic) {
  auto ds = std::make_shared<IndexDataset>(8, Shape{1, 2, 2});
  auto opts = DataLoaderOptions(8).set_random_crop(2).set_normalize({0.5f}, {0.25f}).set_seed(11);
  DataLoader l(ds, opts);
  const auto v = to_vector<float>(l.begin()->data);
  // With padding 2 on a 2x2 image, most crops hold padding, whose value is (0 - 0.5) / 0.25.
  EXPECT_GT(std::count(v.begin(), v.end(), -2.0f), 0);
  DataLoader again(ds, opts);
  EXPECT_EQ(to_vector<float>(again.begin()->data), v);
  expect_error([&] {
    DataLoader flat(std::make_shared<IndexDataset>(2, Shape{3}), DataLoaderOptions(2).set_random_flip(true));
    flat.begin();
  }, {"[B, C, H, W]", "[2, 3]"});
}

TEST(DataLoader, PrefetchOnAndOffGiveIdenticalBatches) {
  auto ds = std::make_shared<SyntheticDataset>(SyntheticOptions().set_size(50).set_sample_shape({3, 8, 8}));
  auto opts = DataLoaderOptions(7).set_shuffle(true).set_seed(5).set_random_crop(2).set_random_flip(true)
                  .set_normalize({0.5f, 0.4f, 0.3f}, {0.2f, 0.3f, 0.4f});
  DataLoader on(ds, DataLoaderOptions(opts).set_prefetch(true).set_num_batches_prefetched(3));
  DataLoader off(ds, DataLoaderOptions(opts).set_prefetch(false));
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<Example> a, b;
    for (auto& x : on) a.push_back(x);
    for (auto& x : off) b.push_back(x);
    ASSERT_EQ(a.size(), 8u);
    ASSERT_EQ(b.size(), 8u);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(to_vector<float>(a[i].data), to_vector<float>(b[i].data));
      EXPECT_EQ(to_vector<int64_t>(a[i].target), to_vector<int64_t>(b[i].target));
      EXPECT_EQ(to_vector<float>(on.batch(static_cast<uint64_t>(epoch), i).data), to_vector<float>(a[i].data));
    }
  }
}

TEST(DataLoader, WorkerExceptionIsRethrownInConsumer) {
  for (bool prefetch : {true, false}) {
    auto ds = std::make_shared<IndexDataset>(20);
    ds->fail_at = 13;
    DataLoader l(ds, DataLoaderOptions(4).set_prefetch(prefetch).set_shuffle(false));
    int batches = 0;
    expect_error([&] {
      for (auto& b : l) {
        (void)b;
        ++batches;
      }
    }, {"sample 13 is broken"});
    EXPECT_EQ(batches, 3);  // batches 0..2 arrive, batch 3 holds sample 13
    ds->failures_left = 0;  // repaired: a new epoch runs through
    EXPECT_EQ(epoch_targets(l).size(), 20u);
  }
  // After the error, stepping the stale epoch reports it instead of hanging.
  auto ds = std::make_shared<IndexDataset>(8);
  ds->fail_at = 2;
  DataLoader l(ds, DataLoaderOptions(2));
  auto it = l.begin();
  expect_error([&] { ++it; }, {"sample 2 is broken"});
  expect_error([&] { ++it; }, {"DataLoader", "earlier error"});
}

TEST(DataLoader, EarlyBreakAndNewEpoch) {
  auto ds = std::make_shared<IndexDataset>(40);
  ds->sleep_us = 200;
  DataLoader l(ds, DataLoaderOptions(2).set_shuffle(true).set_num_batches_prefetched(2));
  for (auto& b : l) {
    (void)b;
    break;  // the worker is blocked on a full queue now
  }
  const auto e1 = epoch_targets(l);
  EXPECT_EQ(e1.size(), 40u);
  DataLoader ref(ds, DataLoaderOptions(2).set_shuffle(true));
  ref.set_epoch(1);
  EXPECT_EQ(epoch_targets(ref), e1);  // the broken epoch 0 still counted

  auto stale = l.begin();
  l.begin();
  expect_error([&] { ++stale; }, {"earlier epoch"});
}

TEST(DataLoader, DestructionMidEpochJoins) {
  auto ds = std::make_shared<IndexDataset>(1000);
  ds->sleep_us = 100;
  for (int i = 0; i < 5; ++i) {
    DataLoader l(ds, DataLoaderOptions(4).set_num_batches_prefetched(1 + i));
    auto it = l.begin();
    ++it;
  }  // each destructor stops and joins a worker that is busy or blocked
  SUCCEED();
}

TEST(DataLoader, MnistEndToEnd) {
  testing::TempDir dir;
  testing::write_file(dir.file("train-images-idx3-ubyte.gz"), testing::gzip(testing::idx_images(10, 28, 28)));
  testing::write_file(dir.file("train-labels-idx1-ubyte"), testing::idx_labels({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  DataLoader l(std::make_shared<MNIST>(dir.path()), DataLoaderOptions(4).set_normalize({0.1307f}, {0.3081f}));
  std::vector<size_t> sizes;
  EXPECT_EQ(epoch_targets(l, &sizes), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(sizes, (std::vector<size_t>{4, 4, 2}));
  const auto v = to_vector<float>(l.begin()->data);
  EXPECT_EQ(v[29], (testing::pixel(0, 1, 1) / 255.0f - 0.1307f) / 0.3081f);
}

TEST(Synthetic, DeterministicBalancedAndInRange) {
  SyntheticDataset a(SyntheticOptions().set_size(40).set_seed(1));
  SyntheticDataset b(SyntheticOptions().set_size(40).set_seed(1));
  SyntheticDataset c(SyntheticOptions().set_size(40).set_seed(2));
  Example x = a.get_batch({0, 5, 39});
  EXPECT_EQ(x.data.sizes(), Shape({3, 3, 32, 32}));
  EXPECT_EQ(to_vector<float>(x.data), to_vector<float>(b.get_batch({0, 5, 39}).data));
  EXPECT_NE(to_vector<float>(x.data), to_vector<float>(c.get_batch({0, 5, 39}).data));
  EXPECT_EQ(to_vector<float>(a.get(5).data), to_vector<float>(x.data.select(0, 1).contiguous()));
  for (float v : to_vector<float>(x.data)) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
  std::vector<int> counts(10, 0);
  for (size_t i = 0; i < 40; ++i) ++counts[static_cast<size_t>(a.label(i))];
  for (int n : counts) EXPECT_EQ(n, 4);
  expect_error([] { SyntheticDataset(SyntheticOptions().set_sample_shape({3, 0})); }, {"synthetic", "[3, 0]"});
}

// A nearest-class-mean classifier fit on the training part separates the classes: the data
// carries a learnable signal.
TEST(Synthetic, ClassesAreSeparable) {
  SyntheticDataset ds(SyntheticOptions().set_size(400).set_sample_shape({1, 8, 8}).set_num_classes(4).set_noise(0.3f));
  std::vector<size_t> idx(400);
  for (size_t i = 0; i < 400; ++i) idx[i] = i;
  Example all = ds.get_batch(idx);
  const auto v = to_vector<float>(all.data);
  const auto t = to_vector<int64_t>(all.target);
  std::vector<double> mean(4 * 64, 0.0);
  std::vector<int> n(4, 0);
  for (size_t i = 0; i < 200; ++i) {
    ++n[static_cast<size_t>(t[i])];
    for (size_t j = 0; j < 64; ++j) mean[static_cast<size_t>(t[i]) * 64 + j] += v[i * 64 + j];
  }
  for (size_t k = 0; k < 4; ++k)
    for (size_t j = 0; j < 64; ++j) mean[k * 64 + j] /= n[k];
  int correct = 0;
  for (size_t i = 200; i < 400; ++i) {
    size_t best = 0;
    double best_d = 1e30;
    for (size_t k = 0; k < 4; ++k) {
      double d = 0;
      for (size_t j = 0; j < 64; ++j) d += std::pow(v[i * 64 + j] - mean[k * 64 + j], 2);
      if (d < best_d) best_d = d, best = k;
    }
    correct += static_cast<int64_t>(best) == t[i];
  }
  EXPECT_GE(correct, 190);
}

}  // namespace
}  // namespace mantissa::data
