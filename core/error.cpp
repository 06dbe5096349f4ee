#include "core/error.h"

namespace mantissa::detail {

void throw_error(const std::string& msg) { throw Error(msg); }

void internal_error(const char* file, int line, const char* cond, const std::string& msg) {
  throw Error(concat("internal error (a Mantissa bug) at ", file, ":", line, ": ", cond,
                     msg.empty() ? "" : ": ", msg));
}

}  // namespace mantissa::detail
