// Fills for uniform, normal and bernoulli draws (convention: core/philox.h): CPU loops on raw
// buffers, and Tensor forms that also run on CUDA (random.cu). The caller reserves `offset` from
// a Generator, philox_blocks_for(n, output is double) blocks; the output depends only on
// (seed, offset, n), never on the OpenMP thread count or the device.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

// out[i] in [lo, hi); requires finite lo <= hi (lo == hi fills lo).
void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi);
void fill_uniform(double* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi);

// out[i] = mean + std * z, z standard normal by Box-Muller; requires std >= 0.
void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset, float mean, float std);
void fill_normal(double* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std);

// out[i] = 1 with probability p, else 0; requires 0 <= p <= 1. The mask version draws the same
// values as the float version for the same (seed, offset), so a dropout mask and its float
// twin agree.
void fill_bernoulli(float* out, int64_t n, uint64_t seed, uint64_t offset, float p);
void fill_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, float p);

// Tensor forms, what the random ops call: `out` contiguous, on the CPU or a CUDA device, n =
// out.numel(). F64 draws the 64-bit stream; F32, F16 and BF16 draw the 32-bit stream in F32 and
// round once on store (so every dtype holds the F32 numbers, rounded). Bernoulli writes 1/0
// (true/false) into any dtype and always draws the 32-bit stream. Both devices produce the same
// bits for the same (seed, offset, n): the CUDA kernels run the functions of core/philox.h.
void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi);
void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
void fill_bernoulli(const Tensor& out, uint64_t seed, uint64_t offset, double p);

#ifdef MANTISSA_HAVE_CUDA
// random.cu: the Tensor forms on a CUDA tensor, arguments already checked by them.
namespace cuda {
void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi);
void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std);
void fill_bernoulli(const Tensor& out, uint64_t seed, uint64_t offset, double p);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
