// CUDA loss kernels of loss.h: target validation (one device-to-host read), the fused
// cross-entropy forward (max, log-sum-exp, target logit and logit mean per position, a warp or
// a block per row of classes, or a thread per position when classes are strided) and its
// elementwise backward from the saved log-sum-exp, NLL, and MSE. Accumulation in F32 (F64 for
// F64), the CPU's formulas.
#include <limits>

#include "core/kernels/loss.h"
#include "core/kernels/reduce_cuda.cuh"

namespace mantissa::kernels::cuda {

namespace {

struct Dims {
  int64_t n, c, s;  // batch, classes, trailing positions (the CPU's dims_of)
};

Dims dims_of(const Tensor& x, const Tensor& target) {
  const int64_t positions = target.numel();
  const int64_t c = x.dim() == 0 ? 1 : (x.dim() == 1 ? x.size(0) : x.size(1));
  const int64_t n = x.dim() >= 2 ? x.size(0) : 1;
  return {n, c, n == 0 ? 0 : positions / n};
}

template <typename F>
void visit2(const Tensor& x, const Tensor& target, const char* op, F&& f) {
  visit_dtype<kFloatTypes>(x.dtype(), op, [&]<typename T>() {
    visit_dtype<kIndexTypes>(target.dtype(), op, [&]<typename I>() { f.template operator()<T, I>(); });
  });
}

void check_device(const char* op, const Tensor& lead, std::initializer_list<const Tensor*> others) {
  MANTISSA_CHECK(lead.is_cuda(), op, ": expected a CUDA tensor, got one on ", lead.device());
  for (const Tensor* t : others)
    if (t->defined())
      MANTISSA_CHECK(t->device() == lead.device(), op, ": expected every tensor on ", lead.device(), ", got a ",
                     shape_str(t->sizes()), " ", t->dtype(), " tensor on ", t->device());
}

template <typename Acc>
const Acc* g_ptr(const Tensor& g_pos) {
  if (!g_pos.defined()) return nullptr;
  MANTISSA_ASSERT(g_pos.is_contiguous() && g_pos.dtype() == dtype_of<Acc>, "loss backward: per-position gradient");
  return g_pos.data<Acc>();
}

unsigned capped_blocks(int64_t want, int sms) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(want, int64_t(sms) * 32)));
}

struct MinComb {
  template <typename V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return b < a ? b : a;
  }
};

constexpr unsigned long long kNoPosition = ~0ull;
constexpr int kCeRowBlock = 512;  // threads per row of more than 2048 classes

// ---- target validation ------------------------------------------------------------------------
// res = [valid count, first bad position, its value]: counts and the minimum position by
// integer atomics (exact whatever the order), then the value at that position.
template <typename I>
__global__ void count_targets_kernel(const I* __restrict__ t, int64_t n, OffsetCalc<1> calc, int64_t classes,
                                     int64_t ignore_index, unsigned long long* res) {
  __shared__ unsigned long long scratch[32];
  unsigned long long count = 0, bad = kNoPosition;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t v = static_cast<int64_t>(t[calc.get(i)[0]]);
    if (v == ignore_index) continue;
    if (v >= 0 && v < classes) {
      ++count;
    } else if (bad == kNoPosition) {
      bad = static_cast<unsigned long long>(i);  // i only grows: a thread's first is its least
    }
  }
  count = block_reduce(count, SumComb{}, 0ull, scratch);
  bad = block_reduce(bad, MinComb{}, kNoPosition, scratch);
  if (threadIdx.x == 0) {
    if (count != 0) atomicAdd(&res[0], count);
    if (bad != kNoPosition) atomicMin(&res[1], bad);
  }
}

template <typename I>
__global__ void bad_target_value_kernel(const I* __restrict__ t, OffsetCalc<1> calc, unsigned long long* res) {
  if (res[1] != kNoPosition) res[2] = static_cast<unsigned long long>(static_cast<int64_t>(t[calc.get(res[1])[0]]));
}

// ---- cross-entropy forward ----------------------------------------------------------------------

template <typename Acc>
struct CeParams {
  int64_t ignore_index;
  Acc eps, inv_c;
};

// The loss of one position from its reductions (the CPU's formula; eps = 0 skips the
// smoothing term so an infinite logit elsewhere cannot make 0 * inf).
template <typename Acc>
__device__ __forceinline__ Acc ce_loss(Acc l, Acc xt, Acc sx, const CeParams<Acc>& p) {
  const Acc nll = l - xt;
  return p.eps > 0 ? (1 - p.eps) * nll + p.eps * (l - sx * p.inv_c) : nll;
}

// Rows of C contiguous logits (S == 1): kBlockRow -> a block per row, else a warp per row.
template <typename T, typename I, bool kBlockRow>
__global__ void __launch_bounds__(kBlockRow ? kCeRowBlock : kBlock)
    ce_forward_rows_kernel(const T* __restrict__ x, const I* __restrict__ target, dev_compute_t<T>* loss,
                           dev_compute_t<T>* lse, int64_t rows, int64_t C, CeParams<dev_compute_t<T>> p) {
  using Acc = dev_compute_t<T>;
  constexpr int K = 16 / sizeof(T);
  __shared__ Acc scratch[32];
  const int tid = kBlockRow ? threadIdx.x : (threadIdx.x & 31);
  const int nt = kBlockRow ? blockDim.x : 32;
  const int64_t first = kBlockRow ? blockIdx.x : int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  const int64_t step = kBlockRow ? gridDim.x : int64_t(gridDim.x) * (blockDim.x / 32);
  auto all = [&](Acc v, auto comb, Acc identity) {
    if constexpr (kBlockRow) {
      return block_reduce(v, comb, identity, scratch);
    } else {
      (void)identity;
      return warp_allreduce(v, comb);
    }
  };
  for (int64_t r = first; r < rows; r += step) {
    const int64_t t = static_cast<int64_t>(target[r]);
    if (t == p.ignore_index) {  // uniform across the row's threads
      if (tid == 0) {
        loss[r] = 0;
        lse[r] = 0;
      }
      continue;
    }
    const T* xr = x + r * C;
    Acc m = -std::numeric_limits<Acc>::infinity();
    row_loop(
        xr, C, true, tid, nt,
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
    m = all(m, MaxComb{}, -std::numeric_limits<Acc>::infinity());
    Acc se = 0, sx = 0;
    row_loop(
        xr, C, true, tid, nt,
        [&](int64_t i) {
          const Acc v = load(xr + i);
          se += acc_exp(v - m);
          sx += v;
        },
        [&](int64_t i) {
          const auto q = load_vec(xr + i);
#pragma unroll
          for (int j = 0; j < K; ++j) {
            const Acc v = load(&q.v[j]);
            se += acc_exp(v - m);
            sx += v;
          }
        });
    se = all(se, SumComb{}, Acc(0));
    sx = all(sx, SumComb{}, Acc(0));
    if (tid == 0) {
      const Acc l = m + acc_log(se);
      // Targets are validated first; an unvalidated bad one gives NaN, never a wild read.
      const Acc xt = t >= 0 && t < C ? static_cast<Acc>(load(xr + t)) : std::numeric_limits<Acc>::quiet_NaN();
      loss[r] = ce_loss(l, xt, sx, p);
      lse[r] = l;
    }
  }
}

// Classes strided by S > 1: a thread per position, adjacent positions adjacent in memory.
template <typename T, typename I>
__global__ void ce_forward_strided_kernel(const T* __restrict__ x, const I* __restrict__ target, dev_compute_t<T>* loss,
                                          dev_compute_t<T>* lse, int64_t positions, int64_t C, int64_t S,
                                          CeParams<dev_compute_t<T>> p) {
  using Acc = dev_compute_t<T>;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < positions;
       q += int64_t(blockDim.x) * gridDim.x) {
    const int64_t t = static_cast<int64_t>(target[q]);
    if (t == p.ignore_index) {
      loss[q] = 0;
      lse[q] = 0;
      continue;
    }
    const T* xq = x + (q / S) * C * S + q % S;
    Acc m = -std::numeric_limits<Acc>::infinity();
    for (int64_t c = 0; c < C; ++c) {
      const Acc v = load(xq + c * S);
      m = v > m ? v : m;
    }
    Acc se = 0, sx = 0;
    for (int64_t c = 0; c < C; ++c) {
      const Acc v = load(xq + c * S);
      se += acc_exp(v - m);
      sx += v;
    }
    const Acc l = m + acc_log(se);
    const Acc xt = t >= 0 && t < C ? static_cast<Acc>(load(xq + t * S)) : std::numeric_limits<Acc>::quiet_NaN();
    loss[q] = ce_loss(l, xt, sx, p);
    lse[q] = l;
  }
}

// ---- elementwise backward kernels over [N, C, S] -------------------------------------------------

// grad = w (exp(x - lse) - (1 - eps) onehot(t) - eps / C), 0 at ignored positions.
template <typename T, typename I>
__global__ void ce_backward_kernel(T* __restrict__ grad, const T* __restrict__ x,
                                   const dev_compute_t<T>* __restrict__ lse, const I* __restrict__ target,
                                   const dev_compute_t<T>* __restrict__ g_pos, int64_t total, int64_t C, int64_t S,
                                   dev_compute_t<T> scale, int64_t ignore_index, dev_compute_t<T> eps,
                                   dev_compute_t<T> off) {
  using Acc = dev_compute_t<T>;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t si = e % S;
    const int64_t c = (e / S) % C;
    const int64_t q = (e / (S * C)) * S + si;
    const int64_t t = static_cast<int64_t>(target[q]);
    Acc v = 0;
    if (t != ignore_index) {
      const Acc w = g_pos ? scale * g_pos[q] : scale;
      const Acc prob = acc_exp(static_cast<Acc>(load(x + e)) - lse[q]);
      const Acc target_mass = (c == t ? 1 - eps : Acc(0)) + off;
      v = w * (prob - target_mass);
    }
    store(grad + e, v);
  }
}

template <typename T, typename I>
__global__ void nll_forward_kernel(const T* __restrict__ x, const I* __restrict__ target, dev_compute_t<T>* loss,
                                   int64_t positions, int64_t C, int64_t S, int64_t ignore_index) {
  using Acc = dev_compute_t<T>;
  for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < positions;
       q += int64_t(blockDim.x) * gridDim.x) {
    const int64_t t = static_cast<int64_t>(target[q]);
    Acc v = 0;
    if (t != ignore_index)
      v = t >= 0 && t < C ? -static_cast<Acc>(load(x + (q / S) * C * S + t * S + q % S))
                          : std::numeric_limits<Acc>::quiet_NaN();
    loss[q] = v;
  }
}

// grad = -w at the target class, 0 elsewhere (every element written: no separate zero fill).
template <typename T, typename I>
__global__ void nll_backward_kernel(T* __restrict__ grad, const I* __restrict__ target,
                                    const dev_compute_t<T>* __restrict__ g_pos, int64_t total, int64_t C, int64_t S,
                                    dev_compute_t<T> scale, int64_t ignore_index) {
  using Acc = dev_compute_t<T>;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total; e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t c = (e / S) % C;
    const int64_t q = (e / (S * C)) * S + e % S;
    const int64_t t = static_cast<int64_t>(target[q]);
    Acc v = 0;
    if (t != ignore_index && c == t) v = -(g_pos ? scale * g_pos[q] : scale);
    store(grad + e, v);
  }
}

template <typename T>
struct MseF {
  using Acc = dev_compute_t<T>;
  __device__ __forceinline__ Acc operator()(Acc a, Acc b) const {
    const Acc diff = a - b;
    return diff * diff;
  }
};

template <typename T>
struct MseBackwardF {
  using Acc = dev_compute_t<T>;
  Acc two_sc;
  __device__ __forceinline__ Acc operator()(Acc a, Acc b, Acc g) const { return two_sc * (a - b) * g; }
};

}  // namespace

int64_t count_valid_targets(const Tensor& target, int64_t classes, int64_t ignore_index, const char* op) {
  check_device(op, target, {});
  const int64_t n = target.numel();
  if (n == 0) return 0;
  DeviceGuard guard(target);
  cudaStream_t s = stream_for(target);
  const OffsetCalc<1> calc = make_offset_calc<1>(target.sizes(), {target.strides()}, op);
  Tensor res = empty({3}, TensorOptions(DType::I64).device(target.device()));
  auto* rp = reinterpret_cast<unsigned long long*>(res.data_ptr());
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(rp, 0, sizeof(unsigned long long), s), op);
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(rp + 1, 0xff, sizeof(unsigned long long), s), op);
  const unsigned blocks =
      std::min<unsigned>(grid_for(n), static_cast<unsigned>(multiprocessor_count(target.device().index) * 8));
  visit_dtype<kIndexTypes>(target.dtype(), op, [&]<typename I>() {
    count_targets_kernel<I><<<blocks, kBlock, 0, s>>>(target.data<I>(), n, calc, classes, ignore_index, rp);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
    bad_target_value_kernel<I><<<1, 1, 0, s>>>(target.data<I>(), calc, rp);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
  // The one host read: count, first bad position and its value together.
  unsigned long long host[3] = {0, 0, 0};
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(host, rp, sizeof(host), cudaMemcpyDeviceToHost, s), op);
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(s), op);
  if (host[1] != kNoPosition) {
    const int64_t v = static_cast<int64_t>(host[2]);
    MANTISSA_ERROR(op, ": target value ", v, " at position ", host[1], " is out of bounds for ", classes,
                   " classes (expected a class index in [0, ", classes, ") or ignore_index ", ignore_index, ")");
  }
  return static_cast<int64_t>(host[0]);
}

void cross_entropy_forward(const Tensor& losses, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double label_smoothing) {
  check_device("cross_entropy", logits, {&losses, &lse, &target});
  MANTISSA_ASSERT(logits.is_contiguous() && target.is_contiguous() && losses.is_contiguous() && lse.is_contiguous(),
                  "cross_entropy kernel operands");
  const Dims d = dims_of(logits, target);
  const int64_t positions = d.n * d.s;
  if (positions == 0) return;
  DeviceGuard guard(logits);
  cudaStream_t s = stream_for(logits);
  const int sms = multiprocessor_count(logits.device().index);
  visit2(logits, target, "cross_entropy", [&]<typename T, typename I>() {
    using Acc = dev_compute_t<T>;
    const CeParams<Acc> p{ignore_index, static_cast<Acc>(label_smoothing), Acc(1) / static_cast<Acc>(d.c)};
    const T* xp = logits.data<T>();
    const I* tp = target.data<I>();
    Acc* lp = losses.data<Acc>();
    Acc* ep = lse.data<Acc>();
    if (d.s == 1 && d.c > 2048) {
      ce_forward_rows_kernel<T, I, true>
          <<<capped_blocks(positions, sms), kCeRowBlock, 0, s>>>(xp, tp, lp, ep, positions, d.c, p);
    } else if (d.s == 1) {
      constexpr int kRowsPerBlock = kBlock / 32;
      ce_forward_rows_kernel<T, I, false>
          <<<capped_blocks((positions + kRowsPerBlock - 1) / kRowsPerBlock, sms), kBlock, 0, s>>>(xp, tp, lp, ep,
                                                                                                  positions, d.c, p);
    } else {
      ce_forward_strided_kernel<T, I><<<grid_for(positions), kBlock, 0, s>>>(xp, tp, lp, ep, positions, d.c, d.s, p);
    }
    MANTISSA_CUDA_LAUNCH_CHECK("cross_entropy");
  });
}

void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                            const Tensor& g_pos, double scale, int64_t ignore_index, double label_smoothing) {
  check_device("cross_entropy backward", grad, {&logits, &lse, &target, &g_pos});
  MANTISSA_ASSERT(grad.is_contiguous() && logits.is_contiguous() && target.is_contiguous() && lse.is_contiguous() &&
                      grad.sizes() == logits.sizes() && grad.dtype() == logits.dtype(),
                  "cross_entropy backward kernel operands");
  const Dims d = dims_of(logits, target);
  const int64_t total = d.n * d.c * d.s;
  if (total == 0) return;
  DeviceGuard guard(grad);
  cudaStream_t s = stream_for(grad);
  visit2(logits, target, "cross_entropy backward", [&]<typename T, typename I>() {
    using Acc = dev_compute_t<T>;
    const Acc eps = static_cast<Acc>(label_smoothing);
    ce_backward_kernel<T, I><<<grid_for(total), kBlock, 0, s>>>(
        grad.data<T>(), logits.data<T>(), lse.data<Acc>(), target.data<I>(), g_ptr<Acc>(g_pos), total, d.c, d.s,
        static_cast<Acc>(scale), ignore_index, eps, eps / static_cast<Acc>(d.c));
    MANTISSA_CUDA_LAUNCH_CHECK("cross_entropy backward");
  });
}

void nll_loss_forward(const Tensor& losses, const Tensor& log_probs, const Tensor& target, int64_t ignore_index) {
  check_device("nll_loss", log_probs, {&losses, &target});
  MANTISSA_ASSERT(log_probs.is_contiguous() && target.is_contiguous() && losses.is_contiguous(),
                  "nll_loss kernel operands");
  const Dims d = dims_of(log_probs, target);
  const int64_t positions = d.n * d.s;
  if (positions == 0) return;
  DeviceGuard guard(log_probs);
  cudaStream_t s = stream_for(log_probs);
  visit2(log_probs, target, "nll_loss", [&]<typename T, typename I>() {
    using Acc = dev_compute_t<T>;
    nll_forward_kernel<T, I><<<grid_for(positions), kBlock, 0, s>>>(
        log_probs.data<T>(), target.data<I>(), losses.data<Acc>(), positions, d.c, d.s, ignore_index);
    MANTISSA_CUDA_LAUNCH_CHECK("nll_loss");
  });
}

void nll_loss_backward(const Tensor& grad, const Tensor& target, const Tensor& g_pos, double scale,
                       int64_t ignore_index) {
  check_device("nll_loss backward", grad, {&target, &g_pos});
  MANTISSA_ASSERT(grad.is_contiguous() && target.is_contiguous(), "nll_loss backward kernel operands");
  const Dims d = dims_of(grad, target);
  const int64_t total = d.n * d.c * d.s;
  if (total == 0) return;
  DeviceGuard guard(grad);
  cudaStream_t s = stream_for(grad);
  visit2(grad, target, "nll_loss backward", [&]<typename T, typename I>() {
    using Acc = dev_compute_t<T>;
    nll_backward_kernel<T, I><<<grid_for(total), kBlock, 0, s>>>(
        grad.data<T>(), target.data<I>(), g_ptr<Acc>(g_pos), total, d.c, d.s, static_cast<Acc>(scale), ignore_index);
    MANTISSA_CUDA_LAUNCH_CHECK("nll_loss backward");
  });
}

void mse_forward(const Tensor& losses, const Tensor& x, const Tensor& t) {
  check_device("mse_loss", losses, {&x, &t});
  DeviceGuard guard(losses);
  visit_dtype<kFloatTypes>(x.dtype(), "mse_loss", [&]<typename T>() {
    using Acc = dev_compute_t<T>;
    cuda_map<Acc, T, T>("mse_loss", MseF<T>{}, losses, {x, t});
  });
}

void mse_backward(const Tensor& gx, const Tensor& x, const Tensor& t, const Tensor& g, double scale) {
  check_device("mse_loss backward", gx, {&x, &t, &g});
  DeviceGuard guard(gx);
  visit_dtype<kFloatTypes>(x.dtype(), "mse_loss backward", [&]<typename T>() {
    using Acc = dev_compute_t<T>;
    cuda_map<T, T, T, T>("mse_loss backward", MseBackwardF<T>{static_cast<Acc>(2.0 * scale)}, gx, {x, t, g});
  });
}

}  // namespace mantissa::kernels::cuda
