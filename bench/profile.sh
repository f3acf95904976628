#!/bin/sh
# Where isolint's time goes, stage by stage: perf with DWARF call graphs on one thread, then the
# inclusive share of each pipeline stage. Needs `perf` and a build with debug info
# (the `profiling` profile in Cargo.toml).
#
#   bench/profile.sh PATH...            # e.g. a CPython tree's Modules Objects Python Parser
#   ISOLINT=/path/to/isolint bench/profile.sh PATH...
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ISOLINT:-$root/target/profiling/isolint}
[ -x "$bin" ] || (cd "$root" && cargo build --profile profiling --bin isolint)
data=$(mktemp /tmp/isolint-perf.XXXXXX)
trap 'rm -f "$data"' EXIT
# One thread: the shares are then shares of CPU time, not of waiting on the other worker.
RAYON_NUM_THREADS=1 perf record -q --call-graph dwarf,16384 -F 250 -o "$data" \
    "$bin" check --format json --exit-zero "$@" >/dev/null
perf report -i "$data" --children --sort symbol -g none 2>/dev/null |
    awk '$3 == "[.]" && $4 ~ /^(isolint::(parse::parse|parse::prepass::prepare|facts::extract::extract|facts::extract::preprocessor_facts|facts::function::function_facts|facts::extract::declared_variables|model::Project::build|rules::run_rules|report::json::render)|ts_parser_parse|ts_query_cursor_next_match|ts_tree_delete)$/ && !seen[$4]++ { printf "%8s  %s\n", $1, $4 }'
