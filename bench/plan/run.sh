#!/usr/bin/env bash
# No-op plan benchmark: 20,000 owned entities, nothing changed. Reports CPU time (user+sys) and
# peak RSS of `tidemark plan` over several runs, with medians. Usage: bench/plan/run.sh [N] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-20000}"
RUNS="${2:-7}"
cargo build --release --quiet
BIN="$PWD/target/release/tidemark"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 bench/plan/generate.py "$WORK/snap" "$N" >/dev/null
mkdir -p "$WORK/mappings"
cp bench/plan/mapping.yaml bench/plan/blueprints.json "$WORK/mappings/"
cat > "$WORK/tidemark.yaml" <<YAML
integration: {identifier: bench}
source: {type: snapshot, path: snap}
catalog: {type: local}
mappings: [mappings]
YAML
"$BIN" apply -c "$WORK/tidemark.yaml" --allow-mass-delete >/dev/null
cpu=(); rss=(); wall=()
for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "%U %S %M %e" -o "$WORK/time" "$BIN" plan -c "$WORK/tidemark.yaml" --detailed-exitcode >"$WORK/plan.txt" || test $? -eq 0
    read -r user sys maxkb elapsed < "$WORK/time"
    cpu+=("$(echo "$user + $sys" | bc)"); rss+=("$maxkb"); wall+=("$elapsed")
done
head -1 "$WORK/plan.txt"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "no-op plan over $N owned entities, $RUNS runs:"
echo "  CPU (user+sys) median: $(median "${cpu[@]}") s   [all: ${cpu[*]}]"
echo "  wall median:           $(median "${wall[@]}") s"
echo "  peak RSS median:       $(( $(median "${rss[@]}") / 1024 )) MiB"
