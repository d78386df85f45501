#include "mil/model/dsmil.hpp"

#include <cmath>
#include <sstream>

namespace mil {

bool ModelConfig::operator==(const ModelConfig& o) const {
  return feature_dim == o.feature_dim && num_classes == o.num_classes && nonlinear_q == o.nonlinear_q &&
         passing_v == o.passing_v && dropout_v == o.dropout_v && value_relu == o.value_relu;
}

std::string ModelConfig::describe() const {
  std::ostringstream s;
  s << "D=" << feature_dim << " C=" << num_classes << " q=" << (nonlinear_q ? "nonlinear" : "linear")
    << " v=" << (passing_v ? "passing" : "identity");
  if (passing_v) s << " dropout_v=" << dropout_v << (value_relu ? "" : " v_relu=no");
  return s.str();
}

InstanceClassifierImpl::InstanceClassifierImpl(const ModelConfig& cfg) {
  fc = register_module("fc", torch::nn::Sequential(torch::nn::Linear(cfg.feature_dim, cfg.num_classes)));
}

torch::Tensor InstanceClassifierImpl::forward(const torch::Tensor& feats) {
  return fc->forward(feats);
}

BagClassifierImpl::BagClassifierImpl(const ModelConfig& cfg) {
  using namespace torch::nn;
  const int64_t d = cfg.feature_dim;
  if (cfg.nonlinear_q) {
    q_nonlinear = register_module("q", Sequential(Linear(d, ModelConfig::kQueryDim), ReLU(),
                                                  Linear(ModelConfig::kQueryDim, ModelConfig::kQueryDim), Tanh()));
  } else {
    q_linear = register_module("q", Linear(d, ModelConfig::kQueryDim));
  }
  if (cfg.passing_v) {
    v = register_module("v", Sequential(Dropout(cfg.dropout_v), Linear(d, d)));
    if (cfg.value_relu) v->push_back(ReLU());
  }
  fcc = register_module("fcc", Conv1d(Conv1dOptions(cfg.num_classes, cfg.num_classes, d)));
}

torch::Tensor BagClassifierImpl::query(const torch::Tensor& x) {
  return q_nonlinear ? q_nonlinear->forward(x) : q_linear->forward(x);
}

torch::Tensor BagClassifierImpl::forward(const torch::Tensor& feats, const torch::Tensor& instance_logits,
                                         torch::Tensor* attention, torch::Tensor* bag_representation) {
  const torch::Tensor values = v ? v->forward(feats) : feats;  // [N, D]
  const torch::Tensor queries = query(feats);                  // [N, 128]

  // Critical instance per class: the argmax of its instance logits (not differentiated; gradients
  // reach it only through q). Its query comes from the raw features, as in the reference.
  const torch::Tensor critical = std::get<1>(instance_logits.max(0));             // [C]
  const torch::Tensor critical_queries = query(feats.index_select(0, critical));  // [C, 128]

  const double scale = std::sqrt(static_cast<double>(queries.size(1)));
  torch::Tensor a = torch::softmax(torch::mm(queries, critical_queries.t()) / scale, 0);  // [N, C]
  torch::Tensor b = torch::mm(a.t(), values).unsqueeze(0);                                // [1, C, D]
  torch::Tensor logits = fcc->forward(b).view({1, -1});                                   // [1, C]
  *attention = std::move(a);
  *bag_representation = std::move(b);
  return logits;
}

DsmilNetImpl::DsmilNetImpl(const ModelConfig& cfg) : cfg_(cfg) {
  i_classifier = register_module("i_classifier", InstanceClassifier(cfg));
  b_classifier = register_module("b_classifier", BagClassifier(cfg));
}

DsmilOutput DsmilNetImpl::forward(const torch::Tensor& feats) {
  DsmilOutput out;
  out.instance_logits = i_classifier->forward(feats);
  out.bag_logits = b_classifier->forward(feats, out.instance_logits, &out.attention, &out.bag_representation);
  return out;
}

void DsmilNetImpl::init_orthogonal(uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    torch::Tensor& p = item.value();
    const std::string& key = item.key();
    if (key.size() >= 4 && key.compare(key.size() - 4, 4, "bias") == 0) {
      p.zero_();
    } else {
      torch::nn::init::orthogonal_(p);  // flattens trailing dims, as PyTorch does for Conv1d
    }
  }
}

}  // namespace mil
