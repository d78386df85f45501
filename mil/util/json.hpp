#pragma once
// JSON conventions of the files we write.
#include <cmath>
#include <nlohmann/json.hpp>

namespace mil {

// A number, or null where it is undefined (NaN) or infinite: JSON has no NaN.
inline nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace mil
