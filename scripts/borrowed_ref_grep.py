#!/usr/bin/env python3
"""numpy's borrowed-reference gate (tools/ci/check_c_api_usage.py), reproduced to compare
with isolint on the same files (docs/free-threading.md).

The same 11 names, matched as whole identifiers in code with comments removed; a line with
numpy's `noqa: borrowed-ref` marker is skipped unless --ignore-noqa is given (then every hit
is counted, which is what the comparison with isolint uses: isolint reads the markers as
suppressions too, so both sides are compared before them).

Prints one hit per line, `path:line: NAME`, and a count per name on stderr.

    scripts/borrowed_ref_grep.py [--ignore-noqa] [--ext .c --ext .h] ROOT
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys

# numpy 2.4.6, tools/ci/check_c_api_usage.py
SUSPICIOUS = (
    "PyList_GetItem",
    "PyDict_GetItem",
    "PyDict_GetItemWithError",
    "PyDict_GetItemString",
    "PyDict_SetDefault",
    "PyDict_Next",
    "PyWeakref_GetObject",
    "PyWeakref_GET_OBJECT",
    "PyList_GET_ITEM",
    "_PyDict_GetItemStringWithError",
    "PySequence_Fast",
)
NOQA = ("noqa: borrowed-ref OK", "noqa: borrowed-ref - manual fix needed")
PATTERN = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, SUSPICIOUS)) + r")(?!\w)")


def strip_comments(line: str, in_block: bool) -> tuple[str, bool]:
    out = []
    i = 0
    while i < len(line):
        if in_block:
            end = line.find("*/", i)
            if end == -1:
                return "".join(out), True
            i, in_block = end + 2, False
            continue
        sl, bl = line.find("//", i), line.find("/*", i)
        if sl != -1 and (bl == -1 or sl < bl):
            out.append(line[i:sl])
            return "".join(out), False
        if bl != -1:
            out.append(line[i:bl])
            i, in_block = bl + 2, True
            continue
        out.append(line[i:])
        break
    return "".join(out), in_block


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--ignore-noqa", action="store_true")
    ap.add_argument("--ext", action="append", help="default: .c .h (what isolint reads)")
    ap.add_argument("--exclude", action="append", default=["pythoncapi-compat"])
    args = ap.parse_args()
    exts = tuple(args.ext or (".c", ".h"))
    counts: collections.Counter[str] = collections.Counter()
    for dirpath, dirnames, filenames in os.walk(args.root):
        dirnames[:] = sorted(d for d in dirnames if d not in args.exclude)
        for name in sorted(filenames):
            if not name.endswith(exts):
                continue
            path = os.path.join(dirpath, name)
            in_block = False
            with open(path, encoding="utf-8", errors="ignore") as f:
                for lineno, raw in enumerate(f, 1):
                    if not args.ignore_noqa and any(m in raw for m in NOQA):
                        continue
                    code, in_block = strip_comments(raw.rstrip("\n"), in_block)
                    for m in PATTERN.finditer(code):
                        counts[m.group(0)] += 1
                        print(f"{path}:{lineno}: {m.group(0)}")
    for name in SUSPICIOUS:
        print(f"{name}\t{counts[name]}", file=sys.stderr)
    print(f"total\t{sum(counts.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
