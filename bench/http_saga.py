#!/usr/bin/env python3
"""http_saga.py BUILD_DIR -- the shop's order saga over HTTP against the same
commands sent by hand over HTTP, same run.

Each round starts two `evstore serve` on fresh stores (default durability):
one with --app-dir examples/shop (the order saga runs), one with a copy of
the app directory without sagas/ (nothing runs by itself).  Saga side:
--clients threads each place their share of --orders orders (CreateOrder,
AddItem, SubmitOrder over keep-alive HTTP); a carrier (a WebSocket
subscription on ShipmentCreated feeding --clients threads) answers every
shipment with ScheduleShipment and the shipment's correlation id; timed from
the first command until GET /sagas/order?status=completed lists every order.
Raw side: the same threads send the nine commands of an order one after the
other (CreateOrder, AddItem, SubmitOrder, ReserveStock, AuthorizePayment,
CreateShipment, ScheduleShipment, CapturePayment, CompleteOrder).  Every
order has a product of its own, restocked before the clock starts.  The
figure is the median over --rounds of sagas/s over raw orders/s; the two
sides run in alternating order.  Exit 0 when every run ran.
"""
import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHOP = os.path.join(ROOT, "examples", "shop")
sys.path.insert(0, SHOP)
from http_driver import WebSocket  # noqa: E402  (the example's own small client)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, binary, app_dir, tmp, name):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "serve", "-d", os.path.join(tmp, name), "--app-dir", app_dir,
                                      "--listen", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def cmd(self, name, agg, data, **extra):
        body = json.dumps(dict(extra, aggregate_id=agg, data=data))
        self.c.request("POST", "/commands/" + name, body, {"Content-Type": "application/json"})
        r = self.c.getresponse()
        ans = json.loads(r.read())
        if ans.get("outcome") != "accepted":
            raise RuntimeError("%s %s: %s" % (name, agg, ans))

    def get(self, path):
        self.c.request("GET", path)
        return json.loads(self.c.getresponse().read())


def parallel(n, fn):
    errs = []

    def run(k):
        try:
            fn(k)
        except Exception as e:  # reported, and the run fails
            errs.append(e)
    ts = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]


def restock(port, orders, clients):
    parallel(clients, lambda k: [Client(port).cmd("Restock", "p%d" % i, {"quantity": 1})
                                 for i in range(k, orders, clients)])


def saga_side(port, orders, clients):
    restock(port, orders, clients)
    ws = WebSocket("127.0.0.1", port, 60)
    ws.send({"op": "subscribe", "from": "now", "filter": {"type": "ShipmentCreated"}})
    assert ws.recv().get("op") == "subscribed"
    q = queue.Queue()

    def reader():
        for _ in range(orders):
            m = ws.recv()
            while m.get("op") != "event":
                m = ws.recv()
            q.put(m["event"])

    def carrier(k):
        c = Client(port)
        while True:
            e = q.get()
            if e is None:
                return
            c.cmd("ScheduleShipment", e["stream"][len("shipment-"):], {"carrier": "post"},
                  correlation_id=e["correlation_id"])
    rt = threading.Thread(target=reader)
    cts = [threading.Thread(target=carrier, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    rt.start()
    for t in cts:
        t.start()

    def place(k):
        c = Client(port)
        for i in range(k, orders, clients):
            o = "o%d" % i
            c.cmd("CreateOrder", o, {"customer": "c%d" % i})
            c.cmd("AddItem", o, {"sku": "p%d" % i, "quantity": 1, "unit_price": "4.10"})
            c.cmd("SubmitOrder", o, {"card": "tok_visa", "address": "1 Main St"})
    parallel(clients, place)
    poll = Client(port)
    while len(poll.get("/sagas/order?status=completed&limit=1000")["sagas"]) < orders:
        time.sleep(0.01)
    dt = time.monotonic() - t0
    rt.join()
    for _ in cts:
        q.put(None)
    for t in cts:
        t.join()
    ws.close()
    return orders / dt


def raw_side(port, orders, clients):
    restock(port, orders, clients)

    def order(k):
        c = Client(port)
        for i in range(k, orders, clients):
            o = "o%d" % i
            c.cmd("CreateOrder", o, {"customer": "c%d" % i})
            c.cmd("AddItem", o, {"sku": "p%d" % i, "quantity": 1, "unit_price": "4.10"})
            c.cmd("SubmitOrder", o, {"card": "tok_visa", "address": "1 Main St"})
            c.cmd("ReserveStock", "p%d" % i, {"order_id": o, "quantity": 1})
            c.cmd("AuthorizePayment", o, {"order_id": o, "amount": "4.10", "card": "tok_visa"})
            c.cmd("CreateShipment", o, {"order_id": o, "address": "1 Main St"})
            c.cmd("ScheduleShipment", o, {"carrier": "post"})
            c.cmd("CapturePayment", o, {})
            c.cmd("CompleteOrder", o, {"payment_id": o})
    t0 = time.monotonic()
    parallel(clients, order)
    return orders / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--orders", type=int, default=400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    binary = os.path.join(a.build, "evstore")
    tmp = tempfile.mkdtemp(prefix="evs-bench-saga-")
    plain = os.path.join(tmp, "app")
    os.mkdir(plain)
    for f in os.listdir(SHOP):
        if f.endswith(".lua") or f == "queries.json":
            os.symlink(os.path.join(SHOP, f), os.path.join(plain, f))
    ratios, sagas, raws = [], [], []
    try:
        for r in range(a.rounds):
            res = {}
            for side in (("saga", "raw") if r % 2 == 0 else ("raw", "saga")):
                srv = Server(binary, SHOP if side == "saga" else plain, tmp, "%s-%d" % (side, r))
                try:
                    res[side] = (saga_side if side == "saga" else raw_side)(srv.port, a.orders, a.clients)
                finally:
                    srv.stop()
            sagas.append(res["saga"])
            raws.append(res["raw"])
            ratios.append(res["saga"] / res["raw"])
            print("round %d: sagas %.0f/s, raw orders %.0f/s, ratio %.2fx" % (r + 1, res["saga"], res["raw"],
                                                                             ratios[-1]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("http_saga: %d orders, %d clients, %d rounds: sagas %.0f/s (rounds %.0f-%.0f), raw %.0f orders/s "
          "(rounds %.0f-%.0f), ratio median %.2fx (rounds %.2f-%.2f), target >= 0.5x; load %s"
          % (a.orders, a.clients, a.rounds, statistics.median(sagas), min(sagas), max(sagas),
             statistics.median(raws), min(raws), max(raws), statistics.median(ratios), min(ratios), max(ratios),
             open("/proc/loadavg").read().split()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
