// CUDA batch-norm and layer-norm kernels (see norm.h), the same semantics as norm.cpp: two-pass
// statistics (mean, then centred squares), F32 statistics for F16/BF16/F32 inputs (F64 for F64)
// with per-channel and per-column totals accumulated in double, one rounding per output. Every
// reduction combines partial sums in a fixed order (no atomics), so results are bit-reproducible
// from run to run and do not depend on the GPU model.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "core/kernels/cuda_common.cuh"
#include "core/kernels/norm.h"

namespace mantissa::kernels::cuda {

namespace {

constexpr DTypeSet kAccTypes = dtype_bit(DType::F32) | dtype_bit(DType::F64);
constexpr unsigned kFull = 0xffffffffu;
// Blocks a split reduction aims for: enough to fill a large GPU several times over. A constant
// rather than the SM count, so how sums are split (and rounded) is the same on every GPU.
constexpr int64_t kTargetBlocks = 512;
constexpr int64_t kMaxSplits = 1024;
// 2-D reduction tile: 32 consecutive channels/columns (one coalesced row of a warp) x 8 rows.
constexpr int kTileX = 32, kTileY = 8;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

template <typename A>
const A* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<A>() : nullptr;
}
template <typename A>
A* mut_or_null(const Tensor& t) {
  return t.defined() ? t.data<A>() : nullptr;
}

// A device-side scratch tensor (double partial sums) on t's device.
Tensor scratch(const Tensor& t, int64_t n) {
  return empty({n < 1 ? 1 : n}, TensorOptions(DType::F64).device(t.device()));
}

// ---- reductions ------------------------------------------------------------------------------

template <typename V>
__device__ __forceinline__ V warp_allsum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Sum of v over the TPR consecutive threads that share a row (TPR = 32: one warp; otherwise the
// whole block, TPR == blockDim.x), returned to every one of them. smem holds 32 values.
template <int TPR, typename V>
__device__ __forceinline__ V row_allsum(V v, V* smem) {
  v = warp_allsum(v);
  if constexpr (TPR == 32) {
    return v;
  } else {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // a previous call may still be reading smem
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    V t = lane < TPR / 32 ? smem[lane] : V(0);
    return warp_allsum(t);
  }
}

// Per-element contributions of the batch-norm reductions: op(flat index, channel, acc[K]).
template <typename T>
struct SumX {
  static constexpr int K = 1;
  const T* x;
  __device__ void operator()(int64_t idx, int64_t, double* acc) const { acc[0] += static_cast<double>(load(x + idx)); }
};
template <typename T, typename A>
struct SumSqDev {
  static constexpr int K = 1;
  const T* x;
  const A* mean;
  __device__ void operator()(int64_t idx, int64_t ch, double* acc) const {
    const A d = load(x + idx) - mean[ch];
    acc[0] += static_cast<double>(d * d);
  }
};
template <typename T, typename A>
struct SumGrad {
  static constexpr int K = 2;
  const T* g;
  const T* x;
  const A* mean;
  __device__ void operator()(int64_t idx, int64_t ch, double* acc) const {
    const A gv = load(g + idx);
    acc[0] += static_cast<double>(gv);
    acc[1] += static_cast<double>(gv * (load(x + idx) - mean[ch]));
  }
};

// [n, c, s] with s > 1: block (channel, split) reduces the channel's flat elements
// [split * per, min(count, (split + 1) * per)) in run order; partial[(ch * splits + split) * K + k].
template <typename Op>
__global__ void channel_partial_spatial(Op op, int64_t n, int64_t c, int64_t s, int64_t per, double* partial) {
  constexpr int K = Op::K;
  __shared__ double smem[K][32];
  const int64_t ch = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int64_t count = n * s;
  const int64_t e0 = split * per;
  const int64_t e1 = e0 + per < count ? e0 + per : count;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  // (i, j) of flat element e, advanced by blockDim.x without a division per element.
  int64_t e = e0 + threadIdx.x;
  int64_t i = e / s, j = e - i * s;
  const int64_t step_i = blockDim.x / s, step_j = blockDim.x % s;
  for (; e < e1; e += blockDim.x) {
    op((i * c + ch) * s + j, ch, acc);
    i += step_i;
    j += step_j;
    if (j >= s) {
      j -= s;
      ++i;
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    acc[k] = warp_allsum(acc[k]);
    if (lane == 0) smem[k][warp] = acc[k];
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double v = warp_allsum(lane < warps ? smem[k][lane] : 0.0);
      if (lane == 0) partial[(ch * splits + split) * K + k] = v;
    }
  }
}

// [n, c] (s == 1): block (channel tile, split) with threads (channel in tile, row phase); rows
// [split * per, ...) of 32 consecutive channels per block, so every warp reads one contiguous row
// segment.
template <typename Op>
__global__ void channel_partial_rows(Op op, int64_t n, int64_t c, int64_t per, double* partial) {
  constexpr int K = Op::K;
  __shared__ double smem[K][kTileY][kTileX];
  const int64_t ch = blockIdx.x * int64_t(kTileX) + threadIdx.x;
  const int64_t split = blockIdx.y, splits = gridDim.y;
  const int64_t r0 = split * per;
  const int64_t r1 = r0 + per < n ? r0 + per : n;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  if (ch < c) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileY) op(r * c + ch, ch, acc);
  }
#pragma unroll
  for (int k = 0; k < K; ++k) smem[k][threadIdx.y][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && ch < c) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      double v = 0.0;
      for (int y = 0; y < kTileY; ++y) v += smem[k][y][threadIdx.x];
      partial[(ch * splits + split) * K + k] = v;
    }
  }
}

// How many row/element ranges each channel's reduction is split into: enough blocks in all, but
// at least 64 rows ([n, c]) or 4096 elements ([n, c, s]) per block.
int64_t channel_splits(BatchNormShape shp) {
  if (shp.s == 1)
    return clamp64(ceil_div(kTargetBlocks, ceil_div(shp.c, kTileX)), 1, clamp64(ceil_div(shp.n, 64), 1, kMaxSplits));
  return clamp64(ceil_div(kTargetBlocks, shp.c), 1, clamp64(ceil_div(shp.n * shp.s, 4096), 1, kMaxSplits));
}

// Runs op's per-channel reduction over [n, c, s] into partial ([c][splits][K] doubles,
// splits = channel_splits(shp)).
template <typename Op>
void channel_partials(const Op& op, BatchNormShape shp, double* partial, cudaStream_t stream, const char* name) {
  const int64_t splits = channel_splits(shp);
  if (shp.n * shp.s == 0) {
    // Empty channels sum to 0 (all-zero bytes are 0.0); the kernels would divide by s == 0.
    MANTISSA_CUDA_CHECK(cudaMemsetAsync(partial, 0, sizeof(double) * shp.c * splits * Op::K, stream), name);
    return;
  }
  if (shp.s == 1) {
    const int64_t tiles = ceil_div(shp.c, kTileX);
    channel_partial_rows<<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(splits)), dim3(kTileX, kTileY), 0,
                           stream>>>(op, shp.n, shp.c, ceil_div(shp.n, splits), partial);
  } else {
    channel_partial_spatial<<<dim3(static_cast<unsigned>(shp.c), static_cast<unsigned>(splits)), kBlock, 0, stream>>>(
        op, shp.n, shp.c, shp.s, ceil_div(shp.n * shp.s, splits), partial);
  }
  MANTISSA_CUDA_LAUNCH_CHECK(name);
}

__device__ __forceinline__ double sum_splits(const double* partial, int64_t ch, int64_t splits, int K, int k) {
  double v = 0.0;
  for (int64_t sp = 0; sp < splits; ++sp) v += partial[(ch * splits + sp) * K + k];
  return v;
}

// ---- batch norm: statistics ------------------------------------------------------------------

template <typename A>
__global__ void finish_mean(const double* partial, int64_t c, int64_t splits, double count, A* mean) {
  for (int64_t ch = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ch < c; ch += int64_t(blockDim.x) * gridDim.x)
    mean[ch] = static_cast<A>(sum_splits(partial, ch, splits, 1, 0) / count);
}

template <typename A>
__global__ void finish_var(const double* partial, int64_t c, int64_t splits, double count, double eps, A* var,
                           A* invstd) {
  for (int64_t ch = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ch < c; ch += int64_t(blockDim.x) * gridDim.x) {
    const double v = sum_splits(partial, ch, splits, 1, 0) / count;
    var[ch] = static_cast<A>(v);
    invstd[ch] = static_cast<A>(1.0 / sqrt(v + eps));
  }
}

// ---- per-channel elementwise passes ---------------------------------------------------------------

// Flat index -> (position in the run j = idx % s, channel = (idx / s) % c), advanced by a fixed
// step with carries instead of two 64-bit divisions per element.
struct ChannelWalk {
  int64_t idx, j, ch;
  int64_t step, step_j, step_ch;  // step % s and (step / s) % c
  int64_t s, c;
  __device__ ChannelWalk(int64_t start, int64_t step_, int64_t s_, int64_t c_) : idx(start), step(step_), s(s_), c(c_) {
    const int64_t q = start / s;
    j = start - q * s;
    ch = q % c;
    step_j = step % s;
    step_ch = (step / s) % c;
  }
  __device__ void next() {
    idx += step;
    j += step_j;
    int64_t carry = 0;
    if (j >= s) {
      j -= s;
      carry = 1;
    }
    ch += step_ch + carry;
    if (ch >= c) ch -= c;
  }
};

template <typename F>
__global__ void channel_map_kernel(F f, int64_t total, int64_t s, int64_t c) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (ChannelWalk w(blockIdx.x * int64_t(blockDim.x) + threadIdx.x, step, s, c); w.idx < total; w.next())
    f(w.idx, w.ch);
}

template <typename F>
void channel_map(const F& f, BatchNormShape shp, cudaStream_t stream, const char* name) {
  const int64_t total = shp.n * shp.c * shp.s;
  if (total == 0) return;
  channel_map_kernel<<<grid_for(total, 4), kBlock, 0, stream>>>(f, total, shp.s, shp.c);
  MANTISSA_CUDA_LAUNCH_CHECK(name);
}

template <typename T, typename A>
struct ApplyOp {
  const T* x;
  T* y;
  const A* mean;
  const A* invstd;
  const A* weight;
  const A* bias;
  __device__ void operator()(int64_t idx, int64_t ch) const {
    const A scale = invstd[ch] * (weight ? weight[ch] : A(1));
    const A shift = bias ? bias[ch] : A(0);
    store(y + idx, (load(x + idx) - mean[ch]) * scale + shift);
  }
};

// ---- batch norm: backward ----------------------------------------------------------------------

// Per channel: grad_bias, grad_weight, and dx = a * g + b * (x - mean) + c with b and c carrying
// the paths through the batch mean and variance (zero in eval mode). Computed in double from the
// double sums, as the CPU does, then rounded to A. partial may be null (no sums needed).
template <typename A>
__global__ void finish_backward(const double* partial, int64_t c, int64_t splits, double count, bool training,
                                const A* invstd, const A* weight, A* grad_weight, A* grad_bias, A* coef) {
  for (int64_t ch = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; ch < c; ch += int64_t(blockDim.x) * gridDim.x) {
    const double sum_g = partial ? sum_splits(partial, ch, splits, 2, 0) : 0.0;
    const double sum_gd = partial ? sum_splits(partial, ch, splits, 2, 1) : 0.0;
    const double is = static_cast<double>(invstd[ch]);
    if (grad_bias) grad_bias[ch] = static_cast<A>(sum_g);
    if (grad_weight) grad_weight[ch] = static_cast<A>(sum_gd * is);
    if (coef) {
      const double a = (weight ? static_cast<double>(weight[ch]) : 1.0) * is;
      const bool stats = training && count > 0;
      coef[ch] = static_cast<A>(a);
      coef[c + ch] = stats ? static_cast<A>(-a * is * is * sum_gd / count) : A(0);
      coef[2 * c + ch] = stats ? static_cast<A>(-a * sum_g / count) : A(0);
    }
  }
}

template <typename T, typename A>
struct GradInputOp {
  const T* g;
  const T* x;
  const A* mean;
  const A* coef;  // [3, c]: a, b, c of finish_backward
  int64_t c;
  T* dx;
  __device__ void operator()(int64_t idx, int64_t ch) const {
    store(dx + idx, coef[ch] * load(g + idx) + coef[c + ch] * (load(x + idx) - mean[ch]) + coef[2 * c + ch]);
  }
};

// ---- running statistics ------------------------------------------------------------------------

// running[k] = (1 - momentum) * running[k] + momentum * batch[k] * factor, in double, rounded
// once into the running tensor's dtype (any stride).
template <typename R, typename A>
__global__ void update_running_kernel(R* running, int64_t stride, const A* batch, int64_t c, double momentum,
                                      double factor) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < c; k += int64_t(blockDim.x) * gridDim.x) {
    const double old = static_cast<double>(load(running + k * stride));
    // R(double) rounds once (Half/BFloat16 have exact double constructors), as the CPU does.
    running[k * stride] = R((1.0 - momentum) * old + momentum * static_cast<double>(batch[k]) * factor);
  }
}

template <typename R, typename A>
__global__ void eval_stats_kernel(const R* running, int64_t stride, int64_t c, bool invstd, double eps, A* out) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < c; k += int64_t(blockDim.x) * gridDim.x) {
    const double v = static_cast<double>(load(running + k * stride));
    out[k] = static_cast<A>(invstd ? 1.0 / sqrt(v + eps) : v);
  }
}

int64_t stride0(const Tensor& t) { return t.dim() == 0 ? 0 : t.stride(0); }

// ---- layer norm --------------------------------------------------------------------------------

// Rows of length d: TPR threads per row (32: a warp, 8 rows per 256-thread block; 512: the whole
// block on one row, for long rows).
template <int TPR, typename T, typename A>
__global__ void layer_norm_forward_kernel(const T* x, T* y, int64_t rows, int64_t d, const A* weight, const A* bias,
                                          double eps, A* mean_out, A* rstd_out) {
  __shared__ A smem[32];
  constexpr int kRowsPerBlock = TPR == 32 ? kBlock / 32 : 1;
  const int lane = threadIdx.x % TPR;
  for (int64_t r = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / TPR; r < rows;
       r += int64_t(gridDim.x) * kRowsPerBlock) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    A s = 0;
    for (int64_t j = lane; j < d; j += TPR) s += load(xr + j);
    const A m = row_allsum<TPR>(s, smem) / static_cast<A>(d);
    A sq = 0;
    for (int64_t j = lane; j < d; j += TPR) {
      const A dv = load(xr + j) - m;
      sq += dv * dv;
    }
    sq = row_allsum<TPR>(sq, smem);
    const A rs = static_cast<A>(1.0 / sqrt(static_cast<double>(sq) / static_cast<double>(d) + eps));
    if (lane == 0) {
      mean_out[r] = m;
      rstd_out[r] = rs;
    }
    for (int64_t j = lane; j < d; j += TPR) {
      A v = (load(xr + j) - m) * rs;
      if (weight) v = v * weight[j];
      if (bias) v = v + bias[j];
      store(yr + j, v);
    }
  }
}

template <int TPR, typename T, typename A>
__global__ void layer_norm_grad_input_kernel(const T* g, const T* x, int64_t rows, int64_t d, const A* mean,
                                             const A* rstd, const A* weight, T* dx) {
  __shared__ A smem[32];
  constexpr int kRowsPerBlock = TPR == 32 ? kBlock / 32 : 1;
  const int lane = threadIdx.x % TPR;
  for (int64_t r = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / TPR; r < rows;
       r += int64_t(gridDim.x) * kRowsPerBlock) {
    const T* xr = x + r * d;
    const T* gr = g + r * d;
    T* dr = dx + r * d;
    const A m = mean[r], rs = rstd[r];
    A sum_gw = 0, sum_gwx = 0;
    for (int64_t j = lane; j < d; j += TPR) {
      const A gw = load(gr + j) * (weight ? weight[j] : A(1));
      sum_gw += gw;
      sum_gwx += gw * (load(xr + j) - m) * rs;
    }
    const A mg = row_allsum<TPR>(sum_gw, smem) / static_cast<A>(d);
    const A mgx = row_allsum<TPR>(sum_gwx, smem) / static_cast<A>(d);
    for (int64_t j = lane; j < d; j += TPR) {
      const A gw = load(gr + j) * (weight ? weight[j] : A(1));
      const A xh = (load(xr + j) - m) * rs;
      store(dr + j, rs * (gw - mg - xh * mgx));
    }
  }
}

// Column sums of g * xhat and g over row splits: block (column tile, split), threads (column in
// tile, row phase); partial[(split * d + col) * 2 + {0: weight, 1: bias}].
template <typename T, typename A>
__global__ void layer_norm_param_partial(const T* g, const T* x, int64_t rows, int64_t d, const A* mean,
                                         const A* rstd, int64_t per, double* partial) {
  __shared__ double smem[2][kTileY][kTileX];
  const int64_t col = blockIdx.x * int64_t(kTileX) + threadIdx.x;
  const int64_t split = blockIdx.y;
  const int64_t r0 = split * per;
  const int64_t r1 = r0 + per < rows ? r0 + per : rows;
  double sw = 0.0, sb = 0.0;
  if (col < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileY) {
      const A gv = load(g + r * d + col);
      sw += static_cast<double>(gv * (load(x + r * d + col) - mean[r]) * rstd[r]);
      sb += static_cast<double>(gv);
    }
  }
  smem[0][threadIdx.y][threadIdx.x] = sw;
  smem[1][threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    double tw = 0.0, tb = 0.0;
    for (int y = 0; y < kTileY; ++y) {
      tw += smem[0][y][threadIdx.x];
      tb += smem[1][y][threadIdx.x];
    }
    partial[(split * d + col) * 2] = tw;
    partial[(split * d + col) * 2 + 1] = tb;
  }
}

template <typename A>
__global__ void layer_norm_param_finish(const double* partial, int64_t d, int64_t splits, A* grad_weight,
                                        A* grad_bias) {
  for (int64_t col = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; col < d; col += int64_t(blockDim.x) * gridDim.x) {
    double tw = 0.0, tb = 0.0;
    for (int64_t sp = 0; sp < splits; ++sp) {
      tw += partial[(sp * d + col) * 2];
      tb += partial[(sp * d + col) * 2 + 1];
    }
    if (grad_weight) grad_weight[col] = static_cast<A>(tw);
    if (grad_bias) grad_bias[col] = static_cast<A>(tb);
  }
}

constexpr int64_t kWarpRowMaxD = 1024;  // rows up to this long take a warp each; longer ones a block
constexpr int kLongRowThreads = 512;

unsigned row_grid(int64_t rows, int64_t d) {
  const int64_t per_block = d <= kWarpRowMaxD ? kBlock / 32 : 1;
  return static_cast<unsigned>(clamp64(ceil_div(rows, per_block), 1, 65535LL * 32));
}

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    MANTISSA_ASSERT(!t->defined() || t->is_contiguous(), op, ": CUDA kernel needs contiguous operands, got shape ",
                    shape_str(t->sizes()), " strides ", shape_str(t->strides()));
}

}  // namespace

void batch_norm_stats(const Tensor& x, BatchNormShape shp, double eps, const Tensor& mean, const Tensor& var,
                      const Tensor& invstd) {
  check_contiguous("batch_norm", {&x, &mean, &var, &invstd});
  if (shp.c == 0) return;
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm", [&]<typename T>() {
    using A = dev_compute_t<T>;
    const int64_t splits = channel_splits(shp);
    Tensor partial = scratch(x, shp.c * splits);
    double* pp = partial.data<double>();
    const double count = static_cast<double>(shp.n * shp.s);
    const unsigned grid = grid_for(shp.c);
    channel_partials(SumX<T>{x.data<T>()}, shp, pp, stream, "batch_norm");
    finish_mean<A><<<grid, kBlock, 0, stream>>>(pp, shp.c, splits, count, mean.data<A>());
    MANTISSA_CUDA_LAUNCH_CHECK("batch_norm");
    // Second pass over centred values: no cancellation for large means.
    channel_partials(SumSqDev<T, A>{x.data<T>(), mean.data<A>()}, shp, pp, stream, "batch_norm");
    finish_var<A><<<grid, kBlock, 0, stream>>>(pp, shp.c, splits, count, eps, var.data<A>(), invstd.data<A>());
    MANTISSA_CUDA_LAUNCH_CHECK("batch_norm");
  });
}

void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, double momentum, int64_t count) {
  const int64_t c = mean.numel();
  if (c == 0) return;
  DeviceGuard guard(mean);
  cudaStream_t stream = stream_for(mean);
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  visit_dtype<kAccTypes>(mean.dtype(), "batch_norm", [&]<typename A>() {
    auto update = [&](const Tensor& running, const Tensor& batch, double factor) {
      visit_dtype<kFloatTypes>(running.dtype(), "batch_norm", [&]<typename R>() {
        update_running_kernel<R, A><<<grid_for(c), kBlock, 0, stream>>>(running.data<R>(), stride0(running),
                                                                        batch.data<A>(), c, momentum, factor);
        MANTISSA_CUDA_LAUNCH_CHECK("batch_norm");
      });
    };
    update(running_mean, mean, 1.0);
    update(running_var, var, unbias);
  });
}

void batch_norm_eval_stats(const Tensor& running_mean, const Tensor& running_var, double eps, const Tensor& mean,
                           const Tensor& invstd) {
  const int64_t c = mean.numel();
  if (c == 0) return;
  check_contiguous("batch_norm", {&mean, &invstd});
  DeviceGuard guard(mean);
  cudaStream_t stream = stream_for(mean);
  visit_dtype<kAccTypes>(mean.dtype(), "batch_norm", [&]<typename A>() {
    auto convert = [&](const Tensor& running, const Tensor& out, bool to_invstd) {
      visit_dtype<kFloatTypes>(running.dtype(), "batch_norm", [&]<typename R>() {
        eval_stats_kernel<R, A><<<grid_for(c), kBlock, 0, stream>>>(running.data<R>(), stride0(running), c, to_invstd,
                                                                    eps, out.data<A>());
        MANTISSA_CUDA_LAUNCH_CHECK("batch_norm");
      });
    };
    convert(running_mean, mean, false);
    convert(running_var, invstd, true);
  });
}

void batch_norm_apply(const Tensor& y, const Tensor& x, BatchNormShape shp, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias) {
  check_contiguous("batch_norm", {&y, &x, &mean, &invstd, &weight, &bias});
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm", [&]<typename T>() {
    using A = dev_compute_t<T>;
    channel_map(ApplyOp<T, A>{x.data<T>(), y.data<T>(), mean.data<A>(), invstd.data<A>(), ptr_or_null<A>(weight),
                              ptr_or_null<A>(bias)},
                shp, stream, "batch_norm");
  });
}

void batch_norm_backward(const Tensor& g, const Tensor& x, BatchNormShape shp, const Tensor& mean,
                         const Tensor& invstd, const Tensor& weight, bool training, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  check_contiguous("batch_norm backward", {&g, &x, &mean, &invstd, &weight, &grad_x, &grad_weight, &grad_bias});
  if (shp.c == 0) return;
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm backward", [&]<typename T>() {
    using A = dev_compute_t<T>;
    const bool need_sums = grad_weight.defined() || grad_bias.defined() || (grad_x.defined() && training);
    if (!need_sums && !grad_x.defined()) return;
    const double count = static_cast<double>(shp.n * shp.s);
    Tensor partial, coef;
    const int64_t splits = channel_splits(shp);
    if (need_sums) {
      partial = scratch(x, shp.c * splits * 2);
      channel_partials(SumGrad<T, A>{g.data<T>(), x.data<T>(), mean.data<A>()}, shp, partial.data<double>(), stream,
                       "batch_norm backward");
    }
    if (grad_x.defined()) coef = empty({3 * shp.c}, TensorOptions(dtype_of<A>).device(x.device()));
    finish_backward<A><<<grid_for(shp.c), kBlock, 0, stream>>>(
        need_sums ? partial.data<double>() : nullptr, shp.c, splits, count, training, invstd.data<A>(),
        ptr_or_null<A>(weight), mut_or_null<A>(grad_weight), mut_or_null<A>(grad_bias), mut_or_null<A>(coef));
    MANTISSA_CUDA_LAUNCH_CHECK("batch_norm backward");
    if (grad_x.defined()) {
      channel_map(GradInputOp<T, A>{g.data<T>(), x.data<T>(), mean.data<A>(), coef.data<A>(), shp.c, grad_x.data<T>()},
                  shp, stream, "batch_norm backward");
    }
  });
}

void layer_norm_forward(const Tensor& y, const Tensor& x, int64_t rows, int64_t d, const Tensor& weight,
                        const Tensor& bias, double eps, const Tensor& mean, const Tensor& rstd) {
  check_contiguous("layer_norm", {&y, &x, &weight, &bias, &mean, &rstd});
  if (rows == 0) return;
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  visit_dtype<kFloatTypes>(x.dtype(), "layer_norm", [&]<typename T>() {
    using A = dev_compute_t<T>;
    const unsigned grid = row_grid(rows, d);
    if (d <= kWarpRowMaxD) {
      layer_norm_forward_kernel<32, T, A><<<grid, kBlock, 0, stream>>>(
          x.data<T>(), y.data<T>(), rows, d, ptr_or_null<A>(weight), ptr_or_null<A>(bias), eps, mean.data<A>(),
          rstd.data<A>());
    } else {
      layer_norm_forward_kernel<kLongRowThreads, T, A><<<grid, kLongRowThreads, 0, stream>>>(
          x.data<T>(), y.data<T>(), rows, d, ptr_or_null<A>(weight), ptr_or_null<A>(bias), eps, mean.data<A>(),
          rstd.data<A>());
    }
    MANTISSA_CUDA_LAUNCH_CHECK("layer_norm");
  });
}

void layer_norm_backward(const Tensor& g, const Tensor& x, int64_t rows, int64_t d, const Tensor& mean,
                         const Tensor& rstd, const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  check_contiguous("layer_norm backward", {&g, &x, &mean, &rstd, &weight, &grad_x, &grad_weight, &grad_bias});
  if (d == 0) return;
  DeviceGuard guard(x);
  cudaStream_t stream = stream_for(x);
  visit_dtype<kFloatTypes>(x.dtype(), "layer_norm backward", [&]<typename T>() {
    using A = dev_compute_t<T>;
    if (grad_x.defined() && rows > 0) {
      const unsigned grid = row_grid(rows, d);
      if (d <= kWarpRowMaxD) {
        layer_norm_grad_input_kernel<32, T, A><<<grid, kBlock, 0, stream>>>(
            g.data<T>(), x.data<T>(), rows, d, mean.data<A>(), rstd.data<A>(), ptr_or_null<A>(weight),
            grad_x.data<T>());
      } else {
        layer_norm_grad_input_kernel<kLongRowThreads, T, A><<<grid, kLongRowThreads, 0, stream>>>(
            g.data<T>(), x.data<T>(), rows, d, mean.data<A>(), rstd.data<A>(), ptr_or_null<A>(weight),
            grad_x.data<T>());
      }
      MANTISSA_CUDA_LAUNCH_CHECK("layer_norm backward");
    }
    if (grad_weight.defined() || grad_bias.defined()) {
      const int64_t tiles = ceil_div(d, kTileX);
      const int64_t splits = clamp64(ceil_div(kTargetBlocks, tiles), 1, clamp64(ceil_div(rows, 64), 1, kMaxSplits));
      const int64_t per = ceil_div(rows, splits);
      Tensor partial = scratch(x, splits * d * 2);
      layer_norm_param_partial<T, A>
          <<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(splits)), dim3(kTileX, kTileY), 0, stream>>>(
              g.data<T>(), x.data<T>(), rows, d, mean.data<A>(), rstd.data<A>(), per, partial.data<double>());
      MANTISSA_CUDA_LAUNCH_CHECK("layer_norm backward");
      layer_norm_param_finish<A><<<grid_for(d), kBlock, 0, stream>>>(partial.data<double>(), d, splits,
                                                                     mut_or_null<A>(grad_weight),
                                                                     mut_or_null<A>(grad_bias));
      MANTISSA_CUDA_LAUNCH_CHECK("layer_norm backward");
    }
  });
}

}  // namespace mantissa::kernels::cuda
