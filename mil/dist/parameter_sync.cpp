#include "mil/dist/parameter_sync.hpp"

#include <algorithm>
#include <string>

#include "mil/util/error.hpp"

namespace mil {

void broadcast_parameters(const std::vector<torch::Tensor>& params, Communicator& comm, int root) {
  if (params.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> values;
  values.reserve(params.size());
  for (const torch::Tensor& p : params) values.push_back(p.detach());
  torch::Tensor flat = at::flatten_dense_tensors(values).to(torch::kCPU);
  comm.broadcast(flat, root);
  const std::vector<torch::Tensor> parts = at::unflatten_dense_tensors(flat.to(params[0].device()), values);
  for (size_t i = 0; i < params.size(); ++i) values[i].copy_(parts[i]);
}

void average_gradients(const std::vector<torch::Tensor>& params, Communicator& comm, int64_t bags_per_step,
                       std::vector<float>* flags) {
  if (bags_per_step < 1) {
    throw Error("", "average_gradients", "bags_per_step must be >= 1, got " + std::to_string(bags_per_step));
  }
  if (params.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const torch::Tensor& p : params) grads.push_back(p.grad().defined() ? p.grad() : torch::zeros_like(p));
  torch::Tensor flat = at::flatten_dense_tensors(grads).to(torch::kCPU);
  const int64_t n_grad = flat.numel();
  if (flags != nullptr && !flags->empty()) {
    flat = torch::cat({flat, torch::tensor(*flags, flat.options())});
  }
  comm.allreduce_sum(flat);
  if (flags != nullptr && !flags->empty()) {
    const torch::Tensor summed = flat.slice(0, n_grad).to(torch::kFloat);
    std::copy(summed.data_ptr<float>(), summed.data_ptr<float>() + summed.numel(), flags->begin());
    flat = flat.slice(0, 0, n_grad);
  }
  flat.div_(static_cast<double>(bags_per_step));
  const std::vector<torch::Tensor> parts = at::unflatten_dense_tensors(flat.to(params[0].device()), grads);
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].grad().defined()) {
      params[i].mutable_grad().copy_(parts[i]);
    } else {
      params[i].mutable_grad() = parts[i].clone();
    }
  }
}

void sum_flat_gradients(torch::Tensor& buffer, int64_t n_grad, Communicator& comm, std::vector<float>* flags) {
  const int64_t n_flags = flags == nullptr ? 0 : static_cast<int64_t>(flags->size());
  if (buffer.dim() != 1 || buffer.numel() < n_grad + n_flags || !buffer.is_contiguous()) {
    throw Error("", "sum_flat_gradients",
                "the gradient buffer has no room for " + std::to_string(n_flags) + " flags after its gradients");
  }
  torch::NoGradGuard no_grad;
  torch::Tensor used = buffer.narrow(0, 0, n_grad + n_flags);
  if (!used.device().is_cpu() && comm.reduces_on(used.device())) {
    // NCCL: the buffer stays on the GPU. The flags go up in one small copy and come back in one, the step's
    // only read on the host (their sums decide a stop or a checkpoint at this step).
    if (n_flags > 0) used.narrow(0, n_grad, n_flags).copy_(torch::tensor(*flags, torch::kFloat));
    comm.allreduce_sum(used);
    if (n_flags > 0) {
      const torch::Tensor sums = used.narrow(0, n_grad, n_flags).to(torch::kCPU);
      std::copy(sums.data_ptr<float>(), sums.data_ptr<float>() + n_flags, flags->begin());
    }
    return;
  }
  // The CPU, or a GPU with MPI/Gloo: the buffer through the host and back.
  torch::Tensor host = used.device().is_cpu() ? used : used.to(torch::kCPU);
  float* data = host.data_ptr<float>();
  for (int64_t i = 0; i < n_flags; ++i) data[n_grad + i] = (*flags)[static_cast<size_t>(i)];
  comm.allreduce_sum(host);
  for (int64_t i = 0; i < n_flags; ++i) (*flags)[static_cast<size_t>(i)] = data[n_grad + i];
  if (!used.device().is_cpu()) used.copy_(host);
}

}  // namespace mil
