#!/usr/bin/env python3
"""
test_crypt.py -- crypto-shredding over HTTP and the CLI, against the real
`evstore serve` (helpers shared with test_server.py).

Checked: a stream with "$encrypt": "tag:customer:" stores no plaintext in
its log and reads back decrypted on GET /streams, /all and a live SSE
subscription; GET /admin/subjects/{s}/export returns exactly that
subject's events; POST /admin/subjects/{s}/forget makes them read
"data": null, "$redacted": true on every one of those paths (a new SSE
subscription from the start too) at unchanged positions, refuses appends
under the subject (422) and export (410), 404 for a subject without a key;
it survives a restart.  A backup taken before the forget holds no key
store; restored without keys its encrypted events fail with a message
naming --keys-from; restored with --keys-from the live store, the forgotten
subject stays redacted and the others read.  The CLI: export-subject,
forget-subject, a wrong master key (serve refuses to start, naming the
file), a key file that is not 64 hex digits, one readable by others, and
a read without the master key (exit 4, naming the option).

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import SSEReader, Server, ev  # noqa: E402

BIN = os.environ.get("EVSTORE_BIN", "evstore")
KEY1 = "7f" * 32
KEY2 = "01" * 32


def cli(*args, env=None):
    e = dict(os.environ)
    for k in ("EVSTORE_URL", "EVSTORE_DIR", "EVSTORE_MASTER_KEY", "EVSTORE_API_KEY"):
        e.pop(k, None)
    e.update(env or {})
    return subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, env=e)


def write_key(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def log_bytes(d):
    out = b""
    for p in sorted(glob.glob(os.path.join(d, "log", "*.seg"))):
        with open(p, "rb") as f:
            out += f.read()
    return out


class CryptTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-it-crypt-")
        self.dir = os.path.join(self.tmp, "data")
        self.key = write_key(os.path.join(self.tmp, "master.key"), KEY1 + "\n")
        self.srv = None

    def tearDown(self):
        if self.srv:
            self.srv.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        self.srv = Server(self.dir, "--master-key-file", self.key).start()
        return self.srv

    def stream(self, name):
        st, _, b = self.srv.get("/streams/%s" % name)
        self.assertEqual(st, 200, b)
        return [(e["global_position"], e["data"], e.get("$redacted", False)) for e in b["events"]]

    def test_http_forget_export_and_every_read_path(self):
        s = self.start()
        st, _, b = s.request("PUT", "/streams/shop/metadata", body=json.dumps({"$encrypt": "tag:customer:"}),
                             headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200, b)
        st, _, b = s.post("/streams/shop", [ev("Registered", {"name": "ALICE-SECRET"}, tags=["customer:42"]),
                                            ev("Registered", {"name": "BOB-SECRET"}, tags=["customer:7"]),
                                            ev("Ordered", {"item": "ALICE-BOOK"}, tags=["customer:42"])])
        self.assertEqual(st, 201, b)
        first = b["first_global_position"]
        st, _, b = s.post("/streams/shop", ev("Registered", {"name": "x"}))
        self.assertEqual(st, 422, b)
        self.assertIn("no such tag", b["error"])
        self.assertNotIn(b"SECRET", log_bytes(self.dir))
        self.assertEqual(self.stream("shop"), [(first, {"name": "ALICE-SECRET"}, False),
                                               (first + 1, {"name": "BOB-SECRET"}, False),
                                               (first + 2, {"item": "ALICE-BOOK"}, False)])
        live = SSEReader(s.port, "/subscribe?from=%d&stream_prefix=shop" % first)
        self.assertEqual(live.status, 200)
        self.assertEqual([e["data"] for _, e in live.events(3)][0], {"name": "ALICE-SECRET"})
        st, _, b = s.get("/admin/subjects/customer:42/export")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["count"], [e["data"] for e in b["events"]]),
                         (2, [{"name": "ALICE-SECRET"}, {"item": "ALICE-BOOK"}]))
        st, _, b = s.get("/admin/subjects/customer:1/export")
        self.assertEqual(st, 404, b)
        st, _, b = s.post("/admin/subjects/customer:1/forget", None)
        self.assertEqual(st, 404, b)

        st, _, b = s.post("/admin/subjects/customer:42/forget", None)
        self.assertEqual(st, 200, b)
        self.assertEqual((b["subject"], b["forgotten"]), ("customer:42", True))
        audit = b["audit_position"]
        want = [(first, None, True), (first + 1, {"name": "BOB-SECRET"}, False), (first + 2, None, True)]
        self.assertEqual(self.stream("shop"), want)
        got = [(e["global_position"], e["data"], e.get("$redacted", False)) for e in s.all_events()
               if e["stream"] == "shop"]
        self.assertEqual(got, want)
        st, _, b = s.get("/all?tag=customer:42")
        self.assertEqual([e.get("$redacted") for e in b["events"]], [True, True])
        st, _, b = s.get("/streams/shop/1")
        self.assertEqual((b["data"], b["$redacted"]), (None, True))
        audit_ev = [e for e in s.all_events() if e["global_position"] == audit][0]
        self.assertEqual((audit_ev["stream"], audit_ev["event_type"], audit_ev["data"]),
                         ("$subjects", "$subject-forgotten", {"subject": "customer:42"}))
        # a new live subscription from the start sees the redacted events
        live2 = SSEReader(s.port, "/subscribe?from=%d&stream_prefix=shop" % first)
        got = [(e["global_position"], e["data"], e.get("$redacted", False)) for _, e in live2.events(3)]
        self.assertEqual(got, want)
        live.close()
        live2.close()
        st, _, b = s.post("/streams/shop", ev("Ordered", {"item": "y"}, tags=["customer:42"]))
        self.assertEqual(st, 422, b)
        self.assertIn("forgotten", b["error"])
        st, _, b = s.get("/admin/subjects/customer:42/export")
        self.assertEqual(st, 410, b)
        # survives a restart
        self.assertEqual(s.stop(), 0, s.err)
        s = self.start()
        self.assertEqual(self.stream("shop"), want)

    def test_backup_before_forget_stays_shredded(self):
        s = self.start()
        s.request("PUT", "/streams/acct-1/metadata", body='{"$encrypt":"stream"}',
                  headers={"Content-Type": "application/json"})
        s.request("PUT", "/streams/acct-2/metadata", body='{"$encrypt":"stream"}',
                  headers={"Content-Type": "application/json"})
        s.post("/streams/acct-1", ev("Opened", {"owner": "ANNA"}))
        s.post("/streams/acct-2", ev("Opened", {"owner": "BORIS"}))
        bk = os.path.join(self.tmp, "bk")
        p = cli("backup", "-d", self.dir, bk)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(os.path.join(bk, "subject-keys")))
        st, _, b = s.post("/admin/subjects/acct-1/forget", None)
        self.assertEqual(st, 200, b)
        self.assertEqual(s.stop(), 0, s.err)
        self.srv = None
        # no keys: encrypted events cannot be read, and the message says how to bring keys back
        r1 = os.path.join(self.tmp, "r1")
        p = cli("restore", bk, r1)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("read", "-d", r1, "acct-2", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"--keys-from", p.stderr)
        # keys from the live store: the forget holds in the old backup too
        r2 = os.path.join(self.tmp, "r2")
        p = cli("restore", bk, r2, "--keys-from", self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["key_files"], 3)
        p = cli("read", "-d", r2, "acct-1", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 0, p.stderr)
        e = json.loads(p.stdout.splitlines()[0])
        self.assertEqual((e["data"], e["$redacted"]), (None, True))
        p = cli("read", "-d", r2, "acct-2", env={"EVSTORE_MASTER_KEY": KEY1})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout.splitlines()[0])["data"], {"owner": "BORIS"})
        p = cli("check", "-d", r2)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_cli_and_bad_keys(self):
        d = self.dir
        p = cli("stream", "meta", "set", "shop", '{"$encrypt":"tag:customer:"}', "-d", d)
        self.assertEqual(p.returncode, 2, p.stderr)  # no store yet
        p = cli("append", "-d", d, "boot", '{"event_type":"Boot","data":{}}')
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("stream", "meta", "set", "shop", '{"$encrypt":"tag:customer:"}', "-d", d)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("append", "-d", d, "shop", '{"event_type":"R","data":{"n":"N1"},"tags":["customer:5"]}')
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"master key", p.stderr)
        p = cli("append", "-d", d, "--master-key-file", self.key, "shop",
                '{"event_type":"R","data":{"n":"N1"},"tags":["customer:5"]}',
                '{"event_type":"R","data":{"n":"N2"},"tags":["customer:6"]}')
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("read", "-d", d, "shop")
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"--master-key-file", p.stderr)
        p = cli("export-subject", "-d", d, "customer:5", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual([x["data"] for x in lines], [{"n": "N1"}])
        p = cli("forget-subject", "-d", d, "customer:5", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(json.loads(p.stdout)["forgotten"])
        p = cli("forget-subject", "-d", d, "customer:99", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = cli("export-subject", "-d", d, "customer:5", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 3, p.stderr)
        p = cli("read", "-d", d, "shop", "--master-key-file", self.key)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.splitlines()]
        self.assertEqual([(x["data"], x.get("$redacted", False)) for x in lines],
                         [(None, True), ({"n": "N2"}, False)])
        # bad master keys: named, nothing changed
        before = sorted(os.listdir(os.path.join(d, "subject-keys")))
        wrong = write_key(os.path.join(self.tmp, "wrong.key"), KEY2)
        p = subprocess.run([BIN, "serve", "-d", d, "--listen", "127.0.0.1:0", "--master-key-file", wrong],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(wrong.encode(), p.stderr)
        short = write_key(os.path.join(self.tmp, "short.key"), "abc\n")
        p = cli("read", "-d", d, "shop", "--master-key-file", short)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(short.encode(), p.stderr)
        self.assertIn(b"64 hexadecimal digits", p.stderr)
        loose = write_key(os.path.join(self.tmp, "loose.key"), KEY1, 0o644)
        p = cli("read", "-d", d, "shop", "--master-key-file", loose)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"chmod 600", p.stderr)
        p = cli("read", "-d", d, "shop", env={"EVSTORE_MASTER_KEY": "zz"})
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"EVSTORE_MASTER_KEY", p.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(d, "subject-keys"))), before)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
