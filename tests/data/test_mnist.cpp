// Tests for the IDX/MNIST reader (data/mnist.h) and the gzip layer under it (data/bytes.h):
// byte-exact files made here in both spellings, plain and gzipped; every corruption class
// gives an Error naming the file; random mutations never crash. Real MNIST is checked only
// when present (scripts/fetch-mnist.sh data/mnist).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "data/bytes.h"
#include "data/mnist.h"
#include "tests/data/data_files.h"

namespace mantissa::data {
namespace {

using namespace testing;  // NOLINT: the helpers of data_files.h

std::vector<uint8_t> labels_for(uint32_t n) {
  std::vector<uint8_t> l;
  for (uint32_t i = 0; i < n; ++i) l.push_back(static_cast<uint8_t>((i * 7) % 10));
  return l;
}

// Writes one split's two files under the given spelling ("-" or ".") and compression.
void write_split(const TempDir& dir, const std::string& prefix, uint32_t n, uint32_t rows, uint32_t cols,
                 const std::string& sep, bool gz) {
  Bytes img = idx_images(n, rows, cols);
  Bytes lab = idx_labels(labels_for(n));
  const std::string ext = gz ? ".gz" : "";
  write_file(dir.file(prefix + "-images" + sep + "idx3-ubyte" + ext), gz ? gzip(img) : img);
  write_file(dir.file(prefix + "-labels" + sep + "idx1-ubyte" + ext), gz ? gzip(lab) : lab);
}

void check_values(const MNIST& m, uint32_t n, uint32_t rows, uint32_t cols) {
  ASSERT_EQ(m.size(), n);
  EXPECT_EQ(m.images().sizes(), Shape({n, rows, cols}));
  EXPECT_EQ(m.images().dtype(), DType::U8);
  const auto labels = labels_for(n);
  for (uint32_t i = 0; i < n; ++i) {
    Example e = m.get(i);
    ASSERT_EQ(e.data.sizes(), Shape({1, rows, cols}));
    ASSERT_EQ(e.data.dtype(), DType::F32);
    ASSERT_EQ(e.target.dim(), 0);
    EXPECT_EQ(e.target.item<int64_t>(), labels[i]);
    const auto v = to_vector<float>(e.data);
    for (uint32_t r = 0; r < rows; ++r)
      for (uint32_t c = 0; c < cols; ++c) ASSERT_EQ(v[r * cols + c], static_cast<float>(pixel(i, r, c)) / 255.0f);
  }
}

TEST(Mnist, ReadsBothSpellingsPlainAndGzip) {
  for (const std::string sep : {"-", "."}) {
    for (bool gz : {false, true}) {
      TempDir dir;
      write_split(dir, "train", 5, 4, 3, sep, gz);
      write_split(dir, "t10k", 3, 4, 3, sep, gz);
      SCOPED_TRACE("spelling '" + sep + "' gzip " + std::to_string(gz));
      check_values(MNIST(dir.path(), Split::Train), 5, 4, 3);
      check_values(MNIST(dir.path(), Split::Test), 3, 4, 3);
    }
  }
}

TEST(Mnist, GzipDetectedByMagicNotExtension) {
  TempDir dir;
  // A gzipped file without .gz and a plain file with .gz both read.
  write_file(dir.file("train-images-idx3-ubyte"), gzip(idx_images(4, 2, 2)));
  write_file(dir.file("train-labels-idx1-ubyte.gz"), idx_labels(labels_for(4)));
  check_values(MNIST(dir.path(), Split::Train), 4, 2, 2);
}

TEST(Mnist, BatchIsF32InUnitRangeWithI64Targets) {
  TempDir dir;
  write_split(dir, "train", 6, 28, 28, "-", false);
  MNIST m(dir.path());
  Example b = m.get_batch({5, 0, 3});
  EXPECT_EQ(b.data.sizes(), Shape({3, 1, 28, 28}));
  EXPECT_EQ(b.target.sizes(), Shape({3}));
  EXPECT_EQ(b.target.dtype(), DType::I64);
  const auto t = to_vector<int64_t>(b.target);
  EXPECT_EQ(t, (std::vector<int64_t>{5 * 7 % 10, 0, 3 * 7 % 10}));
  const auto v = to_vector<float>(b.data);
  EXPECT_EQ(v[0], pixel(5, 0, 0) / 255.0f);
  EXPECT_EQ(v[784 + 28 * 2 + 5], pixel(0, 2, 5) / 255.0f);
  for (float x : v) ASSERT_TRUE(x >= 0.0f && x <= 1.0f);
  EXPECT_EQ(m.get_batch({}).data.sizes(), Shape({0, 1, 28, 28}));
  expect_error([&] { m.get_batch({0, 6}); }, {"mnist", "index 6", "6 samples"});
  expect_error([&] { m.get(100); }, {"mnist", "index 100"});
}

TEST(Mnist, EmptySetIsValid) {
  TempDir dir;
  write_split(dir, "train", 0, 28, 28, "-", true);
  MNIST m(dir.path());
  EXPECT_EQ(m.size(), 0u);
}

TEST(Mnist, FromTensors) {
  Tensor images = from_vector(std::vector<uint8_t>{0, 255, 51, 102}, {1, 2, 2});
  MNIST m(images, from_vector(std::vector<int64_t>{3}, {1}));
  EXPECT_EQ(to_vector<float>(m.get(0).data), (std::vector<float>{0.0f, 1.0f, 0.2f, 0.4f}));
  expect_error([&] { MNIST(images, from_vector(std::vector<int64_t>{10}, {1})); }, {"mnist", "target 10", "0..9"});
  expect_error([&] { MNIST(zeros({1, 2, 2}), from_vector(std::vector<int64_t>{0}, {1})); }, {"U8", "F32"});
}

// Corruption classes: each error names the file and says what is wrong.
struct Corrupt : ::testing::Test {
  TempDir dir;
  std::string images = dir.file("train-images-idx3-ubyte");
  std::string labels = dir.file("train-labels-idx1-ubyte");
  void SetUp() override { write_split(dir, "train", 4, 3, 3, "-", false); }
  void load() { MNIST m(dir.path()); }
};

TEST_F(Corrupt, BadMagic) {
  Bytes b = idx_images(4, 3, 3);
  b[0] = 0x12;
  write_file(images, b);
  expect_error([&] { load(); }, {"mnist: ", images, "magic number", "2051", "not an IDX file"});
}

TEST_F(Corrupt, LabelsFileWhereImagesBelong) {
  write_file(images, idx_labels(labels_for(4)));
  expect_error([&] { load(); }, {images, "2049", "labels file"});
  write_file(images, idx_images(4, 3, 3));
  write_file(labels, idx_images(4, 3, 3));
  expect_error([&] { load(); }, {labels, "2051", "images file"});
}

TEST_F(Corrupt, ByteSwappedHeader) {
  Bytes b = idx_images(4, 3, 3);
  std::swap(b[0], b[3]);
  std::swap(b[1], b[2]);
  write_file(images, b);
  expect_error([&] { load(); }, {images, "byte-swapped"});
}

TEST_F(Corrupt, OtherIdxElementType) {
  Bytes b = idx_images(4, 3, 3);
  b[2] = 0x0D;  // floats
  write_file(images, b);
  expect_error([&] { load(); }, {images, "32-bit floats with 3 dimension"});
}

TEST_F(Corrupt, Truncated) {
  Bytes b = idx_images(4, 3, 3);
  b.resize(b.size() - 5);
  write_file(images, b);
  expect_error([&] { load(); }, {"mnist: " + images + " is truncated: header says 4 images of 3x3 (52 bytes) but the file has 47 bytes"});
  write_file(dir.file("train-images-idx3-ubyte"), gzip(b));
  expect_error([&] { load(); }, {images, "truncated", "decompresses to 47 bytes"});
  Bytes l = idx_labels(labels_for(4));
  l.pop_back();
  write_file(images, idx_images(4, 3, 3));
  write_file(labels, l);
  expect_error([&] { load(); }, {labels, "truncated", "4 labels", "11 bytes"});
}

TEST_F(Corrupt, TruncatedHeader) {
  Bytes b = idx_images(4, 3, 3);
  b.resize(10);
  write_file(images, b);
  expect_error([&] { load(); }, {images, "truncated", "10 bytes", "16 bytes"});
  b.resize(2);
  write_file(images, b);
  expect_error([&] { load(); }, {images, "too short", "2 bytes"});
  write_file(images, {});
  expect_error([&] { load(); }, {images, "too short", "0 bytes"});
}

TEST_F(Corrupt, TrailingBytes) {
  Bytes b = idx_images(4, 3, 3);
  b.push_back(0);
  b.push_back(0);
  write_file(images, b);
  expect_error([&] { load(); }, {images, "2 trailing bytes", "52 bytes", "54 bytes"});
}

TEST_F(Corrupt, CountMismatch) {
  write_file(labels, idx_labels(labels_for(5)));
  expect_error([&] { load(); }, {images, labels, "4 images", "5 labels"});
}

TEST_F(Corrupt, LabelOutOfRange) {
  auto l = labels_for(4);
  l[2] = 10;
  write_file(labels, idx_labels(l));
  expect_error([&] { load(); }, {labels, "label 10", "index 2", "0..9"});
  l[2] = 255;
  write_file(labels, idx_labels(l));
  EXPECT_EQ(MNIST(dir.path(), Split::Train, 256).num_classes(), 256);
  expect_error([&] { MNIST(dir.path(), Split::Train, 0); }, {"num_classes"});
}

TEST_F(Corrupt, ZeroDims) {
  write_file(images, idx_images(4, 0, 3));
  expect_error([&] { load(); }, {images, "0x3"});
  write_file(images, idx_images(4, 3, 0));
  expect_error([&] { load(); }, {images, "3x0"});
  Bytes huge;
  put_be32(huge, 2051);
  put_be32(huge, 0xffffffffu);
  put_be32(huge, 0xffffffffu);
  put_be32(huge, 0xffffffffu);
  write_file(images, huge);
  expect_error([&] { load(); }, {images, "4294967295x4294967295"});
  // A header promising huge sizes with few bytes present is truncated, not an allocation.
  huge.resize(8);
  put_be32(huge, 28);
  put_be32(huge, 28);
  write_file(images, huge);
  expect_error([&] { load(); }, {images, "truncated", "4294967295 images of 28x28"});
}

TEST_F(Corrupt, MissingFiles) {
  std::filesystem::remove(labels);
  expect_error([&] { load(); }, {dir.path(), "train-labels-idx1-ubyte", "train-labels.idx1-ubyte", "fetch-mnist.sh"});
  expect_error([&] { MNIST(dir.path(), Split::Test); }, {dir.path(), "t10k-images-idx3-ubyte"});
  expect_error([&] { MNIST(dir.file("nope")); }, {dir.file("nope"), "does not exist"});
  std::filesystem::remove(images);
  std::filesystem::create_directory(images);
  write_split(dir, "train", 4, 3, 3, ".", false);  // the other spelling's labels
  expect_error([&] { load(); }, {images, "is a directory"});
}

TEST_F(Corrupt, CorruptGzip) {
  Bytes gz = gzip(idx_images(4, 3, 3));
  Bytes bad = gz;
  for (size_t i = 12; i < bad.size() - 8; ++i) bad[i] ^= 0x5a;
  write_file(images, bad);
  expect_error([&] { load(); }, {"mnist: " + images, "corrupt gzip"});
  bad = gz;
  bad[bad.size() - 6] ^= 1;  // the CRC
  write_file(images, bad);
  expect_error([&] { load(); }, {images, "corrupt gzip", "incorrect data check"});
  bad = Bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  write_file(images, bad);
  expect_error([&] { load(); }, {images, "truncated gzip"});
  bad = gz;
  bad.push_back(0);
  bad.push_back(1);
  write_file(images, bad);
  expect_error([&] { load(); }, {images, "2 unexpected bytes after the end of its gzip stream"});
  write_file(images, {0x1f, 0x8b});
  expect_error([&] { load(); }, {images, "gzip"});
}

TEST(Gzip, MultiMemberAndLimit) {
  Bytes a = idx_images(2, 2, 2);
  Bytes tail(a.begin() + 10, a.end());
  Bytes head(a.begin(), a.begin() + 10);
  Bytes both = gzip(head);
  Bytes second = gzip(tail);
  both.insert(both.end(), second.begin(), second.end());
  Tensor t = parse_idx_images(both.data(), both.size(), "two-members");
  EXPECT_EQ(t.sizes(), Shape({2, 2, 2}));
  Bytes big(100000, 7);
  Bytes z = gzip(big);
  EXPECT_EQ(gunzip(z.data(), z.size(), "t", "x", 100000).size(), 100000u);
  expect_error([&] { gunzip(z.data(), z.size(), "t", "x", 99999); }, {"t: x decompresses to more than 99999 bytes"});
}

// Random truncations, bit flips and byte overwrites of valid files (plain and gzip) either
// parse or throw mantissa::Error; never anything else (the fuzz targets do this at length).
TEST(Mnist, MutationsNeverCrash) {
  std::mt19937 rng(1234);
  const Bytes images = idx_images(3, 4, 4);
  const Bytes labels = idx_labels(labels_for(3));
  const Bytes seeds[] = {images, labels, gzip(images), gzip(labels)};
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes b = seeds[iter % 4];
    const int kind = static_cast<int>(rng() % 3);
    if (kind == 0) {
      b.resize(rng() % (b.size() + 1));
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const size_t at = rng() % b.size();
        b[at] = kind == 1 ? static_cast<uint8_t>(b[at] ^ (1u << (rng() % 8))) : static_cast<uint8_t>(rng());
      }
    }
    try {
      if (iter % 2 == 0) {
        parse_idx_images(b.data(), b.size(), "mutant");
      } else {
        parse_idx_labels(b.data(), b.size(), "mutant");
      }
      ++parsed;
    } catch (const mantissa::Error& e) {
      ASSERT_NE(std::string(e.what()).find("mutant"), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

// Real MNIST, only where it was fetched: MANTISSA_MNIST_DIR, else <repo>/data/mnist.
TEST(Mnist, RealFilesWhenPresent) {
  const char* env = std::getenv("MANTISSA_MNIST_DIR");
  const std::string dir = env != nullptr ? env : std::string(MANTISSA_GOLDEN_DIR) + "/../../data/mnist";
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte", ec) &&
      !std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz", ec)) {
    GTEST_SKIP() << "no MNIST in " << dir << " (scripts/fetch-mnist.sh " << dir << " fetches it)";
  }
  MNIST train(dir, Split::Train), test(dir, Split::Test);
  EXPECT_EQ(train.size(), 60000u);
  EXPECT_EQ(test.size(), 10000u);
  EXPECT_EQ(train.images().sizes(), Shape({60000, 28, 28}));
  EXPECT_EQ(train.targets().select(0, 0).item<int64_t>(), 5);  // the famous first training digit
  EXPECT_EQ(test.targets().select(0, 0).item<int64_t>(), 7);
}

}  // namespace
}  // namespace mantissa::data
