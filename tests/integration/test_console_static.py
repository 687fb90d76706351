#!/usr/bin/env python3
"""
test_console_static.py -- the web console's files as `evstore serve` serves
them (src/server/routes_ui.c), against the real binary.

Checked: /, /ui and /ui/ answer the console's page; every file of ui/ is
served byte for byte from the program (the server runs in an empty
directory, far from the sources) with its Content-Type; ETag and
Cache-Control, and a 304 without a body for If-None-Match; HEAD; 405 for
other methods; and every traversal attempt (raw "..", "%2e%2e", an encoded
slash, a NUL, an unknown file, a deeper path) is a JSON 404 that never
carries a file's bytes.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import os
import shutil
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import ROOT, TIMEOUT, Server  # noqa: E402

UI = os.path.join(ROOT, "ui")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def raw_get(port, path, method="GET"):
    """Send the request line exactly as given (no client normalises the path); (status, head, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % (method, path)).encode())
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, head.decode("latin-1").lower(), body


class ConsoleStaticTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-ui-")
        cls.cwd = os.getcwd()
        os.chdir(cls.tmp)  # nothing of ui/ is reachable from here: the files must come from the program
        cls.srv = Server(os.path.join(cls.tmp, "data")).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        os.chdir(cls.cwd)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def files(self):
        names = sorted(n for n in os.listdir(UI) if not n.startswith("."))
        self.assertIn("index.html", names)
        return names

    def test_index_at_root_and_ui(self):
        want = open(os.path.join(UI, "index.html"), "rb").read()
        for path in ("/", "/ui", "/ui/", "/ui/index.html", "/?from=bookmark"):
            st, head, body = raw_get(self.srv.port, path)
            self.assertEqual(st, 200, path)
            self.assertIn("content-type: text/html; charset=utf-8", head, path)
            self.assertEqual(body, want, path)
            self.assertIn("content-security-policy: default-src 'self'", head)
            self.assertIn("x-content-type-options: nosniff", head)

    def test_every_file_with_its_type_and_bytes(self):
        for name in self.files():
            want = open(os.path.join(UI, name), "rb").read()
            st, hdrs, _ = self.srv.get("/ui/" + name)
            self.assertEqual(st, 200, name)
            ext = os.path.splitext(name)[1]
            self.assertEqual(hdrs["content-type"], TYPES.get(ext, "application/octet-stream"), name)
            self.assertEqual(int(hdrs["content-length"]), len(want), name)
            st, _, body = raw_get(self.srv.port, "/ui/" + name)
            self.assertEqual(body, want, "%s differs from ui/%s: rebuild embeds it" % (name, name))

    def test_etag_revalidation(self):
        c = self.srv.conn()
        c.request("GET", "/ui/app.js")
        r = c.getresponse()
        r.read()
        etag = r.getheader("ETag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertEqual(r.getheader("Cache-Control"), "no-cache")
        for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
            c.request("GET", "/ui/app.js", headers={"If-None-Match": inm})
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (304, b""), inm)
            self.assertEqual(r.getheader("ETag"), etag)
        c.request("GET", "/ui/app.js", headers={"If-None-Match": '"0000000000000000"'})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), open(os.path.join(UI, "app.js"), "rb").read())
        # another file has another tag
        c.request("GET", "/ui/app.css", headers={"If-None-Match": etag})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertNotEqual(r.getheader("ETag"), etag)
        r.read()
        c.close()

    def test_head_and_other_methods(self):
        st, head, body = raw_get(self.srv.port, "/ui/app.css", "HEAD")
        self.assertEqual((st, body), (200, b""))
        self.assertIn("content-length: %d" % os.path.getsize(os.path.join(UI, "app.css")), head)
        for m, p in (("POST", "/"), ("DELETE", "/ui/app.js"), ("PUT", "/ui/")):
            st, hdrs, body = self.srv.request(m, p)
            self.assertEqual(st, 405, (m, p))
            self.assertEqual(hdrs["allow"], "GET, HEAD")
            self.assertIn("method not allowed", body["error"])

    def test_traversal_and_unknown_files_are_404(self):
        secret = open(os.path.join(ROOT, "CMakeLists.txt"), "rb").read()[:40]
        for path in ("/ui/../CMakeLists.txt", "/ui/%2e%2e", "/ui/%2e%2e/CMakeLists.txt",
                     "/ui/%2e%2e%2fCMakeLists.txt", "/ui/..%2f..%2fCMakeLists.txt", "/ui/.%2e/index.html",
                     "/ui/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/ui/index.html%00.js", "/ui/%00", "/ui/%zz",
                     "/ui/nope.js", "/ui/INDEX.HTML", "/ui/a/b", "/ui/./app.js", "/ui//app.js",
                     "/ui/%2fetc%2fpasswd", "/../ui/app.js", "/ui/app.js/", "/uix"):
            st, head, body = raw_get(self.srv.port, path)
            self.assertEqual(st, 404, path)
            self.assertIn("content-type: application/json", head, path)
            self.assertIn(b'"error":', body, path)
            self.assertNotIn(secret, body, path)
            self.assertNotIn(b"root:", body, path)

    def test_counted_under_ui(self):
        raw_get(self.srv.port, "/ui/app.css")
        raw_get(self.srv.port, "/ui/missing.css")
        text = self.srv.get("/metrics")[2]
        self.assertRegex(text, r'evstore_http_requests_total\{route="ui",status="200"\} [1-9]')
        self.assertRegex(text, r'evstore_http_requests_total\{route="ui",status="404"\} [1-9]')


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
