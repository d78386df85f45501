#include "mil/eval/evaluation.hpp"

#include "mil/data/bag_loader.hpp"
#include "mil/dist/gather.hpp"
#include "mil/model/loss.hpp"
#include "mil/util/check.hpp"
#include "mil/util/json.hpp"

namespace mil {

torch::Tensor target_tensor(const BagInfo& bag, const torch::Device& device) {
  return torch::tensor(bag.target, torch::kFloat).to(device);
}

EvalResult score_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                      const torch::Device& device, Communicator& comm, std::shared_ptr<BagCache> cache,
                      const BagForward& forward) {
  torch::NoGradGuard no_grad;
  model.net->eval();
  const int64_t n = static_cast<int64_t>(index.bags.size());
  const int world = comm.world_size();
  const auto positions_of = [&](int rank) {
    std::vector<int64_t> positions;
    for (int64_t i = rank; i < n; i += world) positions.push_back(i);
    return positions;
  };
  const bool labelled = n > 0 && !index.bags[0].target.empty();
  const int64_t num_classes = model.net->config().num_classes;

  // This rank's share: (per-class probabilities..., loss) per bag: on a GPU kept where they were computed and
  // read once after the last bag (a GPU waits for the host once, not per bag); from CPU outputs, in `rows`.
  std::vector<torch::Tensor> scored;
  std::vector<double> rows;
  BagLoader loader(index, {features_key, prefetch, CacheMode::kNone, false, false, device}, std::move(cache));
  const std::vector<int64_t> mine = positions_of(comm.rank());
  loader.start(mine);
  for (size_t i = 0; i < mine.size(); ++i) {
    const Bag bag = loader.next();
    const torch::Tensor x = model.prepare(bag.features, device);
    const DsmilOutput out = forward ? forward(x) : model.net->forward(x);
    const BagInfo& info = index.bags[static_cast<size_t>(bag.index)];
    if (out.bag_logits.device().is_cpu()) {  // scored on the host as they come
      const std::vector<double> p = model.probabilities(out);
      rows.insert(rows.end(), p.begin(), p.end());
      rows.push_back(labelled ? dsmil_loss_on_host(out, info.target) : 0.0);
      continue;
    }
    const torch::Tensor loss = labelled ? dsmil_loss(out, target_tensor(info, device)).reshape({1})
                                        : torch::zeros({1}, out.bag_logits.options());
    scored.push_back(torch::cat({model.probability_tensor(out).to(torch::kDouble), loss.to(torch::kDouble)}));
  }
  if (!scored.empty()) {
    const torch::Tensor read = torch::cat(scored).to(torch::kCPU).contiguous();
    rows.assign(read.data_ptr<double>(), read.data_ptr<double>() + read.numel());
  }
  const torch::Tensor all = gather_rows(comm, rows, num_classes + 1, n, positions_of);

  EvalResult r;
  const auto all_a = all.accessor<double, 2>();
  double loss_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const BagInfo& info = index.bags[static_cast<size_t>(i)];
    r.slide_ids.push_back(info.slide_id);
    std::vector<double> probs(static_cast<size_t>(num_classes));
    for (int64_t c = 0; c < num_classes; ++c) probs[static_cast<size_t>(c)] = all_a[i][c];
    r.probs.push_back(std::move(probs));
    if (labelled) {
      loss_sum += all_a[i][num_classes];
      r.targets.emplace_back(info.target.begin(), info.target.end());
    }
  }
  if (labelled) r.loss = loss_sum / static_cast<double>(n);
  return r;
}

EvalResult evaluate_bags(TrainedModel& model, const BagIndex& index, const std::string& features_key, int prefetch,
                         const torch::Device& device, const std::vector<double>& thresholds, Communicator& comm,
                         std::shared_ptr<BagCache> cache) {
  EvalResult r = score_bags(model, index, features_key, prefetch, device, comm, std::move(cache));
  if (!r.targets.empty()) r.metrics = evaluate(r.probs, r.targets, thresholds);
  return r;
}

EvalResult restored_eval(const BagIndex& set, std::vector<std::vector<double>> probs, double loss) {
  EvalResult r;
  if (probs.empty()) return r;
  for (const BagInfo& b : set.bags) {
    r.slide_ids.push_back(b.slide_id);
    r.targets.emplace_back(b.target.begin(), b.target.end());
  }
  r.probs = std::move(probs);
  r.loss = loss;
  r.metrics = evaluate(r.probs, r.targets, {});
  return r;
}

VoteResult combine_votes(const std::vector<EvalResult>& per_model, const std::vector<TrainedModel>& models) {
  MIL_CHECK(!per_model.empty() && per_model.size() == models.size(), "combine_votes: one result per model");
  VoteResult v;
  v.mean = per_model[0];
  std::vector<std::vector<std::vector<int>>> votes;
  for (size_t m = 0; m < models.size(); ++m) {
    votes.push_back(predict_labels(per_model[m].probs, models[m].thresholds));
    if (m == 0) continue;
    for (size_t b = 0; b < v.mean.probs.size(); ++b) {
      for (size_t c = 0; c < v.mean.probs[b].size(); ++c) v.mean.probs[b][c] += per_model[m].probs[b][c];
    }
  }
  for (auto& row : v.mean.probs) {
    for (double& p : row) p /= static_cast<double>(models.size());
  }
  v.voted = majority_vote(votes);
  if (!v.mean.targets.empty()) {
    // Thresholds of 0.5 on the 0/1 votes reproduce them exactly; AUC needs scores: the mean probabilities.
    std::vector<std::vector<double>> vote_scores;
    for (const auto& row : v.voted) vote_scores.emplace_back(row.begin(), row.end());
    v.metrics =
        evaluate(vote_scores, v.mean.targets, std::vector<double>(v.voted.empty() ? 0 : v.voted[0].size(), 0.5));
    v.metrics.auc = evaluate(v.mean.probs, v.mean.targets, {}).auc;
    v.metrics.thresholds.clear();  // each model's own are stored with it
  }
  return v;
}

nlohmann::json metrics_to_json(const EvalMetrics& m) {
  nlohmann::json aucs = nlohmann::json::array();
  for (double a : m.auc) aucs.push_back(number_or_null(a));
  return {{"auc", aucs},
          {"mean_auc", number_or_null(m.mean_auc())},
          {"accuracy", m.accuracy},
          {"balanced_accuracy", number_or_null(m.balanced_accuracy)},
          {"hamming_loss", m.hamming_loss},
          {"thresholds", m.thresholds}};
}

}  // namespace mil
