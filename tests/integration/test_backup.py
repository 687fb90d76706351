#!/usr/bin/env python3
"""
test_backup.py -- `evstore backup`, `restore` and `verify-backup` against a
running `evstore serve` that takes appends from several clients while the
backup runs, and every sh block of docs/operations.md run as shown.

What is checked: the backup's head covers every append acknowledged before
the backup started; the restored store passes `evstore check` and holds
exactly the acknowledged events up to that head (same ids, data, streams)
and nothing after it; an incremental backup updates it; a restore to a
position drops whole appends and the consumers whose checkpoint lay beyond
it (named), keeps the others; verify-backup names the file and offset of a
flipped byte and a missing file (exit 5); bad input is refused with a
message and exit status, changing nothing.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def fs_keeps_holes(d):
    """Whether files under d keep holes the way a backup writes them (sized
    first, data at the front); st_blocks is the filesystem's to report."""
    p = os.path.join(d, "holeprobe")
    with open(p, "wb") as f:
        f.truncate(8 << 20)
        f.write(b"\1" * 4096)
        f.flush()
        os.fsync(f.fileno())
        blocks = os.fstat(f.fileno()).st_blocks
    os.unlink(p)
    return blocks * 512 < (1 << 20)


def find_binary():
    b = os.environ.get("EVSTORE_BIN")
    if b:
        return os.path.abspath(b)
    for d in (os.environ.get("EVS_BUILD_DIR"), os.path.join(ROOT, "build")):
        if d and os.path.exists(os.path.join(d, "evstore")):
            return os.path.abspath(os.path.join(d, "evstore"))
    sys.exit("test_backup.py: set EVSTORE_BIN to the evstore binary")


BIN = find_binary()
SLOW = 4 if os.environ.get("EVS_SANITIZED") else 1
TIMEOUT = 60 * SLOW


def run(*args, cwd=None, env=None, stdin=None):
    """env: variables added to the environment; stdin: text fed to the command."""
    p = subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
                       cwd=cwd, env=dict(os.environ, **env) if env else None,
                       input=stdin.encode() if stdin is not None else None)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def run_json(*args):
    code, out, err = run(*args)
    if code != 0:
        raise AssertionError("evstore %s: exit %d: %s" % (" ".join(args), code, err))
    return json.loads(out.strip().splitlines()[-1])


def slurp(p, mode="rb"):
    with open(p, mode) as f:
        return f.read()


def listing(d):
    out = []
    for base, dirs, files in os.walk(d):
        for f in files:
            p = os.path.join(base, f)
            out.append((os.path.relpath(p, d), os.path.getsize(p), slurp(p)))
    return sorted(out)


class Server:
    def __init__(self, d):
        self.dir = d

    def start(self):
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN, "serve", "-d", self.dir, "--listen", "127.0.0.1:0", "--durability",
                                      "batch"], stdout=subprocess.PIPE, stderr=self.errf)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.wait(TIMEOUT)
            self.errf.seek(0)
            raise AssertionError("server did not start: %r %s" % (line, self.errf.read().decode()))
        self.port = int(m.group(1))
        self.url = "http://127.0.0.1:%d" % self.port
        return self

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.errf.close()
        return code


class Writers:
    """Clients appending 1..3-event appends; every acknowledged append recorded with its events."""

    def __init__(self, port, n=4):
        self.port = port
        self.acked = []          # (first, last, [(event_id, data)], stream)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self.loop, args=(i,)) for i in range(n)]

    def loop(self, w):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        i = 0
        while not self.stop.is_set():
            n = 1 + i % 3
            evs = [{"event_type": "Written", "data": {"w": w, "i": i, "k": k, "pad": "x" * (50 + (i * 7) % 300)}}
                   for k in range(n)]
            stream = "w%d-%d" % (w, i % 5)
            try:
                c.request("POST", "/streams/" + stream, body=json.dumps(evs),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                body = json.loads(r.read().decode())
            except Exception as e:  # the test fails on it below
                self.errors.append(repr(e))
                return
            if r.status != 201:
                self.errors.append("%d %s" % (r.status, body))
                return
            with self.lock:
                self.acked.append((body["first_global_position"], body["last_global_position"],
                                   list(zip(body["event_ids"], [e["data"] for e in evs])), stream))
            i += 1
        c.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_for(self, n):
        deadline = time.time() + TIMEOUT
        while self.count() < n and time.time() < deadline and not self.errors:
            time.sleep(0.01)

    def max_acked(self):
        with self.lock:
            return max((a[1] for a in self.acked), default=0)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(TIMEOUT)


class BackupUnderLoad(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-it-backup-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def read_all(self, d):
        code, out, err = run("read", "-d", d, "$all")
        self.assertEqual(code, 0, err)
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def test_backup_while_serving(self):
        bk = os.path.join(self.tmp, "bk")
        srv = Server(self.data).start()
        try:
            # two consumers: one at the start, one far ahead (its checkpoint will lie past a cut)
            run_json("sub", "create", "early", "--url", srv.url, "--from", "start")
            w = Writers(srv.port).start()
            w.wait_for(300)
            acked_before = w.max_acked()
            run_json("sub", "create", "late", "--url", srv.url, "--from", str(acked_before))
            b1 = run_json("backup", "-d", self.data, bk)
            self.assertGreaterEqual(b1["head"], acked_before)
            self.assertFalse(b1["incremental"])
            # the segment's unwritten part is not written, so it is a hole where the filesystem keeps holes
            self.assertLess(b1["bytes_written"], b1["apparent_bytes"])
            if fs_keeps_holes(self.tmp):
                self.assertLessEqual(b1["real_bytes"], b1["bytes_written"] + b1["files"] * 4096)
            w.wait_for(w.count() + 200)
            acked_before2 = w.max_acked()
            b2 = run_json("backup", "--incremental", "-d", self.data, bk)
            self.assertTrue(b2["incremental"])
            self.assertEqual(b2["previous_head"], b1["head"])
            self.assertGreaterEqual(b2["head"], acked_before2)
            w.wait_for(w.count() + 100)
            w.finish()
            self.assertEqual(w.errors, [])
        finally:
            self.assertEqual(srv.stop(), 0)
        head = b2["head"]
        self.assertGreater(w.max_acked(), head)  # appends went on past the backup point
        manifest = json.loads(slurp(os.path.join(bk, "backup.json"), "r"))
        self.assertEqual(manifest["head"], head)
        self.assertEqual(len(manifest["store_id"]), 16)
        self.assertIn("consumers/data.mdb", [f["path"] for f in manifest["files"]])

        v = run_json("verify-backup", bk)
        self.assertEqual((v["ok"], v["events"], v["head"]), (True, head, head))

        # restore: check passes; exactly the acknowledged events up to the head
        r = os.path.join(self.tmp, "restored")
        rr = run_json("restore", bk, r)
        self.assertEqual((rr["head"], rr["dropped_events"]), (head, 0))
        chk = run_json("check", "-d", r)
        self.assertEqual((chk["ok"], chk["events"], chk["consumers"]), (True, head, 2))
        events = self.read_all(r)
        self.assertEqual([e["global_position"] for e in events], list(range(1, head + 1)))
        by_pos = {e["global_position"]: e for e in events}
        seen = 0
        for first, last, evs, stream in w.acked:
            for k, (eid, data) in enumerate(evs):
                pos = first + k
                if pos <= head:
                    self.assertEqual(by_pos[pos]["event_id"], eid)
                    self.assertEqual(by_pos[pos]["data"], data)
                    self.assertEqual(by_pos[pos]["stream"], stream)
                    seen += 1
        self.assertEqual(seen, head)  # every position up to the head is an acknowledged event

        # restore to a position in the middle of a 3-event append: dropped whole; "late" goes, "early" stays
        mid = next(a for a in sorted(w.acked) if a[1] - a[0] == 2 and a[1] < acked_before)
        cut = os.path.join(self.tmp, "cut")
        rc = run_json("restore", bk, cut, "--to-position", str(mid[0] + 1))
        self.assertEqual(rc["head"], mid[0] - 1)
        self.assertEqual(rc["consumers_removed"], 1)
        self.assertIn('consumer "late" removed', rc["notes"])
        chk = run_json("check", "-d", cut)
        self.assertEqual((chk["ok"], chk["events"], chk["consumers"]), (True, mid[0] - 1, 1))
        self.assertEqual(run_json("sub", "show", "early", "-d", cut)["name"], "early")
        self.assertEqual([e["event_id"] for e in self.read_all(cut)],
                         [by_pos[p]["event_id"] for p in range(1, mid[0])])

        # verify names a flipped byte's file and offset; restore refuses the damaged backup
        seg = os.path.join(bk, "log", "00000001.seg")
        with open(seg, "r+b") as f:
            f.seek(5000)
            b = f.read(1)
            f.seek(5000)
            f.write(bytes([b[0] ^ 0x10]))
        code, out, err = run("verify-backup", bk)
        self.assertEqual(code, 5, err)
        self.assertRegex(err, r"segment 00000001\.seg offset \d+: ")
        self.assertFalse(json.loads(out)["ok"])
        code, out, err = run("restore", bk, os.path.join(self.tmp, "r-damaged"))
        self.assertEqual(code, 5, err)
        self.assertIn("is damaged", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "r-damaged")))
        with open(seg, "r+b") as f:
            f.seek(5000)
            f.write(b)
        self.assertEqual(run("verify-backup", bk)[0], 0)
        # a missing file
        os.rename(os.path.join(bk, "consumers", "data.mdb"), os.path.join(self.tmp, "c.mdb"))
        code, out, err = run("verify-backup", bk)
        self.assertEqual(code, 5)
        self.assertIn("consumers/data.mdb: missing", err)
        os.rename(os.path.join(self.tmp, "c.mdb"), os.path.join(bk, "consumers", "data.mdb"))

        # bad input: refused, named, nothing changed
        other = os.path.join(self.tmp, "other")
        os.makedirs(other)
        with open(os.path.join(other, "keep.txt"), "w") as f:
            f.write("mine")
        before = listing(other)
        code, out, err = run("backup", "-d", self.data, other)
        self.assertEqual(code, 4)
        self.assertIn("is not empty and holds no backup", err)
        self.assertEqual(listing(other), before)
        code, out, err = run("restore", bk, other)
        self.assertEqual(code, 4)
        self.assertIn("is not empty", err)
        self.assertEqual(listing(other), before)
        bk_before = listing(bk)
        code, out, err = run("restore", bk, r)  # r holds the restored store
        self.assertEqual(code, 4)
        code, out, err = run("restore", bk, os.path.join(self.tmp, "x"), "--to-position", "-3")
        self.assertEqual(code, 1)
        code, out, err = run("restore", bk, os.path.join(self.tmp, "x"), "--to-time", "yesterday")
        self.assertEqual(code, 1)
        self.assertIn("--to-time yesterday", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x")))
        code, out, err = run("backup", "-d", os.path.join(self.tmp, "nostore"), os.path.join(self.tmp, "y"))
        self.assertEqual(code, 2)
        self.assertIn("no store at", err)
        self.assertEqual(listing(bk), bk_before)


class Interrupted(unittest.TestCase):
    """Restores and backups cut short: what they leave, and that running them again is all it takes."""

    CRASHED = 86  # the exit status of the EVS_RESTORE_CRASH_AT test hook (src/backup/restore.c)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-it-interrupted-")
        self.data = os.path.join(self.tmp, "data")
        self.bk = os.path.join(self.tmp, "bk")
        events = "".join(json.dumps({"event_type": "T", "data": {"i": i}}) + "\n" for i in range(50))
        for k in range(3):
            code, out, err = run("append", "-d", self.data, "s%d" % k, stdin=events)
            self.assertEqual(code, 0, err)
        self.head = run_json("backup", "-d", self.data, self.bk)["head"]
        self.assertEqual(self.head, 150)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def siblings(self, name):
        return sorted(n for n in os.listdir(self.tmp) if n.startswith("." + name + ".restoring-"))

    def assert_restored(self, r):
        chk = run_json("check", "-d", r)
        self.assertEqual((chk["ok"], chk["events"]), (True, self.head))

    def test_interrupted_restore_leaves_no_store_and_reruns(self):
        # a kill at each step before the rename: DIR stays absent (or empty), nothing there opens as a store
        for step in (1, 2, 3):
            for existing in (False, True):
                with self.subTest(step=step, existing=existing):
                    name = "r%d%s" % (step, "e" if existing else "")
                    r = os.path.join(self.tmp, name)
                    if existing:
                        os.makedirs(r)
                    code, out, err = run("restore", self.bk, r, env={"EVS_RESTORE_CRASH_AT": str(step)})
                    self.assertEqual(code, self.CRASHED, err)
                    self.assertEqual(os.listdir(r) if existing else os.path.exists(r), [] if existing else False)
                    self.assertNotEqual(run("info", "-d", r)[0], 0)
                    self.assertEqual(len(self.siblings(name)), 1)
                    # the rerun removes what the killed one left beside DIR, and only that
                    decoy = os.path.join(self.tmp, "." + name + ".restoring-1")
                    os.makedirs(decoy)
                    with open(os.path.join(decoy, "keep.txt"), "w") as f:
                        f.write("not a restore's")
                    rr = run_json("restore", self.bk, r)
                    self.assertEqual(rr["head"], self.head)
                    self.assert_restored(r)
                    self.assertEqual(self.siblings(name), [os.path.basename(decoy)])
                    self.assertEqual(slurp(os.path.join(decoy, "keep.txt"), "r"), "not a restore's")
                    self.assertNotIn(".evstore-restoring", os.listdir(r))
        # a kill after the rename: the store is complete, so a rerun is refused as for any store
        r = os.path.join(self.tmp, "r4")
        code, out, err = run("restore", self.bk, r, env={"EVS_RESTORE_CRASH_AT": "4"})
        self.assertEqual(code, self.CRASHED, err)
        self.assert_restored(r)
        self.assertEqual(self.siblings("r4"), [])
        code, out, err = run("restore", self.bk, r)
        self.assertEqual(code, 4, err)
        self.assertIn("is not empty", err)

    def test_rerun_after_interrupted_first_backup(self):
        # what a first backup killed half-way leaves: the marker and some of its files, no manifest
        bk2 = os.path.join(self.tmp, "bk2")
        os.makedirs(os.path.join(bk2, "log"))
        os.makedirs(os.path.join(bk2, "index"))
        for rel, data in (("backup.partial", b""), ("index/data.mdb", b"\1" * 5000),
                          ("log/00000001.seg", b"\2" * 7000), ("log/00000001.seg.tmp", b"\3" * 100)):
            with open(os.path.join(bk2, rel), "wb") as f:
                f.write(data)
        code, out, err = run("backup", "--incremental", "-d", self.data, bk2)
        self.assertEqual(code, 4, err)
        self.assertIn("holds no backup to update", err)
        b = run_json("backup", "-d", self.data, bk2)
        self.assertEqual((b["head"], b["incremental"]), (self.head, False))
        self.assertFalse(os.path.exists(os.path.join(bk2, "backup.partial")))
        v = run_json("verify-backup", bk2)
        self.assertEqual((v["ok"], v["events"]), (True, self.head))
        r = os.path.join(self.tmp, "r")
        run_json("restore", bk2, r)
        self.assert_restored(r)

    def test_retaken_first_backup_keeps_nothing_that_was_there(self):
        # a partial first backup holding files of another store: the retake starts from an empty DEST
        bk2 = os.path.join(self.tmp, "bk2")
        os.makedirs(os.path.join(bk2, "log"))
        os.makedirs(os.path.join(bk2, "consumers", "old"))
        for rel in ("backup.partial", "log/00000009.seg", "consumers/old/data.mdb", "stray.txt"):
            with open(os.path.join(bk2, rel), "wb") as f:
                f.write(b"\7" * 3000)
        code, out, err = run("backup", "-d", self.data, bk2)
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["head"], self.head)
        for rel in ("log/00000009.seg", "consumers/old", "stray.txt", "backup.partial"):
            self.assertFalse(os.path.exists(os.path.join(bk2, rel)), rel)
        v = run_json("verify-backup", bk2)
        self.assertEqual((v["ok"], v["events"]), (True, self.head))
        r = os.path.join(self.tmp, "r")
        run_json("restore", bk2, r)
        self.assert_restored(r)
        self.assertEqual(sorted(os.listdir(os.path.join(r, "log"))), ["00000001.seg"])
        # never with the store inside the partial DEST: refused, the store untouched
        outer = os.path.join(self.tmp, "outer")
        os.makedirs(outer)
        open(os.path.join(outer, "backup.partial"), "w").close()
        shutil.move(self.data, os.path.join(outer, "data"))
        code, out, err = run("backup", "-d", os.path.join(outer, "data"), outer)
        self.assertEqual(code, 4, err)
        self.assertIn("lies inside %s" % outer, err)
        self.assert_restored(os.path.join(outer, "data"))

    def test_restore_into_dot_dot_slash_and_symlink(self):
        # DIR as typed may name the empty directory indirectly: ".", "x/.", "x/", a symlink to it
        e1 = os.path.join(self.tmp, "e1")
        os.makedirs(e1)
        os.chmod(e1, 0o750)
        code, out, err = run("restore", self.bk, ".", cwd=e1)
        self.assertEqual(code, 0, err)
        self.assert_restored(e1)
        self.assertEqual(os.stat(e1).st_mode & 0o7777, 0o750)  # the mode is kept
        self.assertNotIn(".evstore-restoring", os.listdir(e1))
        for name, typed in (("e2", "e2/."), ("e3", "e3/")):
            os.makedirs(os.path.join(self.tmp, name))
            code, out, err = run("restore", self.bk, typed, cwd=self.tmp)
            self.assertEqual(code, 0, err)
            self.assert_restored(os.path.join(self.tmp, name))
            self.assertNotIn(".evstore-restoring", os.listdir(os.path.join(self.tmp, name)))
        e4, link = os.path.join(self.tmp, "e4"), os.path.join(self.tmp, "link")
        os.makedirs(e4)
        os.symlink("e4", link)
        code, out, err = run("restore", self.bk, link)
        self.assertEqual(code, 0, err)
        self.assertTrue(os.path.islink(link))  # the link stays, and leads to the restored store
        self.assertEqual(os.readlink(link), "e4")
        self.assert_restored(link)
        self.assert_restored(e4)
        for name in ("e1", "e2", "e3", "e4", "link"):
            self.assertEqual(self.siblings(name), [])
        # a link to nothing: refused, the link kept, nothing made
        dangling = os.path.join(self.tmp, "dangling")
        os.symlink("nowhere", dangling)
        code, out, err = run("restore", self.bk, dangling)
        self.assertEqual(code, 4, err)
        self.assertIn("symbolic link to a directory that does not exist", err)
        self.assertTrue(os.path.islink(dangling))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "nowhere")))
        self.assertEqual(self.siblings("dangling") + self.siblings("nowhere"), [])
        # a DIR that names no directory (restore --help: exit 4), nothing made
        for typed in ("missing/.", "missing/.."):
            code, out, err = run("restore", self.bk, typed, cwd=self.tmp)
            self.assertEqual(code, 4, err)
            self.assertIn("does not name a directory to restore into", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "missing")))

    def test_restore_parent_that_cannot_be_made_is_an_io_error(self):
        # exit 2 is "no backup at BACKUP"; a DIR whose parent cannot be made is 5, naming it
        for d, needle in (("/proc/nope/x", "cannot create directory /proc/nope"),
                          (os.path.join(self.bk, "backup.json", "x"), os.path.join(self.bk, "backup.json"))):
            code, out, err = run("restore", self.bk, d)
            self.assertEqual((code, out), (5, ""), err)
            self.assertIn(needle, err)
        self.assertEqual(run_json("verify-backup", self.bk)["ok"], True)

    def test_dest_that_cannot_be_made_is_not_no_store(self):
        # backup --help: 2 is "no store at DIR" only; a bad DEST is a usage error (1) or an I/O error (5)
        for dest, want, needle in (("", 1, "DEST: the backup directory name is empty"),
                                   ("/proc/nope/x", 5, "cannot create directory /proc/nope"),
                                   (os.path.join(self.tmp, "bk", "backup.json", "x"), 5, "backup.json")):
            code, out, err = run("backup", "-d", self.data, dest)
            self.assertEqual((code, out), (want, ""), err)
            self.assertIn(needle, err)
        code, out, err = run("backup", "-d", os.path.join(self.tmp, "none"), os.path.join(self.tmp, "bk2"))
        self.assertEqual(code, 2, err)
        self.assertIn("no store at", err)

    def test_backup_inside_the_store_refused_creating_nothing(self):
        def tree():
            return sorted((b, sorted(ds), sorted(fs)) for b, ds, fs in os.walk(self.data))
        before = tree()
        for dest in ("a/b", "a", "log/x/y", "./x/../a/b"):
            with self.subTest(dest=dest):
                code, out, err = run("backup", "-d", self.data, os.path.join(self.data, dest))
                self.assertEqual(code, 4, err)
                self.assertIn("lies inside the store", err)
                self.assertEqual(tree(), before)

    def test_keys_from_checked_before_anything_is_written(self):
        r = os.path.join(self.tmp, "r")
        notastore = os.path.join(self.tmp, "notastore")
        os.makedirs(notastore)
        for live in (os.path.join(self.tmp, "typo"), notastore):
            code, out, err = run("restore", self.bk, r, "--keys-from", live)
            self.assertEqual(code, 1, err)
            self.assertIn("--keys-from %s: no store there" % live, err)
            self.assertFalse(os.path.exists(r))
            self.assertEqual(self.siblings("r"), [])
        # a store that never encrypted anything has no key store: no keys to copy, not an error
        self.assertFalse(os.path.exists(os.path.join(self.data, "subject-keys")))
        rr = run_json("restore", self.bk, r, "--keys-from", self.data)
        self.assertEqual((rr["head"], rr["key_files"]), (self.head, 0))
        self.assert_restored(r)


class OperationsDoc(unittest.TestCase):
    """Every sh block of docs/operations.md, in order, in one bash -e script."""

    def test_blocks_run(self):
        text = slurp(os.path.join(ROOT, "docs", "operations.md"), "r")
        blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
        self.assertGreaterEqual(len(blocks), 6)
        tmp = tempfile.mkdtemp(prefix="evs-it-ops-")
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        os.symlink(BIN, os.path.join(bindir, "evstore"))
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        try:
            p = subprocess.run(["bash", "-e", "-c", "\n".join(blocks)], cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT * 2)
            out, err = p.stdout.decode(), p.stderr.decode()
            self.assertEqual(p.returncode, 0, err)
            # what the page says the commands print
            self.assertIn("first: segment 00000001.seg offset 64: checksum mismatch", err)
            self.assertEqual(out.count("exit 5"), 1)
            self.assertEqual(out.count("exit 4"), 2)
            self.assertIn('"incremental":true', out)
            self.assertIn('"backup_head":4,"head":2,"dropped_events":2', out)
            self.assertFalse(os.path.exists(os.path.join(work, "notes", "backup.json")))
            self.assertEqual(slurp(os.path.join(work, "notes", "todo.txt"), "r"), "keep\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=1).result
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
