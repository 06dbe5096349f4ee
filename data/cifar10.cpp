// CIFAR-10 binary batch parsing (record size and labels checked, errors naming the file) and
// the CIFAR10 dataset: the split's files concatenated into one uint8 tensor, F32 batches.
#include "data/cifar10.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "data/bytes.h"

namespace mantissa::data {

namespace {

constexpr const char* kWho = "cifar10";

// The folder that holds the batches: root itself, or the archive's folder inside it.
std::string batches_dir(const std::string& root, const std::string& first) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(root) / first, ec)) return root;
  const fs::path nested = fs::path(root) / "cifar-10-batches-bin";
  if (fs::exists(nested / first, ec)) return nested.string();
  MANTISSA_CHECK(fs::is_directory(root, ec), kWho, ": data directory ", root,
                 " does not exist; CIFAR-10's binary version is at ", kCifarUrl,
                 " (extract it and pass the folder that holds the .bin files)");
  MANTISSA_ERROR(kWho, ": ", first, " is missing (looked in ", root, " and ", nested.string(),
                 "); CIFAR-10's binary version is at ", kCifarUrl,
                 " (extract it and pass the folder that holds the .bin files)");
}

}  // namespace

Example parse_cifar10_batch(const uint8_t* data, size_t size, const std::string& name) {
  const bool gz = is_gzip(data, size);
  std::vector<uint8_t> plain;
  if (gz) plain = gunzip(data, size, kWho, name);
  const uint8_t* d = gz ? plain.data() : data;
  const size_t n = gz ? plain.size() : size;
  const char* has = gz ? " decompresses to " : " has ";

  constexpr size_t kRecord = static_cast<size_t>(kCifarRecordBytes);
  MANTISSA_CHECK(n > 0, kWho, ": ", name, " is empty; a CIFAR-10 batch holds records of ", kRecord,
                 " bytes (1 label byte + 3072 pixel bytes)");
  if (n % kRecord != 0) {
    // CIFAR-100's binary records carry two label bytes: say so when the size fits that.
    const char* hint = n % (kRecord + 1) == 0 ? " (its size is a multiple of 3074: CIFAR-100's record size?)" : "";
    MANTISSA_ERROR(kWho, ": ", name, has, n, " bytes, not a multiple of the ", kRecord,
                   "-byte record (1 label byte + 3072 pixel bytes): ", n / kRecord, " whole records and ",
                   n % kRecord, " bytes left over; the file is truncated or not a CIFAR-10 batch", hint);
  }
  const int64_t count = static_cast<int64_t>(n / kRecord);
  Example out{empty({count, 3, 32, 32}, DType::U8), empty({count}, DType::I64)};
  uint8_t* img = out.data.data<uint8_t>();
  int64_t* lab = out.target.data<int64_t>();
  for (int64_t r = 0; r < count; ++r) {
    const uint8_t* rec = d + static_cast<size_t>(r) * kRecord;
    MANTISSA_CHECK(rec[0] < 10, kWho, ": ", name, " record ", r, " (byte ", static_cast<size_t>(r) * kRecord,
                   ") has label ", int{rec[0]}, "; CIFAR-10 labels are 0..9, so the file is corrupt or not CIFAR-10");
    lab[r] = rec[0];
    std::memcpy(img + r * kCifarImageBytes, rec + 1, static_cast<size_t>(kCifarImageBytes));
  }
  return out;
}

CIFAR10::CIFAR10(const std::string& root, Split split) {
  std::vector<std::string> names;
  if (split == Split::Train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  const std::string dir = batches_dir(root, names[0]);
  std::vector<Example> parts;
  int64_t total = 0;
  for (const auto& n : names) {
    const std::string path = (std::filesystem::path(dir) / n).string();
    std::error_code ec;
    MANTISSA_CHECK(std::filesystem::exists(path, ec), kWho, ": ", n, " is missing from ", dir,
                   " (the ", split_name(split), " split needs ", names.size() == 1 ? names[0] : "data_batch_1..5.bin",
                   "); CIFAR-10's binary version is at ", kCifarUrl);
    const std::vector<uint8_t> bytes = read_file(path, kWho);
    parts.push_back(parse_cifar10_batch(bytes.data(), bytes.size(), path));
    total += parts.back().data.size(0);
    files_.push_back(path);
  }
  images_ = empty({total, 3, 32, 32}, DType::U8);
  targets_ = empty({total}, DType::I64);
  int64_t at = 0;
  for (const auto& p : parts) {
    const int64_t c = p.data.size(0);
    if (c == 0) continue;
    std::memcpy(images_.data<uint8_t>() + at * kCifarImageBytes, p.data.data_ptr(),
                static_cast<size_t>(c * kCifarImageBytes));
    std::memcpy(targets_.data<int64_t>() + at, p.target.data_ptr(), static_cast<size_t>(c) * sizeof(int64_t));
    at += c;
  }
}

CIFAR10::CIFAR10(Tensor images, Tensor targets) {
  MANTISSA_CHECK(images.defined() && images.is_cpu() && images.dtype() == DType::U8 &&
                     images.sizes() == Shape({images.defined() && images.dim() > 0 ? images.size(0) : 0, 3, 32, 32}),
                 kWho, ": images must be a CPU U8 tensor [N, 3, 32, 32], got ",
                 images.defined() ? shape_str(images.sizes()) : "an undefined tensor",
                 images.defined() ? " " : "", images.defined() ? dtype_name(images.dtype()) : "");
  MANTISSA_CHECK(targets.defined() && targets.dim() == 1 && targets.is_cpu() && !targets.is_floating_point() &&
                     targets.size(0) == images.size(0),
                 kWho, ": targets must be a CPU integer tensor [", images.size(0), "] (one per image), got ",
                 targets.defined() ? shape_str(targets.sizes()) : "an undefined tensor");
  images_ = images.contiguous();
  targets_ = targets.to(DType::I64).contiguous();
  const int64_t* t = targets_.data<int64_t>();
  for (int64_t i = 0; i < targets_.numel(); ++i) {
    MANTISSA_CHECK(t[i] >= 0 && t[i] < 10, kWho, ": target ", t[i], " at index ", i, " is outside 0..9");
  }
}

const char* CIFAR10::class_name(int64_t label) {
  static const char* const kNames[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                         "dog", "frog", "horse", "ship", "truck"};
  MANTISSA_CHECK(label >= 0 && label < 10, kWho, ": class_name: label ", label, " is outside 0..9");
  return kNames[label];
}

Example CIFAR10::get(size_t index) const {
  check_index(index, kWho);
  Example b = get_batch({index});
  return {b.data.select(0, 0), b.target.select(0, 0)};
}

Example CIFAR10::get_batch(const std::vector<size_t>& indices) const {
  const int64_t b = static_cast<int64_t>(indices.size());
  for (size_t i : indices) check_index(i, kWho);
  Example out{empty({b, 3, 32, 32}), empty({b}, DType::I64)};
  const uint8_t* src = images_.data<uint8_t>();
  const int64_t* tgt = targets_.data<int64_t>();
  float* dst = out.data.data<float>();
  int64_t* dt = out.target.data<int64_t>();
  constexpr size_t kPix = static_cast<size_t>(kCifarImageBytes);
  for (int64_t k = 0; k < b; ++k) {
    const size_t i = indices[static_cast<size_t>(k)];
    const uint8_t* s = src + i * kPix;
    float* o = dst + static_cast<size_t>(k) * kPix;
    for (size_t j = 0; j < kPix; ++j) o[j] = static_cast<float>(s[j]) / 255.0f;  // as ToTensor
    dt[k] = tgt[i];
  }
  return out;
}

}  // namespace mantissa::data
