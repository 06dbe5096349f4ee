// CUDA reductions of reduce.h (sum, mean, var, max/min with and without indices) and their
// backward helpers. One launcher serves every reduction: a plan splits x into kept dims (one
// output each) and reduced dims; rows (reduced innermost stride smallest) are folded by a warp
// or a block per output with 16-byte vector loads, columns (kept innermost stride smallest) by
// a thread per output so loads coalesce across outputs. Outputs with little work are split
// over several blocks whose partials a second kernel combines in a fixed order: no atomics,
// reproducible results. Accumulation in F32 (F64 for F64, wrapping uint64 for integers).
#include <algorithm>
#include <limits>
#include <utility>

#include "core/kernels/reduce.h"
#include "core/kernels/reduce_cuda.cuh"

namespace mantissa::kernels::cuda {

namespace {

// ---- the plan: kept dims in output order, reduced dims by decreasing stride ---------------
struct RPlan {
  Shape out_sizes, out_strides;  // kept dims of size > 1, in order (the output is their row-major rank)
  Shape red_sizes, red_strides;  // reduced dims of size > 1, innermost (smallest stride) last
  int64_t n_out = 1, n_red = 1;
};

RPlan make_plan(const Tensor& x, const std::vector<bool>& reduce) {
  MANTISSA_ASSERT(reduce.size() == x.sizes().size(), "reduce mask of ", reduce.size(), " dims for ",
                  shape_str(x.sizes()));
  RPlan p;
  std::vector<std::pair<int64_t, int64_t>> red;
  for (size_t d = 0; d < x.sizes().size(); ++d) {
    const int64_t s = x.sizes()[d], st = x.strides()[d];
    if (reduce[d]) {
      p.n_red *= s;
      if (s != 1) red.emplace_back(s, st);
    } else {
      p.n_out *= s;
      if (s != 1) {
        p.out_sizes.push_back(s);
        p.out_strides.push_back(st);
      }
    }
  }
  std::stable_sort(red.begin(), red.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [s, st] : red) {
    p.red_sizes.push_back(s);
    p.red_strides.push_back(st);
  }
  return p;
}

// Offset of reduced element r (row-major over the sorted reduced dims).
struct RedIndex {
  OffsetCalc<1> calc;
  __device__ __forceinline__ int64_t operator()(int64_t r) const {
    return calc.ndim == 1 ? r * calc.strides[0][0] : calc.get(r)[0];
  }
};

// ---- reduction ops: identity, fold one element, combine two partials ------------------------
// op.at(o) gives the folder for output o (var's second pass needs that output's mean).

template <typename C, typename Acc>
struct SumOp {
  using acc_t = Acc;
  struct Folder {
    __device__ __forceinline__ Acc fold(Acc a, C v, int64_t) const { return a + static_cast<Acc>(v); }
  };
  __device__ __forceinline__ Acc identity() const { return Acc(0); }
  __device__ __forceinline__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ __forceinline__ Folder at(int64_t) const { return {}; }
};

// Sum of squared deviations from the per-output mean (var's second pass, in Acc).
template <typename C, typename Acc>
struct SqDevOp {
  using acc_t = Acc;
  const Acc* mean;
  struct Folder {
    Acc m;
    __device__ __forceinline__ Acc fold(Acc a, C v, int64_t) const {
      const Acc d = static_cast<Acc>(v) - m;
      return a + d * d;
    }
  };
  __device__ __forceinline__ Acc identity() const { return Acc(0); }
  __device__ __forceinline__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ __forceinline__ Folder at(int64_t o) const { return {mean[o]}; }
};

template <typename C>
__device__ __forceinline__ bool is_nan_value(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    return v != v;
  } else {
    (void)v;
    return false;
  }
}

template <typename C, bool IsMax>
__device__ __forceinline__ C extreme_identity() {
  if constexpr (std::is_floating_point_v<C>) {
    return IsMax ? -std::numeric_limits<C>::infinity() : std::numeric_limits<C>::infinity();
  } else {
    return IsMax ? std::numeric_limits<C>::lowest() : std::numeric_limits<C>::max();
  }
}

// Max/min of all elements: a NaN always wins (NaN propagates), as the CPU's pick().
template <typename C, bool IsMax>
struct ExtremeOp {
  using acc_t = C;
  struct Folder {
    __device__ __forceinline__ C fold(C a, C v, int64_t) const { return ExtremeOp::pick(a, v); }
  };
  __device__ static __forceinline__ C pick(C a, C v) { return ((IsMax ? v > a : v < a) || is_nan_value(v)) ? v : a; }
  __device__ __forceinline__ C identity() const { return extreme_identity<C, IsMax>(); }
  __device__ __forceinline__ C combine(C a, C b) const { return pick(a, b); }
  __device__ __forceinline__ Folder at(int64_t) const { return {}; }
};

template <typename C>
struct ValIdx {
  C v;
  int64_t i;
};

// Max/min with the index: the extreme value, a NaN beating every number, and among equals
// (or among NaNs) the smallest index. That rule does not depend on the combination order, so
// any tree gives the CPU's answer: the first max (first NaN).
template <typename C, bool IsMax>
struct ExtremeIdxOp {
  using acc_t = ValIdx<C>;
  __device__ static __forceinline__ acc_t best(acc_t a, acc_t b) {
    const bool an = is_nan_value(a.v), bn = is_nan_value(b.v);
    if (an || bn) {
      if (an && bn) return a.i <= b.i ? a : b;
      return an ? a : b;
    }
    if (IsMax ? b.v > a.v : b.v < a.v) return b;
    if (IsMax ? a.v > b.v : a.v < b.v) return a;
    return a.i <= b.i ? a : b;
  }
  struct Folder {
    __device__ __forceinline__ acc_t fold(acc_t a, C v, int64_t r) const { return best(a, acc_t{v, r}); }
  };
  __device__ __forceinline__ acc_t identity() const {
    return acc_t{extreme_identity<C, IsMax>(), std::numeric_limits<int64_t>::max()};
  }
  __device__ __forceinline__ acc_t combine(acc_t a, acc_t b) const { return best(a, b); }
  __device__ __forceinline__ Folder at(int64_t) const { return {}; }
};

// ---- writers: what happens to an output's final accumulator ---------------------------------

// out[o] = a (sum) or a / div (mean: the count; var: the degrees of freedom), rounded once.
template <typename O, typename Acc>
struct SumWriter {
  O* out;
  Acc div;
  bool divide;
  __device__ __forceinline__ void operator()(int64_t o, Acc a) const { store(out + o, divide ? a / div : a); }
};

// indices[o] = the index; values[o] = x's element there (its exact bits, NaN payload too).
template <typename T>
struct ExtremeIdxWriter {
  T* values;
  int64_t* indices;
  const T* x;
  OffsetCalc<1> out_calc;
  int64_t red_stride;
  __device__ __forceinline__ void operator()(int64_t o, ValIdx<dev_compute_t<T>> a) const {
    if (indices) indices[o] = a.i;
    if (values) values[o] = x[out_calc.get(o)[0] + a.i * red_stride];
  }
};

template <typename T>
struct ValueWriter {
  T* out;
  __device__ __forceinline__ void operator()(int64_t o, dev_compute_t<T> a) const { store(out + o, a); }
};

// Where a block's accumulator for output o goes: the writer when one block covers the whole
// reduction, else slot [split][o] of the partials workspace.
template <typename Acc, typename W>
struct Sink {
  Acc* partials;  // null: write final values
  W writer;
  __device__ __forceinline__ void put(int64_t o, int64_t n_out, Acc a) const {
    if (partials) {
      partials[int64_t(blockIdx.y) * n_out + o] = a;
    } else {
      writer(o, a);
    }
  }
};

// ---- kernels ----------------------------------------------------------------------------------

// Rows: blockDim.x threads fold one output's reduced elements [r0, r1), blockDim.y outputs
// per block. kVec: a single reduced dim of stride 1, read with 16-byte vector loads after a
// scalar head that reaches 16-byte alignment.
template <bool kVec, typename T, typename Op, typename W>
__global__ void reduce_rows_kernel(const T* __restrict__ x, int64_t n_out, int64_t n_red, int64_t chunk,
                                   int64_t out_blocks, OffsetCalc<1> out_calc, RedIndex red, Op op,
                                   Sink<typename Op::acc_t, W> sink) {
  using Acc = typename Op::acc_t;
  constexpr int K = 16 / sizeof(T);
  __shared__ alignas(16) unsigned char smem_raw[(kBlock / 32) * sizeof(Acc)];
  Acc* smem = reinterpret_cast<Acc*>(smem_raw);
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x;
  const int64_t r0 = int64_t(blockIdx.y) * chunk;
  const int64_t r1 = std::min(n_red, r0 + chunk);
  auto comb = [&op](Acc a, Acc b) { return op.combine(a, b); };
  for (int64_t ob = blockIdx.x; ob < out_blocks; ob += gridDim.x) {
    const int64_t o = ob * blockDim.y + ty;
    Acc a = op.identity();
    if (o < n_out) {
      const T* p = x + out_calc.get(o)[0];
      const auto f = op.at(o);
      if constexpr (kVec) {
        const uintptr_t addr = reinterpret_cast<uintptr_t>(p + r0);
        const int64_t head = std::min<int64_t>(r1 - r0, int64_t((16 - (addr & 15)) & 15) / int64_t(sizeof(T)));
        if (tx < head) a = f.fold(a, load(p + r0 + tx), r0 + tx);
        const int64_t v0 = r0 + head;
        const int64_t nvec = (r1 - v0) / K;
        const auto* pv = reinterpret_cast<const detail::Vec<T, K>*>(p + v0);
        int64_t v = tx;
        // Two independent 16-byte loads in flight per thread before folding.
        for (; v + bx < nvec; v += 2 * bx) {
          const detail::Vec<T, K> q0 = pv[v];
          const detail::Vec<T, K> q1 = pv[v + bx];
#pragma unroll
          for (int j = 0; j < K; ++j) a = f.fold(a, load(&q0.v[j]), v0 + v * K + j);
#pragma unroll
          for (int j = 0; j < K; ++j) a = f.fold(a, load(&q1.v[j]), v0 + (v + bx) * K + j);
        }
        if (v < nvec) {
          const detail::Vec<T, K> q0 = pv[v];
#pragma unroll
          for (int j = 0; j < K; ++j) a = f.fold(a, load(&q0.v[j]), v0 + v * K + j);
        }
        for (int64_t r = v0 + nvec * K + tx; r < r1; r += bx) a = f.fold(a, load(p + r), r);
      } else {
        int64_t r = r0 + tx;
        for (; r + 3 * bx < r1; r += 4 * bx) {
          const auto e0 = load(p + red(r)), e1 = load(p + red(r + bx));
          const auto e2 = load(p + red(r + 2 * bx)), e3 = load(p + red(r + 3 * bx));
          a = f.fold(a, e0, r);
          a = f.fold(a, e1, r + bx);
          a = f.fold(a, e2, r + 2 * bx);
          a = f.fold(a, e3, r + 3 * bx);
        }
        for (; r < r1; r += bx) a = f.fold(a, load(p + red(r)), r);
      }
    }
    a = warp_reduce(a, comb);
    if (bx > 32) {
      // Rows wider than a warp: a tree of the row's warp results (rows are whole warps).
      const int wpr = bx / 32;
      __syncthreads();
      if ((tx & 31) == 0) smem[ty * wpr + tx / 32] = a;
      __syncthreads();
      if (tx < 32) {
        a = tx < wpr ? smem[ty * wpr + tx] : op.identity();
        a = warp_reduce(a, comb);
      }
    }
    if (tx == 0 && o < n_out) sink.put(o, n_out, a);
  }
}

// Columns: blockDim.x consecutive outputs per block (adjacent in memory, so loads coalesce),
// blockDim.y threads splitting each output's reduced range; a tree over y in shared memory.
template <typename T, typename Op, typename W>
__global__ void reduce_cols_kernel(const T* __restrict__ x, int64_t n_out, int64_t n_red, int64_t chunk,
                                   int64_t out_blocks, OffsetCalc<1> out_calc, RedIndex red, Op op,
                                   Sink<typename Op::acc_t, W> sink) {
  using Acc = typename Op::acc_t;
  __shared__ alignas(16) unsigned char smem_raw[kBlock * sizeof(Acc)];
  Acc* smem = reinterpret_cast<Acc*>(smem_raw);
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x, by = blockDim.y;
  const int64_t r0 = int64_t(blockIdx.y) * chunk;
  const int64_t r1 = std::min(n_red, r0 + chunk);
  for (int64_t ob = blockIdx.x; ob < out_blocks; ob += gridDim.x) {
    const int64_t o = ob * bx + tx;
    Acc a = op.identity();
    if (o < n_out) {
      const T* p = x + out_calc.get(o)[0];
      const auto f = op.at(o);
      int64_t r = r0 + ty;
      for (; r + 3 * by < r1; r += 4 * by) {
        const auto e0 = load(p + red(r)), e1 = load(p + red(r + by));
        const auto e2 = load(p + red(r + 2 * by)), e3 = load(p + red(r + 3 * by));
        a = f.fold(a, e0, r);
        a = f.fold(a, e1, r + by);
        a = f.fold(a, e2, r + 2 * by);
        a = f.fold(a, e3, r + 3 * by);
      }
      for (; r < r1; r += by) a = f.fold(a, load(p + red(r)), r);
    }
    __syncthreads();  // the previous output block's readers are done
    smem[ty * bx + tx] = a;
    __syncthreads();
    for (int s = by / 2; s > 0; s >>= 1) {
      if (ty < s) smem[ty * bx + tx] = op.combine(smem[ty * bx + tx], smem[(ty + s) * bx + tx]);
      __syncthreads();
    }
    if (ty == 0 && o < n_out) sink.put(o, n_out, smem[tx]);
  }
}

// Combines the `splits` partials of each output (a warp per output, lanes then a warp tree)
// and hands the result to the writer.
template <typename Op, typename W>
__global__ void reduce_finish_kernel(const typename Op::acc_t* __restrict__ partials, int64_t n_out, int64_t splits,
                                     Op op, W writer) {
  using Acc = typename Op::acc_t;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  auto comb = [&op](Acc a, Acc b) { return op.combine(a, b); };
  for (int64_t o = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; o < n_out; o += warps) {
    Acc a = op.identity();
    for (int64_t s = lane; s < splits; s += 32) a = op.combine(a, partials[s * n_out + o]);
    a = warp_reduce(a, comb);
    if (lane == 0) writer(o, a);
  }
}

// ---- the launcher -----------------------------------------------------------------------------

struct Launch {
  bool rows = true, vec = false;
  int bx = 32, by = 1;
  int64_t out_blocks = 1, splits = 1, chunk = 1;
  unsigned grid_x = 1;
};

template <typename T>
Launch plan_launch(const RPlan& p, int sms) {
  Launch l;
  const bool has_red = !p.red_sizes.empty();
  const int64_t red_inner = has_red ? std::abs(p.red_strides.back()) : 0;
  const int64_t out_inner = p.out_sizes.empty() ? std::numeric_limits<int64_t>::max() : std::abs(p.out_strides.back());
  l.rows = has_red && red_inner <= out_inner;
  int64_t per_split_min;  // elements one block-row of threads folds at least, per split
  if (l.rows) {
    l.vec = p.red_sizes.size() == 1 && p.red_strides[0] == 1;
    const int64_t k = l.vec ? int64_t(16 / sizeof(T)) : 1;
    l.bx = static_cast<int>(std::max<int64_t>(32, pow2_at_least((p.n_red + k - 1) / k, kBlock)));
    l.by = static_cast<int>(pow2_at_least(p.n_out, kBlock / l.bx));
    l.out_blocks = (p.n_out + l.by - 1) / l.by;
    per_split_min = int64_t(l.bx) * k * 4;  // >= 4 loads per thread
  } else {
    l.by = static_cast<int>(pow2_at_least(p.n_red, kBlock / pow2_at_least(p.n_out, 32)));
    l.bx = static_cast<int>(pow2_at_least(p.n_out, kBlock / l.by));
    l.out_blocks = (p.n_out + l.bx - 1) / l.bx;
    per_split_min = int64_t(l.by) * 8;  // >= 8 loads per thread
  }
  // Few output blocks and long reductions: split each reduction over more blocks (grid y) so
  // the whole GPU works; a second kernel combines the partials.
  const int64_t target = int64_t(sms) * 8;
  if (l.out_blocks < target) {
    const int64_t want = (target + l.out_blocks - 1) / l.out_blocks;
    l.splits = std::clamp<int64_t>(std::min(want, p.n_red / per_split_min), 1, 65535);
  }
  const int64_t align = l.rows ? int64_t(l.bx) * (l.vec ? int64_t(16 / sizeof(T)) : 1) : l.by;
  l.chunk = (p.n_red + l.splits - 1) / l.splits;
  l.chunk = std::max<int64_t>(1, (l.chunk + align - 1) / align * align);
  l.splits = std::max<int64_t>(1, (p.n_red + l.chunk - 1) / l.chunk);
  l.grid_x = static_cast<unsigned>(std::min<int64_t>(l.out_blocks, std::numeric_limits<int32_t>::max()));
  return l;
}

// Runs op over plan p of x (p.n_out > 0, p.n_red > 0) and hands each output to writer.
template <typename T, typename Op, typename W>
void run_reduce(const char* name, const Tensor& x, const RPlan& p, const Op& op, const W& writer) {
  using Acc = typename Op::acc_t;
  MANTISSA_ASSERT(p.n_out > 0 && p.n_red > 0, name, ": empty reduction reached the launcher");
  const int device = x.device().index;
  cudaStream_t s = stream_for(x);
  const Launch l = plan_launch<T>(p, multiprocessor_count(device));
  const OffsetCalc<1> out_calc = make_offset_calc<1>(p.out_sizes, {p.out_strides}, name);
  const RedIndex red{make_offset_calc<1>(p.red_sizes, {p.red_strides}, name)};
  Tensor partials;
  Sink<Acc, W> sink{nullptr, writer};
  if (l.splits > 1) {
    partials = empty({l.splits * p.n_out * int64_t(sizeof(Acc))}, TensorOptions(DType::U8).device(x.device()));
    sink.partials = static_cast<Acc*>(partials.data_ptr());
  }
  const dim3 grid(l.grid_x, static_cast<unsigned>(l.splits));
  const dim3 block(static_cast<unsigned>(l.bx), static_cast<unsigned>(l.by));
  const T* xp = static_cast<const T*>(x.data_ptr());
  if (l.rows && l.vec) {
    reduce_rows_kernel<true, T, Op, W>
        <<<grid, block, 0, s>>>(xp, p.n_out, p.n_red, l.chunk, l.out_blocks, out_calc, red, op, sink);
  } else if (l.rows) {
    reduce_rows_kernel<false, T, Op, W>
        <<<grid, block, 0, s>>>(xp, p.n_out, p.n_red, l.chunk, l.out_blocks, out_calc, red, op, sink);
  } else {
    reduce_cols_kernel<T, Op, W>
        <<<grid, block, 0, s>>>(xp, p.n_out, p.n_red, l.chunk, l.out_blocks, out_calc, red, op, sink);
  }
  MANTISSA_CUDA_LAUNCH_CHECK(name);
  if (l.splits > 1) {
    constexpr int kWarps = kBlock / 32;
    const int64_t blocks = std::min<int64_t>((p.n_out + kWarps - 1) / kWarps, 65535LL * 32);
    reduce_finish_kernel<Op, W><<<static_cast<unsigned>(blocks), kBlock, 0, s>>>(
        static_cast<const Acc*>(partials.data_ptr()), p.n_out, l.splits, op, writer);
    MANTISSA_CUDA_LAUNCH_CHECK(name);
  }
}

// ---- small kernels ------------------------------------------------------------------------------

template <typename V>
struct ConstF {
  V v;
  __device__ __forceinline__ V operator()() const { return v; }
};

// Integer sums wrap like PyTorch's; unsigned arithmetic makes the wrap defined behaviour.
template <typename T>
using sum_acc_t = std::conditional_t<std::is_integral_v<dev_compute_t<T>>, uint64_t,
                                     std::conditional_t<std::is_same_v<T, double>, double, float>>;

// Same rule as the CPU's visit_out: x's dtype or its accumulate dtype (floating x), I64 else.
template <typename T, typename F>
void visit_out(DType out, F&& f) {
  if constexpr (std::is_floating_point_v<dev_compute_t<T>>) {
    using Acc = dev_compute_t<T>;
    if (out == dtype_of<T>) return f.template operator()<T>();
    MANTISSA_ASSERT(out == dtype_of<Acc>, "reduction output dtype ", dtype_name(out), " for input ",
                    dtype_name(dtype_of<T>));
    return f.template operator()<Acc>();
  } else {
    MANTISSA_ASSERT(out == DType::I64, "integer reduction output dtype ", dtype_name(out));
    return f.template operator()<int64_t>();
  }
}

void check_operands(const char* op, const Tensor& out, std::initializer_list<const Tensor*> ins) {
  MANTISSA_CHECK(out.is_cuda(), op, ": expected the output on a CUDA device, got ", out.device());
  for (const Tensor* t : ins)
    if (t->defined())
      MANTISSA_CHECK(t->device() == out.device(), op, ": expected every tensor on ", out.device(), ", got a ",
                     shape_str(t->sizes()), " ", t->dtype(), " tensor on ", t->device());
}

void check_out(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  MANTISSA_ASSERT(reduce.size() == x.sizes().size(), "reduce mask of ", reduce.size(), " dims for ",
                  shape_str(x.sizes()));
  Shape keep = x.sizes();
  for (size_t d = 0; d < keep.size(); ++d)
    if (reduce[d]) keep[d] = 1;
  MANTISSA_ASSERT(out.is_contiguous() && shape_numel(out.sizes()) == shape_numel(keep), "reduction output ",
                  shape_str(out.sizes()), " for keepdim shape ", shape_str(keep));
}

enum class SumKind { Sum, Mean };

template <typename T>
void sum_typed(const char* name, const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, SumKind kind) {
  using C = dev_compute_t<T>;
  using Acc = sum_acc_t<T>;
  const RPlan p = make_plan(x, reduce);
  if (p.n_out == 0) return;
  visit_out<T>(out.dtype(), [&]<typename O>() {
    const bool mean = kind == SumKind::Mean;
    if (p.n_red == 0) {
      // 0 for a sum; 0/0 = NaN for a mean (floating types only reach the mean).
      Acc v = Acc(0);
      if constexpr (std::is_floating_point_v<Acc>) {
        if (mean) v = std::numeric_limits<Acc>::quiet_NaN();
      }
      cuda_map<O>(name, ConstF<dev_compute_t<O>>{static_cast<dev_compute_t<O>>(v)}, out, {});
      return;
    }
    SumWriter<O, Acc> w{static_cast<O*>(out.data_ptr()), static_cast<Acc>(p.n_red), mean};
    run_reduce<T>(name, x, p, SumOp<C, Acc>{}, w);
  });
}

template <typename T>
void var_typed(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction) {
  using C = dev_compute_t<T>;
  using Acc = sum_acc_t<T>;
  const RPlan p = make_plan(x, reduce);
  if (p.n_out == 0) return;
  visit_out<T>(out.dtype(), [&]<typename O>() {
    if (p.n_red == 0) {
      cuda_map<O>("var", ConstF<dev_compute_t<O>>{static_cast<dev_compute_t<O>>(std::numeric_limits<Acc>::quiet_NaN())},
                  out, {});
      return;
    }
    // Two passes in Acc like the CPU: the mean, then the squared deviations from it.
    Tensor mu = empty({p.n_out}, TensorOptions(dtype_of<Acc>).device(x.device()));
    Acc* mp = mu.data<Acc>();
    run_reduce<T>("var", x, p, SumOp<C, Acc>{}, SumWriter<Acc, Acc>{mp, static_cast<Acc>(p.n_red), true});
    const Acc dof = static_cast<Acc>(std::max<int64_t>(0, p.n_red - correction));
    run_reduce<T>("var", x, p, SqDevOp<C, Acc>{mp}, SumWriter<O, Acc>{static_cast<O*>(out.data_ptr()), dof, true});
  });
}

// ---- backward kernels ---------------------------------------------------------------------------

template <typename T, typename G>
struct ScaleF {
  dev_compute_t<T> sc;
  __device__ __forceinline__ dev_compute_t<T> operator()(dev_compute_t<G> g) const { return round_as<T>(g) * sc; }
};

template <typename T, typename G>
struct VarBackwardF {
  using Acc = dev_compute_t<T>;
  Acc f;
  __device__ __forceinline__ Acc operator()(dev_compute_t<G> g, Acc xv, Acc m) const {
    return static_cast<Acc>(round_as<T>(g)) * (xv - m) * f;
  }
};

// out (contiguous [outer, n, inner]) = g at the saved index along dim, 0 elsewhere: every
// element written once, so no separate zero fill. calc maps a kept position to (g, index).
template <typename T, typename G>
__global__ void scatter_along_dim_kernel(T* __restrict__ out, int64_t total, int64_t n, int64_t inner,
                                         OffsetCalc<2> calc, const G* __restrict__ g, const int64_t* __restrict__ idx) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t in_i = e % inner;
    const int64_t j = (e / inner) % n;
    const int64_t out_i = e / (inner * n);
    const auto off = calc.get(out_i * inner + in_i);
    const bool hit = idx[off[1]] == j;
    store(out + e, hit ? round_as<T>(load(g + off[0])) : dev_compute_t<T>(0));
  }
}

// Elements of x (strided, flat index over its shape) equal to *value (NaN matches NaN),
// counted into *count: per-block trees, one integer atomic per block (exact, order-free).
template <typename T>
__global__ void count_equal_kernel(const T* __restrict__ x, int64_t n, OffsetCalc<1> calc, const T* __restrict__ value,
                                   unsigned long long* count) {
  __shared__ unsigned long long scratch[32];
  using C = dev_compute_t<T>;
  const C v = load(value);
  const bool nan = is_nan_value(v);
  unsigned long long c = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const C a = load(x + calc.get(i)[0]);
    c += nan ? is_nan_value(a) : a == v;
  }
  c = block_reduce(c, SumComb{}, 0ull, scratch);
  if (threadIdx.x == 0 && c != 0) atomicAdd(count, c);
}

// share = g / count in double, rounded to T's compute type (the CPU's g.item<double>() / count).
template <typename T, typename G>
__global__ void extreme_share_kernel(const G* __restrict__ g, const unsigned long long* count,
                                     dev_compute_t<T>* share) {
  *share = static_cast<dev_compute_t<T>>(static_cast<double>(load(g)) / static_cast<double>(*count));
}

template <typename T>
struct DistributeF {
  using C = dev_compute_t<T>;
  const T* value;
  const C* share;
  __device__ __forceinline__ C operator()(C a) const {
    const C v = load(value);
    const bool hit = is_nan_value(v) ? is_nan_value(a) : a == v;
    return hit ? *share : C(0);
  }
};

}  // namespace

// ---- entry points ------------------------------------------------------------------------------

void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  check_operands("sum", out, {&x});
  check_out(out, x, reduce);
  DeviceGuard guard(out);
  visit_dtype<kAllTypes>(x.dtype(), "sum", [&]<typename T>() { sum_typed<T>("sum", out, x, reduce, SumKind::Sum); });
}

void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  check_operands("mean", out, {&x});
  check_out(out, x, reduce);
  DeviceGuard guard(out);
  visit_dtype<kFloatTypes>(x.dtype(), "mean",
                           [&]<typename T>() { sum_typed<T>("mean", out, x, reduce, SumKind::Mean); });
}

void var(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction) {
  check_operands("var", out, {&x});
  check_out(out, x, reduce);
  DeviceGuard guard(out);
  visit_dtype<kFloatTypes>(x.dtype(), "var", [&]<typename T>() { var_typed<T>(out, x, reduce, correction); });
}

void max_min_dim(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t dim, bool is_max) {
  const char* name = is_max ? "max" : "min";
  const Tensor& lead = values.defined() ? values : indices;
  MANTISSA_ASSERT(lead.defined(), name, ": neither values nor indices requested");
  check_operands(name, lead, {&values, &indices, &x});
  const int64_t nd = x.dim();
  const int64_t n = nd == 0 ? 1 : x.size(dim);
  MANTISSA_ASSERT(n > 0, "max_min_dim over an empty dim");
  MANTISSA_ASSERT(!values.defined() || (values.is_contiguous() && values.dtype() == x.dtype()), name,
                  ": values output");
  MANTISSA_ASSERT(!indices.defined() || (indices.is_contiguous() && indices.dtype() == DType::I64), name,
                  ": indices output");
  std::vector<bool> mask(nd, false);
  if (nd > 0) mask[dim] = true;
  const RPlan p = make_plan(x, mask);
  if (p.n_out == 0) return;
  DeviceGuard guard(x);
  const int64_t red_stride = nd == 0 ? 0 : x.stride(dim);
  visit_dtype<kAllTypes>(x.dtype(), name, [&]<typename T>() {
    using C = dev_compute_t<T>;
    const ExtremeIdxWriter<T> w{values.defined() ? values.data<T>() : nullptr,
                                indices.defined() ? indices.data<int64_t>() : nullptr, x.data<T>(),
                                make_offset_calc<1>(p.out_sizes, {p.out_strides}, name), red_stride};
    if (is_max) {
      run_reduce<T>(name, x, p, ExtremeIdxOp<C, true>{}, w);
    } else {
      run_reduce<T>(name, x, p, ExtremeIdxOp<C, false>{}, w);
    }
  });
}

void max_min_all(const Tensor& out, const Tensor& x, bool is_max) {
  const char* name = is_max ? "max" : "min";
  check_operands(name, out, {&x});
  MANTISSA_ASSERT(x.numel() > 0 && out.numel() == 1 && out.dtype() == x.dtype(), "max_min_all");
  const RPlan p = make_plan(x, std::vector<bool>(x.dim(), true));
  DeviceGuard guard(x);
  visit_dtype<kAllTypes>(x.dtype(), name, [&]<typename T>() {
    using C = dev_compute_t<T>;
    const ValueWriter<T> w{out.data<T>()};
    if (is_max) {
      run_reduce<T>(name, x, p, ExtremeOp<C, true>{}, w);
    } else {
      run_reduce<T>(name, x, p, ExtremeOp<C, false>{}, w);
    }
  });
}

void expand_scale(const Tensor& out, const Tensor& g_keep, double scale) {
  check_operands("mean backward", out, {&g_keep});
  DeviceGuard guard(out);
  visit_dtype<kFloatTypes>(out.dtype(), "mean backward", [&]<typename T>() {
    visit_dtype<kFloatTypes>(g_keep.dtype(), "mean backward", [&]<typename G>() {
      cuda_map<T, G>("mean backward", ScaleF<T, G>{static_cast<dev_compute_t<T>>(scale)}, out, {g_keep});
    });
  });
}

void var_backward(const Tensor& out, const Tensor& g_keep, const Tensor& x, const Tensor& mean_keep, double factor) {
  check_operands("var backward", out, {&g_keep, &x, &mean_keep});
  DeviceGuard guard(out);
  visit_dtype<kFloatTypes>(out.dtype(), "var backward", [&]<typename T>() {
    using Acc = dev_compute_t<T>;
    MANTISSA_ASSERT(mean_keep.dtype() == dtype_of<Acc> && x.dtype() == dtype_of<T>, "var_backward dtypes");
    visit_dtype<kFloatTypes>(g_keep.dtype(), "var backward", [&]<typename G>() {
      cuda_map<T, G, T, Acc>("var backward", VarBackwardF<T, G>{static_cast<Acc>(factor)}, out, {g_keep, x, mean_keep});
    });
  });
}

void scatter_along_dim(const Tensor& out, const Tensor& g_keep, const Tensor& indices_keep, int64_t dim) {
  check_operands("max backward", out, {&g_keep, &indices_keep});
  MANTISSA_ASSERT(out.is_contiguous(), "scatter_along_dim output must be contiguous");
  MANTISSA_ASSERT(indices_keep.dtype() == DType::I64, "scatter_along_dim indices dtype");
  const int64_t total = out.numel();
  if (total == 0) return;
  const int64_t nd = out.dim();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  for (int64_t d = dim + 1; d < nd; ++d) inner *= out.size(d);
  const int64_t n = nd == 0 ? 1 : out.size(dim);
  MANTISSA_ASSERT(g_keep.numel() == outer * inner && indices_keep.numel() == outer * inner, "scatter_along_dim shapes");
  // The kept positions as [outer, inner] (dim dropped): strides of g and the indices there.
  Shape keep = out.sizes();
  if (nd > 0) keep[dim] = 1;
  const Shape gs = broadcast_strides_to(g_keep, keep);
  const Shape is = broadcast_strides_to(indices_keep, keep);
  Shape kept_sizes, g_strides, i_strides;
  for (int64_t d = 0; d < nd; ++d) {
    if (d == dim) continue;
    kept_sizes.push_back(out.size(d));
    g_strides.push_back(gs[d]);
    i_strides.push_back(is[d]);
  }
  const OffsetCalc<2> calc = make_offset_calc<2>(kept_sizes, {g_strides, i_strides}, "max backward");
  DeviceGuard guard(out);
  cudaStream_t s = stream_for(out);
  visit_dtype<kFloatTypes>(out.dtype(), "max backward", [&]<typename T>() {
    visit_dtype<kFloatTypes>(g_keep.dtype(), "max backward", [&]<typename G>() {
      scatter_along_dim_kernel<T, G><<<grid_for(total), kBlock, 0, s>>>(out.data<T>(), total, n, inner, calc,
                                                                        g_keep.data<G>(), indices_keep.data<int64_t>());
      MANTISSA_CUDA_LAUNCH_CHECK("max backward");
    });
  });
}

void distribute_to_extreme(const Tensor& out, const Tensor& g, const Tensor& x, const Tensor& value) {
  check_operands("max backward", out, {&g, &x, &value});
  MANTISSA_ASSERT(value.numel() == 1 && value.dtype() == x.dtype() && g.numel() == 1, "distribute_to_extreme operands");
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceGuard guard(out);
  cudaStream_t s = stream_for(out);
  const OffsetCalc<1> calc = make_offset_calc<1>(x.sizes(), {x.strides()}, "max backward");
  visit_dtype<kFloatTypes>(x.dtype(), "max backward", [&]<typename T>() {
    using C = dev_compute_t<T>;
    // [count (8 bytes) | share (8 bytes)] on the device: no host round trip.
    Tensor scratch = empty({16}, TensorOptions(DType::U8).device(x.device()));
    auto* count = static_cast<unsigned long long*>(scratch.data_ptr());
    auto* share = reinterpret_cast<C*>(static_cast<unsigned char*>(scratch.data_ptr()) + 8);
    MANTISSA_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned long long), s), "max backward");
    const unsigned blocks =
        std::min<unsigned>(grid_for(n), static_cast<unsigned>(multiprocessor_count(out.device().index) * 8));
    count_equal_kernel<T><<<blocks, kBlock, 0, s>>>(x.data<T>(), n, calc, value.data<T>(), count);
    MANTISSA_CUDA_LAUNCH_CHECK("max backward");
    visit_dtype<kFloatTypes>(g.dtype(), "max backward", [&]<typename G>() {
      extreme_share_kernel<T, G><<<1, 1, 0, s>>>(g.data<G>(), count, share);
      MANTISSA_CUDA_LAUNCH_CHECK("max backward");
    });
    cuda_map<T, T>("max backward", DistributeF<T>{value.data<T>(), share}, out, {x});
  });
}

}  // namespace mantissa::kernels::cuda
