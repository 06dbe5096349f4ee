// CPU side of the fused unscale-and-check (amp_scale.h): the element range of all chunks is split
// across the OpenMP threads as one array, and each thread runs branch-free, vectorized loops that
// test the exponent bits for Inf/NaN and multiply in the same pass. Also the device dispatch.
#include "core/kernels/amp_scale.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/kernels/convert.h"
#include "core/kernels/loops.h"

namespace mantissa::kernels {
namespace {

// Exponent all ones <=> Inf or NaN; testing bits keeps the loop branch-free and vectorizable
// (and immune to -ffinite-math-only should anyone build with it).
inline uint32_t nonfinite_f32(float v) { return (std::bit_cast<uint32_t>(v) & 0x7f800000u) == 0x7f800000u; }
inline uint32_t nonfinite_f64(double v) {
  return (std::bit_cast<uint64_t>(v) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

bool run_f32(float* __restrict x, int64_t n, float inv) {
  uint32_t bad = 0;
  if (inv == 1.0f) {
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) bad |= nonfinite_f32(x[i]);
  } else {
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      bad |= nonfinite_f32(v);
      x[i] = v * inv;
    }
  }
  return bad != 0;
}

bool run_f64(double* __restrict x, int64_t n, float inv) {
  // PyTorch's opmath for double is double; the F32 inv_scale is widened exactly.
  const double d = static_cast<double>(inv);
  uint32_t bad = 0;
  if (inv == 1.0f) {
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) bad |= nonfinite_f64(x[i]);
  } else {
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[i];
      bad |= nonfinite_f64(v);
      x[i] = v * d;
    }
  }
  return bad != 0;
}

// 16-bit storage: widen a block with the vectorized converters, check and multiply in F32,
// round the block back once (round to nearest even, as every 16-bit store).
template <typename T>
bool run_16bit(T* x, int64_t n, float inv) {
  constexpr int64_t kBlock = 1024;
  alignas(64) float buf[kBlock];
  bool bad = false;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    if constexpr (std::is_same_v<T, Half>) convert_f16_to_f32(x + b, buf, m);
    else convert_bf16_to_f32(x + b, buf, m);
    bad |= run_f32(buf, m, inv);
    if (inv != 1.0f) {
      if constexpr (std::is_same_v<T, Half>) convert_f32_to_f16(buf, x + b, m);
      else convert_f32_to_bf16(buf, x + b, m);
    }
  }
  return bad;
}

bool run_range(const AmpChunk& c, int64_t begin, int64_t end, float inv) {
  const int64_t n = end - begin;
  switch (c.dtype) {
    case DType::F32: return run_f32(static_cast<float*>(c.data) + begin, n, inv);
    case DType::F64: return run_f64(static_cast<double*>(c.data) + begin, n, inv);
    case DType::F16: return run_16bit(static_cast<Half*>(c.data) + begin, n, inv);
    case DType::BF16: return run_16bit(static_cast<BFloat16*>(c.data) + begin, n, inv);
    default: MANTISSA_ASSERT(false, "amp_unscale: chunk dtype ", c.dtype);
  }
  return false;
}

void check_list(std::span<const Tensor> grads, const char* op) {
  for (size_t i = 0; i < grads.size(); ++i) {
    const Tensor& g = grads[i];
    MANTISSA_CHECK(g.defined(), op, ": tensor ", i, " of the list is undefined");
    MANTISSA_CHECK(g.is_floating_point(), op, ": tensor ", i, " (shape ", shape_str(g.sizes()), ") has dtype ",
                   g.dtype(), "; expected a floating dtype (F32, F64, F16 or BF16)");
    MANTISSA_CHECK(g.is_contiguous(), op, ": tensor ", i, " (shape ", shape_str(g.sizes()), ", strides ",
                   shape_str(g.strides()), ") is not contiguous; pass contiguous gradients");
    MANTISSA_CHECK(g.device() == grads[0].device(), op, ": tensor ", i, " is on ", g.device(), " but tensor 0 is on ",
                   grads[0].device(), "; call once per device");
  }
}

void check_flag(const Tensor& found_inf, const Device& device, const char* op) {
  MANTISSA_CHECK(found_inf.defined() && found_inf.dtype() == DType::F32 && found_inf.numel() == 1, op,
                 ": found_inf must be a one-element F32 tensor (make_found_inf), got ",
                 found_inf.defined() ? shape_str(found_inf.sizes()) + " " + dtype_name(found_inf.dtype())
                                     : std::string("an undefined tensor"));
  MANTISSA_CHECK(found_inf.device() == device, op, ": found_inf is on ", found_inf.device(),
                 " but the gradients are on ", device);
}

std::vector<AmpChunk> chunks_of(std::span<const Tensor> grads) {
  std::vector<AmpChunk> chunks;
  chunks.reserve(grads.size());
  for (const Tensor& g : grads)
    if (g.numel() > 0) chunks.push_back(AmpChunk{g.data_ptr(), g.numel(), g.dtype()});
  return chunks;
}

void bump_versions(std::span<const Tensor> grads, float inv_scale) {
  if (inv_scale == 1.0f) return;
  for (const Tensor& g : grads) g.bump_version();
}

}  // namespace

bool amp_unscale_chunks_cpu(std::span<const AmpChunk> chunks, float inv_scale) {
  int64_t total = 0;
  std::vector<int64_t> start(chunks.size() + 1, 0);  // prefix sums of numel
  for (size_t k = 0; k < chunks.size(); ++k) {
    MANTISSA_ASSERT(chunks[k].numel >= 0 && is_floating(chunks[k].dtype));
    total += chunks[k].numel;
    start[k + 1] = total;
  }
  if (total == 0) return false;
  const int max_threads = omp_get_max_threads();
  if (total <= kParallelGrain || max_threads == 1 || omp_in_parallel()) {
    bool bad = false;
    for (const AmpChunk& c : chunks) bad |= run_range(c, 0, c.numel, inv_scale);
    return bad;
  }
  // One flat range over every chunk, cut into equal pieces: a list of many small tensors and a
  // list of one huge tensor both keep every thread busy.
  const int threads = static_cast<int>(std::min<int64_t>(max_threads, (total + kParallelGrain - 1) / kParallelGrain));
  bool bad = false;
#pragma omp parallel num_threads(threads) reduction(|| : bad)
  {
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t per = (total + nt - 1) / nt;
    const int64_t b = std::min(total, tid * per), e = std::min(total, b + per);
    if (b < e) {
      size_t k = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), b) - start.begin()) - 1;
      for (int64_t pos = b; pos < e; ++k) {
        const int64_t lo = pos - start[k], hi = std::min(e, start[k + 1]) - start[k];
        if (hi > lo) bad = run_range(chunks[k], lo, hi, inv_scale) || bad;
        pos = start[k] + hi;
      }
    }
  }
  return bad;
}

Tensor make_found_inf(const Device& device) {
  Tensor flag = empty({1}, TensorOptions(DType::F32).device(device));
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::amp_zero_flag(flag);
#else
    MANTISSA_ERROR("make_found_inf: ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  } else {
    *flag.data<float>() = 0.0f;
  }
  return flag;
}

bool read_found_inf(const Tensor& found_inf) {
  MANTISSA_CHECK(found_inf.defined() && found_inf.dtype() == DType::F32 && found_inf.numel() == 1,
                 "read_found_inf: expected a one-element F32 flag (make_found_inf)");
  if (found_inf.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::amp_read_flag(found_inf);
#else
    MANTISSA_ERROR("read_found_inf: ", found_inf.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  return *found_inf.data<float>() != 0.0f;
}

void unscale_and_check_(std::span<const Tensor> grads, float inv_scale, const Tensor& found_inf) {
  constexpr const char* kOp = "unscale_and_check_";
  if (grads.empty()) {
    MANTISSA_CHECK(found_inf.defined(), kOp, ": found_inf is undefined");
    return;
  }
  check_list(grads, kOp);
  const Device device = grads[0].device();
  check_flag(found_inf, device, kOp);
  const std::vector<AmpChunk> chunks = chunks_of(grads);
  if (device.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::amp_unscale_chunks(device.index, chunks, inv_scale, found_inf.data<float>());
#else
    MANTISSA_ERROR(kOp, ": ", device, " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  } else if (amp_unscale_chunks_cpu(chunks, inv_scale)) {
    *found_inf.data<float>() = 1.0f;
  }
  bump_versions(grads, inv_scale);
}

bool unscale_and_check(std::span<const Tensor> grads, float inv_scale) {
  constexpr const char* kOp = "unscale_and_check";
  if (grads.empty()) return false;
  check_list(grads, kOp);
  const Device device = grads[0].device();
  if (device.is_cuda()) {
    Tensor flag = make_found_inf(device);
    unscale_and_check_(grads, inv_scale, flag);
    return read_found_inf(flag);
  }
  const bool bad = amp_unscale_chunks_cpu(chunks_of(grads), inv_scale);
  bump_versions(grads, inv_scale);
  return bad;
}

}  // namespace mantissa::kernels
