// CPU 2-D convolution kernels (see conv.h; CUDA tensors go to conv.cu): oneDNN forward /
// backward-data / backward-weights primitives for F32 and BF16 (F32 accumulation, results
// rounded once), im2col + reference GEMM for F64 and for builds without oneDNN, and F16
// computed in F32 on the F16 values.
#include "core/kernels/conv.h"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <type_traits>
#include <vector>

#include "core/kernels/copy.h"
#include "core/kernels/cpu_allocator.h"
#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/loops.h"
#include "core/kernels/matmul.h"
#ifdef MANTISSA_HAVE_DNNL
#include "core/kernels/dnnl_context.h"
#endif

namespace mantissa::kernels {

namespace {

struct Geometry {
  int64_t n, c, h, w, o, kh, kw, ho, wo, groups, cg, og;
  int64_t ckk() const { return cg * kh * kw; }
  int64_t hw() const { return ho * wo; }
};

Geometry geometry(const Shape& x, const Shape& w, const Shape& out, const Conv2dParams& p) {
  MANTISSA_ASSERT(x.size() == 4 && w.size() == 4 && out.size() == 4 && p.groups >= 1, "conv2d kernel shapes");
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3], out[2], out[3], p.groups, x[1] / p.groups, w[0] / p.groups};
}

Tensor dense(const Tensor& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()));
  copy(c, t);
  return c;
}

Tensor to_f32(const Tensor& t) {
  if (!t.defined()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(DType::F32));
  copy(c, t);
  return c;
}

bool computes_in_f32(DType t) {
#ifdef MANTISSA_HAVE_DNNL
  return t == DType::F16;
#else
  return t == DType::F16 || t == DType::BF16;
#endif
}

// ---- reference path: im2col + GEMM -----------------------------------------------------------

// A 1x1, stride-1, unpadded convolution reads the image itself as the column matrix.
bool is_pointwise(const Geometry& g, const Conv2dParams& p) {
  return g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
}

// col[(c, ki, kj), (oh, ow)] = x[c, oh*s - pad + ki*d, ow*s - pad + kj*d] (0 in the padding),
// for one image and one group.
template <typename T>
void im2col(const T* x, T* col, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.cg; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        T* dst = col + ((c * g.kh + ki) * g.kw + kj) * g.hw();
        for (int64_t oh = 0; oh < g.ho; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + ki * p.dilation_h;
          T* d = dst + oh * g.wo;
          if (ih < 0 || ih >= g.h) {
            for (int64_t ow = 0; ow < g.wo; ++ow) d[ow] = T(0);
            continue;
          }
          const T* src = x + (c * g.h + ih) * g.w;
          for (int64_t ow = 0; ow < g.wo; ++ow) {
            const int64_t iw = ow * p.stride_w - p.pad_w + kj * p.dilation_w;
            d[ow] = (iw >= 0 && iw < g.w) ? src[iw] : T(0);
          }
        }
      }
    }
  }
}

// The adjoint of im2col: x += scatter(col).
template <typename T>
void col2im(const T* col, T* x, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.cg; ++c) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* src = col + ((c * g.kh + ki) * g.kw + kj) * g.hw();
        for (int64_t oh = 0; oh < g.ho; ++oh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + ki * p.dilation_h;
          if (ih < 0 || ih >= g.h) continue;
          T* dst = x + (c * g.h + ih) * g.w;
          const T* s = src + oh * g.wo;
          for (int64_t ow = 0; ow < g.wo; ++ow) {
            const int64_t iw = ow * p.stride_w - p.pad_w + kj * p.dilation_w;
            if (iw >= 0 && iw < g.w) dst[iw] += s[ow];
          }
        }
      }
    }
  }
}

template <typename T>
void forward_reference(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Geometry& g,
                       const Conv2dParams& p) {
  const T* xp = x.data<T>();
  const T* wp = w.data<T>();
  const T* bp = bias.defined() ? bias.data<T>() : nullptr;
  T* op = out.data<T>();
  const bool pointwise = is_pointwise(g, p);
  const int64_t ckk = g.ckk(), hw = g.hw();
  // Images in parallel; a single image parallelizes inside the GEMM instead.
  parallel_for(g.n, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> col(pointwise ? 0 : static_cast<size_t>(ckk * hw));
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        const T* xg = xp + (n * g.c + grp * g.cg) * g.h * g.w;
        T* og = op + (n * g.o + grp * g.og) * hw;
        const T* colp = xg;
        if (!pointwise) {
          im2col(xg, col.data(), g, p);
          colp = col.data();
        }
        if (bp != nullptr) {
          for (int64_t oc = 0; oc < g.og; ++oc)
            for (int64_t i = 0; i < hw; ++i) og[oc * hw + i] = bp[grp * g.og + oc];
        }
        gemm_reference(g.og, hw, ckk, wp + grp * g.og * ckk, ckk, 1, colp, hw, 1, og, hw, bp != nullptr);
      }
    }
  });
}

template <typename T>
void backward_input_reference(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w, const Geometry& g,
                              const Conv2dParams& p) {
  const T* gop = grad_out.data<T>();
  const T* wp = w.data<T>();
  T* gxp = grad_x.data<T>();
  const bool pointwise = is_pointwise(g, p);
  const int64_t ckk = g.ckk(), hw = g.hw();
  if (!pointwise) fill(grad_x, 0.0);
  parallel_for(g.n, 1, [&](int64_t n0, int64_t n1) {
    std::vector<T> col(pointwise ? 0 : static_cast<size_t>(ckk * hw));
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        T* gx = gxp + (n * g.c + grp * g.cg) * g.h * g.w;
        const T* go = gop + (n * g.o + grp * g.og) * hw;
        const T* wg = wp + grp * g.og * ckk;
        // col = W_g^T grad_out_g, then scattered back onto the image.
        if (pointwise) {
          gemm_reference(ckk, hw, g.og, wg, 1, ckk, go, hw, 1, gx, hw, false);
        } else {
          gemm_reference(ckk, hw, g.og, wg, 1, ckk, go, hw, 1, col.data(), hw, false);
          col2im(col.data(), gx, g, p);
        }
      }
    }
  });
}

template <typename T>
void backward_weight_reference(const Tensor& grad_w, const Tensor& grad_out, const Tensor& x, const Geometry& g,
                               const Conv2dParams& p) {
  const T* gop = grad_out.data<T>();
  const T* xp = x.data<T>();
  T* gwp = grad_w.data<T>();
  const bool pointwise = is_pointwise(g, p);
  const int64_t ckk = g.ckk(), hw = g.hw();
  fill(grad_w, 0.0);
  std::vector<T> col(pointwise ? 0 : static_cast<size_t>(ckk * hw));
  // Images in order (the GEMM parallelizes), so the sum over the batch is deterministic.
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t grp = 0; grp < g.groups; ++grp) {
      const T* xg = xp + (n * g.c + grp * g.cg) * g.h * g.w;
      const T* colp = xg;
      if (!pointwise) {
        im2col(xg, col.data(), g, p);
        colp = col.data();
      }
      // grad_w_g += grad_out_g col^T
      gemm_reference(g.og, ckk, hw, gop + (n * g.o + grp * g.og) * hw, hw, 1, colp, 1, hw, gwp + grp * g.og * ckk,
                     ckk, true);
    }
  }
}

// grad_bias[o] = sum over images and positions of grad_out, accumulated in F32 (F64 for F64).
template <typename T>
void bias_grad(const Tensor& grad_bias, const Tensor& grad_out, const Geometry& g) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const T* gop = grad_out.data<T>();
  T* gb = grad_bias.data<T>();
  const int64_t hw = g.hw();
  parallel_for(g.o, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, g.n * hw)), [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc) {
      Acc s = 0;
      for (int64_t n = 0; n < g.n; ++n) {
        const T* row = gop + (n * g.o + oc) * hw;
        for (int64_t i = 0; i < hw; ++i) s += static_cast<Acc>(row[i]);
      }
      gb[oc] = static_cast<T>(s);
    }
  });
}

// ---- oneDNN path -------------------------------------------------------------------------------

#ifdef MANTISSA_HAVE_DNNL
using dnnl::memory;

struct Descs {
  memory::desc src, wei, bias, dst;  // the user's plain layouts
  memory::dims strides, dilates, pad_l, pad_r;
};

Descs user_descs(DType dtype, const Geometry& g, const Conv2dParams& p) {
  const auto dt = dnnl_ctx::data_type(dtype);
  using tag = memory::format_tag;
  Descs d;
  d.src = memory::desc({g.n, g.c, g.h, g.w}, dt, tag::nchw);
  d.wei = g.groups > 1 ? memory::desc({g.groups, g.og, g.cg, g.kh, g.kw}, dt, tag::goihw)
                       : memory::desc({g.o, g.cg, g.kh, g.kw}, dt, tag::oihw);
  d.bias = memory::desc({g.o}, dt, tag::x);
  d.dst = memory::desc({g.n, g.o, g.ho, g.wo}, dt, tag::nchw);
  d.strides = {p.stride_h, p.stride_w};
  d.dilates = {p.dilation_h - 1, p.dilation_w - 1};  // oneDNN counts the gaps, 0 = dense
  d.pad_l = {p.pad_h, p.pad_w};
  d.pad_r = {p.pad_h, p.pad_w};
  return d;
}

memory::desc any(const memory::desc& d) { return memory::desc(d.dims(), d.data_type(), memory::format_tag::any); }

dnnl_ctx::Key conv_key(int64_t kind, DType dtype, const Geometry& g, const Conv2dParams& p, bool bias) {
  return {kind,      static_cast<int64_t>(dtype), g.n,        g.c,        g.h,        g.w,      g.o,
          g.kh,      g.kw,                        p.stride_h, p.stride_w, p.pad_h,    p.pad_w,  p.dilation_h,
          p.dilation_w, p.groups,                 bias};
}

// A plain layout and the (possibly blocked) one a primitive chose, with the reorder between them.
struct Port {
  memory::desc user, prim;
  std::optional<dnnl::reorder> reorder;
};

Port in_port(const memory::desc& user, const memory::desc& prim) {
  Port port{user, prim, std::nullopt};
  if (user != prim) port.reorder = dnnl::reorder(dnnl::reorder::primitive_desc(dnnl_ctx::engine(), user, dnnl_ctx::engine(), prim));
  return port;
}
Port out_port(const memory::desc& user, const memory::desc& prim) {
  Port port{user, prim, std::nullopt};
  if (user != prim) port.reorder = dnnl::reorder(dnnl::reorder::primitive_desc(dnnl_ctx::engine(), prim, dnnl_ctx::engine(), user));
  return port;
}

// Buffers a call needs beyond the user's tensors (blocked copies of operands, the primitive's
// scratchpad) come from the CPU caching allocator and go back to it when the call ends: at
// CIFAR batch sizes they are hundreds of MB, and oneDNN's own malloc would hand out fresh pages
// (mmap + page faults + zeroing) on every call.
class Buffers {
 public:
  Buffers() = default;
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
  ~Buffers() {
    for (const auto& [p, n] : blocks_) cpu_free(p, n);
  }
  memory make(const memory::desc& d) {
    const size_t n = std::max<size_t>(d.get_size(), 1);
    void* p = cpu_alloc(n);
    blocks_.emplace_back(p, n);
    return memory(d, dnnl_ctx::engine(), p);
  }
  // The scratchpad argument for a primitive built with scratchpad_mode::user (none when empty).
  void add_scratchpad(std::unordered_map<int, memory>& args, const memory::desc& d) {
    if (d.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, make(d));
  }
  // Hands the block behind `m` to the caller, who frees it with cpu_free.
  std::pair<void*, size_t> release(const memory& m) {
    void* p = m.get_data_handle();
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
      if (it->first == p) {
        const auto block = *it;
        blocks_.erase(it);
        return block;
      }
    }
    MANTISSA_ASSERT(false, "conv2d: releasing a buffer this call does not own");
    return {nullptr, 0};
  }

 private:
  std::vector<std::pair<void*, size_t>> blocks_;
};

// The output gradient in the primitives' blocked layout, handed from backward-data to the
// backward-weights call that follows it for the same convolution (autograd runs them back to
// back on the same tensor): the reorder of the largest operand then happens once per step, not
// twice. Matched on the storage, address, version and layout; the entry holds the tensor, so
// its memory cannot be freed and reused under the same address while the entry lives. Dropped
// by the next forward, backward-data or backward-weights call on this thread.
struct BlockedGrad {
  Tensor source;
  const void* data = nullptr;
  uint32_t version = 0;
  memory::desc desc;
  void* block = nullptr;
  size_t nbytes = 0;

  void reset() {
    if (block != nullptr) cpu_free(block, nbytes);
    block = nullptr;
    source = Tensor();
  }
  bool matches(const Tensor& t, const memory::desc& d) const {
    return block != nullptr && source.storage() == t.storage() && data == t.data_ptr() &&
           version == t.version() && desc == d;
  }
  ~BlockedGrad() { reset(); }
};

BlockedGrad& blocked_grad() {
  thread_local BlockedGrad entry;
  return entry;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// The memory the primitive reads: the user's buffer, or a reordered copy of it.
memory read(const Port& port, const Tensor& t, Buffers& buffers) {
  memory user(port.user, dnnl_ctx::engine(), t.data_ptr());
  if (!port.reorder) return user;
  memory m = buffers.make(port.prim);
  port.reorder->execute(dnnl_ctx::stream(), user, m);
  return m;
}
// The memory the primitive writes: the user's buffer, or scratch that finish() reorders back.
memory write(const Port& port, const Tensor& t, Buffers& buffers) {
  if (!port.reorder) return memory(port.user, dnnl_ctx::engine(), t.data_ptr());
  return buffers.make(port.prim);
}
void finish(const Port& port, const memory& m, const Tensor& t) {
  if (!port.reorder) return;
  memory user(port.user, dnnl_ctx::engine(), t.data_ptr());
  port.reorder->execute(dnnl_ctx::stream(), const_cast<memory&>(m), user);
}

dnnl::convolution_forward::primitive_desc forward_pd(const Descs& d, bool bias) {
  using namespace dnnl;
  auto desc = bias ? convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, any(d.src),
                                               any(d.wei), d.bias, any(d.dst), d.strides, d.dilates, d.pad_l, d.pad_r)
                   : convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, any(d.src),
                                               any(d.wei), any(d.dst), d.strides, d.dilates, d.pad_l, d.pad_r);
  return convolution_forward::primitive_desc(desc, user_scratchpad(), dnnl_ctx::engine());
}

struct ConvFwd {
  dnnl::convolution_forward prim;
  Port src, wei, dst;
  memory::desc bias, scratchpad;
};

struct ConvBwdData {
  dnnl::convolution_backward_data prim;
  Port diff_dst, wei, diff_src;
  memory::desc scratchpad;
};

struct ConvBwdWeights {
  dnnl::convolution_backward_weights prim;
  Port src, diff_dst, diff_wei;
  memory::desc diff_bias, scratchpad;
};

void forward_dnnl(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, DType dtype,
                  const Geometry& g, const Conv2dParams& p) {
  static dnnl_ctx::Cache<ConvFwd> cache;
  const bool with_bias = bias.defined();
  auto c = cache.get(conv_key(0, dtype, g, p, with_bias), [&] {
    const Descs d = user_descs(dtype, g, p);
    auto pd = forward_pd(d, with_bias);
    return ConvFwd{dnnl::convolution_forward(pd), in_port(d.src, pd.src_desc()), in_port(d.wei, pd.weights_desc()),
                   out_port(d.dst, pd.dst_desc()), d.bias, pd.scratchpad_desc()};
  });
  blocked_grad().reset();
  Buffers buffers;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, read(c->src, x, buffers)},
                                       {DNNL_ARG_WEIGHTS, read(c->wei, w, buffers)}};
  memory dst = write(c->dst, out, buffers);
  args.emplace(DNNL_ARG_DST, dst);
  if (with_bias) args.emplace(DNNL_ARG_BIAS, memory(c->bias, dnnl_ctx::engine(), bias.data_ptr()));
  buffers.add_scratchpad(args, c->scratchpad);
  c->prim.execute(dnnl_ctx::stream(), args);
  finish(c->dst, dst, out);
  dnnl_ctx::stream().wait();
}

void backward_input_dnnl(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w, DType dtype,
                         const Geometry& g, const Conv2dParams& p) {
  static dnnl_ctx::Cache<ConvBwdData> cache;
  auto c = cache.get(conv_key(1, dtype, g, p, false), [&] {
    using namespace dnnl;
    const Descs d = user_descs(dtype, g, p);
    auto hint = forward_pd(d, false);
    convolution_backward_data::desc desc(algorithm::convolution_direct, any(d.src), any(d.wei), any(d.dst), d.strides,
                                         d.dilates, d.pad_l, d.pad_r);
    convolution_backward_data::primitive_desc pd(desc, user_scratchpad(), dnnl_ctx::engine(), hint);
    return ConvBwdData{convolution_backward_data(pd), in_port(d.dst, pd.diff_dst_desc()),
                       in_port(d.wei, pd.weights_desc()), out_port(d.src, pd.diff_src_desc()),
                       pd.scratchpad_desc()};
  });
  BlockedGrad& kept = blocked_grad();
  kept.reset();
  Buffers buffers;
  memory diff_src = write(c->diff_src, grad_x, buffers);
  const memory diff_dst = read(c->diff_dst, grad_out, buffers);
  std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, diff_dst},
                                       {DNNL_ARG_WEIGHTS, read(c->wei, w, buffers)},
                                       {DNNL_ARG_DIFF_SRC, diff_src}};
  buffers.add_scratchpad(args, c->scratchpad);
  c->prim.execute(dnnl_ctx::stream(), args);
  finish(c->diff_src, diff_src, grad_x);
  dnnl_ctx::stream().wait();
  if (c->diff_dst.reorder) {
    const auto [block, nbytes] = buffers.release(diff_dst);
    kept.source = grad_out;
    kept.data = grad_out.data_ptr();
    kept.version = grad_out.version();
    kept.desc = c->diff_dst.prim;
    kept.block = block;
    kept.nbytes = nbytes;
  }
}

void backward_weight_dnnl(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out, const Tensor& x,
                          DType dtype, const Geometry& g, const Conv2dParams& p) {
  static dnnl_ctx::Cache<ConvBwdWeights> cache;
  const bool with_bias = grad_bias.defined();
  auto c = cache.get(conv_key(2, dtype, g, p, with_bias), [&] {
    using namespace dnnl;
    const Descs d = user_descs(dtype, g, p);
    auto hint = forward_pd(d, with_bias);
    auto desc = with_bias ? convolution_backward_weights::desc(algorithm::convolution_direct, any(d.src), any(d.wei),
                                                               d.bias, any(d.dst), d.strides, d.dilates, d.pad_l,
                                                               d.pad_r)
                          : convolution_backward_weights::desc(algorithm::convolution_direct, any(d.src), any(d.wei),
                                                               any(d.dst), d.strides, d.dilates, d.pad_l, d.pad_r);
    convolution_backward_weights::primitive_desc pd(desc, user_scratchpad(), dnnl_ctx::engine(), hint);
    return ConvBwdWeights{convolution_backward_weights(pd), in_port(d.src, pd.src_desc()),
                          in_port(d.dst, pd.diff_dst_desc()), out_port(d.wei, pd.diff_weights_desc()), d.bias,
                          pd.scratchpad_desc()};
  });
  BlockedGrad& kept = blocked_grad();
  Buffers buffers;
  memory diff_wei = write(c->diff_wei, grad_w, buffers);
  const memory diff_dst = c->diff_dst.reorder && kept.matches(grad_out, c->diff_dst.prim)
                              ? memory(c->diff_dst.prim, dnnl_ctx::engine(), kept.block)
                              : read(c->diff_dst, grad_out, buffers);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, read(c->src, x, buffers)},
                                       {DNNL_ARG_DIFF_DST, diff_dst},
                                       {DNNL_ARG_DIFF_WEIGHTS, diff_wei}};
  if (with_bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(c->diff_bias, dnnl_ctx::engine(), grad_bias.data_ptr()));
  buffers.add_scratchpad(args, c->scratchpad);
  c->prim.execute(dnnl_ctx::stream(), args);
  finish(c->diff_wei, diff_wei, grad_w);
  dnnl_ctx::stream().wait();
  kept.reset();
}
#endif

constexpr DTypeSet kNativeTypes = dtype_bit(DType::F64) | dtype_bit(DType::F32) | dtype_bit(DType::BF16);

}  // namespace

void conv2d_forward(const Tensor& out, const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in,
                    const Conv2dParams& p) {
  MANTISSA_CUDA_DISPATCH(out, "conv2d", cuda::conv2d_forward(out, x_in, w_in, bias_in, p));
  check_same_device("conv2d", out, {&x_in, &w_in, &bias_in});
  const Geometry g = geometry(x_in.sizes(), w_in.sizes(), out.sizes(), p);
  MANTISSA_ASSERT(out.is_contiguous());
  if (out.numel() == 0) return;
  if (g.ckk() == 0) {
    fill(out, 0.0);
    if (bias_in.defined()) copy(out, bias_in.reshape({g.o, 1, 1}));
    return;
  }
  const DType dtype = out.dtype();
  if (computes_in_f32(dtype)) {
    Tensor o32 = empty(out.sizes(), TensorOptions(DType::F32));
    conv2d_forward(o32, to_f32(x_in), to_f32(w_in), to_f32(bias_in), p);
    copy(out, o32);
    return;
  }
  const Tensor x = dense(x_in), w = dense(w_in), bias = dense(bias_in);
  visit_dtype<kNativeTypes>(dtype, "conv2d", [&]<typename T>() {
#ifdef MANTISSA_HAVE_DNNL
    if constexpr (!std::is_same_v<T, double>) {
      forward_dnnl(out, x, w, bias, dtype, g, p);
      return;
    }
#endif
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) forward_reference<T>(out, x, w, bias, g, p);
  });
}

void conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out_in, const Tensor& w_in,
                           const Conv2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_x, "conv2d backward", cuda::conv2d_backward_input(grad_x, grad_out_in, w_in, p));
  check_same_device("conv2d backward", grad_x, {&grad_out_in, &w_in});
  const Geometry g = geometry(grad_x.sizes(), w_in.sizes(), grad_out_in.sizes(), p);
  MANTISSA_ASSERT(grad_x.is_contiguous());
  if (grad_x.numel() == 0) return;
  if (grad_out_in.numel() == 0) {
    fill(grad_x, 0.0);
    return;
  }
  const DType dtype = grad_x.dtype();
  if (computes_in_f32(dtype)) {
    Tensor gx32 = empty(grad_x.sizes(), TensorOptions(DType::F32));
    conv2d_backward_input(gx32, to_f32(grad_out_in), to_f32(w_in), p);
    copy(grad_x, gx32);
    return;
  }
  const Tensor grad_out = dense(grad_out_in), w = dense(w_in);
  visit_dtype<kNativeTypes>(dtype, "conv2d backward", [&]<typename T>() {
#ifdef MANTISSA_HAVE_DNNL
    if constexpr (!std::is_same_v<T, double>) {
      backward_input_dnnl(grad_x, grad_out, w, dtype, g, p);
      return;
    }
#endif
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      backward_input_reference<T>(grad_x, grad_out, w, g, p);
  });
}

void conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out_in,
                            const Tensor& x_in, const Conv2dParams& p) {
  MANTISSA_CUDA_DISPATCH(grad_w, "conv2d backward",
                         cuda::conv2d_backward_weight(grad_w, grad_bias, grad_out_in, x_in, p));
  check_same_device("conv2d backward", grad_w, {&grad_bias, &grad_out_in, &x_in});
  const Geometry g = geometry(x_in.sizes(), grad_w.sizes(), grad_out_in.sizes(), p);
  MANTISSA_ASSERT(grad_w.is_contiguous() && (!grad_bias.defined() || grad_bias.is_contiguous()));
  if (grad_out_in.numel() == 0 || x_in.numel() == 0) {
    fill(grad_w, 0.0);
    if (grad_bias.defined()) fill(grad_bias, 0.0);
    if (grad_bias.defined() && grad_out_in.numel() != 0) {
      // No input channels: the weight has no elements, but the bias still gets its sum.
      Tensor go64 = empty(grad_out_in.sizes(), TensorOptions(DType::F64));
      copy(go64, grad_out_in);
      Tensor gb64 = empty({g.o}, TensorOptions(DType::F64));
      bias_grad<double>(gb64, go64, g);
      copy(grad_bias, gb64);
    }
    return;
  }
  const DType dtype = grad_w.dtype();
  if (computes_in_f32(dtype)) {
    Tensor gw32 = empty(grad_w.sizes(), TensorOptions(DType::F32));
    Tensor gb32 = grad_bias.defined() ? empty(grad_bias.sizes(), TensorOptions(DType::F32)) : Tensor();
    conv2d_backward_weight(gw32, gb32, to_f32(grad_out_in), to_f32(x_in), p);
    copy(grad_w, gw32);
    if (grad_bias.defined()) copy(grad_bias, gb32);
    return;
  }
  const Tensor grad_out = dense(grad_out_in), x = dense(x_in);
  visit_dtype<kNativeTypes>(dtype, "conv2d backward", [&]<typename T>() {
#ifdef MANTISSA_HAVE_DNNL
    if constexpr (!std::is_same_v<T, double>) {
      backward_weight_dnnl(grad_w, grad_bias, grad_out, x, dtype, g, p);
      return;
    }
#endif
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      backward_weight_reference<T>(grad_w, grad_out, x, g, p);
      if (grad_bias.defined()) bias_grad<T>(grad_bias, grad_out, g);
    }
  });
}

}  // namespace mantissa::kernels
