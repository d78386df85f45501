#pragma once
// DSMIL (Li, Li & Eliceiri, CVPR 2021): a max-pooling instance classifier and an attention bag
// classifier whose query is the highest-scoring ("critical") instance of each class. Module and
// parameter names mirror the authors' dsmil.py, so named_parameters() yields their state-dict keys
// (`i_classifier.fc.0.weight`, `b_classifier.q.0.weight`, ...).
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace mil {

struct ModelConfig {
  int64_t feature_dim = 512;  // D: length of each instance's feature vector
  int64_t num_classes = 1;    // C: 1 for binary (label 0/1), else one output per positive class
  bool nonlinear_q = true;    // q = Linear(D,128)-ReLU-Linear(128,128)-Tanh; false: Linear(D,128)
  bool passing_v = false;     // v = Dropout(dropout_v)-Linear(D,D)-ReLU; false: identity
  double dropout_v = 0.0;     // dropout in v, only with passing_v
  // The ReLU closing v (passing_v only). false: Dropout-Linear, the value network of the authors' 2020
  // code that produced the paper's MIL-benchmark figures. Same state-dict keys either way.
  bool value_relu = true;

  static constexpr int64_t kQueryDim = 128;  // fixed in the reference
  bool operator==(const ModelConfig& o) const;
  std::string describe() const;
};

struct DsmilOutput {
  torch::Tensor instance_logits;     // [N, C]
  torch::Tensor bag_logits;          // [1, C]
  torch::Tensor attention;           // [N, C], softmax over instances (each column sums to 1)
  torch::Tensor bag_representation;  // [1, C, D]
};

// Instance classifier: Sequential(Linear(D, C)) registered as `fc`, hence keys `fc.0.*`.
class InstanceClassifierImpl : public torch::nn::Module {
 public:
  explicit InstanceClassifierImpl(const ModelConfig& cfg);
  torch::Tensor forward(const torch::Tensor& feats);  // [N, D] -> [N, C]
  torch::nn::Sequential fc{nullptr};
};
TORCH_MODULE(InstanceClassifier);

// Bag classifier: attention to the critical instance, then Conv1d(C, C, kernel D) over B = Aᵀ V.
class BagClassifierImpl : public torch::nn::Module {
 public:
  explicit BagClassifierImpl(const ModelConfig& cfg);
  // Returns bag logits [1,C]; fills attention [N,C] and bag representation [1,C,D].
  torch::Tensor forward(const torch::Tensor& feats, const torch::Tensor& instance_logits, torch::Tensor* attention,
                        torch::Tensor* bag_representation);

  torch::Tensor query(const torch::Tensor& x);  // q(x): [M, D] -> [M, 128]

  // Exactly one of the two is set and registered as `q` (keys `q.0.*`/`q.2.*` or `q.*`).
  torch::nn::Sequential q_nonlinear{nullptr};  // Linear, ReLU, Linear, Tanh
  torch::nn::Linear q_linear{nullptr};
  torch::nn::Sequential v{nullptr};  // only with passing_v
  torch::nn::Conv1d fcc{nullptr};
};
TORCH_MODULE(BagClassifier);

class DsmilNetImpl : public torch::nn::Module {
 public:
  explicit DsmilNetImpl(const ModelConfig& cfg);
  DsmilOutput forward(const torch::Tensor& feats);  // feats [N, D], N >= 1
  const ModelConfig& config() const { return cfg_; }

  // The reference trainer's initialisation: orthogonal weights (Conv1d weight flattened to
  // C x (C*D)), zero biases, from torch's global generator seeded with `seed`.
  void init_orthogonal(uint64_t seed);

  InstanceClassifier i_classifier{nullptr};
  BagClassifier b_classifier{nullptr};

 private:
  ModelConfig cfg_;
};
TORCH_MODULE(DsmilNet);

}  // namespace mil
