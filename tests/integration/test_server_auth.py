#!/usr/bin/env python3
"""
test_server_auth.py -- API keys and permissions of `evstore serve`, against
the real server.

Checked: every route `serve --print-routes` lists has a need, and each role
gets exactly what that need says (a permission matrix of every route and
method x no key, a bad key, admin, writer, reader and a key restricted to
`order-*`: 401 / 403 / anything else); 401 carries WWW-Authenticate: Bearer
and 403 names the permission and the stream; filtered reads never leak
(/all, /streams, SSE /subscribe and WebSocket subscriptions of a restricted
key return only its events while next positions and checkpoints still move
past the others; a restricted WebSocket client and an admin one with the
same filter get different events); event-type grants on reads and appends;
the WebSocket checked at the upgrade and per operation; revoking (over
/keys and with the CLI beside the running server) takes effect on the next
request; failures counted in /metrics by reason while no key ever reaches
stderr or the access log; a store with keys turns auth on by itself; a
non-loopback address without auth is refused unless --insecure; the CLI
sends EVSTORE_API_KEY.

Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, TIMEOUT, SSEReader, Server, WSClient, ev  # noqa: E402

RESTRICTED_GRANTS = ["read+subscribe:order-*", "append:order-*"]


def run_cli(*args, env=None):
    e = dict(os.environ)
    e.pop("EVSTORE_API_KEY", None)
    e.pop("EVSTORE_URL", None)
    e.pop("EVSTORE_DIR", None)
    e.update(env or {})
    return subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
                          env=e)


def make_key(datadir, role, *grants, name=None):
    args = ["key", "create", "--role", role, "-d", datadir]
    for g in grants:
        args += ["--grant", g]
    if name:
        args += ["--name", name]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    rec = json.loads(p.stdout)
    return rec["key"], rec["id"]


def bearer(key):
    return {"Authorization": "Bearer " + key} if key else {}


def raw_status(port, method, path, key, body=None, ctype=None):
    """Status of one request, read from the status line only (live streams never end)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        hdr = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, path)
        if key:
            hdr += "Authorization: Bearer %s\r\n" % key
        data = b""
        if body is not None:
            data = body.encode()
            hdr += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype or "application/json", len(data))
        s.sendall(hdr.encode() + b"\r\n" + data)
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return int(buf.split(b" ")[1])
    finally:
        s.close()


class AuthWS(WSClient):
    """WSClient with an Authorization header on the upgrade."""

    def __init__(self, port, key, path="/ws"):
        super().__init__(port, path, extra_headers="Authorization: Bearer %s\r\n" % key if key else "")

    def close(self):
        self.s.close()


# ------------------------------------------------------------------ routes

PARAMS = {"{stream}": "order-1", "{pos}": "1", "{name}": "p1", "{id}": "1", "{partition}": "x",
          "{consumer}": "c", "{command}": "Cmd", "{query}": "q", "{type}": "T", "{aggregate}": "a1",
          "{saga}": "s", "{instance}": "i", "{file}": "app.js", "{event_type}": "E", "{version}": "1",
          "{stream_type}": "order", "{subject}": "customer:1"}


def print_routes():
    p = run_cli("serve", "--print-routes")
    assert p.returncode == 0, p.stderr
    rows = []
    for line in p.stdout.decode().splitlines():
        parts = line.split(" ")
        assert len(parts) == 3, line
        rows.append(tuple(parts))
    return rows


def concrete(path, stream=None):
    out = path
    for k, v in PARAMS.items():
        out = out.replace(k, v)
    if stream:
        out = out.replace("order-1", stream)
    if out.startswith("/keys/"):
        out = "/keys/000000000000"  # never revoke a real key in the matrix
    return out


def allowed(role, need, stream="order-1"):
    """Whether a role's key may call a route with this need (for the restricted key, on `stream`)."""
    if need == "open":
        return True
    perm, scope = need.split(":")
    if role == "admin":
        return True
    if role == "writer":
        return perm in ("read", "append", "subscribe")
    if role == "reader":
        return perm in ("read", "subscribe")
    if role == "restricted":  # read+subscribe and append on order-* only
        if perm == "admin" or scope == "all":
            return False
        if scope == "stream":
            return stream.startswith("order-")
        return perm in ("read", "subscribe")  # "any": the route shows only order-*
    raise AssertionError(role)


class AuthServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-auth-")
        cls.dir = os.path.join(cls.tmp, "data")
        os.makedirs(cls.dir)
        cls.keys = {}
        cls.ids = {}
        for role in ("admin", "writer", "reader"):
            cls.keys[role], cls.ids[role] = make_key(cls.dir, role, name=role)
        cls.keys["restricted"], cls.ids["restricted"] = make_key(cls.dir, "none", *RESTRICTED_GRANTS)
        cls.access_log = os.path.join(cls.tmp, "access.log")
        cls.srv = Server(cls.dir, "--auth", "--access-log", cls.access_log, "--heartbeat-ms", "200").start()

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        err = cls.srv.err
        # no key, whole or its secret part, ever reaches stderr or the access log
        with open(cls.access_log) as f:
            log = f.read()
        for k in cls.keys.values():
            secret = k.split("_", 2)[2]
            assert secret not in err and secret not in log, "a key leaked into the server's output"
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, err

    def req(self, method, path, key=None, body=None, headers=None):
        h = bearer(key)
        h.update(headers or {})
        return self.srv.request(method, path, body=body, headers=h)

    def admin(self, method, path, body=None):
        return self.req(method, path, self.keys["admin"], body)

    # ---------------------------------------------------------------- matrix

    def test_every_route_has_a_need(self):
        rows = print_routes()
        self.assertGreater(len(rows), 100)
        needs = {n for _, _, n in rows}
        self.assertTrue(needs <= {"open", "read:stream", "read:any", "read:all", "append:stream", "append:all",
                                  "subscribe:any", "subscribe:all", "admin:all"}, needs)
        by = {(m, p): n for m, p, n in rows}
        self.assertEqual(by[("GET", "/health")], "open")
        self.assertEqual(by[("GET", "/ui/{file}")], "open")
        self.assertEqual(by[("GET", "/metrics")], "read:any")
        self.assertEqual(by[("POST", "/keys")], "admin:all")
        self.assertEqual(by[("DELETE", "/keys/{id}")], "admin:all")
        self.assertEqual(by[("POST", "/streams/{stream}")], "append:stream")
        self.assertEqual(by[("GET", "/subscribe")], "subscribe:any")
        # every area of the issue is covered by at least one row
        for area in ("/sagas", "/schemas", "/schema-policies", "/ui", "/commands", "/queries", "/aggregates",
                     "/groups", "/subscriptions", "/projections", "/keys", "/metrics", "/health"):
            self.assertTrue(any(p == area or p.startswith(area + "/") for _, p, _ in rows), area)

    def test_permission_matrix(self):
        rows = print_routes()
        port = self.srv.port
        bad = []
        checked = 0
        for method, path, need in rows:
            body = "{}" if method in ("POST", "PUT") else None
            targets = [("order-1", concrete(path))]
            if "{stream}" in path:
                targets.append(("user-1", concrete(path, "user-1")))
            for stream, url in targets:
                # no key, and a key that is not one
                for key, reason in ((None, "none"), ("evs_000000000000_" + "A" * 43, "unknown")):
                    st = raw_status(port, method, url, key, body)
                    want = 401 if need != "open" else None
                    if (want and st != want) or (not want and st in (401, 403)):
                        bad.append((method, url, reason, st))
                    checked += 1
                for role in ("admin", "writer", "reader", "restricted"):
                    st = raw_status(port, method, url, self.keys[role], body)
                    ok = allowed(role, need, stream)
                    if (ok and st in (401, 403)) or (not ok and st != 403):
                        bad.append((method, url, role, need, st))
                    checked += 1
        self.assertEqual(bad, [], "%d of %d requests answered against their need" % (len(bad), checked))
        self.assertGreater(checked, 600)

    def test_401_and_403_bodies(self):
        st, h, b = self.req("GET", "/all")
        self.assertEqual(st, 401)
        self.assertEqual(h.get("www-authenticate", "").split(" ")[0], "Bearer")
        self.assertEqual(b["detail"]["code"], "EUNAUTHORIZED")
        self.assertEqual(b["detail"]["reason"], "missing")
        self.assertIn("Authorization: Bearer", b["error"])
        st, _, b = self.req("GET", "/all", headers={"Authorization": "Basic Zm9vOmJhcg=="})
        self.assertEqual((st, b["detail"]["reason"]), (401, "malformed"))
        st, _, b = self.req("GET", "/all", "evs_nothing")
        self.assertEqual((st, b["detail"]["reason"]), (401, "malformed"))
        st, _, b = self.req("POST", "/streams/user-9", self.keys["restricted"], [ev("X")])
        self.assertEqual(st, 403)
        self.assertEqual(b["detail"]["permission"], "append")
        self.assertEqual(b["detail"]["stream"], "user-9")
        self.assertIn('"user-9"', b["error"])
        self.assertIn("append", b["error"])
        st, _, b = self.req("GET", "/keys", self.keys["writer"])
        self.assertEqual((st, b["detail"]["permission"], b["detail"]["stream"]), (403, "admin", "$all"))
        # open routes need nothing, and an unknown route stays 404 (not 401)
        self.assertEqual(self.req("GET", "/health")[0], 200)
        self.assertEqual(self.req("GET", "/ui/")[0], 200)
        self.assertEqual(self.req("GET", "/nope")[0], 404)

    # --------------------------------------------------------------- leakage

    def seed(self, tag):
        """order-T-n and user-T-n events interleaved; their global positions."""
        pos = {"order": [], "user": []}
        for i in range(6):
            kind = "order" if i % 2 == 0 else "user"
            st, _, b = self.admin("POST", "/streams/%s-%s-%d" % (kind, tag, i), [ev("Made", {"i": i})])
            self.assertEqual(st, 201, b)
            pos[kind].append(b["first_global_position"])
        return pos

    def test_all_for_a_restricted_key_never_leaks_and_next_advances(self):
        pos = self.seed("all")
        start = min(pos["order"] + pos["user"])
        key = self.keys["restricted"]
        seen, frm, pages = [], start, 0
        while True:
            st, _, b = self.req("GET", "/all?from=%d&limit=1" % frm, key)
            self.assertEqual(st, 200, b)
            seen += b["events"]
            self.assertGreater(b["next"], frm)  # moves even when the page is empty
            frm = b["next"]
            pages += 1
            if b["end"]:
                break
            self.assertLess(pages, 100)
        self.assertTrue(all(e["stream"].startswith("order-") for e in seen), seen)
        self.assertEqual([e["global_position"] for e in seen if "-all-" in e["stream"]], pos["order"])
        # a page that starts on a user event skips it and reports the next order event
        st, _, b = self.req("GET", "/all?from=%d&limit=1" % pos["user"][0], key)
        self.assertEqual([e["global_position"] for e in b["events"]], [pos["order"][1]])
        self.assertEqual(b["next"], pos["order"][1] + 1)
        # past the last order event: nothing, and next is past the user event after it
        st, _, b = self.req("GET", "/all?from=%d" % pos["user"][-1], key)
        self.assertEqual([e for e in b["events"] if "-all-" in e["stream"]], [])
        self.assertGreater(b["next"], pos["user"][-1])
        # filters still apply on top of the key's own
        st, _, b = self.req("GET", "/all?from=%d&stream_prefix=user-" % start, key)
        self.assertEqual(b["events"], [])
        # admin sees both kinds
        st, _, b = self.admin("GET", "/all?from=%d" % start)
        self.assertEqual({e["stream"].split("-")[0] for e in b["events"]}, {"order", "user"})

    def test_event_type_grants(self):
        d = self.srv.dir
        key, _ = make_key(d, "none", "read:typed-*:Placed", "append:typed-*:Placed")
        self.assertEqual(self.admin("POST", "/streams/typed-1", [ev("Placed"), ev("Paid"), ev("Placed")])[0], 201)
        st, _, b = self.req("GET", "/streams/typed-1", key)
        self.assertEqual(st, 200)
        self.assertEqual([e["event_type"] for e in b["events"]], ["Placed", "Placed"])
        self.assertEqual([e["stream_position"] for e in b["events"]], [1, 3])
        self.assertEqual(self.req("GET", "/streams/typed-1/1", key)[0], 200)
        st, _, b = self.req("GET", "/streams/typed-1/2", key)
        self.assertEqual((st, b["detail"]["event_type"]), (403, "Paid"))
        st, _, b = self.req("POST", "/streams/typed-1", key, [ev("Placed"), ev("Paid")])
        self.assertEqual((st, b["detail"]["event_type"]), (403, "Paid"))
        self.assertEqual(self.admin("GET", "/streams/typed-1")[2]["version"], 3)  # nothing of it stored
        self.assertEqual(self.req("POST", "/streams/typed-1", key, [ev("Placed")])[0], 201)

    def test_sse_subscribe_for_a_restricted_key(self):
        key = self.keys["restricted"]
        head = self.admin("GET", "/info")[2]["head"]
        sub = SSEReader(self.srv.port, "/subscribe?from=%d" % (head + 1), bearer(key))
        self.assertEqual(sub.status, 200)
        pos = self.seed("sse")
        got = sub.events(3)
        self.assertEqual([g for g, _ in got], pos["order"])
        self.assertTrue(all(e["stream"].startswith("order-") for _, e in got))
        # more user events, then one order event: it is the next thing the client sees
        for i in range(3):
            self.admin("POST", "/streams/user-sse-x%d" % i, [ev("Made")])
        st, _, b = self.admin("POST", "/streams/order-sse-last", [ev("Made")])
        (g, e), = sub.events(1)
        self.assertEqual((g, e["stream"]), (b["first_global_position"], "order-sse-last"))
        sub.close()
        # no key: 401 before any stream starts
        plain = SSEReader(self.srv.port, "/subscribe?from=1")
        self.assertEqual(plain.status, 401)
        plain.close()

    def test_ws_checked_at_upgrade_and_per_operation(self):
        self.assertEqual(AuthWS(self.srv.port, None).status, 401)
        self.assertEqual(AuthWS(self.srv.port, "evs_000000000000_" + "Q" * 42 + "A").status, 401)
        head = self.admin("GET", "/info")[2]["head"]
        r = AuthWS(self.srv.port, self.keys["restricted"])
        a = AuthWS(self.srv.port, self.keys["admin"])
        self.assertEqual((r.status, a.status), (101, 101))
        for c in (r, a):  # the same filter: a restricted client must not share the admin's blocks
            c.send({"op": "subscribe", "from": head + 1})
            self.assertEqual(c.recv()["op"], "subscribed")
        pos = self.seed("ws")
        got = r.events(3)
        self.assertEqual([e["global_position"] for e in got], pos["order"])
        self.assertEqual([e["global_position"] for e in a.events(6)], sorted(pos["order"] + pos["user"]))
        # operations the key lacks: consume (subscribe on $all) and command (append on $all)
        r.send({"op": "unsubscribe"})
        m = r.recv()
        while m.get("op") == "event":
            m = r.recv()
        self.assertEqual(m["op"], "unsubscribed")
        self.assertGreater(m["next"], pos["user"][-1])  # its cursor moved past the skipped events
        r.send({"op": "consume", "group": "g1"})
        m = r.recv()
        self.assertEqual((m["op"], m["detail"]["permission"]), ("error", "subscribe"), m)
        r.send({"op": "command", "ref": 1, "command_type": "X", "aggregate_id": "a", "data": {}})
        m = r.recv()
        self.assertEqual((m["op"], m["detail"]["permission"]), ("error", "append"), m)
        # a reader may subscribe but not consume a group either way
        rd = AuthWS(self.srv.port, self.keys["reader"])
        rd.send({"op": "subscribe", "from": "now"})
        self.assertEqual(rd.recv()["op"], "subscribed")
        for c in (r, a, rd):
            c.close()

    # ------------------------------------------------------- revoke, metrics

    def test_revoke_over_http_and_cli_take_effect_next_request(self):
        d = self.srv.dir
        k1, id1 = make_key(d, "reader")
        k2, id2 = make_key(d, "reader")  # made by the CLI while the server runs: usable at once
        self.assertEqual(self.req("GET", "/all?limit=1", k1)[0], 200)
        self.assertEqual(self.req("GET", "/all?limit=1", k2)[0], 200)
        c = self.srv.conn()  # the same connection before and after: no caching per connection
        self.assertEqual(self.srv.request("GET", "/info", headers=bearer(k1), conn=c)[0], 200)
        st, _, b = self.admin("DELETE", "/keys/" + id1)
        self.assertEqual(st, 200, b)
        self.assertTrue(b["revoked_at"])
        st, _, b = self.srv.request("GET", "/info", headers=bearer(k1), conn=c)
        self.assertEqual((st, b["detail"]["reason"]), (401, "revoked"))
        c.close()
        p = run_cli("key", "revoke", id2, "-d", d)
        self.assertEqual(p.returncode, 0, p.stderr)
        st, _, b = self.req("GET", "/all?limit=1", k2)
        self.assertEqual((st, b["detail"]["reason"]), (401, "revoked"))
        self.assertEqual(self.admin("DELETE", "/keys/abcdefabcdef")[0], 404)
        # list never shows a secret or hash
        st, _, b = self.admin("GET", "/keys")
        self.assertEqual(st, 200)
        text = json.dumps(b)
        self.assertNotIn("hash", text)
        self.assertNotIn(k1.split("_", 2)[2], text)
        listed = {k["id"]: k for k in b["keys"]}
        self.assertTrue(listed[id2]["revoked_at"])
        self.assertIsNone(listed[self.ids["admin"]]["revoked_at"])

    def test_create_over_http_returns_the_key_once(self):
        st, _, b = self.admin("POST", "/keys", {"role": "none", "grants": ["read:made-*"], "name": "api"})
        self.assertEqual(st, 201, b)
        key = b["key"]
        self.assertTrue(key.startswith("evs_" + b["id"] + "_"))
        self.assertEqual(self.req("GET", "/streams/made-1", key)[0], 404)  # allowed, just empty
        self.assertEqual(self.req("GET", "/streams/other", key)[0], 403)
        st, _, b = self.admin("POST", "/keys", {"role": "root"})
        self.assertEqual(st, 422)
        self.assertIn("unknown role", b["error"])
        st, _, b = self.admin("POST", "/keys", {"grants": ["read:a*b"]})
        self.assertEqual(st, 422)

    def test_failures_counted_by_reason(self):
        def counts():
            text = self.admin("GET", "/metrics")[2]
            return {m.group(1): int(m.group(2))
                    for m in re.finditer(r'evstore_auth_failures_total\{reason="(\w+)"\} (\d+)', text)}
        before = counts()
        self.req("GET", "/all")
        self.req("GET", "/all", "evs_x")
        self.req("GET", "/all", "evs_000000000000_" + "A" * 43)
        self.req("GET", "/keys", self.keys["reader"])
        after = counts()
        for reason in ("missing", "malformed", "unknown", "forbidden"):
            self.assertEqual(after[reason], before[reason] + 1, reason)
        self.assertIn("revoked", after)
        self.assertIn("evstore_auth_enabled 1", self.admin("GET", "/metrics")[2])

    def test_cli_sends_evstore_api_key(self):
        url = "http://127.0.0.1:%d" % self.srv.port
        self.admin("POST", "/streams/order-cli", [ev("Made")])
        p = run_cli("read", "order-cli", "--url", url)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"API key", p.stderr)
        p = run_cli("read", "order-cli", "--url", url, env={"EVSTORE_API_KEY": self.keys["restricted"]})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout.splitlines()[0])["stream"], "order-cli")
        p = run_cli("key", "list", "--url", url, env={"EVSTORE_API_KEY": self.keys["admin"]})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(self.ids["restricted"], p.stdout.decode())
        p = run_cli("key", "list", "--url", url, env={"EVSTORE_API_KEY": self.keys["reader"]})
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"lacks the admin permission", p.stderr)
        p = run_cli("key", "create", "--role", "reader", "--url", url, env={"EVSTORE_API_KEY": self.keys["admin"]})
        self.assertEqual(p.returncode, 0, p.stderr)
        made = json.loads(p.stdout)
        self.assertEqual(self.req("GET", "/info", made["key"])[0], 200)


class AuthStartupTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-auth-start-")
        self.dir = os.path.join(self.tmp, "data")
        os.makedirs(self.dir)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_non_loopback_refused_without_auth(self):
        p = subprocess.run([BIN, "serve", "-d", self.dir, "--listen", "0.0.0.0:0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 4, p.stderr)
        self.assertIn(b"refusing to listen on 0.0.0.0:0 without authentication", p.stderr)
        self.assertIn(b"--insecure", p.stderr)
        for extra in (["--insecure"], ["--auth"]):
            proc = subprocess.Popen([BIN, "serve", "-d", self.dir, "--listen", "0.0.0.0:0"] + extra,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = proc.stdout.readline().decode()
            self.assertIn("listening on http://0.0.0.0:", line)
            self.assertIn("auth %s" % ("on" if extra == ["--auth"] else "off"), line)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(TIMEOUT), 0)
            proc.stdout.close()
            proc.stderr.close()

    def test_switches_take_no_value(self):
        # "--insecure=no" used to turn insecure mode on (and "--auth=no" auth): a usage error, no server
        for flag in ("--insecure=no", "--auth=no", "--auth=", "--print-routes=yes"):
            p = subprocess.run([BIN, "serve", "-d", self.dir, "--listen", "0.0.0.0:0", flag], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 1, (flag, p.stderr))
            self.assertIn(b"%s takes no value" % flag.split("=")[0].encode(), p.stderr)
            self.assertEqual(p.stdout, b"", flag)

    def test_loopback_is_open_by_default_and_keys_turn_auth_on(self):
        s = Server(self.dir).start()
        try:
            self.assertEqual(s.post("/streams/a-1", [ev()])[0], 201)
            self.assertIn("evstore_auth_enabled 0", s.get("/metrics")[2])
        finally:
            self.assertEqual(s.stop(), 0, s.err)
        key, kid = make_key(self.dir, "reader")
        s = Server(self.dir).start()
        try:
            self.assertEqual(s.get("/all")[0], 401)
            self.assertEqual(s.get("/all", headers=bearer(key))[0], 200)
            self.assertEqual(s.post("/streams/a-1", [ev()], headers=bearer(key))[0], 403)
        finally:
            self.assertEqual(s.stop(), 0, s.err)
        # every key revoked: a loopback server is open again
        self.assertEqual(run_cli("key", "revoke", kid, "-d", self.dir).returncode, 0)
        s = Server(self.dir).start()
        try:
            self.assertEqual(s.get("/all")[0], 200)
        finally:
            self.assertEqual(s.stop(), 0, s.err)

    def test_bad_key_files_stop_the_server_with_a_clear_error(self):
        make_key(self.dir, "admin")
        with open(os.path.join(self.dir, "keys.json"), "w") as f:
            f.write('{"format": 1, "keys": [{"id": "nothex"}]}')
        p = subprocess.run([BIN, "serve", "-d", self.dir, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assertIn(b"keys.json: keys[0].id must be 12 lower-case hex digits", p.stderr)
        p = run_cli("key", "list", "-d", self.dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"keys[0].id", p.stderr)

    def test_cli_on_a_store_without_keys(self):
        p = run_cli("key", "list", "-d", self.dir)
        self.assertEqual((p.returncode, p.stdout), (0, b""), p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "keys.secret")))  # listing creates nothing
        p = run_cli("key", "revoke", "0123456789ab", "-d", self.dir)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"keys.secret does not exist", p.stderr)

    def test_cli_usage(self):
        for args, needle in ((["key"], b"create, list or revoke"), (["key", "make"], b"unknown action"),
                             (["key", "revoke", "-d", self.dir], b"revoke takes the key's ID"),
                             (["key", "create", "-d", self.dir], b"create needs --role"),
                             (["key", "create", "--role", "god", "-d", self.dir], b"unknown role")):
            p = run_cli(*args)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(needle, p.stderr, args)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
