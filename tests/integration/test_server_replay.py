#!/usr/bin/env python3
"""
test_server_replay.py -- integration tests of state as of a point, what-if
and compare over HTTP (src/server/routes_replay.c) and the evstore command
(`projection state --as-of`, `what-if`, `compare`, local and --url):

  * /state?as_of=P equals the state a fresh projection has after exactly the
    events 1..P (a second projection created while the log was at P, and
    never run past it, is the witness), for a partitioned and a
    non-partitioned script, and as of a time equals as of the last position
    recorded by then;
  * what-if exclusions and inserts give the expected state, and the live
    projection's state, checkpoint and record are the same bytes afterwards;
  * compare (GET and POST, as_of vs as_of, live vs what-if) answers the exact
    RFC 6902 diff;
  * an aggregate as of a position ignores a newer snapshot;
  * bad input: 400 for a bad as_of or missing a/b, 422 naming the member at
    fault, 404 for an unknown projection.

Standard library only; helpers shared with test_server.py.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, Server  # noqa: E402
from test_server_bus import counter_script, cart_script, wait_until  # noqa: E402

LUA = {"Content-Type": "text/x-lua"}
JSON = {"Content-Type": "application/json"}

WALLET = """
return {
  init = function() return { cents = 0, n = 0 } end,
  evolve = { Deposited = function(s, e) s.cents = s.cents + e.data.cents; s.n = s.n + 1 end },
  commands = {
    Deposit = { fields = { cents = "integer" }, decide = function(s, c)
        return { { type = "Deposited", data = { cents = c.data.cents } } } end },
  },
}
"""


def q(s):
    return urllib.parse.quote(s, safe="")


class ReplayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-replay-")
        cls.dir = os.path.join(cls.tmp, "data")
        cls.srv = Server(cls.dir, "--durability", "batch").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def assertError(self, resp, status, *needles):
        st, _, body = resp
        self.assertEqual(st, status, body)
        self.assertIsInstance(body, dict, body)
        for n in needles:
            self.assertIn(n, body["error"])
        return body

    def append(self, stream, events):
        st, _, b = self.srv.request("POST", "/streams/" + q(stream), body=events, headers=JSON)
        self.assertIn(st, (200, 201), b)
        return b["last_global_position"] if "last_global_position" in b else self.srv.head()

    def put(self, name, src):
        st, _, b = self.srv.request("PUT", "/projections/" + q(name), body=src, headers=LUA)
        self.assertIn(st, (200, 201), b)

    def caught_up(self, name):
        def done():
            st, _, s = self.srv.get("/projections/" + q(name))
            return s if s["checkpoint"] >= self.srv.head() else None
        return wait_until(done, what="projection %s to catch up" % name)

    def get_json(self, path):
        st, _, b = self.srv.get(path)
        self.assertEqual(st, 200, b)
        return b

    # --------------------------------------------------------------- as of

    def test_as_of_equals_fresh_projection_at_that_point(self):
        s = self.srv
        self.put("tot", counter_script("r1o-"))
        self.put("carts", cart_script("r1c-"))
        witnesses = {}
        for i in range(12):
            self.append("r1o-%d" % (i % 3), [{"event_type": "OrderPlaced", "data": {"total": 10 * i + 1}}])
            self.append("r1c-%d" % (i % 2), [{"event_type": "ItemAdded" if i % 4 else "ItemRemoved", "data": {"n": i}}])
            if i in (3, 7):
                # a fresh projection at exactly this point: caught up, then never run again (paused)
                pos = s.head()
                for nm, src in (("w%d-tot" % i, counter_script("r1o-")), ("w%d-carts" % i, cart_script("r1c-"))):
                    self.put(nm, src)
                    self.caught_up(nm)
                    st, _, _ = s.request("POST", "/projections/%s/pause" % nm)
                    self.assertEqual(st, 200)
                witnesses[pos] = i
        self.caught_up("tot")
        self.caught_up("carts")
        for pos, i in witnesses.items():
            want = self.get_json("/projections/w%d-tot/state" % i)
            got = self.get_json("/projections/tot/state?as_of=%d" % pos)
            self.assertEqual(got, want)
            for cart in ("r1c-0", "r1c-1"):
                want = self.get_json("/projections/w%d-carts/state/%s" % (i, cart))
                got = self.get_json("/projections/carts/state/%s?as_of=%d" % (cart, pos))
                self.assertEqual(got, want)
        live = self.get_json("/projections/tot/state")
        self.assertEqual(self.get_json("/projections/tot/state?as_of=head"), live)
        self.assertEqual(live["count"], 12)

        # as of a time: the recorded_at of an event
        st, _, page = s.get("/all?from=1&limit=1000")
        evs = page["events"]
        mid = [e for e in evs if e["stream"].startswith("r1o-")][5]
        t = mid["recorded_at"]
        later = [e for e in evs if e["recorded_at"] > t]
        got = self.get_json("/projections/tot/state?as_of=" + q(t))
        want = self.get_json("/projections/tot/state?as_of=%d" % (later[0]["global_position"] - 1 if later else s.head()))
        self.assertEqual(got, want)
        self.assertGreaterEqual(got["count"], 6)

        # before anything: 404 naming the point; a partitioned projection without a partition: the hint
        self.assertError(s.get("/projections/tot/state?as_of=1970-01-02T00:00:00Z"), 404, "no state as of")
        self.assertError(s.get("/projections/carts/state?as_of=3"), 404, "is partitioned")
        self.assertError(s.get("/projections/carts/state/r1c-9?as_of=3"), 404, 'no partition "r1c-9" as of 3')

    def test_bad_input(self):
        s = self.srv
        self.put("bad", counter_script("r2-"))
        self.append("r2-1", [{"event_type": "OrderPlaced", "data": {"total": 5}}])
        self.assertError(s.get("/projections/bad/state?as_of=yesterday"), 400, "as_of \"yesterday\" is neither")
        self.assertError(s.get("/projections/bad/state?as_of=0"), 400, "positions start at 1")
        self.assertError(s.get("/projections/bad/state?asof=3"), 400, "asof")
        self.assertError(s.get("/projections/nope/state?as_of=3"), 404)
        self.assertError(s.get("/projections/bad/compare?a=1"), 400, "a and b are required")
        self.assertError(s.get("/projections/bad/compare?a=1&b=soon"), 400, "parameter b:")
        self.assertError(s.post("/projections/bad/what-if", {"as_of": 1, "exclude": {"position": [1]}}), 422,
                         "exclude.position is not a member")
        self.assertError(s.post("/projections/bad/what-if", {"insert": [{"after": 1, "event_type": "X"}]}), 422,
                         "insert[0].stream is missing")
        self.assertError(s.post("/projections/bad/what-if", {"insert": [{"after": 10 ** 9, "stream": "r2-1", "event_type": "X"}]}),
                         422, "insert 1: after position 1000000000 is past the end")
        self.assertError(s.post("/projections/bad/what-if", {"exclude": {"positions": [0]}}), 422,
                         "exclude.positions[0] must be a position")
        self.assertError(s.post("/projections/bad/what-if", {"source": "return {"}), 422, "script")
        self.assertError(s.post("/projections/bad/what-if", {"bogus": 1}), 422, "bogus is not a member of a what-if")
        self.assertError(s.post("/projections/bad/what-if", [1]), 422, "expected a JSON object")
        self.assertError(s.request("POST", "/projections/bad/what-if", body="{", headers=JSON), 400)
        self.assertError(s.request("POST", "/projections/bad/what-if", body="{}", headers=LUA), 415)
        self.assertError(s.post("/projections/bad/compare", {"a": 1}), 422, "expected {\"a\": ..., \"b\": ...}")
        self.assertError(s.post("/projections/bad/compare", {"a": 1, "b": {"as_of": "x"}}), 422, "b: as_of \"x\"")
        self.assertError(s.post("/projections/nope/what-if", {}), 404)

    # ---------------------------------------------------- what-if, compare

    def test_what_if_and_compare(self):
        s = self.srv
        self.put("wi", counter_script("r3-"))
        totals = [3, 5, 7, 11, 13]
        positions = []
        for i, t in enumerate(totals):
            self.append("r3-%d" % (i % 2), [{"event_type": "OrderPlaced", "data": {"total": t}}])
            positions.append(s.head())
        self.caught_up("wi")
        live_before = self.get_json("/projections/wi/state")
        rec_before = self.get_json("/projections/wi")
        self.assertEqual(live_before, {"count": 5, "total": 39})

        body = {"exclude": {"positions": [positions[1]], "streams": []},
                "insert": [{"after": positions[2], "stream": "r3-0", "event_type": "OrderPlaced", "data": {"total": 100}},
                           {"after": positions[4], "stream": "x-9", "event_type": "OrderPlaced", "data": {"total": 1000}}]}
        st, _, r = s.post("/projections/wi/what-if", body)
        self.assertEqual(st, 200, r)
        self.assertEqual(r["partitions"], {"": {"count": 5, "total": 39 - 5 + 100}})
        self.assertEqual((r["events_excluded"], r["events_inserted"], r["events_applied"]), (1, 1, 5))
        self.assertEqual(r["projection"], "wi")
        self.assertEqual(r["partitioning"], "none")

        # only the types: exclude everything of type OrderPlaced up to position 3
        st, _, r = s.post("/projections/wi/what-if", {"as_of": positions[2], "exclude": {"types": ["OrderPlaced"]}})
        self.assertEqual((st, r["partitions"], r["events_excluded"]), (200, {}, 3))

        # a script given, over the same history
        src = counter_script("r3-1")
        st, _, r = s.post("/projections/wi/what-if", {"source": src})
        self.assertEqual((st, r["partitions"], r["projection"]), (200, {"": {"count": 2, "total": 16}}, None))

        # the live projection did not move
        self.assertEqual(self.get_json("/projections/wi/state"), live_before)
        rec_after = self.get_json("/projections/wi")
        for k in ("checkpoint", "processed", "generation", "dlq_depth"):
            self.assertEqual(rec_after.get(k), rec_before.get(k), k)

        # compare: as of two positions (GET), exact diff
        st, _, c = s.get("/projections/wi/compare?a=%d&b=%d" % (positions[0], positions[3]))
        self.assertEqual(st, 200, c)
        self.assertEqual(c["diff"], [
            {"op": "replace", "path": "/count", "old": 1, "value": 4},
            {"op": "replace", "path": "/total", "old": 3, "value": 26}])
        self.assertEqual(c["changes"], 2)
        self.assertEqual((c["a"]["position"], c["b"]["position"]), (positions[0], positions[3]))
        # live vs what-if (POST)
        st, _, c = s.post("/projections/wi/compare", {"a": "live", "b": {"exclude": {"positions": [positions[4]]}}})
        self.assertEqual(st, 200, c)
        self.assertEqual(c["diff"], [
            {"op": "replace", "path": "/count", "old": 5, "value": 4},
            {"op": "replace", "path": "/total", "old": 39, "value": 26}])
        self.assertTrue(c["a"]["live"])
        # identical sides
        st, _, c = s.get("/projections/wi/compare?a=live&b=head")
        self.assertEqual((st, c["diff"], c["changes"]), (200, [], 0))

        # a partitioned projection: paths name the partition
        self.put("wic", cart_script("r4-"))
        self.append("r4-a", [{"event_type": "ItemAdded", "data": {"n": 2}}])
        p1 = s.head()
        self.append("r4-b", [{"event_type": "ItemAdded", "data": {"n": 1}}])
        self.append("r4-a", [{"event_type": "ItemRemoved", "data": {"n": 1}}])
        st, _, c = s.get("/projections/wic/compare?a=%d&b=head" % p1)
        self.assertEqual(st, 200, c)
        self.assertEqual(c["diff"], [
            {"op": "replace", "path": "/r4-a/items", "old": 2, "value": 1},
            {"op": "add", "path": "/r4-a/seq/1", "value": 2},
            {"op": "add", "path": "/r4-b", "value": {"items": 1, "seq": [1]}}])

    # ------------------------------------------------------------ aggregates

    def test_aggregate_as_of_ignores_newer_snapshots(self):
        s = self.srv
        st, _, b = s.request("PUT", "/aggregates/purse", body=WALLET, headers=LUA)
        self.assertIn(st, (200, 201), b)
        pos = []
        for c in (10, 20, 30, 40):
            self.append("purse-p1", [{"event_type": "Deposited", "data": {"cents": c}}])
            self.append("other-p1", [{"event_type": "Noise", "data": {}}])
            pos.append(s.head() - 1)
        st, _, b = s.request("POST", "/aggregates/purse/p1/snapshots")
        self.assertEqual((st, b), (201, {"version": 4}))
        st, _, a = s.get("/aggregates/purse/p1?as_of=%d" % pos[1])
        self.assertEqual(st, 200, a)
        self.assertEqual((a["state"], a["version"], a["snapshot_version"]), ({"cents": 30, "n": 2}, 2, 0))
        self.assertEqual(a["as_of"], {"position": pos[1], "time": None})
        st, _, a = s.get("/aggregates/purse/p1?as_of=%d" % (pos[1] + 1))  # other-p1's event: the same version
        self.assertEqual((a["state"], a["version"]), ({"cents": 30, "n": 2}, 2))
        st, _, a = s.get("/aggregates/purse/p1?as_of=head")
        self.assertEqual((a["state"], a["snapshot_version"]), ({"cents": 100, "n": 4}, 4))
        st, _, a = s.get("/aggregates/purse/p1?as_of=1970-01-02T00:00:00Z")
        self.assertEqual((a["state"], a["version"]), ({"cents": 0, "n": 0}, 0))
        self.assertError(s.get("/aggregates/purse/p1?as_of=later"), 400, "as_of")

    # ------------------------------------------------------------------- CLI

    def cli(self, *args):
        p = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def test_cli_remote_and_local(self):
        s = self.srv
        self.put("cl", counter_script("r5-"))
        for t in (1, 2, 4):
            self.append("r5-1", [{"event_type": "OrderPlaced", "data": {"total": t}}])
        p2 = s.head() - 1
        self.caught_up("cl")
        url = "http://127.0.0.1:%d" % s.port
        for where in (["--url", url], ["-d", self.dir]):
            code, out, err = self.cli("projection", "state", "cl", "--as-of", str(p2), *where)
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out), {"count": 2, "total": 3})
            code, out, err = self.cli("projection", "what-if", "cl", "--spec",
                                      json.dumps({"exclude": {"positions": [p2]}}), *where)
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["partitions"], {"": {"count": 2, "total": 5}})
            code, out, err = self.cli("projection", "compare", "cl", str(p2), "live", *where)
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["diff"], [
                {"op": "replace", "path": "/count", "old": 2, "value": 3},
                {"op": "replace", "path": "/total", "old": 3, "value": 7}])
            code, out, err = self.cli("projection", "state", "cl", "--as-of", "nonsense", *where)
            self.assertNotEqual(code, 0)
            self.assertIn("nonsense", err)
            code, out, err = self.cli("projection", "compare", "cl", "1", *where)
            self.assertEqual(code, 1, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
