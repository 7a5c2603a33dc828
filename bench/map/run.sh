#!/usr/bin/env bash
# Mapping throughput on the benchmark set: for each mapping, `tidemark map` against the jaq and jq
# CLIs running the equivalent single jq program (bench/map/jqgen.py writes it from the mapping) on
# the same items, each as a whole process pinned to one core; then tidemark on every core. Checks
# that tidemark, jaq and jq give the same entities, and that tidemark gives what jq 1.7.1 gives
# expression by expression (the golden, recorded by jqgen.py with libjq 1.7.1) on the first items.
#
# Usage: bench/map/run.sh [items] [runs] [set...]     (from the repository root)
#   sets: builtin (builtin:aws on realistic items of every default kind), ocean (Port's published
#   AWS integration mappings), idioms (48 common jq idioms), basic (bench/map/mapping.yaml)
# Installs from scratch into bench/map/.tools: jaq (cargo install) and the `jq` Python package
# 1.7.0 (libjq 1.7.1) with PyYAML in a venv. The jq CLI is the system's (Debian: jq 1.6).
# `--regen-goldens` as the first argument rewrites tests/fixtures/bench_map/*/golden.jsonl instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOOLS=$ROOT/bench/map/.tools
WORK=${TMPDIR:-/tmp}/tidemark-bench-map
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/tidemark
ACCOUNT=123456789012
mkdir -p "$WORK" "$TOOLS"

install_tools() {
  if [ ! -x "$TOOLS/bin/jaq" ]; then
    cargo install --quiet --locked jaq --root "$TOOLS"
  fi
  if [ ! -x "$TOOLS/venv/bin/python" ]; then
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet jq==1.7.0 PyYAML
  fi
  command -v jq > /dev/null || { echo "the jq CLI is missing: apt-get install jq" >&2; exit 1; }
}

# set -> mapping, region, item generator command (prints N items)
mapping_of() {
  case $1 in
    builtin) echo mappings/aws.yaml ;;
    ocean) echo bench/map/ocean/mapping.yaml ;;
    idioms) echo bench/map/idioms/mapping.yaml ;;
    basic) echo bench/map/mapping.yaml ;;
  esac
}
region_of() { case $1 in builtin | ocean) echo eu-west-1 ;; *) echo us-east-1 ;; esac; }
OCEAN_KINDS=AWS::Lambda::Function,AWS::RDS::DBInstance,AWS::DynamoDB::Table,AWS::SQS::Queue,AWS::SNS::Topic,AWS::ECS::Service,AWS::S3::Bucket,AWS::EC2::Instance,AWS::ECS::Cluster
items_of() {
  case $1 in
    builtin) python3 bench/map/gen_fixture_items.py "$2" ;;
    ocean) python3 bench/map/gen_fixture_items.py "$2" --kinds "$OCEAN_KINDS" ;;
    *) python3 bench/map/gen_items.py "$2" ;;
  esac
}
golden() { # set, items file -> golden on stdout
  "$TOOLS/venv/bin/python" bench/map/jqgen.py golden "$(mapping_of "$1")" "$ACCOUNT" "$(region_of "$1")" < "$2"
}

if [ "${1:-}" = "--regen-goldens" ]; then
  install_tools
  for set in builtin ocean idioms basic; do
    dir=tests/fixtures/bench_map/$set
    mkdir -p "$dir"
    # Every model of the fixtures once (builtin, ocean), or 300 generated items.
    case $set in
      builtin) kinds=None ;;
      ocean) kinds="set('$OCEAN_KINDS'.split(','))" ;;
      *) kinds= ;;
    esac
    n=300
    [ -z "$kinds" ] || n=$(python3 -c "import sys; sys.path.insert(0, 'bench/map'); import gen_fixture_items as g; print(len(g.models($kinds)))")
    items_of "$set" "$n" > "$dir/items.jsonl"
    golden "$set" "$dir/items.jsonl" > "$dir/golden.jsonl"
    echo "$dir: $n items"
  done
  exit 0
fi

N=${1:-20000}
RUNS=${2:-5}
shift $(( $# > 2 ? 2 : $# ))
SETS=("$@")
[ ${#SETS[@]} -gt 0 ] || SETS=(builtin ocean idioms basic)

install_tools
cargo build --release --quiet --bin tidemark
GOLDEN_ITEMS=2000

# Median wall-clock seconds of $RUNS runs of a command, pinned to CPU 0 unless CPUS is set.
median() {
  local times=() start end
  for _ in $(seq "$RUNS"); do
    start=$(date +%s.%N)
    taskset -c "${CPUS:-0}" "$@"
    end=$(date +%s.%N)
    times+=("$(echo "$end - $start" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

same_values() { # two JSON-lines files of entities: equal as values, line by line
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
bad = len(a) != len(b) or sum(1 for x, y in zip(a, b) if x != y)
if bad:
    sys.exit(f"{sys.argv[1]} and {sys.argv[2]} differ: {len(a)} vs {len(b)} entities, {bad}")
PY
}

same_as_golden() { # tidemark output, golden: the golden's entities in order
  python3 - "$1" "$2" <<'PY'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = [e for l in open(sys.argv[2]) for e in json.loads(l)["entities"]]
def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b
bad = len(got) != len(want) or sum(1 for x, y in zip(got, want) if not same(x, y))
if bad:
    sys.exit(f"tidemark differs from the jq 1.7.1 golden: {len(got)} vs {len(want)} entities, {bad}")
PY
}

printf '%-8s %9s %11s %11s %11s %9s %9s %11s %8s\n' set entities "tidemark/s" "jaq/s" "jq/s" "vs jaq" "vs jq" "all cores/s" speedup
for set in "${SETS[@]}"; do
  mapping=$(mapping_of "$set")
  region=$(region_of "$set")
  items=$WORK/$set.items.jsonl
  program=$WORK/$set.jq
  items_of "$set" "$N" > "$items"
  python3 bench/map/jqgen.py program "$mapping" "$ACCOUNT" "$region" > "$program"
  tm=(env RAYON_NUM_THREADS=1 "$BIN" map --mapping "$mapping" --input "$items" --account "$ACCOUNT" --region "$region")
  t_tidemark=$(median sh -c '"$@" > "$0" 2> /dev/null' "$WORK/$set.tidemark.out" "${tm[@]}")
  t_jaq=$(median sh -c '"$@" > "$0"' "$WORK/$set.jaq.out" "$TOOLS/bin/jaq" -c -f "$program" "$items")
  t_jq=$(median sh -c '"$@" > "$0"' "$WORK/$set.jq.out" jq -c -f "$program" "$items")
  all=("$BIN" map --mapping "$mapping" --input "$items" --account "$ACCOUNT" --region "$region")
  t_all=$(CPUS=0-$(($(nproc) - 1)) median sh -c '"$@" > "$0" 2> /dev/null' "$WORK/$set.all.out" "${all[@]}")

  same_values "$WORK/$set.tidemark.out" "$WORK/$set.jaq.out"
  same_values "$WORK/$set.tidemark.out" "$WORK/$set.jq.out"
  cmp -s "$WORK/$set.tidemark.out" "$WORK/$set.all.out" || { echo "$set: output on all cores differs from one core" >&2; exit 1; }
  head -n "$GOLDEN_ITEMS" "$items" > "$WORK/$set.golden.items"
  golden "$set" "$WORK/$set.golden.items" > "$WORK/$set.golden"
  "$BIN" map --mapping "$mapping" --input "$WORK/$set.golden.items" --account "$ACCOUNT" --region "$region" \
    > "$WORK/$set.golden.tidemark" 2> /dev/null || true
  same_as_golden "$WORK/$set.golden.tidemark" "$WORK/$set.golden"

  entities=$(wc -l < "$WORK/$set.tidemark.out")
  rate() { echo "$N / $1" | bc -l; }
  printf '%-8s %9d %11.0f %11.0f %11.0f %8.2fx %8.2fx %11.0f %7.2fx\n' "$set" "$entities" \
    "$(rate "$t_tidemark")" "$(rate "$t_jaq")" "$(rate "$t_jq")" \
    "$(echo "$t_jaq / $t_tidemark" | bc -l)" "$(echo "$t_jq / $t_tidemark" | bc -l)" \
    "$(rate "$t_all")" "$(echo "$t_tidemark / $t_all" | bc -l)"
done
echo "items: $N per set, median of $RUNS runs, whole processes; one core: taskset -c 0 (tidemark with RAYON_NUM_THREADS=1 too); all cores: $(nproc)"
echo "equal: tidemark = jaq = jq CLI on every item; tidemark = jq 1.7.1 golden on the first $GOLDEN_ITEMS"
