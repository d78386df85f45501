#!/usr/bin/env python3
"""Launches dsmil_train as a SageMaker training job with the SageMaker Python SDK: an example to adapt.

    pip install sagemaker
    python scripts/sagemaker/launch.py --image-uri 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dsmil:cuda \\
        --role arn:aws:iam::123456789012:role/SageMakerRole --instance-type ml.g5.12xlarge \\
        --processes-per-host 4 --instance-count 2 --spot --checkpoint-s3-uri s3://bucket/dsmil/ckpt \\
        --train s3://bucket/features/train --validation s3://bucket/features/val \\
        --tensorboard-s3-uri s3://bucket/dsmil/tb --hp epochs=50 --hp lr=2e-4 --hp nonlinear_q=True

The image is one of scripts/sagemaker/Dockerfile{,.cuda} pushed to ECR. One process per host runs as a
bring-your-own-container job (the image's entry point execs dsmil_train, which reads /opt/ml itself and
checkpoints on SIGTERM). Several processes per host, or several hosts, use the SDK's `mpi` distribution,
which needs script mode: the SDK uploads scripts/sagemaker/entry.sh as the entry point and the training
toolkit in the image runs mpirun over every host. --dry-run prints the Estimator's arguments and needs
neither the SDK nor AWS credentials.
"""
import argparse
import ast
import json
import os

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
    p.add_argument("--output-path", help="S3 prefix for model.tar.gz and output.tar.gz")
    p.add_argument("--spot", action="store_true", help="managed spot training (needs --checkpoint-s3-uri)")
    p.add_argument("--max-run", type=int, default=24 * 3600, help="seconds of training at most")
    p.add_argument("--max-wait", type=int, help="seconds including waiting for spot capacity (default 2 x max-run)")
    p.add_argument("--checkpoint-s3-uri", help="synced with /opt/ml/checkpoints: what a restarted job resumes")
    p.add_argument("--tensorboard-s3-uri", help="synced with /opt/ml/output/tensorboard")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                   help="a dsmil_train option, VALUE a Python literal (epochs=50, lr=2e-4, nonlinear_q=True)")
    p.add_argument("--job-name", help="base job name (default: dsmil)")
    p.add_argument("--wait", action="store_true", help="stream the job's logs until it ends")
    p.add_argument("--dry-run", action="store_true", help="print the Estimator's arguments and exit")
    args = p.parse_args(argv)
    if args.spot and not args.checkpoint_s3_uri:
        p.error("--spot needs --checkpoint-s3-uri: a reclaimed job resumes from its checkpoints")
    return args


def hyperparameters(items):
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--hp {item}: expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text  # a bare word: a string
    return out


def estimator_arguments(args):
    """The Estimator's keyword arguments, SDK objects described as plain dicts (built in main())."""
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
    }
    if args.output_path:
        kwargs["output_path"] = args.output_path
    if args.processes_per_host > 1 or args.instance_count > 1:
        # Script mode: the toolkit in the image runs entry.sh under mpirun on every host.
        kwargs["entry_point"] = "entry.sh"
        kwargs["source_dir"] = HERE
        kwargs["distribution"] = {"mpi": {"enabled": True, "processes_per_host": args.processes_per_host}}
    if args.spot:
        kwargs["use_spot_instances"] = True
        kwargs["max_wait"] = args.max_wait or 2 * args.max_run
    if args.checkpoint_s3_uri:
        kwargs["checkpoint_s3_uri"] = args.checkpoint_s3_uri
        kwargs["checkpoint_local_path"] = "/opt/ml/checkpoints"
    if args.tensorboard_s3_uri:
        kwargs["tensorboard_output_config"] = {"s3_output_path": args.tensorboard_s3_uri,
                                               "container_local_output_path": "/opt/ml/output/tensorboard"}
    return kwargs


def channels(args):
    return {name: uri for name, uri in [("train", args.train), ("validation", args.validation),
                                         ("test", args.test)] if uri}


def main(argv=None):
    args = parse_args(argv)
    kwargs = estimator_arguments(args)
    if args.dry_run:
        print(json.dumps({"estimator": kwargs, "inputs": channels(args)}, indent=2))
        return
    from sagemaker.debugger import TensorBoardOutputConfig
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput

    if "tensorboard_output_config" in kwargs:
        kwargs["tensorboard_output_config"] = TensorBoardOutputConfig(**kwargs["tensorboard_output_config"])
    estimator = Estimator(**kwargs)
    # Every host gets every slide (FullyReplicated); each rank reads its own shard of bags.
    inputs = {name: TrainingInput(uri, distribution="FullyReplicated") for name, uri in channels(args).items()}
    estimator.fit(inputs, wait=args.wait)
    print(f"started {estimator.latest_training_job.name}")


if __name__ == "__main__":
    main()
