// safetensors reading and writing: the header JSON (nlohmann_json), the validation rules of the
// reference implementation, bounds-safe parsing of untrusted bytes, and the atomic
// temp-file/fsync/rename save.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "autograd/ops.h"
#include "core/error.h"

namespace mantissa::safetensors {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; a big-endian host would need byte swapping");

namespace {

using Json = nlohmann::ordered_json;

// serde_json's recursion limit: the reference reader rejects deeper headers.
constexpr int kMaxJsonDepth = 128;

// Every dtype the reference implementation knows; `supported` says whether Mantissa has it.
struct DTypeEntry {
  const char* name;
  size_t size;  // bytes per element (the sub-byte F4/F6 types are not supported anyway)
  bool supported;
  DType dtype;
};
constexpr DTypeEntry kDTypes[] = {
    {"F64", 8, true, DType::F64},       {"F32", 4, true, DType::F32},      {"F16", 2, true, DType::F16},
    {"BF16", 2, true, DType::BF16},     {"I64", 8, true, DType::I64},      {"I32", 4, true, DType::I32},
    {"I8", 1, true, DType::I8},         {"U8", 1, true, DType::U8},        {"BOOL", 1, true, DType::Bool},
    {"I16", 2, false, DType::F32},      {"U16", 2, false, DType::F32},     {"U32", 4, false, DType::F32},
    {"U64", 8, false, DType::F32},      {"F8_E4M3", 1, false, DType::F32}, {"F8_E5M2", 1, false, DType::F32},
    {"F8_E8M0", 1, false, DType::F32},  {"F6_E2M3", 1, false, DType::F32}, {"F6_E3M2", 1, false, DType::F32},
    {"F4", 1, false, DType::F32},       {"C64", 8, false, DType::F32},
};

const DTypeEntry* find_dtype(const std::string& name) {
  for (const DTypeEntry& e : kDTypes) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

std::string supported_dtype_names() {
  std::string out;
  for (const DTypeEntry& e : kDTypes) {
    if (!e.supported) continue;
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

// Strict UTF-8 (as Rust's str::from_utf8): no overlong forms, surrogates or code points past
// U+10FFFF. Returns the offset of the first bad byte, or n when all is well.
size_t utf8_error_offset(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (n - i < len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return n;
}

bool valid_utf8(const std::string& s) {
  return utf8_error_offset(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == s.size();
}

// A name as it appears in a message: quoted, control bytes escaped, long names cut short.
std::string quoted(const std::string& name) {
  constexpr size_t kMax = 120;
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (name.size() > kMax) out += "...";
  out += "'";
  return out;
}

std::string truncated(std::string s, size_t max = 200) {
  if (s.size() > max) {
    s.resize(max);
    s += "...";
  }
  return s;
}

// "an array", "a negative integer": what a JSON value is, for messages.
const char* json_type(const Json& j) {
  if (j.is_number_float()) return "a floating-point number";
  if (j.is_number_integer() && !j.is_number_unsigned()) return "a negative integer";
  if (j.is_number()) return "a number";
  if (j.is_object()) return "an object";
  if (j.is_array()) return "an array";
  if (j.is_string()) return "a string";
  if (j.is_boolean()) return "a boolean";
  if (j.is_null()) return "null";
  return "a binary value";
}

std::string list_str(const std::vector<uint64_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(v[i]);
  }
  return out + "]";
}

// A non-negative JSON integer ("-0" counts, as it does for serde's usize).
bool as_u64(const Json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() == 0) {
    out = 0;
    return true;
  }
  return false;
}

struct Entry {
  std::string name;
  const DTypeEntry* dtype = nullptr;
  std::vector<uint64_t> shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& ctx, const std::string& name, const Json& info) {
  Entry e;
  e.name = name;
  const std::string what = ctx + "tensor " + quoted(name);
  MANTISSA_CHECK(info.is_object(), what, " is described by ", json_type(info),
                 " (expected an object with dtype, shape and data_offsets)");
  auto dt = info.find("dtype");
  MANTISSA_CHECK(dt != info.end(), what, " has no dtype");
  MANTISSA_CHECK(dt->is_string(), what, " has a dtype that is ", json_type(*dt), ", not a string");
  const std::string& dname = dt->get_ref<const std::string&>();
  e.dtype = find_dtype(dname);
  MANTISSA_CHECK(e.dtype != nullptr, what, " has unknown dtype ", quoted(dname), " (expected one of ",
                 supported_dtype_names(), ")");
  MANTISSA_CHECK(e.dtype->supported, what, " has dtype ", dname,
                 ", which Mantissa does not support (supported: ", supported_dtype_names(), ")");

  auto sh = info.find("shape");
  MANTISSA_CHECK(sh != info.end(), what, " has no shape");
  MANTISSA_CHECK(sh->is_array(), what, " has a shape that is ", json_type(*sh), ", not an array");
  for (const Json& d : *sh) {
    uint64_t v = 0;
    MANTISSA_CHECK(as_u64(d, v), what, " has shape ", truncated(sh->dump()), " with a dimension that is ",
                   json_type(d), " (dimensions are non-negative integers)");
    e.shape.push_back(v);
  }
  uint64_t numel = 1;
  for (uint64_t d : e.shape) {
    MANTISSA_CHECK(!__builtin_mul_overflow(numel, d, &numel), what, " has shape ", list_str(e.shape),
                   ", whose element count overflows 64 bits");
  }
  uint64_t nbytes = 0;
  MANTISSA_CHECK(!__builtin_mul_overflow(numel, e.dtype->size, &nbytes), what, " has shape ", list_str(e.shape),
                 ", whose size in bytes (", numel, " x ", e.dtype->size, ") overflows 64 bits");

  auto off = info.find("data_offsets");
  MANTISSA_CHECK(off != info.end(), what, " has no data_offsets");
  MANTISSA_CHECK(off->is_array() && off->size() == 2 && as_u64((*off)[0], e.begin) && as_u64((*off)[1], e.end),
                 what, " has data_offsets ", truncated(off->dump()),
                 " (expected [begin, end], two non-negative integers)");
  MANTISSA_CHECK(e.begin <= e.end, what, " has data_offsets [", e.begin, ", ", e.end, "] that end before they begin");
  MANTISSA_CHECK(e.end - e.begin == nbytes, what, " has shape ", list_str(e.shape), " (", numel, " ", dname, " = ",
                 nbytes, " bytes) but data_offsets span ", e.end - e.begin, " bytes");
  // Only a zero-size tensor gets here with huge dimensions (the reference accepts
  // [0, 2^62, 2^62]); its contiguous strides would not fit in int64, so Mantissa refuses it.
  uint64_t extent = 1;
  for (uint64_t d : e.shape) {
    MANTISSA_CHECK(!__builtin_mul_overflow(extent, std::max<uint64_t>(d, 1), &extent) &&
                       extent <= static_cast<uint64_t>(INT64_MAX),
                   what, " has shape ", list_str(e.shape),
                   ", whose nonzero dimensions multiply past 2^63 - 1, more than Mantissa supports");
  }
  return e;
}

Json parse_header(const std::string& ctx, const char* text, size_t n) {
  // Duplicate keys would silently shadow each other; reject them at every level.
  std::vector<std::set<std::string>> keys;
  Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    using E = Json::parse_event_t;
    MANTISSA_CHECK(depth <= kMaxJsonDepth, ctx, "header nests deeper than ", kMaxJsonDepth, " levels");
    if (event == E::object_start) {
      keys.emplace_back();
    } else if (event == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == E::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      MANTISSA_CHECK(keys.back().insert(k).second, ctx, "header has the key ", quoted(k), " twice",
                     depth == 1 ? "" : " in one object");
    }
    return true;
  };
  try {
    return Json::parse(text, text + n, check);
  } catch (const nlohmann::json::exception& e) {
    MANTISSA_ERROR(ctx, "header is not valid JSON: ", truncated(e.what(), 300));
  }
}

}  // namespace

const char* file_dtype_name(DType dtype) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.supported && e.dtype == dtype) return e.name;
  }
  MANTISSA_ERROR("safetensors: dtype ", dtype, " has no safetensors name");
}

bool File::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

const Tensor& File::at(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return t;
  }
  MANTISSA_ERROR("safetensors: no tensor named ", quoted(name), " (the file has ", tensors.size(), " tensors)");
}

File parse(const uint8_t* data, size_t size, const std::string& name_for_errors) {
  const std::string ctx = "safetensors: " + name_for_errors + ": ";
  MANTISSA_CHECK(data != nullptr || size == 0, ctx, "null data pointer with size ", size);
  MANTISSA_CHECK(size >= 8, ctx, "file is ", size, " bytes, too short for the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, data, 8);
  MANTISSA_CHECK(n <= kMaxHeaderSize, ctx, "header length ", n, " exceeds the limit of ", kMaxHeaderSize, " bytes");
  MANTISSA_CHECK(n <= size - 8, ctx, "header length ", n, " runs past the end of the file (", size,
                 " bytes leave room for ", size - 8, ")");
  const char* text = reinterpret_cast<const char*>(data + 8);
  MANTISSA_CHECK(n > 0 && text[0] == '{', ctx, "header does not start with '{'",
                 n == 0 ? " (it is empty)" : "");
  size_t bad = utf8_error_offset(data + 8, n);
  MANTISSA_CHECK(bad == n, ctx, "header is not valid UTF-8 (bad byte at header offset ", bad, ")");
  Json header = parse_header(ctx, text, n);
  MANTISSA_CHECK(header.is_object(), ctx, "header is ", json_type(header), ", not an object");

  File file;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const Json& value = it.value();
    if (key == "__metadata__") {
      if (value.is_null()) continue;  // serde reads null as "no metadata"
      MANTISSA_CHECK(value.is_object(), ctx, "__metadata__ is ", json_type(value), ", not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        MANTISSA_CHECK(m.value().is_string(), ctx, "__metadata__ value of ", quoted(m.key()), " is ",
                       json_type(m.value()), " (only strings are allowed)");
        file.metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    entries.push_back(parse_entry(ctx, key, value));
  }

  // Stable: zero-size tensors sharing an offset keep their header order.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t buffer_size = size - 8 - n;
  uint64_t covered = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin > covered) {
      MANTISSA_ERROR(ctx, "bytes [", covered, ", ", e.begin, ") of the data buffer belong to no tensor (gap before tensor ",
                     quoted(e.name), ", data_offsets [", e.begin, ", ", e.end, "])");
    }
    if (e.begin < covered) {
      MANTISSA_ASSERT(prev != nullptr);
      MANTISSA_ERROR(ctx, "tensor ", quoted(e.name), " (data_offsets [", e.begin, ", ", e.end, "]) overlaps tensor ",
                     quoted(prev->name), " (data_offsets [", prev->begin, ", ", prev->end, "])");
    }
    MANTISSA_CHECK(e.end <= buffer_size, ctx, "tensor ", quoted(e.name), " has data_offsets [", e.begin, ", ", e.end,
                   "] past the end of the ", buffer_size, "-byte data buffer");
    covered = e.end;
    prev = &e;
  }
  MANTISSA_CHECK(covered == buffer_size, ctx, "the data buffer has ", buffer_size, " bytes but the tensors cover ",
                 covered, " (", buffer_size - covered, " bytes left over)");

  const uint8_t* buffer = data + 8 + n;
  file.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Shape shape(e.shape.begin(), e.shape.end());
    Tensor t = empty(shape, TensorOptions(e.dtype->dtype));
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    if (nbytes > 0) {
      auto* dst = static_cast<uint8_t*>(t.data_ptr());
      if (e.dtype->dtype == DType::Bool) {
        // Any byte other than 0/1 is not a valid C++ bool; read nonzero as true, as torch does.
        for (size_t i = 0; i < nbytes; ++i) dst[i] = buffer[e.begin + i] != 0;
      } else {
        std::memcpy(dst, buffer + e.begin, nbytes);
      }
    }
    file.tensors.emplace_back(e.name, std::move(t));
  }
  return file;
}

// Loading ---------------------------------------------------------------------------

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

struct Mapping {
  void* addr = MAP_FAILED;
  size_t size = 0;
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, size);
  }
};

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

File load(const std::string& path) {
  const std::string ctx = "safetensors: " + path + ": ";
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  MANTISSA_CHECK(f.fd >= 0, "safetensors: cannot open '", path, "': ", errno_text(errno));
  struct stat st {};
  MANTISSA_CHECK(::fstat(f.fd, &st) == 0, ctx, "cannot stat: ", errno_text(errno));
  MANTISSA_CHECK(!S_ISDIR(st.st_mode), ctx, "is a directory");
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    // Checkpoints are replaced by rename, never rewritten in place, so the mapping stays valid.
    Mapping map;
    map.size = static_cast<size_t>(st.st_size);
    map.addr = ::mmap(nullptr, map.size, PROT_READ, MAP_PRIVATE, f.fd, 0);
    MANTISSA_CHECK(map.addr != MAP_FAILED, ctx, "cannot map ", map.size, " bytes: ", errno_text(errno));
    ::madvise(map.addr, map.size, MADV_SEQUENTIAL);
    return parse(static_cast<const uint8_t*>(map.addr), map.size, path);
  }
  // Pipes, devices and empty files: read until EOF.
  std::vector<uint8_t> bytes;
  size_t used = 0;
  for (;;) {
    if (bytes.size() - used < (1u << 16)) bytes.resize(std::max<size_t>(bytes.size() * 2, 1u << 16));
    ssize_t r = ::read(f.fd, bytes.data() + used, bytes.size() - used);
    if (r < 0 && errno == EINTR) continue;
    MANTISSA_CHECK(r >= 0, ctx, "read failed: ", errno_text(errno));
    if (r == 0) break;
    used += static_cast<size_t>(r);
  }
  return parse(bytes.data(), used, path);
}

// Saving ----------------------------------------------------------------------------

namespace {

// Owns the temporary file until commit(): the destructor closes it and removes it.
struct TempFile {
  std::string path;
  int fd = -1;
  bool committed = false;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!committed && !path.empty()) ::unlink(path.c_str());
  }
};

void write_all(int fd, const void* data, size_t n, const std::string& ctx, const std::string& tmp) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MANTISSA_CHECK(w > 0, ctx, "writing '", tmp, "' failed: ", errno_text(w < 0 ? errno : EIO));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string directory_of(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void save(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  const std::string ctx = "safetensors: saving '" + path + "': ";
  MANTISSA_CHECK(!path.empty(), "safetensors: saving: empty path");

  // Everything that can be checked is checked before a file is created.
  Json header = Json::object();
  Json meta = Json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) {
    MANTISSA_CHECK(valid_utf8(k), ctx, "metadata key ", quoted(k), " is not valid UTF-8");
    MANTISSA_CHECK(valid_utf8(v), ctx, "metadata value of ", quoted(k), " is not valid UTF-8");
    meta[k] = v;
  }
  header["__metadata__"] = std::move(meta);
  std::unordered_set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MANTISSA_CHECK(!name.empty(), ctx, "a tensor has an empty name");
    MANTISSA_CHECK(valid_utf8(name), ctx, "tensor name ", quoted(name), " is not valid UTF-8");
    MANTISSA_CHECK(name != "__metadata__", ctx, "'__metadata__' is reserved and cannot name a tensor");
    MANTISSA_CHECK(seen.insert(name).second, ctx, "tensor name ", quoted(name), " appears twice");
    MANTISSA_CHECK(t.defined(), ctx, "tensor ", quoted(name), " is undefined");
    Json entry = Json::object();
    entry["dtype"] = file_dtype_name(t.dtype());
    entry["shape"] = t.sizes();
    const uint64_t nbytes = t.nbytes();
    entry["data_offsets"] = {offset, offset + nbytes};
    offset += nbytes;
    header[name] = std::move(entry);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data buffer 8-byte aligned in the file
  MANTISSA_CHECK(text.size() <= kMaxHeaderSize, ctx, "header would be ", text.size(), " bytes, over the limit of ",
                 kMaxHeaderSize, " that readers accept");

  TempFile tmp;
  tmp.path = path + ".tmp." + std::to_string(::getpid());
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  MANTISSA_CHECK(tmp.fd >= 0, ctx, "cannot create '", tmp.path, "': ", errno_text(errno));
  const uint64_t n = text.size();
  write_all(tmp.fd, &n, 8, ctx, tmp.path);
  write_all(tmp.fd, text.data(), text.size(), ctx, tmp.path);
  for (const auto& [name, t] : tensors) {
    Tensor c;
    try {
      // One tensor at a time, so a large checkpoint on another device never has a full host copy.
      c = contiguous(to_device(t.detach(), kCPU));
    } catch (const Error& e) {
      MANTISSA_ERROR(ctx, "tensor ", quoted(name), ": ", e.what());
    }
    MANTISSA_ASSERT(c.nbytes() == t.nbytes());
    if (c.nbytes() > 0) write_all(tmp.fd, c.data_ptr(), c.nbytes(), ctx, tmp.path);
  }
  MANTISSA_CHECK(::fsync(tmp.fd) == 0, ctx, "fsync of '", tmp.path, "' failed: ", errno_text(errno));
  int fd = tmp.fd;
  tmp.fd = -1;
  MANTISSA_CHECK(::close(fd) == 0, ctx, "closing '", tmp.path, "' failed: ", errno_text(errno));
  MANTISSA_CHECK(::rename(tmp.path.c_str(), path.c_str()) == 0, ctx, "renaming '", tmp.path, "' to '", path,
                 "' failed: ", errno_text(errno));
  tmp.committed = true;

  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL).
  const std::string dir = directory_of(path);
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  MANTISSA_CHECK(d.fd >= 0, ctx, "the file is in place but its directory '", dir,
                 "' cannot be opened to fsync it: ", errno_text(errno));
  if (::fsync(d.fd) != 0 && errno != EINVAL) {
    MANTISSA_ERROR(ctx, "the file is in place but fsync of its directory '", dir, "' failed: ", errno_text(errno));
  }
}

void save(const std::string& path, const std::map<std::string, Tensor>& tensors, const Metadata& metadata) {
  save(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
}

void save(const std::string& path, std::initializer_list<std::pair<std::string, Tensor>> tensors,
          const Metadata& metadata) {
  save(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
}

}  // namespace mantissa::safetensors
