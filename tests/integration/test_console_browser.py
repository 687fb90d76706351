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
  * the sagas page is a marked placeholder; a phone-sized screen has no
    sideways scrolling.
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

    def test_8_sagas_and_phone(self):
        b = self.b
        self.open("#/sagas")
        b.wait("!!document.getElementById('sagas-placeholder')")
        self.shot("sagas")
        b.viewport(390, 844, mobile=True)
        try:
            for page, ready in (("#/overview", "!!document.querySelector('#card-head')"),
                                ("#/stream/walk-1", "document.querySelectorAll('#stream-events .event').length > 0"),
                                ("#/consumers", "!!document.querySelector('#consumers-table')")):
                self.open(page)
                b.wait(ready, page)
                time.sleep(0.3)
                over = b.eval("document.documentElement.scrollWidth - window.innerWidth")
                self.assertLessEqual(over, 0, "%s scrolls sideways by %s px on a phone" % (page, over))
                self.shot("phone-" + page.strip("#/").split("/")[0])
        finally:
            b.call("Emulation.clearDeviceMetricsOverride")


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)
