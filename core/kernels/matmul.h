// Matrix multiplication kernels: batched, broadcasting, strided GEMM on the CPU (oneDNN for
// F32/BF16 when built with it, a blocked reference loop otherwise and for F64) and on CUDA
// (cuBLASLt, matmul.cu). F16/BF16 are computed with F32 accumulation and rounded once on store.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

// out[..., M, N] = a[..., M, K] @ b[..., K, N] (+ bias[N] on every row).
// a, b and out have the same number of dims (>= 2); each batch dim of a and b equals out's or
// is 1 (broadcast). a, b and bias may have any strides; out must be contiguous. All operands
// share one floating dtype and live on one device (CPU or CUDA). On CUDA, F32 runs on TF32
// tensor cores only when mantissa::cuda::allow_tf32() (core/cuda_flags.h) is on.
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias = Tensor());

// out = relu(a @ b + bias), the forward of a fused linear+relu: on CUDA one cuBLASLt call with
// the bias+ReLU epilogue (ReLU applied in F32 before the one rounding); on the CPU the matmul
// followed by an in-place relu (the same values: rounding preserves the sign). NaN stays NaN
// on the CPU; what cuBLASLt's max(x, 0) epilogue makes of NaN is cuBLAS's choice.
void matmul_relu(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias = Tensor());

// Plain blocked GEMM on strided matrices, the reference path (and the one for F64):
// C[i, j] (row-major, leading dimension ldc) = sum_k A[i, k] B[k, j] (+ C[i, j] when
// accumulate) (+ bias[j] when bias is not null). Accumulates in T, k in ascending order.
// Parallel over output tiles unless called from inside a parallel region.
void gemm_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate, const float* bias = nullptr);
void gemm_reference(int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs, const double* b,
                    int64_t b_rs, int64_t b_cs, double* c, int64_t ldc, bool accumulate, const double* bias = nullptr);

#ifdef MANTISSA_HAVE_CUDA
namespace cuda {
// The CUDA side of matmul / matmul_relu on operands already checked by the entry points.
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias, bool relu);
}  // namespace cuda
#endif

}  // namespace mantissa::kernels
