// dsmil_bench_comm: the gradient all-reduce as a fraction of a training step, run under mpirun (goal: <= 5%).
// For each feature dimension D and bag size N, every rank times forward + loss + backward on a random bag,
// then the one flat-buffer all-reduce that averages the gradients (mil::average_gradients); rank 0 prints
// medians. Run: mpirun -np 2 build/bench/dsmil_bench_comm
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/timing.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/model/loss.hpp"
#include "mil/util/logging.hpp"
#include "mil/util/threads.hpp"

namespace {

using mil::bench::Clock;
using mil::bench::median;
using mil::bench::seconds_since;

double ms_since(Clock::time_point t) {
  return 1e3 * seconds_since(t);
}

}  // namespace

int main() {
  std::unique_ptr<mil::Communicator> comm;
  try {
    comm = mil::make_communicator();
    mil::setup_logging("warn", comm->rank(), comm->world_size());
    const int threads = mil::set_torch_threads(0, comm->local_size());
    if (comm->is_main()) {
      std::printf("# dsmil_bench_comm: %d rank(s), %d libtorch thread(s) per rank, CPU, median of 7 steps\n",
                  comm->world_size(), threads);
      std::printf("| D | instances per bag | gradient floats | step (ms) | all-reduce (ms) | all-reduce / step |\n");
      std::printf("| --- | --- | --- | --- | --- | --- |\n");
    }
    for (int64_t d : {512, 1024}) {
      mil::ModelConfig mc;
      mc.feature_dim = d;
      mil::DsmilNet net(mc);
      net->init_orthogonal(1);
      const std::vector<torch::Tensor> params = net->parameters();
      int64_t floats = 0;
      for (const auto& p : params) floats += p.numel();
      for (int64_t n : {1000, 3000, 10000}) {
        const torch::Tensor x = torch::randn({n, d});
        const torch::Tensor y = torch::ones({1});
        std::vector<double> step_ms, comm_ms;
        for (int r = 0; r < 8; ++r) {
          for (auto& p : params) p.mutable_grad() = torch::Tensor();
          Clock::time_point t0 = Clock::now();
          mil::dsmil_loss(net->forward(x), y).backward();
          const double step = ms_since(t0);
          comm->barrier();  // time the reduction, not waiting for a slower rank
          t0 = Clock::now();
          mil::average_gradients(params, *comm, comm->world_size());
          const double reduce = ms_since(t0);
          if (r > 0) {  // the first round warms up
            step_ms.push_back(step);
            comm_ms.push_back(reduce);
          }
        }
        if (comm->is_main()) {
          std::printf("| %lld | %lld | %lld | %.2f | %.3f | %.1f%% |\n", static_cast<long long>(d),
                      static_cast<long long>(n), static_cast<long long>(floats), median(step_ms), median(comm_ms),
                      100.0 * median(comm_ms) / (median(step_ms) + median(comm_ms)));
        }
      }
    }
    return 0;
  } catch (const std::exception& e) {
    const int code = mil::report_failure("dsmil_bench_comm", e, "");
    if (comm && comm->world_size() > 1) comm->abort(code);
    return code;
  }
}
