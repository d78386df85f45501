# Sourced by the end-to-end test scripts (bash, set -euo pipefail): a work directory WORK, removed at exit
# after killing the background job whose PID is in JOB (a failed check must not leave a trainer running),
# and the checks' fail and has.
#   FAIL_CONTEXT  set before sourcing: shown with each failure (interruption_test.sh: its random seed)
WORK=$(mktemp -d)
JOB=""
e2e_cleanup() {
  if [ -n "$JOB" ]; then kill -9 "$JOB" 2> /dev/null || true; fi
  rm -rf "$WORK"
}
trap e2e_cleanup EXIT
fail() { echo "FAIL${FAIL_CONTEXT:+ ($FAIL_CONTEXT)}: $*" >&2; exit 1; }
# has FILE PATTERN: FILE has a line matching the grep pattern, or the test fails showing FILE.
has() { grep -q -- "$2" "$1" || { cat "$1"; fail "$1 lacks '$2'"; }; }
