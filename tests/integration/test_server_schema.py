#!/usr/bin/env python3
"""
test_server_schema.py -- the schema registry in `evstore serve`
(src/server/routes_schema.c, serve.c opening DIR/schemas/), driving the real
binary ($EVSTORE_BIN) with stores in temporary directories.

Checked: registering versions over HTTP (201, the record), listing types and
versions, one version with its schema as registered; appends through the
server validated by the registry: an invalid event refused with 422 naming
the JSON pointer and the rule, nothing stored (the stream and the head
unchanged); a warn policy (set with the CLI before the server starts)
stores the invalid event; a compatibility refusal (409 with the keyword's
pointer); bad input: malformed schema JSON (400 with line and column), a
schema outside the subset (422), unknown type or version (404), a bad
version (400), unknown parameters (400 naming them); check, validate,
compat, deprecation with the deprecated policy, policies by scope, a Lua
upcaster put over HTTP; a command whose aggregate emits an invalid event
(422, nothing stored); `evstore schema ... --url` with the local output
and exit codes.

Standard library only; helpers shared with test_server.py.  Prints
"N passed, M failed" as its last line and exits non-zero on failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, Server, WSClient, check_prometheus_text  # noqa: E402

ORDER_V1 = {"type": "object", "required": ["order_id", "amount"], "additionalProperties": False,
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}}
# backward compatible: an optional property added to a closed object
ORDER_V2 = {"type": "object", "required": ["order_id", "amount"], "additionalProperties": False,
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0},
                           "currency": {"type": "string"}}}


class SchemaServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-schema-")
        cls.dir = os.path.join(cls.tmp, "data")
        # a warn policy for one type, set locally before the server holds the store
        os.makedirs(cls.dir)
        with open(os.path.join(cls.tmp, "note.json"), "w") as f:
            json.dump({"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}, f)
        for args in (["register", "Noted", os.path.join(cls.tmp, "note.json")],
                     ["policy", "event-type", "Noted", "--validation", "warn"]):
            r = subprocess.run([BIN, "schema"] + args + ["-d", cls.dir], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        cls.srv = Server(cls.dir).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def req(self, method, path, body=None, ctype="application/json"):
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return self.srv.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})

    def head(self):
        return self.srv.get("/info")[2]["head"]

    def test_register_list_show(self):
        st, _, b = self.req("PUT", "/schemas/Shipped?migration_path=first", {"type": "object"})
        self.assertEqual(st, 201, b)
        self.assertEqual((b["event_type"], b["version"], b["latest"], b["migration_path"]), ("Shipped", 1, 1, "first"))
        st, _, b = self.req("POST", "/schemas/Shipped", {"type": "object"})
        self.assertEqual((st, b["version"]), (201, 2), b)
        st, _, b = self.srv.get("/schemas/Shipped")
        self.assertEqual(st, 200, b)
        self.assertEqual([v["version"] for v in b["versions"]], [1, 2])
        self.assertEqual(b["versions"][0]["upcast_to_next"], "implicit")
        st, _, b = self.srv.get("/schemas")
        self.assertIn("Shipped", [t["event_type"] for t in b["types"]])
        self.assertIn("Noted", [t["event_type"] for t in b["types"]])
        st, _, b = self.srv.get("/schemas/Shipped/1")
        self.assertEqual((st, b["schema"]), (200, {"type": "object"}), b)

    def test_invalid_append_refused_nothing_stored(self):
        st, _, b = self.req("PUT", "/schemas/OrderPlaced", ORDER_V1)
        self.assertEqual(st, 201, b)
        st, _, b = self.srv.post("/streams/order-1", {"event_type": "OrderPlaced",
                                                      "data": {"order_id": "o1", "amount": 5}})
        self.assertEqual(st, 201, b)
        h = self.head()
        for data, pointer, keyword in (({"order_id": "o1", "amount": -5}, "/amount", "minimum"),
                                       ({"order_id": "o1"}, "/amount", "required"),
                                       ({"order_id": 7, "amount": 1}, "/order_id", "type")):
            st, _, b = self.srv.post("/streams/order-1", [{"event_type": "Other", "data": {}},
                                                          {"event_type": "OrderPlaced", "data": data}])
            self.assertEqual(st, 422, b)
            self.assertEqual((b["detail"]["pointer"], b["detail"]["keyword"]), (pointer, keyword), b)
            self.assertIn("event 2 (OrderPlaced version 1)", b["error"])
            self.assertIn(pointer, b["error"])
        self.assertEqual(self.head(), h)
        st, _, b = self.srv.get("/streams/order-1")
        self.assertEqual(b["version"], 1)
        # an unregistered version is refused too
        st, _, b = self.srv.post("/streams/order-1", {"event_type": "OrderPlaced", "event_version": 3,
                                                      "data": {"order_id": "o1", "amount": 1}})
        self.assertEqual((st, b["detail"]["keyword"]), (422, "version"), b)
        # the next version, then an event of it
        st, _, b = self.req("PUT", "/schemas/OrderPlaced", ORDER_V2)
        self.assertEqual((st, b["version"]), (201, 2), b)
        st, _, b = self.srv.post("/streams/order-1", {"event_type": "OrderPlaced", "event_version": 2,
                                                      "data": {"order_id": "o1", "amount": 1, "currency": "EUR"}})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.head(), h + 1)

    def test_warn_policy_stores(self):
        h = self.head()
        st, _, b = self.srv.post("/streams/note-1", {"event_type": "Noted", "data": {"text": 5}})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.head(), h + 1)

    def test_metrics(self):
        st, _, b = self.req("PUT", "/schemas/Counted", {"type": "object", "required": ["k"]})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.srv.post("/streams/counted-1", {"event_type": "Counted", "data": {"k": 1}})[0], 201)
        for _ in range(2):
            self.assertEqual(self.srv.post("/streams/counted-1", {"event_type": "Counted", "data": {}})[0], 422)
        self.assertEqual(self.srv.post("/streams/note-2", {"event_type": "Noted", "data": {}})[0], 201)
        st, _, text = self.srv.get("/metrics")
        self.assertEqual(st, 200)
        check_prometheus_text(self, text)
        self.assertIn('evstore_schema_validated_total{event_type="Counted"} 3\n', text)
        self.assertIn('evstore_schema_refused_total{event_type="Counted"} 2\n', text)
        self.assertRegex(text, r'evstore_schema_warned_total\{event_type="Noted"\} [1-9]')
        self.assertIn('evstore_http_requests_total{route="schemas"', text)

    def test_upcast_latest_reads(self):
        st, _, b = self.req("PUT", "/schemas/Priced", {"type": "object", "required": ["amount"],
                                                        "properties": {"amount": {"type": "number"}}})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.srv.post("/streams/priced-1", {"event_type": "Priced", "data": {"amount": 3}})[0], 201)
        # version 2 includes version 1 (only loosens): the step is implicit
        st, _, b = self.req("PUT", "/schemas/Priced", {"type": "object",
                                                        "properties": {"amount": {"type": "number"}}})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.srv.post("/streams/priced-1", {"event_type": "Priced", "event_version": 2,
                                                             "data": {"amount": 4}})[0], 201)
        plain = self.srv.get("/streams/priced-1")[2]["events"]
        self.assertEqual([e["event_version"] for e in plain], [1, 2])
        self.assertNotIn("stored_version", plain[0])
        up = self.srv.get("/streams/priced-1?upcast=latest")[2]["events"]
        self.assertEqual([e["event_version"] for e in up], [2, 2])
        self.assertEqual(up[0]["stored_version"], 1)
        self.assertEqual(up[0]["data"], {"amount": 3})
        allp = self.srv.get("/all?type=Priced&upcast=latest")[2]["events"]
        self.assertEqual([(e["event_version"], e.get("stored_version")) for e in allp], [(2, 1), (2, None)])
        # SSE: the same events, upcast, from position 1 of the stream's events
        first = allp[0]["global_position"]
        c = self.srv.conn()
        c.request("GET", "/subscribe?type=Priced&upcast=latest&from=%d" % first)
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        seen = []
        while len(seen) < 2:
            line = r.fp.readline().decode()
            if line.startswith("data: "):
                e = json.loads(line[6:])
                seen.append((e["event_version"], e.get("stored_version")))
        c.close()
        self.assertEqual(seen, [(2, 1), (2, None)])
        st, _, b = self.srv.get("/all?upcast=oldest")
        self.assertEqual(st, 400, b)
        self.assertIn("upcast", b["error"])

    def test_check_validate_compat(self):
        v1 = {"type": "object", "properties": {"n": {"type": "integer"}}}
        self.assertEqual(self.req("PUT", "/schemas/Checked", v1)[0], 201)
        tighter = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
        st, _, b = self.req("POST", "/schemas/Checked/check", tighter)
        self.assertEqual((st, b["compatible"], b["violation"]["keyword"]), (200, False, "required"), b)
        st, _, b = self.req("POST", "/schemas/Checked/check", v1)
        self.assertEqual((st, b["compatible"], b["next_version"]), (200, True, 2), b)
        self.assertEqual(self.srv.get("/schemas/Checked")[2]["latest"], 1)  # nothing registered
        st, _, b = self.req("POST", "/schemas/Checked/1/validate", {"n": "x"})
        self.assertEqual((st, b["valid"], b["pointer"], b["keyword"]), (200, False, "/n", "type"), b)
        st, _, b = self.req("POST", "/schemas/Checked/1/validate", {"n": 1})
        self.assertEqual((st, b), (200, {"valid": True}))
        self.assertEqual(self.req("POST", "/schemas/Checked/9/validate", {"n": 1})[0], 404)
        st, _, b = self.srv.get("/schemas/Checked/compat")
        self.assertEqual((st, b["compat"]), (200, "backward"), b)
        st, _, b = self.req("PUT", "/schemas/Checked/compat", {"compat": "sideways"})
        self.assertEqual(st, 422, b)
        st, _, b = self.req("PUT", "/schemas/Checked/compat", {"compat": "none"})
        self.assertEqual((st, b["compat"]), (200, "none"), b)
        st, _, b = self.req("PUT", "/schemas/Checked", tighter)  # allowed now
        self.assertEqual((st, b["version"], b["compat"]), (201, 2, "none"), b)

    def test_deprecation_and_policies(self):
        sch = {"type": "object"}
        for _ in range(2):
            self.assertEqual(self.req("PUT", "/schemas/Moved", sch)[0], 201)
        st, _, b = self.req("POST", "/schemas/Moved/1/deprecate", None)
        self.assertEqual((st, b["deprecated"]), (200, True), b)
        # default deprecated policy: warn -> stored
        self.assertEqual(self.srv.post("/streams/moved-1", {"event_type": "Moved", "data": {}})[0], 201)
        st, _, b = self.srv.get("/schema-policies/event-types/Moved")
        self.assertEqual(st, 404, b)
        st, _, b = self.req("PUT", "/schema-policies/event-types/Moved", {"deprecated": "refuse"})
        self.assertEqual((st, b["deprecated"], b["validation"]), (200, "refuse", "enforce"), b)
        h = self.head()
        st, _, b = self.srv.post("/streams/moved-1", {"event_type": "Moved", "data": {}})
        self.assertEqual((st, b["detail"]["keyword"]), (422, "deprecated"), b)
        self.assertEqual(self.head(), h)
        self.assertEqual(self.srv.post("/streams/moved-1", {"event_type": "Moved", "event_version": 2,
                                                            "data": {}})[0], 201)
        st, _, b = self.req("PUT", "/schema-policies/event-types/Moved", {"deprecated": "never"})
        self.assertEqual(st, 422, b)
        st, _, b = self.req("PUT", "/schema-policies/event-types/Moved", {"colour": "red"})
        self.assertEqual(st, 422, b)
        self.assertIn("colour", b["error"])
        st, _, b = self.srv.request("DELETE", "/schemas/Moved/1/deprecate")
        self.assertEqual((st, b["deprecated"]), (200, False), b)
        self.assertEqual(self.srv.post("/streams/moved-1", {"event_type": "Moved", "data": {}})[0], 201)
        st, _, b = self.srv.request("DELETE", "/schema-policies/event-types/Moved")
        self.assertEqual((st, b["cleared"]), (200, True), b)
        self.assertEqual(self.srv.request("DELETE", "/schema-policies/event-types/Moved")[0], 404)
        st, _, b = self.srv.get("/schema-policies/default")
        self.assertEqual((st, b["validation"], b["deprecated"]), (200, "enforce", "warn"), b)
        st, _, b = self.req("PUT", "/schema-policies/stream-types/scratch", {"validation": "off"})
        self.assertEqual((st, b["validation"]), (200, "off"), b)
        self.assertEqual(self.req("PUT", "/schemas/Scratched", {"type": "object", "required": ["k"]})[0], 201)
        self.assertEqual(self.srv.post("/streams/scratch-1", {"event_type": "Scratched", "data": {}})[0], 201)
        self.assertEqual(self.srv.post("/streams/kept-1", {"event_type": "Scratched", "data": {}})[0], 422)

    def test_lua_upcaster(self):
        v1 = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}
        v2 = {"type": "object", "required": ["amount", "currency"],
              "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}}}
        self.assertEqual(self.req("PUT", "/schemas/Charged", v1)[0], 201)
        self.assertEqual(self.srv.post("/streams/charged-1", {"event_type": "Charged", "data": {"amount": 2}})[0], 201)
        self.assertEqual(self.req("PUT", "/schemas/Charged/compat", {"compat": "none"})[0], 200)
        self.assertEqual(self.req("PUT", "/schemas/Charged", v2)[0], 201)
        # no step from 1 to 2 yet: the upcast read fails loudly, the plain one works
        st, _, b = self.srv.get("/streams/charged-1?upcast=latest")
        self.assertEqual(st, 500, b)
        self.assertIn("global position", b["error"])
        self.assertEqual(self.srv.get("/streams/charged-1")[0], 200)
        c = self.srv.conn()
        c.request("GET", "/subscribe?type=Charged&upcast=latest&from=1")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        lines = []
        while not any(l.startswith("data: ") for l in lines):
            lines.append(r.fp.readline().decode())
        c.close()
        self.assertIn("event: upcast_error\n", lines)
        self.assertIn("no upcaster from version 1 to 2", "".join(lines))
        lua = 'return function(data, e) data.currency = "EUR"; return data end'
        st, _, b = self.req("PUT", "/schemas/Charged/1/upcaster", lua, ctype="text/x-lua")
        self.assertEqual((st, b["upcaster"]), (201, "lua"), b)
        ev = self.srv.get("/streams/charged-1?upcast=latest")[2]["events"][0]
        self.assertEqual((ev["data"], ev["event_version"], ev["stored_version"]),
                         ({"amount": 2, "currency": "EUR"}, 2, 1))
        self.assertEqual(self.srv.get("/streams/charged-1")[2]["events"][0]["data"], {"amount": 2})
        st, _, b = self.req("PUT", "/schemas/Charged/1/upcaster", "return 5 +", ctype="text/x-lua")
        self.assertIn(st, (409, 422), b)
        st, _, b = self.srv.request("DELETE", "/schemas/Charged/1/upcaster")
        self.assertEqual((st, b["upcaster"]), (200, None), b)

    def ws_events(self, sub, n):
        """Subscribe over /ws with sub, return the next n messages after 'subscribed'."""
        ws = WSClient(self.srv.port)
        try:
            self.assertEqual(ws.status, 101)
            ws.send(dict(sub, op="subscribe"))
            m = ws.recv()
            self.assertEqual(m.get("op"), "subscribed", m)
            return [ws.recv() for _ in range(n)]
        finally:
            ws.close()

    def test_ws_upcast_and_tag_match(self):
        self.assertEqual(self.req("PUT", "/schemas/Tallied", {"type": "object", "required": ["n"],
                                                              "properties": {"n": {"type": "integer"}}})[0], 201)
        st, _, b = self.srv.post("/streams/tallied-1", {"event_type": "Tallied", "data": {"n": 1},
                                                        "tags": ["ws:a", "ws:b"]})
        self.assertEqual(st, 201, b)
        first = b["first_global_position"]
        self.assertEqual(self.req("PUT", "/schemas/Tallied", {"type": "object",
                                                              "properties": {"n": {"type": "integer"}}})[0], 201)
        self.assertEqual(self.srv.post("/streams/tallied-1", {"event_type": "Tallied", "event_version": 2,
                                                              "data": {"n": 2}, "tags": ["ws:a"]})[0], 201)
        up = self.ws_events({"from": first, "upcast": "latest", "filter": {"type": "Tallied"}}, 2)
        self.assertEqual([(m["op"], m["event"]["event_version"], m["event"].get("stored_version")) for m in up],
                         [("event", 2, 1), ("event", 2, None)])
        plain = self.ws_events({"from": first, "filter": {"type": "Tallied"}}, 2)
        self.assertEqual([(m["event"]["event_version"], m["event"].get("stored_version")) for m in plain],
                         [(1, None), (2, None)])
        # tag_match over WebSocket as on /subscribe: all of the tags, or any of them
        both = self.ws_events({"from": first, "filter": {"tag": ["ws:a", "ws:b"], "tag_match": "all"}}, 1)
        self.assertEqual(both[0]["event"]["data"], {"n": 1})
        ws = WSClient(self.srv.port)
        try:
            ws.send({"op": "subscribe", "from": first, "filter": {"tag": ["ws:a", "ws:b"], "tag_match": "all"}})
            self.assertEqual(ws.recv()["op"], "subscribed")
            self.assertEqual(ws.recv()["event"]["data"], {"n": 1})
            # the second event has only ws:a: nothing more arrives before the next append of both tags
            self.assertEqual(self.srv.post("/streams/tallied-2", {"event_type": "Tallied", "event_version": 2,
                                                                  "data": {"n": 3}, "tags": ["ws:b", "ws:a"]})[0], 201)
            self.assertEqual(ws.recv()["event"]["data"], {"n": 3})
        finally:
            ws.close()
        anyof = self.ws_events({"from": first, "filter": {"tag": ["ws:a", "ws:b"], "tag_match": "any"}}, 3)
        self.assertEqual([m["event"]["data"]["n"] for m in anyof], [1, 2, 3])
        # bad values are refused, naming the field
        for sub, needle in (({"upcast": "oldest"}, "upcast"), ({"filter": {"tag": "x", "tag_match": "some"}}, "tag_match"),
                            ({"upcast": 1}, "upcast")):
            ws = WSClient(self.srv.port)
            try:
                ws.send(dict(sub, op="subscribe"))
                m = ws.recv()
                self.assertEqual(m.get("op"), "error", m)
                self.assertIn(needle, m["error"])
            finally:
                ws.close()

    def test_ws_upcast_error(self):
        v1 = {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}
        v2 = {"type": "object", "required": ["x", "y"], "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}
        self.assertEqual(self.req("PUT", "/schemas/Stuck", v1)[0], 201)
        self.assertEqual(self.srv.post("/streams/stuck-1", {"event_type": "Stuck", "data": {"x": 1}})[0], 201)
        pos = self.head()
        self.assertEqual(self.req("PUT", "/schemas/Stuck/compat", {"compat": "none"})[0], 200)
        self.assertEqual(self.req("PUT", "/schemas/Stuck", v2)[0], 201)
        self.assertEqual(self.srv.post("/streams/stuck-1", {"event_type": "Stuck", "event_version": 2,
                                                            "data": {"x": 2, "y": 2}})[0], 201)
        # no step from 1 to 2: said for that event, and the subscription reads on
        got = self.ws_events({"from": pos, "upcast": "latest", "filter": {"type": "Stuck"}}, 2)
        self.assertEqual(got[0], {"op": "upcast_error", "global_position": pos})
        self.assertEqual((got[1]["op"], got[1]["event"]["data"]), ("event", {"x": 2, "y": 2}))

    def test_hosted_projection_and_aggregate_see_latest(self):
        v1 = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}
        v2 = {"type": "object", "required": ["amount", "currency"],
              "properties": {"amount": {"type": "integer"}, "currency": {"type": "string"}}}
        agg = """
return {
  init = function() return { total = 0, currencies = {}, stored = {} } end,
  evolve = { Deposited = function(s, e)
      s.total = s.total + e.data.amount
      s.currencies[#s.currencies + 1] = e.data.currency or "none"
      s.stored[#s.stored + 1] = e.stored_version
  end },
  commands = { Deposit = { fields = { amount = "integer" }, decide = function(s, c)
      return { { type = "Deposited", data = { amount = c.data.amount } } } end } },
}
"""
        st, _, b = self.req("PUT", "/aggregates/wallet", agg, ctype="text/x-lua")
        self.assertIn(st, (200, 201), b)
        self.assertEqual(self.req("PUT", "/schemas/Deposited", v1)[0], 201)
        st, _, b = self.srv.post("/commands/Deposit", {"aggregate_id": "w1", "data": {"amount": 5}})
        self.assertEqual(st, 201, b)
        self.assertEqual(self.req("PUT", "/schemas/Deposited/compat", {"compat": "none"})[0], 200)
        self.assertEqual(self.req("PUT", "/schemas/Deposited", v2)[0], 201)
        lua = 'return function(data, e) data.currency = "EUR"; return data end'
        self.assertEqual(self.req("PUT", "/schemas/Deposited/1/upcaster", lua, ctype="text/x-lua")[0], 201)
        # the stored event is version 1 without a currency; the aggregate evolves from version 2
        ev = self.srv.get("/streams/wallet-w1")[2]["events"][0]
        self.assertEqual((ev["event_version"], ev["data"]), (1, {"amount": 5}))
        st, _, b = self.srv.get("/aggregates/wallet/w1?use_snapshot=false")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["state"]["currencies"], b["state"]["stored"]), (["EUR"], [1]), b)
        # a projection the server runs sees the same
        proj = """
return {
  filter = { event_types = {"Deposited"} },
  partition = "none",
  init = function() return { seen = {} } end,
  handlers = { Deposited = function(s, e)
      s.seen[#s.seen + 1] = { v = e.event_version, stored = e.stored_version, cur = e.data.currency } end },
}
"""
        st, _, b = self.req("PUT", "/projections/deposits", proj, ctype="text/x-lua")
        self.assertIn(st, (200, 201), b)
        deadline = time.time() + 30
        while True:
            st, _, s = self.srv.get("/projections/deposits/state")
            if st == 200 and s.get("seen"):
                break
            self.assertLess(time.time(), deadline, (st, s))
            time.sleep(0.05)
        self.assertEqual(s["seen"], [{"v": 2, "stored": 1, "cur": "EUR"}])

    def test_app_command_validated(self):
        lua = """
return {
  init = function() return { n = 0 } end,
  evolve = { Added = function(s, e) s.n = s.n + e.data.k end },
  commands = { Add = { fields = { k = "integer" }, decide = function(s, c)
      return { { type = "Added", data = { k = c.data.k } } } end } },
}
"""
        st, _, b = self.req("PUT", "/aggregates/ctr", lua, ctype="text/x-lua")
        self.assertIn(st, (200, 201), b)
        st, _, b = self.req("PUT", "/schemas/Added", {"type": "object", "required": ["k"],
                                                      "properties": {"k": {"type": "integer", "minimum": 1}}})
        self.assertEqual(st, 201, b)
        st, _, b = self.srv.post("/commands/Add", {"aggregate_id": "a1", "data": {"k": 2}})
        self.assertEqual(st, 201, b)
        h = self.head()
        st, _, b = self.srv.post("/commands/Add", {"aggregate_id": "a1", "data": {"k": 0}})
        self.assertEqual(st, 422, b)
        self.assertIn("/k", b["error"])
        self.assertIn("minimum", b["error"])
        self.assertEqual(self.head(), h)

    def cli(self, *args, stdin=None):
        url = "http://127.0.0.1:%d" % self.srv.port
        r = subprocess.run([BIN, "schema"] + list(args) + ["--url", url], input=stdin, capture_output=True, text=True,
                           env=dict(os.environ, EVSTORE_DIR="", EVSTORE_URL=""))
        return r.returncode, [json.loads(l) for l in r.stdout.splitlines()], r.stderr

    def test_cli_url(self):
        code, out, err = self.cli("register", "Remote", "-", "--migration-path", "from the CLI",
                                  stdin=json.dumps({"type": "object", "required": ["k"]}))
        self.assertEqual(code, 0, err)
        self.assertEqual((out[0]["version"], out[0]["migration_path"]), (1, "from the CLI"))
        code, out, err = self.cli("register", "Remote", "-", stdin=json.dumps({"type": "object", "required": ["k"]}))
        self.assertEqual((code, out[0]["version"]), (0, 2), err)
        code, out, err = self.cli("list", "Remote")
        self.assertEqual([(o["event_type"], o["version"]) for o in out], [("Remote", 1), ("Remote", 2)], err)
        code, out, err = self.cli("list")
        self.assertIn(("Remote", 2), [(o["event_type"], o["version"]) for o in out])
        code, out, err = self.cli("show", "Remote")
        self.assertEqual((code, out[0]["version"], out[0]["schema"]), (0, 2, {"type": "object", "required": ["k"]}))
        code, out, err = self.cli("show", "Remote", "1")
        self.assertEqual((code, out[0]["version"]), (0, 1), err)
        code, out, err = self.cli("show", "Nope")
        self.assertEqual(code, 2, err)
        code, out, err = self.cli("validate", "Remote", "1", "-", stdin="{}")
        self.assertEqual((code, out[0]["valid"], out[0]["pointer"]), (4, False, "/k"), err)
        self.assertIn("required", err)
        code, out, err = self.cli("validate", "Remote", "1", "-", stdin='{"k":1}')
        self.assertEqual((code, out), (0, [{"valid": True}]), err)
        code, out, err = self.cli("check", "Remote", "-", stdin=json.dumps({"type": "string"}))
        self.assertEqual(code, 3, err)
        code, out, err = self.cli("register", "Remote", "-", stdin='{"type": "object", "patternProperties": {}}')
        self.assertEqual(code, 4, err)
        self.assertIn("patternProperties", err)
        code, out, err = self.cli("deprecate", "Remote", "1")
        self.assertEqual((code, out[0]["deprecated"]), (0, True), err)
        code, out, err = self.cli("deprecate", "Remote", "1", "--undo")
        self.assertEqual((code, out[0]["deprecated"]), (0, False), err)
        code, out, err = self.cli("compat", "Remote", "full")
        self.assertEqual((code, out[0]["compat"]), (0, "full"), err)
        code, out, err = self.cli("policy", "default")
        self.assertEqual(code, 1, err)

    def test_compatibility_refusal(self):
        st, _, b = self.req("PUT", "/schemas/Paid", {"type": "object", "properties": {"n": {"type": "integer"}}})
        self.assertEqual(st, 201, b)
        st, _, b = self.req("PUT", "/schemas/Paid", {"type": "object", "required": ["n"],
                                                     "properties": {"n": {"type": "integer"}}})
        self.assertEqual(st, 409, b)
        self.assertEqual(b["detail"]["keyword"], "required", b)
        self.assertEqual(self.srv.get("/schemas/Paid")[2]["latest"], 1)

    def test_bad_input(self):
        st, _, b = self.req("PUT", "/schemas/Bad", '{"type": "object",')
        self.assertEqual(st, 400, b)
        self.assertIn("line", b["detail"])
        st, _, b = self.req("PUT", "/schemas/Bad", {"type": "object", "patternProperties": {}})
        self.assertEqual(st, 422, b)
        self.assertIn("patternProperties", b["error"])
        st, _, b = self.req("PUT", "/schemas/Bad", {"type": "object"}, ctype="text/plain")
        self.assertEqual(st, 415, b)
        self.assertEqual(self.srv.get("/schemas/Bad")[0], 404)
        self.assertEqual(self.srv.get("/schemas/NoSuchType")[0], 404)
        self.assertEqual(self.srv.get("/schemas/NoSuchType/1")[0], 404)
        st, _, b = self.srv.get("/schemas/Noted/0")
        self.assertEqual(st, 400, b)
        st, _, b = self.srv.get("/schemas/Noted/x")
        self.assertEqual(st, 400, b)
        st, _, b = self.srv.get("/schemas?bogus=1")
        self.assertEqual((st, b["detail"]["parameter"]), (400, "bogus"), b)
        st, _, b = self.req("PUT", "/schemas/Bad?versoin=2", {"type": "object"})
        self.assertEqual((st, b["detail"]["parameter"]), (400, "versoin"), b)
        st, _, b = self.req("PUT", "/schemas/Bad?version=5", {"type": "object"})
        self.assertIn(st, (409, 422), b)
        self.assertEqual(self.srv.get("/schemas/Bad")[0], 404)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
