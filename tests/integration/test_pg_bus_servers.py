#!/usr/bin/env python3
"""
test_pg_bus_servers.py -- a Lua projection served by two `evstore serve -d
postgresql://...` processes on one database (the private cluster of
tests/pg_cluster.py, named by EVS_PG_STATE).

Server A creates the projection over HTTP and runs it; server B, started
after, finds it in the database and stands by (A holds its lease).  Events
are appended through both.  A is killed with kill -9 while events keep
coming; B takes the projection over and its state is the fold of every
event: each counted once, none skipped.  Both servers answer the state,
read from the database.

Standard library only.  Exit 77 (skipped) without a cluster.
"""
import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import Server, ev  # noqa: E402

SCRIPT = """
return {
  filter = { stream_prefix = "order-" },
  partition = "none",
  init = function() return { count = 0, total = 0 } end,
  handlers = {
    OrderPlaced = function(s, e) s.count = s.count + 1; s.total = s.total + e.data.total end,
  },
}
"""
LUA = {"Content-Type": "text/x-lua"}


def cluster():
    try:
        with open(os.environ["EVS_PG_STATE"]) as f:
            return json.load(f)
    except (KeyError, OSError, ValueError):
        return None


def wait_until(fn, what, timeout=60):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class ProjectionAcrossServers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        st = cluster()
        cls.psql = os.path.join(st["bindir"], "psql")
        cls.db = "evs_itbus_%d" % os.getpid()
        cls.sql("CREATE DATABASE %s" % cls.db)
        cls.url = "postgresql://evs@127.0.0.1:%d/%s" % (st["port"], cls.db)

    @classmethod
    def sql(cls, q):
        st = cluster()
        subprocess.run([cls.psql, "-q", "-v", "ON_ERROR_STOP=1", "-d",
                        "postgresql://evs@127.0.0.1:%d/postgres" % st["port"], "-c", q],
                       check=True, stdout=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        cls.sql("DROP DATABASE %s WITH (FORCE)" % cls.db)

    def append(self, srv, i):
        st, _, b = srv.request("POST", "/streams/order-%d" % (i % 5), [ev("OrderPlaced", {"total": i})])
        self.assertIn(st, (200, 201), b)

    def test_standby_takes_over_after_kill9(self):
        a = Server(self.url).start()
        b = None
        try:
            st, _, body = a.request("PUT", "/projections/orders", body=SCRIPT, headers=LUA)
            self.assertIn(st, (200, 201), body)
            b = Server(self.url).start()
            n = 0
            for srv in (a, b) * 20:
                n += 1
                self.append(srv, n)
            want = lambda k: {"count": k, "total": k * (k + 1) // 2}  # noqa: E731
            wait_until(lambda: a.get("/projections/orders/state")[2] == want(n), what="A to project")
            # B answers from the database, and says it does not run the projection
            self.assertEqual(b.get("/projections/orders/state")[2], want(n))
            st, _, info = b.get("/projections/orders")
            self.assertEqual(st, 200, info)
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait(30)
            for _ in range(40):
                n += 1
                self.append(b, n)
            got = wait_until(lambda: b.get("/projections/orders/state")[2] == want(n) and want(n),
                             what="B to take over and project every event once")
            self.assertEqual(got, want(n))
        finally:
            if a.proc.poll() is None:
                a.stop()
            else:
                a.stop()  # collects its stderr
            if b:
                self.assertEqual(b.stop(), 0, b.err)
                self.assertIn("took it over", b.err)


if __name__ == "__main__":
    if not cluster():
        print("skipped: no PostgreSQL cluster (EVS_PG_STATE; tests/pg_cluster.py starts one)")
        sys.exit(77)
    r = unittest.main(exit=False, verbosity=2).result
    n = r.testsRun
    bad = len(r.failures) + len(r.errors)
    print("%d passed, %d failed" % (n - bad, bad))
    sys.exit(1 if bad else 0)
