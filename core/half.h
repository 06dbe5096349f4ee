// Half (IEEE binary16) and BFloat16: 16-bit storage types, and the scalar bit-exact conversions
// between them and float/double that every CPU path, CUDA kernel and test agrees with.
// Arithmetic happens in float: both types convert implicitly to float and define no operators.
#pragma once

#include <cstdint>
#include <cstring>
#include <concepts>
#include <type_traits>

#include "core/macros.h"

#ifndef __CUDACC__
#include <ostream>
#endif

namespace mantissa {

namespace detail {

// A bit cast that also compiles in CUDA device code; memcpy of a register is free there.
template <typename To, typename From>
MANTISSA_INLINE To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
#if defined(__CUDA_ARCH__)
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
#else
  return __builtin_bit_cast(To, from);
#endif
}

// Rounds a finite-or-infinite binary magnitude (sign already removed, NaN handled by the caller)
// from a wide IEEE format to a narrow one, to nearest with ties to even, entirely in integers so
// the result never depends on the FPU's rounding mode or on flush-to-zero. Subnormal results are
// produced (never flushed); anything at or above the midpoint between the narrow max and 2^(emax+1)
// becomes Inf. Src/Dst describe the formats by mantissa bits, exponent bias and exponent bits.
template <typename UInt, int SrcMant, int SrcBias, int DstExpBits, int DstMant>
MANTISSA_INLINE uint32_t round_magnitude(UInt a) {
  constexpr int kDstBias = (1 << (DstExpBits - 1)) - 1;
  constexpr uint32_t kDstInf = ((1u << DstExpBits) - 1u) << DstMant;
  constexpr int kDrop = SrcMant - DstMant;  // mantissa bits lost for a normal result
  // Source exponent field of the narrow format's smallest normal.
  constexpr UInt kMinNormal = UInt(SrcBias - kDstBias + 1) << SrcMant;
  if (a >= kMinNormal) {
    // Re-bias the exponent in place; the mantissa carry into the exponent does the right thing
    // at every binade edge, including the step from the largest finite value to Inf.
    UInt r = a - (UInt(SrcBias - kDstBias) << SrcMant);
    r += (UInt(1) << (kDrop - 1)) - 1 + ((r >> kDrop) & 1);
    r >>= kDrop;
    return r >= kDstInf ? kDstInf : static_cast<uint32_t>(r);
  }
  // Subnormal (or zero) result: value = M * 2^(e - SrcBias - SrcMant) in units of the narrow
  // subnormal step 2^(1 - kDstBias - DstMant).
  const int e = static_cast<int>(a >> SrcMant);
  const UInt m = (a & ((UInt(1) << SrcMant) - 1)) | (e != 0 ? (UInt(1) << SrcMant) : UInt(0));
  const int shift = (1 - kDstBias - DstMant) - ((e != 0 ? e : 1) - SrcBias - SrcMant);
  if (shift > SrcMant + 1) return 0;  // below half the smallest subnormal step: rounds to zero
  const UInt q = m >> shift;
  const UInt rem = m & ((UInt(1) << shift) - 1);
  const UInt halfway = UInt(1) << (shift - 1);
  const UInt up = (rem > halfway || (rem == halfway && (q & 1) != 0)) ? 1 : 0;
  return static_cast<uint32_t>(q + up);  // q + up == 2^DstMant is exactly the smallest normal
}

}  // namespace detail

// ---- binary16 ------------------------------------------------------------------------------

MANTISSA_INLINE uint16_t float_to_half_bits(float f) {
  const uint32_t x = detail::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) {
    // NaN: quiet it and keep the top payload bits, as F16C and CUDA do.
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x03ffu));
  }
  return static_cast<uint16_t>(sign | detail::round_magnitude<uint32_t, 23, 127, 5, 10>(a));
}

MANTISSA_INLINE uint16_t double_to_half_bits(double d) {
  const uint64_t x = detail::bit_cast<uint64_t>(d);
  const uint16_t sign = static_cast<uint16_t>((x >> 48) & 0x8000u);
  const uint64_t a = x & 0x7fffffffffffffffull;
  if (a > 0x7ff0000000000000ull) {
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 42) & 0x03ffu));
  }
  return static_cast<uint16_t>(sign | detail::round_magnitude<uint64_t, 52, 1023, 5, 10>(a));
}

MANTISSA_INLINE float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x03ffu;
  uint32_t bits;
  if (e == 0x1f) {
    // Inf stays Inf; a NaN keeps its payload and is quieted (F16C's vcvtph2ps does the same).
    bits = sign | 0x7f800000u | (m << 13) | (m != 0 ? 0x00400000u : 0u);
  } else if (e != 0) {
    bits = sign | ((e + (127 - 15)) << 23) | (m << 13);
  } else if (m == 0) {
    bits = sign;
  } else {
    // Subnormal m * 2^-24 is a normal float: shift the leading one into the implicit position.
    e = 127 - 15 + 1;
    while ((m & 0x0400u) == 0) {
      m <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((m & 0x03ffu) << 13);
  }
  return detail::bit_cast<float>(bits);
}

// ---- bfloat16 ------------------------------------------------------------------------------

MANTISSA_INLINE uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = detail::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    // NaN: truncating could clear every payload bit and make Inf, so force the quiet bit.
    return static_cast<uint16_t>((x >> 16) | 0x0040u);
  }
  // Same exponent range as float, so one integer add rounds normals, subnormals and the
  // overflow to Inf alike: add just under half an ulp, plus one when the kept lsb is odd.
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

MANTISSA_INLINE uint16_t double_to_bf16_bits(double d) {
  const uint64_t x = detail::bit_cast<uint64_t>(d);
  const uint16_t sign = static_cast<uint16_t>((x >> 48) & 0x8000u);
  const uint64_t a = x & 0x7fffffffffffffffull;
  if (a > 0x7ff0000000000000ull) {
    return static_cast<uint16_t>(sign | 0x7fc0u | ((a >> 45) & 0x007fu));
  }
  return static_cast<uint16_t>(sign | detail::round_magnitude<uint64_t, 52, 1023, 8, 7>(a));
}

// Widening is exact and keeps every bit, NaN payloads included (what PyTorch and CUDA do).
MANTISSA_INLINE float bf16_bits_to_float(uint16_t b) {
  return detail::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

namespace detail {
// An integer as a double that rounds to any format of <= 51 mantissa bits exactly as the integer
// itself would: bits beyond double's 53 are folded into a sticky lsb (round to odd), which rules
// out double rounding.
template <std::integral I>
MANTISSA_INLINE double integer_to_double_sticky(I v) {
  if constexpr (sizeof(I) < 8) {
    return static_cast<double>(v);
  } else {
    const bool neg = std::is_signed_v<I> && v < 0;
    uint64_t u = neg ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    int k = 0;
    uint64_t sticky = 0;
    while ((u >> 53) != 0) {
      sticky |= u & 1;
      u >>= 1;
      ++k;
    }
    double d = static_cast<double>(u | sticky);
    for (; k > 0; --k) d *= 2.0;
    return neg ? -d : d;
  }
}
}  // namespace detail

// ---- storage types -------------------------------------------------------------------------

struct Half {
  uint16_t bits;

  Half() = default;
  MANTISSA_INLINE Half(float f) : bits(float_to_half_bits(f)) {}
  // Rounded once, straight from double; `Half h = 0.1;` (copy-init) still goes through float
  // and can round twice, so write Half(0.1) for a double.
  MANTISSA_INLINE explicit Half(double d) : bits(double_to_half_bits(d)) {}
  // Without this, Half(0) would be ambiguous between the float and double constructors.
  template <std::integral I>
  MANTISSA_INLINE explicit Half(I v)
      : bits(double_to_half_bits(detail::integer_to_double_sticky(v))) {}

  MANTISSA_INLINE operator float() const { return half_bits_to_float(bits); }

  struct FromBits {};
  MANTISSA_HOST_DEVICE constexpr Half(uint16_t b, FromBits) : bits(b) {}
  MANTISSA_HOST_DEVICE static constexpr Half from_bits(uint16_t b) { return Half(b, FromBits{}); }
};

struct BFloat16 {
  uint16_t bits;

  BFloat16() = default;
  MANTISSA_INLINE BFloat16(float f) : bits(float_to_bf16_bits(f)) {}
  MANTISSA_INLINE explicit BFloat16(double d) : bits(double_to_bf16_bits(d)) {}
  template <std::integral I>
  MANTISSA_INLINE explicit BFloat16(I v)
      : bits(double_to_bf16_bits(detail::integer_to_double_sticky(v))) {}

  MANTISSA_INLINE operator float() const { return bf16_bits_to_float(bits); }

  struct FromBits {};
  MANTISSA_HOST_DEVICE constexpr BFloat16(uint16_t b, FromBits) : bits(b) {}
  MANTISSA_HOST_DEVICE static constexpr BFloat16 from_bits(uint16_t b) {
    return BFloat16(b, FromBits{});
  }
};

static_assert(sizeof(Half) == 2 && sizeof(BFloat16) == 2, "16-bit storage types must be 2 bytes");
static_assert(std::is_trivially_copyable_v<Half> && std::is_trivially_copyable_v<BFloat16>);
static_assert(std::is_trivially_default_constructible_v<Half> &&
              std::is_trivially_default_constructible_v<BFloat16>);
static_assert(std::is_standard_layout_v<Half> && std::is_standard_layout_v<BFloat16>);

MANTISSA_HOST_DEVICE constexpr bool is_nan(Half h) {
  return (h.bits & 0x7c00u) == 0x7c00u && (h.bits & 0x03ffu) != 0;
}
MANTISSA_HOST_DEVICE constexpr bool is_nan(BFloat16 b) {
  return (b.bits & 0x7f80u) == 0x7f80u && (b.bits & 0x007fu) != 0;
}
MANTISSA_HOST_DEVICE constexpr bool is_inf(Half h) { return (h.bits & 0x7fffu) == 0x7c00u; }
MANTISSA_HOST_DEVICE constexpr bool is_inf(BFloat16 b) { return (b.bits & 0x7fffu) == 0x7f80u; }
MANTISSA_HOST_DEVICE constexpr bool is_finite(Half h) { return (h.bits & 0x7c00u) != 0x7c00u; }
MANTISSA_HOST_DEVICE constexpr bool is_finite(BFloat16 b) { return (b.bits & 0x7f80u) != 0x7f80u; }

#ifndef __CUDACC__
// Prints the float value, so a Half prints like the number it stores.
inline std::ostream& operator<<(std::ostream& os, Half h) { return os << static_cast<float>(h); }
inline std::ostream& operator<<(std::ostream& os, BFloat16 b) {
  return os << static_cast<float>(b);
}
#endif

}  // namespace mantissa
