// Portability macros shared by host and device code.
// MANTISSA_HOST_DEVICE marks functions usable from both C++ and CUDA kernels.
#pragma once

#if defined(__CUDACC__)
#define MANTISSA_HOST_DEVICE __host__ __device__
#define MANTISSA_DEVICE __device__
#else
#define MANTISSA_HOST_DEVICE
#define MANTISSA_DEVICE
#endif

#define MANTISSA_INLINE MANTISSA_HOST_DEVICE inline
