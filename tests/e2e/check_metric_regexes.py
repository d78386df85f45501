"""Checks the README's metric_definitions against job logs, as SageMaker applies them: every regex must find
its number in at least one line of the logs (lines may carry mpirun's `[1,0]<stdout>:` prefix), and each
match must be a number.
    usage: check_metric_regexes.py README.md LOG [LOG ...]
"""
import re
import sys

readme = open(sys.argv[1]).read()
block = re.search(r"metric_definitions = \[(.*?)\n\]", readme, re.S)
if not block:
    sys.exit("README.md has no metric_definitions block")
definitions = re.findall(r'\{"Name": "([^"]+)",\s*"Regex": "([^"]+)"\}', block.group(1))
if len(definitions) < 5:
    sys.exit(f"only {len(definitions)} metric definitions parsed from README.md")
lines = [line for path in sys.argv[2:] for line in open(path, errors="replace")]
missing = []
for name, regex in definitions:
    values = [m.group(1) for line in lines for m in [re.search(regex, line)] if m]
    if not values:
        missing.append(name)
        continue
    [float(v) for v in values]  # SageMaker drops a metric whose capture is not a number
    print(f"{name}: {len(values)} value(s), last {values[-1]}")
if missing:
    sys.exit("no log line matches: " + ", ".join(missing))
