// Gradient averaging and parameter broadcast over one flat buffer: exact values on a world of one, and one
// collective carrying every parameter on a fake world of several identical ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "mil/dist/communicator.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/util/error.hpp"

namespace mil {
namespace {

// `world` ranks holding the same values as this one: a sum over ranks is `world` times the values, and a
// broadcast delivers `root_value` everywhere. Counts the collectives and the elements they carry.
class FakeRanks final : public Communicator {
 public:
  explicit FakeRanks(int world) : world_(world) {}
  int rank() const override { return 0; }
  int world_size() const override { return world_; }
  int local_rank() const override { return 0; }
  int local_size() const override { return world_; }
  std::string describe() const override { return "a fake of " + std::to_string(world_) + " ranks"; }
  void allreduce_sum(torch::Tensor& t) override {
    record(t);
    t.mul_(world_);
  }
  void broadcast(torch::Tensor& t, int) override {
    record(t);
    t.fill_(root_value);
  }
  int64_t allreduce_max(int64_t value) override { return value; }
  torch::Tensor allgather(const torch::Tensor& t) override { return t.repeat({world_}); }
  void broadcast_bytes(std::string&, int) override {}
  void barrier() override {}
  bool reduces_on(const torch::Device& device) const override { return device.is_cpu() || on_gpu; }
  [[noreturn]] void abort(int code) override { std::exit(code); }

  bool on_gpu = false;  // reduces GPU tensors in place, as NCCL does
  float root_value = 7;
  const void* last_data = nullptr;  // of the last collective's tensor
  int calls = 0;
  int64_t elements = 0;

 private:
  void record(const torch::Tensor& t) {
    EXPECT_TRUE(t.device().is_cpu() || on_gpu);
    EXPECT_TRUE(t.is_contiguous());
    last_data = t.data_ptr();
    ++calls;
    elements += t.numel();
  }
  int world_;
};

std::vector<torch::Tensor> params_with_grads() {
  std::vector<torch::Tensor> params = {torch::zeros({2, 3}, torch::requires_grad()),
                                       torch::zeros({4}, torch::requires_grad())};
  params[0].mutable_grad() = torch::arange(6, torch::kFloat).view({2, 3});
  params[1].mutable_grad() = torch::tensor({1.0f, -2.0f, 0.5f, 8.0f});
  return params;
}

TEST(AverageGradients, WorldOfOneDividesTheAccumulatedSumByTheBags) {
  LocalCommunicator comm;
  const std::vector<torch::Tensor> params = params_with_grads();
  const torch::Tensor grad0 = params[0].grad();  // the same tensor is updated in place
  average_gradients(params, comm, 2);
  EXPECT_TRUE(torch::equal(params[0].grad(), torch::arange(6, torch::kFloat).view({2, 3}) / 2));
  EXPECT_TRUE(torch::equal(params[1].grad(), torch::tensor({0.5f, -1.0f, 0.25f, 4.0f})));
  EXPECT_TRUE(params[0].grad().is_same(grad0));
  average_gradients(params, comm, 1);  // one bag, one rank: unchanged
  EXPECT_TRUE(torch::equal(params[1].grad(), torch::tensor({0.5f, -1.0f, 0.25f, 4.0f})));
}

TEST(AverageGradients, OneAllreduceCarriesEveryGradient) {
  FakeRanks comm(3);
  const std::vector<torch::Tensor> params = params_with_grads();
  average_gradients(params, comm, 3);  // 3 identical ranks, one bag each: the mean is the rank's gradient
  EXPECT_EQ(comm.calls, 1);
  EXPECT_EQ(comm.elements, 10);
  EXPECT_TRUE(torch::equal(params[0].grad(), torch::arange(6, torch::kFloat).view({2, 3})));
  EXPECT_TRUE(torch::equal(params[1].grad(), torch::tensor({1.0f, -2.0f, 0.5f, 8.0f})));
  // Flags ride in the same all-reduce, summed over ranks and not divided by the bags.
  std::vector<float> flags = {1, 0, 2};
  average_gradients(params, comm, 3, &flags);
  EXPECT_EQ(comm.calls, 2);
  EXPECT_EQ(comm.elements, 10 + 13);
  EXPECT_EQ(flags, (std::vector<float>{3, 0, 6}));
  EXPECT_TRUE(torch::equal(params[1].grad(), torch::tensor({1.0f, -2.0f, 0.5f, 8.0f})));
}

TEST(AverageGradients, AParameterWithoutGradientGetsZeros) {
  FakeRanks comm(2);
  std::vector<torch::Tensor> params = params_with_grads();
  params.push_back(torch::ones({3}, torch::requires_grad()));
  average_gradients(params, comm, 4);
  EXPECT_EQ(comm.elements, 13);
  ASSERT_TRUE(params[2].grad().defined());
  EXPECT_TRUE(torch::equal(params[2].grad(), torch::zeros({3})));
  EXPECT_TRUE(torch::equal(params[1].grad(), torch::tensor({0.5f, -1.0f, 0.25f, 4.0f})));
}

TEST(AverageGradients, RejectsNoBags) {
  LocalCommunicator comm;
  const std::vector<torch::Tensor> params = params_with_grads();
  EXPECT_THROW(average_gradients(params, comm, 0), Error);
  average_gradients({}, comm, 1);  // nothing to do
}

TEST(SumFlatGradients, OneAllreduceOfTheBufferInPlaceWithTheFlagsInItsSpareFloats) {
  FakeRanks comm(3);
  torch::Tensor buffer = torch::tensor({1.0f, -2.0f, 0.5f, 4.0f, 99.0f, 99.0f, 99.0f});  // 4 gradients, 3 spare
  const float* data = buffer.data_ptr<float>();
  std::vector<float> flags = {1, 0};
  sum_flat_gradients(buffer, 4, comm, &flags);
  EXPECT_EQ(comm.calls, 1);
  EXPECT_EQ(comm.elements, 6);  // the gradients and the two flags, not the unused spare float
  EXPECT_EQ(buffer.data_ptr<float>(), data);
  EXPECT_TRUE(torch::equal(buffer.narrow(0, 0, 4), torch::tensor({3.0f, -6.0f, 1.5f, 12.0f})));  // summed, not divided
  EXPECT_EQ(flags, (std::vector<float>{3, 0}));
  std::vector<float> too_many = {0, 0, 0, 0};
  EXPECT_THROW(sum_flat_gradients(buffer, 4, comm, &too_many), Error);
}

// The CUDA build on a GPU (bench/gpu_bench.sh runs these): with NCCL the flat gradient is reduced where it
// lies, with MPI it goes through the host and back; the sums and the flags come out the same.
TEST(SumFlatGradients, AGpuBufferStaysOnTheGpuWhenTheCommunicatorReducesThere) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a GPU";
  for (const bool nccl : {true, false}) {
    FakeRanks comm(3);
    comm.on_gpu = nccl;
    torch::Tensor buffer = torch::tensor({1.0f, -2.0f, 0.5f, 4.0f, 99.0f, 99.0f, 99.0f}).to(torch::kCUDA);
    const void* data = buffer.data_ptr();
    std::vector<float> flags = {1, 0};
    sum_flat_gradients(buffer, 4, comm, &flags);
    EXPECT_EQ(comm.calls, 1);
    EXPECT_EQ(comm.elements, 6);
    EXPECT_EQ(comm.last_data == data, nccl);  // NCCL: the buffer itself; MPI: a host copy
    EXPECT_EQ(buffer.data_ptr(), data);
    EXPECT_TRUE(torch::equal(buffer.narrow(0, 0, 4).cpu(), torch::tensor({3.0f, -6.0f, 1.5f, 12.0f})));
    EXPECT_EQ(flags, (std::vector<float>{3, 0}));
  }
}

TEST(BroadcastParameters, OneBroadcastSetsEveryParameter) {
  FakeRanks comm(2);
  const std::vector<torch::Tensor> params = params_with_grads();
  broadcast_parameters(params, comm, 0);
  EXPECT_EQ(comm.calls, 1);
  EXPECT_EQ(comm.elements, 10);
  EXPECT_TRUE(torch::equal(params[0], torch::full({2, 3}, 7.0f)));
  EXPECT_TRUE(torch::equal(params[1], torch::full({4}, 7.0f)));
  EXPECT_TRUE(params[0].requires_grad());

  LocalCommunicator local;
  broadcast_parameters(params, local, 0);
  EXPECT_TRUE(torch::equal(params[1], torch::full({4}, 7.0f)));
}

TEST(LocalCommunicator, IsAWorldOfOne) {
  LocalCommunicator comm;
  EXPECT_EQ(comm.world_size(), 1);
  EXPECT_EQ(comm.local_size(), 1);
  EXPECT_TRUE(comm.is_main());
  torch::Tensor t = torch::tensor({1.0, 2.0});
  comm.allreduce_sum(t);
  comm.broadcast(t, 0);
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.0, 2.0})));
  EXPECT_TRUE(torch::equal(comm.allgather(t), t));
  EXPECT_EQ(comm.allreduce_max(5), 5);
  // Outside mpirun the factory never initialises MPI.
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) {
    EXPECT_EQ(make_communicator()->world_size(), 1);
  }
}

}  // namespace
}  // namespace mil
