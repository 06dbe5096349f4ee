// optim::MasterWeights: FP32 master weights for a model trained with F16/BF16 working
// parameters (Apex O2): F32 copies of the 16-bit parameters, an inner SGD/Adam/AdamW over them,
// 16-bit gradients widened into F32 (fused with GradScaler's unscale), masters rounded back.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "optim/optimizer.h"

namespace mantissa::optim {

// The step, with the model in F16/BF16 (amp::prepare_model) and the loss computed under autocast:
//
//   MasterWeights opt(model->parameters(), AdamWOptions(1e-3));  // masters copied from the model
//   opt.zero_grad();                       // working gradients and master gradients
//   scaler.scale(loss).backward();         // 16-bit gradients on the working parameters
//   scaler.step(opt);                      // widen + unscale + Inf/NaN check in one pass into the
//                                          // masters' F32 .grad; on a clean step: inner step on
//                                          // the masters, then each master rounded (RNE) into its
//                                          // working copy. A skipped step changes nothing.
//   scaler.update();
//
// Without a scaler (bf16-master), opt.step() widens the gradients itself.
//
// param_groups() are the masters (F32 copies for F16/BF16 parameters; F32/F64 parameters, e.g.
// BatchNorm's, are their own masters), with the options: schedulers and clipping see F32
// values, as with Apex. state_dict() is the inner optimizer's (step, moments) plus every master
// as "state.<i>.master" (F32), so a checkpoint restores the masters bit-exactly instead of
// re-widening the rounded working copies; the type name is "MasterWeights(<inner>)". The
// per-parameter state is the inner optimizer's: inner().state(master(p)). Groups are fixed at
// construction (add_param_group is refused at the next step).
class MasterWeights final : public Optimizer {
 public:
  // The inner optimizer follows the options' type: SGDOptions -> SGD, AdamOptions -> Adam,
  // AdamWOptions -> AdamW. Working parameters: F16, BF16, F32 or F64 leaves, contiguous.
  MasterWeights(std::vector<Tensor> params, const OptimizerOptions& defaults);
  MasterWeights(std::vector<ParamGroup> groups, const OptimizerOptions& defaults);

  // Widens the gradients unless unscale_grads_/prepare_grads already did in this iteration, runs
  // the inner step on the masters and rounds each updated master into its working copy.
  void step() override;
  // Working parameters' .grad as Optimizer::zero_grad does; the masters' F32 gradients are
  // always dropped (their buffers are kept and refilled by the next widening).
  void zero_grad(bool set_to_none = true) override;
  OptimizerStateDict state_dict() const override;
  // Validates the masters (one F32-convertible tensor per 16-bit parameter, matching shapes)
  // and the inner state before changing anything; then restores both and rounds the masters
  // into the working parameters.
  void load_state_dict(const OptimizerStateDict& state_dict) override;
  // Fused widen + unscale + Inf/NaN check of every working gradient into the masters' .grad
  // (F32 parameters' gradients are unscaled in place). Always returns true.
  bool unscale_grads_(float inv_scale, const std::function<Tensor(const Device&)>& found_inf_for) override;

  // Widens the working gradients into the masters' .grad now (no unscale), e.g. to clip or
  // inspect F32 gradients before step(), or for a GradScaler that unscales param_groups()'
  // gradients itself. Idempotent until the next step()/zero_grad(); a later unscale_grads_
  // then unscales these F32 copies in place (widening is exact: the same bits as the fused pass).
  void prepare_grads();

  Optimizer& inner() { return *inner_; }
  const Optimizer& inner() const { return *inner_; }
  // Global parameter order (groups in order), as state_dict numbers them.
  const std::vector<Tensor>& working_params() const { return working_; }
  const std::vector<Tensor>& master_params() const { return masters_; }
  // The master of a working parameter (the parameter itself when it is F32/F64); throws for a
  // tensor that is not one of the working parameters.
  const Tensor& master(const Tensor& working) const;

 protected:
  // The inner optimizer validates its own state; these serve the base load, which this class
  // replaces.
  std::vector<std::string> state_tensor_names() const override { return {}; }
  void check_loaded_state(const ParamState&, size_t) const override {}

 private:
  struct Prepared {
    std::string name;
    std::vector<ParamGroup> master_groups;
    std::vector<Tensor> working, masters;
  };
  // Checks the working parameters and makes the F32 masters of the 16-bit ones.
  static Prepared prepare(std::vector<ParamGroup> groups, const OptimizerOptions& defaults);
  MasterWeights(Prepared&& prepared, const OptimizerOptions& defaults);

  void fill_master_grads(float inv_scale, const std::function<Tensor(const Device&)>* found_inf_for);
  void round_into_working();
  void sync_inner_options() const;

  std::vector<Tensor> working_;
  std::vector<Tensor> masters_;       // masters_[i] is working_[i] for F32/F64 parameters
  std::vector<Tensor> grad_buffers_;  // F32 gradient storage of the 16-bit parameters' masters
  std::unordered_map<const TensorImpl*, size_t> index_of_;
  std::unique_ptr<Optimizer> inner_;
  bool grads_ready_ = false;  // masters' .grad filled for the coming step()
};

}  // namespace mantissa::optim
