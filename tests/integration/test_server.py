#!/usr/bin/env python3
"""
test_server.py -- integration tests of `evstore serve`, driving the real
binary (path in $EVSTORE_BIN) over HTTP on a free loopback port with a
store in a temporary directory.

What is checked is what an HTTP client relies on: every route and status,
the JSON bodies (including the conflict message and the idempotent retry),
bad input of every kind answered with a clear error and nothing stored,
32 concurrent writers with expected versions (versions assigned exactly
once, gapless global positions), Server-Sent Events delivering every event
exactly once and in order across catch-up and live and after a
Last-Event-ID resume, WebSocket subscriptions, /metrics as valid
Prometheus text, and no acknowledged append lost to SIGTERM or SIGKILL.

Standard library only.  Prints "N passed, M failed" as its last line and
exits non-zero when anything failed, so CTest (it_server) reports it.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def find_binary():
    b = os.environ.get("EVSTORE_BIN")
    if b:
        return b
    for d in (os.environ.get("EVS_BUILD_DIR"), os.path.join(ROOT, "build")):
        if d and os.path.exists(os.path.join(d, "evstore")):
            return os.path.join(d, "evstore")
    sys.exit("test_server.py: set EVSTORE_BIN to the evstore binary")


BIN = find_binary()
SLOW = 4 if os.environ.get("EVS_SANITIZED") else 1
TIMEOUT = 60 * SLOW


class Server:
    """One `evstore serve` process on 127.0.0.1:<free port>."""

    def __init__(self, datadir, *extra):
        self.dir = datadir
        self.extra = list(extra)
        self.proc = None
        self.port = None
        self.err = ""

    def start(self):
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [BIN, "serve", "-d", self.dir, "--listen", "127.0.0.1:0"] + self.extra,
            stdout=subprocess.PIPE, stderr=self.errf, env=getattr(self, "env", None))
        line = self.proc.stdout.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.wait(TIMEOUT)
            self.errf.seek(0)
            raise AssertionError("server did not start: %r %s" % (line, self.errf.read().decode()))
        self.port = int(m.group(1))
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(TIMEOUT)
        self.errf.seek(0)
        self.err = self.errf.read().decode("utf-8", "replace")
        self.errf.close()
        self.proc.stdout.close()
        return code

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers dict (lower-case), parsed JSON or text)."""
        own = conn is None
        c = conn or self.conn()
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if own:
            c.close()
        ctype = hdrs.get("content-type", "")
        if ctype.startswith("application/json"):
            return r.status, hdrs, json.loads(raw.decode()) if raw else None
        return r.status, hdrs, raw.decode("utf-8", "replace")

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.request("POST", path, body=body, headers=h)

    def raw(self, data, read_all=True):
        """Send raw bytes; return (status, body text) of the response."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            buf = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                buf += chunk
                if not read_all and b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"content-length:\s*(\d+)", head, re.I)
                    if m and len(rest) >= int(m.group(1)):
                        break
            head, _, rest = buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1]) if head else 0
            return status, rest.decode("utf-8", "replace")
        finally:
            s.close()

    def head(self):
        return self.get("/info")[2]["head"]

    def all_events(self):
        out, frm = [], 1
        while True:
            st, _, b = self.get("/all?from=%d&limit=10000" % frm)
            assert st == 200, b
            out += b["events"]
            if b["end"] or not b["events"]:
                return out
            frm = b["next"]


def ev(t="Tested", data=None, **kw):
    e = {"event_type": t, "data": data if data is not None else {"n": 1}}
    e.update(kw)
    return e


class ServerTest(unittest.TestCase):
    """Tests that share one server (each uses its own streams)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-srv-")
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--max-body", "65536",
                         "--heartbeat-ms", "200").start()

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
        self.assertIn("detail", body)
        for n in needles:
            self.assertIn(n, body["error"])
        return body

    # ------------------------------------------------------------ appends

    def test_append_one_and_many_then_read(self):
        s = self.srv
        st, _, b = s.post("/streams/order-1", ev("OrderPlaced", {"total": 10}, metadata={"who": "t"}))
        self.assertEqual(st, 201, b)
        self.assertEqual((b["stream"], b["version"], b["first_stream_position"]), ("order-1", 1, 1))
        self.assertEqual(len(b["event_ids"]), 1)
        st, _, b2 = s.post("/streams/order-1", [ev("A", {"i": i}) for i in range(3)])
        self.assertEqual(st, 201, b2)
        self.assertEqual((b2["first_stream_position"], b2["last_stream_position"]), (2, 4))
        self.assertEqual(b2["last_global_position"] - b2["first_global_position"], 2)
        st, _, r = s.get("/streams/order-1")
        self.assertEqual(st, 200)
        self.assertEqual([e["stream_position"] for e in r["events"]], [1, 2, 3, 4])
        self.assertEqual(r["events"][0]["data"], {"total": 10})
        self.assertEqual(r["events"][0]["metadata"], {"who": "t"})
        self.assertEqual(r["events"][0]["event_id"], b["event_ids"][0])
        self.assertTrue(r["end"])
        # paging forward and backward
        st, _, p = s.get("/streams/order-1?from=2&limit=2")
        self.assertEqual([e["stream_position"] for e in p["events"]], [2, 3])
        self.assertEqual(p["next"], 4)
        self.assertFalse(p["end"])
        st, _, p = s.get("/streams/order-1?direction=backward&limit=3")
        self.assertEqual([e["stream_position"] for e in p["events"]], [4, 3, 2])
        self.assertEqual(p["next"], 1)
        st, _, p = s.get("/streams/order-1?direction=backward&from=1")
        self.assertEqual([e["stream_position"] for e in p["events"]], [1])
        self.assertIsNone(p["next"])
        # one event
        st, _, e = s.get("/streams/order-1/3")
        self.assertEqual(st, 200)
        self.assertEqual((e["stream_position"], e["data"]), (3, {"i": 1}))
        self.assertError(s.get("/streams/order-1/5"), 404, "no event at position 5")
        self.assertError(s.get("/streams/nosuch-1"), 404, "not found")
        self.assertError(s.get("/streams/nosuch-1/1"), 404, "not found")

    def test_data_bytes_verbatim(self):
        s = self.srv
        body = '{"event_type":"Raw","data":{"b":  1.50e+2,"u":"\\u00e9\u00e9","n":[ ]}}'
        st, _, b = s.post("/streams/raw-1", body)
        self.assertEqual(st, 201, b)
        st, _, txt = s.request("GET", "/streams/raw-1/1")
        c = s.conn()
        c.request("GET", "/streams/raw-1/1")
        raw = c.getresponse().read().decode()
        c.close()
        self.assertIn('"data":{"b":  1.50e+2,"u":"\\u00e9\u00e9","n":[ ]}', raw)

    def test_idempotent_retry(self):
        s = self.srv
        eid = str(uuid.uuid4())
        st, _, b = s.post("/streams/idem-1", [ev(event_id=eid), ev(event_id=str(uuid.uuid4()))])
        self.assertEqual(st, 201, b)
        head = s.head()
        st, _, b2 = s.post("/streams/idem-1", [ev(event_id=eid), ev(event_id=b["event_ids"][1])])
        self.assertEqual(st, 200, b2)
        self.assertTrue(b2["idempotent"])
        self.assertEqual((b2["first_global_position"], b2["last_global_position"]),
                         (b["first_global_position"], b["last_global_position"]))
        self.assertEqual(s.head(), head)
        self.assertEqual(len(s.get("/streams/idem-1")[2]["events"]), 2)
        # the same id at another position is not a retry: 409, nothing stored
        b3 = self.assertError(s.post("/streams/idem-2", ev(event_id=eid)), 409)
        self.assertEqual(b3["detail"]["code"], "EDUPLICATE")
        self.assertEqual(s.head(), head)

    def test_expected_version(self):
        s = self.srv
        st, _, b = s.post("/streams/exp-1", ev(), {"Expected-Version": "no-stream"})
        self.assertEqual(st, 201, b)
        body = self.assertError(s.post("/streams/exp-1", ev(), {"Expected-Version": "no-stream"}), 409)
        self.assertEqual(body["error"], "Concurrency conflict: expected version 0, actual version 1")
        self.assertEqual(body["actual_version"], 1)
        # the shape a metadata write's or delete's 409 has too (evs__respond_conflict)
        self.assertEqual(body["detail"], {"code": "ECONFLICT", "stream": "exp-1", "expected_version": 0})
        body = self.assertError(s.post("/streams/exp-1?expected=5", ev()), 409)
        self.assertEqual(body["error"], "Concurrency conflict: expected version 5, actual version 1")
        st, _, b = s.post("/streams/exp-1?expected=1", ev())
        self.assertEqual((st, b["version"]), (201, 2))
        st, _, b = s.post("/streams/exp-1", ev(), {"Expected-Version": "exists"})
        self.assertEqual((st, b["version"]), (201, 3))
        self.assertError(s.post("/streams/exp-new", ev(), {"Expected-Version": "exists"}), 409,
                         "expected version exists, actual version 0")
        st, _, b = s.post("/streams/exp-1", ev(), {"Expected-Version": "any"})
        self.assertEqual(st, 201)
        head = s.head()
        for bad in ("-1", "abc", "1.5", "99999999999999999999999", "9223372036854775808", ""):
            self.assertError(s.post("/streams/exp-1?expected=" + bad, ev()), 400)
            if bad:
                self.assertError(s.post("/streams/exp-1", ev(), {"Expected-Version": bad}), 400)
        self.assertError(s.post("/streams/exp-1?expected=1", ev(), {"Expected-Version": "2"}), 400, "disagree")
        # a repeated header is refused like a repeated ?expected=, whether or not the values agree
        body = json.dumps(ev())
        for a, b in (("0", "7"), ("4", "4")):
            st, txt = s.raw(("POST /streams/exp-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Expected-Version: %s\r\nexpected-version: %s\r\nContent-Length: %d\r\n"
                             "Connection: close\r\n\r\n%s" % (a, b, len(body), body)).encode())
            self.assertError((st, {}, json.loads(txt)), 400, "Expected-Version", "more than once")
        self.assertEqual(s.head(), head)

    # ---------------------------------------------------------- bad input

    def test_malformed_json_nothing_stored(self):
        s = self.srv
        head = s.head()
        for body, line, col in (('{"event_type":"A","data":{"x":1}', 1, 33),
                                ('{"event_type":"A",\n "data":{"x":1,}}', 2, 16),
                                ('[{"event_type":"A","data":{}},', 1, 31),
                                ('', 1, 1), ('{"event_type":"A","data":{"x":tru}}', 1, 31),
                                ('{"event_type":"A","data":{}} x', 1, 30)):
            b = self.assertError(s.post("/streams/bad-1", body), 400, "malformed JSON")
            self.assertEqual((b["detail"]["line"], b["detail"]["column"]), (line, col), (body, b))
            self.assertIn("line %d, column %d" % (line, col), b["error"])
        self.assertEqual(s.head(), head)
        self.assertError(s.get("/streams/bad-1"), 404)

    def test_invalid_events_422_nothing_stored(self):
        s = self.srv
        head = s.head()
        cases = [
            ({"data": {}}, "event_type"),
            (ev(data=[1, 2]), "data"),
            (ev(data="x"), "data"),
            (ev(event_id="not-a-uuid"), "event_id"),
            (ev(correlation_id="1234"), "correlation_id"),
            (ev(bogus=1), "bogus"),
            (ev(stream_position=3), "stream_position"),
            ([], "no events"),
            ([ev(), 5], "event 2:"),           # events are numbered from 1 everywhere
            ([ev(), {"data": {}}], "event 2:"),
            ("just a string", "string"),
            (ev(t="x" * 300), "event_type"),
            (ev(tags=[1]), "tags"),
            (ev(event_version=-1), "event_version"),
        ]
        for body, needle in cases:
            b = self.assertError(s.post("/streams/inv-1", body if not isinstance(body, str)
                                        else json.dumps(body)), 422)
            self.assertIn(needle, b["error"], body)
            if isinstance(body, list) and len(body) == 2:
                self.assertEqual((b["detail"]["event"], b["detail"]["index"]), (2, 1), b)
        b = self.assertError(s.post("/streams/inv-1", [ev(), ev(tags=["x" * 256])]), 422)
        self.assertIn("event 2:", b["error"])
        self.assertEqual(b["detail"]["event"], 2)
        for n in (256, 1024, 5000):  # however long: 422 with the length, never a 400 about a buffer
            b = self.assertError(s.post("/streams/" + "n" * n, ev()), 422, "%d bytes" % n, "limit is 255")
            self.assertEqual(b["detail"], {"length": n, "limit": 255})
            self.assertError(s.get("/streams/" + "n" * n), 422, "%d bytes" % n)
        self.assertEqual(s.head(), head)
        self.assertError(s.get("/streams/inv-1"), 404)

    def test_content_type(self):
        s = self.srv
        head = s.head()
        self.assertError(s.request("POST", "/streams/ct-1", body=json.dumps(ev()),
                                   headers={"Content-Type": "text/plain"}), 415, "text/plain")
        self.assertError(s.request("POST", "/streams/ct-1", body=json.dumps(ev())), 415)
        self.assertError(s.request("POST", "/streams/ct-1", body=json.dumps(ev()),
                                   headers={"Content-Type": "application/jsonx"}), 415)
        self.assertEqual(s.head(), head)
        st, _, b = s.request("POST", "/streams/ct-1", body=json.dumps(ev()),
                             headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(st, 201, b)

    def test_body_limit_413(self):
        s = self.srv
        head = s.head()
        big = json.dumps(ev(data={"x": "y" * 70000}))
        # declared length over the limit: refused before the body is read
        st, body = s.raw(b"POST /streams/big-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000000\r\nConnection: close\r\n\r\n" + b"{" * 1000)
        self.assertEqual(st, 413, body)
        self.assertIn("over the limit", json.loads(body)["error"])
        # chunked upload growing past the limit
        chunks = b""
        data = big.encode()
        for i in range(0, len(data), 8192):
            part = data[i:i + 8192]
            chunks += b"%x\r\n" % len(part) + part + b"\r\n"
        chunks += b"0\r\n\r\n"
        st, body = s.raw(b"POST /streams/big-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
        self.assertEqual(st, 413, body)
        # a body just under the limit is fine
        st, _, b = s.post("/streams/big-1", ev(data={"x": "y" * 60000}))
        self.assertEqual(st, 201, b)
        self.assertEqual(s.head(), head + 1)

    def test_stream_name_path_tricks(self):
        s = self.srv
        head = s.head()
        for path, status in (("/streams/..", 400), ("/streams/.", 400), ("/streams/%2e%2E", 400),
                             ("/streams/a%00b", 400), ("/streams/%00", 400), ("/streams/a%ffb", 400),
                             ("/streams/a%c3", 400), ("/streams/%zz", 400), ("/streams/a%2", 400),
                             ("/streams/a%01b", 400), ("/streams/%24all", 422), ("/streams/$x", 422)):
            st, body = s.raw(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: 2\r\nConnection: close\r\n\r\n{}" % path).encode())
            b = self.assertError((st, {}, json.loads(body)), status)
            self.assertIn("stream name", b["error"], path)
            st, body = s.raw(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            self.assertEqual(st, status, (path, body))
        self.assertEqual(s.head(), head)
        # an encoded slash is part of the name, not a separator
        st, _, b = s.post("/streams/a%2Fb", ev())
        self.assertEqual((st, b["stream"]), (201, "a/b"))
        st, _, e = s.get("/streams/a%2fb/1")
        self.assertEqual((st, e["stream"]), (200, "a/b"))
        self.assertError(s.get("/streams/a/b"), 400)  # stream "a", position "b"
        names = [x["stream"] for x in s.get("/streams?prefix=a%2F")[2]["streams"]]
        self.assertEqual(names, ["a/b"])
        # UTF-8 names round-trip
        st, _, b = s.post("/streams/caf%C3%A9-1", ev())
        self.assertEqual((st, b["stream"]), (201, "caf\u00e9-1"))
        self.assertEqual(s.get("/streams/caf%C3%A9-1")[2]["events"][0]["stream"], "caf\u00e9-1")

    def test_numbers(self):
        s = self.srv
        s.post("/streams/num-1", ev())
        for q in ("from=-1", "from=abc", "from=1.5", "from=18446744073709551616", "limit=-5",
                  "limit=10001", "limit=99999999999999999999", "limit=", "from=%31"):
            self.assertError(s.get("/streams/num-1?" + q), 400, q.split("=")[0])
            self.assertError(s.get("/all?" + q), 400, q.split("=")[0])
        self.assertError(s.get("/streams?limit=-1"), 400, "limit")
        for p in ("0", "-1", "abc", "99999999999999999999999", "1e3"):
            self.assertError(s.get("/streams/num-1/" + p), 400, "position")
        # a long segment is not cut to a number: its first 31 characters are "0...01"
        b = self.assertError(s.get("/streams/num-1/" + "0" * 30 + "1xyz"), 400, "not a stream position")
        self.assertEqual(b["detail"], {"length": 34, "limit": 31})
        self.assertEqual(s.get("/streams/num-1/" + "0" * 30 + "1")[0], 200)
        self.assertError(s.get("/all?direction=sideways"), 400, "direction")

    def test_methods_and_routes(self):
        s = self.srv
        # (DELETE /streams/S is a stream delete: test_server_stream_meta.py)
        for m, p in (("PUT", "/streams/x-1"), ("PATCH", "/streams/x-1"), ("POST", "/all"),
                     ("POST", "/streams"), ("PATCH", "/info"), ("POST", "/health"), ("POST", "/streams/x-1/1")):
            st, h, b = s.request(m, p, body="{}", headers={"Content-Type": "application/json"})
            self.assertEqual(st, 405, (m, p, b))
            self.assertIn("GET", h.get("allow", ""))
            self.assertIn("not allowed", b["error"])
        for p in ("/nope", "/streams/a/1/2", "/all/x", "/streams/"):  # "/" is the console (test_console_static.py)
            self.assertError(s.get(p), 404)
        self.assertError(s.get("/streams/x-1"), 404)  # unknown stream, nothing created by the 405s
        st, _ = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        self.assertEqual(st, 431)

    # -------------------------------------------------------------- lists

    def test_list_streams_paged(self):
        s = self.srv
        for i in range(5):
            self.assertEqual(s.post("/streams/lst-%d" % i, ev())[0], 201)
        st, _, b = s.get("/streams?prefix=lst-&limit=2")
        self.assertEqual([x["stream"] for x in b["streams"]], ["lst-0", "lst-1"])
        self.assertEqual(b["next_after"], "lst-1")
        st, _, b = s.get("/streams?prefix=lst-&limit=2&after=lst-1")
        self.assertEqual([x["stream"] for x in b["streams"]], ["lst-2", "lst-3"])
        st, _, b = s.get("/streams?prefix=lst-&after=lst-3")
        self.assertEqual([x["stream"] for x in b["streams"]], ["lst-4"])
        self.assertIsNone(b["next_after"])
        x = b["streams"][0]
        self.assertEqual((x["stream_type"], x["version"]), ("lst", 1))
        self.assertError(s.get("/streams?prefix=%00"), 400, "prefix")

    def test_all_filters(self):
        s = self.srv
        corr = str(uuid.uuid4())
        start = s.head() + 1
        s.post("/streams/flt-1", [ev("FA"), ev("FB", correlation_id=corr), ev("FA")])
        s.post("/streams/other_flt-1", [ev("FB"), ev("FC", stream_type="special")])
        st, _, b = s.get("/all?from=%d" % start)
        self.assertEqual([e["global_position"] for e in b["events"]], list(range(start, start + 5)))
        self.assertEqual(b["next"], start + 5)
        self.assertTrue(b["end"])
        st, _, b = s.get("/all?from=%d&type=FA" % start)
        self.assertEqual([e["event_type"] for e in b["events"]], ["FA", "FA"])
        st, _, b = s.get("/all?from=%d&type=FA,FC" % start)
        self.assertEqual([e["event_type"] for e in b["events"]], ["FA", "FA", "FC"])
        st, _, b = s.get("/all?from=%d&stream_type=special" % start)
        self.assertEqual([e["event_type"] for e in b["events"]], ["FC"])
        st, _, b = s.get("/all?correlation_id=" + corr)
        self.assertEqual([e["event_type"] for e in b["events"]], ["FB"])
        st, _, b = s.get("/all?from=%d&limit=2" % start)
        self.assertEqual(len(b["events"]), 2)
        self.assertEqual(b["next"], start + 2)
        st, _, b = s.get("/all?direction=backward&limit=2")
        self.assertEqual(b["events"][0]["global_position"], b["head"])
        rec = s.get("/streams/flt-1/2")[2]["recorded_at"]
        st, _, b = s.get("/all?since=%s&until=2100-01-01T00:00:00Z" % rec)
        self.assertTrue(all(e["recorded_at"] >= rec for e in b["events"]))
        self.assertGreaterEqual(len(b["events"]), 4)
        self.assertError(s.get("/all?correlation_id=xyz"), 400, "correlation_id")
        self.assertError(s.get("/all?since=yesterday"), 400, "since")
        self.assertError(s.get("/all?type=,"), 400, "type")

    def test_time_filters_at_or_before_the_epoch_are_refused(self):
        # 0 is the filter's "unbounded": until=0 used to return every event while until=1 returned none
        s = self.srv
        s.post("/streams/epoch-1", ev("E"))
        for route in ("/all", "/subscribe"):
            for qs in ("until=0", "since=0", "until=1970-01-01T00:00:00Z", "since=1969-12-31T23:59:59Z"):
                b = self.assertError(s.get("%s?%s" % (route, qs)), 400, "parameter %s must be after 1970-01-01" % qs)
                self.assertEqual(b["detail"], {"parameter": qs[:5]})
            self.assertError(s.get(route + "?since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z"), 400,
                             "until=2020-01-01T00:00:00Z must be after since=2030-01-01T00:00:00Z")
        st, _, b = s.get("/all?until=1")
        self.assertEqual((st, b["events"]), (200, []))

    def test_health_info(self):
        s = self.srv
        st, _, b = s.get("/health")
        self.assertEqual((st, b), (200, {"status": "ok"}))
        st, _, b = s.get("/info")
        self.assertEqual(st, 200)
        self.assertEqual(b["version"], "0.1.0")
        self.assertEqual(b["durability"], "sync")
        self.assertEqual(b["data_dir"], s.dir)
        self.assertIsInstance(b["head"], int)

    # ------------------------------------------------------------ metrics

    def test_metrics_prometheus_text(self):
        s = self.srv
        s.post("/streams/met-1", ev())
        s.get("/streams/met-1")
        s.get("/nope")
        st, h, text = s.get("/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"))
        check_prometheus_text(self, text)
        self.assertRegex(text, r'evstore_http_requests_total\{route="append",status="201"\} [1-9]')
        self.assertRegex(text, r'evstore_http_requests_total\{route="other",status="404"\} [1-9]')
        self.assertRegex(text, r"evstore_appends_total [1-9]")
        self.assertRegex(text, r"evstore_fsyncs_total [1-9]")
        self.assertRegex(text, r'evstore_http_append_duration_seconds_bucket\{le="\+Inf"\} [1-9]')
        # group commit and fdatasync histograms agree with their counters
        batches = int(re.search(r"^evstore_commit_batches_total (\d+)$", text, re.M).group(1))
        syncs = int(re.search(r"^evstore_fsyncs_total (\d+)$", text, re.M).group(1))
        self.assertEqual(int(re.search(r'^evstore_commit_batch_appends_count (\d+)$', text, re.M).group(1)), batches)
        self.assertEqual(int(re.search(r'^evstore_fdatasync_duration_seconds_count (\d+)$', text, re.M).group(1)),
                         syncs)
        self.assertRegex(text, r'evstore_commit_batch_appends_bucket\{le="1"\} \d+')
        self.assertRegex(text, r'evstore_fdatasync_duration_seconds_bucket\{le="0.001"\} \d+')
        self.assertIn('evstore_live_subscribers{protocol="sse"}', text)
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 0, p.stdout.decode())
        else:
            print("note: promtool not installed; checked with the built-in parser only")

    # ----------------------------------------------------------- concurrency

    def test_32_concurrent_writers_expected_versions(self):
        s = self.srv
        streams = ["conc-%d" % i for i in range(4)]
        per_client = 12 // SLOW if SLOW > 1 else 12
        acked = []
        lock = threading.Lock()
        errors = []

        def client(cid):
            c = s.conn()
            try:
                for k in range(per_client):
                    st_name = streams[(cid + k) % len(streams)]
                    version = 0
                    while True:
                        st, _, b = s.post_on(c, "/streams/" + st_name,
                                             ev("Conc", {"c": cid, "k": k}),
                                             {"Expected-Version": str(version)})
                        if st == 201:
                            with lock:
                                acked.append((st_name, b["version"], cid, k, b["first_global_position"]))
                            break
                        if st != 409:
                            errors.append((st, b))
                            return
                        version = b["actual_version"]
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(repr(e))
            finally:
                c.close()

        ts = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), 32 * per_client)
        for name in streams:
            evs, frm = [], 1
            while True:
                b = s.get("/streams/%s?from=%d&limit=1000" % (name, frm))[2]
                evs += b["events"]
                if b["end"]:
                    break
                frm = b["next"]
            mine = sorted((v, c, k) for (n, v, c, k, g) in acked if n == name)
            self.assertEqual([e["stream_position"] for e in evs], list(range(1, len(evs) + 1)))
            self.assertEqual([(e["stream_position"], e["data"]["c"], e["data"]["k"]) for e in evs], mine)
        allev = s.all_events()
        self.assertEqual([e["global_position"] for e in allev], list(range(1, len(allev) + 1)))


def _post_on(self, c, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return self.request("POST", path, body=body, headers=h, conn=c)


Server.post_on = _post_on


# --------------------------------------------------------- Prometheus format

METRIC_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? '
    r'([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?|[-+]?Inf|NaN)( -?\d+)?$')


def check_prometheus_text(tc, text):
    """A strict reading of the text exposition format 0.0.4."""
    tc.assertTrue(text.endswith("\n"))
    types, seen_samples = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            tc.assertIn(typ, ("counter", "gauge", "histogram", "summary", "untyped"))
            tc.assertNotIn(name, types, "TYPE twice for " + name)
            tc.assertNotIn(name, seen_samples, "TYPE after samples for " + name)
            types[name] = typ
            continue
        tc.assertFalse(line.startswith("#"), line)
        m = METRIC_LINE.match(line)
        tc.assertIsNotNone(m, "bad sample line: %r" % line)
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fam = name if name in types else base
        tc.assertIn(fam, types, "sample without TYPE: " + line)
        seen_samples.add(fam)
        if types[fam] == "counter":
            tc.assertGreaterEqual(float(m.group(8)), 0)
    # histogram buckets are cumulative and +Inf equals _count
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        vals = [float(v) for v in re.findall(r"^%s_bucket\{le=\"[^\"]+\"\} (\S+)$" % fam, text, re.M)]
        tc.assertEqual(vals, sorted(vals))
        cnt = float(re.search(r"^%s_count (\S+)$" % fam, text, re.M).group(1))
        tc.assertEqual(vals[-1], cnt)


# ------------------------------------------------------------------ SSE

class SSEReader:
    """A Server-Sent Events client on a raw socket (chunked transfer)."""

    def __init__(self, port, path, headers=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        hdr = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n%s\r\n" % (path, hdr)).encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = head.decode()
        self.chunked = b"chunked" in head.lower()
        self.text = ""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def _until(self, sep):
        while sep not in self.buf:
            self._fill()
        out, _, self.buf = self.buf.partition(sep)
        return out

    def _more_text(self):
        if not self.chunked:
            self._fill()
            self.text += self.buf.decode()
            self.buf = b""
            return
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise EOFError
        while len(self.buf) < size + 2:
            self._fill()
        self.text += self.buf[:size].decode()
        self.buf = self.buf[size + 2:]

    def next_message(self):
        """The next message as a dict of fields (comments skipped)."""
        while True:
            while "\n\n" not in self.text:
                self._more_text()
            block, _, self.text = self.text.partition("\n\n")
            fields = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                k, _, v = line.partition(":")
                fields[k] = v[1:] if v.startswith(" ") else v
            if fields and set(fields) != {"retry"}:
                return fields

    def events(self, n):
        out = []
        while len(out) < n:
            m = self.next_message()
            self_test_assert("id" in m, m)
            out.append((int(m["id"]), json.loads(m["data"])))
        return out

    def close(self):
        self.s.close()


def self_test_assert(cond, what):
    if not cond:
        raise AssertionError(what)


class LiveTest(unittest.TestCase):
    """Live streams on their own server (positions are predictable)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-live-")
        self.srv = Server(os.path.join(self.tmp, "data"), "--heartbeat-ms", "200").start()

    def tearDown(self):
        code = self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0, self.srv.err)

    def writer(self, n, stream_of, start_evt=None, batch=1):
        def run():
            c = self.srv.conn()
            if start_evt:
                start_evt.wait(TIMEOUT)
            i = 0
            while i < n:
                k = min(batch, n - i)
                body = [ev("W%d" % ((i + j) % 3), {"i": i + j}) for j in range(k)]
                st, _, b = self.srv.post_on(c, "/streams/" + stream_of(i), body)
                assert st == 201, b
                i += k
            c.close()
        t = threading.Thread(target=run)
        t.start()
        return t

    def test_sse_catch_up_then_live_exactly_once(self):
        s = self.srv
        for i in range(40):
            s.post("/streams/sse-%d" % (i % 4), ev("W%d" % (i % 3), {"i": i}))
        sub = SSEReader(s.port, "/subscribe?from=1")
        self.assertEqual(sub.status, 200)
        self.assertIn("text/event-stream", sub.headers)
        w = self.writer(160, lambda i: "sse-%d" % (i % 4), batch=3)
        got = sub.events(200)
        w.join()
        self.assertEqual([g for g, _ in got], list(range(1, 201)))
        self.assertEqual([e["global_position"] for _, e in got], list(range(1, 201)))
        self.assertEqual([e["data"]["i"] for _, e in got[40:]], list(range(160)))
        sub.close()
        # resume with Last-Event-ID: exactly after it, from= ignored
        sub = SSEReader(s.port, "/subscribe?from=1", {"Last-Event-ID": "150"})
        w = self.writer(20, lambda i: "sse-x")
        got = sub.events(70)
        w.join()
        self.assertEqual([g for g, _ in got], list(range(151, 221)))
        sub.close()
        # metrics count the subscriber while it is connected
        sub = SSEReader(s.port, "/subscribe?from=now")
        text = s.get("/metrics")[2]
        self.assertRegex(text, r'evstore_live_subscribers\{protocol="sse"\} [1-9]')
        sub.close()

    def test_sse_filters(self):
        s = self.srv
        sub = SSEReader(s.port, "/subscribe?from=now&type=W1")
        sub2 = SSEReader(s.port, "/subscribe?from=1&stream=flt-a%2F2")
        sub3 = SSEReader(s.port, "/subscribe?from=1&stream_type=flt")
        w = self.writer(60, lambda i: "flt-a%%2F%d" % (i % 3))
        w.join()
        got = sub.events(20)
        self.assertTrue(all(e["event_type"] == "W1" for _, e in got))
        self.assertEqual([g for g, _ in got], sorted(g for g, _ in got))
        got2 = sub2.events(20)
        self.assertTrue(all(e["stream"] == "flt-a/2" for _, e in got2))
        self.assertEqual([e["data"]["i"] for _, e in got2], list(range(2, 60, 3)))
        got3 = sub3.events(60)
        self.assertEqual([g for g, _ in got3], list(range(1, 61)))
        for x in (sub, sub2, sub3):
            x.close()
        self.assertError = ServerTest.assertError
        st, _, b = s.get("/subscribe?from=-3")
        self.assertEqual(st, 400, b)
        st, _, b = s.get("/subscribe", headers={"Last-Event-ID": "x"})
        self.assertEqual(st, 400, b)

    def test_sse_heartbeat_and_shutdown_message(self):
        s = self.srv
        sub = SSEReader(s.port, "/subscribe")
        while ": heartbeat" not in sub.text:
            sub._more_text()
        s.proc.send_signal(signal.SIGTERM)
        m = sub.next_message()
        self.assertEqual(m.get("event"), "shutdown")
        sub.close()

    def test_slow_subscriber_receives_everything(self):
        s = self.srv
        sub = SSEReader(s.port, "/subscribe?from=1")
        # the subscriber reads nothing while 3 MB of events are written
        n, pad = 3000, "p" * 1000
        c = s.conn()
        for i in range(0, n, 100):
            st, _, b = s.post_on(c, "/streams/slow-1", [ev("S", {"i": i + j, "pad": pad}) for j in range(100)])
            self.assertEqual(st, 201, b)
        c.close()
        rss_behind = rss_anon_kb(s.proc.pid)
        got = sub.events(n)
        self.assertEqual([g for g, _ in got], list(range(1, n + 1)))
        self.assertEqual([e["data"]["i"] for _, e in got], list(range(n)))
        sub.close()
        if rss_behind is not None and not os.environ.get("EVS_SANITIZED"):
            # the backlog lives in the log, not in the server's memory
            self.assertLess(rss_behind, 64 * 1024, "RssAnon %d kB with a 3 MB backlog" % rss_behind)


def rss_anon_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None



# ------------------------------------------------------------ WebSocket

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WSClient:
    """A minimal RFC 6455 client: masked text frames out, frames in."""

    def __init__(self, port, path="/ws", sock=None, extra_headers=""):
        """sock: an already connected socket (a TLS one, say); extra_headers: whole lines ending in CRLF."""
        import hashlib
        self.s = sock or socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                        % (path, key, extra_headers)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise EOFError("closed during handshake")
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode()
        self.status = int(self.head.split(" ")[1])
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.accept_ok = ("sec-websocket-accept: " + want.lower()) in self.head.lower()

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.s.sendall(hdr + mask + body)

    def send(self, obj):
        self.send_frame(1, (obj if isinstance(obj, str) else json.dumps(obj)).encode())

    def recv_frame(self):
        b0, b1 = self._need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._need(8))[0]
        if b1 & 0x80:
            raise AssertionError("server frames must not be masked")
        return b0 & 0x0F, self._need(n)

    def recv(self, skip_heartbeats=True):
        """The next JSON message, or ("close", code) for a close frame."""
        while True:
            op, payload = self.recv_frame()
            if op == 9:
                self.send_frame(10, payload)
                continue
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return ("close", code)
            m = json.loads(payload.decode())
            if skip_heartbeats and m.get("op") == "heartbeat":
                continue
            return m

    def events(self, n):
        out = []
        while len(out) < n:
            m = self.recv()
            self_test_assert(isinstance(m, dict) and m.get("op") == "event", m)
            out.append(m["event"])
        return out

    def close(self):
        try:
            self.send_frame(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.s.close()


class WebSocketTest(LiveTest):
    """WebSocket subscriptions (same server setup as LiveTest)."""

    def test_sse_catch_up_then_live_exactly_once(self):
        pass  # inherited tests run once, in LiveTest

    test_sse_filters = test_sse_heartbeat_and_shutdown_message = test_sse_catch_up_then_live_exactly_once
    test_slow_subscriber_receives_everything = test_sse_catch_up_then_live_exactly_once

    def test_ws_catch_up_then_live_exactly_once(self):
        s = self.srv
        for i in range(30):
            s.post("/streams/ws-%d" % (i % 3), ev("W%d" % (i % 3), {"i": i}))
        w = WSClient(s.port)
        self.assertEqual(w.status, 101, w.head)
        self.assertTrue(w.accept_ok, w.head)
        w.send({"op": "subscribe", "from": 1})
        m = w.recv()
        self.assertEqual((m["op"], m["from"]), ("subscribed", 1))
        wr = self.writer(170, lambda i: "ws-%d" % (i % 3), batch=4)
        got = w.events(200)
        wr.join()
        self.assertEqual([e["global_position"] for e in got], list(range(1, 201)))
        self.assertEqual([e["data"]["i"] for e in got[30:]], list(range(170)))
        # unsubscribe, then resume exactly after the last position seen
        w.send({"op": "unsubscribe"})
        m = w.recv()
        self.assertEqual((m["op"], m["next"]), ("unsubscribed", 201))
        s.post("/streams/ws-0", [ev("W0"), ev("W1")])
        w.send({"op": "subscribe", "from": 201, "filter": {"type": ["W1"]}})
        self.assertEqual(w.recv()["op"], "subscribed")
        got = w.events(1)
        self.assertEqual((got[0]["global_position"], got[0]["event_type"]), (202, "W1"))
        text = s.get("/metrics")[2]
        self.assertRegex(text, r'evstore_live_subscribers\{protocol="ws"\} 1')
        self.assertRegex(text, r'evstore_live_deliveries_total\{protocol="ws"\} [1-9]')
        w.close()

    def test_ws_filters_and_heartbeat(self):
        s = self.srv
        w = WSClient(s.port)
        w.send({"op": "subscribe", "from": "now", "filter": {"stream": "wf-a/1", "type": "W1"}})
        self.assertEqual(w.recv()["op"], "subscribed")
        wr = self.writer(30, lambda i: "wf-a%%2F%d" % (i % 3))
        wr.join()
        got = w.events(10)
        self.assertTrue(all(e["stream"] == "wf-a/1" and e["event_type"] == "W1" for e in got), got)
        self.assertEqual([e["data"]["i"] for e in got], list(range(1, 30, 3)))
        m = w.recv(skip_heartbeats=False)
        self.assertEqual(m["op"], "heartbeat")
        self.assertEqual(m["head"], 30)
        w.send({"op": "ping"})
        self.assertEqual(w.recv(), {"op": "pong"})
        w.close()

    def test_ws_errors_are_messages(self):
        s = self.srv
        w = WSClient(s.port)
        for msg, needle in (("{not json", "malformed JSON"), ('"x"', "op"), ({"op": "fly"}, "unknown op"),
                            ({"op": "unsubscribe"}, "not subscribed"),
                            ({"op": "subscribe", "from": -1}, "from"),
                            ({"op": "subscribe", "from": "soon"}, "from"),
                            ({"op": "subscribe", "filter": {"type": 3}}, "filter"),
                            ({"op": "subscribe", "filter": {"colour": "red"}}, "colour"),
                            ({"op": "subscribe", "filter": []}, "filter")):
            w.send(msg)
            m = w.recv()
            self.assertEqual(m["op"], "error", (msg, m))
            self.assertIn(needle, m["error"], (msg, m))
        w.send({"op": "subscribe"})
        self.assertEqual(w.recv()["op"], "subscribed")
        w.send({"op": "subscribe"})
        self.assertIn("already subscribed", w.recv()["error"])
        # a message over the limit closes the connection with 1009
        # (the server may close before reading the whole frame, so a reset
        # that overtakes the close frame is also an acceptable ending)
        try:
            w.send_frame(1, b'{"op":"ping","pad":"' + b"x" * 70000 + b'"}')
            m = w.recv()
            while isinstance(m, dict):
                m = w.recv()
            self.assertEqual(m, ("close", 1009))
        except (ConnectionResetError, BrokenPipeError, EOFError):
            pass
        w.s.close()
        self.assertEqual(s.get("/health")[0], 200)
        # a plain GET is refused with a JSON error
        st, _, b = s.get("/ws")
        self.assertEqual(st, 400, b)
        self.assertIn("WebSocket", b["error"])

    def test_ws_slow_subscriber_receives_everything(self):
        s = self.srv
        w = WSClient(s.port)
        w.send({"op": "subscribe", "from": 1})
        self.assertEqual(w.recv()["op"], "subscribed")
        n, pad = 3000, "p" * 1000
        c = s.conn()
        for i in range(0, n, 100):
            st, _, b = s.post_on(c, "/streams/wslow-1", [ev("S", {"i": i + j, "pad": pad}) for j in range(100)])
            self.assertEqual(st, 201, b)
        c.close()
        rss_behind = rss_anon_kb(s.proc.pid)
        got = w.events(n)
        self.assertEqual([e["global_position"] for e in got], list(range(1, n + 1)))
        w.close()
        if rss_behind is not None and not os.environ.get("EVS_SANITIZED"):
            self.assertLess(rss_behind, 64 * 1024, "RssAnon %d kB with a 3 MB backlog" % rss_behind)

    def test_ws_shutdown_message(self):
        s = self.srv
        w = WSClient(s.port)
        w.send({"op": "subscribe"})
        self.assertEqual(w.recv()["op"], "subscribed")
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.recv(), {"op": "shutdown"})
        self.assertEqual(w.recv(), ("close", 1001))
        w.s.close()


# ------------------------------------------------------------ disk failure

class IOFailureTest(unittest.TestCase):
    """fdatasync fails under a running server (an LD_PRELOAD shim, tests/support/failsync.c)."""

    def test_failed_fdatasync_refuses_appends_until_restart(self):
        shim = os.path.join(os.environ.get("EVS_BUILD_DIR") or os.path.dirname(BIN), "libevs_failsync.so")
        self.assertTrue(os.path.exists(shim), "build the evs_failsync target: %s" % shim)
        tmp = tempfile.mkdtemp(prefix="evs-iofail-")
        trigger = os.path.join(tmp, "fail-now")
        data = os.path.join(tmp, "data")
        try:
            srv = Server(data, "--durability", "sync")
            srv.env = dict(os.environ, LD_PRELOAD=shim, EVS_FAILSYNC_TRIGGER=trigger,
                           ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
            srv.start()
            ids = [str(uuid.uuid4()) for _ in range(5)]
            for i in range(3):
                st, _, b = srv.post("/streams/io-1", ev(event_id=ids[i]))
                self.assertEqual(st, 201, b)
            open(trigger, "w").close()
            st, _, b = srv.post("/streams/io-1", ev(event_id=ids[3]))
            self.assertEqual(st, 503, b)
            self.assertIn("fdatasync", b["error"])
            os.unlink(trigger)  # the disk is fine again, but a failed sync is never retried
            st, _, b = srv.post("/streams/io-1", ev(event_id=ids[4]))
            self.assertEqual(st, 503, b)
            self.assertIn("refuses", b["error"])
            st, _, b = srv.get("/health")
            self.assertEqual((st, b["detail"]), (503, {"status": "failed"}), b)
            self.assertIn("fdatasync", b["error"])
            self.assertIs(srv.get("/info")[2]["writable"], False)
            st, _, b = srv.get("/streams/io-1")  # what was acknowledged still reads
            self.assertEqual(st, 200, b)
            self.assertEqual([e["event_id"] for e in b["events"]], ids[:3])
            # a supervisor learns it from the exit status: 5, an I/O failure
            self.assertEqual(srv.stop(), 5, srv.err)
            self.assertIn("stopped after the store failed", srv.err)
            srv = Server(data, "--durability", "sync").start()
            try:
                st, _, b = srv.get("/streams/io-1")
                got = [e["event_id"] for e in b["events"]]
                # acknowledged events are all there; the unacknowledged append may or may
                # not have reached the disk (its bytes were written, the sync failed), and
                # nothing else appears
                self.assertIn(got, (ids[:3], ids[:4]))
                self.assertEqual(srv.get("/health")[0], 200)
                st, _, b = srv.post("/streams/io-1", ev(event_id=ids[4]))
                self.assertEqual(st, 201, b)
            finally:
                self.assertEqual(srv.stop(), 0, srv.err)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class CloseFailureTest(unittest.TestCase):
    def test_failed_final_sync_at_shutdown_exits_5(self):
        """durability none: the close's sync is what makes acknowledged appends durable; its failure is the exit status."""
        shim = os.path.join(os.environ.get("EVS_BUILD_DIR") or os.path.dirname(BIN), "libevs_failsync.so")
        self.assertTrue(os.path.exists(shim), "build the evs_failsync target: %s" % shim)
        tmp = tempfile.mkdtemp(prefix="evs-closefail-")
        trigger = os.path.join(tmp, "fail-now")
        try:
            srv = Server(os.path.join(tmp, "data"), "--durability", "none")
            srv.env = dict(os.environ, LD_PRELOAD=shim, EVS_FAILSYNC_TRIGGER=trigger,
                           ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
            srv.start()
            st, _, b = srv.post("/streams/cf-1", ev())
            self.assertEqual(st, 201, b)
            open(trigger, "w").close()
            self.assertEqual(srv.stop(), 5, srv.err)
            self.assertIn("final sync", srv.err)
            self.assertNotIn("stopped cleanly", srv.err)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class ListenTest(unittest.TestCase):
    def test_ipv6_listen(self):
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            self.skipTest("no IPv6 loopback here")
        tmp = tempfile.mkdtemp(prefix="evs-ipv6-")
        log = os.path.join(tmp, "access.log")
        try:
            p = subprocess.Popen([BIN, "serve", "-d", os.path.join(tmp, "data"), "--listen", "[::1]:0",
                                  "--access-log", log], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = p.stdout.readline().decode()
            m = re.search(r"http://\[::1\]:(\d+)", line)
            self.assertTrue(m, line)
            c = http.client.HTTPConnection("::1", int(m.group(1)), timeout=TIMEOUT)
            c.request("POST", "/streams/v6-1", body=json.dumps(ev()), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            self.assertEqual(r.status, 201, r.read())
            r.read()
            c.request("GET", "/info")
            info = json.loads(c.getresponse().read())
            self.assertEqual(info["listen"], "[::1]:%s" % m.group(1))
            c.close()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(TIMEOUT), 0)
            p.stdout.close()
            p.stderr.close()
            with open(log) as f:
                self.assertIn(" [::1]:", f.read())  # the client, as an IPv6 address
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_bad_listen_addresses(self):
        for bad in ("[::1:80", "::1:80", "[zz::]:80", "[::1]:70000", "1.2.3:80"):
            p = subprocess.run([BIN, "serve", "-d", "/nonexistent/x", "--listen", bad], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, (bad, p.stderr))
            self.assertIn(b"[IPv6]", p.stderr)


# ------------------------------------------------------------ access log

class AccessLogTest(unittest.TestCase):
    def test_access_log_one_line_per_answer(self):
        tmp = tempfile.mkdtemp(prefix="evs-alog-")
        log = os.path.join(tmp, "access.log")
        try:
            srv = Server(os.path.join(tmp, "data"), "--access-log", log).start()
            srv.post("/streams/alog-1", ev())
            srv.request("POST", "/streams/alog-1?expected=no-stream", body=ev())
            srv.get("/streams/no%2Fsuch")
            srv.request("PUT", "/groups/alog", body={})
            srv.request("POST", "/groups/alog/next?consumer=c&timeout_ms=10")  # long-poll, answered later
            self.assertEqual(srv.stop(), 0, srv.err)
            with open(log) as f:
                lines = f.read().splitlines()
            pat = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1:\d+ (\S+) (\S+) (\d{3}) "
                             r"\d+\.\d{3}ms$")
            got = []
            for line in lines:
                m = pat.match(line)
                self.assertIsNotNone(m, line)
                got.append((m.group(1), m.group(2), int(m.group(3))))
            self.assertEqual(got, [("POST", "/streams/alog-1", 201), ("POST", "/streams/alog-1", 409),
                                   ("GET", "/streams/no%2Fsuch", 404), ("PUT", "/groups/alog", 201),
                                   ("POST", "/groups/alog/next", 200)])
            # a second server appends to the same file; an unwritable path is a clear error
            bad = subprocess.run([BIN, "serve", "-d", os.path.join(tmp, "data"), "--listen", "127.0.0.1:0",
                                  "--access-log", os.path.join(tmp, "no", "such", "dir", "log")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(bad.returncode, 1)  # a usage error
            self.assertIn("cannot open the access log", bad.stderr.decode())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------ signals

class ShutdownTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-kill-")
        self.dir = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def load_then_signal(self, sig):
        srv = Server(self.dir).start()
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def client(cid):
            k = 0
            while not stop.is_set():
                eid = str(uuid.uuid4())
                try:
                    c = srv.conn()
                    st, _, b = srv.post_on(c, "/streams/load-%d" % (cid % 4), ev("L", {"c": cid, "k": k},
                                                                                 event_id=eid))
                    c.close()
                except (OSError, http.client.HTTPException, ValueError):
                    if stop.is_set() or srv.proc.poll() is not None:
                        return
                    continue
                if st == 201:
                    with lock:
                        acked.append(eid)
                elif st != 503:
                    raise AssertionError((st, b))
                k += 1

        ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        while True:
            with lock:
                if len(acked) >= 200:
                    break
            time.sleep(0.01)
        code = srv.stop(sig)
        stop.set()
        for t in ts:
            t.join()
        srv2 = Server(self.dir).start()
        stored = {e["event_id"] for e in srv2.all_events()}
        missing = [e for e in acked if e not in stored]
        code2 = srv2.stop()
        self.assertEqual(code2, 0, srv2.err)
        self.assertEqual(missing, [], "%d of %d acknowledged appends lost" % (len(missing), len(acked)))
        return code, srv

    def test_sigterm_under_load(self):
        code, srv = self.load_then_signal(signal.SIGTERM)
        self.assertEqual(code, 0, srv.err)
        self.assertIn("stopped cleanly", srv.err)

    def test_sigkill_under_load(self):
        code, _ = self.load_then_signal(signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL)

    def test_config_file_and_flags_win(self):
        cfg = os.path.join(self.tmp, "serve.json")
        with open(cfg, "w") as f:
            json.dump({"dir": self.dir, "durability": "batch", "batch_ms": 5, "max_body": 2048,
                       "threads": 2, "listen": "127.0.0.1:1"}, f)
        srv = Server(self.dir, "--config", cfg, "--durability", "none").start()  # --listen flag wins
        try:
            info = srv.get("/info")[2]
            self.assertEqual(info["durability"], "none")
            st, body = srv.raw(b"POST /streams/cfg-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 4096\r\nConnection: close\r\n\r\n")
            self.assertEqual(st, 413, body)
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)
        for bad in ({"threads": 1000}, {"colour": 1}, {"listen": 5}, [1]):
            with open(cfg, "w") as f:
                json.dump(bad, f)
            p = subprocess.run([BIN, "serve", "-d", self.dir, "--config", cfg], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, (bad, p.stderr))
            self.assertIn(b"config", p.stderr)

    def test_connection_limit_and_slow_clients(self):
        srv = Server(self.dir, "--max-connections", "4", "--timeout", "3").start()
        try:
            # a client that never finishes its headers is dropped by the timeout
            slow = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
            slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            self.assertEqual(slow.recv(100), b"")  # closed by the server, no answer
            slow.close()
            # four idle connections fill the limit: a fifth is not served
            # (it waits in the listen backlog, or is refused) until one closes
            idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) for _ in range(4)]
            for c in idle:  # make sure each one was accepted: it gets an answer
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertIn(b"200 OK", c.recv(1000))
            extra = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            extra.settimeout(0.5)
            try:
                early = extra.recv(100)
            except socket.timeout:
                early = None  # still waiting: not served while the limit is reached
            except ConnectionResetError:
                early = b""
            self.assertIn(early, (None, b""))
            for c in idle:
                c.close()
            extra.settimeout(TIMEOUT)
            if early is None:  # queued: now it is served
                got = b""
                while True:
                    d = extra.recv(1000)
                    if not d:
                        break
                    got += d
                self.assertIn(b"200 OK", got)
            extra.close()
            self.assertEqual(srv.get("/health")[0], 200)
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)

    def test_bad_options(self):
        for args in (["--listen", "nowhere"], ["--durability", "fast"], ["--max-body", "999999999999"],
                     ["--threads", "0"], ["--bogus"]):
            p = subprocess.run([BIN, "serve", "-d", self.dir] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertIn(b"evstore", p.stderr)


# -------------------------------------------------------------- runner

if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
