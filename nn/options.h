// Building blocks of the layers' Options structs, libtorch style: MANTISSA_ARG makes a chainable
// setter and a getter (LinearOptions(784, 10).bias(false); options.bias()), and ExpandingArray<D>
// takes kernel sizes, strides and paddings as one value for every dim (3) or one per dim ({3, 5}).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/error.h"

// Inside a class: MANTISSA_ARG(bool, bias) = true;
#define MANTISSA_ARG(T, name)                      \
 public:                                           \
  auto& name(const T& new_##name) {                \
    this->name##_ = new_##name;                    \
    return *this;                                  \
  }                                                \
  const T& name() const noexcept { return name##_; } \
                                                   \
 private:                                          \
  T name##_

namespace mantissa::nn {

template <size_t D>
class ExpandingArray {
 public:
  ExpandingArray(int64_t v) { values_.fill(v); }  // NOLINT: implicit, like libtorch
  ExpandingArray(std::initializer_list<int64_t> list) : ExpandingArray(std::vector<int64_t>(list)) {}  // NOLINT
  ExpandingArray(const std::vector<int64_t>& v) {  // NOLINT
    MANTISSA_CHECK(v.size() == D, "ExpandingArray: expected ", D, " values, got ", v.size());
    for (size_t i = 0; i < D; ++i) values_[i] = v[i];
  }
  int64_t operator[](size_t i) const { return values_[i]; }
  const std::array<int64_t, D>& values() const { return values_; }
  std::vector<int64_t> vec() const { return {values_.begin(), values_.end()}; }
  bool all_equal() const {
    for (int64_t v : values_)
      if (v != values_[0]) return false;
    return true;
  }
  bool operator==(const ExpandingArray& o) const { return values_ == o.values_; }

 private:
  std::array<int64_t, D> values_{};
};

}  // namespace mantissa::nn
