// CPU loss kernels. Cross-entropy is fused: one pass per position computes max, log-sum-exp,
// the target logit and (with label smoothing) the logit mean in the accumulate type; the
// backward recomputes softmax from the saved log-sum-exp instead of chaining ops.
#include "core/kernels/loss.h"

#include <cmath>
#include <limits>

#include "core/kernels/copy.h"
#include "core/kernels/loops.h"
#include "core/kernels/operand_device.h"
#include "core/kernels/reduce_detail.h"

namespace mantissa::kernels {

namespace {

using detail::acc_t;

struct Dims {
  int64_t n, c, s;  // batch, classes, trailing positions
};

Dims dims_of(const Tensor& x, const Tensor& target) {
  const int64_t positions = target.numel();
  const int64_t c = x.dim() == 0 ? 1 : (x.dim() == 1 ? x.size(0) : x.size(1));
  const int64_t n = x.dim() >= 2 ? x.size(0) : 1;
  return {n, c, n == 0 ? 0 : positions / n};
}

// Visits the logits' floating type T and the targets' index type I together.
template <typename F>
void visit2(const Tensor& x, const Tensor& target, const char* op, F&& f) {
  visit_dtype<kFloatTypes>(x.dtype(), op, [&]<typename T>() {
    visit_dtype<kIndexTypes>(target.dtype(), op, [&]<typename I>() { f.template operator()<T, I>(); });
  });
}

template <typename Acc>
const Acc* g_ptr(const Tensor& g_pos) {
  if (!g_pos.defined()) return nullptr;
  MANTISSA_ASSERT(g_pos.is_contiguous() && g_pos.dtype() == dtype_of<Acc>, "loss backward: per-position gradient");
  return g_pos.data<Acc>();
}

}  // namespace

int64_t count_valid_targets(const Tensor& target, int64_t classes, int64_t ignore_index, const char* op) {
  if (operands_on_cuda(op, {&target})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::count_valid_targets(target, classes, ignore_index, op);
#else
    cuda_build_required(op, target.device());
#endif
  }
  Tensor t = target;
  if (!t.is_contiguous()) {
    t = empty(target.sizes(), TensorOptions(target.dtype()));
    copy(t, target);
  }
  int64_t count = 0;
  visit_dtype<kIndexTypes>(t.dtype(), op, [&]<typename I>() {
    const I* p = t.data<I>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      const int64_t v = static_cast<int64_t>(p[i]);
      if (v == ignore_index) continue;
      MANTISSA_CHECK(v >= 0 && v < classes, op, ": target value ", v, " at position ", i,
                     " is out of bounds for ", classes, " classes (expected a class index in [0, ", classes,
                     ") or ignore_index ", ignore_index, ")");
      ++count;
    }
  });
  return count;
}

void cross_entropy_forward(const Tensor& losses, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double label_smoothing) {
  if (operands_on_cuda("cross_entropy", {&losses, &lse, &logits, &target})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::cross_entropy_forward(losses, lse, logits, target, ignore_index, label_smoothing);
#else
    cuda_build_required("cross_entropy", logits.device());
#endif
  }
  const Dims d = dims_of(logits, target);
  visit2(logits, target, "cross_entropy", [&]<typename T, typename I>() {
    using Acc = acc_t<T>;
    const T* xp = logits.data<T>();
    const I* tp = target.data<I>();
    Acc* lp = losses.data<Acc>();
    Acc* ep = lse.data<Acc>();
    const Acc eps = static_cast<Acc>(label_smoothing);
    const Acc inv_c = Acc(1) / static_cast<Acc>(d.c);
    parallel_for(d.n * d.s, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, d.c)), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t t = static_cast<int64_t>(tp[p]);
        if (t == ignore_index) {
          lp[p] = 0;
          ep[p] = 0;
          continue;
        }
        const T* q = xp + (p / d.s) * d.c * d.s + p % d.s;
        Acc m = -std::numeric_limits<Acc>::infinity();
        for (int64_t c = 0; c < d.c; ++c) {
          const Acc v = static_cast<Acc>(load(q[c * d.s]));
          m = v > m ? v : m;
        }
        Acc se = 0, sx = 0;
        for (int64_t c = 0; c < d.c; ++c) {
          const Acc v = static_cast<Acc>(load(q[c * d.s]));
          se += std::exp(v - m);
          sx += v;
        }
        const Acc l = m + std::log(se);
        const Acc nll = l - static_cast<Acc>(load(q[t * d.s]));
        // Smoothing term -(1/C) sum_c log p_c = lse - mean_c x_c; skipped at eps = 0 so an
        // infinite logit elsewhere cannot turn 0 * inf into NaN.
        lp[p] = eps > 0 ? (1 - eps) * nll + eps * (l - sx * inv_c) : nll;
        ep[p] = l;
      }
    });
  });
}

void cross_entropy_backward(const Tensor& grad, const Tensor& logits, const Tensor& lse, const Tensor& target,
                            const Tensor& g_pos, double scale, int64_t ignore_index, double label_smoothing) {
  if (operands_on_cuda("cross_entropy backward", {&grad, &logits, &lse, &target, &g_pos})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::cross_entropy_backward(grad, logits, lse, target, g_pos, scale, ignore_index, label_smoothing);
#else
    cuda_build_required("cross_entropy backward", grad.device());
#endif
  }
  const Dims d = dims_of(logits, target);
  visit2(logits, target, "cross_entropy backward", [&]<typename T, typename I>() {
    using Acc = acc_t<T>;
    const T* xp = logits.data<T>();
    const I* tp = target.data<I>();
    const Acc* ep = lse.data<Acc>();
    const Acc* gp = g_ptr<Acc>(g_pos);
    T* op = grad.data<T>();
    const Acc eps = static_cast<Acc>(label_smoothing);
    const Acc off = eps / static_cast<Acc>(d.c);
    const Acc sc = static_cast<Acc>(scale);
    parallel_for(d.n * d.s, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, d.c)), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t base = (p / d.s) * d.c * d.s + p % d.s;
        const int64_t t = static_cast<int64_t>(tp[p]);
        if (t == ignore_index) {
          for (int64_t c = 0; c < d.c; ++c) op[base + c * d.s] = store<T>(Acc(0));
          continue;
        }
        const Acc w = gp ? sc * gp[p] : sc;
        const Acc l = ep[p];
        for (int64_t c = 0; c < d.c; ++c) {
          const Acc prob = std::exp(static_cast<Acc>(load(xp[base + c * d.s])) - l);
          const Acc target_mass = (c == t ? 1 - eps : Acc(0)) + off;
          op[base + c * d.s] = store<T>(w * (prob - target_mass));
        }
      }
    });
  });
}

void nll_loss_forward(const Tensor& losses, const Tensor& log_probs, const Tensor& target, int64_t ignore_index) {
  if (operands_on_cuda("nll_loss", {&losses, &log_probs, &target})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::nll_loss_forward(losses, log_probs, target, ignore_index);
#else
    cuda_build_required("nll_loss", log_probs.device());
#endif
  }
  const Dims d = dims_of(log_probs, target);
  visit2(log_probs, target, "nll_loss", [&]<typename T, typename I>() {
    using Acc = acc_t<T>;
    const T* xp = log_probs.data<T>();
    const I* tp = target.data<I>();
    Acc* lp = losses.data<Acc>();
    parallel_for(d.n * d.s, kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t t = static_cast<int64_t>(tp[p]);
        lp[p] = t == ignore_index ? Acc(0)
                                  : -static_cast<Acc>(load(xp[(p / d.s) * d.c * d.s + t * d.s + p % d.s]));
      }
    });
  });
}

void nll_loss_backward(const Tensor& grad, const Tensor& target, const Tensor& g_pos, double scale,
                       int64_t ignore_index) {
  if (operands_on_cuda("nll_loss backward", {&grad, &target, &g_pos})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::nll_loss_backward(grad, target, g_pos, scale, ignore_index);
#else
    cuda_build_required("nll_loss backward", grad.device());
#endif
  }
  fill(grad, 0.0);
  const Dims d = dims_of(grad, target);
  visit2(grad, target, "nll_loss backward", [&]<typename T, typename I>() {
    using Acc = acc_t<T>;
    const I* tp = target.data<I>();
    const Acc* gp = g_ptr<Acc>(g_pos);
    T* op = grad.data<T>();
    const Acc sc = static_cast<Acc>(scale);
    parallel_for(d.n * d.s, kParallelGrain, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t t = static_cast<int64_t>(tp[p]);
        if (t == ignore_index) continue;
        op[(p / d.s) * d.c * d.s + t * d.s + p % d.s] = store<T>(-(gp ? sc * gp[p] : sc));
      }
    });
  });
}

void mse_forward(const Tensor& losses, const Tensor& x, const Tensor& t) {
  if (operands_on_cuda("mse_loss", {&losses, &x, &t})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::mse_forward(losses, x, t);
#else
    cuda_build_required("mse_loss", losses.device());
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "mse_loss", [&]<typename T>() {
    using Acc = acc_t<T>;
    using C = compute_t<T>;
    map<Acc, T, T>(
        losses,
        [](C a, C b) {
          const Acc diff = static_cast<Acc>(a) - static_cast<Acc>(b);
          return diff * diff;
        },
        x, t);
  });
}

void mse_backward(const Tensor& gx, const Tensor& x, const Tensor& t, const Tensor& g, double scale) {
  if (operands_on_cuda("mse_loss backward", {&gx, &x, &t, &g})) {
#ifdef MANTISSA_HAVE_CUDA
    return cuda::mse_backward(gx, x, t, g, scale);
#else
    cuda_build_required("mse_loss backward", gx.device());
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "mse_loss backward", [&]<typename T>() {
    using Acc = acc_t<T>;
    using C = compute_t<T>;
    const Acc two_sc = static_cast<Acc>(2.0 * scale);
    map<T, T, T, T>(
        gx,
        [two_sc](C a, C b, C gv) {
          return two_sc * (static_cast<Acc>(a) - static_cast<Acc>(b)) * static_cast<Acc>(gv);
        },
        x, t, g);
  });
}

}  // namespace mantissa::kernels
