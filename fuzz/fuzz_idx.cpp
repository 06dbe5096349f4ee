// libFuzzer entry point for the IDX (MNIST-format) reader: the input is one file's bytes, plain
// or gzip, parsed as an images file and as a labels file. Anything but a mantissa::Error
// (a crash, a sanitizer report, another exception) is a finding.
//   clang++-14 -fsanitize=fuzzer,address,undefined -std=c++20 -I. fuzz/fuzz_idx.cpp <data and core sources> -lz
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/mnist.h"

namespace {

template <typename F>
void expect_ok_or_error(F&& f) {
  try {
    f();
  } catch (const mantissa::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  expect_ok_or_error([&] { mantissa::data::parse_idx_images(data, size, "<fuzz>"); });
  expect_ok_or_error([&] { mantissa::data::parse_idx_labels(data, size, "<fuzz>"); });
  return 0;
}
