// nn::Module: names, shapes and reprs of nested models against PyTorch's (tests/golden/nn.json),
// registration rules, train/eval, to(dtype), zero_grad, state_dict and load_state_dict errors.
#include <gtest/gtest.h>

#include <sstream>

#include "golden_models.h"

namespace mantissa {
namespace {

using nlohmann::json;
using testing_nn::Net;
using testing_nn::nn_golden;
using testing_nn::sequential_model;

json entries(const nn::NamedTensors& named, bool with_dtype) {
  json out = json::array();
  for (const auto& [n, t] : named) {
    json e = {n, t.sizes()};
    if (with_dtype) e.push_back(dtype_name(t.dtype()));
    out.push_back(e);
  }
  return out;
}

void expect_matches_pytorch(nn::Module& model, const json& golden) {
  EXPECT_EQ(entries(model.named_parameters(), false), golden["named_parameters"]);
  EXPECT_EQ(entries(model.named_buffers(), true), golden["named_buffers"]);
  EXPECT_EQ(entries(model.state_dict(), true), golden["state_dict"]);
  EXPECT_EQ(model.repr(), golden["repr"].get<std::string>());
}

TEST(Module, SequentialNamesShapesAndReprMatchPyTorch) {
  auto model = sequential_model();
  expect_matches_pytorch(*model, nn_golden()["models"]["sequential"]);
}

TEST(Module, NestedNetNamesShapesAndReprMatchPyTorch) {
  auto model = std::make_shared<Net>();
  expect_matches_pytorch(*model, nn_golden()["models"]["net"]);
  // Spot checks of the dotted names the issue names.
  auto names = model->named_parameters();
  EXPECT_EQ(names[1].first, "features.0.weight");
  auto bufs = model->named_buffers();
  EXPECT_EQ(bufs[0].first, "features.3.bn1.running_mean");
  EXPECT_EQ(bufs[2].first, "features.3.bn1.num_batches_tracked");
}

TEST(Module, ChildrenAndModulesInRegistrationOrder) {
  auto model = std::make_shared<Net>();
  std::vector<std::string> children;
  for (auto& [n, m] : model->named_children()) children.push_back(n);
  EXPECT_EQ(children, (std::vector<std::string>{"embed", "features", "norm", "classifier"}));
  EXPECT_EQ(model->children().size(), 4u);

  std::vector<std::string> names;
  for (auto& [n, m] : model->named_modules()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "", "embed", "features", "features.0", "features.1", "features.2", "features.3",
                       "features.3.conv1", "features.3.bn1", "features.3.relu", "features.3.conv2", "features.3.bn2",
                       "norm", "classifier", "classifier.0", "classifier.1", "classifier.2"}));
  EXPECT_EQ(model->modules().front().get(), model.get());
  EXPECT_EQ(model->modules(false).size(), 16u);
  EXPECT_EQ(model->parameters(false).size(), 0u);
  EXPECT_EQ(model->embed->parameters(false).size(), 1u);

  int count = 0;
  model->apply([&](nn::Module&) { ++count; });
  EXPECT_EQ(count, 17);
}

TEST(Module, NameStripsNamespaces) {
  EXPECT_EQ(nn::Linear(2, 3).name(), "Linear");
  EXPECT_EQ(Net().name(), "Net");
  EXPECT_EQ(nn::BatchNorm2d(3).name(), "BatchNorm2d");
}

TEST(Module, ModulesNeedsSharedOwnershipForSelf) {
  Net net;  // on the stack
  try {
    net.modules();
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("std::shared_ptr"), std::string::npos) << e.what();
  }
  EXPECT_EQ(net.modules(false).size(), 16u);
}

TEST(Module, RegistrationRules) {
  nn::Module m;
  Tensor w = m.register_parameter("w", zeros({2}));
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_same(m.parameters()[0]));
  Tensor frozen = m.register_parameter("frozen", zeros({2}), false);
  EXPECT_FALSE(frozen.requires_grad());
  m.register_buffer("b", zeros({2}));
  m.register_parameter("absent", Tensor());
  EXPECT_EQ(m.parameters().size(), 2u);  // the undefined placeholder is skipped

  EXPECT_THROW(m.register_parameter("w", zeros({1})), Error);
  EXPECT_THROW(m.register_buffer("w", zeros({1})), Error);
  EXPECT_THROW(m.register_module("b", std::make_shared<nn::ReLU>()), Error);
  EXPECT_THROW(m.register_parameter("a.b", zeros({1})), Error);
  EXPECT_THROW(m.register_parameter("", zeros({1})), Error);
  EXPECT_THROW(m.register_module("null", std::shared_ptr<nn::ReLU>()), Error);
  EXPECT_THROW(m.register_parameter("int", zeros({1}, DType::I64)), Error);
  m.register_parameter("int_frozen", zeros({1}, DType::I64), false);

  Tensor leaf = ones({2}, TensorOptions().requires_grad());
  try {
    m.register_parameter("computed", mul(leaf, 2.0));
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a leaf"), std::string::npos) << e.what();
  }

  auto relu = m.register_module("act", std::make_shared<nn::ReLU>());
  auto gelu = m.replace_module("act", std::make_shared<nn::GELU>());
  EXPECT_EQ(m.named_children()[0].second.get(), gelu.get());
  EXPECT_THROW(m.replace_module("nope", std::make_shared<nn::ReLU>()), Error);
}

TEST(Module, SharedParametersListedOnce) {
  auto a = std::make_shared<nn::Linear>(3, 3);
  nn::Sequential seq(a, a);  // the same layer twice, like tied weights
  EXPECT_EQ(seq.parameters().size(), 2u);
  EXPECT_EQ(seq.named_parameters()[0].first, "0.weight");
  EXPECT_EQ(seq.state_dict().size(), 4u);  // state_dict keeps every name, as PyTorch's does
}

TEST(Module, TrainEvalIsRecursive) {
  auto model = std::make_shared<Net>();
  EXPECT_TRUE(model->is_training());
  model->eval();
  for (auto& m : model->modules()) EXPECT_FALSE(m->is_training()) << m->name();
  model->train();
  for (auto& m : model->modules()) EXPECT_TRUE(m->is_training()) << m->name();
}

TEST(Module, ToDtypeKeepsHandlesRequiresGradAndIntegerBuffers) {
  auto model = sequential_model();
  auto params = model->parameters();
  auto buffers = model->named_buffers();
  auto conv = model->at<nn::Conv2d>(0);
  conv->weight.set_grad(ones_like(conv->weight));

  model->to(DType::F64);
  auto params_after = model->parameters();
  ASSERT_EQ(params.size(), params_after.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(params[i].is_same(params_after[i]));
    EXPECT_EQ(params[i].dtype(), DType::F64);
    EXPECT_TRUE(params[i].requires_grad());
    EXPECT_TRUE(params[i].is_leaf());
  }
  EXPECT_TRUE(conv->weight.is_same(params[0]));  // the member sees the same tensor
  ASSERT_TRUE(conv->weight.grad().defined());
  EXPECT_EQ(conv->weight.grad().dtype(), DType::F64);
  for (auto& [n, b] : buffers) {
    EXPECT_EQ(b.dtype(), n.ends_with("num_batches_tracked") ? DType::I64 : DType::F64) << n;
  }
  auto bn = model->at<nn::BatchNorm2d>(1);
  EXPECT_EQ(bn->num_batches_tracked.dtype(), DType::I64);
  EXPECT_EQ(bn->running_var.dtype(), DType::F64);

  model->to(DType::BF16);
  EXPECT_EQ(conv->weight.dtype(), DType::BF16);
  EXPECT_EQ(to_vector<float>(bn->running_var)[0], 1.0f);
  EXPECT_THROW(model->to(DType::I32), Error);

  model->to(kCPU);  // same device: a no-op that keeps every handle
  EXPECT_TRUE(conv->weight.is_same(params[0]));
  model->to(kCPU, DType::F32);
  EXPECT_EQ(conv->weight.dtype(), DType::F32);
}

TEST(Module, ToDeviceIsAllOrNothing) {
  auto model = sequential_model();
  auto params = model->parameters();
  const Tensor nbt = model->at<nn::BatchNorm2d>(1)->num_batches_tracked;
  bool moved = true;
  try {
    model->to(kCUDA);
  } catch (const Error&) {
    moved = false;  // no CUDA in this build or on this machine
  }
  auto after = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(params[i].is_same(after[i]));
    EXPECT_EQ(after[i].device(), moved ? kCUDA : kCPU);
  }
  EXPECT_EQ(nbt.device(), moved ? kCUDA : kCPU);
  EXPECT_EQ(nbt.dtype(), DType::I64);
  model->to(kCPU);
  for (auto& p : model->parameters()) EXPECT_TRUE(p.is_cpu());
}

TEST(Module, ZeroGrad) {
  nn::Linear lin(3, 2);
  Tensor x = ones({4, 3});
  lin(x).sum().backward();
  ASSERT_TRUE(lin.weight.grad().defined());
  Tensor g = lin.weight.grad();
  lin.zero_grad(false);
  ASSERT_TRUE(lin.weight.grad().defined());
  EXPECT_TRUE(lin.weight.grad().is_same(g));  // zeroed in place
  for (float v : to_vector<float>(lin.weight.grad())) EXPECT_EQ(v, 0.0f);
  lin.zero_grad();
  EXPECT_FALSE(lin.weight.grad().defined());
  EXPECT_FALSE(lin.bias.grad().defined());
}

TEST(Module, StateDictIsDetachedAndSharesStorage) {
  nn::Linear lin(3, 2);
  auto sd = lin.state_dict();
  ASSERT_EQ(sd.size(), 2u);
  EXPECT_EQ(sd[0].first, "weight");
  EXPECT_FALSE(sd[0].second.requires_grad());
  EXPECT_EQ(sd[0].second.data_ptr(), lin.weight.data_ptr());
}

TEST(Module, NonPersistentBuffersStayOutOfStateDict) {
  nn::Module m;
  m.register_buffer("kept", zeros({1}));
  m.register_buffer("scratch", zeros({1}), false);
  EXPECT_EQ(m.named_buffers().size(), 2u);
  auto sd = m.state_dict();
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_EQ(sd[0].first, "kept");
}

TEST(Module, LoadStateDictRoundTripConvertsDtypeInPlace) {
  auto a = sequential_model();
  auto b = sequential_model();
  auto handles = b->parameters();
  nn::NamedTensors sd;
  for (auto& [n, t] : a->state_dict()) sd.emplace_back(n, t.is_floating_point() ? t.to(DType::F64) : t);
  a->at<nn::BatchNorm2d>(1)->num_batches_tracked.fill_(7);
  sd[5].second = a->at<nn::BatchNorm2d>(1)->num_batches_tracked;
  ASSERT_EQ(sd[5].first, "1.num_batches_tracked");

  auto result = b->load_state_dict(sd);
  EXPECT_TRUE(result.missing_keys.empty());
  EXPECT_TRUE(result.unexpected_keys.empty());
  auto sa = a->state_dict(), sb = b->state_dict();
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sb[i].second.dtype(), sa[i].second.dtype()) << sa[i].first;
    EXPECT_EQ(to_vector<double>(sa[i].second), to_vector<double>(sb[i].second)) << sa[i].first;
  }
  auto after = b->parameters();
  for (size_t i = 0; i < handles.size(); ++i) {
    EXPECT_TRUE(handles[i].is_same(after[i]));
    EXPECT_TRUE(after[i].requires_grad());
  }
  EXPECT_EQ(b->at<nn::BatchNorm2d>(1)->num_batches_tracked.item<int64_t>(), 7);
}

TEST(Module, StrictLoadListsEveryProblemAndChangesNothing) {
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 4), std::make_shared<nn::Linear>(4, 2));
  auto before = model->state_dict();
  std::vector<std::vector<float>> values;
  for (auto& [n, t] : before) values.push_back(to_vector<float>(t));

  nn::NamedTensors sd = {
      {"0.weight", zeros({3, 4})},  // size mismatch
      {"1.weight", zeros({2, 4})},  // fine: must not be copied either
      {"1.bias", zeros({5})},       // size mismatch
      {"2.weight", zeros({1})},     // unexpected
      {"extra", zeros({1})},        // unexpected
  };  // missing: 0.bias
  try {
    model->load_state_dict(sd);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "Error(s) in loading state_dict for Sequential:\n"
              "\tMissing key(s) in state_dict: \"0.bias\".\n"
              "\tUnexpected key(s) in state_dict: \"2.weight\", \"extra\".\n"
              "\tsize mismatch for 0.weight: copying a param with shape [3, 4] from checkpoint, the shape in current "
              "model is [4, 4].\n"
              "\tsize mismatch for 1.bias: copying a param with shape [5] from checkpoint, the shape in current model "
              "is [2].");
  }
  auto after = model->state_dict();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(to_vector<float>(after[i].second), values[i]) << after[i].first;
}

TEST(Module, NonStrictLoadReportsKeysButStillRejectsShapes) {
  nn::Linear lin(3, 2);
  auto result = lin.load_state_dict({{"weight", ones({2, 3})}, {"other", ones({1})}}, false);
  EXPECT_EQ(result.missing_keys, std::vector<std::string>{"bias"});
  EXPECT_EQ(result.unexpected_keys, std::vector<std::string>{"other"});
  for (float v : to_vector<float>(lin.weight)) EXPECT_EQ(v, 1.0f);

  auto bias_before = to_vector<float>(lin.bias);
  try {
    lin.load_state_dict({{"weight", zeros({3, 3})}, {"bias", zeros({2})}}, false);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("size mismatch for weight"), std::string::npos) << e.what();
  }
  EXPECT_EQ(to_vector<float>(lin.bias), bias_before);
  EXPECT_THROW(lin.load_state_dict({{"weight", ones({2, 3})}, {"weight", ones({2, 3})}, {"bias", ones({2})}}), Error);
  EXPECT_THROW(lin.load_state_dict({{"weight", Tensor()}, {"bias", ones({2})}}), Error);
}

TEST(Module, ReprOfNestedContainers) {
  auto inner = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(784, 10), std::make_shared<nn::ReLU>());
  nn::Sequential outer(inner, std::make_shared<nn::Dropout>(0.5));
  EXPECT_EQ(outer.repr(),
            "Sequential(\n"
            "  (0): Sequential(\n"
            "    (0): Linear(in_features=784, out_features=10, bias=True)\n"
            "    (1): ReLU()\n"
            "  )\n"
            "  (1): Dropout(p=0.5, inplace=False)\n"
            ")");
  std::ostringstream ss;
  ss << nn::Sequential();
  EXPECT_EQ(ss.str(), "Sequential()");
}

TEST(Module, PythonFloatRepr) {
  using nn::detail::py_float;
  EXPECT_EQ(py_float(0.1), "0.1");
  EXPECT_EQ(py_float(1e-5), "1e-05");
  EXPECT_EQ(py_float(1e-4), "0.0001");
  EXPECT_EQ(py_float(1.0), "1.0");
  EXPECT_EQ(py_float(0.0), "0.0");
  EXPECT_EQ(py_float(-2.5), "-2.5");
  EXPECT_EQ(py_float(1e16), "1e+16");
  EXPECT_EQ(py_float(1e15), "1000000000000000.0");
  EXPECT_EQ(py_float(123.456), "123.456");
  EXPECT_EQ(py_float(1.5e-7), "1.5e-07");
  EXPECT_EQ(nn::detail::py_tuple({16}), "(16,)");
  EXPECT_EQ(nn::detail::py_tuple({3, 3}), "(3, 3)");
}

TEST(Module, ForwardWithoutOverrideIsAnError) {
  nn::Module m;
  EXPECT_THROW(m(ones({1})), Error);
}

}  // namespace
}  // namespace mantissa
