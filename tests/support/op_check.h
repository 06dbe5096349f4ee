// Table-driven op checks: one OpRow per case of an op. check_row() compares the forward in
// F64 against a plain reference, runs gradcheck in F64 (with non-contiguous inputs where the
// row asks), and compares every lower dtype's forward and gradients against F64 computed on
// the same (rounded) inputs; check_row_on_device() runs the row on another device (CUDA) and
// compares it with the CPU dtype by dtype. Every tolerance is defined here and nowhere else.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/op_id.h"
#include "autograd/ops.h"
#include "core/generator.h"

namespace mantissa::testing {

struct Tolerance {
  double rtol;
  double atol;
};

// Per-dtype tolerances (NUMERICS.md): PyTorch's assert_close defaults for F32/F64; for the
// 16-bit types the absolute part is as large as the relative one, since a result rounded
// once from F32 has error ~u relative to the operands' scale, not the result's.
inline Tolerance tolerance(DType t) {
  switch (t) {
    case DType::F64: return {1e-7, 1e-7};
    case DType::F32: return {1.3e-6, 1e-5};
    case DType::F16: return {1e-3, 1e-3};
    case DType::BF16: return {1.6e-2, 1.6e-2};
    default: return {0, 0};
  }
}

// Gradients pass through more roundings than the forward (the backward's own products and
// sums, in the same dtype), so their comparisons allow this multiple of the forward tolerance.
inline constexpr double kGradToleranceFactor = 4.0;

// A device run against the CPU run in the same dtype. F16/BF16/F32: both sides carry their own
// rounding error against the exact result, each bounded by tolerance(), so their difference
// may reach twice that. F64 is held to the reference check's 1e-10: a device kernel that
// computes a double op through float (error ~1e-7) must fail, and tolerance(F64) would let
// it pass.
inline Tolerance device_tolerance(DType t) {
  if (t == DType::F64) return {1e-10, 1e-10};
  const Tolerance tol = tolerance(t);
  return {2 * tol.rtol, 2 * tol.atol};
}

enum class Gen {
  Normal,        // N(0, 1)
  Positive,      // uniform in [0.5, 2)
  Unit,          // uniform in (-1, 1)
  AwayFromZero,  // |x| in [0.5, 2), random sign: keeps kinks (relu, abs) away from eps
  Index,         // integers in [0, hi)
  Bool,          // Bernoulli(0.5)
  Distinct,      // a permutation of spaced values: no ties (max, sort-like ops)
};

struct Input {
  Shape shape;
  Gen gen = Gen::Normal;
  bool grad = true;             // floating inputs: checked by gradcheck and the dtype sweep
  bool non_contiguous = false;  // hand the op a transposed/strided view of the same values
  int64_t hi = 0;               // Gen::Index upper bound
  DType int_dtype = DType::I64;
};

// The op under test, called with the row's inputs. The same fn runs on the CPU and on the
// device (check_row_on_device): a fn that creates tensors of its own (running statistics, a
// round trip through another device) creates them on device_of(inputs).
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// The device a row's inputs live on (all of them; the CPU for a row without inputs).
Device device_of(const std::vector<Tensor>& inputs);

struct OpRow {
  OpId op;                      // which ops.def entry the row covers
  std::string name;             // "add/broadcast"
  std::vector<Input> inputs;
  OpFn fn;                      // the op under test
  OpFn reference;               // plain F64 reference on CPU (may be empty: gradcheck only)
  bool differentiable = true;
  DTypeSet dtypes = kFloatTypes;  // floating dtypes to run the forward in
  double tol_scale = 1.0;         // widen tolerances for long reductions
  bool check_lower_grads = true;  // compare F32/F16/BF16 gradients with F64 ones
};

// Builds the inputs of a row in F64 (floating) or their integer dtype, deterministically.
std::vector<Tensor> make_inputs(const OpRow& row, uint64_t seed);
// Casts floating inputs to dtype (integers untouched), as leaves with requires_grad per row,
// on `device`. The cast happens on the CPU and the values are then copied, so every device
// receives bit-identical operands; a non-contiguous input is a strided view on that device.
std::vector<Tensor> cast_inputs(const OpRow& row, const std::vector<Tensor>& inputs, DType dtype,
                                const Device& device = kCPU);

// EXPECT-style closeness check; returns false (and records a failure naming `what`) on mismatch.
bool expect_close(const Tensor& actual, const Tensor& expected, Tolerance tol, const std::string& what);

void check_row(const OpRow& row);

// Runs the row on `device` in every dtype of row.dtypes (F64 included) with the inputs
// check_row() uses, and compares the forward output (dtype, device, values) and every input
// gradient (same cotangent on both sides) with the CPU run in the same dtype, within
// device_tolerance(); integer and boolean outputs must match exactly. An exception on either
// side is recorded as a failure naming the row, device and dtype, and the next dtype runs.
void check_row_on_device(const OpRow& row, const Device& device);

}  // namespace mantissa::testing
