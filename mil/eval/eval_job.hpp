#pragma once
// dsmil_eval's job: score slides with one or more trained models (majority vote), write predictions,
// metrics when labels are known, per-instance attention for heatmaps, and with --plots PNG figures.
#include "mil/config/eval_config.hpp"

namespace mil {

// `cfg` validated (validate(EvalConfig)). Throws mil::Error for bad models, slides or output places.
void run_evaluation(const EvalConfig& cfg);

}  // namespace mil
