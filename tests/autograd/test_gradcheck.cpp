// The one op table: every differentiable op in ops.def has at least one row, and every row
// runs forward-vs-reference, gradcheck in F64 and the lower-dtype sweep (support/op_check.h).
#include <set>

#include "ops/rows_elementwise.h"
#include "ops/rows_linalg_conv_pool.h"
#include "ops/rows_norm_index.h"
#include "ops/rows_reduce_loss.h"
#include "ops/rows_view.h"

namespace mantissa::testing {
namespace {

std::vector<OpRow> all_rows() {
  std::vector<OpRow> rows;
  for (auto part : {rows_view(), rows_elementwise(), rows_reduce_loss(), rows_linalg_conv_pool(), rows_norm_index()}) {
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
