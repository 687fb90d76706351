#!/usr/bin/env python3
"""
test_console_browser.py -- the web console (ui/, docs/console.md) in a real
browser: Debian's headless chromium driven over the DevTools protocol
(cdp.py), against the real `evstore serve` with the shop example as its
application.

Journeys, each through the page as a user clicks it while the test appends
and consumes through the HTTP API:
  * the overview shows the head, health and durability, and its appends/s
    chart picks up appends made meanwhile;
  * the live tail shows an event appended after it connected, and its type
    filter keeps out what it should;
  * the stream browser pages through streams and through a stream's events,
    and the correlation and causation links list exactly the related events;
  * a group parks an event (nack), the DLQ page retries it after a modal
    confirmation (Cancel does nothing), and once the consumer acks the
    redelivery the DLQ is empty; a projection that failed on an event is
    fixed and its parked event retried from the DLQ page;
  * a projection rebuild is followed by the progress bar up to 100 % and the
    state is the same afterwards;
  * errors are shown verbatim (a bad reset position, a rejected command);
    an API key given in the page is sent as "Authorization: Bearer";
  * the shop's order saga with a void that is refused (tok_void_fails):
    compensated by hand from its page, followed to compensation_failed,
    listed first with the counts by state, retried, skipped to compensated;
    a refused action's 409 verbatim; pause, resume, abort;
  * schemas: a type registered through the API is listed with its versions,
    its schema pretty-printed; data validated against a version (the answer
    verbatim, and a 400 for data that is not JSON); a schema outside the
    subset refused with its 422 verbatim; check, register, deprecate, the
    compatibility mode;
  * a phone-sized screen has no sideways scrolling on any of these pages.
No JavaScript exception may occur anywhere.  Screenshots of every page go to
<build>/console-screenshots/.

Registered for the plain build only (CMakeLists.txt): a browser adds nothing
under the sanitizers, which the server's own tests already run.
Standard library only.  Prints "N passed, M failed" as its last line.
"""
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402
from test_server import ROOT, TIMEOUT, Server  # noqa: E402

SHOTS = os.path.join(os.environ.get("EVS_BUILD_DIR") or os.path.join(ROOT, "build"), "console-screenshots")


def q(s):
    return json.dumps(s)


class ConsoleBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="evs-console-")
        cls.srv = Server(os.path.join(cls.tmp, "data"), "--app-dir", os.path.join(ROOT, "examples", "shop"),
                         "--durability", "batch").start()
        cls.base = "http://127.0.0.1:%d" % cls.srv.port
        try:
            cls.b = cdp.Browser(timeout=TIMEOUT)
        except Exception:
            cls.srv.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.b.close()
        code = cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert code == 0, "serve exited %s: %s" % (code, cls.srv.err)

    def setUp(self):
        self.b.exceptions.clear()

        def evidence():
            """What the page showed when a wait timed out: a screenshot and its text, for the log."""
            path = self.b.screenshot(os.path.join(SHOTS, "timeout-%s.png" % self._testMethodName))
            print("\n[timeout] %s, screenshot %s, page text:\n%s" % (
                self.b.eval("location.href"), path, self.b.eval("document.body.innerText")[:3000]))
        self.b.on_timeout = evidence

    def tearDown(self):
        self.assertEqual(self.b.exceptions, [], "JavaScript exceptions in the console")

    # ------------------------------------------------------------ helpers

    def open(self, hash_):
        """Show a page of the console (a fresh load the first time, then by its hash)."""
        b = self.b
        if not b.eval("location.href.startsWith(%s)" % q(self.base + "/")):
            b.goto(self.base + "/")
        b.eval("location.hash = %s" % q(hash_))
        b.wait("location.hash === %s" % q(hash_))

    def shot(self, name):
        self.b.screenshot(os.path.join(SHOTS, name + ".png"))

    def confirm(self, button_selector, fields=None, ok=True):
        """Click an action, fill the modal's fields, then OK (or Cancel)."""
        b = self.b
        b.click(button_selector)
        b.wait("!document.getElementById('modal').hidden", "the confirmation modal")
        for name, value in (fields or {}).items():
            b.eval("document.querySelector('#modal-body [name=%s]').value = %s" % (name, q(value)))
        b.click("#modal-ok" if ok else "#modal-cancel")
        b.wait("document.getElementById('modal').hidden", "the modal to close")

    def post(self, path, body):
        st, _, r = self.srv.post(path, body)
        self.assertIn(st, (200, 201), r)
        return r

    def count(self, selector):
        return self.b.eval("document.querySelectorAll(%s).length" % q(selector))

    # ------------------------------------------------------------ journeys

    def test_1_overview(self):
        b = self.b
        self.open("#/overview")
        head = self.srv.get("/info")[2]["head"]
        b.wait("document.querySelector('#card-head .v').textContent === %s" % q("{:,}".format(head)))
        b.wait("document.querySelector('#card-health .v').textContent === 'ok'", "health ok")
        self.assertEqual(b.text("#card-durability .v"), "batch")
        # appends made now show in the next samples: the head card and the appends/s rate
        for i in range(5):
            self.post("/streams/ov-1", {"event_type": "Tick", "data": {"i": i}})
        head = self.srv.get("/info")[2]["head"]
        b.wait("document.querySelector('#card-head .v').textContent === %s" % q("{:,}".format(head)), "the new head")
        b.wait("parseFloat(document.getElementById('rate-appends').textContent) > 0", "a non-zero appends/s")
        # and the chart draws it: pixels of the line's blue, above the zero line
        b.wait("""(() => { const c = document.getElementById('chart-appends');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height * 0.8).data; let n = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 200 && d[i] < 80 && d[i + 3] > 200) n++; return n > 4; })()""",
               "the appends chart's line")
        self.shot("overview")

    def test_2_live_tail(self):
        b = self.b
        self.open("#/tail")
        b.wait("document.getElementById('tail-status').textContent.startsWith('live')", "the tail to connect")
        mark = uuid.uuid4().hex
        self.post("/streams/tail-1", {"event_type": "TailSeen", "data": {"mark": mark}})
        b.wait("document.getElementById('tail-events').textContent.includes(%s)" % q(mark), "the event in the tail")
        self.assertIn("TailSeen", b.text("#tail-events"))
        # a type filter: what does not match never shows, what matches does
        b.eval("document.querySelector('#tail-form [name=type]').value = 'Wanted'")
        b.click("#tail-start")
        b.wait("document.getElementById('tail-status').textContent.startsWith('live')", "the filtered tail")
        self.post("/streams/tail-1", [{"event_type": "Unwanted", "data": {"mark": "u" + mark}},
                                      {"event_type": "Wanted", "data": {"mark": "w" + mark}}])
        b.wait("document.getElementById('tail-events').textContent.includes(%s)" % q("w" + mark))
        self.assertNotIn("u" + mark, b.text("#tail-events"))
        self.assertEqual(self.count("#tail-events .event"), 1)
        self.shot("tail")
        b.click("#tail-stop")

    def test_3_stream_browser(self):
        b = self.b
        for i in range(25):
            self.post("/streams/page-%02d" % i, {"event_type": "Opened", "data": {"i": i}})
        corr = str(uuid.uuid4())
        first_id = str(uuid.uuid4())
        events = []
        for i in range(45):
            e = {"event_type": "Step", "data": {"i": i, "nested": {"ok": True}}, "metadata": {"by": "test"}}
            if i == 0:
                e["event_id"] = first_id
            if i % 10 == 0:
                e["correlation_id"] = corr
            if i == 5:
                e["causation_id"] = first_id
            events.append(e)
        self.post("/streams/walk-1", events)
        self.post("/streams/other-1", {"event_type": "Elsewhere", "data": {}, "correlation_id": corr})

        # streams, 20 a page: next and previous
        self.open("#/streams?prefix=page-")
        b.wait("document.querySelectorAll('#streams-table tr').length === 21", "a page of 20 streams")
        self.assertEqual(b.text("#streams-table tr:nth-child(2) td"), "page-00")
        self.shot("streams")
        b.click("#streams-next")
        b.wait("document.querySelectorAll('#streams-table tr').length === 6", "the last 5 streams")
        self.assertEqual(b.text("#streams-table tr:nth-child(2) td"), "page-20")
        b.click("#streams-prev")
        b.wait("document.querySelectorAll('#streams-table tr').length === 21")
        self.assertEqual(b.text("#streams-table tr:nth-child(2) td"), "page-00")
        # the search form
        b.eval("document.querySelector('#stream-search [name=prefix]').value = 'page-1'")
        b.click("#stream-search button")
        b.wait("document.querySelectorAll('#streams-table tr').length === 11", "the 10 streams page-1*")

        # one stream's events, 20 a page, with pretty JSON
        b.click("#streams-table a[href='#/stream/page-10']")
        b.wait("location.hash === '#/stream/page-10'")
        self.open("#/stream/walk-1")
        b.wait("document.querySelectorAll('#stream-events .event').length === 20", "20 events")
        self.assertIn("walk-1 @1", b.text("#stream-events .event:first-child .ids"))
        self.assertEqual(json.loads(b.text("#stream-events .event:first-child pre.data")),
                         {"i": 0, "nested": {"ok": True}})
        self.assertIn('\n  "nested": {\n    "ok": true', b.text("#stream-events .event:first-child pre.data"))
        self.shot("stream")
        b.click("#events-next")
        b.wait("(document.querySelector('#stream-events .event .ids') || {}).textContent.includes('walk-1 @21')")
        b.click("#events-next")
        b.wait("document.querySelectorAll('#stream-events .event').length === 5", "the last 5 events")
        self.assertEqual(self.count("#events-next"), 0)
        b.click("#events-prev")
        b.wait("(document.querySelector('#stream-events .event .ids') || {}).textContent.includes('walk-1 @21')")
        b.click("#events-prev")
        b.wait("(document.querySelector('#stream-events .event .ids') || {}).textContent.includes('walk-1 @1')")

        # the correlation link lists every event of the correlation, in any stream
        b.click("#stream-events .event:first-child a[href^='#/related/correlation_id/']")
        b.wait("document.querySelectorAll('#related-events .event').length === 6", "the 6 correlated events")
        text = b.text("#related-events")
        self.assertIn("other-1", text)
        self.assertEqual(b.eval("location.hash"), "#/related/correlation_id/" + corr)
        self.shot("related")
        # the events the first one caused, and from one of them back by its causation id
        self.open("#/stream/walk-1")
        b.wait("document.querySelectorAll('#stream-events .event').length === 20")
        b.click("#stream-events .event:first-child a[href='#/related/causation_id/%s']" % first_id)
        b.wait("document.querySelectorAll('#related-events .event').length === 1", "the one caused event")
        self.assertIn("walk-1 @6", b.text("#related-events"))

    def test_4_group_dlq_retry(self):
        b = self.b
        st, _, r = self.srv.request("PUT", "/groups/billing", body={"filter": {"event_types": ["Invoice"]}})
        self.assertEqual(st, 201, r)
        self.post("/streams/inv-1", [{"event_type": "Invoice", "data": {"n": n}} for n in range(3)])

        def nxt():
            st, _, r = self.srv.request("POST", "/groups/billing/next?consumer=worker-1&timeout_ms=5000")
            self.assertEqual(st, 200, r)
            self.assertIsNotNone(r["delivery"], r)
            return r["delivery"]

        def answer(d, verb, **extra):
            body = dict({"consumer": "worker-1", "position": d["position"], "attempt": d["attempt"]}, **extra)
            st, _, r = self.srv.request("POST", "/groups/billing/" + verb, body=body)
            self.assertEqual(st, 200, r)

        answer(nxt(), "ack")
        parked = nxt()
        answer(parked, "nack", action="park", reason="no customer")
        answer(nxt(), "ack")
        pos = parked["position"]

        self.open("#/consumers?kind=group")
        b.wait("!!document.querySelector('#consumers-table tr[data-name=billing]')", "the group in the table")
        b.wait("document.querySelector('#consumers-table tr[data-name=billing] a[href^=\"#/dlq/\"]').textContent === '1'")
        self.shot("consumers")
        self.open("#/consumer/billing")
        b.wait("!!document.querySelector('#members-table') && document.getElementById('members-table').textContent.includes('worker-1')",
               "the group's member")
        self.shot("consumer-group")

        self.open("#/dlq/billing")
        row = "#dlq-table tr[data-position='%d']" % pos
        b.wait("!!document.querySelector(%s)" % q(row), "the parked event")
        self.assertIn("no customer", b.text(row))
        # Cancel changes nothing
        self.confirm(row + " button[data-action=retry]", ok=False)
        self.assertEqual(b.text("#dlq-message"), "")
        self.assertEqual(self.srv.get("/groups/billing/dlq")[2]["depth"], 1)
        self.confirm(row + " button[data-action=retry]")
        b.wait("document.querySelector('#dlq-message .ok') && document.getElementById('dlq-message').textContent.includes('\"queued\":true')",
               "the retry's answer")
        self.shot("dlq")
        # the group hands the event out again; once acked it leaves the DLQ
        again = nxt()
        self.assertEqual(again["position"], pos)
        answer(again, "ack")
        b.wait("!!document.getElementById('dlq-empty')", "the empty DLQ", timeout=20)
        self.assertEqual(self.srv.get("/groups/billing/dlq")[2]["depth"], 0)

    def test_5_projection_dlq_retry(self):
        b = self.b
        bad = ('return { filter = { stream_prefix = "pick-" }, partition = "none",\n'
               '  init = function() return { n = 0 } end,\n'
               '  handlers = { Item = function(s, e) if e.data.poison then error("poisoned") end s.n = s.n + 1 end } }\n')
        st, _, r = self.srv.request("PUT", "/projections/picky", body=bad, headers={"Content-Type": "text/x-lua"})
        self.assertEqual(st, 201, r)
        self.post("/streams/pick-1", [{"event_type": "Item", "data": {}}, {"event_type": "Item", "data": {"poison": True}}])
        deadline = time.time() + TIMEOUT
        while self.srv.get("/projections/picky")[2]["dlq_depth"] != 1 and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.srv.get("/projections/picky")[2]["dlq_depth"], 1)
        fixed = bad.replace('error("poisoned")', "s.n = s.n + 0")
        st, _, r = self.srv.request("PUT", "/projections/picky", body=fixed, headers={"Content-Type": "text/x-lua"})
        self.assertEqual(st, 200, r)
        self.open("#/dlq/picky")
        b.wait("!!document.querySelector('#dlq-table button[data-action=retry]')")
        self.assertIn("poisoned", b.text("#dlq-table"))
        self.confirm("#dlq-table button[data-action=retry]")
        b.wait("document.getElementById('dlq-message').textContent.includes('\"released\":true')", "released")
        b.wait("!!document.getElementById('dlq-empty')", "the empty DLQ")
        self.assertEqual(self.srv.get("/projections/picky/state")[2], {"n": 2})

    def test_6_projection_rebuild_progress(self):
        b = self.b
        src = ('return { filter = { stream_prefix = "tick-" }, partition = "none",\n'
               '  init = function() return { n = 0, sum = 0 } end,\n'
               '  handlers = { Tick = function(s, e) s.n = s.n + 1; s.sum = s.sum + e.data.i end } }\n')
        st, _, r = self.srv.request("PUT", "/projections/ticks", body=src, headers={"Content-Type": "text/x-lua"})
        self.assertEqual(st, 201, r)
        n = 20000
        for k in range(n // 1000):
            self.post("/streams/tick-%d" % k, [{"event_type": "Tick", "data": {"i": i}} for i in range(k * 1000, (k + 1) * 1000)])
        deadline = time.time() + TIMEOUT
        while self.srv.get("/projections/ticks")[2]["lag_events"] and time.time() < deadline:
            time.sleep(0.2)
        want = {"n": n, "sum": n * (n - 1) // 2}
        self.assertEqual(self.srv.get("/projections/ticks/state")[2], want)
        gen = self.srv.get("/projections/ticks")[2]["generation"]

        self.open("#/projection/ticks")
        b.wait("document.getElementById('proj-generation') && document.getElementById('proj-generation').textContent === %s" % q(str(gen)))
        b.wait("document.getElementById('projection-state').textContent.includes('\"sum\"')", "the state")
        # record every value the bar shows, as the page changes it
        b.eval("""window.__seen = []; new MutationObserver(() => {
            const v = document.getElementById('rebuild-progress').getAttribute('aria-valuenow');
            if (v !== null && window.__seen[window.__seen.length - 1] !== v) window.__seen.push(v);
          }).observe(document.getElementById('rebuild-progress'), { attributes: true })""")
        self.confirm("button[data-action=rebuild]", {"from": "1"})
        b.wait("document.getElementById('rebuild-progress').textContent.startsWith('rebuilt: 100 %')", "100 %")
        seen = [float(v) for v in b.eval("window.__seen")]
        print("rebuild of %d events: the bar showed %s" % (n, seen))
        self.assertEqual(seen[-1], 100.0)
        self.assertEqual(seen, sorted(seen), "the progress went backwards")
        self.assertEqual(b.eval("document.getElementById('rebuild-progress').getAttribute('aria-valuenow')"), "100")
        rec = self.srv.get("/projections/ticks")[2]
        self.assertEqual(rec["generation"], gen + 1)
        self.assertIn("generation %d" % (gen + 1), b.text("#rebuild-progress"))
        self.assertEqual(self.srv.get("/projections/ticks/state")[2], want)
        self.shot("projection")
        self.open("#/projections")
        b.wait("!!document.querySelector('#projections-table') && document.getElementById('projections-table').textContent.includes('ticks')")
        self.shot("projections")

    def test_7_errors_verbatim_and_api_key(self):
        b = self.b
        st, _, r = self.srv.request("PUT", "/subscriptions/audit")
        self.assertEqual(st, 201, r)
        self.open("#/consumers")
        row = "#consumers-table tr[data-name=audit]"
        b.wait("!!document.querySelector(%s)" % q(row))
        self.confirm(row + " button[data-action=reset]", {"to": "abc"})
        b.wait("!!document.querySelector('.error[data-status=\"400\"] .error-body')", "the 400")
        c = self.srv.conn()
        c.request("POST", "/subscriptions/audit/reset?to=abc")
        raw = c.getresponse().read().decode()
        c.close()
        self.assertEqual(b.text(".error[data-status='400'] .error-body"), raw)

        # a rejected command: 422 and the aggregate's reason, as the server wrote them
        self.open("#/app")
        b.wait("[...document.querySelectorAll('select[name=command_type] option')].some(o => o.value === 'CreateOrder')",
               "the shop's command types")
        b.eval("document.querySelector('select[name=command_type]').value = 'CreateOrder'")
        b.eval("document.querySelector('input[name=aggregate_id]').value = 'o-console'")
        b.eval("document.querySelector('textarea[name=data]').value = '{\"customer\": \"ada\"}'")
        self.confirm("button[data-action=send-command]")
        b.wait("document.getElementById('command-result').textContent.includes('\"outcome\":\"accepted\"')", "accepted")
        self.confirm("button[data-action=send-command]")
        b.wait("!!document.querySelector('#command-result .error[data-status=\"422\"]')", "the rejection")
        self.assertIn("already exists", b.text("#command-result .error-body"))
        self.shot("commands")

        # the API key: kept for the tab, sent with every request
        self.confirm("#key-button", {"key": "k-console-1"})
        self.assertEqual(b.eval("sessionStorage.getItem('evstore.key')"), "k-console-1")
        del b.requests[:]
        self.open("#/overview")
        b.wait("document.querySelector('#card-head .v').textContent !== '–'")
        b.eval("1")  # let the protocol events of the requests arrive
        sent = [r for r in b.requests if r["url"].startswith(self.base + "/info")]
        self.assertTrue(sent, [r["url"] for r in b.requests])
        self.assertEqual(sent[-1]["headers"].get("Authorization"), "Bearer k-console-1")
        self.confirm("#key-button", {"key": ""})
        self.assertIsNone(b.eval("sessionStorage.getItem('evstore.key')"))

    # ------------------------------------------------------------ sagas

    def order(self, oid, card):
        """An order of the shop: its OrderSubmitted starts the order saga (examples/shop/sagas/order_saga.lua)."""
        for ctype, data in (("Restock", None), ("CreateOrder", {"customer": "c-" + oid}),
                            ("AddItem", {"sku": "tea", "quantity": 1, "unit_price": "4.10"}),
                            ("SubmitOrder", {"card": card, "address": "1 Main St"})):
            if ctype == "Restock":
                self.post("/commands/Restock", {"aggregate_id": "tea", "data": {"quantity": 1}})
            else:
                self.post("/commands/" + ctype, {"aggregate_id": oid, "data": data})

    def saga(self, oid):
        st, _, r = self.srv.get("/sagas/order/" + oid)
        self.assertEqual(st, 200, r)
        return r

    def saga_until(self, oid, ok, what):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            st, _, s = self.srv.get("/sagas/order/" + oid)
            if st == 200 and ok(s):  # a 404 until the engine has seen the OrderSubmitted
                return s
            time.sleep(0.1)
        self.fail("saga %s never %s: %s" % (oid, what, self.saga(oid)))

    def raw(self, method, path, body=None):
        """The status and body of a request, as the server sent them."""
        c = self.srv.conn()
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        out = (r.status, r.read().decode())
        c.close()
        return out

    def test_8_sagas(self):
        """A saga whose compensation fails for good: listed first, its timeline, retry, then skip to compensated."""
        b = self.b
        # one that waits for a carrier (running) and one whose void will be refused (tok_void_fails)
        self.order("sg-run", "tok_visa")
        self.order("sg-void", "tok_void_fails")
        waiting = lambda s: s["status"] == "running" and s["steps"][3]["status"] == "waiting"  # noqa: E731
        self.saga_until("sg-run", waiting, "waited for a carrier")
        self.saga_until("sg-void", waiting, "waited for a carrier")

        # the instance's page: steps, timeline (the saga's stream, entry for entry) and data
        self.open("#/saga/order/sg-void")
        b.wait("document.querySelectorAll('#saga-timeline li').length > 0", "the timeline")
        stream = self.srv.get("/streams/saga-order-sg-void")[2]["events"]
        b.wait("document.querySelectorAll('#saga-timeline li').length === %d" % len(stream))
        self.assertEqual(b.eval("[...document.querySelectorAll('#saga-timeline li')].map(l => l.dataset.type)"),
                         [e["event_type"] for e in stream])
        self.assertEqual(b.eval("[...document.querySelectorAll('#saga-steps .step')].map(s => s.dataset.step)"),
                         ["order", "reserve", "authorize", "ship", "capture", "complete"])
        self.assertIn("waiting", b.text("#saga-steps .step[data-step=ship]"))
        self.assertEqual(json.loads(b.text("#saga-data"))["card"], "tok_void_fails")
        self.assertEqual(b.text("#saga-status .v"), "running")
        # only what the routes offer in this state
        self.assertEqual(b.eval("[...document.querySelectorAll('#saga-actions button')].map(x => x.dataset.action)"),
                         ["pause", "retry", "skip", "compensate", "abort"])
        # Cancel changes nothing; then compensate by hand, with a reason
        version = self.saga("sg-void")["version"]
        self.confirm("#saga-actions button[data-action=compensate]", ok=False)
        self.assertEqual(self.saga("sg-void")["version"], version)
        self.confirm("#saga-actions button[data-action=compensate]", {"reason": "customer called"})
        b.wait("document.getElementById('saga-message').textContent.includes('\"status\":\"compensating\"')",
               "the compensate answer")
        # the void is refused three times: the page follows it to compensation_failed
        b.wait("document.querySelector('#saga-status .v').textContent === 'compensation_failed'",
               "compensation_failed on the page")
        b.wait("[...document.querySelectorAll('#saga-timeline li')].some(l => l.dataset.type === 'SagaCompensating' "
               "&& l.textContent.includes('customer called'))", "the reason in the timeline")
        s = self.saga("sg-void")
        self.assertEqual(s["steps"][2]["compensation"]["status"], "failed")
        b.wait("document.querySelector('#saga-steps .step[data-step=authorize]').textContent.includes('failed')")
        self.assertIn(s["last_error"], b.text("#saga-last-error"))
        self.assertEqual(b.eval("[...document.querySelectorAll('#saga-actions button')].map(x => x.dataset.action)"),
                         ["retry", "skip", "abort"])
        self.shot("saga")

        # the listing: the failed compensation first (the server lists running ones before it), counts by state
        self.open("#/sagas")
        b.wait("document.querySelectorAll('#sagas-rows .saga').length >= 2", "the instances")
        self.assertEqual(b.eval("document.querySelector('#sagas-rows .saga').dataset.id"), "sg-void")
        self.assertEqual(self.srv.get("/sagas")[2]["sagas"][0]["status"], "running")
        self.assertIn(s["last_error"], b.text("#sagas-rows .saga[data-id=sg-void] .saga-error"))
        listed = self.srv.get("/sagas")[2]["sagas"]
        for state in ("running", "compensation_failed"):
            n = len([x for x in listed if x["status"] == state])
            b.wait("document.querySelector('#saga-counts [data-status=%s] .v').textContent === '%d'" % (state, n),
                   "%d %s in the counts" % (n, state))
        self.shot("sagas")
        # a count filters by its state; the filter form by type and state
        b.click("#saga-counts [data-status=compensation_failed]")
        b.wait("location.hash === '#/sagas?status=compensation_failed'")
        b.wait("document.querySelectorAll('#sagas-rows .saga').length === 1 && "
               "document.querySelector('#sagas-rows .saga').dataset.id === 'sg-void'", "only the failed compensation")
        b.wait("[...document.querySelectorAll('#saga-filter [name=type] option')].some(o => o.value === 'order')")
        b.eval("document.querySelector('#saga-filter [name=type]').value = 'order'")
        b.eval("document.querySelector('#saga-filter [name=status]').value = 'running'")
        b.click("#saga-filter button")
        b.wait("location.hash === '#/sagas?type=order&status=running'")
        b.wait("[...document.querySelectorAll('#sagas-rows .saga')].map(r => r.dataset.id).join() === 'sg-run'",
               "only the running one")
        # "stuck for" goes to the server: unfinished instances without a transition for that long, failed compensation first
        b.eval("document.querySelector('#saga-filter [name=type]').value = ''")
        b.eval("document.querySelector('#saga-filter [name=status]').value = ''")
        b.eval("document.querySelector('#saga-filter [name=stuck_for]').value = '200ms'")
        b.click("#saga-filter button")
        b.wait("location.hash === '#/sagas?stuck_for=200ms'")
        b.wait("[...document.querySelectorAll('#sagas-rows .saga')].map(r => r.dataset.id).join() === 'sg-void,sg-run'",
               "both unfinished ones, the failed compensation first")
        # the page's order for what the listing cannot show yet (an instance quiet for over a minute is "stuck"):
        # failed compensation, stuck, compensating, paused, failed, running, finished
        order = b.eval("""(() => { const ago = (s) => new Date(Date.now() - s * 1000).toISOString();
            const l = [["done", "completed", 900], ["run", "running", 5], ["fail", "failed", 5], ["pause", "paused", 900],
                       ["comp", "compensating", 5], ["stuck", "running", 120], ["cf", "compensation_failed", 1]]
              .map(([id, status, s]) => ({ id, status, updated_at: ago(s) }));
            return l.sort((a, b) => sagaRank(a) - sagaRank(b)).map((x) => x.id + (sagaStuck(x) ? "!" : "")); })()""")
        self.assertEqual(order, ["cf", "stuck!", "comp", "pause", "fail", "run", "done"])

        # the running one: a refused action, then paused (its timers stop: the carrier's deadline cannot pass meanwhile)
        b.click("#sagas-rows .saga[data-id=sg-run] a")
        b.wait("location.hash === '#/saga/order/sg-run'")
        # an action the server refuses: its 409 verbatim (a step that is not the current one)
        b.wait("!!document.querySelector('#saga-actions button[data-action=skip]')")
        self.confirm("#saga-actions button[data-action=skip]", {"step": "capture"})
        b.wait("!!document.querySelector('#saga-message .error[data-status=\"409\"]')", "the 409")
        st, body = self.raw("POST", "/sagas/order/sg-run/skip?step=capture")
        self.assertEqual(st, 409, body)
        self.assertEqual(b.text("#saga-message .error-body"), body)
        self.assertIn("step capture is not a current step", b.text("#saga-message .error-message"))
        # pause: it waits there while the other one is dealt with
        self.confirm("#saga-actions button[data-action=pause]", {"reason": "checking the address"})
        b.wait("document.querySelector('#saga-status .v').textContent === 'paused'", "paused")
        b.wait("[...document.querySelectorAll('#saga-actions button')].map(x => x.dataset.action).join() === 'resume,compensate,abort'",
               "the actions of a saga paused from running")
        self.assertIn("paused from running", b.text("#saga-actions"))
        self.assertEqual(self.saga("sg-run")["timeline"][-1]["reason"], "checking the address")
        # retry: a fresh budget, refused three more times; the timeline grows
        self.open("#/saga/order/sg-void")
        b.wait("document.querySelector('#saga-status .v') && "
               "document.querySelector('#saga-status .v').textContent === 'compensation_failed'")
        before = self.saga("sg-void")
        self.confirm("#saga-actions button[data-action=retry]")
        b.wait("[...document.querySelectorAll('#saga-timeline li')].some(l => l.dataset.type === 'SagaRetryRequested')",
               "the retry in the timeline")
        again = self.saga_until("sg-void", lambda x: x["status"] == "compensation_failed" and x["version"] > before["version"] + 1,
                                "failed its retried compensation")
        self.assertEqual(again["steps"][2]["compensation"]["attempt"], 6)
        b.wait("document.querySelector('#saga-steps .step[data-step=authorize]').textContent.includes('attempt 6')",
               "the sixth attempt on the page")
        # voided by hand: skip it, the rest is undone, the page shows compensated and offers nothing more
        self.confirm("#saga-actions button[data-action=skip]", {"reason": "voided at the gateway"})
        b.wait("document.querySelector('#saga-status .v').textContent === 'compensated'", "compensated", timeout=TIMEOUT)
        b.wait("document.getElementById('saga-actions').textContent.includes('no action applies')")
        self.assertEqual(self.saga("sg-void")["status"], "compensated")
        self.assertEqual(self.srv.get("/aggregates/order/sg-void")[2]["state"]["status"], "cancelled")

        # back to the paused one: resume, then abort
        self.open("#/saga/order/sg-run")
        b.wait("!!document.querySelector('#saga-actions button[data-action=resume]')")
        self.confirm("#saga-actions button[data-action=resume]")
        b.wait("document.querySelector('#saga-status .v').textContent === 'running'", "running again")
        # abort: failed, nothing compensated
        self.confirm("#saga-actions button[data-action=abort]", {"reason": "customer left"})
        b.wait("document.querySelector('#saga-status .v').textContent === 'failed'", "failed")
        self.assertEqual(self.saga("sg-run")["timeline"][-1]["reason"], "customer left")
        self.assertEqual(self.srv.get("/aggregates/order/sg-run")[2]["state"]["status"], "submitted")

    # ------------------------------------------------------------ schemas

    def test_9_schemas(self):
        b = self.b
        schema = {"type": "object", "required": ["sku", "amount"], "additionalProperties": False,
                  "properties": {"sku": {"type": "string"}, "amount": {"type": "number", "minimum": 0}}}
        st, _, r = self.srv.request("PUT", "/schemas/ConsolePriced", body=json.dumps(schema),
                                    headers={"Content-Type": "application/json"})
        self.assertEqual(st, 201, r)
        self.open("#/schemas")
        b.wait("!!document.querySelector('#schema-types .row[data-type=ConsolePriced]')", "the type listed")
        self.assertIn("latest v1", b.text("#schema-types .row[data-type=ConsolePriced]"))
        self.assertIn("compat backward", b.text("#schema-types .row[data-type=ConsolePriced]"))
        self.shot("schemas")
        b.click("#schema-types .row[data-type=ConsolePriced] a")
        b.wait("location.hash === '#/schema/ConsolePriced'")
        # the version's schema, pretty-printed
        b.wait("!!document.getElementById('schema-json')", "the schema")
        self.assertEqual(json.loads(b.text("#schema-json")), schema)
        self.assertIn('\n  "required": [\n    "sku",', b.text("#schema-json"))

        # validating data: good, then bad with the server's answer verbatim
        b.wait("document.querySelector('#validate-form [name=version]').value === '1'")
        b.eval("document.querySelector('textarea[name=data]').value = %s" % q('{"sku": "tea", "amount": 3}'))
        b.click("#validate")
        b.wait("!!document.querySelector('#validate-result .ok')", "valid")
        bad = '{"sku": "tea", "amount": -5}'
        b.eval("document.querySelector('textarea[name=data]').value = %s" % q(bad))
        b.click("#validate")
        b.wait("!!document.querySelector('#validate-result .error')", "not valid")
        st, body = self.raw("POST", "/schemas/ConsolePriced/1/validate", bad)
        self.assertEqual(st, 200, body)
        self.assertEqual(b.text("#validate-result .error-body"), body)
        self.assertEqual(json.loads(body)["pointer"], "/amount")
        # the same data appended is the 422 the page would show for an append: same pointer and keyword
        st, _, r = self.srv.post("/streams/priced-1", {"event_type": "ConsolePriced", "data": json.loads(bad)})
        self.assertEqual((st, r["detail"]["pointer"], r["detail"]["keyword"]), (422, "/amount", json.loads(body)["keyword"]))
        # data that is not JSON: the 400 verbatim
        b.eval("document.querySelector('textarea[name=data]').value = '{nope'")
        b.click("#validate")
        b.wait("!!document.querySelector('#validate-result .error[data-status]')", "the 400")
        st, body = self.raw("POST", "/schemas/ConsolePriced/1/validate", "{nope")
        self.assertEqual(b.eval("document.querySelector('#validate-result .error').dataset.status"), str(st))
        self.assertEqual(b.text("#validate-result .error-body"), body)
        self.shot("schema")

        # a schema outside the subset: the 422 verbatim, nothing registered
        outside = json.dumps({"type": "object", "patternProperties": {"^x": {"type": "string"}}})
        b.eval("document.querySelector('textarea[name=schema]').value = %s" % q(outside))
        self.confirm("button[data-action=register]")
        b.wait("!!document.querySelector('#register-result .error[data-status=\"422\"]')", "the 422")
        st, body = self.raw("PUT", "/schemas/ConsolePriced", outside)
        self.assertEqual(st, 422, body)
        self.assertEqual(b.text("#register-result .error-body"), body)
        self.assertEqual(self.srv.get("/schemas/ConsolePriced")[2]["latest"], 1)
        # a compatible next version: checked, then registered
        v2 = dict(schema, properties=dict(schema["properties"], note={"type": "string"}))
        b.eval("document.querySelector('textarea[name=schema]').value = %s" % q(json.dumps(v2)))
        b.click("#check")
        b.wait("document.getElementById('register-result').textContent.includes('\"compatible\":true')", "compatible")
        self.confirm("button[data-action=register]")
        b.wait("document.querySelectorAll('#schema-versions .row').length === 2", "version 2")
        self.assertEqual(self.srv.get("/schemas/ConsolePriced")[2]["latest"], 2)

        # deprecate version 1, then the compatibility mode
        self.confirm("#schema-versions .row[data-version='1'] button[data-action=deprecate]")
        b.wait("document.querySelector('#schema-versions .row[data-version=\"1\"]').textContent.includes('deprecated')")
        self.assertTrue(self.srv.get("/schemas/ConsolePriced/1")[2]["deprecated"])
        b.eval("document.querySelector('select[name=compat]').value = 'full'")
        self.confirm("button[data-action=set-compat]")
        b.wait("document.getElementById('schema-message').textContent.includes('full')", "the new mode")
        self.assertEqual(self.srv.get("/schemas/ConsolePriced")[2]["compat"], "full")

    # ------------------------------------------------------------ phone

    def test_z_phone(self):
        """A phone-sized screen never scrolls sideways (runs last: it uses what the journeys made)."""
        b = self.b
        b.viewport(390, 844, mobile=True)
        try:
            for name, page, ready in (
                    ("overview", "#/overview", "!!document.querySelector('#card-head')"),
                    ("stream", "#/stream/walk-1", "document.querySelectorAll('#stream-events .event').length > 0"),
                    ("consumers", "#/consumers", "!!document.querySelector('#consumers-table')"),
                    ("sagas", "#/sagas", "document.querySelectorAll('#sagas-rows .saga').length > 0"),
                    ("saga", "#/saga/order/sg-void", "document.querySelectorAll('#saga-timeline li').length > 0"),
                    ("schemas", "#/schemas", "!!document.querySelector('#schema-types')"),
                    ("schema", "#/schema/ConsolePriced", "!!document.getElementById('schema-json')")):
                self.open(page)
                b.wait(ready, page)
                time.sleep(0.3)
                over = b.eval("document.documentElement.scrollWidth - window.innerWidth")
                self.assertLessEqual(over, 0, "%s scrolls sideways by %s px on a phone" % (page, over))
                self.shot("phone-" + name)
        finally:
            b.call("Emulation.clearDeviceMetricsOverride")

if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
