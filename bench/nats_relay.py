#!/usr/bin/env python3
"""
nats_relay.py -- relay throughput into a 3-node JetStream cluster (R3
stream) vs reading the same events from the store, in the same run.

Per round: a fresh stream; `evstore nats publish` of all N events (one-
shot), `evstore nats mirror` of them into a fresh store, and the baseline
`evstore read -d DIR $all` of the same events to /dev/null (the CLI's
evs_read_all plus rendering).  Prints each round and the medians of the
events/s and of the per-round ratios.

Usage: bench/nats_relay.py [BUILD_DIR] [N] [ROUNDS]   (defaults: build 50000 5)
"""
import os
import subprocess
import sys
import tempfile
import time
import json
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
os.environ["EVSTORE_BIN"] = os.path.join(build, "evstore")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from test_nats import Cluster  # noqa: E402

BIN = os.environ["EVSTORE_BIN"]


def timed(args):
    t = time.perf_counter()
    subprocess.run([BIN] + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    tmp = tempfile.mkdtemp(prefix="evs-bench-nats-")
    c = Cluster(tmp).start()
    try:
        src = os.path.join(tmp, "src")
        line = json.dumps({"event_type": "ItemAdded", "data": {"sku": "abc-123", "qty": 1, "pad": "x" * 100}})
        for i in range(0, N, 1000):
            subprocess.run([BIN, "append", "-d", src, "order-%d" % (i // 1000)], input=(line + "\n") * min(1000, N - i),
                           text=True, check=True, stdout=subprocess.DEVNULL)
        rows = []
        for r in range(ROUNDS):
            stream, prefix = "B%d" % r, "b%d" % r
            pub = timed(["nats", "publish", "-d", src, "--nats", c.urls(), "--stream", stream, "--subject-prefix",
                         prefix, "--replicas", "3"])
            mir = timed(["nats", "mirror", "-d", os.path.join(tmp, "m%d" % r), "--nats", c.urls(), "--stream", stream,
                         "--subject-prefix", prefix])
            rd = timed(["read", "-d", src, "$all"])
            rows.append((N / pub, N / mir, N / rd))
            print("round %d: publish %.0f ev/s, mirror %.0f ev/s, read $all %.0f ev/s, publish/read %.3f"
                  % (r + 1, N / pub, N / mir, N / rd, rd / pub))
        med = [statistics.median(x[i] for x in rows) for i in range(3)]
        ratio = statistics.median(x[0] / x[2] for x in rows)
        print("median of %d rounds, %d events of %d bytes: publish %.0f ev/s, mirror %.0f ev/s, read $all %.0f ev/s; "
              "publish/read ratio %.3f" % (ROUNDS, N, len(line), med[0], med[1], med[2], ratio))
    finally:
        c.stop()
        subprocess.run(["rm", "-rf", tmp])


main()
