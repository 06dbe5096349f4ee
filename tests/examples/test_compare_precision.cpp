// compare_precision end to end on a tiny generated MNIST-format set: two policies train as
// child processes, the table's JSON is the last stdout line, the run files and report.html are
// written, and --report-only rebuilds the same table from them; bad flags are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "examples/tiny_mnist.h"

namespace fs = std::filesystem;
namespace te = mantissa::testing_examples;
using Json = nlohmann::json;

namespace {

std::string last_line(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

const fs::path kExe = fs::path(MANTISSA_EXAMPLES_DIR) / "compare_precision";

}  // namespace

TEST(ComparePrecision, TrainsReportsAndRebuilds) {
  ASSERT_TRUE(fs::exists(kExe)) << kExe << " is not built";
  te::TempDir dir("mantissa-compare");
  te::write_tiny_mnist(dir.path / "data", 128, 40);
  const fs::path out = dir.path / "out";
  const std::string cmd = kExe.string() + " --data " + (dir.path / "data").string() +
                          " --model mlp --epochs 1 --policies fp32,fp16 --seeds 2 --threads 2 --log-interval 1" +
                          " --out " + out.string() + " 2>" + (dir.path / "stderr.txt").string();
  std::string stdout_text;
  ASSERT_EQ(te::run_command(cmd, &stdout_text), 0) << cmd << "\n" << stdout_text << te::read_text(dir.path / "stderr.txt");

  // The progress lines name each run.
  const std::string err = te::read_text(dir.path / "stderr.txt");
  EXPECT_NE(err.find("[run 1/4 fp32 seed 1]"), std::string::npos) << err;
  EXPECT_NE(err.find("[run 4/4 fp16 seed 2] epoch 1 step"), std::string::npos) << err;

  const Json j = Json::parse(last_line(stdout_text));
  ASSERT_EQ(j["table"].size(), 2u) << j.dump(2);
  EXPECT_EQ(j["table"][0]["policy"], "fp32");
  EXPECT_EQ(j["table"][1]["policy"], "fp16");
  EXPECT_EQ(j["table"][0]["seeds"], Json::array({1, 2}));
  EXPECT_TRUE(j["table"][0]["loss_gap"].is_null());
  EXPECT_EQ(j["table"][1]["loss_gap"]["n"], 2);
  EXPECT_GT(j["table"][0]["peak_mb"]["mean"].get<double>(), 1.0);
  EXPECT_GT(j["table"][1]["final_loss_scale"]["mean"].get<double>(), 0.0);
  const double acc = j["table"][0]["final_accuracy_pct"]["mean"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 100.0);
  for (const char* f : {"manifest.json", "report.html", "fp32-seed1.jsonl", "fp16-seed2.jsonl", "fp16-seed2.log"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_NE(stdout_text.find("policy"), std::string::npos);
  EXPECT_NE(stdout_text.find("loss gap: mean over the logged steps"), std::string::npos);

  // Rebuilt from the files alone: the same table.
  fs::remove(out / "report.html");
  std::string again;
  ASSERT_EQ(te::run_command(kExe.string() + " --report-only " + out.string() + " 2>&1", &again), 0) << again;
  const Json k = Json::parse(last_line(again));
  EXPECT_EQ(k["table"], j["table"]);
  EXPECT_TRUE(fs::exists(out / "report.html"));
  EXPECT_NE(te::read_text(out / "report.html").find("data-chart=\"underflow\""), std::string::npos);
}

TEST(ComparePrecision, RefusesBadFlags) {
  ASSERT_TRUE(fs::exists(kExe)) << kExe << " is not built";
  te::TempDir dir("mantissa-compare-flags");
  std::string out;
  EXPECT_EQ(te::run_command(kExe.string() + " --policies fp32,fp64 --data " + dir.path.string() + " 2>&1", &out), 2);
  EXPECT_NE(out.find("unknown policy \"fp64\""), std::string::npos) << out;
  EXPECT_EQ(te::run_command(kExe.string() + " --policies fp32,fp32 --data " + dir.path.string() + " 2>&1", &out), 2);
  EXPECT_NE(out.find("listed twice"), std::string::npos) << out;
  EXPECT_EQ(te::run_command(kExe.string() + " --model resnet20 2>&1", &out), 2);
  EXPECT_NE(out.find("--model resnet20"), std::string::npos) << out;
  EXPECT_EQ(te::run_command(kExe.string() + " --report-only " + dir.path.string() + " 2>&1", &out), 2);
  EXPECT_NE(out.find("no manifest.json"), std::string::npos) << out;
  EXPECT_EQ(te::run_command(kExe.string() + " --data " + (dir.path / "nope").string() + " 2>&1", &out), 2);
  EXPECT_NE(out.find("not a directory"), std::string::npos) << out;
}
