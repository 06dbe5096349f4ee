// The precision-comparison report: metrics JSON lines (examples/mnist.cpp's schema) -> per-run
// data -> per-policy summaries (mean and standard deviation across seeds) -> an aligned text
// table, its JSON, and one self-contained report.html with inline SVG charts. Pure functions
// only (no files, no processes): examples/compare_precision.cpp drives them.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mantissa::examples::report {

using Json = nlohmann::ordered_json;

struct ReportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One "log" record: the mean training loss of the last --log-interval steps at `step`.
struct LogPoint {
  int64_t epoch = 0;
  int64_t step = 0;
  double loss = kNaN;                 // null in the file (a non-finite loss) reads as NaN
  std::optional<double> loss_scale;   // null without a loss scaler
  int64_t skipped_steps = 0;
};

// One "epoch" record: the epoch's mean training loss and the test-set evaluation after it.
struct EpochPoint {
  int64_t epoch = 0;
  int64_t step = 0;
  double train_loss = kNaN;
  double test_accuracy = kNaN;  // fraction in [0, 1]
  double test_loss = kNaN;
  double epoch_s = kNaN;
  std::optional<double> loss_scale;
  int64_t skipped_steps = 0;
};

// Gradient statistics of one parameter against F16's range, summed over every "inspect" record
// of the run (amp::Inspector: under_sub = 0 < |g| < 2^-24, flushed to zero in F16; under_norm =
// 0 < |g| < 2^-14, subnormal or zero in F16, so includes under_sub).
struct GradRange {
  std::string name;
  int64_t numel = 0;
  int64_t zero = 0;
  int64_t under_sub = 0;
  int64_t under_norm = 0;
  int64_t over = 0;
  int64_t nonfinite = 0;
  double under_sub_fraction() const;   // under_sub / numel (NaN when numel is 0)
  double under_norm_fraction() const;  // under_norm / numel
};

struct RunMetrics {
  std::string policy;
  int64_t seed = 0;
  std::vector<LogPoint> logs;
  std::vector<EpochPoint> epochs;
  std::vector<GradRange> grads;  // in the order the parameters first appear
  int64_t inspect_records = 0;
  // The "int8" record of a QAT run (examples/mnist --qat): the converted int8 model's test accuracy
  // (fraction), NaN for other runs. It is the run's final accuracy; its epochs are the fake-quant model's.
  double int8_accuracy = kNaN;
  // From the driver (manifest), not from the metrics file.
  double peak_rss_mb = kNaN;
  double wall_s = kNaN;
};

// Parses a metrics file's text. Unknown events and fields are ignored; a line that is not a
// JSON object, or a log/epoch record without its step, throws ReportError naming `source` and
// the line number. `policy` and `seed` label the run (the file's own "precision" is checked
// against `policy` when both are present).
RunMetrics parse_metrics(const std::string& text, const std::string& source, const std::string& policy, int64_t seed);

// Mean and sample standard deviation (n - 1; 0 for a single value). Any NaN input gives NaN
// (a diverged seed must not vanish from the mean); an empty input gives n = 0 and NaN.
struct MeanStd {
  double mean = kNaN;
  double std = kNaN;
  int64_t n = 0;
};
MeanStd mean_std(const std::vector<double>& values);

// A curve averaged across seeds: the x values present in every curve (in the first curve's
// order), the mean and the standard deviation of y at each (NaN when a seed's y is NaN).
struct Band {
  std::vector<double> x, mean, std;
};
Band aggregate(const std::vector<std::vector<std::pair<double, double>>>& curves);

// Exponential moving average y_i = a x_i + (1 - a) y_{i-1}, y_0 = x_0. Once a value is
// non-finite the rest of the output is NaN (a diverged run stays diverged).
std::vector<double> ema(const std::vector<double>& values, double alpha);

// The loss gap of a run to its reference run (same seed, fp32): both logged loss curves are
// smoothed with ema(kGapAlpha), then the mean of |smoothed - smoothed_ref| over the steps both
// logged. NaN when either curve has a non-finite value at a common step or they share none.
inline constexpr double kGapAlpha = 0.2;
double loss_gap(const RunMetrics& run, const RunMetrics& reference);
std::string loss_gap_definition();

// One row of the summary table: one policy over its seeds.
struct PolicySummary {
  std::string policy;
  std::vector<int64_t> seeds;
  MeanStd final_accuracy, best_accuracy;  // percent
  MeanStd final_loss;                     // last epoch's mean training loss
  MeanStd skipped_steps;
  MeanStd final_loss_scale;  // n = 0 without a scaler
  MeanStd ms_per_step;       // training time (sum of epoch_s) / steps
  MeanStd peak_mb;           // the child's peak resident memory
  MeanStd loss_gap;          // to `reference` with the same seed; n = 0 for the reference itself or without one
};

// Runs grouped by policy in first-appearance order; `reference` names the loss-gap baseline.
std::vector<PolicySummary> summarize(const std::vector<RunMetrics>& runs, const std::string& reference = "fp32");

// The aligned text table (header, rule, one line per policy; "mean ± std" cells when there are
// several seeds) and the same table as JSON (numbers, null for absent ones).
std::string format_table(const std::vector<PolicySummary>& rows);
Json table_json(const std::vector<PolicySummary>& rows);

// Short sentences read off the numbers: skipped steps and scale of the scaled policies,
// underflow fractions and exact zeros of the F16 policies' gradients (values flushed in an F16
// backward reach the F32 gradient as zeros), accuracy and gap differences.
std::vector<std::string> findings(const std::vector<PolicySummary>& rows, const std::vector<RunMetrics>& runs);

// SVG -------------------------------------------------------------------------------------------

// Escapes & < > " ' for HTML text and attribute values.
std::string escape_html(const std::string& text);

// Maps [lo, hi] linearly onto [out_lo, out_hi] (out_hi may be smaller: SVG's y grows downward).
struct Scale {
  double lo = 0, hi = 1, out_lo = 0, out_hi = 1;
  double operator()(double v) const;
};

// "M x y L x y ..." through the finite points; a non-finite x or y breaks the line (the next
// finite point starts a new "M"). Empty for no finite point. Coordinates with 2 decimals.
std::string svg_path(const std::vector<double>& x, const std::vector<double>& y, const Scale& sx, const Scale& sy);
// Closed polygons ("M ... Z") between lo and hi over each run of points where x, lo and hi are
// all finite; empty when there is none.
std::string svg_band(const std::vector<double>& x, const std::vector<double>& lo, const std::vector<double>& hi,
                     const Scale& sx, const Scale& sy);

struct Series {
  std::string label;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // optional band (same length as x), e.g. mean -/+ std
  bool markers = false;        // draw a dot at each finite point
  std::string color;           // CSS colour; empty: the palette colour of the series' position
};

struct LineChart {
  std::string name;  // data-chart attribute
  std::string title, x_label, y_label;
  std::vector<Series> series;
};
// <svg data-chart="name" data-series="N"> with axes, ticks, a legend, one <g class="series">
// per series holding its band, line and markers, and a <rect class="plot-area">. Series without
// a finite point are listed in the legend as "(no data)".
std::string svg_line_chart(const LineChart& chart);

// Horizontal grouped bars: one group per category (e.g. a layer), one bar per series (e.g. a
// policy). `values[s][c]` is series s's value for category c, `inner[s][c]` (optional) a second,
// darker bar drawn inside it (e.g. the part that flushes to zero). NaN values draw nothing.
struct BarChart {
  std::string name, title, value_label;
  std::vector<std::string> categories;
  std::vector<std::string> series_labels;
  std::vector<std::vector<double>> values, inner;
  std::vector<std::string> series_colors;  // optional, as Series::color
  bool percent = true;  // values are fractions shown as percent
};
std::string svg_bar_chart(const BarChart& chart);

// The report ------------------------------------------------------------------------------------

struct ReportInput {
  std::string title;
  std::vector<std::pair<std::string, std::string>> settings;  // shown as a definition list
  std::vector<RunMetrics> runs;
  std::string reference = "fp32";
};

// The charts of a report: "loss", "loss-gap", "accuracy", "loss-scale", "underflow".
std::vector<std::string> chart_names();
LineChart loss_chart(const std::vector<RunMetrics>& runs);
// EMA-smoothed loss minus the reference's (same seed) at each common step, per policy other
// than the reference: the signed curve whose mean absolute value is loss_gap.
LineChart loss_gap_chart(const std::vector<RunMetrics>& runs, const std::string& reference = "fp32");
LineChart accuracy_chart(const std::vector<RunMetrics>& runs);
LineChart loss_scale_chart(const std::vector<RunMetrics>& runs);
BarChart underflow_chart(const std::vector<RunMetrics>& runs);

// One HTML document: inline CSS and SVG, no external resource of any kind, plus a small inline
// script that measures every drawn series (getBBox) and writes the results as JSON into
// <pre id="render-check"> (the render test reads it back from a headless browser).
std::string render_html(const ReportInput& input);

// The run manifest compare_precision writes next to the metrics files, so --report-only can
// rebuild everything.
struct ManifestRun {
  std::string policy;
  int64_t seed = 0;
  std::string metrics;  // file name relative to the manifest's directory
  double peak_rss_mb = kNaN;
  double wall_s = kNaN;
  int exit_code = 0;
};
struct Manifest {
  std::vector<std::pair<std::string, std::string>> settings;
  std::vector<ManifestRun> runs;
};
Json manifest_to_json(const Manifest& m);
Manifest manifest_from_json(const Json& j);  // throws ReportError on a missing field

}  // namespace mantissa::examples::report
