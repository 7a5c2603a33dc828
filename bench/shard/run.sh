#!/usr/bin/env bash
# Issue 19's simulation (see BENCHMARKS.md, "Sharding"): an organisation of SIM_ACCOUNTS accounts
# (default 1000) × 4 regions × 20 kinds × SIM_ITEMS items (default 2) in the STS, Organizations and
# Cloud Control stand-ins (pages of 25, 20 ms per call), synced into the Port stand-in (20 ms per
# request) by one `tidemark apply` and by SIM_SHARDS (default 4) `apply --shard I/N` at once: a
# first sync and a no-op resync each. Prints wall time per replica, peak RSS per replica
# (/usr/bin/time), AWS calls (Cloud Control + Organizations, and STS) and Port requests.
#
#   bench/shard/run.sh                       # the release binary, 1000 accounts
#   SIM_ACCOUNTS=250 bench/shard/run.sh      # a smaller organisation
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin tidemark
export SIM_BIN="${SIM_BIN:-$target/release/tidemark}"
cargo test --test shard bench_simulation -- --ignored --nocapture --test-threads 1 2>&1 | grep -o 'BENCH.*'
