// OpRows for the linalg_conv_pool family: one or more rows per op (see support/op_check.h).
#pragma once

#include "support/op_check.h"

namespace mantissa::testing {

inline std::vector<OpRow> rows_linalg_conv_pool() {
  return {};
}

}  // namespace mantissa::testing
