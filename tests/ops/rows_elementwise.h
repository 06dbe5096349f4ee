// OpRows for the elementwise family: one or more rows per op (see support/op_check.h).
#pragma once

#include "support/op_check.h"

namespace mantissa::testing {

inline std::vector<OpRow> rows_elementwise() {
  return {};
}

}  // namespace mantissa::testing
