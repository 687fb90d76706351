#!/usr/bin/env python3
"""
test_server_query.py -- what a request says, read strictly, against the real
`evstore serve` (helpers shared with test_server.py).

Checked: every route refuses a query parameter it does not take (400 naming
it, never an unfiltered answer), a parameter given twice or without a value;
`limit` is 1..max everywhere (0 is refused); the tag (any of) and causation
filters of /all, /subscribe and /ws; an event id re-sent with other content
is a 409 that says so and stores nothing, while a true retry answers the
original positions and recorded_at; events are numbered from 1 in errors;
`PUT /groups/N` and `PUT /subscriptions/N` without a body take the defaults.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import TIMEOUT, SSEReader, Server, WSClient, ev  # noqa: E402


class QueryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-query-")
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--heartbeat-ms", "200").start()

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

    # ------------------------------------------------------- parameters

    def test_unknown_parameters_are_refused_by_every_route(self):
        s = self.srv
        s.post("/streams/q-1", ev("QA"))
        head = s.head()
        for path in ("/all?tags=vip", "/all?causation=x", "/all?stream=q-1", "/streams?prefx=q",
                     "/streams/q-1?direction=backward&offset=3", "/streams/q-1/1?x=1", "/info?verbose=1",
                     "/health?x", "/metrics?format=json", "/subscribe?from=1&filter=x",
                     "/projections?kind=projection", "/groups?x=1", "/subscriptions?sort=name"):
            name = path.split("?")[1].split("&")[-1].split("=")[0]
            b = self.assertError(s.get(path), 400, "unknown parameter " + name)
            self.assertEqual(b["detail"]["parameter"], name, path)
            self.assertIsInstance(b["detail"]["known"], list)
        # the message lists what the route takes
        b = self.assertError(s.get("/all?tagz=1"), 400)
        self.assertIn("tag", b["detail"]["known"])
        self.assertIn("causation_id", b["error"])
        # appends: a misspelt expected version is not "any"
        b = self.assertError(s.post("/streams/q-1?expect=no-stream", ev()), 400, "unknown parameter expect")
        self.assertEqual(s.head(), head)
        # a parameter given twice, or without a value
        self.assertError(s.get("/all?from=1&from=2"), 400, "more than once")
        self.assertError(s.get("/all?type=A&type=B"), 400, "more than once", "comma-separated")
        self.assertError(s.get("/all?limit"), 400, "has no value")
        # known ones still work, and the empty query too
        self.assertEqual(s.get("/all?from=1&limit=1")[0], 200)
        self.assertEqual(s.get("/all?")[0], 200)
        self.assertEqual(s.get("/streams/q-1?from=1&limit=1&direction=forward")[0], 200)

    def test_limit_zero_is_refused_everywhere(self):
        s = self.srv
        s.post("/streams/lim-1", ev())
        for path in ("/all?limit=0", "/streams?limit=0", "/streams/lim-1?limit=0", "/subscriptions?limit=0",
                     "/groups?limit=0", "/projections?limit=0"):
            b = self.assertError(s.get(path), 400, "limit")
            self.assertEqual(b["detail"]["min"], 1, path)
        self.assertEqual(len(s.get("/all?limit=1")[2]["events"]), 1)

    # ---------------------------------------------------------- filters

    def test_tag_and_causation_filters_on_all(self):
        s = self.srv
        cause = str(uuid.uuid4())
        start = s.head() + 1
        st, _, b = s.post("/streams/tg-1", [ev("TA", tags=["vip", "eu"]), ev("TB", causation_id=cause),
                                            ev("TA", tags=["us"], causation_id=cause), ev("TB", tags=["a,b"]),
                                            ev("TC")])
        self.assertEqual(st, 201, b)

        def positions(q):
            st, _, b = s.get("/all?from=%d&%s" % (start, q))
            self.assertEqual(st, 200, b)
            return [e["global_position"] - start + 1 for e in b["events"]], b

        self.assertEqual(positions("tag=vip")[0], [1])
        self.assertEqual(positions("tag=us,eu")[0], [1, 3])          # any of them
        self.assertEqual(positions("tag=a%2Cb")[0], [4])             # %2C: a comma inside a tag
        self.assertEqual(positions("tag=a,b")[0], [])                # two tags, neither stored
        self.assertEqual(positions("causation_id=" + cause)[0], [2, 3])
        self.assertEqual(positions("causation_id=%s&tag=us" % cause)[0], [3])
        self.assertEqual(positions("type=TA&tag=us")[0], [3])         # on top of an indexed filter
        got, b = positions("tag=nothing")
        self.assertEqual(got, [])
        self.assertEqual(b["next"], start + 5)                         # past what was examined
        st, _, b = s.get("/all?direction=backward&tag=vip,us&limit=10")
        self.assertEqual([e["global_position"] for e in b["events"]][:2], [start + 2, start])
        self.assertError(s.get("/all?tag="), 400, "tag")
        self.assertError(s.get("/all?tag=" + "x" * 256), 400, "tag")
        self.assertError(s.get("/all?causation_id=nope"), 400, "causation_id")

    def test_tag_and_causation_filters_live(self):
        s = self.srv
        cause = str(uuid.uuid4())
        start = s.head() + 1
        sse = SSEReader(s.port, "/subscribe?from=%d&tag=live" % start)
        sse2 = SSEReader(s.port, "/subscribe?from=%d&causation_id=%s" % (start, cause))
        ws = WSClient(s.port)
        ws.send({"op": "subscribe", "from": start, "filter": {"tag": ["live", "x"], "causation_id": cause}})
        self.assertEqual(ws.recv()["op"], "subscribed")
        ws2 = WSClient(s.port)
        ws2.send({"op": "subscribe", "from": start, "filter": {"tag": "live"}})
        self.assertEqual(ws2.recv()["op"], "subscribed")
        s.post("/streams/live-1", [ev("L", {"i": 0}, tags=["live"]), ev("L", {"i": 1}, causation_id=cause),
                                   ev("L", {"i": 2}, tags=["live"], causation_id=cause), ev("L", {"i": 3})])
        self.assertEqual([e["data"]["i"] for _, e in sse.events(2)], [0, 2])
        self.assertEqual([e["data"]["i"] for _, e in sse2.events(2)], [1, 2])
        self.assertEqual([e["data"]["i"] for e in ws.events(1)], [2])
        self.assertEqual([e["data"]["i"] for e in ws2.events(2)], [0, 2])
        # nothing more came for the filtered ones: the next match is the next event they get
        s.post("/streams/live-1", [ev("L", {"i": 4}), ev("L", {"i": 5}, tags=["x"], causation_id=cause)])
        self.assertEqual([e["data"]["i"] for e in ws.events(1)], [5])
        for c in (sse, sse2):
            c.close()
        bad = WSClient(s.port)
        bad.send({"op": "subscribe", "filter": {"causation_id": "nope"}})
        m = bad.recv()
        self.assertEqual(m["op"], "error", m)
        self.assertIn("causation_id", m["error"])
        bad.send({"op": "subscribe", "filter": {"tag": [1]}})
        self.assertEqual(bad.recv()["op"], "error")
        bad.send({"op": "subscribe", "filter": {"tags": ["x"]}})
        m = bad.recv()
        self.assertIn("unknown field", m["error"])
        for c in (ws, ws2, bad):
            c.close()
        st, _, b = s.get("/subscribe?tag=")
        self.assertEqual(st, 400, b)

    # ---------------------------------------------------- idempotency

    def test_resent_event_id_with_other_content_is_a_conflict(self):
        s = self.srv
        eid = str(uuid.uuid4())
        st, _, first = s.post("/streams/idc-1", ev("Paid", {"amount": 10}, event_id=eid))
        self.assertEqual(st, 201, first)
        head = s.head()
        time.sleep(0.01)
        # a true retry: the original positions and recorded_at (not null)
        st, _, again = s.post("/streams/idc-1", ev("Paid", {"amount": 10}, event_id=eid))
        self.assertEqual(st, 200, again)
        self.assertTrue(again["idempotent"])
        self.assertEqual(again["recorded_at"], first["recorded_at"])
        self.assertIsNotNone(again["recorded_at"])
        self.assertEqual(again["first_global_position"], first["first_global_position"])
        # other data, metadata, type under the same id: 409, the stored event stays
        for changed, field in ((ev("Paid", {"amount": 99}, event_id=eid), "data"),
                               (ev("Paid", {"amount": 10}, event_id=eid, metadata={"m": 1}), "metadata"),
                               (ev("Refunded", {"amount": 10}, event_id=eid), "event_type")):
            b = self.assertError(s.post("/streams/idc-1", changed), 409, "already stored",
                                 "with other " + field)
            self.assertEqual(b["detail"]["code"], "EDUPLICATE")
        self.assertEqual(s.head(), head)
        stored = s.get("/streams/idc-1/1")[2]
        self.assertEqual((stored["event_type"], stored["data"]), ("Paid", {"amount": 10}))
        # the same id in another stream is still named as such
        self.assertError(s.post("/streams/idc-2", ev("Paid", {"amount": 10}, event_id=eid)), 409,
                         "another stream")

    # --------------------------------------------------- empty bodies

    def test_put_group_without_a_body_takes_the_defaults(self):
        s = self.srv
        st, _, b = s.request("PUT", "/groups/plain")
        self.assertEqual(st, 201, b)
        self.assertEqual((b["kind"], b["strategy"], b["ack_timeout_ms"], b["max_in_flight"]),
                         ("group", "round_robin", 30000, 10))
        # again: unchanged settings, 200
        st, _, b = s.request("PUT", "/groups/plain")
        self.assertEqual(st, 200, b)
        # an empty JSON body is the same
        st, _, b = s.request("POST", "/groups/plain2", body="", headers={"Content-Type": "application/json"})
        self.assertEqual(st, 201, b)
        # a body still needs its type
        self.assertError(s.request("PUT", "/groups/typed", body='{"max_in_flight":2}'), 415,
                         "or no body at all")
        self.assertError(s.get("/groups/typed"), 404)

    def assert_settings_put_back(self, path, keys):
        def record(b):  # lag_ms is the age of the oldest unread event: it grows by itself
            return {k: v for k, v in b.items() if k != "lag_ms"}
        rec = self.srv.get(path)[2]
        st, _, b = self.srv.request("PUT", path, body={k: rec[k] for k in keys})
        self.assertEqual(st, 200, b)
        self.assertEqual(record(b), record(rec))
        self.assertEqual(record(self.srv.get(path)[2]), record(rec))

    def test_put_subscription_record(self):
        s = self.srv
        s.post("/streams/sr-1", ev())
        head = s.head()
        st, _, b = s.request("PUT", "/subscriptions/mailer")
        self.assertEqual(st, 201, b)
        self.assertEqual((b["kind"], b["checkpoint"], b["stream"]), ("subscription", 0, "$all"))
        st, _, b = s.request("PUT", "/subscriptions/later",
                             body={"from": "now", "filter": {"event_types": ["A", "B"]}, "owner": "billing"})
        self.assertEqual(st, 201, b)
        self.assertEqual(b["checkpoint"], head)
        self.assertEqual((b["filter"]["event_types"], b["owner"]), (["A", "B"], "billing"))
        st, _, b = s.request("PUT", "/subscriptions/one", body={"stream": "sr-1", "from": 2})
        self.assertEqual(st, 201, b)
        self.assertEqual((b["stream"], b["checkpoint"]), ("sr-1", 1))
        # replacing the settings keeps the checkpoint; the stream cannot change
        st, _, b = s.request("PUT", "/subscriptions/later", body={"filter": {"event_types": ["C"]}})
        self.assertEqual(st, 200, b)
        self.assertEqual((b["checkpoint"], b["filter"]["event_types"]), (head, ["C"]))
        self.assertError(s.request("PUT", "/subscriptions/one", body={"stream": "sr-2"}), 422, "reads")
        # a record's own settings put back: "$all" is every stream, as the record shows it
        rec = s.get("/subscriptions/later")[2]
        st, _, b = s.request("PUT", "/subscriptions/later", body={k: rec[k] for k in ("stream", "filter")})
        self.assertEqual(st, 200, b)
        self.assertEqual((b["stream"], b["filter"], b["checkpoint"]), ("$all", rec["filter"], head))
        # a record's settings put back unchanged, "owner": null included: 200, nothing changed
        for name in ("mailer", "later", "one"):
            self.assert_settings_put_back("/subscriptions/" + name, ("owner", "stream", "filter"))
        s.request("PUT", "/groups/put-back", body={"strategy": "pinned", "filter": {"stream_prefix": "sr-"}})
        self.assert_settings_put_back("/groups/put-back", ("owner", "filter", "strategy", "ack_timeout_ms",
                                                           "max_in_flight", "buffer_size", "retry", "on_failure",
                                                           "per_stream_order", "dlq_max_count", "dlq_max_age_ms",
                                                           "checkpoint_every", "checkpoint_ms"))
        st, _, b = s.request("PUT", "/subscriptions/everything", body={"stream": "$all"})
        self.assertEqual((st, b["stream"]), (201, "$all"), b)
        self.assertError(s.request("PUT", "/subscriptions/bad", body={"stream": "$x"}), 422, "reserved")
        self.assertError(s.request("PUT", "/subscriptions/one", body={"stream": "$all"}), 422, "reads")
        # bad settings: 422 naming the field; another kind's name: 409
        b = self.assertError(s.request("PUT", "/subscriptions/bad", body={"frm": 1}), 422, "frm")
        self.assertEqual(b["detail"]["field"], "frm")
        self.assertError(s.request("PUT", "/subscriptions/bad", body={"from": -1}), 422, "from")
        self.assertError(s.request("PUT", "/subscriptions/bad", body={"filter": {"tags": ["x"]}}), 422)
        s.request("PUT", "/groups/taken")
        self.assertError(s.request("PUT", "/subscriptions/taken"), 409, "group")
        self.assertError(s.get("/subscriptions/bad"), 404)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
