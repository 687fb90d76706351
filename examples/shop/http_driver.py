#!/usr/bin/env python3
"""http_driver.py -- the shop's order saga over HTTP, with live customer
notifications over WebSocket.

Runs against a server started with `evstore serve --app-dir examples/shop`
(standard library only; the small WebSocket client is below so the example
stands alone).  It places six orders through POST /commands/..., four with
a failure injected, and checks that each ends in the state the saga owes it:

  o1, o2  nothing wrong                          -> completed
  o3      out of stock (more than is on hand)    -> compensated
  o4      card declined ("tok_declined")         -> compensated
  o5      shipping timeout (address "nowhere")   -> compensated
  o6      compensation fails ("nowhere" + "tok_void_fails": the void is
          refused three times)                   -> compensation_failed,
          then an operator skips it              -> compensated

The driver plays the carrier too: a WebSocket subscription on
ShipmentCreated schedules every shipment whose address is not "nowhere",
answering with the shipment's correlation id so the saga's waiting step
finds it.  Each customer holds their own subscription on their order's saga
stream `saga-order-{id}` (WebSocket filters have no correlation id; the
saga's stream carries exactly one order's progress) and is told: order
accepted, payment authorized, shipped, completed or cancelled with the
reason.  Exit 0 when every order ended as above, 1 otherwise.

    python3 examples/shop/http_driver.py [--url http://127.0.0.1:2113]
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
STEPS = ["order", "reserve", "authorize", "ship", "capture", "complete"]
FINAL = ("completed", "compensated", "failed", "compensation_failed")


class WebSocket:
    """A minimal RFC 6455 client: masked text frames out, JSON messages in."""

    def __init__(self, host, port, timeout):
        self.s = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise EOFError("the server closed the WebSocket handshake")
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if " 101 " not in head.decode().split("\r\n")[0] or want not in head.decode():
            raise ConnectionError("WebSocket upgrade refused: " + head.decode().split("\r\n")[0])

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("WebSocket closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, obj):
        self._send_frame(1, json.dumps(obj).encode())

    def recv(self):
        """The next JSON message (heartbeats and pings answered and skipped); None when closed."""
        while True:
            b0, b1 = self._need(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8))[0]
            payload = self._need(n)
            op = b0 & 0x0F
            if op == 9:
                self._send_frame(10, payload)
                continue
            if op == 8:
                return None
            m = json.loads(payload.decode())
            if m.get("op") != "heartbeat":
                return m

    def close(self):
        try:
            self._send_frame(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.s.close()


class Shop:
    def __init__(self, url, timeout):
        self.url = url.rstrip("/")
        u = urllib.parse.urlparse(self.url)
        self.host, self.port = u.hostname, u.port or 80
        self.timeout = timeout
        self.lock = threading.Lock()
        self.problems = []

    def say(self, line):
        with self.lock:
            print(line, flush=True)

    def problem(self, line):
        with self.lock:
            self.problems.append(line)
            print("PROBLEM: " + line, flush=True)

    def request(self, method, path, body=None):
        """(status, JSON answer) of one request; 4xx answers are answers, not exceptions."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def command(self, name, aggregate_id, data, **extra):
        body = dict(extra, aggregate_id=aggregate_id, data=data)
        status, ans = self.request("POST", "/commands/" + name, body)
        if status not in (200, 201) or ans.get("outcome") != "accepted":
            self.problem("%s %s: %d %s" % (name, aggregate_id, status, ans))
        return ans

    def subscribe(self, flt):
        ws = WebSocket(self.host, self.port, self.timeout)
        ws.send({"op": "subscribe", "from": 1, "filter": flt})
        m = ws.recv()
        if not m or m.get("op") != "subscribed":
            raise ConnectionError("subscribe %s: %r" % (flt, m))
        return ws


def carrier(shop, ws, stop):
    """Schedule every new shipment except those to "nowhere", with the shipment's correlation id."""
    while not stop.is_set():
        try:
            m = ws.recv()
        except (socket.timeout, OSError, EOFError):
            continue
        if m is None:
            return
        if m.get("op") != "event":
            continue
        e = m["event"]
        oid = e["stream"][len("shipment-"):]
        if e["data"].get("address") == "nowhere":
            shop.say("[carrier] no carrier serves the address of %s" % oid)
            continue
        shop.command("ScheduleShipment", oid, {"carrier": "post"}, correlation_id=e["correlation_id"],
                     command_id="carrier-" + oid)
        shop.say("[carrier] scheduled the shipment of %s" % oid)


def customer(shop, ws, who, oid, want, ended):
    """Tell `who` about their order as its saga moves; record the final state."""
    while True:
        try:
            m = ws.recv()
        except (socket.timeout, OSError, EOFError) as e:
            shop.problem("%s: subscription on saga-order-%s dropped: %s" % (who, oid, e))
            return
        if m is None or m.get("op") != "event":
            continue
        e = m["event"]
        t, d = e["event_type"], e["data"]
        note = None
        if t == "SagaStarted":
            note = "order %s accepted" % oid
        elif t == "SagaStepCompleted" and STEPS[d["step"]] == "authorize":
            note = "payment authorized"
        elif t == "SagaStepCompleted" and STEPS[d["step"]] == "ship":
            note = "shipped"
        elif t == "SagaCompleted":
            note, final = "order completed", "completed"
        elif t == "SagaCompensating":
            note = "order being cancelled: %s" % d.get("reason")
        elif t == "SagaCompensationFailed" and d.get("retry_at") is None:
            note, final = "cancellation stuck (%s); an operator will look at it" % d.get("reason"), \
                "compensation_failed"
        elif t == "SagaCompensated":
            note, final = "order cancelled", "compensated"
        elif t == "SagaFailed":
            note, final = "order failed: %s" % d.get("reason"), "failed"
        if note:
            shop.say("[%s] %s" % (who, note))
        if t in ("SagaCompleted", "SagaCompensated", "SagaFailed"):
            ended[oid].append(final)
            return
        if t == "SagaCompensationFailed" and d.get("retry_at") is None:
            ended[oid].append(final)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:2113")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for every order to end")
    a = ap.parse_args()
    shop = Shop(a.url, a.timeout)
    deadline = time.monotonic() + a.timeout

    # (order, customer, sku, quantity, card, address, the state it must end in)
    orders = [
        ("o1", "ada", "tea", 2, "tok_visa", "1 Main St", "completed"),
        ("o2", "bob", "mug", 1, "tok_visa", "2 Side St", "completed"),
        ("o3", "cy", "mug", 50, "tok_visa", "3 High St", "compensated"),
        ("o4", "dee", "tea", 1, "tok_declined", "4 Low St", "compensated"),
        ("o5", "eve", "tea", 1, "tok_visa", "nowhere", "compensated"),
        ("o6", "fay", "tea", 1, "tok_void_fails", "nowhere", "compensation_failed"),
    ]
    shop.command("Restock", "tea", {"quantity": 10})
    shop.command("Restock", "mug", {"quantity": 5})

    stop = threading.Event()
    cws = shop.subscribe({"type": "ShipmentCreated"})
    cws.s.settimeout(0.5)
    threads = [threading.Thread(target=carrier, args=(shop, cws, stop), daemon=True)]
    ended = {o[0]: [] for o in orders}
    sockets = [cws]
    for oid, who, *_ in orders:
        ws = shop.subscribe({"stream": "saga-order-" + oid})
        sockets.append(ws)
        threads.append(threading.Thread(target=customer, args=(shop, ws, who, oid, None, ended), daemon=True))
    for t in threads:
        t.start()

    for oid, who, sku, qty, card, addr, _ in orders:
        shop.command("CreateOrder", oid, {"customer": who}, command_id="create-" + oid)
        shop.command("AddItem", oid, {"sku": sku, "quantity": qty, "unit_price": "4.10"})
        shop.command("SubmitOrder", oid, {"card": card, "address": addr})

    # wait for every order's end; the stuck compensation is an operator's to settle
    skipped = False
    while time.monotonic() < deadline:
        if not skipped and ended["o6"] == ["compensation_failed"]:
            st, ans = shop.request("POST", "/sagas/order/o6/skip?reason=void+done+by+phone")
            shop.say("[operator] skipped the refused void of o6: %d %s" % (st, ans.get("status")))
            skipped = True
        if all(not t.is_alive() for t in threads[1:]):
            break
        time.sleep(0.1)
    stop.set()

    for oid, who, sku, qty, card, addr, want in orders:
        st, saga = shop.request("GET", "/sagas/order/" + oid)
        status = saga.get("status") if st == 200 else None
        final = "compensated" if want == "compensation_failed" else want
        seen = ended[oid]
        ok = status == final and seen[-1:] == [final] and (want != "compensation_failed" or seen[0] == want)
        shop.say("%s %-4s %-20s saga %-12s customer told %s" % ("ok  " if ok else "FAIL", oid, want, status, seen))
        if not ok:
            shop.problem("%s: wanted %s, saga is %s, customer told %s" % (oid, want, status, seen))
        st, o = shop.request("GET", "/aggregates/order/" + oid)
        ostatus = o.get("state", {}).get("status") if st == 200 else None
        if ostatus != ("completed" if want == "completed" else "cancelled"):
            shop.problem("%s: the order aggregate is %s" % (oid, ostatus))
    # stock: only the completed orders hold reservations (o1: 2 tea, o2: 1 mug)
    for sku, held in (("tea", 2), ("mug", 1)):
        st, inv = shop.request("GET", "/aggregates/inventory/" + sku)
        reserved = inv.get("state", {}).get("reserved") if st == 200 else None
        if reserved != held:
            shop.problem("%s: %s reserved, wanted %d" % (sku, reserved, held))
    for ws in sockets:
        ws.close()
    if shop.problems:
        print("%d problem(s)" % len(shop.problems))
        return 1
    print("every order ended as it should")
    return 0


if __name__ == "__main__":
    sys.exit(main())
