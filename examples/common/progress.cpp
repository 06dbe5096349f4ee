// The progress bar: ANSI-free (carriage return and spaces only) so any terminal shows it.
#include "examples/common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mantissa::examples {

namespace {
constexpr int kBarWidth = 24;
constexpr auto kRedrawEvery = std::chrono::milliseconds(200);
}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

bool ProgressBar::enabled() { return isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)), total_(std::max<int64_t>(total, 1)), enabled_(enabled()) {
  start_ = std::chrono::steady_clock::now();
  last_draw_ = start_ - kRedrawEvery;
}

ProgressBar::~ProgressBar() {
  if (!finished_ && enabled_ && steps_ > 0) std::fputc('\n', stderr);
}

void ProgressBar::update(int64_t done_steps, int64_t images, double loss) {
  steps_ = done_steps;
  images_ = images;
  loss_ = loss;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < kRedrawEvery) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::done() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  draw(true);
  std::fputc('\n', stderr);
}

void ProgressBar::draw(bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = std::min(1.0, static_cast<double>(steps_) / static_cast<double>(total_));
  const int filled = static_cast<int>(frac * kBarWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kBarWidth, '.');
  const double ips = elapsed > 0 ? static_cast<double>(images_) / elapsed : 0.0;
  // ETA from the mean step time so far; the first steps (warm-up) make it pessimistic briefly.
  const double eta = steps_ > 0 ? elapsed / static_cast<double>(steps_) * static_cast<double>(total_ - steps_) : NAN;
  std::fprintf(stderr, "\r%s %3d%% [%s] loss %.4f  %.0f img/s  %s %s ", label_.c_str(),
               static_cast<int>(frac * 100.0), bar.c_str(), loss_, ips, final ? "took" : "ETA",
               format_duration(final ? elapsed : eta).c_str());
  std::fflush(stderr);
}

}  // namespace mantissa::examples
