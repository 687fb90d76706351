#!/usr/bin/env python3
"""
nats_relay.py -- the NATS JetStream relay, mirror and importer against a
3-node cluster (R3 streams), each beside a baseline measured in the same run.

Per round:
  - throughput: a fresh stream; `evstore nats publish` of all N events (one-
    shot), `evstore nats mirror` of them into a fresh store, and the baseline
    `evstore read -d DIR $all` of the same events to /dev/null;
  - importer: N plain messages (JSON bodies, no headers; subjects
    imp.K.ItemAdded, runs of 100 per K) published beforehand to a fresh
    stream by a plain NATS client, then `evstore nats import` one-shot into
    a fresh store (target order-{2}: one append, one fdatasync, per run of
    100), against the same round's publish;
  - latency: `evstore serve --nats` running its relay live, LAT_EVENTS
    appends over HTTP at LAT_RATE a second, and a JetStream push consumer
    (deliver policy new, no acks) on a socket of its own that stamps each
    message on receipt: latency = receipt - the moment the append was sent;
    beside it the append's own latency (HTTP round trip, fdatasync).
Prints each round, then the medians of the rates, of the per-round ratios,
and of the per-round p50/p99 latencies.

Usage: bench/nats_relay.py [BUILD_DIR] [N] [ROUNDS]   (defaults: build 50000 5)
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
LAT_EVENTS = 1000
LAT_RATE = 200  # appends a second
os.environ["EVSTORE_BIN"] = os.path.join(build, "evstore")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from test_nats import Cluster  # noqa: E402
from test_nats_import import NatsClient, js_request  # noqa: E402

BIN = os.environ["EVSTORE_BIN"]


def timed(args):
    t = time.perf_counter()
    subprocess.run([BIN] + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def latency_round(c, tmp, r):
    """p50 and p99 (ms) of append -> JetStream push consumer, relay live in serve."""
    d = os.path.join(tmp, "lat%d" % r)
    stream, prefix = "L%d" % r, "l%d" % r
    p = subprocess.Popen([BIN, "serve", "-d", d, "--listen", "127.0.0.1:0", "--nats", c.urls(), "--nats-stream",
                          stream, "--nats-subject-prefix", prefix, "--nats-replicas", "3"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)", p.stdout.readline().decode()).group(1)
        # one append first, so the relay has created the stream before the consumer is made on it
        req = urllib.request.Request(url + "/streams/warm-1", data=json.dumps(
            [{"event_type": "Warm", "data": {"k": -1}}]).encode(), headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        deadline = time.time() + 60
        while time.time() < deadline:  # the relay has published it: the consumer starts after it
            try:
                if js_request(c, "$JS.API.STREAM.INFO." + stream, {}, 5)["state"]["messages"] >= 1:
                    break
            except AssertionError:
                pass
            time.sleep(0.1)
        sock = socket.create_connection(("127.0.0.1", c.client[0]), timeout=60)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _INBOX.lat 1\r\nPING\r\n')
        f.readline()
        js_request(c, "$JS.API.CONSUMER.CREATE." + stream, {"stream_name": stream, "config": {
            "deliver_subject": "_INBOX.lat", "ack_policy": "none", "deliver_policy": "new"}})
        got = {}

        def consume():
            while len(got) < LAT_EVENTS:
                line = f.readline()
                if not line:
                    return
                if line.startswith(b"PING"):
                    sock.sendall(b"PONG\r\n")
                    continue
                if line.startswith(b"HMSG") or line.startswith(b"MSG"):
                    parts = line.split()
                    payload = f.read(int(parts[-1]))
                    f.readline()
                    now = time.perf_counter()
                    body = payload[int(parts[-2]):] if line.startswith(b"HMSG") else payload
                    try:
                        k = json.loads(body)["k"]
                    except (ValueError, KeyError, TypeError):
                        continue  # heartbeats and flow control have no body
                    if k >= 0:
                        got.setdefault(k, now)

        t = threading.Thread(target=consume, daemon=True)
        t.start()
        sent, acked = {}, {}
        start = time.perf_counter()
        for k in range(LAT_EVENTS):
            due = start + k / LAT_RATE
            while time.perf_counter() < due:
                time.sleep(max(0, due - time.perf_counter()))
            req = urllib.request.Request(url + "/streams/order-%d" % (k % 50), data=json.dumps(
                [{"event_type": "Placed", "data": {"k": k}}]).encode(), headers={"Content-Type": "application/json"})
            sent[k] = time.perf_counter()
            urllib.request.urlopen(req, timeout=30).read()
            acked[k] = time.perf_counter()
        t.join(60)
        sock.close()
        lat = [(got[k] - sent[k]) * 1000 for k in sent if k in got]
        if len(lat) < LAT_EVENTS:
            raise AssertionError("latency round %d: %d of %d messages received" % (r + 1, len(lat), LAT_EVENTS))
        app = [(acked[k] - sent[k]) * 1000 for k in sent]
        return pct(lat, 50), pct(lat, 99), pct(app, 50), pct(app, 99)
    finally:
        p.terminate()
        p.wait(60)


def main():
    tmp = tempfile.mkdtemp(prefix="evs-bench-nats-")
    c = Cluster(tmp).start()
    try:
        src = os.path.join(tmp, "src")
        line = json.dumps({"event_type": "ItemAdded", "data": {"sku": "abc-123", "qty": 1, "pad": "x" * 100}})
        body = json.dumps({"sku": "abc-123", "qty": 1, "pad": "x" * 100}).encode()
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
            # the importer: plain messages from another service
            istream = "I%d" % r
            js_request(c, "$JS.API.STREAM.CREATE." + istream, {"name": istream, "subjects": ["i%d.>" % r],
                                                               "num_replicas": 3, "storage": "file"})
            nc = NatsClient(c.client[0])
            nc.publish_many([("i%d.%d.ItemAdded" % (r, i // 100), body, {}) for i in range(N)], 500)
            nc.close()
            imp = timed(["nats", "import", "-d", os.path.join(tmp, "imp%d" % r), "--nats", c.urls(), "--stream",
                         istream, "--to", "order-{2}"])
            p50, p99, a50, a99 = latency_round(c, tmp, r)
            rows.append((N / pub, N / mir, N / rd, N / imp, p50, p99, a50, a99))
            print("round %d: publish %.0f ev/s, mirror %.0f ev/s, read $all %.0f ev/s, import %.0f ev/s, "
                  "publish/read %.3f, import/publish %.2f; latency append -> consumer p50 %.1f ms p99 %.1f ms, "
                  "the append alone (HTTP, fdatasync) p50 %.1f ms p99 %.1f ms"
                  % (r + 1, N / pub, N / mir, N / rd, N / imp, rd / pub, pub / imp, p50, p99, a50, a99), flush=True)
        med = [statistics.median(x[i] for x in rows) for i in range(8)]
        ratio = statistics.median(x[0] / x[2] for x in rows)
        iratio = statistics.median(x[3] / x[0] for x in rows)
        print("median of %d rounds, %d events of %d bytes: publish %.0f ev/s, mirror %.0f ev/s, read $all %.0f ev/s, "
              "import %.0f ev/s; publish/read ratio %.3f, import/publish ratio %.2f; latency (%d appends at %d/s "
              "per round) append -> consumer p50 %.1f ms, p99 %.1f ms; the append alone p50 %.1f ms, p99 %.1f ms"
              % (ROUNDS, N, len(line), med[0], med[1], med[2], med[3], ratio, iratio, LAT_EVENTS, LAT_RATE, med[4],
                 med[5], med[6], med[7]))
    finally:
        c.stop()
        subprocess.run(["rm", "-rf", tmp])


main()
