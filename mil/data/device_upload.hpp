#pragma once
// Bags copied to the training GPU ahead of the step that uses them: the loader's thread stages a bag's
// features in page-locked memory and copies them on a side stream of its own, recording an event; the
// thread that takes the bag makes its own stream wait for that event (a wait on the GPU, not on the host).
// So the copy of bag i + 1 runs while the GPU computes step i, as far ahead as the loader reads (--prefetch).
// On a CPU device, or in a libtorch without CUDA, nothing is copied and there is nothing to wait for.
#include <torch/torch.h>

#include <memory>

namespace mil {

// A tensor on its way to the device: usable on another stream only after DeviceUploader::arrived.
struct Upload {
  torch::Tensor tensor;
  std::shared_ptr<void> copied;  // the copy's CUDA event; null when there is nothing to wait for
};

class DeviceUploader {
 public:
  explicit DeviceUploader(const torch::Device& device);
  // On the producing thread: starts the copy of a host tensor (returned as is when it is not on the CPU, or
  // when the device is the CPU).
  Upload start(const torch::Tensor& host) const;
  // On the consuming thread: its current stream waits for the copy, and the allocator learns that this stream
  // uses the memory (it was allocated on the side stream). Returns the device tensor.
  static torch::Tensor arrived(Upload& upload);

 private:
  torch::Device device_;
  std::shared_ptr<void> stream_;  // the side stream (CUDA only)
};

}  // namespace mil
