#!/usr/bin/env bash
# What a newcomer waits for: the README's two commands, each in a fresh clone with an empty
# target folder, timed with `cargo --timings` (the HTML reports are kept in OUT).
# Crates are fetched first and not timed: downloads measure the network, not the project.
#
#   scripts/fresh-clone-timings.sh [OUT] [readme-example|cargo-test]
#   (default OUT: target/fresh-clone-timings; both commands unless one is named)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/fresh-clone-timings}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "cores: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg); commit: $(git -C "$repo" rev-parse --short HEAD)"

seconds() { python3 -c "import time; print(f'{time.time():.1f}')"; }

run() {  # run NAME COMMAND...: a fresh clone, then COMMAND timed in it
    local name=$1; shift
    git clone -q "$repo" "$work/$name"
    (cd "$work/$name" && cargo fetch -q)
    local start end
    start=$(seconds)
    (cd "$work/$name" && "$@") >"$out/$name.log" 2>&1 || true
    end=$(seconds)
    cp "$work/$name"/target/cargo-timings/cargo-timing.html "$out/$name.html" 2>/dev/null || true
    echo "$name: $(python3 -c "print(round($end - $start))") s (log: $out/$name.log)"
}

only=${2:-}
[ -n "$only" ] && [ "$only" != readme-example ] ||
    run readme-example cargo run --timings -- check fixtures/check/legacy_single_phase
[ -n "$only" ] && [ "$only" != cargo-test ] || run cargo-test cargo test --timings
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
