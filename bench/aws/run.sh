#!/usr/bin/env bash
# Listing benchmarks of the AWS source (see BENCHMARKS.md), against the local STS and Cloud Control
# stand-ins at 50 ms per call, through the library API (AwsSource::list): 20 accounts × 3 regions
# × 5 kinds × 3 pages, and 20 accounts × 3 regions with every kind of the default mappings holding
# its fixture items (what AWS lists and reads of them), before and after issue 14's GetResource
# choices. One test at a time, so that the two do not share the 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
profile_flag=()
if [ "${BENCH_RELEASE:-0}" = 1 ]; then profile_flag=(--release); fi
cargo test "${profile_flag[@]}" --test aws bench_listing -- --ignored --nocapture --test-threads 1 2>&1 | grep -o 'BENCH.*'
