// Tests for the CIFAR-10 binary reader (data/cifar10.h): byte-exact batches made here, plane
// layout and concatenation order, the archive's nested folder, gzip, and every corruption
// class (size not a multiple of 3073, bad label, missing file, empty file) naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "data/cifar10.h"
#include "tests/data/data_files.h"

namespace mantissa::data {
namespace {

using namespace testing;  // NOLINT: the helpers of data_files.h

uint8_t cifar_pixel(uint32_t global, uint32_t c, uint32_t y, uint32_t x) {
  return static_cast<uint8_t>((global * 29 + c * 101 + y * 7 + x * 3) & 0xff);
}
uint8_t cifar_label(uint32_t global) { return static_cast<uint8_t>((global * 3 + 1) % 10); }

// A batch of `n` records whose content derives from the global record index first + r.
Bytes cifar_batch(uint32_t first, uint32_t n) {
  Bytes b;
  for (uint32_t r = 0; r < n; ++r) {
    b.push_back(cifar_label(first + r));
    for (uint32_t c = 0; c < 3; ++c)
      for (uint32_t y = 0; y < 32; ++y)
        for (uint32_t x = 0; x < 32; ++x) b.push_back(cifar_pixel(first + r, c, y, x));
  }
  return b;
}

const uint32_t kCounts[5] = {3, 2, 1, 2, 2};

void write_cifar(const std::string& dir, bool gz_second = false) {
  uint32_t first = 0;
  for (int i = 0; i < 5; ++i) {
    Bytes b = cifar_batch(first, kCounts[i]);
    write_file(dir + "/data_batch_" + std::to_string(i + 1) + ".bin", gz_second && i == 1 ? gzip(b) : b);
    first += kCounts[i];
  }
  write_file(dir + "/test_batch.bin", cifar_batch(100, 4));
}

void check_sample(const CIFAR10& c, size_t i, uint32_t global) {
  Example e = c.get(i);
  ASSERT_EQ(e.data.sizes(), Shape({3, 32, 32}));
  ASSERT_EQ(e.data.dtype(), DType::F32);
  EXPECT_EQ(e.target.item<int64_t>(), cifar_label(global));
  const auto v = to_vector<float>(e.data);
  for (uint32_t ch = 0; ch < 3; ++ch)
    for (uint32_t y = 0; y < 32; ++y)
      for (uint32_t x = 0; x < 32; ++x)
        ASSERT_EQ(v[(ch * 32 + y) * 32 + x], cifar_pixel(global, ch, y, x) / 255.0f) << ch << " " << y << " " << x;
}

TEST(Cifar10, ReadsTrainInFileOrderAndTest) {
  TempDir dir;
  write_cifar(dir.path(), /*gz_second=*/true);
  CIFAR10 train(dir.path(), Split::Train);
  ASSERT_EQ(train.size(), 10u);
  EXPECT_EQ(train.files().size(), 5u);
  for (uint32_t i = 0; i < 10; ++i) check_sample(train, i, i);
  CIFAR10 test(dir.path(), Split::Test);
  ASSERT_EQ(test.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) check_sample(test, i, 100 + i);

  Example b = train.get_batch({9, 0});
  EXPECT_EQ(b.data.sizes(), Shape({2, 3, 32, 32}));
  EXPECT_EQ(to_vector<int64_t>(b.target), (std::vector<int64_t>{cifar_label(9), cifar_label(0)}));
  EXPECT_EQ(to_vector<float>(b.data)[3072 + 1024 + 33], cifar_pixel(0, 1, 1, 1) / 255.0f);
  expect_error([&] { train.get(10); }, {"cifar10", "index 10"});
  EXPECT_STREQ(CIFAR10::class_name(9), "truck");
}

TEST(Cifar10, FindsTheArchiveFolder) {
  TempDir dir;
  write_cifar(dir.file("cifar-10-batches-bin"));
  EXPECT_EQ(CIFAR10(dir.path(), Split::Test).size(), 4u);
}

TEST(Cifar10, WrongSizeNamesFileSizeAndRemainder) {
  TempDir dir;
  write_cifar(dir.path());
  Bytes b = cifar_batch(0, 2);
  b.resize(b.size() - 100);
  const std::string f = dir.file("data_batch_3.bin");
  write_file(f, b);
  expect_error([&] { CIFAR10(dir.path(), Split::Train); },
               {"cifar10: " + f + " has 6046 bytes, not a multiple of the 3073-byte record", "1 whole records",
                "2973 bytes left over"});
  b = cifar_batch(0, 1);
  b.push_back(0);
  write_file(f, b);
  expect_error([&] { CIFAR10(dir.path(), Split::Train); }, {f, "3074 bytes", "1 bytes left over", "CIFAR-100"});
  write_file(f, {});
  expect_error([&] { CIFAR10(dir.path(), Split::Train); }, {f, "is empty"});
  write_file(f, gzip(Bytes(3000, 1)));
  expect_error([&] { CIFAR10(dir.path(), Split::Train); }, {f, "decompresses to 3000 bytes"});
}

TEST(Cifar10, LabelOutOfRange) {
  TempDir dir;
  write_cifar(dir.path());
  Bytes b = cifar_batch(0, 3);
  b[2 * 3073] = 10;
  const std::string f = dir.file("test_batch.bin");
  write_file(f, b);
  expect_error([&] { CIFAR10(dir.path(), Split::Test); }, {f, "record 2", "byte 6146", "label 10", "0..9"});
}

TEST(Cifar10, MissingFilesNameWhichAndWhere) {
  TempDir dir;
  write_cifar(dir.path());
  std::filesystem::remove(dir.file("data_batch_4.bin"));
  expect_error([&] { CIFAR10(dir.path(), Split::Train); }, {"data_batch_4.bin", dir.path(), kCifarUrl});
  std::filesystem::remove(dir.file("test_batch.bin"));
  expect_error([&] { CIFAR10(dir.path(), Split::Test); },
               {"test_batch.bin", dir.path(), "cifar-10-batches-bin", kCifarUrl});
  expect_error([&] { CIFAR10(dir.file("none"), Split::Test); }, {dir.file("none"), "does not exist", kCifarUrl});
}

TEST(Cifar10, CorruptGzipNamesFile) {
  TempDir dir;
  write_cifar(dir.path());
  Bytes gz = gzip(cifar_batch(0, 1));
  gz.resize(gz.size() - 20);
  const std::string f = dir.file("test_batch.bin");
  write_file(f, gz);
  expect_error([&] { CIFAR10(dir.path(), Split::Test); }, {f, "truncated gzip"});
}

TEST(Cifar10, FromTensors) {
  CIFAR10 c(zeros({2, 3, 32, 32}, DType::U8), from_vector(std::vector<int64_t>{1, 9}, {2}));
  EXPECT_EQ(c.size(), 2u);
  expect_error([&] { CIFAR10(zeros({2, 3, 32, 31}, DType::U8), from_vector(std::vector<int64_t>{1, 9}, {2})); },
               {"[2, 3, 32, 31]"});
  expect_error([&] { CIFAR10(zeros({1, 3, 32, 32}, DType::U8), from_vector(std::vector<int64_t>{10}, {1})); },
               {"target 10"});
}

TEST(Cifar10, MutationsNeverCrash) {
  std::mt19937 rng(99);
  const Bytes plain = cifar_batch(0, 2);
  const Bytes seeds[] = {plain, gzip(plain)};
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 1000; ++iter) {
    Bytes b = seeds[iter % 2];
    if (rng() % 2 == 0) {
      b.resize(rng() % (b.size() + 1));
    } else {
      for (int f = 0; f < 3; ++f) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    }
    try {
      parse_cifar10_batch(b.data(), b.size(), "mutant");
      ++parsed;
    } catch (const mantissa::Error& e) {
      ASSERT_NE(std::string(e.what()).find("mutant"), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace mantissa::data
