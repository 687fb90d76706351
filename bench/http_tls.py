#!/usr/bin/env python3
"""http_tls.py BUILD_DIR — HTTP appends and $all reads with TLS against without, same run.

Two `evstore serve --durability none` servers (none, so that fsync does not
hide what the protocol costs) on stores filled alike with --pages pages of
1,000 events: one plain, one with --tls-cert/--tls-key (a P-256 certificate
made here with openssl; TLS 1.3 as negotiated by wrk).  Each round runs, in
turn on each server, wrk with --connections keep-alive connections (2 wrk
threads) for --seconds: one-event appends (bench/http_append.lua), then GET
/all in 1,000-event pages (bench/http_all.lua).  A round's ratio is TLS /
plain; the figure is the median of --rounds ratios, so load from other
processes hits both sides alike.  wrk keeps its connections open, so this
measures encryption, not handshakes.

Needs wrk and openssl.  Exit status 0 when every run ran.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(binary, d, *extra):
    p = subprocess.Popen([binary, "serve", "-d", d, "--listen", "127.0.0.1:0", "--durability", "none",
                          "--threads", "8"] + list(extra), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    m = re.search(r"(https?)://127\.0\.0\.1:(\d+)", p.stdout.readline().decode())
    if not m:
        sys.exit("http_tls.py: the server did not start")
    return p, "%s://127.0.0.1:%s" % (m.group(1), m.group(2))


def fill(url, pages):
    host, port = url.split("://")[1].split(":")
    if url.startswith("https"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    else:
        c = http.client.HTTPConnection(host, int(port), timeout=60)
    for p in range(pages):
        body = json.dumps([{"event_type": "OrderPlaced", "data": {"order_id": "ord-%06d" % (p * 1000 + i),
                                                                   "total": "25.00", "items": [1, 2, 3]}}
                           for i in range(1000)])
        c.request("POST", "/streams/fill-%d" % p, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            sys.exit("http_tls.py: filling answered %d" % r.status)
    c.close()


def wrk(url, script, a):
    env = dict(os.environ, EVS_PAGES=str(a.pages))
    out = subprocess.run(["wrk", "-t2", "-c%d" % a.connections, "-d%ds" % a.seconds, "-s",
                          os.path.join(HERE, script), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, check=True).stdout.decode()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or re.search(r"Non-2xx or 3xx responses: (\d+)", out) or "Socket errors" in out:
        sys.exit("http_tls.py: wrk failed:\n" + out)
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--pages", type=int, default=50)
    a = ap.parse_args()
    binary = os.path.join(a.build, "evstore")
    tmp = tempfile.mkdtemp(prefix="evs-bench-tls-")
    procs = []
    try:
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p1, plain = serve(binary, os.path.join(tmp, "plain"))
        procs.append(p1)
        p2, tls = serve(binary, os.path.join(tmp, "tls"), "--tls-cert", cert, "--tls-key", key)
        procs.append(p2)
        fill(plain, a.pages)
        fill(tls, a.pages)
        res = {"append": [], "all": []}
        for r in range(a.rounds):
            for what, script in (("append", "http_append.lua"), ("all", "http_all.lua")):
                x, y = wrk(plain, script, a), wrk(tls, script, a)
                res[what].append((x, y))
                print("http_tls: round %d %-6s plain %9.0f req/s  TLS %9.0f req/s  TLS/plain %.3f" %
                      (r + 1, what, x, y, y / x))
        for what, label in (("append", "one-event appends"), ("all", "GET /all, 1,000-event pages")):
            ratios = [y / x for x, y in res[what]]
            print("http_tls: %s, %d connections, median of %d rounds: plain %.0f req/s, TLS %.0f req/s, "
                  "TLS/plain %.3f" % (label, a.connections, a.rounds, statistics.median(x for x, _ in res[what]),
                                      statistics.median(y for _, y in res[what]), statistics.median(ratios)))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
            p.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
