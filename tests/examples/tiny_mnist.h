// A tiny MNIST-format data set for the example-program tests: IDX files (data/mnist.h's
// format) whose digits are simple, learnable stripe patterns, and helpers to run an example.
#pragma once

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace mantissa::testing_examples {

inline void write_be32(std::ofstream& out, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  out.write(reinterpret_cast<const char*>(b), 4);
}

// Writes <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte: class c is a bright horizontal
// band at rows 2c..2c+4 plus deterministic pseudo-random noise (a fixed LCG).
inline void write_tiny_mnist(const std::filesystem::path& dir, int64_t train, int64_t test) {
  std::filesystem::create_directories(dir);
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 24;
  };
  auto write_split = [&](const std::string& prefix, int64_t n) {
    std::ofstream images(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary);
    std::ofstream labels(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary);
    if (!images || !labels) throw std::runtime_error("cannot write the tiny MNIST files in " + dir.string());
    write_be32(images, 2051);
    write_be32(images, static_cast<uint32_t>(n));
    write_be32(images, 28);
    write_be32(images, 28);
    write_be32(labels, 2049);
    write_be32(labels, static_cast<uint32_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto label = static_cast<unsigned char>(i % 10);
      std::vector<unsigned char> px(28 * 28);
      for (int r = 0; r < 28; ++r)
        for (int c = 0; c < 28; ++c) {
          const bool band = r >= 2 * label && r < 2 * label + 5;
          px[static_cast<size_t>(r * 28 + c)] = static_cast<unsigned char>(band ? 200 + next() % 56 : next() % 60);
        }
      images.write(reinterpret_cast<const char*>(px.data()), static_cast<std::streamsize>(px.size()));
      labels.put(static_cast<char>(label));
    }
  };
  write_split("train", train);
  write_split("t10k", test);
}

// Runs a shell command line; returns its exit status and fills `output` with its stdout.
inline int run_command(const std::string& command, std::string* output) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  std::string out;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh directory under the system temp dir, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& stem) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (stem + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace mantissa::testing_examples
