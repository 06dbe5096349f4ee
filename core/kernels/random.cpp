// CPU reference for the random fills: one Philox block per loop iteration, parallel over blocks.
// Each element is a pure function of (seed, offset, i), which is what makes the result
// independent of how OpenMP splits the loop. The Tensor forms check their arguments here for
// both devices, then send CUDA tensors to random.cu.
#include "core/kernels/random.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/kernels/copy.h"
#include "core/kernels/cuda_dispatch.h"
#include "core/philox.h"

namespace mantissa::kernels {

namespace {

// Below this many elements a parallel region costs more than the Philox rounds it spreads.
constexpr int64_t kParallelThreshold = int64_t{1} << 14;

// Calls per_block(words, first_element, count) for every counter block of an n-element draw,
// `per` elements per block (4 for 32-bit outputs, 2 for 64-bit ones).
template <int per, typename PerBlock>
void for_each_block(int64_t n, uint64_t seed, uint64_t offset, PerBlock per_block) {
  const int64_t blocks = static_cast<int64_t>(philox_blocks_for(n, per == 2));
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t b = 0; b < blocks; ++b) {
    uint32_t w[4];
    philox_block(seed, offset + static_cast<uint64_t>(b), w);
    const int64_t first = b * per;
    per_block(w, first, std::min<int64_t>(per, n - first));
  }
}

void check_n(const char* op, int64_t n, const void* out) {
  MANTISSA_CHECK(n >= 0, op, ": element count must be >= 0, got ", n);
  MANTISSA_CHECK(n == 0 || out != nullptr, op, ": output pointer is null for ", n, " elements");
}

template <typename T>
void check_range(const char* op, T lo, T hi) {
  MANTISSA_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, op,
                 ": expected finite bounds with lo <= hi, got lo=", lo, " hi=", hi);
}

template <typename T>
void check_normal(const char* op, T mean, T std) {
  MANTISSA_CHECK(std >= T(0), op, ": expected std >= 0, got std=", std, " (mean=", mean, ")");
}

void check_probability(const char* op, float p) {
  MANTISSA_CHECK(p >= 0.0f && p <= 1.0f, op, ": expected 0 <= p <= 1, got p=", p);
}

}  // namespace

void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, float lo, float hi) {
  check_n("fill_uniform", n, out);
  check_range("fill_uniform", lo, hi);
  for_each_block<4>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      out[first + k] = uniform_in_range(uint32_to_uniform_float(w[k]), lo, hi);
    }
  });
}

void fill_uniform(double* out, int64_t n, uint64_t seed, uint64_t offset, double lo, double hi) {
  check_n("fill_uniform", n, out);
  check_range("fill_uniform", lo, hi);
  for_each_block<2>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    for (int64_t k = 0; k < count; ++k) {
      out[first + k] = uniform_in_range(uint32x2_to_uniform_double(w[2 * k], w[2 * k + 1]), lo, hi);
    }
  });
}

void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset, float mean, float std) {
  check_n("fill_normal", n, out);
  check_normal("fill_normal", mean, std);
  for_each_block<4>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    float z[4];
    box_muller_float(w[0], w[1], z[0], z[1]);
    box_muller_float(w[2], w[3], z[2], z[3]);
    for (int64_t k = 0; k < count; ++k) out[first + k] = normal_affine(z[k], mean, std);
  });
}

void fill_normal(double* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
  check_n("fill_normal", n, out);
  check_normal("fill_normal", mean, std);
  for_each_block<2>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    double z[2];
    box_muller_double(w, z[0], z[1]);
    for (int64_t k = 0; k < count; ++k) out[first + k] = normal_affine(z[k], mean, std);
  });
}

void fill_bernoulli(float* out, int64_t n, uint64_t seed, uint64_t offset, float p) {
  check_n("fill_bernoulli", n, out);
  check_probability("fill_bernoulli", p);
  for_each_block<4>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    for (int64_t k = 0; k < count; ++k) out[first + k] = uint32_to_bernoulli(w[k], p) ? 1.0f : 0.0f;
  });
}

void fill_bernoulli(uint8_t* out, int64_t n, uint64_t seed, uint64_t offset, float p) {
  check_n("fill_bernoulli", n, out);
  check_probability("fill_bernoulli", p);
  for_each_block<4>(n, seed, offset, [=](const uint32_t* w, int64_t first, int64_t count) {
    for (int64_t k = 0; k < count; ++k) out[first + k] = uint32_to_bernoulli(w[k], p) ? 1 : 0;
  });
}

namespace {

void check_target(const char* op, const Tensor& out, bool floating_only) {
  MANTISSA_CHECK(out.defined(), op, ": the output is an undefined tensor");
  MANTISSA_CHECK(out.is_contiguous(), op, ": the output must be contiguous (got shape ", shape_str(out.sizes()),
                 " with strides ", shape_str(out.strides()), ")");
  MANTISSA_CHECK(!floating_only || is_floating(out.dtype()), op, ": needs a floating-point output (got ", out.dtype(),
                 ")");
}

// The 32-bit stream is drawn in F32; F16/BF16 outputs get it through an F32 buffer rounded once.
template <typename Fill>
void fill_via_f32(const Tensor& out, const Fill& fill) {
  if (out.dtype() == DType::F32) {
    fill(out.data<float>());
    return;
  }
  Tensor f = empty(out.sizes(), DType::F32);
  fill(f.data<float>());
  copy(out, f);
}

}  // namespace

void fill_uniform(const Tensor& out, uint64_t seed, uint64_t offset, double lo, double hi) {
  check_target("fill_uniform", out, true);
  const bool dbl = out.dtype() == DType::F64;
  if (dbl) check_range("fill_uniform", lo, hi);
  else check_range("fill_uniform", static_cast<float>(lo), static_cast<float>(hi));
  MANTISSA_CUDA_DISPATCH(out, "fill_uniform", cuda::fill_uniform(out, seed, offset, lo, hi));
  const int64_t n = out.numel();
  if (dbl) {
    fill_uniform(out.data<double>(), n, seed, offset, lo, hi);
    return;
  }
  fill_via_f32(out, [&](float* p) {
    fill_uniform(p, n, seed, offset, static_cast<float>(lo), static_cast<float>(hi));
  });
}

void fill_normal(const Tensor& out, uint64_t seed, uint64_t offset, double mean, double std) {
  check_target("fill_normal", out, true);
  const bool dbl = out.dtype() == DType::F64;
  if (dbl) check_normal("fill_normal", mean, std);
  else check_normal("fill_normal", static_cast<float>(mean), static_cast<float>(std));
  MANTISSA_CUDA_DISPATCH(out, "fill_normal", cuda::fill_normal(out, seed, offset, mean, std));
  const int64_t n = out.numel();
  if (dbl) {
    fill_normal(out.data<double>(), n, seed, offset, mean, std);
    return;
  }
  fill_via_f32(out, [&](float* p) {
    fill_normal(p, n, seed, offset, static_cast<float>(mean), static_cast<float>(std));
  });
}

void fill_bernoulli(const Tensor& out, uint64_t seed, uint64_t offset, double p) {
  check_target("fill_bernoulli", out, false);
  check_probability("fill_bernoulli", static_cast<float>(p));
  MANTISSA_CUDA_DISPATCH(out, "fill_bernoulli", cuda::fill_bernoulli(out, seed, offset, p));
  const int64_t n = out.numel();
  if (out.dtype() == DType::U8) {
    fill_bernoulli(out.data<uint8_t>(), n, seed, offset, static_cast<float>(p));
    return;
  }
  fill_via_f32(out, [&](float* q) { fill_bernoulli(q, n, seed, offset, static_cast<float>(p)); });
}

}  // namespace mantissa::kernels
