// amp::GradScaler and the fused unscale kernel: PyTorch's trajectories (tests/golden/
// grad_scaler.json) followed bit for bit, skipped steps that leave parameters and optimizer state
// untouched, the stage errors, state_dict, min/max scale, clipping after unscale_, gradient
// accumulation, the multi-threaded CPU kernel against a scalar reference, and CUDA against CPU.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <limits>
#include <string>
#include <vector>

#include "amp/grad_scaler.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "core/kernels/amp_scale.h"
#include "core/kernels/device_memory.h"
#include "optim/optim.h"
#include "support/golden.h"

namespace mantissa {
namespace {

// Braced float lists would be ambiguous between from_vector's float and double overloads.
Tensor fv(const std::vector<float>& values, const Shape& shape, TensorOptions options = {}) {
  return from_vector(values, shape, options);
}

using amp::GradScaler;
using amp::GradScalerOptions;
using nlohmann::json;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

float decode(const json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "inf") return kInf;
    if (s == "-inf") return -kInf;
    if (s == "nan") return kNaN;
    ADD_FAILURE() << "unexpected string " << s;
  }
  return static_cast<float>(v.get<double>());
}

std::vector<float> decode_list(const json& a) {
  std::vector<float> out;
  for (const json& v : a) out.push_back(decode(v));
  return out;
}

Shape shape_of(const json& s) { return s.get<std::vector<int64_t>>(); }

// Bit-identical, except that any NaN matches any NaN.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t k = 0; k < got.size(); ++k) {
    if (std::isnan(want[k])) {
      EXPECT_TRUE(std::isnan(got[k])) << what << " element " << k << ": got " << got[k];
    } else {
      EXPECT_EQ(std::bit_cast<uint32_t>(got[k]), std::bit_cast<uint32_t>(want[k]))
          << what << " element " << k << ": got " << got[k] << ", want " << want[k];
    }
  }
}

Tensor param(const std::vector<float>& values, const Shape& shape) {
  return from_vector(values, shape).requires_grad_();
}

// --- PyTorch's trajectories ------------------------------------------------------------------

class GradScalerGolden : public ::testing::TestWithParam<int> {};

TEST_P(GradScalerGolden, FollowsPyTorchBitForBit) {
  const json& c = testing::golden_json("grad_scaler.json")["cases"][GetParam()];
  SCOPED_TRACE(c["name"].get<std::string>());
  std::vector<Tensor> params;
  for (size_t k = 0; k < c["shapes"].size(); ++k)
    params.push_back(param(decode_list(c["init_params"][k]), shape_of(c["shapes"][k])));
  optim::SGD opt(params, optim::SGDOptions(c["lr"].get<double>()).momentum(c["momentum"].get<double>()));
  GradScaler scaler(GradScalerOptions()
                        .init_scale(c["init_scale"].get<double>())
                        .growth_factor(c["growth_factor"].get<double>())
                        .backoff_factor(c["backoff_factor"].get<double>())
                        .growth_interval(c["growth_interval"].get<int64_t>()));
  int64_t skipped = 0;
  for (size_t s = 0; s < c["steps"].size(); ++s) {
    const json& st = c["steps"][s];
    SCOPED_TRACE("step " + std::to_string(s));
    ASSERT_EQ(scaler.get_scale(), st["scale_before"].get<double>());
    const Tensor loss = scalar_tensor(st["loss"].get<double>(), TensorOptions(DType::F32));
    expect_same_bits({scaler.scale(loss).item<float>()}, {decode(st["scaled_loss"])}, "scaled loss");
    for (size_t k = 0; k < params.size(); ++k)
      params[k].set_grad(from_vector(decode_list(st["grads_in"][k]), params[k].sizes()));
    if (st["explicit_unscale"].get<bool>()) {
      scaler.unscale_(opt);
      EXPECT_EQ(scaler.stage(opt), GradScaler::Stage::Unscaled);
    }
    const amp::StepResult r = scaler.step(opt);
    const bool found = st["found_inf"].get<bool>();
    EXPECT_EQ(r.applied, !found);
    EXPECT_EQ(r.first_nonfinite.empty(), !found);
    EXPECT_EQ(scaler.stage(opt), GradScaler::Stage::Stepped);
    skipped += found ? 1 : 0;
    for (size_t k = 0; k < params.size(); ++k) {
      expect_same_bits(to_vector<float>(params[k].grad()), decode_list(st["grads_unscaled"][k]),
                       "unscaled gradient " + std::to_string(k));
      // The SGD update itself is compared as the optimizer tests do (same formula, rounding
      // may differ in the last bit); a skipped step must leave the values exactly as they were.
      const std::vector<float> got = to_vector<float>(params[k]), want = decode_list(st["params_after"][k]);
      for (size_t e = 0; e < got.size(); ++e)
        ASSERT_NEAR(got[e], want[e], 2e-6 * std::max(1.0f, std::fabs(want[e]))) << "parameter " << k << "[" << e << "]";
    }
    if (st["new_scale"].is_null()) scaler.update();
    else scaler.update(st["new_scale"].get<double>());
    EXPECT_EQ(scaler.get_scale(), st["scale_after"].get<double>());
    EXPECT_EQ(scaler.get_growth_tracker(), st["growth_tracker_after"].get<int64_t>());
    EXPECT_EQ(scaler.stage(opt), GradScaler::Stage::Ready);
  }
  EXPECT_EQ(scaler.skipped_steps(), skipped);

  // PyTorch's state_dict (five keys) loads as it is and equals ours.
  const amp::GradScalerState theirs = amp::GradScalerState::from_json(c["state_dict"].dump());
  const amp::GradScalerState ours = scaler.state_dict();
  EXPECT_EQ(ours.scale, theirs.scale);
  EXPECT_EQ(ours.growth_factor, theirs.growth_factor);
  EXPECT_EQ(ours.backoff_factor, theirs.backoff_factor);
  EXPECT_EQ(ours.growth_interval, theirs.growth_interval);
  EXPECT_EQ(ours.growth_tracker, theirs.growth_tracker);
  GradScaler fresh;
  fresh.load_state_dict(theirs);
  EXPECT_EQ(fresh.get_scale(), scaler.get_scale());
  EXPECT_EQ(fresh.get_growth_tracker(), scaler.get_growth_tracker());
  EXPECT_EQ(fresh.get_growth_interval(), scaler.get_growth_interval());
}

INSTANTIATE_TEST_SUITE_P(Cases, GradScalerGolden, ::testing::Values(0, 1));

// --- skipped steps ---------------------------------------------------------------------------

struct TwoParams {
  Tensor w = param({0.5f, -1.0f, 2.0f, 0.25f, 3.0f, -0.75f}, {2, 3});
  Tensor b = param({0.1f, -0.2f}, {2});
  void set_grads(float scale, bool poison) {
    std::vector<float> gw = {0.1f, 0.2f, -0.3f, 0.4f, -0.5f, 0.6f}, gb = {1.0f, -1.0f};
    for (float& v : gw) v *= scale;
    for (float& v : gb) v *= scale;
    if (poison) gb[1] = kNaN;
    w.set_grad(from_vector(gw, {2, 3}));
    b.set_grad(from_vector(gb, {2}));
  }
};

std::vector<float> values(const Tensor& t) { return t.defined() ? to_vector<float>(t) : std::vector<float>{}; }

TEST(GradScaler, SkippedStepLeavesSGDMomentumUntouched) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.1).momentum(0.9));
  GradScaler scaler;
  m.set_grads(65536.0f, false);
  EXPECT_TRUE(scaler.step(opt).applied);
  scaler.update();
  const std::vector<float> w = values(m.w), b = values(m.b);
  const std::vector<float> buf_w = values(opt.state(m.w)->momentum_buffer), buf_b = values(opt.state(m.b)->momentum_buffer);
  const uint32_t version = m.w.version();

  m.set_grads(65536.0f, true);
  const amp::StepResult r = scaler.step(opt);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.first_nonfinite, "group 0 parameter 1");
  scaler.update();
  expect_same_bits(values(m.w), w, "w");
  expect_same_bits(values(m.b), b, "b");
  expect_same_bits(values(opt.state(m.w)->momentum_buffer), buf_w, "momentum w");
  expect_same_bits(values(opt.state(m.b)->momentum_buffer), buf_b, "momentum b");
  EXPECT_EQ(opt.state(m.w)->step, 1);
  EXPECT_EQ(m.w.version(), version);
  EXPECT_EQ(scaler.get_scale(), 32768.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(scaler.consecutive_skipped_steps(), 1);
  EXPECT_TRUE(scaler.last_step_skipped());
}

TEST(GradScaler, SkippedStepLeavesAdamMomentsAndStepCountUntouched) {
  TwoParams m;
  optim::Adam opt({m.w, m.b}, optim::AdamOptions(1e-2));
  GradScaler scaler(GradScalerOptions().init_scale(1024.0));
  scaler.set_parameter_names({{"fc.weight", m.w}, {"fc.bias", m.b}});
  m.set_grads(1024.0f, false);
  EXPECT_TRUE(scaler.step(opt).applied);
  scaler.update();
  const std::vector<float> w = values(m.w), m1 = values(opt.state(m.w)->exp_avg), v1 = values(opt.state(m.w)->exp_avg_sq);
  for (int k = 0; k < 2; ++k) {
    m.set_grads(static_cast<float>(scaler.get_scale()), true);
    const amp::StepResult r = scaler.step(opt);
    EXPECT_FALSE(r.applied);
    EXPECT_EQ(r.first_nonfinite, "fc.bias");
    scaler.update();
  }
  expect_same_bits(values(m.w), w, "w");
  expect_same_bits(values(opt.state(m.w)->exp_avg), m1, "exp_avg");
  expect_same_bits(values(opt.state(m.w)->exp_avg_sq), v1, "exp_avg_sq");
  EXPECT_EQ(opt.state(m.w)->step, 1);
  EXPECT_EQ(opt.state(m.b)->step, 1);
  EXPECT_EQ(scaler.get_scale(), 256.0);
  EXPECT_EQ(scaler.consecutive_skipped_steps(), 2);
  // A clean step resets the run of skips, not the total.
  m.set_grads(static_cast<float>(scaler.get_scale()), false);
  EXPECT_TRUE(scaler.step(opt).applied);
  scaler.update();
  EXPECT_EQ(opt.state(m.w)->step, 2);
  EXPECT_EQ(scaler.skipped_steps(), 2);
  EXPECT_EQ(scaler.consecutive_skipped_steps(), 0);
  EXPECT_FALSE(scaler.last_step_skipped());
}

TEST(GradScaler, UnscaleMultipliesByTheF32ReciprocalOfTheScale) {
  // PyTorch's inverse: 1/scale taken in F64 and rounded to F32, then one F32 product.
  Tensor w = param({0.0f, 0.0f, 0.0f}, {3});
  optim::SGD opt({w}, optim::SGDOptions(0.1));
  GradScaler scaler(GradScalerOptions().init_scale(3000.0));
  const std::vector<float> g = {1.0f, 3000.0f, -7.5e-3f};
  w.set_grad(from_vector(g, {3}));
  const uint32_t version = w.grad().version();
  scaler.unscale_(opt);
  const float inv = static_cast<float>(1.0 / 3000.0);
  expect_same_bits(values(w.grad()), {g[0] * inv, g[1] * inv, g[2] * inv}, "unscaled");
  EXPECT_GT(w.grad().version(), version);
}

// An optimizer that steps on F32 copies of its F16 parameters' gradients, like MasterWeights:
// it takes over the unscale through the unscale_grads_ hook.
class CopyingOptimizer final : public optim::Optimizer {
 public:
  CopyingOptimizer(Tensor working, Tensor master)
      : Optimizer("Copying", {optim::ParamGroup({master})}, std::make_unique<optim::SGDOptions>(0.0)),
        working_(std::move(working)), master_(std::move(master)) {}
  bool unscale_grads_(float inv_scale, const std::function<Tensor(const Device&)>& found_inf_for) override {
    ++hook_calls;
    seen_inv = inv_scale;
    Tensor widened = working_.grad().to(DType::F32);
    const Tensor list[] = {widened};
    kernels::unscale_and_check_(list, inv_scale, found_inf_for(widened.device()));
    master_.set_grad(widened);
    return true;
  }
  void step() override { ++steps; }
  int hook_calls = 0, steps = 0;
  float seen_inv = 0.0f;

 protected:
  std::vector<std::string> state_tensor_names() const override { return {}; }
  void check_loaded_state(const optim::ParamState&, size_t) const override {}

 private:
  Tensor working_, master_;
};

TEST(GradScaler, OptimizersThatCopyGradientsUnscaleThroughTheirHook) {
  Tensor working = fv({1.0f, 2.0f}, {2}, TensorOptions(DType::F16)).requires_grad_();
  Tensor master = param({1.0f, 2.0f}, {2});
  CopyingOptimizer opt(working, master);
  GradScaler scaler(GradScalerOptions().init_scale(3000.0));
  working.set_grad(fv({3000.0f, -1500.0f}, {2}, TensorOptions(DType::F16)));  // F16 gradients: no refusal
  EXPECT_TRUE(scaler.step(opt).applied);
  EXPECT_EQ(opt.hook_calls, 1);
  EXPECT_EQ(opt.seen_inv, static_cast<float>(1.0 / 3000.0));
  EXPECT_EQ(opt.steps, 1);
  const float inv = static_cast<float>(1.0 / 3000.0);
  expect_same_bits(values(master.grad()), {3000.0f * inv, -1500.0f * inv}, "master gradient");
  scaler.update();
  // An Inf in the 16-bit gradient raises the flag the scaler handed out: the step is skipped
  // and the offender is named from the optimizer's (master) parameters.
  working.set_grad(fv({kInf, 1.0f}, {2}, TensorOptions(DType::F16)));
  const amp::StepResult r = scaler.step(opt);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.first_nonfinite, "group 0 parameter 0");
  EXPECT_EQ(opt.steps, 1);
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 1500.0);
}

// --- errors ----------------------------------------------------------------------------------

template <typename F>
void expect_error(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << fragment << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(GradScaler, StageErrors) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.1));
  GradScaler scaler;
  m.set_grads(65536.0f, false);
  scaler.unscale_(opt);
  expect_error([&] { scaler.unscale_(opt); }, "already been called");
  scaler.step(opt);
  expect_error([&] { scaler.unscale_(opt); }, "after step()");
  expect_error([&] { scaler.step(opt); }, "already been called");
  scaler.update();
  expect_error([&] { scaler.update(); }, "no inf checks were recorded");
  // No gradients at all.
  opt.zero_grad();
  expect_error([&] { scaler.step(opt); }, "no parameter of this SGD optimizer has a gradient");
  expect_error([&] { scaler.update(0.0); }, "new_scale must be a positive finite number");
}

TEST(GradScaler, RefusesF16AndBF16Gradients) {
  for (DType dt : {DType::F16, DType::BF16}) {
    Tensor w = fv({1.0f, 2.0f}, {2}, TensorOptions(dt)).requires_grad_();
    Tensor v = param({1.0f}, {1});
    optim::SGD opt({v, w}, optim::SGDOptions(0.1));
    GradScaler scaler;
    scaler.set_parameter_names({{"v", v}, {"half.weight", w}});
    v.set_grad(fv({65536.0f}, {1}));
    w.set_grad(fv({1.0f, 2.0f}, {2}, TensorOptions(dt)));
    expect_error([&] { scaler.unscale_(opt); }, "master-weight policy");
    expect_error([&] { scaler.unscale_(opt); }, "'half.weight' (group 0 parameter 1)");
    // Nothing was unscaled: the check runs before any gradient is touched.
    EXPECT_EQ(values(v.grad())[0], 65536.0f);
    EXPECT_EQ(scaler.stage(opt), GradScaler::Stage::Ready);
  }
}

TEST(GradScaler, RejectsBadOptions) {
  expect_error([] { GradScaler(GradScalerOptions().growth_factor(1.0)); }, "growth_factor must be > 1");
  expect_error([] { GradScaler(GradScalerOptions().backoff_factor(1.0)); }, "backoff_factor must be in (0, 1)");
  expect_error([] { GradScaler(GradScalerOptions().backoff_factor(0.0)); }, "backoff_factor must be in (0, 1)");
  expect_error([] { GradScaler(GradScalerOptions().growth_interval(0)); }, "growth_interval must be >= 1");
  expect_error([] { GradScaler(GradScalerOptions().init_scale(0.0)); }, "init_scale must be a positive");
  expect_error([] { GradScaler(GradScalerOptions().init_scale(1e39)); }, "not representable");
  expect_error([] { GradScaler(GradScalerOptions().min_scale(8.0).max_scale(4.0).init_scale(4.0)); },
               "min_scale 8 is larger than max_scale 4");
  expect_error([] { GradScaler(GradScalerOptions().max_scale(1024.0)); }, "above max_scale");
  // A disabled scaler checks nothing, as PyTorch's.
  GradScaler off(GradScalerOptions().enabled(false).growth_factor(0.5));
  EXPECT_FALSE(off.is_enabled());
}

// --- disabled, state_dict, bounds ---------------------------------------------------------------

TEST(GradScaler, DisabledIsTransparent) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.1));
  GradScaler scaler(GradScalerOptions().enabled(false));
  const Tensor loss = scalar_tensor(2.5);
  EXPECT_TRUE(scaler.scale(loss).is_same(loss));
  EXPECT_EQ(scaler.get_scale(), 1.0);
  m.set_grads(1.0f, false);
  scaler.unscale_(opt);
  EXPECT_EQ(values(m.b.grad())[0], 1.0f);
  EXPECT_TRUE(scaler.step(opt).applied);
  scaler.update();
  EXPECT_EQ(scaler.state_dict().to_json(), "{}");
  GradScaler on;
  expect_error([&] { on.load_state_dict(amp::GradScalerState::from_json("{}")); }, "disabled GradScaler");
  scaler.load_state_dict(on.state_dict());  // a disabled scaler ignores loads
  EXPECT_EQ(scaler.get_scale(), 1.0);
}

TEST(GradScaler, StateDictRoundTripContinuesIdentically) {
  GradScalerOptions options = GradScalerOptions().init_scale(4096.0).growth_interval(2).min_scale(2.0).max_scale(1e6);
  GradScaler a(options);
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.01));
  const bool poison[] = {false, true, false, true, true, false};
  for (bool p : poison) {
    m.set_grads(static_cast<float>(a.get_scale()), p);
    a.step(opt);
    a.update();
  }
  const std::string text = a.state_dict().to_json();
  EXPECT_NE(text.find("\"_growth_tracker\":1"), std::string::npos) << text;
  GradScaler b;  // other options: the state brings its own
  b.load_state_dict(amp::GradScalerState::from_json(text));
  EXPECT_EQ(b.state_dict().to_json(), text);
  EXPECT_EQ(b.skipped_steps(), 3);
  EXPECT_EQ(b.min_scale(), std::optional<double>(2.0));
  // Both continue alike.
  TwoParams m2;
  optim::SGD opt2({m2.w, m2.b}, optim::SGDOptions(0.01));
  for (bool p : {false, false, true, false}) {
    m.set_grads(static_cast<float>(a.get_scale()), p);
    m2.set_grads(static_cast<float>(b.get_scale()), p);
    EXPECT_EQ(a.step(opt).applied, b.step(opt2).applied);
    a.update();
    b.update();
    EXPECT_EQ(a.get_scale(), b.get_scale());
    EXPECT_EQ(a.get_growth_tracker(), b.get_growth_tracker());
  }
  // Bad states are refused without changing anything.
  expect_error([] { amp::GradScalerState::from_json("{\"scale\": 1.0}"); }, "missing key \"growth_factor\"");
  expect_error([] { amp::GradScalerState::from_json("{\"scale\": 1.0, \"typo\": 2}"); }, "unknown key \"typo\"");
  expect_error([] { amp::GradScalerState::from_json("[1]"); }, "expected a JSON object");
  amp::GradScalerState bad = b.state_dict();
  bad.scale = 0.1;  // not an F32 value
  const double before = b.get_scale();
  expect_error([&] { b.load_state_dict(bad); }, "is not an F32 value");
  EXPECT_EQ(b.get_scale(), before);
}

TEST(GradScaler, MinAndMaxScaleBoundTheScale) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.1));
  GradScaler low(GradScalerOptions().init_scale(64.0).min_scale(16.0));
  const double expected_low[] = {32.0, 16.0, 16.0};
  for (double e : expected_low) {
    m.set_grads(1.0f, true);
    low.step(opt);
    low.update();
    EXPECT_EQ(low.get_scale(), e);
  }
  GradScaler high(GradScalerOptions().init_scale(64.0).growth_interval(1).max_scale(100.0));
  const double expected_high[] = {100.0, 100.0};
  for (double e : expected_high) {
    m.set_grads(1.0f, false);
    high.step(opt);
    high.update();
    EXPECT_EQ(high.get_scale(), e);
  }
  // Unbounded by default: PyTorch's rule keeps halving.
  GradScaler plain(GradScalerOptions().init_scale(64.0));
  for (int k = 0; k < 3; ++k) {
    m.set_grads(1.0f, true);
    plain.step(opt);
    plain.update();
  }
  EXPECT_EQ(plain.get_scale(), 8.0);
}

TEST(GradScaler, GrowthIsSkippedWhenItWouldOverflowF32) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.0));
  GradScaler scaler(GradScalerOptions().init_scale(0x1p127).growth_interval(1));
  m.set_grads(1.0f, false);
  scaler.step(opt);
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 0x1p127);  // 2^128 is not a finite float
  EXPECT_EQ(scaler.get_growth_tracker(), 0);
}

// --- clipping and accumulation -----------------------------------------------------------------

TEST(GradScaler, ClipAfterUnscaleSeesTheTrueGradients) {
  TwoParams m;
  optim::SGD opt({m.w, m.b}, optim::SGDOptions(0.1));
  GradScaler scaler(GradScalerOptions().init_scale(1024.0));
  m.set_grads(1024.0f, false);
  scaler.unscale_(opt);
  // True gradients: w = (0.1, 0.2, -0.3, 0.4, -0.5, 0.6), b = (1, -1): squared norm 2.91.
  const double norm = optim::clip_grad_norm_(std::vector<Tensor>{m.w, m.b}, 1.0);
  EXPECT_NEAR(norm, std::sqrt(2.91), 1e-6);
  double clipped = 0.0;
  for (const Tensor& p : {m.w, m.b})
    for (float v : values(p.grad())) clipped += double(v) * v;
  EXPECT_NEAR(std::sqrt(clipped), 1.0, 1e-5);
  const std::vector<float> before = values(m.b);
  EXPECT_TRUE(scaler.step(opt).applied);  // no second unscale: the clipped values are used
  EXPECT_NEAR(values(m.b)[0], before[0] - 0.1f * values(m.b.grad())[0], 1e-7);
  scaler.update();
}

TEST(GradScaler, AccumulatingThreeMicroBatchesEqualsOneBigBatch) {
  // y = x W^T + b with an MSE loss over 6 rows; 3 micro-batches of 2 rows, each loss / 3.
  const std::vector<float> xv = {0.5f, -1.0f, 2.0f, 0.1f, 1.5f, -0.3f, -0.7f, 0.9f, 0.2f,
                                 1.1f, -2.0f, 0.4f, 0.3f, 0.3f, -1.2f, 0.8f, 0.6f, -0.5f};
  const std::vector<float> yv = {1.0f, -1.0f, 0.5f, 2.0f, 0.0f, -0.5f};
  const Tensor x = from_vector(xv, {6, 3}), y = from_vector(yv, {6, 1});
  auto make = [] {
    return std::vector<Tensor>{param({0.2f, -0.4f, 0.6f}, {1, 3}), param({0.05f}, {1})};
  };
  std::vector<Tensor> big = make(), acc = make();
  optim::SGD opt_big(big, optim::SGDOptions(0.1)), opt_acc(acc, optim::SGDOptions(0.1));
  GradScaler s_big(GradScalerOptions().init_scale(4096.0)), s_acc(GradScalerOptions().init_scale(4096.0));

  s_big.scale(mse_loss(linear(x, big[0], big[1]), y)).backward();
  for (int64_t k = 0; k < 3; ++k) {
    const Tensor xs = x.narrow(0, 2 * k, 2), ys = y.narrow(0, 2 * k, 2);
    s_acc.scale(div(mse_loss(linear(xs, acc[0], acc[1]), ys), 3.0)).backward();
    EXPECT_EQ(s_acc.get_scale(), 4096.0);  // unchanged between micro-batches
  }
  s_big.unscale_(opt_big);
  s_acc.unscale_(opt_acc);
  for (size_t p = 0; p < big.size(); ++p) {
    const std::vector<float> gb = values(big[p].grad()), ga = values(acc[p].grad());
    for (size_t e = 0; e < gb.size(); ++e) EXPECT_NEAR(ga[e], gb[e], 1e-6f * std::max(1.0f, std::fabs(gb[e])));
  }
  EXPECT_TRUE(s_big.step(opt_big).applied);
  EXPECT_TRUE(s_acc.step(opt_acc).applied);
  for (size_t p = 0; p < big.size(); ++p) {
    const std::vector<float> wb = values(big[p]), wa = values(acc[p]);
    for (size_t e = 0; e < wb.size(); ++e) EXPECT_NEAR(wa[e], wb[e], 1e-6f);
  }
}

// --- the kernel ----------------------------------------------------------------------------------

// The per-element rule of amp_scale.h, one element at a time.
template <typename T>
T reference_unscale(T v, float inv, bool& bad) {
  const auto c = static_cast<compute_t<T>>(v);
  bad = bad || !std::isfinite(static_cast<double>(c));
  if (inv == 1.0f) return v;
  if constexpr (std::is_same_v<T, double>) return v * static_cast<double>(inv);
  else return static_cast<T>(static_cast<float>(c) * inv);
}

std::vector<Tensor> mixed_tensors(int64_t big) {
  // Sizes straddling the thread split (several times kParallelGrain in total), every dtype.
  std::vector<Tensor> ts;
  const int64_t sizes[] = {big, 7, 5000, 3001, big / 3 + 5, 0, 1};
  const DType dtypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16, DType::F32, DType::F32, DType::F32};
  for (size_t k = 0; k < 7; ++k) {
    Tensor t = arange(static_cast<double>(sizes[k]), TensorOptions(DType::F32));
    t = add(mul(t, 0.37), -1000.0);  // values from -1000 up, of every magnitude class
    ts.push_back(t.to(dtypes[k]));
  }
  return ts;
}

template <typename T>
std::vector<T> raw(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data_ptr(), t.nbytes());
  return out;
}

void expect_matches_reference(const std::vector<Tensor>& before, const std::vector<Tensor>& after, float inv,
                              bool& bad) {
  for (size_t k = 0; k < before.size(); ++k) {
    visit_dtype<kFloatTypes>(before[k].dtype(), "test", [&]<typename T>() {
      const std::vector<T> in = raw<T>(before[k]), out = raw<T>(after[k]);
      for (size_t e = 0; e < in.size(); ++e) {
        const T want = reference_unscale(in[e], inv, bad);
        const double w = static_cast<double>(static_cast<compute_t<T>>(want)),
                     g = static_cast<double>(static_cast<compute_t<T>>(out[e]));
        if (std::isnan(w)) ASSERT_TRUE(std::isnan(g)) << "tensor " << k << " element " << e;
        else ASSERT_EQ(g, w) << "tensor " << k << " (" << before[k].dtype() << ") element " << e;
      }
    });
  }
}

TEST(AmpScaleKernel, CpuMatchesTheScalarRuleOnEveryDtypeAndSplit) {
  const float inv = static_cast<float>(1.0 / 1000.0);
  std::vector<Tensor> grads = mixed_tensors(200003);
  std::vector<Tensor> before;
  for (const Tensor& t : grads) before.push_back(t.clone());
  EXPECT_FALSE(kernels::unscale_and_check(grads, inv));
  bool bad = false;
  expect_matches_reference(before, grads, inv, bad);
  EXPECT_FALSE(bad);

  // One Inf deep inside the fifth tensor (another thread's range) and a NaN in the F16 one.
  static_cast<float*>(grads[4].data_ptr())[grads[4].numel() - 2] = kInf;
  static_cast<Half*>(grads[2].data_ptr())[0] = Half(kNaN);
  before.clear();
  for (const Tensor& t : grads) before.push_back(t.clone());
  EXPECT_TRUE(kernels::unscale_and_check(grads, inv));
  bad = false;
  expect_matches_reference(before, grads, inv, bad);
  EXPECT_TRUE(bad);

  // inv == 1 only checks: nothing is written, versions do not move.
  const uint32_t version = grads[0].version();
  EXPECT_TRUE(kernels::unscale_and_check(grads, 1.0f));
  EXPECT_EQ(grads[0].version(), version);
}

TEST(AmpScaleKernel, DeviceResidentFlagAccumulatesAndChecksArguments) {
  Tensor flag = kernels::make_found_inf(kCPU);
  Tensor a = fv({1.0f, 2.0f}, {2}), b = fv({kInf}, {1});
  kernels::unscale_and_check_(std::vector<Tensor>{a}, 0.5f, flag);
  EXPECT_FALSE(kernels::read_found_inf(flag));
  kernels::unscale_and_check_(std::vector<Tensor>{b}, 0.5f, flag);
  kernels::unscale_and_check_(std::vector<Tensor>{a}, 0.5f, flag);  // never cleared
  EXPECT_TRUE(kernels::read_found_inf(flag));
  EXPECT_EQ(values(a), (std::vector<float>{0.25f, 0.5f}));
  expect_error([&] { kernels::unscale_and_check(std::vector<Tensor>{from_vector(std::vector<int64_t>{1}, {1})}, 1.0f); },
               "expected a floating dtype");
  expect_error([&] { kernels::unscale_and_check(std::vector<Tensor>{fv({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2}).t()}, 1.0f); },
               "is not contiguous");
  expect_error([&] { kernels::unscale_and_check_(std::vector<Tensor>{a}, 1.0f, zeros({2})); },
               "one-element F32 tensor");
}

// --- CUDA against the CPU -------------------------------------------------------------------

TEST(AmpScaleKernel, CudaMatchesCpu) {
  if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason();
  const Device cuda(DeviceType::CUDA, 0);
  const float inv = static_cast<float>(1.0 / 1700.0);
  // 60 tensors (more than one launch table holds), one of 330 chunks of 65536 (more blocks than
  // one table holds), every dtype, and a misaligned view (offset 1) for the scalar path.
  std::vector<Tensor> cpu;
  for (int k = 0; k < 60; ++k) cpu.push_back(add(mul(arange(double(1000 + 37 * k)), 0.013 * (k + 1)), -5.0));
  cpu.push_back(add(mul(arange(double(330 * 65536 + 3)), 1e-3), -1000.0));
  for (DType dt : {DType::F16, DType::BF16, DType::F64}) cpu.push_back(add(mul(arange(70001.0), 0.01), -300.0).to(dt));
  Tensor base = add(mul(arange(4099.0), 0.5), -7.0);
  std::vector<Tensor> gpu;
  for (const Tensor& t : cpu) gpu.push_back(t.to(cuda));
  cpu.push_back(base.narrow(0, 1, 4098).clone());
  gpu.push_back(base.to(cuda).narrow(0, 1, 4098));
  ASSERT_NE(reinterpret_cast<uintptr_t>(gpu.back().data_ptr()) % 16, 0u);

  EXPECT_FALSE(kernels::unscale_and_check(cpu, inv));
  EXPECT_FALSE(kernels::unscale_and_check(gpu, inv));
  for (size_t k = 0; k < cpu.size(); ++k) {
    visit_dtype<kFloatTypes>(cpu[k].dtype(), "test", [&]<typename T>() {
      const std::vector<T> c = raw<T>(cpu[k]), g = raw<T>(gpu[k].cpu());
      ASSERT_EQ(std::memcmp(c.data(), g.data(), c.size() * sizeof(T)), 0) << "tensor " << k << " " << cpu[k].dtype();
    });
  }
  // A NaN in the last chunk of the big tensor raises the device flag; a clean list does not.
  Tensor poisoned = fv({1.0f, kNaN}, {2}).to(cuda);
  Tensor flag = kernels::make_found_inf(cuda);
  kernels::unscale_and_check_(std::vector<Tensor>{gpu[0]}, 1.0f, flag);
  EXPECT_FALSE(kernels::read_found_inf(flag));
  kernels::unscale_and_check_(std::vector<Tensor>{gpu[0], poisoned}, 1.0f, flag);
  EXPECT_TRUE(kernels::read_found_inf(flag));

  // GradScaler with CUDA gradients: the flag stays on the device until step reads it.
  Tensor w = fv({1.0f, 2.0f}, {2}).to(cuda).requires_grad_();
  optim::SGD opt({w}, optim::SGDOptions(0.1));
  GradScaler scaler;
  w.set_grad(fv({65536.0f, kInf}, {2}).to(cuda));
  scaler.unscale_(opt);
  EXPECT_EQ(values(w.grad().cpu())[0], 1.0f);
  const amp::StepResult r = scaler.step(opt);
  EXPECT_FALSE(r.applied);
  EXPECT_EQ(r.first_nonfinite, "group 0 parameter 0");
  scaler.update();
  EXPECT_EQ(scaler.get_scale(), 32768.0);
}

}  // namespace
}  // namespace mantissa
