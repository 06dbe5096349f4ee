// CPU bulk conversions F32 <-> F16/BF16: scalar reference loops, AVX2+F16C and AVX-512 paths
// picked once at run time, and the chunked OpenMP driver. Fast paths must stay bit-identical
// to core/half.h: that is what tests/core/test_half.cpp checks.
#include "core/kernels/convert.h"

#include <unistd.h>

#include <algorithm>
#include <cstddef>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
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

// Every kernel takes `stream`: when the arrays are far larger than the cache, non-temporal
// stores skip the read-for-ownership of each destination line (a third of the traffic when
// narrowing, half of the read traffic when widening). They need 64-byte aligned lines, so
// the first elements up to a line boundary go through the scalar code.
template <typename Dst>
int64_t scalar_head(const Dst* dst, int64_t n, bool stream) {
  if (!stream) return 0;
  const uintptr_t offset = reinterpret_cast<uintptr_t>(dst) & 63;
  if (offset == 0) return 0;
  return std::min<int64_t>(n, static_cast<int64_t>((64 - offset) / sizeof(Dst)));
}

void scalar_f32_to_f16(const float* src, Half* dst, int64_t n, bool) {
  convert_f32_to_f16_scalar(src, dst, n);
}
void scalar_f16_to_f32(const Half* src, float* dst, int64_t n, bool) {
  convert_f16_to_f32_scalar(src, dst, n);
}
void scalar_f32_to_bf16(const float* src, BFloat16* dst, int64_t n, bool) {
  convert_f32_to_bf16_scalar(src, dst, n);
}
void scalar_bf16_to_f32(const BFloat16* src, float* dst, int64_t n, bool) {
  convert_bf16_to_f32_scalar(src, dst, n);
}

#ifdef MANTISSA_CONVERT_X86

// Rounding is fixed in the instruction, so MXCSR's rounding mode cannot leak in. F16C keeps
// half subnormals under FTZ/DAZ (IgnoresFlushToZeroMode checks it), and float subnormals round
// to +-0 in F16 whether DAZ zeroes them first or not.
constexpr int kRoundNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// ---- AVX2 + F16C ---------------------------------------------------------------------------

#define MANTISSA_AVX2 __attribute__((target("avx2,f16c")))

// Pins a loaded vector in a register. The integer BF16 rounding reads its input four times and
// GCC folds the load into each of those instructions; on Zen 4 the repeated loads halved the
// throughput from DRAM (21 vs 42 GB/s on one core).
MANTISSA_AVX2 inline void keep_in_register(__m256i& v) { __asm__("" : "+x"(v)); }

MANTISSA_AVX2 inline void store256(void* p, __m256i v, bool stream) {
  if (stream) {
    _mm256_stream_si256(static_cast<__m256i*>(p), v);
  } else {
    _mm256_storeu_si256(static_cast<__m256i*>(p), v);
  }
}

MANTISSA_AVX2 void f32_to_f16_avx2(const float* src, Half* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f32_to_f16_scalar(src, dst, i);
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRoundNearest);
    const __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), kRoundNearest);
    store256(dst + i, _mm256_set_m128i(b, a), stream);
  }
  convert_f32_to_f16_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

MANTISSA_AVX2 void f16_to_f32_avx2(const Half* src, float* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f16_to_f32_scalar(src, dst, i);
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8));
    store256(dst + i, _mm256_castps_si256(_mm256_cvtph_ps(a)), stream);
    store256(dst + i + 8, _mm256_castps_si256(_mm256_cvtph_ps(b)), stream);
  }
  convert_f16_to_f32_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

// BF16 rounding in integers, like float_to_bf16_bits: x + 0x7fff + lsb, and NaN lanes get the
// quiet bit instead so a NaN whose payload sits in the dropped bits cannot turn into Inf.
// The result is in the low 16 bits of each lane.
MANTISSA_AVX2 inline __m256i bf16_round_avx2(__m256i x) {
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256i mag = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i is_nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));  // mag >= 0
  const __m256i quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
}

MANTISSA_AVX2 void f32_to_bf16_avx2(const float* src, BFloat16* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f32_to_bf16_scalar(src, dst, i);
  for (; i + 16 <= n; i += 16) {
    __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 8));
    keep_in_register(a);
    keep_in_register(b);
    // packus works per 128-bit lane; the qword permute restores element order.
    const __m256i packed = _mm256_packus_epi32(bf16_round_avx2(a), bf16_round_avx2(b));
    store256(dst + i, _mm256_permute4x64_epi64(packed, 0xd8), stream);
  }
  convert_f32_to_bf16_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

MANTISSA_AVX2 void bf16_to_f32_avx2(const BFloat16* src, float* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_bf16_to_f32_scalar(src, dst, i);
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 8));
    store256(dst + i, _mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16), stream);
    store256(dst + i + 8, _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16), stream);
  }
  convert_bf16_to_f32_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

#undef MANTISSA_AVX2

// ---- AVX-512 -------------------------------------------------------------------------------

#define MANTISSA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))
#define MANTISSA_AVX512BF16 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,f16c")))

// GCC 12's AVX-512 intrinsics seed their unused pass-through operand with a self-initialised
// variable, which -Wmaybe-uninitialized reports once inlined (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

MANTISSA_AVX512 inline void keep_in_register(__m512i& v) { __asm__("" : "+v"(v)); }

MANTISSA_AVX512 inline void store512(void* p, __m512i v, bool stream) {
  if (stream) {
    _mm512_stream_si512(static_cast<__m512i*>(p), v);
  } else {
    _mm512_storeu_si512(p, v);
  }
}

MANTISSA_AVX512 void f32_to_f16_avx512(const float* src, Half* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f32_to_f16_scalar(src, dst, i);
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), kRoundNearest);
    const __m256i b = _mm512_cvtps_ph(_mm512_loadu_ps(src + i + 16), kRoundNearest);
    store512(dst + i, _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1), stream);
  }
  convert_f32_to_f16_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

MANTISSA_AVX512 void f16_to_f32_avx512(const Half* src, float* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f16_to_f32_scalar(src, dst, i);
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16));
    store512(dst + i, _mm512_castps_si512(_mm512_cvtph_ps(a)), stream);
    store512(dst + i + 16, _mm512_castps_si512(_mm512_cvtph_ps(b)), stream);
  }
  convert_f16_to_f32_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

// Integer BF16 rounding of 32 floats (as in bf16_round_avx2), packed into 32 words.
MANTISSA_AVX512 inline __m512i bf16_round_pack_avx512(__m512i a, __m512i b) {
  const __m512i bias = _mm512_set1_epi32(0x7fff);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  const __m512i inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x00400000);
  __m512i ra = _mm512_add_epi32(_mm512_add_epi32(a, bias),
                                _mm512_and_si512(_mm512_srli_epi32(a, 16), one));
  __m512i rb = _mm512_add_epi32(_mm512_add_epi32(b, bias),
                                _mm512_and_si512(_mm512_srli_epi32(b, 16), one));
  ra = _mm512_mask_or_epi32(ra, _mm512_cmpgt_epu32_mask(_mm512_and_si512(a, abs_mask), inf), a,
                            quiet);
  rb = _mm512_mask_or_epi32(rb, _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs_mask), inf), b,
                            quiet);
  // Word 2j+1 of the pair (ra, rb) is the high half of element j: one permute packs 32 results.
  const __m512i high_halves = _mm512_set_epi16(
      63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33,
      31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_permutex2var_epi16(ra, high_halves, rb);
}

MANTISSA_AVX512 void f32_to_bf16_avx512(const float* src, BFloat16* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f32_to_bf16_scalar(src, dst, i);
  for (; i + 32 <= n; i += 32) {
    __m512i a = _mm512_loadu_si512(src + i);
    __m512i b = _mm512_loadu_si512(src + i + 16);
    keep_in_register(a);
    keep_in_register(b);
    store512(dst + i, bf16_round_pack_avx512(a, b), stream);
  }
  convert_f32_to_bf16_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

// Nonzero subnormal floats (exponent field 0): the lanes vcvtne2ps2bf16 flushes to zero.
MANTISSA_AVX512 inline __mmask16 subnormal_lanes(__m512i x) {
  const __m512i mag = _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff));
  return _mm512_cmplt_epu32_mask(_mm512_sub_epi32(mag, _mm512_set1_epi32(1)),
                                 _mm512_set1_epi32(0x007fffff));
}

// vcvtne2ps2bf16 rounds to nearest even and quiets NaNs exactly like float_to_bf16_bits, but
// treats subnormal inputs as zero; the rare vectors holding one are patched from the integer
// rounding, so the result stays bit-identical to the scalar path.
MANTISSA_AVX512BF16 void f32_to_bf16_avx512bf16(const float* src, BFloat16* dst, int64_t n,
                                                bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_f32_to_bf16_scalar(src, dst, i);
  for (; i + 32 <= n; i += 32) {
    const __m512 a = _mm512_loadu_ps(src + i);
    const __m512 b = _mm512_loadu_ps(src + i + 16);
    __m512i out = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));  // b is the high half
    const __m512i ai = _mm512_castps_si512(a);
    const __m512i bi = _mm512_castps_si512(b);
    const __mmask32 sub = _mm512_kunpackw(subnormal_lanes(bi), subnormal_lanes(ai));
    if (sub != 0) [[unlikely]] {
      out = _mm512_mask_blend_epi16(sub, out, bf16_round_pack_avx512(ai, bi));
    }
    store512(dst + i, out, stream);
  }
  convert_f32_to_bf16_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

MANTISSA_AVX512 void bf16_to_f32_avx512(const BFloat16* src, float* dst, int64_t n, bool stream) {
  int64_t i = scalar_head(dst, n, stream);
  convert_bf16_to_f32_scalar(src, dst, i);
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16));
    store512(dst + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(a), 16), stream);
    store512(dst + i + 16, _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16), stream);
  }
  convert_bf16_to_f32_scalar(src + i, dst + i, n - i);
  if (stream) _mm_sfence();
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#undef MANTISSA_AVX512
#undef MANTISSA_AVX512BF16

#endif  // MANTISSA_CONVERT_X86

// ---- dispatch ------------------------------------------------------------------------------

template <typename Src, typename Dst>
using Kernel = void (*)(const Src*, Dst*, int64_t, bool);

struct Kernels {
  Kernel<float, Half> f32_to_f16;
  Kernel<Half, float> f16_to_f32;
  Kernel<float, BFloat16> f32_to_bf16;
  Kernel<BFloat16, float> bf16_to_f32;
};

constexpr Kernels kScalarKernels{scalar_f32_to_f16, scalar_f16_to_f32, scalar_f32_to_bf16,
                                 scalar_bf16_to_f32};
#ifdef MANTISSA_CONVERT_X86
constexpr Kernels kAvx2Kernels{f32_to_f16_avx2, f16_to_f32_avx2, f32_to_bf16_avx2,
                               bf16_to_f32_avx2};
constexpr Kernels kAvx512Kernels{f32_to_f16_avx512, f16_to_f32_avx512, f32_to_bf16_avx512,
                                 bf16_to_f32_avx512};
constexpr Kernels kAvx512Bf16Kernels{f32_to_f16_avx512, f16_to_f32_avx512,
                                     f32_to_bf16_avx512bf16, bf16_to_f32_avx512};
#endif

#ifdef MANTISSA_CONVERT_X86
// Not every compiler's __builtin_cpu_supports knows "f16c", so ask CPUID leaf 1 directly.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

bool supported(ConvertPath path) {
#ifdef MANTISSA_CONVERT_X86
  // __builtin_cpu_supports also checks that the OS saves the AVX/AVX-512 register state.
  const bool avx2 = __builtin_cpu_supports("avx2") && cpu_has_f16c();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  switch (path) {
    case ConvertPath::Scalar:
      return true;
    case ConvertPath::Avx2:
      return avx2;
    case ConvertPath::Avx512:
      return avx512;
    case ConvertPath::Avx512Bf16:
      return avx512 && __builtin_cpu_supports("avx512bf16");
  }
  return false;
#else
  return path == ConvertPath::Scalar;
#endif
}

ConvertPath detect_best_path() {
  for (ConvertPath p : {ConvertPath::Avx512Bf16, ConvertPath::Avx512, ConvertPath::Avx2}) {
    if (supported(p)) return p;
  }
  return ConvertPath::Scalar;
}

const Kernels& kernels_for(ConvertPath path) {
  switch (path) {
#ifdef MANTISSA_CONVERT_X86
    case ConvertPath::Avx512Bf16:
      return kAvx512Bf16Kernels;
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

// Streaming pays off once source plus destination overflow the last-level cache: the
// destination would be evicted before anyone reads it anyway, while below that a regular store
// leaves it in cache for the next op (measured on Zen 4: 24 MiB total is faster with regular
// stores, 48 MiB with streaming ones). The cap matters because a VM may report the host's
// total L3 (384 MiB on the development machine) rather than the slice one core shares.
int64_t stream_threshold_bytes() {
  static const int64_t bytes = [] {
    constexpr int64_t kCap = int64_t(32) << 20;
    long l3 = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return l3 > 0 ? std::min<int64_t>(l3, kCap) : kCap;
  }();
  return bytes;
}

// Chunks are a multiple of every vector width and of a cache line, so only the last chunk runs
// a scalar tail. Below the threshold one thread streams faster than a parallel region starts.
constexpr int64_t kChunk = int64_t(1) << 15;
constexpr int64_t kParallelThreshold = int64_t(1) << 16;

template <typename Src, typename Dst>
void run_chunked(Kernel<Src, Dst> kernel, const Src* src, Dst* dst, int64_t n) {
  if (n <= 0) return;
  const bool stream = n * int64_t(sizeof(Src) + sizeof(Dst)) > stream_threshold_bytes();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    kernel(src + begin, dst + begin, std::min(kChunk, n - begin), stream);
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
    case ConvertPath::Avx512Bf16:
      return "avx512+bf16";
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
