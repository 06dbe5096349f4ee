// Whole-file reads and in-memory gzip decompression (zlib inflate) for the dataset readers.
// Inflating from memory keeps one code path for files, tests and fuzz targets, and lets the
// reader check the decompressed size against the header itself instead of trusting gzread.
#include "data/bytes.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"

namespace mantissa::data {

bool is_gzip(const uint8_t* data, size_t size) { return size >= 2 && data[0] == 0x1f && data[1] == 0x8b; }

namespace {

// Deflate cannot expand more than about 1032:1, so a declared size above that is a lie.
size_t initial_capacity(const uint8_t* data, size_t size, size_t limit) {
  size_t hint = size_t{1} << 16;
  if (size >= 18) {
    const uint8_t* t = data + size - 4;  // ISIZE: uncompressed size mod 2^32 of the last member
    hint = std::max(hint, size_t{t[0]} | size_t{t[1]} << 8 | size_t{t[2]} << 16 | size_t{t[3]} << 24);
  }
  hint = std::min(hint, size * 1032 + 1024);
  return std::min(hint + 1, limit);
}

struct InflateGuard {
  z_stream* s;
  ~InflateGuard() { inflateEnd(s); }
};

}  // namespace

std::vector<uint8_t> gunzip(const uint8_t* data, size_t size, const std::string& who, const std::string& name,
                            size_t max_bytes) {
  MANTISSA_CHECK(is_gzip(data, size), who, ": ", name, " is not gzip data (it does not start with 1f 8b)");
  // One byte past the limit tells "exactly at the limit" from "over it".
  const size_t limit = max_bytes + 1;
  std::vector<uint8_t> out(initial_capacity(data, size, limit));

  z_stream s{};
  MANTISSA_CHECK(inflateInit2(&s, 16 + MAX_WBITS) == Z_OK, who, ": ", name, ": zlib could not start inflating");
  InflateGuard guard{&s};

  constexpr size_t kChunk = size_t{1} << 30;  // zlib counts in uInt
  size_t in_pos = 0;   // input handed to zlib so far
  size_t out_pos = 0;  // output produced so far
  while (true) {
    if (s.avail_in == 0 && in_pos < size) {
      const size_t n = std::min(kChunk, size - in_pos);
      s.next_in = const_cast<Bytef*>(data + in_pos);
      s.avail_in = static_cast<uInt>(n);
      in_pos += n;
    }
    if (out_pos == out.size()) {
      MANTISSA_CHECK(out.size() < limit, who, ": ", name, " decompresses to more than ", max_bytes,
                     " bytes; that is not a data set file this reader accepts");
      out.resize(std::min(limit, out.size() * 2));
    }
    const size_t room = std::min(kChunk, out.size() - out_pos);
    s.next_out = out.data() + out_pos;
    s.avail_out = static_cast<uInt>(room);
    const int rc = inflate(&s, Z_NO_FLUSH);
    out_pos += room - s.avail_out;
    const size_t consumed = in_pos - s.avail_in;

    if (rc == Z_STREAM_END) {
      if (consumed == size) break;
      // gzip allows several members back to back; anything else after the end is garbage.
      MANTISSA_CHECK(is_gzip(data + consumed, size - consumed), who, ": ", name, " has ", size - consumed,
                     " unexpected bytes after the end of its gzip stream (at byte ", consumed, " of ", size,
                     "); the file is corrupt");
      MANTISSA_CHECK(inflateReset(&s) == Z_OK, who, ": ", name, ": zlib could not restart inflating");
      continue;
    }
    if (rc == Z_BUF_ERROR) {
      MANTISSA_CHECK(!(s.avail_in == 0 && in_pos == size), who, ": ", name, " is a truncated gzip stream: it ends after ",
                     size, " compressed bytes (", out_pos, " bytes decompressed) before the end of the data");
      continue;  // the output buffer was full: it grows at the top of the loop
    }
    MANTISSA_CHECK(rc == Z_OK, who, ": ", name, " is corrupt gzip data: ", s.msg != nullptr ? s.msg : "zlib error",
                   " (near compressed byte ", consumed, " of ", size, ")");
  }
  MANTISSA_CHECK(out_pos <= max_bytes, who, ": ", name, " decompresses to more than ", max_bytes,
                 " bytes; that is not a data set file this reader accepts");
  out.resize(out_pos);
  out.shrink_to_fit();
  return out;
}

std::vector<uint8_t> read_file(const std::string& path, const std::string& who) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  MANTISSA_CHECK(fs::exists(st), who, ": ", path, " does not exist");
  MANTISSA_CHECK(!fs::is_directory(st), who, ": ", path, " is a directory, not a data file");
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  MANTISSA_CHECK(f != nullptr, who, ": cannot open ", path, ": ", std::strerror(errno));

  std::vector<uint8_t> bytes;
  const uintmax_t expected = fs::is_regular_file(st) ? fs::file_size(path, ec) : 0;
  if (!ec && expected > 0) bytes.reserve(static_cast<size_t>(expected));
  uint8_t buf[1 << 16];
  while (true) {
    const size_t n = std::fread(buf, 1, sizeof buf, f.get());
    bytes.insert(bytes.end(), buf, buf + n);
    if (n < sizeof buf) {
      MANTISSA_CHECK(!std::ferror(f.get()), who, ": error reading ", path, " after ", bytes.size(),
                     " bytes: ", std::strerror(errno));
      break;
    }
  }
  return bytes;
}

std::vector<uint8_t> maybe_gunzip(std::vector<uint8_t> bytes, const std::string& who, const std::string& name,
                                  bool* was_gzip, size_t max_bytes) {
  const bool gz = is_gzip(bytes.data(), bytes.size());
  if (was_gzip != nullptr) *was_gzip = gz;
  if (!gz) return bytes;
  return gunzip(bytes.data(), bytes.size(), who, name, max_bytes);
}

}  // namespace mantissa::data
