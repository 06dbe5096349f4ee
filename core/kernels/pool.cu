// CUDA pooling kernels (see pool.h), written here rather than taken from cuDNN: cuDNN's max
// pooling returns no argmax (the API saves indices for the backward), and its average pooling
// has no ceil_mode, so the divisor of a last, partial window (PyTorch counts padding only up to
// the padded edge) cannot be expressed. One thread per output element forward; backward gathers
// over the windows that contain each input element, in the CPU's order, so results match the
// CPU bit for bit and do not change between runs. The argmax-only backward (no window
// parameters) scatters with atomics instead.
#include "core/kernels/pool.h"

#include <limits>
#include <type_traits>

#include "core/kernels/cuda_common.cuh"

namespace mantissa::kernels::cuda {

namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// A 4-D operand as its base pointer's strides (elements); the extents come from elsewhere.
struct Strides4 {
  int64_t n, c, h, w;
};
Strides4 strides4(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// Plain geometry, copied by value into kernels (Pool2dParams holds the same numbers).
struct Geo {
  int64_t channels, h, w, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw;
  bool count_include_pad;
};

Geo geo(const Shape& in, const Shape& out, const Pool2dParams& p, const char* op) {
  MANTISSA_CHECK(p.kernel_h > 0 && p.kernel_w > 0 && p.stride_h > 0 && p.stride_w > 0 && p.pad_h >= 0 && p.pad_w >= 0,
                 op, ": expected positive kernel and stride and non-negative padding, got kernel ",
                 shape_str({p.kernel_h, p.kernel_w}), ", stride ", shape_str({p.stride_h, p.stride_w}), ", padding ",
                 shape_str({p.pad_h, p.pad_w}));
  return {in[1],      in[2],      in[3],      out[2],  out[3],  p.kernel_h,
          p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.count_include_pad};
}

struct Window {
  int64_t hs, he, ws, we, divisor;
};

// Same rules as pool.cpp's avg_window / adaptive_window.
__device__ __forceinline__ Window avg_window(int64_t oh, int64_t ow, const Geo& g) {
  int64_t hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  int64_t he = min(hs + g.kh, g.h + g.ph), we = min(ws + g.kw, g.w + g.pw);
  const int64_t padded = (he - hs) * (we - ws);
  hs = max(hs, int64_t(0));
  ws = max(ws, int64_t(0));
  he = min(he, g.h);
  we = min(we, g.w);
  return {hs, he, ws, we, g.count_include_pad ? padded : (he - hs) * (we - ws)};
}

__device__ __forceinline__ Window adaptive_window(int64_t oh, int64_t ow, const Geo& g) {
  const int64_t hs = oh * g.h / g.ho, he = ((oh + 1) * g.h + g.ho - 1) / g.ho;
  const int64_t ws = ow * g.w / g.wo, we = ((ow + 1) * g.w + g.wo - 1) / g.wo;
  return {hs, he, ws, we, (he - hs) * (we - ws)};
}

// Outputs [lo, hi] whose kernel window (start o * stride - pad, length k) can contain input i.
__device__ __forceinline__ void covering(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t outs, int64_t& lo,
                                         int64_t& hi) {
  const int64_t first = i + pad - k + 1;  // o * stride >= first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = min((i + pad) / stride, outs - 1);
}

// Bins [lo, hi] of an adaptive pool whose range can contain input i (one wider on each side;
// the caller checks the window itself).
__device__ __forceinline__ void covering_adaptive(int64_t i, int64_t in, int64_t outs, int64_t& lo, int64_t& hi) {
  lo = max(i * outs / in - 1, int64_t(0));
  hi = min(((i + 1) * outs + in - 1) / in, outs - 1);
}

struct PlaneIndex {
  int64_t n, c, y, x;
};
// Flat index over a contiguous [N, C, Y, X] -> coordinates.
__device__ __forceinline__ PlaneIndex unflatten(int64_t i, int64_t channels, int64_t ys, int64_t xs) {
  PlaneIndex r;
  r.x = i % xs;
  i /= xs;
  r.y = i % ys;
  i /= ys;
  r.c = i % channels;
  r.n = i / channels;
  return r;
}

#define MANTISSA_GRID_STRIDE(i, total) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (total); i += int64_t(blockDim.x) * gridDim.x)

// ---- max pooling ---------------------------------------------------------------------------

// Row-major scan; a later element wins when greater or NaN (PyTorch's rule, as on the CPU).
template <typename T>
__global__ void max_forward_kernel(T* __restrict__ out, int64_t* __restrict__ indices, const T* __restrict__ x,
                                   Strides4 xs, Geo g, int64_t total) {
  using C = dev_compute_t<T>;
  MANTISSA_GRID_STRIDE(i, total) {
    const PlaneIndex o = unflatten(i, g.channels, g.ho, g.wo);
    const T* src = x + o.n * xs.n + o.c * xs.c;
    const int64_t hs0 = o.y * g.sh - g.ph, ws0 = o.x * g.sw - g.pw;
    const int64_t he = min(hs0 + g.kh, g.h), hs = max(hs0, int64_t(0));
    const int64_t we = min(ws0 + g.kw, g.w), ws = max(ws0, int64_t(0));
    C best = -std::numeric_limits<C>::infinity();
    int64_t best_at = hs * g.w + ws;
    for (int64_t ih = hs; ih < he; ++ih) {
      for (int64_t iw = ws; iw < we; ++iw) {
        const C v = load(src + ih * xs.h + iw * xs.w);
        if (v > best || v != v) {
          best = v;
          best_at = ih * g.w + iw;
        }
      }
    }
    store(out + i, best);  // the maximum is one of the inputs: exact
    indices[i] = best_at;
  }
}

// Gather: input element (ih, iw) sums the gradients of the windows that chose it, in the
// windows' row-major order (the order the CPU adds them in).
template <typename T>
__global__ void max_backward_gather_kernel(T* __restrict__ grad_x, const T* __restrict__ grad_out, Strides4 gs,
                                           const int64_t* __restrict__ indices, Strides4 is, Geo g, int64_t total) {
  using Acc = acc_t<T>;
  MANTISSA_GRID_STRIDE(i, total) {
    const PlaneIndex in = unflatten(i, g.channels, g.h, g.w);
    const int64_t flat = in.y * g.w + in.x;
    int64_t oh0, oh1, ow0, ow1;
    covering(in.y, g.kh, g.sh, g.ph, g.ho, oh0, oh1);
    covering(in.x, g.kw, g.sw, g.pw, g.wo, ow0, ow1);
    Acc s = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        if (indices[in.n * is.n + in.c * is.c + oh * is.h + ow * is.w] == flat)
          s += static_cast<Acc>(load(grad_out + in.n * gs.n + in.c * gs.c + oh * gs.h + ow * gs.w));
      }
    }
    store(grad_x + i, s);
  }
}

// Scatter by the saved argmax alone, into an accumulator (F32 for 16-bit types) that the caller
// zeroed. Out-of-range indices are skipped: they cannot come from the forward, and a device
// kernel must not write outside the plane.
template <typename T, typename Acc>
__global__ void max_backward_scatter_kernel(Acc* __restrict__ acc, const T* __restrict__ grad_out, Strides4 gs,
                                            const int64_t* __restrict__ indices, Strides4 is, int64_t channels,
                                            int64_t ho, int64_t wo, int64_t hw, int64_t total) {
  MANTISSA_GRID_STRIDE(i, total) {
    const PlaneIndex o = unflatten(i, channels, ho, wo);
    const int64_t at = indices[o.n * is.n + o.c * is.c + o.y * is.h + o.x * is.w];
    if (at < 0 || at >= hw) continue;
    atomicAdd(acc + (o.n * channels + o.c) * hw + at,
              static_cast<Acc>(load(grad_out + o.n * gs.n + o.c * gs.c + o.y * gs.h + o.x * gs.w)));
  }
}

// ---- average pooling -------------------------------------------------------------------------

template <bool Adaptive>
__device__ __forceinline__ Window window_of(int64_t oh, int64_t ow, const Geo& g) {
  if constexpr (Adaptive)
    return adaptive_window(oh, ow, g);
  else
    return avg_window(oh, ow, g);
}

template <typename T, bool Adaptive>
__global__ void avg_forward_kernel(T* __restrict__ out, const T* __restrict__ x, Strides4 xs, Geo g, int64_t total) {
  using Acc = acc_t<T>;
  MANTISSA_GRID_STRIDE(i, total) {
    const PlaneIndex o = unflatten(i, g.channels, g.ho, g.wo);
    const Window win = window_of<Adaptive>(o.y, o.x, g);
    if (win.hs >= win.he || win.ws >= win.we) {
      store(out + i, Acc(0));
      continue;
    }
    const T* src = x + o.n * xs.n + o.c * xs.c;
    Acc s = 0;
    for (int64_t ih = win.hs; ih < win.he; ++ih)
      for (int64_t iw = win.ws; iw < win.we; ++iw) s += static_cast<Acc>(load(src + ih * xs.h + iw * xs.w));
    store(out + i, s / static_cast<Acc>(win.divisor));
  }
}

template <typename T, bool Adaptive>
__global__ void avg_backward_kernel(T* __restrict__ grad_x, const T* __restrict__ grad_out, Strides4 gs, Geo g,
                                    int64_t total) {
  using Acc = acc_t<T>;
  MANTISSA_GRID_STRIDE(i, total) {
    const PlaneIndex in = unflatten(i, g.channels, g.h, g.w);
    int64_t oh0, oh1, ow0, ow1;
    if constexpr (Adaptive) {
      covering_adaptive(in.y, g.h, g.ho, oh0, oh1);
      covering_adaptive(in.x, g.w, g.wo, ow0, ow1);
    } else {
      covering(in.y, g.kh, g.sh, g.ph, g.ho, oh0, oh1);
      covering(in.x, g.kw, g.sw, g.pw, g.wo, ow0, ow1);
    }
    const T* go = grad_out + in.n * gs.n + in.c * gs.c;
    Acc s = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const Window win = window_of<Adaptive>(oh, ow, g);
        if (in.y < win.hs || in.y >= win.he || in.x < win.ws || in.x >= win.we) continue;
        // Divide, then add: the CPU's order, so the sums agree bit for bit.
        s += static_cast<Acc>(load(go + oh * gs.h + ow * gs.w)) / static_cast<Acc>(win.divisor);
      }
    }
    store(grad_x + i, s);
  }
}

#undef MANTISSA_GRID_STRIDE

struct Identity {
  template <typename V>
  __device__ V operator()(V v) const {
    return v;
  }
};

void check_4d(const char* op, const Tensor& t, const char* what) {
  MANTISSA_CHECK(t.defined() && t.dim() == 4, op, ": expected a 4-D ", what, ", got shape ",
                 shape_str(t.defined() ? t.sizes() : Shape{}));
}

// out (contiguous) and the other operands on one CUDA device; floating values of out's dtype.
void check_operands(const char* op, const Tensor& out, std::initializer_list<Tensor> values,
                    const Tensor& indices = Tensor()) {
  check_4d(op, out, "output");
  MANTISSA_CHECK(is_floating(out.dtype()), op, ": dtype ", dtype_name(out.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  MANTISSA_CHECK(out.is_contiguous(), op, ": the CUDA kernel writes a contiguous output, got strides ",
                 shape_str(out.strides()), " for shape ", shape_str(out.sizes()));
  for (const Tensor& t : values) {
    check_4d(op, t, "operand");
    MANTISSA_CHECK(t.device() == out.device(), op, ": expected every tensor on ", out.device(), ", got one on ",
                   t.device(), " (shape ", shape_str(t.sizes()), ")");
    MANTISSA_CHECK(t.dtype() == out.dtype(), op, ": expected every tensor in ", dtype_name(out.dtype()), ", got ",
                   dtype_name(t.dtype()), " (shape ", shape_str(t.sizes()), ")");
  }
  if (indices.defined()) {
    check_4d(op, indices, "indices tensor");
    MANTISSA_CHECK(indices.device() == out.device() && indices.dtype() == DType::I64, op, ": expected I64 indices on ",
                   out.device(), ", got ", dtype_name(indices.dtype()), " on ", indices.device());
  }
}

void check_planes(const char* op, const Tensor& a, const Tensor& b) {
  MANTISSA_CHECK(a.size(0) == b.size(0) && a.size(1) == b.size(1), op, ": ", shape_str(a.sizes()), " and ",
                 shape_str(b.sizes()), " differ in batch or channels");
}

}  // namespace

void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const Pool2dParams& p) {
  const char* op = "max_pool2d";
  check_operands(op, out, {x}, indices);
  check_planes(op, out, x);
  MANTISSA_CHECK(indices.sizes() == out.sizes() && indices.is_contiguous(), op, ": indices ",
                 shape_str(indices.sizes()), " must be contiguous with the output's shape ", shape_str(out.sizes()));
  const int64_t total = out.numel();
  if (total == 0) return;
  DeviceGuard guard(out);
  const Geo g = geo(x.sizes(), out.sizes(), p, op);
  visit_dtype<kFloatTypes>(out.dtype(), op, [&]<typename T>() {
    max_forward_kernel<T><<<grid_for(total), kBlock, 0, stream_for(out)>>>(out.data<T>(), indices.data<int64_t>(),
                                                                           x.data<T>(), strides4(x), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, const Pool2dParams& p) {
  const char* op = "max_pool2d backward";
  check_operands(op, grad_x, {grad_out}, indices);
  check_planes(op, grad_x, grad_out);
  MANTISSA_CHECK(indices.sizes() == grad_out.sizes(), op, ": indices ", shape_str(indices.sizes()),
                 " do not match the output gradient ", shape_str(grad_out.sizes()));
  const int64_t total = grad_x.numel();
  if (total == 0) return;
  DeviceGuard guard(grad_x);
  const Geo g = geo(grad_x.sizes(), grad_out.sizes(), p, op);
  visit_dtype<kFloatTypes>(grad_x.dtype(), op, [&]<typename T>() {
    max_backward_gather_kernel<T><<<grid_for(total), kBlock, 0, stream_for(grad_x)>>>(
        grad_x.data<T>(), grad_out.data<T>(), strides4(grad_out), indices.data<int64_t>(), strides4(indices), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices) {
  const char* op = "max_pool2d backward";
  check_operands(op, grad_x, {grad_out}, indices);
  check_planes(op, grad_x, grad_out);
  MANTISSA_CHECK(indices.sizes() == grad_out.sizes(), op, ": indices ", shape_str(indices.sizes()),
                 " do not match the output gradient ", shape_str(grad_out.sizes()));
  if (grad_x.numel() == 0) return;
  DeviceGuard guard(grad_x);
  cudaStream_t s = stream_for(grad_x);
  const int64_t total = grad_out.numel();
  const int64_t hw = grad_x.size(2) * grad_x.size(3);
  visit_dtype<kFloatTypes>(grad_x.dtype(), op, [&]<typename T>() {
    using Acc = acc_t<T>;
    // 16-bit gradients accumulate in an F32 buffer and are rounded once at the end.
    Tensor acc =
        std::is_same_v<T, Acc> ? grad_x : empty(grad_x.sizes(), TensorOptions(DType::F32).device(grad_x.device()));
    MANTISSA_CUDA_CHECK(cudaMemsetAsync(acc.data_ptr(), 0, acc.nbytes(), s), op);
    if (total > 0) {
      max_backward_scatter_kernel<T, Acc><<<grid_for(total), kBlock, 0, s>>>(
          acc.data<Acc>(), grad_out.data<T>(), strides4(grad_out), indices.data<int64_t>(), strides4(indices),
          grad_x.size(1), grad_out.size(2), grad_out.size(3), hw, total);
      MANTISSA_CUDA_LAUNCH_CHECK(op);
    }
    if (!acc.is_same(grad_x)) cuda_map<T, Acc>(op, Identity{}, grad_x, {acc});
  });
}

void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  const char* op = "avg_pool2d";
  check_operands(op, out, {x});
  check_planes(op, out, x);
  const int64_t total = out.numel();
  if (total == 0) return;
  DeviceGuard guard(out);
  const Geo g = geo(x.sizes(), out.sizes(), p, op);
  visit_dtype<kFloatTypes>(out.dtype(), op, [&]<typename T>() {
    avg_forward_kernel<T, false>
        <<<grid_for(total), kBlock, 0, stream_for(out)>>>(out.data<T>(), x.data<T>(), strides4(x), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

void avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p) {
  const char* op = "avg_pool2d backward";
  check_operands(op, grad_x, {grad_out});
  check_planes(op, grad_x, grad_out);
  const int64_t total = grad_x.numel();
  if (total == 0) return;
  DeviceGuard guard(grad_x);
  const Geo g = geo(grad_x.sizes(), grad_out.sizes(), p, op);
  visit_dtype<kFloatTypes>(grad_x.dtype(), op, [&]<typename T>() {
    avg_backward_kernel<T, false><<<grid_for(total), kBlock, 0, stream_for(grad_x)>>>(
        grad_x.data<T>(), grad_out.data<T>(), strides4(grad_out), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  const char* op = "adaptive_avg_pool2d";
  check_operands(op, out, {x});
  check_planes(op, out, x);
  const int64_t total = out.numel();
  if (total == 0) return;
  DeviceGuard guard(out);
  const Geo g = geo(x.sizes(), out.sizes(), Pool2dParams{}, op);
  visit_dtype<kFloatTypes>(out.dtype(), op, [&]<typename T>() {
    avg_forward_kernel<T, true>
        <<<grid_for(total), kBlock, 0, stream_for(out)>>>(out.data<T>(), x.data<T>(), strides4(x), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out) {
  const char* op = "adaptive_avg_pool2d backward";
  check_operands(op, grad_x, {grad_out});
  check_planes(op, grad_x, grad_out);
  const int64_t total = grad_x.numel();
  if (total == 0) return;
  DeviceGuard guard(grad_x);
  const Geo g = geo(grad_x.sizes(), grad_out.sizes(), Pool2dParams{}, op);
  visit_dtype<kFloatTypes>(grad_x.dtype(), op, [&]<typename T>() {
    avg_backward_kernel<T, true><<<grid_for(total), kBlock, 0, stream_for(grad_x)>>>(
        grad_x.data<T>(), grad_out.data<T>(), strides4(grad_out), g, total);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

}  // namespace mantissa::kernels::cuda
