#!/usr/bin/env python3
"""
test_server_dcb.py -- tags and the DCB conditional append over HTTP, against
the real `evstore serve` (helpers shared with test_server.py).

Checked: `POST /streams/{s}` with {"events": [...], "condition": {"after":
P, "query": [{"types": [...], "tags": [...]}]}} stores when nothing matches
after P and answers 409 with the first matching position (and stores
nothing) when something does; an expected version and a condition
together; a malformed condition is a 422 naming the member; `/all?tag=a,b`
with tag_match=any|all reads by tag, and a bad tag_match is a 400.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import Server, ev  # noqa: E402


class DcbTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-dcb-")
        cls.srv = Server(os.path.join(cls.tmp, "data")).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def positions(self, path):
        st, _, body = self.srv.get(path)
        self.assertEqual(st, 200, body)
        return [e["global_position"] for e in body["events"]]

    def test_conditional_append_and_409(self):
        s = self.srv
        st, _, b = s.post("/streams/course-c1", ev("CourseDefined", {"cap": 1}, tags=["course:c1"]))
        self.assertEqual(st, 201, b)
        p = s.head()
        q = {"after": p, "query": [{"types": ["StudentSubscribed"], "tags": ["course:c1"]},
                                   {"types": ["StudentSubscribed"], "tags": ["student:s1"]}]}
        sub = ev("StudentSubscribed", {"s": 1}, tags=["course:c1", "student:s1"])
        st, _, b = s.post("/streams/sub-c1-s1", {"events": [sub], "condition": q})
        self.assertEqual(st, 201, b)
        won = b["first_global_position"]
        # the same decision again, from the same read: refused, naming the event, nothing stored
        sub2 = ev("StudentSubscribed", {"s": 2}, tags=["course:c1", "student:s2"])
        st, _, b = s.post("/streams/sub-c1-s2", {"events": [sub2], "condition": q})
        self.assertEqual(st, 409, b)
        self.assertEqual(b["condition_position"], won)
        self.assertEqual(b["detail"]["code"], "ECONDITION")
        self.assertEqual(b["detail"]["after"], p)
        self.assertIn("global position %d" % won, b["error"])
        self.assertEqual(s.head(), won)
        # a condition that holds (another course) with an expected version, and one that does not
        q2 = {"after": won, "query": [{"tags": ["course:c2"]}]}
        st, _, b = s.post("/streams/sub-c2-s2?expected=no-stream", {"events": [sub2], "condition": q2})
        self.assertEqual(st, 201, b)
        st, _, b = s.post("/streams/sub-c2-s2?expected=0", {"events": [sub2], "condition": q2})
        self.assertEqual(st, 409, b)
        self.assertIn("expected version", b["error"])  # the version is checked first
        st, _, b = s.post("/streams/sub-c2-s2?expected=1", {"events": sub2, "condition": {"query": [{}]}})
        self.assertEqual(st, 409, b)
        self.assertEqual(b["condition_position"], 1)  # an empty item, after 0: the first event
        # an envelope without a condition is a plain append
        st, _, b = s.post("/streams/sub-c3-s3", {"events": [ev("X")]})
        self.assertEqual(st, 201, b)

    def test_bad_conditions(self):
        s = self.srv
        head = s.head()
        for cond, needle in (({"after": 0}, "at least one item"),
                             ({"query": []}, "at least one item"),
                             ({"query": [{"typs": ["A"]}]}, "typs"),
                             ({"query": [{"tags": "a"}]}, "array of strings"),
                             ({"query": [{"tags": [""]}]}, "tags 1"),
                             ({"after": -1, "query": [{}]}, "after"),
                             ({"query": [{}], "before": 3}, "before"),
                             ([], "must be an object")):
            st, _, b = s.post("/streams/bad-1", {"events": [ev()], "condition": cond})
            self.assertEqual(st, 422, (cond, b))
            self.assertIn(needle, b["error"], cond)
        st, _, b = s.post("/streams/bad-1", {"events": [ev()], "conditon": {}})
        self.assertEqual(st, 422, b)
        self.assertIn("conditon", b["error"])
        st, _, b = s.post("/streams/bad-1", {"condition": {"query": [{}]}})
        self.assertEqual(st, 422, b)
        self.assertIn("events", b["error"])
        self.assertEqual(s.head(), head)

    def test_read_by_tag(self):
        s = self.srv
        base = s.head()
        for tags in (["t:a"], ["t:a", "t:b"], ["t:b"], []):
            st, _, b = s.post("/streams/tagged-1", ev("T", tags=tags))
            self.assertEqual(st, 201, b)
        f = base + 1
        self.assertEqual(self.positions("/all?from=%d&tag=t:a" % f), [f, f + 1])
        self.assertEqual(self.positions("/all?from=%d&tag=t:a,t:b" % f), [f, f + 1, f + 2])
        self.assertEqual(self.positions("/all?from=%d&tag=t:a,t:b&tag_match=any" % f), [f, f + 1, f + 2])
        self.assertEqual(self.positions("/all?from=%d&tag=t:a,t:b&tag_match=all" % f), [f + 1])
        self.assertEqual(self.positions("/all?direction=backward&tag=t:b,t:a&tag_match=all"), [f + 1])
        st, _, b = s.get("/all?tag=t:a&tag_match=every")
        self.assertEqual(st, 400, b)
        self.assertIn("tag_match", b["error"])


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
