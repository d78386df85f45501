"""AWS answered inside botocore, for the launcher tests: no network, no credentials.

Put this directory on PYTHONPATH and set DSMIL_AWS_CAPTURE to a directory. Every AWS API call any botocore
client makes (the SageMaker SDK's S3 uploads, STS, CreateTrainingJob, ...) is checked against botocore's own
service model (a request the real service would reject with a validation error fails here too), recorded as
one JSON line in $DSMIL_AWS_CAPTURE/requests.jsonl and answered with a minimal, well-formed response.
S3 object bodies are stored under $DSMIL_AWS_CAPTURE/s3/<bucket>/<key>; DescribeTrainingJob answers from the
JSON file $DSMIL_AWS_TRAINING_JOBS ({job name: response fields}). A call nobody answers here raises,
naming the operation, and any attempt to open an Internet socket fails (and is logged in network.log), so a
test cannot reach AWS by accident.
"""
import json
import os
import socket

import botocore.client
import botocore.validate

ACCOUNT = "123456789012"
CAPTURE = os.environ["DSMIL_AWS_CAPTURE"]


def _arn(client, kind, name):
    return f"arn:aws:sagemaker:{client.meta.region_name}:{ACCOUNT}:{kind}/{name.lower()}"


def _put_object(client, params):
    path = os.path.join(CAPTURE, "s3", params["Bucket"], params["Key"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = params.get("Body", b"")
    data = body.read() if hasattr(body, "read") else body
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    params["Body"] = f"<{len(data)} bytes stored in {path}>"
    return {"ETag": '"0"'}


def _describe_training_job(client, params):
    """From the JSON file $DSMIL_AWS_TRAINING_JOBS: {job name: fields of the response}."""
    jobs = json.load(open(os.environ["DSMIL_AWS_TRAINING_JOBS"]))
    return dict(jobs[params["TrainingJobName"]], TrainingJobName=params["TrainingJobName"])


ANSWERS = {
    ("sts", "GetCallerIdentity"): lambda c, p: {"Account": ACCOUNT, "UserId": "AIDATEST",
                                                "Arn": f"arn:aws:iam::{ACCOUNT}:user/test"},
    # The SDK's default bucket, sagemaker-<region>-<account>, exists.
    ("s3", "ListBuckets"): lambda c, p: {"Buckets": [{"Name": f"sagemaker-{c.meta.region_name}-{ACCOUNT}"}]},
    ("s3", "HeadBucket"): lambda c, p: {},
    ("s3", "CreateBucket"): lambda c, p: {"Location": "/" + p["Bucket"]},
    ("s3", "PutObject"): _put_object,
    ("sagemaker", "CreateTrainingJob"):
        lambda c, p: {"TrainingJobArn": _arn(c, "training-job", p["TrainingJobName"])},
    ("sagemaker", "CreateHyperParameterTuningJob"):
        lambda c, p: {"HyperParameterTuningJobArn": _arn(c, "hyper-parameter-tuning-job",
                                                         p["HyperParameterTuningJobName"])},
    ("sagemaker", "DescribeTrainingJob"): _describe_training_job,
    ("sagemaker", "CreateProcessingJob"):
        lambda c, p: {"ProcessingJobArn": _arn(c, "processing-job", p["ProcessingJobName"])},
}


def _make_api_call(self, operation_name, api_params):
    service = self.meta.service_model.service_name
    if service == "sagemaker" and self.meta.service_model.endpoint_prefix == "runtime.sagemaker":
        service = "sagemaker-runtime"
    operation = self.meta.service_model.operation_model(operation_name)
    botocore.validate.validate_parameters(api_params, operation.input_shape)
    answer = ANSWERS.get((service, operation_name))
    params = dict(api_params)
    response = answer(self, params) if answer else None
    with open(os.path.join(CAPTURE, "requests.jsonl"), "a") as f:
        f.write(json.dumps({"service": service, "operation": operation_name, "params": params,
                            "answered": answer is not None}, default=str) + "\n")
    if answer is None:
        raise RuntimeError(f"aws_local: no local answer for {service}.{operation_name}")
    return response


def _blocked(what):
    with open(os.path.join(CAPTURE, "network.log"), "a") as f:
        f.write(f"blocked {what}\n")
    return OSError(f"aws_local: network access blocked ({what})")


def _no_internet(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise _blocked(f"connect to {address!r}")
    return _connect(self, address, *args, **kwargs)


def _no_lookup(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        raise socket.gaierror(socket.EAI_NONAME, str(_blocked(f"name lookup of {host!r}")))
    return _getaddrinfo(host, *args, **kwargs)


os.makedirs(CAPTURE, exist_ok=True)
botocore.client.BaseClient._make_api_call = _make_api_call
_connect = socket.socket.connect
socket.socket.connect = _no_internet
socket.socket.connect_ex = _no_internet
_getaddrinfo = socket.getaddrinfo
socket.getaddrinfo = _no_lookup
