// Matmul kernels (see matmul.h): the checked entry points (CUDA tensors go to matmul.cu), the
// oneDNN path for F32 and BF16 (F32 accumulation, output rounded once), the blocked reference
// GEMM for F64 and for builds without oneDNN, and F16 computed in F32 and rounded once.
#include "core/kernels/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/kernels/copy.h"
#include "core/kernels/loops.h"
#include "core/kernels/matmul_layout.h"
#ifdef MANTISSA_HAVE_DNNL
#include "core/kernels/dnnl_context.h"
#endif

namespace mantissa::kernels {

// ---- reference GEMM --------------------------------------------------------------------------

namespace {

// Tile sizes: a packed B panel (kKc x kNc) and the accumulator tile (kMc x kNc) stay in L2.
constexpr int64_t kMc = 64, kNc = 256, kKc = 256;

template <typename T>
void gemm_reference_impl(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                         int64_t b_rs, int64_t b_cs, T* c, int64_t ldc, bool accumulate, const T* bias) {
  if (m <= 0 || n <= 0) return;
  const int64_t mt = (m + kMc - 1) / kMc, nt = (n + kNc - 1) / kNc;
  parallel_for(mt * nt, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> bp(static_cast<size_t>(kKc * kNc)), ap(static_cast<size_t>(kMc * kKc)),
        acc(static_cast<size_t>(kMc * kNc));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t i0 = (t / nt) * kMc, j0 = (t % nt) * kNc;
      const int64_t mb = std::min(kMc, m - i0), nb = std::min(kNc, n - j0);
      for (int64_t i = 0; i < mb; ++i) {
        T* row = acc.data() + i * kNc;
        const T* crow = c + (i0 + i) * ldc + j0;
        for (int64_t j = 0; j < nb; ++j) row[j] = accumulate ? crow[j] : T(0);
      }
      for (int64_t k0 = 0; k0 < k; k0 += kKc) {
        const int64_t kb = std::min(kKc, k - k0);
        for (int64_t kk = 0; kk < kb; ++kk) {
          const T* src = b + (k0 + kk) * b_rs + j0 * b_cs;
          T* dst = bp.data() + kk * kNc;
          for (int64_t j = 0; j < nb; ++j) dst[j] = src[j * b_cs];
        }
        for (int64_t i = 0; i < mb; ++i) {
          const T* src = a + (i0 + i) * a_rs + k0 * a_cs;
          T* dst = ap.data() + i * kKc;
          for (int64_t kk = 0; kk < kb; ++kk) dst[kk] = src[kk * a_cs];
        }
        // Four rows share each load of the packed B row; the j loop vectorizes.
        int64_t i = 0;
        for (; i + 4 <= mb; i += 4) {
          T* __restrict r0 = acc.data() + i * kNc;
          T* __restrict r1 = r0 + kNc;
          T* __restrict r2 = r1 + kNc;
          T* __restrict r3 = r2 + kNc;
          const T* a0 = ap.data() + i * kKc;
          for (int64_t kk = 0; kk < kb; ++kk) {
            const T x0 = a0[kk], x1 = a0[kKc + kk], x2 = a0[2 * kKc + kk], x3 = a0[3 * kKc + kk];
            const T* __restrict br = bp.data() + kk * kNc;
#pragma omp simd
            for (int64_t j = 0; j < nb; ++j) {
              const T bv = br[j];
              r0[j] += x0 * bv;
              r1[j] += x1 * bv;
              r2[j] += x2 * bv;
              r3[j] += x3 * bv;
            }
          }
        }
        for (; i < mb; ++i) {
          T* __restrict r0 = acc.data() + i * kNc;
          const T* a0 = ap.data() + i * kKc;
          for (int64_t kk = 0; kk < kb; ++kk) {
            const T x0 = a0[kk];
            const T* __restrict br = bp.data() + kk * kNc;
#pragma omp simd
            for (int64_t j = 0; j < nb; ++j) r0[j] += x0 * br[j];
          }
        }
      }
      for (int64_t i = 0; i < mb; ++i) {
        const T* row = acc.data() + i * kNc;
        T* crow = c + (i0 + i) * ldc + j0;
        if (bias != nullptr) {
          for (int64_t j = 0; j < nb; ++j) crow[j] = row[j] + bias[j0 + j];
        } else {
          for (int64_t j = 0; j < nb; ++j) crow[j] = row[j];
        }
      }
    }
  });
}

}  // namespace

void gemm_reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_rs, int64_t a_cs, const float* b,
                    int64_t b_rs, int64_t b_cs, float* c, int64_t ldc, bool accumulate, const float* bias) {
  gemm_reference_impl(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, bias);
}
void gemm_reference(int64_t m, int64_t n, int64_t k, const double* a, int64_t a_rs, int64_t a_cs, const double* b,
                    int64_t b_rs, int64_t b_cs, double* c, int64_t ldc, bool accumulate, const double* bias) {
  gemm_reference_impl(m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, bias);
}

// ---- operand preparation ------------------------------------------------------------------------

namespace {

using gemm::BatchDim;
using gemm::for_outer;
using gemm::MatLayout;
using gemm::matrix_layout;
using gemm::matrix_span;

// A copy in the default layout when t's matrices are strided in a way the GEMMs do not take,
// or its batches overlap.
Tensor with_gemm_layout(const Tensor& t) {
  if (gemm::layout_usable(t, /*allow_zero_batch_stride=*/false)) return t;
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

// One batched GEMM over the innermost batch dim; the outer batch dims are looped over.
struct Gemm {
  int64_t batch, m, n, k;
  MatLayout la, lb;
  int64_t a_bs, b_bs;  // 0 where the operand is broadcast over the batch
};

// ---- reference path --------------------------------------------------------------------------

template <typename T>
void run_reference(const Gemm& g, const std::vector<BatchDim>& outer, const T* a, const T* b, T* out,
                   const T* bias) {
  for_outer(outer, [&](int64_t oa, int64_t ob, int64_t oo) {
    // Many small matrices: one per thread; large ones: the GEMM parallelizes its tiles.
    const int64_t work = std::max<int64_t>(1, g.m * g.n * std::max<int64_t>(g.k, 1));
    parallel_for(g.batch, std::max<int64_t>(1, (int64_t(1) << 18) / work), [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) {
        gemm_reference(g.m, g.n, g.k, a + oa + i * g.a_bs, g.la.rs, g.la.cs, b + ob + i * g.b_bs, g.lb.rs, g.lb.cs,
                       out + oo + i * g.m * g.n, g.n, false, bias);
      }
    });
  });
}

// ---- oneDNN path -------------------------------------------------------------------------------

#ifdef MANTISSA_HAVE_DNNL
struct DnnlMatmul {
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c, bias;
  // Large single GEMMs read B from oneDNN's own blocked layout: one reorder per call beats the
  // primitive repacking plain-B panels as it goes (measured ~7% at 1024-2048 on AVX-512).
  std::optional<dnnl::reorder> pack_b;
  dnnl::memory::desc b_packed;
};

bool packs_b(const Gemm& g) {
  return g.batch == 1 && g.lb.cs == 1 && g.m >= 512 && g.k * g.n >= (int64_t(1) << 20);
}

dnnl::memory::desc operand_desc(dnnl::memory::data_type dt, bool batched, int64_t batch, int64_t bs, int64_t rows,
                                int64_t cols, const MatLayout& l) {
  if (!batched) return dnnl::memory::desc({rows, cols}, dt, {l.rs, l.cs});
  // A broadcast operand is a batch of 1 (oneDNN broadcasts it); its batch stride is unused.
  if (bs == 0) return dnnl::memory::desc({1, rows, cols}, dt, {matrix_span(rows, cols, l), l.rs, l.cs});
  return dnnl::memory::desc({batch, rows, cols}, dt, {bs, l.rs, l.cs});
}

std::shared_ptr<const DnnlMatmul> dnnl_matmul(DType dtype, const Gemm& g, bool with_bias) {
  static dnnl_ctx::Cache<DnnlMatmul> cache;
  const bool batched = g.batch > 1;
  dnnl_ctx::Key key{static_cast<int64_t>(dtype), g.batch, g.m, g.n, g.k, g.la.rs, g.la.cs, g.lb.rs, g.lb.cs,
                    batched ? g.a_bs : -1, batched ? g.b_bs : -1, with_bias};
  return cache.get(key, [&] {
    const auto dt = dnnl_ctx::data_type(dtype);
    DnnlMatmul p;
    p.a = operand_desc(dt, batched, g.batch, g.a_bs, g.m, g.k, g.la);
    p.b = operand_desc(dt, batched, g.batch, g.b_bs, g.k, g.n, g.lb);
    if (batched) {
      p.c = dnnl::memory::desc({g.batch, g.m, g.n}, dt, {g.m * g.n, g.n, 1});
      if (with_bias) p.bias = dnnl::memory::desc({1, 1, g.n}, dt, {g.n, g.n, 1});
    } else {
      p.c = dnnl::memory::desc({g.m, g.n}, dt, {g.n, 1});
      if (with_bias) p.bias = dnnl::memory::desc({1, g.n}, dt, {g.n, 1});
    }
    const dnnl::memory::desc b_want =
        packs_b(g) ? dnnl::memory::desc(p.b.dims(), dt, dnnl::memory::format_tag::any) : p.b;
    auto desc = with_bias ? dnnl::matmul::desc(p.a, b_want, p.bias, p.c) : dnnl::matmul::desc(p.a, b_want, p.c);
    dnnl::matmul::primitive_desc pd(desc, dnnl_ctx::engine());
    p.prim = dnnl::matmul(pd);
    if (pd.weights_desc() != p.b) {
      p.b_packed = pd.weights_desc();
      p.pack_b = dnnl::reorder(dnnl::reorder::primitive_desc(dnnl_ctx::engine(), p.b, dnnl_ctx::engine(), p.b_packed));
    }
    return p;
  });
}

// Per-thread scratch for packed B, kept between calls (a fresh multi-megabyte buffer per call
// would be page-faulted in every time).
void* packed_b_scratch(size_t bytes) {
  struct Buffer {
    void* ptr = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(ptr); }
  };
  thread_local Buffer buf;
  if (buf.size < bytes) {
    std::free(buf.ptr);
    buf.size = (bytes + 4095) / 4096 * 4096;
    buf.ptr = std::aligned_alloc(4096, buf.size);
    MANTISSA_CHECK(buf.ptr != nullptr, "matmul: out of memory allocating ", buf.size, " bytes of packing scratch");
  }
  return buf.ptr;
}

void run_dnnl(DType dtype, const Gemm& g, const std::vector<BatchDim>& outer, const Tensor& a, const Tensor& b,
              const Tensor& out, const Tensor& bias) {
  auto p = dnnl_matmul(dtype, g, bias.defined());
  const size_t es = dtype_size(dtype);
  char* pa = static_cast<char*>(a.data_ptr());
  char* pb = static_cast<char*>(b.data_ptr());
  char* po = static_cast<char*>(out.data_ptr());
  auto& eng = dnnl_ctx::engine();
  auto& strm = dnnl_ctx::stream();
  for_outer(outer, [&](int64_t oa, int64_t ob, int64_t oo) {
    dnnl::memory weights(p->b, eng, pb + ob * es);
    if (p->pack_b) {
      dnnl::memory packed(p->b_packed, eng, packed_b_scratch(p->b_packed.get_size()));
      p->pack_b->execute(strm, weights, packed);
      weights = packed;
    }
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(p->a, eng, pa + oa * es)},
        {DNNL_ARG_WEIGHTS, weights},
        {DNNL_ARG_DST, dnnl::memory(p->c, eng, po + oo * es)},
    };
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p->bias, eng, bias.data_ptr()));
    p->prim.execute(strm, args);
  });
  strm.wait();
}
#endif

// The CPU GEMM on checked CPU operands.
void matmul_cpu(const Tensor& out, const Tensor& a_in, const Tensor& b_in, const Tensor& bias_in) {
  const DType dtype = out.dtype();
  if (out.numel() == 0) return;
  const int64_t m = out.size(-2), n = out.size(-1), k = a_in.size(-1);
  if (k == 0) {
    fill(out, 0.0);
    if (bias_in.defined()) copy(out, bias_in);
    return;
  }

#ifdef MANTISSA_HAVE_DNNL
  constexpr bool kBf16Native = true;
#else
  constexpr bool kBf16Native = false;
#endif
  if (dtype == DType::F16 || (dtype == DType::BF16 && !kBf16Native)) {
    // F32 GEMM on the exact 16-bit values, one rounding on the way out.
    Tensor o32 = empty(out.sizes(), TensorOptions(DType::F32));
    matmul_cpu(o32, to_f32(a_in), to_f32(b_in), to_f32(bias_in));
    copy(out, o32);
    return;
  }

  const Tensor a = with_gemm_layout(a_in), b = with_gemm_layout(b_in);
  Tensor bias = bias_in;
  if (bias.defined() && !bias.is_contiguous()) {
    bias = empty(bias_in.sizes(), TensorOptions(dtype));
    copy(bias, bias_in);
  }

  std::vector<BatchDim> outer = gemm::batch_dims(out, a, b);
  Gemm g{1, m, n, k, matrix_layout(m, k, a.stride(-2), a.stride(-1)), matrix_layout(k, n, b.stride(-2), b.stride(-1)),
         0, 0};
  if (!outer.empty()) {
    g.batch = outer.back().size;
    g.a_bs = outer.back().sa;
    g.b_bs = outer.back().sb;
    outer.pop_back();
  }

  visit_dtype<dtype_bit(DType::F64) | dtype_bit(DType::F32) | dtype_bit(DType::BF16)>(dtype, "matmul", [&]<typename T>() {
#ifdef MANTISSA_HAVE_DNNL
    if constexpr (!std::is_same_v<T, double>) {
      run_dnnl(dtype, g, outer, a, b, out, bias);
      return;
    }
#endif
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      run_reference<T>(g, outer, a.data<T>(), b.data<T>(), out.data<T>(), bias.defined() ? bias.data<T>() : nullptr);
    }
  });
}


// out = max(out, 0) on a contiguous CPU tensor; NaN stays NaN (PyTorch's relu).
void relu_inplace(const Tensor& out) {
  visit_dtype<kFloatTypes>(out.dtype(), "matmul_relu", [&]<typename T>() {
    T* p = out.data<T>();
    parallel_for(out.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        if (load(p[i]) < compute_t<T>(0)) p[i] = T(0);
    });
  });
}

// Shapes, dtypes and devices every entry point checks before dispatching. The shape relations
// are the caller's (autograd/ops/linalg.cpp) invariants; devices and dtypes come from users.
void check_operands(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias) {
  const int64_t nd = out.dim();
  MANTISSA_ASSERT(nd >= 2 && a.dim() == nd && b.dim() == nd && out.is_contiguous(), op, " kernel: ",
                  shape_str(a.sizes()), " @ ", shape_str(b.sizes()), " -> ", shape_str(out.sizes()));
  MANTISSA_ASSERT(a.size(-2) == out.size(-2) && b.size(-1) == out.size(-1) && a.size(-1) == b.size(-2), op,
                  " kernel: ", shape_str(a.sizes()), " @ ", shape_str(b.sizes()), " -> ", shape_str(out.sizes()));
  for (int64_t d = 0; d < nd - 2; ++d)
    MANTISSA_ASSERT((a.size(d) == out.size(d) || a.size(d) == 1) && (b.size(d) == out.size(d) || b.size(d) == 1), op,
                    " kernel: batch dims of ", shape_str(a.sizes()), " @ ", shape_str(b.sizes()), " -> ",
                    shape_str(out.sizes()));
  MANTISSA_ASSERT(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out.size(-1)), op, " kernel: bias ",
                  shape_str(bias.sizes()), " for output ", shape_str(out.sizes()));
  const DType dtype = out.dtype();
  MANTISSA_CHECK(a.dtype() == dtype && b.dtype() == dtype && (!bias.defined() || bias.dtype() == dtype), op,
                 ": expected one dtype for every operand, got a ", a.dtype(), ", b ", b.dtype(),
                 bias.defined() ? ", bias " : "", bias.defined() ? dtype_name(bias.dtype()) : "", " and out ", dtype);
  MANTISSA_CHECK(a.device() == out.device() && b.device() == out.device() &&
                     (!bias.defined() || bias.device() == out.device()),
                 op, ": expected every operand on ", out.device(), ", got a on ", a.device(), ", b on ", b.device(),
                 bias.defined() ? ", bias on " : "", bias.defined() ? bias.device().str() : std::string());
}

void matmul_entry(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias,
                  bool relu) {
  check_operands(op, out, a, b, bias);
  if (out.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::matmul(out, a, b, bias, relu);
    return;
#else
    MANTISSA_ERROR(op, ": ", out.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  matmul_cpu(out, a, b, bias);
  if (relu && out.numel() > 0) relu_inplace(out);
}

}  // namespace

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias) {
  matmul_entry("matmul", out, a, b, bias, /*relu=*/false);
}

void matmul_relu(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias) {
  matmul_entry("matmul_relu", out, a, b, bias, /*relu=*/true);
}

}  // namespace mantissa::kernels
