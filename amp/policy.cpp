// The precision policy table, its parser and description, and the two helpers that apply a
// policy: converting a model's parameters and building its optimizer.
#include "amp/policy.h"

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/norm.h"
#include "optim/adam.h"
#include "optim/master_weights.h"
#include "optim/sgd.h"

namespace mantissa::amp {

namespace {

using kernels::UpdateRounding;

const std::vector<Precision>& table() {
  static const std::vector<Precision> t = {
      {"fp32", std::nullopt, false, false, DType::F32, std::nullopt},
      {"fp16", DType::F16, true, false, DType::F32, std::nullopt},
      {"bf16", DType::BF16, false, false, DType::F32, std::nullopt},
      {"fp16-noscale", DType::F16, false, false, DType::F32, std::nullopt},
      {"fp16-master", DType::F16, true, true, DType::F16, std::nullopt},
      {"bf16-master", DType::BF16, false, true, DType::BF16, std::nullopt},
      {"bf16-pure", DType::BF16, false, false, DType::BF16, UpdateRounding::Nearest},
      {"bf16-pure-sr", DType::BF16, false, false, DType::BF16, UpdateRounding::Stochastic},
      {"bf16-pure-kahan", DType::BF16, false, false, DType::BF16, UpdateRounding::Kahan},
  };
  return t;
}

const char* rounding_words(UpdateRounding r) {
  switch (r) {
    case UpdateRounding::Nearest: return "round-to-nearest";
    case UpdateRounding::Stochastic: return "stochastic rounding";
    case UpdateRounding::Kahan: return "Kahan-compensated rounding";
  }
  return "?";
}

bool is_norm_module(const nn::Module& m) {
  return dynamic_cast<const nn::BatchNormBase*>(&m) != nullptr || dynamic_cast<const nn::LayerNorm*>(&m) != nullptr;
}

}  // namespace

const std::vector<std::string>& precision_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Precision& p : table()) n.push_back(p.name);
    return n;
  }();
  return names;
}

Precision parse_precision(const std::string& name) {
  for (const Precision& p : table())
    if (p.name == name) return p;
  std::string valid;
  for (const std::string& n : precision_names()) valid += (valid.empty() ? "" : ", ") + n;
  MANTISSA_ERROR("precision: unknown policy \"", name, "\" (valid: ", valid, ")");
}

std::string Precision::describe() const {
  std::string s = name + ": ";
  s += autocast ? std::string("autocast ") + dtype_name(*autocast) : std::string("no autocast");
  s += grad_scaler ? ", dynamic loss scaling" : ", no loss scaling";
  if (master_weights) {
    s += std::string(", ") + dtype_name(param_dtype) + " working parameters with F32 master weights and F32 "
         "optimizer state";
  } else if (update_rounding) {
    s += std::string(", ") + dtype_name(param_dtype) + " parameters updated in place with " +
         rounding_words(*update_rounding) + ", " + dtype_name(param_dtype) + " optimizer state";
  } else {
    s += std::string(", ") + dtype_name(param_dtype) + " parameters and optimizer state";
  }
  return s;
}

void prepare_model(nn::Module& model, const Precision& precision) {
  if (precision.param_dtype == DType::F32) return;
  const DType low = precision.param_dtype;
  NoGradGuard no_grad;
  // Module by module (not recursive): BatchNorm/LayerNorm keep F32 parameters and statistics,
  // which 16-bit activations are normalized with (their kernels accumulate in F32 anyway).
  model.apply([&](nn::Module& m) {
    if (is_norm_module(m)) return;
    for (const Tensor& t : m.parameters(/*recurse=*/false))
      if (t.dtype() == DType::F32) t.set_data(t.detach().to(low));
    for (const Tensor& t : m.buffers(/*recurse=*/false))
      if (t.dtype() == DType::F32) t.set_data(t.to(low));
  });
}

std::unique_ptr<optim::Optimizer> make_optimizer(const Precision& precision, std::vector<optim::ParamGroup> groups,
                                                 const optim::OptimizerOptions& options, uint64_t seed) {
  if (precision.master_weights) return std::make_unique<optim::MasterWeights>(std::move(groups), options);
  std::unique_ptr<optim::Optimizer> opt;
  if (const auto* o = dynamic_cast<const optim::SGDOptions*>(&options)) {
    opt = std::make_unique<optim::SGD>(std::move(groups), *o);
  } else if (const auto* o = dynamic_cast<const optim::AdamWOptions*>(&options)) {
    opt = std::make_unique<optim::AdamW>(std::move(groups), *o);
  } else if (const auto* o = dynamic_cast<const optim::AdamOptions*>(&options)) {
    opt = std::make_unique<optim::Adam>(std::move(groups), *o);
  } else {
    MANTISSA_ERROR("make_optimizer: no optimizer takes ", options.type_name(),
                   " (expected SGDOptions, AdamOptions or AdamWOptions)");
  }
  if (precision.update_rounding) opt->set_update_rounding(*precision.update_rounding, seed);
  return opt;
}

}  // namespace mantissa::amp
