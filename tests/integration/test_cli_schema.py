#!/usr/bin/env python3
"""
test_cli_schema.py -- `evstore schema ...` and schema validation of
`evstore append`, driving the real binary (helpers from test_cli.py).

Checked: the JSON each action prints, exit statuses (0 ok, 1 usage, 2 not
found, 3 not compatible, 4 invalid schema or data), messages naming the
JSON pointer and the keyword, that a refused append leaves the store as it
was, and that everything registered survives to the next command.

Standard library only; the last line is "N passed, M failed".
"""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli import ev, run  # noqa: E402

V1 = {"type": "object", "required": ["order", "amount"], "additionalProperties": False,
      "properties": {"order": {"type": "string", "minLength": 1},
                     "amount": {"type": "integer", "minimum": 0}}}
V2 = {"type": "object", "required": ["order", "amount", "currency"], "additionalProperties": False,
      "properties": {"order": {"type": "string", "minLength": 1},
                     "amount": {"type": "integer", "minimum": 0},
                     "currency": {"enum": ["EUR", "USD"]}}}


class SchemaCliTest(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="evs-cli-schema-")
        self.store = os.path.join(self.tmp, "store")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def file(self, name, content):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return p

    def schema(self, *args, stdin=None):
        return run("schema", *args, "-d", self.store, stdin=stdin)

    def ok(self, r):
        self.assertEqual(r.code, 0, r)
        return r

    def fails(self, r, code, *needles):
        self.assertEqual(r.code, code, r)
        self.assertTrue(r.err.startswith("evstore: "), r)
        for n in needles:
            self.assertIn(n, r.err, r)
        return r

    def events(self, stream):
        r = run("read", "-d", self.store, stream)
        if r.code == 2:
            return []
        self.ok(r)
        return r.lines()

    def test_help_and_usage(self):
        r = self.ok(run("schema", "--help"))
        for word in ("register TYPE FILE", "check TYPE FILE", "list", "show TYPE", "deprecate TYPE VERSION",
                     "compat TYPE", "policy", "upcaster", "validate"):
            self.assertIn(word, r.out)
        self.ok(run("help", "schema"))
        self.assertIn("schema", self.ok(run("--help")).out)
        self.fails(self.schema(), 1, "missing action")
        self.fails(self.schema("frobnicate"), 1, 'unknown action "frobnicate"')
        self.fails(self.schema("register", "T"), 1, "missing TYPE and FILE")
        self.fails(self.schema("show", "T", "zero"), 1, "VERSION zero")
        self.fails(self.schema("deprecate", "T", "0"), 1, "at least 1")
        self.fails(self.schema("compat", "T", "sideways"), 1, "unknown compatibility mode")
        self.fails(self.schema("register", "T", "/nonexistent/file.json"), 2, "cannot read /nonexistent/file.json")
        self.fails(self.schema("list", "--bogus"), 1)
        self.fails(run("schema", "list"), 1)  # no -d and no EVSTORE_DIR
        self.assertFalse(os.path.exists(self.store))  # usage errors open nothing

    def test_register_list_show_check(self):
        r = self.ok(self.schema("register", "OrderPlaced", self.file("v1.json", V1)))
        o = r.obj()
        self.assertEqual((o["event_type"], o["version"], o["latest"], o["compat"]), ("OrderPlaced", 1, 1, "backward"))
        self.assertIsNone(o["migration_path"])
        # not backward compatible: exit 3, the keyword and its pointer
        v2 = self.file("v2.json", V2)
        self.fails(self.schema("check", "OrderPlaced", v2), 3, "not backward compatible", "/required", "currency")
        self.fails(self.schema("register", "OrderPlaced", v2), 3, "not backward compatible")
        # a bad schema: exit 4, pointer and keyword
        bad = self.file("bad.json", {"properties": {"tags": {"type": "array", "minItems": 1}}})
        self.fails(self.schema("register", "Tagged", bad), 4, "/properties/tags/minItems", "outside the supported subset")
        self.fails(self.schema("register", "Tagged", self.file("nojson.json", '{"type":')), 4, "not JSON")
        self.ok(self.schema("compat", "OrderPlaced", "none"))
        r = self.ok(self.schema("check", "OrderPlaced", v2))
        self.assertEqual(r.obj(), {"event_type": "OrderPlaced", "compatible": True, "next_version": 2})
        self.fails(self.schema("register", "OrderPlaced", v2, "--version", "5"), 3, "the next version is 2")
        r = self.ok(self.schema("register", "OrderPlaced", "-", "--migration-path", "currency: EUR",
                                stdin=json.dumps(V2)))
        self.assertEqual(r.obj()["version"], 2)
        self.assertEqual(r.obj()["migration_path"], "currency: EUR")
        lines = self.ok(self.schema("list")).lines()
        self.assertEqual([(l["event_type"], l["version"]) for l in lines], [("OrderPlaced", 1), ("OrderPlaced", 2)])
        self.assertEqual(lines[0]["upcast_to_next"], "none")
        self.assertIsNone(lines[1]["upcast_to_next"])
        self.ok(self.schema("register", "Refunded", self.file("r.json", {"type": "object"})))
        self.assertEqual(len(self.ok(self.schema("list", "OrderPlaced")).lines()), 2)
        self.assertEqual(len(self.ok(self.schema("list")).lines()), 3)
        self.fails(self.schema("list", "Nope"), 2, "Nope")
        s = self.ok(self.schema("show", "OrderPlaced")).obj()
        self.assertEqual(s["version"], 2)
        self.assertEqual(s["schema"], V2)
        self.assertEqual(self.ok(self.schema("show", "OrderPlaced", "1")).obj()["schema"], V1)
        self.fails(self.schema("show", "OrderPlaced", "3"), 2, "no schema version 3")

    def test_append_is_validated(self):
        self.ok(self.schema("register", "OrderPlaced", self.file("v1.json", V1)))
        r = self.ok(run("append", "-d", self.store, "order-1", ev("OrderPlaced", {"order": "o1", "amount": 5})))
        self.assertEqual(r.obj()["last_stream_position"], 1)
        # refused: pointer and rule, nothing stored (not even the valid event beside it)
        r = self.fails(run("append", "-d", self.store, "order-1", ev("OrderPlaced", {"order": "o1", "amount": 1}),
                           ev("OrderPlaced", {"order": "o1", "amount": -5})), 4,
                       "event 2 (OrderPlaced version 1): schema violation at /amount: minimum")
        self.assertEqual(len(self.events("order-1")), 1)
        self.fails(run("append", "-d", self.store, "order-2", ev("OrderPlaced", {"amount": 5})), 4,
                   "at /order: required")
        self.assertEqual(self.events("order-2"), [])
        # types without schemas are not looked at
        self.ok(run("append", "-d", self.store, "order-1", ev("Anything", {"x": [1]})))
        # warn for a stream type: stored
        r = self.ok(self.schema("policy", "stream-type", "legacy", "--validation", "warn"))
        self.assertEqual(r.obj(), {"scope": "stream-type", "name": "legacy", "validation": "warn", "deprecated": "warn"})
        self.ok(run("append", "-d", self.store, "legacy-1", ev("OrderPlaced", {"nonsense": True})))
        self.assertEqual(len(self.events("legacy-1")), 1)
        self.assertEqual(self.ok(self.schema("policy", "stream-type", "legacy")).obj()["validation"], "warn")
        self.ok(self.schema("policy", "stream-type", "legacy", "--clear"))
        self.fails(self.schema("policy", "stream-type", "legacy"), 2, "no policy")
        self.fails(run("append", "-d", self.store, "legacy-1", ev("OrderPlaced", {"nonsense": True})), 4)
        # off by default
        self.ok(self.schema("policy", "default", "--validation", "off"))
        self.ok(run("append", "-d", self.store, "order-3", ev("OrderPlaced", {"nonsense": True})))
        self.assertEqual(self.ok(self.schema("policy", "default")).obj()["validation"], "off")
        self.fails(self.schema("policy", "default", "--validation", "strict"), 4, "unknown validation policy")
        self.fails(self.schema("policy", "default", "--clear"), 4, "cannot be cleared")
        self.fails(self.schema("policy", "galaxy"), 1, "scope must be")
        # an unknown version
        self.ok(self.schema("policy", "default", "--validation", "enforce"))
        self.fails(run("append", "-d", self.store, "order-1", ev("OrderPlaced", {"order": "o", "amount": 1},
                                                                event_version=4)), 4, "no schema version 4")

    def test_deprecate_validate_upcaster(self):
        self.ok(self.schema("register", "OrderPlaced", self.file("v1.json", V1)))
        self.ok(self.schema("compat", "OrderPlaced", "none"))
        self.ok(self.schema("register", "OrderPlaced", self.file("v2.json", V2)))
        o = self.ok(self.schema("deprecate", "OrderPlaced", "1")).obj()
        self.assertTrue(o["deprecated"])
        self.assertIsNotNone(o["deprecated_at"])
        self.fails(self.schema("deprecate", "OrderPlaced", "9"), 2, "no schema version 9")
        # deprecated + refuse
        self.ok(self.schema("policy", "event-type", "OrderPlaced", "--deprecated", "refuse"))
        self.fails(run("append", "-d", self.store, "order-1", ev("OrderPlaced", {"order": "o", "amount": 1})), 4,
                   "version 1 is deprecated")
        self.assertFalse(self.ok(self.schema("deprecate", "OrderPlaced", "1", "--undo")).obj()["deprecated"])
        self.ok(run("append", "-d", self.store, "order-1", ev("OrderPlaced", {"order": "o", "amount": 1})))
        # validate a document
        good = self.file("good.json", {"order": "o", "amount": 1, "currency": "EUR"})
        self.assertEqual(self.ok(self.schema("validate", "OrderPlaced", "2", good)).obj(), {"valid": True})
        r = self.fails(self.schema("validate", "OrderPlaced", "2", self.file("b.json", {"order": "o", "amount": 1,
                                                                                     "currency": "GBP"})), 4,
                       "at /currency: enum")
        self.assertEqual(r.obj()["pointer"], "/currency")
        self.fails(self.schema("validate", "OrderPlaced", "3", good), 2)
        # a Lua upcaster, stored
        lua = self.file("up.lua", "return function(d) d.currency = 'EUR' return d end")
        o = self.ok(self.schema("upcaster", "OrderPlaced", "1", lua)).obj()
        self.assertEqual((o["from"], o["to"], o["upcaster"]), (1, 2, "lua"))
        self.fails(self.schema("upcaster", "OrderPlaced", "1", lua), 3, "already declared")
        self.fails(self.schema("upcaster", "OrderPlaced", "2", lua), 2, "must both be registered")
        self.assertEqual(self.ok(self.schema("list", "OrderPlaced")).lines()[0]["upcast_to_next"], "lua")
        self.ok(self.schema("upcaster", "OrderPlaced", "1", "--remove"))
        self.fails(self.schema("upcaster", "OrderPlaced", "1", "--remove"), 2)
        self.fails(self.schema("upcaster", "OrderPlaced", "1", self.file("bad.lua", "return function(")), 4,
                   "does not compile")
        self.fails(self.schema("upcaster", "OrderPlaced", "1"), 1, "FILE.lua")

    def test_read_only_beside_a_writer(self):
        self.ok(self.schema("register", "OrderPlaced", self.file("v1.json", V1)))
        # reads open the store read-only, so they work while another process holds its lock
        lock = open(os.path.join(self.store, "LOCK"), "r+")
        import fcntl
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            self.assertEqual(len(self.ok(self.schema("list")).lines()), 1)
            self.ok(self.schema("show", "OrderPlaced"))
            self.ok(self.schema("check", "OrderPlaced", self.file("v1b.json", V1)))
            self.fails(self.schema("register", "Other", self.file("o.json", {})), 5, "locked")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(SchemaCliTest)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed - len(result.skipped), failed))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
