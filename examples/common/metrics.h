// Metrics as JSON lines: one self-contained JSON object per line, flushed as it is written, so
// a run that is killed still leaves every line it reached and `tail -f` / jq can follow it.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace mantissa::examples {

using Json = nlohmann::ordered_json;

class MetricsWriter {
 public:
  // An empty path disables writing. append keeps the lines already there (a resumed run);
  // otherwise the file is truncated. Throws std::runtime_error naming the path and errno text.
  explicit MetricsWriter(const std::string& path, bool append = false);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  bool enabled() const { return file_ != nullptr; }
  void write(const Json& record);

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// A double as JSON, NaN and infinities as null (JSON has no spelling for them).
Json json_number(double value);

}  // namespace mantissa::examples
