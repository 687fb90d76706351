#!/usr/bin/env python3
"""
test_cli_dcb.py -- `evstore append --condition` and `evstore read --tag
--tag-match`, on a store directory and through `--url` against a real
`evstore serve` (helpers shared with test_server.py).

Checked: a condition that holds stores (exit 0), one that does not is exit
status 3 with the first matching position in the message and nothing
stored, a malformed condition is a usage error (exit 1) naming the
member, as is a second --condition; reads by tag with any and all.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import Server, find_binary  # noqa: E402

SEAT = '{"event_type":"SeatTaken","data":{},"tags":["seat:1"]}'
SEAT_X = '{"event_type":"SeatTaken","data":{},"tags":["seat:1","x"]}'


class CliDcbTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bin = find_binary()
        cls.tmp = tempfile.mkdtemp(prefix="evs-cli-dcb-")
        cls.srv = Server(os.path.join(cls.tmp, "served")).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def run_cli(self, *args):
        p = subprocess.run([self.bin] + list(args), capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def check_target(self, target):
        rc, out, err = self.run_cli("append", *target, "seat-1", SEAT)
        self.assertEqual(rc, 0, err)
        first = json.loads(out)["first_global_position"]
        cond = json.dumps({"after": first - 1, "query": [{"tags": ["seat:1"]}]})
        rc, out, err = self.run_cli("append", *target, "seat-2", "--condition", cond, SEAT)
        self.assertEqual(rc, 3, (out, err))
        self.assertIn("global position %d" % first, err)
        cond = json.dumps({"after": first, "query": [{"types": ["SeatTaken"], "tags": ["seat:1"]}]})
        rc, out, err = self.run_cli("append", *target, "seat-2", "--expected", "no-stream", "--condition", cond,
                                    SEAT_X)
        self.assertEqual(rc, 0, err)
        second = json.loads(out)["first_global_position"]
        self.assertEqual(second, first + 1)  # the refused append stored nothing
        rc, out, err = self.run_cli("append", *target, "seat-3", "--condition", '{"query":[{"tgs":[]}]}', SEAT)
        self.assertEqual(rc, 1, (out, err))
        self.assertIn("tgs", err)
        # a second --condition is refused before anything is stored (it used to replace the first, after the
        # append a leak made a sanitizer build exit 1, and a retry stored the event twice)
        holds = json.dumps({"after": second, "query": [{"tags": ["seat:1"]}]})
        rc, out, err = self.run_cli("append", *target, "seat-4", "--condition", holds, "--condition", holds, SEAT)
        self.assertEqual((rc, out), (1, ""), err)
        self.assertIn("--condition given twice", err)
        self.assertEqual(self.run_cli("read", *target, "seat-4")[0], 2)
        rc, out, err = self.run_cli("read", *target, "$all", "--tag", "seat:1,x", "--tag-match", "all")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(line)["global_position"] for line in out.splitlines()], [second])
        rc, out, err = self.run_cli("read", *target, "$all", "--tag", "x,seat:1")
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(line)["global_position"] for line in out.splitlines()], [first, second])
        rc, out, err = self.run_cli("read", *target, "$all", "--tag", "x", "--tag-match", "some")
        self.assertEqual(rc, 1, (out, err))

    def test_dir(self):
        self.check_target(["-d", os.path.join(self.tmp, "local")])

    def test_url(self):
        self.check_target(["--url", self.srv.url if hasattr(self.srv, "url") else "http://127.0.0.1:%d" % self.srv.port])


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
