// Int8 kernels on CUDA (core/kernels/qgemm.cu) against the CPU reference loops, bit for bit:
// qlinear, qconv2d and qlinear_dequant over u8/s8 activations and outputs, with and without bias,
// odd reduction depths (the dp4a kernel) and multiples of 4 (cuBLASLt), groups, padding, stride
// and dilation, zero points that need the row-sum correction, weight scales on either device.
// Every case skips without a usable CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kernels/copy.h"
#include "core/kernels/device_memory.h"
#include "core/kernels/qgemm.h"

namespace mantissa {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                         \
    if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason(); \
  } while (0)

Tensor random_codes(const Shape& shape, DType t, std::mt19937& gen) {
  Tensor c = empty(shape, TensorOptions(t));
  std::uniform_int_distribution<int> dist(t == DType::U8 ? 0 : -128, t == DType::U8 ? 255 : 127);
  for (int64_t i = 0; i < c.numel(); ++i) {
    const int v = dist(gen);
    if (t == DType::U8) c.data<uint8_t>()[i] = static_cast<uint8_t>(v);
    else c.data<int8_t>()[i] = static_cast<int8_t>(v);
  }
  return c;
}

Tensor random_bias(int64_t c, std::mt19937& gen) {
  Tensor b = empty({c}, TensorOptions(DType::I32));
  std::uniform_int_distribution<int32_t> dist(-40000, 40000);
  for (int64_t i = 0; i < c; ++i) b.data<int32_t>()[i] = dist(gen);
  return b;
}

Tensor random_scales(int64_t c, float lo, float hi, std::mt19937& gen) {
  Tensor s = empty({c}, TensorOptions(DType::F32));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < c; ++i) s.data<float>()[i] = dist(gen);
  return s;
}

Tensor to_cuda(const Tensor& cpu) {
  if (!cpu.defined()) return Tensor();
  Tensor d = empty(cpu.sizes(), TensorOptions(cpu.dtype()).device(kCUDA));
  kernels::copy(d, cpu);
  return d;
}

Tensor to_host(const Tensor& dev) {
  Tensor h = empty(dev.sizes(), TensorOptions(dev.dtype()));
  kernels::copy(h, dev);
  return h;
}

// Byte equality of the device result with the CPU reference; reports the first few differences.
void expect_same(const Tensor& got_dev, const Tensor& want, const std::string& what) {
  SCOPED_TRACE(what);
  const Tensor got = to_host(got_dev);
  ASSERT_EQ(got.sizes(), want.sizes());
  ASSERT_EQ(got.dtype(), want.dtype());
  const size_t es = want.element_size();
  const auto* g = static_cast<const unsigned char*>(got.data_ptr());
  const auto* w = static_cast<const unsigned char*>(want.data_ptr());
  int reported = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(g + i * es, w + i * es, es) != 0) {
      double gv = 0, wv = 0;
      if (want.dtype() == DType::U8) gv = g[i], wv = w[i];
      else if (want.dtype() == DType::I8) gv = static_cast<int8_t>(g[i]), wv = static_cast<int8_t>(w[i]);
      else gv = got.data<float>()[i], wv = want.data<float>()[i];
      ADD_FAILURE() << "element " << i << ": got " << gv << ", want " << wv;
      if (++reported == 5) return;
    }
  }
}

// Not all outputs saturated (else equality would say little).
int64_t unsaturated(const Tensor& codes) {
  int64_t n = 0;
  for (int64_t i = 0; i < codes.numel(); ++i) {
    if (codes.dtype() == DType::U8) n += codes.data<uint8_t>()[i] != 0 && codes.data<uint8_t>()[i] != 255;
    else n += codes.data<int8_t>()[i] != -128 && codes.data<int8_t>()[i] != 127;
  }
  return n;
}

kernels::Requant make_requant(int64_t c, int32_t x_zp, int32_t out_zp, float out_scale, std::mt19937& gen) {
  kernels::Requant r;
  r.x_scale = 0.0173f;
  r.x_zp = x_zp;
  r.w_scale = random_scales(c, 0.002f, 0.012f, gen);
  r.out_scale = out_scale;
  r.out_zp = out_zp;
  return r;
}

struct LinearCase {
  int64_t n, k, c;
};

// K % 4 != 0 or C % 4 != 0 take the dp4a kernel; the rest cuBLASLt (where it has an algorithm).
const LinearCase kLinear[] = {{37, 150, 29}, {5, 7, 3}, {1, 1, 1}, {64, 256, 128}, {130, 96, 36},
                              {33, 784, 512}, {70, 65, 64}, {3, 1024, 8}};

TEST(CudaQGemm, LinearMatchesReference) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(11);
  for (const LinearCase& lc : kLinear) {
    for (DType xt : {DType::U8, DType::I8}) {
      for (DType ot : {DType::U8, DType::I8}) {
        for (bool with_bias : {true, false}) {
          Tensor x = random_codes({lc.n, lc.k}, xt, gen), w = random_codes({lc.c, lc.k}, DType::I8, gen);
          Tensor bias = with_bias ? random_bias(lc.c, gen) : Tensor();
          // Scale the output so that a typical accumulator (~ sqrt(K) * 128 * 74) lands mid-range.
          const float out_scale = 0.0173f * 0.007f * 128.0f * 74.0f * std::sqrt(static_cast<float>(lc.k)) / 40.0f;
          const int32_t x_zp = xt == DType::U8 ? 131 : (lc.k % 2 ? 0 : -7);
          kernels::Requant r = make_requant(lc.c, x_zp, ot == DType::U8 ? 118 : 3, out_scale, gen);
          Tensor want = empty({lc.n, lc.c}, TensorOptions(ot));
          kernels::qlinear(want, x, w, bias, r, kernels::QGemmImpl::Reference);
          Tensor got = empty({lc.n, lc.c}, TensorOptions(ot).device(kCUDA));
          kernels::qlinear(got, to_cuda(x), to_cuda(w), to_cuda(bias), r);
          const std::string what = "linear " + std::to_string(lc.n) + "x" + std::to_string(lc.k) + "->" +
                                   std::to_string(lc.c) + " " + dtype_name(xt) + "->" + dtype_name(ot) +
                                   (with_bias ? " bias" : "");
          expect_same(got, want, what);
          if (lc.n * lc.c >= 64) {
            EXPECT_GT(unsaturated(want), want.numel() / 8) << what;
          }
        }
      }
    }
  }
}

TEST(CudaQGemm, LinearScalesOnTheDeviceAndTies) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(12);
  // Small codes around the zero point and M = 2^-1 .. 2^-4: float(acc) * M lands exactly on .5
  // for many outputs, which must round half to even as on the CPU (and the final zero-point add
  // must not be folded into the rounding).
  const int64_t n = 16, k = 12, c = 8;
  Tensor x = empty({n, k}, TensorOptions(DType::U8)), w = empty({c, k}, TensorOptions(DType::I8));
  std::uniform_int_distribution<int> dx(-2, 2), dw(-3, 3);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>(128 + dx(gen));
  for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>(dw(gen));
  kernels::Requant r = make_requant(c, 128, 127, 0.5f, gen);
  r.x_scale = 0.25f;
  for (int64_t j = 0; j < c; ++j) r.w_scale.data<float>()[j] = 1.0f / static_cast<float>(1 << (j % 4));
  Tensor want = empty({n, c}, TensorOptions(DType::U8));
  kernels::qlinear(want, x, w, Tensor(), r, kernels::QGemmImpl::Reference);
  EXPECT_EQ(unsaturated(want), want.numel());
  kernels::Requant rd = r;
  rd.w_scale = to_cuda(r.w_scale);
  Tensor got = empty({n, c}, TensorOptions(DType::U8).device(kCUDA));
  kernels::qlinear(got, to_cuda(x), to_cuda(w), Tensor(), rd);
  expect_same(got, want, "device scales, ties");
}

struct ConvCase {
  int64_t n, c, h, w, o, kh, kw;
  kernels::Conv2dParams p;
};

std::vector<ConvCase> conv_cases() {
  kernels::Conv2dParams plain, pad, grouped, dilated, depthwise, strided;
  pad.pad_h = pad.pad_w = 1;
  grouped.stride_h = 2;
  grouped.groups = 2;
  grouped.pad_h = 2;
  dilated.groups = 6;
  dilated.dilation_h = dilated.dilation_w = 2;
  dilated.pad_h = dilated.pad_w = 1;
  depthwise.groups = 8;
  depthwise.pad_h = depthwise.pad_w = 1;
  strided.stride_h = strided.stride_w = 2;
  strided.pad_h = 1;
  return {
      {2, 5, 9, 8, 7, 3, 3, pad},        // odd depth 45: dp4a
      {2, 6, 10, 11, 4, 3, 3, grouped},  // groups, stride, asymmetric padding
      {1, 6, 9, 9, 12, 3, 3, dilated},   // 6 groups, dilation
      {3, 4, 7, 7, 8, 1, 1, plain},      // depth 4, 8 channels: cuBLASLt
      {2, 8, 12, 12, 16, 3, 3, pad},     // depth 72, 16 channels: cuBLASLt, padded
      {2, 8, 6, 6, 8, 3, 3, depthwise},  // depthwise (depth 9)
      {2, 16, 11, 9, 32, 3, 3, strided}, // depth 144, stride 2
      {4, 32, 26, 26, 64, 3, 3, plain},  // the MNIST CNN's conv2 at batch 4
  };
}

TEST(CudaQGemm, Conv2dMatchesReference) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(13);
  int index = 0;
  for (const ConvCase& cc : conv_cases()) {
    for (DType xt : {DType::U8, DType::I8}) {
      for (bool with_bias : {true, false}) {
        const DType ot = (index++ % 2) ? DType::I8 : DType::U8;
        const auto& p = cc.p;
        const int64_t ho = (cc.h + 2 * p.pad_h - p.dilation_h * (cc.kh - 1) - 1) / p.stride_h + 1;
        const int64_t wo = (cc.w + 2 * p.pad_w - p.dilation_w * (cc.kw - 1) - 1) / p.stride_w + 1;
        Tensor x = random_codes({cc.n, cc.c, cc.h, cc.w}, xt, gen);
        Tensor w = random_codes({cc.o, cc.c / p.groups, cc.kh, cc.kw}, DType::I8, gen);
        Tensor bias = with_bias ? random_bias(cc.o, gen) : Tensor();
        const int64_t depth = cc.c / p.groups * cc.kh * cc.kw;
        const float out_scale = 0.0173f * 0.007f * 128.0f * 74.0f * std::sqrt(static_cast<float>(depth)) / 40.0f;
        kernels::Requant r = make_requant(cc.o, xt == DType::U8 ? 77 : -20, ot == DType::U8 ? 128 : -5, out_scale, gen);
        Tensor want = empty({cc.n, cc.o, ho, wo}, TensorOptions(ot));
        kernels::qconv2d(want, x, w, bias, p, r, kernels::QGemmImpl::Reference);
        Tensor got = empty(want.sizes(), TensorOptions(ot).device(kCUDA));
        kernels::qconv2d(got, to_cuda(x), to_cuda(w), to_cuda(bias), p, r);
        const std::string what = "conv " + shape_str(x.sizes()) + " * " + shape_str(w.sizes()) + " groups " +
                                 std::to_string(p.groups) + " " + dtype_name(xt) + "->" + dtype_name(ot) +
                                 (with_bias ? " bias" : "");
        expect_same(got, want, what);
        EXPECT_GT(unsaturated(want), want.numel() / 8) << what;
      }
    }
  }
}

TEST(CudaQGemm, DequantLinearMatchesReference) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(14);
  for (const LinearCase& lc : kLinear) {
    for (DType xt : {DType::U8, DType::I8}) {
      for (bool with_bias : {true, false}) {
        Tensor x = random_codes({lc.n, lc.k}, xt, gen), w = random_codes({lc.c, lc.k}, DType::I8, gen);
        Tensor ws = random_scales(lc.c, 0.002f, 0.012f, gen);
        Tensor bias = with_bias ? random_scales(lc.c, -2.0f, 2.0f, gen) : Tensor();
        const int32_t zp = xt == DType::U8 ? 97 : -3;
        Tensor want = empty({lc.n, lc.c}, TensorOptions(DType::F32));
        kernels::qlinear_dequant(want, x, w, bias, 0.031f, zp, ws, kernels::QGemmImpl::Reference);
        Tensor got = empty({lc.n, lc.c}, TensorOptions(DType::F32).device(kCUDA));
        kernels::qlinear_dequant(got, to_cuda(x), to_cuda(w), to_cuda(bias), 0.031f, zp,
                                 lc.c % 2 ? ws : to_cuda(ws));
        expect_same(got, want,
                    "dequant " + std::to_string(lc.n) + "x" + std::to_string(lc.k) + "->" + std::to_string(lc.c) +
                        " " + dtype_name(xt) + (with_bias ? " bias" : ""));
      }
    }
  }
}

TEST(CudaQGemm, MixedDevicesAreRefused) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 gen(15);
  Tensor x = random_codes({4, 8}, DType::U8, gen), w = random_codes({3, 8}, DType::I8, gen);
  kernels::Requant r = make_requant(3, 100, 100, 1.0f, gen);
  Tensor out = empty({4, 3}, TensorOptions(DType::U8).device(kCUDA));
  auto message = [&](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { kernels::qlinear(out, x, to_cuda(w), Tensor(), r); }).find("output's device"),
            std::string::npos);
  EXPECT_NE(message([&] { kernels::qlinear(out, to_cuda(x), to_cuda(w), random_bias(3, gen), r); }).find("bias must be"),
            std::string::npos);
}

}  // namespace
}  // namespace mantissa
