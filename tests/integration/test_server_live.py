#!/usr/bin/env python3
"""
test_server_live.py -- live streams at their edges, against the real
`evstore serve` (helpers shared with test_server.py).

Checked: the SSE `shutdown` event names one resume point two ways (its id,
which EventSource sends back as Last-Event-ID, and `next` for from=) and a
reconnect with either misses and repeats nothing, filtered events included;
/subscribe without from starts at the head, with from=1 at the start, and
a start past head + 1 is refused (SSE 422, WebSocket an error message); SSE
clients that hang up leave /metrics at once (no event, no heartbeat needed)
and the server prints nothing about them; a WebSocket client that sends and
never reads is not read from once its replies are queued (its own sends
block), the server's memory stays bounded, and every reply still arrives,
in order, once it reads.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import TIMEOUT, SSEReader, Server, WSClient, ev, rss_anon_kb  # noqa: E402

SANITIZED = bool(os.environ.get("EVS_SANITIZED"))


def live_count(srv, proto):
    text = srv.get("/metrics")[2]
    return int(re.search(r'evstore_live_subscribers\{protocol="%s"\} (\d+)' % proto, text).group(1))


class LiveEdgeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-live-edge-")
        # heartbeats far away: nothing but the hang-up may end a subscriber
        self.srv = Server(os.path.join(self.tmp, "data"), "--heartbeat-ms", "600000").start()

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_shutdown_event_names_one_resume_point(self):
        s = self.srv
        s.post("/streams/a-1", [ev("Keep", {"i": i}) if i % 3 == 0 else ev("Skip", {"i": i}) for i in range(10)])
        sub = SSEReader(s.port, "/subscribe?from=1&type=Keep")
        got = sub.events(4)
        self.assertEqual([g for g, _ in got], [1, 4, 7, 10])
        s.post("/streams/a-1", [ev("Skip", {"i": 10}), ev("Skip", {"i": 11})])  # examined, filtered out
        time.sleep(0.5)
        s.proc.send_signal(signal.SIGTERM)
        m = sub.next_message()
        self.assertEqual(m.get("event"), "shutdown", m)
        data = json.loads(m["data"])
        # the id (Last-Event-ID) is the last position examined, next is the from= after it
        self.assertEqual(int(m["id"]), 12)
        self.assertEqual(data["last_event_id"], 12)
        self.assertEqual(data["next"], 13)
        sub.close()
        self.assertEqual(s.stop(), 0, s.err)
        s.start()
        s.post("/streams/a-1", [ev("Keep", {"i": 12}), ev("Skip", {"i": 13}), ev("Keep", {"i": 14})])
        r1 = SSEReader(s.port, "/subscribe?type=Keep", {"Last-Event-ID": m["id"]})
        r2 = SSEReader(s.port, "/subscribe?type=Keep&from=%d" % data["next"])
        for r in (r1, r2):
            self.assertEqual([(g, e["data"]["i"]) for g, e in r.events(2)], [(13, 12), (15, 14)])
            r.close()

    def test_subscribe_starts_at_now_unless_told(self):
        s = self.srv
        s.post("/streams/n-1", [ev("Old", {"i": 0}), ev("Old", {"i": 1})])
        live = SSEReader(s.port, "/subscribe")
        whole = SSEReader(s.port, "/subscribe?from=1")
        s.post("/streams/n-1", ev("New", {"i": 2}))
        self.assertEqual([g for g, _ in live.events(1)], [3])
        self.assertEqual([g for g, _ in whole.events(3)], [1, 2, 3])
        live.close()
        whole.close()

    def test_a_start_past_the_head_is_refused(self):
        # it would stay silent until the log grew there, then skip everything before it
        s = self.srv
        s.post("/streams/p-1", [ev("A", {"i": 0}), ev("A", {"i": 1})])
        # the bus's message (evs__bus_start_next), prefixed with what asked for the start
        for path, headers, what in (("/subscribe?from=4", {},
                                     "parameter from=4: position 4 lies past the store's head 2: at most 3"),
                                    ("/subscribe", {"Last-Event-ID": "3"},
                                     "Last-Event-ID 3: position 4 lies past the store's head 2: at most 3")):
            st, _, b = s.get(path, headers=headers)
            self.assertEqual(st, 422, b)
            self.assertIn(what, b["error"])
        # the largest id whose successor is still a position: one more would read as "now", so it is
        # not a global position at all (it used to become a start past the head)
        st, _, b = s.get("/subscribe", headers={"Last-Event-ID": "18446744073709551614"})
        self.assertEqual(st, 400, b)
        self.assertIn("Last-Event-ID \"18446744073709551614\" is not a global position", b["error"])
        w = WSClient(s.port)
        w.send({"op": "subscribe", "from": 4})
        m = w.recv()
        self.assertEqual(m["op"], "error", m)
        self.assertIn("from: position 4 lies past the store's head 2: at most 3", m["error"])
        # not subscribed: the next subscribe is taken, and head + 1 is "from now"
        w.send({"op": "subscribe", "from": 3})
        self.assertEqual(w.recv(), {"op": "subscribed", "from": 3, "head": 2})
        w.close()
        sub = SSEReader(s.port, "/subscribe?from=3")
        s.post("/streams/p-1", ev("A", {"i": 2}))
        self.assertEqual([g for g, _ in sub.events(1)], [3])
        sub.close()

    def test_sse_clients_that_hang_up_leave_at_once_quietly(self):
        s = self.srv
        s.post("/streams/h-1", ev())
        subs = [SSEReader(s.port, "/subscribe?from=1") for _ in range(3)] + [SSEReader(s.port, "/subscribe")]
        subs[0].events(1)
        deadline = time.time() + 5 * (4 if SANITIZED else 1)
        while live_count(s, "sse") != 4 and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(live_count(s, "sse"), 4)
        time.sleep(0.3)  # all of them parked at the head: nothing more to send
        # one closes plainly, one resets, one just goes (the process would exit)
        subs[0].close()
        subs[1].s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        subs[1].close()
        subs[2].s.shutdown(socket.SHUT_RDWR)
        subs[2].close()
        t0 = time.time()
        while live_count(s, "sse") != 1 and time.time() - t0 < 2 * (4 if SANITIZED else 1):
            time.sleep(0.05)
        self.assertEqual(live_count(s, "sse"), 1, "dead subscribers still counted after %.1f s" % (time.time() - t0))
        # the one left still gets events
        s.post("/streams/h-1", ev("After"))
        self.assertEqual(subs[3].events(1)[0][1]["event_type"], "After")
        # a client that goes while events flow to it
        busy = SSEReader(s.port, "/subscribe?from=1")
        s.post("/streams/h-1", [ev("Pad", {"p": "x" * 2000}) for _ in range(500)])
        busy.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        busy.close()
        subs[3].close()
        t0 = time.time()
        while live_count(s, "sse") != 0 and time.time() - t0 < 3 * (4 if SANITIZED else 1):
            time.sleep(0.05)
        self.assertEqual(live_count(s, "sse"), 0)
        self.assertEqual(s.stop(), 0, s.err)
        self.assertNotIn("http:", s.err)  # no libmicrohttpd complaint about clients that left

    def test_ws_client_that_never_reads_cannot_queue_replies_without_bound(self):
        s = self.srv
        ws = WSClient(s.port)
        ws.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        rss0 = rss_anon_kb(s.proc.pid)
        # {"op":"ping"} frames, masked, back to back; the server answers each with a pong
        payload = b'{"op":"ping"}'
        mask = b"\x01\x02\x03\x04"
        frame = struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(payload))
        blob = frame * 20000
        cap = 64 << 20  # far more than every socket buffer between us could hold
        ws.s.setblocking(False)
        sent, stalled_since = 0, None
        while sent < cap:
            try:
                n = ws.s.send(blob[sent % len(blob):] if sent % len(blob) else blob)
                sent += n
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.time()
                elif time.time() - stalled_since > 2:
                    break
                time.sleep(0.01)
        self.assertLess(sent, cap, "the server kept reading %d bytes from a client that reads nothing" % sent)
        rss1 = rss_anon_kb(s.proc.pid)
        if rss0 is not None and rss1 is not None and not SANITIZED:
            self.assertLess(rss1 - rss0, 32 * 1024, "RssAnon grew by %d kB" % (rss1 - rss0))
        # now read: every ping gets its pong, in order, and the connection works
        pings = sent // len(frame)
        partial = sent % len(frame)
        got = [0]
        done = threading.Event()

        def reader():
            ws.s.setblocking(True)
            ws.s.settimeout(TIMEOUT)
            buf = bytearray()
            need = pings + 1 + (1 if partial else 0)
            while got[0] < need:
                d = ws.s.recv(1 << 20)
                if not d:
                    break
                buf += d
                i = 0
                while len(buf) - i >= 2:
                    n = buf[i + 1] & 0x7F
                    hdr = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                    if n == 126 and len(buf) - i >= 4:
                        n = struct.unpack("!H", buf[i + 2:i + 4])[0]
                    if len(buf) - i < hdr + n:
                        break
                    msg = json.loads(bytes(buf[i + hdr:i + hdr + n]))
                    self.assertEqual(msg["op"], "pong", msg)
                    got[0] += 1
                    i += hdr + n
                del buf[:i]
            done.set()

        t = threading.Thread(target=reader)
        t.start()
        ws.s.setblocking(True)
        if partial:
            ws.s.sendall(frame[partial:])
        ws.s.sendall(frame)
        t.join(TIMEOUT)
        self.assertTrue(done.is_set(), "replies did not all arrive: %d of %d" % (got[0], pings + 2))
        self.assertEqual(got[0], pings + 1 + (1 if partial else 0))
        ws.close()
        self.assertEqual(s.stop(), 0, s.err)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
