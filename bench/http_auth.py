#!/usr/bin/env python3
"""http_auth.py BUILD_DIR — what API keys cost per HTTP request, same run.

Two servers on stores of the same size: one with auth off (loopback, no
keys), one with a reader key among 20 (auth on).  Each round sends N
keep-alive GET /info requests to each in turn from one client (the key in
Authorization on the second); a round's ratio is keyed / open requests per
second; the figure is the median of --rounds ratios, so load from other
processes hits both sides alike.  The keyed BLAKE2b of one verify costs
microseconds (bench_auth); this shows that it is lost in a request's own
cost, where Argon2id (tens to hundreds of ms, bench_auth) would dominate.

Standard library only.  Exit status 0 when every run ran.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def serve(binary, d, *extra):
    p = subprocess.Popen([binary, "serve", "-d", d, "--listen", "127.0.0.1:0"] + list(extra),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    m = re.search(r"http://127\.0\.0\.1:(\d+)", p.stdout.readline().decode())
    if not m:
        sys.exit("http_auth.py: the server did not start")
    return p, int(m.group(1))


def rate(port, n, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.perf_counter()
    for _ in range(n):
        c.request("GET", "/info", headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("http_auth.py: GET /info answered %d" % r.status)
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    binary = os.path.join(a.build, "evstore")
    tmp = tempfile.mkdtemp(prefix="evs-bench-auth-")
    procs = []
    try:
        d_open, d_auth = os.path.join(tmp, "open"), os.path.join(tmp, "auth")
        os.makedirs(d_open)
        os.makedirs(d_auth)
        key = None
        for i in range(20):
            out = subprocess.run([binary, "key", "create", "--role", "reader", "-d", d_auth], check=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
            key = json.loads(out)["key"]
        p1, port_open = serve(binary, d_open)
        p2, port_auth = serve(binary, d_auth, "--auth")
        procs = [p1, p2]
        rate(port_open, 200, {})
        rate(port_auth, 200, {"Authorization": "Bearer " + key})
        ratios, opens, keyed = [], [], []
        for r in range(a.rounds):
            o = rate(port_open, a.requests, {})
            k = rate(port_auth, a.requests, {"Authorization": "Bearer " + key})
            opens.append(o)
            keyed.append(k)
            ratios.append(k / o)
            print("http_auth: round %d: open %.0f req/s, with a key %.0f req/s, ratio %.3f" % (r + 1, o, k, k / o))
        print("http_auth: GET /info, one keep-alive client, median of %d rounds: open %.0f req/s, "
              "with a key %.0f req/s, keyed/open %.3f" % (a.rounds, statistics.median(opens),
                                                       statistics.median(keyed), statistics.median(ratios)))
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
            p.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
