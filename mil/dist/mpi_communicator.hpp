#pragma once
// The Communicator over OpenMPI's MPI_COMM_WORLD, for a job launched by mpirun. One per process: the
// constructor initialises MPI and the destructor finalises it. MPI errors are returned rather than fatal,
// so each one becomes a mil::Error naming the MPI call and the rank. <mpi.h> stays out of this header.
//
// Watchdog: every collective is started non-blocking and polled, so a collective that does not complete
// within the timeout (a rank stopped, swapped out, or stuck in I/O) ends the job instead of blocking the
// others forever. The rank that times out asks every rank, over a private duplicate of MPI_COMM_WORLD,
// which collective it is waiting in; ranks waiting in a collective answer from their polling loop, and the
// ones that do not answer within a few seconds are named in the error as the ranks that did not arrive.
#include <memory>
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
  std::string describe() const override { return "MPI"; }
  void allreduce_sum(torch::Tensor& t) override;
  void broadcast(torch::Tensor& t, int root) override;
  int64_t allreduce_max(int64_t value) override;
  torch::Tensor allgather(const torch::Tensor& t) override;
  void broadcast_bytes(std::string& bytes, int root) override;
  void barrier() override;
  void set_collective_timeout(double seconds) override;
  [[noreturn]] void abort(int code) override;

 private:
  class Watchdog;  // mpi_communicator.cpp: waits for collectives, names absent ranks

  int rank_ = -1;  // -1 until MPI_Comm_rank answers, for error messages during initialisation
  int world_size_ = 0;
  int local_rank_ = 0;
  int local_size_ = 0;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace mil
