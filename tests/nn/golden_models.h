// The models tests/golden/make_nn_golden.py builds in PyTorch, rebuilt with mantissa::nn, and the
// reader of its nn.json. Shared by test_module.cpp and test_layers.cpp.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>

#include "nn/nn.h"

namespace mantissa::testing_nn {

inline const nlohmann::json& nn_golden() {
  static const nlohmann::json j = [] {
    std::ifstream f(MANTISSA_GOLDEN_DIR "/nn.json");
    if (!f) throw std::runtime_error("cannot open " MANTISSA_GOLDEN_DIR "/nn.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

// nn.Sequential(Conv2d(3, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(),
//   BasicBlock(4, 6, stride=2), BasicBlock(6, 6), AdaptiveAvgPool2d(1), Flatten(),
//   Linear(6, 5), BatchNorm1d(5), GELU(), Linear(5, 3))
inline std::shared_ptr<nn::Sequential> sequential_model() {
  using namespace nn;
  return std::make_shared<Sequential>(
      std::make_shared<Conv2d>(nn::Conv2dOptions(3, 4, 3).padding(1).bias(false)), std::make_shared<BatchNorm2d>(4),
      std::make_shared<ReLU>(), std::make_shared<BasicBlock>(4, 6, 2), std::make_shared<BasicBlock>(6, 6),
      std::make_shared<AdaptiveAvgPool2d>(1), std::make_shared<Flatten>(), std::make_shared<Linear>(6, 5),
      std::make_shared<BatchNorm1d>(5), std::make_shared<GELU>(), std::make_shared<Linear>(5, 3));
}

// A user-defined module with named children, as in the golden script's Net.
struct Net : nn::Module {
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::Sequential> features;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Sequential> classifier;

  Net() {
    using namespace nn;
    embed = register_module("embed", std::make_shared<Embedding>(10, 4));
    features = register_module(
        "features", std::make_shared<Sequential>(std::make_shared<Conv2d>(1, 4, 3), std::make_shared<ReLU>(),
                                                 std::make_shared<MaxPool2d>(2), std::make_shared<BasicBlock>(4, 4)));
    norm = register_module("norm", std::make_shared<LayerNorm>(LayerNormOptions({16})));
    classifier = register_module(
        "classifier", std::make_shared<Sequential>(std::make_shared<Flatten>(), std::make_shared<Dropout>(0.25),
                                                   std::make_shared<Linear>(16, 10)));
  }
};

}  // namespace mantissa::testing_nn
