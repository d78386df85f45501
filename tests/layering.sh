#!/usr/bin/env bash
# The library's layers point one way (README, Layout): each folder of mil/ may include only the folders
# listed for it, and dsmil_eval's main nothing of mil/train/. Fails naming the file and the include.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [util]="util"
  [io]="util io"
  [data]="util io data"
  [model]="util io data model"
  [dist]="util dist"
  [config]="util io config"
  [plot]="util io eval plot"
  [eval]="util io data model dist config plot eval"
  [train]="util io data model dist config eval train"
)
bad=0
check() {  # file, allowed folders
  local file=$1 ok=$2 dep
  while read -r dep; do
    [[ " $ok " == *" $dep "* ]] || { echo "layering: $file includes mil/$dep/ (allowed: $ok)"; bad=1; }
  done < <(sed -n 's#^\#include "mil/\([a-z_]*\)/.*#\1#p' "$file" | sort -u)
}
for dir in mil/*/; do
  layer=$(basename "$dir")
  [ -n "${allowed[$layer]:-}" ] || { echo "layering: mil/$layer/ has no rule here"; bad=1; continue; }
  for f in "$dir"*.cpp "$dir"*.hpp; do [ -e "$f" ] && check "$f" "${allowed[$layer]}"; done
done
for f in eval/*.cpp; do check "$f" "util config eval"; done
[ "$bad" = 0 ] && echo "layering: every include points down"
exit "$bad"
