// dsmil_bench_step: a training step (forward + loss + backward + optimiser) against the GEMM it is made of,
// as ratios measured in one run. For each feature dimension D and bag size N, on random bags, it times
//   sgemm     X [N, D] x W [D, 128] (q's first layer, the step's dominant shape) through libtorch's BLAS;
//   autograd  DsmilNet forward + dsmil_loss + backward, the flat-buffer all-reduce of one rank
//             (mil::average_gradients) and torch::optim::Adam: the step as dsmil_train took it before;
//   fused     mil::DsmilStep (hand-written forward/backward into one flat gradient buffer) + mil::FusedAdam;
// and prints the FLOPs per instance it counts (forward and backward, from the layer shapes), each step's
// GFLOP/s and its ratio to the sgemm's. Then validation's forward pass alone: DsmilNet's modules in eval
// mode against DsmilStep::forward (--forward-only: just these rows). Then --precision bf16's step against the
// fused fp32 step (same process, interleaved): on a bfloat16 bag (as the bf16 RAM cache serves it) and on a
// float32 bag (rounded in the step), with the bf16 matmul of the dominant shape for scale. Then tiny bags
// (2-13 instances, D = 200): steps and bags per second of one bag per step (autograd, fused) and of packed steps
// (mil::PackedStep, --bags-per-step K = 1, 8, 32: the pack's concatenation, one forward/backward and one
// FusedAdam step per K bags).
// Measurements interleave (sgemm, autograd, fused per round) so load from other processes hits all alike; within a
// round each figure times calls in a row after an untimed one (per_call).
// Run: build/bench/dsmil_bench_step [--threads N] [--rounds R] [--clock cpu] [--bf16-only | --forward-only];
// one step for a profiler: --profile D,N [--bf16-only] [--steps S]
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/timing.hpp"
#include "mil/dist/communicator.hpp"
#include "mil/dist/parameter_sync.hpp"
#include "mil/model/dsmil_step.hpp"
#include "mil/model/loss.hpp"
#include "mil/model/onednn_matmul.hpp"
#include "mil/model/packed_step.hpp"
#include "mil/model/precision.hpp"
#include "mil/train/fused_adam.hpp"
#include "mil/util/logging.hpp"
#include "mil/util/threads.hpp"

namespace {

using mil::bench::Clock;
using mil::bench::median;
using mil::bench::seconds_since;

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

// The two ways of training a DsmilNet, each with its own copy of the same initial weights.
struct Steppers {
  explicit Steppers(const mil::ModelConfig& mc) : ref(mc), fast(mc) {
    ref->init_orthogonal(1);
    fast->init_orthogonal(1);
    ref->train();
    fast->train();
    params = ref->parameters();
    adam = mil::make_adam(params, {});
    flat = std::make_unique<mil::FlatParameters>(*fast);
    step = std::make_unique<mil::DsmilStep>(*flat);
    step_torch_ops = std::make_unique<mil::DsmilStep>(*flat, mil::Precision::kFloat32, mil::StepPasses::kTorchOps);
    fused = std::make_unique<mil::FusedAdam>(flat->values(), flat->grads(), mil::OptimizerConfig{});
    packed = std::make_unique<mil::PackedStep>(*flat);
  }
  double autograd_step(const std::vector<torch::Tensor>& bags, const torch::Tensor& y) {
    adam->zero_grad();
    double loss = 0;
    for (const torch::Tensor& x : bags) {
      const torch::Tensor l = mil::dsmil_loss(ref->forward(x), y);
      l.backward();
      loss += l.item<double>();
    }
    mil::average_gradients(params, comm, static_cast<int64_t>(bags.size()));
    adam->step();
    return loss;
  }
  double fused_step(const std::vector<torch::Tensor>& bags, const torch::Tensor& y, bool torch_ops = false) {
    flat->zero_grads();
    double loss = 0;
    for (const torch::Tensor& x : bags) loss += (torch_ops ? step_torch_ops : step)->accumulate(x, y);
    fused->step(static_cast<int64_t>(bags.size()));
    return loss;
  }
  // One optimiser step over bags [first, first + k) of `bags`, packed into one forward/backward.
  double packed_step(const std::vector<torch::Tensor>& bags, size_t first, size_t k, const torch::Tensor& targets) {
    flat->zero_grads();
    const size_t last = std::min(bags.size(), first + k);
    const std::vector<torch::Tensor> members(bags.begin() + static_cast<std::ptrdiff_t>(first),
                                             bags.begin() + static_cast<std::ptrdiff_t>(last));
    mil::PackedBags pack{torch::cat(members, 0), {0}, targets.narrow(0, 0, static_cast<int64_t>(last - first)), {}};
    for (const torch::Tensor& x : members) pack.offsets.push_back(pack.offsets.back() + x.size(0));
    const double loss = packed->accumulate(pack).sum().item<double>();
    fused->step(static_cast<int64_t>(last - first));
    return loss;
  }
  mil::DsmilNet ref, fast;
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> adam;
  std::unique_ptr<mil::FlatParameters> flat;
  std::unique_ptr<mil::DsmilStep> step, step_torch_ops;  // its passes as CPU loops, as libtorch ops
  std::unique_ptr<mil::FusedAdam> fused;
  std::unique_ptr<mil::PackedStep> packed;
  mil::LocalCommunicator comm;
};

// Wall-clock seconds, or with --clock cpu this process's CPU seconds (all its threads): on a machine
// shared with other work, a one-thread run's CPU time is the work itself, whatever the preemption.
bool g_cpu_clock = false;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

template <class F>
double time_it(F&& f) {
  if (g_cpu_clock) {
    const double t0 = process_cpu_seconds();
    f();
    return process_cpu_seconds() - t0;
  }
  const Clock::time_point t0 = Clock::now();
  f();
  return seconds_since(t0);
}

// Seconds per call of f, timed over `reps` calls in a row after one untimed call. A training run repeats one
// kind of call, so a figure should not pay for the switch from the previous figure's kind: OpenBLAS's threads
// spinning down while OpenMP's (oneDNN's, the step's loops) wake, or the reverse. Several calls in a row, so
// that one preempted call does not decide a round.
template <class F>
double per_call(int reps, F&& f) {
  f();
  return time_it([&] {
           for (int k = 0; k < reps; ++k) f();
         }) /
         reps;
}

// Calls in a row for a figure over an N-instance bag: ~30k instances.
int reps_for(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, 30000 / n));
}

void large_bags(int rounds) {
  std::printf(
      "| D | N | FLOP/instance fwd + bwd | sgemm [N,D]x[D,128] GFLOP/s: BLAS | oneDNN | autograd step ms | GFLOP/s |"
      " ratio | fused step ms | GFLOP/s | **ratio** | fused / autograd | fused, libtorch passes ms |"
      " loops / libtorch |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  // The roofline is the faster sgemm this process has: libtorch's BLAS, or oneDNN's (the fp32 step's
  // products where the build links it); ratios are to the faster.
  std::unique_ptr<mil::OnednnMatmul> onednn;
  if (mil::OnednnMatmul::available()) onednn = std::make_unique<mil::OnednnMatmul>();
  for (int64_t d : {512, 1024}) {
    mil::ModelConfig mc;
    mc.feature_dim = d;
    Steppers s(mc);
    const double fwd = mil::DsmilStep::forward_flops_per_instance(mc);
    const double bwd = mil::DsmilStep::backward_flops_per_instance(mc);
    for (int64_t n : {1000, 3000, 10000}) {
      const std::vector<torch::Tensor> bag = {torch::randn({n, d})};
      const torch::Tensor y = torch::ones({1});
      const torch::Tensor w = torch::randn({mil::ModelConfig::kQueryDim, d});
      torch::Tensor out = torch::empty({n, mil::ModelConfig::kQueryDim});
      std::vector<double> t_gemm, t_dnnl, t_ref, t_fast, t_ops;
      const int reps = reps_for(n);
      for (int r = 0; r <= rounds; ++r) {
        const double g = per_call(3 * reps, [&] { at::mm_out(out, bag[0], w.t()); });
        const double dn = onednn ? per_call(3 * reps, [&] { onednn->run(out, bag[0], w.t(), {}); }) : g;
        const double a = per_call(reps, [&] { s.autograd_step(bag, y); });
        const double f = per_call(reps, [&] { s.fused_step(bag, y); });
        const double o = per_call(reps, [&] { s.fused_step(bag, y, true); });
        if (r == 0) continue;  // warm-up: workspaces, BLAS buffers
        t_gemm.push_back(g);
        t_dnnl.push_back(dn);
        t_ref.push_back(a);
        t_fast.push_back(f);
        t_ops.push_back(o);
      }
      const double flops = (fwd + bwd) * static_cast<double>(n);
      const auto sgemm_gflops = [&](const std::vector<double>& t) {
        return 2.0 * n * d * mil::ModelConfig::kQueryDim / median(t) / 1e9;
      };
      const double blas = sgemm_gflops(t_gemm);
      const double dnnl = sgemm_gflops(t_dnnl);
      const double gemm = std::max(blas, dnnl);  // the roofline: the faster of the two
      const double ref = flops / median(t_ref) / 1e9;
      const double fast = flops / median(t_fast) / 1e9;
      std::printf(
          "| %lld | %lld | %.0f + %.0f | %.1f | %.1f | %.3f | %.1f | %.2f | %.3f | %.1f | **%.2f** | %.2fx | %.3f | "
          "%.2fx |\n",
          static_cast<long long>(d), static_cast<long long>(n), fwd, bwd, blas, dnnl, 1e3 * median(t_ref), ref,
          ref / gemm, 1e3 * median(t_fast), fast, fast / gemm, median(t_ref) / median(t_fast), 1e3 * median(t_ops),
          median(t_ops) / median(t_fast));
      std::fflush(stdout);
    }
  }
}

// Validation's forward pass over one bag: DsmilNet's module calls in eval mode against DsmilStep::forward
// (what dsmil_train's validation runs), same weights, in a row as validation runs them.
void forward_rows(int rounds) {
  std::printf("\n| D | N | module forward ms | step forward ms | **module / step** |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{200, 8},     {512, 1000},  {512, 3000},
                                                           {512, 10000}, {1024, 1000}, {1024, 3000}};
  for (const auto& [d, n] : shapes) {
    mil::ModelConfig mc;
    mc.feature_dim = d;
    Steppers s(mc);
    s.ref->eval();
    const torch::Tensor x = torch::randn({n, d});
    const int reps = reps_for(n);
    std::vector<double> t_module, t_step;
    torch::NoGradGuard no_grad;
    for (int r = 0; r <= rounds; ++r) {
      const double m = per_call(reps, [&] { s.ref->forward(x); });
      const double f = per_call(reps, [&] { s.step->forward(x); });
      if (r == 0) continue;
      t_module.push_back(m);
      t_step.push_back(f);
    }
    std::printf("| %lld | %lld | %.3f | %.3f | **%.2fx** |\n", static_cast<long long>(d), static_cast<long long>(n),
                1e3 * median(t_module), 1e3 * median(t_step), median(t_module) / median(t_step));
    std::fflush(stdout);
  }
}

// `steps` calls of one_step (after one to warm up: workspaces, BLAS buffers), timed, as a row for --profile.
template <class F>
void profile_rows(const mil::ModelConfig& mc, int64_t n, int steps, const char* what, F&& one_step) {
  one_step();
  const double t = time_it([&] {
    for (int i = 0; i < steps; ++i) one_step();
  });
  const double flops =
      (mil::DsmilStep::forward_flops_per_instance(mc) + mil::DsmilStep::backward_flops_per_instance(mc)) *
      static_cast<double>(n) * steps;
  std::printf("| D = %lld, N = %lld | %d %s steps | %.3f ms each | %.1f GFLOP/s |\n",
              static_cast<long long>(mc.feature_dim), static_cast<long long>(n), steps, what, 1e3 * t / steps,
              flops / t / 1e9);
}

// Only the fused step at one shape, for a profiler (perf record -g build/bench/dsmil_bench_step --profile ...).
void profile(int64_t d, int64_t n, int steps) {
  mil::ModelConfig mc;
  mc.feature_dim = d;
  Steppers s(mc);
  const std::vector<torch::Tensor> bag = {torch::randn({n, d})};
  const torch::Tensor y = torch::ones({1});
  profile_rows(mc, n, steps, "fused", [&] { s.fused_step(bag, y); });
}

// The fused step in fp32 and in bf16 from the same initial weights (each with its own copy and Adam).
struct PrecisionSteppers {
  explicit PrecisionSteppers(const mil::ModelConfig& mc) : f32(mc), b16(mc) {
    for (mil::DsmilNet* net : {&f32, &b16}) {
      (*net)->init_orthogonal(1);
      (*net)->train();
    }
    flat32 = std::make_unique<mil::FlatParameters>(*f32);
    flat16 = std::make_unique<mil::FlatParameters>(*b16);
    step32 = std::make_unique<mil::DsmilStep>(*flat32);
    step16 = std::make_unique<mil::DsmilStep>(*flat16, mil::Precision::kBFloat16);
    adam32 = std::make_unique<mil::FusedAdam>(flat32->values(), flat32->grads(), mil::OptimizerConfig{});
    adam16 = std::make_unique<mil::FusedAdam>(flat16->values(), flat16->grads(), mil::OptimizerConfig{});
  }
  static void step(mil::FlatParameters& flat, mil::DsmilStep& s, mil::FusedAdam& adam, const torch::Tensor& x,
                   const torch::Tensor& y) {
    flat.zero_grads();
    s.accumulate(x, y);
    adam.step(1);
  }
  mil::DsmilNet f32, b16;
  std::unique_ptr<mil::FlatParameters> flat32, flat16;
  std::unique_ptr<mil::DsmilStep> step32, step16;
  std::unique_ptr<mil::FusedAdam> adam32, adam16;
};

// The bf16 step alone at one shape on a bfloat16 bag (--profile D,N --bf16-only), for a profiler.
void profile_bf16(int64_t d, int64_t n, int steps) {
  mil::ModelConfig mc;
  mc.feature_dim = d;
  PrecisionSteppers s(mc);
  const torch::Tensor x = torch::randn({n, d}).to(torch::kBFloat16);
  const torch::Tensor y = torch::ones({1});
  profile_rows(mc, n, steps, "bf16", [&] { PrecisionSteppers::step(*s.flat16, *s.step16, *s.adam16, x, y); });
}

void bf16_rows(int rounds) {
  const std::string lacks = [] {
    try {
      mil::require_precision_support(mil::Precision::kBFloat16, torch::kCPU);
      return std::string();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  }();
  if (!lacks.empty()) {
    std::printf("\n# bf16 rows skipped: %s\n", lacks.c_str());
    return;
  }
  std::printf(
      "\n| D | N | fp32 step ms | bf16 step ms (bfloat16 bag) | **speed-up** | bf16 step ms (float32 bag) | speed-up |"
      " bf16 step GFLOP/s | bf16 mm [N,D]x[D,128] GFLOP/s |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int64_t d : {512, 1024}) {
    mil::ModelConfig mc;
    mc.feature_dim = d;
    PrecisionSteppers s(mc);
    const double flop =
        mil::DsmilStep::forward_flops_per_instance(mc) + mil::DsmilStep::backward_flops_per_instance(mc);
    for (int64_t n : {1000, 3000, 10000}) {
      const torch::Tensor x = torch::randn({n, d});
      const torch::Tensor xb = x.to(torch::kBFloat16);
      const torch::Tensor y = torch::ones({1});
      const torch::Tensor w = torch::randn({mil::ModelConfig::kQueryDim, d}).to(torch::kBFloat16);
      torch::Tensor out = torch::empty({n, mil::ModelConfig::kQueryDim}, torch::kBFloat16);
      std::vector<double> t_mm, t32, t16, t16f;
      // A training run keeps one precision: per_call's untimed step keeps the switch from the other precision's
      // products out of the figures.
      const int reps = reps_for(n);
      const auto steps = [&](mil::FlatParameters& flat, mil::DsmilStep& step, mil::FusedAdam& adam,
                             const torch::Tensor& bag) {
        return per_call(reps, [&] { PrecisionSteppers::step(flat, step, adam, bag, y); });
      };
      for (int r = 0; r <= rounds; ++r) {
        const double g = per_call(3 * reps, [&] { at::mm_out(out, xb, w.t()); });
        const double a = steps(*s.flat32, *s.step32, *s.adam32, x);
        const double b = steps(*s.flat16, *s.step16, *s.adam16, xb);
        const double c = steps(*s.flat16, *s.step16, *s.adam16, x);
        if (r == 0) continue;  // warm-up: workspaces, oneDNN primitives
        t_mm.push_back(g);
        t32.push_back(a);
        t16.push_back(b);
        t16f.push_back(c);
      }
      const double mm = 2.0 * n * d * mil::ModelConfig::kQueryDim / median(t_mm) / 1e9;
      std::printf("| %lld | %lld | %.3f | %.3f | **%.2fx** | %.3f | %.2fx | %.1f | %.1f |\n", static_cast<long long>(d),
                  static_cast<long long>(n), 1e3 * median(t32), 1e3 * median(t16), median(t32) / median(t16),
                  1e3 * median(t16f), median(t32) / median(t16f), flop * n / median(t16) / 1e9, mm);
      std::fflush(stdout);
    }
  }
}

void tiny_bags(int rounds) {
  mil::ModelConfig mc;
  mc.feature_dim = 200;
  Steppers s(mc);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> size(2, 13);
  std::vector<torch::Tensor> bags;
  for (int i = 0; i < 200; ++i) bags.push_back(torch::randn({size(rng), mc.feature_dim}));
  const torch::Tensor y = torch::ones({1});
  const std::vector<size_t> packs = {1, 8, 32};
  const torch::Tensor targets = torch::ones({32, 1});
  // Per round, each way trains the 200 bags once: autograd, fused (one bag per step), then packed per K.
  std::vector<std::vector<double>> times(2 + packs.size());
  for (int r = 0; r <= rounds; ++r) {
    std::vector<double> t;
    t.push_back(time_it([&] {
      for (const torch::Tensor& x : bags) s.autograd_step({x}, y);
    }));
    t.push_back(time_it([&] {
      for (const torch::Tensor& x : bags) s.fused_step({x}, y);
    }));
    for (size_t k : packs) {
      t.push_back(time_it([&] {
        for (size_t first = 0; first < bags.size(); first += k) s.packed_step(bags, first, k, targets);
      }));
    }
    if (r == 0) continue;
    for (size_t i = 0; i < t.size(); ++i) times[i].push_back(t[i]);
  }
  const double n = static_cast<double>(bags.size());
  const double fused = median(times[1]);
  std::printf(
      "\n| tiny bags (200 bags of 2-13 instances, D = 200) | steps/s | bags/s | bags/s vs fused one bag per step |\n");
  std::printf("| --- | --- | --- | --- |\n");
  std::printf("| autograd, one bag per step | %.0f | %.0f | %.2fx |\n", n / median(times[0]), n / median(times[0]),
              fused / median(times[0]));
  std::printf("| fused, one bag per step | %.0f | %.0f | 1.00x |\n", n / fused, n / fused);
  for (size_t i = 0; i < packs.size(); ++i) {
    const double steps = std::ceil(n / static_cast<double>(packs[i]));
    const double t = median(times[2 + i]);
    std::printf("| packed, --bags-per-step %zu | %.0f | %.0f | **%.2fx** |\n", packs[i], steps / t, n / t, fused / t);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    cxxopts::Options options("dsmil_bench_step", "A training step against the sgemm of its dominant shape");
    options.add_options()("threads", "libtorch threads (0 = auto: the process's share of the cores)",
                          cxxopts::value<int>()->default_value("0"))("rounds", "timed rounds per figure (median)",
                                                                     cxxopts::value<int>()->default_value("9"))(
        "tiny-only", "only the tiny-bag figure", cxxopts::value<bool>()->default_value("false"))(
        "clock", "wall, or cpu (process CPU time: for one thread on a loaded machine)",
        cxxopts::value<std::string>()->default_value("wall"))("bf16-only", "only the bf16 vs fp32 rows",
                                                              cxxopts::value<bool>()->default_value("false"))(
        "forward-only", "only validation's forward: the module's against the step's",
        cxxopts::value<bool>()->default_value("false"))(
        "profile", "only the fused step at D,N (for a profiler), e.g. 512,1000; with --bf16-only the bf16 step",
        cxxopts::value<std::vector<int64_t>>())("steps", "steps with --profile",
                                                cxxopts::value<int>()->default_value("500"));
    const auto args = options.parse(argc, argv);
    mil::setup_logging("warn", 0, 1);
    const int threads = mil::set_torch_threads(args["threads"].as<int>(), 1);
    const int rounds = args["rounds"].as<int>();
    g_cpu_clock = args["clock"].as<std::string>() == "cpu";
    std::printf("# dsmil_bench_step: %d libtorch thread(s), CPU, median of %d rounds, %s time; load average %s\n",
                threads, rounds, g_cpu_clock ? "process CPU" : "wall-clock", load_average().c_str());
    if (args.count("profile") != 0) {
      const std::vector<int64_t> shape = args["profile"].as<std::vector<int64_t>>();
      if (shape.size() != 2) throw std::invalid_argument("--profile expects D,N");
      if (args["bf16-only"].as<bool>()) {
        mil::require_precision_support(mil::Precision::kBFloat16, torch::kCPU);
        profile_bf16(shape[0], shape[1], args["steps"].as<int>());
      } else {
        profile(shape[0], shape[1], args["steps"].as<int>());
      }
    } else if (args["bf16-only"].as<bool>()) {
      bf16_rows(rounds);
    } else if (args["forward-only"].as<bool>()) {
      forward_rows(rounds);
    } else {
      if (!args["tiny-only"].as<bool>()) {
        large_bags(rounds);
        forward_rows(rounds);
        bf16_rows(rounds);
      }
      tiny_bags(rounds);
    }
    std::printf("# load average at the end %s\n", load_average().c_str());
    return 0;
  } catch (const std::exception& e) {
    return mil::report_failure("dsmil_bench_step", e, "");
  }
}
