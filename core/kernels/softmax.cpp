// CPU softmax/log_softmax: the tensor is seen as [outer, n, inner] around the softmax dim. Rows
// (inner == 1) are widened to the accumulate type once and reused by every pass; otherwise
// blocks of the inner dim are processed together so the loops run along contiguous memory.
#include "core/kernels/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/kernels/loops.h"
#include "core/kernels/operand_device.h"
#include "core/kernels/reduce_detail.h"

namespace mantissa::kernels {

namespace {

using detail::acc_t;
using detail::lane_sum;

struct Layout {
  int64_t outer = 1, n = 1, inner = 1;
};

Layout layout(const Tensor& x, int64_t dim) {
  Layout l;
  if (x.dim() == 0) return l;
  for (int64_t d = 0; d < dim; ++d) l.outer *= x.size(d);
  l.n = x.size(dim);
  for (int64_t d = dim + 1; d < x.dim(); ++d) l.inner *= x.size(d);
  return l;
}

template <typename T, typename Acc>
void widen_row(const T* p, int64_t n, Acc* buf) {
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<Acc>(load(p[i]));
}

constexpr int64_t kInnerBlock = 64;

template <typename T>
void softmax_impl(const Tensor& out, const Tensor& x, const Layout& l, bool log) {
  using Acc = acc_t<T>;
  const T* xp = x.data<T>();
  T* op = out.data<T>();
  const int64_t n = l.n, inner = l.inner;
  if (inner == 1) {
    parallel_for(l.outer, std::max<int64_t>(1, kParallelGrain / n), [&](int64_t b, int64_t e) {
      std::vector<Acc> buf(n);
      for (int64_t r = b; r < e; ++r) {
        widen_row(xp + r * n, n, buf.data());
        Acc m = -std::numeric_limits<Acc>::infinity();
        for (int64_t i = 0; i < n; ++i) m = buf[i] > m ? buf[i] : m;
        T* o = op + r * n;
        if (log) {
          // (x - max) - log(sum): exact shift first, so huge logits keep their differences.
          const Acc s = lane_sum<Acc>(buf.data(), n, [m](Acc v) { return std::exp(v - m); });
          const Acc ls = std::log(s);
          for (int64_t i = 0; i < n; ++i) o[i] = store<T>((buf[i] - m) - ls);
        } else {
          for (int64_t i = 0; i < n; ++i) buf[i] = std::exp(buf[i] - m);
          const Acc inv = Acc(1) / lane_sum<Acc>(buf.data(), n, [](Acc v) { return v; });
          for (int64_t i = 0; i < n; ++i) o[i] = store<T>(buf[i] * inv);
        }
      }
    });
    return;
  }
  const int64_t blocks = (inner + kInnerBlock - 1) / kInnerBlock;
  parallel_for(l.outer * blocks, std::max<int64_t>(1, kParallelGrain / (n * kInnerBlock)), [&](int64_t b, int64_t e) {
    Acc mx[kInnerBlock], sm[kInnerBlock];
    for (int64_t t = b; t < e; ++t) {
      const int64_t r = t / blocks, j0 = (t % blocks) * kInnerBlock, len = std::min(kInnerBlock, inner - j0);
      const T* xb = xp + r * n * inner + j0;
      T* ob = op + r * n * inner + j0;
      std::fill(mx, mx + len, -std::numeric_limits<Acc>::infinity());
      std::fill(sm, sm + len, Acc(0));
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < len; ++j) {
          const Acc v = static_cast<Acc>(load(xb[c * inner + j]));
          mx[j] = v > mx[j] ? v : mx[j];
        }
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < len; ++j) sm[j] += std::exp(static_cast<Acc>(load(xb[c * inner + j])) - mx[j]);
      for (int64_t j = 0; j < len; ++j) sm[j] = log ? std::log(sm[j]) : Acc(1) / sm[j];
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < len; ++j) {
          const Acc d = static_cast<Acc>(load(xb[c * inner + j])) - mx[j];
          ob[c * inner + j] = store<T>(log ? d - sm[j] : std::exp(d) * sm[j]);
        }
    }
  });
}

template <typename T>
void backward_impl(const Tensor& gx, const Tensor& g, const Tensor& y, const Layout& l, bool log) {
  using Acc = acc_t<T>;
  const T* gp = g.data<T>();
  const T* yp = y.data<T>();
  T* op = gx.data<T>();
  const int64_t n = l.n, inner = l.inner;
  // The per-position sum: sum(g*y) for softmax, sum(g) for log_softmax.
  auto term = [log](Acc gv, Acc yv) { return log ? gv : gv * yv; };
  auto result = [log](Acc gv, Acc yv, Acc s) { return log ? gv - std::exp(yv) * s : yv * (gv - s); };
  const int64_t blocks = inner == 1 ? 1 : (inner + kInnerBlock - 1) / kInnerBlock;
  const int64_t bw = inner == 1 ? 1 : kInnerBlock;
  parallel_for(l.outer * blocks, std::max<int64_t>(1, kParallelGrain / (n * bw)), [&](int64_t b, int64_t e) {
    Acc s[kInnerBlock];
    for (int64_t t = b; t < e; ++t) {
      const int64_t r = t / blocks, j0 = (t % blocks) * bw, len = std::min(bw, inner - j0);
      const int64_t base = r * n * inner + j0;
      std::fill(s, s + len, Acc(0));
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < len; ++j) {
          const int64_t k = base + c * inner + j;
          s[j] += term(static_cast<Acc>(load(gp[k])), static_cast<Acc>(load(yp[k])));
        }
      for (int64_t c = 0; c < n; ++c)
        for (int64_t j = 0; j < len; ++j) {
          const int64_t k = base + c * inner + j;
          op[k] = store<T>(result(static_cast<Acc>(load(gp[k])), static_cast<Acc>(load(yp[k])), s[j]));
        }
    }
  });
}

}  // namespace

void softmax(const Tensor& out, const Tensor& x, int64_t dim, bool log) {
  if (operands_on_cuda(log ? "log_softmax" : "softmax", {&out, &x})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::softmax(out, x, dim, log);
#else
    cuda_build_required(log ? "log_softmax" : "softmax", out.device());
#endif
  }
  MANTISSA_ASSERT(out.is_contiguous() && x.is_contiguous() && out.sizes() == x.sizes() && out.dtype() == x.dtype(),
                  "softmax kernel operands");
  if (x.numel() == 0) return;
  const Layout l = layout(x, dim);
  visit_dtype<kFloatTypes>(x.dtype(), log ? "log_softmax" : "softmax",
                           [&]<typename T>() { softmax_impl<T>(out, x, l, log); });
}

void softmax_backward(const Tensor& gx, const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  if (operands_on_cuda(log ? "log_softmax backward" : "softmax backward", {&gx, &g, &y})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::softmax_backward(gx, g, y, dim, log);
#else
    cuda_build_required(log ? "log_softmax backward" : "softmax backward", gx.device());
#endif
  }
  MANTISSA_ASSERT(gx.is_contiguous() && g.is_contiguous() && y.is_contiguous() && g.sizes() == y.sizes() &&
                      gx.sizes() == y.sizes() && g.dtype() == y.dtype() && gx.dtype() == y.dtype(),
                  "softmax backward kernel operands");
  if (y.numel() == 0) return;
  const Layout l = layout(y, dim);
  visit_dtype<kFloatTypes>(y.dtype(), log ? "log_softmax backward" : "softmax backward",
                           [&]<typename T>() { backward_impl<T>(gx, g, y, l, log); });
}

}  // namespace mantissa::kernels
