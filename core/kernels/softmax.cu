// CUDA softmax/log_softmax and their backward kernels (softmax.h), the tensor seen as
// [outer, n, inner] around the softmax dim. Last dim (inner == 1): a warp per row holding the
// row in registers (n <= 1024), else a block per row with 16-byte vector loads. Other dims: a
// block per (outer, inner tile), threads along inner (coalesced) and across n (a tree in
// shared memory). The row max is subtracted before exp; F32 accumulation (F64 for F64), the
// CPU's formulas, one rounding on store.
#include <limits>

#include "core/kernels/reduce_cuda.cuh"
#include "core/kernels/softmax.h"

namespace mantissa::kernels::cuda {

namespace {

struct Layout {
  int64_t outer = 1, n = 1, inner = 1;
};

Layout layout_of(const Tensor& x, int64_t dim) {
  Layout l;
  if (x.dim() == 0) return l;
  for (int64_t d = 0; d < dim; ++d) l.outer *= x.size(d);
  l.n = x.size(dim);
  for (int64_t d = dim + 1; d < x.dim(); ++d) l.inner *= x.size(d);
  return l;
}

constexpr int kWarpRowMax = 1024;   // rows up to this length live in registers, a warp each
// Threads of a block per long row when rows are few; F64's exp needs more registers than the
// 64 a 1024-thread block leaves each thread.
template <typename T>
constexpr int kRowBlockMax = sizeof(T) == 8 ? 512 : 1024;

template <typename Acc>
__device__ __forceinline__ Acc neg_inf() {
  return -std::numeric_limits<Acc>::infinity();
}

// ---- forward --------------------------------------------------------------------------------

// A warp per row; lane l holds elements l, l + 32, ... (kE of them) in Acc registers.
template <typename T, int kE, bool kLog>
__global__ void softmax_warp_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int n) {
  using Acc = dev_compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const T* xr = x + r * n;
    T* orow = out + r * n;
    Acc v[kE];
    Acc m = neg_inf<Acc>();
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      const int i = lane + 32 * k;
      v[k] = i < n ? static_cast<Acc>(load(xr + i)) : neg_inf<Acc>();
      m = v[k] > m ? v[k] : m;
    }
    m = warp_allreduce(m, MaxComb{});
    Acc s = 0;
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      if (lane + 32 * k < n) {
        const Acc e = acc_exp(v[k] - m);
        if constexpr (!kLog) v[k] = e;
        s += e;
      }
    }
    s = warp_allreduce(s, SumComb{});
    // log: (x - max) - log(sum), the exact shift first so huge logits keep their differences.
    const Acc t = kLog ? acc_log(s) : Acc(1) / s;
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      const int i = lane + 32 * k;
      if (i < n) store(orow + i, kLog ? (v[k] - m) - t : v[k] * t);
    }
  }
}

// A block per row (long rows): max, sum of exp, then the outputs, each a pass over the row
// (the second and third read from L2).
template <typename T, bool kLog>
__global__ void __launch_bounds__(kRowBlockMax<T>)
    softmax_block_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t rows, int64_t n) {
  using Acc = dev_compute_t<T>;
  constexpr int K = 16 / sizeof(T);
  __shared__ Acc scratch[32];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* orow = out + r * n;
    const bool vec = same_phase16(xr, orow);
    Acc m = neg_inf<Acc>();
    row_loop(
        xr, n, true, tid, nt,
        [&](int64_t i) {
          const Acc v = load(xr + i);
          m = v > m ? v : m;
        },
        [&](int64_t i) {
          const auto q = load_vec(xr + i);
#pragma unroll
          for (int j = 0; j < K; ++j) {
            const Acc v = load(&q.v[j]);
            m = v > m ? v : m;
          }
        });
    m = block_reduce(m, MaxComb{}, neg_inf<Acc>(), scratch);
    Acc s = 0;
    row_loop(
        xr, n, true, tid, nt, [&](int64_t i) { s += acc_exp(static_cast<Acc>(load(xr + i)) - m); },
        [&](int64_t i) {
          const auto q = load_vec(xr + i);
#pragma unroll
          for (int j = 0; j < K; ++j) s += acc_exp(static_cast<Acc>(load(&q.v[j])) - m);
        });
    s = block_reduce(s, SumComb{}, Acc(0), scratch);
    const Acc t = kLog ? acc_log(s) : Acc(1) / s;
    auto f = [m, t](Acc v) { return kLog ? (v - m) - t : acc_exp(v - m) * t; };
    row_loop(
        xr, n, vec, tid, nt, [&](int64_t i) { store(orow + i, f(load(xr + i))); },
        [&](int64_t i) {
          const auto q = load_vec(xr + i);
          detail::Vec<T, K> o;
#pragma unroll
          for (int j = 0; j < K; ++j) store(&o.v[j], f(load(&q.v[j])));
          store_vec(orow + i, o);
        });
  }
}

// Tree over threadIdx.y of a (bx, by) block, by a power of two; every thread gets the result
// of its column. smem holds bx * by values.
template <typename Acc, typename Comb>
__device__ __forceinline__ Acc column_allreduce(Acc v, const Comb& comb, Acc* smem) {
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x;
  __syncthreads();
  smem[ty * bx + tx] = v;
  __syncthreads();
  for (int s = blockDim.y / 2; s > 0; s >>= 1) {
    if (ty < s) smem[ty * bx + tx] = comb(smem[ty * bx + tx], smem[(ty + s) * bx + tx]);
    __syncthreads();
  }
  return smem[tx];
}

// Softmax over a middle dim: x[o, c, j] with j along threadIdx.x (coalesced), c split over
// threadIdx.y.
template <typename T, bool kLog>
__global__ void softmax_inner_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t outer, int64_t n,
                                     int64_t inner, int64_t inner_blocks) {
  using Acc = dev_compute_t<T>;
  __shared__ Acc smem[kBlock];
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    for (int64_t jb = blockIdx.x; jb < inner_blocks; jb += gridDim.x) {
      const int64_t j = jb * bx + tx;
      const bool active = j < inner;
      const T* xb = x + o * n * inner + j;
      T* ob = out + o * n * inner + j;
      Acc m = neg_inf<Acc>();
      if (active)
        for (int64_t c = ty; c < n; c += by) {
          const Acc v = load(xb + c * inner);
          m = v > m ? v : m;
        }
      m = column_allreduce(m, MaxComb{}, smem);
      Acc s = 0;
      if (active)
        for (int64_t c = ty; c < n; c += by) s += acc_exp(static_cast<Acc>(load(xb + c * inner)) - m);
      s = column_allreduce(s, SumComb{}, smem);
      const Acc t = kLog ? acc_log(s) : Acc(1) / s;
      if (active)
        for (int64_t c = ty; c < n; c += by) {
          const Acc d = static_cast<Acc>(load(xb + c * inner)) - m;
          store(ob + c * inner, kLog ? d - t : acc_exp(d) * t);
        }
    }
  }
}

// ---- backward -------------------------------------------------------------------------------
// softmax: gx = y (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g).

template <typename Acc, bool kLog>
__device__ __forceinline__ Acc bw_term(Acc g, Acc y) {
  return kLog ? g : g * y;
}
template <typename Acc, bool kLog>
__device__ __forceinline__ Acc bw_result(Acc g, Acc y, Acc s) {
  return kLog ? g - acc_exp(y) * s : y * (g - s);
}

template <typename T, int kE, bool kLog>
__global__ void softmax_bw_warp_kernel(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx,
                                       int64_t rows, int n) {
  using Acc = dev_compute_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    Acc gv[kE], yv[kE];
    Acc s = 0;
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      const int i = lane + 32 * k;
      gv[k] = i < n ? static_cast<Acc>(load(g + r * n + i)) : Acc(0);
      yv[k] = i < n ? static_cast<Acc>(load(y + r * n + i)) : Acc(0);
      if (i < n) s += bw_term<Acc, kLog>(gv[k], yv[k]);
    }
    s = warp_allreduce(s, SumComb{});
#pragma unroll
    for (int k = 0; k < kE; ++k) {
      const int i = lane + 32 * k;
      if (i < n) store(gx + r * n + i, bw_result<Acc, kLog>(gv[k], yv[k], s));
    }
  }
}

template <typename T, bool kLog>
__global__ void __launch_bounds__(kRowBlockMax<T>)
    softmax_bw_block_kernel(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx, int64_t rows,
                            int64_t n) {
  using Acc = dev_compute_t<T>;
  constexpr int K = 16 / sizeof(T);
  __shared__ Acc scratch[32];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* gr = g + r * n;
    const T* yr = y + r * n;
    T* xr = gx + r * n;
    const bool vec_in = same_phase16(gr, yr);
    Acc s = 0;
    row_loop(
        gr, n, vec_in, tid, nt, [&](int64_t i) { s += bw_term<Acc, kLog>(load(gr + i), load(yr + i)); },
        [&](int64_t i) {
          const auto qg = load_vec(gr + i);
          const auto qy = load_vec(yr + i);
#pragma unroll
          for (int j = 0; j < K; ++j) s += bw_term<Acc, kLog>(load(&qg.v[j]), load(&qy.v[j]));
        });
    s = block_reduce(s, SumComb{}, Acc(0), scratch);
    row_loop(
        gr, n, vec_in && same_phase16(gr, xr), tid, nt,
        [&](int64_t i) { store(xr + i, bw_result<Acc, kLog>(load(gr + i), load(yr + i), s)); },
        [&](int64_t i) {
          const auto qg = load_vec(gr + i);
          const auto qy = load_vec(yr + i);
          detail::Vec<T, K> o;
#pragma unroll
          for (int j = 0; j < K; ++j) store(&o.v[j], bw_result<Acc, kLog>(load(&qg.v[j]), load(&qy.v[j]), s));
          store_vec(xr + i, o);
        });
  }
}

template <typename T, bool kLog>
__global__ void softmax_bw_inner_kernel(const T* __restrict__ g, const T* __restrict__ y, T* __restrict__ gx,
                                        int64_t outer, int64_t n, int64_t inner, int64_t inner_blocks) {
  using Acc = dev_compute_t<T>;
  __shared__ Acc smem[kBlock];
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    for (int64_t jb = blockIdx.x; jb < inner_blocks; jb += gridDim.x) {
      const int64_t j = jb * bx + tx;
      const bool active = j < inner;
      const int64_t base = o * n * inner + j;
      Acc s = 0;
      if (active)
        for (int64_t c = ty; c < n; c += by) {
          const int64_t k = base + c * inner;
          s += bw_term<Acc, kLog>(load(g + k), load(y + k));
        }
      s = column_allreduce(s, SumComb{}, smem);
      if (active)
        for (int64_t c = ty; c < n; c += by) {
          const int64_t k = base + c * inner;
          store(gx + k, bw_result<Acc, kLog>(load(g + k), load(y + k), s));
        }
    }
  }
}

// ---- launch ---------------------------------------------------------------------------------

// Calls f.template operator()<kE>() with the register count per lane for a row of n <= 1024.
template <typename F>
void with_lane_elems(int64_t n, F&& f) {
  if (n <= 32) return f.template operator()<1>();
  if (n <= 64) return f.template operator()<2>();
  if (n <= 128) return f.template operator()<4>();
  if (n <= 256) return f.template operator()<8>();
  if (n <= 512) return f.template operator()<16>();
  return f.template operator()<32>();
}

unsigned capped_blocks(int64_t want, int sms) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t(sms) * 32)));
}

// Block shape for the middle-dim kernels: x along inner, y across n; bx * by <= kBlock.
dim3 inner_block(const Layout& l) {
  const int64_t bx = pow2_at_least(l.inner, 32);
  const int64_t by = pow2_at_least(l.n, kBlock / bx);
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(by));
}

template <typename T, bool kLog>
void softmax_typed(const Tensor& out, const Tensor& x, const Layout& l, const char* name) {
  const int sms = multiprocessor_count(x.device().index);
  cudaStream_t s = stream_for(x);
  const T* xp = x.data<T>();
  T* op = out.data<T>();
  if (l.inner == 1 && l.n <= kWarpRowMax) {
    constexpr int kRowsPerBlock = kBlock / 32;
    const unsigned blocks = capped_blocks((l.outer + kRowsPerBlock - 1) / kRowsPerBlock, sms);
    with_lane_elems(l.n, [&]<int kE>() {
      softmax_warp_kernel<T, kE, kLog><<<blocks, kBlock, 0, s>>>(xp, op, l.outer, static_cast<int>(l.n));
    });
  } else if (l.inner == 1) {
    // Few long rows: wider blocks so each row is read by more threads.
    const int threads = l.outer >= int64_t(sms) * 4 ? kBlock : kRowBlockMax<T>;
    softmax_block_kernel<T, kLog><<<capped_blocks(l.outer, sms), threads, 0, s>>>(xp, op, l.outer, l.n);
  } else {
    const dim3 block = inner_block(l);
    const int64_t inner_blocks = (l.inner + block.x - 1) / block.x;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(inner_blocks, 65535)),
                    static_cast<unsigned>(std::min<int64_t>(l.outer, 65535)));
    softmax_inner_kernel<T, kLog><<<grid, block, 0, s>>>(xp, op, l.outer, l.n, l.inner, inner_blocks);
  }
  MANTISSA_CUDA_LAUNCH_CHECK(name);
}

template <typename T, bool kLog>
void backward_typed(const Tensor& gx, const Tensor& g, const Tensor& y, const Layout& l, const char* name) {
  const int sms = multiprocessor_count(y.device().index);
  cudaStream_t s = stream_for(y);
  const T* gp = g.data<T>();
  const T* yp = y.data<T>();
  T* op = gx.data<T>();
  if (l.inner == 1 && l.n <= kWarpRowMax) {
    constexpr int kRowsPerBlock = kBlock / 32;
    const unsigned blocks = capped_blocks((l.outer + kRowsPerBlock - 1) / kRowsPerBlock, sms);
    with_lane_elems(l.n, [&]<int kE>() {
      softmax_bw_warp_kernel<T, kE, kLog><<<blocks, kBlock, 0, s>>>(gp, yp, op, l.outer, static_cast<int>(l.n));
    });
  } else if (l.inner == 1) {
    const int threads = l.outer >= int64_t(sms) * 4 ? kBlock : kRowBlockMax<T>;
    softmax_bw_block_kernel<T, kLog><<<capped_blocks(l.outer, sms), threads, 0, s>>>(gp, yp, op, l.outer, l.n);
  } else {
    const dim3 block = inner_block(l);
    const int64_t inner_blocks = (l.inner + block.x - 1) / block.x;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(inner_blocks, 65535)),
                    static_cast<unsigned>(std::min<int64_t>(l.outer, 65535)));
    softmax_bw_inner_kernel<T, kLog><<<grid, block, 0, s>>>(gp, yp, op, l.outer, l.n, l.inner, inner_blocks);
  }
  MANTISSA_CUDA_LAUNCH_CHECK(name);
}

void check_device(const char* name, const Tensor& out, std::initializer_list<const Tensor*> ins) {
  MANTISSA_CHECK(out.is_cuda(), name, ": expected the output on a CUDA device, got ", out.device());
  for (const Tensor* t : ins)
    MANTISSA_CHECK(t->device() == out.device(), name, ": expected every tensor on ", out.device(), ", got a ",
                   shape_str(t->sizes()), " ", t->dtype(), " tensor on ", t->device());
}

}  // namespace

void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_device(name, out, {&x});
  MANTISSA_ASSERT(out.is_contiguous() && x.is_contiguous() && out.sizes() == x.sizes() && out.dtype() == x.dtype(),
                  "softmax kernel operands");
  if (x.numel() == 0) return;
  const Layout l = layout_of(x, dim);
  DeviceGuard guard(x);
  visit_dtype<kFloatTypes>(x.dtype(), name, [&]<typename T>() {
    if (log) {
      softmax_typed<T, true>(out, x, l, name);
    } else {
      softmax_typed<T, false>(out, x, l, name);
    }
  });
}

void softmax_backward(const Tensor& gx, const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  const char* name = log ? "log_softmax backward" : "softmax backward";
  check_device(name, gx, {&g, &y});
  MANTISSA_ASSERT(gx.is_contiguous() && g.is_contiguous() && y.is_contiguous() && g.sizes() == y.sizes() &&
                      gx.sizes() == y.sizes() && g.dtype() == y.dtype() && gx.dtype() == y.dtype(),
                  "softmax backward kernel operands");
  if (y.numel() == 0) return;
  const Layout l = layout_of(y, dim);
  DeviceGuard guard(y);
  visit_dtype<kFloatTypes>(y.dtype(), name, [&]<typename T>() {
    if (log) {
      backward_typed<T, true>(gx, g, y, l, name);
    } else {
      backward_typed<T, false>(gx, g, y, l, name);
    }
  });
}

}  // namespace mantissa::kernels::cuda
