#!/usr/bin/env python3
"""
test_nats_import.py -- `evstore nats import` (src/dist/nats_import.c,
docs/distribution.md): messages that another service publishes to a
JetStream stream, appended into the store's streams exactly once, against a
real 3-node cluster (test_nats.py's Cluster).  The other service is this
test itself, speaking the NATS protocol over a socket (HPUB with headers,
JetStream API requests), so nothing here goes through the code under test.

Checked:
  - kills: N plain messages (subjects shop.REGION.TYPE, some with a UUID
    Nats-Msg-Id, some with another Nats-Msg-Id, some with none, some with
    an Evs-Event-Type header) are imported by `nats import --follow`, which
    is killed with SIGKILL three times, while the NATS node leading the
    stream is killed as well and more messages are published.  Afterwards
    each target stream (order-REGION) holds its messages once each, in
    publication order; event ids are the Nats-Msg-Id (UUID), the same
    derived id on every run otherwise; metadata names the JetStream stream,
    sequence and subject; a rerun imports nothing, and a second consumer
    reading everything again re-appends nothing (every message "already").
  - expected version: Evs-Expected-Version no_stream / 1 append, a second
    1 is a conflict: the import stops (exit 3) naming the sequence and
    acks nothing after it (a rerun stops at the same message, stores
    nothing twice); with --dead-letter it goes on and the conflict is an
    ImportRejected event with the reason.
  - bad input: a body that is not JSON, Evs-Expected-Version "abc", a bad
    Evs-Correlation-Id, a '$' target stream: each named in its reason
    (dead letter) or in the error when it stops (exit 4); bad options
    (an unknown template key, a bad consumer name, missing --to).
  - `serve --nats-import` imports as it follows the stream.
  - the relay's filter and subject template (`nats publish` and `serve`):
    only matching events, as sequences 1..N in global order, subjects from
    the template, nothing twice on a rerun; a filtered publisher killed with
    SIGKILL twice still leaves messages = last sequence = matching events,
    message N being the N-th matching event.

Skipped (exit 77) only when nats-server is not installed.  Standard library only.
"""
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import shutil
import threading
import time
import unittest
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli_url import BIN, SLOW, TIMEOUT, run  # noqa: E402
from test_nats import NATS_SERVER, Cluster, info  # noqa: E402

# modest: the importer appends runs of messages to one stream per fdatasync
N_MSGS = 1500 if os.environ.get("EVS_SANITIZED") else 6000
REGIONS = ["eu", "us", "ap"]


class NatsClient:
    """A minimal NATS protocol client: publish with headers, requests, JetStream acks."""

    def __init__(self, port):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")
        self.f.readline()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB _INBOX.t.* 1\r\n')
        self.n = 0

    def close(self):
        self.s.close()

    def _frame(self, subject, body, headers, reply):
        h = b""
        if headers:
            h = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items()) + b"\r\n"
        return b"HPUB %s %s %d %d\r\n" % (subject.encode(), reply.encode(), len(h), len(h) + len(body)) + h + body + b"\r\n"

    def _reply(self):
        while True:
            line = self.f.readline()
            if not line:
                raise AssertionError("NATS: connection closed")
            if line.startswith(b"PING"):
                self.s.sendall(b"PONG\r\n")
                continue
            if line.startswith(b"MSG") or line.startswith(b"HMSG"):
                parts = line.split()
                payload = self.f.read(int(parts[-1]))
                self.f.readline()
                if line.startswith(b"HMSG"):
                    hdr = payload[:int(parts[-2])]
                    payload = payload[int(parts[-2]):]
                    if b"503" in hdr.split(b"\r\n")[0]:
                        return {"error": {"description": "no responders"}}
                return json.loads(payload) if payload else {}
            if line.startswith(b"-ERR"):
                raise AssertionError("NATS: %r" % line)

    def request(self, subject, payload, headers=None):
        self.n += 1
        self.s.sendall(self._frame(subject, json.dumps(payload).encode() if not isinstance(payload, bytes) else payload,
                                   headers, "_INBOX.t.%d" % self.n))
        return self._reply()

    def publish_many(self, msgs, chunk=200):
        """msgs: (subject, body bytes, headers); each acknowledged by JetStream or an AssertionError."""
        for i in range(0, len(msgs), chunk):
            part = msgs[i:i + chunk]
            out = b""
            for subject, body, headers in part:
                self.n += 1
                out += self._frame(subject, body, headers, "_INBOX.t.%d" % self.n)
            self.s.sendall(out)
            for _ in part:
                r = self._reply()
                if "error" in r:
                    raise AssertionError("publish refused: %r" % r)


def js_request(cluster, subject, payload, timeout=120):
    """A JetStream API request, retried while the cluster elects leaders."""
    deadline = time.time() + timeout * SLOW
    last = None
    while time.time() < deadline:
        for i, p in enumerate(cluster.client):
            if cluster.procs[i].poll() is not None:
                continue
            try:
                c = NatsClient(p)
                try:
                    r = c.request(subject, payload)
                finally:
                    c.close()
                if "error" not in r:
                    return r
                last = r
            except (OSError, AssertionError) as e:
                last = e
        time.sleep(0.5)
    raise AssertionError("%s: %r" % (subject, last))


def publish(cluster, msgs, stream=None, chunk=200):
    """
    Publish with JetStream acks through a live node.  With `stream`, one
    message at a time, resuming after a failure (a node's death) from the
    stream's message count, so none is stored twice although most carry no
    Nats-Msg-Id.
    """
    deadline = time.time() + 120 * SLOW
    base = js_request(cluster, "$JS.API.STREAM.INFO." + stream, {})["state"]["messages"] if stream else 0
    done = 0
    while True:
        port = [p for i, p in enumerate(cluster.client) if cluster.procs[i].poll() is None][0]
        try:
            c = NatsClient(port)
            try:
                c.publish_many(msgs[done:], 1 if stream else chunk)
                return
            finally:
                c.close()
        except (OSError, AssertionError, ValueError):
            if not stream or time.time() > deadline:
                raise
            time.sleep(0.5)
            done = js_request(cluster, "$JS.API.STREAM.INFO." + stream, {})["state"]["messages"] - base


def msg_of(cluster, stream, seq):
    """(subject, Evs-Global-Position) of message seq, read over the JetStream API."""
    r = js_request(cluster, "$JS.API.STREAM.MSG.GET." + stream, {"seq": seq})["message"]
    h = base64.b64decode(r.get("hdrs", "")).decode()
    gp = [l.split(":", 1)[1].strip() for l in h.split("\r\n") if l.startswith("Evs-Global-Position:")][0]
    return r["subject"], int(gp)


def shop_msg(i):
    """Message i: the region decides the target stream (runs of 3), the id rule cycles."""
    region = REGIONS[(i // 3) % 3]
    etype = ["Placed", "Paid", "Shipped"][i % 3]
    headers = {}
    if i % 4 == 0:
        headers["Nats-Msg-Id"] = str(uuid.UUID(int=i + 1))
    elif i % 4 == 1:
        headers["Nats-Msg-Id"] = "shop-%d" % i
    if i % 5 == 0:
        headers["Evs-Event-Type"] = "Order" + etype
    return "shop.%s.%s" % (region, etype), json.dumps({"i": i, "pad": "x" * (i % 30)}).encode(), headers


class NatsImportTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-nats-import-")
        cls.cluster = Cluster(cls.tmp).start()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def ok(self, r):
        self.assertEqual(r.code, 0, r)
        return r

    def wait_for(self, what, cond, timeout, step=0.2):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = cond()
            if v:
                return v
            time.sleep(step)
        self.fail("timed out after %d s waiting for %s" % (timeout, what))

    def stream_events(self, d, stream):
        r = run("read", "-d", d, stream)
        return r.lines() if r.code == 0 else []

    def create_stream(self, name, subjects, replicas):
        js_request(self.cluster, "$JS.API.STREAM.CREATE." + name,
                   {"name": name, "subjects": subjects, "num_replicas": replicas, "storage": "file",
                    "duplicate_window": 120 * 10**9})

    # ------------------------------------------------ kills, then exactly once

    def importer(self, d, urls, log):
        return subprocess.Popen([BIN, "nats", "import", "-d", d, "--nats", urls, "--stream", "SHOP", "--to",
                                 "order-{2}", "--batch", "16", "--ack-wait-ms", "3000", "--timeout-ms", "2000",
                                 "--follow"], stdout=subprocess.PIPE, stderr=log)

    def test_3_kills_exactly_once(self):
        c = self.cluster
        self.create_stream("SHOP", ["shop.>"], 3)
        first = N_MSGS * 2 // 3
        publish(c, [shop_msg(i) for i in range(first)])
        d = self.path("imp")
        log = open(self.path("import.log"), "ab")
        # a crashed importer's trace: the consumer as the importer makes it, 50 messages delivered, never acked
        js_request(c, "$JS.API.CONSUMER.DURABLE.CREATE.SHOP.evstore-import",
                   {"stream_name": "SHOP", "config": {"durable_name": "evstore-import", "ack_policy": "all",
                                                      "deliver_policy": "all", "ack_wait": 3 * 10**9}})

        def deliver_unacked():
            # a loaded cluster may answer the pull before the new consumer is ready: pull again then
            cl = NatsClient(c.client[0])
            try:
                cl.request("$JS.API.CONSUMER.MSG.NEXT.SHOP.evstore-import", {"batch": 50, "no_wait": True})
            finally:
                cl.close()
            ci = js_request(c, "$JS.API.CONSUMER.INFO.SHOP.evstore-import", {})
            return ci if ci.get("num_ack_pending", 0) > 0 else None

        self.wait_for("deliveries left unacked by a crashed importer", deliver_unacked, 60 * SLOW, 0.5)

        def head():
            r = run("info", "-d", d)
            return r.obj()["head"] if r.code == 0 else 0

        # three importers killed with SIGKILL at growing points; the stream's leader node dies meanwhile
        # and the rest of the messages is published then
        leader = None
        for k, upto in enumerate((N_MSGS // 10, N_MSGS // 2, N_MSGS * 3 // 4)):
            p = self.importer(d, c.urls(), log)
            if k == 1:
                self.wait_for("%d messages imported" % (N_MSGS // 4), lambda: head() >= N_MSGS // 4, 120 * SLOW, 0.02)
                leader = info(c.urls(alive_only=True), "SHOP")["leader"]
                c.kill(int(leader[1:]))
                publish(c, [shop_msg(i) for i in range(first, N_MSGS)], stream="SHOP")
            self.wait_for("%d messages imported" % upto, lambda: head() >= upto, 120 * SLOW, 0.02)
            p.kill()
            p.communicate()
            print("importer %d killed with the store's head at %d" % (k + 1, head()), file=sys.stderr)
        # the last run goes to the end and stops by itself
        r = run("nats", "import", "-d", d, "--nats", c.urls(alive_only=True), "--stream", "SHOP", "--to",
                "order-{2}", "--batch", "64", "--ack-wait-ms", "3000", "--timeout-ms", "2000")
        log.close()
        self.ok(r)
        self.assertEqual(r.obj()["duplicates"], 0, r)
        self.assertEqual(r.obj()["rejected"], 0, r)
        self.assertEqual(head(), N_MSGS)

        # every message once, in publication order, in its region's stream
        seen = {}
        for region in REGIONS:
            evs = self.stream_events(d, "order-" + region)
            idx = [json.loads(json.dumps(e["data"]))["i"] for e in evs]
            want = [i for i in range(N_MSGS) if REGIONS[(i // 3) % 3] == region]
            self.assertEqual(idx, want, "order-%s" % region)
            for e in evs:
                seen[e["data"]["i"]] = e
        self.assertEqual(len(seen), N_MSGS)
        ids = {}
        for i in (0, 1, 2, 5, 8, N_MSGS - 1):
            e = seen[i]
            subject, body, headers = shop_msg(i)
            self.assertEqual(e["metadata"]["nats_stream"], "SHOP")
            self.assertEqual(e["metadata"]["nats_subject"], subject)
            self.assertGreater(e["metadata"]["nats_seq"], 0)
            etype = headers.get("Evs-Event-Type", subject.rsplit(".", 1)[1])
            self.assertEqual(e["event_type"], etype)
            if i % 4 == 0:
                self.assertEqual(e["event_id"], headers["Nats-Msg-Id"])
            if i % 4 == 1:
                self.assertEqual(e["metadata"]["nats_msg_id"], headers["Nats-Msg-Id"])
            ids[i] = e["event_id"]
        self.assertEqual(len(set(ids.values())), len(ids))
        st = info(c.urls(alive_only=True), "SHOP")
        with open(self.path("import.log"), errors="replace") as f:
            ilog = f.read()
        self.assertIn("unacknowledged deliveries: starting again after sequence 0", ilog)

        # a rerun has nothing to do; a new consumer re-reads everything and appends nothing
        r = self.ok(run("nats", "import", "-d", d, "--nats", c.urls(alive_only=True), "--stream", "SHOP", "--to",
                        "order-{2}"))
        self.assertEqual((r.obj()["imported"], r.obj()["already"]), (0, 0), r)
        r = self.ok(run("nats", "import", "-d", d, "--nats", c.urls(alive_only=True), "--stream", "SHOP", "--to",
                        "order-{2}", "--consumer", "again"))
        self.assertEqual((r.obj()["imported"], r.obj()["already"], r.obj()["last_seq"]), (0, N_MSGS, st["last_seq"]), r)
        self.assertEqual(head(), N_MSGS)
        self.ok(run("check", "-d", d))
        c.start_node(int(leader[1:]))  # whole again for whatever runs next

    # ----------------------------------------- expected version and bad input

    def test_2_expected_version_and_bad_input(self):
        c = self.cluster
        self.create_stream("BAD", ["bad.>"], 1)
        urls = c.urls(alive_only=True)
        msgs = [
            ("bad.acct-a.Opened", b'{"n":1}', {"Evs-Expected-Version": "no_stream"}),     # 1
            ("bad.acct-a.Deposited", b'{"n":2}', {"Evs-Expected-Version": "1"}),          # 2
            ("bad.acct-a.Deposited", b'{"n":3}', {"Evs-Expected-Version": "1"}),          # 3: conflict
            ("bad.acct-a.Deposited", b"not json", {}),                                    # 4
            ("bad.acct-a.Deposited", b'{"n":5}', {"Evs-Expected-Version": "abc"}),        # 5
            ("bad.acct-a.Deposited", b'{"n":6}', {"Evs-Correlation-Id": "nope"}),         # 6
            ("bad.$sys.Deposited", b'{"n":7}', {}),                                       # 7: reserved name
            ("bad.acct-a.Closed", b'{"n":8}', {"Evs-Expected-Version": "2"}),             # 8
        ]
        publish(c, msgs)
        d = self.path("bad")
        args = ["nats", "import", "-d", d, "--nats", urls, "--stream", "BAD", "--to", "{2}"]
        for _ in range(2):  # stops at the conflict, and again at the same place: nothing acked past it
            r = run(*args)
            self.assertEqual(r.code, 3, r)
            self.assertIn("sequence 3 (subject bad.acct-a.Deposited)", r.err)
            self.assertIn('stream "acct-a" (Evs-Expected-Version): Concurrency conflict: expected version 1, '
                          'actual version 2', r.err)
            self.assertEqual([e["data"]["n"] for e in self.stream_events(d, "acct-a")], [1, 2])
        # with a dead-letter stream: every bad message is reported there, the good ones go on
        r = self.ok(run(*args, "--dead-letter", "import-dlq"))
        self.assertEqual((r.obj()["imported"], r.obj()["rejected"], r.obj()["last_seq"]), (1, 5, 8), r)
        self.assertEqual([e["data"]["n"] for e in self.stream_events(d, "acct-a")], [1, 2, 8])
        dlq = self.stream_events(d, "import-dlq")
        self.assertEqual([e["event_type"] for e in dlq], ["ImportRejected"] * 5)
        self.assertEqual([e["data"]["nats_seq"] for e in dlq], [3, 4, 5, 6, 7])
        reasons = [e["data"]["reason"] for e in dlq]
        self.assertIn("expected version 1", reasons[0])
        self.assertIn("not a JSON object", reasons[1])
        self.assertIn('Evs-Expected-Version: "abc" is not a version', reasons[2])
        self.assertIn('Evs-Correlation-Id: "nope" is not a UUID', reasons[3])
        self.assertIn("reserved", reasons[4])
        self.assertEqual([e["data"]["error"] for e in dlq],
                         ["ECONFLICT", "EJSON", "EINVAL", "EINVAL", "EINVAL"])
        self.assertEqual(base64.b64decode(dlq[1]["data"]["body_base64"]), b"not json")
        # nothing more to do, and a redelivery of everything (a new consumer) changes nothing
        r = self.ok(run(*args, "--dead-letter", "import-dlq"))
        self.assertEqual((r.obj()["imported"], r.obj()["rejected"]), (0, 0), r)
        before = run("info", "-d", d).obj()["head"]
        r = self.ok(run(*args, "--dead-letter", "import-dlq", "--consumer", "replay"))
        self.assertEqual(run("info", "-d", d).obj()["head"], before)
        # the stop when a body is not JSON, without a dead-letter stream
        publish(c, [("bad.json.Created", b"{oops", {})])
        r = run("nats", "import", "-d", self.path("bad3"), "--nats", urls, "--stream", "BAD", "--to", "{2}",
                "--consumer", "third", "--subject", "bad.json.>")
        self.assertEqual(r.code, 4, r)
        self.assertIn("sequence 9 (subject bad.json.Created): the body is not a JSON object", r.err)

    def test_4_serve(self):
        c = self.cluster
        self.create_stream("SRVIMP", ["srv.>"], 3)
        d = self.path("served")
        errf = tempfile.TemporaryFile()
        p = subprocess.Popen([BIN, "serve", "-d", d, "--listen", "127.0.0.1:0", "--nats", c.urls(alive_only=True),
                              "--nats-import", "SRVIMP", "--nats-import-to", "dev-{2}"],
                             stdout=subprocess.PIPE, stderr=errf)
        try:
            url = re.search(r"(http://127\.0\.0\.1:\d+)", p.stdout.readline().decode()).group(1)
            publish(c, [("srv.%d.Measured" % (i % 2), json.dumps({"t": i}).encode(), {}) for i in range(20)])
            self.wait_for("the server to import", lambda: len(run("read", "--url", url, "dev-1").lines()) == 10, 60 * SLOW)
            self.assertEqual([e["data"]["t"] for e in run("read", "--url", url, "dev-0").lines()], list(range(0, 20, 2)))

            def metrics():
                body = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
                return dict(re.findall(r"^(evstore_nats_import_\w+) (\d+)$", body, re.M))

            m = self.wait_for("the metrics", lambda: (lambda m: m if m.get("evstore_nats_import_last_sequence") == "20"
                                                     else None)(metrics()), 30 * SLOW)
            self.assertEqual((m["evstore_nats_import_imported_total"], m["evstore_nats_import_rejected_total"],
                              m["evstore_nats_import_last_sequence"]), ("20", "0", "20"), m)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(TIMEOUT), 0)
            errf.seek(0)
            err = errf.read().decode()
        self.assertIn("stopped cleanly", err)
        r = run("serve", "-d", d, "--nats-import", "X")
        self.assertEqual(r.code, 1, r)
        self.assertIn("--nats-import needs --nats URLS and --nats-import-to TEMPLATE", r.err)

    # --------------------------------------- the relay's filter and subject template

    def test_5_relay_filter_template(self):
        c = self.cluster
        urls = c.urls(alive_only=True)
        d = self.path("flt")
        for stream, etype in (("order-1", "Placed"), ("order-1", "Paid"), ("order-1", "Shipped"), ("cart-1", "Placed"),
                              ("order-2", "Placed"), ("inv-1", "Paid")):
            self.ok(run("append", "-d", d, stream, '{"event_type":"%s","data":{"s":"%s"}}' % (etype, stream)))
        args = ["nats", "publish", "-d", d, "--nats", urls, "--stream", "FLT", "--subject-prefix", "flt",
                "--subject-template", "{stream_type}.{stream}.{event_type}", "--filter-stream-prefix", "order-",
                "--filter-event-type", "Placed,Paid"]
        self.assertEqual(self.ok(run(*args)).obj()["published"], 6)  # read up to the head, published 3 of them
        st = info(urls, "FLT")
        self.assertEqual((st["messages"], st["last_seq"]), (3, 3))

        def msg(seq):
            return msg_of(c, "FLT", seq)

        self.assertEqual([msg(i) for i in (1, 2, 3)], [("flt.order.order-1.Placed", 1), ("flt.order.order-1.Paid", 2),
                                                       ("flt.order.order-2.Placed", 5)])
        self.ok(run("append", "-d", d, "order-3", '{"event_type":"Paid","data":{}}'))
        self.ok(run("append", "-d", d, "cart-2", '{"event_type":"Paid","data":{}}'))
        for _ in range(2):  # the second run finds nothing new: no message twice
            self.assertEqual(self.ok(run(*args)).obj()["published"], 8)
            st = info(urls, "FLT")
            self.assertEqual((st["messages"], st["last_seq"]), (4, 4))
        self.assertEqual(msg(4), ("flt.order.order-3.Paid", 7))
        r = run("nats", "publish", "-d", d, "--nats", urls, "--stream", "FLT2", "--subject-prefix", "flt2",
                "--subject-template", "{stream}.{nope}")
        self.assertEqual(r.code, 4, r)
        self.assertIn('token "{nope}" is neither literal text nor {stream}, {stream_type} or {event_type}', r.err)
        r = run("serve", "-d", self.path("flt-srv"), "--listen", "127.0.0.1:0", "--nats", urls,
                "--nats-subject-template", "{nope}")
        self.assertEqual(r.code, 4, r)
        self.assertIn("subject template", r.err)
        # the server's relay with the same options
        errf = tempfile.TemporaryFile()
        p = subprocess.Popen([BIN, "serve", "-d", self.path("flt-srv"), "--listen", "127.0.0.1:0", "--nats", urls,
                              "--nats-stream", "FLTS", "--nats-subject-prefix", "flts", "--nats-subject-template",
                              "x.{event_type}", "--nats-filter-event-type", "Paid"],
                             stdout=subprocess.PIPE, stderr=errf)
        try:
            url = re.search(r"(http://127\.0\.0\.1:\d+)", p.stdout.readline().decode()).group(1)
            for i, etype in enumerate(["Placed", "Paid", "Placed", "Paid"]):
                self.ok(run("append", "--url", url, "order-%d" % i, '{"event_type":"%s","data":{}}' % etype))
            self.wait_for("the relay", lambda: (info(urls, "FLTS") or {}).get("messages") == 2, 60 * SLOW)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(TIMEOUT), 0)
        self.assertEqual([m[0] for m in (msg_of(c, "FLTS", 1), msg_of(c, "FLTS", 2))], ["flts.x.Paid"] * 2)
        self.assertEqual([msg_of(c, "FLTS", i)[1] for i in (1, 2)], [2, 4])

    def test_6_filtered_relay_kills(self):
        c = self.cluster
        n, batch = (4000 if os.environ.get("EVS_SANITIZED") else 20000), 500
        d = self.path("fltk")
        line = '{"event_type":"Placed","data":{"pad":"%s"}}' % ("p" * 40)
        for b in range(n // batch):  # batches alternate between order-B (published) and cart-B (not)
            self.ok(run("append", "-d", d, ("order-%d" if b % 2 == 0 else "cart-%d") % b, stdin=(line + "\n") * batch))
        gps = [b * batch + j + 1 for b in range(0, n // batch, 2) for j in range(batch)]
        args = [BIN, "nats", "publish", "-d", d, "--nats", c.urls(), "--stream", "FLTK", "--subject-prefix", "fltk",
                "--replicas", "3", "--window", "64", "--filter-stream-prefix", "order-"]
        for upto in (len(gps) // 5, len(gps) // 2):
            p = subprocess.Popen(args + ["--follow"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.wait_for("%d published" % upto, lambda: ((info(c.urls(alive_only=True), "FLTK") or {})
                                                          .get("last_seq", 0) >= upto), 120 * SLOW, 0.02)
            p.kill()
            p.wait()
            print("publisher killed at sequence %d of %d" % (info(c.urls(alive_only=True), "FLTK")["last_seq"], len(gps)),
                  file=sys.stderr)
        for _ in range(2):  # to the end, then a run with nothing to do
            r = self.ok(run(*args[1:]))
            self.assertEqual(r.obj()["published"], n)
            st = info(c.urls(alive_only=True), "FLTK")
            self.assertEqual((st["messages"], st["first_seq"], st["last_seq"]), (len(gps), 1, len(gps)))
        for seq in sorted(set([1, len(gps)] + [1 + (k * 997) % len(gps) for k in range(30)])):
            self.assertEqual(msg_of(c, "FLTK", seq)[1], gps[seq - 1], "sequence %d" % seq)

    def test_1_bad_options(self):
        urls = self.cluster.urls(alive_only=True)
        d = self.path("opts")
        r = run("nats", "import", "-d", d, "--nats", urls, "--stream", "BAD", "--to", "x-{nope}")
        self.assertEqual(r.code, 4, r)
        self.assertIn("{nope} is not {subject}, {N}, {-N} or {header:NAME}", r.err)
        r = run("nats", "import", "-d", d, "--nats", urls, "--stream", "BAD", "--to", "x", "--consumer", "a.b")
        self.assertEqual(r.code, 4, r)
        self.assertIn('consumer name "a.b"', r.err)
        r = run("nats", "import", "-d", d, "--nats", urls, "--stream", "BAD")
        self.assertEqual(r.code, 1, r)
        self.assertIn("--to", r.err)
        r = run("nats", "import", "-d", d, "--nats", urls, "--stream", "NOPE", "--to", "x")
        self.assertEqual(r.code, 2, r)
        self.assertIn("NOPE does not exist", r.err)


if __name__ == "__main__":
    if not NATS_SERVER:
        print("test_nats_import.py: skipped: nats-server is not installed (apt-get install nats-server)")
        sys.exit(77)
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
