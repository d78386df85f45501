#pragma once
// Which bag each rank trains at each step of each epoch. Training is data-parallel: a global step trains
// one bag per slot, W slots in all, then the gradients are all-reduced. A job of R ranks that each accumulate
// K bags per step has W = R * K slots and rank r trains slots [r * K, r * K + K), so R ranks and one process
// with K = R train the same bags in the same steps (slot_sequence()). Plans are pure functions of
// (bag sizes, options, epoch), built only from the generator below, so they are identical on every
// machine and standard library, and a run resumed at (epoch, step) trains exactly the bags it would have.
#include <cstdint>
#include <vector>

#include "mil/util/random.hpp"

namespace mil {

struct SamplerOptions {
  uint64_t seed = 42;
  int world_size = 1;
  // Only used when world_size > 1: bags trained in the same step get similar instance counts, so no
  // rank idles long at the all-reduce waiting for the rank with the largest bag.
  bool size_balanced = true;
  // Size balancing sorts windows of bucket_steps * world_size consecutive permuted bags; larger windows
  // balance better, smaller ones keep more of the permutation's randomness in which bags train together.
  int bucket_steps = 64;
};

// Plan of an epoch, for n bags and W ranks:
//   1. perm = Fisher–Yates permutation of 0..n-1, from SplitMix64(mix64(mix64(mix64(seed) ^ epoch) ^ 0)).
//   2. Every rank runs steps = ceil(n / W) steps, so steps * W slots are filled from perm, extended by
//      wrapping around to its start: slot i holds perm[i % n]. The first steps * W - n bags of the
//      permutation are therefore trained twice in that epoch (this is PyTorch DistributedSampler's padding).
//   3. Plain sharding (W == 1 or !size_balanced): step s, rank r trains slot s * W + r.
//      Size-balanced: the slots are cut into windows of bucket_steps * W, each window is sorted by bag
//      size (stable, so ties keep permutation order) and split into steps of W consecutive bags; then the
//      order of all steps and, within each step, the ranks' assignment are shuffled with stream 1.
// Cost: building a plan is O(n log n); bag_at() rebuilds it, so a loop over steps should use
// rank_sequence() or epoch_plan() once per epoch instead.
class EpochSampler {
 public:
  // Throws mil::Error on an empty bag list, a negative size, world_size < 1 or bucket_steps < 1.
  EpochSampler(std::vector<int64_t> bag_sizes, SamplerOptions opts);

  int64_t num_bags() const { return static_cast<int64_t>(bag_sizes_.size()); }
  const std::vector<int64_t>& bag_sizes() const { return bag_sizes_; }
  const SamplerOptions& options() const { return opts_; }
  int64_t steps_per_epoch() const;

  // The epoch's permutation of 0..n-1 (step 1 above).
  std::vector<int64_t> permutation(int64_t epoch) const;
  // [step][rank] -> bag index.
  std::vector<std::vector<int64_t>> epoch_plan(int64_t epoch) const;
  // The bags `rank` trains in `epoch`, in order; steps_per_epoch() of them for every rank.
  std::vector<int64_t> rank_sequence(int64_t epoch, int rank) const;
  // The bags of slots [first_slot, first_slot + count) of every step of `epoch`, step by step: what a rank
  // accumulating `count` bags per step trains. rank_sequence(e, r) == slot_sequence(e, r, 1).
  std::vector<int64_t> slot_sequence(int64_t epoch, int first_slot, int count) const;
  // Stateless: the bag `rank` trains at (epoch, step), so a resumed run needs only those two numbers.
  int64_t bag_at(int64_t epoch, int64_t step, int rank) const;
  double straggler_ratio(int64_t epoch) const;

 private:
  void check_epoch(int64_t epoch) const;
  void check_rank(int rank) const;

  std::vector<int64_t> bag_sizes_;
  SamplerOptions opts_;
};

// Mean over steps of (largest bag in the step / mean bag in the step), in instances: 1.0 means no rank
// ever waits at the all-reduce. A step whose bags are all empty counts as 1.0. Throws mil::Error on an
// empty plan or a bag index outside bag_sizes.
double straggler_ratio(const std::vector<std::vector<int64_t>>& plan, const std::vector<int64_t>& bag_sizes);

}  // namespace mil
