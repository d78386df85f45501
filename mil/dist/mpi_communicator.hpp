#pragma once
// The Communicator over OpenMPI's MPI_COMM_WORLD, for a job launched by mpirun. One per process: the
// constructor initialises MPI and the destructor finalises it. MPI errors are returned rather than fatal,
// so each one becomes a mil::Error naming the MPI call and the rank. <mpi.h> stays out of this header.
#include <string>

#include "mil/dist/communicator.hpp"

namespace mil {

class MpiCommunicator final : public Communicator {
 public:
  // MPI_Init_thread with MPI_THREAD_FUNNELED: only the main thread calls MPI (the bag loader's threads
  // and libtorch's pool never do). Throws mil::Error when MPI is already initialised or cannot be.
  MpiCommunicator();
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  void allreduce_sum(torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root) override;
  int64_t allreduce_max(int64_t value) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  void broadcast_bytes(std::string& bytes, int root) override;
  void barrier() override;
  [[noreturn]] void abort(int code) override;

 private:
  int rank_ = -1;  // -1 until MPI_Comm_rank answers, for error messages during initialisation
  int world_size_ = 0;
  int local_rank_ = 0;
  int local_size_ = 0;
};

}  // namespace mil
