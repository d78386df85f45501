#pragma once
// The Communicator over libtorch's c10d process groups: Gloo (CPU tensors; what the tests run here) or NCCL
// (CUDA tensors, the flat gradient reduced on the device). MPI stays the launcher: the ranks, the host-local
// ranks and abort() come from an MpiCommunicator this one owns, and MPI carries the rendezvous: rank 0 opens a
// c10d TCPStore on a free port and broadcasts its host:port over MPI (a TCPStore rather than a FileStore,
// since ranks on different hosts of a SageMaker job share no folder). c10d headers stay out of this header.
#include <memory>
#include <string>

#include "mil/dist/communicator.hpp"

namespace mil {

class MpiCommunicator;

enum class C10dBackend { kGloo, kNccl };

// Which c10d back ends this build has: Gloo when libtorch has its headers and symbols (Debian's 1.13 with
// libgloo-dev), NCCL when it is a CUDA libtorch with NCCL (PyPI's torch wheel). Checked by cmake/c10d.cmake.
bool c10d_backend_available(C10dBackend backend);
std::string c10d_backend_name(C10dBackend backend);

class C10dCommunicator final : public Communicator {
 public:
  // Takes over `mpi` (already initialised) for the rendezvous. Gloo works on CPU tensors; NCCL on this rank's
  // GPU as resolve_device(device_spec) picks it (one per host-local rank), and stages CPU tensors through it. Every
  // step of the set-up ends with an MPI agreement, so a failure on one rank is a mil::Error on every rank instead of
  // the others waiting for it in the store. `timeout_s` bounds each collective (0 = no bound); the store's connection
  // waits at most min(timeout_s, 300) s. Throws mil::Error when the back end is not in this build.
  C10dCommunicator(std::unique_ptr<MpiCommunicator> mpi, C10dBackend backend, const std::string& device_spec,
                   double timeout_s);
  ~C10dCommunicator() override;
  C10dCommunicator(const C10dCommunicator&) = delete;
  C10dCommunicator& operator=(const C10dCommunicator&) = delete;

  int rank() const override;
  int world_size() const override;
  int local_rank() const override;
  int local_size() const override;
  // Tensors may be on the CPU or (NCCL) on this rank's GPU; a tensor elsewhere than the group's device is
  // copied there and back. With NCCL, a device tensor's all-reduce is ordered on the current CUDA stream
  // without waiting on the host.
  void allreduce_sum(torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root) override;
  int64_t allreduce_max(int64_t value) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  void broadcast_bytes(std::string& bytes, int root) override;
  void barrier() override;
  bool reduces_on(const torch::Device& device) const override { return device == device_; }
  // For the job's log: "c10d gloo (store host:port, device cpu)".
  std::string describe() const override { return description_; }
  [[noreturn]] void abort(int code) override;

  C10dBackend backend() const { return backend_; }
  const torch::Device& device() const { return device_; }

 private:
  struct Group;  // the store and the process group, behind the c10d headers
  std::unique_ptr<MpiCommunicator> mpi_;
  C10dBackend backend_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<Group> group_;
  std::string description_;
};

}  // namespace mil
