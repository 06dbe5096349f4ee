// CPU pooling kernels (see pool.h; CUDA tensors go to pool.cu). Each plane (one image, one
// channel) is independent, so planes are split across threads; backward passes scatter into a
// per-plane F32 (F64) buffer and round once, so overlapping windows do not round a 16-bit
// gradient at every addition.
#include "core/kernels/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/kernels/copy.h"
#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/loops.h"

namespace mantissa::kernels {

namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()));
  copy(c, t);
  return c;
}

int64_t plane_grain(int64_t work_per_plane) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, work_per_plane));
}

struct Window {
  int64_t hs, he, ws, we;
  int64_t divisor;
};

// The averaging window of output (oh, ow), PyTorch's avg_pool2d rules: the divisor counts the
// padding (up to the padded edge) unless count_include_pad is off.
Window avg_window(int64_t oh, int64_t ow, int64_t h, int64_t w, const Pool2dParams& p) {
  int64_t hs = oh * p.stride_h - p.pad_h, ws = ow * p.stride_w - p.pad_w;
  int64_t he = std::min(hs + p.kernel_h, h + p.pad_h), we = std::min(ws + p.kernel_w, w + p.pad_w);
  const int64_t padded = (he - hs) * (we - ws);
  hs = std::max<int64_t>(hs, 0);
  ws = std::max<int64_t>(ws, 0);
  he = std::min(he, h);
  we = std::min(we, w);
  return {hs, he, ws, we, p.count_include_pad ? padded : (he - hs) * (we - ws)};
}

Window adaptive_window(int64_t oh, int64_t ow, int64_t h, int64_t w, int64_t ho, int64_t wo) {
  const int64_t hs = oh * h / ho, he = ((oh + 1) * h + ho - 1) / ho;
  const int64_t ws = ow * w / wo, we = ((ow + 1) * w + wo - 1) / wo;
  return {hs, he, ws, we, (he - hs) * (we - ws)};
}

// out[plane, oh, ow] = mean of x over window(oh, ow), for any window rule.
template <typename WindowFn>
void average_forward(const Tensor& out, const Tensor& x_in, const WindowFn& window) {
  if (out.numel() == 0) return;
  const Tensor x = dense(x_in);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = out.size(2), wo = out.size(3);
  visit_dtype<kFloatTypes>(x.dtype(), "avg_pool2d", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    parallel_for(planes, plane_grain(h * w), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* src = xp + pl * h * w;
        T* dst = op + pl * ho * wo;
        for (int64_t oh = 0; oh < ho; ++oh) {
          for (int64_t ow = 0; ow < wo; ++ow) {
            const Window win = window(oh, ow);
            if (win.hs >= win.he || win.ws >= win.we) {
              dst[oh * wo + ow] = store<T>(Acc(0));
              continue;
            }
            Acc s = 0;
            for (int64_t ih = win.hs; ih < win.he; ++ih)
              for (int64_t iw = win.ws; iw < win.we; ++iw) s += static_cast<Acc>(load(src[ih * w + iw]));
            dst[oh * wo + ow] = store<T>(s / static_cast<Acc>(win.divisor));
          }
        }
      }
    });
  });
}

// grad_x[plane, window(oh, ow)] += grad_out[plane, oh, ow] / divisor.
template <typename WindowFn>
void average_backward(const Tensor& grad_x, const Tensor& grad_out_in, const WindowFn& window) {
  if (grad_x.numel() == 0) return;
  const Tensor grad_out = dense(grad_out_in);
  const int64_t planes = grad_x.size(0) * grad_x.size(1), h = grad_x.size(2), w = grad_x.size(3);
  const int64_t ho = grad_out.size(2), wo = grad_out.size(3);
  visit_dtype<kFloatTypes>(grad_x.dtype(), "avg_pool2d backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* gp = grad_out.data<T>();
    T* xp = grad_x.data<T>();
    parallel_for(planes, plane_grain(h * w), [&](int64_t b, int64_t e) {
      std::vector<Acc> buf(static_cast<size_t>(h * w));
      for (int64_t pl = b; pl < e; ++pl) {
        std::fill(buf.begin(), buf.end(), Acc(0));
        const T* g = gp + pl * ho * wo;
        for (int64_t oh = 0; oh < ho; ++oh) {
          for (int64_t ow = 0; ow < wo; ++ow) {
            const Window win = window(oh, ow);
            if (win.hs >= win.he || win.ws >= win.we) continue;
            const Acc v = static_cast<Acc>(load(g[oh * wo + ow])) / static_cast<Acc>(win.divisor);
            for (int64_t ih = win.hs; ih < win.he; ++ih)
              for (int64_t iw = win.ws; iw < win.we; ++iw) buf[ih * w + iw] += v;
          }
        }
        T* dst = xp + pl * h * w;
        for (int64_t i = 0; i < h * w; ++i) dst[i] = store<T>(buf[i]);
      }
    });
  });
}

// One plane of the 2x2/stride-2 max pool with every window inside the input. Selects instead of
// branches (which element wins is data-dependent, so a branch mispredicts about half the time)
// and restrict pointers, so the compiler vectorizes across windows. Same order and rule as the
// general loop: row-major, a later element wins when greater or NaN.
template <typename T>
void max_pool_2x2_plane(const T* __restrict src, T* __restrict dst, int64_t* __restrict idx, int64_t w, int64_t ho,
                        int64_t wo) {
  using C = compute_t<T>;
  for (int64_t oh = 0; oh < ho; ++oh) {
    for (int64_t ow = 0; ow < wo; ++ow) {
      const int64_t i0 = 2 * oh * w + 2 * ow;
      C best = load(src[i0]);
      int64_t best_at = i0;
      auto consider = [&](int64_t i) {
        const C v = load(src[i]);
        const bool take = (v > best) | (v != v);
        best = take ? v : best;
        best_at = take ? i : best_at;
      };
      consider(i0 + 1);
      consider(i0 + w);
      consider(i0 + w + 1);
      dst[oh * wo + ow] = store<T>(best);
      idx[oh * wo + ow] = best_at;
    }
  }
}

}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t num = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  // Floor division that rounds toward -inf for a negative numerator (a kernel wider than the input).
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x_in, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(out, "max_pool2d", cuda::max_pool2d_forward(out, indices, x_in, p));
  check_same_device("max_pool2d", out, {&indices, &x_in});
  if (out.numel() == 0) return;
  const Tensor x = dense(x_in);
  const int64_t planes = x.size(0) * x.size(1), h = x.size(2), w = x.size(3);
  const int64_t ho = out.size(2), wo = out.size(3);
  visit_dtype<kFloatTypes>(x.dtype(), "max_pool2d", [&]<typename T>() {
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    T* op = out.data<T>();
    int64_t* ip = indices.data<int64_t>();
    // The common 2x2/stride-2 pool with every window inside the input (no padding, no partial
    // ceil-mode window) takes the branch-free, vectorized path: ~20x faster than the loop below.
    const bool fast2x2 = p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
                         p.pad_w == 0 && 2 * ho <= h && 2 * wo <= w;
    parallel_for(planes, plane_grain(ho * wo * p.kernel_h * p.kernel_w), [&](int64_t b, int64_t e) {
      for (int64_t pl = b; pl < e; ++pl) {
        const T* src = xp + pl * h * w;
        T* dst = op + pl * ho * wo;
        int64_t* idx = ip + pl * ho * wo;
        if (fast2x2) {
          max_pool_2x2_plane(src, dst, idx, w, ho, wo);
          continue;
        }
        for (int64_t oh = 0; oh < ho; ++oh) {
          const int64_t hs0 = oh * p.stride_h - p.pad_h;
          const int64_t he = std::min(hs0 + p.kernel_h, h), hs = std::max<int64_t>(hs0, 0);
          for (int64_t ow = 0; ow < wo; ++ow) {
            const int64_t ws0 = ow * p.stride_w - p.pad_w;
            const int64_t we = std::min(ws0 + p.kernel_w, w), ws = std::max<int64_t>(ws0, 0);
            C best = -std::numeric_limits<C>::infinity();
            int64_t best_at = hs * w + ws;
            for (int64_t ih = hs; ih < he; ++ih) {
              for (int64_t iw = ws; iw < we; ++iw) {
                const C v = load(src[ih * w + iw]);
                if (v > best || std::isnan(v)) {
                  best = v;
                  best_at = ih * w + iw;
                }
              }
            }
            // The maximum is one of the inputs, so this store is exact.
            dst[oh * wo + ow] = store<T>(best);
            idx[oh * wo + ow] = best_at;
          }
        }
      }
    });
  });
}

void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out_in, const Tensor& indices) {
  MANTISSA_CUDA_DISPATCH(grad_x, "max_pool2d backward", cuda::max_pool2d_backward(grad_x, grad_out_in, indices));
  check_same_device("max_pool2d backward", grad_x, {&grad_out_in, &indices});
  if (grad_x.numel() == 0) return;
  const Tensor grad_out = dense(grad_out_in);
  const int64_t planes = grad_x.size(0) * grad_x.size(1), hw = grad_x.size(2) * grad_x.size(3);
  const int64_t ohw = grad_out.size(2) * grad_out.size(3);
  visit_dtype<kFloatTypes>(grad_x.dtype(), "max_pool2d backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    const T* gp = grad_out.data<T>();
    const int64_t* ip = indices.data<int64_t>();
    T* xp = grad_x.data<T>();
    parallel_for(planes, plane_grain(hw), [&](int64_t b, int64_t e) {
      std::vector<Acc> buf(static_cast<size_t>(hw));
      for (int64_t pl = b; pl < e; ++pl) {
        std::fill(buf.begin(), buf.end(), Acc(0));
        const T* g = gp + pl * ohw;
        const int64_t* idx = ip + pl * ohw;
        for (int64_t i = 0; i < ohw; ++i) {
          MANTISSA_ASSERT(idx[i] >= 0 && idx[i] < hw, "max_pool2d backward: saved index ", idx[i], " outside [0, ", hw,
                          ")");
          buf[idx[i]] += static_cast<Acc>(load(g[i]));
        }
        T* dst = xp + pl * hw;
        for (int64_t i = 0; i < hw; ++i) dst[i] = store<T>(buf[i]);
      }
    });
  });
}

// The CPU scatter adds each input's gradients in the windows' row-major order already, so the
// parameters only matter to the CUDA gather.
void max_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_x, "max_pool2d backward", cuda::max_pool2d_backward(grad_x, grad_out, indices, p));
  (void)p;
  max_pool2d_backward(grad_x, grad_out, indices);
}

void avg_pool2d_forward(const Tensor& out, const Tensor& x, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(out, "avg_pool2d", cuda::avg_pool2d_forward(out, x, p));
  check_same_device("avg_pool2d", out, {&x});
  const int64_t h = x.size(2), w = x.size(3);
  average_forward(out, x, [&](int64_t oh, int64_t ow) { return avg_window(oh, ow, h, w, p); });
}

void avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_x, "avg_pool2d backward", cuda::avg_pool2d_backward(grad_x, grad_out, p));
  check_same_device("avg_pool2d backward", grad_x, {&grad_out});
  const int64_t h = grad_x.size(2), w = grad_x.size(3);
  average_backward(grad_x, grad_out, [&](int64_t oh, int64_t ow) { return avg_window(oh, ow, h, w, p); });
}

void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  MANTISSA_CUDA_DISPATCH(out, "adaptive_avg_pool2d", cuda::adaptive_avg_pool2d_forward(out, x));
  check_same_device("adaptive_avg_pool2d", out, {&x});
  const int64_t h = x.size(2), w = x.size(3), ho = out.size(2), wo = out.size(3);
  average_forward(out, x, [&](int64_t oh, int64_t ow) { return adaptive_window(oh, ow, h, w, ho, wo); });
}

void adaptive_avg_pool2d_backward(const Tensor& grad_x, const Tensor& grad_out) {
  MANTISSA_CUDA_DISPATCH(grad_x, "adaptive_avg_pool2d backward", cuda::adaptive_avg_pool2d_backward(grad_x, grad_out));
  check_same_device("adaptive_avg_pool2d backward", grad_x, {&grad_out});
  const int64_t h = grad_x.size(2), w = grad_x.size(3), ho = grad_out.size(2), wo = grad_out.size(3);
  average_backward(grad_x, grad_out, [&](int64_t oh, int64_t ow) { return adaptive_window(oh, ow, h, w, ho, wo); });
}

}  // namespace mantissa::kernels
