#include "mil/data/sampler.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "mil/util/error.hpp"

namespace mil {
namespace {

constexpr uint64_t kPermutationStream = 0;
constexpr uint64_t kStepOrderStream = 1;

SplitMix64 stream_rng(uint64_t seed, int64_t epoch, uint64_t stream) {
  return SplitMix64(mix64(mix64(mix64(seed) ^ static_cast<uint64_t>(epoch)) ^ stream));
}

}  // namespace

EpochSampler::EpochSampler(std::vector<int64_t> bag_sizes, SamplerOptions opts)
    : bag_sizes_(std::move(bag_sizes)), opts_(opts) {
  if (bag_sizes_.empty()) throw Error("", "bag_sizes", "no bags to sample from");
  for (size_t i = 0; i < bag_sizes_.size(); ++i) {
    if (bag_sizes_[i] < 0) {
      throw Error("", "bag_sizes", "bag " + std::to_string(i) + " has negative size " + std::to_string(bag_sizes_[i]));
    }
  }
  if (opts_.world_size < 1) {
    throw Error("", "world_size", "must be >= 1, got " + std::to_string(opts_.world_size));
  }
  if (opts_.bucket_steps < 1) {
    throw Error("", "bucket_steps", "must be >= 1, got " + std::to_string(opts_.bucket_steps));
  }
}

int64_t EpochSampler::steps_per_epoch() const {
  const int64_t w = opts_.world_size;
  return (num_bags() + w - 1) / w;
}

void EpochSampler::check_epoch(int64_t epoch) const {
  if (epoch < 0) throw Error("", "epoch", "must be >= 0, got " + std::to_string(epoch));
}

void EpochSampler::check_rank(int rank) const {
  if (rank < 0 || rank >= opts_.world_size) {
    throw Error("", "rank", "must be in [0, " + std::to_string(opts_.world_size) + "), got " + std::to_string(rank));
  }
}

std::vector<int64_t> EpochSampler::permutation(int64_t epoch) const {
  check_epoch(epoch);
  std::vector<int64_t> perm(bag_sizes_.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
  SplitMix64 rng = stream_rng(opts_.seed, epoch, kPermutationStream);
  fisher_yates_shuffle(perm, rng);
  return perm;
}

std::vector<std::vector<int64_t>> EpochSampler::epoch_plan(int64_t epoch) const {
  const std::vector<int64_t> perm = permutation(epoch);
  const int64_t n = num_bags();
  const int64_t w = opts_.world_size;
  const int64_t steps = steps_per_epoch();

  std::vector<int64_t> slots(static_cast<size_t>(steps * w));
  for (int64_t i = 0; i < steps * w; ++i) slots[static_cast<size_t>(i)] = perm[static_cast<size_t>(i % n)];

  const bool balanced = opts_.size_balanced && w > 1;
  if (balanced) {
    // Windows are whole steps (steps * w is a multiple of w), so no step straddles two windows.
    const int64_t window = static_cast<int64_t>(opts_.bucket_steps) * w;
    for (int64_t begin = 0; begin < steps * w; begin += window) {
      const int64_t end = std::min(begin + window, steps * w);
      std::stable_sort(slots.begin() + begin, slots.begin() + end,
                       [this](int64_t a, int64_t b) { return bag_sizes_[a] < bag_sizes_[b]; });
    }
  }

  std::vector<std::vector<int64_t>> plan(static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) {
    plan[static_cast<size_t>(s)].assign(slots.begin() + s * w, slots.begin() + (s + 1) * w);
  }
  if (balanced) {
    // Sorted windows would otherwise train small bags first and large ones last in every window, and
    // always give the last rank the largest bag of each step.
    SplitMix64 rng = stream_rng(opts_.seed, epoch, kStepOrderStream);
    std::vector<int64_t> order(static_cast<size_t>(steps));
    for (int64_t s = 0; s < steps; ++s) order[static_cast<size_t>(s)] = s;
    fisher_yates_shuffle(order, rng);
    std::vector<std::vector<int64_t>> shuffled(static_cast<size_t>(steps));
    for (int64_t s = 0; s < steps; ++s) {
      shuffled[static_cast<size_t>(s)] = std::move(plan[static_cast<size_t>(order[static_cast<size_t>(s)])]);
      fisher_yates_shuffle(shuffled[static_cast<size_t>(s)], rng);
    }
    plan = std::move(shuffled);
  }
  return plan;
}

std::vector<int64_t> EpochSampler::rank_sequence(int64_t epoch, int rank) const {
  check_rank(rank);
  return slot_sequence(epoch, rank, 1);
}

std::vector<int64_t> EpochSampler::slot_sequence(int64_t epoch, int first_slot, int count) const {
  if (count < 1 || first_slot < 0 || first_slot > opts_.world_size - count) {
    throw Error("", "slots",
                "[" + std::to_string(first_slot) + ", " + std::to_string(first_slot + count) +
                    ") is not a range of [0, " + std::to_string(opts_.world_size) + ")");
  }
  const std::vector<std::vector<int64_t>> plan = epoch_plan(epoch);
  std::vector<int64_t> seq;
  seq.reserve(plan.size() * static_cast<size_t>(count));
  for (const std::vector<int64_t>& step : plan) {
    seq.insert(seq.end(), step.begin() + first_slot, step.begin() + first_slot + count);
  }
  return seq;
}

int64_t EpochSampler::bag_at(int64_t epoch, int64_t step, int rank) const {
  check_rank(rank);
  if (step < 0 || step >= steps_per_epoch()) {
    throw Error("", "step", "must be in [0, " + std::to_string(steps_per_epoch()) + "), got " + std::to_string(step));
  }
  return epoch_plan(epoch)[static_cast<size_t>(step)][static_cast<size_t>(rank)];
}

double EpochSampler::straggler_ratio(int64_t epoch) const {
  return mil::straggler_ratio(epoch_plan(epoch), bag_sizes_);
}

double straggler_ratio(const std::vector<std::vector<int64_t>>& plan, const std::vector<int64_t>& bag_sizes) {
  if (plan.empty()) throw Error("", "plan", "has no steps");
  double total = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    if (plan[s].empty()) throw Error("", "plan", "step " + std::to_string(s) + " has no bags");
    int64_t max_size = 0;
    double sum = 0;
    for (int64_t bag : plan[s]) {
      if (bag < 0 || bag >= static_cast<int64_t>(bag_sizes.size())) {
        throw Error("", "plan",
                    "step " + std::to_string(s) + " names bag " + std::to_string(bag) + ", but there are only " +
                        std::to_string(bag_sizes.size()) + " bags");
      }
      max_size = std::max(max_size, bag_sizes[static_cast<size_t>(bag)]);
      sum += static_cast<double>(bag_sizes[static_cast<size_t>(bag)]);
    }
    const double mean = sum / static_cast<double>(plan[s].size());
    total += mean > 0 ? static_cast<double>(max_size) / mean : 1.0;
  }
  return total / static_cast<double>(plan.size());
}

}  // namespace mil
