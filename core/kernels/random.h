// CPU fills for uniform, normal and bernoulli draws on raw buffers (convention: core/philox.h).
// The caller reserves `offset` from a Generator, philox_blocks_for(n, output is double) blocks;
// the output depends only on (seed, offset, n), never on the OpenMP thread count.
#pragma once

#include <cstdint>

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

}  // namespace mantissa::kernels
