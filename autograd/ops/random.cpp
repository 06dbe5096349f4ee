// Random factories: Philox streams drawn from a generator (the global one by default). F64
// draws in double; every other floating dtype draws in F32 and rounds once, so an F16 and an
// F32 tensor from the same (seed, offset) hold the same numbers up to that rounding. CPU and
// CUDA tensors draw the same bits from the same generator state (core/kernels/random.h).
#include "autograd/function.h"
#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/copy.h"
#include "core/kernels/random.h"
#include "core/philox.h"

namespace mantissa {

namespace {
enum class Dist { Uniform, Normal, Bernoulli };

// Reserves the draw's counter blocks (the same count on every device, so a seed gives one
// stream whatever the device) and fills t on its own device.
void fill_random(const Tensor& t, Dist dist, double a, double b, Generator* gen, const char* op) {
  MANTISSA_CHECK(is_floating(t.dtype()), op, ": needs a floating-point tensor (got ", t.dtype(),
                 "); draw floats and convert");
  Generator& g = gen ? *gen : default_generator();
  const int64_t n = t.numel();
  const bool dbl = t.dtype() == DType::F64;
  const GeneratorState st = g.reserve_state(philox_blocks_for(n, dbl));  // seed and offset under one lock
  // The fills write contiguous tensors; a strided t gets a contiguous twin copied in after.
  Tensor dst = t.is_contiguous() ? t : empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  switch (dist) {
    case Dist::Uniform: kernels::fill_uniform(dst, st.seed, st.offset, a, b); break;
    case Dist::Normal: kernels::fill_normal(dst, st.seed, st.offset, a, b); break;
    // Bernoulli draws the 32-bit stream for every dtype (F64 included): one mask for all of them.
    case Dist::Bernoulli: kernels::fill_bernoulli(dst, st.seed, st.offset, a); break;
  }
  if (!dst.is_same(t)) kernels::copy(t, dst);
}

Tensor make(const Shape& shape, TensorOptions options, Dist dist, double a, double b, Generator* gen, const char* op) {
  bool rg = options.requires_grad_;
  options.requires_grad_ = false;
  Tensor t = empty(shape, options);
  fill_random(t, dist, a, b, gen, op);
  if (rg) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions options, Generator* gen) {
  return make(shape, options, Dist::Uniform, 0.0, 1.0, gen, "rand");
}

Tensor randn(const Shape& shape, TensorOptions options, Generator* gen) {
  return make(shape, options, Dist::Normal, 0.0, 1.0, gen, "randn");
}

Tensor bernoulli(const Shape& shape, double p, TensorOptions options, Generator* gen) {
  MANTISSA_CHECK(p >= 0.0 && p <= 1.0, "bernoulli: probability ", p, " is outside [0, 1]");
  return make(shape, options, Dist::Bernoulli, p, 0.0, gen, "bernoulli");
}

Tensor& uniform_(Tensor& t, double lo, double hi, Generator* gen) {
  MANTISSA_CHECK(lo <= hi, "uniform_: lo ", lo, " must not exceed hi ", hi);
  autograd::check_inplace(t, "uniform_");
  fill_random(t, Dist::Uniform, lo, hi, gen, "uniform_");
  t.bump_version();
  return t;
}

Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  MANTISSA_CHECK(std >= 0.0, "normal_: std ", std, " must be non-negative");
  autograd::check_inplace(t, "normal_");
  fill_random(t, Dist::Normal, mean, std, gen, "normal_");
  t.bump_version();
  return t;
}

}  // namespace mantissa
