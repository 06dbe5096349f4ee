// The precision-comparison report: parsing of metrics JSON lines, aggregation across seeds, the
// loss-gap metric, the text/JSON table, and the SVG/HTML generation (examples/common/report.h).
#include "examples/common/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace mantissa::examples::report {

namespace {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// SVG coordinates: two decimals are far below a pixel and keep the files small.
std::string coord(double v) { return fmt("%.2f", v); }

double number_or_nan(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

std::optional<double> optional_number(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

int64_t int_or(const Json& j, const char* key, int64_t fallback) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return fallback;
  return it->get<int64_t>();
}

int64_t required_int(const Json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    throw ReportError(where + ": the record has no integer \"" + key + "\"");
  return it->get<int64_t>();
}

// Policies in first-appearance order.
std::vector<std::string> policy_order(const std::vector<RunMetrics>& runs) {
  std::vector<std::string> order;
  for (const RunMetrics& r : runs)
    if (std::find(order.begin(), order.end(), r.policy) == order.end()) order.push_back(r.policy);
  return order;
}

std::vector<const RunMetrics*> runs_of(const std::vector<RunMetrics>& runs, const std::string& policy) {
  std::vector<const RunMetrics*> out;
  for (const RunMetrics& r : runs)
    if (r.policy == policy) out.push_back(&r);
  return out;
}

// Colour-blind-safe palette (Okabe-Ito plus two), by policy position.
const char* color(size_t i) {
  static const char* kColors[] = {"#000000", "#0072B2", "#D55E00", "#CC79A7", "#009E73",
                                  "#E69F00", "#56B4E9", "#8C564B", "#7F7F7F", "#BCBD22"};
  return kColors[i % (sizeof kColors / sizeof kColors[0])];
}

// The colour of a policy: its position in the report's policy order, the same in every chart.
std::string policy_color(const std::vector<RunMetrics>& runs, const std::string& policy) {
  const std::vector<std::string> order = policy_order(runs);
  return color(static_cast<size_t>(std::find(order.begin(), order.end(), policy) - order.begin()));
}

bool is_f16_policy(const std::string& policy) { return policy.rfind("fp16", 0) == 0; }

// Gradient counts summed over every seed of a policy, parameters in first-appearance order.
std::vector<GradRange> policy_grads(const std::vector<RunMetrics>& runs, const std::string& policy) {
  std::vector<GradRange> out;
  for (const RunMetrics* r : runs_of(runs, policy))
    for (const GradRange& g : r->grads) {
      auto it = std::find_if(out.begin(), out.end(), [&](const GradRange& o) { return o.name == g.name; });
      if (it == out.end()) {
        out.push_back(g);
        continue;
      }
      it->numel += g.numel;
      it->zero += g.zero;
      it->under_sub += g.under_sub;
      it->under_norm += g.under_norm;
      it->over += g.over;
      it->nonfinite += g.nonfinite;
    }
  return out;
}

// Display width of UTF-8 text (the table holds "±").
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::string cell(const MeanStd& m, int decimals) {
  if (m.n == 0) return "-";
  if (!std::isfinite(m.mean)) return "nan";
  char buf[96];
  if (m.n == 1 || !std::isfinite(m.std) || m.std == 0)
    std::snprintf(buf, sizeof buf, "%.*f", decimals, m.mean);
  else
    std::snprintf(buf, sizeof buf, "%.*f ± %.*f", decimals, m.mean, decimals, m.std);
  return buf;
}

std::string scale_cell(const MeanStd& m) {
  if (m.n == 0) return "-";
  if (m.n == 1 || m.std == 0) return fmt("%g", m.mean);
  return fmt("%g", m.mean) + " ± " + fmt("%g", m.std);
}

Json mean_std_json(const MeanStd& m) {
  if (m.n == 0) return nullptr;
  Json j;
  j["mean"] = std::isfinite(m.mean) ? Json(m.mean) : Json(nullptr);
  j["std"] = std::isfinite(m.std) ? Json(m.std) : Json(nullptr);
  j["n"] = m.n;
  return j;
}

const std::vector<std::string>& table_headers() {
  static const std::vector<std::string> h = {"policy",       "seeds",   "final acc %", "best acc %", "final loss",
                                             "skipped",      "final scale", "ms/step", "peak MB",   "loss gap"};
  return h;
}

std::vector<std::string> table_cells(const PolicySummary& r) {
  return {r.policy,
          std::to_string(r.seeds.size()),
          cell(r.final_accuracy, 2),
          cell(r.best_accuracy, 2),
          cell(r.final_loss, 4),
          cell(r.skipped_steps, r.skipped_steps.std > 0 ? 1 : 0),
          scale_cell(r.final_loss_scale),
          cell(r.ms_per_step, 2),
          cell(r.peak_mb, 0),
          cell(r.loss_gap, 4)};
}

// Ticks at 1, 2 or 5 times a power of ten, about `count` of them across [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count) {
  std::vector<double> ticks;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return ticks;
  const double raw = (hi - lo) / count;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (raw <= step) break;
  }
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

// Finite range of several vectors, widened when flat or empty.
std::pair<double, double> finite_range(const std::vector<const std::vector<double>*>& vs) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* v : vs)
    for (double x : *v)
      if (std::isfinite(x)) {
        lo = std::min(lo, x);
        hi = std::max(hi, x);
      }
  if (!std::isfinite(lo)) return {0.0, 1.0};
  if (hi == lo) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    return {lo - pad, hi + pad};
  }
  return {lo, hi};
}

int64_t finite_points(const std::vector<double>& x, const std::vector<double>& y) {
  int64_t n = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)
    if (std::isfinite(x[i]) && std::isfinite(y[i])) ++n;
  return n;
}

// Chart geometry shared by the line charts.
constexpr double kWidth = 760, kHeight = 360;
constexpr double kLeft = 70, kRight = 190, kTop = 40, kBottom = 50;

std::string svg_open(const std::string& name, size_t series, double width, double height, const std::string& title) {
  std::ostringstream s;
  s << "<svg data-chart=\"" << escape_html(name) << "\" data-series=\"" << series
    << "\" width=\"" << coord(width) << "\" height=\"" << coord(height) << "\" viewBox=\"0 0 " << coord(width) << ' '
    << coord(height) << "\" role=\"img\" aria-label=\"" << escape_html(title) << "\">\n";
  s << "<text class=\"title\" x=\"" << coord(kLeft) << "\" y=\"22\">" << escape_html(title) << "</text>\n";
  return s.str();
}

}  // namespace

double GradRange::under_sub_fraction() const {
  return numel > 0 ? static_cast<double>(under_sub) / static_cast<double>(numel) : kNaN;
}
double GradRange::under_norm_fraction() const {
  return numel > 0 ? static_cast<double>(under_norm) / static_cast<double>(numel) : kNaN;
}

// Parsing ---------------------------------------------------------------------------------------

RunMetrics parse_metrics(const std::string& text, const std::string& source, const std::string& policy, int64_t seed) {
  RunMetrics run;
  run.policy = policy;
  run.seed = seed;
  std::istringstream in(text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = source + ":" + std::to_string(line_no);
    Json j;
    try {
      j = Json::parse(line);
    } catch (const Json::parse_error& e) {
      throw ReportError(where + ": not a JSON line (" + e.what() + ")");
    }
    if (!j.is_object()) throw ReportError(where + ": expected a JSON object per line");
    const auto precision = j.find("precision");
    if (!policy.empty() && precision != j.end() && precision->is_string() && precision->get<std::string>() != policy)
      throw ReportError(where + ": the record is of precision \"" + precision->get<std::string>() +
                        "\", the run was listed as \"" + policy + "\"");
    const std::string event = j.value("event", "");
    if (event == "log") {
      LogPoint p;
      p.epoch = int_or(j, "epoch", 0);
      p.step = required_int(j, "step", where);
      p.loss = number_or_nan(j, "loss");
      p.loss_scale = optional_number(j, "loss_scale");
      p.skipped_steps = int_or(j, "skipped_steps", 0);
      run.logs.push_back(p);
    } else if (event == "epoch") {
      EpochPoint p;
      p.epoch = required_int(j, "epoch", where);
      p.step = required_int(j, "step", where);
      p.train_loss = number_or_nan(j, "loss");
      p.test_accuracy = number_or_nan(j, "test_accuracy");
      p.test_loss = number_or_nan(j, "test_loss");
      p.epoch_s = number_or_nan(j, "epoch_s");
      p.loss_scale = optional_number(j, "loss_scale");
      p.skipped_steps = int_or(j, "skipped_steps", 0);
      run.epochs.push_back(p);
    } else if (event == "int8") {
      run.int8_accuracy = number_or_nan(j, "test_accuracy");
    } else if (event == "inspect") {
      ++run.inspect_records;
      const auto grads = j.find("grads");
      if (grads == j.end() || !grads->is_object()) continue;
      for (const auto& [name, s] : grads->items()) {
        auto it = std::find_if(run.grads.begin(), run.grads.end(), [&](const GradRange& g) { return g.name == name; });
        if (it == run.grads.end()) {
          run.grads.push_back(GradRange{});
          it = run.grads.end() - 1;
          it->name = name;
        }
        it->numel += int_or(s, "numel", 0);
        it->zero += int_or(s, "zero", 0);
        it->under_sub += int_or(s, "under_sub", 0);
        it->under_norm += int_or(s, "under_norm", 0);
        it->over += int_or(s, "over", 0);
        it->nonfinite += int_or(s, "nonfinite", 0);
      }
    }
  }
  return run;
}

// Statistics --------------------------------------------------------------------------------------

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd m;
  m.n = static_cast<int64_t>(values.size());
  if (values.empty()) return m;
  double sum = 0;
  for (double v : values) sum += v;  // NaN propagates
  m.mean = sum / static_cast<double>(values.size());
  if (values.size() == 1) {
    m.std = std::isfinite(m.mean) ? 0.0 : kNaN;
    return m;
  }
  double ss = 0;
  for (double v : values) ss += (v - m.mean) * (v - m.mean);
  m.std = std::sqrt(ss / static_cast<double>(values.size() - 1));
  return m;
}

Band aggregate(const std::vector<std::vector<std::pair<double, double>>>& curves) {
  Band b;
  if (curves.empty()) return b;
  std::vector<std::map<double, double>> lookup;
  for (size_t c = 1; c < curves.size(); ++c) lookup.emplace_back(curves[c].begin(), curves[c].end());
  for (const auto& [x, y0] : curves[0]) {
    std::vector<double> ys = {y0};
    bool everywhere = true;
    for (const auto& m : lookup) {
      const auto it = m.find(x);
      if (it == m.end()) {
        everywhere = false;
        break;
      }
      ys.push_back(it->second);
    }
    if (!everywhere) continue;
    const MeanStd s = mean_std(ys);
    b.x.push_back(x);
    b.mean.push_back(s.mean);
    b.std.push_back(s.std);
  }
  return b;
}

std::vector<double> ema(const std::vector<double>& values, double alpha) {
  std::vector<double> out(values.size(), kNaN);
  double y = kNaN;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) break;  // the rest stays NaN
    y = i == 0 ? values[i] : alpha * values[i] + (1 - alpha) * y;
    out[i] = y;
  }
  return out;
}

double loss_gap(const RunMetrics& run, const RunMetrics& reference) {
  std::vector<double> a, b;
  for (const LogPoint& p : run.logs) a.push_back(p.loss);
  for (const LogPoint& p : reference.logs) b.push_back(p.loss);
  const std::vector<double> sa = ema(a, kGapAlpha), sb = ema(b, kGapAlpha);
  std::map<int64_t, double> ref;
  for (size_t i = 0; i < reference.logs.size(); ++i) ref[reference.logs[i].step] = sb[i];
  double sum = 0;
  int64_t n = 0;
  for (size_t i = 0; i < run.logs.size(); ++i) {
    const auto it = ref.find(run.logs[i].step);
    if (it == ref.end()) continue;
    if (!std::isfinite(sa[i]) || !std::isfinite(it->second)) return kNaN;
    sum += std::abs(sa[i] - it->second);
    ++n;
  }
  return n > 0 ? sum / static_cast<double>(n) : kNaN;
}

std::string loss_gap_definition() {
  return "loss gap: mean over the logged steps of |EMA(loss) - EMA(loss of the reference policy, same seed)|, "
         "each logged loss being the mean training loss of the last --log-interval steps and EMA an exponential "
         "moving average with weight " + fmt("%g", kGapAlpha) +
         " (y_0 = x_0); averaged over seeds; nan when a curve diverged";
}

std::vector<PolicySummary> summarize(const std::vector<RunMetrics>& runs, const std::string& reference) {
  std::vector<PolicySummary> rows;
  for (const std::string& policy : policy_order(runs)) {
    PolicySummary s;
    s.policy = policy;
    std::vector<double> final_acc, best_acc, final_loss, skipped, scale, ms, peak, gap;
    for (const RunMetrics* r : runs_of(runs, policy)) {
      s.seeds.push_back(r->seed);
      if (!r->epochs.empty()) {
        const EpochPoint& last = r->epochs.back();
        // A QAT run ends with its converted int8 model: that is the accuracy it delivers.
        const bool int8 = std::isfinite(r->int8_accuracy);
        final_acc.push_back(100.0 * (int8 ? r->int8_accuracy : last.test_accuracy));
        double best = int8 ? 100.0 * r->int8_accuracy : -INFINITY, train_s = 0;
        for (const EpochPoint& e : r->epochs) {
          best = std::max(best, 100.0 * e.test_accuracy);
          train_s += e.epoch_s;
        }
        best_acc.push_back(best);
        final_loss.push_back(last.train_loss);
        skipped.push_back(static_cast<double>(last.skipped_steps));
        if (last.loss_scale) scale.push_back(*last.loss_scale);
        if (last.step > 0) ms.push_back(1000.0 * train_s / static_cast<double>(last.step));
      }
      if (std::isfinite(r->peak_rss_mb)) peak.push_back(r->peak_rss_mb);
      if (policy != reference)
        for (const RunMetrics& ref : runs)
          if (ref.policy == reference && ref.seed == r->seed) {
            gap.push_back(loss_gap(*r, ref));
            break;
          }
    }
    s.final_accuracy = mean_std(final_acc);
    s.best_accuracy = mean_std(best_acc);
    s.final_loss = mean_std(final_loss);
    s.skipped_steps = mean_std(skipped);
    s.final_loss_scale = mean_std(scale);
    s.ms_per_step = mean_std(ms);
    s.peak_mb = mean_std(peak);
    s.loss_gap = mean_std(gap);
    rows.push_back(std::move(s));
  }
  return rows;
}

std::string format_table(const std::vector<PolicySummary>& rows) {
  const auto& head = table_headers();
  std::vector<std::vector<std::string>> cells = {head};
  for (const PolicySummary& r : rows) cells.push_back(table_cells(r));
  std::vector<size_t> width(head.size(), 0);
  for (const auto& row : cells)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], display_width(row[c]));
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - display_width(row[c]), ' ');
      // The policy name reads left-aligned, numbers right-aligned.
      line += c == 0 ? row[c] + pad : pad + row[c];
      if (c + 1 < row.size()) line += "  ";
    }
    out += line + "\n";
  };
  emit(cells[0]);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  out += std::string(total - 2, '-') + "\n";
  for (size_t i = 1; i < cells.size(); ++i) emit(cells[i]);
  return out;
}

Json table_json(const std::vector<PolicySummary>& rows) {
  Json table = Json::array();
  for (const PolicySummary& r : rows) {
    Json j;
    j["policy"] = r.policy;
    j["seeds"] = r.seeds;
    j["final_accuracy_pct"] = mean_std_json(r.final_accuracy);
    j["best_accuracy_pct"] = mean_std_json(r.best_accuracy);
    j["final_train_loss"] = mean_std_json(r.final_loss);
    j["skipped_steps"] = mean_std_json(r.skipped_steps);
    j["final_loss_scale"] = mean_std_json(r.final_loss_scale);
    j["ms_per_step"] = mean_std_json(r.ms_per_step);
    j["peak_mb"] = mean_std_json(r.peak_mb);
    j["loss_gap"] = mean_std_json(r.loss_gap);
    table.push_back(std::move(j));
  }
  return table;
}

std::vector<std::string> findings(const std::vector<PolicySummary>& rows, const std::vector<RunMetrics>& runs) {
  std::vector<std::string> out;
  auto pct = [](double f) { return fmt("%.2f%%", 100.0 * f); };
  const PolicySummary* ref = nullptr;
  for (const PolicySummary& r : rows)
    if (r.policy == "fp32") ref = &r;

  for (const PolicySummary& r : rows) {
    if (r.final_loss_scale.n == 0) continue;
    out.push_back(r.policy + ": the loss scaler skipped " + fmt("%g", r.skipped_steps.mean) +
                  " step(s) (mean over seeds) on overflowing gradients and ended at a loss scale of " +
                  fmt("%g", r.final_loss_scale.mean) + ".");
  }
  // Underflow: for each F16 policy with inspector data, its worst layer; the scaled policies
  // are read as the same layers seen through their loss scale.
  for (const std::string& policy : policy_order(runs)) {
    if (!is_f16_policy(policy)) continue;
    const std::vector<GradRange> grads = policy_grads(runs, policy);
    const GradRange* worst = nullptr;
    for (const GradRange& g : grads)
      if (g.numel > 0 && (worst == nullptr || g.under_sub_fraction() > worst->under_sub_fraction() ||
                          (g.under_sub_fraction() == worst->under_sub_fraction() &&
                           g.under_norm_fraction() > worst->under_norm_fraction())))
        worst = &g;
    if (worst == nullptr) continue;
    int64_t sub = 0, norm = 0, numel = 0;
    for (const GradRange& g : grads) {
      sub += g.under_sub;
      norm += g.under_norm;
      numel += g.numel;
    }
    int64_t zero = 0;
    for (const GradRange& g : grads) zero += g.zero;
    const double all_zero = static_cast<double>(zero) / static_cast<double>(numel);
    std::string zeros = "; exact zeros " + pct(all_zero);
    if (policy != "fp32") {
      int64_t ref_zero = 0, ref_numel = 0;
      for (const GradRange& g : policy_grads(runs, "fp32")) {
        ref_zero += g.zero;
        ref_numel += g.numel;
      }
      if (ref_numel > 0) zeros += " (fp32: " + pct(static_cast<double>(ref_zero) / static_cast<double>(ref_numel)) + ")";
    }
    const double all_sub = static_cast<double>(sub) / static_cast<double>(numel);
    const double all_norm = static_cast<double>(norm) / static_cast<double>(numel);
    out.push_back(policy + ": " + pct(all_sub) + " of all sampled gradient values lie below F16's smallest subnormal " +
                  "(they become 0) and " + pct(all_norm) + " below its smallest normal; worst layer " + worst->name +
                  " (" + pct(worst->under_sub_fraction()) + " flushed to zero, " + pct(worst->under_norm_fraction()) +
                  " subnormal or zero)" + zeros + ".");
  }
  if (ref != nullptr && ref->final_accuracy.n > 0) {
    for (const PolicySummary& r : rows) {
      if (&r == ref || r.final_accuracy.n == 0) continue;
      const double d = r.final_accuracy.mean - ref->final_accuracy.mean;
      std::string s = r.policy + ": final test accuracy " + fmt("%.2f%%", r.final_accuracy.mean) + ", " +
                      fmt("%+.2f", d) + " points against fp32";
      const double spread = std::max(r.final_accuracy.std, ref->final_accuracy.std);
      if (r.final_accuracy.n > 1 && ref->final_accuracy.n > 1 && std::isfinite(spread))
        s += std::abs(d) <= 2 * spread ? " (within twice the seed-to-seed spread of " + fmt("%.2f", spread) + ")"
                                       : " (beyond twice the seed-to-seed spread of " + fmt("%.2f", spread) + ")";
      if (r.loss_gap.n > 0)
        s += std::isfinite(r.loss_gap.mean) ? "; loss gap to fp32 " + fmt("%.4f", r.loss_gap.mean)
                                            : "; its loss diverged (non-finite)";
      out.push_back(s + ".");
    }
  }
  return out;
}

// SVG ---------------------------------------------------------------------------------------------

std::string escape_html(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

double Scale::operator()(double v) const {
  const double t = hi == lo ? 0.5 : (v - lo) / (hi - lo);
  return out_lo + t * (out_hi - out_lo);
}

std::string svg_path(const std::vector<double>& x, const std::vector<double>& y, const Scale& sx, const Scale& sy) {
  std::string d;
  bool pen_down = false;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
      pen_down = false;
      continue;
    }
    if (!d.empty()) d += ' ';
    d += pen_down ? "L" : "M";
    d += coord(sx(x[i])) + " " + coord(sy(y[i]));
    pen_down = true;
  }
  return d;
}

std::string svg_band(const std::vector<double>& x, const std::vector<double>& lo, const std::vector<double>& hi,
                     const Scale& sx, const Scale& sy) {
  std::string d;
  const size_t n = std::min({x.size(), lo.size(), hi.size()});
  size_t i = 0;
  while (i < n) {
    auto ok = [&](size_t k) { return std::isfinite(x[k]) && std::isfinite(lo[k]) && std::isfinite(hi[k]); };
    if (!ok(i)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < n && ok(j)) ++j;  // [i, j): one finite run
    std::string poly;
    for (size_t k = i; k < j; ++k) poly += (k == i ? "M" : " L") + coord(sx(x[k])) + " " + coord(sy(hi[k]));
    for (size_t k = j; k-- > i;) poly += " L" + coord(sx(x[k])) + " " + coord(sy(lo[k]));
    if (!d.empty()) d += ' ';
    d += poly + " Z";
    i = j;
  }
  return d;
}

std::string svg_line_chart(const LineChart& chart) {
  std::vector<const std::vector<double>*> xs, ys;
  for (const Series& s : chart.series) {
    xs.push_back(&s.x);
    ys.push_back(&s.y);
    if (!s.lo.empty()) ys.push_back(&s.lo);
    if (!s.hi.empty()) ys.push_back(&s.hi);
  }
  const auto [x0, x1] = finite_range(xs);
  const auto [y0, y1] = finite_range(ys);
  const double pl = kLeft, pr = kWidth - kRight, pt = kTop, pb = kHeight - kBottom;
  const Scale sx{x0, x1, pl, pr}, sy{y0, y1, pb, pt};

  std::ostringstream s;
  s << svg_open(chart.name, chart.series.size(), kWidth, kHeight, chart.title);
  s << "<rect class=\"plot-area\" x=\"" << coord(pl) << "\" y=\"" << coord(pt) << "\" width=\"" << coord(pr - pl)
    << "\" height=\"" << coord(pb - pt) << "\"/>\n";
  s << "<g class=\"axes\">\n";
  for (double t : nice_ticks(x0, x1, 6)) {
    s << "<line class=\"grid\" x1=\"" << coord(sx(t)) << "\" y1=\"" << coord(pt) << "\" x2=\"" << coord(sx(t))
      << "\" y2=\"" << coord(pb) << "\"/>";
    s << "<text class=\"tick\" x=\"" << coord(sx(t)) << "\" y=\"" << coord(pb + 16)
      << "\" text-anchor=\"middle\">" << fmt("%g", t) << "</text>\n";
  }
  for (double t : nice_ticks(y0, y1, 5)) {
    s << "<line class=\"grid\" x1=\"" << coord(pl) << "\" y1=\"" << coord(sy(t)) << "\" x2=\"" << coord(pr)
      << "\" y2=\"" << coord(sy(t)) << "\"/>";
    s << "<text class=\"tick\" x=\"" << coord(pl - 6) << "\" y=\"" << coord(sy(t) + 4) << "\" text-anchor=\"end\">"
      << fmt("%g", t) << "</text>\n";
  }
  s << "<text class=\"label\" x=\"" << coord((pl + pr) / 2) << "\" y=\"" << coord(kHeight - 12)
    << "\" text-anchor=\"middle\">" << escape_html(chart.x_label) << "</text>\n";
  s << "<text class=\"label\" transform=\"translate(16 " << coord((pt + pb) / 2)
    << ") rotate(-90)\" text-anchor=\"middle\">" << escape_html(chart.y_label) << "</text>\n";
  s << "</g>\n";

  for (size_t i = 0; i < chart.series.size(); ++i) {
    const Series& se = chart.series[i];
    const int64_t points = finite_points(se.x, se.y);
    const std::string col = escape_html(se.color.empty() ? std::string(color(i)) : se.color);
    s << "<g class=\"series\" data-label=\"" << escape_html(se.label) << "\" data-points=\"" << points
      << "\" stroke=\"" << col << "\" fill=\"" << col << "\">\n";
    if (!se.lo.empty() && !se.hi.empty()) {
      const std::string band = svg_band(se.x, se.lo, se.hi, sx, sy);
      if (!band.empty()) s << "<path class=\"band\" d=\"" << band << "\"/>\n";
    }
    const std::string line = svg_path(se.x, se.y, sx, sy);
    if (!line.empty()) s << "<path class=\"line\" d=\"" << line << "\"/>\n";
    if (se.markers)
      for (size_t k = 0; k < std::min(se.x.size(), se.y.size()); ++k)
        if (std::isfinite(se.x[k]) && std::isfinite(se.y[k]))
          s << "<circle cx=\"" << coord(sx(se.x[k])) << "\" cy=\"" << coord(sy(se.y[k])) << "\" r=\"3\"/>";
    s << "</g>\n";
    const double ly = pt + 8 + 18.0 * static_cast<double>(i);
    s << "<g class=\"legend\"><line x1=\"" << coord(pr + 14) << "\" y1=\"" << coord(ly) << "\" x2=\""
      << coord(pr + 34) << "\" y2=\"" << coord(ly) << "\" stroke=\"" << col
      << "\" stroke-width=\"3\"/><text x=\"" << coord(pr + 40) << "\" y=\"" << coord(ly + 4) << "\">"
      << escape_html(se.label) << (points == 0 ? " (no data)" : "") << "</text></g>\n";
  }
  if (chart.series.empty())
    s << "<text class=\"empty\" x=\"" << coord((pl + pr) / 2) << "\" y=\"" << coord((pt + pb) / 2)
      << "\" text-anchor=\"middle\">no data for this chart</text>\n";
  s << "</svg>\n";
  return s.str();
}

std::string svg_bar_chart(const BarChart& chart) {
  const size_t nc = chart.categories.size(), ns = chart.series_labels.size();
  constexpr double kBar = 9, kGroupGap = 10, kLabel = 150, kBarsRight = 560;
  const double pt = kTop, plot_h = std::max(1.0, static_cast<double>(nc) * (static_cast<double>(ns) * kBar + kGroupGap));
  const double pb = pt + plot_h, height = pb + kBottom, width = kBarsRight + kRight;
  double vmax = 0;
  for (const auto& row : chart.values)
    for (double v : row)
      if (std::isfinite(v)) vmax = std::max(vmax, v);
  if (vmax <= 0) vmax = chart.percent ? 0.01 : 1.0;
  const double mult = chart.percent ? 100.0 : 1.0;
  const Scale sx{0, vmax * mult, kLabel, kBarsRight};

  std::ostringstream s;
  s << svg_open(chart.name, ns, width, height, chart.title);
  s << "<rect class=\"plot-area\" x=\"" << coord(kLabel) << "\" y=\"" << coord(pt) << "\" width=\""
    << coord(kBarsRight - kLabel) << "\" height=\"" << coord(plot_h) << "\"/>\n<g class=\"axes\">\n";
  for (double t : nice_ticks(0, vmax * mult, 5)) {
    s << "<line class=\"grid\" x1=\"" << coord(sx(t)) << "\" y1=\"" << coord(pt) << "\" x2=\"" << coord(sx(t))
      << "\" y2=\"" << coord(pb) << "\"/><text class=\"tick\" x=\"" << coord(sx(t)) << "\" y=\"" << coord(pb + 16)
      << "\" text-anchor=\"middle\">" << fmt("%g", t) << "</text>\n";
  }
  for (size_t c = 0; c < nc; ++c) {
    const double gy = pt + static_cast<double>(c) * (static_cast<double>(ns) * kBar + kGroupGap) + kGroupGap / 2;
    s << "<text class=\"tick\" x=\"" << coord(kLabel - 6) << "\" y=\"" << coord(gy + static_cast<double>(ns) * kBar / 2 + 4)
      << "\" text-anchor=\"end\">" << escape_html(chart.categories[c]) << "</text>\n";
  }
  s << "<text class=\"label\" x=\"" << coord((kLabel + kBarsRight) / 2) << "\" y=\"" << coord(height - 12)
    << "\" text-anchor=\"middle\">" << escape_html(chart.value_label) << "</text>\n</g>\n";

  for (size_t i = 0; i < ns; ++i) {
    const std::string col =
        escape_html(i < chart.series_colors.size() && !chart.series_colors[i].empty() ? chart.series_colors[i] : color(i));
    int64_t points = 0;
    std::ostringstream bars, values;
    for (size_t c = 0; c < nc; ++c) {
      const double v = i < chart.values.size() && c < chart.values[i].size() ? chart.values[i][c] : kNaN;
      if (!std::isfinite(v)) continue;
      const double y = pt + static_cast<double>(c) * (static_cast<double>(ns) * kBar + kGroupGap) + kGroupGap / 2 +
                       static_cast<double>(i) * kBar;
      const double w = sx(v * mult) - kLabel;
      if (w > 0) {
        ++points;
        bars << "<rect x=\"" << coord(kLabel) << "\" y=\"" << coord(y) << "\" width=\"" << coord(w)
             << "\" height=\"" << coord(kBar - 1) << "\" fill-opacity=\"0.45\"/>";
        const double in = i < chart.inner.size() && c < chart.inner[i].size() ? chart.inner[i][c] : kNaN;
        if (std::isfinite(in) && in > 0)
          bars << "<rect class=\"inner\" x=\"" << coord(kLabel) << "\" y=\"" << coord(y) << "\" width=\""
               << coord(sx(in * mult) - kLabel) << "\" height=\"" << coord(kBar - 1) << "\"/>";
      }
      values << "<text class=\"value\" x=\"" << coord(kLabel + std::max(w, 0.0) + 3) << "\" y=\""
             << coord(y + kBar - 2) << "\">" << fmt(chart.percent ? "%.3g%%" : "%.3g", v * mult) << "</text>";
    }
    s << "<g class=\"series\" data-label=\"" << escape_html(chart.series_labels[i]) << "\" data-points=\"" << points
      << "\" fill=\"" << col << "\">" << bars.str() << "</g>\n";
    s << "<g class=\"values\">" << values.str() << "</g>\n";
    const double ly = pt + 8 + 18.0 * static_cast<double>(i);
    s << "<g class=\"legend\"><rect x=\"" << coord(kBarsRight + 14) << "\" y=\"" << coord(ly - 5)
      << "\" width=\"20\" height=\"10\" fill=\"" << col << "\"/><text x=\"" << coord(kBarsRight + 40)
      << "\" y=\"" << coord(ly + 4) << "\">" << escape_html(chart.series_labels[i]) << "</text></g>\n";
  }
  if (ns == 0 || nc == 0)
    s << "<text class=\"empty\" x=\"" << coord((kLabel + kBarsRight) / 2) << "\" y=\"" << coord(pt + 20)
      << "\" text-anchor=\"middle\">no inspector data for this chart</text>\n";
  s << "</svg>\n";
  return s.str();
}

// The charts -----------------------------------------------------------------------------------

std::vector<std::string> chart_names() { return {"loss", "loss-gap", "accuracy", "loss-scale", "underflow"}; }

namespace {

// One series per policy: the mean across seeds, with a mean -/+ std band for several seeds.
Series band_series(const std::string& label, const std::vector<std::vector<std::pair<double, double>>>& curves,
                   bool markers) {
  const Band b = aggregate(curves);
  Series s;
  s.label = label;
  s.x = b.x;
  s.y = b.mean;
  s.markers = markers;
  if (curves.size() > 1) {
    for (size_t i = 0; i < b.x.size(); ++i) {
      s.lo.push_back(b.mean[i] - b.std[i]);
      s.hi.push_back(b.mean[i] + b.std[i]);
    }
  }
  return s;
}

}  // namespace

LineChart loss_chart(const std::vector<RunMetrics>& runs) {
  LineChart c{"loss", "Training loss (mean of each log interval; line: mean over seeds, band: ± 1 std)", "step",
              "training loss", {}};
  for (const std::string& policy : policy_order(runs)) {
    std::vector<std::vector<std::pair<double, double>>> curves;
    for (const RunMetrics* r : runs_of(runs, policy)) {
      auto& curve = curves.emplace_back();
      for (const LogPoint& p : r->logs) curve.emplace_back(static_cast<double>(p.step), p.loss);
    }
    c.series.push_back(band_series(policy, curves, false));
    c.series.back().color = policy_color(runs, policy);
  }
  return c;
}

LineChart loss_gap_chart(const std::vector<RunMetrics>& runs, const std::string& reference) {
  LineChart c{"loss-gap", "Smoothed training loss minus " + reference + "'s, same seed (EMA " + fmt("%g", kGapAlpha) +
                              "; band: ± 1 std over seeds)",
              "step", "loss - " + reference + " loss", {}};
  for (const std::string& policy : policy_order(runs)) {
    if (policy == reference) continue;
    std::vector<std::vector<std::pair<double, double>>> curves;
    for (const RunMetrics* r : runs_of(runs, policy)) {
      const RunMetrics* ref = nullptr;
      for (const RunMetrics& o : runs)
        if (o.policy == reference && o.seed == r->seed) ref = &o;
      if (ref == nullptr) continue;
      std::vector<double> a, b;
      for (const LogPoint& p : r->logs) a.push_back(p.loss);
      for (const LogPoint& p : ref->logs) b.push_back(p.loss);
      const std::vector<double> sa = ema(a, kGapAlpha), sb = ema(b, kGapAlpha);
      std::map<int64_t, double> at;
      for (size_t i = 0; i < ref->logs.size(); ++i) at[ref->logs[i].step] = sb[i];
      auto& curve = curves.emplace_back();
      for (size_t i = 0; i < r->logs.size(); ++i)
        if (const auto it = at.find(r->logs[i].step); it != at.end())
          curve.emplace_back(static_cast<double>(r->logs[i].step), sa[i] - it->second);
    }
    if (curves.empty()) continue;
    c.series.push_back(band_series(policy, curves, false));
    c.series.back().color = policy_color(runs, policy);
  }
  return c;
}

LineChart accuracy_chart(const std::vector<RunMetrics>& runs) {
  LineChart c{"accuracy", "Test accuracy after each epoch (mean over seeds, band: ± 1 std)", "step",
              "test accuracy (%)", {}};
  for (const std::string& policy : policy_order(runs)) {
    std::vector<std::vector<std::pair<double, double>>> curves;
    for (const RunMetrics* r : runs_of(runs, policy)) {
      auto& curve = curves.emplace_back();
      for (const EpochPoint& p : r->epochs) curve.emplace_back(static_cast<double>(p.step), 100.0 * p.test_accuracy);
    }
    c.series.push_back(band_series(policy, curves, true));
    c.series.back().color = policy_color(runs, policy);
  }
  return c;
}

LineChart loss_scale_chart(const std::vector<RunMetrics>& runs) {
  // log2: the dynamic scaler halves and doubles, so its path is a staircase of powers of two.
  LineChart c{"loss-scale", "Loss scale of the policies with dynamic loss scaling", "step", "log2(loss scale)", {}};
  for (const std::string& policy : policy_order(runs)) {
    std::vector<std::vector<std::pair<double, double>>> curves;
    bool scaled = false;
    for (const RunMetrics* r : runs_of(runs, policy)) {
      auto& curve = curves.emplace_back();
      for (const LogPoint& p : r->logs) {
        scaled = scaled || p.loss_scale.has_value();
        curve.emplace_back(static_cast<double>(p.step),
                           p.loss_scale && *p.loss_scale > 0 ? std::log2(*p.loss_scale) : kNaN);
      }
    }
    if (!scaled) continue;
    c.series.push_back(band_series(policy, curves, true));
    c.series.back().color = policy_color(runs, policy);
  }
  return c;
}

BarChart underflow_chart(const std::vector<RunMetrics>& runs) {
  BarChart c;
  c.name = "underflow";
  c.title = "Gradients below F16's normal range (light: |g| < 2^-14, dark: < 2^-24, flushed)";
  c.value_label = "share of the parameter's gradient values (%), all sampled steps and seeds";
  std::vector<std::string> policies;
  for (const std::string& p : policy_order(runs))
    if (is_f16_policy(p) && !policy_grads(runs, p).empty()) policies.push_back(p);
  if (policies.empty())  // no F16 policy inspected: show whatever was
    for (const std::string& p : policy_order(runs))
      if (!policy_grads(runs, p).empty()) policies.push_back(p);
  for (const std::string& p : policies)
    for (const GradRange& g : policy_grads(runs, p))
      if (std::find(c.categories.begin(), c.categories.end(), g.name) == c.categories.end())
        c.categories.push_back(g.name);
  for (const std::string& p : policies) {
    c.series_labels.push_back(p);
    c.series_colors.push_back(policy_color(runs, p));
    const std::vector<GradRange> grads = policy_grads(runs, p);
    auto& v = c.values.emplace_back(c.categories.size(), kNaN);
    auto& in = c.inner.emplace_back(c.categories.size(), kNaN);
    for (size_t k = 0; k < c.categories.size(); ++k)
      for (const GradRange& g : grads)
        if (g.name == c.categories[k]) {
          v[k] = g.under_norm_fraction();
          in[k] = g.under_sub_fraction();
        }
  }
  return c;
}

namespace {

constexpr const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 12px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:0.85em}th,td{padding:3px 6px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:0.9em}dt{font-weight:600}dd{margin:0}
svg{display:block;margin:8px 0;max-width:100%;height:auto;font-size:11px}
svg .title{font-size:13px;font-weight:600}svg .plot-area{fill:#fcfcfc;stroke:#999}
svg .grid{stroke:#e4e4e4}svg .tick{fill:#555}svg .label{fill:#333}
svg .series .line{fill:none;stroke-width:1.8}svg .series .band{fill-opacity:0.15;stroke:none}
svg .series circle{stroke:none}svg .inner{fill-opacity:1}svg .value{fill:#444;font-size:9px}
svg .legend text{fill:#222}svg .empty{fill:#888}
.note{color:#555;font-size:0.85em}pre#render-check{display:none}
)";

// Measures each drawn series once the page is laid out; the render test reads the JSON back.
constexpr const char* kRenderCheck = R"(
(function(){
  var out=[];
  document.querySelectorAll('svg[data-chart]').forEach(function(svg){
    var area=svg.querySelector('rect.plot-area').getBBox();
    var box=svg.getBoundingClientRect();
    var rec={chart:svg.getAttribute('data-chart'),declared:+svg.getAttribute('data-series'),
             width:box.width,height:box.height,series:[]};
    svg.querySelectorAll('g.series').forEach(function(g){
      var b=g.getBBox(),len=0;
      g.querySelectorAll('path.line').forEach(function(p){len+=p.getTotalLength();});
      rec.series.push({label:g.getAttribute('data-label'),points:+g.getAttribute('data-points'),
        width:b.width,height:b.height,length:len,
        inside:b.x>=area.x-4&&b.y>=area.y-4&&b.x+b.width<=area.x+area.width+4&&b.y+b.height<=area.y+area.height+4});
    });
    out.push(rec);
  });
  document.getElementById('render-check').textContent=JSON.stringify(out);
})();
)";

std::string html_table(const std::vector<PolicySummary>& rows) {
  std::ostringstream s;
  s << "<div class=\"scroll\"><table>\n<tr>";
  for (const std::string& h : table_headers()) s << "<th>" << escape_html(h) << "</th>";
  s << "</tr>\n";
  for (const PolicySummary& r : rows) {
    s << "<tr>";
    for (const std::string& c : table_cells(r)) s << "<td>" << escape_html(c) << "</td>";
    s << "</tr>\n";
  }
  s << "</table></div>\n";
  return s.str();
}

}  // namespace

std::string render_html(const ReportInput& input) {
  const std::vector<PolicySummary> rows = summarize(input.runs, input.reference);
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" << escape_html(input.title)
    << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n";
  s << "<h1>" << escape_html(input.title) << "</h1>\n";
  if (!input.settings.empty()) {
    s << "<dl>\n";
    for (const auto& [k, v] : input.settings) s << "<dt>" << escape_html(k) << "</dt><dd>" << escape_html(v) << "</dd>\n";
    s << "</dl>\n";
  }
  s << "<h2>Summary</h2>\n" << html_table(rows);
  s << "<p class=\"note\">Cells show mean ± standard deviation over the seeds. Final/best accuracy: test set after the "
       "last/best epoch. Skipped: optimizer steps the loss scaler skipped (Inf/NaN gradients). ms/step: training time "
       "per optimizer step (evaluation excluded). Peak MB: the run's peak resident memory. "
    << escape_html(loss_gap_definition()) << ".</p>\n";
  s << "<h2>What this shows</h2>\n<ul>\n";
  const std::vector<std::string> notes = findings(rows, input.runs);
  if (notes.empty()) s << "<li>No run produced metrics.</li>\n";
  for (const std::string& n : notes) s << "<li>" << escape_html(n) << "</li>\n";
  s << "</ul>\n";
  s << "<h2>Training loss</h2>\n" << svg_line_chart(loss_chart(input.runs));
  s << "<h2>Loss against " << escape_html(input.reference) << "</h2>\n"
    << svg_line_chart(loss_gap_chart(input.runs, input.reference));
  s << "<h2>Test accuracy</h2>\n" << svg_line_chart(accuracy_chart(input.runs));
  s << "<h2>Loss scale</h2>\n" << svg_line_chart(loss_scale_chart(input.runs));
  s << "<h2>F16 underflow of the gradients</h2>\n"
    << "<p class=\"note\">From the inspector's sampled steps: each parameter's gradient as the backward produced it "
       "(before unscaling, so a scaled policy shows its gradients times the loss scale), compared with F16's smallest "
       "normal (2^-14) and subnormal (2^-24) magnitudes. Exact zeros are not counted: values an F16 backward "
       "flushed reach the F32 gradient as zeros, so the list above compares the share of exact zeros with fp32's.</p>\n"
    << svg_bar_chart(underflow_chart(input.runs));
  s << "<pre id=\"render-check\"></pre>\n<script>" << kRenderCheck << "</script>\n</body>\n</html>\n";
  return s.str();
}

// Manifest ------------------------------------------------------------------------------------------

Json manifest_to_json(const Manifest& m) {
  Json j;
  Json settings = Json::object();
  for (const auto& [k, v] : m.settings) settings[k] = v;
  j["settings"] = std::move(settings);
  Json runs = Json::array();
  for (const ManifestRun& r : m.runs) {
    Json jr;
    jr["policy"] = r.policy;
    jr["seed"] = r.seed;
    jr["metrics"] = r.metrics;
    jr["peak_rss_mb"] = std::isfinite(r.peak_rss_mb) ? Json(r.peak_rss_mb) : Json(nullptr);
    jr["wall_s"] = std::isfinite(r.wall_s) ? Json(r.wall_s) : Json(nullptr);
    jr["exit_code"] = r.exit_code;
    runs.push_back(std::move(jr));
  }
  j["runs"] = std::move(runs);
  return j;
}

Manifest manifest_from_json(const Json& j) {
  if (!j.is_object() || !j.contains("runs") || !j["runs"].is_array())
    throw ReportError("manifest: expected an object with a \"runs\" array");
  Manifest m;
  if (j.contains("settings") && j["settings"].is_object())
    for (const auto& [k, v] : j["settings"].items()) m.settings.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  size_t i = 0;
  for (const Json& jr : j["runs"]) {
    const std::string where = "manifest: run " + std::to_string(i++);
    if (!jr.is_object() || !jr.contains("policy") || !jr["policy"].is_string() || !jr.contains("metrics") ||
        !jr["metrics"].is_string())
      throw ReportError(where + ": needs string \"policy\" and \"metrics\"");
    ManifestRun r;
    r.policy = jr["policy"].get<std::string>();
    r.seed = required_int(jr, "seed", where);
    r.metrics = jr["metrics"].get<std::string>();
    r.peak_rss_mb = number_or_nan(jr, "peak_rss_mb");
    r.wall_s = number_or_nan(jr, "wall_s");
    r.exit_code = static_cast<int>(int_or(jr, "exit_code", 0));
    m.runs.push_back(std::move(r));
  }
  return m;
}

}  // namespace mantissa::examples::report
