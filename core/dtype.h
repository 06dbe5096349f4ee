// DType: the element types a Tensor can hold, generated from dtype.def, with type traits,
// promotion rules and the one dispatch helper (visit_dtype) that every kernel uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "core/half.h"

namespace mantissa {

enum class DType : uint8_t {
#define MANTISSA_DTYPE(name, ...) name,
#include "core/dtype.def"
#undef MANTISSA_DTYPE
};

inline constexpr int kNumDTypes = 0
#define MANTISSA_DTYPE(name, ...) +1
#include "core/dtype.def"
#undef MANTISSA_DTYPE
    ;

enum class DTypeKind : uint8_t { Float, Int, Bool };

const char* dtype_name(DType t);          // "F32", as safetensors spells it
const char* dtype_torch_name(DType t);    // "float32"
size_t dtype_size(DType t);
DTypeKind dtype_kind(DType t);
inline bool is_floating(DType t) { return dtype_kind(t) == DTypeKind::Float; }
inline bool is_low_precision(DType t) { return t == DType::F16 || t == DType::BF16; }
DType dtype_from_name(const std::string& name);  // accepts "F32", "f32", "float32"

std::ostream& operator<<(std::ostream& os, DType t);

// Traits: C++ type and accumulate type of each dtype, and the dtype of each C++ type.
template <DType D> struct DTypeTraits;
#define MANTISSA_DTYPE(name, ctype, size, kind, acc, ...)                         \
  template <> struct DTypeTraits<DType::name> {                                    \
    using type = ctype;                                                            \
    using acc_type = acc;                                                          \
    static constexpr DTypeKind dtype_kind = DTypeKind::kind;                       \
  };                                                                               \
  static_assert(sizeof(ctype) == size, "dtype.def size column disagrees with the C++ type");
#include "core/dtype.def"
#undef MANTISSA_DTYPE

template <typename T> struct DTypeOf;
#define MANTISSA_DTYPE(name, ctype, ...) \
  template <> struct DTypeOf<ctype> { static constexpr DType value = DType::name; };
#include "core/dtype.def"
#undef MANTISSA_DTYPE
template <typename T> inline constexpr DType dtype_of = DTypeOf<T>::value;

// Arithmetic type used to compute on a storage type: F16/BF16 compute in float.
template <typename T> struct ComputeType { using type = T; };
template <> struct ComputeType<Half> { using type = float; };
template <> struct ComputeType<BFloat16> { using type = float; };
template <typename T> using compute_t = typename ComputeType<T>::type;

// Sets of dtypes for dispatch, as bit masks.
using DTypeSet = uint32_t;
constexpr DTypeSet dtype_bit(DType t) { return DTypeSet(1) << static_cast<int>(t); }
inline constexpr DTypeSet kFloatTypes =
    dtype_bit(DType::F64) | dtype_bit(DType::F32) | dtype_bit(DType::F16) | dtype_bit(DType::BF16);
inline constexpr DTypeSet kIntTypes =
    dtype_bit(DType::I8) | dtype_bit(DType::U8) | dtype_bit(DType::I32) | dtype_bit(DType::I64);
inline constexpr DTypeSet kIndexTypes = dtype_bit(DType::I32) | dtype_bit(DType::I64);
inline constexpr DTypeSet kNumericTypes = kFloatTypes | kIntTypes;
inline constexpr DTypeSet kAllTypes = kNumericTypes | dtype_bit(DType::Bool);

std::string dtype_set_names(DTypeSet set);

// visit_dtype<Set>(t, "op", f) calls f.template operator()<CppType>() for t, and throws
// "op: dtype X is not supported (expected one of ...)" when t is outside Set. Only the
// members of Set are instantiated.
template <DTypeSet Set, typename F>
decltype(auto) visit_dtype(DType t, const char* op, F&& f) {
  switch (t) {
#define MANTISSA_DTYPE(name, ctype, ...)                                   \
  case DType::name:                                                         \
    if constexpr ((Set & dtype_bit(DType::name)) != 0) {                    \
      return f.template operator()<ctype>();                                \
    }                                                                       \
    break;
#include "core/dtype.def"
#undef MANTISSA_DTYPE
  }
  MANTISSA_ERROR(op, ": dtype ", dtype_name(t), " is not supported (expected one of ",
                 dtype_set_names(Set), ")");
}

// Type promotion as PyTorch's result_type for two tensors of the same priority.
DType promote_types(DType a, DType b);

}  // namespace mantissa
