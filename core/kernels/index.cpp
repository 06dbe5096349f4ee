// CPU indexing kernels. Forward copies dispatch on element size only (a row copy does not care
// what the bits mean); backward scatter-adds accumulate in compute_t and are parallelized so
// that no two threads ever add into the same element (no atomics, deterministic sums). Each
// entry point sends CUDA tensors to index.cu first.
#include "core/kernels/index.h"

#include <array>

#include "core/kernels/cuda_dispatch.h"
#include "core/kernels/index_detail.h"
#include "core/kernels/loops.h"

namespace mantissa::kernels {

namespace {

int64_t grain_for(int64_t per_item) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, per_item)); }

using index_detail::stride0;
using index_detail::visit_element_size;
using index_detail::visit_index;

}  // namespace

std::optional<int64_t> find_out_of_range(const Tensor& index, int64_t n) {
  if (index.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::find_out_of_range(index, n);
#else
    MANTISSA_ERROR("index check: ", index.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
#endif
  }
  std::optional<int64_t> bad;
  if (index.numel() == 0) return bad;
  visit_index(index, "index check", [&]<typename I>() {
    const I* p = index.data<I>();
    StridedIter<1> it(index.sizes(), {index.strides()});
    it.walk(0, it.numel, [&](const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& st) {
      if (bad) return;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t v = static_cast<int64_t>(p[off[0] + j * st[0]]);
        if (v < 0 || v >= n) {
          bad = v;
          return;
        }
      }
    });
  });
  return bad;
}

void index_select(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index) {
  check_same_device("index_select", out, {&x, &index});
  MANTISSA_CUDA_DISPATCH(out, "index_select", cuda::index_select(out, x, outer, n, inner, index));
  const int64_t k = index.numel();
  if (outer * k * inner == 0) return;
  visit_element_size(x, [&]<typename E>() {
    const E* xp = static_cast<const E*>(x.data_ptr());
    E* op = static_cast<E*>(out.data_ptr());
    visit_index(index, "index_select", [&]<typename I>() {
      const I* ip = index.data<I>();
      const int64_t ist = stride0(index);
      parallel_for(outer * k, grain_for(inner), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t o = r / k, kk = r % k;
          const E* src = xp + (o * n + static_cast<int64_t>(ip[kk * ist])) * inner;
          E* dst = op + r * inner;
#pragma omp simd
          for (int64_t c = 0; c < inner; ++c) dst[c] = src[c];
        }
      });
    });
  });
}

void index_add_rows(const Tensor& grad, const Tensor& g, int64_t outer, int64_t n, int64_t inner, const Tensor& index) {
  check_same_device("index backward", grad, {&g, &index});
  MANTISSA_CUDA_DISPATCH(grad, "index backward", cuda::index_add_rows(grad, g, outer, n, inner, index));
  const int64_t k = index.numel();
  if (outer * k * inner == 0) return;
  visit_dtype<kFloatTypes>(g.dtype(), "index backward", [&]<typename T>() {
    using A = compute_t<T>;
    A* gr = grad.data<A>();
    const T* gp = g.data<T>();
    visit_index(index, "index backward", [&]<typename I>() {
      const I* ip = index.data<I>();
      const int64_t ist = stride0(index);
      // Rows of one outer slice may repeat, so threads split outer slices or, when there are
      // too few, column blocks: either way each gradient element has one writer.
      auto add_block = [&](int64_t o, int64_t cb, int64_t ce) {
        for (int64_t kk = 0; kk < k; ++kk) {
          A* dst = gr + (o * n + static_cast<int64_t>(ip[kk * ist])) * inner;
          const T* src = gp + (o * k + kk) * inner;
#pragma omp simd
          for (int64_t c = cb; c < ce; ++c) dst[c] += load(src[c]);
        }
      };
      if (outer >= omp_get_max_threads()) {
        parallel_for(outer, grain_for(k * inner), [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) add_block(o, 0, inner);
        });
      } else {
        parallel_for(inner, grain_for(outer * k), [&](int64_t cb, int64_t ce) {
          for (int64_t o = 0; o < outer; ++o) add_block(o, cb, ce);
        });
      }
    });
  });
}

namespace {
// Walks the positions of `index` with coordinate `dim` fixed at 0, calling
// f(offsets for a, b, c) once per line along dim; the three operands share index's shape
// (c is walked with its own strides, its dim stride applied by the caller).
template <typename F>
void for_each_line(const Tensor& index, int64_t dim, const Shape& sa, const Shape& sb, const Shape& sc, int64_t k,
                   const F& f) {
  Shape outer = index.sizes();
  outer[dim] = 1;
  StridedIter<3> it(outer, {sa, sb, sc});
  it.parallel_walk(
      [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& st) {
        for (int64_t j = 0; j < len; ++j) f(off[0] + j * st[0], off[1] + j * st[1], off[2] + j * st[2]);
      },
      grain_for(k));
}
}  // namespace

void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  check_same_device("gather", out, {&x, &index});
  MANTISSA_CUDA_DISPATCH(out, "gather", cuda::gather(out, x, dim, index));
  if (out.numel() == 0) return;
  const int64_t k = index.size(dim);
  const int64_t os = out.stride(dim), is = index.stride(dim), xs = x.stride(dim);
  visit_element_size(x, [&]<typename E>() {
    const E* xp = static_cast<const E*>(x.data_ptr());
    E* op = static_cast<E*>(out.data_ptr());
    visit_index(index, "gather", [&]<typename I>() {
      const I* ip = index.data<I>();
      for_each_line(index, dim, out.strides(), index.strides(), x.strides(), k, [&](int64_t oo, int64_t io, int64_t xo) {
        for (int64_t kk = 0; kk < k; ++kk) op[oo + kk * os] = xp[xo + static_cast<int64_t>(ip[io + kk * is]) * xs];
      });
    });
  });
}

void gather_backward(const Tensor& grad, const Tensor& g, int64_t dim, const Tensor& index) {
  check_same_device("gather backward", grad, {&g, &index});
  MANTISSA_CUDA_DISPATCH(grad, "gather backward", cuda::gather_backward(grad, g, dim, index));
  if (g.numel() == 0) return;
  const int64_t k = index.size(dim);
  const int64_t gs = g.stride(dim), is = index.stride(dim), ds = grad.stride(dim);
  visit_dtype<kFloatTypes>(g.dtype(), "gather backward", [&]<typename T>() {
    using A = compute_t<T>;
    A* dp = grad.data<A>();
    const T* gp = g.data<T>();
    visit_index(index, "gather backward", [&]<typename I>() {
      const I* ip = index.data<I>();
      // Distinct lines of index map to distinct lines of grad, so the parallel walk is race-free.
      for_each_line(index, dim, g.strides(), index.strides(), grad.strides(), k, [&](int64_t go, int64_t io, int64_t d) {
        for (int64_t kk = 0; kk < k; ++kk) dp[d + static_cast<int64_t>(ip[io + kk * is]) * ds] += load(gp[go + kk * gs]);
      });
    });
  });
}

void dropout_apply(const Tensor& out, const Tensor& x, const Tensor& mask, double scale) {
  check_same_device("dropout", out, {&x, &mask});
  MANTISSA_CUDA_DISPATCH(out, "dropout", cuda::dropout_apply(out, x, mask, scale));
  visit_dtype<kFloatTypes>(x.dtype(), "dropout", [&]<typename T>() {
    const compute_t<T> s = static_cast<compute_t<T>>(scale);
    map<T, T, T>(out, [s](auto v, auto m) { return v * (m * s); }, x, mask);
  });
}

}  // namespace mantissa::kernels
