// JSON-lines metrics file: opened once, each record written whole and flushed.
#include "examples/common/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace mantissa::examples {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr)
    throw std::runtime_error("--metrics " + path + ": cannot open for writing (" + std::strerror(errno) + ")");
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsWriter::write(const Json& record) {
  if (file_ == nullptr) return;
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw std::runtime_error("--metrics " + path_ + ": write failed (" + std::strerror(errno) + ")");
}

Json json_number(double value) { return std::isfinite(value) ? Json(value) : Json(nullptr); }

}  // namespace mantissa::examples
