// safetensors checkpoints: round trips of every dtype and layout, the golden file PyTorch wrote,
// one malformed buffer per validation rule, and the atomic-save guarantees.
//
// Cross-check the other direction (our file read by PyTorch) by hand; CI has no torch:
//   MANTISSA_SAFETENSORS_VERIFY_OUT=/tmp/mantissa_verify.safetensors build/tests/test_safetensors
//     --gtest_filter='*PythonVerify*'
//   /usr/bin/python3 tests/golden/make_safetensors_golden.py --verify /tmp/mantissa_verify.safetensors
// The script reads the file with its own reader, compares every tensor bit for bit with torch
// tensors built from the same values, and loads fc.weight/fc.bias into torch.nn.Linear(4, 3)
// with load_state_dict(strict=True).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "nn/safetensors.h"

namespace mantissa {
namespace {

namespace fs = std::filesystem;
namespace st = safetensors;
using Bytes = std::vector<uint8_t>;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "mantissa_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Files in the directory other than `keep` (temporaries left behind would show up here).
  std::vector<std::string> others(const std::string& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().filename() != keep) out.push_back(e.path().filename().string());
    }
    return out;
  }
  fs::path dir_;
};

Bytes bytes_of(const Tensor& t) {
  Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.data_ptr());
  return c.nbytes() ? Bytes(p, p + c.nbytes()) : Bytes();
}

Bytes read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no Error was thrown";
  return "";
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "message: " << (haystack)

// A file image: 8-byte header length (the header's own unless `n` is given), header, data.
Bytes image(const std::string& header, size_t data_bytes, std::optional<uint64_t> n = {}) {
  uint64_t len = n ? *n : header.size();
  Bytes b(8 + header.size() + data_bytes);
  std::memcpy(b.data(), &len, 8);
  if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) b[8 + header.size() + i] = static_cast<uint8_t>(i * 7 + 1);
  return b;
}

std::string parse_error(const Bytes& b) {
  std::string msg = error_of([&] { st::parse(b.data(), b.size(), "bad.st"); });
  EXPECT_EQ(msg.rfind("safetensors: bad.st: ", 0), 0u) << msg;
  return msg;
}

// One tensor entry of a header.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

// "{e1,e2,...}" (built with += : chained operator+ trips a GCC 12 -Wrestrict false positive).
std::string obj(std::initializer_list<std::string> entries) {
  std::string out = "{";
  for (const std::string& e : entries) {
    if (out.size() > 1) out += ",";
    out += e;
  }
  out += "}";
  return out;
}

// Tensors of every dtype and layout the round trip covers.
st::NamedTensors every_kind() {
  st::NamedTensors out;
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I8, DType::U8,
                  DType::Bool}) {
    std::string n = dtype_name(d);
    Tensor base = (d == DType::U8 || d == DType::Bool) ? arange(12, DType::I64) : arange(-5, 7, 1, DType::I64);
    if (d == DType::Bool) base = from_vector(std::vector<int64_t>{1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0}, {12});
    if (is_floating(d)) base = base.to(DType::F64).mul_(0.375);
    Tensor t = base.to(d).reshape({3, 4});
    out.emplace_back(n + ".contiguous", t);
    out.emplace_back(n + ".transposed", t.t());
    out.emplace_back(n + ".sliced", t.slice(1, 1, 4, 2));
    out.emplace_back(n + ".scalar", t.select(0, 1).select(0, 2));
    out.emplace_back(n + ".empty", empty({0, 3}, d));
    out.emplace_back(n + ".empty2", empty({2, 0, 5}, d));
  }
  return out;
}

TEST_F(Safetensors, RoundTripsEveryDtypeAndLayout) {
  st::NamedTensors in = every_kind();
  st::save(path("all.safetensors"), in);
  st::File f = st::load(path("all.safetensors"));
  ASSERT_EQ(f.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const auto& [name, t] = f.tensors[i];
    SCOPED_TRACE(in[i].first);
    EXPECT_EQ(name, in[i].first);  // kept in save order
    EXPECT_EQ(t.dtype(), in[i].second.dtype());
    EXPECT_EQ(t.sizes(), in[i].second.sizes());
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_TRUE(t.is_cpu());
    EXPECT_EQ(bytes_of(t), bytes_of(in[i].second));
  }
  EXPECT_EQ(f.at("F16.scalar").dim(), 0);
  EXPECT_EQ(to_vector<int64_t>(f.at("I8.transposed"))[0], -5);
  EXPECT_TRUE(f.contains("BF16.empty2"));
  EXPECT_FALSE(f.contains("nope"));
  EXPECT_CONTAINS(error_of([&] { f.at("nope"); }), "no tensor named 'nope'");
  EXPECT_EQ(f.metadata, (st::Metadata{{"format", "pt"}}));
  EXPECT_EQ(others("all.safetensors"), std::vector<std::string>{});
}

TEST_F(Safetensors, KeepsSpecialFloatBitsAndNormalizesBool) {
  Tensor h = from_vector(std::vector<float>{-0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 5.9604645e-8f}, {6}, DType::F16);
  Tensor b = from_vector(std::vector<float>{-0.0f, INFINITY, NAN, 3.0e38f, 1e-39f}, {5}, DType::BF16);
  st::save(path("s.st"), {{"h", h}, {"b", b}});
  st::File f = st::load(path("s.st"));
  EXPECT_EQ(bytes_of(f.at("h")), bytes_of(h));
  EXPECT_EQ(bytes_of(f.at("b")), bytes_of(b));

  // Foreign files may hold BOOL bytes other than 0/1: read as true, stored as a valid bool.
  Bytes img = image(obj({entry("m", "BOOL", "[4]", "[0,4]")}), 0);
  for (uint8_t v : {0, 1, 2, 255}) img.push_back(v);
  st::File g = st::parse(img.data(), img.size(), "bool.st");
  EXPECT_EQ(bytes_of(g.at("m")), (Bytes{0, 1, 1, 1}));
}

TEST_F(Safetensors, RoundTripsMetadataAndWritesTheSpecLayout) {
  st::Metadata meta{{"epoch", "7"}, {"step", "12345"}, {"empty", ""}, {"json", "{\"lr\": [0.1, 0.01]}"},
                    {"note", "Gr\u00fc\u00dfe \u2713"}};
  Tensor w = arange(6, DType::F32).reshape({2, 3});
  Tensor b = ones({3}, DType::F16);
  st::save(path("m.st"), {{"w", w}, {"b", b}}, meta);
  st::File f = st::load(path("m.st"));
  st::Metadata want = meta;
  want["format"] = "pt";
  EXPECT_EQ(f.metadata, want);

  Bytes raw = read_file(path("m.st"));
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // data buffer aligned
  EXPECT_EQ(raw.size(), 8 + n + 24 + 6);
  std::string header(raw.begin() + 8, raw.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\",", 0), 0u) << header;
  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["w"]["dtype"], "F32");
  EXPECT_EQ(j["w"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["w"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({24, 30}));
  const size_t json_end = header.find_last_not_of(' ') + 1;  // padded with fewer than 8 spaces
  EXPECT_EQ(header[json_end - 1], '}');
  EXPECT_LT(header.size() - json_end, 8u);

  // A user "format" replaces "pt"; the ordered-map overload saves in name order.
  std::map<std::string, Tensor> by_name{{"z", w}, {"a", b}};
  st::save(path("m2.st"), by_name, {{"format", "mantissa"}});
  st::File g = st::load(path("m2.st"));
  EXPECT_EQ(g.metadata, (st::Metadata{{"format", "mantissa"}}));
  ASSERT_EQ(g.tensors.size(), 2u);
  EXPECT_EQ(g.tensors[0].first, "a");
  EXPECT_EQ(g.tensors[1].first, "z");
}

// tests/golden/safetensors_state.safetensors was written by make_safetensors_golden.py from a
// PyTorch state dict; the header keys are sorted, so header order differs from data order.
TEST_F(Safetensors, LoadsTheGoldenFileFromPyTorchBitExactly) {
  const std::string dir = MANTISSA_GOLDEN_DIR;
  st::File f = st::load(dir + "/safetensors_state.safetensors");
  std::ifstream js(dir + "/safetensors_state.json");
  ASSERT_TRUE(js.good());
  auto want = nlohmann::json::parse(js);
  EXPECT_EQ(f.metadata, want["metadata"].get<st::Metadata>());
  EXPECT_EQ(f.metadata.at("note"), "Gr\u00fc\u00dfe \u2713");
  ASSERT_EQ(f.tensors.size(), want["tensors"].size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const auto& w = want["tensors"][i];
    const auto& [name, t] = f.tensors[i];
    SCOPED_TRACE(name);
    EXPECT_EQ(name, w["name"].get<std::string>());
    EXPECT_STREQ(st::file_dtype_name(t.dtype()), w["dtype"].get<std::string>().c_str());
    EXPECT_EQ(t.sizes(), w["shape"].get<Shape>());
    Bytes expect;
    for (const auto& v : w["bits"]) {
      uint64_t bits = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
      for (size_t k = 0; k < t.element_size(); ++k) expect.push_back(static_cast<uint8_t>(bits >> (8 * k)));
    }
    EXPECT_EQ(bytes_of(t), expect);
  }
  // Spot values through the dtype conversions, not just the bytes.
  EXPECT_EQ(to_vector<int64_t>(f.at("steps")), (std::vector<int64_t>{0, -1, (int64_t(1) << 62) + 1, INT64_MIN}));
  EXPECT_EQ(to_vector<double>(f.at("half"))[2], 65504.0);
  EXPECT_EQ(to_vector<double>(f.at("bf"))[1], -2.5);
  EXPECT_EQ(to_vector<uint8_t>(f.at("mask").to(DType::U8)), (std::vector<uint8_t>{1, 0, 1}));
}

// The file make_safetensors_golden.py --verify checks (see the top of this file).
TEST_F(Safetensors, WritesFileForPythonVerify) {
  Tensor w = arange(12, DType::F32).reshape({4, 3}).t().sub_(scalar_tensor(6.0)).div_(scalar_tensor(8.0));
  ASSERT_FALSE(w.is_contiguous());
  st::NamedTensors sd{
      {"fc.weight", w},
      {"fc.bias", from_vector(std::vector<float>{0.5f, -1.25f, 2.0f}, {3})},
      {"h", from_vector(std::vector<float>{1.5f, -0.0f, 65504.0f, 5.9604645e-8f}, {4}, DType::F16)},
      {"b", from_vector(std::vector<float>{1.5f, -2.25f, 3.0f * 0x1p100f}, {3}, DType::BF16)},
      {"d", from_vector(std::vector<double>{0.1, -1e300}, {2})},
      {"i64", from_vector(std::vector<int64_t>{INT64_MIN, (int64_t(1) << 62) + 1, 7}, {3})},
      {"i32", from_vector(std::vector<int32_t>{INT32_MIN, 123}, {2})},
      {"i8", from_vector(std::vector<int32_t>{-128, 0, 127}, {3}, DType::I8)},
      {"u8", from_vector(std::vector<uint8_t>{0, 255}, {2})},
      {"mask", from_vector(std::vector<uint8_t>{1, 0, 0, 1}, {2, 2}, DType::Bool)},
      {"scalar", scalar_tensor(3.25)},
      {"empty", zeros({0, 3})},
  };
  const char* out = std::getenv("MANTISSA_SAFETENSORS_VERIFY_OUT");
  const std::string p = out ? std::string(out) : path("verify.safetensors");
  st::save(p, sd, {{"epoch", "2"}, {"note", "Gr\u00fc\u00dfe \u2713"}});
  st::File f = st::load(p);
  ASSERT_EQ(f.tensors.size(), sd.size());
  for (size_t i = 0; i < sd.size(); ++i) EXPECT_EQ(bytes_of(f.tensors[i].second), bytes_of(sd[i].second));
  EXPECT_EQ(to_vector<float>(f.at("fc.weight")),
            (std::vector<float>{-0.75f, -0.375f, 0.0f, 0.375f, -0.625f, -0.25f, 0.125f, 0.5f, -0.5f, -0.125f, 0.25f, 0.625f}));
}

// Validation: one malformed buffer per rule ------------------------------------------------

TEST_F(Safetensors, RejectsShortAndOversizedHeaders) {
  Bytes tiny{1, 0, 0, 0, 0};
  EXPECT_CONTAINS(parse_error(tiny), "file is 5 bytes, too short");
  EXPECT_CONTAINS(parse_error(Bytes{}), "file is 0 bytes");
  EXPECT_CONTAINS(parse_error(image("{}", 0, 100'000'001)), "header length 100000001 exceeds the limit of 100000000");
  EXPECT_CONTAINS(parse_error(image("{}", 0, ~uint64_t(0))), "exceeds the limit");
  EXPECT_CONTAINS(parse_error(image("{\"a\":1}", 0, 100)), "header length 100 runs past the end of the file (15 bytes");
  EXPECT_CONTAINS(parse_error(image("", 0)), "header does not start with '{' (it is empty)");
  EXPECT_CONTAINS(parse_error(image(" {}", 0)), "does not start with '{'");
  EXPECT_CONTAINS(parse_error(image("[1, 2]", 0)), "does not start with '{'");
  EXPECT_CONTAINS(parse_error(image("{\"a\": ", 0)), "header is not valid JSON");
  EXPECT_CONTAINS(parse_error(image("{} x", 0)), "header is not valid JSON");
  EXPECT_CONTAINS(parse_error(image("{\"\xff\":1}", 0)), "header is not valid UTF-8 (bad byte at header offset 2)");
  EXPECT_CONTAINS(parse_error(image("{\"\xed\xa0\x80\":1}", 0)), "not valid UTF-8");  // a surrogate
  EXPECT_CONTAINS(parse_error(image("{\"a\":1,\"a\":1}", 0)), "header has the key 'a' twice");
  EXPECT_CONTAINS(parse_error(image("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\"}}", 0)), "key 'dtype' twice in one object");
  std::string deep = "{\"x\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"extra\":";
  deep.append(200, '[');
  deep.append(200, ']');
  deep += "}}";
  EXPECT_CONTAINS(parse_error(image(deep, 1)), "nests deeper than 128 levels");
}

TEST_F(Safetensors, RejectsBadTensorEntries) {
  auto one = [](const std::string& e, size_t data) { return parse_error(image(obj({e}), data)); };
  EXPECT_CONTAINS(one("\"a\":5", 0), "tensor 'a' is described by a number (expected an object");
  EXPECT_CONTAINS(one("\"a\":{\"shape\":[],\"data_offsets\":[0,4]}", 4), "tensor 'a' has no dtype");
  EXPECT_CONTAINS(one("\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", 4), "tensor 'a' has no shape");
  EXPECT_CONTAINS(one("\"a\":{\"dtype\":\"F32\",\"shape\":[]}", 4), "tensor 'a' has no data_offsets");
  EXPECT_CONTAINS(one("\"a\":{\"dtype\":3,\"shape\":[],\"data_offsets\":[0,4]}", 4), "has a dtype that is a number, not a string");
  EXPECT_CONTAINS(one(entry("a", "F33", "[1]", "[0,4]"), 4), "tensor 'a' has unknown dtype 'F33' (expected one of");
  EXPECT_CONTAINS(one(entry("a", "U16", "[1]", "[0,2]"), 2), "tensor 'a' has dtype U16, which Mantissa does not support");
  EXPECT_CONTAINS(one(entry("a", "F32", "3", "[0,12]"), 12), "shape that is a number, not an array");
  EXPECT_CONTAINS(one(entry("a", "F32", "[-1]", "[0,4]"), 4), "shape [-1] with a dimension that is a negative integer");
  EXPECT_CONTAINS(one(entry("a", "F32", "[2.0]", "[0,8]"), 8), "with a dimension that is a floating-point number");
  EXPECT_CONTAINS(one(entry("a", "F32", "[\"2\"]", "[0,8]"), 8), "with a dimension that is a string");
  EXPECT_CONTAINS(one(entry("a", "F32", "[4294967296,4294967296,2]", "[0,0]"), 0),
                  "shape [4294967296, 4294967296, 2], whose element count overflows 64 bits");
  EXPECT_CONTAINS(one(entry("a", "F64", "[4611686018427387904]", "[0,0]"), 0), "size in bytes");
  EXPECT_CONTAINS(one(entry("a", "F32", "[0,4294967296,4294967296]", "[0,0]"), 0), "more than Mantissa supports");
  EXPECT_CONTAINS(one(entry("fc.weight", "F32", "[10,784]", "[0,31356]"), 31356),
                  "tensor 'fc.weight' has shape [10, 784] (7840 F32 = 31360 bytes) but data_offsets span 31356 bytes");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[8,4]"), 8), "data_offsets [8, 4] that end before they begin");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[0]"), 4), "has data_offsets [0] (expected [begin, end]");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[0,4,8]"), 4), "expected [begin, end]");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[-4,0]"), 4), "expected [begin, end]");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[0.0,4]"), 4), "expected [begin, end]");
  EXPECT_CONTAINS(one(entry("a", "F32", "[1]", "[18446744073709551616,4]"), 4), "expected [begin, end]");
  EXPECT_CONTAINS(one("\"x\\u0001y\":5", 0), "tensor 'x\\x01y'");  // control bytes escaped in messages
}

TEST_F(Safetensors, RejectsBadDataLayout) {
  auto two = [](const std::string& a, const std::string& b, size_t data) {
    return parse_error(image(obj({entry("a", "F32", "[1]", a), entry("b", "F32", "[1]", b)}), data));
  };
  EXPECT_CONTAINS(two("[0,4]", "[8,12]", 12),
                  "bytes [4, 8) of the data buffer belong to no tensor (gap before tensor 'b', data_offsets [8, 12])");
  EXPECT_CONTAINS(two("[4,8]", "[8,12]", 12), "bytes [0, 4) of the data buffer belong to no tensor");
  EXPECT_CONTAINS(two("[0,4]", "[0,4]", 4), "tensor 'b' (data_offsets [0, 4]) overlaps tensor 'a' (data_offsets [0, 4])");
  EXPECT_CONTAINS(parse_error(image(obj({entry("a", "F32", "[2]", "[0,8]"), entry("b", "F32", "[1]", "[4,8]")}), 8)),
                  "overlaps tensor 'a'");
  EXPECT_CONTAINS(two("[0,4]", "[4,8]", 10), "the data buffer has 10 bytes but the tensors cover 8 (2 bytes left over)");
  EXPECT_CONTAINS(two("[0,4]", "[4,8]", 6), "tensor 'b' has data_offsets [4, 8] past the end of the 6-byte data buffer");
  EXPECT_CONTAINS(parse_error(image("{}", 3)), "the data buffer has 3 bytes but the tensors cover 0");
}

TEST_F(Safetensors, RejectsBadMetadata) {
  EXPECT_CONTAINS(parse_error(image("{\"__metadata__\":{\"epoch\":3}}", 0)),
                  "__metadata__ value of 'epoch' is a number (only strings are allowed)");
  EXPECT_CONTAINS(parse_error(image("{\"__metadata__\":{\"a\":\"x\",\"b\":[\"y\"]}}", 0)), "value of 'b' is an array");
  EXPECT_CONTAINS(parse_error(image("{\"__metadata__\":[\"format\"]}", 0)), "__metadata__ is an array, not an object");
  EXPECT_CONTAINS(parse_error(image("{\"__metadata__\":\"pt\"}", 0)), "__metadata__ is a string");
}

TEST_F(Safetensors, AcceptsWhatTheReferenceAccepts) {
  // Trailing whitespace (padding), unknown fields in an entry, null metadata, zero-size tensors
  // sharing an offset (kept in header order), "-0" as a size, an unpadded header and data
  // offsets in a different order from the header.
  std::string h = obj({"\"__metadata__\":null", entry("z1", "F32", "[0]", "[0,0]"), entry("b", "U8", "[2]", "[3,5]"),
                       entry("z2", "I64", "[3,0]", "[0,0]"),
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[-0, 3],\"data_offsets\":[0,0],\"extra\":{\"k\":[1]}}",
                       entry("c", "U8", "[3]", "[0,3]")});
  h += "\n\t  ";
  Bytes img = image(h, 5);
  st::File f = st::parse(img.data(), img.size(), "ok.st");
  std::vector<std::string> names;
  for (const auto& [n, t] : f.tensors) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"z1", "z2", "a", "c", "b"}));
  EXPECT_TRUE(f.metadata.empty());
  EXPECT_EQ(f.at("a").sizes(), (Shape{0, 3}));
  EXPECT_EQ(bytes_of(f.at("c")), (Bytes{1, 8, 15}));
  EXPECT_EQ(bytes_of(f.at("b")), (Bytes{22, 29}));
  // The minimal file: an empty header object and no data.
  Bytes empty_file = image("{}", 0);
  EXPECT_TRUE(st::parse(empty_file.data(), empty_file.size(), "e.st").tensors.empty());
}

// Every truncation and every single-bit flip of a real file either parses or throws Error.
TEST_F(Safetensors, TruncationsAndBitFlipsNeverCrash) {
  st::save(path("f.st"), {{"w", arange(6, DType::F32).reshape({2, 3})}, {"m", ones({2}, DType::Bool)}},
           {{"epoch", "1"}});
  const Bytes good = read_file(path("f.st"));
  int errors = 0, ok = 0;
  auto attempt = [&](const Bytes& b) {
    try {
      st::parse(b.data(), b.size(), "mutant.st");
      ++ok;
    } catch (const Error&) {
      ++errors;
    }
  };
  for (size_t len = 0; len < good.size(); ++len) attempt(Bytes(good.begin(), good.begin() + static_cast<long>(len)));
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes b = good;
      b[i] ^= static_cast<uint8_t>(1u << bit);
      attempt(b);
    }
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(ok, 0);  // flips inside the data buffer (and in some header spaces) stay valid
}

// Saving: argument checks and atomicity ------------------------------------------------------

TEST_F(Safetensors, SaveRejectsBadNamesBeforeCreatingAnything) {
  Tensor t = ones({2});
  const std::string p = path("x.st");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"a", t}, {"a", t}}); }), "tensor name 'a' appears twice");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"", t}}); }), "a tensor has an empty name");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"bad\xff", t}}); }), "is not valid UTF-8");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"__metadata__", t}}); }), "'__metadata__' is reserved");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"u", Tensor()}}); }), "tensor 'u' is undefined");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"a", t}}, {{"k", "\xc3"}}); }), "metadata value of 'k' is not valid UTF-8");
  EXPECT_CONTAINS(error_of([&] { st::save(p, {{"a", t}}); st::save(p, {{"a", t}, {"b", Tensor()}}); }),
                  "safetensors: saving '" + p + "': tensor 'b' is undefined");
  EXPECT_EQ(others("x.st"), std::vector<std::string>{});
  EXPECT_EQ(st::load(p).tensors.size(), 1u);  // the first save is intact
}

TEST_F(Safetensors, SaveIntoMissingDirectoryThrowsAndLeavesNothing) {
  const std::string p = path("no/such/dir/model.st");
  std::string msg = error_of([&] { st::save(p, {{"w", ones({3})}}); });
  EXPECT_CONTAINS(msg, "safetensors: saving '" + p + "'");
  EXPECT_CONTAINS(msg, "No such file or directory");
  EXPECT_FALSE(fs::exists(path("no")));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(Safetensors, FailedSavesNeverClobberTheOldFile) {
  const std::string p = path("model.st");
  st::save(p, {{"w", full({4}, 1.5)}}, {{"epoch", "1"}});
  const Bytes good = read_file(p);

  // 1. The temporary path cannot be created (a directory is in its place).
  const std::string tmp = p + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp);
  std::string msg = error_of([&] { st::save(p, {{"w", full({4}, 2.5)}}); });
  EXPECT_CONTAINS(msg, "cannot create '" + tmp + "': Is a directory");
  fs::remove(tmp);
  EXPECT_EQ(read_file(p), good);

  // 2. The disk fills up halfway through the data (RLIMIT_FSIZE makes write() fail with EFBIG).
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  msg = error_of([&] { st::save(p, {{"w", zeros({1 << 14})}}); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_CONTAINS(msg, "writing '" + tmp + "' failed: File too large");
  EXPECT_EQ(read_file(p), good);
  EXPECT_EQ(others("model.st"), std::vector<std::string>{});

  // 3. The rename fails (the target is a non-empty directory): the temporary file is removed.
  const std::string d = path("taken");
  fs::create_directories(d + "/inside");
  msg = error_of([&] { st::save(d, {{"w", ones({2})}}); });
  EXPECT_CONTAINS(msg, "renaming '" + d + ".tmp.");
  EXPECT_TRUE(fs::is_directory(d + "/inside"));
  EXPECT_FALSE(fs::exists(d + ".tmp." + std::to_string(::getpid())));

  // And a good save replaces the file completely.
  st::save(p, {{"v", full({2}, 3.0, DType::F64)}});
  st::File f = st::load(p);
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].first, "v");
  EXPECT_EQ(others("model.st"), std::vector<std::string>{"taken"});
}

TEST_F(Safetensors, LoadErrorsNameTheFile) {
  const std::string missing = path("missing.st");
  EXPECT_CONTAINS(error_of([&] { st::load(missing); }), "safetensors: cannot open '" + missing + "': No such file");
  EXPECT_CONTAINS(error_of([&] { st::load(dir_.string()); }), "is a directory");
  const std::string bad = path("bad.st");
  write_file(bad, image(obj({entry("fc.weight", "F32", "[10,784]", "[0,31356]")}), 31356));
  EXPECT_CONTAINS(error_of([&] { st::load(bad); }),
                  "safetensors: " + bad + ": tensor 'fc.weight' has shape [10, 784] (7840 F32 = 31360 bytes) but "
                  "data_offsets span 31356 bytes");
  write_file(bad, Bytes{});
  EXPECT_CONTAINS(error_of([&] { st::load(bad); }), "safetensors: " + bad + ": file is 0 bytes");
}

TEST_F(Safetensors, SavesTensorsThatRequireGradAndViews) {
  Tensor w = randn({3, 4}).requires_grad_();
  Tensor v = w.detach().narrow(1, 1, 2);
  st::save(path("g.st"), {{"w", w}, {"v", v}});
  st::File f = st::load(path("g.st"));
  EXPECT_EQ(bytes_of(f.at("w")), bytes_of(w.detach()));
  EXPECT_EQ(bytes_of(f.at("v")), bytes_of(v));
  EXPECT_FALSE(f.at("w").requires_grad());
}

}  // namespace
}  // namespace mantissa
