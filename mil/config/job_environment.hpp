#pragma once
// Checks of the SageMaker job around dsmil_train that no option can fix: a job whose layout would make the
// ranks train something other than one model on every slide. Called once the communicator exists.
#include <string>

#include "mil/config/train_config.hpp"

namespace mil {

// Throws mil::Error naming the file (and the channel) when
//  - <root>/input/config/resourceconfig.json lists more than one host but this process is not one rank of
//    a larger MPI job (world_size 1): every host would train its own model, and their checkpoints would
//    meet under one S3 prefix. The mpi distribution (launch.py) starts one job over all hosts.
//  - a channel in <root>/input/config/inputdataconfig.json is `ShardedByS3Key`: each host would get only
//    part of the channel's files, while dsmil_train shards bags over the ranks itself and expects every rank
//    to see every slide (FullyReplicated, the default). Sharding is never done behind its back.
// Files that are absent (outside SageMaker, or a job without them) are not checked.
void check_job_environment(const SageMakerEnvironment& env, int world_size);

}  // namespace mil
