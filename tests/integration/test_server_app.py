#!/usr/bin/env python3
"""
test_server_app.py -- the application layer over HTTP, WebSocket and the
command line (src/server/routes_app.c, app_host.c, cmdpool.c, ws.c's
{"op":"command"}, src/cli/cli_app*.c), driving the real binary ($EVSTORE_BIN)
with stores in temporary directories.

What is checked is what a client relies on:
  - every route and every status: commands accepted (201, and 200 for an
    idempotent re-send or nothing to append), rejected (422 with the
    domain's reason), conflict (409), invalid (400 naming the field),
    unknown type (404 naming it), failed (500); the batch form answering
    each command in order, not atomically; queries with filters, sorting,
    paging, min_position (Evstore-Position header), the cache, 504 after
    the wait; aggregate state through snapshots, snapshot list and force;
    aggregate scripts put over HTTP, replaced, refused, and kept across a
    restart; bad input everywhere answered with a clear error and nothing
    stored;
  - the events a command appends carry causation, correlation and the
    command's metadata;
  - 8 concurrent HTTP clients on one aggregate: every command applied once,
    versions 1..N, the state the sum of all;
  - WebSocket commands: answers with the client's ref, in the order sent on
    one connection, errors for bad messages;
  - /metrics: the command, snapshot and query families, valid Prometheus;
  - the CLI (command, query, aggregate) through --url and on a local store,
    with the same output and the documented exit codes;
  - the shop (examples/shop/) end to end over HTTP: orders, reservations,
    payment, read-your-writes, an idempotent re-send answered with the
    original result, rejected commands that change nothing; and the README
    blocks (README.md, examples/shop/README.md) run as shown.

Standard library only; helpers shared with test_server.py.  Prints
"N passed, M failed" as its last line and exits non-zero on failure.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import struct
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, ROOT, SLOW, TIMEOUT, Server, WSClient, check_prometheus_text  # noqa: E402

JSON = {"Content-Type": "application/json"}
LUA = {"Content-Type": "text/x-lua"}
SHOP = os.path.join(ROOT, "examples", "shop")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

CTR_LUA = """
return {
  schema_version = 1,
  init = function() return { n = 0, count = 0 } end,
  evolve = { Added = function(s, e) s.n = s.n + e.data.k; s.count = s.count + 1 end },
  commands = {
    Add = { fields = { k = "integer", note = "string?" }, decide = function(s, c)
        if c.data.k < 1 then return "k must be at least 1" end
        return { { type = "Added", data = { k = c.data.k } } } end },
    Boom = { decide = function(s, c) error("boom in decide") end },
    Noop = { decide = function(s, c) return {} end },
  },
}
"""

TALLY_LUA = """
return {
  init = function() return { n = 0 } end,
  evolve = { Tallied = function(s, e) s.n = s.n + e.data.k end },
  commands = {
    Tally = { fields = { k = "integer" }, decide = function(s, c)
        return { { type = "Tallied", data = { k = c.data.k } } } end },
  },
}
"""

TALLIES_PROJ = """
return {
  filter = { stream_prefix = "tally-" },
  init = function() return { n = 0, count = 0, big = false } end,
  handlers = { Tallied = function(s, e)
    s.n = s.n + e.data.k; s.count = s.count + 1; s.big = s.n >= 100; s.name = e.stream end },
}
"""

QUERIES = {
    "tallies": {"projection": "tallies", "fields": ["n", "count", "big", "name"], "default_limit": 10,
                "max_limit": 100},
    "ghost": {"projection": "no_such_projection"},
}

WALLET_V1 = """
return {
  init = function() return { cents = 0 } end,
  evolve = { Deposited = function(s, e) s.cents = s.cents + e.data.cents end },
  commands = {
    Deposit = { fields = { cents = "integer" }, decide = function(s, c)
        if c.data.cents > 100 then return "deposits are at most 100 cents" end
        return { { type = "Deposited", data = { cents = c.data.cents } } } end },
  },
}
"""
WALLET_V2 = WALLET_V1.replace("> 100", "> 1000").replace("at most 100", "at most 1000")


def q(s):
    return urllib.parse.quote(s, safe="")


def wait_until(fn, timeout=10.0, step=0.02, what="condition"):
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def make_app_dir(base):
    d = os.path.join(base, "app")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ctr.lua"), "w") as f:
        f.write(CTR_LUA)
    with open(os.path.join(d, "tally.lua"), "w") as f:
        f.write(TALLY_LUA)
    with open(os.path.join(d, "queries.json"), "w") as f:
        json.dump(QUERIES, f)
    with open(os.path.join(d, "README.txt"), "w") as f:
        f.write("not a script: ignored")
    return d


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


def cli(*args, stdin=None):
    e = dict(os.environ)
    e.pop("EVSTORE_DIR", None)
    e.pop("EVSTORE_URL", None)
    p = subprocess.run([BIN] + list(args), input=(stdin or "").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=TIMEOUT)
    return Result(list(args), p)


class AppBase(unittest.TestCase):
    srv = None

    def cmd(self, ctype, body, headers=None, raw=False):
        h = dict(JSON)
        h.update(headers or {})
        return self.srv.request("POST", "/commands/" + q(ctype), body=body if raw else json.dumps(body), headers=h)

    def accepted(self, ctype, body):
        st, hd, b = self.cmd(ctype, body)
        self.assertIn(st, (200, 201), b)
        self.assertEqual(b["outcome"], "accepted", b)
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

    def put_proj(self, name, src):
        st, _, b = self.srv.request("PUT", "/projections/" + q(name), body=src, headers=LUA)
        self.assertIn(st, (200, 201), b)

    def query(self, path):
        st, hd, b = self.srv.get(path)
        self.assertEqual(st, 200, b)
        return hd, b


class AppServerTest(AppBase):
    """One server with a test app directory; each test uses aggregate ids of its own."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-app-")
        cls.appdir = make_app_dir(cls.tmp)
        cls.data = os.path.join(cls.tmp, "data")
        cls.srv = Server(cls.data, "--app-dir", cls.appdir, "--max-body", "65536", "--query-timeout-ms", "3000",
                         "--snapshot-every", "5", "--durability", "batch").start()
        st, _, b = cls.srv.request("PUT", "/projections/tallies", body=TALLIES_PROJ, headers=LUA)
        assert st == 201, b

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    # ---------------------------------------------------------- commands

    def test_accepted_and_its_events(self):
        s = self.srv
        cid = str(uuid.uuid4())
        corr = str(uuid.uuid4())
        st, hd, b = self.cmd("Add", {"command_id": cid, "aggregate_id": "acc", "data": {"k": 3},
                                     "metadata": {"user": "ann", "tenant": "t1", "source": "test",
                                                  "correlation_id": corr}})
        self.assertEqual(st, 201, b)
        self.assertEqual((b["outcome"], b["command_id"], b["stream"], b["version"], b["idempotent"]),
                         ("accepted", cid, "ctr-acc", 1, False))
        self.assertEqual(b["correlation_id"], corr)
        self.assertEqual(len(b["events"]), 1)
        self.assertEqual(b["first_position"], b["last_position"])
        self.assertEqual(hd["evstore-position"], str(b["last_position"]))
        self.assertNotIn("error", b)
        st, _, r = s.get("/streams/ctr-acc")
        ev = r["events"][0]
        self.assertEqual((ev["event_type"], ev["data"], ev["event_id"]), ("Added", {"k": 3}, b["events"][0]))
        self.assertEqual(ev["causation_id"], cid)
        self.assertEqual(ev["correlation_id"], corr)
        self.assertEqual(ev["metadata"], {"user": "ann", "tenant": "t1", "source": "test", "command_id": cid,
                                          "command_type": "Add"})
        self.assertEqual(ev["global_position"], b["last_position"])
        # without a correlation id one is generated
        b2 = self.accepted("Add", {"aggregate_id": "acc", "data": {"k": 1}})
        self.assertRegex(b2["correlation_id"], UUID_RE)
        self.assertNotEqual(b2["correlation_id"], corr)
        self.assertEqual(b2["version"], 2)
        # accepted with nothing to append: 200, no events, no position header
        st, hd, b3 = self.cmd("Noop", {"aggregate_id": "acc"})
        self.assertEqual(st, 200, b3)
        self.assertEqual((b3["outcome"], b3["events"], b3["version"]), ("accepted", [], 2))
        self.assertNotIn("evstore-position", hd)

    def test_idempotent_resend(self):
        s = self.srv
        body = {"command_id": "idem-1", "aggregate_id": "idem", "data": {"k": 7}}
        st, _, first = self.cmd("Add", body)
        self.assertEqual(st, 201, first)
        head = s.head()
        for _ in range(2):
            st, hd, again = self.cmd("Add", body)
            self.assertEqual(st, 200, again)
            self.assertTrue(again["idempotent"])
            for k in ("command_id", "stream", "events", "first_position", "last_position", "version",
                      "correlation_id"):
                self.assertEqual(again[k], first[k], k)
            self.assertEqual(hd["evstore-position"], str(first["last_position"]))
        self.assertEqual(s.head(), head)
        self.assertEqual(len(s.get("/streams/ctr-idem")[2]["events"]), 1)
        # the same id for another command is refused, naming the field
        b = self.assertError(self.cmd("Add", {"command_id": "idem-1", "aggregate_id": "other", "data": {"k": 1}}),
                             400, "already used")
        self.assertEqual(b["detail"], {"outcome": "invalid", "field": "command_id"})
        self.assertEqual(s.head(), head)

    def test_rejected_changes_nothing(self):
        s = self.srv
        self.accepted("Add", {"aggregate_id": "rej", "data": {"k": 2}})
        head = s.head()
        b = self.assertError(self.cmd("Add", {"command_id": "rej-1", "aggregate_id": "rej", "data": {"k": 0}}),
                             422, "k must be at least 1")
        self.assertEqual(b["detail"], {"outcome": "rejected", "field": None})
        self.assertEqual((b["outcome"], b["reason"], b["events"], b["version"]),
                         ("rejected", "k must be at least 1", [], 1))
        self.assertEqual(s.head(), head)
        st, _, agg = s.get("/aggregates/ctr/rej")
        self.assertEqual((agg["version"], agg["state"]), (1, {"count": 1, "n": 2}))
        # a rejection is remembered too: the same id answers the same
        b2 = self.assertError(self.cmd("Add", {"command_id": "rej-1", "aggregate_id": "rej", "data": {"k": 0}}),
                              422, "k must be at least 1")
        self.assertTrue(b2["idempotent"])
        self.assertEqual(s.head(), head)

    def test_conflict(self):
        s = self.srv
        self.accepted("Add", {"aggregate_id": "cf", "data": {"k": 1}})
        head = s.head()
        b = self.assertError(self.cmd("Add", {"aggregate_id": "cf", "data": {"k": 1}, "expected_version": 0}), 409,
                             "expected version 0, actual version 1")
        self.assertEqual((b["detail"]["outcome"], b["version"]), ("conflict", 1))
        self.assertEqual(s.head(), head)
        self.assertEqual(self.accepted("Add", {"aggregate_id": "cf", "data": {"k": 1}, "expected_version": 1})["version"],
                         2)

    def test_invalid_names_the_field(self):
        s = self.srv
        head = s.head()
        cases = [
            ({"aggregate_id": "inv", "data": {}}, "data.k", "data.k is required (integer)"),
            ({"aggregate_id": "inv", "data": {"k": "1"}}, "data.k", "data.k must be an integer, got string"),
            ({"aggregate_id": "inv", "data": {"k": 1, "note": 5}}, "data.note", "data.note must be a string"),
            ({"data": {"k": 1}}, "aggregate_id", "aggregate_id is required"),
            ({"aggregate_id": "inv", "data": {"k": 1}, "bogus": 1}, "bogus", "unknown command member \"bogus\""),
            ({"aggregate_id": "inv", "data": [1]}, "data", "command member \"data\" has the wrong type"),
            ({"aggregate_id": "inv", "data": {"k": 1}, "expected_version": -1}, "expected_version",
             "command member \"expected_version\" is -1; it must be an aggregate version"),
            ({"aggregate_id": "inv", "data": {"k": 1}, "correlation_id": "x"}, "correlation_id", "not a UUID"),
            ({"aggregate_id": "inv", "data": {"k": 1}, "command_type": "Noop"}, "command_type", "differs"),
            ({"aggregate_id": "x" * 201, "data": {"k": 1}}, "aggregate_id", "1..200 bytes"),
            ({"aggregate_id": "inv", "command_id": "", "data": {"k": 1}}, "command_id", "1..200 bytes"),
        ]
        for body, field, needle in cases:
            b = self.assertError(self.cmd("Add", body), 400, needle)
            self.assertEqual(b["detail"], {"outcome": "invalid", "field": field}, body)
        b = self.assertError(self.cmd("Add", "[1, 2]", raw=True), 400, "a command must be a JSON object")
        self.assertEqual(b["detail"]["field"], None)
        self.assertEqual(s.head(), head)

    def test_unknown_failed_and_http_errors(self):
        s = self.srv
        head = s.head()
        b = self.assertError(self.cmd("Teleport", {"aggregate_id": "u"}), 404, 'no handler for command type "Teleport"')
        self.assertEqual(b["detail"]["outcome"], "unknown")
        b = self.assertError(self.cmd("Boom", {"aggregate_id": "u"}), 500, "boom in decide")
        self.assertEqual(b["detail"]["outcome"], "failed")
        b = self.assertError(self.cmd("Add", '{"aggregate_id": "u", "data": {"k": 1}', raw=True), 400, "malformed JSON")
        self.assertEqual((b["detail"]["line"], b["detail"]["column"]), (1, 38))
        self.assertError(self.cmd("Add", "", raw=True), 400, "malformed JSON")
        self.assertError(self.cmd("Add", '{"data":{},"data":{}}', raw=True), 400, "duplicate")
        self.assertError(s.request("POST", "/commands/Add", body='{"aggregate_id":"u"}', headers={"Content-Type": "text/plain"}),
                         415, "commands take Content-Type: application/json")
        self.assertError(s.request("POST", "/commands/Add", body="{" + " " * 70000 + "}", headers=JSON), 413)
        st, hd, b = s.get("/commands/Add")
        self.assertEqual(st, 405, b)
        self.assertEqual(hd["allow"], "POST")
        self.assertError(s.request("POST", "/commands/A%00d", body="{}", headers=JSON), 400, "command type")
        self.assertError(s.request("POST", "/commands/A%01d", body="{}", headers=JSON), 400, "control character")
        self.assertError(s.request("POST", "/commands/" + "c" * 129, body="{}", headers=JSON), 422, "129 bytes")
        self.assertError(s.request("POST", "/commands/a/b", body="{}", headers=JSON), 404, "no route")
        self.assertEqual(s.head(), head)

    def test_batch(self):
        s = self.srv
        st, _, b = s.post("/commands", [
            {"command_type": "Add", "aggregate_id": "bat", "data": {"k": 1}},
            {"command_type": "Add", "aggregate_id": "bat", "data": {"k": 0}},
            5,
            {"command_type": "Nope", "aggregate_id": "bat"},
            {"command_type": "Add", "aggregate_id": "bat", "data": {"k": 2}},
            {"command_type": "Add", "aggregate_id": "bat", "data": {"k": 2}, "expected_version": 0},
        ])
        self.assertEqual(st, 200, b)
        r = b["results"]
        self.assertEqual([x["status"] for x in r], [201, 422, 400, 404, 201, 409])
        self.assertEqual([x.get("outcome") for x in r], ["accepted", "rejected", "invalid", "unknown", "accepted",
                                                          "conflict"])
        self.assertEqual(r[0]["version"], 1)
        self.assertEqual(r[4]["version"], 2)  # in order, and not atomic: the failures in between changed nothing
        self.assertEqual(r[2]["error"], "a command must be a JSON object")
        self.assertEqual(b["last_position"], r[4]["last_position"])
        st, _, agg = s.get("/aggregates/ctr/bat")
        self.assertEqual(agg["state"], {"count": 2, "n": 3})
        head = s.head()
        self.assertError(s.post("/commands", {"command_type": "Add"}), 422, "non-empty array")
        self.assertError(s.post("/commands", []), 422, "non-empty array")
        self.assertError(s.post("/commands", "[1,", ), 400, "malformed JSON")
        b = self.assertError(s.post("/commands", [{"command_type": "Noop"}] * 1001), 413, "1001 commands")
        self.assertEqual(b["detail"], {"count": 1001, "limit": 1000})
        self.assertEqual(s.head(), head)

    def test_concurrent_clients_one_aggregate(self):
        s = self.srv
        per, threads = 25 // SLOW + 5, 8
        errors, versions, conflicts = [], [], [0]
        lock = threading.Lock()

        def client(t):
            c = s.conn()
            try:
                for i in range(per):
                    body = json.dumps({"command_id": "hot-%d-%d" % (t, i), "aggregate_id": "hot",
                                       "data": {"k": t * 1000 + i + 1}})
                    # 409 once the server's retries ran out: a client sends it again, with the same id
                    for _ in range(100):
                        st, _, b = s.request("POST", "/commands/Add", headers=JSON, conn=c, body=body)
                        if st != 409:
                            break
                        with lock:
                            conflicts[0] += 1
                    with lock:
                        if st != 201:
                            errors.append(b)
                        else:
                            versions.append(b["version"])
            finally:
                c.close()

        th = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        self.assertEqual(errors, [])
        n = per * threads
        self.assertEqual(sorted(versions), list(range(1, n + 1)))
        want = sum(t * 1000 + i + 1 for t in range(threads) for i in range(per))
        for use in ("true", "false"):
            st, _, agg = s.get("/aggregates/ctr/hot?use_snapshot=" + use)
            self.assertEqual((agg["version"], agg["state"]), (n, {"count": n, "n": want}))
        st, _, m = s.get("/metrics")
        retries = float(re.search(r"^evstore_command_conflict_retries_total (\S+)$", m, re.M).group(1))
        print("\n%d commands from %d clients on one aggregate: %d reload-and-decide rounds, %d 409s re-sent"
              % (n, threads, retries, conflicts[0]))

    # ----------------------------------------------------------- queries

    def tally(self, agg, k):
        return self.accepted("Tally", {"aggregate_id": agg, "data": {"k": k}})

    def test_queries(self):
        s = self.srv
        self.tally("qa", 5)
        self.tally("qb", 150)
        last = self.tally("qc", 50)["last_position"]
        hd, b = self.query("/queries/tallies?min_position=%d" % last)
        self.assertGreaterEqual(b["position"], last)
        self.assertEqual(hd["evstore-position"], str(b["position"]))
        self.assertEqual((b["query"], b["projection"], b["offset"], b["limit"]), ("tallies", "tallies", 0, 10))
        keys = [i["key"] for i in b["items"]]
        self.assertEqual(keys, sorted(keys))
        self.assertTrue({"tally-qa", "tally-qb", "tally-qc"} <= set(keys))
        # filters: numbers numerically, booleans by name, nested by name
        _, b = self.query("/queries/tallies?big=true&min_position=%d" % last)
        self.assertEqual([i["key"] for i in b["items"]], ["tally-qb"])
        _, b = self.query("/queries/tallies?n=50&count=1")
        self.assertEqual([i["key"] for i in b["items"]], ["tally-qc"])
        self.assertEqual(b["items"][0]["state"], {"big": False, "count": 1, "n": 50, "name": "tally-qc"})
        _, b = self.query("/queries/tallies?name=" + q("tally-qa"))
        self.assertEqual(b["total"], 1)
        # sort, desc, offset, limit
        _, b = self.query("/queries/tallies?sort=n&desc=true&limit=2")
        ns = [i["state"]["n"] for i in b["items"]]
        self.assertEqual(ns, sorted(ns, reverse=True))
        self.assertEqual(len(ns), 2)
        _, all_ = self.query("/queries/tallies?sort=n&limit=100")
        _, page = self.query("/queries/tallies?sort=n&offset=1&limit=1")
        self.assertEqual(page["items"], all_["items"][1:2])
        self.assertEqual(page["total"], all_["total"])
        _, b = self.query("/queries/tallies?partition=tally-qb")
        self.assertEqual([i["key"] for i in b["items"]], ["tally-qb"])
        # the cache: the same question again is a hit, a new event makes it a miss.  First let the
        # projection reach the head: while it checkpoints past other tests' events its position moves,
        # and an answer of an older position is (rightly) never served
        head = s.head()
        wait_until(lambda: s.get("/projections/tallies")[2]["checkpoint"] >= head, what="tallies to catch up")
        hd1, b1 = self.query("/queries/tallies?big=false&limit=50")
        hd2, b2 = self.query("/queries/tallies?big=false&limit=50")
        self.assertEqual((hd1["evstore-cache"], hd2["evstore-cache"], b1), ("miss", "hit", b2))
        p = self.tally("qa", 1)["last_position"]
        hd3, b3 = self.query("/queries/tallies?big=false&limit=50&min_position=%d" % p)
        self.assertEqual(hd3["evstore-cache"], "miss")
        self.assertEqual([i["state"]["n"] for i in b3["items"] if i["key"] == "tally-qa"], [6])
        # errors
        self.assertError(s.get("/queries/nope"), 404, 'no query named "nope"')
        self.assertError(s.get("/queries/ghost"), 404, 'projection "no_such_projection" does not exist')
        self.assertError(s.get("/queries/tallies?color=red"), 422, 'cannot filter by "color"')
        self.assertError(s.get("/queries/tallies?sort=color"), 422, 'cannot sort by "color"')
        self.assertError(s.get("/queries/tallies?limit=101"), 413, "limit 101 exceeds 100")
        for bad in ("limit=0", "limit=x", "offset=-1", "min_position=0", "min_position=1.5", "timeout_ms=3001",
                    "desc=maybe", "sort=", "=5", "n=%ZZ"):
            self.assertError(s.get("/queries/tallies?" + bad), 400)
        # every parameter, a field filter too, once and with a value (no wait silently skipped)
        for bad, name, why in (("limit=1&limit=2", "limit", "more than once"),
                               ("sort=n&sort=count", "sort", "more than once"),
                               ("n=1&n=2", "n", "more than once"), ("n=1&%6e=2", "n", "more than once"),
                               ("min_position", "min_position", "no value"), ("limit", "limit", "no value"),
                               ("n", "n", "no value")):
            self.assertError(s.get("/queries/tallies?" + bad), 400, "parameter " + name, why)
        # a bad limit is refused with the query's own range
        for bad in ("0", "x", "99999999"):
            b = self.assertError(s.get("/queries/tallies?limit=" + bad), 400, "expected 1..100)")
            self.assertEqual((b["detail"]["min"], b["detail"]["max"]), (1, 100))
        self.assertError(s.get("/queries/nope?limit=0"), 404, 'no query named "nope"')
        # a query's field filters are free names, but not without end
        self.assertError(s.get("/queries/tallies?" + "&".join("f%d=1" % i for i in range(65))), 400,
                         "too many parameters (at most 64)")
        # min_position the projection does not reach in time: 504 after about the timeout
        t0 = time.time()
        b = self.assertError(s.get("/queries/tallies?min_position=%d&timeout_ms=200" % (s.head() + 1000)), 504)
        self.assertEqual(b["detail"]["code"], "ETIMEDOUT")
        self.assertGreaterEqual(time.time() - t0, 0.19)
        st, _, lst = s.get("/queries")
        self.assertEqual(st, 200)
        self.assertEqual(sorted(x["name"] for x in lst["queries"]), ["ghost", "tallies"])
        tq = [x for x in lst["queries"] if x["name"] == "tallies"][0]
        self.assertEqual((tq["fields"], tq["default_limit"], tq["max_limit"]), (["n", "count", "big", "name"], 10, 100))

    def test_read_your_writes_every_time(self):
        """Each query right after a command, with its position, sees that command."""
        for i in range(20):
            b = self.tally("ryw", 1)
            _, a = self.query("/queries/tallies?partition=tally-ryw&min_position=%d" % b["last_position"])
            self.assertEqual(a["items"][0]["state"]["count"], i + 1)

    # -------------------------------------------------------- aggregates

    def test_aggregate_routes(self):
        s = self.srv
        st, _, b = s.get("/aggregates")
        self.assertEqual(st, 200)
        names = {a["name"]: a for a in b["aggregates"]}
        self.assertEqual(names["ctr"]["origin"], "app_dir")
        self.assertEqual(names["ctr"]["commands"], ["Add", "Boom", "Noop"])
        self.assertTrue(names["ctr"]["file"].endswith("/ctr.lua"))
        st, _, t = s.get("/aggregates/ctr")
        self.assertEqual((st, t["source"]), (200, CTR_LUA))
        self.assertError(s.get("/aggregates/nope"), 404, 'aggregate type "nope" is not registered')
        st, _, c = s.get("/commands")
        add = [x for x in c["commands"] if x["command_type"] == "Add"][0]
        self.assertEqual(add, {"command_type": "Add", "handler": "aggregate", "aggregate": "ctr", "fields": [
            {"name": "k", "type": "integer", "required": True}, {"name": "note", "type": "string", "required": False}]})
        # state, through snapshots (every 5 events)
        for i in range(12):
            self.accepted("Add", {"aggregate_id": "snap", "data": {"k": i + 1}})
        st, _, a = s.get("/aggregates/ctr/snap")
        self.assertEqual(st, 200, a)
        self.assertEqual((a["type"], a["id"], a["stream"], a["version"], a["state"]),
                         ("ctr", "snap", "ctr-snap", 12, {"count": 12, "n": 78}))
        st, _, full = s.get("/aggregates/ctr/snap?use_snapshot=false")
        self.assertEqual((full["state"], full["snapshot_version"], full["events_applied"]), (a["state"], 0, 12))
        st, _, r = s.request("POST", "/aggregates/ctr/snap/snapshots")
        self.assertEqual((st, r), (201, {"version": 12}))
        st, _, a2 = s.get("/aggregates/ctr/snap")
        self.assertEqual((a2["snapshot_version"], a2["events_applied"], a2["state"]), (12, 0, a["state"]))
        st, _, lst = s.get("/aggregates/ctr/snap/snapshots")
        self.assertEqual(st, 200)
        self.assertEqual(lst["snapshots"][0]["version"], 12)
        self.assertTrue(all(x["usable"] for x in lst["snapshots"]))
        vs = [x["version"] for x in lst["snapshots"]]
        self.assertEqual(vs, sorted(vs, reverse=True))
        self.assertEqual(lst["snapshots"][0]["code_hash"], names["ctr"]["code_hash"])
        # an aggregate without events: its initial state at version 0; no snapshot of it
        st, _, e = s.get("/aggregates/ctr/never")
        self.assertEqual((st, e["version"], e["state"]), (200, 0, {"count": 0, "n": 0}))
        self.assertError(s.request("POST", "/aggregates/ctr/never/snapshots"), 404, "no events to snapshot")
        st, _, e = s.get("/aggregates/ctr/never/snapshots")
        self.assertEqual((st, e), (200, {"snapshots": []}))
        self.assertError(s.get("/aggregates/nope/x"), 404, "not registered")
        self.assertError(s.get("/aggregates/ctr/" + "x" * 201), 422, "aggregate id is 201 bytes")
        self.assertError(s.get("/aggregates/ctr/a%00"), 400, "aggregate id")
        self.assertError(s.get("/aggregates/ctr/snap?use_snapshot=yes"), 400, "use_snapshot")
        st, hd, _ = s.request("DELETE", "/aggregates/ctr/snap")
        self.assertEqual((st, hd["allow"]), (405, "GET, HEAD"))

    def test_put_aggregate(self):
        s = self.srv
        st, _, b = s.request("PUT", "/aggregates/wallet", body=WALLET_V1, headers=LUA)
        self.assertEqual(st, 201, b)
        self.assertEqual((b["change"], b["origin"], b["commands"]), ("created", "stored", ["Deposit"]))
        self.assertNotIn("source", b)
        st, _, b = s.request("PUT", "/aggregates/wallet", body=WALLET_V1, headers=LUA)
        self.assertEqual((st, b["change"]), (200, "unchanged"))
        self.assertError(self.cmd("Deposit", {"aggregate_id": "w1", "data": {"cents": 500}}), 422, "at most 100")
        self.accepted("Deposit", {"aggregate_id": "w1", "data": {"cents": 50}})
        head = s.head()
        # refused puts change nothing
        b = self.assertError(s.request("PUT", "/aggregates/wallet", body="return {", headers=LUA), 422,
                             "does not compile")
        self.assertEqual(b["detail"]["code"], "EINVAL")
        self.assertError(s.request("PUT", "/aggregates/ctr", body=WALLET_V1, headers=LUA), 409,
                         "from an app directory")
        self.assertError(s.request("PUT", "/aggregates/thief", body=CTR_LUA, headers=LUA), 409,
                         'command type "Add" already has a handler (aggregate type ctr)')
        self.assertError(s.request("PUT", "/aggregates/wallet", body=WALLET_V2, headers=JSON), 400, "malformed JSON")
        self.assertError(s.request("PUT", "/aggregates/wallet", body=WALLET_V2,
                                   headers={"Content-Type": "application/xml"}), 415, "a Lua script takes")
        self.assertError(s.request("PUT", "/aggregates/wallet", body="return {}\0", headers=LUA), 422, "NUL")
        # the same source as JSON ("\u0000" is valid JSON): the same 422, not a 400 about the parser
        self.assertError(s.request("PUT", "/aggregates/wallet", body={"source": "return {}\0"}), 422,
                         "the Lua source contains a NUL byte")
        # a body no NUL can go into: 422 where it is, naming no parser flag
        b = self.assertError(s.post("/commands/Deposit", {"aggregate_id": "w\0", "data": {"cents": 1}}), 422,
                             "\\u0000", "line 1, column")
        self.assertNotIn("JSON_", b["error"])
        self.assertEqual(set(b["detail"]), {"line", "column", "offset"})
        st, body = s.raw(b"PUT /aggregates/wallet HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-lua\r\n"
                         b"Content-Length: 1048577\r\n\r\n", read_all=False)
        self.assertEqual(st, 413, body)  # refused from Content-Length, before the body
        self.assertError(self.cmd("Deposit", {"aggregate_id": "w1", "data": {"cents": 500}}), 422, "at most 100")
        self.assertEqual(s.head(), head)
        # the replacement, as JSON {"source": ...}: the new rule runs at once
        st, _, b = s.request("POST", "/aggregates/wallet", body={"source": WALLET_V2})
        self.assertEqual((st, b["change"]), (200, "replaced"))
        self.accepted("Deposit", {"aggregate_id": "w1", "data": {"cents": 500}})
        st, _, w = s.get("/aggregates/wallet/w1")
        self.assertEqual(w["state"], {"cents": 550})

    # ------------------------------------------------------------ metrics

    def test_metrics(self):
        s = self.srv
        self.accepted("Add", {"command_id": "met-1", "aggregate_id": "met", "data": {"k": 1}})
        self.cmd("Add", {"command_id": "met-1", "aggregate_id": "met", "data": {"k": 1}})
        self.cmd("Add", {"aggregate_id": "met", "data": {}})
        self.cmd("Zap", {"aggregate_id": "met"})
        self.query("/queries/tallies?limit=3")
        self.query("/queries/tallies?limit=3")
        st, hd, text = s.get("/metrics")
        self.assertEqual(st, 200)
        check_prometheus_text(self, text)

        def val(pattern):
            m = re.search("^" + pattern + r" (\S+)$", text, re.M)
            self.assertIsNotNone(m, pattern)
            return float(m.group(1))

        for o in ("accepted", "rejected", "conflict", "invalid", "unknown", "failed"):
            val(re.escape('evstore_commands_total{outcome="%s"}' % o))
        self.assertGreaterEqual(val(re.escape('evstore_commands_total{outcome="unknown"}')), 1)
        self.assertGreaterEqual(val(re.escape('evstore_commands_by_type_total{command_type="Add",outcome="accepted"}')), 1)
        self.assertGreaterEqual(val(re.escape('evstore_commands_by_type_total{command_type="Add",outcome="invalid"}')), 1)
        self.assertGreaterEqual(val("evstore_command_idempotent_hits_total"), 1)
        self.assertGreaterEqual(val("evstore_command_validation_errors_total"), 1)
        self.assertGreaterEqual(val("evstore_command_handler_not_found_total"), 1)
        self.assertGreaterEqual(val("evstore_command_duration_seconds_count"), 4)
        self.assertEqual(val(re.escape('evstore_command_duration_seconds_bucket{le="+Inf"}')),
                         val("evstore_command_duration_seconds_count"))
        val("evstore_command_conflict_retries_total")
        val("evstore_snapshot_load_duration_seconds_count")
        val("evstore_snapshot_create_duration_seconds_sum")
        val("evstore_snapshot_load_max_seconds")
        self.assertGreaterEqual(val("evstore_query_cache_hits_total"), 1)
        self.assertGreaterEqual(val("evstore_query_cache_misses_total"), 1)
        val("evstore_query_timeouts_total")
        self.assertGreaterEqual(val(re.escape('evstore_http_requests_total{route="commands",status="201"}')), 1)
        self.assertGreaterEqual(val(re.escape('evstore_http_requests_total{route="queries",status="200"}')), 1)
        # the sum over outcomes equals the histogram's count (every command is timed once)
        total = sum(val(re.escape('evstore_commands_total{outcome="%s"}' % o))
                    for o in ("accepted", "rejected", "conflict", "invalid", "unknown", "failed"))
        self.assertEqual(total, val("evstore_command_duration_seconds_count"))

    # ---------------------------------------------------------- WebSocket

    def test_websocket_commands(self):
        s = self.srv
        ws = WSClient(s.port)
        try:
            self.assertEqual(ws.status, 101)
            ws.send({"op": "command", "ref": "r1", "command_type": "Add", "aggregate_id": "ws1", "data": {"k": 2}})
            m = ws.recv()
            self.assertEqual((m["op"], m["ref"], m["status"]), ("result", "r1", 201), m)
            self.assertEqual((m["result"]["outcome"], m["result"]["version"]), ("accepted", 1))
            # pipelined on one connection: applied and answered in the order sent
            n = 30
            for i in range(n):
                ws.send({"op": "command", "ref": i, "command_type": "Add", "aggregate_id": "ws2", "data": {"k": 1},
                         "expected_version": i})
            got = [ws.recv() for _ in range(n)]
            self.assertEqual([g["ref"] for g in got], list(range(n)))
            self.assertEqual([g["status"] for g in got], [201] * n)
            self.assertEqual([g["result"]["version"] for g in got], list(range(1, n + 1)))
            # the outcomes and statuses of HTTP
            ws.send({"op": "command", "command_type": "Add", "aggregate_id": "ws1", "data": {"k": 0}})
            m = ws.recv()
            self.assertEqual((m["ref"], m["status"], m["result"]["outcome"], m["result"]["error"]),
                             (None, 422, "rejected", "k must be at least 1"))
            ws.send({"op": "command", "ref": 7, "command_type": "Add", "aggregate_id": "ws1", "data": {}})
            m = ws.recv()
            self.assertEqual((m["status"], m["result"]["detail"]["field"]), (400, "data.k"))
            ws.send({"op": "command", "ref": 8, "command_type": "Warp", "aggregate_id": "ws1"})
            self.assertEqual(ws.recv()["status"], 404)
            ws.send({"op": "command", "ref": 9, "command_type": "Add", "aggregate_id": "ws1", "data": {"k": 1},
                     "expected_version": 0})
            self.assertEqual(ws.recv()["status"], 409)
            ws.send({"op": "command", "ref": {"no": 1}, "command_type": "Add"})
            m = ws.recv()
            self.assertEqual(m["op"], "error")
            self.assertIn("ref must be a string or a number", m["error"])
            ws.send({"op": "command", "ref": "x" * 300, "command_type": "Add"})
            self.assertIn("ref is over 256 bytes", ws.recv()["error"])
            ws.send({"op": "warp"})
            self.assertIn("command", ws.recv()["error"])
            # the connection still works, and the subscription ops beside commands
            ws.send({"op": "ping"})
            self.assertEqual(ws.recv(), {"op": "pong"})
        finally:
            ws.close()
        st, _, a = s.get("/aggregates/ctr/ws2")
        self.assertEqual(a["state"], {"count": n, "n": n})
        # a connection that closes with commands in flight: they still run once, nothing breaks
        ws = WSClient(s.port)
        for i in range(20):
            ws.send({"op": "command", "command_id": "gone-%d" % i, "command_type": "Add", "aggregate_id": "ws3",
                     "data": {"k": 1}})
        # the close frame goes after them and the socket stays open until the server's close
        # frame: closing at once could reset the connection and drop commands the server had
        # not read yet (a TCP reset, not what this test is about)
        ws.send_frame(8, struct.pack("!H", 1000))
        while True:
            try:
                m = ws.recv()
            except (EOFError, OSError):
                break
            if isinstance(m, tuple) and m[0] == "close":
                break
        ws.s.close()
        wait_until(lambda: s.get("/aggregates/ctr/ws3")[2]["version"] == 20, what="the commands of a closed connection")
        for i in range(20):  # each ran exactly once: a re-send is the original
            st, _, b = self.cmd("Add", {"command_id": "gone-%d" % i, "aggregate_id": "ws3", "data": {"k": 1}})
            self.assertEqual((st, b["idempotent"]), (200, True))
        self.assertEqual(s.get("/aggregates/ctr/ws3")[2]["version"], 20)


class AppLifecycleTest(AppBase):
    """Servers started and stopped by each test: start failures, scripts kept across restarts."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-app-life-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_fails(self, *args):
        p = subprocess.run([BIN, "serve", "-d", self.data, "--listen", "127.0.0.1:0"] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn(b"listening", p.stdout)
        return p.stderr.decode()

    def test_start_failures_name_the_file(self):
        err = self.start_fails("--app-dir", os.path.join(self.tmp, "nosuch"))
        self.assertIn("--app-dir", err)
        self.assertIn("nosuch", err)
        bad = os.path.join(self.tmp, "bad")
        os.makedirs(bad)
        with open(os.path.join(bad, "broken.lua"), "w") as f:
            f.write("return {")
        err = self.start_fails("--app-dir", bad)
        self.assertIn("broken.lua", err)
        self.assertIn("does not compile", err)
        os.remove(os.path.join(bad, "broken.lua"))
        with open(os.path.join(bad, "queries.json"), "w") as f:
            f.write('{"q": {"projection": "p", "sort": 1}}')
        err = self.start_fails("--app-dir", bad)
        self.assertIn("queries.json", err)
        self.assertIn('"sort" is not one of', err)
        self.assertIn("--snapshot-keep 0", self.start_fails("--snapshot-keep", "0"))

    def test_scripts_kept_across_restart(self):
        appdir = make_app_dir(self.tmp)
        self.srv = Server(self.data, "--app-dir", appdir).start()
        try:
            st, _, b = self.srv.request("PUT", "/aggregates/wallet", body=WALLET_V1, headers=LUA)
            self.assertEqual(st, 201, b)
            st, _, b = self.srv.request("PUT", "/aggregates/wallet", body=WALLET_V2, headers=LUA)
            self.assertEqual((st, b["change"]), (200, "replaced"))
            self.accepted("Deposit", {"command_id": "d1", "aggregate_id": "w", "data": {"cents": 700}})
            self.accepted("Add", {"aggregate_id": "k", "data": {"k": 1}})
        finally:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)
        # restart without --app-dir: the kept script is there (the replacement), the directory's types are not
        self.srv = Server(self.data).start()
        try:
            st, _, b = self.srv.get("/aggregates")
            self.assertEqual([(a["name"], a["origin"]) for a in b["aggregates"]], [("wallet", "stored")])
            self.accepted("Deposit", {"aggregate_id": "w", "data": {"cents": 900}})  # v2's rule
            st, _, b = self.cmd("Deposit", {"command_id": "d1", "aggregate_id": "w", "data": {"cents": 700}})
            self.assertEqual((st, b["idempotent"]), (200, True))
            self.assertError(self.cmd("Add", {"aggregate_id": "k", "data": {"k": 1}}), 404, '"Add"')
            st, _, w = self.srv.get("/aggregates/wallet/w")
            self.assertEqual(w["state"], {"cents": 1600})
        finally:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)
        # a directory that defines the same type wins; the server says the kept one is not loaded
        with open(os.path.join(appdir, "wallet.lua"), "w") as f:
            f.write(WALLET_V1)
        self.srv = Server(self.data, "--app-dir", appdir).start()
        try:
            self.assertError(self.cmd("Deposit", {"aggregate_id": "w", "data": {"cents": 900}}), 422, "at most 100")
            self.assertError(self.srv.request("PUT", "/aggregates/wallet", body=WALLET_V2, headers=LUA), 409,
                             "from an app directory")
        finally:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)
        self.assertIn('the kept script of aggregate type "wallet" is not loaded', self.srv.err)
        # a damaged file of kept scripts stops the start, naming it, and is left as it was
        path = os.path.join(self.data, "app", "aggregates.json")
        with open(path, "w") as f:
            f.write("{]")
        err = self.start_fails()
        self.assertIn("aggregates.json", err)
        with open(path) as f:
            self.assertEqual(f.read(), "{]")

    def waiting(self):
        st, _, m = self.srv.get("/metrics")
        return int(re.search(r"^evstore_queries_waiting (\d+)$", m, re.M).group(1))

    def query_bg(self, path, out):
        """GET path on a thread of its own; (status, body) goes into out."""
        def run():
            st, _, b = self.srv.get(path)
            out.append((st, b))
        t = threading.Thread(target=run)
        t.start()
        return t

    def test_waiting_queries_hold_no_worker(self):
        """Queries waiting for min_position do not hold the HTTP workers: with two workers and eight
        waiting queries, an append and the command they wait for still run, and all eight see it."""
        appdir = make_app_dir(self.tmp)
        self.srv = Server(self.data, "--app-dir", appdir, "--threads", "2", "--query-timeout-ms", "60000").start()
        try:
            self.put_proj("tallies", TALLIES_PROJ)
            first = self.accepted("Tally", {"aggregate_id": "w0", "data": {"k": 1}})["last_position"]
            # already answerable: answered on the worker, waits for nothing
            _, b = self.query("/queries/tallies?min_position=%d" % first)
            self.assertGreaterEqual(b["position"], first)
            wait_until(lambda: self.waiting() == 0, what="no query waiting")
            out = []
            # first + 1 is the append below, which the projection skips; first + 2 the command
            ts = [self.query_bg("/queries/tallies?partition=tally-w1&min_position=%d&timeout_ms=60000" % (first + 2),
                                out) for _ in range(8)]
            wait_until(lambda: self.waiting() == 8, what="eight queries waiting")
            st, _, b = self.srv.post("/streams/other-1", {"event_type": "Noted", "data": {"n": 1}})
            self.assertEqual(st, 201, b)
            pos = self.accepted("Tally", {"aggregate_id": "w1", "data": {"k": 7}})["last_position"]
            self.assertEqual(pos, first + 2)
            for t in ts:
                t.join(TIMEOUT)
            self.assertEqual(len(out), 8)
            for st, b in out:
                self.assertEqual(st, 200, b)
                self.assertGreaterEqual(b["position"], pos)
                self.assertEqual([i["state"]["n"] for i in b["items"]], [7])
            wait_until(lambda: self.waiting() == 0, what="no query waiting")  # counted down after the answer
            st, _, m = self.srv.get("/metrics")
            check_prometheus_text(self, m)
        finally:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)

    def test_shutdown_ends_waiting_queries(self):
        """A query waiting for a position that never comes is answered 503 when the server stops."""
        appdir = make_app_dir(self.tmp)
        self.srv = Server(self.data, "--app-dir", appdir, "--query-timeout-ms", "60000").start()
        out, t = [], None
        try:
            self.put_proj("tallies", TALLIES_PROJ)
            self.accepted("Tally", {"aggregate_id": "s0", "data": {"k": 1}})
            waits = lambda: int(re.search(r"^evstore_query_waits_total (\d+)$", self.srv.get("/metrics")[2],
                                          re.M).group(1))
            before = waits()
            t = self.query_bg("/queries/tallies?min_position=1000000&timeout_ms=60000", out)
            wait_until(lambda: waits() == before + 1, what="the query waiting")
        finally:
            code = self.srv.stop()
        self.assertIsNotNone(t)
        t.join(TIMEOUT)
        self.assertEqual(code, 0, self.srv.err)
        self.assertEqual(len(out), 1)
        st, b = out[0]
        self.assertEqual(st, 503, b)
        self.assertEqual(b["detail"]["code"], "ECLOSED")
        self.assertIn("stopping", b["error"])

    def test_sigterm_with_websocket_commands_in_flight(self):
        appdir = make_app_dir(self.tmp)
        self.srv = Server(self.data, "--app-dir", appdir).start()
        ws = WSClient(self.srv.port)
        for i in range(50):
            ws.send({"op": "command", "command_id": "t-%d" % i, "command_type": "Add", "aggregate_id": "term",
                     "data": {"k": 1}})
        answered = []
        try:
            while len(answered) < 5:
                m = ws.recv()
                if m.get("op") == "result":
                    answered.append(m)
        finally:
            code = self.srv.stop()
            ws.close()
        self.assertEqual(code, 0, self.srv.err)
        self.assertTrue(all(a["status"] == 201 for a in answered), answered)
        # what was answered is stored; nothing was applied twice
        self.srv = Server(self.data, "--app-dir", appdir).start()
        try:
            st, _, a = self.srv.get("/aggregates/ctr/term")
            self.assertGreaterEqual(a["version"], len(answered))
            self.assertEqual(a["state"]["count"], a["version"])
            self.assertEqual(len(self.srv.get("/streams/ctr-term?limit=100")[2]["events"]), a["version"])
        finally:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)


def shop_without_sagas(base):
    """The shop's aggregates and queries without its sagas/: each command here is sent by hand
    (test_server_saga.py has the order saga run them)."""
    d = os.path.join(base, "shop")
    os.makedirs(d)
    for f in os.listdir(SHOP):
        if f.endswith(".lua") or f == "queries.json":
            shutil.copy(os.path.join(SHOP, f), d)
    return d


class ShopTest(AppBase):
    """The shop of examples/shop/ over HTTP, end to end, its aggregates driven by hand."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-shop-")
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--app-dir", shop_without_sagas(cls.tmp)).start()
        for p in ("order_summary", "product_stock"):
            with open(os.path.join(SHOP, "projections", p + ".lua")) as f:
                st, _, b = cls.srv.request("PUT", "/projections/" + p, body=f.read(), headers=LUA)
            assert st == 201, b

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def rejected(self, ctype, body, reason):
        head = self.srv.head()
        agg = body["aggregate_id"]
        typ = {"AddItem": "order", "SubmitOrder": "order", "PayOrder": "order", "CancelOrder": "order",
               "CreateOrder": "order", "ReserveStock": "inventory", "ReleaseStock": "inventory",
               "CapturePayment": "payment", "RefundPayment": "payment"}[ctype]
        before = self.srv.get("/aggregates/%s/%s" % (typ, q(agg)))[2]
        b = self.assertError(self.cmd(ctype, body), 422, reason)
        self.assertEqual(b["events"], [])
        self.assertEqual(self.srv.head(), head)  # nothing appended
        after = self.srv.get("/aggregates/%s/%s" % (typ, q(agg)))[2]
        self.assertEqual((after["version"], after["state"]), (before["version"], before["state"]))
        return b

    def test_the_day_in_the_shop(self):
        s = self.srv
        st, _, lst = s.get("/aggregates")
        self.assertEqual(sorted(a["name"] for a in lst["aggregates"]), ["inventory", "order", "payment", "shipment"])
        self.accepted("Restock", {"aggregate_id": "tea", "data": {"quantity": 10}})
        self.accepted("Restock", {"aggregate_id": "mug", "data": {"quantity": 2}})
        # orders placed by two customers at once, through the batch form
        st, _, b = s.post("/commands", [
            {"command_type": "CreateOrder", "aggregate_id": "o1", "data": {"customer": "ada"},
             "metadata": {"user": "ada", "tenant": "shop-1", "source": "web"}},
            {"command_type": "AddItem", "aggregate_id": "o1", "data": {"sku": "tea", "quantity": 3, "unit_price": "4.10"}},
            {"command_type": "AddItem", "aggregate_id": "o1", "data": {"sku": "mug", "quantity": 1, "unit_price": "12.99"}},
            {"command_type": "CreateOrder", "aggregate_id": "o2", "data": {"customer": "bob"}},
            {"command_type": "AddItem", "aggregate_id": "o2", "data": {"sku": "tea", "quantity": 1, "unit_price": "0.10"}},
            {"command_type": "AddItem", "aggregate_id": "o2", "data": {"sku": "cup", "quantity": 2, "unit_price": "0.10"}},
        ])
        self.assertEqual([r["status"] for r in b["results"]], [201] * 6, b)
        self.rejected("CreateOrder", {"aggregate_id": "o1", "data": {"customer": "eve"}}, "order o1 already exists")
        self.assertError(self.cmd("AddItem", {"aggregate_id": "o1", "data": {"sku": "mug", "quantity": 1,
                                                                              "unit_price": 12.99}}),
                         400, "data.unit_price must be a string, got number")
        self.rejected("AddItem", {"aggregate_id": "o1", "data": {"sku": "mug", "quantity": 1, "unit_price": "12.999"}},
                      "decimal string")
        self.accepted("SubmitOrder", {"aggregate_id": "o1"})
        sub = self.accepted("SubmitOrder", {"aggregate_id": "o2"})
        # read your writes: the summary reflects the submit at once
        _, a = self.query("/queries/orders?status=submitted&sort=customer&min_position=%d" % sub["last_position"])
        self.assertEqual([(i["key"], i["state"]["total"], i["state"]["items"]) for i in a["items"]],
                         [("order-o1", "25.29", 4), ("order-o2", "0.30", 3)])  # exact decimals, never floats
        # reservations: stock never goes negative
        self.accepted("ReserveStock", {"aggregate_id": "tea", "data": {"order_id": "o1", "quantity": 3}})
        self.accepted("ReserveStock", {"aggregate_id": "mug", "data": {"order_id": "o1", "quantity": 1}})
        self.rejected("ReserveStock", {"aggregate_id": "mug", "data": {"order_id": "o2", "quantity": 5}},
                      "not enough stock of mug: 1 available, 5 wanted")
        r = self.accepted("ReserveStock", {"aggregate_id": "tea", "data": {"order_id": "o2", "quantity": 1}})
        _, a = self.query("/queries/stock?sort=sku&min_position=%d" % r["last_position"])
        self.assertEqual([(i["state"]["sku"], i["state"]["available"], i["state"]["reserved"]) for i in a["items"]
                          if i["state"]["sku"] in ("mug", "tea")], [("mug", 1, 1), ("tea", 6, 4)])
        # payment: authorize, capture, pay once, and a client's retry gets the first answer
        self.accepted("AuthorizePayment", {"aggregate_id": "p1", "data": {"order_id": "o1", "amount": "25.29"}})
        self.rejected("CapturePayment", {"aggregate_id": "p1", "data": {"amount": "25.30"}}, "cannot capture more")
        self.accepted("CapturePayment", {"aggregate_id": "p1", "data": {}})
        self.rejected("PayOrder", {"aggregate_id": "o1", "data": {"payment_id": "p1", "amount": "25.28"}},
                      "does not match the total 25.29")
        pay = {"command_id": "pay-o1", "aggregate_id": "o1", "data": {"payment_id": "p1", "amount": "25.29"}}
        st, hd, first = self.cmd("PayOrder", pay)
        self.assertEqual(st, 201, first)
        head = s.head()
        st, hd2, again = self.cmd("PayOrder", pay)
        self.assertEqual((st, again["idempotent"]), (200, True))
        self.assertEqual((again["events"], again["last_position"], again["version"]),
                         (first["events"], first["last_position"], first["version"]))
        self.assertEqual(hd2["evstore-position"], hd["evstore-position"])
        self.assertEqual(s.head(), head)
        self.rejected("CancelOrder", {"aggregate_id": "o1", "data": {}}, "a paid order cannot be cancelled")
        # a cancelled order is never paid
        self.accepted("CancelOrder", {"aggregate_id": "o2", "data": {"reason": "changed mind"}})
        self.rejected("PayOrder", {"aggregate_id": "o2", "data": {"payment_id": "p2", "amount": "0.30"}},
                      "a cancelled order cannot be paid")
        rel = self.accepted("ReleaseStock", {"aggregate_id": "tea", "data": {"order_id": "o2"}})
        # shipment
        self.accepted("CreateShipment", {"aggregate_id": "s1", "data": {"order_id": "o1", "address": "1 Main St"}})
        self.assertError(self.cmd("DeliverShipment", {"aggregate_id": "s1"}), 422, "only a dispatched shipment")
        self.accepted("DispatchShipment", {"aggregate_id": "s1", "data": {"carrier": "post", "tracking": "T1"}})
        last = self.accepted("DeliverShipment", {"aggregate_id": "s1"})
        # the final picture, read after the last command
        _, a = self.query("/queries/orders?min_position=%d" % max(last["last_position"], rel["last_position"]))
        self.assertEqual({i["key"]: i["state"]["status"] for i in a["items"]}, {"order-o1": "paid", "order-o2": "cancelled"})
        _, a = self.query("/queries/stock?sku=tea&min_position=%d" % rel["last_position"])
        self.assertEqual(a["items"][0]["state"], {"available": 7, "on_hand": 10, "reserved": 3, "sku": "tea"})
        st, _, o1 = s.get("/aggregates/order/o1")
        self.assertEqual((o1["state"]["status"], o1["state"]["payment_id"], o1["state"]["total_cents"]), ("paid", "p1", 2529))
        # every event of o1 carries its command's identity and the first command's metadata where given
        evs = s.get("/streams/order-o1")[2]["events"]
        self.assertEqual(evs[0]["metadata"]["tenant"], "shop-1")
        self.assertTrue(all(e["causation_id"] and e["correlation_id"] and e["metadata"]["command_type"] for e in evs))

    def test_cli_against_the_shop(self):
        url = "http://127.0.0.1:%d" % self.srv.port
        r = cli("command", "--url", url, "Restock", "kettle", '{"quantity":4}', "--id", "cli-restock-1")
        self.assertEqual(r.code, 0, r)
        res = r.lines()[0]
        self.assertEqual((res["outcome"], res["command_id"], res["stream"]), ("accepted", "cli-restock-1", "inventory-kettle"))
        self.assertNotIn("error", res)
        r2 = cli("command", "--url", url, "Restock", "kettle", '{"quantity":4}', "--id", "cli-restock-1")
        self.assertEqual((r2.code, r2.lines()[0]["idempotent"], r2.lines()[0]["events"]), (0, True, res["events"]))
        r = cli("command", "--url", url, "ReserveStock", "kettle", '{"order_id":"x","quantity":9}')
        self.assertEqual(r.code, 4, r)
        self.assertEqual(r.lines()[0]["outcome"], "rejected")
        self.assertNotIn("error", r.lines()[0])
        self.assertIn("evstore: not enough stock of kettle", r.err)
        r = cli("command", "--url", url, "Restock", "kettle", '{"quantity":1}', "--expected", "0")
        self.assertEqual(r.code, 3, r)
        r = cli("command", "--url", url, "Restock", "kettle", '{"quantity":"1"}')
        self.assertEqual((r.code, r.lines()[0]["field"]), (4, "data.quantity"))
        r = cli("command", "--url", url, "Juggle", "kettle")
        self.assertEqual(r.code, 2, r)
        self.assertIn('no handler for command type "Juggle"', r.err)
        r = cli("command", "--url", url, "-", stdin='{"command_type":"Restock","aggregate_id":"pan","data":{"quantity":1}}\n\n'
                                                     '{"command_type":"ReserveStock","aggregate_id":"pan","data":{"order_id":"a","quantity":2}}\n'
                                                     '{"command_type":"Restock","aggregate_id":"pan","data":{"quantity":1}}\n')
        self.assertEqual(r.code, 4, r)
        self.assertEqual([x["outcome"] for x in r.lines()], ["accepted", "rejected", "accepted"])
        r = cli("query", "--url", url, "stock", "sku=pan", "--min-position", str(r.lines()[2]["last_position"]))
        self.assertEqual(r.code, 0, r)
        self.assertEqual(r.lines()[0]["items"][0]["state"]["on_hand"], 2)
        r = cli("query", "--url", url, "stock", "colour=red")
        self.assertEqual(r.code, 4, r)
        r = cli("query", "--url", url, "nosuch")
        self.assertEqual(r.code, 2, r)
        r = cli("query", "--url", url, "stock", "--min-position", "99999999", "--timeout-ms", "100")
        self.assertEqual(r.code, 5, r)
        r = cli("aggregate", "list", "--url", url)
        self.assertEqual([a["name"] for a in r.lines()], ["inventory", "order", "payment", "shipment"])
        r = cli("aggregate", "show", "--url", url, "inventory", "pan")
        self.assertEqual((r.code, r.lines()[0]["state"]["on_hand"], r.lines()[0]["version"]), (0, 2, 2))
        r = cli("aggregate", "snapshot", "--url", url, "inventory", "pan")
        self.assertEqual(r.lines(), [{"version": 2}])
        r = cli("aggregate", "snapshots", "--url", url, "inventory", "pan")
        self.assertEqual([x["version"] for x in r.lines()], [2])
        r = cli("aggregate", "describe", "--url", url, "order")
        with open(os.path.join(SHOP, "order.lua")) as f:
            self.assertEqual(r.lines()[0]["source"], f.read())
        r = cli("aggregate", "show", "--url", url, "nosuch", "x")
        self.assertEqual(r.code, 2, r)
        # usage errors
        for args in (("command", "--url", url), ("command", "--url", url, "--app-dir", SHOP, "Restock", "x"),
                     ("command", "--url", url, "-", "x"), ("query", "--url", url),
                     ("query", "--url", url, "stock", "novalue"), ("aggregate", "--url", url, "fly"),
                     ("aggregate", "show", "--url", url, "order"), ("aggregate", "list", "--url", url, "--no-snapshot"),
                     ("command", "-d", "x", "--url", url, "T")):
            r = cli(*args)
            self.assertEqual(r.code, 1, r)
            self.assertTrue(r.err.startswith("evstore: "), r)
        r = cli("command", "--url", url, "Restock", "x", "{not json")
        self.assertEqual(r.code, 4, r)
        self.assertIn("DATA", r.err)
        r = cli("command", "--url", url, "-", stdin='{"aggregate_id":"x"}\n')
        self.assertEqual(r.code, 4, r)
        self.assertIn("command 1 (stdin line 1)", r.err)
        for c in ("command", "query", "aggregate"):
            r = cli(c, "--help")
            self.assertEqual(r.code, 0)
            self.assertIn("Exit status", r.out)


class LocalCliTest(unittest.TestCase):
    """The CLI on a local store (-d with --app-dir): the output the server gives."""

    def test_local_matches_remote(self):
        tmp = tempfile.mkdtemp(prefix="evs-app-cli-")
        try:
            local = os.path.join(tmp, "local")
            remote = os.path.join(tmp, "remote")
            steps = [("Restock", "tea", '{"quantity":5}', "s1"), ("ReserveStock", "tea", '{"order_id":"o","quantity":9}', "s2"),
                     ("CreateOrder", "o", '{"customer":"ada"}', "s3"), ("Restock", "tea", '{"quantity":5}', "s1")]
            codes_local, outs_local = [], []
            for t, a, d, i in steps:
                r = cli("command", "-d", local, "--app-dir", SHOP, t, a, d, "--id", i)
                codes_local.append(r.code)
                outs_local.append(r.lines()[0])
            srv = Server(remote, "--app-dir", SHOP).start()
            try:
                url = "http://127.0.0.1:%d" % srv.port
                codes_remote, outs_remote = [], []
                for t, a, d, i in steps:
                    r = cli("command", "--url", url, t, a, d, "--id", i)
                    codes_remote.append(r.code)
                    outs_remote.append(r.lines()[0])
                rshow = cli("aggregate", "show", "--url", url, "inventory", "tea").lines()[0]
            finally:
                self.assertEqual(srv.stop(), 0, srv.err)
            self.assertEqual(codes_local, [0, 4, 0, 0])
            self.assertEqual(codes_local, codes_remote)

            def strip(o):  # generated per run
                return {k: v for k, v in o.items() if k not in ("correlation_id", "events")}
            self.assertEqual([strip(o) for o in outs_local], [strip(o) for o in outs_remote])
            self.assertEqual(list(outs_local[0].keys()), list(outs_remote[0].keys()))
            lshow = cli("aggregate", "show", "-d", local, "--app-dir", SHOP, "inventory", "tea")
            self.assertEqual(lshow.code, 0, lshow)
            ls = lshow.lines()[0]
            self.assertEqual({k: v for k, v in ls.items() if k != "load_ms"}, {k: v for k, v in rshow.items() if k != "load_ms"})
            self.assertEqual(list(ls.keys()), list(rshow.keys()))
            # a script put locally is what a server on that store then runs
            wallet = os.path.join(tmp, "wallet.lua")
            with open(wallet, "w") as f:
                f.write(WALLET_V1)
            r = cli("aggregate", "put", "-d", local, "wallet", wallet)
            self.assertEqual((r.code, r.lines()[0]["change"]), (0, "created"), r)
            r = cli("aggregate", "put", "-d", local, "order", wallet, "--app-dir", SHOP)
            self.assertEqual(r.code, 3, r)
            self.assertIn("from an app directory", r.err)
            r = cli("aggregate", "put", "-d", local, "x", os.path.join(tmp, "missing.lua"))
            self.assertEqual(r.code, 2, r)
            srv = Server(local).start()
            try:
                st, _, b = srv.request("POST", "/commands/Deposit", body={"aggregate_id": "w", "data": {"cents": 5}})
                self.assertEqual(st, 201, b)
            finally:
                self.assertEqual(srv.stop(), 0, srv.err)
            r = cli("query", "-d", local, "--app-dir", SHOP, "stock")
            self.assertEqual(r.code, 2, r)  # no projection on that store
            self.assertIn('projection "product_stock" does not exist', r.err)
            r = cli("aggregate", "list", "-d", local)
            self.assertEqual([(a["name"], a["origin"]) for a in r.lines()], [("wallet", "stored")])
            r = cli("command", "-d", local, "Restock", "tea", '{"quantity":1}')  # without --app-dir: no such type
            self.assertEqual(r.code, 2, r)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class ReadmeTest(unittest.TestCase):
    """The README blocks that use the application layer run as shown (port and paths made private)."""

    def run_block(self, path, heading):
        with open(path) as f:
            text = f.read()
        at = text.index(heading)
        m = re.search(r"```sh\n(.*?)```", text[at:], re.S)
        self.assertIsNotNone(m, "no sh block after " + heading)
        block = m.group(1)
        tmp = tempfile.mkdtemp(prefix="evs-readme-")
        port = free_port()
        try:
            # the block's own port (2113, or the one its --listen names) becomes a free one
            lm = re.search(r"--listen 127\.0\.0\.1:(\d+)", block)
            shown = lm.group(1) if lm else "2113"
            script = block.replace("build/evstore", BIN).replace("localhost:" + shown, "localhost:%d" % port)
            script = script.replace("127.0.0.1:" + shown, "127.0.0.1:%d" % port)
            script = script.replace("--app-dir examples/shop &", "--app-dir examples/shop --listen 127.0.0.1:%d &" % port)
            script = script.replace("/tmp/shop-http", os.path.join(tmp, "shop-http"))
            script = script.replace("./shop-data", os.path.join(tmp, "shop-data"))
            self.assertIn("--listen 127.0.0.1:%d" % port, script)
            p = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=TIMEOUT)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, out + p.stderr.decode())
            self.assertIn("stopped cleanly", p.stderr.decode())
            self.assertIn("evstore serve: listening on", out)  # the server's own line, then the answers
            return [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_shop_readme(self):
        lines = self.run_block(os.path.join(SHOP, "README.md"), "## Over HTTP")
        outcomes = [l.get("outcome") for l in lines if "outcome" in l]
        self.assertEqual(outcomes, ["accepted"] * 4 + ["rejected", "accepted", "rejected", "accepted"])
        self.assertIn("7 available, 8 wanted", lines[4]["error"])
        running = lines[5]["sagas"]
        self.assertEqual([(x["id"], x["status"], x["step"]["name"]) for x in running], [("o1", "running", "ship")])
        self.assertEqual(lines[6]["stream"], "shipment-o1")
        self.assertEqual(lines[6]["correlation_id"], running[0]["correlation_id"])
        self.assertIn("a completed order cannot be cancelled", lines[7]["error"])
        self.assertTrue(lines[8]["idempotent"])
        q_orders = lines[9]
        self.assertEqual(q_orders["items"][0]["state"]["status"], "completed")
        self.assertEqual(q_orders["items"][0]["state"]["total"], "12.30")
        self.assertEqual(lines[10]["items"][0]["state"]["available"], 7)
        self.assertEqual(lines[11]["state"]["status"], "completed")
        shown = lines[12]
        self.assertEqual((shown["stream"], shown["status"], shown["step"]), ("saga-order-o1", "completed", None))
        self.assertEqual([st["status"] for st in shown["steps"]], ["done"] * 6)
        self.assertEqual((shown["timeline"][0]["type"], shown["timeline"][-1]["type"]), ("SagaStarted", "SagaCompleted"))

    def test_main_readme(self):
        lines = self.run_block(os.path.join(ROOT, "README.md"), "## Commands and queries")
        self.assertEqual(lines[0]["outcome"], "accepted")
        self.assertEqual([r["status"] for r in lines[1]["results"]], [201, 422])
        self.assertEqual(lines[2]["items"][0]["state"]["available"], 6)
        self.assertEqual(lines[3]["state"]["holds"], {"o1": 4})
        self.assertEqual(lines[4]["outcome"], "accepted")
        self.assertEqual(lines[5]["items"][0]["state"]["available"], 11)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
