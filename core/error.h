// mantissa::Error and the check macros. User errors throw Error with a message naming the op,
// the shapes, dtypes and devices involved and what was expected; internal invariants assert.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mantissa {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream ss;
  (ss << ... << std::forward<Args>(args));
  return ss.str();
}
[[noreturn]] void throw_error(const std::string& msg);
[[noreturn]] void internal_error(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

}  // namespace mantissa

// MANTISSA_CHECK(cond, "op: ", pieces...) throws mantissa::Error built from the streamed pieces.
#define MANTISSA_CHECK(cond, ...)                                              \
  do {                                                                         \
    if (!(cond)) [[unlikely]] {                                                \
      ::mantissa::detail::throw_error(::mantissa::detail::concat(__VA_ARGS__)); \
    }                                                                          \
  } while (0)

#define MANTISSA_ERROR(...) ::mantissa::detail::throw_error(::mantissa::detail::concat(__VA_ARGS__))

// Internal invariant: a failure is a Mantissa bug, reported with file and line.
#define MANTISSA_ASSERT(cond, ...)                                                           \
  do {                                                                                       \
    if (!(cond)) [[unlikely]] {                                                              \
      ::mantissa::detail::internal_error(__FILE__, __LINE__, #cond,                          \
                                         ::mantissa::detail::concat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                                        \
  } while (0)
