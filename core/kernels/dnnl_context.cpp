// The process-wide oneDNN CPU engine and the per-thread streams (see dnnl_context.h).
#ifdef MANTISSA_HAVE_DNNL

#include "core/kernels/dnnl_context.h"

namespace mantissa::kernels::dnnl_ctx {

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

}  // namespace mantissa::kernels::dnnl_ctx

#endif  // MANTISSA_HAVE_DNNL
