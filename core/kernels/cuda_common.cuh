// Shared by every CUDA kernel file (.cu): checked runtime calls and launches, the current
// stream, 16-bit loads/stores through F32 registers, and cuda_map, the strided elementwise
// launcher (the device twin of loops.h map: broadcasting, F16/BF16 computed in F32 and
// rounded once on store, a flat vectorized path for contiguous 16-byte-aligned operands).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"
#include "core/kernels/cuda_runtime_api.h"

namespace mantissa::kernels::cuda {

// A failed CUDA runtime call or launch becomes a mantissa::Error naming the op, the call and
// CUDA's error string.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* op, const char* call);

#define MANTISSA_CUDA_CHECK(expr, op)                                          \
  do {                                                                         \
    cudaError_t mantissa_err_ = (expr);                                        \
    if (mantissa_err_ != cudaSuccess)                                          \
      ::mantissa::kernels::cuda::throw_cuda_error(mantissa_err_, op, #expr);   \
  } while (0)
// After every <<<...>>>: catches bad launch configurations immediately.
#define MANTISSA_CUDA_LAUNCH_CHECK(op) MANTISSA_CUDA_CHECK(cudaGetLastError(), op)

// The stream every kernel of the current thread launches on (see cuda_runtime_api.h).
inline cudaStream_t stream_for(const Tensor& t) {
  return static_cast<cudaStream_t>(current_stream_handle(t.device().index));
}

// Makes t's device current for the scope of a launch.
struct DeviceGuard {
  int previous = -1;
  explicit DeviceGuard(int device);
  explicit DeviceGuard(const Tensor& t) : DeviceGuard(t.device().index) {}
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

inline constexpr int kBlock = 256;
// Grid size for n elements at `per_thread` elements per thread, capped so huge tensors use a
// grid-stride loop instead of an oversized grid.
inline unsigned grid_for(int64_t n, int per_thread = 1) {
  int64_t blocks = (n + int64_t(kBlock) * per_thread - 1) / (int64_t(kBlock) * per_thread);
  if (blocks < 1) blocks = 1;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;
  return static_cast<unsigned>(blocks);
}

// ---- values: 16-bit types are loaded to float and rounded once on store ----------------
template <typename T> struct DevCompute { using type = T; };
template <> struct DevCompute<Half> { using type = float; };
template <> struct DevCompute<BFloat16> { using type = float; };
template <typename T> using dev_compute_t = typename DevCompute<T>::type;

// F16 through the conversion hardware: cvt.f32.f16 is exact, and cvt.rn.f16.f32 rounds to
// nearest even, keeps subnormals and overflows to Inf, exactly like half.h. NaNs take half.h's
// path so their payload bits match the CPU's bit for bit. (BF16 stays in half.h: its rounding
// is a single integer add, and CUDA's BF16 NaN differs from ours.)
__device__ __forceinline__ float half_to_float(Half h) {
  if ((h.bits & 0x7fffu) > 0x7c00u) return static_cast<float>(h);
  return __half2float(__ushort_as_half(h.bits));
}
__device__ __forceinline__ Half float_to_half(float f) {
  if (f != f) return Half(f);
  return Half::from_bits(__half_as_ushort(__float2half_rn(f)));
}

template <typename V>
inline constexpr bool is_float_like_v =
    std::is_floating_point_v<V> || std::is_same_v<V, Half> || std::is_same_v<V, BFloat16>;

// Float -> integer as the CPU copy does it: truncation toward zero, NaN -> 0, saturation at
// the integer type's range (C++ leaves the out-of-range cases undefined, and PTX would convert
// through a 32-bit register and wrap for 8-bit types).
template <typename T, typename V>
__device__ __forceinline__ T float_to_int(V v) {
  using C = std::conditional_t<std::is_same_v<V, double>, double, float>;
  const C x = static_cast<C>(v);
  if (x != x) return T(0);
  if (x <= static_cast<C>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
  if (x >= static_cast<C>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(x);
}

template <typename T>
__device__ __forceinline__ dev_compute_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, Half>) return half_to_float(*p);
  else if constexpr (std::is_same_v<T, BFloat16>) return static_cast<float>(*p);
  else return *p;
}
// Rounds v once into T: a double goes straight to F16/BF16 (no double rounding through float);
// floating values stored into integers saturate (float_to_int).
template <typename T, typename V>
__device__ __forceinline__ void store(T* p, V v) {
  if constexpr (std::is_same_v<T, Half>) {
    if constexpr (std::is_same_v<V, double>) *p = Half(v);
    else *p = float_to_half(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    if constexpr (std::is_same_v<V, double>) *p = BFloat16(v);
    else *p = BFloat16(static_cast<float>(v));
  } else if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && is_float_like_v<V>) {
    *p = float_to_int<T>(v);
  } else if constexpr (std::is_same_v<T, bool> && is_float_like_v<V>) {
    using C = std::conditional_t<std::is_same_v<V, double>, double, float>;
    *p = static_cast<C>(v) != C(0);  // NaN is true, as in C++ and on the CPU
  } else {
    *p = static_cast<T>(v);
  }
}

// ---- strided indexing -------------------------------------------------------------------
inline constexpr int kMaxDims = 10;

// Offsets (in elements) of N operands for a flat index over one shape; built on the host from
// the tensors (broadcast operands get stride 0), dims coalesced where every operand allows.
template <int N>
struct OffsetCalc {
  int ndim = 0;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];

  // Index = uint32_t when the whole shape has fewer than 2^32 elements: 32-bit division is
  // several times cheaper than the 64-bit one the GPU emulates.
  template <typename Index = int64_t>
  __device__ __forceinline__ std::array<int64_t, N> get(Index linear) const {
    std::array<int64_t, N> off{};
    for (int d = ndim - 1; d >= 0; --d) {
      const Index size = static_cast<Index>(sizes[d]);
      const int64_t i = static_cast<int64_t>(linear % size);
      linear /= size;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
    return off;
  }
};

// Strides of t viewed at `shape` (0 along broadcast dims); t.dim() <= shape.size().
Shape broadcast_strides_to(const Tensor& t, const Shape& shape);
// Coalesced OffsetCalc for operands[0..N) over `shape`; an Error naming op if more than
// kMaxDims dims remain after coalescing.
template <int N>
OffsetCalc<N> make_offset_calc(const Shape& shape, const std::array<Shape, N>& strides, const char* op) {
  OffsetCalc<N> c;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (c.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (c.strides[k][c.ndim - 1] != strides[k][d] * shape[d]) merge = false;
      if (merge) {
        c.sizes[c.ndim - 1] *= shape[d];
        for (int k = 0; k < N; ++k) c.strides[k][c.ndim - 1] = strides[k][d];
        continue;
      }
    }
    MANTISSA_CHECK(c.ndim < kMaxDims, op, ": CUDA kernels take at most ", kMaxDims,
                   " non-mergeable dims, got a tensor of shape ", shape_str(shape));
    c.sizes[c.ndim] = shape[d];
    for (int k = 0; k < N; ++k) c.strides[k][c.ndim] = strides[k][d];
    ++c.ndim;
  }
  if (c.ndim == 0) {
    c.ndim = 1;
    c.sizes[0] = 1;
    for (int k = 0; k < N; ++k) c.strides[k][0] = 0;
  }
  return c;
}

// ---- cuda_map: out[i] = f(in[i]...) --------------------------------------------------------
namespace detail {
template <typename T, int K>
struct alignas(sizeof(T) * K) Vec {
  T v[K];
};

template <typename Out, typename F, size_t N, typename... In, size_t... I>
__device__ __forceinline__ void map_one(F f, Out* out, const std::array<int64_t, N>& off,
                                        std::index_sequence<I...>, const In*... in) {
  store(out + off[0], f(load(in + off[I + 1])...));
}

template <typename Index, typename Out, typename F, typename... In>
__global__ void map_strided_kernel(int64_t n, OffsetCalc<1 + sizeof...(In)> calc, F f, Out* out,
                                   const In*... in) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(blockDim.x) * gridDim.x) {
    map_one(f, out, calc.get(static_cast<Index>(i)), std::index_sequence_for<In...>{}, in...);
  }
}

template <int K, typename Out, typename F, typename... In>
__device__ __forceinline__ void map_vec(F f, Vec<Out, K>& o, const Vec<In, K>&... a) {
#pragma unroll
  for (int j = 0; j < K; ++j) store(&o.v[j], f(load(&a.v[j])...));
}

// Contiguous operands: each thread handles K elements with one aligned vector load per
// operand and one vector store (16 bytes for the widest type).
template <int K, typename Out, typename F, typename... In>
__global__ void map_contig_kernel(int64_t n, F f, Out* out, const In*... in) {
  const int64_t vec_n = n / K;
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < vec_n;
       v += int64_t(blockDim.x) * gridDim.x) {
    Vec<Out, K> o;
    map_vec<K>(f, o, *reinterpret_cast<const Vec<In, K>*>(in + v * K)...);
    *reinterpret_cast<Vec<Out, K>*>(out + v * K) = o;
  }
  if (blockIdx.x == 0 && threadIdx.x < n - vec_n * K) {
    int64_t i = vec_n * K + threadIdx.x;
    store(out + i, f(load(in + i)...));
  }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename Out, typename... In, typename F, size_t... I>
void cuda_map_impl(const char* op, F f, const Tensor& out, const std::array<Tensor, sizeof...(In)>& in,
                   std::index_sequence<I...>) {
  constexpr int N = static_cast<int>(sizeof...(In));
  const int64_t n = out.numel();
  if (n == 0) return;
  for (const Tensor& t : in)
    MANTISSA_CHECK(t.device() == out.device(), op, ": expected every tensor on ", out.device(), ", got one on ",
                   t.device());
  DeviceGuard guard(out);
  cudaStream_t s = stream_for(out);
  constexpr size_t widest = std::max({sizeof(Out), sizeof(In)...});
  constexpr int K = static_cast<int>(16 / widest);
  bool contig = out.is_contiguous() && aligned16(out.data_ptr());
  for (const Tensor& t : in) contig = contig && t.is_contiguous() && t.sizes() == out.sizes() && aligned16(t.data_ptr());
  if (contig && K > 1) {
    map_contig_kernel<K, Out, F, In...>
        <<<grid_for(n, K), kBlock, 0, s>>>(n, f, out.data<Out>(), std::get<I>(in).template data<In>()...);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
    return;
  }
  std::array<Shape, N + 1> strides{out.strides(), broadcast_strides_to(std::get<I>(in), out.sizes())...};
  auto calc = make_offset_calc<N + 1>(out.sizes(), strides, op);
  if (n <= int64_t(UINT32_MAX)) {
    map_strided_kernel<uint32_t, Out, F, In...>
        <<<grid_for(n), kBlock, 0, s>>>(n, calc, f, out.data<Out>(), std::get<I>(in).template data<In>()...);
  } else {
    map_strided_kernel<int64_t, Out, F, In...>
        <<<grid_for(n), kBlock, 0, s>>>(n, calc, f, out.data<Out>(), std::get<I>(in).template data<In>()...);
  }
  MANTISSA_CUDA_LAUNCH_CHECK(op);
}
}  // namespace detail

// out = f(in...) elementwise, e.g. cuda_map<float, float, float>("add", AddF{}, out, {a, b}).
// Inputs broadcast to out's shape and live on out's device; f is a __device__ functor (a struct
// with a __device__ operator()) taking compute types (float for F16/BF16) and returning a value
// convertible to Out's compute type. F16/BF16 results are rounded once on store.
template <typename Out, typename... In, typename F>
void cuda_map(const char* op, F f, const Tensor& out, const std::array<Tensor, sizeof...(In)>& in) {
  detail::cuda_map_impl<Out, In...>(op, f, out, in, std::index_sequence_for<In...>{});
}

}  // namespace mantissa::kernels::cuda
