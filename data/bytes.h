// Whole-file reads for the dataset readers, with transparent gzip decompression detected by the
// magic bytes 1f 8b (never by the extension). Every failure throws an Error that starts with
// the caller's name ("mnist: ") and names the file and what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mantissa::data {

// Upper bound on a decompressed stream, so a small corrupt or hostile file cannot make a
// reader allocate without limit. Far above any MNIST-format or CIFAR file.
inline constexpr size_t kMaxDecompressedBytes = size_t{4} << 30;

bool is_gzip(const uint8_t* data, size_t size);

// Decompresses a gzip stream (one or more members, as gzip -c a b > c makes) held in memory.
// Corrupt, truncated, trailing-garbage and over-`max_bytes` streams are errors naming `name`.
std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& who, const std::string& name,
                            size_t max_bytes = kMaxDecompressedBytes);

// The raw bytes of a regular file.
std::vector<uint8_t> read_file(const std::string& path, const std::string& who);

// The bytes a reader parses: gunzip(data) when the data is gzip, else the data itself.
// `was_gzip` (optional) tells which, so error messages can say "after decompression".
std::vector<uint8_t> maybe_gunzip(std::vector<uint8_t> bytes, const std::string& who, const std::string& name,
                                  bool* was_gzip = nullptr, size_t max_bytes = kMaxDecompressedBytes);

}  // namespace mantissa::data
