#!/usr/bin/env bash
# Builds the `pip install isolint` wheel with maturin, installs it into a fresh virtual
# environment, and runs `isolint --version` and one `check` from there. Needs python3 with
# venv and access to PyPI (for maturin). Slow (a release build), so it is not part of
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/build-env"
"$work/build-env/bin/pip" install --quiet "maturin>=1.5,<2"
"$work/build-env/bin/maturin" build --release --out "$work/dist"
wheel=$(ls "$work"/dist/isolint-*.whl)
echo "built: $(basename "$wheel")"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel"
bin="$work/venv/bin/isolint"

version=$("$bin" --version)
expected="isolint $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[ "$version" = "$expected" ] || { echo "--version says '$version', expected '$expected'" >&2; exit 1; }
echo "ok: $version"

# From outside the repository, as a user would run it.
cd "$work"
set +e
"$bin" check --format concise "$repo/fixtures/check/legacy_single_phase" >"$work/out.txt"
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "check exited $rc, expected 1" >&2; cat "$work/out.txt" >&2; exit 1; }
grep -q 'warning\[ISO003\] `Foo_Type`' "$work/out.txt" || { echo "no ISO003 finding:" >&2; cat "$work/out.txt" >&2; exit 1; }
"$bin" check "$repo/fixtures/check/isolated_multi_phase" >/dev/null
echo "ok: check from the installed wheel"
echo "wheel test: 3 passed, 0 failed"
