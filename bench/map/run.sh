#!/usr/bin/env bash
# Benchmarks `tidemark map` against the jaq and jq CLIs running bench/map/combined.jq on the same
# 20,000 Cloud Control-shaped items, each as a whole process pinned to one core.
# Usage: bench/map/run.sh [items] [runs]     (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
RUNS=${2:-5}
TOOLS=bench/map/.tools
WORK=${TMPDIR:-/tmp}/tidemark-bench-map
mkdir -p "$WORK"

cargo build --release --quiet --bin tidemark
if [ ! -x "$TOOLS/bin/jaq" ]; then
  cargo install --quiet --locked jaq --root "$TOOLS"
fi
python3 bench/map/gen_items.py "$N" > "$WORK/items.jsonl"

run_tidemark() {
  target/release/tidemark map --mapping bench/map/mapping.yaml --input "$WORK/items.jsonl" \
    --account 123456789012 --region us-east-1 > "$WORK/tidemark.out" 2> "$WORK/tidemark.err"
}
run_jaq() { "$TOOLS/bin/jaq" -c -f bench/map/combined.jq "$WORK/items.jsonl" > "$WORK/jaq.out"; }
run_jq() { jq -c -f bench/map/combined.jq "$WORK/items.jsonl" > "$WORK/jq.out"; }

# Median wall-clock seconds of $RUNS runs of a function, pinned to CPU 0.
median() {
  local f=$1 times=()
  export -f "$f"
  export WORK TOOLS
  for _ in $(seq "$RUNS"); do
    local start end
    start=$(date +%s.%N)
    taskset -c 0 bash -c "$f"
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

t_tidemark=$(median run_tidemark)
t_jaq=$(median run_jaq)
t_jq=$(median run_jq)

lines_t=$(wc -l < "$WORK/tidemark.out")
lines_j=$(wc -l < "$WORK/jaq.out")
[ "$lines_t" = "$N" ] && [ "$lines_j" = "$N" ] || { echo "entity counts differ: tidemark $lines_t, jaq $lines_j, want $N" >&2; exit 1; }
# Same entities as values (key order aside).
python3 - "$WORK/tidemark.out" "$WORK/jaq.out" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
bad = sum(1 for x, y in zip(a, b) if x != y)
if bad:
    sys.exit(f"{bad} entities differ between tidemark and jaq")
PY

echo "items: $N, runs: $RUNS (median wall time, taskset -c 0)"
for name in tidemark jaq jq; do
  var="t_$name"
  t=${!var}
  printf '%-9s %8.3f s  %9.0f items/s\n' "$name" "$t" "$(echo "$N / $t" | bc -l)"
done
printf 'tidemark / jaq: %.2fx   tidemark / jq: %.2fx\n' \
  "$(echo "$t_jaq / $t_tidemark" | bc -l)" "$(echo "$t_jq / $t_tidemark" | bc -l)"
