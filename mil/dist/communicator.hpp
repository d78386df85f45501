#pragma once
// How ranks of one training job talk. The trainer only ever uses this interface, so one process and N
// MPI ranks run the same code path: the local implementation is world size 1 with no-op collectives.
#include <torch/torch.h>

#include <memory>
#include <string>

namespace mil {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes on this host (picks the GPU)
  virtual int local_size() const = 0;  // processes on this host (share its cores)
  bool is_main() const { return rank() == 0; }
  // What carries the collectives, for the log ("MPI", "c10d gloo (store ..., device cpu)").
  virtual std::string describe() const = 0;

  // In place: every rank ends with the element-wise sum over ranks. Float32/float64 tensors on the CPU, or
  // on a device for which reduces_on() is true.
  virtual void allreduce_sum(torch::Tensor& t) = 0;
  // Whether allreduce_sum works on a tensor on `device` in place, with no copy through the host: the CPU,
  // and this rank's GPU for NCCL (C10dCommunicator). Others need their tensors staged through the CPU.
  virtual bool reduces_on(const torch::Device& device) const { return device.is_cpu(); }
  // In place: every rank ends with rank `root`'s values.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  // The largest of every rank's value (agreeing on a stop flag, a step count).
  virtual int64_t allreduce_max(int64_t value) = 0;
  // Every rank's 1-D CPU float32/float64 tensor, concatenated in rank order; lengths may differ by rank.
  virtual torch::Tensor allgather(const torch::Tensor& t) = 0;
  // In place: every rank ends with rank `root`'s bytes (a checkpoint only rank 0 has read).
  virtual void broadcast_bytes(std::string& bytes, int root) = 0;
  virtual void barrier() = 0;
  // A collective that has not completed after this many seconds ends the job with an error naming the ranks
  // that did not arrive (a hung, not dead, rank); 0 = wait forever. No-op for a single process.
  virtual void set_collective_timeout(double /*seconds*/) {}
  // Ends every rank of the job with this exit code (after an error on one rank).
  [[noreturn]] virtual void abort(int code) = 0;
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  int local_size() const override { return 1; }
  std::string describe() const override { return "one process"; }
  void allreduce_sum(torch::Tensor&) override {}
  void broadcast(torch::Tensor&, int) override {}
  int64_t allreduce_max(int64_t value) override { return value; }
  torch::Tensor allgather(const torch::Tensor& t) override { return t.clone(); }
  void broadcast_bytes(std::string&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
};

// How the ranks of a job talk (--comm): MPI, or libtorch's c10d with Gloo (CPU) or NCCL (GPU).
enum class Transport { kMpi, kGloo, kNccl };

// The transport --comm `kind` names for --device `device` on this machine and build: "auto" is NCCL when the
// build has it and the device is a GPU, else MPI. Throws mil::Error naming --comm, before anything starts,
// when the build lacks the back end, or when NCCL is asked for without a GPU (--device cpu, or none visible).
Transport choose_transport(const std::string& kind, const std::string& device);

struct CommOptions {
  std::string kind = "mpi";          // --comm
  std::string device = "cpu";        // --device
  double collective_timeout = 1800;  // --collective-timeout (seconds, 0 = none)
};

// Without mpirun (OMPI_COMM_WORLD_SIZE unset) the local communicator: MPI is never initialised. Under
// mpirun, the transport choose_transport() picks: the MpiCommunicator, or the C10dCommunicator on top of it
// (NCCL on this rank's GPU, resolve_device). The transport is checked first, on every rank alike, so a
// --comm that cannot work here fails at once on every rank.
std::unique_ptr<Communicator> make_communicator(const CommOptions& options = {});

}  // namespace mil
