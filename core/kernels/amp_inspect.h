// Range statistics behind the overflow/underflow inspector (amp/inspector.h): one pass over a
// tensor counts zeros, values F16 cannot represent (below its smallest subnormal or normal,
// above its largest finite value) and non-finite values, and finds max |x| over the finite ones.
// Results accumulate into a small stats buffer on the tensor's device, read back once per step.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mantissa::kernels {

// F16's limits, the reference every count uses (whatever the tensor's own dtype).
inline constexpr double kF16SmallestSubnormal = 0x1p-24;  // 5.96e-8
inline constexpr double kF16SmallestNormal = 0x1p-14;     // 6.10e-5
inline constexpr double kF16Max = 65504.0;

struct AmpStats {
  int64_t numel = 0;       // elements seen (summed over accumulated tensors)
  int64_t zero = 0;        // x == 0 (either sign)
  int64_t under_sub = 0;   // 0 < |x| < 2^-24: below F16's smallest subnormal; in F16 it becomes
                           // 0 or 2^-24, so all of its digits are lost
  int64_t under_norm = 0;  // 0 < |x| < 2^-14: below F16's smallest normal, so it keeps fewer than
                           // 11 significant bits (includes the under_sub elements)
  int64_t over = 0;        // finite |x| > 65504: beyond F16's largest finite value (from 65520 up
                           // it rounds to Inf)
  int64_t nonfinite = 0;   // Inf or NaN
  double max_abs = 0.0;    // max |x| over the finite elements (0 when there are none)

  // Adds the counts and takes the larger max_abs.
  void merge(const AmpStats& other);
};

// Layout of one slot in a stats buffer: an I64 tensor [slots, kAmpStatFields] holding numel,
// zero, under_sub, under_norm, over, nonfinite and the bits of max_abs as a non-negative double
// (whose bit patterns order like the values, so a max of the bits is the max of the values).
inline constexpr int64_t kAmpStatFields = 7;

// A zeroed stats buffer of `slots` slots on `device`.
Tensor amp_stats_buffer(const Device& device, int64_t slots);

// Adds the statistics of x (a contiguous floating tensor on the buffer's device) to slot `slot`
// of the buffer: counts are summed, max_abs is maxed, so one slot can gather several tensors
// (a module called twice in one forward). No host synchronization on CUDA.
void amp_stats_accumulate(const Tensor& x, const Tensor& buffer, int64_t slot);

// Every slot of the buffer, read back in one copy (one synchronization on CUDA).
std::vector<AmpStats> amp_stats_read(const Tensor& buffer);

// The statistics of one contiguous floating tensor: buffer, accumulate, read.
AmpStats amp_inspect(const Tensor& x);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
void amp_stats_zero(const Tensor& buffer);
void amp_stats_accumulate(const Tensor& x, const Tensor& buffer, int64_t slot);
void amp_stats_copy_to_host(const Tensor& buffer, int64_t* host);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
