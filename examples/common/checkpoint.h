// Training checkpoints: the model, the optimizer state, the LR scheduler's progress, the default
// generator (dropout's stream) and the epoch/step counters in one safetensors file, saved
// atomically, so a resumed run continues exactly as if it had never stopped.
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
};

// File layout: the model's state_dict under its own names ("conv1.weight", so PyTorch's
// load_state_dict(strict=False) takes the file as it is), the optimizer's tensors as
// "optimizer.state.<i>.exp_avg", and string metadata "epoch", "step", "generator.seed",
// "generator.offset", "scheduler" (JSON), "optimizer.<key>" and "config.<key>".
void save_training_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                              const optim::LRScheduler* scheduler, const TrainingProgress& progress);

// Restores model, optimizer and scheduler in place (each validates before it changes anything)
// and returns the progress. The caller re-seeds the default generator from it and checks the
// config with config_mismatches. Throws mantissa::Error naming the path and what is wrong.
TrainingProgress load_training_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer,
                                          optim::LRScheduler* scheduler);

// "key: checkpoint has X, this run has Y" for every key of `keys` whose values differ.
std::vector<std::string> config_mismatches(const std::map<std::string, std::string>& saved,
                                           const std::map<std::string, std::string>& current,
                                           const std::vector<std::string>& keys);

}  // namespace mantissa::examples
