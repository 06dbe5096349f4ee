// The overflow/underflow inspector: the range-statistics kernel on hand-built tensors whose
// counts are known (every dtype, the multi-threaded split, accumulation), nn::Module forward
// hooks, and amp::Inspector's records and JSON lines on a small hand-weighted model.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "amp/grad_scaler.h"
#include "amp/inspector.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/kernels/amp_inspect.h"
#include "core/kernels/device_memory.h"
#include "nn/nn.h"
#include "optim/optim.h"

namespace mantissa {
namespace {

// Braced float lists would be ambiguous between from_vector's float and double overloads.
Tensor fv(const std::vector<float>& values, const Shape& shape, TensorOptions options = {}) {
  return from_vector(values, shape, options);
}

using kernels::AmpStats;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void expect_stats(const AmpStats& s, int64_t numel, int64_t zero, int64_t under_sub, int64_t under_norm, int64_t over,
                  int64_t nonfinite, double max_abs) {
  EXPECT_EQ(s.numel, numel);
  EXPECT_EQ(s.zero, zero);
  EXPECT_EQ(s.under_sub, under_sub);
  EXPECT_EQ(s.under_norm, under_norm);
  EXPECT_EQ(s.over, over);
  EXPECT_EQ(s.nonfinite, nonfinite);
  EXPECT_EQ(s.max_abs, max_abs);
}

// The boundaries: 2^-24 itself is F16's smallest subnormal (not below it), 2^-14 its smallest
// normal, 65504 its max (not above it).
const std::vector<float> kEdges = {0.0f, -0.0f, 1e-8f, -0x1p-24f, 3e-5f, 0x1p-14f, 6.2e-5f,
                                   1.0f, 70000.0f, -65504.0f, 65505.0f, kInf, -kInf, kNaN};
// zero 2; under_sub 1 (1e-8); under_norm 3 (1e-8, 2^-24, 3e-5); over 2 (70000, 65505);
// non-finite 3; max |x| over the finite ones 70000.

TEST(AmpInspectKernel, CountsTheF16RangeClassesInF32AndF64) {
  expect_stats(kernels::amp_inspect(from_vector(kEdges, {2, 7})), 14, 2, 1, 3, 2, 3, 70000.0);
  expect_stats(kernels::amp_inspect(from_vector(kEdges, {14}).to(DType::F64)), 14, 2, 1, 3, 2, 3, 70000.0);
}

TEST(AmpInspectKernel, CountsF16AndBF16Tensors) {
  // In F16 itself: 2^-24 is representable (not below the smallest subnormal), 2^-20 is a
  // subnormal (below the smallest normal), nothing finite exceeds 65504.
  const Tensor h = fv({0.0f, 0x1p-24f, 0x1p-20f, 1.0f, 65504.0f, kInf, kNaN}, {7}, TensorOptions(DType::F16));
  expect_stats(kernels::amp_inspect(h), 7, 1, 0, 2, 0, 2, 65504.0);
  // BF16 has F32's range: 1e-30 is below F16's subnormals, 1e5 above its max.
  const Tensor b = fv({0.0f, 1e-30f, 1e-6f, 1e5f, -2.0f}, {5}, TensorOptions(DType::BF16));
  expect_stats(kernels::amp_inspect(b), 5, 1, 1, 2, 1, 0, static_cast<double>(static_cast<float>(BFloat16(1e5f))));
}

TEST(AmpInspectKernel, KnownFractionsOnALargeTensorAcrossThreads) {
  // 100,000 elements (split across threads): by i % 10, one tenth each of 0, 1e-9, 1e-5, -1e5
  // and Inf, and half 0.5. So 10% zero, 10% below the subnormals, 20% below the normals, 10%
  // over, 10% non-finite.
  const int64_t n = 100000;
  std::vector<float> v(n);
  const float pattern[10] = {0.0f, 1e-9f, 1e-5f, -1e5f, kInf, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  for (int64_t i = 0; i < n; ++i) v[i] = pattern[i % 10];
  const Tensor t = from_vector(v, {n});
  expect_stats(kernels::amp_inspect(t), n, n / 10, n / 10, n / 5, n / 10, n / 10, 1e5);
  // The same counts from the 16-bit path (values rounded to BF16 first; none changes class).
  expect_stats(kernels::amp_inspect(t.to(DType::BF16)), n, n / 10, n / 10, n / 5, n / 10, n / 10,
               static_cast<double>(static_cast<float>(BFloat16(1e5f))));
}

TEST(AmpInspectKernel, SlotsAccumulateAndArgumentsAreChecked) {
  Tensor buffer = kernels::amp_stats_buffer(kCPU, 2);
  kernels::amp_stats_accumulate(fv({0.0f, 3.0f}, {2}), buffer, 1);
  kernels::amp_stats_accumulate(fv({1e-9f, -7.0f, kNaN}, {3}), buffer, 1);
  const std::vector<AmpStats> s = kernels::amp_stats_read(buffer);
  ASSERT_EQ(s.size(), 2u);
  expect_stats(s[0], 0, 0, 0, 0, 0, 0, 0.0);
  expect_stats(s[1], 5, 1, 1, 1, 0, 1, 7.0);
  expect_stats(kernels::amp_inspect(from_vector(std::vector<float>{kNaN}, {1})), 1, 0, 0, 0, 0, 1, 0.0);
  EXPECT_THROW(kernels::amp_stats_accumulate(fv({1.0f}, {1}), buffer, 2), Error);
  EXPECT_THROW(kernels::amp_stats_accumulate(from_vector(std::vector<int64_t>{1}, {1}), buffer, 0), Error);
  EXPECT_THROW(kernels::amp_stats_accumulate(fv({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2}).t(), buffer, 0), Error);
}

TEST(AmpInspectKernel, CudaMatchesCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  const Device cuda(DeviceType::CUDA, 0);
  std::vector<float> v(3'000'001);
  for (size_t i = 0; i < v.size(); ++i) v[i] = kEdges[i % kEdges.size()] * static_cast<float>(1 + i % 3);
  const Tensor t = from_vector(v, {static_cast<int64_t>(v.size())});
  for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    const Tensor c = t.to(dt);
    const AmpStats a = kernels::amp_inspect(c), b = kernels::amp_inspect(c.to(cuda));
    expect_stats(b, a.numel, a.zero, a.under_sub, a.under_norm, a.over, a.nonfinite, a.max_abs);
  }
}

// --- forward hooks -------------------------------------------------------------------------------

TEST(ModuleForwardHooks, RunThroughCallAndSequentialButNotDirectForward) {
  auto lin = std::make_shared<nn::Linear>(2, 2);
  auto seq = std::make_shared<nn::Sequential>(lin, std::make_shared<nn::ReLU>());
  std::vector<std::string> seen;
  const int64_t h1 = lin->register_forward_hook([&](nn::Module& m, const Tensor& in, const Tensor& out) {
    seen.push_back(m.name() + ":" + shape_str(in.sizes()) + "->" + shape_str(out.sizes()));
  });
  const int64_t h2 = seq->register_forward_hook([&](nn::Module&, const Tensor&, const Tensor&) { seen.push_back("seq"); });
  const Tensor x = ones({3, 2});
  (*seq)(x);
  EXPECT_EQ(seen, (std::vector<std::string>{"Linear:[3, 2]->[3, 2]", "seq"}));
  seen.clear();
  seq->forward(x);  // children are still called through operator()
  EXPECT_EQ(seen, (std::vector<std::string>{"Linear:[3, 2]->[3, 2]"}));
  seen.clear();
  lin->forward(x);
  EXPECT_TRUE(seen.empty());
  EXPECT_TRUE(lin->remove_forward_hook(h1));
  EXPECT_FALSE(lin->remove_forward_hook(h1));
  EXPECT_TRUE(seq->remove_forward_hook(h2));
  (*seq)(x);
  EXPECT_TRUE(seen.empty());
}

// --- the Inspector -------------------------------------------------------------------------------

// Linear(2, 2) with W = [[1, 0], [0, -1]], b = 0, then ReLU. For x = [[1e-9, 5], [7e4, 2]]:
// Linear gives [[1e-9, -5], [7e4, -2]], ReLU [[1e-9, 0], [7e4, 0]]. With loss = sum(relu) scaled
// by 1024: dW = 1024 * [[1e-9 + 7e4, 5 + 2], [0, 0]] = [[71680000, 7168], [0, 0]],
// db = 1024 * [2, 0] = [2048, 0].
struct HandModel {
  std::shared_ptr<nn::Linear> lin = std::make_shared<nn::Linear>(2, 2);
  std::shared_ptr<nn::Sequential> model = std::make_shared<nn::Sequential>(lin, std::make_shared<nn::ReLU>());
  HandModel() {
    NoGradGuard no_grad;
    lin->weight.copy_(fv({1.0f, 0.0f, 0.0f, -1.0f}, {2, 2}));
    lin->bias.zero_();
  }
  Tensor input() const { return fv({1e-9f, 5.0f, 7e4f, 2.0f}, {2, 2}); }
};

const AmpStats& find(const std::vector<std::pair<std::string, AmpStats>>& v, const std::string& name) {
  for (const auto& [n, s] : v)
    if (n == name) return s;
  ADD_FAILURE() << "no entry " << name;
  static AmpStats none;
  return none;
}

TEST(Inspector, RecordsOutputsGradsAndTheLossScale) {
  HandModel hm;
  optim::SGD opt(hm.model->parameters(), optim::SGDOptions(0.0));
  amp::GradScaler scaler(amp::GradScalerOptions().init_scale(1024.0));
  amp::Inspector inspector;
  inspector.attach(hm.model);
  inspector.attach(scaler);
  std::ostringstream sink;
  inspector.set_sink(&sink);

  EXPECT_TRUE(inspector.begin_step(0));
  const Tensor loss = sum((*hm.model)(hm.input()));
  scaler.scale(loss).backward();
  inspector.capture_grads();
  scaler.step(opt);
  scaler.update();
  const std::optional<amp::InspectorRecord> r = inspector.end_step();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->step, 0);
  EXPECT_EQ(r->loss_scale, std::optional<double>(1024.0));

  ASSERT_EQ(r->outputs.size(), 3u);  // the two leaves in call order, then the model itself
  EXPECT_EQ(r->outputs[0].first, "0");
  EXPECT_EQ(r->outputs[1].first, "1");
  EXPECT_EQ(r->outputs[2].first, "(model)");
  expect_stats(find(r->outputs, "0"), 4, 0, 1, 1, 1, 0, 70000.0);
  expect_stats(find(r->outputs, "1"), 4, 2, 1, 1, 1, 0, 70000.0);
  expect_stats(find(r->outputs, "(model)"), 4, 2, 1, 1, 1, 0, 70000.0);

  ASSERT_EQ(r->grads.size(), 2u);
  EXPECT_EQ(r->grads[0].first, "0.weight");
  expect_stats(find(r->grads, "0.weight"), 4, 2, 0, 0, 1, 0, 71680000.0);
  expect_stats(find(r->grads, "0.bias"), 2, 1, 0, 0, 0, 0, 2048.0);

  // The JSON line carries the same numbers.
  const std::string line = sink.str();
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["step"], 0);
  EXPECT_EQ(j["loss_scale"], 1024.0);
  EXPECT_EQ(j["grads"]["0.weight"]["over"], 1);
  EXPECT_EQ(j["grads"]["0.weight"]["max_abs"], 71680000.0);
  EXPECT_EQ(j["outputs"]["1"]["zero"], 2);
  EXPECT_EQ(j["outputs"]["0"]["under_sub"], 1);
  for (const char* key : {"numel", "zero", "under_sub", "under_norm", "over", "max_abs", "nonfinite"})
    EXPECT_TRUE(j["outputs"]["(model)"].contains(key)) << key;
  EXPECT_EQ(r->to_json() + "\n", line);
}

TEST(Inspector, SamplesEveryNStepsAndAccumulatesRepeatedCalls) {
  HandModel hm;
  amp::Inspector inspector(amp::InspectorOptions().every_n_steps(3).grads(false));
  inspector.attach(hm.model);
  std::ostringstream sink;
  inspector.set_sink(&sink);
  int records = 0;
  for (int64_t step = 0; step < 7; ++step) {
    EXPECT_EQ(inspector.begin_step(step), step % 3 == 0);
    (*hm.model)(hm.input());
    (*hm.model)(hm.input());  // a module run twice in a step sums into one entry
    const auto r = inspector.end_step();
    EXPECT_EQ(r.has_value(), step % 3 == 0);
    if (!r) continue;
    ++records;
    EXPECT_TRUE(r->grads.empty());
    EXPECT_FALSE(r->loss_scale.has_value());
    expect_stats(find(r->outputs, "1"), 8, 4, 2, 2, 2, 0, 70000.0);
  }
  EXPECT_EQ(records, 3);
  int lines = 0;
  for (char c : sink.str()) lines += c == '\n';
  EXPECT_EQ(lines, 3);
  EXPECT_NE(sink.str().find("\"loss_scale\":null"), std::string::npos);
}

TEST(Inspector, ManualOutputsAndDetach) {
  HandModel hm;
  {
    amp::Inspector inspector(amp::InspectorOptions().all_modules(true));
    inspector.attach(hm.model);
    inspector.begin_step(0);
    inspector.record_output("custom", fv({0.0f, 1e-10f, kInf}, {3}));
    inspector.record_output("ignored_integers", from_vector(std::vector<int64_t>{1, 2}, {2}));
    (*hm.model)(hm.input());
    const auto r = inspector.end_step();
    ASSERT_TRUE(r.has_value());
    expect_stats(find(r->outputs, "custom"), 3, 1, 1, 1, 0, 1, static_cast<double>(1e-10f));
    for (const auto& [name, s] : r->outputs) EXPECT_NE(name, "ignored_integers");
    EXPECT_EQ(r->outputs.size(), 4u);  // custom, "0", "1", "(model)" (the root is the container)
  }
  // The destroyed inspector removed its hooks: the model runs without touching it.
  const Tensor out = (*hm.model)(hm.input());
  EXPECT_EQ(out.numel(), 4);
  // Statistics never become part of the graph.
  amp::Inspector inspector;
  inspector.attach(hm.model);
  inspector.begin_step(0);
  const Tensor y = (*hm.model)(hm.input());
  EXPECT_EQ(y.grad_fn_name(), "ReluBackward");
  EXPECT_THROW(amp::Inspector(amp::InspectorOptions().every_n_steps(0)), Error);
}

}  // namespace
}  // namespace mantissa
