// Precision policies: one name ("bf16-master") selects everything a training run does with
// precision: the autocast dtype, loss scaling, FP32 master weights, the dtype of the model's
// parameters and the pure-BF16 update rounding. prepare_model and make_optimizer apply one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/kernels/optim_step.h"
#include "nn/module.h"
#include "optim/optimizer.h"

namespace mantissa::amp {

// Where each tensor lives under each policy (DESIGN.md section 4):
//
//   name             autocast  GradScaler  masters  parameters  BF16 update rounding
//   fp32             -         off         -        F32         -
//   fp16             F16       on          -        F32         -
//   bf16             BF16      off         -        F32         -
//   fp16-noscale     F16       off         -        F32         -   (the control that shows underflow)
//   fp16-master      F16       on          F32      F16         -
//   bf16-master      BF16      off         F32      BF16        -
//   bf16-pure        BF16      off         -        BF16        nearest
//   bf16-pure-sr     BF16      off         -        BF16        stochastic
//   bf16-pure-kahan  BF16      off         -        BF16        Kahan-compensated
//
// Master and pure policies run forward + loss under autocast too: with 16-bit parameters the
// matmul/conv inputs are already low, and autocast's F32 list keeps softmax, losses and norms
// in F32 (the loss is always F32). BatchNorm/LayerNorm parameters and buffers stay F32 under
// every policy.
struct Precision {
  std::string name;
  std::optional<DType> autocast;  // the autocast dtype, or none (autocast off)
  bool grad_scaler = false;       // dynamic loss scaling (amp::GradScaler) enabled
  bool master_weights = false;    // optim::MasterWeights keeps F32 masters
  DType param_dtype = DType::F32;  // the model's (working) parameter dtype
  // Pure BF16: how the optimizer writes BF16 parameters and state back.
  std::optional<kernels::UpdateRounding> update_rounding;

  // One line: "bf16-pure-sr: autocast BF16, no loss scaling, BF16 parameters updated in place
  // with stochastic rounding, BF16 optimizer state".
  std::string describe() const;
  bool operator==(const Precision& o) const = default;
};

// Every policy name, in the order of the table above.
const std::vector<std::string>& precision_names();
// The policy of a name; an unknown name throws an Error listing the valid ones.
Precision parse_precision(const std::string& name);

// Converts the model in place for the policy: with master or pure policies every floating
// parameter and buffer becomes param_dtype (handles are kept, via set_data), except those of
// BatchNorm and LayerNorm modules, which stay F32; other policies leave the model untouched.
// Call after moving the model to its device and before building the optimizer.
void prepare_model(nn::Module& model, const Precision& precision);

// The optimizer for the policy over `groups` (usually {model->parameters()}), SGD/Adam/AdamW
// as the options' type says: wrapped in optim::MasterWeights for master policies, with
// set_update_rounding(rounding, seed) for pure BF16 policies, plain otherwise.
std::unique_ptr<optim::Optimizer> make_optimizer(const Precision& precision, std::vector<optim::ParamGroup> groups,
                                                 const optim::OptimizerOptions& options, uint64_t seed = 0);

}  // namespace mantissa::amp
