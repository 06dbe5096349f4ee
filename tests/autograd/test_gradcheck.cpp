// The one op table: every differentiable op in ops.def has at least one row, and every row
// runs forward-vs-reference, gradcheck in F64 and the lower-dtype sweep (support/op_check.h),
// then once more on CUDA against the CPU in every dtype (OpsCuda/..., skipped without a GPU).
#include <gtest/gtest-spi.h>

#include <memory>
#include <set>

#include "core/kernels/device_memory.h"

#include "ops/rows_elementwise.h"
#include "ops/rows_linalg_conv_pool.h"
#include "ops/rows_norm_index.h"
#include "ops/rows_quant.h"
#include "ops/rows_reduce_loss.h"
#include "ops/rows_view.h"

namespace mantissa::testing {
namespace {

std::vector<OpRow> all_rows() {
  std::vector<OpRow> rows;
  for (auto part : {rows_view(), rows_elementwise(), rows_reduce_loss(), rows_linalg_conv_pool(), rows_norm_index(),
                    rows_quant()}) {
    rows.insert(rows.end(), part.begin(), part.end());
  }
  return rows;
}

class OpTable : public ::testing::TestWithParam<OpRow> {};

TEST_P(OpTable, ForwardGradcheckAndDtypes) { check_row(GetParam()); }

std::string row_test_name(const ::testing::TestParamInfo<OpRow>& info) {
  std::string n = info.param.name;
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Ops, OpTable, ::testing::ValuesIn(all_rows()), row_test_name);

// The same rows on cuda:0: inputs made on the CPU exactly as above, copied over, and the
// forward and input gradients compared with the CPU in F64, F32, F16 and BF16.
class OpTableCuda : public ::testing::TestWithParam<OpRow> {};

TEST_P(OpTableCuda, MatchesCpuInEveryDtype) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << "no usable CUDA device: " << kernels::cuda_unavailable_reason();
  check_row_on_device(GetParam(), kCUDA);
}

INSTANTIATE_TEST_SUITE_P(OpsCuda, OpTableCuda, ::testing::ValuesIn(all_rows()), row_test_name);

// The device comparison itself, exercised on the CPU: every row must give the same result
// when run twice on identical inputs (a row that is not deterministic would make the CUDA
// comparison meaningless), and a difference in the forward or only in a gradient must be
// reported. The "device" here is the CPU again, so this runs on every machine.
TEST(OpCheckHarness, EveryRowIsReproducibleOnTheCpu) {
  for (const OpRow& row : all_rows()) check_row_on_device(row, kCPU);
}

// A row whose second, fourth, ... call differs from the first: check_row_on_device calls the
// CPU side first and the device side second, so the "device" run is the odd one out.
OpRow alternating_row(OpFn first, OpFn second) {
  auto calls = std::make_shared<int>(0);
  OpRow row;
  row.op = OpId::add;
  row.name = "harness/alternating";
  row.inputs = {{{3, 4}}};
  row.fn = [calls, first, second](const std::vector<Tensor>& x) { return (*calls)++ % 2 == 0 ? first(x) : second(x); };
  row.dtypes = dtype_bit(DType::F32);
  return row;
}

void check_forward_mismatch() {
  // +0.5 on every element: far outside F32's tolerance, and unchanged gradients.
  const OpRow row = alternating_row([](const std::vector<Tensor>& x) { return mul(x[0], 2.0); },
                                    [](const std::vector<Tensor>& x) { return add(mul(x[0], 2.0), 0.5); });
  check_row_on_device(row, kCPU);
}

void check_gradient_mismatch() {
  // x + (0.5x - detach(0.5x)): the same forward values bit for bit, gradient 1.5 instead of 1.
  const OpRow row = alternating_row([](const std::vector<Tensor>& x) { return mul(x[0], 1.0); },
                                    [](const std::vector<Tensor>& x) {
                                      Tensor h = mul(x[0], 0.5);
                                      return add(x[0], sub(h, h.detach()));
                                    });
  check_row_on_device(row, kCPU);
}

void check_integer_mismatch() {
  // An index result off by one in one place must fail even though 1 is "close" to 4.
  OpRow row = alternating_row([](const std::vector<Tensor>& x) { return argmax(x[0], 1); },
                              [](const std::vector<Tensor>& x) {
                                return add(argmax(x[0], 1), from_vector(std::vector<int64_t>{1, 0, 0}, {3}));
                              });
  row.differentiable = false;
  check_row_on_device(row, kCPU);
}

TEST(OpCheckHarness, ReportsAForwardMismatch) {
  EXPECT_NONFATAL_FAILURE(check_forward_mismatch(), "harness/alternating on cpu in F32 forward vs CPU");
}

TEST(OpCheckHarness, ReportsAGradientOnlyMismatch) {
  EXPECT_NONFATAL_FAILURE(check_gradient_mismatch(), "harness/alternating on cpu in F32 gradient 0 vs CPU");
}

TEST(OpCheckHarness, ComparesIntegerOutputsExactly) {
  EXPECT_NONFATAL_FAILURE(check_integer_mismatch(), "harness/alternating on cpu in F32 forward vs CPU");
}

TEST(OpTableCoverage, EveryOpHasARow) {
  std::set<OpId> covered;
  for (const OpRow& r : all_rows()) covered.insert(r.op);
  std::string missing;
  for (int i = 0; i < kNumOps; ++i) {
    if (!covered.count(static_cast<OpId>(i))) missing += std::string(missing.empty() ? "" : ", ") + op_name(static_cast<OpId>(i));
  }
  EXPECT_TRUE(missing.empty()) << "ops without a row in the op table: " << missing;
}

TEST(OpTableCoverage, RowNamesAreUnique) {
  std::set<std::string> names;
  for (const OpRow& r : all_rows()) EXPECT_TRUE(names.insert(r.name).second) << "duplicate row name " << r.name;
}

}  // namespace
}  // namespace mantissa::testing
