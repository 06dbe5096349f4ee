// The fused unscale-and-check of dynamic loss scaling: one pass over a list of gradients that
// multiplies every element by inv_scale (F32 math; F64 math for F64 tensors) and raises a
// found-inf flag for any Inf/NaN, as PyTorch's _amp_foreach_non_finite_check_and_unscale_.
// GradScaler and the FP32 master-weight store both call it; on CUDA the flag stays on the device.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"
#include "core/tensor.h"

namespace mantissa::kernels {

// One contiguous array the multi-tensor kernels walk: `numel` elements of `dtype` (any
// floating dtype) at `data`.
struct AmpChunk {
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
};

// The per-element rule, shared by every path (PyTorch's kernel, element for element):
//   found |= !isfinite(g);  g = (inv_scale == 1) ? g : g * inv_scale
// The check looks at the value before the multiply, so a finite g that the multiply pushes
// past the format's range (possible only when scale < 1) is not flagged, as in PyTorch. F16/BF16
// are loaded to F32, multiplied and rounded once on store; F64 multiplies by double(inv_scale).
//
// CPU, host memory only: every chunk is processed (all threads split the total element count
// across chunk boundaries, vectorized inner loops) and the return value says whether any
// element was non-finite.
bool amp_unscale_chunks_cpu(std::span<const AmpChunk> chunks, float inv_scale);

// Tensor entry points. `grads`: defined, contiguous, floating tensors, all on one device (a CPU
// or a CUDA device); an Error names the offending index otherwise. Bumps each tensor's version
// when it is modified (inv_scale != 1).
//
// Returns found_inf. On CUDA this launches the multi-tensor kernel and then reads the flag back
// once (one device-to-host synchronization).
bool unscale_and_check(std::span<const Tensor> grads, float inv_scale);

// Device-resident flag: `found_inf` is a one-element F32 tensor on the gradients' device (see
// make_found_inf). Every non-finite element sets it to 1; it is never cleared here, so several
// calls (several dtypes, several optimizers' lists) accumulate into one flag. No host
// synchronization on CUDA: read it with read_found_inf when the decision is needed.
void unscale_and_check_(std::span<const Tensor> grads, float inv_scale, const Tensor& found_inf);

// A zeroed one-element F32 flag on `device`.
Tensor make_found_inf(const Device& device);
// The flag's value as a bool (on CUDA: one copy to the host on the current stream, then a
// stream synchronization).
bool read_found_inf(const Tensor& found_inf);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
// `chunks` point to device memory of `device`; found_inf is a device pointer to one float.
void amp_unscale_chunks(int device, std::span<const AmpChunk> chunks, float inv_scale, float* found_inf);
void amp_zero_flag(const Tensor& found_inf);
bool amp_read_flag(const Tensor& found_inf);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
