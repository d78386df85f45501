#pragma once
// dsmil_train's configuration: one struct, filled from four layers (lowest first):
//   1. defaults, with paths taken from the SageMaker environment (SM_* variables, else the /opt/ml tree),
//   2. a JSON config file (--config FILE),
//   3. <root>/input/config/hyperparameters.json, when it exists,
//   4. the command line.
// Option names accept '_' for '-' in every layer, because the SageMaker training toolkit passes the
// hyperparameter keys exactly as users wrote them (`--nonlinear_q True`).
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mil {

struct TrainConfig {
  // Channels
  std::string train_dir;                  // --train: channel dir of per-slide .h5 files (SM_CHANNEL_TRAIN)
  std::string validation_dir;             // --validation (SM_CHANNEL_VALIDATION); empty = split from train
  std::string test_dir;                   // --test (SM_CHANNEL_TEST)
  std::string labels;                     // --labels; default <train>/labels.csv
  std::string validation_labels;          // --validation-labels; default <validation>/labels.csv
  std::string test_labels;                // --test-labels; default <test>/labels.csv
  std::string split_csv;                  // --split-csv: CLAM splits_k.csv (train/val/test columns)
  std::string features_key = "features";  // --features-key: HDF5 dataset holding [N, D] features
  std::string negative_label;             // --negative-label: label value meaning "no positive class"
  std::string on_bad_slide = "fail";      // --on-bad-slide: fail|skip
  std::string cache = "auto";             // --cache: auto (bounded float32)|none|ram (float16)|ram32
  double cache_budget = 0;                // --cache-budget: GB the RAM cache may hold; 0 = no bound
  int prefetch = 4;                       // --prefetch: bags read ahead in the background
  // Outputs
  std::string model_dir;        // --model-dir (SM_MODEL_DIR; /opt/ml/model in a job; ./model locally)
  std::string output_dir;       // --output-dir (SM_OUTPUT_DATA_DIR; /opt/ml/output/data; ./output)
  std::string failure_file;     // --failure-file (/opt/ml/output/failure when /opt/ml/output exists)
  std::string tensorboard_dir;  // --tensorboard-dir: TensorBoard event files; default <root>/output/tensorboard when
                                // <root> exists, else <output-dir>/tensorboard; "none" = off
  // Checkpoints (see checkpoint_state.hpp): written at each epoch end, on these schedules, and on SIGTERM
  std::string checkpoint_dir;             // --checkpoint-dir; default checkpointconfig.json's LocalPath, else
                                          // /opt/ml/checkpoints if it exists, else <output-dir>/checkpoints
  int checkpoint_every_steps = 0;         // --checkpoint-every-steps: also every N optimiser steps; 0 = off
  double checkpoint_every_seconds = 300;  // --checkpoint-every-seconds: also when this long since the last; 0 = off
  int keep_checkpoints = 2;               // --keep-checkpoints: the newest K are kept
  bool no_resume = false;                 // --no-resume: ignore existing checkpoints and start afresh
  // Model
  int64_t num_classes = 0;     // --num-classes: 0 = inferred from the labels
  bool nonlinear_q = true;     // --nonlinear-q
  bool passing_v = false;      // --passing-v
  double dropout_node = 0.0;   // --dropout-node: dropout in v (only with --passing-v)
  bool value_relu = true;      // --value-relu: ReLU closing v (only with --passing-v)
  double dropout_patch = 0.0;  // --dropout-patch: fraction of instances dropped per bag in training
  bool average = false;        // --average: score = (sigmoid(bag) + sigmoid(max instance)) / 2
  // Optimisation
  int epochs = 50;             // --epochs
  double lr = 1e-4;            // --lr
  double weight_decay = 1e-3;  // --weight-decay
  double min_lr = 5e-6;        // --min-lr: cosine schedule floor
  int stop_epochs = 10;        // --stop-epochs: early stop after this many epochs without improvement
  int accumulate = 1;          // --accumulate K: bags per rank per optimiser step, gradients averaged
  int bags_per_step = 1;       // --bags-per-step K: bags per packed forward/backward (x accumulate x ranks)
  // Splits
  double val_fraction = 0.2;  // --val-fraction (without --validation / --folds / --split-csv)
  int folds = 0;              // --folds K: stratified k-fold cross-validation
  int fold = -1;              // --fold i: run only fold i (default: all)
  bool standardize = false;   // --standardize: z-score features with training-split statistics
  // Runtime
  uint64_t seed = 42;              // --seed
  std::string precision = "fp32";  // --precision: fp32|bf16 (the step's large products; mil/model/precision.hpp)
  int threads = 0;                 // --threads: libtorch threads, 0 = auto (set_torch_threads)
  std::string device = "auto";     // --device: auto|cpu|cuda|cuda:N
  std::string comm = "auto";       // --comm: auto|mpi|gloo|nccl, the collectives between mpirun ranks
  std::string log_level = "info";  // --log-level
  std::string config_file;         // --config FILE (JSON object of option -> value)

  // Limits against hostile input and hung ranks
  int64_t max_bag_bytes = int64_t{16} << 30;  // --max-bag-bytes: a larger declared N x D x dtype is a bad slide
  double collective_timeout = 1800;           // --collective-timeout: seconds in one MPI collective; 0 = forever
};

// Where the SageMaker contract's inputs come from; injectable so tests can fake a job.
struct SageMakerEnvironment {
  std::function<std::optional<std::string>(const std::string&)> getenv;  // nullopt when unset
  std::string root = "/opt/ml";  // overridable so tests and local emulation use a fake tree

  // The process environment; root from DSMIL_SAGEMAKER_ROOT when set.
  static SageMakerEnvironment from_process();
};

struct ParsedTrainConfig {
  TrainConfig config;        // with every layer applied and the labels paths resolved; not validated
  bool help = false;         // --help: print help_text and exit (config then holds only the defaults)
  bool dump_config = false;  // --dump-config: print to_json(config) and exit
  std::string help_text;     // --help output, showing this environment's defaults
};

// The defaults of layer 1: TrainConfig{} with the paths this environment implies.
TrainConfig environment_defaults(const SageMakerEnvironment& env);

// `args` excludes argv[0]. Throws mil::Error on unknown options, malformed values and unreadable
// config or hyperparameters files; range checks are left to validate().
ParsedTrainConfig parse_train_config(const std::vector<std::string>& args, const SageMakerEnvironment& env);

// Whether dsmil_train writes TensorBoard event files: not with --tensorboard-dir none, nor with an empty
// directory (a TrainConfig built in code rather than by parse_train_config).
bool tensorboard_enabled(const TrainConfig& cfg);

// Throws mil::Error naming the first offending option, e.g. "--lr must be > 0 (got -1)".
void validate(const TrainConfig& cfg);

// The effective configuration keyed by option name ("weight-decay"), with typed values; readable back
// through --config. Leaves out "config" itself, since config files do not nest.
nlohmann::json to_json(const TrainConfig& cfg);

}  // namespace mil
