// Bulk F32 <-> F16/BF16 conversion loops behind Tensor::to(dtype) on the CPU. Every path (scalar,
// AVX2+F16C, AVX-512) gives results bit-identical to the scalar functions in core/half.h.
#pragma once

#include <cstdint>

#include "core/half.h"

namespace mantissa::kernels {

// The best path the CPU supports is picked once, on first use; large arrays run on all OpenMP
// threads. src and dst need only their element alignment and must not overlap.
void convert_f32_to_f16(const float* src, Half* dst, int64_t n);
void convert_f16_to_f32(const Half* src, float* dst, int64_t n);
void convert_f32_to_bf16(const float* src, BFloat16* dst, int64_t n);
void convert_bf16_to_f32(const BFloat16* src, float* dst, int64_t n);

// Plain single-threaded loops over the core/half.h functions: the reference the fast paths match.
void convert_f32_to_f16_scalar(const float* src, Half* dst, int64_t n);
void convert_f16_to_f32_scalar(const Half* src, float* dst, int64_t n);
void convert_f32_to_bf16_scalar(const float* src, BFloat16* dst, int64_t n);
void convert_bf16_to_f32_scalar(const BFloat16* src, float* dst, int64_t n);

// Instruction-set paths. Avx2 is AVX2 + F16C; Avx512 is AVX-512 F/BW/VL; Avx512Bf16 is the same
// plus AVX512_BF16's vcvtne2ps2bf16 for F32 -> BF16 (its subnormal flushing is patched).
enum class ConvertPath : uint8_t { Scalar, Avx2, Avx512, Avx512Bf16 };

ConvertPath convert_path();                   // the path the functions above use
bool convert_path_supported(ConvertPath path);  // whether this CPU can run it
const char* convert_path_name(ConvertPath path);  // "scalar", "avx2+f16c", "avx512", ...
const char* convert_isa();                    // convert_path_name(convert_path()), for bench JSON

// The same conversions on a chosen path, for tests and benchmarks that compare paths. Throws
// mantissa::Error when the CPU cannot run it.
void convert_f32_to_f16(const float* src, Half* dst, int64_t n, ConvertPath path);
void convert_f16_to_f32(const Half* src, float* dst, int64_t n, ConvertPath path);
void convert_f32_to_bf16(const float* src, BFloat16* dst, int64_t n, ConvertPath path);
void convert_bf16_to_f32(const BFloat16* src, float* dst, int64_t n, ConvertPath path);

}  // namespace mantissa::kernels
