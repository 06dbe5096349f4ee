// Checkpoint files in the safetensors format (the one Python's safetensors and PyTorch read):
// atomic save, and a load/parse that validates what the reference implementation validates
// and rejects anything else with an Error naming the file, the tensor and what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mantissa::safetensors {

// Format limits of the reference implementation.
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

// Writes `tensors` (in the order given; names non-empty, valid UTF-8, unique) and
// "__metadata__" = {"format": "pt"} plus `metadata` (a user "format" replaces "pt").
// Tensors may be non-contiguous or on another device: each is copied to contiguous CPU
// memory while it is written. Atomic: the bytes go to `path + ".tmp.<pid>"` in the same
// directory, are fsync'ed and renamed over `path`, then the directory is fsync'ed; on any
// failure the temporary file is removed, `path` is untouched, and an Error names the path
// and the errno text. Two threads of one process must not save to the same path at once.
void save(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});
void save(const std::string& path, const std::map<std::string, Tensor>& tensors, const Metadata& metadata = {});
// Chosen for a braced list, save(path, {{"w", w}, {"b", b}}), which would otherwise be
// ambiguous between the two containers; keeps the order written.
void save(const std::string& path, std::initializer_list<std::pair<std::string, Tensor>> tensors,
          const Metadata& metadata = {});

struct File {
  NamedTensors tensors;  // in data-buffer order (the order save() was given)
  Metadata metadata;     // "__metadata__", including "format"

  bool contains(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // Error naming the missing tensor
};

// Reads and validates a file. Tensors are contiguous CPU tensors owning copies of the data.
File load(const std::string& path);
// The same from bytes in memory (never reads outside [data, data + size)); errors name
// `name_for_errors` as load() names the path.
File parse(const uint8_t* data, size_t size, const std::string& name_for_errors);

// The safetensors spelling of a dtype ("F32", "BOOL", ...).
const char* file_dtype_name(DType dtype);

}  // namespace mantissa::safetensors
