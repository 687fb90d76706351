#!/usr/bin/env python3
"""
test_readme.py -- every snippet of README.md runs as shown, in order, on one
store, so the README cannot rot.

How: the README's fenced ```sh and ```c blocks are taken in order.  The test
plays the reader who left `make run` running: it starts `evstore serve -d
./data` (on a free port; "localhost:2113" and "127.0.0.1:2113" in the
snippets are pointed at it) in a scratch directory where `build` and
`examples` lead to the real ones, then runs each command of each sh block,
continuation lines joined, variables (NAME=value lines) kept from one
command to the next.  A block whose introduction says to stop the server
runs after the server was stopped (SIGINT, exit 0 required).  A block that
starts a server of its own (`evstore serve ... --listen 127.0.0.1:PORT &`)
runs as one bash -e script, its port pointed at a free one.

Each command must exit 0; output that is JSON must hold no "error"; a
command whose comment shows a JSON result (`# {"orders":2,...}`) must
print exactly that (eventually: a projection catches up in milliseconds);
a command marked "until Ctrl-C" is stopped with SIGINT after a moment and
must have printed something.  The C block is compiled against the library
installed into a scratch prefix with pkg-config, as the README says, and
run twice on the same ./data (the second run meets the conflict it
mentions).  Sanitizer builds skip the C part (their library needs the
sanitizer runtime in every program).

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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(ROOT, "README.md")


def find_binary():
    b = os.environ.get("EVSTORE_BIN")
    if b:
        return os.path.abspath(b)
    for d in (os.environ.get("EVS_BUILD_DIR"), os.path.join(ROOT, "build")):
        if d and os.path.exists(os.path.join(d, "evstore")):
            return os.path.abspath(os.path.join(d, "evstore"))
    sys.exit("test_readme.py: set EVSTORE_BIN to the evstore binary")


BIN = find_binary()
BUILD = os.path.abspath(os.environ.get("EVS_BUILD_DIR") or os.path.dirname(BIN))
SLOW = 4 if os.environ.get("EVS_SANITIZED") else 1
TIMEOUT = 60 * SLOW


def blocks(text):
    """(language, code, the prose before it) for every fenced block, in order."""
    out, prose = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append((m.group(1), "\n".join(lines[i + 1:j]), "\n".join(prose[-12:])))
            prose = []
            i = j + 1
            continue
        prose.append(lines[i])
        i += 1
    return out


def commands(code):
    """Logical commands of a shell block: continuations joined, blank and comment lines dropped."""
    out, cur = [], ""
    for line in code.split("\n"):
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def shown_result(cmd):
    """The JSON a trailing comment says the command prints, or None."""
    m = re.search(r"#\s*(\{.*?\})(?:\s|$)", cmd)
    if not m:
        return None
    try:
        return json.loads(m.group(1))
    except ValueError:
        return None


def free_addr():
    """127.0.0.1:PORT of a port nobody listens on now."""
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % so.getsockname()[1]


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


class ReadmeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-readme-")
        os.symlink(BUILD, os.path.join(self.tmp, "build"))
        os.symlink(os.path.join(ROOT, "examples"), os.path.join(self.tmp, "examples"))
        self.env = dict(os.environ)
        self.env.pop("EVSTORE_DIR", None)
        self.env.pop("EVSTORE_URL", None)
        self.srv = None
        self.errf = None

    def tearDown(self):
        if self.srv and self.srv.poll() is None:
            self.srv.send_signal(signal.SIGTERM)
            self.srv.wait(TIMEOUT)
        for f in (self.errf,):
            if f:
                f.close()
        if self.srv:
            self.srv.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------- the server

    def start_server(self):
        self.errf = tempfile.TemporaryFile()
        self.srv = subprocess.Popen([BIN, "serve", "-d", "./data", "--listen", "127.0.0.1:0"], cwd=self.tmp,
                                    stdout=subprocess.PIPE, stderr=self.errf, env=self.env)
        line = self.srv.stdout.readline().decode()
        m = re.search(r"http://(127\.0\.0\.1:\d+)", line)
        self.assertTrue(m, "the server did not start: %r" % line)
        self.addr = m.group(1)

    def stop_server(self):
        self.srv.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal does
        code = self.srv.wait(TIMEOUT)
        self.errf.seek(0)
        err = self.errf.read().decode("utf-8", "replace")
        self.assertEqual(code, 0, "the server did not stop cleanly: %s" % err)
        self.assertNotIn("http:", err)  # nothing from libmicrohttpd about clients that left

    # ------------------------------------------------------------ commands

    def point(self, cmd):
        return cmd.replace("localhost:2113", self.addr).replace("127.0.0.1:2113", self.addr)

    def run_live(self, cmd):
        """Let it print (a sanitizer build may take seconds to start), then Ctrl-C."""
        outf = tempfile.TemporaryFile()
        p = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=self.tmp, env=self.env, stdout=outf,
                             stderr=subprocess.PIPE)
        deadline = time.time() + 30 * SLOW
        while time.time() < deadline and os.fstat(outf.fileno()).st_size == 0 and p.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=TIMEOUT)
        outf.seek(0)
        out = outf.read()
        outf.close()
        # tail exits 0 on SIGINT; curl is ended by it
        self.assertIn(p.returncode, (0, -signal.SIGINT, 130), "%s\nexit %s: %s" % (cmd, p.returncode, err.decode()))
        self.assertTrue(out.strip(), "%s printed nothing" % cmd)
        return out.decode()

    def run_one(self, cmd):
        want = shown_result(cmd)
        deadline = time.time() + 5 * SLOW
        while True:
            p = subprocess.run(["bash", "-c", cmd], cwd=self.tmp, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            out, err = p.stdout.decode(), p.stderr.decode()
            problem = None
            if p.returncode != 0:
                problem = "exit %d: %s" % (p.returncode, err)
            else:
                for o in json_lines(out):
                    if isinstance(o, dict) and "error" in o:
                        problem = "answered an error: %s" % o["error"]
                        break
                if not problem and want is not None:
                    got = json_lines(out)
                    if got != [want]:
                        problem = "printed %r, the README shows %r" % (out.strip(), want)
            # a projection answers once it caught up (milliseconds): the only thing worth waiting for
            if problem and ("state" in cmd) and time.time() < deadline:
                time.sleep(0.1)
                continue
            self.assertIsNone(problem, "README command failed: %s\n%s" % (cmd, problem))
            return out

    def run_script(self, code):
        """A block that starts a server of its own ("serve ... &") is one script: its
        commands share the shell ($!, variables).  Its port is pointed at a free one;
        every command must succeed (bash -e) and no JSON it prints may hold "error"
        except the rejection the README announces."""
        m = re.search(r"--listen 127\.0\.0\.1:(\d+)", code)
        self.assertIsNotNone(m, "a block that starts a server must say which port it listens on")
        port = m.group(1)
        code = code.replace("localhost:" + port, "127.0.0.1:" + port).replace("127.0.0.1:" + port, free_addr())
        p = subprocess.Popen(["bash", "-ec", code], cwd=self.tmp, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = p.communicate(timeout=TIMEOUT * 2)
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # a server left behind by a failed line
            except ProcessLookupError:
                pass
        out, err = out.decode(), err.decode()
        self.assertEqual(p.returncode, 0, "README block failed (exit %d):\n%s\n%s" % (p.returncode, out, err))
        answers = json_lines(out)
        self.assertTrue(answers, "the block printed nothing")
        for o in answers:
            if isinstance(o, dict) and "error" in o and o.get("status") != "rejected":
                self.fail("README block answered an error: %r" % o)
        return len(commands(code))

    def run_block(self, code):
        if re.search(r"evstore serve .*&\s*$", code, re.M):
            return self.run_script(code)
        ran = 0
        for cmd in commands(code):
            cmd = self.point(cmd)
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$", cmd)
            if m:  # a variable for the commands after it
                self.env[m.group(1)] = m.group(2)
                continue
            if "until Ctrl-C" in cmd:
                self.run_live(cmd)
            else:
                self.run_one(cmd)
            ran += 1
        return ran

    # ------------------------------------------------------------- C block

    def run_c(self, code):
        prefix = os.path.join(self.tmp, "prefix")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
        src = os.path.join(self.tmp, "app.c")
        with open(src, "w") as f:
            f.write(code + "\n")
        env = dict(self.env, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"),
                   LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
        # exactly the README's line: cc app.c $(pkg-config --cflags --libs evstore)
        p = subprocess.run(["bash", "-c", "cc app.c -o app $(pkg-config --cflags --libs evstore)"], cwd=self.tmp,
                           env=env, capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, "the README's C does not build: %s" % p.stderr)
        first = subprocess.run(["./app"], cwd=self.tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertRegex(first.stdout, r"^\d+ \{\"total\":\"25.00\"\}\n$")
        again = subprocess.run(["./app"], cwd=self.tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("Concurrency conflict: expected version 0, actual version 1", again.stderr)
        self.assertEqual(again.stdout, first.stdout)
        # the README's comment on a store held by another process
        self.start_server()
        held = subprocess.run(["./app"], cwd=self.tmp, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(held.returncode, 1)
        self.assertIn("is locked by another process", held.stderr)
        self.stop_server()

    # ----------------------------------------------------------------- test

    def test_every_snippet_runs_in_order_on_one_store(self):
        with open(README) as f:
            found = blocks(f.read())
        sh = [b for b in found if b[0] == "sh"]
        c = [b for b in found if b[0] == "c"]
        self.assertGreaterEqual(len(sh), 4, "README has fewer shell snippets than expected")
        self.assertEqual(len(c), 1)
        self.assertEqual(set(b[0] for b in found) - {"sh", "c"}, set(), "a snippet of a kind this test does not run")
        self.start_server()
        ran = 0
        for lang, code, prose in found:
            if re.search(r"(?i)stop the server", prose) and self.srv.poll() is None:
                self.stop_server()
            if lang == "sh":
                ran += self.run_block(code)
                continue
            # the shell sections are done: what they left behind, read through the files
            state = json_lines(subprocess.run([BIN, "projection", "state", "-d", "./data", "order-totals"],
                                              cwd=self.tmp, capture_output=True, text=True).stdout)
            self.assertEqual(state, [{"orders": 3, "total": 75.0}])
            if os.environ.get("EVS_SANITIZED"):
                print("note: sanitizer build: the README's C snippet is not compiled here")
            else:
                if self.srv.poll() is None:
                    self.stop_server()
                self.run_c(code)
        self.assertGreater(ran, 25)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
