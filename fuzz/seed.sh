#!/bin/sh
# Fills fuzz/corpus/pipeline/ with seeds: every C file under fixtures/ and fuzz/seeds/ (small
# hostile inputs: recursive macros and macro values, CR-only and CRLF-continued files), and the C files of the
# development corpus (../shared/corpus/fetch.sh DIR) given as the first argument, if any. Files
# over 64 KB are left out: libFuzzer truncates its inputs to -max_len anyway, and small seeds
# keep the executions fast. Seeds are generated, never committed (they belong to their authors).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/corpus/pipeline"
mkdir -p "$out"
copy() {
    find "$1" -type f \( -name '*.c' -o -name '*.h' -o -name '*.inc' \) -size -64k | while read -r f; do
        # Content-addressed names, as libFuzzer names its own corpus entries.
        cp "$f" "$out/$(sha1sum "$f" | cut -c1-40)"
    done
}
copy "$here/../fixtures"
copy "$here/seeds"
# A 10,000-line macro: generated, not committed (libFuzzer truncates it to -max_len, the start
# is what matters).
{ printf '#define HUGE(x) \\\n'; i=0; while [ $i -lt 10000 ]; do printf '    t[%d] = x; \\\n' $i; i=$((i+1)); done; printf '    done\nvoid f(void) { HUGE(1); }\n'; } > "$out/huge_macro"
if [ "${1:-}" ]; then
    copy "$1"
fi
echo "$(ls "$out" | wc -l) seeds in $out"
# The build-file readers' target: the committed seeds (first byte: which file, see
# fuzz_targets/build_files.rs), written for isolint's tests.
mkdir -p "$here/corpus/build_files"
cp "$here"/seeds/build_files/* "$here/corpus/build_files/"
echo "$(ls "$here/corpus/build_files" | wc -l) seeds in $here/corpus/build_files"
