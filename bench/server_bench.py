#!/usr/bin/env python3
"""
server_bench.py -- read throughput of `evstore serve`: GET /all in 1,000-event
pages (wrk) and WebSocket fan-out (bench_ws_fanout), for one or more evstore
binaries, round-robin in the same run, median of the rounds.

    python3 bench/server_bench.py --store DIR [--rounds 3] [--distinct-types A,B,C] BUILD/evstore [OTHER/evstore ...]

The store must already hold events (at least 1,000 x --pages; the figures in
docs/benchmarks.md used 100,000 events of ~630 rendered bytes).  Each binary
in turn is started on a free loopback port with the store, measured, and
stopped: binaries alternate within every round, so a burst of load from
elsewhere on a shared machine lands on all of them alike.  With two or more
binaries the ratios against the first are printed too.

Environment: EVS_FANOUT (default build dir of the first binary)/bench_ws_fanout.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def start(binary, store, threads):
    p = subprocess.Popen([binary, "serve", "-d", store, "--listen", "127.0.0.1:0", "--durability", "none",
                          "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        sys.exit("server did not start: %r" % line)
    return p, int(m.group(1))


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    p.stdout.close()


def wrk_all(port, args):
    env = dict(os.environ, EVS_PAGES=str(args.pages))
    out = subprocess.run(["wrk", "-t2", "-c%d" % args.connections, "-d%ds" % args.seconds, "-s",
                          os.path.join(HERE, "http_all.lua"), "http://127.0.0.1:%d" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=True).stdout.decode()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not m or non2xx:
        sys.exit("wrk failed:\n" + out)
    mb = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"KB": 1 / 1024, "MB": 1, "GB": 1024}.get(mb.group(2), 1) if mb else 0
    return float(m.group(1)) * 1000, float(mb.group(1)) * scale if mb else 0.0


def fanout(port, args, types=None):
    cmd = [args.fanout, "127.0.0.1", str(port), str(args.clients), str(args.events)]
    if types:
        cmd += ["1", types]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True, timeout=900).stdout.decode()
    m = re.search(r"deliveries_per_s=(\d+)", out)
    if not m:
        sys.exit("bench_ws_fanout failed:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--fanout")
    ap.add_argument("--distinct-types", help="also run the fan-out with a distinct filter per client on these "
                                             "event types (comma-separated: every stored type, so every event matches)")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    if not args.fanout:
        args.fanout = os.environ.get("EVS_FANOUT") or os.path.join(os.path.dirname(args.binaries[0]),
                                                                    "bench_ws_fanout")
    res = {b: {"all": [], "mb": [], "ws": [], "wsd": []} for b in args.binaries}
    for r in range(args.rounds):
        for b in args.binaries:
            p, port = start(b, args.store, args.threads)
            try:
                ev, mb = wrk_all(port, args)
                ws = fanout(port, args)
                wsd = fanout(port, args, args.distinct_types) if args.distinct_types else 0.0
            finally:
                stop(p)
            res[b]["all"].append(ev)
            res[b]["mb"].append(mb)
            res[b]["ws"].append(ws)
            res[b]["wsd"].append(wsd)
            print("round %d %s: /all %.0f events/s (%.0f MB/s), ws fan-out %.0f deliveries/s, "
                  "distinct filters %.0f" % (r + 1, b, ev, mb, ws, wsd), flush=True)
    base = None
    for b in args.binaries:
        med = {k: statistics.median(v) for k, v in res[b].items()}
        runs = lambda k: " / ".join("%.0f" % x for x in res[b][k])
        line = ("median %s: /all %.0f events/s (%.0f MB/s; runs %s), ws fan-out %.0f deliveries/s (runs %s), "
                "distinct filters %.0f (runs %s)" % (b, med["all"], med["mb"], runs("all"), med["ws"], runs("ws"),
                                                     med["wsd"], runs("wsd")))
        if base:
            line += "; vs first: /all %.2fx, ws %.2fx" % (med["all"] / base["all"], med["ws"] / base["ws"])
            if base["wsd"]:
                line += ", distinct filters %.2fx" % (med["wsd"] / base["wsd"])
        else:
            base = med
        print(line)


if __name__ == "__main__":
    main()
