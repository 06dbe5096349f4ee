// OpId and AutocastCategory generated from ops.def, with the names used in error messages
// and in backward node names ("AddBackward").
#pragma once

#include <cstdint>

namespace mantissa {

enum class AutocastCategory : uint8_t { Lower, F32, F32Acc, Promote, Same };

enum class OpId : uint16_t {
#define MANTISSA_OP(name, category) name,
#include "autograd/ops.def"
#undef MANTISSA_OP
};

inline constexpr int kNumOps = 0
#define MANTISSA_OP(name, category) +1
#include "autograd/ops.def"
#undef MANTISSA_OP
    ;

const char* op_name(OpId op);
AutocastCategory op_autocast_category(OpId op);
const char* autocast_category_name(AutocastCategory c);

}  // namespace mantissa
