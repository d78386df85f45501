// The multi-rank communicators with closed-form expectations, run by ctest as `mpirun -np 2 dsmil_mpi_tests`
// (MpiCommunicator) and `mpirun -np 2 dsmil_mpi_tests --comm gloo` (C10dCommunicator over c10d's Gloo); any
// world size works. bench/gpu_bench.sh runs them `--comm nccl` on a GPU machine, one rank per GPU. Every
// rank runs every test; the exit status is non-zero if any rank failed one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mil/dist/c10d_communicator.hpp"
#include "mil/dist/mpi_communicator.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

Communicator* comm = nullptr;  // the process's one communicator, made in main()
bool c10d = false;             // it is the C10dCommunicator (errors name the c10d operation)
bool nccl = false;             // over NCCL (bench/gpu_bench.sh, on a GPU machine): one rank per GPU

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Communicator, RanksOfOneHost) {
  const int w = comm->world_size();
  if (nccl && w == 1) GTEST_SKIP() << "one GPU: NCCL over one rank";
  ASSERT_GE(w, 2) << "run under mpirun -np 2 or more";
  EXPECT_EQ(std::to_string(w), std::getenv("OMPI_COMM_WORLD_SIZE"));
  EXPECT_EQ(std::to_string(comm->rank()), std::getenv("OMPI_COMM_WORLD_RANK"));
  // One host: the local ranks are the world's.
  EXPECT_EQ(comm->local_size(), w);
  EXPECT_EQ(comm->local_rank(), comm->rank());
  EXPECT_EQ(comm->is_main(), comm->rank() == 0);
}

TEST(Communicator, AllreduceSumInPlace) {
  const int w = comm->world_size();
  const double r = comm->rank();
  torch::Tensor f = torch::tensor({r + 1, 10 * (r + 1), -0.5}, torch::kFloat);
  comm->allreduce_sum(f);
  const double triangle = w * (w + 1) / 2.0;
  EXPECT_TRUE(torch::equal(f, torch::tensor({triangle, 10 * triangle, -0.5 * w}, torch::kFloat)));
  torch::Tensor d = torch::full({1000}, r + 0.25, torch::kDouble);
  comm->allreduce_sum(d);
  EXPECT_TRUE(torch::equal(d, torch::full({1000}, triangle - w + 0.25 * w, torch::kDouble)));
}

TEST(Communicator, BroadcastFromTheLastRank) {
  const int root = comm->world_size() - 1;
  torch::Tensor t = torch::full({2, 3}, static_cast<float>(comm->rank()));
  comm->broadcast(t, root);
  EXPECT_TRUE(torch::equal(t, torch::full({2, 3}, static_cast<float>(root))));
}

TEST(Communicator, AllreduceMax) {
  EXPECT_EQ(comm->allreduce_max(int64_t{7} * comm->rank() - (int64_t{1} << 40)),
            int64_t{7} * (comm->world_size() - 1) - (int64_t{1} << 40));
}

TEST(Communicator, AllgatherOfDifferentLengths) {
  // Rank r sends r copies of r (rank 0 sends nothing): 1, 2, 2, 3, 3, 3, ...
  const int r = comm->rank();
  const torch::Tensor mine = torch::full({r}, static_cast<double>(r), torch::kDouble);
  const torch::Tensor all = comm->allgather(mine);
  std::vector<double> expected;
  for (int q = 0; q < comm->world_size(); ++q) expected.insert(expected.end(), static_cast<size_t>(q), q);
  EXPECT_TRUE(torch::equal(all, torch::tensor(expected, torch::kDouble)));
  const torch::Tensor floats = comm->allgather(torch::ones({2}, torch::kFloat));
  EXPECT_EQ(floats.scalar_type(), torch::kFloat);
  EXPECT_EQ(floats.numel(), 2 * comm->world_size());
}

TEST(Communicator, AllgatherOfNothingAndALargeFlatBuffer) {
  // Every rank empty: an empty result, not a hang or a zero-length message error.
  EXPECT_EQ(comm->allgather(torch::empty({0}, torch::kFloat)).numel(), 0);
  // A model's worth of gradients in one flat buffer (4 MiB), the size the trainer reduces at every step.
  const int w = comm->world_size();
  const torch::Tensor base = torch::arange(1 << 20, torch::kFloat).remainder(1000.0f);
  torch::Tensor flat = base * static_cast<float>(comm->rank() + 1);
  comm->allreduce_sum(flat);
  EXPECT_TRUE(torch::equal(flat, base * static_cast<float>(w * (w + 1) / 2)));
}

TEST(Communicator, BroadcastBytesOfAnyLength) {
  // Only rank 0 holds the bytes (a checkpoint it read); the others start empty or with other bytes.
  std::string bytes = comm->is_main() ? std::string("ckpt\0data", 9) + std::string(100000, 'x') : "stale";
  comm->broadcast_bytes(bytes, 0);
  EXPECT_EQ(bytes.size(), 9u + 100000u);
  EXPECT_EQ(bytes.substr(0, 9), std::string("ckpt\0data", 9));
  std::string empty = comm->is_main() ? "" : "not empty";
  comm->broadcast_bytes(empty, 0);
  EXPECT_TRUE(empty.empty());
}

TEST(Communicator, ErrorsNameTheOperationOrTheCallAndTheRank) {
  torch::Tensor ints = torch::ones({3}, torch::kInt);
  EXPECT_NE(error_of([&] { comm->allreduce_sum(ints); }).find("'allreduce_sum': needs float32 or float64"),
            std::string::npos);
  torch::Tensor strided = torch::ones({4, 4}).t();
  EXPECT_NE(error_of([&] { comm->broadcast(strided, 0); }).find("contiguous"), std::string::npos);
  EXPECT_NE(error_of([&] { comm->allgather(torch::ones({2, 2}, torch::kDouble)); }).find("1-D"), std::string::npos);
  // An error of the transport (root outside the world, caught by MPI's or c10d's argument checks on every
  // rank alike); MPI collectives are started non-blocking (the watchdog polls them), so the call named is
  // MPI_Ibcast.
  if (nccl) return;  // NCCL does not check the root before it starts
  torch::Tensor t = torch::ones({2});
  const std::string msg = error_of([&] { comm->broadcast(t, comm->world_size()); });
  const std::string call = c10d ? "c10d broadcast" : "MPI_Ibcast";
  EXPECT_NE(msg.find(call + " failed on rank " + std::to_string(comm->rank()) + ": "), std::string::npos) << msg;
  comm->barrier();
}

TEST(Communicator, AverageGradientsOverRanks) {
  // Rank r accumulated gradients (r + 1) * g over 2 bags: the step's mean is sum_r (r + 1) * g / (2 W).
  const int w = comm->world_size();
  const torch::Tensor g = torch::tensor({1.0f, -2.0f, 4.0f});
  std::vector<torch::Tensor> params = {torch::zeros({3}, torch::requires_grad())};
  params[0].mutable_grad() = g * static_cast<float>(comm->rank() + 1);
  average_gradients(params, *comm, 2 * w);
  EXPECT_TRUE(torch::allclose(params[0].grad(), g * static_cast<float>(w + 1) / 4.0f));
  // A stop flag raised on the last rank only reaches every rank in the same all-reduce.
  std::vector<float> flags = {comm->rank() == w - 1 ? 1.0f : 0.0f, 1.0f};
  average_gradients(params, *comm, 2 * w, &flags);
  EXPECT_EQ(flags, (std::vector<float>{1.0f, static_cast<float>(w)}));
  // And the start: every rank takes rank 0's weights.
  params[0].data().fill_(static_cast<float>(comm->rank() + 5));
  broadcast_parameters(params, *comm, 0);
  EXPECT_TRUE(torch::equal(params[0], torch::full({3}, 5.0f)));
}

}  // namespace
}  // namespace mil

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string kind = argc == 3 && std::string(argv[1]) == "--comm" ? argv[2] : "mpi";
  auto mpi = std::make_unique<mil::MpiCommunicator>();
  std::unique_ptr<mil::Communicator> comm;
  if (kind == "gloo") {
    comm = std::make_unique<mil::C10dCommunicator>(std::move(mpi), mil::C10dBackend::kGloo, "cpu", 120.0);
    mil::c10d = true;
  } else if (kind == "nccl") {
    comm = std::make_unique<mil::C10dCommunicator>(std::move(mpi), mil::C10dBackend::kNccl, "cuda", 120.0);
    mil::c10d = mil::nccl = true;
  } else {
    comm = std::move(mpi);
  }
  mil::comm = comm.get();
  const int failed = RUN_ALL_TESTS();
  return static_cast<int>(comm->allreduce_max(failed));
}
