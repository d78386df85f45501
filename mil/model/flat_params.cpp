#include "mil/model/flat_params.hpp"

#include <map>
#include <string>
#include <vector>

#include "mil/util/error.hpp"

namespace mil {
namespace {

// Where one parameter lives in the flat buffer.
struct Slot {
  std::string key;
  torch::Tensor DsmilTensors::*view;  // the combined view it belongs to
  int64_t offset = 0;                 // in floats, from the start of the buffer
};

}  // namespace

FlatParameters::FlatParameters(DsmilNetImpl& net) : cfg_(net.config()) {
  const int64_t d = cfg_.feature_dim;
  const int64_t c = cfg_.num_classes;
  const int64_t h = ModelConfig::kQueryDim;
  const std::string q1 = cfg_.nonlinear_q ? "b_classifier.q.0." : "b_classifier.q.";
  std::map<std::string, torch::Tensor> params;
  for (const auto& item : net.named_parameters()) params[item.key()] = item.value();

  // Keys in buffer order; each combined view starts at its first key's offset.
  std::vector<std::pair<std::string, torch::Tensor DsmilTensors::*>> order = {
      {"i_classifier.fc.0.weight", &DsmilTensors::w_in},
      {q1 + "weight", nullptr},
      {"i_classifier.fc.0.bias", &DsmilTensors::b_in},
      {q1 + "bias", nullptr}};
  if (cfg_.nonlinear_q) {
    order.push_back({"b_classifier.q.2.weight", &DsmilTensors::w_q2});
    order.push_back({"b_classifier.q.2.bias", &DsmilTensors::b_q2});
  }
  if (cfg_.passing_v) {
    order.push_back({"b_classifier.v.1.weight", &DsmilTensors::w_v});
    order.push_back({"b_classifier.v.1.bias", &DsmilTensors::b_v});
  }
  order.push_back({"b_classifier.fcc.weight", &DsmilTensors::w_bag});
  order.push_back({"b_classifier.fcc.bias", &DsmilTensors::b_bag});
  if (order.size() != params.size()) {
    throw Error("", "FlatParameters",
                "the model has " + std::to_string(params.size()) + " parameters, expected " +
                    std::to_string(order.size()) + " for " + cfg_.describe());
  }

  std::vector<Slot> slots;
  for (const auto& [key, view] : order) {
    const auto it = params.find(key);
    if (it == params.end()) throw Error("", key, "is not a parameter of the model (" + cfg_.describe() + ")");
    slots.push_back({key, view, numel_});
    numel_ += it->second.numel();
  }
  const torch::Tensor& first = params.begin()->second;
  values_ = torch::empty({numel_}, first.options().requires_grad(false));
  grads_ = torch::zeros({numel_ + kSpareSlots}, values_.options());
  torch::NoGradGuard no_grad;
  for (const Slot& s : slots) {
    torch::Tensor& p = params.at(s.key);
    torch::Tensor view = values_.narrow(0, s.offset, p.numel()).view(p.sizes());
    view.copy_(p.detach());
    p.set_data(view);
  }

  // The combined views the step works with.
  const auto at = [&](const std::string& key) {
    for (const Slot& s : slots) {
      if (s.key == key) return s.offset;
    }
    return int64_t{-1};
  };
  const auto bind = [&](torch::Tensor DsmilTensors::*view, const std::string& key, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    value_views_.*view = values_.narrow(0, at(key), n).view(shape);
    grad_views_.*view = grads_.narrow(0, at(key), n).view(shape);
  };
  bind(&DsmilTensors::w_in, "i_classifier.fc.0.weight", {c + h, d});
  bind(&DsmilTensors::b_in, "i_classifier.fc.0.bias", {c + h});
  if (cfg_.nonlinear_q) {
    bind(&DsmilTensors::w_q2, "b_classifier.q.2.weight", {h, h});
    bind(&DsmilTensors::b_q2, "b_classifier.q.2.bias", {h});
  }
  if (cfg_.passing_v) {
    bind(&DsmilTensors::w_v, "b_classifier.v.1.weight", {d, d});
    bind(&DsmilTensors::b_v, "b_classifier.v.1.bias", {d});
  }
  bind(&DsmilTensors::w_bag, "b_classifier.fcc.weight", {c, c * d});
  bind(&DsmilTensors::b_bag, "b_classifier.fcc.bias", {c});
}

void FlatParameters::zero_grads() {
  grads_.zero_();
  grads_zero_ = true;
  scratch_pending_ = false;
}

DsmilTensors& FlatParameters::bag_grad_views() {
  if (grads_zero_) {
    grads_zero_ = false;
    scratch_pending_ = false;
    return grad_views_;
  }
  if (!scratch_.defined()) {
    // The same offsets in a buffer of the same size: each view as it is in grads_.
    scratch_ = torch::empty_like(grads_);
    for (torch::Tensor DsmilTensors::*view :
         {&DsmilTensors::w_in, &DsmilTensors::b_in, &DsmilTensors::w_q2, &DsmilTensors::b_q2, &DsmilTensors::w_v,
          &DsmilTensors::b_v, &DsmilTensors::w_bag, &DsmilTensors::b_bag}) {
      const torch::Tensor& g = grad_views_.*view;
      if (g.defined()) scratch_views_.*view = scratch_.as_strided(g.sizes(), g.strides(), g.storage_offset());
    }
  }
  scratch_pending_ = true;
  return scratch_views_;
}

void FlatParameters::add_bag_grads() {
  if (scratch_pending_) grads().add_(scratch_.narrow(0, 0, numel_));
  scratch_pending_ = false;
}

}  // namespace mil
