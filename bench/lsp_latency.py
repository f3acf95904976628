#!/usr/bin/env python3
"""Latency of `isolint server`: from a `didChange` to the `publishDiagnostics` of that version.

It copies a project folder aside, starts the server on the copy (the workspace is analysed on
`initialize`, with the facts cache as `isolint check` keeps it), opens one file and sends
--edits unsaved edits, one at a time, each waiting for its diagnostics: every other edit adds
a `static PyObject *` global and a function writing it at a different line of the file, the
next removes them again. The debounce is set to 0 ms (`initializationOptions.debounceMs`), so
the figure is the re-check alone; an editor adds its debounce (200 ms by default) on top.
Prints the median, p95 and maximum in milliseconds, the server's CPU time (user + system,
from /proc) per edit, which a busy machine does not inflate the way it does wall time, and the
server's peak resident memory; asserts nothing.

    bench/lsp_latency.py --bin target/release/isolint /path/to/project relative/file.c
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def send(proc, message):
    body = json.dumps(message).encode()
    proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    proc.stdin.flush()


def receive(proc):
    length = None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the server stopped")
        line = line.strip()
        if not line:
            break
        if line.startswith(b"Content-Length:"):
            length = int(line.split(b":")[1])
    return json.loads(proc.stdout.read(length))


def wait_for(proc, test):
    while True:
        message = receive(proc)
        if test(message):
            return message


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """The process's peak resident memory in MB, from /proc (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/isolint")
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("project")
    parser.add_argument("file", help="the file to edit, relative to the project")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="isolint-lsp-") as tmp:
        root = os.path.join(tmp, "project")
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns(".isolint_cache"))
        path = os.path.join(root, args.file)
        uri = "file://" + path
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        lines = text.split("\n")
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "xdg"))
        proc = subprocess.Popen(
            [os.path.abspath(args.bin), "server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=root,
        )
        start = time.perf_counter()
        send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "processId": None, "rootUri": "file://" + root, "capabilities": {},
            "initializationOptions": {"debounceMs": 0}}})
        wait_for(proc, lambda m: m.get("id") == 1)
        send(proc, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
        # A request as a barrier: the workspace analysis is done when it is answered.
        send(proc, {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}})
        wait_for(proc, lambda m: m.get("id") == 2)
        initial = time.perf_counter() - start
        send(proc, {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
            "textDocument": {"uri": uri, "languageId": "c", "version": 0, "text": text}}})
        wait_for(proc, lambda m: m.get("method") == "textDocument/publishDiagnostics"
                 and m["params"]["uri"] == uri)

        samples = []
        counts = []
        cpu_before = cpu_seconds(proc.pid)
        for version in range(1, args.edits + 1):
            if version % 2:
                at = (version * 7919) % len(lines)
                # At the start of a line outside any function: before the first line at or
                # after `at` that starts in column 0 with a letter.
                while at < len(lines) and not (lines[at][:1].isalpha()):
                    at += 1
                added = [f"static PyObject *lsp_bench_{version};",
                         f"static void lsp_bench_set_{version}(void) "
                         f"{{ lsp_bench_{version} = PyDict_New(); }}"]
                edited = "\n".join(lines[:at] + added + lines[at:])
            else:
                edited = text
            t0 = time.perf_counter()
            send(proc, {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": edited}]}})
            m = wait_for(proc, lambda m: m.get("method") == "textDocument/publishDiagnostics"
                         and m["params"]["uri"] == uri and m["params"].get("version") == version)
            samples.append((time.perf_counter() - t0) * 1000)
            counts.append(len(m["params"]["diagnostics"]))
        cpu = cpu_seconds(proc.pid) - cpu_before
        peak = peak_rss_mb(proc.pid)
        send(proc, {"jsonrpc": "2.0", "id": 3, "method": "shutdown", "params": None})
        wait_for(proc, lambda m: m.get("id") == 3)
        send(proc, {"jsonrpc": "2.0", "method": "exit", "params": None})
        proc.wait()

    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    print(f"{args.file}: {len(lines)} lines; workspace analysis on initialize {initial * 1000:.0f} ms")
    print(f"diagnostics after an edit ({len(samples)} edits, {min(counts)}-{max(counts)} diagnostics): "
          f"median {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms, max {samples[-1]:.1f} ms; "
          f"server CPU {cpu * 1000 / len(samples):.1f} ms per edit; peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
