#!/usr/bin/env python3
"""Summarises a k-fold cross-validation launched with `launch.py --folds K`: reads each fold job's final
metrics back from SageMaker (DescribeTrainingJob's FinalMetricDataList, i.e. the last value of each of
launch.py's metric definitions) and prints one row per fold and the mean and sample standard deviation over
the folds that completed. Needs boto3 (scripts/sagemaker/requirements.txt) and AWS credentials.

    python scripts/sagemaker/cv_summary.py dsmil-fold0-... dsmil-fold1-... [--metric best:validation_auc]
        [--json FILE]

Exits 1 when a job has not completed or lacks a requested metric (it names the job), so that a summary is
never silently over fewer folds than asked for; --allow-incomplete summarises the completed ones.
"""
import argparse
import json
import statistics
import sys

DEFAULT_METRICS = ["best:validation_auc", "validation:auc", "validation:accuracy", "validation:loss"]


def fold_metrics(client, job_name):
    job = client.describe_training_job(TrainingJobName=job_name)
    metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    return job["TrainingJobStatus"], metrics


def summarise(rows, metrics):
    summary = {}
    for metric in metrics:
        values = [row[metric] for row in rows.values() if metric in row]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[metric] = {"mean": statistics.fmean(values), "std": spread, "folds": len(values)}
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", nargs="+", help="the fold jobs' names, as launch.py --folds printed them")
    p.add_argument("--metric", action="append", help=f"a metric name (default: {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--allow-incomplete", action="store_true", help="summarise the completed folds only")
    p.add_argument("--json", help="also write the rows and the summary to this file")
    args = p.parse_args(argv)
    metrics = args.metric or DEFAULT_METRICS

    import boto3

    client = boto3.client("sagemaker")
    rows, problems = {}, []
    for name in args.jobs:
        status, values = fold_metrics(client, name)
        if status != "Completed":
            problems.append(f"{name}: {status}")
            continue
        missing = [m for m in (args.metric or []) if m not in values]
        if missing:
            problems.append(f"{name}: no {', '.join(missing)}")
            continue
        rows[name] = values
    for problem in problems:
        print(f"cv_summary: {problem}", file=sys.stderr)
    if not rows or (problems and not args.allow_incomplete):
        return 1
    summary = summarise(rows, metrics)
    width = max(len(n) for n in rows)
    print(f"{'job':<{width}}  " + "  ".join(f"{m:>20}" for m in metrics))
    for name, values in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{values[m]:>20.4f}" if m in values else f"{'-':>20}"
                                             for m in metrics))
    for metric, s in summary.items():
        print(f"{metric}: mean {s['mean']:.4f} std {s['std']:.4f} over {s['folds']} fold(s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"folds": rows, "summary": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
