#!/usr/bin/env bash
# Listing benchmark of the AWS source (see BENCHMARKS.md): 20 accounts × 3 regions × 5 kinds
# × 3 pages against the local STS and Cloud Control stand-ins at 50 ms per call, measured through
# the library API (AwsSource::list) because the CLI is wired to the source separately.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
profile_flag=()
if [ "${BENCH_RELEASE:-0}" = 1 ]; then profile_flag=(--release); fi
cargo test "${profile_flag[@]}" --test aws bench_listing_twenty_accounts -- --ignored --nocapture 2>&1 | grep '^BENCH'
