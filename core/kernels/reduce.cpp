// CPU reductions. One plan (kept dims outer, reduced dims inner, each coalesced) is walked per
// output; a column path serves kept innermost dims; contiguous runs are summed in
// lane-interleaved 4096-element blocks combined pairwise (see reduce.h for the order).
#include "core/kernels/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>

#include "core/kernels/copy.h"
#include "core/kernels/loops.h"
#include "core/kernels/operand_device.h"
#include "core/kernels/reduce_detail.h"

namespace mantissa::kernels {

namespace detail {

namespace {
// The same source as lane_sum, compiled for 512-bit vectors (inlined into this clone).
__attribute__((target("avx512f,avx512vl,prefer-vector-width=512"))) float lane_sum_f32_avx512(const float* q,
                                                                                                 int64_t n) {
  return lane_sum<float>(q, n, Plain<float>{});
}
}  // namespace

float lane_sum_f32(const float* q, int64_t n) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  return avx512 ? lane_sum_f32_avx512(q, n) : lane_sum<float>(q, n, Plain<float>{});
}

}  // namespace detail

namespace {

using detail::acc_t;
using detail::kIs16;
using detail::lane_sum;
using detail::lane_sum_f32;
using detail::Plain;
using detail::widen;

// Integer sums wrap like PyTorch's; unsigned arithmetic makes the wrap defined behaviour.
template <typename T>
using sum_acc_t = std::conditional_t<std::is_integral_v<acc_t<T>>, uint64_t, acc_t<T>>;

// Kept dims (coalesced, in order) with their input strides; the output is contiguous over
// them, so the output index of a kept multi-index is its row-major rank. Reduced dims are
// sorted by decreasing stride (innermost = smallest stride) and coalesced.
struct Plan {
  Shape out_sizes, out_strides;
  Shape red_sizes, red_strides;
  Shape red_outer_sizes, red_outer_strides;  // all reduced dims but the innermost
  int64_t n_out = 1, n_red = 1;
};

Plan make_plan(const Tensor& x, const std::vector<bool>& reduce) {
  MANTISSA_ASSERT(reduce.size() == x.sizes().size(), "reduce mask of ", reduce.size(), " dims for ",
                  shape_str(x.sizes()));
  Plan p;
  const Shape& s = x.sizes();
  const Shape& st = x.strides();
  std::vector<std::pair<int64_t, int64_t>> red;
  for (size_t d = 0; d < s.size(); ++d) {
    if (reduce[d]) {
      p.n_red *= s[d];
      if (s[d] != 1) red.emplace_back(s[d], st[d]);
      continue;
    }
    p.n_out *= s[d];
    if (s[d] == 1) continue;
    if (!p.out_sizes.empty() && p.out_strides.back() == st[d] * s[d]) {
      p.out_sizes.back() *= s[d];
      p.out_strides.back() = st[d];
    } else {
      p.out_sizes.push_back(s[d]);
      p.out_strides.push_back(st[d]);
    }
  }
  std::stable_sort(red.begin(), red.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [size, stride] : red) {
    if (!p.red_sizes.empty() && p.red_strides.back() == stride * size) {
      p.red_sizes.back() *= size;
      p.red_strides.back() = stride;
    } else {
      p.red_sizes.push_back(size);
      p.red_strides.push_back(stride);
    }
  }
  if (p.red_sizes.size() > 1) {
    p.red_outer_sizes.assign(p.red_sizes.begin(), p.red_sizes.end() - 1);
    p.red_outer_strides.assign(p.red_strides.begin(), p.red_strides.end() - 1);
  }
  return p;
}

// A row-major multi-index over `sizes` (all > 0) tracking the matching strided offset.
class Walker {
 public:
  Walker(const Shape& sizes, const Shape& strides) : sizes_(sizes), strides_(strides), idx_(sizes.size(), 0) {}
  void seek(int64_t linear) {
    offset_ = 0;
    for (int64_t d = static_cast<int64_t>(sizes_.size()) - 1; d >= 0; --d) {
      idx_[d] = linear % sizes_[d];
      linear /= sizes_[d];
      offset_ += idx_[d] * strides_[d];
    }
  }
  void next() {
    for (int64_t d = static_cast<int64_t>(sizes_.size()) - 1; d >= 0; --d) {
      if (++idx_[d] < sizes_[d]) {
        offset_ += strides_[d];
        return;
      }
      offset_ -= (sizes_[d] - 1) * strides_[d];
      idx_[d] = 0;
    }
  }
  int64_t offset() const { return offset_; }

 private:
  const Shape& sizes_;
  const Shape& strides_;
  std::vector<int64_t> idx_;
  int64_t offset_ = 0;
};

// Combines leaf(lo..hi-1) as a balanced binary tree (left half gets the extra leaf).
template <typename Acc, typename Leaf, typename Comb>
Acc pairwise(int64_t lo, int64_t hi, const Leaf& leaf, const Comb& comb) {
  if (hi - lo == 1) return leaf(lo);
  const int64_t mid = lo + (hi - lo + 1) / 2;
  return comb(pairwise<Acc>(lo, mid, leaf, comb), pairwise<Acc>(mid, hi, leaf, comb));
}

// Sum of f(x) over blocks; f maps a compute-type value to an Acc term.
template <typename T, typename Acc, typename F>
struct SumReducer {
  using C = compute_t<T>;
  const T* x;
  F f;

  static Acc combine(Acc a, Acc b) { return a + b; }

  // n <= kReduceBlock elements from x + off with stride s.
  Acc block(int64_t off, int64_t n, int64_t s) const {
    const T* p = x + off;
    if (s != 1) {
      Acc a = 0;
      for (int64_t i = 0; i < n; ++i) a += static_cast<Acc>(f(load(p[i * s])));
      return a;
    }
    alignas(64) C buf[kIs16<T> ? kReduceBlock : 1];
    const C* q = widen(p, n, buf);
    if constexpr (std::is_same_v<C, float> && std::is_same_v<F, Plain<float>>) {
      return lane_sum_f32(q, n);
    } else {
      return lane_sum<Acc>(q, n, f);
    }
  }
};

template <typename C, bool IsMax>
inline C pick(C a, C v) {
  // A NaN candidate always wins, and once the running value is NaN no comparison replaces it.
  if constexpr (std::is_floating_point_v<C>) {
    return ((IsMax ? v > a : v < a) || v != v) ? v : a;
  } else {
    return (IsMax ? v > a : v < a) ? v : a;
  }
}

template <typename T, bool IsMax>
struct ExtremeReducer {
  using C = compute_t<T>;
  using Acc = C;
  const T* x;

  static C combine(C a, C b) { return pick<C, IsMax>(a, b); }

  C block(int64_t off, int64_t n, int64_t s) const {
    const T* p = x + off;
    if (s != 1) {
      C a = load(p[0]);
      for (int64_t i = 1; i < n; ++i) a = pick<C, IsMax>(a, load(p[i * s]));
      return a;
    }
    alignas(64) C buf[kIs16<T> ? kReduceBlock : 1];
    const C* q = widen(p, n, buf);
    constexpr int L = 16;
    if (n < L) {
      C a = q[0];
      for (int64_t i = 1; i < n; ++i) a = pick<C, IsMax>(a, q[i]);
      return a;
    }
    alignas(64) C a[L];
    for (int j = 0; j < L; ++j) a[j] = q[j];
    int64_t i = L;
    for (; i + L <= n; i += L) {
#pragma omp simd
      for (int j = 0; j < L; ++j) a[j] = pick<C, IsMax>(a[j], q[i + j]);
    }
    const int64_t rem = n - i;  // < L
    for (int j = 0; j < L && j < rem; ++j) a[j] = pick<C, IsMax>(a[j], q[i + j]);
    for (int w = L / 2; w >= 1; w /= 2)
      for (int j = 0; j < w; ++j) a[j] = pick<C, IsMax>(a[j], a[j + w]);
    return a[0];
  }
};

// A run of n elements with stride s: blocks combined pairwise.
template <typename R>
auto run_reduce(const R& r, int64_t off, int64_t n, int64_t s) {
  using Acc = decltype(r.block(0, 0, 1));
  const int64_t nb = (n + kReduceBlock - 1) / kReduceBlock;
  if (nb <= 1) return r.block(off, n, s);
  return pairwise<Acc>(
      0, nb, [&](int64_t b) { return r.block(off + b * kReduceBlock * s, std::min(kReduceBlock, n - b * kReduceBlock), s); },
      R::combine);
}

// The whole reduced region of one output at input offset `base` (n_red >= 1): runs along the
// innermost reduced dim are grouped into pieces of about 4 blocks, each piece adds its runs in
// order, and pieces are combined pairwise. With `parallel` the blocks (one run) or pieces are
// reduced on all threads; the tree is the same, so the result does not depend on it.
template <typename R>
auto region_reduce(const R& r, const Plan& p, int64_t base, Walker& rw, bool parallel) {
  using Acc = decltype(r.block(0, 0, 1));
  const size_t nd = p.red_sizes.size();
  if (nd == 0) return r.block(base, 1, 1);
  const int64_t n = p.red_sizes.back(), s = p.red_strides.back();
  auto combine_all = [](int64_t count, const auto& leaf) { return pairwise<Acc>(0, count, leaf, R::combine); };
  if (nd == 1) {
    if (!parallel) return run_reduce(r, base, n, s);
    const int64_t nb = (n + kReduceBlock - 1) / kReduceBlock;
    // Not std::vector: for Bool (max/min) that is a bitset, and threads would race on its words.
    std::unique_ptr<Acc[]> part(new Acc[nb]);
    parallel_for(nb, std::max<int64_t>(1, kParallelGrain / kReduceBlock), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        part[i] = r.block(base + i * kReduceBlock * s, std::min(kReduceBlock, n - i * kReduceBlock), s);
    });
    return combine_all(nb, [&](int64_t i) { return part[i]; });
  }
  const int64_t outer = p.n_red / n;
  const int64_t kc = std::max<int64_t>(1, 4 * kReduceBlock / n);  // runs per piece
  const int64_t pieces = (outer + kc - 1) / kc;
  auto piece = [&](int64_t c, Walker& w) {
    const int64_t k0 = c * kc, k1 = std::min(outer, k0 + kc);
    w.seek(k0);
    Acc acc = run_reduce(r, base + w.offset(), n, s);
    for (int64_t k = k0 + 1; k < k1; ++k) {
      w.next();
      acc = R::combine(acc, run_reduce(r, base + w.offset(), n, s));
    }
    return acc;
  };
  if (!parallel) return combine_all(pieces, [&](int64_t c) { return piece(c, rw); });
  std::unique_ptr<Acc[]> part(new Acc[pieces]);
  parallel_for(pieces, std::max<int64_t>(1, kParallelGrain / (kc * n)), [&](int64_t b, int64_t e) {
    Walker w(p.red_outer_sizes, p.red_outer_strides);
    for (int64_t c = b; c < e; ++c) part[c] = piece(c, w);
  });
  return combine_all(pieces, [&](int64_t i) { return part[i]; });
}

// Calls fn(o, base, rw, parallel) for every output o (n_red >= 1): in parallel over outputs,
// or one output at a time with the region split when there are few long regions.
template <typename Fn>
void for_each_output(const Plan& p, const Fn& fn) {
  if (p.n_out == 0) return;
  if (p.n_out < omp_get_max_threads() && p.n_red >= 2 * kParallelGrain && !omp_in_parallel()) {
    Walker ow(p.out_sizes, p.out_strides);
    Walker rw(p.red_outer_sizes, p.red_outer_strides);
    ow.seek(0);
    for (int64_t o = 0; o < p.n_out; ++o, ow.next()) fn(o, ow.offset(), rw, true);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, p.n_red));
  parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
    Walker ow(p.out_sizes, p.out_strides);
    Walker rw(p.red_outer_sizes, p.red_outer_strides);
    ow.seek(b);
    for (int64_t o = b; o < e; ++o, ow.next()) fn(o, ow.offset(), rw, false);
  });
}

// Kept innermost dim with stride 1 and reduced dims outside it: add whole rows of the kept
// dim into per-column accumulators (vectorized across columns). Returns false if the plan
// does not have that layout.
template <typename T, typename O, typename Fin>
bool column_sum(const Plan& p, const T* x, O* out, const Fin& finish) {
  using Acc = sum_acc_t<T>;
  using C = compute_t<T>;
  if (p.out_sizes.empty() || p.out_strides.back() != 1 || p.out_sizes.back() < 16 || p.red_sizes.empty()) return false;
  constexpr int64_t kCol = 256;
  const int64_t K = p.out_sizes.back();
  const int64_t outer_k = p.n_out / K;
  const int64_t chunks = (K + kCol - 1) / kCol;
  const Shape ko_sizes(p.out_sizes.begin(), p.out_sizes.end() - 1);
  const Shape ko_strides(p.out_strides.begin(), p.out_strides.end() - 1);
  const int64_t grain = std::max<int64_t>(1, kParallelGrain / (kCol * p.n_red));
  parallel_for(outer_k * chunks, grain, [&](int64_t b, int64_t e) {
    Walker ow(ko_sizes, ko_strides);
    Walker rw(p.red_sizes, p.red_strides);
    alignas(64) Acc total[kCol];
    alignas(64) Acc partial[kCol];
    alignas(64) C buf[kIs16<T> ? kCol : 1];
    for (int64_t t = b; t < e; ++t) {
      const int64_t oi = t / chunks, j0 = (t % chunks) * kCol;
      const int64_t len = std::min(kCol, K - j0);
      ow.seek(oi);
      const int64_t base = ow.offset() + j0;
      std::fill(total, total + len, Acc(0));
      std::fill(partial, partial + len, Acc(0));
      rw.seek(0);
      for (int64_t r = 0; r < p.n_red; ++r, rw.next()) {
        const C* q = widen(x + base + rw.offset(), len, buf);
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) partial[j] += static_cast<Acc>(q[j]);
        if ((r & 255) == 255) {
          for (int64_t j = 0; j < len; ++j) {
            total[j] += partial[j];
            partial[j] = 0;
          }
        }
      }
      O* o = out + oi * K + j0;
      for (int64_t j = 0; j < len; ++j) o[j] = store<O>(finish(total[j] + partial[j]));
    }
  });
  return true;
}

// Dispatches the output type: x's own dtype or its accumulate dtype (floating x), I64 (others).
template <typename T, typename F>
void visit_out(DType out, F&& f) {
  using Acc = acc_t<T>;
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    if (out == dtype_of<T>) return f.template operator()<T>();
    MANTISSA_ASSERT(out == dtype_of<Acc>, "reduction output dtype ", dtype_name(out), " for input ",
                    dtype_name(dtype_of<T>));
    return f.template operator()<Acc>();
  } else {
    MANTISSA_ASSERT(out == DType::I64, "integer reduction output dtype ", dtype_name(out));
    return f.template operator()<int64_t>();
  }
}

void check_out(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  Shape keep = x.sizes();
  for (size_t d = 0; d < keep.size(); ++d)
    if (reduce[d]) keep[d] = 1;
  MANTISSA_ASSERT(out.is_contiguous() && shape_numel(out.sizes()) == shape_numel(keep), "reduction output ",
                  shape_str(out.sizes()), " for keepdim shape ", shape_str(keep));
}

template <typename T, bool IsMean>
void sum_impl(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  using Acc = sum_acc_t<T>;
  const Plan p = make_plan(x, reduce);
  const T* xp = x.data<T>();
  visit_out<T>(out.dtype(), [&]<typename O>() {
    O* op = static_cast<O*>(out.data_ptr());
    const Acc count = static_cast<Acc>(p.n_red);
    auto finish = [count](Acc v) -> Acc {
      if constexpr (IsMean) return v / count;
      return v;
    };
    if (p.n_red == 0) {
      // 0 for a sum; 0/0 = NaN for a mean.
      const Acc v = finish(Acc(0));
      for (int64_t o = 0; o < p.n_out; ++o) op[o] = store<O>(v);
      return;
    }
    if (column_sum<T, O>(p, xp, op, finish)) return;
    SumReducer<T, Acc, Plain<Acc>> r{xp, {}};
    for_each_output(p, [&](int64_t o, int64_t base, Walker& rw, bool par) {
      op[o] = store<O>(finish(region_reduce(r, p, base, rw, par)));
    });
  });
}

template <typename T>
void var_impl(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction) {
  using Acc = acc_t<T>;
  using C = compute_t<T>;
  const Plan p = make_plan(x, reduce);
  const T* xp = x.data<T>();
  const Acc count = static_cast<Acc>(p.n_red);
  const Acc dof = static_cast<Acc>(std::max<int64_t>(0, p.n_red - correction));
  visit_out<T>(out.dtype(), [&]<typename O>() {
    O* op = static_cast<O*>(out.data_ptr());
    if (p.n_red == 0) {
      for (int64_t o = 0; o < p.n_out; ++o) op[o] = store<O>(std::numeric_limits<Acc>::quiet_NaN());
      return;
    }
    SumReducer<T, Acc, Plain<Acc>> r1{xp, {}};
    for_each_output(p, [&](int64_t o, int64_t base, Walker& rw, bool par) {
      const Acc m = region_reduce(r1, p, base, rw, par) / count;
      auto sq = [m](C v) {
        const Acc d = static_cast<Acc>(v) - m;
        return d * d;
      };
      SumReducer<T, Acc, decltype(sq)> r2{xp, sq};
      op[o] = store<O>(region_reduce(r2, p, base, rw, par) / dof);
    });
  });
}

std::vector<bool> only_dim(int64_t nd, int64_t dim) {
  std::vector<bool> m(nd, false);
  if (nd > 0) m[dim] = true;
  return m;
}

// Contiguous copy when needed, without autograd (kernels never record).
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  copy(c, t);
  return c;
}

}  // namespace

void sum(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  if (operands_on_cuda("sum", {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::sum(out, x, reduce);
#else
    cuda_build_required("sum", out.device());
#endif
  }
  check_out(out, x, reduce);
  visit_dtype<kAllTypes>(x.dtype(), "sum", [&]<typename T>() { sum_impl<T, false>(out, x, reduce); });
}

void mean(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce) {
  if (operands_on_cuda("mean", {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::mean(out, x, reduce);
#else
    cuda_build_required("mean", out.device());
#endif
  }
  check_out(out, x, reduce);
  visit_dtype<kFloatTypes>(x.dtype(), "mean", [&]<typename T>() { sum_impl<T, true>(out, x, reduce); });
}

void var(const Tensor& out, const Tensor& x, const std::vector<bool>& reduce, int64_t correction) {
  if (operands_on_cuda("var", {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::var(out, x, reduce, correction);
#else
    cuda_build_required("var", out.device());
#endif
  }
  check_out(out, x, reduce);
  visit_dtype<kFloatTypes>(x.dtype(), "var", [&]<typename T>() { var_impl<T>(out, x, reduce, correction); });
}

void max_min_dim(const Tensor& values, const Tensor& indices, const Tensor& x, int64_t dim, bool is_max) {
  if (operands_on_cuda(is_max ? "max" : "min", {&x, &values, &indices})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::max_min_dim(values, indices, x, dim, is_max);
#else
    cuda_build_required(is_max ? "max" : "min", x.device());
#endif
  }
  const int64_t nd = x.dim();
  const int64_t n = nd == 0 ? 1 : x.size(dim);
  const int64_t s = nd == 0 ? 0 : x.stride(dim);
  MANTISSA_ASSERT(n > 0, "max_min_dim over an empty dim");
  const Plan p = make_plan(x, only_dim(nd, dim));
  visit_dtype<kAllTypes>(x.dtype(), is_max ? "max" : "min", [&]<typename T>() {
    using C = compute_t<T>;
    const T* xp = x.data<T>();
    T* vp = values.defined() ? values.data<T>() : nullptr;
    int64_t* ip = indices.defined() ? indices.data<int64_t>() : nullptr;
    auto one = [&]<bool IsMax>() {
      const int64_t grain = std::max<int64_t>(1, kParallelGrain / n);
      parallel_for(p.n_out, grain, [&](int64_t b, int64_t e) {
        Walker ow(p.out_sizes, p.out_strides);
        ow.seek(b);
        for (int64_t o = b; o < e; ++o, ow.next()) {
          const T* q = xp + ow.offset();
          C best = load(q[0]);
          int64_t bi = 0;
          for (int64_t i = 1; i < n; ++i) {
            const C v = load(q[i * s]);
            bool better = IsMax ? v > best : v < best;
            if constexpr (std::is_floating_point_v<C>) better = better || (v != v && best == best);
            if (better) {
              best = v;
              bi = i;
            }
          }
          if (vp) vp[o] = q[bi * s];
          if (ip) ip[o] = bi;
        }
      });
    };
    if (is_max) {
      one.template operator()<true>();
    } else {
      one.template operator()<false>();
    }
  });
}

void max_min_all(const Tensor& out, const Tensor& x, bool is_max) {
  if (operands_on_cuda(is_max ? "max" : "min", {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::max_min_all(out, x, is_max);
#else
    cuda_build_required(is_max ? "max" : "min", x.device());
#endif
  }
  MANTISSA_ASSERT(x.numel() > 0 && out.numel() == 1, "max_min_all");
  const Plan p = make_plan(x, std::vector<bool>(x.dim(), true));
  visit_dtype<kAllTypes>(x.dtype(), is_max ? "max" : "min", [&]<typename T>() {
    T* op = out.data<T>();
    auto go = [&](const auto& r) {
      for_each_output(p, [&](int64_t, int64_t base, Walker& rw, bool par) {
        op[0] = store<T>(region_reduce(r, p, base, rw, par));
      });
    };
    if (is_max) {
      go(ExtremeReducer<T, true>{x.data<T>()});
    } else {
      go(ExtremeReducer<T, false>{x.data<T>()});
    }
  });
}

void expand_scale(const Tensor& out, const Tensor& g_keep, double scale) {
  if (operands_on_cuda("mean backward", {&out, &g_keep})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::expand_scale(out, g_keep, scale);
#else
    cuda_build_required("mean backward", out.device());
#endif
  }
  Tensor g = g_keep.dtype() == out.dtype() ? g_keep : g_keep.to(out.dtype());
  visit_dtype<kFloatTypes>(out.dtype(), "mean backward", [&]<typename T>() {
    using C = compute_t<T>;
    const C sc = static_cast<C>(scale);
    map<T, T>(out, [sc](C v) { return v * sc; }, g);
  });
}

void var_backward(const Tensor& out, const Tensor& g_keep, const Tensor& x, const Tensor& mean_keep, double factor) {
  if (operands_on_cuda("var backward", {&out, &g_keep, &x, &mean_keep})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::var_backward(out, g_keep, x, mean_keep, factor);
#else
    cuda_build_required("var backward", out.device());
#endif
  }
  Tensor g = g_keep.dtype() == out.dtype() ? g_keep : g_keep.to(out.dtype());
  visit_dtype<kFloatTypes>(out.dtype(), "var backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    using C = compute_t<T>;
    MANTISSA_ASSERT(mean_keep.dtype() == dtype_of<Acc> && x.dtype() == dtype_of<T>, "var_backward dtypes");
    const Acc f = static_cast<Acc>(factor);
    map<T, T, T, Acc>(out, [f](C gv, C xv, Acc m) { return static_cast<Acc>(gv) * (static_cast<Acc>(xv) - m) * f; }, g,
                      x, mean_keep);
  });
}

void scatter_along_dim(const Tensor& out, const Tensor& g_keep, const Tensor& indices_keep, int64_t dim) {
  if (operands_on_cuda("max backward", {&out, &g_keep, &indices_keep})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::scatter_along_dim(out, g_keep, indices_keep, dim);
#else
    cuda_build_required("max backward", out.device());
#endif
  }
  MANTISSA_ASSERT(out.is_contiguous(), "scatter_along_dim output must be contiguous");
  fill(out, 0.0);
  if (out.numel() == 0) return;
  const int64_t nd = out.dim();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= out.size(d);
  for (int64_t d = dim + 1; d < nd; ++d) inner *= out.size(d);
  const int64_t n = nd == 0 ? 1 : out.size(dim);
  Tensor g = dense(g_keep.dtype() == out.dtype() ? g_keep : g_keep.to(out.dtype()));
  Tensor idx = dense(indices_keep);
  MANTISSA_ASSERT(g.numel() == outer * inner && idx.numel() == outer * inner && idx.dtype() == DType::I64,
                  "scatter_along_dim shapes");
  const int64_t* ip = idx.data<int64_t>();
  for (int64_t o = 0; o < outer * inner; ++o) MANTISSA_ASSERT(ip[o] >= 0 && ip[o] < n, "saved index ", ip[o]);
  visit_dtype<kFloatTypes>(out.dtype(), "max backward", [&]<typename T>() {
    T* op = out.data<T>();
    const T* gp = g.data<T>();
    parallel_for(outer * inner, kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) op[((o / inner) * n + ip[o]) * inner + o % inner] = gp[o];
    });
  });
}

void distribute_to_extreme(const Tensor& out, const Tensor& g, const Tensor& x, const Tensor& value) {
  if (operands_on_cuda("max backward", {&out, &g, &x, &value})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::distribute_to_extreme(out, g, x, value);
#else
    cuda_build_required("max backward", out.device());
#endif
  }
  Tensor xc = dense(x);
  visit_dtype<kFloatTypes>(x.dtype(), "max backward", [&]<typename T>() {
    using C = compute_t<T>;
    const C v = static_cast<C>(value.item<double>());
    const bool nan = v != v;
    const T* xp = xc.data<T>();
    int64_t count = 0;
    for (int64_t i = 0; i < xc.numel(); ++i) {
      const C a = load(xp[i]);
      count += nan ? (a != a) : (a == v);
    }
    const C share = static_cast<C>(g.item<double>() / static_cast<double>(count));
    map<T, T>(
        out, [v, nan, share](C a) { return (nan ? (a != a) : (a == v)) ? share : C(0); }, xc);
  });
}

}  // namespace mantissa::kernels
