// Device: where a tensor's storage lives (the CPU or CUDA device N), parsed from "cpu",
// "cuda" or "cuda:1" as libtorch does.
#pragma once

#include <ostream>
#include <string>

namespace mantissa {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  Device() = default;
  Device(DeviceType t, int i = 0) : type(t), index(i) {}  // NOLINT: implicit like libtorch
  Device(const std::string& spec);                          // NOLINT
  Device(const char* spec) : Device(std::string(spec)) {}   // NOLINT

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && (is_cpu() || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

inline const Device kCPU{DeviceType::CPU, 0};
inline const Device kCUDA{DeviceType::CUDA, 0};

std::ostream& operator<<(std::ostream& os, const Device& d);

}  // namespace mantissa
