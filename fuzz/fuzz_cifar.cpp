// libFuzzer entry point for the CIFAR-10 binary batch reader: the input is one batch file's
// bytes, plain or gzip. Anything but a mantissa::Error (a crash, a sanitizer report, another
// exception) is a finding.
//   clang++-14 -fsanitize=fuzzer,address,undefined -std=c++20 -I. fuzz/fuzz_cifar.cpp <data and core sources> -lz
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "data/cifar10.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    mantissa::data::parse_cifar10_batch(data, size, "<fuzz>");
  } catch (const mantissa::Error&) {
  }
  return 0;
}
