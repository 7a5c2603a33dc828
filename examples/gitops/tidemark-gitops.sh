#!/usr/bin/env bash
# tidemark in any CI system: the steps of examples/gitops/tidemark.yml as one script.
#
#   tidemark-gitops.sh plan    validate the config and mappings, then plan; writes the plan as
#                              markdown (for a pull-request comment) and as JSON (for apply)
#   tidemark-gitops.sh apply   apply after merge: exactly the reviewed plan when PLAN_JSON exists
#                              and is still fresh, else a new plan made and applied now
#
# Environment:
#   TIDEMARK        the tidemark binary (default: tidemark on PATH)
#   CONFIG          the config file (default: tidemark.yaml); point it at a config whose source is
#                   a recorded snapshot (`source: {type: snapshot, path: ...}`) to plan without AWS
#                   credentials in CI
#   OUT_DIR         where plan.md and plan.json go (default: .tidemark-ci)
#   PLAN_JSON       apply: the reviewed plan (default: $OUT_DIR/plan.json)
#   AWS and Port credentials as for any tidemark run (AWS_* or web identity, PORT_CLIENT_ID and
#   PORT_CLIENT_SECRET or the config's *File keys).
#
# Exit codes follow tidemark's: plan exits 0 with no changes, 2 with changes, 3 when part of the
# organisation could not be read (the plan is still written, and says what failed), 1 on error.
set -euo pipefail

tidemark="${TIDEMARK:-tidemark}"
config="${CONFIG:-tidemark.yaml}"
out_dir="${OUT_DIR:-.tidemark-ci}"

plan() {
    mkdir -p "$out_dir"
    "$tidemark" validate -c "$config"
    local code=0
    "$tidemark" plan -c "$config" --format markdown --out "$out_dir/plan.json" \
        --detailed-exitcode > "$out_dir/plan.md" || code=$?
    case "$code" in
        0) echo "tidemark: no changes ($out_dir/plan.md)" ;;
        2) echo "tidemark: changes planned ($out_dir/plan.md)" ;;
        3) echo "tidemark: partial plan, some scopes could not be read ($out_dir/plan.md)" >&2 ;;
        *) echo "tidemark: plan failed (exit $code)" >&2 ;;
    esac
    return "$code"
}

apply() {
    local plan_json="${PLAN_JSON:-$out_dir/plan.json}"
    "$tidemark" validate -c "$config"
    if [ -f "$plan_json" ]; then
        # Refused (exit 1) when the catalog, the config or the mappings changed since the plan.
        "$tidemark" apply -c "$config" --plan "$plan_json"
    else
        "$tidemark" apply -c "$config"
    fi
}

case "${1:-}" in
    plan) plan ;;
    apply) apply ;;
    *) echo "usage: $0 plan|apply" >&2; exit 1 ;;
esac
