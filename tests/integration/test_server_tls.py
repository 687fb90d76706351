#!/usr/bin/env python3
"""
test_server_tls.py -- `evstore serve --tls-cert --tls-key`: HTTPS and WSS
with certificates the test makes (openssl req -x509).

Checked: curl appends and reads over HTTPS against the test's CA file (and
refuses without it); TLS 1.2 and 1.3 are accepted and TLS 1.1 refused (a
client that is shown to speak TLS 1.1 to `openssl s_server` fails against
evstore); a WebSocket subscription over TLS gets its events; SIGHUP swaps
the certificate for new connections (a new handshake sees the new serial)
while an SSE stream opened before keeps flowing, and a bad pair on SIGHUP
keeps the old certificate and says so; bad certificate options stop the
server with a message naming the file.

Standard library and the openssl and curl programs.  Prints "N passed, M
failed" as its last line.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

# TLS 1.1 is deprecated in Python's ssl too; the test asks for it on purpose
warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TLSv1_1.*")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, TIMEOUT, SSEReader, WSClient, ev  # noqa: E402



def make_cert(d, name, serial):
    cert, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-set_serial", str(serial)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSServer:
    def __init__(self, datadir, cert, key, *extra):
        self.proc = subprocess.Popen([BIN, "serve", "-d", datadir, "--listen", "127.0.0.1:0", "--tls-cert", cert,
                                      "--tls-key", key] + list(extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        m = re.search(r"https://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError("server did not start: %r %s" % (line, self.proc.stderr.read().decode()))
        self.port = int(m.group(1))
        self.url = "https://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(TIMEOUT)
        self.err = self.proc.stderr.read().decode("utf-8", "replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


def context(cafile, min_version=None, max_version=None, seclevel0=False):
    ctx = ssl.create_default_context(cafile=cafile)
    if seclevel0:  # let this client offer old protocol versions (OpenSSL 3 refuses them by default)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def tls_socket(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


class TLSSSE(SSEReader):
    def __init__(self, port, ctx, path):
        self.s = tls_socket(port, ctx)
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % path).encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.headers = head.decode()
        self.chunked = b"chunked" in head.lower()
        self.text = ""


class TLSWS(WSClient):
    def __init__(self, port, ctx, path="/ws"):
        super().__init__(port, path, sock=tls_socket(port, ctx))


def curl(*args):
    return subprocess.run(["curl", "-s", "-S"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT)


def peer_serial(port, cafile):
    s = tls_socket(port, context(cafile))
    try:
        return int(s.getpeercert()["serialNumber"], 16), s.version()
    finally:
        s.close()


class TLSTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-tls-")
        self.cert_a, self.key_a = make_cert(self.tmp, "a", 1001)
        self.cert_b, self.key_b = make_cert(self.tmp, "b", 2002)
        self.ca = os.path.join(self.tmp, "ca.pem")  # trusts both
        with open(self.ca, "w") as f:
            for c in (self.cert_a, self.cert_b):
                f.write(open(c).read())
        # the server reads these paths; the test changes what they hold
        self.cert, self.key = os.path.join(self.tmp, "server.crt"), os.path.join(self.tmp, "server.key")
        shutil.copy(self.cert_a, self.cert)
        shutil.copy(self.key_a, self.key)
        self.srv = TLSServer(os.path.join(self.tmp, "data"), self.cert, self.key, "--heartbeat-ms", "200")

    def tearDown(self):
        if self.srv.proc.poll() is None:
            self.assertEqual(self.srv.stop(), 0, self.srv.err)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_curl_over_https(self):
        u = self.srv.url
        p = curl("--cacert", self.ca, "-X", "POST", "-H", "Content-Type: application/json", u + "/streams/order-1",
                 "-d", json.dumps([ev("Placed", {"n": 1}), ev("Paid")]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["last_stream_position"], 2)
        p = curl("--cacert", self.ca, u + "/streams/order-1")
        self.assertEqual([e["event_type"] for e in json.loads(p.stdout)["events"]], ["Placed", "Paid"])
        p = curl("--cacert", self.ca, u + "/all?limit=1")
        self.assertEqual(json.loads(p.stdout)["next"], 2)
        # without the CA the certificate is not trusted; plain HTTP on the port gets no answer it can use
        self.assertNotEqual(curl(u + "/health").returncode, 0)
        p = curl("-m", "5", "http://127.0.0.1:%d/health" % self.srv.port)
        self.assertNotEqual(p.stdout, b'{"status":"ok"}\n')

    def test_tls_versions(self):
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            s = tls_socket(self.srv.port, context(self.ca, v, v))
            self.assertEqual(s.version(), {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v])
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(4096))
            s.close()
        old = context(self.ca, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, seclevel0=True)
        # control: this client does speak TLS 1.1, to a server that allows it
        port = free_port()
        ctl = subprocess.Popen(["openssl", "s_server", "-accept", str(port), "-cert", self.cert_a, "-key",
                                self.key_a, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-www", "-quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            version = None
            for _ in range(100):
                try:
                    s = tls_socket(port, old)
                    version = s.version()
                    s.close()
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)
            self.assertEqual(version, "TLSv1.1")
        finally:
            ctl.kill()
            ctl.wait()
        with self.assertRaises(ssl.SSLError):
            tls_socket(self.srv.port, old)
        # curl asked for TLS 1.1 at most fails too
        self.assertNotEqual(curl("--cacert", self.ca, "--tls-max", "1.1", self.srv.url + "/health").returncode, 0)

    def test_wss_subscription(self):
        ctx = context(self.ca)
        ws = TLSWS(self.srv.port, ctx)
        self.assertEqual(ws.status, 101)
        self.assertTrue(ws.accept_ok)
        ws.send({"op": "subscribe", "from": 1})
        self.assertEqual(ws.recv()["op"], "subscribed")
        p = curl("--cacert", self.ca, "-X", "POST", "-H", "Content-Type: application/json",
                 self.srv.url + "/streams/ws-1", "-d", json.dumps([ev("A", {"i": i}) for i in range(50)]))
        self.assertEqual(p.returncode, 0, p.stderr)
        got = ws.events(50)
        self.assertEqual([e["data"]["i"] for e in got], list(range(50)))
        ws.send({"op": "ping"})
        self.assertEqual(ws.recv()["op"], "pong")
        ws.s.close()

    def test_sighup_swaps_the_certificate_without_dropping_connections(self):
        port = self.srv.port
        self.assertEqual(peer_serial(port, self.ca)[0], 1001)
        sse = TLSSSE(port, context(self.ca), "/subscribe?from=1")
        self.assertEqual(sse.status, 200)
        keep = tls_socket(port, context(self.ca))  # an idle keep-alive connection from before
        post = lambda i: curl("--cacert", self.ca, "-X", "POST", "-H", "Content-Type: application/json",
                              self.srv.url + "/streams/hup-1", "-d", json.dumps(ev("A", {"i": i})))
        self.assertEqual(post(0).returncode, 0)
        self.assertEqual([e["data"]["i"] for _, e in sse.events(1)], [0])
        # the new pair replaces the files (rename: never half a file), then SIGHUP
        for src, dst in ((self.cert_b, self.cert), (self.key_b, self.key)):
            shutil.copy(src, dst + ".new")
            os.rename(dst + ".new", dst)
        self.srv.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + TIMEOUT
        while peer_serial(port, self.ca)[0] != 2002:
            self.assertLess(time.time(), deadline, "the new certificate was never served")
            time.sleep(0.05)
        # the stream opened before the swap keeps flowing, and the old connection still answers
        for i in (1, 2):
            self.assertEqual(post(i).returncode, 0)
        self.assertEqual([e["data"]["i"] for _, e in sse.events(2)], [1, 2])
        keep.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", keep.recv(4096))
        keep.close()
        # a bad pair on the next SIGHUP: the served certificate stays, the server says why
        with open(self.cert, "w") as f:
            f.write("not a certificate\n")
        self.srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(peer_serial(port, self.ca)[0], 2002)
        self.assertEqual(post(3).returncode, 0)
        self.assertEqual([e["data"]["i"] for _, e in sse.events(1)], [3])
        sse.close()
        self.assertEqual(self.srv.stop(), 0)
        self.assertIn("SIGHUP: TLS certificate reloaded", self.srv.err)
        self.assertIn("SIGHUP: keeping the old certificate: TLS certificate %s" % self.cert, self.srv.err)


class TLSOptionsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-tls-opt-")
        self.cert_a, self.key_a = make_cert(self.tmp, "a", 1)
        self.cert_b, self.key_b = make_cert(self.tmp, "b", 2)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_serve(self, *args):
        return subprocess.run([BIN, "serve", "-d", os.path.join(self.tmp, "d"), "--listen", "127.0.0.1:0"] +
                              list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)

    def test_bad_options(self):
        p = self.run_serve("--tls-cert", self.cert_a)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"--tls-cert and --tls-key go together", p.stderr)
        p = self.run_serve("--tls-cert", self.cert_a, "--tls-key", self.key_b)  # not its key
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(("TLS certificate %s with key %s" % (self.cert_a, self.key_b)).encode(), p.stderr)
        p = self.run_serve("--tls-cert", os.path.join(self.tmp, "none.crt"), "--tls-key", self.key_a)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"none.crt: cannot open it", p.stderr)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
