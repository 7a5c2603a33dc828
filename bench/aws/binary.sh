#!/usr/bin/env bash
# The listing benchmarks through the binary (issue 17): `tidemark plan` against the stand-ins.
#   bench/aws/binary.sh          200 ms per call: 20 accounts with concurrency.accounts 5 and 200
#                                with 50, each against its ideal
#   bench/aws/binary.sh scale    50 ms per call: 1, 10, 100, 1,000 accounts (the scale table)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
filter=bench_listing_through_the_binary
[ "${1:-}" = scale ] && filter=bench_scale
cargo test --release --test bench_listing "$filter" -- --ignored --nocapture --test-threads 1 2>&1 | grep -o 'BENCH.*'
