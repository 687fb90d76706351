#!/usr/bin/env python3
"""
test_server_bus.py -- integration tests of the event-driven routes of
`evstore serve` (src/server/routes_*.c, consumers.c): Lua projections run by the
server, consumer records, dead-letter queues, competing-consumer groups over
long-poll HTTP, and their /metrics series.  Drives the real binary (path in
$EVSTORE_BIN) with a store in a temporary directory.

What is checked is what a client relies on: every route and its statuses;
bad input (bad Lua, sandbox escapes, huge sources, unknown names, bad
numbers, malformed JSON) answered with a clear error and nothing changed; a
projection that follows concurrent live appends ends with exactly the state
a fresh replay computes (and the one computed here in Python); a failing
Lua handler parks the event, a retry after replacing the script releases it;
state and DLQ survive a restart and a kill -9 (exactly once); groups deliver
each event to one consumer at a time, redeliver after the ack timeout and
refuse the late ack; a long-poll is answered when an event arrives and when
the server stops; /metrics carries the per-consumer series and stays valid
Prometheus text.  It also measures projection lag (append acknowledged ->
state visible) at 1,000 events/s and prints p50/p99.

Standard library only; helpers shared with test_server.py.  Prints
"N passed, M failed" as its last line and exits non-zero on failure.
"""
import os
import json
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import SLOW, TIMEOUT, Server, WSClient, check_prometheus_text  # noqa: E402

LUA = {"Content-Type": "text/x-lua"}
JSON = {"Content-Type": "application/json"}


def counter_script(prefix, extra=""):
    """A non-partitioned projection counting OrderPlaced events of streams prefix*."""
    return """
return {
  filter = { stream_prefix = "%s" },
  partition = "none",
  init = function() return { count = 0, total = 0 } end,
  handlers = {
    OrderPlaced = function(s, e) s.count = s.count + 1; s.total = s.total + e.data.total end,
    %s
  },
}
""" % (prefix, extra)


def cart_script(prefix):
    """Partitioned by stream: items per cart and the stream positions seen, in order."""
    return """
return {
  filter = { stream_prefix = "%s", event_types = {"ItemAdded", "ItemRemoved"} },
  init = function() return { items = 0, seq = {} } end,
  handlers = {
    ItemAdded = function(s, e) s.items = s.items + e.data.n; s.seq[#s.seq + 1] = e.stream_position end,
    ItemRemoved = function(s, e) s.items = s.items - e.data.n; s.seq[#s.seq + 1] = e.stream_position end,
  },
}
""" % prefix


def failing_script(prefix, fixed=False):
    poison = ("s.fixed = s.fixed + 1" if fixed else 'error("poison " .. e.data.id)')
    return """
return {
  filter = { stream_prefix = "%s" },
  partition = "none",
  init = function() return { ok = 0, fixed = 0 } end,
  handlers = {
    Good = function(s, e) s.ok = s.ok + 1 end,
    Poison = function(s, e) %s end,
  },
}
""" % (prefix, poison)


def wait_until(fn, timeout=10.0, step=0.02, what="condition"):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def q(s):
    return urllib.parse.quote(s, safe="")


class BusBase(unittest.TestCase):
    srv = None

    def put_lua(self, name, src, conn=None):
        return self.srv.request("PUT", "/projections/" + q(name), body=src, headers=LUA, conn=conn)

    def append(self, stream, events, conn=None):
        st, _, b = self.srv.request("POST", "/streams/" + q(stream), body=events, headers=JSON, conn=conn)
        self.assertIn(st, (200, 201), b)
        return b

    def status(self, name):
        st, _, b = self.srv.get("/projections/" + q(name))
        self.assertEqual(st, 200, b)
        return b

    def caught_up(self, name):
        """Wait until the projection has processed everything in the log."""
        def done():
            head = self.srv.head()
            s = self.status(name)
            return s if s["checkpoint"] >= head and s["rebuild"] is None else None
        return wait_until(done, what="projection %s to catch up" % name)

    def state(self, name, part=None):
        path = "/projections/%s/state" % q(name) + ("/" + q(part) if part is not None else "")
        st, _, b = self.srv.get(path)
        self.assertEqual(st, 200, b)
        return b

    def assertError(self, resp, status, *needles):
        st, _, body = resp
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertIn("error", body)
        self.assertIn("detail", body)
        for n in needles:
            self.assertIn(n, body["error"])
        return body

    def refused_past_head(self, resp, pos):
        """A start past head + 1 (it would skip what is appended up to there): 422 naming both."""
        return self.assertError(resp, 422, "position %d lies past the store's head %d" % (pos, self.srv.head()))


class SharedServer(BusBase):
    """One server (durability batch) for the whole class; each test uses names of its own."""

    TMP_PREFIX = "evs-bus-"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix=cls.TMP_PREFIX)
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--durability", "batch").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def group(self, name, **settings):
        st, _, b = self.srv.request("PUT", "/groups/" + q(name), body=settings)
        self.assertIn(st, (200, 201), b)
        return b


class ProjectionTest(SharedServer):
    """Tests sharing one server; each uses its own stream prefix and names."""

    TMP_PREFIX = "evs-bus-"

    def parked(self, name, goods, poison_id):
        """Projection `name` (failing_script) over `goods` Good events in name-1, then one Poison in name-2,
        waited for until it is parked."""
        self.assertEqual(self.put_lua(name, failing_script(name + "-"))[0], 201)
        self.append(name + "-1", [{"event_type": "Good", "data": {}}] * goods)
        self.append(name + "-2", {"event_type": "Poison", "data": {"id": poison_id}})
        wait_until(lambda: self.status(name)["dlq_depth"] == 1, what="parked")

    # ------------------------------------------------------- lifecycle

    def test_create_get_list_replace_delete(self):
        s = self.srv
        st, _, b = self.put_lua("life", counter_script("life-"))
        self.assertEqual(st, 201, b)
        self.assertEqual((b["name"], b["kind"], b["status"], b["running"]), ("life", "projection", "active", True))
        for k in ("checkpoint", "lag_events", "lag_ms", "processed", "failed", "parked", "dlq_depth",
                  "rebuild", "generation", "last_error", "filter"):
            self.assertIn(k, b)
        self.assertEqual(b["filter"], {"stream_prefix": "life-"})
        self.append("life-1", [{"event_type": "OrderPlaced", "data": {"total": 5}},
                               {"event_type": "OrderPlaced", "data": {"total": 7}}])
        self.caught_up("life")
        self.assertEqual(self.state("life"), {"count": 2, "total": 12})
        st, _, b = s.get("/projections?limit=1000")
        self.assertEqual(st, 200, b)
        self.assertIn("life", [p["name"] for p in b["projections"]])
        self.assertTrue(all(p["kind"] == "projection" for p in b["projections"]))
        # replace: keeps checkpoint and state, runs the new script from there
        st, _, b = self.put_lua("life", counter_script("life-").replace("s.count + 1", "s.count + 100"))
        self.assertEqual(st, 200, b)
        self.append("life-1", {"event_type": "OrderPlaced", "data": {"total": 1}})
        self.caught_up("life")
        self.assertEqual(self.state("life"), {"count": 102, "total": 13})
        # HEAD answers like GET
        st, _, _ = s.request("HEAD", "/projections/life")
        self.assertEqual(st, 200)
        st, _, b = s.request("DELETE", "/projections/life")
        self.assertEqual((st, b), (200, {"deleted": "life", "kind": "projection"}))
        for path in ("/projections/life", "/projections/life/state", "/projections/life/partitions",
                     "/subscriptions/life", "/subscriptions/life/dlq"):
            self.assertError(s.get(path), 404, "life")
        self.assertError(s.request("DELETE", "/projections/life"), 404)
        self.assertError(s.request("POST", "/projections/life/pause"), 404)

    def test_json_body_and_text_plain(self):
        s = self.srv
        st, _, b = s.request("POST", "/projections/viajson", body={"source": counter_script("vj-")})
        self.assertEqual(st, 201, b)
        st, _, b = s.request("PUT", "/projections/viaplain", body=counter_script("vp-"),
                             headers={"Content-Type": "text/plain; charset=utf-8"})
        self.assertEqual(st, 201, b)
        self.append("vj-1", {"event_type": "OrderPlaced", "data": {"total": 3}})
        self.caught_up("viajson")
        self.assertEqual(self.state("viajson"), {"count": 1, "total": 3})
        for n in ("viajson", "viaplain"):
            self.assertEqual(s.request("DELETE", "/projections/" + n)[0], 200)

    def test_partitions_state_and_paging(self):
        s = self.srv
        self.assertEqual(self.put_lua("carts", cart_script("cart-"))[0], 201)
        for i in range(5):
            self.append("cart-%d" % i, [{"event_type": "ItemAdded", "data": {"n": i + 1}},
                                        {"event_type": "Other", "data": {}},
                                        {"event_type": "ItemRemoved", "data": {"n": 1}}])
        self.caught_up("carts")
        self.assertEqual(self.state("carts", "cart-3"), {"items": 3, "seq": [1, 3]})
        names, after = [], None
        while True:
            path = "/projections/carts/partitions?limit=2" + ("&after=" + q(after) if after else "")
            st, _, b = s.get(path)
            self.assertEqual(st, 200, b)
            names += b["partitions"]
            if b["next_after"] is None:
                break
            self.assertEqual(b["next_after"], b["partitions"][-1])
            after = b["next_after"]
        self.assertEqual(names, ["cart-%d" % i for i in range(5)])
        self.assertError(s.get("/projections/carts/state/cart-9"), 404, "cart-9")
        self.assertError(s.get("/projections/carts/state"), 404, "partitioned")
        # a partition name with a slash, percent-encoded
        self.append("cart-a/b", {"event_type": "ItemAdded", "data": {"n": 2}})
        self.caught_up("carts")
        self.assertEqual(self.state("carts", "cart-a/b"), {"items": 2, "seq": [1]})

    def test_pause_resume_rebuild_reset(self):
        s = self.srv
        self.assertEqual(self.put_lua("ctl", counter_script("ctl-"))[0], 201)
        first = self.append("ctl-1", [{"event_type": "OrderPlaced", "data": {"total": 1}}] * 3)
        self.caught_up("ctl")
        st, _, b = s.request("POST", "/projections/ctl/pause")
        self.assertEqual((st, b["status"]), (200, "paused"))
        self.append("ctl-1", {"event_type": "OrderPlaced", "data": {"total": 1}})
        time.sleep(0.4)
        self.assertEqual(self.state("ctl")["count"], 3)
        self.assertEqual(self.status("ctl")["status"], "paused")
        st, _, b = s.request("POST", "/projections/ctl/resume")
        self.assertEqual((st, b["status"]), (200, "active"))
        self.caught_up("ctl")
        self.assertEqual(self.state("ctl")["count"], 4)
        gen = self.status("ctl")["generation"]
        # rebuild: recomputed into a fresh copy, same result, generation bumps
        st, _, b = s.request("POST", "/projections/ctl/rebuild")
        self.assertEqual(st, 200, b)
        wait_until(lambda: self.status("ctl")["generation"] > gen, what="rebuild swap")
        self.caught_up("ctl")
        self.assertEqual(self.state("ctl"), {"count": 4, "total": 4})
        # reset: start over from a position (the 2nd event of the first append)
        st, _, b = s.request("POST", "/projections/ctl/reset?to=%d" % (first["first_global_position"] + 1))
        self.assertEqual(st, 200, b)
        wait_until(lambda: self.state("ctl")["count"] == 3, what="reset replay")
        st, _, b = s.request("POST", "/projections/ctl/reset?to=now")
        self.assertEqual(st, 200, b)
        # nothing applied since "now": no state yet, until the next event
        wait_until(lambda: s.get("/projections/ctl/state")[0] == 404, what="reset to now")
        self.append("ctl-2", {"event_type": "OrderPlaced", "data": {"total": 9}})
        wait_until(lambda: s.get("/projections/ctl/state")[2] == {"count": 1, "total": 9}, what="after now")
        self.assertError(s.request("POST", "/projections/ctl/reset?to=0"), 400, "to")
        self.assertError(s.request("POST", "/projections/ctl/rebuild?from=-1"), 400, "from")
        self.assertError(s.request("POST", "/projections/ctl/reset?to=x"), 400, "to")

    def test_positions_past_the_head_are_refused_and_change_nothing(self):
        s = self.srv
        self.parked("far", 2, "p")
        before, state = self.caught_up("far"), self.state("far")
        past = s.head() + 2
        for path in ("/projections/far/rebuild?from=%d", "/projections/far/reset?to=%d",
                     "/subscriptions/far/reset?to=%d"):
            self.refused_past_head(s.request("POST", path % past), past)
        after = self.status("far")
        for k in ("checkpoint", "generation", "rebuild", "dlq_depth", "processed", "status"):
            self.assertEqual(after[k], before[k], k)
        self.assertEqual(self.state("far"), state)
        # what comes next is applied, not skipped
        self.append("far-1", {"event_type": "Good", "data": {}})
        self.caught_up("far")
        self.assertEqual(self.state("far")["ok"], state["ok"] + 1)
        # head + 1 is "after everything stored": accepted
        st, _, b = s.request("POST", "/projections/far/rebuild?from=%d" % (s.head() + 1))
        self.assertEqual(st, 200, b)

    # ----------------------------------------------------------- bad input

    def test_bad_lua_is_422_and_nothing_created(self):
        s = self.srv
        cases = [
            ("return {", "does not compile"),
            ("error('at load')", "at load"),
            ("return 42", "table"),
            ("os.execute('true') return {}", ""),
            ("io.open('/etc/passwd') return {}", ""),
            ("require('os') return {}", ""),
            ("while true do end", ""),
            # a misspelt filter key: refused, not a projection of every event
            ("return {filter={event_type='A'}, handlers={}}", "unknown key 'event_type'"),
        ]
        for src, needle in cases:
            b = self.assertError(self.put_lua("bad", src), 422, needle)
            self.assertEqual(b["detail"], {"code": "EINVAL"}, src)
        self.assertError(s.get("/projections/bad"), 404)
        # a bad replacement leaves the running script in place
        self.assertEqual(self.put_lua("keep", counter_script("keep-"))[0], 201)
        self.assertError(self.put_lua("keep", "return {"), 422, "compile")
        self.append("keep-1", {"event_type": "OrderPlaced", "data": {"total": 2}})
        self.caught_up("keep")
        self.assertEqual(self.state("keep"), {"count": 1, "total": 2})
        self.assertTrue(self.status("keep")["running"])

    def test_source_limits_types_and_encoding(self):
        s = self.srv
        big = ("-- " + "x" * (1 << 20) + "\nreturn {}").encode()
        # declared length over 1 MiB: refused before the body is read
        st, body = s.raw(b"PUT /projections/huge HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-lua\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(big) + big[:1000])
        self.assertEqual(st, 413, body)
        self.assertEqual(json.loads(body)["detail"], {"length": len(big), "limit": 1 << 20})
        # chunked upload growing past it
        chunks = b"".join(b"%x\r\n" % len(big[i:i + 65536]) + big[i:i + 65536] + b"\r\n"
                          for i in range(0, len(big), 65536)) + b"0\r\n\r\n"
        st, body = s.raw(b"PUT /projections/huge HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-lua\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
        self.assertEqual(st, 413, body)
        # as JSON: the body fits its own cap, the decoded source does not
        b = self.assertError(s.request("POST", "/projections/huge", body={"source": big.decode()}), 413, "Lua source")
        self.assertEqual(b["detail"]["limit"], 1 << 20)
        # just under the cap is fine
        ok = counter_script("huge-") + "-- " + "y" * ((1 << 20) - len(counter_script("huge-")) - 3)
        self.assertEqual(len(ok.encode()), 1 << 20)
        self.assertEqual(self.put_lua("huge", ok)[0], 201)
        self.assertEqual(s.request("DELETE", "/projections/huge")[0], 200)
        self.assertError(s.request("PUT", "/projections/x", body="return {}",
                                   headers={"Content-Type": "application/xml"}), 415, "text/x-lua")
        self.assertError(s.request("PUT", "/projections/x", body="return {}"), 415)
        b = self.assertError(s.request("PUT", "/projections/x", body='{"source": "return {}"',
                                       headers=JSON), 400, "malformed JSON", "line 1")
        self.assertEqual(set(b["detail"]), {"line", "column", "offset"})
        self.assertError(s.request("PUT", "/projections/x", body='{"src": "x"}', headers=JSON), 422, "source")
        self.assertError(s.request("PUT", "/projections/x", body=b"return {}\x00", headers=LUA), 422, "NUL")
        self.assertError(s.request("POST", "/projections/x", body={"source": "a\0b"}), 422,
                         "the Lua source contains a NUL byte")
        self.assertError(s.request("PUT", "/projections/x", body=b"return {} -- \xff", headers=LUA), 422, "UTF-8")
        self.assertError(s.get("/projections/x"), 404)

    def test_names_numbers_routes_methods(self):
        s = self.srv
        self.assertError(s.get("/projections/a%01b"), 400, "control")
        self.assertError(s.get("/projections/a%zz"), 400, "percent")
        self.assertError(s.get("/projections/" + "n" * 129), 422, "128")
        self.assertError(self.put_lua("n" * 129, "return {}"), 422)
        self.assertError(s.get("/projections/nope"), 404, "nope")
        self.assertError(s.get("/projections/nope/state/p"), 404)
        self.assertError(s.get("/projections/"), 404)
        self.assertError(s.get("/projections/x/bogus"), 404, "no route")
        self.assertError(s.get("/projections/x/state/a/b"), 404)
        for path in ("/projections?limit=abc", "/projections?limit=0", "/projections?limit=1001",
                     "/projections?limit=-1", "/subscriptions?kind=thing", "/subscriptions/x/dlq?after=1.5"):
            self.assertError(s.get(path), 400)
        self.assertError(s.get("/subscriptions/x/dlq/abc"), 400, "global position")
        self.assertError(s.get("/subscriptions/x/dlq/0"), 400)
        self.assertError(s.get("/subscriptions/x/dlq/99999999999999999999999"), 400, "too large")
        st, h, b = s.request("PATCH", "/projections/x")
        self.assertEqual(st, 405, b)
        self.assertEqual(h["allow"], "GET, HEAD, POST, PUT, DELETE")
        st, h, _ = s.request("GET", "/projections/x/pause")
        self.assertEqual((st, h["allow"]), (405, "POST"))
        st, h, _ = s.request("PATCH", "/subscriptions/x")  # PUT creates a subscription's record
        self.assertEqual((st, h["allow"]), (405, "GET, HEAD, POST, PUT, DELETE"))
        st, h, _ = s.request("POST", "/subscriptions/x/dlq/5")
        self.assertEqual((st, h["allow"]), (405, "GET, HEAD, DELETE"))
        # the core routes are untouched by the bus dispatcher
        self.assertEqual(s.get("/health")[0], 200)
        self.assertError(s.get("/projectionsx"), 404)

    # --------------------------------------------------- live and replay

    def test_follows_concurrent_live_appends_equals_fresh_replay(self):
        s = self.srv
        self.assertEqual(self.put_lua("live", cart_script("live-"))[0], 201)
        expected = {}
        lock = threading.Lock()
        errors = []

        def writer(w):
            c = s.conn()
            try:
                for i in range(60):
                    stream = "live-%d" % ((w * 7 + i) % 10)
                    t = "ItemAdded" if i % 3 else "ItemRemoved"
                    with lock:  # the expected fold needs the order the store assigns
                        b = self.append(stream, {"event_type": t, "data": {"n": i % 4 + 1}}, conn=c)
                        e = expected.setdefault(stream, {"items": 0, "seq": []})
                        e["items"] += (i % 4 + 1) * (1 if t == "ItemAdded" else -1)
                        e["seq"].append(b["first_stream_position"])
            except Exception as ex:  # noqa: BLE001
                errors.append(ex)
            finally:
                c.close()

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        # while it is being written, the state only ever moves forward
        seen = 0
        while any(t.is_alive() for t in threads):
            st, _, b = s.get("/projections/live/state/live-0")
            if st == 200:
                self.assertGreaterEqual(len(b["seq"]), seen)
                self.assertEqual(b["seq"], sorted(b["seq"]))
                seen = len(b["seq"])
            time.sleep(0.01)
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.caught_up("live")
        got = {p: self.state("live", p) for p in expected}
        self.assertEqual(got, expected)
        # a fresh replay of the same script computes the same states
        self.assertEqual(self.put_lua("live-replay", cart_script("live-"))[0], 201)
        self.caught_up("live-replay")
        st, _, b = s.get("/projections/live-replay/partitions?limit=100")
        self.assertEqual(sorted(b["partitions"]), sorted(expected))
        self.assertEqual({p: self.state("live-replay", p) for p in expected}, expected)
        self.assertEqual(self.status("live")["processed"], 240)

    # --------------------------------------------------------------- DLQ

    def test_failing_handler_parks_retry_after_replace(self):
        s = self.srv
        self.assertEqual(self.put_lua("dlqp", failing_script("dlqp-"))[0], 201)
        self.append("dlqp-1", {"event_type": "Good", "data": {}})
        bad = self.append("dlqp-2", {"event_type": "Poison", "data": {"id": "p1"}})["first_global_position"]
        self.append("dlqp-1", {"event_type": "Good", "data": {}})
        bad2 = self.append("dlqp-3", {"event_type": "Poison", "data": {"id": "p2"}})["first_global_position"]
        self.caught_up("dlqp")
        # parked and skipped over: the stream keeps flowing
        self.assertEqual(self.state("dlqp"), {"ok": 2, "fixed": 0})
        st_ = self.status("dlqp")
        self.assertEqual((st_["parked"], st_["failed"], st_["dlq_depth"]), (2, 2, 2))
        self.assertIn("poison p2", st_["last_error"])  # the latest failure
        st, _, b = s.get("/subscriptions/dlqp/dlq")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["consumer"], b["depth"]), ("dlqp", 2))
        self.assertEqual([e["position"] for e in b["entries"]], [bad, bad2])
        e = b["entries"][0]
        self.assertEqual((e["stream"], e["event_type"], e["attempts"]), ("dlqp-2", "Poison", 1))
        self.assertIn("poison p1", e["last_error"])
        # paging, and the alias under /projections
        st, _, b = s.get("/projections/dlqp/dlq?limit=1")
        self.assertEqual(([x["position"] for x in b["entries"]], b["next_after"]), ([bad], bad))
        st, _, b = s.get("/subscriptions/dlqp/dlq?after=%d" % bad)
        self.assertEqual(([x["position"] for x in b["entries"]], b["next_after"]), ([bad2], None))
        # show: the entry and the event itself
        st, _, b = s.get("/subscriptions/dlqp/dlq/%d" % bad)
        self.assertEqual(st, 200, b)
        self.assertEqual((b["position"], b["event"]["global_position"], b["event"]["data"]),
                         (bad, bad, {"id": "p1"}))
        self.assertError(s.get("/subscriptions/dlqp/dlq/%d" % (bad + 1)), 404, "no DLQ entry")
        # a long segment whose first 31 characters are the entry's position is no position
        self.assertError(s.get("/subscriptions/dlqp/dlq/%031dxx" % bad), 400, "not a global position")
        # a retry with the script still broken: 422, the entry stays, attempts counted
        b = self.assertError(s.request("POST", "/subscriptions/dlqp/dlq/%d/retry" % bad), 422, "poison p1")
        self.assertEqual((b["detail"]["position"], b["detail"]["attempts"]), (bad, 2))
        # fix the script: the replacement keeps the DLQ, the retry applies the event
        self.assertEqual(self.put_lua("dlqp", failing_script("dlqp-", fixed=True))[0], 200)
        self.assertEqual(self.status("dlqp")["dlq_depth"], 2)
        st, _, b = s.request("POST", "/subscriptions/dlqp/dlq/%d/retry" % bad)
        self.assertEqual((st, b), (200, {"position": bad, "released": True}))
        self.assertEqual(self.state("dlqp"), {"ok": 2, "fixed": 1})
        self.assertError(s.request("POST", "/subscriptions/dlqp/dlq/%d/retry" % bad), 404)
        st, _, b = s.request("POST", "/subscriptions/dlqp/dlq/retry")
        self.assertEqual((st, b), (200, {"released": 1, "still_parked": 0}))
        self.assertEqual(self.state("dlqp"), {"ok": 2, "fixed": 2})
        self.assertEqual(self.status("dlqp")["dlq_depth"], 0)
        # discard and purge
        self.put_lua("dlqp", failing_script("dlqp-"))
        p3 = self.append("dlqp-4", {"event_type": "Poison", "data": {"id": "p3"}})["first_global_position"]
        p4 = self.append("dlqp-5", {"event_type": "Poison", "data": {"id": "p4"}})["first_global_position"]
        p5 = self.append("dlqp-6", {"event_type": "Poison", "data": {"id": "p5"}})["first_global_position"]
        wait_until(lambda: self.status("dlqp")["dlq_depth"] == 3, what="three parked")
        st, _, b = s.request("DELETE", "/subscriptions/dlqp/dlq/%d" % p3)
        self.assertEqual((st, b), (200, {"discarded": p3}))
        self.assertError(s.request("DELETE", "/subscriptions/dlqp/dlq/%d" % p3), 404)
        st, _, b = s.request("DELETE", "/subscriptions/dlqp/dlq")
        self.assertEqual((st, b), (200, {"purged": 2}))
        self.assertEqual(s.get("/subscriptions/dlqp/dlq")[2]["entries"], [])
        del p4, p5

    # ------------------------------------------------------ subscriptions

    def test_subscription_records(self):
        s = self.srv
        self.assertEqual(self.put_lua("recp", counter_script("recp-"))[0], 201)
        st, _, b = s.request("PUT", "/groups/recg", body={"filter": {"stream_prefix": "recg-"}})
        self.assertEqual(st, 201, b)
        st, _, b = s.get("/subscriptions?limit=1000")
        self.assertEqual(st, 200, b)
        kinds = {r["name"]: r["kind"] for r in b["subscriptions"]}
        self.assertEqual((kinds["recp"], kinds["recg"]), ("projection", "group"))
        names = [r["name"] for r in b["subscriptions"]]
        self.assertEqual(names, sorted(names))
        st, _, b = s.get("/subscriptions?kind=group&limit=1000")
        self.assertTrue(all(r["kind"] == "group" for r in b["subscriptions"]))
        self.assertIn("recg", [r["name"] for r in b["subscriptions"]])
        # paging by after
        st, _, b1 = s.get("/subscriptions?limit=1")
        self.assertEqual(len(b1["subscriptions"]), 1)
        st, _, b2 = s.get("/subscriptions?limit=1&after=" + q(b1["next_after"]))
        self.assertGreater(b2["subscriptions"][0]["name"], b1["next_after"])
        # the seed's record fields
        st, _, r = s.get("/subscriptions/recp")
        for k in ("name", "owner", "filter", "checkpoint", "status", "retry_count", "max_retries",
                  "last_error", "last_processed_at", "dlq_depth", "lag_events", "lag_ms"):
            self.assertIn(k, r)
        # pause/resume of a projection through /subscriptions goes through its runner
        self.assertEqual(s.request("POST", "/subscriptions/recp/pause")[2]["status"], "paused")
        self.assertEqual(self.status("recp")["status"], "paused")
        self.assertEqual(s.request("POST", "/subscriptions/recp/resume")[2]["status"], "active")
        # a group record (closed): pause, resume, reset
        self.assertEqual(s.request("POST", "/subscriptions/recg/pause")[2]["status"], "paused")
        self.assertEqual(s.request("POST", "/subscriptions/recg/resume")[2]["status"], "active")
        st, _, r = s.request("POST", "/subscriptions/recg/reset?to=now")
        self.assertEqual((st, r["checkpoint"]), (200, s.head()))
        st, _, r = s.request("POST", "/subscriptions/recg/reset")
        self.assertEqual((st, r["checkpoint"]), (200, 0))
        self.assertError(s.get("/projections/recg"), 404, "group")
        self.assertError(s.get("/groups/recp"), 404, "projection")
        st, _, b = s.request("DELETE", "/subscriptions/recg")
        self.assertEqual((st, b), (200, {"deleted": "recg", "kind": "group"}))
        st, _, b = s.request("DELETE", "/subscriptions/recp")
        self.assertEqual((st, b["kind"]), (200, "projection"))
        self.assertError(s.get("/subscriptions/recp"), 404)

    def test_subscription_start_past_the_head_is_refused(self):
        s = self.srv
        self.append("farsub-1", [{"event_type": "A", "data": {}}] * 2)
        head = s.head()
        past = head + 2
        self.refused_past_head(s.request("PUT", "/subscriptions/farsub", body={"from": past}), past)
        self.assertError(s.get("/subscriptions/farsub"), 404)
        self.refused_past_head(s.request("PUT", "/groups/fargrp", body={"from": past}), past)
        self.assertError(s.get("/groups/fargrp"), 404)
        st, _, b = s.request("PUT", "/subscriptions/farsub", body={"from": head + 1})
        self.assertEqual((st, b["checkpoint"]), (201, head))
        st, _, b = s.request("POST", "/subscriptions/farsub/reset?to=1")
        self.assertEqual((st, b["checkpoint"]), (200, 0))
        self.refused_past_head(s.request("POST", "/subscriptions/farsub/reset?to=%d" % past), past)
        self.assertEqual(s.get("/subscriptions/farsub")[2]["checkpoint"], 0)
        # a stream subscription counts in its stream's positions: now is its version + 1
        b = self.assertError(s.request("PUT", "/subscriptions/farstr", body={"stream": "farsub-1", "from": 4}), 422,
                             "position 4 lies past the end of stream \"farsub-1\" (version 2)")
        st, _, b = s.request("PUT", "/subscriptions/farstr", body={"stream": "farsub-1", "from": 1})
        self.assertEqual(st, 201, b)
        st, _, b = s.request("POST", "/subscriptions/farstr/reset?to=now")
        self.assertEqual((st, b["checkpoint"]), (200, 2))
        self.assertError(s.request("POST", "/subscriptions/farstr/reset?to=4"), 422, "farsub-1")
        self.assertEqual(s.get("/subscriptions/farstr")[2]["checkpoint"], 2)

    # ------------------------------------------------------------ metrics

    def test_metrics_per_consumer_series(self):
        s = self.srv
        self.parked("met", 3, "m")
        self.caught_up("met")
        st, h, text = s.get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"))
        lab = '{consumer="met",kind="projection"}'
        want = {
            "evstore_consumer_processed_total": 3,
            "evstore_consumer_failed_total": 1,
            "evstore_consumer_parked_total": 1,
            "evstore_consumer_dlq_depth": 1,
            "evstore_consumer_retries_total": 0,
            "evstore_consumer_lag_events": 0,
            "evstore_projection_running": 1,
        }
        lines = text.splitlines()
        for name, v in want.items():
            self.assertIn("%s%s %d" % (name, lab, v), lines)
        head = s.head()
        cp = [ln for ln in lines if ln.startswith("evstore_consumer_checkpoint_position" + lab)]
        self.assertEqual(cp, ["evstore_consumer_checkpoint_position%s %d" % (lab, head)])
        for name in ("evstore_consumer_lag_seconds", "evstore_projection_rebuild_progress_ratio",
                     "evstore_projection_events_per_second"):
            self.assertTrue(any(ln.startswith(name + lab + " ") for ln in lines), name)
        self.assertIn('evstore_consumer_status{consumer="met",kind="projection",status="active"} 1', lines)
        self.assertIn('evstore_consumer_status{consumer="met",kind="projection",status="paused"} 0', lines)
        self.assertTrue(any(ln.startswith('evstore_http_requests_total{route="projections",status="201"}')
                            for ln in lines))
        check_prometheus_text(self, text)
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        else:
            print("note: promtool not installed; checked with the built-in parser only")


class ResetTest(SharedServer):
    """A projection's reset moves it back and empties its DLQ together (evs_proj_reset)."""

    TMP_PREFIX = "evs-reset-"

    def test_reset_empties_the_dlq_and_parks_anew(self):
        s = self.srv
        self.assertEqual(self.put_lua("rst", failing_script("rst-"))[0], 201)
        self.append("rst-1", [{"event_type": "Good", "data": {"id": 1}}, {"event_type": "Poison", "data": {"id": 2}},
                              {"event_type": "Good", "data": {"id": 3}}, {"event_type": "Poison", "data": {"id": 4}}])
        wait_until(lambda: self.status("rst")["dlq_depth"] == 2 and self.caught_up("rst"), what="two parked")
        # paused, so that the replay cannot park event 2 again before the DLQ is read
        self.assertEqual(s.request("POST", "/projections/rst/pause")[0], 200)
        st, _, b = s.request("POST", "/projections/rst/reset?to=1")
        self.assertEqual(st, 200, b)
        # the DLQ is gone in the answer already: moved back and emptied together
        self.assertEqual(s.get("/projections/rst/dlq")[2]["depth"], 0)
        self.assertEqual(s.request("POST", "/projections/rst/resume")[0], 200)
        # the replay parks anew what still fails, once each
        wait_until(lambda: self.status("rst")["dlq_depth"] == 2 and self.status("rst")["rebuild"] is None,
                   what="the replay to park them again")
        entries = s.get("/projections/rst/dlq")[2]["entries"]
        self.assertEqual([e["last_error"].split("poison ")[-1] for e in entries], ["2", "4"])
        self.assertEqual(self.state("rst")["ok"], 2)


class GroupIdleTest(BusBase):
    """HTTP consumers that went silent leave when the group's status is read, not only at the next request."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-idle-")
        self.srv = Server(os.path.join(self.tmp, "data"), "--group-idle-ms", "300").start()

    def tearDown(self):
        code = self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0, self.srv.err)

    def test_idle_consumers_leave_when_status_is_read(self):
        s = self.srv
        st, _, b = s.request("PUT", "/groups/idle", body={"ack_timeout_ms": 200})
        self.assertEqual(st, 201, b)
        self.append("idle-1", [{"event_type": "A", "data": {"i": i}} for i in range(3)])
        st, _, d1 = s.request("POST", "/groups/idle/next?consumer=w1&timeout_ms=2000")
        self.assertIsNotNone(d1["delivery"], d1)
        t0 = time.time()
        st, _, g = s.get("/groups/idle")
        self.assertEqual([c["name"] for c in g["consumers"]], ["w1"])
        # w1 goes silent; nothing but reads of the status reach the group.  Past its
        # ack timeout plus the idle time (200 + 300 ms) it is gone.
        while time.time() - t0 < 10 * SLOW:
            st, _, g = s.get("/groups/idle")
            if not g["consumers"]:
                break
            time.sleep(0.05)
        self.assertEqual(g["consumers"], [], g)
        self.assertGreaterEqual(time.time() - t0, 0.45)
        # its unacked delivery went back to the group: the next consumer gets it again
        st, _, d2 = s.request("POST", "/groups/idle/next?consumer=w2&timeout_ms=2000")
        self.assertEqual(d2["delivery"]["position"], d1["delivery"]["position"], d2)
        self.assertEqual(d2["delivery"]["attempt"], 2, d2)
        # /metrics alone expires a silent one too
        self.assertRegex(s.get("/metrics")[2], r'evstore_group_consumers\{consumer="idle",kind="group"\} 1')
        time.sleep(0.8)
        self.assertRegex(s.get("/metrics")[2], r'evstore_group_consumers\{consumer="idle",kind="group"\} 0')


class GroupTest(SharedServer):
    """Competing consumers over long-poll HTTP."""

    TMP_PREFIX = "evs-grp-"

    def next(self, g, consumer, timeout_ms=1000, conn=None):
        st, _, b = self.srv.request("POST", "/groups/%s/next?consumer=%s&timeout_ms=%d"
                                    % (q(g), q(consumer), timeout_ms), conn=conn)
        self.assertEqual(st, 200, b)
        return b

    def answer(self, g, what, consumer, d, **extra):
        body = {"consumer": consumer, "position": d["position"], "attempt": d["attempt"]}
        body.update(extra)
        return self.srv.request("POST", "/groups/%s/%s" % (q(g), what), body=body)

    def test_settings_create_update_and_bad_input(self):
        s = self.srv
        st, _, b = s.request("PUT", "/groups/gset", body={
            "owner": "billing", "strategy": "pinned", "ack_timeout_ms": 1500, "max_in_flight": 3,
            "buffer_size": 50, "filter": {"event_types": ["A", "B"], "stream_prefix": "gset-"},
            "retry": {"backoff": "fixed", "max_retries": 2, "initial_delay_ms": 10}, "on_failure": "park"})
        self.assertEqual(st, 201, b)
        self.assertEqual((b["kind"], b["owner"], b["strategy"], b["ack_timeout_ms"], b["max_in_flight"],
                          b["buffer_size"], b["retry"]["backoff"], b["retry"]["max_retries"], b["open"]),
                         ("group", "billing", "pinned", 1500, 3, 50, "fixed", 2, False))
        self.assertEqual(b["filter"]["event_types"], ["A", "B"])
        st, _, b = s.request("PUT", "/groups/gset", body={"strategy": "round_robin", "max_in_flight": 7})
        self.assertEqual((st, b["strategy"], b["max_in_flight"]), (200, "round_robin", 7))
        for body, field in (({"strategy": "random"}, "strategy"), ({"bogus": 1}, "bogus"),
                            ({"max_in_flight": 0}, "max_in_flight"), ({"max_in_flight": 1001}, "max_in_flight"),
                            ({"filter": {"event_types": "A"}}, "event_types"), ({"from": -3}, "from"),
                            ({"retry": {"jitter": 2}}, "jitter"), ({"on_failure": "explode"}, "on_failure"),
                            ({"per_stream_order": 1}, "per_stream_order"),
                            ({"filter": {"correlation_id": "nope"}}, "correlation_id"), ([1], "")):
            b = self.assertError(s.request("PUT", "/groups/gbad", body=body), 422)
            self.assertEqual(b["detail"]["field"], field, body)
        # owner: a string, or null (unset, as a record shows it)
        for owner in (5, "", "o" * 256):
            b = self.assertError(s.request("PUT", "/groups/gbad", body={"owner": owner}), 422,
                                 "owner must be a string of 1..255 bytes, or null")
            self.assertEqual(b["detail"]["field"], "owner", owner)
        st, _, b = s.request("PUT", "/groups/gset", body={"owner": None})  # a PUT is the whole settings
        self.assertEqual((st, b["owner"]), (200, None), b)
        b = self.assertError(s.request("PUT", "/groups/gbad", body='{"strategy":', headers=JSON), 400,
                             "malformed JSON")
        self.assertEqual(b["detail"]["line"], 1)
        self.assertError(s.request("PUT", "/groups/gbad", body="x", headers=LUA), 415)
        self.assertError(s.get("/groups/gbad"), 404)
        self.put_lua("gproj", counter_script("gproj-"))
        self.assertError(s.request("PUT", "/groups/gproj", body={}), 409, "projection")
        self.assertError(self.put_lua("gset", "return {}"), 409, "group")

    def test_round_robin_each_event_once_ack_checkpoint(self):
        s = self.srv
        self.group("rr", filter={"stream_prefix": "rr-"}, max_in_flight=100)
        for i in range(6):
            self.append("rr-%d" % i, {"event_type": "A", "data": {"i": i}})
        got = {"c1": [], "c2": []}
        for turn in range(6):
            c = "c1" if turn % 2 == 0 else "c2"
            b = self.next("rr", c)
            self.assertEqual(b["consumer"], c)
            self.assertIsNotNone(b["delivery"], b)
            self.assertEqual(b["event"]["global_position"], b["delivery"]["position"])
            self.assertEqual(b["delivery"]["attempt"], 1)
            got[c].append(b["delivery"])
        positions = sorted(d["position"] for c in got for d in got[c])
        self.assertEqual(len(set(positions)), 6)
        b = self.next("rr", "c1", timeout_ms=100)
        self.assertIsNone(b["delivery"])
        self.assertIn("c1", b["reason"])
        for c in got:
            for d in got[c]:
                st, _, r = self.answer("rr", "ack", c, d)
                self.assertEqual((st, r["acked"]), (200, d))
        # an ack by the wrong consumer, a second ack, an unknown consumer
        self.assertError(self.answer("rr", "ack", "c2", got["c1"][0]), 409)
        self.assertError(self.answer("rr", "ack", "zz", got["c1"][0]), 409, "not connected")
        st, _, g = s.get("/groups/rr")
        self.assertEqual((g["open"], g["processed"], g["in_flight"]), (True, 6, 0))
        self.assertEqual(sorted(c["name"] for c in g["consumers"]), ["c1", "c2"])
        wait_until(lambda: s.get("/groups/rr")[2]["checkpoint"] == max(positions), what="checkpoint")
        # bad requests
        self.assertError(s.request("POST", "/groups/rr/next"), 400, "consumer")
        self.assertError(s.request("POST", "/groups/rr/next?consumer=c1&timeout_ms=30001"), 400, "timeout_ms")
        self.assertError(s.request("POST", "/groups/rr/ack", body={"consumer": "c1"}), 422, "position")
        self.assertError(s.request("POST", "/groups/rr/ack", body={"consumer": "c1", "position": 1,
                                                                    "attempt": 1, "x": 1}), 422, "unknown")
        self.assertError(s.request("POST", "/groups/rr/ack", body="{", headers=JSON), 400, "malformed")
        self.assertError(s.request("POST", "/groups/rr/ack", body="x", headers=LUA), 415)
        self.assertError(s.request("POST", "/groups/rr/nack", body={"consumer": "c1", "position": 1, "attempt": 1,
                                                                     "action": "explode"}), 422, "action")
        self.assertError(s.request("POST", "/groups/nope/next?consumer=c1"), 404)
        st, _, b = s.request("DELETE", "/groups/rr/consumers/c2")
        self.assertEqual((st, b), (200, {"left": "c2"}))
        self.assertError(s.request("DELETE", "/groups/rr/consumers/c2"), 404)

    def test_ack_timeout_redelivers_and_late_ack_refused(self):
        self.group("to", filter={"stream_prefix": "to-"}, ack_timeout_ms=300)
        pos = self.append("to-1", {"event_type": "A", "data": {}})["first_global_position"]
        d1 = self.next("to", "slow")["delivery"]
        self.assertEqual(d1, {"position": pos, "attempt": 1})
        b = self.next("to", "fast", timeout_ms=5000)  # waits for the timeout, then gets it
        self.assertEqual(b["delivery"], {"position": pos, "attempt": 2})
        self.assertError(self.answer("to", "ack", "slow", d1), 409, "redelivered")
        st, _, r = self.answer("to", "ack", "fast", b["delivery"])
        self.assertEqual(st, 200, r)
        self.assertEqual(self.srv.get("/groups/to")[2]["timeouts"], 1)

    def test_nack_park_dlq_retry_redelivers(self):
        s = self.srv
        self.group("np", filter={"stream_prefix": "np-"})
        pos = self.append("np-1", {"event_type": "A", "data": {}})["first_global_position"]
        d = self.next("np", "c")["delivery"]
        st, _, r = self.answer("np", "nack", "c", d, action="park", reason="cannot handle")
        self.assertEqual((st, r["action"]), (200, "park"))
        st, _, b = s.get("/groups/np/dlq")
        self.assertEqual([(e["position"], e["last_error"]) for e in b["entries"]], [(pos, "cannot handle")])
        self.assertEqual(s.get("/subscriptions/np/dlq/%d" % pos)[2]["event"]["global_position"], pos)
        st, _, r = s.request("POST", "/groups/np/dlq/%d/retry" % pos)
        self.assertEqual((st, r), (200, {"position": pos, "queued": True}))
        d2 = self.next("np", "c")["delivery"]
        self.assertEqual(d2["position"], pos)
        self.assertGreater(d2["attempt"], d["attempt"])
        self.assertEqual(self.answer("np", "ack", "c", d2)[0], 200)
        wait_until(lambda: s.get("/groups/np/dlq")[2]["depth"] == 0, what="entry released")
        # skip finishes without parking; retry-all with nothing parked
        self.append("np-1", {"event_type": "A", "data": {}})
        d3 = self.next("np", "c")["delivery"]
        self.assertEqual(self.answer("np", "nack", "c", d3, action="skip")[0], 200)
        self.assertEqual(s.request("POST", "/groups/np/dlq/retry")[2], {"queued": 0})
        self.assertEqual(s.get("/groups/np")[2]["skipped"], 1)

    def test_full_retry_buffer_is_413_not_503(self):
        """A library limit on a bus route is 413 with its code (the one status table), not the 503
        that is kept for shutdown and I/O failures; and the refused retry changes nothing."""
        s = self.srv
        self.group("full", filter={"stream_prefix": "full-"}, buffer_size=1, max_in_flight=1)
        parked = []
        for i in range(2):
            pos = self.append("full-%d" % i, {"event_type": "A", "data": {"i": i}})["first_global_position"]
            d = self.next("full", "c")["delivery"]
            self.assertEqual(d["position"], pos)
            self.assertEqual(self.answer("full", "nack", "c", d, action="park")[0], 200)
            parked.append(pos)
        wait_until(lambda: s.get("/groups/full/dlq")[2]["depth"] == 2, what="two parked events")
        st, _, r = s.request("POST", "/groups/full/dlq/%d/retry" % parked[0])
        self.assertEqual((st, r), (200, {"position": parked[0], "queued": True}))
        # the group's retry buffer (buffer_size 1) is full: EVS_ELIMIT
        b = self.assertError(s.request("POST", "/groups/full/dlq/%d/retry" % parked[1]), 413, "already queued")
        self.assertEqual(b["detail"], {"code": "ELIMIT"})
        self.assertEqual(s.get("/groups/full/dlq")[2]["depth"], 2)
        d = self.next("full", "c")["delivery"]
        self.assertEqual(d["position"], parked[0])
        self.assertEqual(self.answer("full", "ack", "c", d)[0], 200)
        wait_until(lambda: s.get("/groups/full/dlq")[2]["depth"] == 1, what="the retried entry released")
        # room again: the second retry is taken now
        st, _, r = s.request("POST", "/groups/full/dlq/%d/retry" % parked[1])
        self.assertEqual((st, r), (200, {"position": parked[1], "queued": True}))
        self.assertEqual(self.next("full", "c")["delivery"]["position"], parked[1])

    def test_long_poll_answered_when_event_arrives(self):
        self.group("lp", filter={"stream_prefix": "lp-"})
        result = {}

        def poll():
            t0 = time.time()
            result["b"] = self.next("lp", "w", timeout_ms=10000)
            result["t"] = time.time()
            result["waited"] = result["t"] - t0

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.4)
        # the waiting long-poll does not hold up other requests: they are
        # answered while it is still waiting
        self.assertEqual(self.srv.get("/health")[0], 200)
        self.assertNotIn("b", result)
        pos = self.append("lp-1", {"event_type": "A", "data": {}})["first_global_position"]
        t.join(TIMEOUT)
        # it was answered by the append, not by its 10 s timeout
        self.assertEqual(result["b"]["delivery"]["position"], pos)
        self.assertGreater(result["waited"], 0.35)

    def test_pause_resume_reset_delete(self):
        s = self.srv
        self.group("prd", filter={"stream_prefix": "prd-"})
        self.next("prd", "c", timeout_ms=50)  # opens the group
        self.assertEqual(s.request("POST", "/groups/prd/pause")[2]["status"], "paused")
        self.append("prd-1", {"event_type": "A", "data": {}})
        b = self.next("prd", "c", timeout_ms=200)
        self.assertIsNone(b["delivery"])
        self.assertIn("paused", b["reason"])
        self.assertEqual(s.request("POST", "/groups/prd/resume")[2]["status"], "active")
        self.assertIsNotNone(self.next("prd", "c")["delivery"])
        st, _, g = s.request("POST", "/groups/prd/reset?to=now")
        self.assertEqual((st, g["checkpoint"], g["open"]), (200, s.head(), False))
        self.assertIsNone(self.next("prd", "c", timeout_ms=100)["delivery"])
        st, _, b = s.request("DELETE", "/groups/prd")
        self.assertEqual((st, b), (200, {"deleted": "prd", "kind": "group"}))
        self.assertError(s.get("/groups/prd"), 404)
        self.assertError(s.request("POST", "/groups/prd/next?consumer=c"), 404)

    def test_reset_past_the_head_is_refused_and_keeps_the_group_open(self):
        s = self.srv
        self.group("gfar", filter={"stream_prefix": "gfar-"})
        self.append("gfar-1", {"event_type": "A", "data": {}})
        d = self.next("gfar", "c")["delivery"]
        self.assertEqual(self.answer("gfar", "ack", "c", d)[0], 200)
        before = s.get("/groups/gfar")[2]
        past = s.head() + 2
        self.refused_past_head(s.request("POST", "/groups/gfar/reset?to=%d" % past), past)
        after = s.get("/groups/gfar")[2]
        for k in ("checkpoint", "open", "status"):
            self.assertEqual(after[k], before[k], k)
        self.assertTrue(after["open"])
        self.assertEqual([c["name"] for c in after["consumers"]], ["c"])
        # the consumer was not released, and gets what comes next
        pos = self.append("gfar-1", {"event_type": "A", "data": {}})["first_global_position"]
        self.assertEqual(self.next("gfar", "c")["delivery"]["position"], pos)

    def test_metrics_group_series(self):
        self.group("gm", filter={"stream_prefix": "gm-"})
        self.append("gm-1", {"event_type": "A", "data": {}})
        self.next("gm", "c")
        text = self.srv.get("/metrics")[2]
        self.assertIn('evstore_group_consumers{consumer="gm",kind="group"} 1', text.splitlines())
        self.assertIn('evstore_group_in_flight{consumer="gm",kind="group"} 1', text.splitlines())
        check_prometheus_text(self, text)


class WSGroupTest(SharedServer):
    """Competing consumers over WebSocket: members tied to their connection."""

    TMP_PREFIX = "evs-wsg-"

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def consumer(self, group, name=None):
        ws = WSClient(self.srv.port)
        self.clients.append(ws)
        msg = {"op": "consume", "group": group}
        if name is not None:
            msg["consumer"] = name
        ws.send(msg)
        m = ws.recv()
        self.assertEqual(m.get("op"), "consuming", m)
        self.assertEqual(m["group"], group)
        return ws

    @staticmethod
    def _frame_len(buf):
        """Length of the first complete frame in buf, or None."""
        if len(buf) < 2:
            return None
        n, h = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, h = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, h = int.from_bytes(buf[2:10], "big"), 10
        return h + n if len(buf) >= h + n else None

    def try_recv(self, ws, timeout):
        """The next message (heartbeats skipped) if one arrives within timeout, else None."""
        deadline = time.time() + timeout
        while True:
            while self._frame_len(ws.buf) is None:
                left = deadline - time.time()
                if left <= 0 or not select.select([ws.s], [], [], left)[0]:
                    return None
                d = ws.s.recv(65536)
                if not d:
                    raise EOFError("connection closed")
                ws.buf += d
            m = ws.recv(skip_heartbeats=False)
            if not (isinstance(m, dict) and m.get("op") == "heartbeat"):
                return m

    def drain(self, clients, want, into):
        """Read deliveries from every client until `want` have arrived in total; into[name] += messages."""
        total = sum(len(v) for v in into.values())
        deadline = time.time() + TIMEOUT
        while total < want and time.time() < deadline:
            for name, ws in clients:
                while True:
                    m = self.try_recv(ws, 0.02)
                    if m is None:
                        break
                    self.assertEqual(m["op"], "delivery", m)
                    into.setdefault(name, []).append(m)
                    total += 1
        return total

    def deliveries(self, ws, n):
        out = []
        while len(out) < n:
            m = ws.recv()
            self.assertEqual(m.get("op"), "delivery", m)
            self.assertEqual(m["event"]["global_position"], m["delivery"]["position"])
            out.append(m)
        return out

    def quiet(self, ws, wait=0.5):
        """Nothing more is delivered: after a pause, a ping's pong is the next message."""
        time.sleep(wait)
        ws.send({"op": "ping"})
        m = ws.recv()
        self.assertEqual(m, {"op": "pong"})

    def ack(self, ws, ds):
        ws.send({"op": "ack", "deliveries": [d["delivery"] for d in ds]})

    def expect_acked(self, ws, count):
        m = ws.recv()
        self.assertEqual(m, {"op": "acked", "count": count})

    def test_competing_consumers_each_event_once_then_checkpoint(self):
        s = self.srv
        self.group("wrr", filter={"stream_prefix": "wrr-"}, max_in_flight=1000)
        a, b = self.consumer("wrr", "a"), self.consumer("wrr", "b")
        st, _, g = s.get("/groups/wrr")
        self.assertEqual(sorted(c["name"] for c in g["consumers"]), ["a", "b"])
        # a consumer over HTTP cannot take the name of a connected one
        self.assertError(s.request("POST", "/groups/wrr/next?consumer=a&timeout_ms=10"), 409, "WebSocket")
        self.assertError(self.answer_http("wrr", "a", 1, 1), 409, "WebSocket")
        n = 200
        positions = []
        for i in range(0, n, 20):
            r = self.append("wrr-%d" % (i // 20), [{"event_type": "A", "data": {"i": i + k}} for k in range(20)])
            positions += range(r["first_global_position"], r["first_global_position"] + 20)
        got = {"a": [], "b": []}
        self.assertEqual(self.drain((("a", a), ("b", b)), n, got), n)
        every = [m["delivery"]["position"] for k in got for m in got[k]]
        self.assertEqual(sorted(every), positions)  # each event once, to one consumer
        self.assertTrue(got["a"] and got["b"], "both consumers got work")
        for name, ws in (("a", a), ("b", b)):
            self.assertEqual([d["delivery"]["attempt"] for d in got[name]], [1] * len(got[name]))
            self.ack(ws, got[name])
            self.expect_acked(ws, len(got[name]))
            # a second ack of the same delivery is refused, with the delivery named
            ws.send({"op": "ack", "position": got[name][0]["delivery"]["position"], "attempt": 1})
            m = ws.recv()
            self.assertEqual((m["op"], m["detail"]["op"], m["detail"]["position"]),
                             ("error", "ack", got[name][0]["delivery"]["position"]), m)
            self.assertIn("refused", m["error"])
            self.expect_acked(ws, 0)
        wait_until(lambda: s.get("/groups/wrr")[2]["checkpoint"] == positions[-1], what="checkpoint")
        self.assertEqual(s.get("/groups/wrr")[2]["processed"], n)

    def answer_http(self, g, consumer, pos, attempt):
        return self.srv.request("POST", "/groups/%s/ack" % q(g),
                                body={"consumer": consumer, "position": pos, "attempt": attempt})

    def test_closing_the_connection_hands_unacked_deliveries_to_others(self):
        self.group("wcl", filter={"stream_prefix": "wcl-"}, max_in_flight=5)
        r = self.append("wcl-1", [{"event_type": "A", "data": {"i": i}} for i in range(5)])
        first = r["first_global_position"]
        a = self.consumer("wcl", "a")
        da = self.deliveries(a, 5)
        self.assertEqual([d["delivery"]["position"] for d in da], list(range(first, first + 5)))
        self.ack(a, da[:2])
        self.expect_acked(a, 2)
        a.close()
        b = self.consumer("wcl", "b")
        db = self.deliveries(b, 3)
        self.assertEqual([(d["delivery"]["position"], d["delivery"]["attempt"]) for d in db],
                         [(p, 2) for p in range(first + 2, first + 5)])
        self.quiet(b)
        self.ack(b, db)
        self.expect_acked(b, 3)
        wait_until(lambda: self.srv.get("/groups/wcl")[2]["checkpoint"] == first + 4, what="checkpoint")

    def test_max_in_flight_is_backpressure(self):
        self.group("wmf", filter={"stream_prefix": "wmf-"}, max_in_flight=3)
        self.append("wmf-1", [{"event_type": "A", "data": {"i": i}} for i in range(10)])
        c = self.consumer("wmf")  # a generated consumer name
        d = self.deliveries(c, 3)
        self.quiet(c)
        self.assertEqual(self.srv.get("/groups/wmf")[2]["in_flight"], 3)
        self.ack(c, d[:1])
        self.expect_acked(c, 1)
        d += self.deliveries(c, 1)
        self.quiet(c)
        positions = [x["delivery"]["position"] for x in d]
        self.assertEqual(positions, sorted(positions))
        self.assertEqual(len(set(positions)), 4)

    def test_ack_timeout_redelivers_late_ack_refused(self):
        self.group("wto", filter={"stream_prefix": "wto-"}, ack_timeout_ms=300)
        pos = self.append("wto-1", {"event_type": "A", "data": {}})["first_global_position"]
        slow = self.consumer("wto", "slow")
        d1 = self.deliveries(slow, 1)[0]
        self.assertEqual(d1["delivery"], {"position": pos, "attempt": 1})
        # the timeout hands it out again, to whichever consumer asks first
        fast = self.consumer("wto", "fast")
        got = {}
        self.assertEqual(self.drain((("slow", slow), ("fast", fast)), 1, got), 1)
        name, [d2] = next(iter(got.items()))
        ws2 = slow if name == "slow" else fast
        self.assertEqual(d2["delivery"], {"position": pos, "attempt": 2})
        slow.send({"op": "ack", "position": pos, "attempt": 1})
        m = slow.recv()
        self.assertEqual(m["op"], "error", m)
        self.assertIn("redelivered", m["error"])
        self.expect_acked(slow, 0)
        self.ack(ws2, [d2])
        self.expect_acked(ws2, 1)
        self.assertEqual(self.srv.get("/groups/wto")[2]["timeouts"], 1)

    def test_nack_retry_park_skip(self):
        s = self.srv
        self.group("wnk", filter={"stream_prefix": "wnk-"}, retry={"backoff": "fixed", "initial_delay_ms": 10,
                                                                   "max_retries": 5})
        pos = self.append("wnk-1", {"event_type": "A", "data": {}})["first_global_position"]
        c = self.consumer("wnk", "c")
        d = self.deliveries(c, 1)[0]
        c.send({"op": "nack", "position": pos, "attempt": 1, "action": "retry", "reason": "busy"})
        self.assertEqual(c.recv(), {"op": "nacked", "position": pos, "attempt": 1, "action": "retry"})
        d = self.deliveries(c, 1)[0]
        self.assertEqual(d["delivery"], {"position": pos, "attempt": 2})
        c.send({"op": "nack", "position": pos, "attempt": 2, "action": "park", "reason": "cannot handle"})
        self.assertEqual(c.recv()["action"], "park")
        wait_until(lambda: s.get("/groups/wnk/dlq")[2]["depth"] == 1, what="parked")
        self.assertEqual(s.get("/groups/wnk/dlq")[2]["entries"][0]["last_error"], "cannot handle")
        # retried from the DLQ: delivered again on the connection
        self.assertEqual(s.request("POST", "/groups/wnk/dlq/%d/retry" % pos)[0], 200)
        d = self.deliveries(c, 1)[0]
        self.assertEqual(d["delivery"]["position"], pos)
        self.ack(c, [d])
        self.expect_acked(c, 1)
        wait_until(lambda: s.get("/groups/wnk/dlq")[2]["depth"] == 0, what="released")
        p2 = self.append("wnk-1", {"event_type": "A", "data": {}})["first_global_position"]
        self.deliveries(c, 1)
        c.send({"op": "nack", "position": p2, "attempt": 1, "action": "skip"})
        self.assertEqual(c.recv()["action"], "skip")
        wait_until(lambda: s.get("/groups/wnk")[2]["skipped"] == 1, what="skipped")

    def test_pinned_keeps_each_stream_with_one_consumer_in_order(self):
        self.group("wpn", strategy="pinned", filter={"stream_prefix": "wpn-"}, max_in_flight=1000)
        a, b = self.consumer("wpn", "a"), self.consumer("wpn", "b")
        for rnd in range(10):
            for st in range(4):
                self.append("wpn-%d" % st, {"event_type": "A", "data": {"r": rnd}})
        by_consumer = {}
        self.assertEqual(self.drain((("a", a), ("b", b)), 40, by_consumer), 40)
        got = {}
        for name, ms in by_consumer.items():
            for m in ms:
                got.setdefault(m["event"]["stream"], []).append((name, m["event"]["stream_position"]))
        for stream, ds in got.items():
            self.assertEqual(len({n for n, _ in ds}), 1, "stream %s went to one consumer: %s" % (stream, ds))
            self.assertEqual([p for _, p in ds], list(range(1, 11)), stream)

    def test_bad_messages_change_nothing(self):
        s = self.srv
        self.group("wbad", filter={"stream_prefix": "wbad-"})
        ws = WSClient(s.port)
        self.clients.append(ws)
        cases = [
            ({"op": "consume"}, "group"),
            ({"op": "consume", "group": ""}, "group"),
            ({"op": "consume", "group": "x" * 129}, "group"),
            ({"op": "consume", "group": "wbad", "consumer": "bad\nname"}, "consumer"),
            ({"op": "consume", "group": "wbad", "consumer": 7}, "consumer"),
            ({"op": "consume", "group": "wbad", "bogus": 1}, "bogus"),
            ({"op": "ack", "position": 1, "attempt": 1}, "not consuming"),
            ({"op": "nack", "position": 1, "attempt": 1}, "not consuming"),
            ({"op": "leave"}, "not consuming"),
        ]
        for msg, needle in cases:
            ws.send(msg)
            m = ws.recv()
            self.assertEqual(m["op"], "error", (msg, m))
            self.assertIn(needle, m["error"], msg)
        ws.send({"op": "consume", "group": "no-such-group"})
        m = ws.recv()
        self.assertEqual((m["op"], m["detail"]["code"]), ("error", "not_found"), m)
        self.assertIn("does not exist", m["error"])
        ws.send({"op": "consume", "group": "wbad", "consumer": "c"})
        self.assertEqual(ws.recv()["op"], "consuming")
        ws.send({"op": "consume", "group": "wbad", "consumer": "c2"})
        self.assertIn("already consuming", ws.recv()["error"])
        other = WSClient(s.port)
        self.clients.append(other)
        other.send({"op": "consume", "group": "wbad", "consumer": "c"})
        m = other.recv()
        self.assertEqual((m["op"], m["detail"]["code"]), ("error", "consumer_taken"), m)
        pos = self.append("wbad-1", {"event_type": "A", "data": {}})["first_global_position"]
        d = self.deliveries(ws, 1)[0]
        for msg, needle in (({"op": "ack", "position": 0, "attempt": 1}, "positive"),
                            ({"op": "ack", "position": pos, "attempt": -1}, "positive"),
                            ({"op": "ack", "position": pos}, "attempt"),
                            ({"op": "ack", "deliveries": []}, "deliveries"),
                            ({"op": "ack", "deliveries": [{"position": pos, "attempt": 1}, 5]}, "delivery"),
                            ({"op": "nack", "position": pos, "attempt": 1, "action": "explode"}, "action"),
                            ({"op": "nack", "position": pos, "attempt": 1, "reason": "x" * 501}, "reason")):
            ws.send(msg)
            m = ws.recv()
            self.assertEqual(m["op"], "error", (msg, m))
            self.assertIn(needle, m["error"], msg)
        # none of those took the delivery: it is still in flight and ackable
        self.assertEqual(s.get("/groups/wbad")[2]["in_flight"], 1)
        ws.send({"op": "ack", "position": pos + 1000, "attempt": 1})
        self.assertIn("no outstanding delivery", ws.recv()["error"])
        self.expect_acked(ws, 0)
        self.ack(ws, [d])
        self.expect_acked(ws, 1)
        ws.send({"op": "leave"})
        self.assertEqual(ws.recv(), {"op": "left", "group": "wbad"})
        # the name is free again
        other.send({"op": "consume", "group": "wbad", "consumer": "c"})
        self.assertEqual(other.recv()["op"], "consuming")

    def test_per_stream_order_parks_followers_over_websocket(self):
        s = self.srv
        b = self.group("wpso", filter={"stream_prefix": "wpso-"}, per_stream_order=True, max_in_flight=100)
        self.assertIs(b["per_stream_order"], True)
        r = self.append("wpso-1", [{"event_type": "A", "data": {"i": i}} for i in range(3)])
        p1 = r["first_global_position"]
        q1 = self.append("wpso-2", {"event_type": "A", "data": {}})["first_global_position"]
        c = self.consumer("wpso", "c")
        got = {}
        self.assertEqual(self.drain((("c", c),), 2, got), 2)
        # one per stream: the first of wpso-1 and the one of wpso-2
        self.assertEqual(sorted(m["delivery"]["position"] for m in got["c"]), [p1, q1])
        # nothing more of either stream while its event is out, even after q2 arrives
        q2 = self.append("wpso-2", {"event_type": "A", "data": {}})["first_global_position"]
        self.quiet(c)
        c.send({"op": "ack", "position": q1, "attempt": 1})
        self.expect_acked(c, 1)
        d = self.deliveries(c, 1)[0]
        self.assertEqual(d["delivery"]["position"], q2)
        c.send({"op": "nack", "position": p1, "attempt": 1, "action": "park", "reason": "bad"})
        self.assertEqual(c.recv()["op"], "nacked")
        q3 = self.append("wpso-2", {"event_type": "A", "data": {}})["first_global_position"]
        self.ack(c, [d])
        self.expect_acked(c, 1)
        d = self.deliveries(c, 1)[0]  # wpso-2 flows; wpso-1's followers park behind p1
        self.assertEqual(d["delivery"]["position"], q3)
        self.ack(c, [d])
        self.expect_acked(c, 1)
        wait_until(lambda: s.get("/groups/wpso/dlq")[2]["depth"] == 3, what="followers parked")
        entries = s.get("/groups/wpso/dlq")[2]["entries"]
        self.assertEqual([(e["position"], e.get("blocked_by")) for e in entries],
                         [(p1, None), (p1 + 1, p1), (p1 + 2, p1)])
        self.assertError(s.request("POST", "/groups/wpso/dlq/%d/retry" % (p1 + 1)), 409, "waits behind")
        self.assertEqual(s.request("POST", "/groups/wpso/dlq/retry")[2], {"queued": 3})
        for k in range(3):
            m = self.deliveries(c, 1)[0]
            self.assertEqual(m["delivery"]["position"], p1 + k)
            self.quiet(c, 0.3)  # the next of the stream only after this one is acked
            self.ack(c, [m])
            self.expect_acked(c, 1)
        wait_until(lambda: s.get("/groups/wpso/dlq")[2]["depth"] == 0, what="DLQ emptied in order")

    def test_subscription_and_group_on_one_connection(self):
        self.group("wboth", filter={"stream_prefix": "wboth-"})
        c = self.consumer("wboth", "c")
        c.send({"op": "subscribe", "from": "now", "filter": {"stream": "wboth-1"}})
        self.assertEqual(c.recv()["op"], "subscribed")
        pos = self.append("wboth-1", {"event_type": "A", "data": {}})["first_global_position"]
        ops = {}
        for _ in range(2):
            m = c.recv()
            ops[m["op"]] = m
        self.assertEqual(sorted(ops), ["delivery", "event"])
        self.assertEqual((ops["event"]["event"]["global_position"], ops["delivery"]["delivery"]["position"]),
                         (pos, pos))

    def test_group_that_stops_tells_its_consumer(self):
        s = self.srv
        self.group("wstop", filter={"stream_prefix": "wstop-"}, on_failure="stop",
                   retry={"backoff": "fixed", "max_retries": 0, "initial_delay_ms": 10})
        pos = self.append("wstop-1", {"event_type": "A", "data": {}})["first_global_position"]
        c = self.consumer("wstop", "c")
        self.deliveries(c, 1)
        c.send({"op": "nack", "position": pos, "attempt": 1, "reason": "broken"})
        self.assertEqual(c.recv()["op"], "nacked")
        m = c.recv()
        self.assertEqual(m["op"], "left", m)
        self.assertIn("broken", m["reason"])
        self.assertEqual(s.get("/groups/wstop")[2]["status"], "error")

    def test_remove_consumer_while_it_is_served(self):
        """DELETE of a WebSocket consumer races the hub using it: no crash, the consumer hears it."""
        s = self.srv
        self.group("wrace", filter={"stream_prefix": "wrace-"}, max_in_flight=1000)
        for i in range(15):
            c = self.consumer("wrace", "c%d" % i)
            self.append("wrace-%d" % i, [{"event_type": "A", "data": {"k": k}} for k in range(50)])
            st, _, b = s.request("DELETE", "/groups/wrace/consumers/c%d" % i)
            self.assertEqual(st, 200, b)
            while True:
                m = c.recv()
                if m["op"] != "delivery":
                    break
            self.assertEqual(m["op"], "left", m)
            c.close()
        self.assertEqual(s.get("/health")[0], 200)
        # the removed consumers' deliveries are all handed out again
        last = self.consumer("wrace", "last")
        got = {}
        self.assertEqual(self.drain((("last", last),), 750, got), 750)

    def test_group_closed_under_the_consumer(self):
        s = self.srv
        self.group("wdel", filter={"stream_prefix": "wdel-"})
        c = self.consumer("wdel", "c")
        st, _, b = s.request("DELETE", "/groups/wdel/consumers/c")
        self.assertEqual((st, b), (200, {"left": "c"}))
        self.append("wdel-1", {"event_type": "A", "data": {}})
        m = c.recv()
        self.assertEqual((m["op"], m["group"]), ("left", "wdel"), m)
        self.assertIn("closed", m["reason"])
        c.send({"op": "consume", "group": "wdel", "consumer": "c"})
        self.assertEqual(c.recv()["op"], "consuming")
        self.deliveries(c, 1)
        # an update closes the open group: the consumer is told and may come back
        self.group("wdel", filter={"stream_prefix": "wdel-"}, max_in_flight=50)
        m = c.recv()
        self.assertEqual(m["op"], "left", m)
        c.send({"op": "consume", "group": "wdel", "consumer": "c"})
        self.assertEqual(c.recv()["op"], "consuming")
        d = self.deliveries(c, 1)[0]
        self.assertEqual(d["delivery"]["attempt"], 1)  # in-flight state does not survive a close
        self.assertEqual(s.request("DELETE", "/groups/wdel")[0], 200)
        self.assertEqual(c.recv()["op"], "left")
        self.assertEqual(s.get("/health")[0], 200)


class RestartTest(BusBase):
    """State, DLQ entries and groups across restarts, clean and kill -9."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-busr-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        if self.srv and self.srv.proc.poll() is None:
            self.srv.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        self.srv = Server(self.data).start()
        return self.srv

    def test_restart_keeps_state_and_dlq(self):
        self.start()
        self.assertEqual(self.put_lua("rs", failing_script("rs-"))[0], 201)
        self.append("rs-1", [{"event_type": "Good", "data": {}}] * 4)
        bad = self.append("rs-2", {"event_type": "Poison", "data": {"id": "r"}})["first_global_position"]
        self.caught_up("rs")
        self.assertEqual(self.srv.request("POST", "/projections/rs/pause")[0], 200)
        self.assertEqual(self.srv.stop(), 0, self.srv.err)
        self.start()
        self.assertEqual(self.state("rs"), {"ok": 4, "fixed": 0})
        st = self.status("rs")
        self.assertEqual((st["running"], st["status"], st["dlq_depth"], st["processed"]), (True, "paused", 1, 4))
        entry = self.srv.get("/subscriptions/rs/dlq/%d" % bad)[2]
        self.assertIn("poison r", entry["last_error"])
        self.srv.request("POST", "/projections/rs/resume")
        self.append("rs-1", {"event_type": "Good", "data": {}})
        self.caught_up("rs")
        self.assertEqual(self.state("rs")["ok"], 5)
        self.assertEqual(self.put_lua("rs", failing_script("rs-", fixed=True))[0], 200)
        self.assertEqual(self.srv.request("POST", "/subscriptions/rs/dlq/%d/retry" % bad)[0], 200)
        self.assertEqual(self.state("rs"), {"ok": 5, "fixed": 1})
        self.assertEqual(self.srv.stop(), 0, self.srv.err)

    def test_kill9_during_live_appends_exactly_once(self):
        self.start()
        self.assertEqual(self.put_lua("k9", cart_script("k9-"))[0], 201)
        stop = threading.Event()
        acked = []

        def writer():
            c = self.srv.conn()
            i = 0
            try:
                while not stop.is_set():
                    b = self.append("k9-%d" % (i % 5), {"event_type": "ItemAdded", "data": {"n": 1}}, conn=c)
                    acked.append(b["first_global_position"])
                    i += 1
            except Exception:  # noqa: BLE001 -- the server is killed under it
                pass

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(1.0)
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait(TIMEOUT)
        stop.set()
        t.join(TIMEOUT)
        self.srv.stop()
        self.assertGreater(len(acked), 10)
        self.start()
        self.caught_up("k9")
        # a fresh replay over what survived is the reference
        self.assertEqual(self.put_lua("k9-ref", cart_script("k9-"))[0], 201)
        self.caught_up("k9-ref")
        parts = self.srv.get("/projections/k9-ref/partitions")[2]["partitions"]
        self.assertEqual(len(parts), 5)
        total = 0
        for p in parts:
            a, r = self.state("k9", p), self.state("k9-ref", p)
            self.assertEqual(a, r, p)
            self.assertEqual(a["seq"], list(range(1, len(a["seq"]) + 1)), p)  # no double apply, no skip
            total += a["items"]
        self.assertGreaterEqual(total, len(acked))  # nothing acknowledged is missing
        self.assertEqual(self.srv.stop(), 0, self.srv.err)

    def test_group_long_poll_ends_at_shutdown(self):
        self.start()
        st, _, _ = self.srv.request("PUT", "/groups/sd", body={"filter": {"stream_prefix": "sd-"}})
        self.assertEqual(st, 201)
        result = {}

        def poll():
            try:
                result["r"] = self.srv.request("POST", "/groups/sd/next?consumer=c&timeout_ms=30000")
            except Exception as ex:  # noqa: BLE001
                result["r"] = ex

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.4)
        t0 = time.time()
        code = self.srv.stop()
        t.join(TIMEOUT)
        self.assertEqual(code, 0, self.srv.err)
        # shutdown answered the 30 s long-poll instead of waiting it out
        self.assertLess(time.time() - t0, 20)
        st, _, b = result["r"]
        self.assertEqual(st, 503, b)
        self.assertIn("closed", b["error"])


class LagTest(BusBase):
    """A projection follows live appends at 1,000 events/s; prints the lag (append acknowledged -> state visible)."""

    RATE = 1000
    SECONDS = 3
    WRITERS = 8       # appends are fsync'd one by one: enough writers to keep the pace

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-lag-")
        self.srv = Server(os.path.join(self.tmp, "data")).start()  # durability sync, the default

    def tearDown(self):
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_lag_at_1000_events_per_second(self):
        self.assertEqual(self.put_lua("lag", counter_script("lag-"))[0], 201)
        n = self.RATE * self.SECONDS
        acked = {}          # global position -> time the append was acknowledged
        visible = []        # (time, count) as the state was seen
        done = threading.Event()
        t0 = time.time() + 0.2

        def writer(w):
            c = self.srv.conn()
            for i in range(w, n, self.WRITERS):
                due = t0 + i / self.RATE
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                b = self.append("lag-%d" % w, {"event_type": "OrderPlaced", "data": {"total": 1}}, conn=c)
                acked[b["first_global_position"]] = time.time()
            c.close()

        def reader():
            c = self.srv.conn()
            while not done.is_set():
                st, _, b = self.srv.request("GET", "/projections/lag/state", conn=c)
                if st == 200:
                    visible.append((time.time(), b["count"]))
            c.close()

        r = threading.Thread(target=reader)
        r.start()
        ws = [threading.Thread(target=writer, args=(w,)) for w in range(self.WRITERS)]
        for w in ws:
            w.start()
        for w in ws:
            w.join()
        self.caught_up("lag")
        done.set()
        r.join()
        # the reader may have stopped before it saw the caught-up count: one last look
        st, _, b = self.srv.request("GET", "/projections/lag/state")
        self.assertEqual(st, 200, b)
        visible.append((time.time(), b["count"]))
        elapsed = max(acked.values()) - t0
        # the k-th event in log order is applied when the count reaches k
        order = sorted(acked)
        lags, j = [], 0
        for k, pos in enumerate(order, 1):
            while j < len(visible) and visible[j][1] < k:
                j += 1
            if j == len(visible):
                break
            lags.append(max(0.0, visible[j][0] - acked[pos]))
        lags.sort()
        p50 = lags[len(lags) // 2] * 1000
        p99 = lags[int(len(lags) * 0.99)] * 1000
        print("\nprojection lag at %.0f events/s (%d events, %d writers, durability sync): "
              "p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (n / elapsed, n, self.WRITERS, p50, p99, lags[-1] * 1000))
        # what is asserted: every acknowledged event became visible in the
        # projection's state, in log order.  The lag figures are printed for
        # the record; speed is judged by benchmarks, never by a test.
        self.assertEqual(len(lags), n)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
