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

  // In place: every rank ends with the element-wise sum over ranks. CPU float32/float64 tensors.
  virtual void allreduce_sum(torch::Tensor& t) = 0;
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
  void allreduce_sum(torch::Tensor&) override {}
  void broadcast(torch::Tensor&, int) override {}
  int64_t allreduce_max(int64_t value) override { return value; }
  torch::Tensor allgather(const torch::Tensor& t) override { return t.clone(); }
  void broadcast_bytes(std::string&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override;
};

// The MPI communicator when this process was started by OpenMPI's mpirun (OMPI_COMM_WORLD_SIZE is set),
// else the local one: without mpirun, MPI is never initialised.
std::unique_ptr<Communicator> make_communicator();

}  // namespace mil
