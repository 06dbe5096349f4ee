// Process-wide switches of the CUDA backend that users set, as torch.backends does: whether
// F32 matmuls and convolutions may run on TF32 tensor cores. Plain C++ (no CUDA headers), so
// CPU-only builds and user code can set and read them; the CUDA kernels read them per call.
#pragma once

namespace mantissa::cuda {

// TF32 rounds F32 GEMM/convolution inputs to 10 mantissa bits (relative error ~2^-11 per
// product instead of 2^-24): much faster on tensor cores, but an F32 run would no longer be an
// F32 run. Off by default (PyTorch's torch.backends.cuda.matmul.allow_tf32 default too).
// Affects F32 operands only: F16/BF16 inputs use tensor cores with F32 accumulation anyway and
// F64 is never reduced. Thread-safe; takes effect for the next matmul/convolution launched.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace mantissa::cuda
