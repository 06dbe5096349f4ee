// A one-line progress bar on stderr (percent, bar, loss, images/s, ETA), redrawn in place at
// most a few times per second. Silent unless stderr is a terminal, so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mantissa::examples {

class ProgressBar {
 public:
  // `label` heads the line ("epoch 1/3"); `total` is the number of steps.
  ProgressBar(std::string label, int64_t total);
  ~ProgressBar();  // finishes the line if done() was not called

  // Step `done_steps` of total finished; `images` processed so far in this bar.
  void update(int64_t done_steps, int64_t images, double loss);
  // Draws the final state and ends the line.
  void done();

  // Whether bars are drawn at all: stderr is a TTY.
  static bool enabled();

 private:
  void draw(bool final);

  std::string label_;
  int64_t total_;
  int64_t steps_ = 0;
  int64_t images_ = 0;
  double loss_ = 0.0;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1:05", "12:03:09": a duration for people.
std::string format_duration(double seconds);

}  // namespace mantissa::examples
