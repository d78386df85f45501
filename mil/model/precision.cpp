#include "mil/model/precision.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include "mil/util/device.hpp"
#include "mil/util/error.hpp"

namespace mil {

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::kFloat32;
  if (s == "bf16") return Precision::kBFloat16;
  throw Error("", "--precision", "unknown value '" + s + "' (fp32, bf16)");
}

std::string precision_name(Precision p) {
  return p == Precision::kBFloat16 ? "bf16" : "fp32";
}

std::string bf16_cpu_problem(const std::string& cpu_flags) {
  std::istringstream in(cpu_flags);
  std::set<std::string> flags;
  for (std::string f; in >> f;) flags.insert(f);
  if (flags.count("avx512_bf16") > 0 || flags.count("amx_bf16") > 0) return "";
  return "this CPU has neither avx512_bf16 nor amx_bf16 (no native bfloat16 multiplication: oneDNN would emulate "
         "it, slower than fp32); use --precision fp32";
}

std::string bf16_gpu_problem(int major, int minor) {
  if (major >= 8) return "";
  const std::string cc = std::to_string(major) + "." + std::to_string(minor);
  if (major <= 0) return "the GPU's compute capability could not be read; use --precision fp32";
  return "compute capability " + cc +
         " has no bfloat16 tensor cores (8.0 or newer: A10G, A100, L4, H100, ...); use --precision fp32";
}

void require_precision_support(Precision p, const torch::Device& device, const std::string& cpuinfo) {
  if (p == Precision::kFloat32) return;
  if (device.is_cuda()) {
    const auto [major, minor] = cuda_compute_capability(device.has_index() ? device.index() : 0);
    const std::string problem = bf16_gpu_problem(major, minor);
    if (!problem.empty()) throw Error("", "--precision", "bf16 on " + device.str() + ": " + problem);
    return;
  }
  if (!device.is_cpu()) {
    throw Error("", "--precision",
                "bf16 is implemented for CPUs and CUDA GPUs only (device " + device.str() + "); use --precision fp32");
  }
  std::ifstream in(cpuinfo);
  if (!in) throw Error(cpuinfo, "--precision", "bf16 needs the CPU's flags, and this file cannot be read");
  std::string flags;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0) {  // the first processor's "flags\t\t: fpu vme ..." line
      flags = line.substr(line.find(':') == std::string::npos ? line.size() : line.find(':') + 1);
      break;
    }
  }
  const std::string problem = bf16_cpu_problem(flags);
  if (!problem.empty()) throw Error(cpuinfo, "--precision", "bf16: " + problem);
}

}  // namespace mil
