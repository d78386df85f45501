#!/usr/bin/env bash
# Builds one of dsmil's SageMaker images, tags it for Amazon ECR, logs in to the registry and pushes it:
# the --image-uri that scripts/sagemaker/launch.py takes.
#
#   scripts/sagemaker/push_image.sh [--cuda] [--tag TAG] [--repository NAME] [--region REGION]
#       [--account ID] [--builder docker|podman|buildah] [--create-repository] [--dry-run]
#
#   --cuda               scripts/sagemaker/Dockerfile.cuda (GPU instances) instead of Dockerfile (CPU)
#   --tag TAG            image tag (default: cpu or cuda, then -<git short commit>)
#   --repository NAME    ECR repository (default: dsmil)
#   --region REGION      default: $AWS_REGION, else $AWS_DEFAULT_REGION, else `aws configure get region`
#   --account ID         default: `aws sts get-caller-identity`
#   --builder B          the image tool (default: docker, else podman, whichever is installed); buildah
#                        builds with `buildah bud` and pushes with `buildah push`
#   --create-repository  create the ECR repository when it does not exist
#   --dry-run            print the commands instead of running them (needs no AWS access or image tool;
#                        --account and --region then default to placeholders when they cannot be found)
# Prints the pushed image URI last.
set -euo pipefail
cd "$(dirname "$0")/../.."
DOCKERFILE=scripts/sagemaker/Dockerfile
FLAVOUR=cpu
TAG=""
REPOSITORY=dsmil
REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
ACCOUNT=""
BUILDER=""
CREATE=0
DRY_RUN=0
while [ $# -gt 0 ]; do
  case $1 in
    --cuda) DOCKERFILE=scripts/sagemaker/Dockerfile.cuda; FLAVOUR=cuda; shift ;;
    --tag) TAG=$2; shift 2 ;;
    --repository) REPOSITORY=$2; shift 2 ;;
    --region) REGION=$2; shift 2 ;;
    --account) ACCOUNT=$2; shift 2 ;;
    --builder) BUILDER=$2; shift 2 ;;
    --create-repository) CREATE=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "push_image.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# Runs a command, or prints it (shell-quoted) with --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}
# What the AWS CLI answers, or $2 with --dry-run when it cannot answer.
ask_aws() {
  local answer
  if answer=$(eval "$1" 2> /dev/null) && [ -n "$answer" ] && [ "$answer" != None ]; then
    echo "$answer"
  elif [ "$DRY_RUN" = 1 ]; then
    echo "$2"
  else
    echo "push_image.sh: could not get it from the AWS CLI: $1 (pass it as an option)" >&2
    return 1
  fi
}

if [ -z "$BUILDER" ]; then
  BUILDER=docker
  command -v docker > /dev/null || ! command -v podman > /dev/null || BUILDER=podman
fi
case $BUILDER in docker | podman | buildah) ;; *) echo "push_image.sh: unknown builder '$BUILDER'" >&2; exit 2 ;; esac
[ -n "$REGION" ] || REGION=$(ask_aws "aws configure get region" eu-west-1)
[ -n "$ACCOUNT" ] || ACCOUNT=$(ask_aws "aws sts get-caller-identity --query Account --output text" 123456789012)
if [ -z "$TAG" ]; then
  TAG=$FLAVOUR
  COMMIT=$(git rev-parse --short HEAD 2> /dev/null || true)
  [ -z "$COMMIT" ] || TAG="$TAG-$COMMIT"
fi
REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
IMAGE="$REGISTRY/$REPOSITORY:$TAG"

if [ "$BUILDER" = buildah ]; then
  run buildah bud --file "$DOCKERFILE" --tag "dsmil:$TAG" .
  run buildah tag "dsmil:$TAG" "$IMAGE"
else
  run "$BUILDER" build --file "$DOCKERFILE" --tag "dsmil:$TAG" .
  run "$BUILDER" tag "dsmil:$TAG" "$IMAGE"
fi
if [ "$CREATE" = 1 ]; then
  if [ "$DRY_RUN" = 1 ] || ! aws ecr describe-repositories --region "$REGION" --repository-names "$REPOSITORY" \
    > /dev/null 2>&1; then
    run aws ecr create-repository --region "$REGION" --repository-name "$REPOSITORY"
  fi
fi
# The password goes from the AWS CLI to the image tool through a pipe, never through the command line.
if [ "$DRY_RUN" = 1 ]; then
  echo "aws ecr get-login-password --region $REGION | $BUILDER login --username AWS --password-stdin $REGISTRY"
else
  aws ecr get-login-password --region "$REGION" | "$BUILDER" login --username AWS --password-stdin "$REGISTRY"
fi
run "$BUILDER" push "$IMAGE"
echo "$IMAGE"
