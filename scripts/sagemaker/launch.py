#!/usr/bin/env python3
"""Launches dsmil_train as a SageMaker training job, or a hyperparameter tuning job, with the SageMaker
Python SDK 2.x pinned in scripts/sagemaker/requirements.txt:

    python3 -m venv .venv-launch && .venv-launch/bin/pip install -r scripts/sagemaker/requirements.txt
    .venv-launch/bin/python scripts/sagemaker/launch.py \\
        --image-uri 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dsmil:cuda \\
        --role arn:aws:iam::123456789012:role/SageMakerRole --instance-type ml.g5.12xlarge \\
        --processes-per-host 4 --instance-count 2 --spot --checkpoint-s3-uri s3://bucket/dsmil/ckpt \\
        --train s3://bucket/features/train --validation s3://bucket/features/val \\
        --tensorboard-s3-uri s3://bucket/dsmil/tb --hp epochs=50 --hp lr=2e-4 --hp nonlinear_q=True

The image is one of scripts/sagemaker/Dockerfile{,.cuda} pushed to ECR (scripts/sagemaker/push_image.sh).
One process on one host runs as a bring-your-own-container job (the SDK's generic Estimator: the image's
entry point execs dsmil_train, which reads /opt/ml itself and checkpoints on SIGTERM). Several processes per
host, or several hosts, use the `mpi` distribution. That needs script mode and an estimator class that turns
`distribution` into the toolkit's sagemaker_mpi_* hyperparameters (the generic Estimator drops it): the
PyTorch framework estimator with our image_uri. The SDK uploads entry.sh alone as the source archive, and
the training toolkit in the image runs it under mpirun on every host.

Each job checkpoints under its own prefix, <--checkpoint-s3-uri>/<job name>/: a managed-spot restart of the
job restores its own checkpoints, and no other job meets them. --tune starts a hyperparameter tuning job on
validation:auc instead. --dry-run prints the arguments and needs neither the SDK nor AWS.
"""
import argparse
import ast
import json
import os
import time

# The same regexes as the README's metric_definitions (tests/e2e/sagemaker_local.sh checks they agree and
# that they match a real job's log lines, also behind mpirun's `[1,0]<stdout>:` prefix).
METRIC_DEFINITIONS = [
    {"Name": "train:loss",            "Regex": "train_loss=([0-9.eE+-]+)"},
    {"Name": "validation:loss",       "Regex": "val_loss=([0-9.eE+-]+)"},
    {"Name": "validation:auc",        "Regex": "val_auc=([0-9.eE+-]+)"},
    {"Name": "validation:accuracy",   "Regex": "val_accuracy=([0-9.eE+-]+)"},
    {"Name": "learning_rate",         "Regex": " lr=([0-9.eE+-]+)"},
    {"Name": "instances_per_second",  "Regex": "instances_per_second=([0-9.eE+-]+)"},
    {"Name": "best:validation_auc",   "Regex": "best_validation_auc=([0-9.eE+-]+)"},
    {"Name": "test:auc",              "Regex": "test_auc=([0-9.eE+-]+)"},
    {"Name": "test:accuracy",         "Regex": "test_accuracy=([0-9.eE+-]+)"},
    {"Name": "cv:accuracy",           "Regex": "cv_accuracy_mean=([0-9.eE+-]+)"},
]

HERE = os.path.dirname(os.path.abspath(__file__))
OBJECTIVE = "validation:auc"
# Ranges a --tune job searches when no --tune-range is given.
DEFAULT_TUNE_RANGES = ["lr=1e-5:1e-3:log", "weight_decay=1e-5:1e-2:log"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-uri", required=True, help="ECR image built from scripts/sagemaker/Dockerfile[.cuda]")
    p.add_argument("--role", required=True, help="SageMaker execution role ARN")
    p.add_argument("--instance-type", default="ml.c5.4xlarge")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--processes-per-host", type=int, default=1, help="MPI ranks per host (= GPUs per host)")
    p.add_argument("--train", required=True, help="S3 prefix of the training channel (.h5 files + labels.csv)")
    p.add_argument("--validation", help="S3 prefix of the validation channel")
    p.add_argument("--test", help="S3 prefix of the test channel")
    p.add_argument("--input-mode", default="File", choices=["File", "FastFile"])
    p.add_argument("--output-path", help="S3 prefix for model.tar.gz, output.tar.gz and the source archive")
    p.add_argument("--spot", action="store_true", help="managed spot training (needs --checkpoint-s3-uri)")
    p.add_argument("--max-run", type=int, default=24 * 3600, help="seconds of training at most")
    p.add_argument("--max-wait", type=int, help="seconds including waiting for spot capacity (default 2 x max-run)")
    p.add_argument("--checkpoint-s3-uri",
                   help="S3 prefix under which each job syncs /opt/ml/checkpoints to <prefix>/<job name>/")
    p.add_argument("--tensorboard-s3-uri", help="synced with /opt/ml/output/tensorboard")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="a dsmil_train option, VALUE a Python literal (epochs=50, lr=2e-4, nonlinear_q=True)")
    p.add_argument("--job-name", help="base job name (default: dsmil); a timestamp is appended")
    p.add_argument("--volume-size", type=int, default=30, help="GB of EBS storage per instance (channels, model)")
    p.add_argument("--keep-alive", type=int, metavar="SECONDS", help="warm pool: keep the instances this long")
    p.add_argument("--subnets", help="comma-separated VPC subnet ids")
    p.add_argument("--security-group-ids", help="comma-separated security group ids (with --subnets)")
    p.add_argument("--kms-key", help="KMS key for the instances' volumes, the outputs and the source upload")
    p.add_argument("--network-isolation", action="store_true", help="no network access from the container")
    p.add_argument("--encrypt-inter-container", action="store_true", help="encrypt traffic between hosts (MPI)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a container variable")
    p.add_argument("--tags", action="append", default=[], metavar="KEY=VALUE", help="a tag on the job")
    p.add_argument("--profiler", action="store_true", help="turn SageMaker Debugger's profiler and hooks on")
    p.add_argument("--tune", action="store_true", help=f"a hyperparameter tuning job maximising {OBJECTIVE}")
    p.add_argument("--tune-range", action="append", default=[], metavar="KEY=LOW:HIGH[:log]",
                   help="a searched hyperparameter (integers if LOW and HIGH are; default: "
                        + ", ".join(DEFAULT_TUNE_RANGES) + ")")
    p.add_argument("--max-jobs", type=int, default=20, help="--tune: training jobs in all")
    p.add_argument("--max-parallel-jobs", type=int, default=4, help="--tune: training jobs at once")
    p.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation as K parallel jobs (--folds K --fold i each); "
                        "scripts/sagemaker/cv_summary.py reads their metrics back")
    p.add_argument("--wait", action="store_true", help="stream the job's logs until it ends")
    p.add_argument("--dry-run", action="store_true", help="print the SDK arguments and exit")
    args = p.parse_args(argv)
    if args.spot and not args.checkpoint_s3_uri:
        p.error("--spot needs --checkpoint-s3-uri: a reclaimed job resumes from its checkpoints")
    if args.tune and args.checkpoint_s3_uri:
        # Every trial of a tuning job would get the same CheckpointConfig, and restore another trial's files.
        p.error("--tune cannot use --checkpoint-s3-uri (or --spot): the trials would share one checkpoint prefix")
    if args.folds is not None and (args.folds < 2 or args.tune):
        p.error("--folds K needs K >= 2 and no --tune")
    if args.folds and {"folds", "fold"} & set(hyperparameters(args.hp)):
        p.error("--folds sets the folds and fold hyperparameters itself")
    if args.security_group_ids and not args.subnets:
        p.error("--security-group-ids needs --subnets")
    return args


def key_values(items, option, literal=False):
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{option} {item}: expected KEY=VALUE")
        if not literal:
            out[key] = text
            continue
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text  # a bare word: a string
    return out


def hyperparameters(items):
    return key_values(items, "--hp", literal=True)


def unique_name(base, max_length=63, short=False):
    """base-<UTC timestamp with milliseconds>, the SDK's form; tuning job names have at most 32 characters."""
    now = time.time()
    stamp = time.strftime("%y%m%d-%H%M%S" if short else "%Y-%m-%d-%H-%M-%S", time.gmtime(now))
    stamp += "-%03d" % (int(now * 1000) % 1000)
    return base[:max_length - len(stamp) - 1].rstrip("-") + "-" + stamp


def is_mpi(args):
    return args.processes_per_host > 1 or args.instance_count > 1


def estimator_arguments(args, job_name, fold=None):
    """The estimator's keyword arguments, SDK objects described as plain dicts (built in make_estimator());
    with `fold`, those of fold `fold` of --folds K."""
    kwargs = {
        "image_uri": args.image_uri,
        "role": args.role,
        "instance_type": args.instance_type,
        "instance_count": args.instance_count,
        "hyperparameters": hyperparameters(args.hp),
        "metric_definitions": METRIC_DEFINITIONS,
        "max_run": args.max_run,
        "base_job_name": args.job_name or "dsmil",
        "input_mode": args.input_mode,
        "volume_size": args.volume_size,
        # Debugger's profiler and hook rules add processing jobs and hooks dsmil_train has no use for.
        "disable_profiler": not args.profiler,
        "debugger_hook_config": args.profiler,
        "enable_network_isolation": args.network_isolation,
        "encrypt_inter_container_traffic": args.encrypt_inter_container,
    }
    optional = {
        "output_path": args.output_path,
        "code_location": args.output_path,
        "keep_alive_period_in_seconds": args.keep_alive,
        "subnets": args.subnets.split(",") if args.subnets else None,
        "security_group_ids": args.security_group_ids.split(",") if args.security_group_ids else None,
        "volume_kms_key": args.kms_key,
        "output_kms_key": args.kms_key,
        "environment": key_values(args.env, "--env") or None,
        "tags": [{"Key": k, "Value": v} for k, v in key_values(args.tags, "--tags").items()] or None,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if fold is not None:
        kwargs["hyperparameters"].update({"folds": args.folds, "fold": fold})
    if is_mpi(args):
        # Script mode: the toolkit in the image runs entry.sh under mpirun on every host. entry.sh alone is
        # uploaded (no source_dir: a requirements.txt next to it would be pip-installed at every start).
        kwargs["entry_point"] = os.path.join(HERE, "entry.sh")
        kwargs["distribution"] = {"mpi": {"enabled": True, "processes_per_host": args.processes_per_host}}
    if args.spot:
        kwargs["use_spot_instances"] = True
        kwargs["max_wait"] = args.max_wait or 2 * args.max_run
    if args.checkpoint_s3_uri:
        kwargs["checkpoint_s3_uri"] = f"{args.checkpoint_s3_uri.rstrip('/')}/{job_name}/"
        kwargs["checkpoint_local_path"] = "/opt/ml/checkpoints"
    if args.tensorboard_s3_uri:
        kwargs["tensorboard_output_config"] = {"s3_output_path": args.tensorboard_s3_uri,
                                               "container_local_output_path": "/opt/ml/output/tensorboard"}
    return kwargs


def tune_ranges(items):
    """--tune-range KEY=LOW:HIGH[:log] as {key: (kind, low, high, scaling)}."""
    out = {}
    for key, text in key_values(items or DEFAULT_TUNE_RANGES, "--tune-range").items():
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise SystemExit(f"--tune-range {key}={text}: expected LOW:HIGH or LOW:HIGH:log")
        low, high = (ast.literal_eval(v) for v in parts[:2])
        kind = "Integer" if isinstance(low, int) and isinstance(high, int) else "Continuous"
        out[key] = (kind, low, high, "Logarithmic" if len(parts) == 3 else "Auto")
    return out


def tuner_arguments(args, job_name):
    return {
        "objective_metric_name": OBJECTIVE,
        "objective_type": "Maximize",
        "metric_definitions": METRIC_DEFINITIONS,
        "hyperparameter_ranges": tune_ranges(args.tune_range),
        "max_jobs": args.max_jobs,
        "max_parallel_jobs": args.max_parallel_jobs,
        "base_tuning_job_name": job_name.rsplit("-", 3)[0],
    }


def channels(args):
    return {name: uri for name, uri in [("train", args.train), ("validation", args.validation),
                                         ("test", args.test)] if uri}


def make_estimator(kwargs):
    from sagemaker.debugger import TensorBoardOutputConfig

    kwargs = dict(kwargs)
    if "tensorboard_output_config" in kwargs:
        kwargs["tensorboard_output_config"] = TensorBoardOutputConfig(**kwargs["tensorboard_output_config"])
    if "distribution" in kwargs:
        from sagemaker.pytorch import PyTorch

        return PyTorch(**kwargs)
    from sagemaker.estimator import Estimator

    return Estimator(**kwargs)


def make_tuner(estimator, kwargs):
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner, IntegerParameter

    kinds = {"Continuous": ContinuousParameter, "Integer": IntegerParameter}
    ranges = {key: kinds[kind](low, high, scaling_type=scaling)
              for key, (kind, low, high, scaling) in kwargs["hyperparameter_ranges"].items()}
    return HyperparameterTuner(estimator, **dict(kwargs, hyperparameter_ranges=ranges))


def launch_folds(args):
    """--folds K: one training job per fold, each with its own name and checkpoint prefix."""
    base = args.job_name or "dsmil"
    jobs = {}
    for fold in range(args.folds):
        name = unique_name(f"{base}-fold{fold}")
        jobs[name] = estimator_arguments(args, name, fold)
    if args.dry_run:
        print(json.dumps({"jobs": jobs, "inputs": channels(args)}, indent=2))
        return
    from sagemaker.inputs import TrainingInput

    inputs = {name: TrainingInput(uri, distribution="FullyReplicated") for name, uri in channels(args).items()}
    for name, kwargs in jobs.items():
        make_estimator(kwargs).fit(inputs, job_name=name, wait=False)
        print(f"started training job {name}")
    print("when they have ended: python scripts/sagemaker/cv_summary.py " + " ".join(jobs))


def main(argv=None):
    args = parse_args(argv)
    if args.folds:
        launch_folds(args)
        return
    job_name = unique_name(args.job_name or ("dsmil-tune" if args.tune else "dsmil"), 32 if args.tune else 63,
                           short=args.tune)
    kwargs = estimator_arguments(args, job_name)
    tuner_kwargs = tuner_arguments(args, job_name) if args.tune else None
    if args.dry_run:
        print(json.dumps({"job_name": job_name, "estimator": kwargs, "tuner": tuner_kwargs,
                          "inputs": channels(args)}, indent=2))
        return
    from sagemaker.inputs import TrainingInput

    estimator = make_estimator(kwargs)
    # Every host gets every slide (FullyReplicated); each rank reads its own shard of bags.
    inputs = {name: TrainingInput(uri, distribution="FullyReplicated") for name, uri in channels(args).items()}
    if args.tune:
        tuner = make_tuner(estimator, tuner_kwargs)
        tuner.fit(inputs, job_name=job_name, wait=False)
        print(f"started tuning job {job_name}")
        if args.wait:
            tuner.wait()
        return
    estimator.fit(inputs, job_name=job_name, wait=args.wait)
    print(f"started training job {job_name}")


if __name__ == "__main__":
    main()
