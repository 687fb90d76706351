#!/usr/bin/env python3
"""
test_ws_fanout.py -- WebSocket fan-out with shared rendered blocks
(src/server/ws.c): clients with the same filter send from the same block of
frames, clients elsewhere render their own, and every client must still get
exactly its events, in order, once each.

Several subscribers at once, while a writer appends: three on $all from 1
(sharing every block), one filtered by type, one by exact stream, one that
starts in the middle of a block, one that reads nothing until the end (its
block stays pinned while the others move on and the cache turns over), and
one that unsubscribes half-way and resumes from the `next` it was given.
Events are large enough (~6 KB) that a block holds about ten, so runs span
hundreds of blocks and overflow the 16 MiB block cache while the slow
client still holds one.  The delivery counter in /metrics must equal what arrived.

Uses the WebSocket client and server helpers of test_server.py.  Standard
library only; prints "N passed, M failed" last and exits non-zero on failure.
"""
import os
import re
import shutil
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import TIMEOUT, Server, WSClient  # noqa: E402

TYPES = ["T0", "T1", "T2"]
STREAMS = ["fa-0", "fa-1", "fa-2", "fa-3"]
PAD = "x" * 6000  # ~6.3 KB per frame: ~10 events per 64 KiB block; 3,000 events overflow the 16 MiB cache


def event(i):
    return {"event_type": TYPES[i % 3], "data": {"i": i, "pad": PAD}}


class FanoutTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-fanout-")
        self.srv = Server(os.path.join(self.tmp, "data"), "--durability", "none").start()
        self.clients = []

    def tearDown(self):
        for w in self.clients:
            try:
                w.close()
            except OSError:
                pass
        code = self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0, self.srv.err)

    def append(self, first, n, conn):
        """Events first..first+n-1, event i to stream i % 4 at global position i + 1."""
        for i in range(first, first + n):
            st, _, b = self.srv.post_on(conn, "/streams/" + STREAMS[i % 4], [event(i)])
            self.assertEqual(st, 201, b)

    def client(self, sub):
        w = WSClient(self.srv.port)
        self.clients.append(w)
        w.send(dict(sub, op="subscribe"))
        m = w.recv()
        self.assertEqual(m["op"], "subscribed", m)
        return w

    def test_shared_blocks_every_client_exactly_its_events(self):
        before, during = 1500, 1500
        total = before + during
        c = self.srv.conn()
        self.append(0, before, c)  # global position = i + 1
        expect_all = list(range(1, total + 1))
        plans = {
            "all-1": ({"from": 1}, expect_all),
            "all-2": ({"from": 1}, expect_all),
            "all-3": ({"from": 1}, expect_all),
            "type-T1": ({"from": 1, "filter": {"type": "T1"}}, [g for g in expect_all if (g - 1) % 3 == 1]),
            "stream-fa-2": ({"from": 1, "filter": {"stream": "fa-2"}}, [g for g in expect_all if (g - 1) % 4 == 2]),
            "mid-block": ({"from": 777}, list(range(777, total + 1))),
            "slow": ({"from": 1}, expect_all),
        }
        ws = {name: self.client(sub) for name, (sub, _) in plans.items()}
        resumer = self.client({"from": 1})
        got = {name: [] for name in plans}
        errors = []

        def reader(name):
            try:
                want = plans[name][1]
                got[name] = [e["global_position"] for e in ws[name].events(len(want))]
            except Exception as e:  # reported by the main thread
                errors.append("%s: %r" % (name, e))

        threads = [threading.Thread(target=reader, args=(n,)) for n in plans if n != "slow"]
        for t in threads:
            t.start()

        resumed = []

        def resume():
            try:
                w = resumer
                first = [e["global_position"] for e in w.events(700)]
                w.send({"op": "unsubscribe"})
                # events already on their way arrive first, then the reply
                while True:
                    m = w.recv()
                    if m.get("op") == "unsubscribed":
                        break
                    assert m.get("op") == "event", m
                    first.append(m["event"]["global_position"])
                nxt = m["next"]
                assert first == list(range(1, nxt)), "before unsubscribe: %r..." % first[-3:]
                w.send({"op": "subscribe", "from": nxt})
                assert w.recv()["op"] == "subscribed"
                rest = [e["global_position"] for e in w.events(total - (nxt - 1))]
                resumed.extend(first + rest)
            except Exception as e:
                errors.append("resumer: %r" % e)

        rt = threading.Thread(target=resume)
        rt.start()
        self.append(before, during, c)
        c.close()
        for t in threads + [rt]:
            t.join(TIMEOUT)
            self.assertFalse(t.is_alive(), "a reader did not finish")
        # the slow one reads only now, from the block it was left holding
        reader("slow")
        self.assertEqual(errors, [])
        for name, (_, want) in plans.items():
            self.assertEqual(got[name], want, name)
        self.assertEqual(resumed, expect_all)
        delivered = sum(len(v) for v in got.values()) + len(resumed)
        text = self.srv.get("/metrics")[2]
        m = re.search(r'evstore_live_deliveries_total\{protocol="ws"\} (\d+)', text)
        self.assertEqual(int(m.group(1)), delivered)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
