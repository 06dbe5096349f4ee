// CUDA kernels of the elementwise, random and index families against their CPU references, run
// from the same CPU values: every op per dtype, bit-exact where both devices evaluate the same
// scalar formulas (elementwise_math.h, philox.h), within the stated ulps where CUDA's libdevice
// replaces libm (log, tanh, pow, erfc, F64 exp) or a multiply-add may be fused differently;
// broadcast, transposed and misaligned operands, ragged sizes on the vectorized path, Philox
// streams identical across devices, and the index kernels' bounds scan and atomics.
// Every test skips, with the reason, when no CUDA device is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/error.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/elementwise.h"
#include "core/kernels/index.h"
#include "core/kernels/random.h"
#include "nn/init.h"

namespace mantissa {
namespace {

using kernels::BinaryGradOp;
using kernels::BinaryOp;
using kernels::CompareOp;
using kernels::UnaryGradOp;
using kernels::UnaryOp;

#define REQUIRE_CUDA()                                                                              \
  do {                                                                                              \
    if (kernels::cuda_device_count() == 0)                                                          \
      GTEST_SKIP() << "no usable CUDA device: " << kernels::cuda_unavailable_reason();              \
  } while (0)

const Device kGpu(DeviceType::CUDA, 0);
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const std::vector<DType> kAll = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I8,
                                 DType::U8,  DType::I32, DType::I64, DType::Bool};

bool in_set(DType t, DTypeSet s) { return (s & dtype_bit(t)) != 0; }

// ---- values ----------------------------------------------------------------------------------

enum class Values {
  General,      // N(0, 2) floats with 1 in 12 special (NaN, +-Inf, +-0, subnormal, +-1, huge); ints in [-60, 60]
  Positive,     // [0.05, 5) with 0, +Inf, NaN, -1, subnormal; ints in [1, 60]
  Exponent,     // float exponents in [-3, 3], some integral, with 0, 0.5, NaN, Inf
  IntExponent,  // small integer exponents, negative ones for signed types
  Unit,         // [-1, 1) without specials (mask-like and gradient inputs)
  SmallInt,     // integers in [-8, 8]: sums of a few of them are exact in every float dtype
};

double tiny_for(DType t) {
  switch (t) {
    case DType::F64: return 1e-310;
    case DType::F32: return 1e-40;
    case DType::F16: return 3e-6;
    default: return 1e-39;
  }
}

double huge_for(DType t) {
  switch (t) {
    case DType::F64: return 1e300;
    case DType::F16: return 60000.0;
    default: return 3e38;
  }
}

std::vector<double> make_values(Values kind, DType dt, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 2.0);
  std::vector<double> v(static_cast<size_t>(n));
  const bool floating = is_floating(dt);
  const bool is_unsigned = dt == DType::U8;
  for (auto& x : v) {
    const bool special = rng() % 12 == 0;
    const uint64_t pick = rng();
    if (dt == DType::Bool) {
      x = static_cast<double>(pick % 2);
      continue;
    }
    switch (kind) {
      case Values::General:
        if (!floating) {
          x = is_unsigned ? static_cast<double>(pick % 121) : static_cast<double>(static_cast<int64_t>(pick % 121) - 60);
        } else if (special) {
          const double s[] = {kNaN, kInf, -kInf, 0.0, -0.0, tiny_for(dt), -tiny_for(dt), 1.0, -1.0, huge_for(dt)};
          x = s[pick % 10];
        } else {
          x = normal(rng);
        }
        break;
      case Values::Positive:
        if (!floating) {
          x = static_cast<double>(1 + pick % 60);
        } else if (special) {
          const double s[] = {0.0, kInf, kNaN, -1.0, tiny_for(dt)};
          x = s[pick % 5];
        } else {
          x = 0.05 + 4.95 * unit(rng);
        }
        break;
      case Values::Exponent:
        if (special) {
          const double s[] = {0.0, 0.5, kNaN, kInf, -kInf};
          x = s[pick % 5];
        } else {
          x = pick % 3 == 0 ? static_cast<double>(static_cast<int64_t>(pick % 7) - 3) : -3.0 + 6.0 * unit(rng);
        }
        break;
      case Values::IntExponent:
        x = is_unsigned ? static_cast<double>(pick % 7) : static_cast<double>(static_cast<int64_t>(pick % 9) - 2);
        break;
      case Values::Unit:
        x = is_unsigned ? static_cast<double>(pick % 2) : -1.0 + 2.0 * unit(rng);
        break;
      case Values::SmallInt:
        x = is_unsigned ? static_cast<double>(pick % 9) : static_cast<double>(static_cast<int64_t>(pick % 17) - 8);
        break;
    }
  }
  return v;
}

// A CPU tensor of `shape` in dt holding make_values(...) (rounded once from F64 into dt).
Tensor make_tensor(Values kind, DType dt, const Shape& shape, uint64_t seed) {
  return from_vector(make_values(kind, dt, shape_numel(shape), seed), shape, TensorOptions(dt));
}

// ---- layouts: the same logical values seen through different geometries ------------------------

enum class Layout {
  Contiguous,  // [n], fresh (16-byte aligned) allocations: the vectorized path, ragged tail
  Misaligned,  // [n] = base[n + 1].narrow(0, 1, n), output too: unaligned, so the strided path
  Transposed,  // inputs [37, 19] = base[19, 37].t(), output contiguous
  Broadcast,   // inputs [5, 1, 7], [1, 6, 7], [5, 6, 1] into an output [5, 6, 7]
};
const Layout kLayouts[] = {Layout::Contiguous, Layout::Misaligned, Layout::Transposed, Layout::Broadcast};
constexpr int64_t kContiguousN = 4099;  // no vector width divides it
constexpr int64_t kMisalignedN = 1027;

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous: return "contiguous";
    case Layout::Misaligned: return "misaligned";
    case Layout::Transposed: return "transposed";
    case Layout::Broadcast: return "broadcast";
  }
  return "?";
}

// role: input position (0, 1, 2) or -1 for the output.
Shape base_shape(Layout l, int role) {
  switch (l) {
    case Layout::Contiguous: return {kContiguousN};
    case Layout::Misaligned: return {kMisalignedN + 1};
    case Layout::Transposed: return role < 0 ? Shape{37, 19} : Shape{19, 37};
    case Layout::Broadcast: {
      const Shape in[3] = {{5, 1, 7}, {1, 6, 7}, {5, 6, 1}};
      return role < 0 ? Shape{5, 6, 7} : in[role];
    }
  }
  return {};
}

Tensor view_of(const Tensor& base, Layout l, int role) {
  switch (l) {
    case Layout::Misaligned: return base.narrow(0, 1, base.size(0) - 1);
    case Layout::Transposed: return role < 0 ? base : base.t();
    default: return base;
  }
}

using KernelFn = std::function<void(const Tensor& out, const std::vector<Tensor>& in)>;

struct Outputs {
  Tensor cpu, cuda;  // both on the CPU, contiguous
};

// Runs fn on the CPU and on CUDA from the same CPU base tensors (one per input, shaped
// base_shape(l, k)) with an output of dtype out_dt; returns both results.
Outputs run_both(Layout l, DType out_dt, const std::vector<Tensor>& bases, const KernelFn& fn) {
  auto run = [&](const Device& d) {
    std::vector<Tensor> in;
    for (size_t k = 0; k < bases.size(); ++k) in.push_back(view_of(bases[k].to(d), l, static_cast<int>(k)));
    Tensor out = view_of(empty(base_shape(l, -1), TensorOptions(out_dt).device(d)), l, -1);
    fn(out, in);
    return out.to(kCPU).contiguous();
  };
  return {run(kCPU), run(kGpu)};
}

// ---- comparison --------------------------------------------------------------------------------

// Allowed distance in units in the last place of the result's dtype; 16-bit results get one
// tolerance (a last-bit difference in F32 can move a 16-bit rounding by one step).
struct Ulps {
  int f64 = 0, f32 = 0, half = 0;
};
constexpr Ulps kExact{};
// a*b + c formulas: either compiler may fuse the multiply-add, or not.
constexpr Ulps kFused{1, 1, 1};

int ulps_for(DType t, Ulps u) {
  switch (t) {
    case DType::F64: return u.f64;
    case DType::F32: return u.f32;
    default: return u.half;
  }
}

double eps_for(DType t) {
  switch (t) {
    case DType::F64: return 0x1p-52;
    case DType::F32: return 0x1p-23;
    case DType::F16: return 0x1p-10;
    default: return 0x1p-7;
  }
}

uint64_t bits_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F64: {
      uint64_t b;
      std::memcpy(&b, t.data<double>() + i, 8);
      return b;
    }
    case DType::F32: {
      uint32_t b;
      std::memcpy(&b, t.data<float>() + i, 4);
      return b;
    }
    case DType::F16: return t.data<Half>()[i].bits;
    case DType::BF16: return t.data<BFloat16>()[i].bits;
    default: return 0;
  }
}

int bit_width(DType t) { return static_cast<int>(dtype_size(t) * 8); }

// Sign-magnitude bits as a monotonic integer: neighbouring floats differ by 1, +0 and -0 by 0.
int64_t ordered(uint64_t bits, int width) {
  const uint64_t sign = uint64_t{1} << (width - 1);
  return (bits & sign) ? -static_cast<int64_t>(bits & (sign - 1)) : static_cast<int64_t>(bits);
}

// want (CPU) vs got (CUDA), both CPU contiguous of one dtype. Floats: NaN matches NaN; with a
// zero tolerance the bits must be equal (signed zeros included); otherwise within `tol` ulps, or
// within tol * eps absolutely (results that cancel near zero from O(1) terms).
void expect_same(const Tensor& want, const Tensor& got, Ulps tol, const std::string& what) {
  ASSERT_EQ(want.sizes(), got.sizes()) << what;
  ASSERT_EQ(want.dtype(), got.dtype()) << what;
  const DType dt = want.dtype();
  const int64_t n = want.numel();
  if (!is_floating(dt)) {
    if (std::memcmp(want.data_ptr(), got.data_ptr(), want.nbytes()) == 0) return;
    const auto a = to_vector<int64_t>(want), b = to_vector<int64_t>(got);
    for (int64_t i = 0; i < n; ++i) {
      if (a[i] != b[i]) {
        ADD_FAILURE() << what << ": element " << i << " is " << b[i] << " on CUDA, " << a[i] << " on the CPU";
        return;
      }
    }
    return;
  }
  const auto a = to_vector<double>(want), b = to_vector<double>(got);
  const int ulps = ulps_for(dt, tol);
  int failures = 0;
  for (int64_t i = 0; i < n && failures < 5; ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    const uint64_t wa = bits_at(want, i), wb = bits_at(got, i);
    if (wa == wb) continue;
    bool ok = false;
    if (ulps > 0 && !std::isnan(a[i]) && !std::isnan(b[i])) {
      const int64_t d = ordered(wa, bit_width(dt)) - ordered(wb, bit_width(dt));
      ok = (d <= ulps && d >= -ulps) || (std::isfinite(a[i]) && std::fabs(a[i] - b[i]) <= ulps * eps_for(dt));
    }
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << ": element " << i << " is " << b[i] << " (bits 0x" << std::hex << wb
                    << ") on CUDA, " << a[i] << " (bits 0x" << wa << std::dec << ") on the CPU; allowed "
                    << ulps << " ulp";
    }
  }
}

std::string label(const std::string& op, DType dt, Layout l) {
  return op + " " + dtype_name(dt) + " " + layout_name(l);
}

// ---- elementwise: forward ------------------------------------------------------------------------

struct BinaryCase {
  std::string name;
  BinaryOp op;
  Values a, b;
  DTypeSet dtypes;
  Ulps tol;
  double alpha = 1.0;
};

// Pow: CUDA's powf/pow are within 4/2 ulp of the exact result (CUDA math API tables), glibc's
// within 1; the distance between the two devices is bounded by the sum.
constexpr Ulps kPowUlps{3, 5, 1};

TEST(CudaElementwise, BinaryMatchesCpuEveryDtypeAndLayout) {
  REQUIRE_CUDA();
  const DTypeSet no_bool = kNumericTypes;
  const std::vector<BinaryCase> cases = {
      {"add", BinaryOp::Add, Values::General, Values::General, kAllTypes, kExact},
      {"add alpha", BinaryOp::Add, Values::General, Values::General, kFloatTypes, kFused, 2.5},
      {"add alpha int", BinaryOp::Add, Values::General, Values::General, kIntTypes, kExact, 3.0},
      {"sub", BinaryOp::Sub, Values::General, Values::General, no_bool, kExact},
      {"sub alpha", BinaryOp::Sub, Values::General, Values::General, kFloatTypes, kFused, -0.75},
      {"sub alpha int", BinaryOp::Sub, Values::General, Values::General, kIntTypes, kExact, -7.0},
      {"mul", BinaryOp::Mul, Values::General, Values::General, kAllTypes, kExact},
      {"div", BinaryOp::Div, Values::General, Values::General, kFloatTypes, kExact},
      {"pow", BinaryOp::Pow, Values::Positive, Values::Exponent, kFloatTypes, kPowUlps},
      {"pow negative base", BinaryOp::Pow, Values::General, Values::Exponent, kFloatTypes, kPowUlps},
      {"pow int", BinaryOp::Pow, Values::General, Values::IntExponent, kIntTypes, kExact},
      {"maximum", BinaryOp::Maximum, Values::General, Values::General, kAllTypes, kExact},
      {"minimum", BinaryOp::Minimum, Values::General, Values::General, kAllTypes, kExact},
  };
  uint64_t seed = 1;
  for (const auto& c : cases) {
    for (DType dt : kAll) {
      if (!in_set(dt, c.dtypes)) continue;
      for (Layout l : kLayouts) {
        Tensor a = make_tensor(c.a, dt, base_shape(l, 0), seed++);
        Tensor b = make_tensor(c.b, dt, base_shape(l, 1), seed++);
        if (c.op == BinaryOp::Maximum || c.op == BinaryOp::Minimum) {
          // Ties (and NaN against NaN) on every third element of same-shaped operands.
          if (a.sizes() == b.sizes()) {
            Tensor af = a.reshape({a.numel()}), bf = b.reshape({b.numel()});
            for (int64_t i = 0; i < a.numel(); i += 3) bf.narrow(0, i, 1).copy_(af.narrow(0, i, 1));
          }
        }
        const Outputs r = run_both(l, dt, {a, b}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::binary(c.op, out, in[0], in[1], c.alpha);
        });
        expect_same(r.cpu, r.cuda, c.tol, label(c.name, dt, l));
      }
    }
  }
}

TEST(CudaElementwise, BinaryScalarMatchesCpu) {
  REQUIRE_CUDA();
  struct ScalarCase {
    BinaryOp op;
    Values a;
    DTypeSet dtypes;
    Ulps tol;
  };
  const std::vector<ScalarCase> cases = {
      {BinaryOp::Add, Values::General, kAllTypes, kExact},      {BinaryOp::Sub, Values::General, kNumericTypes, kExact},
      {BinaryOp::Mul, Values::General, kAllTypes, kExact},      {BinaryOp::Div, Values::General, kFloatTypes, kExact},
      {BinaryOp::Pow, Values::Positive, kFloatTypes, kPowUlps}, {BinaryOp::Pow, Values::IntExponent, kIntTypes, kExact},
      {BinaryOp::Maximum, Values::General, kAllTypes, kExact},  {BinaryOp::Minimum, Values::General, kAllTypes, kExact},
  };
  uint64_t seed = 100;
  for (const auto& c : cases) {
    for (DType dt : kAll) {
      if (!in_set(dt, c.dtypes)) continue;
      // Integers take integral scalars (what the op layer passes them); Bool takes 0 and 1.
      const std::vector<double> scalars = dt == DType::Bool     ? std::vector<double>{0.0, 1.0}
                                          : !is_floating(dt)     ? std::vector<double>{3.0, -2.0}
                                                                 : std::vector<double>{2.5, -0.75, 0.1, kNaN};
      for (double s : scalars) {
        for (bool first : {false, true}) {
          for (Layout l : {Layout::Contiguous, Layout::Misaligned, Layout::Transposed}) {
            Tensor a = make_tensor(c.a, dt, base_shape(l, 0), seed++);
            const Outputs r = run_both(l, dt, {a}, [&](const Tensor& out, const std::vector<Tensor>& in) {
              kernels::binary_scalar(c.op, out, in[0], s, first);
            });
            expect_same(r.cpu, r.cuda, c.tol,
                        label(std::string(kernels::binary_op_name(c.op)) + " scalar " + std::to_string(s) +
                                  (first ? " first" : ""),
                              dt, l));
          }
        }
      }
    }
  }
}

TEST(CudaElementwise, CompareAndWhereMatchCpu) {
  REQUIRE_CUDA();
  const CompareOp ops[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
  uint64_t seed = 200;
  for (DType dt : kAll) {
    for (Layout l : kLayouts) {
      Tensor a = make_tensor(Values::General, dt, base_shape(l, 0), seed++);
      Tensor b = make_tensor(Values::General, dt, base_shape(l, 1), seed++);
      if (a.sizes() == b.sizes()) {
        Tensor af = a.reshape({a.numel()}), bf = b.reshape({b.numel()});
        for (int64_t i = 0; i < a.numel(); i += 4) bf.narrow(0, i, 1).copy_(af.narrow(0, i, 1));
      }
      for (CompareOp op : ops) {
        const Outputs r = run_both(l, DType::Bool, {a, b}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::compare(op, out, in[0], in[1]);
        });
        expect_same(r.cpu, r.cuda, kExact, label("compare " + std::to_string(static_cast<int>(op)), dt, l));
      }
      Tensor cond = make_tensor(Values::General, DType::Bool, base_shape(l, 0), seed++);
      Tensor x = make_tensor(Values::General, dt, base_shape(l, 1), seed++);
      Tensor y = make_tensor(Values::General, dt, base_shape(l, 2), seed++);
      const Outputs w = run_both(l, dt, {cond, x, y}, [&](const Tensor& out, const std::vector<Tensor>& in) {
        kernels::where(out, in[0], in[1], in[2]);
      });
      expect_same(w.cpu, w.cuda, kExact, label("where", dt, l));
    }
  }
}

TEST(CudaElementwise, CompareScalarRoundsTheScalarToTheDtypeLikeTheCpu) {
  REQUIRE_CUDA();
  const CompareOp ops[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt, CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
  uint64_t seed = 300;
  for (DType dt : kAll) {
    const std::vector<double> scalars = is_floating(dt) ? std::vector<double>{0.1, 1.0, -kInf, kNaN, 1.0 / 3.0}
                                                        : std::vector<double>{3.0, 2.5, -0.5, 1e19};
    for (double s : scalars) {
      // The first values are the scalar itself rounded to dt: equal to s once s is rounded too.
      std::vector<double> v = make_values(Values::General, dt, 257, seed++);
      v[0] = s;
      v[1] = -s;
      Tensor a = from_vector(v, {257}, TensorOptions(dt));
      Tensor out_cpu = empty({257}, DType::Bool), out_gpu = empty({257}, TensorOptions(DType::Bool).device(kGpu));
      for (CompareOp op : ops) {
        kernels::compare_scalar(op, out_cpu, a, s);
        kernels::compare_scalar(op, out_gpu, a.to(kGpu), s);
        expect_same(out_cpu, out_gpu.to(kCPU), kExact,
                    std::string("compare_scalar ") + std::to_string(static_cast<int>(op)) + " " + dtype_name(dt) +
                        " s=" + std::to_string(s));
        if (op == CompareOp::Eq && is_floating(dt) && !std::isnan(s)) {
          EXPECT_TRUE(to_vector<int64_t>(out_gpu)[0]) << dtype_name(dt) << " s=" << s;
        }
      }
    }
  }
}

struct UnaryCase {
  UnaryOp op;
  Values x;
  DTypeSet dtypes;
  Ulps tol;
};

// Tolerances of the ops whose CUDA code calls libdevice instead of glibc (bounds from the CUDA
// math API tables plus glibc's own error): log 1 ulp; tanh 2 (F32) / 1 (F64); erfc 4 / 5.
// exp, sigmoid and silu in F32 (and so F16/BF16) run math::exp_f32 on both devices: exact.
constexpr Ulps kLogUlps{2, 2, 1};
constexpr Ulps kTanhUlps{3, 4, 1};
constexpr Ulps kErfcUlps{8, 8, 1};
constexpr Ulps kExpF64Ulps{2, 0, 0};

TEST(CudaElementwise, UnaryMatchesCpuEveryDtypeAndLayout) {
  REQUIRE_CUDA();
  const std::vector<UnaryCase> cases = {
      {UnaryOp::Neg, Values::General, kNumericTypes, kExact},
      {UnaryOp::Abs, Values::General, kNumericTypes, kExact},
      {UnaryOp::Relu, Values::General, kNumericTypes, kExact},
      {UnaryOp::Exp, Values::General, kFloatTypes, kExpF64Ulps},
      {UnaryOp::Log, Values::Positive, kFloatTypes, kLogUlps},
      {UnaryOp::Sqrt, Values::Positive, kFloatTypes, kExact},
      {UnaryOp::Rsqrt, Values::Positive, kFloatTypes, kExact},
      {UnaryOp::Gelu, Values::General, kFloatTypes, kErfcUlps},
      {UnaryOp::GeluTanh, Values::General, kFloatTypes, kTanhUlps},
      {UnaryOp::Sigmoid, Values::General, kFloatTypes, kExpF64Ulps},
      {UnaryOp::Tanh, Values::General, kFloatTypes, kTanhUlps},
      {UnaryOp::Silu, Values::General, kFloatTypes, kExpF64Ulps},
  };
  uint64_t seed = 400;
  for (const auto& c : cases) {
    for (DType dt : kAll) {
      if (!in_set(dt, c.dtypes)) continue;
      for (Layout l : kLayouts) {
        Tensor x = make_tensor(c.x, dt, base_shape(l, 0), seed++);
        const Outputs r = run_both(l, dt, {x}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::unary(c.op, out, in[0]);
        });
        expect_same(r.cpu, r.cuda, c.tol, label(kernels::unary_op_name(c.op) + std::string(c.op == UnaryOp::GeluTanh ? " tanh" : ""), dt, l));
      }
    }
  }
}

TEST(CudaElementwise, PowScalarAndClampMatchCpu) {
  REQUIRE_CUDA();
  uint64_t seed = 500;
  for (DType dt : kAll) {
    if (!in_set(dt, kNumericTypes)) continue;
    const bool fl = is_floating(dt);
    const std::vector<double> exps = fl ? std::vector<double>{2.0, 3.0, 0.5, -1.5, 0.0} : std::vector<double>{2.0, 3.0, 0.0, -1.0};
    for (double p : exps) {
      for (Layout l : {Layout::Contiguous, Layout::Misaligned, Layout::Transposed}) {
        Tensor x = make_tensor(fl && p != std::trunc(p) ? Values::Positive : Values::General, dt, base_shape(l, 0), seed++);
        const Outputs r = run_both(l, dt, {x}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::pow_scalar(out, in[0], p);
        });
        // x^2 is x*x on both devices; other exponents go through pow.
        expect_same(r.cpu, r.cuda, (!fl || p == 2.0) ? kExact : kPowUlps, label("pow " + std::to_string(p), dt, l));
      }
    }
    struct Bounds {
      double lo, hi;
    };
    const std::vector<Bounds> bounds = fl ? std::vector<Bounds>{{-1.0, 2.0}, {-kInf, 0.5}, {0.5, kInf}, {2.0, -1.0}}
                                          : std::vector<Bounds>{{-2.5, 7.2}, {-1e30, 1e30}, {5.0, 3.0}, {0.0, 0.0}};
    for (const Bounds& b : bounds) {
      for (Layout l : {Layout::Contiguous, Layout::Misaligned, Layout::Transposed}) {
        Tensor x = make_tensor(Values::General, dt, base_shape(l, 0), seed++);
        const Outputs r = run_both(l, dt, {x}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::clamp(out, in[0], b.lo, b.hi);
        });
        expect_same(r.cpu, r.cuda, kExact, label("clamp [" + std::to_string(b.lo) + ", " + std::to_string(b.hi) + "]", dt, l));
      }
    }
  }
}

// ---- elementwise: backward -------------------------------------------------------------------

TEST(CudaElementwise, BinaryBackwardMatchesCpu) {
  REQUIRE_CUDA();
  struct Case {
    BinaryGradOp op;
    Values a, b;
    Ulps tol;
  };
  const std::vector<Case> cases = {
      {BinaryGradOp::DivOther, Values::General, Values::General, kExact},
      {BinaryGradOp::PowSelf, Values::Positive, Values::Exponent, kPowUlps},
      {BinaryGradOp::PowExponent, Values::Positive, Values::Exponent, Ulps{4, 6, 1}},
      {BinaryGradOp::MaximumSelf, Values::General, Values::General, kExact},
      {BinaryGradOp::MaximumOther, Values::General, Values::General, kExact},
      {BinaryGradOp::MinimumSelf, Values::General, Values::General, kExact},
      {BinaryGradOp::MinimumOther, Values::General, Values::General, kExact},
  };
  uint64_t seed = 600;
  for (const auto& c : cases) {
    for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
      for (Layout l : kLayouts) {
        Tensor g = make_tensor(Values::General, dt, base_shape(l, 0), seed++);
        Tensor a = make_tensor(c.a, dt, base_shape(l, 1), seed++);
        Tensor b = make_tensor(c.b, dt, base_shape(l, 2), seed++);
        if (a.sizes() == b.sizes()) {
          Tensor af = a.reshape({a.numel()}), bf = b.reshape({b.numel()});
          for (int64_t i = 0; i < a.numel(); i += 3) bf.narrow(0, i, 1).copy_(af.narrow(0, i, 1));
        }
        const Outputs r = run_both(l, dt, {g, a, b}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::binary_backward(c.op, out, in[0], in[1], in[2]);
        });
        expect_same(r.cpu, r.cuda, c.tol, label("binary backward " + std::to_string(static_cast<int>(c.op)), dt, l));
      }
    }
  }
}

TEST(CudaElementwise, UnaryAndClampBackwardMatchCpu) {
  REQUIRE_CUDA();
  struct Case {
    UnaryGradOp op;
    Values saved;
    Ulps tol;
    double p = 0.0;
  };
  const std::vector<Case> cases = {
      {UnaryGradOp::Exp, Values::General, kExact},
      {UnaryGradOp::Log, Values::Positive, kExact},
      {UnaryGradOp::Sqrt, Values::Positive, kExact},
      {UnaryGradOp::Rsqrt, Values::Positive, kExact},
      {UnaryGradOp::Abs, Values::General, kExact},
      {UnaryGradOp::Relu, Values::General, kExact},
      {UnaryGradOp::Gelu, Values::General, kErfcUlps},
      {UnaryGradOp::GeluTanh, Values::General, Ulps{4, 6, 1}},
      {UnaryGradOp::Sigmoid, Values::Unit, kExact},
      {UnaryGradOp::Tanh, Values::Unit, kFused},
      {UnaryGradOp::Silu, Values::General, Ulps{2, 2, 1}},
      {UnaryGradOp::PowScalar, Values::General, kExact, 0.0},
      {UnaryGradOp::PowScalar, Values::General, kExact, 2.0},
      {UnaryGradOp::PowScalar, Values::Positive, kPowUlps, 3.0},
      {UnaryGradOp::PowScalar, Values::Positive, kPowUlps, 0.5},
  };
  uint64_t seed = 700;
  for (const auto& c : cases) {
    for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
      for (Layout l : kLayouts) {
        Tensor g = make_tensor(Values::General, dt, base_shape(l, 0), seed++);
        Tensor s = make_tensor(c.saved, dt, base_shape(l, 1), seed++);
        const Outputs r = run_both(l, dt, {g, s}, [&](const Tensor& out, const std::vector<Tensor>& in) {
          kernels::unary_backward(c.op, out, in[0], in[1], c.p);
        });
        expect_same(r.cpu, r.cuda, c.tol,
                    label("unary backward " + std::to_string(static_cast<int>(c.op)) + " p=" + std::to_string(c.p), dt, l));
      }
    }
  }
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    for (Layout l : kLayouts) {
      Tensor g = make_tensor(Values::General, dt, base_shape(l, 0), seed++);
      Tensor x = make_tensor(Values::General, dt, base_shape(l, 1), seed++);  // holds +-1 exactly: the inclusive ends
      const Outputs r = run_both(l, dt, {g, x}, [&](const Tensor& out, const std::vector<Tensor>& in) {
        kernels::clamp_backward(out, in[0], in[1], -1.0, 1.0);
      });
      expect_same(r.cpu, r.cuda, kExact, label("clamp backward", dt, l));
    }
  }
}

// Sizes around every vector width (16 bytes: 16 U8, 8 F16, 4 F32, 2 F64 per thread) and one
// large enough for many blocks, contiguous and offset by one element.
TEST(CudaElementwise, RaggedSizesOnTheVectorizedPath) {
  REQUIRE_CUDA();
  std::vector<int64_t> sizes;
  for (int64_t n = 1; n <= 33; ++n) sizes.push_back(n);
  sizes.push_back(1000003);
  uint64_t seed = 800;
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::U8, DType::I64}) {
    for (int64_t n : sizes) {
      for (int64_t shift : {0, 1}) {
        Tensor a = make_tensor(Values::General, dt, {n + shift}, seed++);
        Tensor b = make_tensor(Values::General, dt, {n + shift}, seed++);
        auto run = [&](const Device& d) {
          Tensor x = a.to(d).narrow(0, shift, n), y = b.to(d).narrow(0, shift, n);
          Tensor sum = empty({n}, TensorOptions(dt).device(d)), rel = empty({n}, TensorOptions(dt).device(d));
          Tensor lt = empty({n}, TensorOptions(DType::Bool).device(d));
          kernels::binary(BinaryOp::Add, sum, x, y);
          kernels::unary(UnaryOp::Relu, rel, x);
          kernels::compare(CompareOp::Lt, lt, x, y);
          return std::vector<Tensor>{sum.to(kCPU), rel.to(kCPU), lt.to(kCPU)};
        };
        const auto want = run(kCPU), got = run(kGpu);
        const std::string what = std::string(dtype_name(dt)) + " n=" + std::to_string(n) + " shift=" + std::to_string(shift);
        expect_same(want[0], got[0], kExact, "add " + what);
        expect_same(want[1], got[1], kExact, "relu " + what);
        expect_same(want[2], got[2], kExact, "lt " + what);
      }
    }
  }
}

TEST(CudaElementwise, DeviceMismatchIsAnError) {
  REQUIRE_CUDA();
  Tensor cpu = ones({4});
  Tensor gpu = ones({4}, TensorOptions().device(kGpu));
  Tensor out_cpu = empty({4}), out_gpu = empty({4}, TensorOptions().device(kGpu));
  EXPECT_THROW(kernels::binary(BinaryOp::Add, out_cpu, cpu, gpu), Error);
  EXPECT_THROW(kernels::binary(BinaryOp::Add, out_gpu, cpu, gpu), Error);
  EXPECT_THROW(kernels::unary(UnaryOp::Exp, out_cpu, gpu), Error);
  EXPECT_THROW(kernels::where(out_gpu, empty({4}, DType::Bool), gpu, gpu), Error);
  try {
    kernels::binary(BinaryOp::Mul, out_cpu, gpu, cpu);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
}

// The op layer on CUDA tensors: forward and backward of a small graph, bit-equal to the CPU
// (every step is one correctly rounded operation or an exact F32 formula on both devices).
TEST(CudaElementwise, AutogradOpsRunOnCuda) {
  REQUIRE_CUDA();
  Tensor a0 = make_tensor(Values::Unit, DType::F32, {257}, 900);
  Tensor b0 = make_tensor(Values::Unit, DType::F32, {257}, 901);
  auto run = [&](const Device& d) {
    Tensor a = a0.to(d).detach(), b = b0.to(d).detach();
    a.requires_grad_(true);
    b.requires_grad_(true);
    Tensor z = add(mul(maximum(a, b), sigmoid(a)), 2.5);
    z.backward(ones_like(z));
    return std::vector<Tensor>{z.detach().to(kCPU), a.grad().to(kCPU), b.grad().to(kCPU)};
  };
  const auto want = run(kCPU), got = run(kGpu);
  expect_same(want[0], got[0], kExact, "z");
  expect_same(want[1], got[1], kExact, "dz/da");
  expect_same(want[2], got[2], kExact, "dz/db");
}

// ---- random ------------------------------------------------------------------------------------

TEST(CudaRandom, TensorFillsMatchCpuBitForBit) {
  REQUIRE_CUDA();
  struct State {
    uint64_t seed, offset;
  };
  const State states[] = {{0, 0}, {0xdecafbadull << 20, (uint64_t{1} << 32) - 3}, {kDefaultSeed, 12345}};
  for (const State st : states) {
    for (int64_t n : {1, 3, 4, 5, 37, 4096, 1000003}) {
      for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
        for (int64_t shift : {0, 1}) {  // a fresh buffer, and one element into one (unaligned)
          auto draw = [&](const Device& d, int which) {
            Tensor t = empty({n + shift}, TensorOptions(dt).device(d)).narrow(0, shift, n);
            if (which == 0) kernels::fill_uniform(t, st.seed, st.offset, -2.0, 3.0);
            else kernels::fill_normal(t, st.seed, st.offset, 1.0, 2.0);
            return t.to(kCPU);
          };
          const std::string what = std::string(dtype_name(dt)) + " n=" + std::to_string(n) +
                                   " offset=" + std::to_string(st.offset) + " shift=" + std::to_string(shift);
          expect_same(draw(kCPU, 0), draw(kGpu, 0), kExact, "uniform " + what);
          expect_same(draw(kCPU, 1), draw(kGpu, 1), kExact, "normal " + what);
        }
      }
      for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16, DType::U8, DType::Bool, DType::I32}) {
        for (double p : {0.0, 0.3, 1.0}) {
          auto draw = [&](const Device& d) {
            Tensor t = empty({n}, TensorOptions(dt).device(d));
            kernels::fill_bernoulli(t, st.seed, st.offset, p);
            return t.to(kCPU);
          };
          expect_same(draw(kCPU), draw(kGpu), kExact,
                      "bernoulli p=" + std::to_string(p) + " " + dtype_name(dt) + " n=" + std::to_string(n));
        }
      }
    }
  }
}

TEST(CudaRandom, FactoriesAndInitDrawTheSameStreamOnBothDevices) {
  REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    Generator gc(2024), gg(2024);
    auto both = [&](const std::function<Tensor(const Device&, Generator*)>& f, const std::string& what) {
      Tensor want = f(kCPU, &gc).to(kCPU), got = f(kGpu, &gg).to(kCPU);
      expect_same(want, got, kExact, what + " " + dtype_name(dt));
      EXPECT_EQ(gc.offset(), gg.offset()) << what << " " << dtype_name(dt);
    };
    both([&](const Device& d, Generator* g) { return rand({33, 7}, TensorOptions(dt).device(d), g); }, "rand");
    both([&](const Device& d, Generator* g) { return randn({5, 13}, TensorOptions(dt).device(d), g); }, "randn");
    both([&](const Device& d, Generator* g) { return bernoulli({101}, 0.25, TensorOptions(dt).device(d), g); },
         "bernoulli");
    both(
        [&](const Device& d, Generator* g) {
          Tensor t = zeros({6, 9}, TensorOptions(dt).device(d));
          Tensor v = t.t();  // a strided target: drawn contiguous, then copied in
          uniform_(v, -3.0, 0.5, g);
          return t;
        },
        "uniform_ strided");
    both(
        [&](const Device& d, Generator* g) {
          Tensor t = empty({64, 32}, TensorOptions(dt).device(d));
          nn::init::kaiming_uniform_(t, std::sqrt(5.0), "fan_in", "leaky_relu", g);
          return t;
        },
        "kaiming_uniform_");
    both(
        [&](const Device& d, Generator* g) {
          Tensor t = empty({16, 8, 3, 3}, TensorOptions(dt).device(d));
          nn::init::xavier_normal_(t, 1.0, g);
          return t;
        },
        "xavier_normal_");
  }
  // The default generator: one seed, one initialization, whatever the device.
  manual_seed(77);
  Tensor want = randn({1000});
  manual_seed(77);
  Tensor got = randn({1000}, TensorOptions().device(kGpu));
  expect_same(want, got.to(kCPU), kExact, "randn default generator");
  manual_seed(kDefaultSeed);
}

TEST(CudaRandom, DropoutMaskAndApplyMatchCpu) {
  REQUIRE_CUDA();
  uint64_t seed = 1000;
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    const double p = 0.2, scale = 1.0 / (1.0 - p);
    Tensor x = make_tensor(Values::General, dt, {7, 129}, seed++);
    Generator gc(5), gg(5);
    // dropout's mask: bernoulli(1 - p) in x's dtype from the generator.
    Tensor mask_c = bernoulli(x.sizes(), 1.0 - p, TensorOptions(dt), &gc);
    Tensor mask_g = bernoulli(x.sizes(), 1.0 - p, TensorOptions(dt).device(kGpu), &gg);
    expect_same(mask_c, mask_g.to(kCPU), kExact, std::string("dropout mask ") + dtype_name(dt));
    Tensor yc = empty(x.sizes(), dt), yg = empty(x.sizes(), TensorOptions(dt).device(kGpu));
    kernels::dropout_apply(yc, x, mask_c, scale);
    kernels::dropout_apply(yg, x.to(kGpu), mask_g, scale);
    expect_same(yc, yg.to(kCPU), kExact, std::string("dropout apply ") + dtype_name(dt));
  }
}

// ---- index ---------------------------------------------------------------------------------------

TEST(CudaIndex, FindOutOfRangeReportsTheCpusFirstValue) {
  REQUIRE_CUDA();
  for (DType it : {DType::I64, DType::I32}) {
    // Row-major order of the transposed view decides which bad value comes first.
    Tensor base = from_vector(std::vector<int64_t>{3, 0, 9, -1, 12, 2}, {2, 3}, TensorOptions(it));
    Tensor view = base.t();
    const auto want = kernels::find_out_of_range(view, 9);
    const auto got = kernels::find_out_of_range(base.to(kGpu).t(), 9);
    ASSERT_TRUE(want.has_value());
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, *want);
    EXPECT_FALSE(kernels::find_out_of_range(base.to(kGpu), 100).has_value());
    EXPECT_FALSE(kernels::find_out_of_range(empty({0}, TensorOptions(it).device(kGpu)), 1).has_value());

    std::vector<int64_t> big(1 << 20);
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<int64_t>(i % 1000);
    big[700001] = -5;
    big[5] = 1000;
    big[900000] = 5000;
    Tensor t = from_vector(big, {1 << 20}, TensorOptions(it)).to(kGpu);
    const auto first = kernels::find_out_of_range(t, 1000);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(*first, 1000);
    EXPECT_FALSE(kernels::find_out_of_range(t.narrow(0, 6, 700000), 1000).has_value());
  }
}

TEST(CudaIndex, IndexSelectAndAddRowsMatchCpu) {
  REQUIRE_CUDA();
  const int64_t outer = 3, n = 10, inner = 5;
  // Rows with repeats, read through a stride-2 view of the index.
  std::vector<int64_t> rows = {4, 0, 9, 4, 4, 7, 1};
  std::vector<int64_t> spaced;
  for (int64_t r : rows) {
    spaced.push_back(r);
    spaced.push_back(-1);
  }
  const int64_t k = static_cast<int64_t>(rows.size());
  uint64_t seed = 1100;
  for (DType it : {DType::I64, DType::I32}) {
    auto index_on = [&](const Device& d) {
      return from_vector(spaced, {2 * k}, TensorOptions(it)).to(d).slice(0, 0, 2 * k, 2);
    };
    for (DType dt : kAll) {
      Tensor x = make_tensor(Values::General, dt, {outer, n, inner}, seed++);
      auto select = [&](const Device& d) {
        Tensor out = empty({outer, k, inner}, TensorOptions(dt).device(d));
        kernels::index_select(out, x.to(d), outer, n, inner, index_on(d));
        return out.to(kCPU);
      };
      expect_same(select(kCPU), select(kGpu), kExact, std::string("index_select ") + dtype_name(dt));
      if (!is_floating(dt)) continue;
      // Small integers: every sum over repeated rows is exact, whatever order the atomics add in.
      Tensor g = make_tensor(Values::SmallInt, dt, {outer, k, inner}, seed++);
      const DType acc = is_low_precision(dt) ? DType::F32 : dt;
      auto add_rows = [&](const Device& d) {
        Tensor grad = zeros({outer, n, inner}, TensorOptions(acc).device(d));
        kernels::index_add_rows(grad, g.to(d), outer, n, inner, index_on(d));
        return grad.to(kCPU);
      };
      expect_same(add_rows(kCPU), add_rows(kGpu), kExact, std::string("index_add_rows ") + dtype_name(dt));
    }
  }
}

TEST(CudaIndex, GatherAndBackwardMatchCpu) {
  REQUIRE_CUDA();
  uint64_t seed = 1200;
  const Shape xshape = {4, 6, 5};
  for (int64_t dim = 0; dim < 3; ++dim) {
    // Index: [3, 4, 4] except along dim, where it is 7 long (repeats); stored transposed (strided).
    Shape ishape = {3, 4, 4};
    ishape[dim] = 7;
    std::mt19937_64 rng(seed++);
    std::vector<int64_t> iv(static_cast<size_t>(shape_numel(ishape)));
    for (auto& v : iv) v = static_cast<int64_t>(rng() % static_cast<uint64_t>(xshape[dim]));
    // Base stored with dims 0 and 2 swapped, viewed back: a non-contiguous index.
    Shape ibase = {ishape[2], ishape[1], ishape[0]};
    for (DType it : {DType::I64, DType::I32}) {
      Tensor ib = from_vector(iv, ibase, TensorOptions(it));
      for (DType dt : kAll) {
        // x stored [5, 6, 4] and permuted to [4, 6, 5]: strided too.
        Tensor xb = make_tensor(Values::General, dt, {5, 6, 4}, seed++);
        auto gather_on = [&](const Device& d) {
          Tensor index = ib.to(d).permute({2, 1, 0});
          Tensor out = empty(index.sizes(), TensorOptions(dt).device(d));
          kernels::gather(out, xb.to(d).permute({2, 1, 0}), dim, index);
          return out.to(kCPU);
        };
        expect_same(gather_on(kCPU), gather_on(kGpu), kExact,
                    "gather dim " + std::to_string(dim) + " " + dtype_name(dt) + " " + dtype_name(it));
        if (!is_floating(dt)) continue;
        Tensor g = make_tensor(Values::SmallInt, dt, ishape, seed++);
        const DType acc = is_low_precision(dt) ? DType::F32 : dt;
        auto backward_on = [&](const Device& d) {
          Tensor grad = zeros(xshape, TensorOptions(acc).device(d));
          kernels::gather_backward(grad, g.to(d), dim, ib.to(d).permute({2, 1, 0}));
          return grad.to(kCPU);
        };
        expect_same(backward_on(kCPU), backward_on(kGpu), kExact,
                    "gather backward dim " + std::to_string(dim) + " " + dtype_name(dt) + " " + dtype_name(it));
      }
    }
  }
}

}  // namespace
}  // namespace mantissa
