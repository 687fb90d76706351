#!/usr/bin/env python3
"""
test_cli_url.py -- the evstore command with --url against a running
`evstore serve` (binary in $EVSTORE_BIN): append, read, tail, streams and
info give the same JSON lines and the same exit codes as on a local store.

The real server is started on a free loopback port (`--listen 127.0.0.1:0`,
address parsed from its first line).  Output parity is checked directly:
the same read through --url and through -d on the server's own directory
(read-only opens work while the server holds the writer lock) must print
the same bytes.  Where a status cannot be provoked from the real server
through the CLI (415, 5xx, an answer that is not JSON) or where the
request itself is under test (Last-Event-ID on reconnect), a small fake
server from http.server answers instead.

Standard library only.  Prints "N passed, M failed" as its last line and
exits non-zero when anything failed, so CTest (it_cli_url) reports it.
"""
import http.client
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
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
    sys.exit("test_cli_url.py: set EVSTORE_BIN to the evstore binary")


BIN = find_binary()
SLOW = 4 if os.environ.get("EVS_SANITIZED") else 1
TIMEOUT = 120 * SLOW
PAGE = 1000  # the CLI's page size (src/cli/cli_remote.c)


class Result:
    def __init__(self, args, proc):
        self.args = args
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def lines(self):
        return [json.loads(l) for l in self.out.splitlines() if l.strip()]

    def obj(self):
        ls = self.lines()
        assert len(ls) == 1, "expected one JSON line, got %r" % self.out
        return ls[0]

    def __repr__(self):
        return "evstore %s -> exit %s\nstdout: %s\nstderr: %s" % (
            " ".join(a[:80] for a in self.args), self.code, self.out[:2000], self.err[:2000])


def run(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.pop("EVSTORE_DIR", None)
    e.pop("EVSTORE_URL", None)
    if env:
        e.update(env)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    p = subprocess.run([BIN] + list(args), input=stdin or b"", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=TIMEOUT)
    return Result(list(args), p)


def ev(event_type, data=None, **fields):
    o = {"event_type": event_type, "data": data if data is not None else {}}
    o.update(fields)
    return json.dumps(o, separators=(",", ":"))


class Server:
    """One `evstore serve` on 127.0.0.1 (port 0: a free one)."""

    def __init__(self, datadir, port=0, *extra):
        self.dir = datadir
        self.port = port
        self.extra = list(extra)

    def start(self):
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [BIN, "serve", "-d", self.dir, "--listen", "127.0.0.1:%d" % self.port] + self.extra,
            stdout=subprocess.PIPE, stderr=self.errf)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"(http://127\.0\.0\.1:(\d+))", line)
        if not m:
            self.proc.wait(TIMEOUT)
            self.errf.seek(0)
            raise AssertionError("server did not start: %r %s" % (line, self.errf.read().decode()))
        self.url, self.port = m.group(1), int(m.group(2))
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.errf.seek(0)
        err = self.errf.read().decode("utf-8", "replace")
        self.errf.close()
        assert code == 0, "serve exited %s: %s" % (code, err)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def requests(self, route, status="200"):
        """evstore_http_requests_total for one route and status, from /metrics."""
        st, text = self.get("/metrics")
        assert st == 200, text
        m = re.search(r'^evstore_http_requests_total\{route="%s",status="%s"\} (\d+)$' % (route, status),
                      text, re.M)
        return int(m.group(1)) if m else 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Tail:
    """`evstore tail` as a child process whose stdout lines can be awaited."""

    def __init__(self, *args, env=None):
        e = dict(os.environ)
        e.pop("EVSTORE_DIR", None)
        e.pop("EVSTORE_URL", None)
        e.update(env or {})
        self.proc = subprocess.Popen([BIN, "tail"] + list(args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self.buf = b""

    def line(self, timeout=TIMEOUT):
        """The next stdout line as JSON; None when none came within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        l, _, self.buf = self.buf.partition(b"\n")
        self.raw = l.decode()
        return json.loads(l)

    def stop(self, sig=signal.SIGINT):
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tail did not exit after signal %d" % sig)
        rest = self.proc.stdout.read()
        err = self.proc.stderr.read().decode("utf-8", "replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, rest, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


# ---------------------------------------------------------------------------
class UrlTest(unittest.TestCase):
    """One server for the class; every test uses streams of its own."""

    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-url-")
        cls.dir = os.path.join(cls.tmp, "data")
        cls.srv = Server(cls.dir, 0, "--max-body", "65536", "--heartbeat-ms", "200").start()
        cls.url = cls.srv.url

    @classmethod
    def tearDownClass(cls):
        try:
            cls.srv.stop()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def ok(self, r):
        self.assertEqual(r.code, 0, r)
        return r

    def fails(self, r, code, *needles):
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.err.startswith("evstore: "), r)
        for n in needles:
            self.assertIn(n, r.err, r)
        return r

    def append(self, stream, *events, expected=None, stdin=None):
        args = ["append", "--url", self.url, stream]
        if expected is not None:
            args += ["--expected", str(expected)]
        return run(*args, *events, stdin=stdin)

    def same(self, *args):
        """The command through --url and through -d print the same bytes."""
        remote = self.ok(run(args[0], "--url", self.url, *args[1:]))
        local = self.ok(run(args[0], "-d", self.dir, *args[1:]))
        self.assertEqual(remote.out, local.out, (remote, local))
        return remote

    # ------------------------------------------------------------ append

    def test_append_arguments_and_stdin(self):
        r = self.ok(self.append("ap-1", ev("A", {"n": 1}), ev("B", {"n": 2})))
        o = r.obj()
        self.assertEqual(list(o), ["stream", "first_stream_position", "last_stream_position",
                                   "first_global_position", "last_global_position", "idempotent",
                                   "event_ids"])
        self.assertEqual((o["stream"], o["first_stream_position"], o["last_stream_position"], o["idempotent"]),
                         ("ap-1", 1, 2, False))
        self.assertEqual(o["last_global_position"] - o["first_global_position"], 1)
        self.assertEqual(len(o["event_ids"]), 2)
        r = self.ok(self.append("ap-1", stdin=ev("C") + "\n\n" + ev("D", {"k": [1, 2.50]}) + "\n", expected=2))
        self.assertEqual(r.obj()["last_stream_position"], 4)
        got = self.ok(run("read", "-d", self.dir, "ap-1")).lines()
        self.assertEqual([e["event_type"] for e in got], ["A", "B", "C", "D"])
        self.assertEqual([e["event_id"] for e in got[:2]], o["event_ids"])

    def test_data_reaches_the_store_byte_for_byte(self):
        data = '{"price": 1.50, "big": 12345678901234567890, "s": "\\u00e9\\n"}'
        self.ok(self.append("ap-bytes", '{"event_type":"A","data":%s}' % data))
        line = self.ok(run("read", "--url", self.url, "ap-bytes")).out
        self.assertIn('"data":%s,' % data, line)

    def test_conflict_exit_3_with_the_servers_message(self):
        self.ok(self.append("cf-1", ev("A")))
        for expected, actual in ((0, 1), (5, 1)):
            r = self.append("cf-1", ev("B"), expected=expected)
            self.assertEqual(r.code, 3, r)
            self.assertEqual(r.err, "evstore: Concurrency conflict: expected version %d, actual version %d\n"
                             % (expected, actual))
            self.assertEqual(r.out, "")
        # word for word what the command says about a local store
        local = os.path.join(self.tmp, "cf-local")
        self.ok(run("append", "-d", local, "cf-1", ev("A")))
        self.assertEqual(run("append", "-d", local, "cf-1", "--expected", "5", ev("B")).err, r.err)
        r = self.append("cf-new", ev("B"), expected="exists")
        self.fails(r, 3, "Concurrency conflict")
        self.assertEqual(len(self.ok(run("read", "--url", self.url, "cf-1")).lines()), 1)
        self.fails(run("read", "--url", self.url, "cf-new"), 2, 'stream "cf-new" not found')

    def test_idempotent_retry(self):
        ids = [str(uuid.uuid4()), str(uuid.uuid4())]
        evs = [ev("A", {"i": 0}, event_id=ids[0]), ev("B", {"i": 1}, event_id=ids[1])]
        first = self.ok(self.append("idem-1", *evs, expected="no-stream")).obj()
        self.assertFalse(first["idempotent"])
        again = self.ok(self.append("idem-1", *evs, expected="no-stream")).obj()
        self.assertTrue(again["idempotent"])
        for k in ("first_stream_position", "last_stream_position", "first_global_position",
                  "last_global_position", "event_ids"):
            self.assertEqual(again[k], first[k], k)
        self.assertEqual(len(self.ok(run("read", "--url", self.url, "idem-1")).lines()), 2)
        # the same id at other positions is invalid input, as locally (exit 4)
        self.fails(self.append("idem-2", evs[0]), 4, ids[0])

    def test_invalid_input_exit_4(self):
        # checked by the CLI before any request, as locally
        self.fails(self.append("bad-1", '{"event_type":"A"}'), 4, 'missing required field "data"')
        self.fails(self.append("bad-1", '{"event_type":"A","data":{}'), 4, "event 1")
        # refused by the server: 400 (dot segment), 422 (reserved name), 413 (body over --max-body)
        self.fails(self.append("..", ev("A")), 4, "dot segment")
        self.fails(self.append("$mine", ev("A")), 4, "reserved")
        self.fails(self.append("bad-big", ev("A", {"pad": "x" * 70000})), 4, "limit")
        self.fails(self.append("", ev("A")), 4, "empty")
        self.fails(run("read", "--url", self.url, "bad-1"), 2, "not found")

    # -------------------------------------------------------------- read

    def test_read_same_output_as_local(self):
        corr = str(uuid.uuid4())
        self.ok(self.append("rd-1", ev("OrderPlaced", {"n": 1}, correlation_id=corr, tags=["t"]),
                            ev("ItemAdded", {"sku": "a"}, metadata={"who": "me"})))
        self.ok(self.append("rd-2", ev("OrderPlaced", {"n": 2}, stream_type="special")))
        self.ok(self.append("rd-1", ev("OrderShipped")))
        self.same("read", "rd-1")
        self.same("read", "rd-1", "--backward")
        self.same("read", "rd-1", "--from", "2", "--limit", "1")
        self.same("read", "rd-1", "--backward", "--from", "2")
        self.same("read", "$all")
        self.same("read", "$all", "--backward", "--limit", "2")
        self.same("read", "$all", "--from", "2", "--limit", "3")
        r = self.same("read", "$all", "--type", "OrderPlaced,OrderShipped", "--stream-prefix", "rd-")
        self.assertEqual([e["event_type"] for e in r.lines()], ["OrderPlaced", "OrderPlaced", "OrderShipped"])
        r = self.same("read", "$all", "--stream-type", "special")
        self.assertEqual([e["stream"] for e in r.lines()], ["rd-2"])
        r = self.same("read", "$all", "--correlation", corr)
        self.assertEqual(len(r.lines()), 1)
        rec = r.lines()[0]["recorded_at"]
        r = self.same("read", "$all", "--stream-prefix", "rd-", "--since", rec, "--until", "2100-01-01T00:00:00Z")
        self.assertEqual(r.lines()[0]["recorded_at"], rec)

    def test_read_pages_through_the_server(self):
        n = 2 * PAGE + 500
        for lo in range(0, n, 500):  # bodies under the test server's --max-body
            self.ok(self.append("pg-1", stdin="\n".join(ev("P", {"i": i}) for i in range(lo, lo + 500))))
        before = self.srv.requests("read_stream")
        r = self.same("read", "pg-1")
        self.assertEqual([e["data"]["i"] for e in r.lines()], list(range(n)))
        self.assertEqual(self.srv.requests("read_stream") - before, 3)  # pages of 1000, 1000, 500
        before = self.srv.requests("read_stream")
        r = self.ok(run("read", "--url", self.url, "pg-1", "--limit", str(PAGE + 7)))
        self.assertEqual(len(r.lines()), PAGE + 7)
        self.assertEqual(self.srv.requests("read_stream") - before, 2)
        before = self.srv.requests("all")
        r = self.ok(run("read", "--url", self.url, "$all", "--stream-prefix", "pg-", "--backward"))
        self.assertEqual([e["data"]["i"] for e in r.lines()], list(range(n))[::-1])
        self.assertEqual(self.srv.requests("all") - before, 3)

    def test_read_not_found_and_usage(self):
        self.fails(run("read", "--url", self.url, "rd-missing"), 2, 'stream "rd-missing" not found')
        self.fails(run("read", "--url", self.url, "x", "--type", "A"), 1, "--type filters only '$all'")
        self.fails(run("read", "--url", self.url, "x", "--from", "0"), 1, "--from 0")

    def test_read_from_the_largest_position(self):
        # the server keeps 2^64-1 for itself; the CLI reads it as -d does (past the head), exit 0
        self.ok(self.append("top-1", ev("A")))
        top = str(2**64 - 1)
        for target in ("top-1", "$all"):
            self.assertEqual(self.same("read", target, "--from", top).out, "")
            r = self.same("read", target, "--from", top, "--backward", "--limit", "1")
            self.assertEqual(len(r.lines()), 1)

    # ----------------------------------------------------- streams, info

    def test_streams_same_output_and_paging(self):
        c = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=TIMEOUT)
        for i in range(PAGE + 5):
            c.request("POST", "/streams/ls-%04d" % i, body=ev("A"), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 201)
        c.close()
        before = self.srv.requests("list_streams")
        r = self.same("streams", "--prefix", "ls-")
        self.assertEqual([s["stream"] for s in r.lines()], ["ls-%04d" % i for i in range(PAGE + 5)])
        self.assertEqual(self.srv.requests("list_streams") - before, 2)
        r = self.same("streams", "--prefix", "ls-", "--limit", "3")
        self.assertEqual(len(r.lines()), 3)
        self.same("streams")
        self.assertEqual(self.ok(run("streams", "--url", self.url, "--prefix", "ls-none")).out, "")

    def test_info(self):
        self.ok(self.append("inf-1", ev("A"), ev("B")))
        self.ok(self.append("inf-10", ev("A")))
        r = self.ok(run("info", "--url", self.url))
        o = r.obj()
        self.assertEqual(list(o), ["head", "streams", "segments", "log_bytes", "durability"])
        self.assertEqual(o["durability"], "sync")
        self.assertEqual(o["head"], json.loads(self.srv.get("/info")[1])["head"])
        self.same("info", "inf-1")
        self.same("info", "inf-10")
        self.fails(run("info", "--url", self.url, "inf-"), 2, 'stream "inf-" not found')
        self.fails(run("info", "--url", self.url, "inf-2"), 2, 'stream "inf-2" not found')

    # -------------------------------------------------------------- tail

    def test_tail_live_event_then_sigint(self):
        self.ok(self.append("tl-1", ev("Old")))
        head = self.ok(run("info", "--url", self.url)).obj()["head"]
        t = Tail("--url", self.url, "--from", str(head), "--stream-prefix", "tl-")
        try:
            first = t.line()
            self.assertEqual((first["stream"], first["event_type"]), ("tl-1", "Old"))
            self.ok(self.append("other-1", ev("Skipped")))
            self.ok(self.append("tl-1", ev("Live", {"x": 1})))
            live = t.line()
            self.assertEqual((live["event_type"], live["data"]), ("Live", {"x": 1}))
            self.assertEqual(live["global_position"], head + 2)
            # the same line a local read prints
            local = self.ok(run("read", "-d", self.dir, "tl-1", "--from", "2")).out
            self.assertEqual(t.raw + "\n", local)
        finally:
            code, rest, err = t.stop(signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.assertEqual(rest, b"")

    def test_tail_filters_and_sigterm(self):
        corr = str(uuid.uuid4())
        self.ok(self.append("tf-1", ev("X"), ev("Y"), ev("X", correlation_id=corr)))
        t = Tail("--url", self.url, "--type", "Y", "--stream-prefix", "tf-")
        try:
            self.assertEqual(t.line()["event_type"], "Y")
        finally:
            code, rest, err = t.stop(signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertEqual(rest, b"")
        # /subscribe takes the same filters as /all: correlation id and time range too
        since = self.ok(run("read", "--url", self.url, "tf-1")).lines()[0]["recorded_at"]
        t = Tail("--url", self.url, "--correlation", corr, "--since", since, "--until", "2100-01-01T00:00:00Z")
        try:
            e = t.line()
            self.assertEqual((e["stream"], e["stream_position"]), ("tf-1", 3))
            self.ok(self.append("tf-1", ev("Z", correlation_id=corr)))
            self.assertEqual(t.line()["event_type"], "Z")
        finally:
            code, rest, err = t.stop(signal.SIGTERM)
        self.assertEqual(code, 0, err)
        self.assertEqual(rest, b"")

    # ------------------------------------------------- consumers (--url)

    def test_projection_sub_dlq_against_the_server(self):
        """While the server holds the store, the consumer commands work through it."""
        tmp = tempfile.mkdtemp(prefix="evs-url-bus-")
        try:
            script = os.path.join(tmp, "count.lua")
            with open(script, "w") as f:
                f.write("-- counts per stream; fails on Poison\n"
                        "return { filter = { stream_prefix = 'pb-' }, init = { n = 0 },\n"
                        "  handlers = { Added = function(s, e) s.n = s.n + 1 end,\n"
                        "               Poison = function(s, e) error('cannot \\\"digest\\\" this') end } }\n")
            created = self.ok(run("projection", "create", "pbcount", script, "--url", self.url)).obj()
            self.assertEqual(created["name"], "pbcount")
            self.append("pb-1", ev("Added"), ev("Added"))
            bad = json.loads(self.append("pb-2", ev("Poison")).out)["first_global_position"]
            deadline = time.time() + TIMEOUT
            while time.time() < deadline:
                st = self.ok(run("projection", "status", "pbcount", "--url", self.url)).obj()
                if st["dlq_depth"] == 1 and st["processed"] == 2:
                    break
                time.sleep(0.05)
            self.assertEqual((st["dlq_depth"], st["processed"]), (1, 2), st)
            self.assertEqual(self.ok(run("projection", "state", "pbcount", "pb-1", "--url", self.url)).obj(), {"n": 2})
            self.assertEqual(self.ok(run("projection", "partitions", "pbcount", "--url", self.url)).lines(), ["pb-1"])
            entries = self.ok(run("dlq", "list", "pbcount", "--url", self.url)).lines()
            self.assertEqual([e["position"] for e in entries], [bad])
            self.assertIn('cannot "digest" this', entries[0]["last_error"])
            shown = self.ok(run("dlq", "show", "pbcount", str(bad), "--url", self.url)).obj()
            self.assertEqual(shown["event"]["global_position"], bad)
            # still failing: the retry reports it (422) and the entry stays
            self.fails(run("dlq", "retry", "pbcount", str(bad), "--url", self.url), 4)
            self.assertIn("pbcount", [x["name"] for x in self.ok(run("sub", "list", "--url", self.url)).lines()])
            self.assertEqual(self.ok(run("sub", "pause", "pbcount", "--url", self.url)).obj()["status"], "paused")
            self.assertEqual(self.ok(run("sub", "resume", "pbcount", "--url", self.url)).obj()["status"], "active")
            r = self.ok(run("projection", "rebuild", "pbcount", "--url", self.url))
            self.assertIsNone(r.obj()["rebuild"])
            self.assertIn("rebuild", r.err)
            self.assertEqual(self.ok(run("dlq", "discard", "pbcount", str(bad), "--url", self.url)).obj(),
                             {"discarded": bad})
            self.fails(run("dlq", "show", "pbcount", str(bad), "--url", self.url), 2)
            self.fails(run("projection", "run", "pbcount", "--url", self.url), 1, "server runs")
            self.fails(run("projection", "status", "nope", "--url", self.url), 2)
            self.fails(run("sub", "frobnicate", "x", "--url", self.url), 1, "unknown action")
            self.fails(run("sub", "list", "--url", self.url, "-d", self.dir), 1)
            self.assertEqual(self.ok(run("projection", "delete", "pbcount", "--url", self.url)).obj(),
                             {"deleted": "pbcount", "kind": "projection"})
            self.fails(run("sub", "show", "pbcount", "--url", self.url), 2)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_tail_usage(self):
        self.fails(run("tail", "--url", self.url, "-d", self.dir), 1, "-d and --url")
        self.fails(run("tail", "--url", self.url, "--correlation", "nope"), 1, "--correlation nope")

    # ------------------------------------------------------ target choice

    def test_url_and_dir_choice(self):
        self.fails(run("read", "-d", self.dir, "--url", self.url, "$all"), 1, "-d and --url exclude each other")
        for c in ("append", "read", "tail", "streams", "info"):
            r = self.ok(run(c, "--help"))
            self.assertIn("--url URL", r.out, c)
            self.assertIn("EVSTORE_URL", r.out, c)
            self.fails(run(c, "-d", self.dir, "--url", self.url), 1, "-d and --url")
        self.assertIn("--url", self.ok(run("--help")).out)
        self.fails(run("check", "--url", self.url), 1, "unknown option --url")
        # the environment
        self.ok(self.append("env-1", ev("A")))
        r = self.ok(run("info", "env-1", env={"EVSTORE_URL": self.url}))
        self.assertEqual(r.obj()["version"], 1)
        self.fails(run("info", env={"EVSTORE_URL": self.url, "EVSTORE_DIR": self.dir}), 1,
                   "EVSTORE_DIR and EVSTORE_URL")
        self.ok(run("info", "-d", self.dir, env={"EVSTORE_URL": "http://127.0.0.1:1"}))
        self.ok(run("info", "--url", self.url, env={"EVSTORE_DIR": "/nonexistent"}))
        for bad in ("localhost:2113", "ftp://h/", "http://", "http://h/?x=1", ""):
            self.fails(run("info", "--url", bad), 1, "--url")
        # a URL libcurl cannot parse is the user's to fix (1), not an unreachable server (5)
        for bad, why in (("http://[::1", "IPv6"), ("http://h:99999", "Port"), ("http://h:x", "Port")):
            for c in (["info"], ["read", "$all"], ["tail"], ["sub", "list"]):
                self.fails(run(*c, "--url", bad), 1, "--url " + bad, why)


# ---------------------------------------------------------------------------
class DownTest(unittest.TestCase):
    """No server: every command exits 5 and names the URL."""

    def test_server_down_exit_5(self):
        url = "http://127.0.0.1:%d" % free_port()
        for args in (["append", "s-1", ev("A")], ["read", "s-1"], ["read", "$all"], ["streams"], ["info"],
                     ["info", "s-1"], ["tail"]):
            r = run(args[0], "--url", url, *args[1:])
            self.assertEqual(r.code, 5, r)
            self.assertTrue(r.err.startswith("evstore: "), r)
            self.assertIn(url, r.err, r)
            self.assertEqual(r.out, "", r)

    def test_tail_resumes_after_server_restart(self):
        tmp = tempfile.mkdtemp(prefix="evs-url-restart-")
        d = os.path.join(tmp, "data")
        srv = Server(d).start()
        t = None
        try:
            self.assertEqual(run("append", "--url", srv.url, "rs-1", ev("A")).code, 0)
            t = Tail("--url", srv.url)
            self.assertEqual(t.line()["event_type"], "A")
            srv.stop()
            # written while the server is down, then the server comes back on the same port
            self.assertEqual(run("append", "-d", d, "rs-1", ev("B")).code, 0)
            srv = Server(d, srv.port).start()
            self.assertEqual(run("append", "--url", srv.url, "rs-1", ev("C")).code, 0)
            got = [t.line(), t.line()]
            self.assertEqual([e["event_type"] for e in got], ["B", "C"])
            self.assertEqual([e["global_position"] for e in got], [2, 3])
            code, rest, err = t.stop(signal.SIGINT)
            t = None
            self.assertEqual(code, 0, err)
            self.assertEqual(rest, b"", "an event was printed twice")
            self.assertIn("reconnecting", err)
        finally:
            if t:
                t.kill()
            srv.stop()
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
class Fake:
    """A scripted HTTP server: routes map a path to (status, content type, body)."""

    def __init__(self):
        self.routes = {}
        self.seen = []  # (path, headers) of every request
        self.sse_script = []  # for /subscribe: list of bytes to send per connection, in order
        fake = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.seen.append((self.path, dict(self.headers)))
                path = self.path.split("?")[0]
                if path == "/subscribe":
                    n = sum(1 for p, _ in fake.seen if p.startswith("/subscribe"))
                    chunk, keep = fake.sse_script[min(n, len(fake.sse_script)) - 1]
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if keep:  # hold the stream open until the client goes away
                        self.connection.settimeout(TIMEOUT)
                        try:
                            self.connection.recv(1)
                        except OSError:
                            pass
                    self.close_connection = True
                    return
                status, ctype, body = fake.routes.get(path, (404, "application/json",
                                                             '{"error":"no route","detail":null}'))
                b = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

            do_POST = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.th = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.th.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeServerTest(unittest.TestCase):
    def setUp(self):
        self.fake = Fake()

    def tearDown(self):
        self.fake.close()

    def test_status_to_exit_code(self):
        err = lambda m: json.dumps({"error": m, "detail": None})
        cases = [(400, err("bad parameter"), 4), (413, err("too large"), 4), (415, err("wrong type"), 4),
                 (422, err("invalid"), 4), (404, err('stream "s" not found'), 2),
                 (409, json.dumps({"error": "Concurrency conflict: expected version 1, actual version 2",
                                   "actual_version": 2, "detail": {}}), 3),
                 (409, json.dumps({"error": "event id already stored", "detail": {"code": "EDUPLICATE"}}), 4),
                 (500, err("internal"), 5), (503, err("the server is shutting down"), 5)]
        for status, body, code in cases:
            self.fake.routes["/info"] = (status, "application/json", body)
            r = run("info", "--url", self.fake.url)
            self.assertEqual(r.code, code, (status, r))
            self.assertIn(json.loads(body)["error"], r.err, r)
            if status >= 500:
                self.assertIn(self.fake.url + "/info", r.err, r)
            if status == 409 and code == 3:
                self.assertEqual(r.err, "evstore: Concurrency conflict: expected version 1, actual version 2\n")

    def test_answer_that_is_not_json(self):
        self.fake.routes["/info"] = (200, "text/html", "<html>hello</html>")
        r = run("info", "--url", self.fake.url)
        self.assertEqual(r.code, 5, r)
        self.assertIn("not JSON", r.err)
        self.fake.routes["/info"] = (502, "text/html", "<html>bad gateway</html>")
        r = run("info", "--url", self.fake.url)
        self.assertEqual(r.code, 5, r)
        self.assertIn("HTTP 502", r.err)
        self.assertIn(self.fake.url, r.err)

    def test_tail_sends_last_event_id_on_reconnect(self):
        e = lambda g: json.dumps({"global_position": g, "event_type": "E"})
        self.fake.sse_script = [
            (b"retry: 20\n\nid: 7\ndata: " + e(7).encode() + b"\n\n", False),
            (b"id: 8\ndata: " + e(8).encode() + b"\n\nevent: shutdown\ndata: {\"reason\":\"bye\",\"next\":12}\n\n",
             False),
            (b": heartbeat\n\nid: 12\ndata: " + e(12).encode() + b"\n\n", True),
        ]
        t = Tail("--url", self.fake.url, "--from", "3", "--type", "E,F")
        try:
            self.assertEqual([t.line()["global_position"] for _ in range(3)], [7, 8, 12])
        finally:
            code, rest, err = t.stop(signal.SIGINT)
        self.assertEqual(code, 0, err)
        self.assertEqual(rest, b"")
        subs = [(p, h) for p, h in self.fake.seen if p.startswith("/subscribe")]
        self.assertEqual(len(subs), 3, subs)
        self.assertEqual(subs[0][0], "/subscribe?from=3&type=E,F")
        self.assertNotIn("Last-Event-ID", subs[0][1])
        self.assertEqual(subs[1][1].get("Last-Event-ID"), "7")
        # after the final "shutdown" event: resume after everything the server examined
        self.assertEqual(subs[2][1].get("Last-Event-ID"), "11")


# -------------------------------------------------------------- runner

if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
