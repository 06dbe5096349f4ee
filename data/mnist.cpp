// IDX parsing (header checked against the bytes actually present) and the MNIST dataset:
// file lookup under both spellings, gzip by magic bytes, uint8 storage, F32 batches.
#include "data/mnist.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "data/bytes.h"

namespace mantissa::data {

namespace {

constexpr const char* kWho = "mnist";
constexpr size_t kImagesHeader = 16;
constexpr size_t kLabelsHeader = 8;
// Sane bounds: a dimension of 0 is corrupt, and rows * cols stays far from overflow.
constexpr uint32_t kMaxSide = 1u << 15;
constexpr uint64_t kMaxPixels = uint64_t{1} << 24;

uint32_t be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned bytes";
    case 0x09: return "signed bytes";
    case 0x0B: return "16-bit integers";
    case 0x0C: return "32-bit integers";
    case 0x0D: return "32-bit floats";
    case 0x0E: return "64-bit floats";
    default: return "";
  }
}

// Why a magic number is wrong, in the terms a user can act on.
std::string magic_hint(const uint8_t* m, uint32_t magic) {
  if (magic == kIdxImagesMagic) return "it is an IDX images file (magic 2051), not a labels file";
  if (magic == kIdxLabelsMagic) return "it is an IDX labels file (magic 2049), not an images file";
  if (m[0] == 0 && m[1] == 0 && !idx_type_name(m[2]).empty()) {
    std::ostringstream ss;
    ss << "it is an IDX file of " << idx_type_name(m[2]) << " with " << int{m[3]} << " dimension(s)";
    return ss.str();
  }
  if (m[2] == 0 && m[3] == 0 && m[1] == 0x08 && (m[0] == 0x01 || m[0] == 0x03)) {
    return "the header is byte-swapped (little-endian); IDX headers are big-endian";
  }
  return "it is not an IDX file";
}

std::string has_bytes(size_t size, bool gz) {
  std::ostringstream ss;
  ss << (gz ? "the file decompresses to " : "the file has ") << size << " bytes";
  return ss.str();
}

void check_magic(const uint8_t* d, size_t size, const std::string& name, uint32_t expected, size_t header, bool gz,
                 const char* kind) {
  MANTISSA_CHECK(size >= 4, kWho, ": ", name, " is too short to be an IDX ", kind, " file: ", has_bytes(size, gz),
                 " but the header alone is ", header, " bytes");
  const uint32_t magic = be32(d);
  MANTISSA_CHECK(magic == expected, kWho, ": ", name, " has magic number ", magic, " but an IDX ", kind,
                 " file starts with ", expected, ": ", magic_hint(d, magic));
  MANTISSA_CHECK(size >= header, kWho, ": ", name, " is truncated: ", has_bytes(size, gz), " but the IDX ", kind,
                 " header alone is ", header, " bytes");
}

void check_payload(size_t size, uint64_t expected, const std::string& name, bool gz, const std::string& header_says) {
  MANTISSA_CHECK(size >= expected, kWho, ": ", name, " is truncated: header says ", header_says, " (", expected,
                 " bytes) but ", has_bytes(size, gz));
  MANTISSA_CHECK(size == expected, kWho, ": ", name, " has ", size - expected, " trailing bytes: header says ",
                 header_says, " (", expected, " bytes) but ", has_bytes(size, gz));
}

std::vector<uint8_t> decoded(const uint8_t* data, size_t size, const std::string& name, bool& gz) {
  gz = is_gzip(data, size);
  if (!gz) return {};
  return gunzip(data, size, kWho, name);
}

// The file under `root` for one of the four MNIST files, trying both spellings and .gz.
std::string find_file(const std::string& root, const std::string& prefix, const std::string& idx) {
  namespace fs = std::filesystem;
  const std::string names[] = {prefix + "-" + idx + "-ubyte", prefix + "." + idx + "-ubyte"};
  for (const auto& n : names) {
    for (const char* ext : {"", ".gz"}) {
      const fs::path p = fs::path(root) / (n + ext);
      std::error_code ec;
      if (fs::exists(p, ec)) return p.string();
    }
  }
  std::error_code ec;
  MANTISSA_CHECK(fs::is_directory(root, ec), kWho, ": data directory ", root,
                 " does not exist; put the MNIST files there (scripts/fetch-mnist.sh ", root, " fetches them)");
  MANTISSA_ERROR(kWho, ": ", root, " has no ", names[0], " (looked for ", names[0], " and ", names[1],
                 ", each also with .gz); scripts/fetch-mnist.sh ", root, " fetches the MNIST files");
}

Tensor parse_file(const std::string& path, bool images) {
  const std::vector<uint8_t> bytes = read_file(path, kWho);
  return images ? parse_idx_images(bytes.data(), bytes.size(), path)
                : parse_idx_labels(bytes.data(), bytes.size(), path);
}

}  // namespace

Tensor parse_idx_images(const uint8_t* data, size_t size, const std::string& name) {
  bool gz = false;
  const std::vector<uint8_t> plain = decoded(data, size, name, gz);
  const uint8_t* d = gz ? plain.data() : data;
  const size_t n = gz ? plain.size() : size;

  check_magic(d, n, name, kIdxImagesMagic, kImagesHeader, gz, "images");
  const uint32_t count = be32(d + 4);
  const uint32_t rows = be32(d + 8);
  const uint32_t cols = be32(d + 12);
  MANTISSA_CHECK(rows > 0 && cols > 0 && rows <= kMaxSide && cols <= kMaxSide &&
                     uint64_t{rows} * cols <= kMaxPixels,
                 kWho, ": ", name, " has images of ", rows, "x", cols, "; each side must be 1..", kMaxSide,
                 " with at most ", kMaxPixels, " pixels per image");
  std::ostringstream says;
  says << count << " images of " << rows << "x" << cols;
  const uint64_t expected = kImagesHeader + uint64_t{count} * rows * cols;
  check_payload(n, expected, name, gz, says.str());

  Tensor out = empty({int64_t{count}, int64_t{rows}, int64_t{cols}}, DType::U8);
  if (out.numel() > 0) std::memcpy(out.data_ptr(), d + kImagesHeader, static_cast<size_t>(out.numel()));
  return out;
}

Tensor parse_idx_labels(const uint8_t* data, size_t size, const std::string& name) {
  bool gz = false;
  const std::vector<uint8_t> plain = decoded(data, size, name, gz);
  const uint8_t* d = gz ? plain.data() : data;
  const size_t n = gz ? plain.size() : size;

  check_magic(d, n, name, kIdxLabelsMagic, kLabelsHeader, gz, "labels");
  const uint32_t count = be32(d + 4);
  std::ostringstream says;
  says << count << " labels";
  check_payload(n, kLabelsHeader + uint64_t{count}, name, gz, says.str());

  Tensor out = empty({int64_t{count}}, DType::U8);
  if (count > 0) std::memcpy(out.data_ptr(), d + kLabelsHeader, count);
  return out;
}

MNIST::MNIST(const std::string& root, Split split, int64_t num_classes) : num_classes_(num_classes) {
  MANTISSA_CHECK(num_classes >= 1 && num_classes <= 256, kWho, ": num_classes must be 1..256, got ", num_classes);
  const std::string prefix = split == Split::Train ? "train" : "t10k";
  images_path_ = find_file(root, prefix + "-images", "idx3");
  labels_path_ = find_file(root, prefix + "-labels", "idx1");
  images_ = parse_file(images_path_, true);
  const Tensor labels = parse_file(labels_path_, false);
  MANTISSA_CHECK(labels.size(0) == images_.size(0), kWho, ": ", images_path_, " has ", images_.size(0),
                 " images but ", labels_path_, " has ", labels.size(0), " labels; they must match");

  const uint8_t* l = labels.data<uint8_t>();
  const int64_t n = labels.size(0);
  const uint8_t* max_it = std::max_element(l, l + n);
  MANTISSA_CHECK(n == 0 || *max_it < num_classes, kWho, ": ", labels_path_, " has label ", n == 0 ? 0 : int{*max_it},
                 " at index ", max_it - l, ", outside 0..", num_classes - 1, " (num_classes = ", num_classes,
                 "; a data set with more classes needs a larger num_classes)");
  targets_ = empty({n}, DType::I64);
  int64_t* t = targets_.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) t[i] = l[i];
}

MNIST::MNIST(Tensor images, Tensor targets, int64_t num_classes) : num_classes_(num_classes) {
  MANTISSA_CHECK(num_classes >= 1 && num_classes <= 256, kWho, ": num_classes must be 1..256, got ", num_classes);
  MANTISSA_CHECK(images.defined() && images.dim() == 3 && images.dtype() == DType::U8 && images.is_cpu(), kWho,
                 ": images must be a CPU U8 tensor [N, rows, cols], got ",
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
    MANTISSA_CHECK(t[i] >= 0 && t[i] < num_classes, kWho, ": target ", t[i], " at index ", i, " is outside 0..",
                   num_classes - 1, " (num_classes = ", num_classes, ")");
  }
}

Example MNIST::get(size_t index) const {
  check_index(index, "mnist");
  Example b = get_batch({index});
  return {b.data.select(0, 0), b.target.select(0, 0)};
}

Example MNIST::get_batch(const std::vector<size_t>& indices) const {
  const int64_t rows = images_.size(1), cols = images_.size(2);
  const int64_t b = static_cast<int64_t>(indices.size());
  const size_t pixels = static_cast<size_t>(rows * cols);
  for (size_t i : indices) check_index(i, "mnist");
  Example out{empty({b, 1, rows, cols}), empty({b}, DType::I64)};
  const uint8_t* src = images_.data<uint8_t>();
  const int64_t* tgt = targets_.data<int64_t>();
  float* dst = out.data.data<float>();
  int64_t* dt = out.target.data<int64_t>();
  for (int64_t k = 0; k < b; ++k) {
    const size_t i = indices[static_cast<size_t>(k)];
    const uint8_t* s = src + i * pixels;
    float* o = dst + static_cast<size_t>(k) * pixels;
    // Division, not multiplication by 1/255: the same floats as torchvision's ToTensor.
    for (size_t j = 0; j < pixels; ++j) o[j] = static_cast<float>(s[j]) / 255.0f;
    dt[k] = tgt[i];
  }
  return out;
}

}  // namespace mantissa::data
