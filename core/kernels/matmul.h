// Matrix multiplication kernels: batched, broadcasting, strided GEMM on the CPU (oneDNN for
// F32/BF16 when built with it, a blocked reference loop otherwise and for F64). F16 (and BF16
// without oneDNN) is computed in F32 on the 16-bit inputs and rounded once on store.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace mantissa::kernels {

// out[..., M, N] = a[..., M, K] @ b[..., K, N] (+ bias[N] on every row).
// a, b and out have the same number of dims (>= 2); each batch dim of a and b equals out's or
// is 1 (broadcast). a, b and bias may have any strides; out must be contiguous. All operands
// share one floating dtype and live on the CPU.
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias = Tensor());

// Plain blocked GEMM on strided matrices, the reference path (and the one for F64):
// C[i, j] (row-major, leading dimension ldc) = sum_k A[i, k] B[k, j] (+ C[i, j] when
// accumulate) (+ bias[j] when bias is not null). Accumulates in T, k in ascending order.
// Parallel over output tiles unless called from inside a parallel region.
void gemm_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate, const float* bias = nullptr);
void gemm_reference(int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs, const double* b,
                    int64_t b_rs, int64_t b_cs, double* c, int64_t ldc, bool accumulate, const double* bias = nullptr);

}  // namespace mantissa::kernels
