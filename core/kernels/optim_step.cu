// CUDA side of the fused optimizer steps and master-weight passes (optim_step.h). Multi-tensor
// launches: the host packs up to kMaxSlots tensors (pointers, sizes, per-tensor constants) into
// a table passed by value, with the first block of each tensor, and launches again when the
// table fills. The update bodies are optim_math.h's, run on wrapper types whose operators are
// the _rn intrinsics, so nvcc cannot contract a*b + c into an FMA the CPU does not do: F32, F64
// and BF16 (every rounding mode, the Philox stream included) match the CPU bit for bit.
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/optim_math.h"
#include "core/kernels/optim_step.h"

#include <type_traits>

namespace mantissa::kernels::cuda {
namespace {

// ---- arithmetic without contraction ---------------------------------------------------------

struct DF {
  float v;
};
struct DD {
  double v;
};

#ifdef __CUDA_ARCH__
#define MANTISSA_RN(intrinsic, plain) intrinsic
#else
#define MANTISSA_RN(intrinsic, plain) plain
#endif

MANTISSA_INLINE DF operator+(DF a, DF b) { return {MANTISSA_RN(__fadd_rn(a.v, b.v), a.v + b.v)}; }
MANTISSA_INLINE DF operator*(DF a, DF b) { return {MANTISSA_RN(__fmul_rn(a.v, b.v), a.v * b.v)}; }
MANTISSA_INLINE DF operator/(DF a, DF b) { return {MANTISSA_RN(__fdiv_rn(a.v, b.v), a.v / b.v)}; }
MANTISSA_INLINE DF vfma(DF a, DF b, DF c) { return {MANTISSA_RN(__fmaf_rn(a.v, b.v, c.v), ::fmaf(a.v, b.v, c.v))}; }
MANTISSA_INLINE DF vsqrt(DF a) { return {MANTISSA_RN(__fsqrt_rn(a.v), ::sqrtf(a.v))}; }
MANTISSA_INLINE DF vmax(DF a, DF b) { return a.v > b.v ? a : b; }

MANTISSA_INLINE DD operator+(DD a, DD b) { return {MANTISSA_RN(__dadd_rn(a.v, b.v), a.v + b.v)}; }
MANTISSA_INLINE DD operator*(DD a, DD b) { return {MANTISSA_RN(__dmul_rn(a.v, b.v), a.v * b.v)}; }
MANTISSA_INLINE DD operator/(DD a, DD b) { return {MANTISSA_RN(__ddiv_rn(a.v, b.v), a.v / b.v)}; }
MANTISSA_INLINE DD vfma(DD a, DD b, DD c) { return {MANTISSA_RN(__fma_rn(a.v, b.v, c.v), ::fma(a.v, b.v, c.v))}; }
MANTISSA_INLINE DD vsqrt(DD a) { return {MANTISSA_RN(__dsqrt_rn(a.v), ::sqrt(a.v))}; }
MANTISSA_INLINE DD vmax(DD a, DD b) { return a.v > b.v ? a : b; }

#undef MANTISSA_RN

// The register type of a storage type: BF16 computes in F32.
template <typename T>
using Reg = std::conditional_t<std::is_same_v<T, double>, DD, DF>;
template <typename T>
using Scalar = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__device__ __forceinline__ Reg<T> ld(const T* p) {
  return {static_cast<Scalar<T>>(load(p))};
}

template <typename S>
__device__ __forceinline__ optim_math::SGDConsts<std::conditional_t<std::is_same_v<S, double>, DD, DF>> wrap(
    const optim_math::SGDConsts<S>& c) {
  return {{c.wd}, {c.momentum}, {c.one_minus_dampening}, {c.neg_lr}};
}
template <typename S>
__device__ __forceinline__ optim_math::AdamConsts<std::conditional_t<std::is_same_v<S, double>, DD, DF>> wrap(
    const optim_math::AdamConsts<S>& c) {
  return {{c.decay}, {c.wd}, {c.beta1}, {c.one_minus_beta1}, {c.beta2}, {c.one_minus_beta2}, {c.bias_correction2_sqrt},
          {c.eps}, {c.neg_step_size}};
}

// ---- the slot table -------------------------------------------------------------------------

constexpr int kThreads = 256;
// Each thread updates 8 consecutive elements: one Philox block per stream serves all of them.
constexpr int kPerThread = static_cast<int>(optim_math::kSRElementsPerBlock);
constexpr int64_t kChunk = int64_t(kThreads) * kPerThread;  // elements per block
constexpr int kMaxSlots = 16;  // keeps the argument block under 4 KB for every instantiation

template <typename Consts>
struct StepSlot {
  void* param;
  const void* grad;
  void* state0;
  void* state1;
  void* state2;
  void* compensation;
  int64_t numel;
  int64_t step;
  uint64_t index;
  bool first;
  Consts c;  // per-slot constants (Adam's bias corrections depend on the slot's step)
};

template <typename Consts>
struct StepTable {
  StepSlot<Consts> slot[kMaxSlots];
  int32_t block_start[kMaxSlots + 1];  // first block of each slot; block_start[n] = grid size
  int n;
};

// The slot a block works on, and its first element.
template <typename Table>
__device__ __forceinline__ int find_slot(const Table& t, int64_t& first) {
  int s = 0;
  while (s + 1 < t.n && static_cast<int32_t>(blockIdx.x) >= t.block_start[s + 1]) ++s;
  first = (static_cast<int64_t>(blockIdx.x) - t.block_start[s]) * kChunk + static_cast<int64_t>(threadIdx.x) * kPerThread;
  return s;
}

// BF16 write-back for the 8 elements of one thread (element `first` is a multiple of 8).
template <UpdateRounding R>
struct Writer {
  uint64_t seed;
  int64_t step;
  uint64_t index;
  int64_t first;
  uint32_t words[4][4];

  __device__ void prepare(uint32_t stream) {
    if constexpr (R == UpdateRounding::Stochastic) optim_math::sr_block(seed, step, index, stream, first, words[stream]);
  }
  __device__ void param(BFloat16* p, BFloat16* comp, int64_t i, float p_old, float p_new) {
    if constexpr (R == UpdateRounding::Nearest) {
      p[i] = BFloat16(p_new);
    } else if constexpr (R == UpdateRounding::Stochastic) {
      p[i].bits = optim_math::float_to_bf16_bits_stochastic(p_new, optim_math::sr_bits(words[optim_math::kStreamParam], i));
    } else {
      uint16_t pb, cb;
      optim_math::kahan_store(p_old, p_new, static_cast<float>(comp[i]), pb, cb);
      p[i].bits = pb;
      comp[i].bits = cb;
    }
  }
  __device__ void state(BFloat16* st, int64_t i, uint32_t stream, float v) {
    if constexpr (R == UpdateRounding::Stochastic) st[i].bits = optim_math::float_to_bf16_bits_stochastic(v, optim_math::sr_bits(words[stream], i));
    else st[i] = BFloat16(v);
  }
};

// ---- SGD ------------------------------------------------------------------------------------

template <typename T, UpdateRounding R, bool kWd, bool kMomentum, bool kNesterov>
__global__ void __launch_bounds__(kThreads) sgd_kernel(StepTable<optim_math::SGDConsts<Scalar<T>>> table, uint64_t seed) {
  int64_t first = 0;
  const int si = find_slot(table, first);
  const auto& s = table.slot[si];
  if (first >= s.numel) return;
  const int64_t end = first + kPerThread < s.numel ? first + kPerThread : s.numel;
  const auto c = wrap(s.c);
  T* p = static_cast<T*>(s.param);
  const T* g = static_cast<const T*>(s.grad);
  T* buf = static_cast<T*>(s.state0);
  [[maybe_unused]] Writer<R> w{seed, s.step, s.index, first, {}};
  if constexpr (std::is_same_v<T, BFloat16>) {
    w.prepare(optim_math::kStreamParam);
    if constexpr (kMomentum) w.prepare(optim_math::kStreamState0);
  }
  for (int64_t i = first; i < end; ++i) {
    Reg<T> pv = ld(p + i), bv{};
    [[maybe_unused]] const Scalar<T> p_old = pv.v;
    if constexpr (kMomentum) {
      if (!s.first) bv = ld(buf + i);
    }
    if (kMomentum && s.first) optim_math::sgd_update<kWd, kMomentum, true, kNesterov>(pv, ld(g + i), bv, c);
    else optim_math::sgd_update<kWd, kMomentum, false, kNesterov>(pv, ld(g + i), bv, c);
    if constexpr (std::is_same_v<T, BFloat16>) {
      w.param(p, static_cast<BFloat16*>(s.compensation), i, p_old, pv.v);
      if constexpr (kMomentum) w.state(buf, i, optim_math::kStreamState0, bv.v);
    } else {
      p[i] = pv.v;
      if constexpr (kMomentum) buf[i] = bv.v;
    }
  }
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

template <typename T, UpdateRounding R, bool kDecoupled, bool kWd, bool kAmsgrad>
__global__ void __launch_bounds__(kThreads) adam_kernel(StepTable<optim_math::AdamConsts<Scalar<T>>> table, uint64_t seed) {
  int64_t first = 0;
  const int si = find_slot(table, first);
  const auto& s = table.slot[si];
  if (first >= s.numel) return;
  const int64_t end = first + kPerThread < s.numel ? first + kPerThread : s.numel;
  const auto c = wrap(s.c);
  T* p = static_cast<T*>(s.param);
  const T* g = static_cast<const T*>(s.grad);
  T* m = static_cast<T*>(s.state0);
  T* v = static_cast<T*>(s.state1);
  T* vm = static_cast<T*>(s.state2);
  [[maybe_unused]] Writer<R> w{seed, s.step, s.index, first, {}};
  if constexpr (std::is_same_v<T, BFloat16>) {
    w.prepare(optim_math::kStreamParam);
    w.prepare(optim_math::kStreamState0);
    w.prepare(optim_math::kStreamState1);
    if constexpr (kAmsgrad) w.prepare(optim_math::kStreamState2);
  }
  for (int64_t i = first; i < end; ++i) {
    Reg<T> pv = ld(p + i), mv = ld(m + i), vv = ld(v + i), xv{};
    [[maybe_unused]] const Scalar<T> p_old = pv.v;
    if constexpr (kAmsgrad) xv = ld(vm + i);
    optim_math::adam_update<kDecoupled, kWd, kAmsgrad>(pv, ld(g + i), mv, vv, xv, c);
    if constexpr (std::is_same_v<T, BFloat16>) {
      w.param(p, static_cast<BFloat16*>(s.compensation), i, p_old, pv.v);
      w.state(m, i, optim_math::kStreamState0, mv.v);
      w.state(v, i, optim_math::kStreamState1, vv.v);
      if constexpr (kAmsgrad) w.state(vm, i, optim_math::kStreamState2, xv.v);
    } else {
      p[i] = pv.v;
      m[i] = mv.v;
      v[i] = vv.v;
      if constexpr (kAmsgrad) vm[i] = xv.v;
    }
  }
}

// ---- host side ------------------------------------------------------------------------------

template <typename F>
inline void with_bool(bool b, F&& f) {
  if (b) f(std::true_type{});
  else f(std::false_type{});
}

template <typename F>
inline void with_rounding(UpdateRounding r, F&& f) {
  switch (r) {
    case UpdateRounding::Nearest: f(std::integral_constant<UpdateRounding, UpdateRounding::Nearest>{}); break;
    case UpdateRounding::Stochastic: f(std::integral_constant<UpdateRounding, UpdateRounding::Stochastic>{}); break;
    case UpdateRounding::Kahan: f(std::integral_constant<UpdateRounding, UpdateRounding::Kahan>{}); break;
  }
}

// Packs the slots into tables of up to kMaxSlots and calls launch(table, blocks) for each.
// consts(slot) gives a slot's constants.
template <typename Consts, typename ConstsOf, typename Launch>
void for_each_table(const char* op, std::span<const OptimSlot> slots, const ConstsOf& consts, const Launch& launch) {
  StepTable<Consts> table{};
  int64_t blocks = 0;
  auto flush = [&] {
    if (table.n == 0) return;
    table.block_start[table.n] = static_cast<int32_t>(blocks);
    launch(table, static_cast<unsigned>(blocks));
    table.n = 0;
    blocks = 0;
  };
  for (const OptimSlot& s : slots) {
    if (s.numel == 0) continue;
    const int64_t nblocks = (s.numel + kChunk - 1) / kChunk;
    MANTISSA_CHECK(nblocks < INT32_MAX / 2, op, ": a tensor of ", s.numel, " elements is too large for one launch");
    if (table.n == kMaxSlots || blocks + nblocks >= INT32_MAX) flush();
    StepSlot<Consts>& d = table.slot[table.n];
    d.param = s.param;
    d.grad = s.grad;
    d.state0 = s.state0;
    d.state1 = s.state1;
    d.state2 = s.state2;
    d.compensation = s.compensation;
    d.numel = s.numel;
    d.step = s.step;
    d.index = s.index;
    d.first = s.first;
    d.c = consts(s);
    table.block_start[table.n] = static_cast<int32_t>(blocks);
    ++table.n;
    blocks += nblocks;
  }
  flush();
}

template <typename T>
void sgd_typed(int device, std::span<const OptimSlot> slots, const SGDHyper& h, const LowPrecisionUpdate& lp) {
  using S = Scalar<T>;
  using Consts = optim_math::SGDConsts<S>;
  DeviceGuard guard(device);
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream_handle(device));
  const Consts c = optim_math::sgd_consts<S>(h);
  const UpdateRounding r = std::is_same_v<T, BFloat16> ? lp.rounding : UpdateRounding::Nearest;
  with_rounding(r, [&](auto rc) {
    with_bool(h.weight_decay != 0.0, [&](auto wd) {
      with_bool(h.momentum != 0.0, [&](auto mom) {
        with_bool(h.nesterov, [&](auto nest) {
          constexpr UpdateRounding kR = decltype(rc)::value;
          if constexpr (std::is_same_v<T, BFloat16> || kR == UpdateRounding::Nearest) {
            for_each_table<Consts>("SGD step", slots, [&](const OptimSlot&) { return c; },
                                   [&](const StepTable<Consts>& table, unsigned blocks) {
                                     sgd_kernel<T, kR, decltype(wd)::value, decltype(mom)::value, decltype(nest)::value>
                                         <<<blocks, kThreads, 0, stream>>>(table, lp.seed);
                                     MANTISSA_CUDA_LAUNCH_CHECK("SGD step");
                                   });
          }
        });
      });
    });
  });
}

template <typename T>
void adam_typed(int device, std::span<const OptimSlot> slots, const AdamHyper& h, const LowPrecisionUpdate& lp) {
  using S = Scalar<T>;
  using Consts = optim_math::AdamConsts<S>;
  DeviceGuard guard(device);
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream_handle(device));
  const bool decoupled = h.decoupled_weight_decay && h.weight_decay != 0.0;  // p * 1 is exact: skip
  const bool coupled = !h.decoupled_weight_decay && h.weight_decay != 0.0;
  const UpdateRounding r = std::is_same_v<T, BFloat16> ? lp.rounding : UpdateRounding::Nearest;
  with_rounding(r, [&](auto rc) {
    with_bool(decoupled, [&](auto dec) {
      with_bool(coupled, [&](auto wd) {
        with_bool(h.amsgrad, [&](auto ams) {
          constexpr UpdateRounding kR = decltype(rc)::value;
          if constexpr (std::is_same_v<T, BFloat16> || kR == UpdateRounding::Nearest) {
            for_each_table<Consts>(
                "Adam step", slots, [&](const OptimSlot& s) { return optim_math::adam_consts<S>(h, s.step); },
                [&](const StepTable<Consts>& table, unsigned blocks) {
                  adam_kernel<T, kR, decltype(dec)::value, decltype(wd)::value, decltype(ams)::value>
                      <<<blocks, kThreads, 0, stream>>>(table, lp.seed);
                  MANTISSA_CUDA_LAUNCH_CHECK("Adam step");
                });
          }
        });
      });
    });
  });
}

constexpr DTypeSet kOptimTypes = dtype_bit(DType::F32) | dtype_bit(DType::F64) | dtype_bit(DType::BF16);

// ---- master weights -------------------------------------------------------------------------

constexpr int kMaxCastSlots = 64;
constexpr int64_t kCastChunk = 8192;  // elements per block

struct CastTable {
  const void* src[kMaxCastSlots];
  void* dst[kMaxCastSlots];
  int64_t numel[kMaxCastSlots];
  int32_t block_start[kMaxCastSlots + 1];
  int n;
};

__device__ __forceinline__ int find_cast_slot(const CastTable& t, int64_t& begin, int64_t& end) {
  int s = 0;
  while (s + 1 < t.n && static_cast<int32_t>(blockIdx.x) >= t.block_start[s + 1]) ++s;
  begin = (static_cast<int64_t>(blockIdx.x) - t.block_start[s]) * kCastChunk;
  end = begin + kCastChunk < t.numel[s] ? begin + kCastChunk : t.numel[s];
  return s;
}

// dst = float(src) * inv (unless inv == 1); the flag records any non-finite source value.
template <typename S>
__global__ void __launch_bounds__(kThreads) widen_kernel(CastTable table, float inv_scale, float* found_inf) {
  int64_t begin = 0, end = 0;
  const int s = find_cast_slot(table, begin, end);
  const S* src = static_cast<const S*>(table.src[s]);
  float* dst = static_cast<float*>(table.dst[s]);
  const bool multiply = inv_scale != 1.0f;
  bool bad = false;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const float v = load(src + i);
    bad |= (__float_as_uint(v) & 0x7f800000u) == 0x7f800000u;
    dst[i] = multiply ? __fmul_rn(v, inv_scale) : v;
  }
  // One write per block that saw a non-finite value; concurrent writers all store 1.
  if (__syncthreads_or(bad) && threadIdx.x == 0 && found_inf != nullptr) *found_inf = 1.0f;
}

template <typename D>
__global__ void __launch_bounds__(kThreads) round_kernel(CastTable table) {
  int64_t begin = 0, end = 0;
  const int s = find_cast_slot(table, begin, end);
  const float* src = static_cast<const float*>(table.src[s]);
  D* dst = static_cast<D*>(table.dst[s]);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) store(dst + i, src[i]);
}

template <typename Launch>
void for_each_cast_table(const char* op, std::span<const CastSlot> slots, const Launch& launch) {
  CastTable table{};
  int64_t blocks = 0;
  auto flush = [&] {
    if (table.n == 0) return;
    table.block_start[table.n] = static_cast<int32_t>(blocks);
    launch(table, static_cast<unsigned>(blocks));
    table.n = 0;
    blocks = 0;
  };
  for (const CastSlot& s : slots) {
    if (s.numel == 0) continue;
    const int64_t nblocks = (s.numel + kCastChunk - 1) / kCastChunk;
    MANTISSA_CHECK(nblocks < INT32_MAX / 2, op, ": a tensor of ", s.numel, " elements is too large for one launch");
    if (table.n == kMaxCastSlots || blocks + nblocks >= INT32_MAX) flush();
    table.src[table.n] = s.src;
    table.dst[table.n] = s.dst;
    table.numel[table.n] = s.numel;
    table.block_start[table.n] = static_cast<int32_t>(blocks);
    ++table.n;
    blocks += nblocks;
  }
  flush();
}

}  // namespace

void sgd_step(int device, DType dtype, std::span<const OptimSlot> slots, const SGDHyper& h,
              const LowPrecisionUpdate& lp) {
  visit_dtype<kOptimTypes>(dtype, "SGD step", [&]<typename T>() { sgd_typed<T>(device, slots, h, lp); });
}

void adam_step(int device, DType dtype, std::span<const OptimSlot> slots, const AdamHyper& h,
               const LowPrecisionUpdate& lp) {
  visit_dtype<kOptimTypes>(dtype, "Adam step", [&]<typename T>() { adam_typed<T>(device, slots, h, lp); });
}

void widen_unscale_grads(int device, DType src_dtype, std::span<const CastSlot> slots, float inv_scale,
                         float* found_inf) {
  DeviceGuard guard(device);
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream_handle(device));
  constexpr DTypeSet kSources = dtype_bit(DType::F16) | dtype_bit(DType::BF16) | dtype_bit(DType::F32);
  visit_dtype<kSources>(src_dtype, "widen_unscale_grads", [&]<typename S>() {
    for_each_cast_table("widen_unscale_grads", slots, [&](const CastTable& table, unsigned blocks) {
      widen_kernel<S><<<blocks, kThreads, 0, stream>>>(table, inv_scale, found_inf);
      MANTISSA_CUDA_LAUNCH_CHECK("widen_unscale_grads");
    });
  });
}

void round_masters(int device, DType dst_dtype, std::span<const CastSlot> slots) {
  DeviceGuard guard(device);
  cudaStream_t stream = static_cast<cudaStream_t>(current_stream_handle(device));
  constexpr DTypeSet kTargets = dtype_bit(DType::F16) | dtype_bit(DType::BF16);
  visit_dtype<kTargets>(dst_dtype, "round_masters", [&]<typename D>() {
    for_each_cast_table("round_masters", slots, [&](const CastTable& table, unsigned blocks) {
      round_kernel<D><<<blocks, kThreads, 0, stream>>>(table);
      MANTISSA_CUDA_LAUNCH_CHECK("round_masters");
    });
  });
}

}  // namespace mantissa::kernels::cuda
