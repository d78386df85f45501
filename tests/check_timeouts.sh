#!/usr/bin/env bash
# Fails when a test registered in BUILD_DIR has no TIMEOUT property: a hung test must not hold CI for
# ctest's default 1500 s (or forever with --timeout 0).
#   usage: check_timeouts.sh BUILD_DIR
set -euo pipefail
ctest --test-dir "$1" --show-only=json-v1 | python3 -c '
import json, sys
tests = json.load(sys.stdin)["tests"]
missing = [t["name"] for t in tests
           if not any(p["name"] == "TIMEOUT" and float(p["value"]) > 0 for p in t.get("properties", []))]
print(f"{len(tests)} tests, {len(missing)} without a TIMEOUT")
for name in missing[:20]:
    print("  no TIMEOUT:", name)
sys.exit(1 if missing or not tests else 0)
'
