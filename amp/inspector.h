// amp::Inspector: opt-in overflow/underflow diagnostics for mixed-precision runs. On sampled
// steps it measures, against F16's limits, every parameter gradient and every layer output
// (through forward hooks): zeros, values below F16's smallest subnormal and normal, values above
// its max, non-finite values and max |x|, with the loss scale; one JSON object per line.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/kernels/amp_inspect.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace mantissa::amp {

class GradScaler;

class InspectorOptions {
 public:
  // Steps whose number is a multiple of n are sampled (n >= 1); the others cost nothing.
  InspectorOptions& every_n_steps(int64_t v) { every_n_steps_ = v; return *this; }
  InspectorOptions& grads(bool v) { grads_ = v; return *this; }
  InspectorOptions& outputs(bool v) { outputs_ = v; return *this; }
  // Hook every module, containers included (default: the modules without children, plus the
  // attached model itself).
  InspectorOptions& all_modules(bool v) { all_modules_ = v; return *this; }
  int64_t every_n_steps() const { return every_n_steps_; }
  bool grads() const { return grads_; }
  bool outputs() const { return outputs_; }
  bool all_modules() const { return all_modules_; }

 private:
  int64_t every_n_steps_ = 1;
  bool grads_ = true;
  bool outputs_ = true;
  bool all_modules_ = false;
};

// One sampled step. Entries keep their order: gradients in named_parameters order, outputs in
// the order the modules first ran.
struct InspectorRecord {
  int64_t step = 0;
  std::optional<double> loss_scale;  // the attached scaler's scale when the gradients were read
  std::vector<std::pair<std::string, kernels::AmpStats>> grads;
  std::vector<std::pair<std::string, kernels::AmpStats>> outputs;

  // {"step":3,"loss_scale":65536.0,"grads":{"fc1.weight":{"numel":..,"zero":..,"under_sub":..,
  // "under_norm":..,"over":..,"max_abs":..,"nonfinite":..},...},"outputs":{...}} on one line
  // (loss_scale null without a scaler).
  std::string to_json() const;
};

// Usage (nothing runs unless an Inspector exists; an unsampled step costs a flag test per hook):
//
//   amp::Inspector inspector(amp::InspectorOptions().every_n_steps(100));
//   inspector.attach(model);             // a std::shared_ptr<nn::Module>
//   inspector.attach(scaler);
//   inspector.set_sink(&metrics_file);   // optional: each record as a JSON line
//   for (int64_t step = 0; ...; ++step) {
//     inspector.begin_step(step);
//     Tensor loss = criterion((*model)(x), y);   // hooks record the outputs
//     scaler.scale(loss).backward();
//     inspector.capture_grads();         // the scaled gradients, as the F16 backward produced them
//     scaler.step(optimizer); scaler.update();
//     inspector.end_step();              // the record (also written to the sink)
//   }
//
// Forward hooks run when a module is called through operator() (nn::Sequential calls its
// children so). A network whose forward() calls children's forward() directly can report its
// layers with record_output(name, tensor). Output names are the modules' dotted names; the
// attached model itself is "(model)".
class Inspector {
 public:
  explicit Inspector(const InspectorOptions& options = InspectorOptions());
  ~Inspector();  // removes its hooks from modules still alive
  Inspector(const Inspector&) = delete;
  Inspector& operator=(const Inspector&) = delete;

  // Watches the model's parameters (by dotted name) and hooks its modules. Replaces an earlier
  // attached model.
  void attach(const std::shared_ptr<nn::Module>& model);
  // Records this scaler's scale with every record; the scaler must outlive the Inspector (or be
  // detached with detach_scaler()).
  void attach(const GradScaler& scaler);
  void detach_scaler() { scaler_ = nullptr; }
  // Removes the hooks and forgets the model.
  void detach();

  // One JSON line per record; nullptr (the default) writes nothing. The stream must outlive
  // the Inspector or be replaced.
  void set_sink(std::ostream* sink) { sink_ = sink; }

  // Starts a step; returns whether it is sampled. Discards an unfinished earlier step.
  bool begin_step(int64_t step);
  bool sampling() const { return sampling_; }

  // Adds t's statistics under `name` to this step's outputs (summed with earlier calls of the
  // same name in this step). No-op when the step is not sampled or t is not floating.
  void record_output(const std::string& name, const Tensor& t);
  // Reads every watched parameter's gradient now (and the scaler's scale). No-op when not
  // sampled or when the options exclude gradients.
  void capture_grads();
  // Finishes the step: for a sampled step, reads the statistics back (one copy per device),
  // writes the record to the sink and returns it; otherwise nullopt. Gradients are captured
  // here if capture_grads() was not called during the step.
  std::optional<InspectorRecord> end_step();

 private:
  struct Slot {
    int device_key;  // -1 for the CPU, else the CUDA index
    size_t chunk;
    int64_t index;
  };
  struct Entries {
    std::vector<std::string> order;
    std::map<std::string, Slot> slots;
  };
  void accumulate(Entries& entries, const std::string& name, const Tensor& t);
  Slot allocate(const Device& device);
  std::vector<std::pair<std::string, kernels::AmpStats>> read(const Entries& entries,
                                                             const std::map<int, std::vector<kernels::AmpStats>>& values) const;

  InspectorOptions options_;
  std::weak_ptr<nn::Module> model_;
  std::vector<std::pair<std::weak_ptr<nn::Module>, int64_t>> hooks_;
  nn::NamedTensors params_;
  const GradScaler* scaler_ = nullptr;
  std::ostream* sink_ = nullptr;

  bool sampling_ = false;
  bool grads_captured_ = false;
  int64_t step_ = 0;
  std::optional<double> loss_scale_;
  Entries grads_, outputs_;
  // Per device: stats buffers of kChunkSlots slots, filled in order.
  std::map<int, std::vector<Tensor>> buffers_;
  std::map<int, int64_t> used_in_last_;
};

}  // namespace mantissa::amp
