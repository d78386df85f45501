#!/usr/bin/env python3
"""Batch inference with dsmil_eval as a SageMaker Processing job, with the SDK pinned in
scripts/sagemaker/requirements.txt:

    python scripts/sagemaker/eval_launch.py --image-uri 123456789012.dkr.ecr.eu-west-1.amazonaws.com/dsmil:cpu \\
        --role arn:aws:iam::123456789012:role/SageMakerRole \\
        --model s3://bucket/dsmil/output/<training job>/output/model.tar.gz \\
        --slides s3://bucket/features/cohort2 --output s3://bucket/dsmil/predictions/cohort2

The job's container runs scripts/sagemaker/eval_entry.sh (the image's copy), which unpacks model.tar.gz (a
training job's /opt/ml/model), scores every slide of the --slides prefix (per-slide .h5 features, with
labels.csv when there are labels) and writes predictions.csv, metrics.json, per-slide attention files and
plots (ROC, heatmaps) to --output. A failure's reason is the job's ExitMessage. Arguments after `--` go to
dsmil_eval (e.g. `-- --threads 4 --on-bad-slide skip`). --dry-run prints the arguments without the SDK.
"""
import argparse
import json
import time

ENTRY = "/opt/dsmil/scripts/sagemaker/eval_entry.sh"  # where the images put the repository
MODEL_DIR = "/opt/ml/processing/model"
SLIDES_DIR = "/opt/ml/processing/input/slides"
OUTPUT_DIR = "/opt/ml/processing/output"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-uri", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--model", required=True, help="S3 URI of a training job's model.tar.gz")
    p.add_argument("--slides", required=True, help="S3 prefix of the slides' .h5 feature files")
    p.add_argument("--output", required=True, help="S3 prefix for predictions, attention files and plots")
    p.add_argument("--instance-type", default="ml.c5.4xlarge")
    p.add_argument("--volume-size", type=int, default=30, help="GB of storage for the slides and the outputs")
    p.add_argument("--max-runtime", type=int, default=24 * 3600)
    p.add_argument("--job-name", help="base job name (default: dsmil-eval); a timestamp is appended")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--tags", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--kms-key", help="KMS key for the volume and the outputs")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then dsmil_eval options")
    args = p.parse_args(argv)
    if args.eval_args and args.eval_args[0] == "--":
        args.eval_args = args.eval_args[1:]
    return args


def key_values(items, option):
    pairs = [item.partition("=") for item in items]
    bad = [k for k, sep, _ in pairs if not sep or not k]
    if bad:
        raise SystemExit(f"{option}: expected KEY=VALUE")
    return {k: v for k, _, v in pairs}


def job_name(base):
    now = time.time()
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now)) + "-%03d" % (int(now * 1000) % 1000)
    return base[:63 - len(stamp) - 1] + "-" + stamp


def processor_arguments(args):
    kwargs = {
        "role": args.role,
        "image_uri": args.image_uri,
        "instance_count": 1,
        "instance_type": args.instance_type,
        "entrypoint": [ENTRY],
        "volume_size_in_gb": args.volume_size,
        "max_runtime_in_seconds": args.max_runtime,
        "base_job_name": args.job_name or "dsmil-eval",
        # Channels are read-only inputs; HDF5's locks need not be supported by the file system.
        "env": dict({"HDF5_USE_FILE_LOCKING": "FALSE"}, **key_values(args.env, "--env")),
    }
    if args.tags:
        kwargs["tags"] = [{"Key": k, "Value": v} for k, v in key_values(args.tags, "--tags").items()]
    if args.kms_key:
        kwargs["volume_kms_key"] = args.kms_key
        kwargs["output_kms_key"] = args.kms_key
    return kwargs


def run_arguments(args):
    return {
        "inputs": [{"input_name": "model", "source": args.model, "destination": MODEL_DIR},
                   {"input_name": "slides", "source": args.slides, "destination": SLIDES_DIR}],
        "outputs": [{"output_name": "predictions", "source": OUTPUT_DIR, "destination": args.output}],
        "arguments": args.eval_args or None,
    }


def main(argv=None):
    args = parse_args(argv)
    name = job_name(args.job_name or "dsmil-eval")
    kwargs, run = processor_arguments(args), run_arguments(args)
    if args.dry_run:
        print(json.dumps({"job_name": name, "processor": kwargs, "run": run}, indent=2))
        return
    from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor

    processor = Processor(**kwargs)
    processor.run(inputs=[ProcessingInput(**i) for i in run["inputs"]],
                  outputs=[ProcessingOutput(**o) for o in run["outputs"]],
                  arguments=run["arguments"], job_name=name, wait=args.wait, logs=args.wait)
    print(f"started processing job {name}")


if __name__ == "__main__":
    main()
