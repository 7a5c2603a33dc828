#!/usr/bin/env bash
# The listing benchmark through the binary (issue 17): `tidemark plan` against the stand-ins at
# 200 ms per call, 20 accounts with concurrency.accounts 5 and 200 with 50, each against its ideal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo test --release --test bench_listing -- --ignored --nocapture --test-threads 1 2>&1 | grep -o 'BENCH.*'
