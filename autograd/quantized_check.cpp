// The Error for a quantized tensor given to an op that works on float tensors (autocast_hook.h
// checks every op's tensor arguments at entry).
#include "autograd/autocast_hook.h"
#include "core/error.h"
#include "core/quantized.h"

namespace mantissa::autograd::detail {

void refuse_quantized(OpId op, const Tensor& t, size_t index) {
  MANTISSA_ERROR(op_name(op), ": got a quantized tensor (", quantized_dtype_name(t.dtype()), ", scale ", t.q_scale(),
                 ", zero point ", t.q_zero_point(), ", shape ", shape_str(t.sizes()), ") as argument ", index,
                 "; this op works on float tensors: call quant::dequantize(x) first (quantized tensors support "
                 "views, clone, to(device), relu, max_pool2d, dropout in eval and quantized_add)");
}

}  // namespace mantissa::autograd::detail
