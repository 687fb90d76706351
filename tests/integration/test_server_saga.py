#!/usr/bin/env python3
"""
test_server_saga.py -- sagas in the server and on the command line
(src/server/saga_host.c, routes_saga.c, metrics.c's saga families,
src/cli/cli_saga*.c, src/saga/appdir.c), driving the real binary
($EVSTORE_BIN) serving the shop of examples/shop/ with its order saga.

Orders are placed through /commands (the saga starts on OrderSubmitted) with
the shop's injected failures (examples/shop/README.md): card tok_declined is
declined, tok_void_fails cannot be voided (the compensation fails), the
address "nowhere" is served by no carrier.  The test plays the carrier
itself (ScheduleShipment with the saga's correlation id).

What is checked is what an operator relies on:
  - an order completes through every step; the instance shows its steps and
    a timeline whose events are the stream saga-order-{id};
  - listings by type and status, paging with next_after (every instance
    once), stuck_for (only unfinished ones, the oldest first);
  - pause / resume, abort, manual compensation that fails for good
    (compensation_failed), retry of it, skip of the void -> compensated;
  - errors: an unknown saga or type 404, an action on a finished or paused
    one 409 naming the state, bad parameters 400 naming the parameter;
  - /metrics: the saga families agree with the listing, valid Prometheus
    (promtool when installed);
  - settings from DIR/sagas/NAME.json (a short ship timeout compensates);
    a script that does not load stops the start naming the file; a server
    without sagas answers an empty listing and creates no DIR/sagas/;
  - the CLI: --url and -d (read-only beside the server) print the same;
    actions with -d after the server stopped (with --app-dir), and the
    next server carries on from them.

Standard library only; helpers shared with test_server.py.  Prints
"N passed, M failed" as its last line and exits non-zero on failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, ROOT, SLOW, TIMEOUT, Server  # noqa: E402

SHOP = os.path.join(ROOT, "examples", "shop")
JSON = {"Content-Type": "application/json"}
TERMINAL = ("completed", "compensated", "failed")


def q(s):
    return urllib.parse.quote(s, safe="")


def wait_until(fn, timeout=20.0, step=0.05, what="condition"):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class Result:
    def __init__(self, args, proc):
        self.args, self.code = args, proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def lines(self):
        return [json.loads(l) for l in self.out.splitlines() if l.strip()]

    def __repr__(self):
        return "evstore %s -> exit %s\nstdout: %s\nstderr: %s" % (" ".join(self.args), self.code, self.out[:2000],
                                                                  self.err[:2000])


def cli(*args):
    e = dict(os.environ)
    e.pop("EVSTORE_DIR", None)
    e.pop("EVSTORE_URL", None)
    p = subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=TIMEOUT)
    return Result(list(args), p)


def metric(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


class Shop:
    """A client of one server running the shop: orders, the carrier, the sagas."""

    def __init__(self, srv):
        self.srv = srv

    def cmd(self, ctype, body):
        st, _, b = self.srv.request("POST", "/commands/" + ctype, body=json.dumps(body), headers=JSON)
        assert st in (200, 201), (ctype, body, st, b)
        return b

    def restock(self, sku, n):
        self.cmd("Restock", {"aggregate_id": sku, "data": {"quantity": n}})

    def order(self, oid, card="tok_visa", address="1 Main St", sku="tea"):
        self.cmd("CreateOrder", {"aggregate_id": oid, "data": {"customer": "c-" + oid}})
        self.cmd("AddItem", {"aggregate_id": oid, "data": {"sku": sku, "quantity": 1, "unit_price": "4.10"}})
        self.cmd("SubmitOrder", {"aggregate_id": oid, "data": {"card": card, "address": address}})

    def saga(self, oid):
        st, _, b = self.srv.get("/sagas/order/" + q(oid))
        return b if st == 200 else None

    def waiting_for_carrier(self, oid):
        def ready():
            s = self.saga(oid)
            return s if s and s["status"] == "running" and s["steps"][3]["status"] == "waiting" else None
        return wait_until(ready, what="saga %s waiting for a carrier" % oid)

    def status_is(self, oid, *states):
        return wait_until(lambda: (lambda s: s if s and s["status"] in states else None)(self.saga(oid)),
                          what="saga %s %s" % (oid, "/".join(states)))

    def carrier(self, oid):
        corr = self.saga(oid)["correlation_id"]
        self.cmd("ScheduleShipment", {"aggregate_id": oid, "correlation_id": corr, "data": {"carrier": "post"}})

    def act(self, oid, action, **params):
        path = "/sagas/order/%s/%s" % (q(oid), action)
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return self.srv.request("POST", path)

    def list_all(self, path="/sagas", limit=None):
        out, after = [], None
        while True:
            p = path + ("&" if "?" in path else "?") + "limit=%d" % (limit or 1000)
            if after:
                p += "&after=" + q(after)
            st, _, b = self.srv.get(p)
            assert st == 200, (p, b)
            out += b["sagas"]
            after = b["next_after"]
            if not after:
                return out


class SagaServerTest(unittest.TestCase):
    """One server with the shop and its order saga; each test its own orders."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-saga-")
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--app-dir", SHOP, "--saga-workers", "2").start()
        cls.shop = Shop(cls.srv)
        for sku in ("tea", "mug"):
            cls.shop.restock(sku, 1000)

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def assertError(self, resp, status, *needles):
        st, _, body = resp
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertIn("error", body)
        for n in needles:
            self.assertIn(n, body["error"])
        return body

    # ------------------------------------------------------------ the flow

    def test_order_completes_and_its_history_is_its_stream(self):
        shop, s = self.shop, self.srv
        shop.order("c1")
        w = shop.waiting_for_carrier("c1")
        self.assertEqual((w["step"]["name"], w["step"]["attempt"]), ("ship", 1))
        self.assertEqual([st["status"] for st in w["steps"]], ["done", "done", "done", "waiting", "idle", "idle"])
        self.assertIsNotNone(w["next_due"])  # the ship step's deadline
        shop.carrier("c1")
        done = shop.status_is("c1", *TERMINAL)
        self.assertEqual(done["status"], "completed", done)
        self.assertEqual([st["status"] for st in done["steps"]], ["done"] * 6)
        self.assertIsNone(done["step"])
        # the timeline is the saga's stream, event for event, in order and with times
        st, _, stream = s.get("/streams/saga-order-c1")
        self.assertEqual(st, 200, stream)
        tl = done["timeline"]
        self.assertEqual([(t["version"], t["type"]) for t in tl],
                         [(e["stream_position"], e["event_type"]) for e in stream["events"]])
        self.assertEqual((tl[0]["type"], tl[-1]["type"]), ("SagaStarted", "SagaCompleted"))
        self.assertEqual([t["at"] for t in tl], sorted(t["at"] for t in tl))
        self.assertEqual(done["version"], len(tl))
        # what the saga did, from the aggregates
        self.assertEqual(s.get("/aggregates/order/c1")[2]["state"]["status"], "completed")
        self.assertGreater(s.get("/aggregates/payment/c1")[2]["state"]["captured"], 0)
        # every command it sent carries its correlation id
        pay = s.get("/streams/payment-c1")[2]["events"]
        self.assertTrue(pay and all(e["correlation_id"] == done["correlation_id"] for e in pay), pay)

    def test_declined_card_compensates_in_reverse(self):
        shop = self.shop
        shop.order("d1", card="tok_declined")
        done = shop.status_is("d1", *TERMINAL)
        self.assertEqual(done["status"], "compensated", done)
        self.assertIn("card declined", done["last_error"])
        types = [t["type"] for t in done["timeline"]]
        self.assertIn("SagaCompensating", types)
        self.assertEqual(types[-1], "SagaCompensated")
        self.assertEqual(self.srv.get("/aggregates/order/d1")[2]["state"]["status"], "cancelled")

    # ---------------------------------------------------------- operating

    def test_pause_resume_abort(self):
        shop = self.shop
        shop.order("p1")
        shop.waiting_for_carrier("p1")
        st, _, b = shop.act("p1", "pause", reason="checking the address")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["status"], b["paused_from"]), ("paused", "running"))
        self.assertEqual(b["timeline"][-1]["type"], "SagaPaused")
        self.assertEqual(b["timeline"][-1]["reason"], "checking the address")
        wait_until(lambda: any(x["id"] == "p1" for x in shop.list_all("/sagas?status=paused")), what="p1 listed paused")
        self.assertError(shop.act("p1", "pause"), 409, "is paused")
        self.assertError(shop.act("p1", "retry"), 409, "is paused")
        st, _, b = shop.act("p1", "resume")
        self.assertEqual((st, b["status"], b["step"]["name"]), (200, "running", "ship"), b)
        self.assertError(shop.act("p1", "resume"), 409, "is running")
        # a skip names a step of the current group only
        self.assertError(shop.act("p1", "skip", step="capture"), 409, "step capture is not a current step")
        st, _, b = shop.act("p1", "abort", reason="customer left")
        self.assertEqual((st, b["status"]), (200, "failed"), b)
        self.assertEqual(b["timeline"][-1]["reason"], "customer left")
        for action in ("abort", "pause", "resume", "retry", "skip", "compensate"):
            self.assertError(shop.act("p1", action), 409, "is failed")
        # aborted: nothing undone, the shipment still waits for nobody
        self.assertEqual(self.srv.get("/aggregates/order/p1")[2]["state"]["status"], "submitted")

    def test_manual_compensation_fails_then_retry_then_skip(self):
        shop = self.shop
        shop.order("v1", card="tok_void_fails")
        shop.waiting_for_carrier("v1")
        st, _, b = shop.act("v1", "compensate", reason="customer called")
        self.assertEqual((st, b["status"]), (200, "compensating"), b)
        # the void is refused three times: an operator's turn
        cf = shop.status_is("v1", "compensation_failed", *TERMINAL)
        self.assertEqual(cf["status"], "compensation_failed", cf)
        auth = cf["steps"][2]
        self.assertEqual((auth["name"], auth["compensation"]["status"], auth["compensation"]["attempt"]),
                         ("authorize", "failed", 3), auth)
        self.assertEqual(cf["step"]["name"], "authorize")
        self.assertTrue(cf["last_error"], cf)
        listed = shop.list_all("/sagas/order?status=compensation_failed")
        self.assertIn("v1", [x["id"] for x in listed])
        # retry: a fresh budget, refused three more times
        st, _, b = shop.act("v1", "retry")
        self.assertEqual(st, 200, b)
        self.assertEqual(b["timeline"][-1]["type"], "SagaRetryRequested")
        again = wait_until(lambda: (lambda s: s if s["status"] == "compensation_failed" and
                                    s["version"] > b["version"] else None)(shop.saga("v1")),
                           what="v1 failed its retried compensation")
        self.assertEqual(again["steps"][2]["compensation"]["attempt"], 6)  # attempts go on counting
        self.assertGreater(len(again["timeline"]), len(cf["timeline"]))
        # the void was done by hand: skip it, the rest is undone
        st, _, b = shop.act("v1", "skip", reason="voided at the gateway")
        self.assertEqual(st, 200, b)
        done = shop.status_is("v1", *TERMINAL)
        self.assertEqual(done["status"], "compensated", done)
        self.assertEqual(self.srv.get("/aggregates/order/v1")[2]["state"]["status"], "cancelled")
        self.assertEqual(self.srv.get("/aggregates/shipment/v1")[2]["state"]["status"], "cancelled")

    # ------------------------------------------------------------ listings

    def test_listing_paging_and_stuck(self):
        shop = self.shop
        for i in range(5):
            shop.order("l%d" % i)
        for i in range(5):
            shop.waiting_for_carrier("l%d" % i)
        full = shop.list_all()
        ids = [x["id"] for x in full]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue({"l%d" % i for i in range(5)} <= set(ids))
        # one at a time, every instance exactly once, in the same order
        paged = shop.list_all("/sagas", limit=1)
        self.assertEqual([x["id"] for x in paged], ids)
        self.assertEqual(shop.list_all("/sagas/order"), shop.list_all("/sagas?type=order"))
        self.assertEqual(shop.list_all("/sagas?type=nosuch"), [])
        # by type, then status, then the oldest transition first
        key = [("running compensating completed compensated failed compensation_failed paused".split().index(x["status"]),
                x["updated_at"]) for x in full]
        self.assertEqual(key, sorted(key))
        running = shop.list_all("/sagas?status=running")
        self.assertTrue(running and all(x["status"] == "running" for x in running))
        self.assertEqual(shop.list_all("/sagas?stuck_for=1h"), [])
        time.sleep(0.3)
        stuck = shop.list_all("/sagas?stuck_for=200ms")
        self.assertTrue({"l%d" % i for i in range(5)} <= {x["id"] for x in stuck})
        self.assertFalse([x for x in stuck if x["status"] in TERMINAL], stuck)
        for i in range(5):
            shop.carrier("l%d" % i)
        for i in range(5):
            self.assertEqual(shop.status_is("l%d" % i, *TERMINAL)["status"], "completed")

    def test_errors(self):
        shop, s = self.shop, self.srv
        self.assertError(s.get("/sagas/order/nope"), 404, "no saga order/nope")
        self.assertError(shop.act("nope", "pause"), 404, "no saga order/nope")
        self.assertError(s.request("POST", "/sagas/nosuch/x/abort"), 404, "no saga type nosuch")
        self.assertError(s.get("/sagas/bad-type/x"), 400, "saga type", "letters, digits")
        self.assertError(s.get("/sagas/order/" + "x" * 161), 422, "saga id is 161 bytes")
        for path, param in (("/sagas?status=bogus", "status"), ("/sagas?stuck_for=soon", "stuck_for"),
                            ("/sagas?stuck_for=-5s", "stuck_for"), ("/sagas?stuck_for=0", "stuck_for"),
                            ("/sagas?limit=0", "limit"), ("/sagas?limit=1001", "limit"), ("/sagas?type=a-b", "type"),
                            ("/sagas?after=zz", "after"), ("/sagas?colour=red", "colour"),
                            ("/sagas/order?type=order", "type"), ("/sagas/order/x?verbose=1", "verbose")):
            b = self.assertError(s.get(path), 400, param)
            self.assertEqual(b["detail"]["parameter"], param, (path, b))
        for action, param in (("resume", "reason"), ("retry", "step"), ("pause", "step")):
            b = self.assertError(shop.act("nope", action, **{param: "x"}), 400, param)
            self.assertEqual(b["detail"]["parameter"], param)
        self.assertError(s.get("/sagas/order/x/pause"), 405)
        st, hd, _ = s.request("DELETE", "/sagas/order/x")
        self.assertEqual((st, hd.get("allow")), (405, "GET, HEAD"))

    # ------------------------------------------------------------- metrics

    def test_metrics_agree_with_the_listing(self):
        shop, s = self.shop, self.srv
        shop.order("m1")
        shop.order("m2", card="tok_declined")
        shop.waiting_for_carrier("m1")
        shop.status_is("m2", *TERMINAL)
        # quiet: no instance is between two transitions (the other tests are done with theirs or waiting)
        def settled():
            every = shop.list_all()
            text = s.get("/metrics")[2]
            counts = {}
            for x in every:
                counts[x["status"]] = counts.get(x["status"], 0) + 1
            states = "running compensating completed compensated failed compensation_failed paused".split()
            seen = {st: metric(text, "evstore_saga_instances", saga_type="order", status=st) for st in states}
            return (every, text) if all(seen[st] == counts.get(st, 0) for st in states) else None
        every, text = wait_until(settled, what="metrics matching the listing")
        self.assertEqual(metric(text, "evstore_sagas_started_total", saga_type="order"), len(every))
        for st in ("completed", "compensated", "failed"):
            self.assertGreaterEqual(metric(text, "evstore_sagas_%s_total" % st, saga_type="order"),
                                    len([x for x in every if x["status"] == st]))
        self.assertGreaterEqual(metric(text, "evstore_sagas_compensated_total", saga_type="order"), 1)
        self.assertGreaterEqual(metric(text, "evstore_saga_timers_pending", saga_type="order"), 1)  # m1's deadline
        count = metric(text, "evstore_saga_step_duration_seconds_count", saga_type="order", step="reserve")
        inf = metric(text, "evstore_saga_step_duration_seconds_bucket", saga_type="order", step="reserve", le="+Inf")
        self.assertGreaterEqual(count, 2)
        self.assertEqual(count, inf)
        self.assertIn("# TYPE evstore_saga_step_duration_seconds histogram", text)
        # every histogram has _bucket, _sum and _count (promtool does not insist on _sum; Prometheus does)
        hists = re.findall(r"^# TYPE (evstore_saga_\S+) histogram$", text, re.M)
        self.assertIn("evstore_saga_timer_lateness_seconds", hists)
        for h in hists:
            for part in ("_bucket", "_sum", "_count"):
                self.assertRegex(text, r"(?m)^%s%s[{ ]" % (h, part), "%s has no %s" % (h, part))
        self.assertGreaterEqual(metric(text, "evstore_saga_timer_lateness_seconds_sum"), 0)
        self.assertIsNotNone(metric(text, "evstore_saga_dispatcher_lag_events"))
        self.assertGreater(metric(text, "evstore_http_requests_total", route="sagas", status="200"), 0)
        # buckets cumulative per series
        series = {}
        for m in re.finditer(r'^evstore_saga_step_duration_seconds_bucket\{saga_type="order",step="([^"]+)",le="[^"]+"\} (\S+)$',
                             text, re.M):
            series.setdefault(m.group(1), []).append(float(m.group(2)))
        self.assertTrue(series)
        for v in series.values():
            self.assertEqual(v, sorted(v))
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        else:
            print("note: promtool not installed; checked with the parser above only")
        shop.carrier("m1")
        shop.status_is("m1", *TERMINAL)

    # ---------------------------------------------------------------- CLI

    def test_cli_remote_and_read_only_local(self):
        shop = self.shop
        url = "http://127.0.0.1:%d" % self.srv.port
        data = os.path.join(self.tmp, "data")
        shop.order("k0", card="tok_declined")
        shop.order("k1")
        shop.waiting_for_carrier("k1")
        shop.status_is("k0", *TERMINAL)
        r = cli("saga", "list", "--url", url, "order", "--status", "running")
        self.assertEqual(r.code, 0, r)
        self.assertIn("k1", [x["id"] for x in r.lines()])
        self.assertEqual(r.lines(), shop.list_all("/sagas/order?status=running"))
        # -d beside the server: the same listing (the index the server keeps), the same instance
        loc = wait_until(lambda: (lambda r: r if r.code == 0 and r.lines() == shop.list_all("/sagas/order?status=running")
                                  else None)(cli("saga", "list", "-d", data, "order", "--status", "running")),
                         what="the local listing to match the server's")
        self.assertIn("k1", [x["id"] for x in loc.lines()])
        r = cli("saga", "list", "--url", url, "--limit", "1")
        self.assertEqual((r.code, len(r.lines())), (0, 1), r)
        r = cli("saga", "list", "--url", url)
        self.assertEqual(r.lines(), shop.list_all())
        self.assertGreaterEqual(len(r.lines()), 2)
        r = cli("saga", "show", "-d", data, "order", "k1")
        self.assertEqual((r.code, r.lines()[0]["status"], r.lines()[0]["step"]["name"]), (0, "running", "ship"), r)
        r = cli("saga", "pause", "--url", url, "order", "k1", "--reason", "from the cli")
        self.assertEqual((r.code, r.lines()[0]["status"]), (0, "paused"), r)
        r = cli("saga", "pause", "--url", url, "order", "k1")
        self.assertEqual(r.code, 3, r)
        self.assertIn("evstore: saga order/k1 is paused", r.err)
        r = cli("saga", "resume", "-d", data, "order", "k1")  # the server holds the store: it names the --url
        self.assertEqual(r.code, 5, r)
        self.assertIn("--url", r.err)
        r = cli("saga", "resume", "--url", url, "order", "k1")
        self.assertEqual((r.code, r.lines()[0]["status"]), (0, "running"), r)
        r = cli("saga", "show", "--url", url, "order", "nope")
        self.assertEqual(r.code, 2, r)
        r = cli("saga", "show", "-d", data, "order", "nope")
        self.assertEqual(r.code, 2, r)
        r = cli("saga", "list", "--url", url, "--status", "bogus")
        self.assertEqual(r.code, 1, r)
        r = cli("saga", "list", "--url", url, "--stuck-for", "soon")
        self.assertEqual(r.code, 1, r)
        for args in (("saga",), ("saga", "fly", "--url", url), ("saga", "show", "--url", url, "order"),
                     ("saga", "pause", "--url", url, "order", "k1", "--step", "ship"),
                     ("saga", "resume", "--url", url, "order", "k1", "--reason", "x"),
                     ("saga", "show", "--url", url, "--app-dir", SHOP, "order", "k1"),
                     ("saga", "show", "--url", url, "order", "k1", "--status", "running")):
            r = cli(*args)
            self.assertEqual(r.code, 1, r)
            self.assertTrue(r.err.startswith("evstore: "), r)
        r = cli("saga", "--help")
        self.assertEqual(r.code, 0)
        self.assertIn("Exit status", r.out)
        shop.carrier("k1")
        self.assertEqual(shop.status_is("k1", *TERMINAL)["status"], "completed")
        r = cli("saga", "abort", "--url", url, "order", "k1")
        self.assertEqual(r.code, 3, r)


class SagaLifecycleTest(unittest.TestCase):
    """Servers of their own: settings files, start failures, no sagas, local actions between runs."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-saga-life-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def app_dir(self, settings=None, script=None):
        d = os.path.join(self.tmp, "app")
        os.makedirs(os.path.join(d, "sagas"))
        for f in os.listdir(SHOP):
            if f.endswith(".lua") or f == "queries.json":
                shutil.copy(os.path.join(SHOP, f), d)
        if script is None:
            shutil.copy(os.path.join(SHOP, "sagas", "order_saga.lua"), os.path.join(d, "sagas"))
        else:
            with open(os.path.join(d, "sagas", "order_saga.lua"), "w") as f:
                f.write(script)
        if settings is not None:
            with open(os.path.join(d, "sagas", "order_saga.json"), "w") as f:
                f.write(settings)
        return d

    def test_settings_file_short_ship_timeout_compensates(self):
        srv = Server(os.path.join(self.tmp, "data"), "--app-dir",
                     self.app_dir(settings='{"ship_timeout": 0.3, "retry_delay": 0.05}')).start()
        try:
            shop = Shop(srv)
            shop.restock("tea", 5)
            shop.order("t1", address="nowhere")
            done = shop.status_is("t1", *TERMINAL)
            self.assertEqual(done["status"], "compensated", done)
            self.assertIn("step ship failed: no answer within 0.300 s", done["last_error"])
            self.assertEqual(srv.get("/aggregates/shipment/t1")[2]["state"]["status"], "cancelled")
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)
        self.assertIn("sagas: 1 type from the app directory", srv.err)

    def test_bad_definitions_stop_the_start(self):
        for settings, script, needle in (("{not json", None, "order_saga.json"),
                                         ("[1]", None, "order_saga.json"),
                                         (None, "return {", "order_saga.lua")):
            shutil.rmtree(os.path.join(self.tmp, "app"), ignore_errors=True)
            app = self.app_dir(settings=settings, script=script)
            p = subprocess.run([BIN, "serve", "-d", os.path.join(self.tmp, "data"), "--listen", "127.0.0.1:0",
                                "--app-dir", app], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn(needle, p.stderr.decode())
        p = subprocess.run([BIN, "serve", "-d", os.path.join(self.tmp, "data"), "--saga-workers", "65"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 1, p.stderr)

    def test_no_sagas_no_engine(self):
        data = os.path.join(self.tmp, "data")
        srv = Server(data).start()
        try:
            st, _, b = srv.get("/sagas")
            self.assertEqual((st, b), (200, {"sagas": [], "next_after": None}))
            self.assertEqual(srv.get("/sagas/order/x")[0], 404)
            self.assertEqual(srv.request("POST", "/sagas/order/x/abort")[0], 404)
            self.assertNotIn("evstore_sagas_started_total", srv.get("/metrics")[2])
            r = cli("saga", "list", "-d", data)
            self.assertEqual((r.code, r.out), (0, ""), r)
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)
        self.assertFalse(os.path.exists(os.path.join(data, "sagas")))

    def test_local_actions_between_runs(self):
        data = os.path.join(self.tmp, "data")
        app = self.app_dir()
        srv = Server(data, "--app-dir", app).start()
        try:
            shop = Shop(srv)
            shop.restock("tea", 5)
            shop.order("r1")
            shop.waiting_for_carrier("r1")
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)
        # no server: the index as the server left it, and actions with the app directory's definitions
        r = cli("saga", "list", "-d", data)
        self.assertEqual([(x["id"], x["status"]) for x in r.lines()], [("r1", "running")], r)
        r = cli("saga", "pause", "-d", data, "order", "r1")
        self.assertEqual(r.code, 2, r)
        self.assertIn("--app-dir", r.err)
        r = cli("saga", "pause", "-d", data, "--app-dir", app, "order", "r1", "--reason", "maintenance")
        self.assertEqual((r.code, r.lines()[0]["status"]), (0, "paused"), r)
        r = cli("saga", "list", "-d", data, "--status", "paused")
        self.assertEqual([x["id"] for x in r.lines()], ["r1"], r)
        r = cli("saga", "resume", "-d", data, "--app-dir", app, "order", "r1")
        self.assertEqual((r.code, r.lines()[0]["status"]), (0, "running"), r)
        self.assertEqual([t["type"] for t in r.lines()[0]["timeline"]][-2:], ["SagaPaused", "SagaResumed"])
        # the next server carries on: the carrier answers, the saga completes
        srv = Server(data, "--app-dir", app).start()
        try:
            shop = Shop(srv)
            shop.carrier("r1")
            self.assertEqual(shop.status_is("r1", *TERMINAL)["status"], "completed")
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
