// CPU bulk conversions F32 <-> F16/BF16: scalar reference loops, AVX2+F16C and AVX-512 paths
// picked once at run time, and the chunked OpenMP driver. Fast paths must stay bit-identical
// to core/half.h: that is what tests/core/test_half.cpp checks.
#include "core/kernels/convert.h"

#include <algorithm>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MANTISSA_CONVERT_X86 1
#endif

namespace mantissa::kernels {

// ---- scalar reference ----------------------------------------------------------------------

void convert_f32_to_f16_scalar(const float* src, Half* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}
void convert_f16_to_f32_scalar(const Half* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}
void convert_f32_to_bf16_scalar(const float* src, BFloat16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i].bits = float_to_bf16_bits(src[i]);
}
void convert_bf16_to_f32_scalar(const BFloat16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_bits_to_float(src[i].bits);
}

namespace {

#ifdef MANTISSA_CONVERT_X86

// Rounding is fixed in the instruction, so MXCSR's rounding mode cannot leak in. F16C honours
// neither DAZ nor FTZ for half values, and float subnormals round to +-0 in F16 anyway.
constexpr int kRoundNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// ---- AVX2 + F16C ---------------------------------------------------------------------------

__attribute__((target("avx2,f16c"))) void f32_to_f16_avx2(const float* src, Half* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRoundNearest);
    const __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), kRoundNearest);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 8), b);
  }
  for (; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

__attribute__((target("avx2,f16c"))) void f16_to_f32_avx2(const Half* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
    _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
  }
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

// BF16 rounding in integers, like float_to_bf16_bits: x + 0x7fff + lsb, and NaN lanes get the
// quiet bit instead so a NaN whose payload sits in the dropped bits cannot turn into Inf.
__attribute__((target("avx2"))) inline __m256i bf16_round_avx2(__m256i x) {
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256i mag = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i is_nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));  // mag >= 0
  const __m256i quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
}

__attribute__((target("avx2"))) void f32_to_bf16_avx2(const float* src, BFloat16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = bf16_round_avx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m256i b =
        bf16_round_avx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8)));
    // packus works per 128-bit lane; the qword permute restores element order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), packed);
  }
  for (; i < n; ++i) dst[i].bits = float_to_bf16_bits(src[i]);
}

__attribute__((target("avx2"))) void bf16_to_f32_avx2(const BFloat16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 8),
                        _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
  }
  for (; i < n; ++i) dst[i] = bf16_bits_to_float(src[i].bits);
}

// ---- AVX-512 -------------------------------------------------------------------------------

#define MANTISSA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))

// GCC 12's AVX-512 intrinsics seed their unused pass-through operand with a self-initialised
// variable, which -Wmaybe-uninitialized reports once inlined (GCC bug 105593, fixed in 13).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

MANTISSA_AVX512 void f32_to_f16_avx512(const float* src, Half* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), kRoundNearest);
    const __m256i b = _mm512_cvtps_ph(_mm512_loadu_ps(src + i + 16), kRoundNearest);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), a);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 16), b);
  }
  for (; i < n; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

MANTISSA_AVX512 void f16_to_f32_avx512(const Half* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(a));
    _mm512_storeu_ps(dst + i + 16, _mm512_cvtph_ps(b));
  }
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

// Returns x rounded to BF16 in the high 16 bits of each lane (low bits are don't-care).
MANTISSA_AVX512 inline __m512i bf16_round_avx512(__m512i x) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
  const __m512i mag = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_or_epi32(rounded, is_nan, x, _mm512_set1_epi32(0x00400000));
}

MANTISSA_AVX512 void f32_to_bf16_avx512(const float* src, BFloat16* dst, int64_t n) {
  // Word 2j+1 of the pair (a, b) is the high half of element j: one permute packs 32 results.
  alignas(64) static constexpr uint16_t kHighHalves[32] = {
      1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
      33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
  const __m512i idx = _mm512_load_si512(kHighHalves);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i a = bf16_round_avx512(_mm512_loadu_si512(src + i));
    const __m512i b = bf16_round_avx512(_mm512_loadu_si512(src + i + 16));
    _mm512_storeu_si512(dst + i, _mm512_permutex2var_epi16(a, idx, b));
  }
  for (; i < n; ++i) dst[i].bits = float_to_bf16_bits(src[i]);
}

MANTISSA_AVX512 void bf16_to_f32_avx512(const BFloat16* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16));
    _mm512_storeu_si512(dst + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16));
    _mm512_storeu_si512(dst + i + 16, _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
  }
  for (; i < n; ++i) dst[i] = bf16_bits_to_float(src[i].bits);
}

#pragma GCC diagnostic pop
#undef MANTISSA_AVX512

#endif  // MANTISSA_CONVERT_X86

// ---- dispatch ------------------------------------------------------------------------------

template <typename Src, typename Dst>
using Kernel = void (*)(const Src*, Dst*, int64_t);

struct Kernels {
  Kernel<float, Half> f32_to_f16;
  Kernel<Half, float> f16_to_f32;
  Kernel<float, BFloat16> f32_to_bf16;
  Kernel<BFloat16, float> bf16_to_f32;
};

constexpr Kernels kScalarKernels{convert_f32_to_f16_scalar, convert_f16_to_f32_scalar,
                                 convert_f32_to_bf16_scalar, convert_bf16_to_f32_scalar};
#ifdef MANTISSA_CONVERT_X86
constexpr Kernels kAvx2Kernels{f32_to_f16_avx2, f16_to_f32_avx2, f32_to_bf16_avx2,
                               bf16_to_f32_avx2};
constexpr Kernels kAvx512Kernels{f32_to_f16_avx512, f16_to_f32_avx512, f32_to_bf16_avx512,
                                 bf16_to_f32_avx512};
#endif

bool supported(ConvertPath path) {
  switch (path) {
    case ConvertPath::Scalar:
      return true;
#ifdef MANTISSA_CONVERT_X86
    case ConvertPath::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    case ConvertPath::Avx512:
      // __builtin_cpu_supports also checks that the OS saves the AVX-512 state.
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c");
#else
    default:
      return false;
#endif
  }
  return false;
}

ConvertPath detect_best_path() {
  for (ConvertPath p : {ConvertPath::Avx512, ConvertPath::Avx2}) {
    if (supported(p)) return p;
  }
  return ConvertPath::Scalar;
}

const Kernels& kernels_for(ConvertPath path) {
  switch (path) {
#ifdef MANTISSA_CONVERT_X86
    case ConvertPath::Avx512:
      return kAvx512Kernels;
    case ConvertPath::Avx2:
      return kAvx2Kernels;
#endif
    default:
      return kScalarKernels;
  }
}

const Kernels& checked_kernels(ConvertPath path) {
  MANTISSA_CHECK(supported(path), "convert: path ", convert_path_name(path),
                 " is not supported by this CPU (best available: ", convert_isa(), ")");
  return kernels_for(path);
}

const Kernels& best_kernels() {
  static const Kernels& k = kernels_for(convert_path());
  return k;
}

// Chunks are a multiple of every vector width, so only the last chunk runs a scalar tail. Below
// the threshold one thread streams faster than a parallel region starts.
constexpr int64_t kChunk = int64_t(1) << 15;
constexpr int64_t kParallelThreshold = int64_t(1) << 16;

template <typename Src, typename Dst>
void run_chunked(Kernel<Src, Dst> kernel, const Src* src, Dst* dst, int64_t n) {
  if (n <= 0) return;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    kernel(src + begin, dst + begin, std::min(kChunk, n - begin));
  }
}

}  // namespace

// ---- public API ----------------------------------------------------------------------------

ConvertPath convert_path() {
  static const ConvertPath path = detect_best_path();
  return path;
}

bool convert_path_supported(ConvertPath path) { return supported(path); }

const char* convert_path_name(ConvertPath path) {
  switch (path) {
    case ConvertPath::Scalar:
      return "scalar";
    case ConvertPath::Avx2:
      return "avx2+f16c";
    case ConvertPath::Avx512:
      return "avx512";
  }
  return "unknown";
}

const char* convert_isa() { return convert_path_name(convert_path()); }

void convert_f32_to_f16(const float* src, Half* dst, int64_t n) {
  run_chunked(best_kernels().f32_to_f16, src, dst, n);
}
void convert_f16_to_f32(const Half* src, float* dst, int64_t n) {
  run_chunked(best_kernels().f16_to_f32, src, dst, n);
}
void convert_f32_to_bf16(const float* src, BFloat16* dst, int64_t n) {
  run_chunked(best_kernels().f32_to_bf16, src, dst, n);
}
void convert_bf16_to_f32(const BFloat16* src, float* dst, int64_t n) {
  run_chunked(best_kernels().bf16_to_f32, src, dst, n);
}

void convert_f32_to_f16(const float* src, Half* dst, int64_t n, ConvertPath path) {
  run_chunked(checked_kernels(path).f32_to_f16, src, dst, n);
}
void convert_f16_to_f32(const Half* src, float* dst, int64_t n, ConvertPath path) {
  run_chunked(checked_kernels(path).f16_to_f32, src, dst, n);
}
void convert_f32_to_bf16(const float* src, BFloat16* dst, int64_t n, ConvertPath path) {
  run_chunked(checked_kernels(path).f32_to_bf16, src, dst, n);
}
void convert_bf16_to_f32(const BFloat16* src, float* dst, int64_t n, ConvertPath path) {
  run_chunked(checked_kernels(path).bf16_to_f32, src, dst, n);
}

}  // namespace mantissa::kernels
