#!/usr/bin/env python3
"""
test_pg_servers.py -- two `evstore serve -d postgresql://...` processes on one
database (the private cluster of tests/pg_cluster.py, named by EVS_PG_STATE).

Checked: four writers, two on each server, append to the same streams with
expected versions read just before (so they collide): every answer is 201 or
a clean 409 naming the actual version (never a 500, never a unique
violation), and every acknowledged event is stored once; an SSE subscriber on
each server, started before the writers, sees every event of both servers
exactly once and in global order 1..N; the streams' positions are gapless;
the schema registry is one for both servers (a schema registered through one
validates appends through the other at once, versions registered through
both are numbered once each, a deprecation and a policy set on one are in
force on the other, and the CLI sees them); the application layer runs on
both (`--app-dir` with the shop's aggregates and queries): a command sent to
one server and re-sent with its command id to the other answers the first
result and appends nothing, a rejection too, and a query with the command's
position through either server waits for the projection wherever it runs;
sagas answer on both; an encrypted stream ("$encrypt" set through one server) is sealed in the
database whichever server appends, reads as plaintext on both, and once its
subject is forgotten through one server the other reads it redacted and
refuses appends under it; what the engine does not do (repair) fails naming
itself; the URL's password appears nowhere in what the servers print or
answer.

API keys (a second pair of servers, with --auth, on a database of their
own): a key created through server A's /keys works on B, and one created by
the CLI on the URL works on both; revoked through A (or by the CLI), it is
refused by B once the bound (EVS__KEYS_RECHECK_NS, 0.2 s) has passed, with
nothing telling B; a wrong key gets the same status, header and message on
B as on an embedded server; a store with keys turns auth on by itself; a
non-loopback address is refused without auth and served with it.

Standard library only.  Exit 77 (skipped) without a cluster.
"""
import json
import os
import re
import shutil
import subprocess
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server import BIN, TIMEOUT, SSEReader, Server, ev  # noqa: E402

PASSWORD = "hunter2-very-secret"
WRITES = 60  # appends per writer
SHOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "shop")
LUA = {"Content-Type": "text/x-lua"}
RECHECK = 0.2  # EVS__KEYS_RECHECK_NS (src/auth/keys.h): a server's keys are at most this stale


def cluster():
    try:
        with open(os.environ["EVS_PG_STATE"]) as f:
            return json.load(f)
    except (KeyError, OSError, ValueError):
        return None


class TwoServersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        st = cluster()
        cls.psql = os.path.join(st["bindir"], "psql")
        cls.db = "evs_it_%d" % os.getpid()
        cls.sql("CREATE DATABASE %s" % cls.db)
        # the cluster trusts local connections: the password is there to be masked, not checked
        cls.url = "postgresql://evs:%s@127.0.0.1:%d/%s" % (PASSWORD, st["port"], cls.db)
        # the shop's aggregates and queries (its sagas/ stays out: sagas do not run on PostgreSQL yet)
        cls.app = tempfile.mkdtemp(prefix="evs-pg-app-")
        for name in os.listdir(SHOP):
            if name.endswith(".lua") or name == "queries.json":
                shutil.copy(os.path.join(SHOP, name), cls.app)
        app = ("--app-dir", cls.app, "--query-timeout-ms", "60000")
        # one master key for both servers (encrypted streams); it stays out of the database
        cls.keyfile = os.path.join(tempfile.mkdtemp(prefix="evs-pg-key-"), "master.key")
        with open(cls.keyfile, "w") as f:
            f.write("5a" * 32 + "\n")
        os.chmod(cls.keyfile, 0o600)
        key = ("--master-key-file", cls.keyfile)
        cls.a = Server(cls.url, "--heartbeat-ms", "200", *app, *key).start()
        cls.b = Server(cls.url, "--heartbeat-ms", "200", *app, *key).start()

    @classmethod
    def sql(cls, q):
        st = cluster()
        subprocess.run([cls.psql, "-q", "-v", "ON_ERROR_STOP=1", "-d",
                        "postgresql://evs@127.0.0.1:%d/postgres" % st["port"], "-c", q],
                       check=True, stdout=subprocess.DEVNULL)

    @classmethod
    def sql_value(cls, q):
        st = cluster()
        out = subprocess.run([cls.psql, "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d",
                              "postgresql://evs@127.0.0.1:%d/%s" % (st["port"], cls.db), "-c", q],
                             check=True, stdout=subprocess.PIPE, text=True)
        return out.stdout.strip()

    @classmethod
    def tearDownClass(cls):
        codes = [cls.a.stop(), cls.b.stop()]
        cls.sql("DROP DATABASE %s WITH (FORCE)" % cls.db)
        shutil.rmtree(cls.app, ignore_errors=True)
        for srv in (cls.a, cls.b):
            assert PASSWORD not in srv.err, srv.err
        assert codes == [0, 0], (codes, cls.a.err, cls.b.err)

    def test_concurrent_appends_and_subscribers_on_both(self):
        h0 = self.a.get("/info")[2]["head"]  # the other tests' events come before
        subs = [SSEReader(self.a.port, "/subscribe?from=%d" % (h0 + 1)),
                SSEReader(self.b.port, "/subscribe?from=%d" % (h0 + 1))]
        for s in subs:
            self.assertEqual(s.status, 200)
        results = []
        problems = []
        lock = threading.Lock()

        def writer(srv, wid):
            c = srv.conn()
            done = 0
            known = {}  # each stream's version as this writer last learnt it
            while done < WRITES:
                stream = "acct-%d" % ((done + wid) % 3)
                version = known.get(stream, 0)
                n = 1 + done % 2
                body = [ev("Moved", {"w": wid, "i": done, "k": k}) for k in range(n)]
                st, _, r = srv.request("POST", "/streams/%s?expected=%d" % (stream, version), body, conn=c)
                if st == 409:
                    m = re.search(r"actual version (\d+)", r["error"])
                    if not m or int(m.group(1)) <= version:
                        with lock:
                            problems.append(r)
                        return
                    known[stream] = int(m.group(1))
                    continue
                if st not in (200, 201):
                    with lock:
                        problems.append((st, r))
                    return
                known[stream] = r["last_stream_position"]
                with lock:
                    results.append((r["first_global_position"], n))
                done += 1
            c.close()

        ts = [threading.Thread(target=writer, args=(srv, i)) for i, srv in enumerate([self.a, self.a, self.b, self.b])]
        for t in ts:
            t.start()
        for t in ts:
            t.join(TIMEOUT * 4)
        self.assertEqual(problems, [])
        total = sum(n for _, n in results)
        self.assertEqual(total, 4 * WRITES * 3 // 2)
        positions = sorted(g + k for g, n in results for k in range(n))
        self.assertEqual(positions, list(range(h0 + 1, h0 + total + 1)))  # gapless, nothing twice
        for s in subs:
            got = [g for g, _ in s.events(total)]
            self.assertEqual(got, list(range(h0 + 1, h0 + total + 1)))
            s.close()
        versions = 0
        for k in range(3):
            st, _, body = self.a.get("/streams/acct-%d?limit=1000" % k)
            self.assertEqual(st, 200)
            self.assertEqual([e["stream_position"] for e in body["events"]], list(range(1, len(body["events"]) + 1)))
            versions += len(body["events"])
        self.assertEqual(versions, total)

    def test_cli_on_the_same_database(self):
        # the command line opens the database directly, beside the running servers
        r = subprocess.run([BIN, "append", "-d", self.url, "cli-1", json.dumps(ev("FromCli", {"k": 1}))],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        g = json.loads(r.stdout)["first_global_position"]
        st, _, body = self.b.get("/streams/cli-1")
        self.assertEqual(st, 200)
        self.assertEqual([(e["global_position"], e["data"]) for e in body["events"]], [(g, {"k": 1})])
        r = subprocess.run([BIN, "read", "-d", self.url, "cli-1"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout.splitlines()[0])["event_type"], "FromCli")
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # consumers live in the database too (none yet)
        r = subprocess.run([BIN, "sub", "list", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        # the schema registry too (the servers' registrations, test_schemas_shared_by_both_servers)
        r = subprocess.run([BIN, "schema", "list", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # the application layer too (no kept scripts: nothing listed without --app-dir)
        r = subprocess.run([BIN, "aggregate", "list", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # sagas too (no index yet: an empty list)
        r = subprocess.run([BIN, "saga", "list", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # what the engine does not do fails clearly, and the message masks the password
        r = subprocess.run([BIN, "repair", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not supported by the postgresql storage engine", r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)

    def test_schemas_shared_by_both_servers(self):
        schema = {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}
        st, _, body = self.a.request("PUT", "/schemas/PgPriced", schema)
        self.assertEqual(st, 201, body)
        # B knows it at once, and refuses an append it does not validate; A's counters are its own
        st, _, body = self.b.get("/schemas/PgPriced")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["latest"], 1)
        st, _, body = self.b.request("POST", "/streams/priced-1", [ev("PgPriced", {"sku": 5})])
        self.assertEqual(st, 422, body)
        self.assertEqual(body["detail"]["pointer"], "/sku", body)
        st, _, body = self.b.request("POST", "/streams/priced-1", [ev("PgPriced", {"sku": "a"})])
        self.assertIn(st, (200, 201), body)
        st, _, body = self.a.request("POST", "/streams/priced-1", [ev("PgPriced", {"nope": 1})])
        self.assertEqual(st, 422, body)
        # versions registered through both servers in turn are numbered once each
        v2 = dict(schema, title="the next version")
        st, _, body = self.b.request("PUT", "/schemas/PgPriced", v2)
        self.assertEqual(st, 201, body)
        st, _, body = self.a.request("PUT", "/schemas/PgPriced", v2)
        self.assertEqual(st, 201, body)
        st, _, body = self.a.get("/schemas/PgPriced")
        self.assertEqual(body["latest"], 3, body)
        # a deprecation on B is seen on A
        st, _, body = self.b.request("POST", "/schemas/PgPriced/1/deprecate")
        self.assertEqual(st, 200, body)
        st, _, body = self.a.get("/schemas/PgPriced/1")
        self.assertTrue(body["deprecated"], body)
        # the CLI opens the same registry
        r = subprocess.run([BIN, "schema", "list", "-d", self.url], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("PgPriced", r.stdout)

    def test_metadata_and_deletes_agree_on_both_servers(self):
        # written through one server, in force at once on the other: the database holds it, no cache
        for i in range(5):
            st, _, body = self.a.request("POST", "/streams/meta-srv-1", [ev("E", {"i": i})])
            self.assertIn(st, (200, 201), body)
        st, _, body = self.a.request("PUT", "/streams/meta-srv-1/metadata", {"max_count": 2})
        self.assertEqual(st, 200, body)
        st, _, body = self.b.get("/streams/meta-srv-1/metadata")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["metadata"], {"max_count": 2})
        st, _, body = self.b.get("/streams/meta-srv-1")
        self.assertEqual(st, 200, body)
        self.assertEqual([e["data"]["i"] for e in body["events"]], [3, 4])
        # a hard delete on B: A refuses the next append with 410 and reads the stream as gone
        st, _, body = self.b.request("DELETE", "/streams/meta-srv-1?hard=true")
        self.assertEqual(st, 200, body)
        st, _, body = self.a.request("POST", "/streams/meta-srv-1", [ev("E", {"i": 9})])
        self.assertEqual(st, 410, body)
        self.assertIn("hard-deleted", body["error"])
        st, _, body = self.a.get("/streams/meta-srv-1")
        self.assertEqual(st, 404, body)

    def test_encrypted_stream_across_servers(self):
        # "$encrypt" set through B, the events appended through A: sealed in the database, plaintext on both
        st, _, body = self.b.request("PUT", "/streams/pg-secret/metadata?expected=any", {"$encrypt": "stream"})
        self.assertEqual(st, 200, body)
        for srv, word in ((self.a, "SECRET-A"), (self.b, "SECRET-B")):
            st, _, body = srv.request("POST", "/streams/pg-secret", [ev("Noted", {"w": word})])
            self.assertIn(st, (200, 201), body)
        self.assertEqual(self.sql_value("SELECT count(*) FROM event_store WHERE aggregate_id = 'pg-secret' "
                                        "AND position('SECRET' IN convert_from(event_data, 'UTF8')) > 0"), "0")
        self.assertEqual(self.sql_value("SELECT count(*) FROM evs_subject_keys WHERE subject = 'pg-secret'"), "1")
        for srv in (self.a, self.b):
            st, _, body = srv.get("/streams/pg-secret")
            self.assertEqual(st, 200, body)
            self.assertEqual([e["data"]["w"] for e in body["events"]], ["SECRET-A", "SECRET-B"])
        st, _, body = self.b.get("/admin/subjects/pg-secret/export")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["count"], 2)
        # forgotten through A: B reads the events redacted once A's notification reached it (milliseconds)
        st, _, body = self.a.post("/admin/subjects/pg-secret/forget", None)
        self.assertEqual(st, 200, body)
        deadline = time.time() + 30
        while True:
            st, _, body = self.b.get("/streams/pg-secret")
            self.assertEqual(st, 200, body)
            if all(e.get("$redacted") for e in body["events"]) or time.time() > deadline:
                break
            time.sleep(0.01)
        self.assertEqual([(e["data"], e.get("$redacted")) for e in body["events"]], [(None, True), (None, True)])
        st, _, body = self.b.request("POST", "/streams/pg-secret", [ev("Noted", {"w": "again"})])
        self.assertEqual(st, 422, body)
        self.assertIn("forgotten", body["error"])
        st, _, body = self.b.get("/admin/subjects/pg-secret/export")
        self.assertEqual(st, 410, body)

    def test_commands_idempotent_and_queries_across_servers(self):
        with open(os.path.join(SHOP, "projections", "order_summary.lua")) as f:
            st, _, body = self.a.request("PUT", "/projections/order_summary", f.read(), headers=LUA)
        self.assertIn(st, (200, 201), body)
        # accepted through A; the same command id through B: A's answer, nothing appended
        cmd = {"command_id": "pg-it-order-1", "aggregate_id": "pg1", "data": {"customer": "ada"}}
        st, _, first = self.a.request("POST", "/commands/CreateOrder", cmd)
        self.assertEqual(st, 201, first)
        self.assertFalse(first["idempotent"])
        st, _, again = self.b.request("POST", "/commands/CreateOrder", cmd)
        self.assertEqual(st, 200, again)
        self.assertTrue(again["idempotent"], again)
        for k in ("stream", "events", "first_position", "last_position", "version", "correlation_id"):
            self.assertEqual(again[k], first[k], k)
        st, _, body = self.b.get("/streams/order-pg1")
        self.assertEqual(st, 200, body)
        self.assertEqual([e["event_type"] for e in body["events"]], ["OrderCreated"])
        # rejected through B, re-sent through A: the recorded rejection
        rej = {"command_id": "pg-it-order-2", "aggregate_id": "pg1", "data": {"customer": "bob"}}
        st, _, body = self.b.request("POST", "/commands/CreateOrder", rej)
        self.assertEqual(st, 422, body)
        self.assertFalse(body["idempotent"])
        st, _, body2 = self.a.request("POST", "/commands/CreateOrder", rej)
        self.assertEqual(st, 422, body2)
        self.assertTrue(body2["idempotent"], body2)
        self.assertEqual(body2["reason"], body["reason"])
        self.assertEqual(len(self.a.get("/streams/order-pg1")[2]["events"]), 1)
        # read-your-writes through either server, whichever one runs the projection
        st, _, more = self.b.request("POST", "/commands/AddItem", {
            "aggregate_id": "pg1", "data": {"sku": "tea", "quantity": 2, "unit_price": "3.50"}})
        self.assertEqual(st, 201, more)
        for srv in (self.a, self.b):
            st, _, q = srv.get("/queries/orders?partition=order-pg1&min_position=%d&timeout_ms=60000"
                               % more["last_position"])
            self.assertEqual(st, 200, q)
            self.assertGreaterEqual(q["position"], more["last_position"])
            self.assertEqual([(i["key"], i["state"]["customer"], i["state"]["total"]) for i in q["items"]],
                             [("order-pg1", "ada", "7.00")])

    def test_routes_of_every_subsystem_and_password_is_masked(self):
        st, _, body = self.b.get("/subscriptions")
        self.assertEqual(st, 200, body)  # the consumers run on PostgreSQL too (test_pg_bus_servers.py)
        st, _, body = self.b.get("/schemas")
        self.assertEqual(st, 200, body)  # the registry runs on PostgreSQL too (above)
        st, _, body = self.b.get("/queries")
        self.assertEqual(st, 200, body)  # the application layer runs on PostgreSQL too (above)
        self.assertEqual(sorted(q["name"] for q in body["queries"]), ["orders", "stock"])
        st, _, body = self.b.get("/sagas")
        self.assertEqual(st, 200, body)  # sagas too (test_saga.c, crash_saga_kill9_pg)
        # scavenge works on the embedded log's segments: 501 naming it, nothing removed
        st, _, body = self.b.request("POST", "/admin/scavenge")
        self.assertEqual(st, 501, body)
        self.assertIn("scavenge is not supported by the postgresql storage engine", body["error"])
        st, _, info = self.a.get("/info")
        self.assertEqual(st, 200)
        self.assertNotIn(PASSWORD, json.dumps(info))
        self.assertIn("evs:****@127.0.0.1", info["data_dir"])


def cli(*args):
    e = {k: v for k, v in os.environ.items() if k not in ("EVSTORE_API_KEY", "EVSTORE_URL", "EVSTORE_DIR")}
    return subprocess.run([BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT, env=e)


def bearer(key):
    return {"Authorization": "Bearer " + key}


class AuthServersTest(unittest.TestCase):
    """Two `serve --auth` processes on one database: the keys and the secret are the database's."""

    @classmethod
    def setUpClass(cls):
        st = cluster()
        cls.db = "evs_itauth_%d" % os.getpid()
        TwoServersTest.psql = os.path.join(st["bindir"], "psql")
        TwoServersTest.sql("CREATE DATABASE %s" % cls.db)
        cls.url = "postgresql://evs:%s@127.0.0.1:%d/%s" % (PASSWORD, st["port"], cls.db)
        # the first admin key, made by the CLI in the database before any server runs
        p = cli("key", "create", "--role", "admin", "--name", "boot", "-d", cls.url)
        assert p.returncode == 0, p.stderr
        assert PASSWORD.encode() not in p.stdout + p.stderr
        cls.admin = json.loads(p.stdout)["key"]
        cls.a = Server(cls.url, "--auth").start()
        cls.b = Server(cls.url).start()  # no --auth: the keys in the database turn it on

    @classmethod
    def tearDownClass(cls):
        codes = [cls.a.stop(), cls.b.stop()]
        TwoServersTest.sql("DROP DATABASE %s WITH (FORCE)" % cls.db)
        for srv in (cls.a, cls.b):
            assert PASSWORD not in srv.err, srv.err
            assert cls.admin not in srv.err, srv.err
        assert codes == [0, 0], (codes, cls.a.err, cls.b.err)

    def status(self, srv, key, path="/all"):
        st, hdrs, body = srv.get(path, headers=bearer(key))
        return st, body

    def test_keys_shared_and_revocation_reaches_the_other_server(self):
        self.assertIn("evstore_auth_enabled 1", self.b.get("/metrics", headers=bearer(self.admin))[2])
        self.assertEqual(self.b.get("/all")[0], 401)
        # made through A's admin route: verifies on B (within the bound, as any change does)
        st, _, rec = self.a.post("/keys", {"role": "writer", "name": "via-a"}, headers=bearer(self.admin))
        self.assertEqual(st, 201, rec)
        key, kid = rec["key"], rec["id"]
        time.sleep(RECHECK + 0.1)
        self.assertEqual(self.b.post("/streams/auth-1", [ev("E", {"i": 1})], headers=bearer(key))[0], 201)
        self.assertEqual(self.a.get("/streams/auth-1", headers=bearer(key))[0], 200)
        # the CLI on the URL lists it (no hash, no key text)
        p = cli("key", "list", "-d", self.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        listed = {json.loads(l)["id"]: json.loads(l) for l in p.stdout.decode().splitlines()}
        self.assertEqual(listed[kid]["name"], "via-a")
        self.assertNotIn("hash", listed[kid])
        self.assertNotIn(key[17:], p.stdout.decode())
        # revoked through A: A refuses at once; B, told nothing, once the bound has passed
        st, _, body = self.a.request("DELETE", "/keys/" + kid, headers=bearer(self.admin))
        self.assertEqual(st, 200, body)
        self.assertEqual(self.status(self.a, key)[0], 401)
        time.sleep(RECHECK + 0.1)
        st, body = self.status(self.b, key)
        self.assertEqual(st, 401, body)
        self.assertIn("revoked", body["error"])

        # made by the CLI on the URL: verifies on both; revoked by the CLI: refused by both
        p = cli("key", "create", "--role", "none", "--grant", "read:auth-*", "-d", self.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        rec = json.loads(p.stdout)
        time.sleep(RECHECK + 0.1)
        for srv in (self.a, self.b):
            self.assertEqual(self.status(srv, rec["key"], "/streams/auth-1")[0], 200)
            self.assertEqual(self.status(srv, rec["key"], "/streams/other-1")[0], 403)  # its grant, not more
        p = cli("key", "revoke", rec["id"], "-d", self.url)
        self.assertEqual(p.returncode, 0, p.stderr)
        time.sleep(RECHECK + 0.1)
        for srv in (self.a, self.b):
            self.assertEqual(self.status(srv, rec["key"], "/streams/auth-1")[0], 401)
        p = cli("key", "revoke", "abcdefabcdef", "-d", self.url)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"no key abcdefabcdef in the database", p.stderr)

    def test_wrong_key_answered_as_on_embedded(self):
        tmp = tempfile.mkdtemp(prefix="evs-pgauth-")
        try:
            emb = Server(tmp, "--auth").start()
            try:
                wrong = "evs_000000000000_" + "A" * 43
                for k in (wrong, self.admin[:-1] + ("B" if self.admin[-1] == "A" else "A"), "not-a-key"):
                    want = emb.get("/all", headers=bearer(k))
                    got = self.b.get("/all", headers=bearer(k))
                    self.assertEqual(got[0], 401, got)
                    self.assertEqual(got[0], want[0])
                    self.assertEqual(got[1].get("www-authenticate"), want[1].get("www-authenticate"))
                    self.assertEqual(got[2]["error"], want[2]["error"])
            finally:
                self.assertEqual(emb.stop(), 0, emb.err)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_non_loopback_needs_auth(self):
        st = cluster()
        db = "evs_itauth_open_%d" % os.getpid()
        TwoServersTest.sql("CREATE DATABASE %s" % db)
        url = "postgresql://evs:%s@127.0.0.1:%d/%s" % (PASSWORD, st["port"], db)
        try:
            p = subprocess.run([BIN, "serve", "-d", url, "--listen", "0.0.0.0:0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
            self.assertEqual(p.returncode, 4, p.stderr)
            self.assertIn(b"refusing to listen on 0.0.0.0:0 without authentication", p.stderr)
            self.assertNotIn(PASSWORD.encode(), p.stderr)
            proc = subprocess.Popen([BIN, "serve", "-d", url, "--listen", "0.0.0.0:0", "--auth"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            line = proc.stdout.readline().decode()
            self.assertIn("listening on http://0.0.0.0:", line)
            self.assertIn("auth on", line)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(TIMEOUT), 0)
            proc.stdout.close()
            proc.stderr.close()
        finally:
            TwoServersTest.sql("DROP DATABASE %s WITH (FORCE)" % db)


if __name__ == "__main__":
    if not cluster():
        print("skipped: no PostgreSQL cluster (EVS_PG_STATE; tests/pg_cluster.py starts one)")
        sys.exit(77)
    r = unittest.main(exit=False, verbosity=2).result
    n = r.testsRun
    bad = len(r.failures) + len(r.errors)
    print("%d passed, %d failed" % (n - bad, bad))
    sys.exit(1 if bad else 0)
