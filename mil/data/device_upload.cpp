#include "mil/data/device_upload.hpp"

#ifdef DSMIL_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace mil {

DeviceUploader::DeviceUploader(const torch::Device& device) : device_(device) {
#ifdef DSMIL_HAVE_CUDA
  if (device_.is_cuda()) {
    stream_ = std::make_shared<c10::cuda::CUDAStream>(c10::cuda::getStreamFromPool(false, device_.index()));
  }
#endif
}

Upload DeviceUploader::start(const torch::Tensor& host) const {
  if (!device_.is_cuda() || !host.device().is_cpu()) return {host, nullptr};
#ifdef DSMIL_HAVE_CUDA
  const c10::cuda::CUDAStream& side = *std::static_pointer_cast<c10::cuda::CUDAStream>(stream_);
  c10::cuda::CUDAStreamGuard on_side(side);
  // From page-locked memory the copy is asynchronous; libtorch's pinned-memory cache keeps the staging buffer
  // until the copy is done.
  const torch::Tensor pinned = host.is_pinned() ? host : host.pin_memory();
  Upload up{pinned.to(device_, /*non_blocking=*/true), std::make_shared<at::cuda::CUDAEvent>()};
  std::static_pointer_cast<at::cuda::CUDAEvent>(up.copied)->record(side);
  return up;
#else
  return {host.to(device_), nullptr};
#endif
}

torch::Tensor DeviceUploader::arrived(Upload& upload) {
#ifdef DSMIL_HAVE_CUDA
  if (upload.copied) {
    const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(upload.tensor.device().index());
    std::static_pointer_cast<at::cuda::CUDAEvent>(upload.copied)->block(current);
    upload.tensor.record_stream(current);
    upload.copied.reset();
  }
#endif
  return upload.tensor;
}

}  // namespace mil
