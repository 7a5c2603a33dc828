#!/usr/bin/env bash
# Measures how long loading `builtin:aws` takes: `tidemark validate` on the demo configuration
# parses the embedded mappings and compiles every jq expression in them, then exits.
# Usage: bench/map/compile.sh [binary] [runs]     (from the repository root)
# Prints the median wall time and the median CPU time (user + system) of the runs, in ms.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/tidemark}
RUNS=${2:-7}
walls=() cpus=()
TIMEFORMAT='%3R %3U %3S'
for _ in $(seq "$RUNS"); do
  # bash's `time` reports milliseconds; /usr/bin/time only hundredths.
  read -r wall user sys < <({ time "$BIN" validate -c examples/demo/tidemark.yaml > /dev/null; } 2>&1)
  walls+=("$(echo "$wall * 1000" | bc -l)")
  cpus+=("$(echo "($user + $sys) * 1000" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.0f", a[int((NR+1)/2)]}'; }
echo "$BIN: wall $(median "${walls[@]}") ms, cpu $(median "${cpus[@]}") ms (median of $RUNS)"
