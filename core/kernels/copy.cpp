// CPU copy and fill, the dispatch of CUDA tensors to copy.cu, and copies between devices
// (bytes moved once in the source dtype, converted on the destination's device).
#include "core/kernels/copy.h"

#include "core/kernels/convert.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/loops.h"

#include <cstring>
#include <limits>

namespace mantissa::kernels {

namespace {
bool same_layout_contiguous(const Tensor& dst, const Tensor& src) {
  return dst.is_contiguous() && src.is_contiguous() && dst.numel() == src.numel();
}

// Fast paths for the casts that training does all the time.
bool try_convert_fast(const Tensor& dst, const Tensor& src) {
  if (!same_layout_contiguous(dst, src)) return false;
  const int64_t n = dst.numel();
  DType d = dst.dtype(), s = src.dtype();
  if (s == DType::F32 && d == DType::F16) convert_f32_to_f16(src.data<float>(), dst.data<Half>(), n);
  else if (s == DType::F16 && d == DType::F32) convert_f16_to_f32(src.data<Half>(), dst.data<float>(), n);
  else if (s == DType::F32 && d == DType::BF16) convert_f32_to_bf16(src.data<float>(), dst.data<BFloat16>(), n);
  else if (s == DType::BF16 && d == DType::F32) convert_bf16_to_f32(src.data<BFloat16>(), dst.data<float>(), n);
  else return false;
  return true;
}


// Moves src's bytes once, in src's dtype and at src's (unbroadcast) size, and leaves layout,
// broadcasting and dtype conversion to a same-device copy on the destination: the transfer is
// the slow part, so it carries the fewest bytes, and the conversion runs where dst lives.
void copy_across_devices(const Tensor& dst, const Tensor& src) {
  MANTISSA_CHECK(src.dim() <= dst.dim() && broadcast_shapes(src.sizes(), dst.sizes(), "copy") == dst.sizes(),
                 "copy: source ", shape_str(src.sizes()), " on ", src.device(), " cannot be broadcast to destination ",
                 shape_str(dst.sizes()), " on ", dst.device());
  Tensor staged = src;
  if (!src.is_contiguous()) {
    staged = empty(src.sizes(), TensorOptions(src.dtype()).device(src.device()));
    copy(staged, src);
  }
  const bool direct = dst.dtype() == src.dtype() && dst.is_contiguous() && dst.sizes() == src.sizes();
  Tensor landing = direct ? dst : empty(src.sizes(), TensorOptions(src.dtype()).device(dst.device()));
  const size_t nbytes = staged.nbytes();
#ifdef MANTISSA_HAVE_CUDA
  if (src.is_cpu()) {
    cuda::copy_host_to_device(landing.data_ptr(), dst.device().index, staged.data_ptr(), nbytes,
                              staged.is_pinned() ? staged.storage()->data() : nullptr);
  } else if (dst.is_cpu()) {
    cuda::copy_device_to_host(landing.data_ptr(), staged.data_ptr(), src.device().index, nbytes, landing.is_pinned());
  } else {
    copy_bytes(landing.data_ptr(), landing.device(), staged.data_ptr(), staged.device(), nbytes);
  }
#else
  copy_bytes(landing.data_ptr(), landing.device(), staged.data_ptr(), staged.device(), nbytes);
#endif
  if (!direct) copy(dst, landing);
}
}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  if (dst.device() != src.device()) {
    copy_across_devices(dst, src);
    return;
  }
  if (dst.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::copy(dst, src);
    return;
#else
    MANTISSA_ERROR("copy: ", dst.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  if (try_convert_fast(dst, src)) return;
  if (dst.dtype() == src.dtype() && same_layout_contiguous(dst, src)) {
    // Split large copies across threads: one core cannot saturate memory bandwidth.
    char* d = static_cast<char*>(dst.data_ptr());
    const char* s = static_cast<const char*>(src.data_ptr());
    parallel_for(static_cast<int64_t>(dst.nbytes()), int64_t(1) << 20,
                 [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
    return;
  }
  visit_dtype<kAllTypes>(dst.dtype(), "copy", [&]<typename D>() {
    visit_dtype<kAllTypes>(src.dtype(), "copy", [&]<typename S>() {
      map<D, S>(dst, [](auto v) { return convert_value<D>(static_cast<S>(v)); }, src);
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  if (dst.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::fill(dst, value);
    return;
#else
    MANTISSA_ERROR("fill: ", dst.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  visit_dtype<kAllTypes>(dst.dtype(), "fill", [&]<typename D>() {
    const D v = convert_value<D>(value);
    map<D>(dst, [v]() { return v; });
  });
}

}  // namespace mantissa::kernels
