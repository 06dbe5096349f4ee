// Batch-norm and layer-norm entry points (CUDA tensors go to norm.cu) and the CPU kernels. Inner
// loops accumulate in the compute type (vectorized), and per-channel / per-column totals in
// double, so F32 statistics over large batches keep full F32 accuracy (PyTorch's CPU kernels
// accumulate float statistics in double too).
#include "core/kernels/norm.h"

#include <cmath>
#include <initializer_list>
#include <vector>

#include "core/kernels/loops.h"

namespace mantissa::kernels {

namespace {

constexpr DTypeSet kAccTypes = dtype_bit(DType::F32) | dtype_bit(DType::F64);

// Every defined tensor of a call on `first`'s device: the CPU loops below must never
// dereference a device pointer, and the CUDA kernels need one device.
void check_devices(const char* op, const Tensor& first, std::initializer_list<const Tensor*> rest) {
  for (const Tensor* t : rest)
    MANTISSA_CHECK(!t->defined() || t->device() == first.device(), op, ": expected every tensor on ", first.device(),
                   ", got one of shape ", shape_str(t->sizes()), " and dtype ", t->dtype(), " on ", t->device());
}

#ifndef MANTISSA_HAVE_CUDA
[[noreturn]] void no_cuda(const char* op, const Tensor& t) {
  MANTISSA_ERROR(op, ": ", t.device(), " tensors need a build with CUDA (-DMANTISSA_CUDA=ON)");
}
#endif

template <typename A>
const A* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<A>() : nullptr;
}
template <typename A>
A* mutable_or_null(const Tensor& t) {
  return t.defined() ? t.data<A>() : nullptr;
}

// Grain (in channels or rows) so each thread gets about kParallelGrain elements.
int64_t grain_for(int64_t per_item) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, per_item)); }

// Row reductions over raw pointers: __restrict and a plain simd reduction so each one
// vectorizes for every dtype.
template <typename T, typename A = compute_t<T>>
A sum_row(const T* __restrict x, int64_t s) {
  A acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < s; ++j) acc += load(x[j]);
  return acc;
}
template <typename T, typename A = compute_t<T>>
A sum_sq_dev_row(const T* __restrict x, int64_t s, A m) {
  A acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < s; ++j) {
    A d = load(x[j]) - m;
    acc += d * d;
  }
  return acc;
}
template <typename T, typename A = compute_t<T>>
A sum_prod_dev_row(const T* __restrict g, const T* __restrict x, int64_t s, A m) {
  A acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < s; ++j) acc += load(g[j]) * (load(x[j]) - m);
  return acc;
}

// Channel sums over [n, c, s] for channels [cb, ce) into out[ch - cb] (double). For s == 1
// ([N, C] input) rows are walked whole with elem(flat index, channel) so reads stay contiguous;
// otherwise row(offset of a length-s run, channel) reduces each run.
template <typename Elem, typename Row>
void channel_sums(BatchNormShape shp, int64_t cb, int64_t ce, double* out, const Elem& elem, const Row& row) {
  const int64_t w = ce - cb;
  if (shp.s == 1) {
    for (int64_t k = 0; k < w; ++k) out[k] = 0.0;
    for (int64_t i = 0; i < shp.n; ++i) {
      const int64_t base = i * shp.c;
#pragma omp simd
      for (int64_t k = 0; k < w; ++k) out[k] += static_cast<double>(elem(base + cb + k, cb + k));
    }
    return;
  }
  for (int64_t ch = cb; ch < ce; ++ch) {
    double total = 0.0;
    for (int64_t i = 0; i < shp.n; ++i) total += static_cast<double>(row((i * shp.c + ch) * shp.s, ch));
    out[ch - cb] = total;
  }
}

// Elementwise pass over [n, c, s] for channels [cb, ce): f(flat index, channel).
template <typename F>
void channel_apply(BatchNormShape shp, int64_t cb, int64_t ce, const F& f) {
  if (shp.s == 1) {
    for (int64_t i = 0; i < shp.n; ++i) {
      const int64_t base = i * shp.c;
#pragma omp simd
      for (int64_t ch = cb; ch < ce; ++ch) f(base + ch, ch);
    }
    return;
  }
  for (int64_t ch = cb; ch < ce; ++ch) {
    for (int64_t i = 0; i < shp.n; ++i) {
      const int64_t base = (i * shp.c + ch) * shp.s;
#pragma omp simd
      for (int64_t j = 0; j < shp.s; ++j) f(base + j, ch);
    }
  }
}

template <typename T>
void stats_impl(const Tensor& x, BatchNormShape shp, double eps, const Tensor& mean, const Tensor& var,
                const Tensor& invstd) {
  using A = compute_t<T>;
  const T* xp = x.data<T>();
  A* mp = mean.data<A>();
  A* vp = var.data<A>();
  A* ip = invstd.data<A>();
  const double count = static_cast<double>(shp.n * shp.s);
  parallel_for(shp.c, grain_for(shp.n * shp.s), [&](int64_t cb, int64_t ce) {
    std::vector<double> sums(ce - cb);
    channel_sums(
        shp, cb, ce, sums.data(), [&](int64_t idx, int64_t) { return load(xp[idx]); },
        [&](int64_t off, int64_t) { return sum_row(xp + off, shp.s); });
    std::vector<A> m(ce - cb);
    for (int64_t k = 0; k < ce - cb; ++k) m[k] = static_cast<A>(sums[k] / count);
    // Second pass over centred values: no cancellation for large means.
    channel_sums(
        shp, cb, ce, sums.data(),
        [&](int64_t idx, int64_t ch) {
          A d = load(xp[idx]) - m[ch - cb];
          return d * d;
        },
        [&](int64_t off, int64_t ch) { return sum_sq_dev_row(xp + off, shp.s, m[ch - cb]); });
    for (int64_t k = 0; k < ce - cb; ++k) {
      double v = sums[k] / count;
      mp[cb + k] = m[k];
      vp[cb + k] = static_cast<A>(v);
      ip[cb + k] = static_cast<A>(1.0 / std::sqrt(v + eps));
    }
  });
}

template <typename F>
void visit_acc(const Tensor& t, const char* op, const F& f) {
  visit_dtype<kAccTypes>(t.dtype(), op, f);
}

// Calls f(value as double, k) for each element of a 1-D floating tensor of any dtype and stride.
template <typename F>
void read_vector(const Tensor& src, const F& f) {
  visit_dtype<kFloatTypes>(src.dtype(), "batch_norm", [&]<typename R>() {
    const R* p = src.data<R>();
    const int64_t st = src.dim() == 0 ? 0 : src.stride(0);
    for (int64_t k = 0; k < src.numel(); ++k) f(static_cast<double>(load(p[k * st])), k);
  });
}

// dst[k] = f(old value as double, k), rounded once into dst's dtype.
template <typename F>
void update_vector(const Tensor& dst, const F& f) {
  visit_dtype<kFloatTypes>(dst.dtype(), "batch_norm", [&]<typename R>() {
    R* p = dst.data<R>();
    const int64_t st = dst.dim() == 0 ? 0 : dst.stride(0);
    for (int64_t k = 0; k < dst.numel(); ++k) p[k * st] = static_cast<R>(f(static_cast<double>(load(p[k * st])), k));
  });
}

}  // namespace

void batch_norm_stats(const Tensor& x, BatchNormShape shp, double eps, const Tensor& mean, const Tensor& var,
                      const Tensor& invstd) {
  check_devices("batch_norm", x, {&mean, &var, &invstd});
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::batch_norm_stats(x, shp, eps, mean, var, invstd);
    return;
#else
    no_cuda("batch_norm", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm", [&]<typename T>() { stats_impl<T>(x, shp, eps, mean, var, invstd); });
}

void batch_norm_update_running(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                               const Tensor& var, double momentum, int64_t count) {
  check_devices("batch_norm", mean, {&running_mean, &running_var, &var});
  if (mean.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::batch_norm_update_running(running_mean, running_var, mean, var, momentum, count);
    return;
#else
    no_cuda("batch_norm", mean);
#endif
  }
  const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
  visit_acc(mean, "batch_norm", [&]<typename A>() {
    const A* mp = mean.data<A>();
    const A* vp = var.data<A>();
    update_vector(running_mean, [&](double old, int64_t k) {
      return (1.0 - momentum) * old + momentum * static_cast<double>(mp[k]);
    });
    update_vector(running_var, [&](double old, int64_t k) {
      return (1.0 - momentum) * old + momentum * static_cast<double>(vp[k]) * unbias;
    });
  });
}

void batch_norm_eval_stats(const Tensor& running_mean, const Tensor& running_var, double eps, const Tensor& mean,
                           const Tensor& invstd) {
  check_devices("batch_norm", mean, {&running_mean, &running_var, &invstd});
  if (mean.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::batch_norm_eval_stats(running_mean, running_var, eps, mean, invstd);
    return;
#else
    no_cuda("batch_norm", mean);
#endif
  }
  visit_acc(mean, "batch_norm", [&]<typename A>() {
    A* mp = mean.data<A>();
    A* ip = invstd.data<A>();
    read_vector(running_mean, [&](double v, int64_t k) { mp[k] = static_cast<A>(v); });
    read_vector(running_var, [&](double v, int64_t k) { ip[k] = static_cast<A>(1.0 / std::sqrt(v + eps)); });
  });
}

void batch_norm_apply(const Tensor& y, const Tensor& x, BatchNormShape shp, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias) {
  check_devices("batch_norm", x, {&y, &mean, &invstd, &weight, &bias});
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::batch_norm_apply(y, x, shp, mean, invstd, weight, bias);
    return;
#else
    no_cuda("batch_norm", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm", [&]<typename T>() {
    using A = compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const A* mp = mean.data<A>();
    const A* ip = invstd.data<A>();
    const A* wp = data_or_null<A>(weight);
    const A* bp = data_or_null<A>(bias);
    std::vector<A> scale(shp.c), shift(shp.c);
    for (int64_t ch = 0; ch < shp.c; ++ch) {
      scale[ch] = ip[ch] * (wp ? wp[ch] : A(1));
      shift[ch] = bp ? bp[ch] : A(0);
    }
    const A* sc = scale.data();
    const A* sh = shift.data();
    auto f = [&](int64_t idx, int64_t ch) { yp[idx] = store<T>((load(xp[idx]) - mp[ch]) * sc[ch] + sh[ch]); };
    if (shp.s == 1) {
      parallel_for(shp.n, grain_for(shp.c), [&](int64_t b, int64_t e) {
        channel_apply({e - b, shp.c, 1}, 0, shp.c, [&](int64_t idx, int64_t ch) { f(b * shp.c + idx, ch); });
      });
    } else {
      parallel_for(shp.n * shp.c, grain_for(shp.s), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t ch = r % shp.c;
          const int64_t base = r * shp.s;
#pragma omp simd
          for (int64_t j = 0; j < shp.s; ++j) f(base + j, ch);
        }
      });
    }
  });
}

void batch_norm_backward(const Tensor& g, const Tensor& x, BatchNormShape shp, const Tensor& mean,
                         const Tensor& invstd, const Tensor& weight, bool training, const Tensor& grad_x,
                         const Tensor& grad_weight, const Tensor& grad_bias) {
  check_devices("batch_norm backward", x, {&g, &mean, &invstd, &weight, &grad_x, &grad_weight, &grad_bias});
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::batch_norm_backward(g, x, shp, mean, invstd, weight, training, grad_x, grad_weight, grad_bias);
    return;
#else
    no_cuda("batch_norm backward", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "batch_norm backward", [&]<typename T>() {
    using A = compute_t<T>;
    const T* xp = x.data<T>();
    const T* gp = g.data<T>();
    const A* mp = mean.data<A>();
    const A* ip = invstd.data<A>();
    const A* wp = data_or_null<A>(weight);
    T* dxp = mutable_or_null<T>(grad_x);
    A* dwp = mutable_or_null<A>(grad_weight);
    A* dbp = mutable_or_null<A>(grad_bias);
    const bool need_sums = dwp || dbp || (dxp && training);
    const double count = static_cast<double>(shp.n * shp.s);
    parallel_for(shp.c, grain_for(shp.n * shp.s), [&](int64_t cb, int64_t ce) {
      const int64_t w = ce - cb;
      std::vector<double> sum_g(w, 0.0), sum_gd(w, 0.0);
      if (need_sums) {
        channel_sums(
            shp, cb, ce, sum_g.data(), [&](int64_t idx, int64_t) { return load(gp[idx]); },
            [&](int64_t off, int64_t) { return sum_row(gp + off, shp.s); });
        channel_sums(
            shp, cb, ce, sum_gd.data(),
            [&](int64_t idx, int64_t ch) { return load(gp[idx]) * (load(xp[idx]) - mp[ch]); },
            [&](int64_t off, int64_t ch) { return sum_prod_dev_row(gp + off, xp + off, shp.s, mp[ch]); });
      }
      for (int64_t k = 0; k < w; ++k) {
        if (dbp) dbp[cb + k] = static_cast<A>(sum_g[k]);
        if (dwp) dwp[cb + k] = static_cast<A>(sum_gd[k] * static_cast<double>(ip[cb + k]));
      }
      if (!dxp) return;
      // dx = a * g + b * (x - mean) + c per channel; b and c carry the batch-statistics paths.
      std::vector<A> ca(w), cbv(w), cc(w);
      for (int64_t k = 0; k < w; ++k) {
        const double is = ip[cb + k];
        const double a = (wp ? static_cast<double>(wp[cb + k]) : 1.0) * is;
        ca[k] = static_cast<A>(a);
        cbv[k] = training && count > 0 ? static_cast<A>(-a * is * is * sum_gd[k] / count) : A(0);
        cc[k] = training && count > 0 ? static_cast<A>(-a * sum_g[k] / count) : A(0);
      }
      channel_apply(shp, cb, ce, [&](int64_t idx, int64_t ch) {
        const int64_t k = ch - cb;
        dxp[idx] = store<T>(ca[k] * load(gp[idx]) + cbv[k] * (load(xp[idx]) - mp[ch]) + cc[k]);
      });
    });
  });
}

void layer_norm_forward(const Tensor& y, const Tensor& x, int64_t rows, int64_t d, const Tensor& weight,
                        const Tensor& bias, double eps, const Tensor& mean, const Tensor& rstd) {
  check_devices("layer_norm", x, {&y, &weight, &bias, &mean, &rstd});
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::layer_norm_forward(y, x, rows, d, weight, bias, eps, mean, rstd);
    return;
#else
    no_cuda("layer_norm", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "layer_norm", [&]<typename T>() {
    using A = compute_t<T>;
    const T* xp = x.data<T>();
    T* yp = y.data<T>();
    const A* wp = data_or_null<A>(weight);
    const A* bp = data_or_null<A>(bias);
    A* mp = mean.data<A>();
    A* rp = rstd.data<A>();
    parallel_for(rows, grain_for(d), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        const T* xr = xp + r * d;
        T* yr = yp + r * d;
        A s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < d; ++j) s += load(xr[j]);
        const A m = s / static_cast<A>(d);
        A sq = 0;
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < d; ++j) {
          A dv = load(xr[j]) - m;
          sq += dv * dv;
        }
        const A rs = static_cast<A>(1.0 / std::sqrt(static_cast<double>(sq) / static_cast<double>(d) + eps));
        mp[r] = m;
        rp[r] = rs;
        if (wp && bp) {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = store<T>((load(xr[j]) - m) * rs * wp[j] + bp[j]);
        } else if (wp) {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = store<T>((load(xr[j]) - m) * rs * wp[j]);
        } else if (bp) {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = store<T>((load(xr[j]) - m) * rs + bp[j]);
        } else {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = store<T>((load(xr[j]) - m) * rs);
        }
      }
    });
  });
}

void layer_norm_backward(const Tensor& g, const Tensor& x, int64_t rows, int64_t d, const Tensor& mean,
                         const Tensor& rstd, const Tensor& weight, const Tensor& grad_x, const Tensor& grad_weight,
                         const Tensor& grad_bias) {
  check_devices("layer_norm backward", x, {&g, &mean, &rstd, &weight, &grad_x, &grad_weight, &grad_bias});
  if (x.is_cuda()) {
#ifdef MANTISSA_HAVE_CUDA
    cuda::layer_norm_backward(g, x, rows, d, mean, rstd, weight, grad_x, grad_weight, grad_bias);
    return;
#else
    no_cuda("layer_norm backward", x);
#endif
  }
  visit_dtype<kFloatTypes>(x.dtype(), "layer_norm backward", [&]<typename T>() {
    using A = compute_t<T>;
    const T* xp = x.data<T>();
    const T* gp = g.data<T>();
    const A* mp = mean.data<A>();
    const A* rp = rstd.data<A>();
    const A* wp = data_or_null<A>(weight);
    T* dxp = mutable_or_null<T>(grad_x);
    A* dwp = mutable_or_null<A>(grad_weight);
    A* dbp = mutable_or_null<A>(grad_bias);
    if (dxp) {
      parallel_for(rows, grain_for(d), [&](int64_t rb, int64_t re) {
        for (int64_t r = rb; r < re; ++r) {
          const T* xr = xp + r * d;
          const T* gr = gp + r * d;
          T* dr = dxp + r * d;
          const A m = mp[r], rs = rp[r];
          A sum_gw = 0, sum_gwx = 0;
#pragma omp simd reduction(+ : sum_gw, sum_gwx)
          for (int64_t j = 0; j < d; ++j) {
            A gw = load(gr[j]) * (wp ? wp[j] : A(1));
            sum_gw += gw;
            sum_gwx += gw * (load(xr[j]) - m) * rs;
          }
          const A mg = sum_gw / static_cast<A>(d), mgx = sum_gwx / static_cast<A>(d);
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) {
            A gw = load(gr[j]) * (wp ? wp[j] : A(1));
            A xh = (load(xr[j]) - m) * rs;
            dr[j] = store<T>(rs * (gw - mg - xh * mgx));
          }
        }
      });
    }
    if (dwp || dbp) {
      // Column sums over rows: each thread owns a block of columns, so no two threads write
      // the same gradient element.
      parallel_for(d, grain_for(rows), [&](int64_t cb, int64_t ce) {
        std::vector<double> sw(ce - cb, 0.0), sb(ce - cb, 0.0);
        for (int64_t r = 0; r < rows; ++r) {
          const T* xr = xp + r * d;
          const T* gr = gp + r * d;
          const A m = mp[r], rs = rp[r];
#pragma omp simd
          for (int64_t j = cb; j < ce; ++j) {
            A gv = load(gr[j]);
            sw[j - cb] += static_cast<double>(gv * (load(xr[j]) - m) * rs);
            sb[j - cb] += static_cast<double>(gv);
          }
        }
        for (int64_t j = cb; j < ce; ++j) {
          if (dwp) dwp[j] = static_cast<A>(sw[j - cb]);
          if (dbp) dbp[j] = static_cast<A>(sb[j - cb]);
        }
      });
    }
  });
}

}  // namespace mantissa::kernels
