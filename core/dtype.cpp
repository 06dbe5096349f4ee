#include "core/dtype.h"

#include <algorithm>
#include <cctype>
#include <ostream>

namespace mantissa {

namespace {
struct DTypeInfo {
  const char* name;
  const char* torch_name;
  size_t size;
  DTypeKind kind;
};
constexpr DTypeInfo kInfo[] = {
#define MANTISSA_DTYPE(name, ctype, size, kind, acc, cublas, cudnn, torch) \
  {#name, #torch, size, DTypeKind::kind},
#include "core/dtype.def"
#undef MANTISSA_DTYPE
};
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kNumDTypes, "dtype table out of sync with dtype.def");

const DTypeInfo& info(DType t) {
  auto i = static_cast<size_t>(t);
  MANTISSA_ASSERT(i < static_cast<size_t>(kNumDTypes), "bad dtype value ", i);
  return kInfo[i];
}
}  // namespace

const char* dtype_name(DType t) { return info(t).name; }
const char* dtype_torch_name(DType t) { return info(t).torch_name; }
size_t dtype_size(DType t) { return info(t).size; }
DTypeKind dtype_kind(DType t) { return info(t).kind; }

DType dtype_from_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (int i = 0; i < kNumDTypes; ++i) {
    std::string n = kInfo[i].name;
    std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == n || lower == kInfo[i].torch_name) return static_cast<DType>(i);
  }
  if (lower == "float" || lower == "fp32") return DType::F32;
  if (lower == "half" || lower == "fp16") return DType::F16;
  if (lower == "double") return DType::F64;
  MANTISSA_ERROR("dtype: unknown dtype name '", name, "' (expected one of ", dtype_set_names(kAllTypes), ")");
}

std::string dtype_set_names(DTypeSet set) {
  std::string out;
  for (int i = 0; i < kNumDTypes; ++i) {
    if (set & (DTypeSet(1) << i)) {
      if (!out.empty()) out += ", ";
      out += kInfo[i].name;
    }
  }
  return out;
}

std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

namespace {
int float_rank(DType t) {
  switch (t) {
    case DType::F16: return 1;
    case DType::BF16: return 1;
    case DType::F32: return 2;
    case DType::F64: return 3;
    default: return 0;
  }
}
int int_rank(DType t) {
  switch (t) {
    case DType::Bool: return 0;
    case DType::U8: return 1;
    case DType::I8: return 1;
    case DType::I32: return 3;
    case DType::I64: return 4;
    default: return -1;
  }
}
}  // namespace

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  bool fa = is_floating(a), fb = is_floating(b);
  if (fa && fb) {
    // F16 with BF16 has no common 16-bit type: PyTorch gives F32.
    if (float_rank(a) == float_rank(b)) return DType::F32;
    return float_rank(a) > float_rank(b) ? a : b;
  }
  if (fa) return a;
  if (fb) return b;
  // Both integral or bool. U8 with I8 needs a wider signed type; we have I32.
  if ((a == DType::U8 && b == DType::I8) || (a == DType::I8 && b == DType::U8)) return DType::I32;
  return int_rank(a) > int_rank(b) ? a : b;
}

}  // namespace mantissa
