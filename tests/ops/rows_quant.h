// OpRows for fake quantization: forward against a plain per-element reference that applies the
// documented rule (F32 math: code = clamp(rint(x * (1/s)) + zp)). The straight-through and LSQ
// gradients are not derivatives of the forward, so they are checked against PyTorch's own values
// in tests/quant/ (golden), not by gradcheck; the 16-bit forwards are compared there too.
#pragma once

#include <cmath>

#include "support/op_check.h"

namespace mantissa::testing {

namespace quant_ref {

inline Tensor fake_quant(const Tensor& x, const std::vector<float>& scale, const std::vector<int>& zp, int64_t axis,
                         int qmin, int qmax) {
  std::vector<double> v = to_vector<double>(x), out(v.size());
  int64_t inner = 1;
  for (int64_t d = axis + 1; axis >= 0 && d < x.dim(); ++d) inner *= x.size(d);
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = axis < 0 ? 0 : static_cast<size_t>((static_cast<int64_t>(i) / inner) % x.size(axis));
    const float inv = 1.0f / scale[c];
    float r = std::nearbyint(static_cast<float>(v[i]) * inv);
    r = std::fmin(std::fmax(r, static_cast<float>(qmin - zp[c])), static_cast<float>(qmax - zp[c]));
    out[i] = static_cast<double>(static_cast<float>(static_cast<int>(r)) * scale[c]);
  }
  return from_vector(out, x.sizes(), DType::F64);
}

}  // namespace quant_ref

inline std::vector<OpRow> rows_quant() {
  using V = std::vector<Tensor>;
  std::vector<OpRow> rows;
  const DTypeSet wide = dtype_bit(DType::F64) | dtype_bit(DType::F32);
  auto opts = [](const V& x, DType dt) { return TensorOptions(dt).device(device_of(x)); };

  OpRow per_tensor{OpId::fake_quantize, "fake_quantize/per_tensor", {{{4, 6}, Gen::Normal}},
                   [opts](const V& x) {
                     return fake_quantize_per_tensor_affine(x[0], full({}, 0.0625, opts(x, DType::F32)),
                                                            full({}, 3.0, opts(x, DType::I32)), -8, 7);
                   },
                   [](const V& x) { return quant_ref::fake_quant(x[0], {0.0625f}, {3}, -1, -8, 7); }};
  per_tensor.differentiable = false;
  per_tensor.dtypes = wide;
  rows.push_back(per_tensor);

  OpRow per_channel{OpId::fake_quantize, "fake_quantize/per_channel_axis1_non_contiguous",
                    {{{3, 4, 2}, Gen::Normal, true, true}},
                    [opts](const V& x) {
                      Tensor s = from_vector(std::vector<float>{0.02f, 0.05f, 0.1f, 0.3f}, {4}).to(device_of(x));
                      Tensor z = from_vector(std::vector<int64_t>{0, -5, 7, 127}, {4}).to(DType::I32).to(device_of(x));
                      (void)opts;
                      return fake_quantize_per_channel_affine(x[0], s, z, 1, -128, 127);
                    },
                    [](const V& x) {
                      return quant_ref::fake_quant(x[0], {0.02f, 0.05f, 0.1f, 0.3f}, {0, -5, 7, 127}, 1, -128, 127);
                    }};
  per_channel.differentiable = false;
  per_channel.dtypes = wide;
  rows.push_back(per_channel);

  OpRow learnable{OpId::fake_quantize_learnable, "fake_quantize_learnable/per_tensor", {{{5, 3}, Gen::Normal}},
                  [opts](const V& x) {
                    // Zero point 2.6 rounds to 3 in the forward.
                    return fake_quantize_learnable_per_tensor_affine(x[0], full({1}, 0.05, opts(x, DType::F32)),
                                                                     full({1}, 2.6, opts(x, DType::F32)), 0, 255, 1.0);
                  },
                  [](const V& x) { return quant_ref::fake_quant(x[0], {0.05f}, {3}, -1, 0, 255); }};
  learnable.differentiable = false;
  learnable.dtypes = wide;
  rows.push_back(learnable);
  return rows;
}

}  // namespace mantissa::testing
