// The vectorized 2x2/stride-2 max-pool path against a naive reference: values and argmax
// indices, with NaN, -inf, ties and odd sizes (a dropped last row/column), for every float dtype.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/ops.h"

namespace mantissa {
namespace {

// Row-major scan of each 2x2 window; a later element wins when greater or NaN (PyTorch's rule).
void reference(const std::vector<double>& x, int64_t planes, int64_t h, int64_t w, std::vector<double>& out,
               std::vector<int64_t>& idx) {
  const int64_t ho = h / 2, wo = w / 2;
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        int64_t at = 2 * oh * w + 2 * ow;
        for (int64_t ih = 2 * oh; ih < 2 * oh + 2; ++ih)
          for (int64_t iw = 2 * ow; iw < 2 * ow + 2; ++iw) {
            const double v = x[static_cast<size_t>(p * h * w + ih * w + iw)];
            if (v > best || std::isnan(v)) {
              best = v;
              at = ih * w + iw;
            }
          }
        out.push_back(best);
        idx.push_back(at);
      }
}

TEST(MaxPool2x2, MatchesReferenceWithSpecialValues) {
  const int64_t n = 2, c = 3, h = 7, w = 9;  // odd: the last row and column are dropped
  std::vector<double> x(static_cast<size_t>(n * c * h * w));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::fmod(static_cast<double>(i) * 7.31, 13.0) - 6.0;
  x[3] = std::nan("");
  x[0] = x[1] = x[10] = 6.5;  // a three-way tie in the first window: the first stays
  x[20] = -std::numeric_limits<double>::infinity();
  x[63 + 1] = std::nan("");
  x[63 + 2] = std::nan("");
  for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    // The reference sees the values as rounded to dt (ties may appear in F16/BF16).
    const Tensor xt = from_vector(x, {n, c, h, w}).to(dt);
    std::vector<double> rounded = to_vector<double>(xt);
    std::vector<double> want_dt;
    std::vector<int64_t> idx_dt;
    reference(rounded, n * c, h, w, want_dt, idx_dt);
    Tensor xg = xt.detach().requires_grad_();
    const Tensor out = max_pool2d(xg, {2, 2});
    ASSERT_EQ(out.sizes(), (Shape{n, c, h / 2, w / 2}));
    const std::vector<double> got = to_vector<double>(out);
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::isnan(want_dt[i])) EXPECT_TRUE(std::isnan(got[i])) << i;
      else EXPECT_EQ(got[i], want_dt[i]) << i;
    }
    // The gradient lands on the recorded argmax of each window.
    out.sum().backward();
    const std::vector<double> g = to_vector<double>(xg.grad());
    std::vector<double> want_g(g.size(), 0.0);
    const int64_t per_plane = (h / 2) * (w / 2);
    for (size_t i = 0; i < idx_dt.size(); ++i)
      want_g[static_cast<size_t>(static_cast<int64_t>(i) / per_plane * h * w + idx_dt[i])] += 1.0;
    EXPECT_EQ(g, want_g);
  }
}

}  // namespace
}  // namespace mantissa
