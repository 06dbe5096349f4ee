// Checkpoint assembly on top of nn/safetensors: naming, metadata encoding (64-bit counters as
// decimal strings, since JSON numbers lose precision past 2^53) and strict parsing on load.
#include "examples/common/checkpoint.h"

#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "nn/safetensors.h"

namespace mantissa::examples {

namespace {
const std::string kOptimizerPrefix = "optimizer.";
const std::string kConfigPrefix = "config.";

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

uint64_t parse_u64(const safetensors::Metadata& meta, const std::string& key, const std::string& path) {
  auto it = meta.find(key);
  MANTISSA_CHECK(it != meta.end(), "checkpoint ", path, ": no \"", key, "\" metadata entry (not a training checkpoint?)");
  const std::string& text = it->second;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  MANTISSA_CHECK(!text.empty() && text[0] != '-' && *end == '\0' && errno != ERANGE, "checkpoint ", path,
                 ": metadata \"", key, "\" is \"", text, "\"; expected a non-negative integer");
  return v;
}
}  // namespace

void save_training_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer& optimizer,
                              const optim::LRScheduler* scheduler, const TrainingProgress& progress) {
  safetensors::NamedTensors tensors = model.state_dict();
  for (const auto& [name, t] : tensors)
    MANTISSA_CHECK(!starts_with(name, kOptimizerPrefix), "checkpoint ", path, ": model tensor \"", name,
                   "\" collides with the optimizer's \"", kOptimizerPrefix, "\" prefix");
  const optim::OptimizerStateDict opt = optimizer.state_dict();
  for (const auto& [name, t] : opt.tensors) tensors.emplace_back(kOptimizerPrefix + name, t);

  safetensors::Metadata meta;
  meta["epoch"] = std::to_string(progress.epoch);
  meta["step"] = std::to_string(progress.step);
  meta["generator.seed"] = std::to_string(progress.generator.seed);
  meta["generator.offset"] = std::to_string(progress.generator.offset);
  if (scheduler != nullptr) meta["scheduler"] = scheduler->state_dict();
  if (!progress.grad_scaler.empty()) meta["grad_scaler"] = progress.grad_scaler;
  for (const auto& [k, v] : opt.metadata) meta[kOptimizerPrefix + k] = v;
  for (const auto& [k, v] : progress.config) meta[kConfigPrefix + k] = v;
  safetensors::save(path, tensors, meta);
}

TrainingProgress load_training_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer& optimizer,
                                          optim::LRScheduler* scheduler) {
  safetensors::File file = safetensors::load(path);
  TrainingProgress p;
  p.epoch = static_cast<int64_t>(parse_u64(file.metadata, "epoch", path));
  p.step = static_cast<int64_t>(parse_u64(file.metadata, "step", path));
  p.generator.seed = parse_u64(file.metadata, "generator.seed", path);
  p.generator.offset = parse_u64(file.metadata, "generator.offset", path);

  nn::NamedTensors model_state;
  optim::OptimizerStateDict opt;
  for (auto& [name, t] : file.tensors) {
    if (starts_with(name, kOptimizerPrefix)) opt.tensors.emplace_back(name.substr(kOptimizerPrefix.size()), t);
    else model_state.emplace_back(name, t);
  }
  for (const auto& [k, v] : file.metadata) {
    if (starts_with(k, kOptimizerPrefix)) opt.metadata[k.substr(kOptimizerPrefix.size())] = v;
    else if (starts_with(k, kConfigPrefix)) p.config[k.substr(kConfigPrefix.size())] = v;
  }
  if (const auto it = file.metadata.find("grad_scaler"); it != file.metadata.end()) p.grad_scaler = it->second;
  const auto sched = file.metadata.find("scheduler");
  MANTISSA_CHECK((sched != file.metadata.end()) == (scheduler != nullptr), "checkpoint ", path, ": it was saved ",
                 sched != file.metadata.end() ? "with" : "without", " an LR scheduler but this run has ",
                 scheduler != nullptr ? "one" : "none");

  // Each load validates everything before changing anything; an error names what failed.
  try {
    model.load_state_dict(model_state, /*strict=*/true);
    optimizer.load_state_dict(opt);
    if (scheduler != nullptr) scheduler->load_state_dict(sched->second);
  } catch (const Error& e) {
    MANTISSA_ERROR("checkpoint ", path, ": ", e.what());
  }
  return p;
}

std::map<std::string, std::string> load_training_config(const std::string& path) {
  const safetensors::File file = safetensors::load(path);
  std::map<std::string, std::string> config;
  for (const auto& [k, v] : file.metadata)
    if (starts_with(k, kConfigPrefix)) config[k.substr(kConfigPrefix.size())] = v;
  return config;
}

std::vector<std::string> config_mismatches(const std::map<std::string, std::string>& saved,
                                           const std::map<std::string, std::string>& current,
                                           const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  for (const std::string& k : keys) {
    auto s = saved.find(k);
    auto c = current.find(k);
    const std::string sv = s == saved.end() ? "(nothing)" : s->second;
    const std::string cv = c == current.end() ? "(nothing)" : c->second;
    if (sv != cv) out.push_back(k + ": checkpoint has " + sv + ", this run has " + cv);
  }
  return out;
}

}  // namespace mantissa::examples
