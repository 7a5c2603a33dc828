#!/usr/bin/env bash
# Cold build benchmark: builds tidemark from scratch (an empty target dir; crates already
# downloaded) and reports the wall and CPU time of the build, the binary's size as built and
# stripped, and whether the AWS SDK's legacy HTTP stack (hyper 0.14, rustls 0.21) is in the tree.
#
# Usage: bench/build/run.sh [REV] [PROFILE...]
#   REV      a git revision, or "." for the working tree (tracked files as they are now); default "."
#   PROFILE  cargo profiles to build, one after the other, each cold; default: release, and dist
#            when REV's Cargo.toml defines it
# Example (the before/after in BENCHMARKS.md): bench/build/run.sh 388ce85 && bench/build/run.sh .
#
# The build runs with `nice -n 10` and cargo's default jobs (all cores). On a shared machine the
# times depend on what else runs: the load average at the start and end is printed next to them.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
rev="${1:-.}"
shift || true

work="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-build-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
src="$work/src"
mkdir -p "$src"
if [ "$rev" = "." ]; then
    # Tracked files as they are in the working tree, uncommitted edits included.
    (cd "$repo" && git ls-files -z | xargs -0 tar -cf - --) | tar -xf - -C "$src"
    label="working tree ($(git -C "$repo" rev-parse --short HEAD)+edits)"
else
    git -C "$repo" archive "$rev" | tar -xf - -C "$src"
    label="$(git -C "$repo" rev-parse --short "$rev")"
fi

profiles=("$@")
if [ "${#profiles[@]}" -eq 0 ]; then
    profiles=(release)
    grep -q '^\[profile\.dist\]' "$src/Cargo.toml" && profiles+=(dist)
fi

legacy=()
for spec in hyper@0.14 rustls@0.21; do
    if (cd "$src" && cargo tree --offline --locked -e normal -i "$spec" >/dev/null 2>&1); then
        legacy+=("$spec")
    fi
done

echo "tidemark cold build: $label"
echo "  legacy SDK HTTP stack in the tree: ${legacy[*]:-none}"
for profile in "${profiles[@]}"; do
    target="$work/target-$profile"
    load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
    start="$(date +%s.%N)"
    (cd "$src" && CARGO_TARGET_DIR="$target" CARGO_INCREMENTAL=0 /usr/bin/time -f "%U %S" -o "$work/time" \
        nice -n 10 cargo build --profile "$profile" --locked --offline --quiet --bin tidemark)
    end="$(date +%s.%N)"
    load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
    read -r user sys < "$work/time"
    dir="$profile"
    [ "$profile" = "dev" ] && dir=debug
    bin="$target/$dir/tidemark"
    strip -o "$work/stripped" "$bin"
    size() { stat -c %s "$1"; }
    mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
    echo "  profile $profile:"
    echo "    wall $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.0f s", e - s }'), CPU (user+sys) $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f s", u + s }')"
    echo "    load average before: $load_before, after: $load_after ($(nproc) cores)"
    echo "    binary $(mib "$(size "$bin")") as built, $(mib "$(size "$work/stripped")") after strip"
    rm -rf "$target"
done
