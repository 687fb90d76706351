#!/usr/bin/env python3
"""
test_server_stream_meta.py -- stream metadata and delete over HTTP and the
CLI, against the real `evstore serve` (helpers shared with test_server.py).

Checked: `GET/PUT /streams/{s}/metadata` round trip with custom keys and the
expected metadata version (409); bad metadata (not JSON: 400, a negative
max_count or a reserved key: 422) changes nothing; an unknown stream is a
404; truncate_before and max_count hide events from stream reads, `/all`
and a live SSE subscription at once, whose ids still advance; `DELETE
/streams/{s}` reads as 404 and an append with expected=no-stream
re-creates it continuing its positions; `?hard=true` makes every later
append a 410; all of it survives a restart; `evstore stream ... --url`.

Standard library only.  Prints "N passed, M failed" as its last line.
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
from test_server import SSEReader, Server, ev  # noqa: E402

BIN = os.environ.get("EVSTORE_BIN", "evstore")


class StreamMetaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-meta-")
        cls.srv = Server(os.path.join(cls.tmp, "data")).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def put_meta(self, stream, body, expected=None):
        q = "" if expected is None else "?expected=%s" % expected
        data = body if isinstance(body, str) else json.dumps(body)
        return self.srv.request("PUT", "/streams/%s/metadata%s" % (stream, q), body=data,
                                headers={"Content-Type": "application/json"})

    def stream_positions(self, stream):
        st, _, b = self.srv.get("/streams/%s" % stream)
        self.assertEqual(st, 200, b)
        return [e["stream_position"] for e in b["events"]]

    def all_of(self, stream):
        return [e["stream_position"] for e in self.srv.all_events() if e["stream"] == stream]

    def test_metadata_round_trip_and_bad_input(self):
        s = self.srv
        st, _, b = s.get("/streams/nothing-1/metadata")
        self.assertEqual(st, 404, b)
        s.post("/streams/m-1", [ev("A"), ev("A")])
        st, _, b = s.get("/streams/m-1/metadata")
        self.assertEqual((st, b["metadata_version"], b["metadata"]), (200, 0, {}))
        doc = {"max_count": 10, "owner": {"team": "billing"}}
        st, _, b = self.put_meta("m-1", doc, "no-stream")
        self.assertEqual((st, b["metadata_version"]), (200, 1), b)
        st, _, b = self.put_meta("m-1", {"max_count": 1}, "no-stream")
        self.assertEqual(st, 409, b)
        self.assertIn("expected metadata version", b["error"])
        self.assertEqual((b["actual_version"], b["detail"]["code"]), (1, "ECONFLICT"), b)
        # the same shape as an append's 409 (evs__respond_conflict)
        self.assertEqual(b["detail"], {"code": "ECONFLICT", "stream": "m-1", "expected_version": 0}, b)
        st, _, b = self.put_meta("m-1", {"max_count": 1}, "99")
        self.assertEqual((st, b["actual_version"]), (409, 1), b)
        st, _, b = self.put_meta("m-1", '{"max_count": 1', "any")
        self.assertEqual(st, 400, b)
        st, _, b = self.put_meta("m-1", {"max_count": -3})
        self.assertEqual(st, 422, b)
        self.assertIn("max_count", b["error"])
        st, _, b = self.put_meta("m-1", {"$tombstone": True})
        self.assertEqual(st, 422, b)
        st, _, b = s.get("/streams/m-1/metadata")
        self.assertEqual((b["metadata_version"], b["metadata"]), (1, doc))
        self.assertEqual(self.stream_positions("m-1"), [1, 2])

    def test_truncation_reads_and_live(self):
        s = self.srv
        s.post("/streams/t-1", [ev("A", {"i": i}) for i in range(5)])
        sub = SSEReader(s.port, "/subscribe?from=%d&stream_prefix=t-" % (s.head() + 1))
        self.assertEqual(sub.status, 200)
        st, _, b = self.put_meta("t-1", {"truncate_before": 4})
        self.assertEqual(st, 200, b)
        self.assertEqual(self.stream_positions("t-1"), [4, 5])
        self.assertEqual(self.all_of("t-1"), [4, 5])
        st, _, b = s.get("/streams/t-1/2")
        self.assertEqual(st, 404, b)
        self.put_meta("t-1", {"max_count": 1})
        self.assertEqual(self.stream_positions("t-1"), [5])
        s.post("/streams/t-1", [ev("B"), ev("B")])
        self.assertEqual(self.stream_positions("t-1"), [7])
        # live: of the two new events only the last shows; delivered ids are global positions
        got = sub.events(1)
        self.assertEqual(got[0][1]["stream_position"], 7)
        sub.close()

    def test_soft_delete_and_recreate(self):
        s = self.srv
        s.post("/streams/d-1", [ev("A"), ev("A"), ev("A")])
        st, _, b = s.request("DELETE", "/streams/d-1?expected=2")
        self.assertEqual(st, 409, b)
        self.assertEqual((b["actual_version"], b["detail"]["stream"]), (3, "d-1"), b)
        self.assertEqual(b["detail"], {"code": "ECONFLICT", "stream": "d-1", "expected_version": 2}, b)
        st, _, b = s.request("DELETE", "/streams/d-1?expected=no-stream")
        self.assertEqual((st, b["actual_version"]), (409, 3), b)
        st, _, b = s.request("DELETE", "/streams/d-1?expected=3")
        self.assertEqual((st, b["deleted"]), (200, "soft"), b)
        st, _, b = s.get("/streams/d-1")
        self.assertEqual(st, 404, b)
        self.assertEqual(self.all_of("d-1"), [])
        st, _, b = s.request("DELETE", "/streams/d-1")
        self.assertEqual(st, 404, b)
        st, _, b = s.post("/streams/d-1?expected=no-stream", ev("A"))
        self.assertEqual(st, 201, b)
        self.assertEqual(b["first_stream_position"], 4)
        self.assertEqual(self.stream_positions("d-1"), [4])

    def test_hard_delete_and_restart(self):
        s = self.srv
        s.post("/streams/h-1", [ev("A")])
        st, _, b = s.request("DELETE", "/streams/h-1?hard=maybe")
        self.assertEqual(st, 400, b)
        st, _, b = s.request("DELETE", "/streams/h-1?hard=true")
        self.assertEqual((st, b["deleted"]), (200, "hard"), b)
        head = s.head()
        st, _, b = s.post("/streams/h-1", ev("A"))
        self.assertEqual(st, 410, b)
        self.assertIn("hard-deleted", b["error"])
        st, _, b = self.put_meta("h-1", {})
        self.assertEqual(st, 410, b)
        self.assertEqual(s.head(), head)
        self.assertEqual(s.stop(), 0, s.err)
        s.start()
        st, _, b = s.post("/streams/h-1", ev("A"))
        self.assertEqual(st, 410, b)
        st, _, b = s.get("/streams/h-1")
        self.assertEqual(st, 404, b)

    def test_cli_url(self):
        s = self.srv
        url = "http://127.0.0.1:%d" % s.port
        s.post("/streams/c-1", [ev("A"), ev("A")])

        def run(*args):
            return subprocess.run([BIN, "stream"] + list(args) + ["--url", url], capture_output=True, text=True,
                                  timeout=60)
        r = run("meta", "set", "c-1", '{"max_count":1,"k":"v"}', "--expected", "no-stream")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["metadata_version"], 1)
        r = run("meta", "get", "c-1")
        self.assertEqual(json.loads(r.stdout)["metadata"], {"max_count": 1, "k": "v"})
        self.assertEqual(self.stream_positions("c-1"), [2])
        r = run("meta", "set", "c-1", '{"max_age":-1}')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("max_age", r.stderr)
        r = run("delete", "c-1", "--hard")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("delete", "c-1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("hard-deleted", r.stderr)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
