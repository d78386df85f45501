#pragma once
// What every binary does around its work: logging set-up and the one-line failure report.
#include <exception>
#include <string>

namespace mil {

// spdlog's default logger at `level` (trace..off), with a timestamped pattern; on multi-rank jobs the
// rank is in every line and only rank 0 logs below warning.
void setup_logging(const std::string& level, int rank = 0, int world_size = 1);

// Prints "<program>: error: <where>: <message>" as one line on stderr (no "<where>: " when `where` is
// empty; a rank on multi-rank jobs), writes the same text to `failure_file` when one is given (SageMaker
// shows it as the job's FailureReason), and returns the exit code to use (1). A broken invariant of our own
// (MIL_CHECK's std::logic_error) reads "internal error at ...", so users can tell it from their mistakes.
int report_failure(const std::string& program, const std::exception& e, const std::string& failure_file,
                   const std::string& where = "");

}  // namespace mil
