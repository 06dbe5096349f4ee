// Inspector: forward hooks and gradient capture feeding the range-statistics kernel
// (core/kernels/amp_inspect.h) into per-device stats buffers, read back once per sampled step,
// and the JSON-lines record.
#include "amp/inspector.h"

#include <ostream>

#include <nlohmann/json.hpp>

#include "amp/grad_scaler.h"
#include "autograd/grad_mode.h"
#include "core/error.h"

namespace mantissa::amp {

using nlohmann::ordered_json;

namespace {

constexpr int64_t kChunkSlots = 64;
constexpr const char* kModelName = "(model)";

int device_key(const Device& d) { return d.is_cuda() ? d.index : -1; }
Device key_device(int key) { return key < 0 ? Device(kCPU) : Device(DeviceType::CUDA, key); }

ordered_json stats_json(const kernels::AmpStats& s) {
  ordered_json j;
  j["numel"] = s.numel;
  j["zero"] = s.zero;
  j["under_sub"] = s.under_sub;
  j["under_norm"] = s.under_norm;
  j["over"] = s.over;
  j["max_abs"] = s.max_abs;
  j["nonfinite"] = s.nonfinite;
  return j;
}

}  // namespace

std::string InspectorRecord::to_json() const {
  ordered_json j;
  j["step"] = step;
  j["loss_scale"] = loss_scale ? ordered_json(*loss_scale) : ordered_json(nullptr);
  ordered_json g = ordered_json::object(), o = ordered_json::object();
  for (const auto& [name, s] : grads) g[name] = stats_json(s);
  for (const auto& [name, s] : outputs) o[name] = stats_json(s);
  j["grads"] = std::move(g);
  j["outputs"] = std::move(o);
  return j.dump();
}

Inspector::Inspector(const InspectorOptions& options) : options_(options) {
  MANTISSA_CHECK(options_.every_n_steps() >= 1, "Inspector: every_n_steps must be >= 1, got ",
                 options_.every_n_steps());
}

Inspector::~Inspector() { detach(); }

void Inspector::detach() {
  for (auto& [weak, handle] : hooks_)
    if (auto m = weak.lock()) m->remove_forward_hook(handle);
  hooks_.clear();
  params_.clear();
  model_.reset();
}

void Inspector::attach(const std::shared_ptr<nn::Module>& model) {
  MANTISSA_CHECK(model != nullptr, "Inspector.attach: the model is null");
  detach();
  model_ = model;
  params_ = model->named_parameters();
  for (const auto& [name, module] : model->named_modules()) {
    const bool root = module.get() == model.get();
    if (!root && !options_.all_modules() && !module->children().empty()) continue;
    const std::string label = root ? std::string(kModelName) : name;
    const int64_t handle = module->register_forward_hook(
        [this, label](nn::Module&, const Tensor&, const Tensor& output) { record_output(label, output); });
    hooks_.emplace_back(module, handle);
  }
}

void Inspector::attach(const GradScaler& scaler) { scaler_ = &scaler; }

bool Inspector::begin_step(int64_t step) {
  step_ = step;
  sampling_ = step % options_.every_n_steps() == 0;
  grads_captured_ = false;
  loss_scale_.reset();
  grads_ = Entries{};
  outputs_ = Entries{};
  // Buffers are zeroed per step; keep the allocations only for sampled steps.
  buffers_.clear();
  used_in_last_.clear();
  return sampling_;
}

Inspector::Slot Inspector::allocate(const Device& device) {
  const int key = device_key(device);
  std::vector<Tensor>& chunks = buffers_[key];
  int64_t& used = used_in_last_[key];
  if (chunks.empty() || used == kChunkSlots) {
    chunks.push_back(kernels::amp_stats_buffer(device, kChunkSlots));
    used = 0;
  }
  return Slot{key, chunks.size() - 1, used++};
}

void Inspector::accumulate(Entries& entries, const std::string& name, const Tensor& t) {
  if (!t.defined() || !t.is_floating_point()) return;
  NoGradGuard no_grad;
  // A view of the values only: statistics must not become part of the autograd graph.
  Tensor x = t.detach();
  if (!x.is_contiguous()) x = x.contiguous();
  auto it = entries.slots.find(name);
  if (it == entries.slots.end()) {
    it = entries.slots.emplace(name, allocate(x.device())).first;
    entries.order.push_back(name);
  }
  const Slot& slot = it->second;
  MANTISSA_CHECK(slot.device_key == device_key(x.device()), "Inspector: \"", name, "\" was recorded on ",
                 key_device(slot.device_key), " and now on ", x.device(), " in the same step");
  kernels::amp_stats_accumulate(x, buffers_[slot.device_key][slot.chunk], slot.index);
}

void Inspector::record_output(const std::string& name, const Tensor& t) {
  if (!sampling_ || !options_.outputs()) return;
  accumulate(outputs_, name, t);
}

void Inspector::capture_grads() {
  if (!sampling_) return;
  grads_captured_ = true;
  if (scaler_ != nullptr) loss_scale_ = scaler_->get_scale();
  if (!options_.grads()) return;
  grads_ = Entries{};
  for (const auto& [name, p] : params_) accumulate(grads_, name, p.grad());
}

std::vector<std::pair<std::string, kernels::AmpStats>> Inspector::read(
    const Entries& entries, const std::map<int, std::vector<kernels::AmpStats>>& values) const {
  std::vector<std::pair<std::string, kernels::AmpStats>> out;
  out.reserve(entries.order.size());
  for (const std::string& name : entries.order) {
    const Slot& s = entries.slots.at(name);
    out.emplace_back(name, values.at(s.device_key)[s.chunk * kChunkSlots + s.index]);
  }
  return out;
}

std::optional<InspectorRecord> Inspector::end_step() {
  if (!sampling_) return std::nullopt;
  if (!grads_captured_) capture_grads();
  // One read per buffer: all counts of the step arrive together.
  std::map<int, std::vector<kernels::AmpStats>> values;
  for (const auto& [key, chunks] : buffers_) {
    std::vector<kernels::AmpStats>& v = values[key];
    for (const Tensor& b : chunks) {
      std::vector<kernels::AmpStats> part = kernels::amp_stats_read(b);
      v.insert(v.end(), part.begin(), part.end());
    }
  }
  InspectorRecord record;
  record.step = step_;
  record.loss_scale = loss_scale_;
  record.grads = read(grads_, values);
  record.outputs = read(outputs_, values);
  sampling_ = false;
  buffers_.clear();
  used_in_last_.clear();
  if (sink_ != nullptr) *sink_ << record.to_json() << '\n';
  return record;
}

}  // namespace mantissa::amp
