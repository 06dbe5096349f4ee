// The report as a person sees it: report.html from synthetic metrics is rendered by headless
// Chromium; the page's own check script measures every drawn series (getBBox, path length) and
// the test reads the results back from the dumped DOM. Skipped when no Chromium is installed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "examples/common/report.h"
#include "examples/tiny_mnist.h"

namespace fs = std::filesystem;
namespace rp = mantissa::examples::report;
namespace te = mantissa::testing_examples;

namespace {

// MANTISSA_CHROMIUM, else chromium / chromium-browser / google-chrome on PATH; empty if none.
std::string find_chromium() {
  if (const char* env = std::getenv("MANTISSA_CHROMIUM"); env != nullptr && *env != '\0') return env;
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    std::istringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
      const fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return "";
}

// A run whose loss falls from `start` and whose fp16 variants carry loss scales and underflow.
rp::RunMetrics synthetic_run(const std::string& policy, int64_t seed, double start, bool diverge_late = false) {
  rp::RunMetrics r;
  r.policy = policy;
  r.seed = seed;
  const bool scaled = policy == "fp16";
  for (int64_t step = 10; step <= 200; step += 10) {
    rp::LogPoint p;
    p.epoch = step <= 100 ? 1 : 2;
    p.step = step;
    p.loss = start / std::sqrt(static_cast<double>(step)) + 0.01 * static_cast<double>(seed);
    if (diverge_late && step == 150) p.loss = rp::kNaN;  // a hole in one seed's curve
    if (scaled) p.loss_scale = step < 60 ? 65536.0 : 32768.0;
    p.skipped_steps = scaled && step >= 60 ? 1 : 0;
    r.logs.push_back(p);
  }
  for (int64_t e = 1; e <= 2; ++e) {
    rp::EpochPoint p;
    p.epoch = e;
    p.step = 100 * e;
    p.train_loss = start / 10.0 / static_cast<double>(e);
    p.test_accuracy = 0.9 + 0.03 * static_cast<double>(e) - 0.001 * static_cast<double>(seed);
    p.epoch_s = 2.0;
    if (scaled) p.loss_scale = 32768.0;
    p.skipped_steps = scaled ? 1 : 0;
    r.epochs.push_back(p);
  }
  if (policy.rfind("fp16", 0) == 0) {
    const int64_t sub = scaled ? 0 : 40, norm = scaled ? 2 : 300;
    r.grads = {{"conv1.weight", 1000, 10, sub, norm, 0, 0}, {"fc1.weight", 5000, 50, sub * 3, norm * 2, 0, 0},
               {"fc1.bias", 100, 0, 0, scaled ? 0 : 5, 0, 0}};
    r.inspect_records = 4;
  }
  r.peak_rss_mb = 300;
  return r;
}

std::string unescape_html(std::string s) {
  const std::pair<const char*, const char*> map[] = {{"&quot;", "\""}, {"&lt;", "<"}, {"&gt;", ">"}, {"&#39;", "'"},
                                                     {"&amp;", "&"}};
  for (const auto& [from, to] : map)
    for (size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, std::string(from).size(), to);
  return s;
}

}  // namespace

TEST(ReportRender, EveryChartIsDrawnWithData) {
  const std::string chromium = find_chromium();
  if (chromium.empty())
    GTEST_SKIP() << "no Chromium found (chromium, chromium-browser or google-chrome on PATH, or MANTISSA_CHROMIUM); "
                    "install it with apt-get install chromium";
  te::TempDir dir("mantissa-report-render");
  rp::ReportInput in;
  in.title = "render test <report>";
  in.settings = {{"model", "cnn"}};
  for (int64_t seed : {1, 2}) {
    in.runs.push_back(synthetic_run("fp32", seed, 2.0));
    in.runs.push_back(synthetic_run("fp16", seed, 2.1));
    in.runs.push_back(synthetic_run("fp16-noscale", seed, 2.4, seed == 2));
  }
  const fs::path html = dir.path / "report.html";
  {
    std::ofstream out(html);
    out << rp::render_html(in);
  }
  // Its own profile directory: parallel test runs must not share Chromium's profile lock.
  const std::string cmd = "timeout 120 " + chromium + " --headless --disable-gpu --no-sandbox --no-first-run" +
                          " --user-data-dir=" + (dir.path / "profile").string() + " --dump-dom file://" +
                          html.string() + " 2>/dev/null";
  std::string dom;
  const int rc = te::run_command(cmd, &dom);
  ASSERT_EQ(rc, 0) << cmd;
  const std::string open = "<pre id=\"render-check\">";
  const size_t a = dom.find(open);
  ASSERT_NE(a, std::string::npos) << "the dumped DOM has no render-check element:\n" << dom.substr(0, 2000);
  const size_t b = dom.find("</pre>", a);
  ASSERT_NE(b, std::string::npos);
  const std::string text = unescape_html(dom.substr(a + open.size(), b - a - open.size()));
  ASSERT_FALSE(text.empty()) << "the page's check script did not run";
  const nlohmann::json charts = nlohmann::json::parse(text);

  ASSERT_TRUE(charts.is_array());
  std::vector<std::string> names;
  for (const auto& c : charts) names.push_back(c["chart"].get<std::string>());
  EXPECT_EQ(names, rp::chart_names());
  for (const auto& c : charts) {
    const std::string name = c["chart"].get<std::string>();
    SCOPED_TRACE(name);
    EXPECT_GT(c["width"].get<double>(), 100.0);
    EXPECT_GT(c["height"].get<double>(), 100.0);
    const auto& series = c["series"];
    ASSERT_EQ(series.size(), c["declared"].get<size_t>());
    // What the synthetic runs hold: 3 policies in the loss and accuracy charts, the scaled
    // fp16 alone in the loss-scale chart, the two F16 policies in the underflow chart and the
    // two policies other than fp32 in the loss-gap chart.
    const size_t expected = name == "loss-scale" ? 1 : name == "underflow" || name == "loss-gap" ? 2 : 3;
    ASSERT_EQ(series.size(), expected);
    for (const auto& s : series) {
      SCOPED_TRACE(s["label"].get<std::string>());
      EXPECT_GT(s["points"].get<int64_t>(), 0);
      // Drawn: a visible extent, inside the plot area.
      EXPECT_GT(s["width"].get<double>(), 0.5);
      EXPECT_GT(s["height"].get<double>(), 0.5);
      EXPECT_TRUE(s["inside"].get<bool>());
      if (name != "underflow") {
        // Lines: the drawn length covers at least the horizontal span of the points.
        EXPECT_GE(s["length"].get<double>(), s["width"].get<double>() * 0.9);
      }
    }
  }
}
