// What every example program shares around its training loop: the test-set evaluation, the loss
// scaler as metrics and log text report it, wall-clock timing, and main()'s error handling.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "amp/grad_scaler.h"
#include "amp/policy.h"
#include "data/loader.h"
#include "examples/common/metrics.h"
#include "nn/module.h"

namespace mantissa::examples {

struct Evaluation {
  double loss = 0.0;      // mean cross-entropy (no label smoothing) over the test set
  double accuracy = 0.0;  // fraction correct
  int64_t correct = 0;
  int64_t total = 0;
};

// Test-set loss and accuracy: eval mode (dropout off, BatchNorm's running statistics), no
// autograd graph, and the policy's autocast (16-bit models need it to take the F32 images). The
// model is put back in training mode afterwards.
Evaluation evaluate(nn::Module& model, data::DataLoader& loader, const Device& device, const amp::Precision& p);

// The scale as metrics report it: null when the policy does not scale its loss.
Json loss_scale_json(const amp::GradScaler& scaler);

// "  scale 32768 (2 skipped)" for the log line; empty without a scaler.
std::string scaler_text(const amp::GradScaler& scaler);

double seconds_since(std::chrono::steady_clock::time_point t0);

// main() of an example: runs run(argc, argv); a FlagError prints "<program>: <message>" and
// gives exit code 2, any other exception "<program>: error: <message>" and 1.
int run_main(const char* program, int (*run)(int, const char* const*), int argc, char** argv);

}  // namespace mantissa::examples
