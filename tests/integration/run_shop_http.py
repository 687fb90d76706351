#!/usr/bin/env python3
"""run_shop_http.py -- test example_shop_http: the block of
examples/shop/README.md under "## The order saga over HTTP" runs as shown
(its port 2113 and its /tmp directory made private): a server with the shop's
app directory, and examples/shop/http_driver.py placing six orders, four with
a failure injected, each customer told over WebSocket.  The driver exits
non-zero when an order ends in the wrong state or a customer is told the
wrong thing; this test also checks what it printed, and that the server
stopped cleanly."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("EVSTORE_BIN") or sys.exit("run_shop_http.py: set EVSTORE_BIN to the evstore binary")
HEADING = "## The order saga over HTTP"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    with open(os.path.join(ROOT, "examples", "shop", "README.md")) as f:
        text = f.read()
    m = re.search(r"```sh\n(.*?)```", text[text.index(HEADING):], re.S)
    assert m, "no sh block after " + HEADING
    tmp = tempfile.mkdtemp(prefix="evs-shop-http-")
    port = free_port()
    script = m.group(1).replace("build/evstore", BIN).replace("localhost:2113", "localhost:%d" % port)
    script = script.replace("--app-dir examples/shop &", "--app-dir examples/shop --listen 127.0.0.1:%d &" % port)
    script = script.replace("/tmp/shop-saga-http", os.path.join(tmp, "shop-saga-http"))
    assert "--listen 127.0.0.1:%d" % port in script and tmp in script, script
    p = subprocess.Popen(["bash", "-e", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # a server left behind by a failed block
        except ProcessLookupError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    out, err = out.decode(), err.decode()
    sys.stdout.write(out)
    sys.stderr.write(err)
    problems = []
    if p.returncode != 0:
        problems.append("the block exited %d" % p.returncode)
    if "every order ended as it should" not in out:
        problems.append("the driver did not report every order ending as it should")
    oks = re.findall(r"^ok +(o\d) ", out, re.M)
    if oks != ["o1", "o2", "o3", "o4", "o5", "o6"]:
        problems.append("orders checked ok: %s" % oks)
    for told in ("[ada] order completed", "[cy] order being cancelled: step reserve failed: not enough stock",
                 "[dee] order being cancelled: step authorize failed: card declined",
                 "[eve] order being cancelled: step ship failed: no answer", "[fay] cancellation stuck",
                 "[ada] payment authorized", "[ada] shipped", "[fay] order cancelled"):
        if told not in out:
            problems.append("no notification %r" % told)
    if "stopped cleanly" not in err:
        problems.append("the server did not stop cleanly")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print("example_shop_http: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
