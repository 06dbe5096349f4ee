// OpRows for the reduce_loss family: one or more rows per op (see support/op_check.h).
#pragma once

#include "support/op_check.h"

namespace mantissa::testing {

inline std::vector<OpRow> rows_reduce_loss() {
  return {};
}

}  // namespace mantissa::testing
