#include "core/device.h"

#include "core/error.h"

namespace mantissa {

Device::Device(const std::string& spec) {
  if (spec == "cpu") {
    type = DeviceType::CPU;
    return;
  }
  if (spec.rfind("cuda", 0) == 0) {
    type = DeviceType::CUDA;
    if (spec.size() == 4) return;
    if (spec[4] == ':' && spec.size() > 5 && spec.size() < 9) {
      int idx = 0;
      for (size_t i = 5; i < spec.size(); ++i) {
        MANTISSA_CHECK(spec[i] >= '0' && spec[i] <= '9', "device: bad device string '", spec,
                       "' (expected cpu, cuda or cuda:N)");
        idx = idx * 10 + (spec[i] - '0');
      }
      index = idx;
      return;
    }
  }
  MANTISSA_ERROR("device: bad device string '", spec, "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace mantissa
