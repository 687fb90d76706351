"""
cdp.py -- drive Debian's headless `chromium` over the DevTools protocol from
the Python standard library, for the console's browser tests
(test_console_browser.py).

Chromium is started with --remote-debugging-port=0 and its own profile
directory; the port it picked is read from DevToolsActivePort in that
directory, the page's WebSocket address from /json/list.  The WebSocket
client here is the least RFC 6455 needs: a masked text frame out, frames
in (fragmented or not, any length), no extensions.  Protocol events
(exceptions, console messages, network requests) are kept in lists the test
reads.
"""
import base64
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class WebSocket:
    def __init__(self, url, timeout):
        assert url.startswith("ws://"), url
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed during the handshake")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("DevTools refused the WebSocket: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
        self.s.sendall(hdr + mask + masked)

    def recv(self):
        """The next whole text message (control frames answered or skipped)."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            if op in (9, 10):
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Browser:
    """One headless chromium with one page, spoken to over CDP."""

    def __init__(self, timeout=60, width=1280, height=900):
        exe = find_chromium()
        if not exe:
            raise RuntimeError("chromium is not installed (make deps-test installs it)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="evs-chromium-")
        args = [exe, "--headless=new", "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                "--disable-dev-shm-usage", "--window-size=%d,%d" % (width, height), "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run its sandbox as root (CI runs as root)
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("chromium did not start: %s" % self.output())
            time.sleep(0.05)
        self.port = int(open(port_file).read().split("\n")[0])
        page = None
        while page is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            c.request("GET", "/json/list")
            targets = json.loads(c.getresponse().read())
            c.close()
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                if time.time() > deadline:
                    raise RuntimeError("chromium has no page: %r" % targets)
                time.sleep(0.05)
        self.ws = WebSocket(page["webSocketDebuggerUrl"], timeout)
        self.next_id = 0
        self.exceptions = []     # Runtime.exceptionThrown details
        self.console = []        # (type, text) of console messages
        self.requests = []       # Network.requestWillBeSent requests
        self.on_timeout = None   # called before wait() gives up (a test saves a screenshot)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Network.enable")

    def output(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-3000:]

    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.exceptions.append((d.get("exception") or {}).get("description") or d.get("text"))
        elif m == "Runtime.consoleAPICalled":
            self.console.append((p["type"], " ".join(str(a.get("value", a.get("description"))) for a in p["args"])))
        elif m == "Network.requestWillBeSent":
            self.requests.append(p["request"])

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self._event(msg)

    def eval(self, expr):
        """The value of a JavaScript expression (promises awaited); a JS exception fails."""
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("JS failed: %s\n%s" % (expr[:300], (d.get("exception") or {}).get("description") or d))
        return r["result"].get("value")

    def wait(self, expr, what=None, timeout=None):
        """Poll until the expression is truthy; returns its value."""
        deadline = time.time() + (timeout or self.timeout)
        last = None
        while time.time() < deadline:
            try:
                last = self.eval(expr)
            except RuntimeError as e:
                last = e
            if last and not isinstance(last, RuntimeError):
                return last
            time.sleep(0.1)
        if self.on_timeout:
            self.on_timeout()
        raise AssertionError("timed out waiting for %s (last: %r)" % (what or expr, last))

    def goto(self, url):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href === %s" % json.dumps(url), "page " + url)

    def click(self, selector):
        """Click the first element matching the selector (it must exist)."""
        self.wait("!!document.querySelector(%s)" % json.dumps(selector), selector)
        self.eval("document.querySelector(%s).click()" % json.dumps(selector))

    def text(self, selector):
        return self.eval("(document.querySelector(%s) || {}).textContent || ''" % json.dumps(selector))

    def screenshot(self, path, full=True):
        params = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", **params)["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def viewport(self, width, height, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2 if mobile else 1, mobile=mobile)

    def close(self):
        self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
