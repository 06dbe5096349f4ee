// Table-driven op checks: one OpRow per case of an op. check_row() compares the forward in
// F64 against a plain reference, runs gradcheck in F64 (with non-contiguous inputs where the
// row asks), and compares every lower dtype's forward and gradients against F64 computed on
// the same (rounded) inputs, with the per-dtype tolerances defined here and nowhere else.
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

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

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
// Casts floating inputs to dtype (integers untouched), as leaves with requires_grad per row.
std::vector<Tensor> cast_inputs(const OpRow& row, const std::vector<Tensor>& inputs, DType dtype);

// EXPECT-style closeness check; returns false (and records a failure naming `what`) on mismatch.
bool expect_close(const Tensor& actual, const Tensor& expected, Tolerance tol, const std::string& what);

void check_row(const OpRow& row);

}  // namespace mantissa::testing
