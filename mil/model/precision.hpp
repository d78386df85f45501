#pragma once
// The arithmetic of the training step's matrix products (--precision). fp32 is the default and the parity
// reference. bf16 rounds the operands of the large products to bfloat16 and multiplies them with float32
// accumulation (oneDNN on the CPU, cuBLAS on a GPU); master weights, gradients, loss, softmax and Adam stay
// float32. It is only worth it where bfloat16 is multiplied natively: CPUs with AVX512-BF16 or AMX-BF16 and
// GPUs of compute capability 8.0 (Ampere) or newer. Elsewhere it is emulated, slower than float32, so
// dsmil_train refuses it there (require_precision_support).
#include <torch/torch.h>

#include <string>

namespace mil {

enum class Precision { kFloat32, kBFloat16 };

Precision parse_precision(const std::string& s);  // "fp32" | "bf16"; throws mil::Error naming --precision
std::string precision_name(Precision p);

// What a CPU with these /proc/cpuinfo flags lacks for --precision bf16 ("" when it has avx512_bf16 or
// amx_bf16). The kernel lists amx_bf16 only when it enables AMX state, so the flags are what programs can use.
std::string bf16_cpu_problem(const std::string& cpu_flags);

// What a GPU of compute capability major.minor lacks for --precision bf16 ("" from 8.0: bfloat16 tensor cores).
std::string bf16_gpu_problem(int major, int minor);

// Throws mil::Error naming --precision when `device` cannot run `p` usefully: bf16 on a CPU whose flags (read
// from `cpuinfo`) lack bfloat16 multiplication, on a GPU older than compute capability 8.0, or on any other
// device.
void require_precision_support(Precision p, const torch::Device& device, const std::string& cpuinfo = "/proc/cpuinfo");

}  // namespace mil
