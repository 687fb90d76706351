#!/usr/bin/env python3
"""
test_scavenge.py -- scavenge over HTTP and the CLI, against the real
`evstore serve` (small segments: --segment-size 65536) with auth on.

Checked: `POST /admin/scavenge` is admin-only (a writer key gets 403) and
refuses a bad rate (400, nothing started); a dry run finds space and
changes nothing; a run while appends go on gives space back (GET
/admin/scavenge and the evstore_scavenge_* lines of /metrics say how much),
every event `/all` showed before is still there with the same bytes and
positions, `/all` reports the removed ranges in "lost" with "scavenged" in
the message, and deleted streams stay deleted; after the server stops,
`evstore scavenge -d DIR --dry-run` finds nothing left, `evstore scavenge
--rate` of a bad value exits 4, and `evstore check` passes.

Standard library only.  Prints "N passed, M failed" as its last line.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import Server, ev  # noqa: E402
from test_server_auth import bearer, make_key  # noqa: E402

BIN = os.environ.get("EVSTORE_BIN", "evstore")


def cli(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=120)


class ScavengeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-scav-")
        self.dir = os.path.join(self.tmp, "data")
        os.makedirs(self.dir)
        self.admin, _ = make_key(self.dir, "admin", name="admin")
        self.writer, _ = make_key(self.dir, "writer", name="writer")
        self.srv = Server(self.dir, "--auth", "--segment-size", "65536").start()

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def req(self, method, path, body=None, key=None):
        h = bearer(key or self.admin)
        if isinstance(body, str):
            h["Content-Type"] = "application/json"
        return self.srv.request(method, path, body=body, headers=h)

    def append(self, stream, n, start=0):
        for i in range(start, start + n):
            st, _, b = self.req("POST", "/streams/%s" % stream, [ev("T", {"n": i, "pad": "x" * 300})])
            self.assertIn(st, (200, 201), b)

    def all_pages(self):
        events, lost, frm = [], [], 1
        while True:
            st, _, b = self.req("GET", "/all?from=%d&limit=500" % frm)
            self.assertEqual(st, 200, b)
            events += b["events"]
            lost += b.get("lost", [])
            if b["end"] or not b["events"] and not b.get("lost"):
                return events, lost
            frm = b["next"]

    def status(self):
        st, _, b = self.req("GET", "/admin/scavenge")
        self.assertEqual(st, 200, b)
        return b

    def wait_done(self):
        for _ in range(600):
            b = self.status()
            if not b["running"]:
                return b
            time.sleep(0.05)
        self.fail("scavenge did not finish")

    def metric(self, name):
        st, _, text = self.req("GET", "/metrics")
        self.assertEqual(st, 200)
        m = re.search(r"^%s (\d+)$" % name, text, re.M)
        self.assertIsNotNone(m, name)
        return int(m.group(1))

    def test_scavenge_over_http_and_cli(self):
        for rnd in range(4):
            for s in ("keep-1", "gone-1", "trunc-1", "soft-1"):
                self.append(s, 40, rnd * 40)
        st, _, b = self.req("DELETE", "/streams/gone-1?hard=true")
        self.assertEqual(st, 200, b)
        st, _, b = self.req("DELETE", "/streams/soft-1")
        self.assertEqual(st, 200, b)
        st, _, b = self.req("PUT", "/streams/trunc-1/metadata", json.dumps({"truncate_before": 100}))
        self.assertEqual(st, 200, b)
        self.append("keep-2", 150)  # the hidden events' segments are sealed
        before, lost0 = self.all_pages()
        self.assertEqual(lost0, [])

        # admin only; bad input starts nothing
        st, _, b = self.req("POST", "/admin/scavenge", key=self.writer)
        self.assertEqual(st, 403, b)
        # rate is strict decimal with an optional fraction: what strtod would take besides is refused
        for bad in ("fast", "0x10", "+5", "1e3", " 5", "0", "0.0", "-1", "2.", ".5", "1000001", "inf", "nan"):
            st, _, b = self.req("POST", "/admin/scavenge?rate=" + bad.replace(" ", "%20"))
            self.assertEqual(st, 400, (bad, b))
            self.assertIn("rate", b["error"])
        self.assertEqual(self.status()["totals"]["runs"], 0)

        # dry run: finds space, changes nothing
        bytes0 = self.metric("evstore_log_bytes")
        st, _, b = self.req("POST", "/admin/scavenge?dry_run=true")
        self.assertEqual(st, 200, b)
        self.assertTrue(b["started"] and b["running"] and b["dry_run"], b)
        d = self.wait_done()
        self.assertTrue(d["dry_run"])
        self.assertGreater(d["bytes_reclaimed"], 0)
        self.assertEqual(self.metric("evstore_log_bytes"), bytes0)

        # the real run, rate-limited, with appends going on
        st, _, b = self.req("POST", "/admin/scavenge?rate=20.5")
        self.assertEqual(st, 200, b)
        # the answer is about this run, not the dry run before it
        self.assertTrue(b["started"] and b["running"], b)
        self.assertFalse(b["dry_run"], b)
        self.assertEqual((b["segments_done"], b["bytes_reclaimed"], b["totals"]["runs"]), (0, 0, 1), b)
        self.append("keep-3", 20)
        d = self.wait_done()
        self.assertNotIn("error", d)
        self.assertFalse(d["dry_run"])
        self.assertGreater(d["segments_rewritten"], 0)
        self.assertGreater(d["bytes_reclaimed"], 0)
        self.assertEqual(self.metric("evstore_scavenge_bytes_reclaimed_total"), d["bytes_reclaimed"])
        self.assertEqual(self.metric("evstore_scavenge_running"), 0)
        self.assertLess(self.metric("evstore_log_bytes"), bytes0)

        after, lost = self.all_pages()
        by_pos = {e["global_position"]: e for e in after}
        for e in before:
            self.assertEqual(by_pos.get(e["global_position"]), e)
        self.assertGreater(len(lost), 0)
        self.assertTrue(all("scavenged" in L["message"] for L in lost), lost)
        self.assertEqual(sum(L["last"] - L["first"] + 1 for L in lost), d["events_removed"])
        st, _, b = self.req("GET", "/streams/gone-1")
        self.assertEqual(st, 404, b)
        st, _, b = self.req("GET", "/streams/trunc-1?from=1&limit=5")
        self.assertEqual(st, 200, b)
        self.assertEqual(b["events"][0]["stream_position"], 100)
        self.assertEqual(self.srv.stop(), 0, self.srv.err)

        # the CLI on the stopped store
        p = cli("scavenge", "-d", self.dir, "--rate", "-3")
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"--rate", p.stderr)
        # the same strict rule as the server's rate=: no exponent, hex, spaces or bare point
        for bad in ("1e3", "0x10", " 5", "2.", ".5", "0", "1000001"):
            p = cli("scavenge", "-d", self.dir, "--rate", bad)
            self.assertEqual(p.returncode, 4, (bad, p.stderr))
            self.assertIn(b"--rate", p.stderr)
            self.assertIn(b"digits with an optional fraction", p.stderr)
        p = cli("scavenge", "-d", self.dir, "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual(out["bytes_reclaimed"], 0, out)
        self.assertTrue(out["dry_run"])
        p = cli("scavenge", "-d", self.dir, "--rate", "50")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["bytes_reclaimed"], 0)
        p = cli("check", "-d", self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
