// Golden data made by PyTorch (tests/golden/*.json, generators beside them), loaded once per
// file and shared by the tests that read it.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace mantissa::testing {

inline const nlohmann::json& golden_json(const std::string& file) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(file);
  if (it == cache.end()) {
    const std::string path = std::string(MANTISSA_GOLDEN_DIR) + "/" + file;
    std::ifstream f(path);
    EXPECT_TRUE(f.good()) << "cannot open " << path;
    it = cache.emplace(file, f.good() ? nlohmann::json::parse(f) : nlohmann::json::object()).first;
  }
  return it->second;
}

}  // namespace mantissa::testing
