#!/usr/bin/env python3
"""
test_cli.py -- integration tests of the `evstore` command, driving the real
binary (path in $EVSTORE_BIN) against stores in temporary directories.

What is checked is what a user or a script relies on: the JSON printed on
stdout, the exit status of each class of failure (0 ok, 1 usage, 2 not
found, 3 conflict, 4 invalid input, 5 I/O or corruption), a message on
stderr that names the problem and where, and -- for every rejected append
-- that the store is left exactly as it was.

Standard library only.  Prints "N passed, M failed" as its last line and
exits non-zero when anything failed, so CTest (it_cli) reports it.
"""
import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def find_binary():
    b = os.environ.get("EVSTORE_BIN")
    if b:
        return b
    for d in (os.environ.get("EVS_BUILD_DIR"), os.path.join(ROOT, "build")):
        if d and os.path.exists(os.path.join(d, "evstore")):
            return os.path.join(d, "evstore")
    sys.exit("test_cli.py: set EVSTORE_BIN to the evstore binary")


BIN = find_binary()
# Sanitizer builds run several times slower; give them room.
SLOW = 4 if os.environ.get("EVS_SANITIZED") else 1
TIMEOUT = 120 * SLOW

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
MiB = 1024 * 1024


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
        shown = [a if isinstance(a, str) else repr(a) for a in self.args]
        return "evstore %s -> exit %s\nstdout: %s\nstderr: %s" % (
            " ".join(s[:80] for s in shown), self.code, self.out[:2000], self.err[:2000])


def run(*args, stdin=None, env=None, timeout=None):
    """Run evstore with args (str or bytes); stdin as str or bytes."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    e = dict(os.environ)
    e.pop("EVSTORE_DIR", None)
    if env:
        e.update(env)
    proc = subprocess.run([BIN] + list(args), input=stdin if stdin is not None else b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                          timeout=timeout or TIMEOUT)
    return Result(args, proc)


def ev(event_type, data=None, **fields):
    """One event as compact JSON text."""
    o = {"event_type": event_type, "data": data if data is not None else {}}
    o.update(fields)
    return json.dumps(o, separators=(",", ":"))


def rfc3339_to_ns(s):
    """'2026-01-02T03:04:05.123456789Z' -> ns since the epoch."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", s)
    assert m, "not an RFC 3339 UTC time: %r" % s
    import calendar
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = (m.group(2) or "").ljust(9, "0")[:9]
    return secs * 1_000_000_000 + int(frac)


class CliTest(unittest.TestCase):
    """A fresh temporary directory per test; self.store is a store path in it."""

    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-cli-")
        self.store = os.path.join(self.tmp, "store")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers ----------------------------------------------------------
    def ok(self, r):
        self.assertEqual(r.code, 0, r)
        return r

    def fails(self, r, code, *needles):
        """Exit status code, and every needle (str or regex) in stderr."""
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.err.startswith("evstore: "), r)
        for n in needles:
            if isinstance(n, re.Pattern):
                self.assertRegex(r.err, n, r)
            else:
                self.assertIn(n, r.err, r)
        return r

    def append(self, stream, *events, expected=None, stdin=None, store=None):
        args = ["append", "-d", store or self.store, stream]
        if expected is not None:
            args += ["--expected", str(expected)]
        return run(*args, *events, stdin=stdin)

    def read(self, target, *flags, store=None):
        return run("read", "-d", store or self.store, target, *flags)

    def snapshot(self, store=None):
        """Everything observable about a store: stats, streams and all events."""
        d = store or self.store
        if not os.path.exists(d):
            return None
        info = self.ok(run("info", "-d", d)).obj()
        streams = self.ok(run("streams", "-d", d)).out
        events = self.ok(run("read", "-d", d, "$all")).out
        return (info["head"], info["streams"], streams, events)

    def seed(self):
        """A small store used by the read tests; returns {stream: [events]}."""
        self.ok(self.append("order-1", ev("OrderPlaced", {"n": 1})))
        self.ok(self.append("order-2", ev("OrderPlaced", {"n": 2})))
        self.ok(self.append("order-1", ev("ItemAdded", {"sku": "a"}), ev("ItemAdded", {"sku": "b"})))
        self.ok(self.append("customer-7", ev("CustomerRegistered", {"c": 7})))
        self.ok(self.append("order-1", ev("OrderShipped", {})))
        self.ok(self.append("order-2", ev("ItemAdded", {"sku": "c"})))


# ---------------------------------------------------------------------------
class TestGlobal(CliTest):
    COMMANDS = ["append", "read", "tail", "streams", "info", "check"]

    def test_help_lists_every_command(self):
        for flag in ("--help", "-h"):
            r = self.ok(run(flag))
            self.assertIn("Usage: evstore", r.out)
            for c in self.COMMANDS:
                self.assertRegex(r.out, r"\n  %s " % c)
            self.assertIn("Exit status", r.out)

    def test_version(self):
        r = self.ok(run("--version"))
        self.assertRegex(r.out.strip(), r"^evstore \d+\.\d+\.\d+$")

    def test_help_of_every_command(self):
        for c in self.COMMANDS:
            for flag in ("--help", "-h"):
                r = self.ok(run(c, flag))
                self.assertTrue(r.out.startswith("Usage: evstore %s" % c), r)
                self.assertIn("-d", r.out)
            r = self.ok(run("help", c))
            self.assertTrue(r.out.startswith("Usage: evstore %s" % c), r)

    @unittest.skipUnless(os.path.exists("/dev/full"), "needs /dev/full")
    def test_help_that_cannot_be_written_is_an_io_error(self):
        # every command listed in `evstore --help` (stream and the backup commands used to exit 0)
        top = self.ok(run("--help")).out
        commands = re.findall(r"(?m)^  ([a-z-]+) ", top.split("Commands:\n", 1)[1].split("\n\n", 1)[0])
        self.assertIn("verify-backup", commands)
        for args in [[]] + [[c] for c in commands]:
            with open("/dev/full", "w") as full:
                p = subprocess.run([BIN] + args + ["--help"], stdout=full, stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 5, (args, p.stderr))
            self.assertIn(b"evstore: writing to stdout", p.stderr, args)

    def test_append_help_does_not_read_stdin_or_create(self):
        r = self.ok(run("append", "-d", self.store, "s-1", "--help"))
        self.assertIn("--expected", r.out)
        self.assertFalse(os.path.exists(self.store))

    def test_no_command(self):
        r = run()
        self.assertEqual(r.code, 1, r)
        self.assertIn("Usage: evstore", r.err)

    def test_unknown_command(self):
        self.fails(run("frobnicate"), 1, '"frobnicate"', "unknown command")
        self.fails(run("help", "frobnicate"), 1, "unknown command")
        self.fails(run("--bogus"), 1, "--bogus")

    def test_unknown_option_named(self):
        for c in self.COMMANDS:
            self.fails(run(c, "-d", self.store, "--bogus"), 1, "unknown option --bogus",
                       "evstore %s --help" % c)

    def test_option_without_value(self):
        self.fails(run("read", "-d", self.store, "x", "--limit"), 1, "--limit needs a value")
        self.fails(run("info", "-d"), 1, "-d needs a value")
        self.fails(run("read", "-d", self.store, "x", "--backward=yes"), 1, "--backward takes no value")

    def test_missing_dir(self):
        for c in ("read x", "info", "streams", "check", "tail", "append s-1"):
            r = run(*c.split(), stdin=ev("A"))
            self.fails(r, 1, "-d DIR", "EVSTORE_DIR")
        self.fails(run("info", "-d", ""), 1, "-d: the store directory name is empty")
        self.fails(run("read", "--dir=", "x"), 1, "--dir: the store directory name is empty")

    def test_dir_from_environment(self):
        env = {"EVSTORE_DIR": self.store}
        r = self.ok(run("append", "acct-1", ev("Opened"), env=env))
        self.assertEqual(r.obj()["last_global_position"], 1)
        r = self.ok(run("read", "acct-1", env=env))
        self.assertEqual([e["event_type"] for e in r.lines()], ["Opened"])
        # -d wins over the environment
        other = os.path.join(self.tmp, "other")
        self.ok(run("append", "-d", other, "acct-2", ev("Opened"), env=env))
        self.assertEqual(self.ok(run("info", env=env)).obj()["head"], 1)
        self.assertEqual(self.ok(run("info", "-d", other)).obj()["streams"], 1)

    def test_long_dir_option_and_equals_forms(self):
        self.ok(run("append", "--dir", self.store, "t-1", ev("A")))
        self.ok(run("append", "--dir=" + self.store, "t-1", "--expected=1", ev("B")))
        self.ok(run("append", "-d" + self.store, "t-1", "--expected", "2", ev("C")))
        r = self.ok(run("read", "--dir=" + self.store, "t-1", "--limit=2"))
        self.assertEqual([e["event_type"] for e in r.lines()], ["A", "B"])

    def test_double_dash_ends_options(self):
        # A stream name that looks like an option can still be given after --.
        r = self.append("--weird", ev("A"))
        self.fails(r, 1, "unknown option --weird")
        r = self.ok(run("append", "-d", self.store, "--", "-dash-1", ev("A")))
        self.assertEqual(r.obj()["stream"], "-dash-1")
        r = self.ok(run("read", "-d", self.store, "--", "-dash-1"))
        self.assertEqual(len(r.lines()), 1)

    def test_store_path_is_a_file(self):
        f = os.path.join(self.tmp, "plainfile")
        with open(f, "w") as fh:
            fh.write("not a store")
        r = run("append", "-d", f, "s-1", ev("A"))
        self.fails(r, 4, f, "not a directory")
        with open(f) as fh:
            self.assertEqual(fh.read(), "not a store")

    def test_missing_store_is_not_found(self):
        missing = os.path.join(self.tmp, "nope")
        for c in (["read", "-d", missing, "$all"], ["info", "-d", missing],
                  ["streams", "-d", missing], ["check", "-d", missing]):
            r = run(*c)
            self.fails(r, 2, missing)
        self.assertFalse(os.path.exists(missing), "a read-only command created the store")


# ---------------------------------------------------------------------------
class TestAppend(CliTest):
    def test_single_event_result(self):
        r = self.ok(self.append("order-1", ev("OrderPlaced", {"total": 10})))
        o = r.obj()
        self.assertEqual(set(o), {"stream", "first_stream_position", "last_stream_position",
                                  "first_global_position", "last_global_position",
                                  "idempotent", "event_ids"})
        self.assertEqual(o["stream"], "order-1")
        self.assertEqual((o["first_stream_position"], o["last_stream_position"]), (1, 1))
        self.assertEqual((o["first_global_position"], o["last_global_position"]), (1, 1))
        self.assertIs(o["idempotent"], False)
        self.assertEqual(len(o["event_ids"]), 1)
        self.assertRegex(o["event_ids"][0], UUID_RE)
        self.assertEqual(r.out.count("\n"), 1)

    def test_several_arguments_are_one_append(self):
        self.ok(self.append("other-1", ev("X")))
        r = self.ok(self.append("order-1", ev("A"), ev("B"), ev("C")))
        o = r.obj()
        self.assertEqual((o["first_stream_position"], o["last_stream_position"]), (1, 3))
        self.assertEqual((o["first_global_position"], o["last_global_position"]), (2, 4))
        self.assertEqual(len(set(o["event_ids"])), 3)
        events = self.ok(self.read("order-1")).lines()
        self.assertEqual([e["event_id"] for e in events], o["event_ids"])
        # one append: every event carries the same recorded_at
        self.assertEqual(len({e["recorded_at"] for e in events}), 1)

    def test_stdin_lines_blank_lines_skipped(self):
        body = "\n" + ev("A", {"i": 1}) + "\n\n   \n" + ev("B", {"i": 2}) + "\r\n" + ev("C") + "\n\n"
        o = self.ok(self.append("batch-1", stdin=body)).obj()
        self.assertEqual((o["first_stream_position"], o["last_stream_position"]), (1, 3))
        self.assertEqual(len(o["event_ids"]), 3)
        types = [e["event_type"] for e in self.ok(self.read("batch-1")).lines()]
        self.assertEqual(types, ["A", "B", "C"])

    def test_stdin_without_final_newline(self):
        o = self.ok(self.append("batch-1", stdin=ev("A") + "\n" + ev("B"))).obj()
        self.assertEqual(o["last_stream_position"], 2)

    def test_data_and_metadata_stored_byte_for_byte(self):
        data = '{"b": 1,   "a":[1, 2.50, "x\\u00e9"], "n":null}'
        meta = '{"who":"me" }'
        text = '{"event_type":"Raw","data":%s,"metadata":%s}' % (data, meta)
        self.ok(self.append("raw-1", text))
        line = self.ok(self.read("raw-1")).out
        self.assertIn('"data":' + data, line)
        self.assertIn('"metadata":' + meta, line)

    def test_all_envelope_fields(self):
        eid = "0190f2a4-1111-7000-8000-000000000001"
        corr = "0190f2a4-2222-7000-8000-000000000002"
        caus = "0190f2a4-3333-7000-8000-000000000003"
        text = ev("Tagged", {"k": 1}, metadata={"m": 1}, event_id=eid, correlation_id=corr,
                  causation_id=caus, event_version=3, stream_type="custom", tags=["t1", "t2"],
                  occurred_at="2024-05-06T07:08:09.5Z")
        o = self.ok(self.append("thing-1", text)).obj()
        self.assertEqual(o["event_ids"], [eid])
        e = self.ok(self.read("thing-1")).obj()
        self.assertEqual(e["event_id"], eid)
        self.assertEqual(e["correlation_id"], corr)
        self.assertEqual(e["causation_id"], caus)
        self.assertEqual(e["event_version"], 3)
        self.assertEqual(e["stream_type"], "custom")
        self.assertEqual(e["tags"], ["t1", "t2"])
        self.assertEqual(e["metadata"], {"m": 1})
        self.assertEqual(rfc3339_to_ns(e["occurred_at"]),
                         rfc3339_to_ns("2024-05-06T07:08:09Z") + 500_000_000)
        self.assertEqual(e["stream"], "thing-1")
        self.assertEqual((e["stream_position"], e["global_position"]), (1, 1))
        self.assertRegex(e["recorded_at"], TIME_RE)

    def test_default_stream_type_is_name_before_dash(self):
        self.ok(self.append("invoice-77", ev("A")))
        e = self.ok(self.read("invoice-77")).obj()
        self.assertEqual(e["stream_type"], "invoice")

    def test_utf8_stream_name_and_255_bytes(self):
        name = "caf\u00e9-\u4e16\u754c"
        o = self.ok(self.append(name, ev("A"))).obj()
        self.assertEqual(o["stream"], name)
        self.assertEqual(self.ok(self.read(name)).obj()["stream"], name)
        longest = "s" * 255
        self.ok(self.append(longest, ev("A")))
        self.assertEqual(self.ok(run("info", "-d", self.store, longest)).obj()["version"], 1)

    # -- expected versions ------------------------------------------------
    def test_expected_versions(self):
        self.ok(self.append("o-1", ev("A"), expected="no-stream"))
        self.fails(self.append("o-1", ev("B"), expected="no-stream"), 3,
                   "Concurrency conflict: expected version 0, actual version 1")
        self.ok(self.append("o-1", ev("B"), expected="exists"))
        self.ok(self.append("o-1", ev("C"), expected=2))
        self.ok(self.append("o-1", ev("D"), expected="any"))
        self.ok(self.append("o-1", ev("E")))
        self.assertEqual(self.ok(run("info", "-d", self.store, "o-1")).obj()["version"], 5)
        # exists on a stream that has no events
        r = self.append("o-2", ev("A"), expected="exists")
        self.assertEqual(r.code, 3, r)
        self.assertIn("Concurrency conflict", r.err)
        # 0 is the same as no-stream
        self.ok(self.append("o-3", ev("A"), expected=0))
        self.assertEqual(self.append("o-3", ev("A"), expected=0).code, 3)

    def test_conflict_message_exit_3_nothing_stored(self):
        self.ok(self.append("o-1", ev("A"), ev("B")))
        before = self.snapshot()
        r = self.append("o-1", ev("C"), expected=5)
        self.fails(r, 3)
        self.assertEqual(r.err.strip(), "evstore: Concurrency conflict: expected version 5, actual version 2")
        self.assertEqual(r.out, "")
        self.assertEqual(self.snapshot(), before)

    def test_bad_expected(self):
        self.ok(self.append("o-1", ev("A")))
        before = self.snapshot()
        self.fails(self.append("o-1", ev("B"), expected="abc"), 1, "--expected abc", "any, no-stream, exists")
        self.fails(self.append("o-1", ev("B"), expected="-1"), 1, "--expected -1", "negative")
        self.fails(self.append("o-1", ev("B"), expected="99999999999999999999"), 1,
                   "--expected 99999999999999999999", "too large")
        self.fails(self.append("o-1", ev("B"), expected="1x"), 1, "--expected 1x: not a number")
        self.fails(self.append("o-1", ev("B"), expected=""), 1, "--expected")
        self.assertEqual(self.snapshot(), before)

    # -- idempotency and duplicates ----------------------------------------
    def test_idempotent_retry(self):
        self.ok(self.append("pay-1", ev("Start")))
        ids = ["0190f2a4-aaaa-7000-8000-00000000000%d" % i for i in (1, 2)]
        batch = [ev("Paid", {"amount": 5}, event_id=ids[0]), ev("Receipt", {}, event_id=ids[1])]
        first = self.ok(self.append("pay-1", *batch, expected=1)).obj()
        self.assertIs(first["idempotent"], False)
        before = self.snapshot()
        # the same request again (same expected version), as a client would retry it
        again = self.ok(self.append("pay-1", *batch, expected=1)).obj()
        self.assertIs(again["idempotent"], True)
        for k in ("first_stream_position", "last_stream_position",
                  "first_global_position", "last_global_position", "event_ids"):
            self.assertEqual(again[k], first[k], k)
        # and with --expected any
        again = self.ok(self.append("pay-1", *batch)).obj()
        self.assertIs(again["idempotent"], True)
        self.assertEqual(again["first_global_position"], first["first_global_position"])
        self.assertEqual(self.snapshot(), before)

    def test_duplicate_event_id_in_other_stream(self):
        eid = "0190f2a4-bbbb-7000-8000-000000000001"
        self.ok(self.append("a-1", ev("A", event_id=eid)))
        before = self.snapshot()
        self.fails(self.append("b-1", ev("A", event_id=eid)), 4, eid)
        self.assertEqual(self.snapshot(), before)
        self.fails(run("info", "-d", self.store, "b-1"), 2)

    def test_duplicate_event_id_within_one_batch(self):
        eid = "0190f2a4-cccc-7000-8000-000000000001"
        self.ok(self.append("a-1", ev("A")))
        before = self.snapshot()
        r = self.append("a-1", ev("A", event_id=eid), ev("B", event_id=eid))
        self.assertEqual(r.code, 4, r)
        self.assertEqual(self.snapshot(), before)

    # -- bad input: each rejected with a message, nothing stored -----------
    def assert_rejected(self, r, code, *needles):
        self.fails(r, code, *needles)
        self.assertEqual(r.out, "")
        self.assertEqual(self.snapshot(), self.before)

    def prepare(self):
        self.ok(self.append("keep-1", ev("Kept", {"v": 1})))
        self.before = self.snapshot()

    def test_malformed_json_on_stdin_names_event_and_lines(self):
        self.prepare()
        body = ev("A") + "\n\n" + '{"event_type":"B" "data":{}}' + "\n" + ev("C") + "\n"
        self.assert_rejected(self.append("keep-1", stdin=body), 4,
                             re.compile(r"event 2 \(stdin line 3\): line 1, column 19: "))

    def test_malformed_json_in_argument(self):
        self.prepare()
        self.assert_rejected(self.append("keep-1", ev("A"), '{"event_type":"B","data":{,}}'), 4,
                             re.compile(r"event 2: line 1, column 27: "))
        # a pretty-printed argument: the line inside the argument is reported
        text = '{\n  "event_type": "B",\n  "data": {"a": 1,}\n}'
        self.assert_rejected(self.append("keep-1", text), 4, re.compile(r"event 1: line 3, column \d+: "))
        self.assert_rejected(self.append("keep-1", "not json"), 4, "event 1: line 1, column 1")
        self.assert_rejected(self.append("keep-1", "{}", "{"), 4, "event")

    def test_event_not_an_object(self):
        self.prepare()
        self.assert_rejected(self.append("keep-1", "[1,2]"), 4, "event 1", "must be a JSON object")
        self.assert_rejected(self.append("keep-1", stdin='"text"\n'), 4, "event 1 (stdin line 1)", "object")

    def test_data_not_an_object(self):
        self.prepare()
        for data, kind in (("[1,2]", "array"), ('"{\\"a\\":1}"', "string"), ("42", "number"), ("null", "null")):
            text = '{"event_type":"A","data":%s}' % data
            self.assert_rejected(self.append("keep-1", text), 4, "event 1: line 1, column 26: ",
                                 "data must be a JSON object", kind)

    def test_missing_and_unknown_fields(self):
        self.prepare()
        self.assert_rejected(self.append("keep-1", '{"data":{}}'), 4, "event_type")
        self.assert_rejected(self.append("keep-1", '{"event_type":"A"}'), 4, '"data"')
        self.assert_rejected(self.append("keep-1", ev("A", colour="red")), 4, "unknown field", "colour")
        self.assert_rejected(self.append("keep-1", ev("A", global_position=3)), 4, "global_position")
        self.assert_rejected(self.append("keep-1", ev("")), 4, "event_type")
        self.assert_rejected(self.append("keep-1", ev("A", metadata=[1])), 4, "metadata")

    def test_invalid_uuids(self):
        self.prepare()
        for field in ("event_id", "correlation_id", "causation_id"):
            for bad in ("not-a-uuid", "0190f2a4-1111-7000-8000-00000000000", "0190f2a4111170008000000000000001", 12):
                r = self.append("keep-1", ev("A", **{field: bad}))
                self.assert_rejected(r, 4, field)
                self.assertRegex(r.err, r"UUID|uuid")

    def test_oversized_event(self):
        self.prepare()
        big = '{"event_type":"Big","data":{"x":"' + "a" * (16 * MiB) + '"}}\n'
        r = self.append("keep-1", stdin=big)
        self.assert_rejected(r, 4)
        self.assertRegex(r.err, r"(?i)limit|too large|exceed|bytes")

    def test_oversized_append(self):
        # nine events of 8 MiB: each within the event limit, together over 64 MiB
        self.prepare()
        line = '{"event_type":"Big","data":{"x":"' + "a" * (8 * MiB) + '"}}\n'
        r = self.append("keep-1", stdin=line * 9)
        self.assert_rejected(r, 4, "67108864")

    def test_too_many_events(self):
        self.prepare()
        body = (ev("Tiny") + "\n") * 10001
        r = self.append("keep-1", stdin=body)
        self.assert_rejected(r, 4, "10001", "10000")

    def test_empty_batch(self):
        self.prepare()
        for body in ("", "\n", "\n  \n\t\n"):
            self.assert_rejected(self.append("keep-1", stdin=body), 4, "no events")
        # and nothing is created when the store does not exist yet
        fresh = os.path.join(self.tmp, "fresh")
        self.fails(self.append("keep-1", stdin="", store=fresh), 4, "no events")
        self.assertFalse(os.path.exists(fresh))

    def test_bad_stream_names(self):
        self.prepare()
        cases = [("", "empty"), ("s" * 256, "255"), (b"bad-\xff\xfe", "UTF-8"),
                 ("$all", "$"), ("$system-1", "$")]
        for name, needle in cases:
            r = run("append", "-d", self.store, name, ev("A"))
            self.assert_rejected(r, 4, "stream", needle)

    def test_overlong_stream_name_gives_its_length(self):
        # the library measured up to the limit only: the message said 257 bytes for any longer name
        self.prepare()
        name = "s" * 5000
        for args in (["append", name, ev("A")], ["read", name], ["info", name], ["stream", "meta", "get", name],
                     ["stream", "delete", name]):
            self.assert_rejected(run(*args, "-d", self.store), 4, "stream name is 5000 bytes, the limit is 255")

    def test_bad_event_does_not_create_store(self):
        fresh = os.path.join(self.tmp, "fresh")
        self.fails(self.append("s-1", '{"event_type":"A","data":[]}', store=fresh), 4)
        self.assertFalse(os.path.exists(fresh))

    def test_missing_stream(self):
        self.fails(run("append", "-d", self.store), 1, "missing STREAM")


# ---------------------------------------------------------------------------
class TestRead(CliTest):
    def setUp(self):
        super().setUp()
        self.seed()

    def positions(self, r, key="stream_position"):
        return [e[key] for e in self.ok(r).lines()]

    def test_stream_forward_with_all_fields(self):
        events = self.ok(self.read("order-1")).lines()
        self.assertEqual([e["stream_position"] for e in events], [1, 2, 3, 4])
        self.assertEqual([e["global_position"] for e in events], [1, 3, 4, 6])
        self.assertEqual([e["event_type"] for e in events],
                         ["OrderPlaced", "ItemAdded", "ItemAdded", "OrderShipped"])
        for e in events:
            for k in ("event_id", "stream", "stream_type", "event_type", "event_version", "data",
                      "metadata", "causation_id", "correlation_id", "tags", "occurred_at",
                      "recorded_at", "stream_position", "global_position"):
                self.assertIn(k, e)
            self.assertEqual(e["stream"], "order-1")
            self.assertRegex(e["event_id"], UUID_RE)
        self.assertEqual(events[1]["data"], {"sku": "a"})

    def test_from_limit_backward(self):
        self.assertEqual(self.positions(self.read("order-1", "--from", "3")), [3, 4])
        self.assertEqual(self.positions(self.read("order-1", "--limit", "2")), [1, 2])
        self.assertEqual(self.positions(self.read("order-1", "--from", "2", "--limit", "2")), [2, 3])
        self.assertEqual(self.positions(self.read("order-1", "--backward")), [4, 3, 2, 1])
        self.assertEqual(self.positions(self.read("order-1", "--backward", "--limit", "2")), [4, 3])
        self.assertEqual(self.positions(self.read("order-1", "--backward", "--from", "2")), [2, 1])
        self.assertEqual(self.positions(self.read("order-1", "--from", "9")), [])
        # 0 is no limit nowhere (the server refuses limit=0 too): leave --limit out for everything
        r = self.read("order-1", "--limit", "0")
        self.assertEqual(r.code, 1, r)
        self.assertIn("--limit 0", r.err)

    def test_paging_forward_and_backward(self):
        seen, pos = [], 1
        while True:
            page = self.positions(self.read("order-1", "--from", str(pos), "--limit", "3"))
            if not page:
                break
            seen += page
            pos = page[-1] + 1
        self.assertEqual(seen, [1, 2, 3, 4])
        seen, pos = [], None
        while True:
            flags = ["--backward", "--limit", "3"] + (["--from", str(pos)] if pos else [])
            page = self.positions(self.read("order-1", *flags))
            if not page:
                break
            seen += page
            if page[-1] == 1:
                break
            pos = page[-1] - 1
        self.assertEqual(seen, [4, 3, 2, 1])

    def test_all_forward_backward_paging(self):
        g = lambda *f: self.positions(self.read("$all", *f), "global_position")
        self.assertEqual(g(), [1, 2, 3, 4, 5, 6, 7])
        self.assertEqual(g("--backward"), [7, 6, 5, 4, 3, 2, 1])
        self.assertEqual(g("--from", "5"), [5, 6, 7])
        self.assertEqual(g("--from", "2", "--limit", "3"), [2, 3, 4])
        self.assertEqual(g("--backward", "--from", "3"), [3, 2, 1])
        self.assertEqual(g("--backward", "--limit", "2"), [7, 6])
        self.assertEqual(g("--from", "100"), [])

    def test_unknown_stream_not_found(self):
        self.fails(self.read("order-404"), 2, "order-404")

    def test_read_empty_store_all(self):
        other = os.path.join(self.tmp, "empty")
        # a store that exists but holds nothing: created by a rejected append
        self.fails(run("append", "-d", other, "x-1", "--expected", "5", ev("A")), 3,
                   "Concurrency conflict: expected version 5, actual version 0")
        self.assertEqual(self.ok(run("read", "-d", other, "$all")).out, "")
        self.assertEqual(self.ok(run("read", "-d", other, "$all", "--backward")).out, "")
        self.assertEqual(self.ok(run("info", "-d", other)).obj()["head"], 0)
        self.fails(run("read", "-d", other, "x-1"), 2, "x-1")

    def test_bad_numbers(self):
        self.fails(self.read("order-1", "--from", "-1"), 1, "--from -1", "negative")
        self.fails(self.read("order-1", "--limit", "99999999999999999999999"), 1,
                   "--limit 99999999999999999999999", "too large")
        self.fails(self.read("order-1", "--limit", "12x"), 1, "--limit 12x: not a number")
        self.fails(self.read("order-1", "--limit", " 5"), 1, "not a number")
        self.fails(self.read("order-1", "--limit", "+5"), 1, "not a number")
        self.fails(self.read("order-1", "--limit", ""), 1, "--limit")
        self.fails(self.read("order-1", "--from", "0"), 1, "--from 0")
        self.fails(self.read("$all", "--from", "18446744073709551616"), 1, "too large")

    def test_missing_and_extra_stream_argument(self):
        self.fails(run("read", "-d", self.store), 1, "missing STREAM")
        self.fails(run("read", "-d", self.store, "order-1", "order-2"), 1, "order-2")

    def test_filters_refused_with_a_stream(self):
        for flag, val in (("--type", "A"), ("--stream-type", "order"), ("--stream-prefix", "o"),
                          ("--correlation", "0190f2a4-1111-7000-8000-000000000001"),
                          ("--since", "2020-01-01T00:00:00Z"), ("--until", "1")):
            self.fails(self.read("order-1", flag, val), 1, flag, "$all")


class TestReadFilters(CliTest):
    CORR = "0190f2a4-dddd-7000-8000-000000000001"

    def setUp(self):
        super().setUp()
        self.ok(self.append("order-1", ev("OrderPlaced", correlation_id=self.CORR)))
        self.ok(self.append("order-10", ev("ItemAdded")))
        self.ok(self.append("customer-1", ev("CustomerRegistered", correlation_id=self.CORR)))
        self.ok(self.append("order-1", ev("ItemAdded", correlation_id=self.CORR), ev("ItemRemoved")))
        self.ok(self.append("cart-1", ev("ItemAdded", stream_type="order")))
        self.all = self.ok(self.read("$all")).lines()
        self.assertEqual(len(self.all), 6)

    def gpos(self, *flags):
        return [e["global_position"] for e in self.ok(self.read("$all", *flags)).lines()]

    def expect(self, pred):
        return [e["global_position"] for e in self.all if pred(e)]

    def test_type(self):
        self.assertEqual(self.gpos("--type", "ItemAdded"), [2, 4, 6])
        self.assertEqual(self.gpos("--type", "OrderPlaced,ItemRemoved"), [1, 5])
        self.assertEqual(self.gpos("--type", "Nope"), [])
        self.assertEqual(self.gpos("--type=ItemAdded", "--backward"), [6, 4, 2])
        self.assertEqual(self.gpos("--type", "ItemAdded", "--limit", "2"), [2, 4])
        self.assertEqual(self.gpos("--type", "ItemAdded", "--from", "3"), [4, 6])

    def test_stream_type(self):
        self.assertEqual(self.gpos("--stream-type", "order"), self.expect(lambda e: e["stream_type"] == "order"))
        self.assertEqual(self.gpos("--stream-type", "order"), [1, 2, 4, 5, 6])
        self.assertEqual(self.gpos("--stream-type", "customer"), [3])

    def test_stream_prefix(self):
        self.assertEqual(self.gpos("--stream-prefix", "order-1"), [1, 2, 4, 5])
        self.assertEqual(self.gpos("--stream-prefix", "order-10"), [2])
        self.assertEqual(self.gpos("--stream-prefix", "c"), [3, 6])

    def test_correlation(self):
        self.assertEqual(self.gpos("--correlation", self.CORR), [1, 3, 4])
        self.assertEqual(self.gpos("--correlation", self.CORR.upper()), [1, 3, 4])
        self.assertEqual(self.gpos("--correlation", "0190f2a4-dddd-7000-8000-000000000009"), [])

    def test_since_until(self):
        times = [rfc3339_to_ns(e["recorded_at"]) for e in self.all]
        t = times[3]  # the append of global positions 4 and 5
        self.assertEqual(self.gpos("--since", str(t)), self.expect(lambda e: rfc3339_to_ns(e["recorded_at"]) >= t))
        self.assertEqual(self.gpos("--until", str(t)), self.expect(lambda e: rfc3339_to_ns(e["recorded_at"]) < t))
        self.assertEqual(self.gpos("--since", self.all[3]["recorded_at"]), self.gpos("--since", str(t)))
        self.assertIn(4, self.gpos("--since", str(t)))
        self.assertNotIn(4, self.gpos("--until", str(t)))
        self.assertEqual(self.gpos("--since", "2000-01-01T00:00:00Z"), [1, 2, 3, 4, 5, 6])
        self.assertEqual(self.gpos("--until", "2000-01-01T00:00:00+01:00"), [])
        self.assertEqual(self.gpos("--since", str(times[0]), "--until", str(times[3])),
                         self.expect(lambda e: times[0] <= rfc3339_to_ns(e["recorded_at"]) < times[3]))

    def test_combined_filters(self):
        self.assertEqual(self.gpos("--type", "ItemAdded", "--stream-prefix", "order-1"), [2, 4])
        self.assertEqual(self.gpos("--type", "ItemAdded", "--correlation", self.CORR), [4])
        self.assertEqual(self.gpos("--stream-type", "order", "--stream-prefix", "cart"), [6])

    def test_bad_filter_values(self):
        self.fails(self.read("$all", "--correlation", "xyz"), 1, "--correlation xyz", "not a UUID")
        self.fails(self.read("$all", "--since", "yesterday"), 1, "--since yesterday", "not a time")
        self.fails(self.read("$all", "--until", "2024-13-45T00:00:00Z"), 1, "--until")
        # 0 is the filter's "unbounded": --until 0 used to read every event while --until 1 read none
        for flag, v in (("--until", "0"), ("--since", "0"), ("--until", "1970-01-01T00:00:00Z"),
                        ("--since", "1969-12-31T23:59:59Z")):
            self.fails(self.read("$all", flag, v), 1, "%s %s: must be after 1970-01-01T00:00:00Z" % (flag, v))
        self.fails(self.read("$all", "--type", ""), 1, "--type", "empty")
        self.fails(self.read("$all", "--type", "A,,B"), 1, "--type A,,B", "empty")
        self.fails(self.read("$all", "--type", "A,"), 1, "empty")
        self.fails(self.read("$all", "--stream-type", ""), 1, "--stream-type")


# ---------------------------------------------------------------------------
class LineReader:
    """Reads lines from a child's stdout with a deadline."""

    def __init__(self, proc):
        self.proc, self.buf = proc, b""

    def line(self, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def nothing_for(self, seconds):
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        return not ready and b"\n" not in self.buf


class TestTail(CliTest):
    def start(self, *flags):
        e = dict(os.environ)
        e.pop("EVSTORE_DIR", None)
        p = subprocess.Popen([BIN, "tail", "-d", self.store] + list(flags),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        self.procs.append(p)
        return p, LineReader(p)

    def setUp(self):
        super().setUp()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
        super().tearDown()

    def stop(self, p, sig=signal.SIGINT):
        p.send_signal(sig)
        try:
            code = p.wait(timeout=10 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("tail did not exit after %s" % sig)
        err = p.stderr.read().decode()
        self.assertEqual(code, 0, "tail exit %s, stderr: %s" % (code, err))
        return err

    def test_follows_appends_from_another_process_then_sigint(self):
        self.ok(self.append("order-1", ev("OrderPlaced"), ev("ItemAdded")))
        p, lr = self.start()
        self.assertEqual(lr.line()["global_position"], 1)
        self.assertEqual(lr.line()["global_position"], 2)
        self.assertTrue(lr.nothing_for(0.3))
        # the writer is another process, and tail keeps running meanwhile
        o = self.ok(self.append("order-1", ev("OrderShipped", {"by": "post"}))).obj()
        e = lr.line()
        self.assertIsNotNone(e, "tail did not print the appended event")
        self.assertEqual(e["event_id"], o["event_ids"][0])
        self.assertEqual(e["data"], {"by": "post"})
        self.assertEqual(e["global_position"], 3)
        self.ok(self.append("order-2", ev("A"), ev("B")))
        self.assertEqual([lr.line()["global_position"], lr.line()["global_position"]], [4, 5])
        self.stop(p)

    def test_tail_on_empty_store_and_sigterm(self):
        self.fails(self.append("x-1", ev("A"), expected=3), 3)  # creates an empty store
        p, lr = self.start()
        self.assertTrue(lr.nothing_for(0.3))
        self.ok(self.append("x-1", ev("First")))
        self.assertEqual(lr.line()["event_type"], "First")
        self.stop(p, signal.SIGTERM)

    def test_tail_from_and_filters(self):
        self.ok(self.append("order-1", ev("OrderPlaced"), ev("ItemAdded"), ev("ItemAdded")))
        p, lr = self.start("--from", "3", "--type", "ItemAdded,Wanted")
        self.assertEqual(lr.line()["global_position"], 3)
        self.ok(self.append("order-1", ev("Unwanted")))
        self.ok(self.append("other-1", ev("Wanted")))
        e = lr.line()
        self.assertEqual((e["event_type"], e["global_position"]), ("Wanted", 5))
        self.assertTrue(lr.nothing_for(0.3))
        self.stop(p)
        p, lr = self.start("--stream-prefix", "other")
        self.assertEqual(lr.line()["stream"], "other-1")
        self.ok(self.append("order-1", ev("Again")))
        self.ok(self.append("other-1", ev("Again")))
        e = lr.line()
        self.assertEqual((e["stream"], e["global_position"]), ("other-1", 7))
        self.stop(p)

    def test_tail_other_filters(self):
        corr = "0190f2a4-eeee-7000-8000-000000000001"
        self.ok(self.append("order-1", ev("Old", correlation_id=corr)))
        since = str(time.time_ns())
        p, lr = self.start("--stream-type", "order", "--correlation", corr, "--since", since,
                           "--until", "2100-01-01T00:00:00Z")
        self.assertTrue(lr.nothing_for(0.3))  # "Old" was recorded before --since
        self.ok(self.append("order-1", ev("NoCorrelation")))
        self.ok(self.append("user-1", ev("OtherType", correlation_id=corr)))
        self.ok(self.append("order-2", ev("Match", correlation_id=corr)))
        e = lr.line()
        self.assertEqual((e["event_type"], e["global_position"]), ("Match", 4))
        self.assertTrue(lr.nothing_for(0.3))
        self.stop(p)

    def test_tail_usage_errors(self):
        self.fails(run("tail", "-d", self.store, "order-1"), 1, "order-1")
        self.fails(run("tail", "-d", self.store, "--from", "x"), 1, "--from x: not a number")
        self.fails(run("tail", "-d", self.store, "--backward"), 1, "unknown option --backward")
        self.fails(run("tail", "-d", self.store, "--correlation", "nope"), 1, "--correlation nope")
        self.fails(run("tail", "-d", self.store, "--until", "0"), 1, "--until 0: must be after 1970-01-01")

    def test_tail_missing_store(self):
        r = run("tail", "-d", os.path.join(self.tmp, "nope"))
        self.fails(r, 2)


# ---------------------------------------------------------------------------
class TestStreamsInfo(CliTest):
    def test_streams_listing(self):
        for s in ("b-2", "a-1", "b-1", "c-1", "b-3"):
            self.ok(self.append(s, ev("A")))
        self.ok(self.append("b-2", ev("B"), ev("C")))
        ls = self.ok(run("streams", "-d", self.store)).lines()
        self.assertEqual([s["stream"] for s in ls], ["a-1", "b-1", "b-2", "b-3", "c-1"])
        b2 = ls[2]
        self.assertEqual(b2["version"], 3)
        self.assertEqual(b2["stream_type"], "b")
        self.assertEqual((b2["first_global_position"], b2["last_global_position"]), (1, 7))
        self.assertRegex(b2["created_at"], TIME_RE)
        self.assertRegex(b2["updated_at"], TIME_RE)
        self.assertLess(rfc3339_to_ns(b2["created_at"]), rfc3339_to_ns(b2["updated_at"]))
        pre = self.ok(run("streams", "-d", self.store, "--prefix", "b-")).lines()
        self.assertEqual([s["stream"] for s in pre], ["b-1", "b-2", "b-3"])
        lim = self.ok(run("streams", "-d", self.store, "--prefix", "b-", "--limit", "2")).lines()
        self.assertEqual([s["stream"] for s in lim], ["b-1", "b-2"])
        self.assertEqual(self.ok(run("streams", "-d", self.store, "--prefix", "zzz")).out, "")
        self.fails(run("streams", "-d", self.store, "--limit", "abc"), 1, "--limit abc: not a number")
        self.fails(run("streams", "-d", self.store, "extra"), 1, "extra")

    def test_streams_paging_beyond_one_page(self):
        # more streams than the command fetches per call (256), appended
        # through one HTTP connection to a server on the store: 300 CLI runs
        # would each open the store (minutes under the sanitizers)
        names = ["s-%04d" % i for i in range(300)]
        srv = subprocess.Popen([BIN, "serve", "-d", self.store, "--listen", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            m = re.search(r"http://127\.0\.0\.1:(\d+)", srv.stdout.readline().decode())
            self.assertTrue(m, "the server did not start")
            c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=TIMEOUT)
            for n in names:
                c.request("POST", "/streams/" + n, body="[" + ev("A") + "]",
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                self.assertEqual(r.status, 201, r.read())
                r.read()
            c.close()
        finally:
            srv.send_signal(signal.SIGTERM)
            self.assertEqual(srv.wait(TIMEOUT), 0)
            srv.stdout.close()
        got = [s["stream"] for s in self.ok(run("streams", "-d", self.store)).lines()]
        self.assertEqual(got, names)
        got = [s["stream"] for s in self.ok(run("streams", "-d", self.store, "--limit", "257")).lines()]
        self.assertEqual(got, names[:257])
        got = [s["stream"] for s in self.ok(run("streams", "-d", self.store, "--prefix", "s-02")).lines()]
        self.assertEqual(got, names[200:300])

    def test_info_store_and_stream(self):
        self.ok(self.append("order-1", ev("A"), ev("B")))
        self.ok(self.append("user-1", ev("C", stream_type="person")))
        st = self.ok(run("info", "-d", self.store)).obj()
        self.assertEqual(st["head"], 3)
        self.assertEqual(st["streams"], 2)
        self.assertGreaterEqual(st["segments"], 1)
        self.assertGreater(st["log_bytes"], 0)
        self.assertIn(st["durability"], ("sync", "batch", "none"))
        si = self.ok(run("info", "-d", self.store, "order-1")).obj()
        self.assertEqual(si["stream"], "order-1")
        self.assertEqual(si["version"], 2)
        self.assertEqual((si["first_global_position"], si["last_global_position"]), (1, 2))
        self.assertEqual(si["stream_type"], "order")
        self.assertRegex(si["created_at"], TIME_RE)
        self.assertRegex(si["updated_at"], TIME_RE)
        self.assertEqual(self.ok(run("info", "-d", self.store, "user-1")).obj()["stream_type"], "person")
        self.fails(run("info", "-d", self.store, "order-404"), 2, "order-404")
        self.fails(run("info", "-d", self.store, "a", "b"), 1, '"b"')

    def test_info_grows_with_appends(self):
        self.ok(self.append("order-1", ev("A")))
        a = self.ok(run("info", "-d", self.store)).obj()
        self.ok(self.append("order-1", ev("B", {"pad": "x" * 1000})))
        b = self.ok(run("info", "-d", self.store)).obj()
        self.assertEqual(b["head"], a["head"] + 1)
        self.assertGreater(b["log_bytes"], a["log_bytes"] + 1000)


# ---------------------------------------------------------------------------
def segment_files(store):
    """The log's segment files: everything that is not the LMDB index or a lock."""
    out = []
    for root, _, files in os.walk(store):
        for f in files:
            p = os.path.join(root, f)
            if f.endswith(".mdb") or "lock" in f.lower() or os.path.getsize(p) == 0:
                continue
            out.append(p)
    return sorted(out)


def used_length(path):
    """Bytes up to the last non-zero byte (segments are preallocated with zeros)."""
    with open(path, "rb") as f:
        data = f.read()
    return len(data.rstrip(b"\0"))


class TestCheck(CliTest):
    def fill(self):
        for i in range(20):
            self.ok(self.append("order-%d" % (i % 3), *[ev("E", {"i": i, "j": j, "pad": "p" * 200}) for j in range(5)]))

    def test_check_clean(self):
        self.fill()
        r = self.ok(run("check", "-d", self.store))
        o = r.obj()
        self.assertIs(o["ok"], True)
        self.assertEqual(o["errors"], 0)
        self.assertEqual(o["events"], 100)
        self.assertEqual(o["records"], 20)
        self.assertGreaterEqual(o["segments"], 1)
        self.assertEqual(r.err, "")

    def test_check_detects_flipped_byte(self):
        self.fill()
        segs = segment_files(self.store)
        self.assertTrue(segs, "no segment file found in %s" % os.listdir(self.store))
        seg = max(segs, key=used_length)
        used = used_length(seg)
        self.assertGreater(used, 10000)
        where = used // 2
        with open(seg, "r+b") as f:
            f.seek(where)
            b = f.read(1)
            f.seek(where)
            f.write(bytes([b[0] ^ 0x5A]))
        r = run("check", "-d", self.store)
        self.fails(r, 5, os.path.basename(seg), "offset")
        if r.out.strip():
            o = r.obj()
            self.assertIs(o["ok"], False)
            self.assertGreaterEqual(o["errors"], 1)
        # reading across the damaged record fails too: no wrong data is returned
        r = self.read("$all")
        self.assertEqual(r.code, 5, r)
        self.assertIn(os.path.basename(seg), r.err)

    def test_damage_after_close_is_refused_then_repaired(self):
        """The bug of issue 8: a flipped byte in the last record after a clean close.
        Open must refuse (nothing changed), repair must name every dropped event,
        and no position may be given to another event afterwards."""
        self.fill()
        seg = max(segment_files(self.store), key=used_length)
        used = used_length(seg)
        with open(seg, "r+b") as f:  # damage the last record (5 events of order-1)
            f.seek(used - 100)
            b = f.read(1)
            f.seek(used - 100)
            f.write(bytes([b[0] ^ 0x20]))
        before = open(seg, "rb").read()
        r = self.append("order-9", ev("AfterDamage"))
        self.fails(r, 5, "damaged", os.path.basename(seg), "repair")
        self.assertEqual(open(seg, "rb").read(), before, "a refused open changed the log")
        r = run("check", "-d", self.store)
        self.fails(r, 5)
        self.assertIs(r.obj()["ok"], False)
        # dry run: names the 5 events, changes nothing
        r = self.ok(run("repair", "-d", self.store, "--dry-run"))
        lines = r.lines()
        self.assertEqual([o["global_position"] for o in lines[:-1]], [96, 97, 98, 99, 100])
        self.assertEqual({o["stream"] for o in lines[:-1]}, {"order-1"})
        self.assertTrue(all(len(o["event_id"]) == 36 and "offset" in o["damage"] for o in lines[:-1]))
        self.assertEqual(lines[-1]["lost_events"], 5)
        self.assertEqual(lines[-1]["head"], 100)
        self.assertIs(lines[-1]["changed"], False)
        self.assertEqual(open(seg, "rb").read(), before, "a dry run changed the log")
        ids = [o["event_id"] for o in lines[:-1]]
        # the repair itself
        r = self.ok(run("repair", "-d", self.store))
        self.assertEqual([o["event_id"] for o in r.lines()[:-1]], ids)
        self.assertIs(r.lines()[-1]["changed"], True)
        o = self.ok(run("check", "-d", self.store)).obj()
        self.assertEqual((o["errors"], o["events"], o["lost_events"]), (0, 100, 5))
        # reads say what was lost; positions continue above it
        r = self.ok(self.read("$all"))
        self.assertEqual(len(r.lines()), 95)
        self.assertIn("global positions 96..100 were lost", r.err)
        r = self.ok(self.append("order-9", ev("AfterRepair")))
        self.assertEqual(r.obj()["first_global_position"], 101)
        v = self.ok(run("info", "-d", self.store, "order-1")).obj()["version"]
        r = self.ok(self.append("order-1", ev("AfterRepair"), expected=v))
        self.assertEqual(r.obj()["first_stream_position"], v + 1)
        r = self.ok(self.read("order-1"))
        self.assertIn("stream positions", r.err)
        self.assertEqual(self.ok(run("repair", "-d", self.store)).lines()[-1]["changed"], False)

    def test_torn_tail_is_cut_and_reported(self):
        """Bytes of an append that was never acknowledged (past the index's head) are a torn tail."""
        self.fill()
        seg = max(segment_files(self.store), key=used_length)
        used = (used_length(seg) + 7) & ~7
        with open(seg, "r+b") as f:  # a frame header and half a payload, never finished
            f.seek(used)
            f.write(b"\x40\x00\x00\x00" + b"\x5a" * 60)
        before = open(seg, "rb").read()
        # a read-only command leaves the bytes alone and says so as a note, not as a recovery it did not make
        r = self.ok(run("info", "-d", self.store))
        self.assertIn(": note: ", r.err)
        self.assertIn("read-only, ", r.err)
        self.assertNotIn("recovery", r.err)
        self.assertEqual(open(seg, "rb").read(), before, "a read-only open changed the log")
        r = self.ok(self.append("order-9", ev("AfterCrash")))
        self.assertIn(": recovery: ", r.err)
        self.assertIn("cut a torn tail", r.err)
        self.assertEqual(r.obj()["first_global_position"], 101)
        self.assertEqual(self.ok(run("check", "-d", self.store)).obj()["errors"], 0)
        types = [e["event_type"] for e in self.ok(self.read("$all")).lines()]
        self.assertEqual(len(types), 101)
        self.assertEqual(types[-1], "AfterCrash")

    def test_repair_usage(self):
        self.fails(run("repair"), 1)
        self.fails(run("repair", "-d", os.path.join(self.tmp, "nothing")), 2, "no store")
        self.fill()
        r = self.ok(run("repair", "-d", self.store))
        self.assertEqual(r.lines()[-1]["lost_events"], 0)
        self.assertIs(r.lines()[-1]["changed"], False)


# ---------------------------------------------------------------------------
class TestStrayArguments(CliTest):
    """An argument or option the action does not use is a usage error naming it, never ignored."""

    def refused(self, args, needle):
        """Exit 1 naming what is wrong, locally and (before any server is asked) with --url; the store unchanged."""
        before = self.snapshot()
        self.fails(run(*args, "-d", self.store), 1, needle)
        self.fails(run(*args, "--url", "http://127.0.0.1:1"), 1, needle)
        self.assertEqual(self.snapshot(), before)

    def test_extra_positionals(self):
        self.ok(self.append("s1", ev("A")))
        for args, needle in (
                (["sub", "list", "extra"], 'sub list takes no arguments; unexpected argument "extra"'),
                (["sub", "show", "a", "b", "c"], 'sub show takes one NAME; unexpected argument "b"'),
                (["sub", "reset", "a", "1", "2"], 'sub reset takes NAME POSITION; unexpected argument "2"'),
                (["dlq", "list", "s3", "x", "y"], 'dlq list takes one NAME; unexpected argument "x"'),
                (["dlq", "retry", "s3", "1", "2"], 'dlq retry takes NAME [POSITION]; unexpected argument "2"'),
                (["group", "list", "g"], 'group list takes no arguments; unexpected argument "g"'),
                (["projection", "status", "p", "q"], 'projection status takes one NAME; unexpected argument "q"'),
                (["projection", "compare", "p", "1", "2", "3", "4", "5"],
                 'projection compare takes NAME A B; unexpected argument "3"'),
                (["sub", "reset", "a"], "sub reset: missing POSITION"),
                (["projection", "compare", "p", "1"], "projection compare: missing B")):
            with self.subTest(args=args):
                self.refused(args, needle)

    def test_options_that_do_not_apply(self):
        self.ok(self.append("s1", ev("A")))
        for args, needle in (
                (["group", "show", "g1", "--limit", "3"], "--limit does not apply to group show"),
                (["sub", "list", "--after", "3"], "--after does not apply to sub list"),
                (["dlq", "show", "s", "1", "--limit", "3"], "--limit does not apply to dlq show"),
                (["projection", "run", "p", "--limit", "3"], "--limit does not apply to projection run"),
                (["projection", "status", "p", "--follow"], "--follow does not apply to projection status"),
                (["projection", "status", "p", "--as-of", "1"], "--as-of does not apply to projection status"),
                (["sub", "show", "x", "--owner", "o"], "--owner applies to sub create only"),
                (["stream", "meta", "get", "X", "--expected", "5"], "--expected does not apply to stream meta get"),
                (["read", "$all", "--tag-match", "all"], "--tag-match needs --tag"),
                (["tail", "--tag-match", "any"], "--tag-match needs --tag")):
            with self.subTest(args=args):
                self.refused(args, needle)
        # with --tag it filters as before
        self.assertEqual(self.ok(self.read("$all", "--tag", "t", "--tag-match", "all")).lines(), [])


# ---------------------------------------------------------------------------
class TestCloseFailure(CliTest):
    """A command whose store does not close cleanly (its final sync fails) exits 5 and says so.

    An LD_PRELOAD shim (tests/support/failsync.c) numbers every sync of the
    process: a first run counts them, then the same command runs on fresh
    stores failing every sync from the k-th on, for k = last, last - 1, ...:
    the first of these runs that fails at all has lost a sync made by the
    close (the append's own sync comes earlier and would fail the append)."""

    def shim_env(self, **extra):
        shim = os.path.join(os.environ.get("EVS_BUILD_DIR") or os.path.dirname(BIN), "libevs_failsync.so")
        self.assertTrue(os.path.exists(shim), "build the evs_failsync target: %s" % shim)
        env = {"LD_PRELOAD": shim,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        env.update(extra)
        return env

    def test_failed_final_sync_exits_5(self):
        count = os.path.join(self.tmp, "syncs")
        event = ev("OrderPlaced", {"n": 1})
        clean = os.path.join(self.tmp, "clean")
        self.ok(run("append", "-d", clean, "order-1", event, env=self.shim_env(EVS_FAILSYNC_COUNT=count)))
        with open(count) as f:
            total = int(f.read())
        self.assertGreaterEqual(total, 2, "the append and the close both sync")
        for k in range(total, 0, -1):
            shutil.rmtree(self.store, ignore_errors=True)
            r = run("append", "-d", self.store, "order-1", event,
                    env=self.shim_env(EVS_FAILSYNC_COUNT=count, EVS_FAILSYNC_FROM=str(k)))
            if r.code != 0:
                break
        self.fails(r, 5, self.store, "close:", "Input/output error")
        self.assertGreater(k, total - 4, "the close makes the last syncs of the process")
        self.assertEqual(r.obj()["last_global_position"], 1)  # the append itself was acknowledged (sync mode)
        # nothing acknowledged is lost: the next open checks the tail and finds the event
        self.assertEqual([e["event_type"] for e in self.ok(self.read("$all")).lines()], ["OrderPlaced"])
        self.assertEqual(self.ok(run("check", "-d", self.store)).obj()["errors"], 0)


# ---------------------------------------------------------------------------
class TestDemo(CliTest):
    def test_demo_runs_twice(self):
        demo = os.path.join(ROOT, "tools", "demo.sh")
        data = os.path.join(self.tmp, "data")
        for _ in range(2):
            p = subprocess.run(["sh", demo, BIN, data], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=TIMEOUT)
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, out)
            self.assertIn("Concurrency conflict: expected version", out)
            self.assertIn('"idempotent":true', out)
            time.sleep(1.1)  # the demo names its store after the second
        self.assertEqual(len([d for d in os.listdir(data) if d.startswith("demo-")]), 2)


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed - len(result.skipped), failed))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
