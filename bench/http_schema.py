#!/usr/bin/env python3
"""http_schema.py BUILD_DIR — HTTP one-event appends with schemas against without, same run.

Each round starts two `evstore serve` on fresh stores: one whose five event
types (bench/http_append.lua's orders) have a schema describing the order
(required fields, types, bounds, a pattern, enum, nested objects and
arrays), one without.  wrk drives each in turn (bench/http_append.lua,
--connections, --seconds after a 1 s warm-up).  The figure is the median,
over --rounds rounds, of the ratio appends/s with schemas / without.
--durability none shows the validator's cost plainly (sync hides it behind
fsync).  Needs wrk (Debian: wrk).  Exit status 0 when every run ran.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TYPES = ["OrderPlaced", "OrderPaid", "OrderPacked", "OrderShipped", "OrderDelivered"]
ITEM = {"type": "object", "required": ["sku", "qty", "price"], "additionalProperties": False,
        "properties": {"sku": {"type": "string", "pattern": "^SKU-[0-9]{4}$"},
                       "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                       "price": {"type": "number", "minimum": 0}}}
ORDER = {"type": "object", "required": ["order_id", "customer", "items", "total", "currency", "paid"],
         "additionalProperties": False,
         "properties": {"order_id": {"type": "string", "minLength": 1, "maxLength": 64},
                        "customer": {"type": "object", "required": ["id", "name"],
                                     "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
                        "items": {"type": "array", "items": ITEM},
                        "total": {"type": "number", "minimum": 0},
                        "currency": {"enum": ["EUR", "USD", "GBP"]},
                        "paid": {"type": "boolean"}}}


def serve(binary, data, durability):
    p = subprocess.Popen([binary, "serve", "-d", data, "--listen", "127.0.0.1:0", "--durability", durability],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        raise SystemExit("serve did not start: %r" % line)
    return p, int(m.group(1))


def wrk(port, conns, seconds):
    args = ["wrk", "-t1", "-c%d" % conns, "-s", os.path.join(HERE, "http_append.lua"), "http://127.0.0.1:%d" % port]
    subprocess.run(args[:1] + ["-d1s"] + args[1:], capture_output=True, check=True)
    out = subprocess.run(args[:1] + ["-d%ds" % seconds] + args[1:], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit("appends were refused (%s): the schema does not fit the orders" % non2xx.group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--durability", default="none")
    a = ap.parse_args()
    binary = os.path.join(a.build, "evstore")
    ratios = []
    for r in range(a.rounds):
        rates = {}
        for with_schema in (False, True) if r % 2 == 0 else (True, False):
            tmp = tempfile.mkdtemp(prefix="evs-bench-schema-")
            p, port = serve(binary, os.path.join(tmp, "data"), a.durability)
            try:
                if with_schema:
                    c = http.client.HTTPConnection("127.0.0.1", port)
                    for t in TYPES:
                        c.request("PUT", "/schemas/" + t, json.dumps(ORDER), {"Content-Type": "application/json"})
                        resp = c.getresponse()
                        resp.read()
                        assert resp.status == 201, resp.status
                    c.close()
                rates[with_schema] = wrk(port, a.connections, a.seconds)
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait()
                shutil.rmtree(tmp, ignore_errors=True)
        ratios.append(rates[True] / rates[False])
        print("round %d: without %.0f/s, with schemas %.0f/s, ratio %.3f" % (r + 1, rates[False], rates[True],
                                                                           ratios[-1]), flush=True)
    print("HTTP 1-event appends with schemas / without (%d connection(s), durability %s): median ratio %.3f "
          "over %d rounds" % (a.connections, a.durability, statistics.median(ratios), a.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
