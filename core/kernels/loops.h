// CPU loop machinery shared by every elementwise kernel: broadcasting strides, dimension
// coalescing, a parallel strided walk, and typed map() that loads F16/BF16 as float and
// rounds the result once on store. Contiguous operands take a flat loop the compiler vectorizes.
#pragma once

#include <omp.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mantissa::kernels {

// Grain below which a loop stays on one thread (elements).
inline constexpr int64_t kParallelGrain = 32768;

// Runs f(begin, end) over [0, n) split across OpenMP threads in contiguous chunks.
template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  int max_threads = omp_get_max_threads();
  if (n <= grain || max_threads == 1 || omp_in_parallel()) {
    f(int64_t(0), n);
    return;
  }
  int64_t chunks = std::min<int64_t>(max_threads, (n + grain - 1) / grain);
#pragma omp parallel num_threads(static_cast<int>(chunks))
  {
    int64_t tid = omp_get_thread_num();
    int64_t nt = omp_get_num_threads();
    int64_t per = (n + nt - 1) / nt;
    int64_t b = tid * per, e = std::min(n, b + per);
    if (b < e) f(b, e);
  }
}

// Strides (in elements) of t viewed as broadcast to `shape`: 0 along broadcast dims.
Shape broadcast_strides(const Tensor& t, const Shape& shape);

// A set of N operands walked together over one shape.
template <int N>
struct StridedIter {
  Shape shape;                             // coalesced, innermost last
  std::array<Shape, N> strides;            // per operand, in elements
  int64_t numel = 0;

  StridedIter(const Shape& full_shape, const std::array<Shape, N>& full_strides) {
    numel = 1;
    for (int64_t s : full_shape) numel *= s;
    // Drop size-1 dims, then merge neighbours that are contiguous for every operand.
    for (size_t d = 0; d < full_shape.size(); ++d) {
      if (full_shape[d] == 1) continue;
      if (!shape.empty()) {
        bool mergeable = true;
        for (int k = 0; k < N; ++k) {
          if (strides[k].back() != full_strides[k][d] * full_shape[d]) mergeable = false;
        }
        if (mergeable) {
          shape.back() *= full_shape[d];
          for (int k = 0; k < N; ++k) strides[k].back() = full_strides[k][d];
          continue;
        }
      }
      shape.push_back(full_shape[d]);
      for (int k = 0; k < N; ++k) strides[k].push_back(full_strides[k][d]);
    }
    if (shape.empty()) {
      shape.push_back(1);
      for (int k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  // Calls inner(offsets, n, inner_strides) for runs along the innermost dim, covering flat
  // indices [begin, end) of the shape.
  template <typename F>
  void walk(int64_t begin, int64_t end, const F& inner) const {
    const int64_t nd = static_cast<int64_t>(shape.size());
    std::array<int64_t, N> inner_strides;
    for (int k = 0; k < N; ++k) inner_strides[k] = strides[k][nd - 1];
    // Multi-index of `begin`.
    std::vector<int64_t> idx(nd, 0);
    int64_t rem = begin;
    for (int64_t d = nd - 1; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    std::array<int64_t, N> off{};
    for (int k = 0; k < N; ++k)
      for (int64_t d = 0; d < nd; ++d) off[k] += idx[d] * strides[k][d];
    int64_t pos = begin;
    while (pos < end) {
      int64_t run = std::min(shape[nd - 1] - idx[nd - 1], end - pos);
      inner(off, run, inner_strides);
      pos += run;
      for (int k = 0; k < N; ++k) off[k] += run * inner_strides[k];
      idx[nd - 1] += run;
      // Carry into outer dims.
      for (int64_t d = nd - 1; d > 0 && idx[d] == shape[d]; --d) {
        for (int k = 0; k < N; ++k) off[k] += strides[k][d - 1] - shape[d] * strides[k][d];
        idx[d] = 0;
        ++idx[d - 1];
      }
    }
  }

  template <typename F>
  void parallel_walk(const F& inner, int64_t grain = kParallelGrain) const {
    parallel_for(numel, grain, [&](int64_t b, int64_t e) { walk(b, e, inner); });
  }
};

template <typename T>
inline compute_t<T> load(const T& v) {
  return static_cast<compute_t<T>>(v);
}
template <typename T, typename V>
inline T store(V v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != V(0);
  } else {
    return static_cast<T>(v);
  }
}

namespace detail {
template <typename Out, typename... In, typename F, size_t... I, typename... Ts>
void map_strided(const Tensor& out, const F& f, std::index_sequence<I...>, const Ts&... in) {
  constexpr int N = 1 + sizeof...(In);
  Out* out_ptr = out.data<Out>();
  std::tuple<const In*...> ptrs{in.template data<In>()...};
  std::array<Shape, N> strides{out.strides(), broadcast_strides(in, out.sizes())...};
  (void)N;
  StridedIter<N> it(out.sizes(), strides);
  it.parallel_walk([&](const std::array<int64_t, N>& off, int64_t len, const std::array<int64_t, N>& st) {
    Out* o = out_ptr + off[0];
    std::tuple<const In*...> q{(std::get<I>(ptrs) + off[I + 1])...};
    for (int64_t i = 0; i < len; ++i) o[i * st[0]] = store<Out>(f(load(std::get<I>(q)[i * st[I + 1]])...));
  });
}
}  // namespace detail

// out[i] = f(in0[i], in1[i], ...) with the inputs broadcast to out's shape. Inputs must already
// have the dtypes In...; out must be allocated (any strides). f receives compute types
// (float for F16/BF16) and its result is rounded once into Out.
template <typename Out, typename... In, typename F, typename... Ts>
void map(const Tensor& out, const F& f, const Ts&... in) {
  static_assert(sizeof...(In) == sizeof...(Ts) && (std::is_same_v<Ts, Tensor> && ...),
                "map<Out, In...>: one input Tensor per input type");
  const int64_t n = out.numel();
  if (n == 0) return;
  bool flat = out.is_contiguous() && ((in.is_contiguous() && in.numel() == n) && ...);
  if (flat) {
    Out* __restrict out_ptr = out.data<Out>();
    std::tuple<const In*...> ptrs{in.template data<In>()...};
    std::apply(
        [&](const In*... p) {
          parallel_for(n, kParallelGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
            for (int64_t i = b; i < e; ++i) out_ptr[i] = store<Out>(f(load(p[i])...));
          });
        },
        ptrs);
    return;
  }
  detail::map_strided<Out, In...>(out, f, std::index_sequence_for<In...>{}, in...);
}

}  // namespace mantissa::kernels
