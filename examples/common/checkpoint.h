// Training checkpoints: the model, the optimizer state (FP32 masters included), the LR
// scheduler's progress, the loss scaler, the default generator (dropout's stream) and the
// epoch/step counters in one safetensors file, saved atomically, so a resumed run continues
// exactly as if it had never stopped.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/generator.h"
#include "nn/module.h"
#include "optim/optim.h"

namespace mantissa::examples {

// Everything about a run that is not a tensor.
struct TrainingProgress {
  int64_t epoch = 0;          // epochs completed: the data loader's next epoch
  int64_t step = 0;           // optimizer steps taken
  GeneratorState generator;   // the default generator as the next epoch must find it
  std::map<std::string, std::string> config;  // the run's settings, checked when resuming
  std::string grad_scaler;    // amp::GradScalerState JSON; empty when the run has no loss scaler
};

// File layout: the model's state_dict under its own names ("conv1.weight", so PyTorch's
// load_state_dict(strict=False) takes the file as it is), the optimizer's tensors as
// "optimizer.state.<i>.exp_avg", and string metadata "epoch", "step", "generator.seed",
// "generator.offset", "scheduler" (JSON), "grad_scaler" (JSON, when the run scales its loss),
// "optimizer.<key>" and "config.<key>". Under a master-weight policy the model tensors are the
// 16-bit working copies and the optimizer's include every F32 master ("optimizer.state.<i>.master").
void save_training_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                              const optim::LRScheduler* scheduler, const TrainingProgress& progress);

// Restores model, optimizer and scheduler in place (each validates before it changes anything)
// and returns the progress. The caller re-seeds the default generator from it and checks the
// config with config_mismatches. Throws mantissa::Error naming the path and what is wrong.
TrainingProgress load_training_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer,
                                          optim::LRScheduler* scheduler);

// The "config.<key>" metadata of a training checkpoint alone (nothing is restored), so a run can
// compare its settings before the loads, whose errors would name a symptom instead.
std::map<std::string, std::string> load_training_config(const std::string& path);

// "key: checkpoint has X, this run has Y" for every key of `keys` whose values differ.
std::vector<std::string> config_mismatches(const std::map<std::string, std::string>& saved,
                                           const std::map<std::string, std::string>& current,
                                           const std::vector<std::string>& keys);

}  // namespace mantissa::examples
