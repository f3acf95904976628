#!/usr/bin/env python3
"""Benchmark `isolint check` against its floors; prints figures, asserts nothing.

For each input it reports files, MB and lines; wall, user and sys time as medians over
--runs runs; peak RSS; MB/s; and, measured in the same rounds, two floors: raw tree-sitter-c
parsing of the same files with the same rayon parallelism, and plain reading
(examples/parse_floor.rs). The figure that matters is isolint time / raw parse time.

Inputs (each skipped with a message when it cannot be had):
  corpus    the 21-package development corpus  (--corpus DIR or $ISOLINT_CORPUS; otherwise
            ../shared/corpus/fetch.sh fetches it into the data folder)
  cpython   CPython's Modules/ Objects/ Python/ Parser/  (--cpython DIR or $ISOLINT_CPYTHON,
            a CPython source root; otherwise `apt-get source --download-only python3.13`)
  copies    the corpus's C files and build files copied 1x, 4x, 16x (hard links where
            possible), for the scaling curve
  table     one generated 5 MB C file holding a table of constants

Rounds interleave the configurations (isolint, parse floor, read floor, each at 2 and 1
threads through RAYON_NUM_THREADS), so that noise from a busy machine falls on all of them
alike. Binaries are built with `cargo build --release` and copied aside first, so that a
rebuild in the working tree cannot swap them mid-run. `isolint` runs with --no-cache; two more
configurations time re-runs with a warm cache: `warm` (nothing changed: the run memo answers)
and `warmfacts` (the run memo and the module cache deleted first: every file's facts come from
the cache, the model and rules run again); and `edited`, on a copy of the input with its own
cache: before each run one `.c` file (the one of median size) gets a comment appended, which
changes its hash, so the run parses that file and models and checks its modules again.

    bench/run.py                       # everything, 5 runs
    bench/run.py --only corpus,table --runs 7
    bench/run.py --json results.json   # also write every sample
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_INPUTS = ["corpus", "cpython", "copies", "table"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build(bin_dir):
    """Builds isolint and the floor, then copies both to bin_dir."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    cmd = ["cargo", "build", "--release", "--bin", "isolint", "--example", "parse_floor"]
    log("building: " + " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)
    release = os.path.join(target, "release")
    for src, name in [
        (os.path.join(release, "isolint"), "isolint"),
        (os.path.join(release, "examples", "parse_floor"), "parse_floor"),
    ]:
        shutil.copy2(src, os.path.join(bin_dir, name))


def run_once(argv, threads, capture=False):
    """Runs argv; returns wall, user, sys seconds, peak RSS in KB and stdout."""
    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out = proc.stdout.read().decode() if capture else ""
    # wait4 gives this child's own rusage, with its peak RSS.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # isolint exits 1 when it has findings; only 2 and above are failures.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}")
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "rss_kb": usage.ru_maxrss,
        "stdout": out,
    }


def forget_run_memos(cache_dir):
    """Deletes the run memos and the module caches: the next run models every module."""
    for dirpath, _, names in os.walk(cache_dir):
        for name in names:
            if name.startswith("run-") or name.startswith("units-"):
                os.remove(os.path.join(dirpath, name))


def copy_for_edits(paths, into):
    """Copies the input folders under `into`; returns the copies and the .c file of median
    size (by size, then path) among them, the one `edited` appends a comment to."""
    copies = []
    for i, path in enumerate(paths):
        dest = os.path.join(into, f"{i}-{os.path.basename(os.path.normpath(path))}")
        shutil.copytree(path, dest, symlinks=True)
        copies.append(dest)
    c_files = []
    for root in copies:
        for dirpath, _, names in os.walk(root):
            for name in names:
                if name.endswith(".c"):
                    full = os.path.join(dirpath, name)
                    c_files.append((os.path.getsize(full), full))
    c_files.sort()
    return copies, c_files[len(c_files) // 2][1] if c_files else None


def floor_fields(bins, paths):
    out = run_once([bins["parse_floor"], "read"] + paths, 2, capture=True)["stdout"]
    return dict(kv.split("=", 1) for kv in out.split())


def measure(bins, name, paths, runs, configs):
    """Interleaved rounds over configs; returns the per-config medians."""
    fields = floor_fields(bins, paths)
    info = {
        "input": name,
        "files": int(fields["files"]),
        "mb": int(fields["bytes"]) / 1e6,
        "lines": int(fields["lines"]),
    }
    log(f"{name}: {info['files']} files, {info['mb']:.1f} MB, {info['lines']} lines")
    check = [bins["isolint"], "check", "--format", "json", "--exit-zero"]
    cache_dir = tempfile.mkdtemp(prefix="isolint-bench-cache-")
    cached = check + ["--cache-dir", cache_dir] + paths
    argvs = {
        "isolint": check + ["--no-cache"] + paths,
        # A re-run on an unchanged tree: answered whole from the cache's run memo.
        "warm": cached,
        # A re-run after a change the memo cannot answer: every file's facts come from the
        # cache, the model and the rules run again.
        "warmfacts": cached,
        "parse": [bins["parse_floor"], "parse"] + paths,
        "read": [bins["parse_floor"], "read"] + paths,
    }
    edit_root, edited_file = None, None
    if any(tool == "edited" for tool, _ in configs):
        edit_root = tempfile.mkdtemp(prefix="isolint-bench-edit-")
        copies, edited_file = copy_for_edits(paths, os.path.join(edit_root, "tree"))
        argvs["edited"] = check + ["--cache-dir", os.path.join(edit_root, "cache")] + copies
        info["edited_file"] = edited_file and os.path.relpath(edited_file, edit_root)
        log(f"  edited: {info['edited_file']}")
        run_once(argvs["edited"], 2)  # fills the copy's cache
    samples = {c: [] for c in configs}
    # The read floor above already brought every file into the page cache; one warm-up of the
    # parse floor loads the binaries' pages too, so the first round is not the odd one out.
    run_once(argvs["parse"], 2)
    if any(tool in ("warm", "warmfacts") for tool, _ in configs):
        run_once(cached, 2)  # fills the cache
    for i in range(runs):
        for tool, threads in configs:
            if tool == "warmfacts":
                forget_run_memos(cache_dir)
            if tool == "edited":
                if not edited_file:
                    continue
                with open(edited_file, "a") as f:
                    f.write(f"/* edit {i} {threads} */\n")
            samples[(tool, threads)].append(run_once(argvs[tool], threads))
        log(f"  round {i + 1}/{runs} done")
    shutil.rmtree(cache_dir, ignore_errors=True)
    if edit_root:
        shutil.rmtree(edit_root, ignore_errors=True)
    result = dict(info)
    result["configs"] = {}
    for (tool, threads), runs_ in samples.items():
        if not runs_:
            continue
        med = {k: statistics.median(r[k] for r in runs_) for k in ("wall", "user", "sys")}
        med["rss_mb"] = max(r["rss_kb"] for r in runs_) / 1024
        med["mb_s"] = info["mb"] / med["wall"] if med["wall"] else 0.0
        med["walls"] = [round(r["wall"], 3) for r in runs_]
        result["configs"][f"{tool}@{threads}"] = med
    return result


def report(result):
    c = result["configs"]
    print(
        f"\n## {result['input']}: {result['files']} files, {result['mb']:.1f} MB, "
        f"{result['lines']:,} lines"
    )
    print(
        f"{'run':<12} {'wall s':>8} {'user s':>8} {'sys s':>7} {'peak RSS MB':>12} {'MB/s':>7}"
    )
    for key, m in c.items():
        print(
            f"{key:<12} {m['wall']:>8.3f} {m['user']:>8.3f} {m['sys']:>7.3f} "
            f"{m['rss_mb']:>12.0f} {m['mb_s']:>7.2f}"
        )
    for t in (2, 1):
        iso, parse = c.get(f"isolint@{t}"), c.get(f"parse@{t}")
        if iso and parse:
            print(
                f"isolint / raw parse @{t} thread(s): wall {iso['wall'] / parse['wall']:.2f}x, "
                f"CPU {(iso['user'] + iso['sys']) / (parse['user'] + parse['sys']):.2f}x"
            )
    if result.get("edited_file"):
        print(f"edited: {result['edited_file']} (a comment appended before each run)")
    for tool in ("warm", "warmfacts", "edited"):
        warm, parse = c.get(f"{tool}@2"), c.get("parse@2")
        if warm and parse:
            print(
                f"{tool} re-run / raw parse @2 threads: wall {warm['wall'] / parse['wall']:.3f}x, "
                f"CPU {(warm['user'] + warm['sys']) / (parse['user'] + parse['sys']):.3f}x"
            )
    for tool in ("isolint", "parse"):
        one, two = c.get(f"{tool}@1"), c.get(f"{tool}@2")
        if one and two:
            print(f"{tool} speed-up 1 -> 2 threads: {one['wall'] / two['wall']:.2f}x")


def fetch_corpus(data):
    dest = os.path.join(data, "corpus")
    fetch = os.path.join(ROOT, "..", "shared", "corpus", "fetch.sh")
    if not os.path.exists(fetch):
        return None
    log(f"fetching the corpus into {dest}")
    if subprocess.run([fetch, dest]).returncode != 0:
        return None
    return dest


def fetch_cpython(data):
    """A CPython 3.13 source tree from the Debian source package, if apt has deb-src."""
    dest = os.path.join(data, "cpython")
    os.makedirs(dest, exist_ok=True)
    for entry in os.listdir(dest):
        if entry.startswith("Python-") and os.path.isdir(os.path.join(dest, entry)):
            return os.path.join(dest, entry)
    if not shutil.which("apt-get"):
        return None
    log("fetching CPython 3.13 sources with apt-get source (needs a deb-src entry)")
    r = subprocess.run(["apt-get", "source", "--download-only", "python3.13"], cwd=dest)
    tarballs = [f for f in os.listdir(dest) if f.endswith(".orig.tar.xz")]
    if r.returncode != 0 or not tarballs:
        return None
    subprocess.run(["tar", "xf", tarballs[0]], cwd=dest, check=True)
    for entry in os.listdir(dest):
        if entry.startswith("Python-"):
            return os.path.join(dest, entry)
    return None


BUILD_FILES = ["setup.py", "pyproject.toml", "meson.build", "CMakeLists.txt"]


def make_copies(bins, corpus, data, n):
    """n copies of the files the walk finds in the corpus, side by side, with the build files
    of the folders holding them: each copy's packages stay packages (isolint checks the code
    no module holds package by package)."""
    dest = os.path.join(data, f"copies-{n}x")
    stamp = os.path.join(dest, ".complete-with-build-files")
    if os.path.exists(stamp):
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    listing = run_once([bins["parse_floor"], "list", corpus], 2, capture=True)["stdout"]
    files = [line for line in listing.splitlines() if line]
    folders = set()
    for f in files:
        folder = os.path.dirname(os.path.abspath(f))
        while folder.startswith(os.path.abspath(corpus)) and folder not in folders:
            folders.add(folder)
            folder = os.path.dirname(folder)
    files += [os.path.join(d, b) for d in sorted(folders) for b in BUILD_FILES
              if os.path.isfile(os.path.join(d, b))]
    for i in range(n):
        for f in files:
            target = os.path.join(dest, f"copy{i}", os.path.relpath(f, corpus))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)
    open(stamp, "w").close()
    return dest


def make_table(data, size=5_000_000):
    """A generated data file: one static const table of numbers, like a codec mapping."""
    path = os.path.join(data, "table", "generated_table.c")
    if os.path.exists(path) and os.path.getsize(path) >= size:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("/* generated */\nstatic const unsigned int table[] = {\n")
        written, i = 0, 0
        while written < size:
            line = "    " + ", ".join(f"0x{(i * 2654435761 + k) & 0xFFFFFFFF:08x}" for k in range(8)) + ",\n"
            f.write(line)
            written += len(line)
            i += 1
        f.write("};\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default=",".join(ALL_INPUTS), help="comma-separated inputs")
    ap.add_argument("--corpus", default=os.environ.get("ISOLINT_CORPUS"))
    ap.add_argument("--cpython", default=os.environ.get("ISOLINT_CPYTHON"))
    ap.add_argument("--copies", default="1,4,16")
    ap.add_argument("--data", default=os.path.join(ROOT, "target", "bench-data"),
                    help="where fetched and generated inputs are kept (never committed)")
    ap.add_argument("--bin-dir", help="use isolint and parse_floor from here; no build")
    ap.add_argument("--json", help="write every result here")
    args = ap.parse_args()
    only = args.only.split(",")
    os.makedirs(args.data, exist_ok=True)

    tmp = tempfile.mkdtemp(prefix="isolint-bench-")
    bin_dir = args.bin_dir
    if not bin_dir:
        bin_dir = tmp
        build(bin_dir)
    bins = {n: os.path.join(bin_dir, n) for n in ("isolint", "parse_floor")}

    print("# isolint benchmark")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"isolint: {git_describe()}; runs per figure: {args.runs} (medians)")
    both = [("isolint", 2), ("parse", 2), ("read", 2), ("isolint", 1), ("parse", 1),
            ("warm", 2), ("warmfacts", 2), ("edited", 2)]
    results = []

    corpus = args.corpus
    if ("corpus" in only or "copies" in only) and not corpus:
        corpus = fetch_corpus(args.data)
    if "corpus" in only:
        if corpus:
            results.append(measure(bins, "corpus", [corpus], args.runs, both))
            report(results[-1])
        else:
            print("\n## corpus: unavailable (pass --corpus DIR)")

    if "cpython" in only:
        root = args.cpython or fetch_cpython(args.data)
        if root:
            dirs = [os.path.join(root, d) for d in ("Modules", "Objects", "Python", "Parser")]
            results.append(measure(bins, "cpython-3.13", dirs, args.runs, both))
            report(results[-1])
        else:
            print("\n## cpython: unavailable (pass --cpython DIR, a CPython source root)")

    if "copies" in only and corpus:
        scaling = []
        for n in [int(x) for x in args.copies.split(",")]:
            tree = make_copies(bins, corpus, args.data, n)
            r = measure(bins, f"corpus x{n}", [tree], args.runs,
                        [("isolint", 2), ("parse", 2), ("read", 2)])
            results.append(r)
            report(r)
            scaling.append((n, r))
        if scaling:
            n0, r0 = scaling[0]
            base = r0["configs"]["isolint@2"]
            print("\n## scaling (isolint @2 threads, relative to the smallest copy)")
            print(f"{'copies':>6} {'MB':>8} {'wall s':>8} {'wall / (n x base)':>18} "
                  f"{'peak RSS MB':>12} {'RSS / base':>11} {'parse RSS MB':>13}")
            for n, r in scaling:
                m = r["configs"]["isolint@2"]
                p = r["configs"]["parse@2"]
                print(f"{n:>6} {r['mb']:>8.1f} {m['wall']:>8.3f} "
                      f"{m['wall'] / (base['wall'] * n / n0):>18.2f} {m['rss_mb']:>12.0f} "
                      f"{m['rss_mb'] / base['rss_mb']:>11.2f} {p['rss_mb']:>13.0f}")

    if "table" in only:
        path = make_table(args.data)
        results.append(measure(bins, "generated 5 MB table", [path], args.runs,
                               [("isolint", 2), ("parse", 2), ("read", 2)]))
        report(results[-1])

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def git_describe():
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "unknown") + (" (working tree modified)" if dirty else "")


if __name__ == "__main__":
    main()
