#!/usr/bin/env python3
"""http_append.py BUILD_DIR — HTTP appends against in-process appends, same run.

For each client count (8 and 64) and each of --rounds rounds, in turn:
  in-process  bench_store's W2 with that many threads (one-event appends,
              durability sync, exact expected versions), one run of
              --seconds;
  HTTP        `evstore serve --durability sync` on a fresh store (its default
              worker threads unless --threads is given), wrk with
              that many connections (2 wrk threads) POSTing one-event
              appends (bench/http_append.lua), --seconds after a 1 s warm-up.
The ratio of a round is HTTP / in-process; the figure is the median of the
rounds' ratios, so a burst of load from other processes hits both sides.
Each side also reports its appends per group commit (bench_store's figure;
the server's evstore_appends_total and evstore_commit_batches_total over
the timed run): how well the commits batch is what separates the two.
wrk, the server and the in-process appenders all share the machine's cores.

Needs wrk (Debian: wrk).  Exit status 0 when every run ran, 1 otherwise.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inprocess(build, threads, seconds, data_dir):
    env = dict(os.environ, EVS_BENCH_DIR=data_dir, EVS_BENCH_ONLY="W2", EVS_BENCH_THREADS=str(threads),
               EVS_BENCH_RUNS="1", EVS_BENCH_SECONDS=str(seconds), EVS_BENCH_W1_OPS="1", EVS_BENCH_BASE_OPS="1", EVS_BENCH_NO_REDIS="1",
               EVS_BENCH_W2_OPS="5000000")
    out = subprocess.run([os.path.join(build, "bench_store")], env=env, capture_output=True, text=True, timeout=300)
    m = re.search(r"^W2 \d+ threads, 1 event, sync: ([\d,]+) appends/s.*?; ([\d.]+) per commit", out.stdout, re.M)
    if out.returncode or not m:
        sys.stderr.write(out.stdout[-2000:] + out.stderr[-2000:])
        raise RuntimeError("bench_store failed")
    return float(m.group(1).replace(",", "")), float(m.group(2))


def commit_counts(url):
    """(appends, group commits) from the server's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    got = {}
    for name in ("evstore_appends_total", "evstore_commit_batches_total"):
        m = re.search(r"^" + name + r" (\d+)$", text, re.M)
        if not m:
            raise RuntimeError(f"/metrics has no {name}")
        got[name] = int(m.group(1))
    return got["evstore_appends_total"], got["evstore_commit_batches_total"]


def over_http(build, conns, seconds, data_dir, threads):
    os.makedirs(data_dir, exist_ok=True)
    store = tempfile.mkdtemp(prefix="http-append-", dir=data_dir)
    port = free_port()
    srv = subprocess.Popen([os.path.join(build, "evstore"), "serve", "-d", store, "--listen", f"127.0.0.1:{port}",
                            "--durability", "sync"] + (["--threads", str(threads)] if threads else []),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or srv.poll() is not None:
                    raise RuntimeError("evstore serve did not start: " + (srv.stderr.read() if srv.poll() is not None else ""))
                time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        script = os.path.join(HERE, "http_append.lua")
        subprocess.run(["wrk", "-t2", f"-c{conns}", "-d1s", "-s", script, url], capture_output=True, timeout=60)
        a0, b0 = commit_counts(url)
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", script, url],
                             capture_output=True, text=True, timeout=120)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
        if out.returncode or not m:
            raise RuntimeError("wrk failed: " + out.stdout + out.stderr)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        if bad:
            raise RuntimeError(f"{bad.group(1)} appends were not answered 201:\n{out.stdout}")
        a1, b1 = commit_counts(url)
        return float(m.group(1)), (a1 - a0) / max(1, b1 - b0)
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        shutil.rmtree(store, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--clients", default="8,64")
    ap.add_argument("--threads", type=int, default=0,
                    help="the server's --threads (default: the server's own default, as a user runs it)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("http_append: wrk is not installed (Debian: apt-get install wrk); skipped")
        return 0
    data_dir = os.environ.get("EVS_BENCH_DIR") or os.path.join(args.build, "bench-data")
    os.makedirs(data_dir, exist_ok=True)
    clients = [int(c) for c in args.clients.split(",")]
    res = {c: [] for c in clients}
    print(f"HTTP appends against in-process appends: {args.rounds} rounds of {args.seconds} s, durability sync, "
          f"one-event appends to 10,000 streams")
    for r in range(args.rounds):
        for c in clients:
            a, abatch = inprocess(args.build, c, args.seconds, data_dir)
            h, hbatch = over_http(args.build, c, args.seconds, data_dir, args.threads)
            res[c].append((a, h, abatch, hbatch))
            print(f"  round {r + 1}/{args.rounds}, {c} clients: in-process {a:,.0f} appends/s ({abatch:.1f} per commit), "
                  f"HTTP {h:,.0f} appends/s ({hbatch:.1f} per commit), {h / a:.2f}x", flush=True)
    print()
    print("| clients | in-process W2 (median) | HTTP append (median) | HTTP / in-process (median of rounds) | target |"
          " appends per commit, in-process / HTTP |")
    print("|---|---|---|---|---|---|")
    for c in clients:
        a = statistics.median(x[0] for x in res[c])
        h = statistics.median(x[1] for x in res[c])
        q = statistics.median(x[1] / x[0] for x in res[c])
        ab = statistics.median(x[2] for x in res[c])
        hb = statistics.median(x[3] for x in res[c])
        print(f"| {c} | {a:,.0f} appends/s | {h:,.0f} appends/s | {q:.2f}x | >= 0.7x ({'met' if q >= 0.7 else 'NOT met'}) |"
              f" {ab:.1f} / {hb:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
