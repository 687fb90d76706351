#!/usr/bin/env python3
"""
test_server_saga_kill9.py -- the shop's order saga in the real server
(`evstore serve --app-dir`, src/server/saga_host.c) under kill -9: orders
with injected failures are placed over HTTP while the server is killed with
SIGKILL at random moments and restarted on the same directory; then every
rule is checked from the event history read over HTTP (/all), not from logs.

The in-process twin is tests/crash/test_saga_kill9.c; the rules checked are
its rules, and this header follows its.  The server runs a copy of
examples/shop with sagas/order_saga.json setting a 1 s shipping timeout and
a 20 ms first compensation retry, 4 saga workers.

Three placer threads place orders over POST /commands/{type}, each taking
the next order number: CreateOrder, AddItem per line, SubmitOrder, each
with a command id derived from (order, command) -- "create-o7", "add-o7-1", "submit-o7" -- so a
command re-sent after a kill (its answer lost with the server) is the same
command: the store answers the first result again.  Lines and injected
failures are a function of the seed and the order number: out of stock
("rare" has 12 units), a declined card (tok_declined), a shipping timeout
(address "nowhere"), and a shipping timeout whose void the gateway refuses
(tok_void_fails: compensation_failed).  A carrier thread polls
/all?type=ShipmentCreated and schedules every shipment not bound for
"nowhere" (ScheduleShipment with the event's correlation id and the command
id "carrier-{event id}").  Both threads ride over kills: a request that
fails because the server died is sent again to the next one.

The main thread starts the server, lets it run 0..1.2 s (a fifth of the
time 0..30 ms: right after the start, while the timers that fell due while
it was down fire), kills it with SIGKILL and starts the next -- while
orders are placed, while sagas run, while shipping timers fire; about one
restart in seven is itself killed 5..150 ms after its exec, before it
listens (while it opens the store and the saga engine catches up).  Each
run may place a share of the orders, so kills fall among the placing as
well as after it.  After the
last kill the last server places what is left and the test waits until
every saga is completed, compensated or compensation_failed; the latter are
resumed by an operator's skip (POST /sagas/order/{id}/skip) and must then
end compensated.  Then, from /all:
  1. every submitted order has a saga, ended completed or compensated;
  2. no step's command ran twice: per (order, step, phase, effect) one
     command id has events, every command id has one event, and no step
     failed for a reason other than the injected ones (a command sent a
     second time is refused by the aggregates' own rules: "already holds
     stock", "already exists", "already cancelled");
  3. compensations ran once each, newest step first, after every action,
     and undid exactly what took effect (every reservation released once,
     every authorization voided unless its void was skipped, every
     shipment cancelled, the order cancelled once);
  4. stock never negative: on hand minus reserved >= 0 after every event
     of every product;
  5. money captured only for completed orders, and exactly once for each;
and an injected failure is never ignored: an order with a declined card or
bound for "nowhere" never completes, and exactly the orders whose void is
refused needed the operator's skip.  Last, the audit is shown not to be
blind: each broken rule planted in a copy of the run's history (a step's
command twice, a command with two events, a second capture, a compensation
before an action, money kept by a compensated order, a saga not ended,
stock below zero, a failure nothing injected) must be reported.

Sizes: 250 orders and 20 kills (EVS_SANITIZED=1: 60 orders, 8 kills);
EVS_SAGA_ORDERS / EVS_SAGA_KILLS change them (make soak: 1,000 and 50).
The seed is printed; EVS_SEED repeats a run (the same orders and the same
kill delays; thread timing differs).  Standard library only; helpers
shared with test_server.py and test_server_saga.py.  Prints "N passed, M
failed" as its last line and exits non-zero on failure.
"""
import copy
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, SLOW, TIMEOUT, Server  # noqa: E402
import test_server_saga  # noqa: E402  (its SagaLifecycleTest.app_dir; imported as a module so it is not run here)
from test_server_saga import JSON, Shop, q  # noqa: E402

SKUS = ("tea", "mug", "cup", "pot")
STOCK = {"tea": 1000000, "mug": 1000000, "cup": 1000000, "pot": 1000000, "rare": 12}
STEPS = ("order", "reserve", "authorize", "ship", "capture", "complete")
INJECTED = ("not enough stock", "card declined", "no answer within", "refused to void")
NORMAL, OUT_OF_STOCK, DECLINED, NOWHERE, VOID_FAILS = range(5)
PLACERS = 3                           # clients placing orders at once


def kind_of(seed, i):
    """What order i is, as in test_saga_kill9.c: 8% each out of stock, declined, nowhere; 4% void fails."""
    r = random.Random(seed * 1000003 + i).randrange(100)
    return OUT_OF_STOCK if r < 8 else DECLINED if r < 16 else NOWHERE if r < 24 else VOID_FAILS if r < 28 else NORMAL


class Stopped(Exception):
    """The test is over (or failed elsewhere): a thread gives up its request."""


class Servers:
    """`evstore serve` on one directory across kills: each restart is a new Server (a new port).

    request() has the signature of Server.request, so test_server_saga's Shop drives it; a request
    the killed server never answered is sent again to the next one (commands carry their ids)."""

    def __init__(self, data, app):
        self.data, self.app = data, app
        self.cv = threading.Condition()
        self.srv, self.gen, self.stopping = None, 0, False
        self.logs = []                # each killed server's stderr, for a failure's report

    def start(self):
        srv = Server(self.data, "--app-dir", self.app, "--saga-workers", "4").start()
        with self.cv:
            self.srv = srv
            self.gen += 1
            self.cv.notify_all()
        return srv

    def kill(self):
        with self.cv:
            srv, self.srv = self.srv, None
        died = srv.proc.poll() is not None
        code = srv.stop(signal.SIGKILL)
        self.logs.append(srv.err)
        if died or code != -signal.SIGKILL:
            raise AssertionError("the server died before the kill (exit %s): %s" % (code, srv.err[-3000:]))

    def kill_while_starting(self, delay):
        """A server killed before it listens: while it opens the store and the saga engine catches up."""
        with tempfile.TemporaryFile() as err:
            p = subprocess.Popen([BIN, "serve", "-d", self.data, "--listen", "127.0.0.1:0", "--app-dir", self.app,
                                  "--saga-workers", "4"], stdout=subprocess.DEVNULL, stderr=err)
            time.sleep(delay)
            died = p.poll() is not None
            p.kill()
            code = p.wait(TIMEOUT)
            err.seek(0)
            self.logs.append(err.read().decode("utf-8", "replace"))
        if died:
            raise AssertionError("a starting server exited by itself (%s): %s" % (code, self.logs[-1][-3000:]))

    def stop(self):
        with self.cv:
            self.stopping = True
            srv, self.srv = self.srv, None
            self.cv.notify_all()
        return srv

    def _current(self, after_gen=None):
        deadline = time.time() + TIMEOUT
        with self.cv:
            while not self.stopping and (self.srv is None or self.gen == after_gen):
                if time.time() > deadline:
                    raise AssertionError("no server came back within %d s" % TIMEOUT)
                self.cv.wait(0.5)
            if self.stopping:
                raise Stopped()
            return self.srv, self.gen

    def request(self, method, path, body=None, headers=None):
        srv, gen = self._current()
        busy_until = time.time() + TIMEOUT
        while True:
            try:
                st, hd, b = srv.request(method, path, body=body, headers=headers)
                if st != 503 or time.time() > busy_until:  # 503: a busy server asks to come back
                    return st, hd, b
                time.sleep(0.02)
            except (OSError, http.client.HTTPException):
                srv, gen = self._current(after_gen=gen)  # killed under the request: the next server

    def get(self, path, **kw):
        return self.request("GET", path, **kw)


class SagaKill9Test(unittest.TestCase):
    def test_orders_survive_kill9(self):
        seed = int(os.environ["EVS_SEED"]) if os.environ.get("EVS_SEED") else random.SystemRandom().randrange(1, 2**62)
        sanitized = bool(os.environ.get("EVS_SANITIZED"))
        n_orders = int(os.environ.get("EVS_SAGA_ORDERS") or (60 if sanitized else 250))
        n_kills = int(os.environ.get("EVS_SAGA_KILLS") or (8 if sanitized else 20))
        print("seed %d, %d orders, %d kills (EVS_SEED=%d repeats it)" % (seed, n_orders, n_kills, seed), flush=True)
        tmp = tempfile.mkdtemp(prefix="evs-sagakill-")
        ok = False
        self.servers = None
        try:
            self.run_and_check(tmp, seed, n_orders, n_kills)
            ok = True
        finally:
            if not ok and self.servers:
                for k, err in enumerate(self.servers.logs[-3:]):
                    print("--- stderr of killed server %d of %d:\n%s" % (
                        len(self.servers.logs) - min(3, len(self.servers.logs)) + k + 1, len(self.servers.logs), err[-2000:]))
                print("(seed %d)" % seed)
            if ok or not os.environ.get("EVS_KEEP"):
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                print("kept %s" % tmp)

    # ------------------------------------------------------------ the run

    def run_and_check(self, tmp, seed, n_orders, n_kills):
        app = test_server_saga.SagaLifecycleTest.app_dir(types.SimpleNamespace(tmp=tmp),
                                                         settings='{"ship_timeout": 1, "retry_delay": 0.02}')
        servers = self.servers = Servers(os.path.join(tmp, "data"), app)
        shop = Shop(servers)
        acked = set()                 # orders whose SubmitOrder was answered
        quota = [0, 1]                # orders the placers may place so far, the next one to take
        quota_cv = threading.Condition()
        failure = []

        def place(i):
            o, k = "o%d" % i, kind_of(seed, i)
            r = random.Random(seed * 7 + i)
            shop.cmd("CreateOrder", {"command_id": "create-" + o, "aggregate_id": o, "data": {"customer": "c" + o}})
            for line in range(1 + r.randrange(3)):
                shop.cmd("AddItem", {"command_id": "add-%s-%d" % (o, line), "aggregate_id": o,
                                     "data": {"sku": r.choice(SKUS), "quantity": 1 + line, "unit_price": "2.50"}})
            if k == OUT_OF_STOCK:
                shop.cmd("AddItem", {"command_id": "add-%s-rare" % o, "aggregate_id": o,
                                     "data": {"sku": "rare", "quantity": 3, "unit_price": "40.00"}})
            card = "tok_declined" if k == DECLINED else "tok_void_fails" if k == VOID_FAILS else "tok_visa"
            address = "nowhere" if k in (NOWHERE, VOID_FAILS) else "1 Main St"
            # re-sent after a kill, SubmitOrder answers its first result (the order may be far along by then)
            shop.cmd("SubmitOrder", {"command_id": "submit-" + o, "aggregate_id": o,
                                     "data": {"card": card, "address": address}})

        def placer():
            """Takes the next order within the quota and places it; PLACERS of them run at once."""
            try:
                while True:
                    with quota_cv:
                        while quota[1] <= n_orders and quota[0] < quota[1]:
                            quota_cv.wait()
                        if quota[1] > n_orders:
                            return
                        i = quota[1]
                        quota[1] += 1
                    place(i)
                    with quota_cv:
                        acked.add(i)
            except Stopped:
                pass
            except BaseException as e:  # noqa: BLE001 -- reported by the main thread
                failure.append("placer: %r" % (e,))

        def carrier():
            """Schedules every shipment not bound for "nowhere", with its correlation id, once per event."""
            frm = 1
            try:
                while True:
                    st, _, b = servers.get("/all?from=%d&limit=1000&type=ShipmentCreated" % frm)
                    assert st == 200, (st, b)
                    for e in b["events"]:
                        if e["data"].get("address") == "nowhere":
                            continue
                        st2, _, b2 = servers.request("POST", "/commands/ScheduleShipment", headers=JSON, body=json.dumps({
                            "command_id": "carrier-" + e["event_id"], "aggregate_id": e["stream"][len("shipment-"):],
                            "correlation_id": e["correlation_id"], "data": {"carrier": "post"}}))
                        # 422: the saga gave up waiting (a timer fired while the server was down) and cancelled it
                        assert st2 in (200, 201, 422), (st2, b2)
                    frm = b["next"]
                    if not b["events"]:
                        time.sleep(0.02)
            except Stopped:
                pass
            except BaseException as e:  # noqa: BLE001
                failure.append("carrier: %r" % (e,))

        rng = random.Random(seed ^ 0x5A6A)
        share = n_orders // n_kills + 1
        t0 = time.time()
        servers.start()
        for sku, n in STOCK.items():
            shop.cmd("Restock", {"command_id": "restock-" + sku, "aggregate_id": sku, "data": {"quantity": n}})
        threads = [threading.Thread(target=carrier, daemon=True)]
        threads += [threading.Thread(target=placer, daemon=True) for _ in range(PLACERS)]
        for t in threads:
            t.start()
        kills = early = 0
        try:
            while kills < n_kills:
                with quota_cv:
                    quota[0] = min(n_orders, quota[0] + share)
                    quota_cv.notify_all()
                delay = rng.uniform(0, 0.03) if rng.random() < 0.2 else rng.uniform(0, 1.2)
                time.sleep(delay * SLOW)
                self.assertFalse(failure, failure)
                servers.kill()
                kills += 1
                if kills < n_kills and rng.random() < 0.15:
                    servers.kill_while_starting(rng.uniform(0.005, 0.15) * SLOW)
                    kills += 1
                    early += 1
                servers.start()
            print("%d kills (%d before the server listened), %d orders placed under kills, %.1f s" % (
                kills, early, len(acked), time.time() - t0), flush=True)
            with quota_cv:
                quota[0] = n_orders
                quota_cv.notify_all()
            self.settle(servers, shop, n_orders, acked, failure)
            print("settled after %.1f s" % (time.time() - t0), flush=True)
            events = servers.srv.all_events()
        finally:
            srv = servers.stop()
            for t in threads:
                t.join(TIMEOUT)
            if srv:
                code = srv.stop()
                if code != 0:
                    failure.append("the last server exited %s: %s" % (code, srv.err[-3000:]))
                if os.environ.get("EVS_VERBOSE"):
                    for k, err in enumerate(servers.logs + [srv.err]):
                        print("--- stderr of server %d:\n%s" % (k + 1, err))
        self.assertFalse(failure, failure)
        self.assertEqual(kills, n_kills)
        self.check(events, seed, n_orders)

    def settle(self, servers, shop, n_orders, acked, failure):
        """Wait until every order is placed and its saga ended; an operator skips the refused voids."""
        deadline = time.time() + 120 * SLOW

        def statuses():
            return {x["id"]: x["status"] for x in shop.list_all("/sagas/order")}

        def wait(done_states, what):
            while True:
                self.assertFalse(failure, failure)
                s = statuses()
                if len(acked) == n_orders and len(s) == n_orders and all(v in done_states for v in s.values()):
                    return s
                if time.time() > deadline:
                    stuck = sorted((k, v) for k, v in s.items() if v not in done_states)
                    self.fail("%s: %d of %d orders placed, %d sagas, not settled: %s" %
                              (what, len(acked), n_orders, len(s), stuck[:20]))
                time.sleep(0.05)

        s = wait(("completed", "compensated", "compensation_failed"), "before the operator")
        for oid, status in sorted(s.items()):
            if status == "compensation_failed":
                st, _, b = shop.act(oid, "skip", reason="voided by hand")
                self.assertIn(st, (200, 409), b)
        wait(("completed", "compensated"), "after the operator")

    # ---------------------------------------------------------- the checks

    def check(self, events, seed, n_orders):
        problems, tally, orders = audit(events, seed, n_orders)
        print("%d events; %d orders: %d completed, %d compensated (%d after an operator's skip)" % (
            len(events), tally["submitted"], tally["completed"], tally["compensated"], tally["skipped"]), flush=True)
        self.assertEqual(problems, [], "%d problems (seed %d), first: %s" % (len(problems), seed, problems[:1]))
        self.assertEqual(tally["submitted"], n_orders)
        self.assertGreater(tally["completed"], 0)
        self.assertGreater(tally["compensated"], 0)
        # a refused void always needs the operator: every such order was skipped, and only those
        self.assertEqual(sorted(i for i, x in orders.items() if x["skipped"]),
                         [i for i in orders if kind_of(seed, i) == VOID_FAILS])

        self.check_the_checks(events, seed, n_orders)

    def check_the_checks(self, events, seed, n_orders):
        """The audit is not blind: each broken rule, planted in a copy of this run's history, is reported."""
        def saga_event(evs, pred):
            return next(k for k, e in enumerate(evs) if (e.get("metadata") or {}).get("saga_id") and pred(e))

        def planted(what, mutate):
            evs = copy.deepcopy(events)
            mutate(evs)
            found = audit(evs, seed, n_orders)[0]
            self.assertTrue(found, "%s went unnoticed" % what)
            print("planted %s: %s" % (what, found[0]))

        def dup(evs, k, new_cid):
            e = copy.deepcopy(evs[k])
            e["global_position"] = evs[-1]["global_position"] + 1
            if new_cid:
                e["metadata"]["command_id"] += "/again"
            evs.append(e)

        res = saga_event(events, lambda e: e["event_type"] == "StockReserved")
        planted("a reservation sent twice (another command id)", lambda evs: dup(evs, res, True))
        planted("a command with two events", lambda evs: dup(evs, res, False))
        cap = saga_event(events, lambda e: e["event_type"] == "PaymentCaptured")
        planted("a capture twice", lambda evs: dup(evs, cap, True))
        canc = saga_event(events, lambda e: e["event_type"] == "OrderCancelled")
        oid = events[canc]["metadata"]["saga_id"]

        def early_cancel(evs):  # the order cancelled before the saga's actions ran
            e = evs.pop(canc)
            first = saga_event(evs, lambda x: x["metadata"]["saga_id"] == oid and x["metadata"].get("saga_step") == "reserve")
            e["global_position"] = evs[first]["global_position"] - 1
            evs.insert(first, e)
        planted("a compensation before the last action", early_cancel)
        planted("a compensated order's capture", lambda evs: evs.append(dict(
            copy.deepcopy(events[cap]), stream="payment-" + oid, global_position=10**9,
            metadata={"command_id": "planted-capture"})))
        last = max(k for k, e in enumerate(events) if e["stream"] == "saga-order-" + oid)
        planted("a saga that did not end", lambda evs: evs.pop(last))
        planted("stock below zero", lambda evs: evs.append(dict(
            copy.deepcopy(events[res]), data={"order_id": "x", "quantity": 10**8}, global_position=10**9,
            metadata={"command_id": "planted-reserve"})))
        planted("a failure nothing injected", lambda evs: evs.append(dict(
            copy.deepcopy(evs[last]), event_type="SagaStepFailed", data={"reason": "database on fire"},
            global_position=10**9, metadata={})))


def audit(events, seed, n_orders):
    """The rules of the header, from the history alone: (problems, tally, orders)."""
    problems = []
    orders = {i: {"submitted": 0, "completed_ev": 0, "cancelled_ev": 0, "captured": 0, "refunded": 0,
                  "captures": 0, "voided": 0, "ship_cancelled": 0, "final": None, "skipped": False, "eff": []}
              for i in range(1, n_orders + 1)}
    stock = {}
    cmd_events = {}

    def order_no(stream, prefix):
        if not stream.startswith(prefix + "o") or not stream[len(prefix) + 1:].isdigit():
            return 0
        i = int(stream[len(prefix) + 1:])
        return i if i in orders else 0

    for e in events:
        t, d, m, stream = e["event_type"], e["data"] or {}, e.get("metadata") or {}, e["stream"]
        pos = e["global_position"]
        if order_no(stream, "order-"):
            x = orders[order_no(stream, "order-")]
            x["submitted"] += t == "OrderSubmitted"
            x["completed_ev"] += t == "OrderCompleted"
            x["cancelled_ev"] += t == "OrderCancelled"
        elif order_no(stream, "payment-"):
            x = orders[order_no(stream, "payment-")]
            if t == "PaymentCaptured":
                x["captured"] += d["amount_cents"]
                x["captures"] += 1
            x["refunded"] += d["amount_cents"] if t == "PaymentRefunded" else 0
            x["voided"] += t == "PaymentVoided"
        elif order_no(stream, "shipment-"):
            orders[order_no(stream, "shipment-")]["ship_cancelled"] += t == "ShipmentCancelled"
        elif order_no(stream, "saga-order-"):
            i = order_no(stream, "saga-order-")
            x = orders[i]
            x["final"] = t
            x["skipped"] |= t == "SagaStepSkipped"
            if t in ("SagaStepFailed", "SagaCompensationFailed"):
                why = d.get("reason") or ""
                if not any(w in why for w in INJECTED):
                    problems.append("o%d: %s for a reason nothing injected: %s" % (i, t, why or "(none)"))
        elif stream.startswith("inventory-"):
            sku = stream[len("inventory-"):]
            s = stock.setdefault(sku, [0, 0])
            qty = d.get("quantity", 0)
            s[0] += qty if t == "Restocked" else 0
            s[1] += qty if t == "StockReserved" else -qty if t == "StockReleased" else 0
            if s[1] < 0 or s[0] - s[1] < 0:
                problems.append("stock of %s went negative at position %d: %d on hand, %d reserved" %
                                (sku, pos, s[0], s[1]))
        cid = m.get("command_id")
        if cid:
            cmd_events[cid] = cmd_events.get(cid, 0) + 1
        sid = m.get("saga_id")
        if isinstance(sid, str) and sid[:1] == "o" and sid[1:].isdigit() and int(sid[1:]) in orders:
            step = STEPS.index(m["saga_step"]) if m.get("saga_step") in STEPS else -1
            orders[int(sid[1:])]["eff"].append({
                "step": step, "comp": m.get("saga_phase") == "compensation", "effect": m.get("saga_effect", -1),
                "pos": pos, "cmd": cid or "", "type": t, "stream": stream})

    # 2a. every command id has one event (every shop command appends one)
    for cid, n in sorted(cmd_events.items()):
        if n != 1:
            problems.append("command %s has %d events" % (cid, n))
    tally = {"completed": 0, "compensated": 0, "skipped": 0, "submitted": 0}
    for i, x in orders.items():
        if not x["submitted"]:
            problems.append("order o%d was placed but never submitted" % i)
            continue
        tally["submitted"] += 1
        # 1. terminal
        done, comp = x["final"] == "SagaCompleted", x["final"] == "SagaCompensated"
        tally["completed"] += done
        tally["compensated"] += comp
        tally["skipped"] += x["skipped"]
        if not done and not comp:
            problems.append("saga o%d ended with %s" % (i, x["final"] or "no saga at all"))
        if done and kind_of(seed, i) in (DECLINED, NOWHERE, VOID_FAILS):
            problems.append("o%d completed although a failure was injected (kind %d)" % (i, kind_of(seed, i)))
        effs = x["eff"]
        # 2b. per (step, phase, effect) one command id
        seen = {}
        for f in effs:
            key = (f["step"], f["comp"], f["effect"])
            if key in seen:
                g = seen[key]
                problems.append("o%d: step %s %s effect %d ran twice (%s at %d, %s at %d)" % (
                    i, STEPS[f["step"]] if f["step"] >= 0 else "?", "compensation" if f["comp"] else "action",
                    f["effect"], g["cmd"], g["pos"], f["cmd"], f["pos"]))
            seen[key] = f
        # 3. compensations: newest step first, after every action, undoing exactly what took effect
        last_step, last_action, first_comp = 99, 0, None
        took, undone = {}, {}
        for f in effs:
            if f["step"] < 0 or not isinstance(f["effect"], int) or f["effect"] < 0:
                problems.append("o%d: an effect names no step: %r" % (i, f))
                continue
            k = (f["step"], f["effect"])
            if f["comp"]:
                undone[k] = undone.get(k, 0) + 1
                if f["step"] > last_step:
                    problems.append("o%d: compensation of %s after that of %s" % (i, STEPS[f["step"]], STEPS[last_step]))
                last_step = f["step"]
                first_comp = f["pos"] if first_comp is None else min(first_comp, f["pos"])
            else:
                took[k] = took.get(k, 0) + 1
                last_action = max(last_action, f["pos"])
        if first_comp is not None and first_comp < last_action:
            problems.append("o%d: a compensation (position %d) before the last action (%d)" % (i, first_comp, last_action))
        if comp:
            if not undone.get((0, 0)):
                problems.append("o%d: compensated, but the order was not cancelled" % i)
            # every product reserved is released once (compensation effects are numbered by what they
            # undo, not by the action's numbering, so they are matched by stream)
            reserved = [f["stream"] for f in effs if f["step"] == 1 and not f["comp"]]
            released = [f["stream"] for f in effs if f["step"] == 1 and f["comp"]]
            for st in reserved:
                if released.count(st) != 1:
                    problems.append("o%d: %s reserved, released %d times" % (i, st, released.count(st)))
            for st in released:
                if reserved.count(st) != 1:
                    problems.append("o%d: %s released, reserved %d times" % (i, st, reserved.count(st)))
            if took.get((2, 0)) and not undone.get((2, 0)) and not x["skipped"]:
                problems.append("o%d: the authorization was not voided" % i)
            if took.get((3, 0), 0) != undone.get((3, 0), 0):
                problems.append("o%d: shipment created %d, cancelled %d" % (i, took.get((3, 0), 0), undone.get((3, 0), 0)))
            if x["cancelled_ev"] != 1:
                problems.append("o%d: compensated with %d OrderCancelled" % (i, x["cancelled_ev"]))
        if done:
            if not took.get((1, 0)) or not took.get((4, 0)):
                problems.append("o%d: completed without its reservation and capture among the saga's effects" % i)
            for (st, _e) in undone:
                problems.append("o%d: completed, yet %s was compensated" % (i, STEPS[st]))
            if x["completed_ev"] != 1:
                problems.append("o%d: completed with %d OrderCompleted" % (i, x["completed_ev"]))
        # 5. money
        net = x["captured"] - x["refunded"]
        if net > 0 and not done:
            problems.append("o%d: %d cents captured for an order that is not completed" % (i, net))
        if done and (x["captures"] != 1 or net <= 0):
            problems.append("o%d: completed with %d captures" % (i, x["captures"]))
        if x["voided"] > 1 or x["ship_cancelled"] > 1:
            problems.append("o%d: voided %d times, shipment cancelled %d times" % (i, x["voided"], x["ship_cancelled"]))
    return problems, tally, orders


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
