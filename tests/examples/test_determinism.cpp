// Determinism of a training run: the MNIST example (cnn: conv, dropout, shuffling) run twice as a
// child process with the same seed, policy (fp32, bf16) and thread count gives bit-identical
// metrics once the wall-clock fields are dropped (losses, accuracies, learning rates, inspector
// counts: everything else).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "examples/tiny_mnist.h"

namespace fs = std::filesystem;
namespace te = mantissa::testing_examples;
using Json = nlohmann::ordered_json;

namespace {

// The metrics records with their timing fields removed, each dumped back to one line (nlohmann
// prints doubles in their shortest round-trip form, so equal lines mean equal bits).
std::vector<std::string> deterministic_lines(const fs::path& file) {
  std::vector<std::string> lines;
  const std::string text = te::read_text(file);
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    Json j = Json::parse(text.substr(pos, nl - pos));
    for (const char* timing : {"images_per_s", "elapsed_s", "epoch_s"}) j.erase(timing);
    lines.push_back(j.dump());
  }
  return lines;
}

class Determinism : public ::testing::TestWithParam<std::string> {};

TEST_P(Determinism, SameSeedSameMetrics) {
  const fs::path exe = fs::path(MANTISSA_EXAMPLES_DIR) / "mnist";
  ASSERT_TRUE(fs::exists(exe)) << exe << " is not built (the example_mnist target)";
  te::TempDir dir("mantissa-determinism");
  te::write_tiny_mnist(dir.path / "data", 128, 40);
  const std::string policy = GetParam();

  auto run = [&](const std::string& name, int seed = 7) {
    const fs::path metrics = dir.path / (name + ".jsonl");
    const std::string cmd = exe.string() + " --data " + (dir.path / "data").string() +
                            " --model cnn --epochs 2 --batch-size 32 --seed " + std::to_string(seed) + " --threads 2 --log-interval 2 --inspect" +
                            " --precision " + policy + " --metrics " + metrics.string() + " 2>&1";
    std::string out;
    const int rc = te::run_command(cmd, &out);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    return deterministic_lines(metrics);
  };
  const std::vector<std::string> a = run("a"), b = run("b");
  // 2 epochs x 4 steps: a log record every 2 steps, an inspect record every 2 steps, 2 epochs.
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "record " << i;
  // The records carry the training results (not only constant fields).
  EXPECT_NE(a[1].find("\"event\":\"log\""), std::string::npos) << a[1];
  EXPECT_NE(a[1].find("\"loss\":"), std::string::npos) << a[1];
  EXPECT_NE(a[0].find("\"under_norm\":"), std::string::npos) << a[0];
  EXPECT_NE(a.back().find("\"test_accuracy\":"), std::string::npos);
  EXPECT_EQ(a.back().find("elapsed_s"), std::string::npos);
  // The comparison sees the training: another seed changes the records.
  if (policy == "fp32") {
    const std::vector<std::string> c = run("c", 8);
    ASSERT_EQ(c.size(), a.size());
    EXPECT_NE(c[1], a[1]);
    EXPECT_NE(c.back(), a.back());
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, Determinism, ::testing::Values("fp32", "bf16"));

}  // namespace
