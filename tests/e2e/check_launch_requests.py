#!/usr/bin/env python3
"""Checks the AWS requests scripts/sagemaker/launch.py made through the real SageMaker SDK, as captured by
tests/e2e/aws_local/sitecustomize.py (DIR/requests.jsonl, DIR/s3/<bucket>/<key>). Exits non-zero naming the
first failed check.

    check_launch_requests.py mpi DIR README.md     # --instance-count 2 --processes-per-host 4 --spot ...
    check_launch_requests.py options DIR           # the BYOC job with every launcher option
    check_launch_requests.py tune DIR              # --tune
    check_launch_requests.py unique DIR1 DIR2      # two launches of the same job: their own checkpoint prefixes
"""
import json
import os
import re
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def requests(capture):
    if os.path.exists(os.path.join(capture, "network.log")):
        raise AssertionError("network access was attempted: " + open(os.path.join(capture, "network.log")).read())
    reqs = [json.loads(line) for line in open(os.path.join(capture, "requests.jsonl"))]
    unanswered = [f"{r['service']}.{r['operation']}" for r in reqs if not r["answered"]]
    assert not unanswered, f"calls with no local answer: {unanswered}"
    return reqs


def only(capture, operation):
    found = [r["params"] for r in requests(capture) if r["operation"] == operation]
    assert len(found) == 1, f"expected one {operation}, got {len(found)}"
    return found[0]


def readme_metric_definitions(readme):
    block = re.search(r"metric_definitions = \[(.*?)\n\]", open(readme).read(), re.S).group(1)
    return [{"Name": n, "Regex": r} for n, r in re.findall(r'\{"Name": "([^"]+)",\s*"Regex": "([^"]+)"\}', block)]


def check_source_archive(capture, hyperparameters):
    """The uploaded source is exactly our entry point, byte for byte and executable."""
    uri = json.loads(hyperparameters["sagemaker_submit_directory"])
    assert uri.startswith("s3://") and uri.endswith("/source/sourcedir.tar.gz"), uri
    with tarfile.open(os.path.join(capture, "s3", uri[len("s3://"):])) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["entry.sh"], [m.name for m in members]
        assert members[0].mode & 0o111, "entry.sh is not executable in the archive"
        uploaded = tar.extractfile(members[0]).read()
    assert uploaded == open(os.path.join(REPO, "scripts/sagemaker/entry.sh"), "rb").read(), "entry.sh differs"
    assert json.loads(hyperparameters["sagemaker_program"]) == "entry.sh"


def check_mpi(capture, readme):
    job = only(capture, "CreateTrainingJob")
    name, hps = job["TrainingJobName"], job["HyperParameters"]
    # The toolkit's mpi distribution: what makes it run mpirun with 4 processes on each of the 2 hosts.
    assert hps["sagemaker_mpi_enabled"] == "true", hps
    assert hps["sagemaker_mpi_num_of_processes_per_host"] == "4", hps
    assert job["ResourceConfig"]["InstanceCount"] == 2, job["ResourceConfig"]
    # Our hyperparameters, JSON-encoded as framework estimators write them.
    assert {k: v for k, v in hps.items() if not k.startswith("sagemaker_")} == \
        {"epochs": "2", "threads": "1", "nonlinear_q": "true", "cache": '"ram"'}, hps
    assert job["EnableManagedSpotTraining"] is True
    stop = job["StoppingCondition"]
    assert stop["MaxRuntimeInSeconds"] == 3600 and stop["MaxWaitTimeInSeconds"] == 7200, stop
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://bucket/dsmil/ckpt/{name}/", "LocalPath": "/opt/ml/checkpoints"}
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == readme_metric_definitions(readme)
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/dsmil:cpu")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    assert {c: s["S3Uri"] for c, s in channels.items()} == {"train": "s3://bucket/dsmil/train",
                                                           "validation": "s3://bucket/dsmil/val"}
    assert all(s["S3DataDistributionType"] == "FullyReplicated" for s in channels.values())
    assert job["ProfilerConfig"] == {"DisableProfiler": True} and "DebugHookConfig" not in job
    assert "ProfilerRuleConfigurations" not in job and "DebugRuleConfigurations" not in job
    check_source_archive(capture, hps)
    put = only(capture, "PutObject")
    assert put["Key"] == f"{name}/source/sourcedir.tar.gz", put["Key"]


def check_options(capture):
    job = only(capture, "CreateTrainingJob")
    kms = "arn:aws:kms:eu-west-1:123456789012:key/k1"
    assert job["ResourceConfig"] == {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 500,
                                     "VolumeKmsKeyId": kms, "KeepAlivePeriodInSeconds": 1800}, job["ResourceConfig"]
    assert job["VpcConfig"] == {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}
    assert job["OutputDataConfig"] == {"S3OutputPath": "s3://bucket/dsmil/out", "KmsKeyId": kms}
    assert job["EnableNetworkIsolation"] is True and job["EnableInterContainerTrafficEncryption"] is True
    assert job["Environment"] == {"HDF5_USE_FILE_LOCKING": "FALSE", "OMP_PROC_BIND": "a=b"}, job["Environment"]
    assert job["Tags"] == [{"Key": "project", "Value": "dsmil"}, {"Key": "cost-centre", "Value": "path-1"}]
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "FastFile"
    assert job["ProfilerConfig"] == {"DisableProfiler": True} and "DebugHookConfig" not in job
    # One process: a bring-your-own-container job, nothing uploaded, no toolkit keys, values as str().
    assert job["HyperParameters"] == {"epochs": "40", "nonlinear_q": "True"}, job["HyperParameters"]
    assert "EnableManagedSpotTraining" not in job and "CheckpointConfig" not in job
    assert not [r for r in requests(capture) if r["service"] == "s3"], "a BYOC job uploaded something"


def check_tune(capture):
    tuning = only(capture, "CreateHyperParameterTuningJob")
    name = tuning["HyperParameterTuningJobName"]
    assert len(name) <= 32 and name.startswith("dsmil-tune-"), name
    config = tuning["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:auc"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "1e-05", "MaxValue": "0.001", "ScalingType": "Logarithmic"}], ranges
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "epochs", "MinValue": "10", "MaxValue": "40", "ScalingType": "Auto"}], ranges
    definition = tuning["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert static["sagemaker_mpi_num_of_processes_per_host"] == "2" and static["sagemaker_mpi_enabled"] == "true"
    assert static["seed"] == "7" and "lr" not in static and "epochs" not in static, static
    metrics = {m["Name"] for m in definition["AlgorithmSpecification"]["MetricDefinitions"]}
    assert "validation:auc" in metrics, metrics
    check_source_archive(capture, static)
    assert "CheckpointConfig" not in definition


def check_unique(first, second):
    a, b = only(first, "CreateTrainingJob"), only(second, "CreateTrainingJob")
    assert a["TrainingJobName"] != b["TrainingJobName"]
    for job in (a, b):
        uri = job["CheckpointConfig"]["S3Uri"]
        assert uri.endswith(f"/{job['TrainingJobName']}/"), uri
    assert a["CheckpointConfig"]["S3Uri"] != b["CheckpointConfig"]["S3Uri"]


def main():
    case, *args = sys.argv[1:]
    {"mpi": check_mpi, "options": check_options, "tune": check_tune, "unique": check_unique}[case](*args)
    print(f"check_launch_requests {case}: OK")


if __name__ == "__main__":
    main()
