// CPU int8 linear and conv2d with fbgemm-style requantization (see qgemm.h): oneDNN int8 matmul /
// convolution primitives (VNNI where the CPU has it) with per-channel output scales and src / dst
// zero points baked into cached primitives, and reference loops with exact int32 accumulation.
// Also the entry points' checks (CUDA tensors go to qgemm.cu after them) and QWeightCache.
#include "core/kernels/qgemm.h"

#include <math.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "core/kernels/loops.h"
#ifdef MANTISSA_HAVE_DNNL
#include "core/kernels/dnnl_context.h"
#endif

namespace mantissa::kernels {

// ---- QWeightCache ------------------------------------------------------------------------------

struct QWeightCache::State {
  std::mutex mutex;
  // The weight tensor the packed forms were made from. The storage is held weakly: the cache
  // never keeps a dropped weight alive, and an expired pointer means the address may have been
  // reused by another allocation, so it never matches.
  std::weak_ptr<Storage> storage;
  int64_t offset = -1;
  uint32_t version = 0;
  Shape sizes;
  uint64_t packs = 0, reuses = 0;
#ifdef MANTISSA_HAVE_DNNL
  // Packed forms of those weights, one per primitive weight layout (most recently made last).
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed;
#endif

  bool holds(const Tensor& w) const {
    const StoragePtr held = storage.lock();
    return held && held.get() == w.storage().get() && offset == w.storage_offset() && version == w.version() &&
           sizes == w.sizes();
  }
  void track(const Tensor& w) {
    storage = w.storage();
    offset = w.storage_offset();
    version = w.version();
    sizes = w.sizes();
#ifdef MANTISSA_HAVE_DNNL
    packed.clear();
#endif
  }
};

QWeightCache::QWeightCache() : state(std::make_unique<State>()) {}
QWeightCache::~QWeightCache() = default;

void QWeightCache::clear() {
  std::lock_guard<std::mutex> lock(state->mutex);
  state->storage.reset();
  state->offset = -1;
  state->sizes.clear();
#ifdef MANTISSA_HAVE_DNNL
  state->packed.clear();
#endif
}

uint64_t QWeightCache::packs() const {
  std::lock_guard<std::mutex> lock(state->mutex);
  return state->packs;
}

uint64_t QWeightCache::reuses() const {
  std::lock_guard<std::mutex> lock(state->mutex);
  return state->reuses;
}

namespace {

struct OutRange {
  int32_t lo, hi;
};
OutRange out_range(DType t) { return t == DType::U8 ? OutRange{0, 255} : OutRange{-128, 127}; }

// One output code: F32 product, round half to even, then the zero point, then clamp (in float
// first, so a huge product never overflows the integer conversion).
// The dot product is exact in int32 (check_depth); the bias joins it saturated to int32, so a
// huge bias clamps instead of wrapping.
inline int32_t requant_value(int32_t dot, int32_t bias, float m, int32_t zp, OutRange r) {
  const int64_t wide = static_cast<int64_t>(dot) + bias;
  const int32_t acc = static_cast<int32_t>(std::clamp<int64_t>(wide, std::numeric_limits<int32_t>::min(),
                                                               std::numeric_limits<int32_t>::max()));
  float v = rintf(static_cast<float>(acc) * m);
  v = fmaxf(v, static_cast<float>(r.lo - zp));
  v = fminf(v, static_cast<float>(r.hi - zp));
  return static_cast<int32_t>(v) + zp;
}

// out, x, w (and bias) contiguous on one device (out's: the CPU or a CUDA device); the weight
// scales on the CPU or that device. Returns the weight scales on the CPU (they are read there).
void check_operands(const char* op, const Tensor& out, const Tensor& x, const Tensor& w) {
  for (const Tensor* t : {&out, &x, &w}) {
    MANTISSA_CHECK(t->defined(), op, ": an operand is undefined");
    MANTISSA_CHECK(t->device() == out.device(), op, ": every operand must be on the output's device ", out.device(),
                   ", got one on ", t->device());
    MANTISSA_CHECK(t->is_contiguous(), op, ": operands must be contiguous, got strides of shape ",
                   shape_str(t->sizes()));
  }
  MANTISSA_CHECK(out.device().is_cpu() || out.device().is_cuda(), op, ": int8 kernels run on the CPU or CUDA, got ",
                 out.device());
}

Tensor host_scales(const char* op, const Tensor& out, const Tensor& ws, int64_t channels) {
  MANTISSA_CHECK(ws.defined() && (ws.device().is_cpu() || ws.device() == out.device()) && ws.dtype() == DType::F32 &&
                     ws.dim() == 1 && ws.numel() == channels && ws.is_contiguous(),
                 op, ": weight scales must be a contiguous F32 tensor of shape [", channels, "] on the CPU or ",
                 out.device(), ", got ", ws.defined() ? dtype_name(ws.dtype()) : "undefined", " ",
                 ws.defined() ? shape_str(ws.sizes()) : "", ws.defined() ? " on " : "",
                 ws.defined() ? ws.device().str() : "");
  return ws.device().is_cpu() ? ws : ws.to(Device());
}

Tensor check_common(const char* op, const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                    const Requant& r, int64_t channels) {
  check_operands(op, out, x, w);
  MANTISSA_CHECK(x.dtype() == DType::U8 || x.dtype() == DType::I8, op, ": activations must be U8 or I8 codes, got ",
                 x.dtype());
  MANTISSA_CHECK(w.dtype() == DType::I8, op, ": weights must be I8 codes, got ", w.dtype());
  MANTISSA_CHECK(out.dtype() == DType::U8 || out.dtype() == DType::I8, op, ": the output must be U8 or I8, got ",
                 out.dtype());
  if (bias.defined()) {
    MANTISSA_CHECK(bias.device() == out.device() && bias.is_contiguous() && bias.dtype() == DType::I32 &&
                       bias.dim() == 1 && bias.numel() == channels,
                   op, ": bias must be a contiguous I32 tensor of shape [", channels, "] on ", out.device(), ", got ",
                   bias.dtype(), " ", shape_str(bias.sizes()), " on ", bias.device());
  }
  const Tensor ws_host = host_scales(op, out, r.w_scale, channels);
  MANTISSA_CHECK(std::isfinite(r.x_scale) && r.x_scale > 0 && std::isfinite(r.out_scale) && r.out_scale > 0, op,
                 ": scales must be positive and finite, got x_scale ", r.x_scale, " out_scale ", r.out_scale);
  const OutRange xr = out_range(x.dtype()), orr = out_range(out.dtype());
  MANTISSA_CHECK(r.x_zp >= xr.lo && r.x_zp <= xr.hi, op, ": input zero point ", r.x_zp, " is outside [", xr.lo, ", ",
                 xr.hi, "] of ", x.dtype());
  MANTISSA_CHECK(r.out_zp >= orr.lo && r.out_zp <= orr.hi, op, ": output zero point ", r.out_zp, " is outside [",
                 orr.lo, ", ", orr.hi, "] of ", out.dtype());
  const float* ws = ws_host.data<float>();
  for (int64_t c = 0; c < channels; ++c)
    MANTISSA_CHECK(std::isfinite(ws[c]) && ws[c] > 0, op, ": weight scale ", c, " must be positive and finite, got ",
                   ws[c]);
  return ws_host;
}

// |q_x - x_zp| <= 255 and |q_w| <= 128: a dot product of depth `depth` stays inside int32 when
// depth * 255 * 128 (+ the bias) does; deeper reductions are refused rather than wrapped.
void check_depth(const char* op, int64_t depth) {
  MANTISSA_CHECK(depth <= (int64_t{1} << 16), op, ": reduction depth ", depth,
                 " is too deep for exact int32 accumulation (at most 65536)");
}

template <typename X, typename O>
void qlinear_ref(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r,
                 const float* m) {
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const X* xp = x.data<X>();
  const int8_t* wp = w.data<int8_t>();
  const int32_t* bp = bias.defined() ? bias.data<int32_t>() : nullptr;
  O* op = out.data<O>();
  const OutRange range = out_range(out.dtype());
  parallel_for(n * c, std::max<int64_t>(1, 4096 / std::max<int64_t>(k, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t row = i / c, col = i % c;
      const X* xr = xp + row * k;
      const int8_t* wr = wp + col * k;
      int32_t acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += (static_cast<int32_t>(xr[j]) - r.x_zp) * static_cast<int32_t>(wr[j]);
      op[i] = static_cast<O>(requant_value(acc, bp ? bp[col] : 0, m[col], r.out_zp, range));
    }
  });
}

template <typename X, typename O>
void qconv_ref(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
               const Requant& r, const float* m) {
  const int64_t n = x.size(0), ci = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t o = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3);
  const int64_t ho = out.size(2), wo = out.size(3), og = o / p.groups;
  const X* xp = x.data<X>();
  const int8_t* wp = w.data<int8_t>();
  const int32_t* bp = bias.defined() ? bias.data<int32_t>() : nullptr;
  O* outp = out.data<O>();
  const OutRange range = out_range(out.dtype());
  parallel_for(n * o, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t img = i / o, oc = i % o, g = oc / og;
      const int8_t* wo_p = wp + oc * cg * kh * kw;
      const X* xg = xp + (img * ci + g * cg) * h * wd;
      O* dst = outp + i * ho * wo;
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          int32_t acc = 0;
          for (int64_t c = 0; c < cg; ++c) {
            for (int64_t ky = 0; ky < kh; ++ky) {
              const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dilation_h;
              if (iy < 0 || iy >= h) continue;  // padding: the real value 0, contributes nothing
              for (int64_t kx = 0; kx < kw; ++kx) {
                const int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dilation_w;
                if (ix < 0 || ix >= wd) continue;
                acc += (static_cast<int32_t>(xg[(c * h + iy) * wd + ix]) - r.x_zp) *
                       static_cast<int32_t>(wo_p[(c * kh + ky) * kw + kx]);
              }
            }
          }
          dst[oy * wo + ox] = static_cast<O>(requant_value(acc, bp ? bp[oc] : 0, m[oc], r.out_zp, range));
        }
      }
    }
  });
}

template <typename F>
void visit_codes(DType x, DType out, const F& f) {
  if (x == DType::U8) {
    if (out == DType::U8) f.template operator()<uint8_t, uint8_t>();
    else f.template operator()<uint8_t, int8_t>();
  } else {
    if (out == DType::U8) f.template operator()<int8_t, uint8_t>();
    else f.template operator()<int8_t, int8_t>();
  }
}

#ifdef MANTISSA_HAVE_DNNL
using dnnl::memory;

memory::data_type code_type(DType t) { return t == DType::U8 ? memory::data_type::u8 : memory::data_type::s8; }

// Everything baked into a primitive: shapes, dtypes, zero points and the multipliers' bits.
dnnl_ctx::Key requant_key(std::vector<int64_t> key, const Tensor& x, const Tensor& out, bool bias, const Requant& r,
                          const std::vector<float>& m) {
  key.insert(key.end(), {static_cast<int64_t>(x.dtype()), static_cast<int64_t>(out.dtype()), bias, r.x_zp, r.out_zp});
  for (float v : m) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    key.push_back(bits);
  }
  return key;
}

dnnl::primitive_attr requant_attr(const Requant& r, const std::vector<float>& m) {
  dnnl::primitive_attr attr;
  // Mask bit 1: one scale per output channel (dim 1 of the [N, C] / [N, O, H, W] destination).
  attr.set_output_scales(1 << 1, m);
  attr.set_zero_points(DNNL_ARG_SRC, 0, {r.x_zp});
  attr.set_zero_points(DNNL_ARG_DST, 0, {r.out_zp});
  return attr;
}


// A plain user layout and the primitive's preferred one, with the reorder between them (the
// weights' reorder also computes the src-zero-point compensation oneDNN keeps beside them).
struct Port {
  memory::desc user, prim;
  std::optional<dnnl::reorder> reorder;
};
Port make_port(const memory::desc& user, const memory::desc& prim, bool to_prim) {
  Port port{user, prim, std::nullopt};
  if (user != prim) {
    auto& eng = dnnl_ctx::engine();
    port.reorder = to_prim ? dnnl::reorder(dnnl::reorder::primitive_desc(eng, user, eng, prim))
                           : dnnl::reorder(dnnl::reorder::primitive_desc(eng, prim, eng, user));
  }
  return port;
}

// The weights in the primitive's layout: w itself when that is its plain layout, else a reorder
// into fresh memory, or with a cache the packed form it keeps for these weights and this
// layout (made on a miss). The cached memory is only ever read by the primitives.
memory packed_weights(const Port& port, const Tensor& w, QWeightCache* cache) {
  auto& eng = dnnl_ctx::engine();
  auto& strm = dnnl_ctx::stream();
  memory user(port.user, eng, w.data_ptr());
  if (!port.reorder) return user;
  auto pack = [&] {
    memory packed(port.prim, eng);
    port.reorder->execute(strm, user, packed);
    strm.wait();
    return packed;
  };
  if (cache == nullptr) return pack();
  QWeightCache::State& st = *cache->state;
  std::lock_guard<std::mutex> lock(st.mutex);
  if (!st.holds(w)) st.track(w);
  for (const auto& [desc, mem] : st.packed) {
    if (desc == port.prim) {
      ++st.reuses;
      return mem;
    }
  }
  memory packed = pack();
  ++st.packs;
  // A layer normally sees one layout; a few more cover alternating batch shapes whose primitives
  // prefer different blockings.
  constexpr size_t kMaxLayouts = 4;
  if (st.packed.size() >= kMaxLayouts) st.packed.erase(st.packed.begin());
  st.packed.emplace_back(port.prim, packed);
  return packed;
}

struct QMatmul {
  dnnl::matmul prim;
  memory::desc src, bias, dst;
  Port wei;
};

void qlinear_dnnl(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r,
                  const std::vector<float>& m, QWeightCache* wcache) {
  static dnnl_ctx::Cache<QMatmul> cache;
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const bool with_bias = bias.defined();
  auto prim = cache.get(requant_key({0, n, k, c}, x, out, with_bias, r, m), [&] {
    using tag = memory::format_tag;
    QMatmul q;
    q.src = memory::desc({n, k}, code_type(x.dtype()), tag::ab);
    const memory::desc wei({k, c}, memory::data_type::s8, tag::ba);  // w [C, K] read as its transpose
    q.bias = memory::desc({1, c}, memory::data_type::s32, tag::ab);
    q.dst = memory::desc({n, c}, code_type(out.dtype()), tag::ab);
    // The weights in the primitive's blocked layout: one reorder (per call, or once per layer
    // with a QWeightCache) instead of the kernel repacking the plain [K, C] operand for every
    // block of rows (measured ~2x faster at 256x784x512).
    const memory::desc wei_any({k, c}, memory::data_type::s8, tag::any);
    auto desc = with_bias ? dnnl::matmul::desc(q.src, wei_any, q.bias, q.dst) : dnnl::matmul::desc(q.src, wei_any, q.dst);
    dnnl::matmul::primitive_desc pd(desc, requant_attr(r, m), dnnl_ctx::engine());
    q.prim = dnnl::matmul(pd);
    q.wei = make_port(wei, pd.weights_desc(), true);
    return q;
  });
  auto& eng = dnnl_ctx::engine();
  auto& strm = dnnl_ctx::stream();
  const memory wm = packed_weights(prim->wei, w, wcache);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(prim->src, eng, x.data_ptr())},
                                       {DNNL_ARG_WEIGHTS, wm},
                                       {DNNL_ARG_DST, memory(prim->dst, eng, out.data_ptr())}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, memory(prim->bias, eng, bias.data_ptr()));
  prim->prim.execute(strm, args);
  strm.wait();
}

struct QConv {
  dnnl::convolution_forward prim;
  Port src, wei, dst;
  memory::desc bias;
};

void qconv_dnnl(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
                const Requant& r, const std::vector<float>& m, QWeightCache* wcache) {
  static dnnl_ctx::Cache<QConv> cache;
  const int64_t n = x.size(0), ci = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t o = w.size(0), cg = w.size(1), kh = w.size(2), kw = w.size(3), ho = out.size(2), wo = out.size(3);
  const bool with_bias = bias.defined();
  const dnnl_ctx::Key geometry{1,       n,       ci,      h,       wd,          o,           kh,        kw,
                               p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w, p.groups};
  auto prim = cache.get(requant_key(geometry, x, out, with_bias, r, m), [&] {
    using namespace dnnl;
    using tag = memory::format_tag;
    const memory::desc src({n, ci, h, wd}, code_type(x.dtype()), tag::nchw);
    const memory::desc wei = p.groups > 1
                                 ? memory::desc({p.groups, o / p.groups, cg, kh, kw}, memory::data_type::s8, tag::goihw)
                                 : memory::desc({o, cg, kh, kw}, memory::data_type::s8, tag::oihw);
    const memory::desc dst({n, o, ho, wo}, code_type(out.dtype()), tag::nchw);
    const memory::desc bias_d({o}, memory::data_type::s32, tag::x);
    auto any = [](const memory::desc& d) { return memory::desc(d.dims(), d.data_type(), tag::any); };
    const memory::dims strides{p.stride_h, p.stride_w}, dilates{p.dilation_h - 1, p.dilation_w - 1},
        pad{p.pad_h, p.pad_w};
    auto desc = with_bias ? convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct,
                                                      any(src), any(wei), bias_d, any(dst), strides, dilates, pad, pad)
                          : convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct,
                                                      any(src), any(wei), any(dst), strides, dilates, pad, pad);
    convolution_forward::primitive_desc pd(desc, requant_attr(r, m), dnnl_ctx::engine());
    return QConv{convolution_forward(pd), make_port(src, pd.src_desc(), true), make_port(wei, pd.weights_desc(), true),
                 make_port(dst, pd.dst_desc(), false), bias_d};
  });
  auto& eng = dnnl_ctx::engine();
  auto& strm = dnnl_ctx::stream();
  auto read = [&](const Port& port, const Tensor& t) {
    memory user(port.user, eng, t.data_ptr());
    if (!port.reorder) return user;
    memory mem(port.prim, eng);
    port.reorder->execute(strm, user, mem);
    return mem;
  };
  memory dst = prim->dst.reorder ? memory(prim->dst.prim, eng) : memory(prim->dst.user, eng, out.data_ptr());
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, read(prim->src, x)}, {DNNL_ARG_WEIGHTS, packed_weights(prim->wei, w, wcache)}, {DNNL_ARG_DST, dst}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, memory(prim->bias, eng, bias.data_ptr()));
  prim->prim.execute(strm, args);
  if (prim->dst.reorder) {
    memory user(prim->dst.user, eng, out.data_ptr());
    prim->dst.reorder->execute(strm, dst, user);
  }
  strm.wait();
}
#endif  // MANTISSA_HAVE_DNNL

std::vector<float> multipliers(const Requant& r) {
  const float* ws = r.w_scale.data<float>();
  std::vector<float> m(static_cast<size_t>(r.w_scale.numel()));
  // Two F32 roundings in this order, as PyTorch's quantized linear / conv compute
  // act_times_w_scale = x_scale * w_scale[c], then act_times_w_scale / out_scale.
  for (size_t c = 0; c < m.size(); ++c) m[c] = (r.x_scale * ws[c]) / r.out_scale;
  return m;
}

}  // namespace

Tensor requant_multipliers(const Requant& r) {
  MANTISSA_CHECK(r.w_scale.defined() && r.w_scale.dtype() == DType::F32 && r.w_scale.device().is_cpu() &&
                     r.w_scale.is_contiguous(),
                 "requant_multipliers: weight scales must be a contiguous CPU F32 tensor");
  const std::vector<float> m = multipliers(r);
  Tensor t = empty({static_cast<int64_t>(m.size())}, TensorOptions(DType::F32));
  std::memcpy(t.data_ptr(), m.data(), m.size() * sizeof(float));
  return t;
}

void qlinear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r_in,
             QGemmImpl impl, QWeightCache* cache) {
  constexpr const char* op = "qlinear";
  MANTISSA_CHECK(x.defined() && w.defined() && out.defined(), op, ": an operand is undefined");
  MANTISSA_CHECK(x.dim() == 2 && w.dim() == 2 && out.dim() == 2 && x.size(1) == w.size(1) &&
                     out.size(0) == x.size(0) && out.size(1) == w.size(0),
                 op, ": expected x [N, K], w [C, K], out [N, C], got x ", shape_str(x.sizes()), ", w ",
                 shape_str(w.sizes()), ", out ", shape_str(out.sizes()));
  Requant r = r_in;
  r.w_scale = check_common(op, out, x, w, bias, r_in, w.size(0));
  check_depth(op, x.size(1));
  if (out.numel() == 0) return;
  if (out.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::qlinear(out, x, w, bias, r);
#else
    MANTISSA_ERROR(op, ": ", out.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  const std::vector<float> m = multipliers(r);
#ifdef MANTISSA_HAVE_DNNL
  if (impl == QGemmImpl::Auto && x.size(1) > 0) return qlinear_dnnl(out, x, w, bias, r, m, cache);
#endif
  (void)cache;
  (void)impl;
  visit_codes(x.dtype(), out.dtype(),
              [&]<typename X, typename O>() { qlinear_ref<X, O>(out, x, w, bias, r, m.data()); });
}

void qconv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
             const Requant& r_in, QGemmImpl impl, QWeightCache* cache) {
  constexpr const char* op = "qconv2d";
  MANTISSA_CHECK(x.defined() && w.defined() && out.defined(), op, ": an operand is undefined");
  MANTISSA_CHECK(x.dim() == 4 && w.dim() == 4 && out.dim() == 4, op,
                 ": expected 4-d x [N, C, H, W], w [O, C/groups, kh, kw], out [N, O, Ho, Wo], got x ",
                 shape_str(x.sizes()), ", w ", shape_str(w.sizes()), ", out ", shape_str(out.sizes()));
  MANTISSA_CHECK(p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 &&
                     p.pad_h >= 0 && p.pad_w >= 0,
                 op, ": groups, stride and dilation must be >= 1 and padding >= 0");
  MANTISSA_CHECK(x.size(1) % p.groups == 0 && w.size(0) % p.groups == 0 && w.size(1) * p.groups == x.size(1), op,
                 ": ", p.groups, " groups do not fit x ", shape_str(x.sizes()), " and w ", shape_str(w.sizes()));
  const int64_t ho = (x.size(2) + 2 * p.pad_h - p.dilation_h * (w.size(2) - 1) - 1) / p.stride_h + 1;
  const int64_t wo = (x.size(3) + 2 * p.pad_w - p.dilation_w * (w.size(3) - 1) - 1) / p.stride_w + 1;
  MANTISSA_CHECK(ho >= 1 && wo >= 1 && out.size(0) == x.size(0) && out.size(1) == w.size(0) && out.size(2) == ho &&
                     out.size(3) == wo,
                 op, ": expected out [", x.size(0), ", ", w.size(0), ", ", ho, ", ", wo, "], got ",
                 shape_str(out.sizes()));
  Requant r = r_in;
  r.w_scale = check_common(op, out, x, w, bias, r_in, w.size(0));
  check_depth(op, w.size(1) * w.size(2) * w.size(3));
  if (out.numel() == 0) return;
  if (out.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::qconv2d(out, x, w, bias, p, r);
#else
    MANTISSA_ERROR(op, ": ", out.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  const std::vector<float> m = multipliers(r);
#ifdef MANTISSA_HAVE_DNNL
  if (impl == QGemmImpl::Auto) return qconv_dnnl(out, x, w, bias, p, r, m, cache);
#endif
  (void)cache;
  (void)impl;
  visit_codes(x.dtype(), out.dtype(),
              [&]<typename X, typename O>() { qconv_ref<X, O>(out, x, w, bias, p, r, m.data()); });
}


// ---- dynamic quantization: int32 accumulation dequantized to F32 ------------------------------

namespace {

// out = float(acc) * m[c] + bias[c]: the product rounded first, then the add (written as two
// statements so the compiler cannot contract them into an FMA the oneDNN path does not do).
inline float dequant_value(int32_t acc, float m, float b) {
  const float prod = static_cast<float>(acc) * m;
  volatile float keep = prod;  // blocks contraction across the two roundings
  return keep + b;
}

template <typename X>
void qlinear_dequant_ref(const Tensor& out, const Tensor& x, const Tensor& w, const float* bias, int32_t x_zp,
                         const float* m) {
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const X* xp = x.data<X>();
  const int8_t* wp = w.data<int8_t>();
  float* op = out.data<float>();
  parallel_for(n * c, std::max<int64_t>(1, 4096 / std::max<int64_t>(k, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t row = i / c, col = i % c;
      const X* xr = xp + row * k;
      const int8_t* wr = wp + col * k;
      int32_t acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += (static_cast<int32_t>(xr[j]) - x_zp) * static_cast<int32_t>(wr[j]);
      op[i] = dequant_value(acc, m[col], bias ? bias[col] : 0.0f);
    }
  });
}

#ifdef MANTISSA_HAVE_DNNL
struct QMatmulF32 {
  dnnl::matmul prim;
  dnnl::memory::desc src, dst, scales, zp;
  Port wei;
};

// The int8 matmul with an F32 destination. Scales and the source zero point are run-time
// arguments, so one primitive serves every batch of a shape. The bias is not handed to oneDNN
// (oneDNN 2.x adds an int8 matmul's bias before the output scale); it is added afterwards in F32.
void qlinear_dequant_dnnl(const Tensor& out, const Tensor& x, const Tensor& w, int32_t x_zp,
                          const std::vector<float>& m, QWeightCache* wcache) {
  static dnnl_ctx::Cache<QMatmulF32> cache;
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  auto prim = cache.get({2, n, k, c, static_cast<int64_t>(x.dtype())}, [&] {
    using dnnl::memory;
    using tag = memory::format_tag;
    QMatmulF32 q;
    q.src = memory::desc({n, k}, code_type(x.dtype()), tag::ab);
    const memory::desc wei({k, c}, memory::data_type::s8, tag::ba);  // w [C, K] read as its transpose
    const memory::desc wei_any({k, c}, memory::data_type::s8, tag::any);
    q.dst = memory::desc({n, c}, memory::data_type::f32, tag::ab);
    q.scales = memory::desc({c}, memory::data_type::f32, tag::x);
    q.zp = memory::desc({1}, memory::data_type::s32, tag::x);
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
    attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(q.src, wei_any, q.dst), attr, dnnl_ctx::engine());
    q.prim = dnnl::matmul(pd);
    q.wei = make_port(wei, pd.weights_desc(), true);
    return q;
  });
  auto& eng = dnnl_ctx::engine();
  auto& strm = dnnl_ctx::stream();
  const dnnl::memory wm = packed_weights(prim->wei, w, wcache);
  int32_t zp = x_zp;
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, dnnl::memory(prim->src, eng, x.data_ptr())},
      {DNNL_ARG_WEIGHTS, wm},
      {DNNL_ARG_DST, dnnl::memory(prim->dst, eng, out.data_ptr())},
      {DNNL_ARG_ATTR_OUTPUT_SCALES, dnnl::memory(prim->scales, eng, const_cast<float*>(m.data()))},
      {DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, dnnl::memory(prim->zp, eng, &zp)}};
  prim->prim.execute(strm, args);
  strm.wait();
}
#endif  // MANTISSA_HAVE_DNNL

}  // namespace

void qlinear_dequant(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, float x_scale,
                     int32_t x_zp, const Tensor& w_scale_in, QGemmImpl impl, QWeightCache* cache) {
  constexpr const char* op = "qlinear_dequant";
  check_operands(op, out, x, w);
  MANTISSA_CHECK(x.dim() == 2 && w.dim() == 2 && out.dim() == 2 && x.size(1) == w.size(1) &&
                     out.size(0) == x.size(0) && out.size(1) == w.size(0),
                 op, ": expected x [N, K], w [C, K], out [N, C], got x ", shape_str(x.sizes()), ", w ",
                 shape_str(w.sizes()), ", out ", shape_str(out.sizes()));
  MANTISSA_CHECK(x.dtype() == DType::U8 || x.dtype() == DType::I8, op, ": activations must be U8 or I8 codes, got ",
                 x.dtype());
  MANTISSA_CHECK(w.dtype() == DType::I8, op, ": weights must be I8 codes, got ", w.dtype());
  MANTISSA_CHECK(out.dtype() == DType::F32, op, ": the output must be F32, got ", out.dtype());
  const int64_t channels = w.size(0);
  const Tensor w_scale = host_scales(op, out, w_scale_in, channels);
  if (bias.defined()) {
    MANTISSA_CHECK(bias.device() == out.device() && bias.is_contiguous() && bias.dtype() == DType::F32 &&
                       bias.dim() == 1 && bias.numel() == channels,
                   op, ": bias must be a contiguous F32 tensor of shape [", channels, "] on ", out.device(), ", got ",
                   bias.dtype(), " ", shape_str(bias.sizes()), " on ", bias.device());
  }
  MANTISSA_CHECK(std::isfinite(x_scale) && x_scale > 0, op, ": x_scale must be positive and finite, got ", x_scale);
  const OutRange xr = out_range(x.dtype());
  MANTISSA_CHECK(x_zp >= xr.lo && x_zp <= xr.hi, op, ": input zero point ", x_zp, " is outside [", xr.lo, ", ", xr.hi,
                 "] of ", x.dtype());
  const float* ws = w_scale.data<float>();
  std::vector<float> m(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) {
    MANTISSA_CHECK(std::isfinite(ws[c]) && ws[c] > 0, op, ": weight scale ", c, " must be positive and finite, got ",
                   ws[c]);
    m[static_cast<size_t>(c)] = x_scale * ws[c];  // PyTorch's act_times_w_scale, one F32 rounding
  }
  check_depth(op, x.size(1));
  if (out.numel() == 0) return;
  if (out.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::qlinear_dequant(out, x, w, bias, x_scale, x_zp, w_scale);
#else
    MANTISSA_ERROR(op, ": ", out.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
#ifdef MANTISSA_HAVE_DNNL
  if (impl == QGemmImpl::Auto && x.size(1) > 0) {
    qlinear_dequant_dnnl(out, x, w, x_zp, m, cache);
    if (bp) {
      float* op_ = out.data<float>();
      const int64_t n = out.size(0);
      parallel_for(n, std::max<int64_t>(1, 16384 / channels), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t c = 0; c < channels; ++c) op_[i * channels + c] += bp[c];
      });
    }
    return;
  }
#endif
  (void)impl;
  (void)cache;
  if (x.dtype() == DType::U8) qlinear_dequant_ref<uint8_t>(out, x, w, bp, x_zp, m.data());
  else qlinear_dequant_ref<int8_t>(out, x, w, bp, x_zp, m.data());
}

}  // namespace mantissa::kernels
