#!/usr/bin/env python3
"""
test_cli_served.py -- the evstore command next to a running `evstore serve`,
and the consumer commands it gained (real binary, $EVSTORE_BIN).

Checked: while a server holds a store, commands that only read (read,
tail, streams, info, check, sub/dlq/group list and show, projection
status/state/partitions) work on its files with -d and print what --url
prints; commands that write are refused with exit 5 and a message that
names the server's --url (from DIR/SERVE), and a stale DIR/SERVE is not
believed; `group create|show|list|consumers|delete` and `sub create` act
alike locally and over --url (same JSON, same exit codes, same words for
bad settings), and so do `sub pause|resume|reset|delete` and `projection
create|delete` (the record, valid JSON whatever the name); `sub reset`
refuses 0 and a position past head + 1 alike locally and over --url,
changing nothing; a local `projection create` of a script that does not
load changes nothing; `dlq list` of an unknown name exits 2 either way; --limit 0
is refused by every command; read and tail filter by --tag and
--causation; every command's help lists its options and exit statuses and
`evstore --help` lists every command; `serve --config` of a missing file
says so.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_cli_url import BIN, SLOW, TIMEOUT, Result, Server, ev, run  # noqa: E402


def follow(*runs):
    """
    Commands that follow (tail), run side by side: (args, lines) each.  They
    are stopped with SIGINT once every one has printed its `lines` lines
    (a sanitizer build may take seconds to start) and a moment more, so one
    that should print nothing had as long as the others to print something.
    """
    e = dict(os.environ)
    e.pop("EVSTORE_DIR", None)
    e.pop("EVSTORE_URL", None)
    procs = []
    for args, _ in runs:
        outf = tempfile.TemporaryFile()
        procs.append((outf, subprocess.Popen([BIN] + list(args), stdout=outf, stderr=subprocess.PIPE, env=e)))

    def printed(outf):
        outf.seek(0)
        return outf.read().count(b"\n")

    deadline = time.time() + 30 * SLOW
    while time.time() < deadline and any(printed(o) < n for (o, _), (_, n) in zip(procs, runs)):
        time.sleep(0.05)
    time.sleep(0.5)
    results = []
    for (outf, p), (args, _) in zip(procs, runs):
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT)
        outf.seek(0)
        results.append(Result(list(args), subprocess.CompletedProcess(args, p.returncode, outf.read(), err)))
        outf.close()
    return results if len(results) > 1 else results[0]


class Base(unittest.TestCase):
    maxDiff = 4000

    def ok(self, r):
        self.assertEqual(r.code, 0, r)
        return r

    def fails(self, r, code, *needles):
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.err.startswith("evstore: "), r)
        for n in needles:
            self.assertIn(n, r.err, r)
        return r


class ServedStoreTest(Base):
    """One server for the class; the CLI works on its directory beside it."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-served-")
        cls.dir = os.path.join(cls.tmp, "data")
        cls.srv = Server(cls.dir).start()
        cls.url = cls.srv.url

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_writes_name_the_url_reads_work(self):
        d, u = self.dir, self.url
        self.ok(run("append", "--url", u, "srv-1", "--expected", "no-stream", ev("OrderPlaced", {"n": 1})))
        # a write with -d: refused, and told which --url to use
        r = self.fails(run("append", "-d", d, "srv-1", ev("OrderPlaced")), 5, "locked by another process",
                       "--url " + u)
        self.assertIn("`evstore serve`", r.err)
        for args in (["sub", "pause", "x"], ["group", "create", "g"], ["group", "consumers", "g"],
                     ["projection", "delete", "p"], ["dlq", "purge", "x"]):
            self.fails(run(*args, "-d", d), 5, "--url " + u)
        self.fails(run("repair", "-d", d), 5, "stop the process that holds it")
        # reads work on the files, and print what the server prints
        for args in (["read", "srv-1"], ["read", "$all", "--type", "OrderPlaced"], ["streams", "--prefix", "srv-"],
                     ["info", "srv-1"]):
            local = self.ok(run(*args, "-d", d)).out
            self.assertEqual(local, self.ok(run(*args, "--url", u)).out, args)
        self.assertTrue(self.ok(run("check", "-d", d)).obj()["ok"])
        self.assertIn("srv-1", self.ok(follow((["tail", "-d", d, "--from", "1", "--stream-prefix", "srv-"], 1))).out)

    def test_consumer_reads_beside_the_server(self):
        d, u = self.dir, self.url
        self.ok(run("group", "create", "--url", u, "rd-group", "--type", "A"))
        self.ok(run("sub", "create", "--url", u, "rd-sub", "--from", "now"))
        names = [x["name"] for x in self.ok(run("sub", "list", "-d", d)).lines()]
        self.assertIn("rd-group", names)
        self.assertIn("rd-sub", names)
        self.assertEqual(self.ok(run("sub", "show", "rd-sub", "-d", d)).obj()["kind"], "subscription")
        local = self.ok(run("group", "show", "rd-group", "-d", d)).obj()
        remote = self.ok(run("group", "show", "rd-group", "--url", u)).obj()
        # the server's view adds live figures; the record and the settings agree
        for k in ("name", "kind", "filter", "checkpoint", "strategy", "ack_timeout_ms", "max_in_flight", "retry"):
            self.assertEqual(local[k], remote[k], k)
        self.assertIn("rd-group", [g["name"] for g in self.ok(run("group", "list", "-d", d)).lines()])
        self.assertEqual(self.ok(run("dlq", "list", "rd-group", "-d", d)).out, "")
        self.fails(run("dlq", "list", "nope", "-d", d), 2, "not found")
        self.fails(run("projection", "status", "nope", "-d", d), 2)
        self.fails(run("group", "show", "rd-sub", "-d", d), 2, "is a subscription, not a group")
        self.fails(run("group", "show", "rd-sub", "--url", u), 2, "is a subscription, not a group")

    def test_stale_serve_file_is_not_believed(self):
        d = self.dir
        path = os.path.join(d, "SERVE")
        with open(path) as f:
            real = f.read()
        try:
            with open(path, "w") as f:
                f.write("1 http://127.0.0.1:9\n")   # another pid: not the one holding the lock
            r = self.fails(run("append", "-d", d, "x-1", ev("A")), 5, "--url http://ADDRESS:PORT")
            self.assertNotIn(":9", r.err)
        finally:
            with open(path, "w") as f:
                f.write(real)


class ServeFileTest(Base):
    def test_serve_file_names_the_server_while_it_runs(self):
        tmp = tempfile.mkdtemp(prefix="evs-servefile-")
        try:
            d = os.path.join(tmp, "data")
            srv = Server(d).start()
            with open(os.path.join(d, "SERVE")) as f:
                pid, url = f.read().split()
            self.assertEqual((int(pid), url), (srv.proc.pid, srv.url))
            with open(os.path.join(d, "LOCK")) as f:
                self.assertEqual(f.read().strip(), pid)
            srv.stop()
            self.assertFalse(os.path.exists(os.path.join(d, "SERVE")))
            # nobody holds the store now: -d writes work again
            self.ok(run("append", "-d", d, "free-1", ev("A")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class ConsumerCommandTest(Base):
    """group and sub create, local and remote, on stores of their own."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-ccmd-")
        self.local = os.path.join(self.tmp, "local")
        self.srv = Server(os.path.join(self.tmp, "served")).start()

    def tearDown(self):
        self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def both(self, *args):
        """The same command on the local store and through the server."""
        return run(*args, "-d", self.local), run(*args, "--url", self.srv.url)

    LIVE = ("lag_ms", "open", "consumers", "in_flight", "buffered")

    def agree(self, lo, re_, *live):
        """
        Both succeeded and printed the same record, field for field, but the
        live figures only a server has (and `live`); the local record.
        """
        a, b = self.ok(lo).obj(), self.ok(re_).obj()
        for k in a:
            if k not in self.LIVE + live:
                self.assertEqual(a[k], b[k], k)
        return a

    def test_group_commands_local_and_remote_agree(self):
        for r in self.both("append", "g-1", ev("A", {"i": 1})):
            self.ok(r)
        lo, re_ = self.both("group", "create", "billing", "--strategy", "pinned", "--ack-timeout-ms", "1500",
                            "--settings", '{"max_in_flight":3,"retry":{"max_retries":5}}', "--type", "A,B")
        a = self.agree(lo, re_)
        self.assertEqual((a["kind"], a["strategy"], a["ack_timeout_ms"], a["max_in_flight"],
                          a["retry"]["max_retries"], a["filter"]["event_types"]),
                         ("group", "pinned", 1500, 3, 5, ["A", "B"]))
        # flags win over --settings, whatever their order
        lo, re_ = self.both("group", "create", "billing", "--max-in-flight", "7", "--settings", '{"max_in_flight":2}')
        self.assertEqual(self.ok(lo).obj()["max_in_flight"], 7)
        self.assertEqual(self.ok(re_).obj()["max_in_flight"], 7)
        self.assertEqual(self.ok(lo).obj()["strategy"], "round_robin")  # a change replaces every setting
        for r in self.both("group", "list"):
            self.assertEqual([g["name"] for g in self.ok(r).lines()], ["billing"])
        for r in self.both("group", "consumers", "billing"):
            self.assertEqual(self.ok(r).out, "")
        # bad settings: exit 4 with the same words; unknown: 2; another kind's name: 3
        for r in self.both("group", "create", "bad", "--max-in-flight", "0"):
            self.fails(r, 4, "max_in_flight must be an integer in 1..1000")
        for r in self.both("group", "create", "bad", "--settings", '{"bogus":1}'):
            self.fails(r, 4, "unknown field \"bogus\"")
        self.fails(run("group", "create", "bad", "--settings", "{oops", "-d", self.local), 4, "malformed JSON")
        for r in self.both("group", "show", "nope"):
            self.fails(r, 2, "not found")
        for r in self.both("sub", "create", "mail"):
            self.ok(r)
        for r in self.both("group", "create", "mail"):
            self.fails(r, 3, "is a subscription")
        for r in self.both("group", "delete", "mail"):
            self.fails(r, 2, "is a subscription, not a group")
        for r in self.both("group", "delete", "billing"):
            self.assertEqual(self.ok(r).obj(), {"deleted": "billing", "kind": "group"})
        for r in self.both("group", "show", "billing"):
            self.fails(r, 2)
        # settings belong to create only, and group takes no stray argument
        self.fails(run("group", "show", "x", "--strategy", "pinned", "-d", self.local), 1, "create only")
        self.fails(run("group", "frob", "-d", self.local), 1, "unknown action")

    def test_dlq_retry_of_a_subscription_locally_exits_3(self):
        # dlq --help: 3 when the consumer cannot retry here (locally only stored Lua projections do)
        self.ok(run("append", "-d", self.local, "m-1", ev("A")))
        self.ok(run("sub", "create", "mail", "-d", self.local))
        self.fails(run("dlq", "retry", "mail", "-d", self.local), 3, "not a Lua projection", "--url")
        self.fails(run("dlq", "retry", "nope", "-d", self.local), 2, "not found")

    def test_group_consumers_over_http(self):
        s = self.srv
        self.ok(run("group", "create", "work", "--url", s.url))
        self.ok(run("append", "w-1", ev("A"), "--url", s.url))
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=TIMEOUT)
        c.request("POST", "/groups/work/next?consumer=w1&timeout_ms=2000")
        body = json.loads(c.getresponse().read())
        self.assertIsNotNone(body["delivery"], body)
        c.close()
        got = self.ok(run("group", "consumers", "work", "--url", s.url)).lines()
        self.assertEqual([(x["name"], x["in_flight"]) for x in got], [("w1", 1)])

    def test_sub_create_local_and_remote(self):
        for r in self.both("append", "s-1", ev("A"), ev("B")):
            self.ok(r)
        for r in self.both("sub", "create", "fresh"):
            self.assertEqual(self.ok(r).obj()["checkpoint"], 0)
        for r in self.both("sub", "create", "later", "--from", "now", "--type", "A", "--tag", "vip", "--owner", "ops"):
            o = self.ok(r).obj()
            self.assertEqual((o["checkpoint"], o["owner"], o["filter"]), (2, "ops", {"event_types": ["A"], "tag": "vip"}))
        for r in self.both("sub", "create", "one", "--stream", "s-1", "--from", "2"):
            o = self.ok(r).obj()
            self.assertEqual((o["stream"], o["checkpoint"]), ("s-1", 1))
        for r in self.both("sub", "create", "one", "--stream", "s-2"):
            self.fails(r, 4, "reads stream")
        for r in self.both("sub", "create", "bad", "--settings", '{"from":0}'):
            self.fails(r, 4, "from must be")
        self.fails(run("sub", "create", "bad", "--from", "0", "-d", self.local), 1, "positions start at 1")
        # the record is what a program opens: a library subscription would resume at its checkpoint
        lines = self.ok(run("sub", "list", "-d", self.local)).lines()
        self.assertEqual([x["name"] for x in lines], ["fresh", "later", "one"])
        # a projection cannot take a subscription's name (locally it used to delete the subscription)
        script = os.path.join(ROOT, "examples", "readme", "order-totals.lua")
        for r in self.both("projection", "create", "later", script):
            self.fails(r, 3, "is a subscription")
        self.assertEqual(self.ok(run("sub", "show", "later", "-d", self.local)).obj()["checkpoint"], 2)

    def test_sub_reset_refuses_what_is_not_a_start(self):
        for r in self.both("append", "s-1", ev("A"), ev("B")):
            self.ok(r)
        for r in self.both("sub", "create", "s3"):
            self.ok(r)
        for pos, code, why in (("1000", 4, "position 1000 lies past the store's head 2: at most 3"),
                               ("0", 1, "POSITION 0: positions start at 1"),
                               ("18446744073709551615", 1, "number too large")):
            for r in self.both("sub", "reset", "s3", pos):
                self.fails(r, code, why)
            for r in self.both("sub", "show", "s3"):
                self.assertEqual(self.ok(r).obj()["checkpoint"], 0)
        self.assertEqual(self.ok(run("check", "-d", self.local)).obj()["errors"], 0)
        # head + 1 is "after everything stored"; what is printed is what is stored
        self.assertEqual(self.ok(run("sub", "reset", "s3", "3", "-d", self.local)).obj()["checkpoint"], 2)
        self.assertEqual(self.ok(run("sub", "show", "s3", "-d", self.local)).obj()["checkpoint"], 2)
        self.assertEqual(self.ok(run("sub", "reset", "s3", "3", "--url", self.srv.url)).obj()["checkpoint"], 2)

    def test_changes_print_the_record_as_json_locally_and_remote(self):
        # a name that needs escaping: the local forms printed it raw (invalid JSON), and
        # printed less than the server (pause/resume/reset/create: the record; delete: the kind)
        name = 'we"ird\\x'
        for r in self.both("append", "order-1", ev("OrderPlaced", {"total": "5"})):
            self.ok(r)
        self.agree(*self.both("sub", "create", name))
        for act, status in (("pause", "paused"), ("resume", "active")):
            self.assertEqual((self.agree(*self.both("sub", act, name)))["status"], status)
        self.assertEqual(self.agree(*self.both("sub", "reset", name, "2"))["checkpoint"], 1)
        for r in self.both("sub", "delete", name):
            self.assertEqual(self.ok(r).obj(), {"deleted": name, "kind": "subscription"})
        script = os.path.join(ROOT, "examples", "readme", "order-totals.lua")
        # the server's runner may have applied the event already
        got = self.agree(*self.both("projection", "create", name, script), "checkpoint", "processed", "lag_events",
                         "last_processed_at")
        self.assertEqual((got["name"], got["kind"]), (name, "projection"))
        self.assertEqual(self.ok(run("projection", "run", name, "-d", self.local)).obj(), {"name": name, "applied": 1})
        for r in self.both("projection", "delete", name):
            self.assertEqual(self.ok(r).obj(), {"deleted": name, "kind": "projection"})

    def test_projection_create_refuses_a_bad_script_before_replacing(self):
        script = os.path.join(ROOT, "examples", "readme", "order-totals.lua")
        bad = os.path.join(self.tmp, "bad.lua")
        with open(bad, "w") as f:
            f.write("return {\n")
        d = self.local
        self.ok(run("append", "order-1", ev("OrderPlaced", {"total": "5"}), ev("OrderPlaced", {"total": "x"}), "-d", d))
        self.ok(run("projection", "create", "tot", script, "-d", d))
        self.ok(run("projection", "run", "tot", "-d", d))

        def kept():
            return (self.ok(run("projection", "state", "tot", "-d", d)).out,
                    self.ok(run("projection", "status", "tot", "-d", d)).obj()["checkpoint"],
                    self.ok(run("dlq", "list", "tot", "-d", d)).out)

        before = kept()
        self.assertEqual((json.loads(before[0]), before[1], len(before[2].splitlines())), ({"orders": 1, "total": 5}, 2, 1))
        # refused with the script's error, locally (it used to delete the projection first) and over --url
        self.ok(run("projection", "create", "tot", script, "--url", self.srv.url))
        for r in self.both("projection", "create", "tot", bad):
            self.fails(r, 4, "script does not compile")
        self.assertEqual(kept(), before)
        self.assertEqual(self.ok(run("projection", "status", "tot", "--url", self.srv.url)).obj()["name"], "tot")

    def test_limit_zero_is_refused_everywhere(self):
        self.ok(run("append", "l-1", ev("A"), "-d", self.local))
        for args in (["read", "l-1"], ["read", "$all"], ["streams"], ["dlq", "list", "x"], ["group", "list"],
                     ["projection", "partitions", "x"]):
            for target in (["-d", self.local], ["--url", self.srv.url]):
                self.fails(run(*args, "--limit", "0", *target), 1, "--limit 0")

    def test_read_and_tail_filter_by_tag_and_causation(self):
        cause = str(uuid.uuid4())
        events = [ev("A", {"i": 0}, tags=["vip"]), ev("A", {"i": 1}, causation_id=cause),
                  ev("A", {"i": 2}, tags=["x", "vip"], causation_id=cause), ev("A", {"i": 3}, tags=["a,b"])]
        for r in self.both("append", "t-1", *events):
            self.ok(r)

        def ids(r):
            return [e["data"]["i"] for e in self.ok(r).lines()]

        cases = ((["--tag", "vip"], [0, 2]), (["--causation", cause], [1, 2]),
                 (["--tag", "x,nope", "--causation", cause], [2]), (["--tag", "zzz"], []))
        for flags, want in cases:
            lo, rem = self.both("read", "$all", *flags)
            self.assertEqual(ids(lo), want, flags)
            self.assertEqual(ids(rem), want, flags)
        runs = []
        for flags, want in cases:
            runs.append((["tail", "-d", self.local] + flags, len(want)))
            runs.append((["tail", "--url", self.srv.url, "--from", "1"] + flags, len(want)))
        got = follow(*runs)
        for (args, _), r, want in zip(runs, got, [w for _, w in cases for _ in (0, 1)]):
            self.assertEqual(ids(r), want, args)
        self.fails(run("read", "t-1", "--tag", "vip", "-d", self.local), 1, "--tag filters only '$all'")
        self.fails(run("read", "$all", "--causation", "nope", "-d", self.local), 1, "not a UUID")
        self.fails(run("read", "$all", "--tag", "a,,b", "-d", self.local), 1, "empty tag")


class HelpTest(Base):
    COMMANDS = ["append", "read", "tail", "streams", "info", "check", "repair", "serve", "sub", "dlq",
                "projection", "group"]

    def test_every_command_is_listed_and_documents_options_and_exit_status(self):
        top = self.ok(run("--help")).out
        for c in self.COMMANDS:
            self.assertRegex(top, r"(?m)^  %s\s" % c)
            h = self.ok(run(c, "--help")).out
            self.assertIn("Usage: evstore " + c, h, c)
            self.assertIn("Options:", h, c)
            self.assertIn("-h, --help", h, c)
            self.assertIn("Exit status:", h, c)
            self.assertEqual(h, self.ok(run("help", c)).out)
        # the consumer commands list every action they take
        for c, acts in (("sub", ["list", "show", "create", "pause", "resume", "reset", "delete"]),
                        ("dlq", ["list", "show", "retry", "discard", "purge"]),
                        ("projection", ["create", "run", "status", "state", "partitions", "rebuild", "delete"]),
                        ("group", ["create", "show", "list", "consumers", "delete"])):
            h = self.ok(run(c, "--help")).out
            line = re.search(r"(?m)^  %s\s+(.*)$" % c, top).group(1)
            for a in acts:
                self.assertRegex(h, r"(?m)^  %s\b" % a, (c, a))
                self.assertIn(a, line, (c, a))

    def test_serve_config_names_every_setting_once(self):
        # the --config entry lists the file's keys: exactly the options that take a value, in snake_case
        h = self.ok(run("serve", "--help")).out
        m = re.search(r"(?ms)^  --config FILE .*?\((.*?)\); flags win\s+over the file\n  -h, --help", h)
        self.assertIsNotNone(m, h)
        keys = [k.strip() for k in m.group(1).split(",")]
        self.assertEqual(len(keys), len(set(keys)), keys)
        flags = set(re.findall(r"(?m)^  (?:-\w, )?--([a-z-]+)", h)) | set(re.findall(r", --([a-z-]+)", h))
        self.assertEqual(set(keys), {f.replace("-", "_") for f in flags}
                         - {"config", "help", "auth", "insecure", "print_routes"})

    def test_serve_store_that_does_not_open_exits_5(self):
        # serve --help: 5 when the store could not be opened; 4 is --listen/TLS, 2 is no status of serve
        for d, needle in (("/etc/passwd", "is not a directory"), ("/proc/sys", "/proc/sys")):
            self.fails(run("serve", "-d", d, "--listen", "127.0.0.1:0"), 5, "opening " + d, needle)
        self.fails(run("serve", "-d", "/nonexistent-evs", "--master-key-file", "/nonexistent-evs/key",
                       "--listen", "127.0.0.1:0"), 5, "master key file")

    def test_serve_config_that_does_not_exist(self):
        tmp = tempfile.mkdtemp(prefix="evs-cfg-")
        try:
            r = self.fails(run("serve", "-d", tmp, "--config", os.path.join(tmp, "missing.json")), 1,
                           "missing.json: the file does not exist")
            self.assertNotIn("line", r.err)
            self.fails(run("serve", "-d", tmp, "--config", tmp), 1, "is a directory")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
