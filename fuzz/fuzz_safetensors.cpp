// libFuzzer entry point for the safetensors parser: any byte string must either parse or throw
// mantissa::Error, never read out of bounds, crash or hang. Not built by CMake; e.g.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_safetensors.cpp \
//     nn/safetensors.cpp <the other library sources or libmantissa.a> -o fuzz_safetensors
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    mantissa::safetensors::File f = mantissa::safetensors::parse(data, size, "fuzz.safetensors");
    // Touch every loaded byte so a bad copy shows up under the sanitizers.
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : f.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.data_ptr());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
    }
  } catch (const mantissa::Error&) {
  }
  return 0;
}
