// Unit tests of the precision-comparison report (examples/common/report.h): metrics parsing,
// mean/std across seeds, the loss-gap metric, the table, SVG path/band/chart generation
// (coordinates, NaN and empty series, escaping) and the self-contained HTML.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "examples/common/report.h"

namespace rp = mantissa::examples::report;

namespace {

// A metrics file in examples/mnist.cpp's schema: log records every 10 steps with loss
// `base + 1/step`, an epoch record every 20 steps, one inspect record.
std::string metrics_text(const std::string& policy, double base, double accuracy, bool scaled, int64_t skipped = 0) {
  std::string s;
  const std::string scale = scaled ? "65536.0" : "null";
  for (int step = 10; step <= 40; step += 10) {
    s += R"({"event":"log","epoch":)" + std::to_string((step - 1) / 20 + 1) + R"(,"step":)" + std::to_string(step) +
         R"(,"loss":)" + std::to_string(base + 1.0 / step) + R"(,"lr":0.001,"test_accuracy":null,"images_per_s":1000.0,)" +
         R"("elapsed_s":1.0,"precision":")" + policy + R"(","loss_scale":)" + scale + R"(,"skipped_steps":)" +
         std::to_string(skipped) + R"(,"consecutive_skips":0})" + "\n";
    if (step % 20 == 0)
      s += R"({"event":"epoch","epoch":)" + std::to_string(step / 20) + R"(,"step":)" + std::to_string(step) +
           R"(,"loss":)" + std::to_string(base) + R"(,"lr":0.001,"test_accuracy":)" +
           std::to_string(step == 20 ? accuracy - 0.01 : accuracy) +
           R"(,"test_loss":0.1,"images_per_s":1000.0,"epoch_s":0.5,"elapsed_s":1.0,"precision":")" + policy +
           R"(","loss_scale":)" + scale + R"(,"skipped_steps":)" + std::to_string(skipped) + R"(,"consecutive_skips":0})" + "\n";
  }
  s += R"({"event":"inspect","epoch":1,"precision":")" + policy + R"(","step":10,"loss_scale":)" + scale +
       R"(,"grads":{"fc1.weight":{"numel":100,"zero":1,"under_sub":10,"under_norm":30,"over":0,"max_abs":1.0,"nonfinite":0},)" +
       R"("fc1.bias":{"numel":10,"zero":0,"under_sub":0,"under_norm":1,"over":0,"max_abs":1.0,"nonfinite":0}},"outputs":{}})" + "\n";
  return s;
}

std::vector<rp::RunMetrics> sample_runs() {
  std::vector<rp::RunMetrics> runs;
  for (int64_t seed : {1, 2}) {
    runs.push_back(rp::parse_metrics(metrics_text("fp32", 0.5, 0.98 + 0.001 * seed, false), "a", "fp32", seed));
    runs.push_back(rp::parse_metrics(metrics_text("fp16", 0.6, 0.97, true, 2), "b", "fp16", seed));
    runs.push_back(rp::parse_metrics(metrics_text("fp16-noscale", 0.7, 0.90, false), "c", "fp16-noscale", seed));
  }
  for (auto& r : runs) r.peak_rss_mb = 100.0 + static_cast<double>(r.seed);
  return runs;
}

}  // namespace

TEST(ReportParse, ReadsLogEpochAndInspectRecords) {
  const rp::RunMetrics r = rp::parse_metrics(metrics_text("fp16", 0.5, 0.98, true, 3), "f.jsonl", "fp16", 7);
  EXPECT_EQ(r.policy, "fp16");
  EXPECT_EQ(r.seed, 7);
  ASSERT_EQ(r.logs.size(), 4u);
  EXPECT_EQ(r.logs[2].step, 30);
  EXPECT_EQ(r.logs[2].epoch, 2);
  EXPECT_NEAR(r.logs[0].loss, 0.6, 1e-6);
  ASSERT_TRUE(r.logs[0].loss_scale.has_value());
  EXPECT_EQ(*r.logs[0].loss_scale, 65536.0);
  EXPECT_EQ(r.logs[0].skipped_steps, 3);
  ASSERT_EQ(r.epochs.size(), 2u);
  EXPECT_EQ(r.epochs[1].step, 40);
  EXPECT_NEAR(r.epochs[1].test_accuracy, 0.98, 1e-9);
  EXPECT_NEAR(r.epochs[0].test_accuracy, 0.97, 1e-9);
  EXPECT_EQ(r.epochs[1].epoch_s, 0.5);
  EXPECT_EQ(r.inspect_records, 1);
  ASSERT_EQ(r.grads.size(), 2u);
  EXPECT_EQ(r.grads[0].name, "fc1.weight");
  EXPECT_EQ(r.grads[0].under_sub, 10);
  EXPECT_DOUBLE_EQ(r.grads[0].under_sub_fraction(), 0.1);
  EXPECT_DOUBLE_EQ(r.grads[0].under_norm_fraction(), 0.3);
  EXPECT_DOUBLE_EQ(r.grads[1].under_norm_fraction(), 0.1);
}

// examples/mnist --qat ends with an "int8" record: the converted model's accuracy is the run's
// final (and, when higher, best) accuracy; the epochs stay the fake-quant model's.
TEST(ReportParse, QatRunsEndWithTheirInt8Model) {
  const std::string text = metrics_text("qat-int8", 0.5, 0.98, false) +
                           "{\"event\":\"int8\",\"step\":40,\"test_accuracy\":0.975,\"bytes\":1201560}\n";
  const rp::RunMetrics r = rp::parse_metrics(text, "q.jsonl", "qat-int8", 1);
  EXPECT_NEAR(r.int8_accuracy, 0.975, 1e-12);
  ASSERT_EQ(r.epochs.size(), 2u);
  const std::vector<rp::PolicySummary> rows = rp::summarize({r});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NEAR(rows[0].final_accuracy.mean, 97.5, 1e-9);
  EXPECT_NEAR(rows[0].best_accuracy.mean, 98.0, 1e-9);
  // Without the record nothing changes.
  const rp::RunMetrics f = rp::parse_metrics(metrics_text("fp32", 0.5, 0.98, false), "f.jsonl", "fp32", 1);
  EXPECT_TRUE(std::isnan(f.int8_accuracy));
  EXPECT_NEAR(rp::summarize({f})[0].final_accuracy.mean, 98.0, 1e-9);
}

TEST(ReportParse, NullsSumsAndBlankLines) {
  const std::string text =
      "\n"
      R"({"event":"log","epoch":1,"step":5,"loss":null,"loss_scale":null})" "\n"
      R"({"event":"inspect","grads":{"w":{"numel":4,"under_sub":1,"under_norm":2}}})" "\n"
      R"({"event":"inspect","grads":{"w":{"numel":4,"under_sub":3,"under_norm":4}}})" "\n"
      R"({"event":"something-else","x":1})" "\n";
  const rp::RunMetrics r = rp::parse_metrics(text, "t", "fp16-noscale", 1);
  ASSERT_EQ(r.logs.size(), 1u);
  EXPECT_TRUE(std::isnan(r.logs[0].loss));
  EXPECT_FALSE(r.logs[0].loss_scale.has_value());
  ASSERT_EQ(r.grads.size(), 1u);
  EXPECT_EQ(r.grads[0].numel, 8);
  EXPECT_DOUBLE_EQ(r.grads[0].under_sub_fraction(), 0.5);
  EXPECT_DOUBLE_EQ(r.grads[0].under_norm_fraction(), 0.75);
  EXPECT_EQ(r.inspect_records, 2);
}

TEST(ReportParse, BadLinesNameTheFileAndLine) {
  try {
    rp::parse_metrics("{\"event\":\"log\",\"step\":1}\n{not json\n", "run.jsonl", "fp32", 1);
    FAIL() << "expected ReportError";
  } catch (const rp::ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("run.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(rp::parse_metrics("[1,2]\n", "x", "fp32", 1), rp::ReportError);
  try {
    rp::parse_metrics(R"({"event":"epoch","epoch":1})" "\n", "e.jsonl", "fp32", 1);
    FAIL() << "expected ReportError";
  } catch (const rp::ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("\"step\""), std::string::npos) << e.what();
  }
  // A file of another policy than the manifest says.
  try {
    rp::parse_metrics(R"({"event":"log","step":1,"precision":"bf16"})" "\n", "m.jsonl", "fp16", 1);
    FAIL() << "expected ReportError";
  } catch (const rp::ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

TEST(ReportStats, MeanAndSampleStd) {
  const rp::MeanStd m = rp::mean_std({1, 2, 3, 4});
  EXPECT_EQ(m.n, 4);
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_NEAR(m.std, std::sqrt(5.0 / 3.0), 1e-15);
  const rp::MeanStd one = rp::mean_std({7});
  EXPECT_EQ(one.mean, 7);
  EXPECT_EQ(one.std, 0);
  EXPECT_TRUE(std::isnan(rp::mean_std({1, NAN, 3}).mean));
  const rp::MeanStd none = rp::mean_std({});
  EXPECT_EQ(none.n, 0);
  EXPECT_TRUE(std::isnan(none.mean));
}

TEST(ReportStats, AggregateKeepsTheCommonSteps) {
  const rp::Band b = rp::aggregate({{{1, 1.0}, {2, 2.0}, {3, 3.0}}, {{1, 3.0}, {3, 5.0}}});
  ASSERT_EQ(b.x.size(), 2u);
  EXPECT_EQ(b.x[0], 1);
  EXPECT_EQ(b.x[1], 3);
  EXPECT_DOUBLE_EQ(b.mean[0], 2.0);
  EXPECT_DOUBLE_EQ(b.mean[1], 4.0);
  EXPECT_DOUBLE_EQ(b.std[0], std::sqrt(2.0));
  EXPECT_TRUE(rp::aggregate({}).x.empty());
}

TEST(ReportStats, EmaAndDivergence) {
  const std::vector<double> e = rp::ema({1, 2, 3}, 0.5);
  EXPECT_DOUBLE_EQ(e[0], 1);
  EXPECT_DOUBLE_EQ(e[1], 1.5);
  EXPECT_DOUBLE_EQ(e[2], 2.25);
  const std::vector<double> d = rp::ema({1, NAN, 3}, 0.5);
  EXPECT_EQ(d[0], 1);
  EXPECT_TRUE(std::isnan(d[1]));
  EXPECT_TRUE(std::isnan(d[2]));
}

TEST(ReportStats, LossGap) {
  rp::RunMetrics ref, run;
  for (int64_t s = 1; s <= 5; ++s) {
    ref.logs.push_back({1, s * 10, 1.0 / static_cast<double>(s), std::nullopt, 0});
    run.logs.push_back({1, s * 10, 1.0 / static_cast<double>(s) + 0.25, std::nullopt, 0});
  }
  EXPECT_DOUBLE_EQ(rp::loss_gap(ref, ref), 0.0);
  // A constant offset survives the (linear) smoothing unchanged.
  EXPECT_NEAR(rp::loss_gap(run, ref), 0.25, 1e-12);
  // Only the common steps count.
  rp::RunMetrics shorter = run;
  shorter.logs.resize(2);
  EXPECT_NEAR(rp::loss_gap(shorter, ref), 0.25, 1e-12);
  rp::RunMetrics diverged = run;
  diverged.logs[3].loss = NAN;
  EXPECT_TRUE(std::isnan(rp::loss_gap(diverged, ref)));
  rp::RunMetrics elsewhere;
  elsewhere.logs.push_back({1, 999, 1.0, std::nullopt, 0});
  EXPECT_TRUE(std::isnan(rp::loss_gap(elsewhere, ref)));
  EXPECT_NE(rp::loss_gap_definition().find("EMA"), std::string::npos);
}

TEST(ReportSummary, RowsPerPolicy) {
  const std::vector<rp::PolicySummary> rows = rp::summarize(sample_runs());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].policy, "fp32");
  EXPECT_EQ(rows[0].seeds, (std::vector<int64_t>{1, 2}));
  EXPECT_NEAR(rows[0].final_accuracy.mean, 98.15, 1e-9);
  EXPECT_NEAR(rows[0].final_accuracy.std, std::sqrt(0.005), 1e-9);
  EXPECT_NEAR(rows[0].best_accuracy.mean, 98.15, 1e-9);
  EXPECT_EQ(rows[0].loss_gap.n, 0);  // the reference itself
  EXPECT_EQ(rows[0].final_loss_scale.n, 0);
  // Two epochs of 0.5 s over 40 steps.
  EXPECT_NEAR(rows[0].ms_per_step.mean, 25.0, 1e-12);
  EXPECT_NEAR(rows[0].peak_mb.mean, 101.5, 1e-12);
  EXPECT_EQ(rows[1].policy, "fp16");
  EXPECT_EQ(rows[1].final_loss_scale.mean, 65536.0);
  EXPECT_EQ(rows[1].skipped_steps.mean, 2.0);
  EXPECT_EQ(rows[1].loss_gap.n, 2);
  EXPECT_NEAR(rows[1].loss_gap.mean, 0.1, 1e-5);  // every logged loss is 0.1 above fp32's
  EXPECT_NEAR(rows[2].loss_gap.mean, 0.2, 1e-5);
  EXPECT_NEAR(rows[2].final_accuracy.mean, 90.0, 1e-9);
}

TEST(ReportSummary, TableTextAndJson) {
  const std::vector<rp::PolicySummary> rows = rp::summarize(sample_runs());
  const std::string table = rp::format_table(rows);
  std::vector<std::string> lines;
  for (size_t pos = 0, nl; (nl = table.find('\n', pos)) != std::string::npos; pos = nl + 1)
    lines.push_back(table.substr(pos, nl - pos));
  ASSERT_EQ(lines.size(), 5u) << table;  // header, rule, 3 policies
  EXPECT_EQ(lines[0].rfind("policy", 0), 0u);
  EXPECT_EQ(lines[2].rfind("fp32 ", 0), 0u);
  EXPECT_EQ(lines[4].rfind("fp16-noscale", 0), 0u);
  EXPECT_NE(lines[2].find("98.15 ± 0.07"), std::string::npos) << table;
  EXPECT_NE(lines[3].find("65536"), std::string::npos) << table;
  // Aligned: every line as wide as the rule (display width; "±" is two bytes).
  auto width = [](const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  for (const std::string& l : lines) EXPECT_EQ(width(l), width(lines[1])) << l;

  const rp::Json j = rp::table_json(rows);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1]["policy"], "fp16");
  EXPECT_EQ(j[1]["final_loss_scale"]["mean"], 65536.0);
  EXPECT_TRUE(j[0]["loss_gap"].is_null());
  EXPECT_TRUE(j[0]["final_loss_scale"].is_null());
  EXPECT_NEAR(j[2]["final_accuracy_pct"]["mean"].get<double>(), 90.0, 1e-9);
}

TEST(ReportSummary, FindingsReadOffTheNumbers) {
  const std::vector<rp::RunMetrics> runs = sample_runs();
  const std::vector<std::string> notes = rp::findings(rp::summarize(runs), runs);
  auto has = [&](const std::string& a, const std::string& b) {
    for (const std::string& n : notes)
      if (n.find(a) != std::string::npos && n.find(b) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("fp16:", "skipped 2 step")) << ::testing::PrintToString(notes);
  // fp16-noscale: 20 of 220 gradient values flushed (both seeds), worst layer fc1.weight at 10%.
  EXPECT_TRUE(has("fp16-noscale:", "9.09%")) << ::testing::PrintToString(notes);
  EXPECT_TRUE(has("fp16-noscale:", "fc1.weight (10.00% flushed to zero, 30.00%")) << ::testing::PrintToString(notes);
  EXPECT_TRUE(has("fp16-noscale: final test accuracy 90.00%", "-8.15 points")) << ::testing::PrintToString(notes);
  EXPECT_TRUE(has("fp16-noscale:", "exact zeros 0.91% (fp32: 0.91%)")) << ::testing::PrintToString(notes);
}

TEST(ReportSummary, LossGapChartIsTheSignedSmoothedDifference) {
  const rp::LineChart c = rp::loss_gap_chart(sample_runs());
  ASSERT_EQ(c.series.size(), 2u);  // fp16 and fp16-noscale against fp32
  EXPECT_EQ(c.series[0].label, "fp16");
  ASSERT_EQ(c.series[0].x.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(c.series[0].y[i], 0.1, 1e-5);  // 0.6 + 1/step against 0.5 + 1/step
    EXPECT_NEAR(c.series[1].y[i], 0.2, 1e-5);
  }
  EXPECT_TRUE(rp::loss_gap_chart(sample_runs(), "bf16").series.empty());  // no such reference
}

TEST(ReportSvg, PathCoordinatesAndGaps) {
  const rp::Scale sx{0, 10, 100, 200}, sy{0, 1, 50, 10};  // y flipped
  EXPECT_DOUBLE_EQ(sx(5), 150);
  EXPECT_DOUBLE_EQ(sy(0.25), 40);
  EXPECT_EQ(rp::svg_path({0, 5, 10}, {0, 0.5, 1}, sx, sy), "M100.00 50.00 L150.00 30.00 L200.00 10.00");
  // A NaN lifts the pen; the next finite point starts a new subpath.
  EXPECT_EQ(rp::svg_path({0, 2.5, 5, 10}, {0, NAN, 0.5, 1}, sx, sy), "M100.00 50.00 M150.00 30.00 L200.00 10.00");
  EXPECT_EQ(rp::svg_path({}, {}, sx, sy), "");
  EXPECT_EQ(rp::svg_path({1, 2}, {NAN, INFINITY}, sx, sy), "");
}

TEST(ReportSvg, BandPolygons) {
  const rp::Scale sx{0, 10, 0, 10}, sy{0, 10, 0, 10};
  EXPECT_EQ(rp::svg_band({0, 1}, {0, 1}, {2, 3}, sx, sy), "M0.00 2.00 L1.00 3.00 L1.00 1.00 L0.00 0.00 Z");
  // Split at the NaN into two closed pieces.
  EXPECT_EQ(rp::svg_band({0, 1, 2}, {0, NAN, 2}, {1, 1, 3}, sx, sy), "M0.00 1.00 L0.00 0.00 Z M2.00 3.00 L2.00 2.00 Z");
  EXPECT_EQ(rp::svg_band({}, {}, {}, sx, sy), "");
}

TEST(ReportSvg, LineChartAttributesEscapingAndEmptySeries) {
  rp::LineChart c{"loss", "Loss <of> \"runs\" & more", "step", "loss", {}};
  c.series.push_back({"fp16<script>", {1, 2, 3}, {3, 2, 1}, {2.5, 1.5, 0.5}, {3.5, 2.5, 1.5}, true, ""});
  c.series.push_back({"empty", {}, {}, {}, {}, false, ""});
  c.series.push_back({"missing", {1, 2}, {NAN, NAN}, {}, {}, false, ""});
  const std::string svg = rp::svg_line_chart(c);
  EXPECT_NE(svg.find("data-chart=\"loss\""), std::string::npos);
  EXPECT_NE(svg.find("data-series=\"3\""), std::string::npos);
  EXPECT_NE(svg.find("Loss &lt;of&gt; &quot;runs&quot; &amp; more"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_NE(svg.find("data-label=\"fp16&lt;script&gt;\" data-points=\"3\""), std::string::npos);
  EXPECT_NE(svg.find("data-label=\"empty\" data-points=\"0\""), std::string::npos);
  EXPECT_NE(svg.find("missing (no data)"), std::string::npos);
  EXPECT_NE(svg.find("class=\"band\""), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);  // no NaN coordinate anywhere
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  // Three markers for the three points.
  size_t circles = 0;
  for (size_t p = svg.find("<circle"); p != std::string::npos; p = svg.find("<circle", p + 1)) ++circles;
  EXPECT_EQ(circles, 3u);
  EXPECT_EQ(rp::escape_html("a'b"), "a&#39;b");
}

TEST(ReportSvg, BarChart) {
  rp::BarChart b;
  b.name = "underflow";
  b.title = "t";
  b.value_label = "v";
  b.categories = {"fc1.weight", "fc1.bias"};
  b.series_labels = {"fp16", "fp16-noscale"};
  b.values = {{0.0, 0.0}, {0.5, 0.25}};
  b.inner = {{0.0, 0.0}, {0.1, NAN}};
  const std::string svg = rp::svg_bar_chart(b);
  EXPECT_NE(svg.find("data-chart=\"underflow\" data-series=\"2\""), std::string::npos);
  EXPECT_NE(svg.find("data-label=\"fp16\" data-points=\"0\""), std::string::npos);
  EXPECT_NE(svg.find("data-label=\"fp16-noscale\" data-points=\"2\""), std::string::npos);
  EXPECT_NE(svg.find(">50%<"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">0%<"), std::string::npos);
  size_t inner = 0;
  for (size_t p = svg.find("class=\"inner\""); p != std::string::npos; p = svg.find("class=\"inner\"", p + 1)) ++inner;
  EXPECT_EQ(inner, 1u);
}

TEST(ReportHtml, SelfContainedWithEveryChart) {
  rp::ReportInput in;
  in.title = "compare <precision>";
  in.settings = {{"model", "cnn"}, {"note", "a&b"}};
  in.runs = sample_runs();
  const std::string html = rp::render_html(in);
  for (const std::string& name : rp::chart_names())
    EXPECT_NE(html.find("data-chart=\"" + name + "\""), std::string::npos) << name;
  EXPECT_NE(html.find("data-chart=\"loss\" data-series=\"3\""), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"loss-scale\" data-series=\"1\""), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"loss-gap\" data-series=\"2\""), std::string::npos);
  EXPECT_NE(html.find("data-chart=\"underflow\" data-series=\"2\""), std::string::npos);
  EXPECT_NE(html.find("compare &lt;precision&gt;"), std::string::npos);
  EXPECT_NE(html.find("a&amp;b"), std::string::npos);
  EXPECT_NE(html.find("<pre id=\"render-check\">"), std::string::npos);
  // Nothing to fetch: no URL, no external stylesheet, script or font.
  EXPECT_EQ(html.find("http"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_NE(html.find("98.15 ± 0.07"), std::string::npos);
  // A policy keeps its colour in every chart: fp16 (second policy) is drawn in the second colour
  // in the loss chart and in the loss-scale chart, where it is the only series.
  const std::string fp16_group = "data-label=\"fp16\" data-points=\"4\" stroke=\"#0072B2\"";
  const size_t first = html.find(fp16_group);
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(html.find(fp16_group, html.find("data-chart=\"loss-scale\"")), std::string::npos);
}

TEST(ReportHtml, NoRunsStillRenders) {
  rp::ReportInput in;
  in.title = "empty";
  const std::string html = rp::render_html(in);
  for (const std::string& name : rp::chart_names())
    EXPECT_NE(html.find("data-chart=\"" + name + "\" data-series=\"0\""), std::string::npos) << name;
}

TEST(ReportManifest, RoundTrip) {
  rp::Manifest m;
  m.settings = {{"dataset", "mnist"}, {"epochs", "2"}};
  m.runs.push_back({"fp16", 3, "fp16-seed3.jsonl", 512.5, 12.0, 0});
  m.runs.push_back({"fp32", 1, "fp32-seed1.jsonl", rp::kNaN, rp::kNaN, 1});
  const rp::Manifest back = rp::manifest_from_json(rp::Json::parse(rp::manifest_to_json(m).dump()));
  ASSERT_EQ(back.settings.size(), 2u);
  EXPECT_EQ(back.settings[1].second, "2");
  ASSERT_EQ(back.runs.size(), 2u);
  EXPECT_EQ(back.runs[0].policy, "fp16");
  EXPECT_EQ(back.runs[0].seed, 3);
  EXPECT_EQ(back.runs[0].metrics, "fp16-seed3.jsonl");
  EXPECT_EQ(back.runs[0].peak_rss_mb, 512.5);
  EXPECT_TRUE(std::isnan(back.runs[1].peak_rss_mb));
  EXPECT_EQ(back.runs[1].exit_code, 1);
  EXPECT_THROW(rp::manifest_from_json(rp::Json::parse(R"({"runs":[{"policy":"x"}]})")), rp::ReportError);
  EXPECT_THROW(rp::manifest_from_json(rp::Json::parse("[]")), rp::ReportError);
}
