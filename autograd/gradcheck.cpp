#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/ops.h"
#include "core/generator.h"

namespace mantissa::autograd {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  GradcheckResult result;
  std::vector<Tensor> checked;
  std::vector<size_t> which;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && inputs[i].requires_grad()) {
      MANTISSA_CHECK(inputs[i].dtype() == DType::F64, "gradcheck: input ", i, " must be F64 (got ", inputs[i].dtype(),
                     ")");
      checked.push_back(inputs[i]);
      which.push_back(i);
    }
  }
  MANTISSA_CHECK(!checked.empty(), "gradcheck: no input requires grad");

  Tensor out = fn(inputs);
  MANTISSA_CHECK(out.dtype() == DType::F64, "gradcheck: the output must be F64 (got ", out.dtype(), ")");
  Generator gen(options.seed);
  Tensor v = randn(out.sizes(), TensorOptions(DType::F64), &gen);
  std::vector<Tensor> analytical;
  if (out.requires_grad()) {
    analytical = grad({out}, checked, {v}, false, /*allow_unused=*/true);
  } else {
    analytical.resize(checked.size());
  }
  const std::vector<double> vv = to_vector<double>(v);

  auto project = [&](const Tensor& o) {
    std::vector<double> ov = to_vector<double>(o);
    double s = 0;
    for (size_t k = 0; k < ov.size(); ++k) s += ov[k] * vv[k];
    return s;
  };

  for (size_t c = 0; c < checked.size(); ++c) {
    Tensor x = checked[c];
    const int64_t n = x.numel();
    std::vector<double> numeric(n);
    {
      NoGradGuard no_grad;
      // Perturb a contiguous copy through the same (possibly strided) view geometry: we
      // write element k of the logical tensor via a flat contiguous clone swapped in.
      for (int64_t k = 0; k < n; ++k) {
        std::vector<Tensor> in = inputs;
        Tensor base = x.detach().contiguous().clone();
        double* p = base.data<double>();
        const double orig = p[k];
        p[k] = orig + options.eps;
        in[which[c]] = base;
        double fp = project(fn(in));
        p[k] = orig - options.eps;
        base.bump_version();
        double fm = project(fn(in));
        numeric[k] = (fp - fm) / (2 * options.eps);
      }
    }
    std::vector<double> ana = analytical[c].defined() ? to_vector<double>(analytical[c]) : std::vector<double>(n, 0.0);
    for (int64_t k = 0; k < n; ++k) {
      double a = ana[k], m = numeric[k];
      if (!(std::fabs(a - m) <= options.atol + options.rtol * std::fabs(m))) {
        std::ostringstream ss;
        ss << "gradcheck: input " << which[c] << " (shape " << shape_str(x.sizes()) << ") element " << k
           << ": analytical " << a << " vs numerical " << m;
        result.ok = false;
        result.message = ss.str();
        return result;
      }
    }
  }
  return result;
}

}  // namespace mantissa::autograd
