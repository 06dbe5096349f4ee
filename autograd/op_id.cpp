#include "autograd/op_id.h"

#include "core/error.h"

namespace mantissa {

namespace {
struct OpInfo {
  const char* name;
  AutocastCategory category;
};
constexpr OpInfo kOps[] = {
#define MANTISSA_OP(name, category) {#name, AutocastCategory::category},
#include "autograd/ops.def"
#undef MANTISSA_OP
};
static_assert(sizeof(kOps) / sizeof(kOps[0]) == kNumOps, "op table out of sync with ops.def");

const OpInfo& info(OpId op) {
  auto i = static_cast<size_t>(op);
  MANTISSA_ASSERT(i < static_cast<size_t>(kNumOps), "bad op id ", i);
  return kOps[i];
}
}  // namespace

const char* op_name(OpId op) { return info(op).name; }
AutocastCategory op_autocast_category(OpId op) { return info(op).category; }

const char* autocast_category_name(AutocastCategory c) {
  switch (c) {
    case AutocastCategory::Lower: return "lower";
    case AutocastCategory::F32: return "f32";
    case AutocastCategory::F32Acc: return "f32-accumulate";
    case AutocastCategory::Promote: return "promote";
    case AutocastCategory::Same: return "same";
  }
  return "?";
}

}  // namespace mantissa
