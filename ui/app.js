/*
 * app.js — the evstore web console: a single page with hash routing
 * (#/overview, #/streams, #/stream/NAME, #/tail, #/consumers,
 * #/consumer/NAME, #/dlq/NAME, #/projections, #/projection/NAME, #/app,
 * #/sagas, #/saga/TYPE/ID, #/schemas, #/schema/TYPE).  Everything shown
 * comes from the HTTP API of docs/http-api.md; nothing is cached but the last minutes of /metrics for the charts.
 *
 * Rules kept throughout:
 *  - the API key, when the user gave one, is sent on every request as
 *    "Authorization: Bearer <key>" (kept in sessionStorage: gone with the tab);
 *  - every failure is shown with its status and the server's body verbatim
 *    (a 401/403 from an authenticating server reads as the server wrote it);
 *  - every action that changes something asks first in a modal (#modal);
 *  - text from the server is put into the page as text, never as HTML.
 * The live tail reads /subscribe with fetch() rather than EventSource,
 * because EventSource cannot send an Authorization header.
 */
"use strict";

const KEY_STORE = "evstore.key";
const SAMPLE_MS = 2000;            /* /metrics poll for the overview charts */
const HISTORY = 150;               /* samples kept: 5 minutes */
const PAGE = 20;                   /* events and streams per page */
const TAIL_MAX = 500;              /* rows kept by the live tail */

/* ------------------------------------------------------------------ DOM */

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/* Replace a node's children; like el(), arrays are flattened and null/false left out. */
function fill(node, ...kids) {
  node.replaceChildren(...kids.flat(2).filter((k) => k !== null && k !== undefined && k !== false)
    .map((k) => (k instanceof Node ? k : document.createTextNode(String(k)))));
}

function pretty(v) { return JSON.stringify(v, null, 2); }
function fmtNum(n) { return n === null || n === undefined || Number.isNaN(n) ? "–" : Number(n).toLocaleString("en-US"); }
function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + u[i];
}
function enc(s) { return encodeURIComponent(s); }
function qs(obj) {
  const p = Object.entries(obj).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return p.length ? "?" + p.map(([k, v]) => enc(k) + "=" + enc(v)).join("&") : "";
}
function badge(status) { return el("span", { class: "badge " + status }, status); }

/* ------------------------------------------------------------------ API */

class ApiError extends Error {
  constructor(status, body, method, path) {
    super("HTTP " + status + " " + method + " " + path);
    this.status = status;
    this.body = body;
  }
}

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }
function headers(extra) {
  const h = Object.assign({}, extra || {});
  const k = apiKey();
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}

/*
 * One request; resolves to the parsed JSON (or text; the body's text as sent
 * when raw is set), rejects with ApiError holding the body verbatim.
 */
async function api(method, path, body, ctype, raw) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = ctype || "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "no answer from the server: " + e.message, method, path);
  }
  const text = await r.text();
  if (!r.ok) throw new ApiError(r.status, text, method, path);
  if (raw) return text;
  const ct = r.headers.get("Content-Type") || "";
  return ct.startsWith("application/json") && text ? JSON.parse(text) : text;
}

/* A failure as the user should see it: status, route, and the body exactly as the server sent it. */
function errorBox(err) {
  if (!(err instanceof ApiError)) return el("div", { class: "error" }, String(err && err.stack || err));
  let said = null;          /* the server's own sentence, when the body is the API's error JSON */
  try { const j = JSON.parse(err.body); if (typeof j.error === "string") said = j.error; } catch (e) { /* not JSON */ }
  return el("div", { class: "error", "data-status": err.status },
    el("strong", {}, err.status ? "HTTP " + err.status : "No connection"), " ",
    el("span", { class: "muted" }, err.message.replace(/^HTTP \d+ /, "")),
    said ? el("div", { class: "error-message" }, said) : null,
    el("pre", { class: "error-body" }, err.body));
}

/* --------------------------------------------------------------- modal */

/* Ask before changing anything: resolves to the values of the fields (an object) or null when cancelled. */
function ask(title, text, fields, okLabel, danger) {
  const modal = document.getElementById("modal");
  const body = document.getElementById("modal-body");
  const ok = document.getElementById("modal-ok");
  const cancel = document.getElementById("modal-cancel");
  document.getElementById("modal-title").textContent = title;
  fill(body, el("p", {}, text));
  const inputs = {};
  for (const f of fields || []) {
    inputs[f.name] = f.textarea ? el("textarea", { name: f.name, placeholder: f.placeholder || "" })
                                : el("input", { name: f.name, placeholder: f.placeholder || "" });
    inputs[f.name].value = f.value || "";
    body.append(el("label", { class: "f" }, f.label, inputs[f.name]));
  }
  ok.textContent = okLabel || "OK";
  ok.className = danger ? "danger" : "";
  modal.hidden = false;
  (Object.values(inputs)[0] || ok).focus();
  return new Promise((resolve) => {
    const done = (v) => {
      modal.hidden = true;
      ok.onclick = cancel.onclick = modal.onkeydown = null;
      resolve(v);
    };
    ok.onclick = () => done(Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value])));
    cancel.onclick = () => done(null);
    modal.onkeydown = (e) => { if (e.key === "Escape") done(null); };
  });
}

/*
 * An action button: asks, runs fn, shows the answer (or the error verbatim)
 * in `out`, then calls after() (a refresh).  opts.show(answer) draws a long
 * answer its own way.
 */
function action(label, question, fn, out, after, opts) {
  opts = opts || {};
  return el("button", {
    type: "button", class: (opts.danger ? "danger " : "") + (opts.small ? "small" : ""), "data-action": opts.id || label,
    onclick: async () => {
      const v = await ask(label, question, opts.fields, label, opts.danger);
      if (v === null) return;
      try {
        const r = await fn(v);
        fill(out, el("div", { class: "ok" }, label + ": ", opts.show ? opts.show(r)
          : el("code", {}, typeof r === "string" ? r || "done" : JSON.stringify(r))));
      } catch (e) {
        fill(out, errorBox(e));
      }
      if (after) after();
    },
  }, label);
}

/* ---------------------------------------------------------- the sampler */

/* Prometheus text to {name: sum over its label sets} (the overview needs totals only). */
function parseMetrics(text) {
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    let name = line.slice(0, sp);
    const brace = name.indexOf("{");
    if (brace >= 0) name = name.slice(0, brace);
    const v = Number(line.slice(sp + 1));
    if (!Number.isNaN(v)) m[name] = (m[name] || 0) + v;
  }
  return m;
}

const samples = [];          /* {t, m}: the last HISTORY scrapes */
let sampleError = null;
const sampleListeners = new Set();

async function sample() {
  try {
    const text = await api("GET", "/metrics");
    samples.push({ t: Date.now(), m: parseMetrics(text) });
    if (samples.length > HISTORY) samples.shift();
    sampleError = null;
  } catch (e) {
    sampleError = e;
  }
  for (const f of sampleListeners) f();
}

/* Per-second rates of a counter between consecutive samples. */
function rates(name) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1], b = samples[i];
    const dv = (b.m[name] || 0) - (a.m[name] || 0);
    out.push({ t: b.t, v: Math.max(0, dv) / ((b.t - a.t) / 1000) });
  }
  return out;
}

/* A line chart on a canvas, scaled for the screen's pixel ratio; the window is the last 5 minutes. */
function drawChart(canvas, points) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (!w || !h) return;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const left = 44, bottom = h - 16, top = 6, right = w - 6;
  const now = Date.now(), span = HISTORY * SAMPLE_MS;
  const max = Math.max(1, ...points.map((p) => p.v));
  const nice = Math.pow(10, Math.floor(Math.log10(max)));
  const ymax = Math.ceil(max / nice) * nice;
  g.strokeStyle = "#d0d7de";
  g.fillStyle = "#656d76";
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
    const lab = ymax * i / 4;
    g.fillText(lab >= 1000 ? (lab / 1000).toFixed(1) + "k" : String(Number(lab.toPrecision(2))), 2, y + 4);
  }
  g.fillText("−5 min", left, h - 3);
  g.fillText("now", right - 20, h - 3);
  if (!points.length) return;
  g.strokeStyle = "#1f6feb";
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((p, i) => {
    const x = right - (right - left) * Math.min(1, (now - p.t) / span);
    const y = bottom - (bottom - top) * p.v / ymax;
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.stroke();
  if (points.length === 1) { /* one rate so far: a dot, so a fresh page shows it at once */
    const p = points[0];
    g.fillStyle = "#1f6feb";
    g.beginPath();
    g.arc(right - (right - left) * Math.min(1, (now - p.t) / span), bottom - (bottom - top) * p.v / ymax, 3, 0, 2 * Math.PI);
    g.fill();
  }
}

/* ------------------------------------------------------------- pages */

const pages = {};

pages.overview = (view) => {
  const cards = el("div", { class: "cards", id: "overview-cards" });
  const err = el("div");
  const c1 = el("canvas", { id: "chart-appends" }), c2 = el("canvas", { id: "chart-events" });
  const r1 = el("span", { id: "rate-appends" }), r2 = el("span", { id: "rate-events" });
  view.append(el("h1", {}, "Overview"), err, cards,
    el("div", { class: "charts" },
      el("div", { class: "chart" }, el("div", { class: "title" }, el("span", {}, "Appends / s"), r1), c1),
      el("div", { class: "chart" }, el("div", { class: "title" }, el("span", {}, "Events written / s"), r2), c2)));
  const card = (k, v, id) => el("div", { class: "card", id }, el("div", { class: "k" }, k), el("div", { class: "v" }, v));
  let info = null, health = null, healthErr = null;
  async function refresh() {
    try { info = await api("GET", "/info"); } catch (e) { info = null; fill(err, errorBox(e)); }
    try { health = await api("GET", "/health"); healthErr = null; } catch (e) { health = null; healthErr = e; }
    if (info) fill(err);
    render();
  }
  function render() {
    const last = samples.length ? samples[samples.length - 1].m : {};
    let status = health ? health.status : healthErr ? "failed" : "–";
    if (healthErr && healthErr.body) {
      try { status = (JSON.parse(healthErr.body).detail || {}).status || status; } catch (e) { /* not JSON: keep */ }
    }
    fill(cards,
      card("Health", badge(status), "card-health"),
      card("Head position", fmtNum(info ? info.head : last.evstore_head_position), "card-head"),
      card("Streams", fmtNum(info ? info.streams : last.evstore_streams), "card-streams"),
      card("Store size", fmtBytes(info ? info.log_bytes : last.evstore_log_bytes), "card-size"),
      card("Segments", fmtNum(info ? info.segments : last.evstore_log_segments)),
      card("Durability", info ? info.durability : "–", "card-durability"),
      card("Writable", info ? (info.writable ? "yes" : "no") : "–"),
      card("Live subscribers", fmtNum(info ? info.subscribers : last.evstore_live_subscribers)),
      card("Connections", fmtNum(info ? info.connections : null)),
      card("Uptime", info ? Math.round(info.uptime_seconds) + " s" : "–"),
      card("Version", info ? info.version : "–"));
    if (sampleError) fill(err, errorBox(sampleError));
    const a = rates("evstore_appends_total"), e = rates("evstore_events_written_total");
    r1.textContent = a.length ? a[a.length - 1].v.toFixed(1) : "";
    r2.textContent = e.length ? e[e.length - 1].v.toFixed(1) : "";
    drawChart(c1, a);
    drawChart(c2, e);
  }
  render();
  refresh();
  const onSample = () => refresh();
  sampleListeners.add(onSample);
  const onResize = () => render();
  window.addEventListener("resize", onResize);
  return () => { sampleListeners.delete(onSample); window.removeEventListener("resize", onResize); };
};

/* An event, with pretty JSON and links by correlation and causation id. */
function eventView(e) {
  const link = (label, href, text) => el("span", {}, label + " ", el("a", { href }, text));
  const ids = el("div", { class: "ids" },
    el("span", {}, "id ", el("code", {}, e.event_id)),
    link("stream", "#/stream/" + enc(e.stream) + "?from=" + e.stream_position, e.stream + " @" + e.stream_position),
    e.correlation_id ? link("correlation", "#/related/correlation_id/" + e.correlation_id, e.correlation_id) : null,
    e.causation_id ? link("causation", "#/related/causation_id/" + e.causation_id, e.causation_id) : null,
    link("", "#/related/causation_id/" + e.event_id, "events it caused"),
    e.tags && e.tags.length ? el("span", {}, "tags " + e.tags.join(", ")) : null);
  return el("div", { class: "event", "data-position": e.global_position },
    el("div", { class: "head" },
      el("span", { class: "mono" }, "#" + e.global_position),
      el("span", { class: "type" }, e.event_type),
      el("span", { class: "muted" }, e.recorded_at)),
    ids,
    el("pre", { class: "data" }, pretty(e.data)),
    e.metadata && Object.keys(e.metadata).length ? el("pre", { class: "metadata" }, pretty(e.metadata)) : null);
}

pages.streams = (view, args, query) => {
  const prefix = query.get("prefix") || "";
  const after = query.get("after") || "";
  /* the "after" of each earlier page, for Previous (a JSON list: the first page's is "") */
  let back = [];
  try { back = JSON.parse(query.get("back") || "[]"); } catch (e) { back = []; }
  const input = el("input", { name: "prefix", placeholder: "stream name prefix, e.g. order-", value: prefix });
  const out = el("div");
  view.append(el("h1", {}, "Streams"),
    el("form", { class: "bar", id: "stream-search", onsubmit: (ev) => { ev.preventDefault(); go("#/streams" + qs({ prefix: input.value })); } },
      input, el("button", { type: "submit" }, "Search")), out);
  api("GET", "/streams" + qs({ prefix, after, limit: PAGE })).then((r) => {
    const rows = r.streams.map((s) => el("tr", {},
      el("td", {}, el("a", { href: "#/stream/" + enc(s.stream) }, s.stream)),
      el("td", {}, s.stream_type), el("td", {}, fmtNum(s.version)),
      el("td", {}, fmtNum(s.first_global_position) + "…" + fmtNum(s.last_global_position)),
      el("td", {}, s.updated_at)));
    const nav = el("div", { class: "bar" },
      back.length ? el("a", { href: "#/streams" + qs({ prefix, after: back[back.length - 1], back: back.length > 1 ? JSON.stringify(back.slice(0, -1)) : "" }), id: "streams-prev" }, "← Previous") : null,
      r.next_after ? el("a", { href: "#/streams" + qs({ prefix, after: r.next_after, back: JSON.stringify(back.concat([after])) }), id: "streams-next" }, "Next →") : null);
    fill(out,
      rows.length ? el("div", { class: "scroll" }, el("table", { id: "streams-table" },
        el("tr", {}, el("th", {}, "Stream"), el("th", {}, "Type"), el("th", {}, "Version"), el("th", {}, "Global positions"), el("th", {}, "Updated")),
        rows)) : el("p", { class: "muted" }, "No stream" + (prefix ? " starts with \u201c" + prefix + "\u201d" : "") + "."),
      nav);
  }).catch((e) => fill(out, errorBox(e)));
};

pages.stream = (view, args, query) => {
  const name = args[0];
  const dir = query.get("direction") || "forward";
  const from = query.get("from") || "";
  const out = el("div");
  view.append(el("h1", {}, "Stream ", el("code", {}, name)),
    el("div", { class: "bar" },
      el("a", { href: "#/stream/" + enc(name) + "?from=1" }, "First"),
      el("a", { href: "#/stream/" + enc(name) + "?direction=backward" }, "Latest"),
      el("a", { href: "#/streams" + qs({ prefix: name }) }, "Streams like it")), out);
  api("GET", "/streams/" + enc(name) + qs({ from, limit: PAGE, direction: dir })).then((r) => {
    const list = el("div", { id: "stream-events" }, r.events.map(eventView));
    const nav = el("div", { class: "bar" }, el("span", { class: "muted" }, "version " + r.version));
    const first = r.events.length ? r.events[0].stream_position : null;
    const lastPos = r.events.length ? r.events[r.events.length - 1].stream_position : null;
    if (dir === "forward") {
      if (first > 1) nav.append(el("a", { id: "events-prev", href: "#/stream/" + enc(name) + "?from=" + Math.max(1, first - PAGE) }, "← Previous"));
      if (!r.end && r.next) nav.append(el("a", { id: "events-next", href: "#/stream/" + enc(name) + "?from=" + r.next }, "Next →"));
    } else {
      if (lastPos > 1 && r.next) nav.append(el("a", { id: "events-next", href: "#/stream/" + enc(name) + "?direction=backward&from=" + r.next }, "Older →"));
    }
    fill(out, nav, r.lost ? el("div", { class: "error" }, r.lost.map((l) => l.message).join("\n")) : null, list);
  }).catch((e) => fill(out, errorBox(e)));
};

/* Events sharing a correlation id or a causation id: GET /all filtered, paged with next. */
pages.related = (view, args, query) => {
  const field = args[0] === "causation_id" ? "causation_id" : "correlation_id";
  const id = args[1] || "";
  const from = query.get("from") || "1";
  const out = el("div", { id: "related-events" });
  view.append(el("h1", {}, field === "correlation_id" ? "Correlation " : "Caused by ", el("code", {}, id)), out);
  api("GET", "/all" + qs({ from, limit: 200, [field]: id })).then((r) => {
    fill(out, el("p", { class: "muted" }, r.events.length + " event(s) from position " + from),
      r.events.map(eventView),
      r.end ? null : el("a", { href: "#/related/" + field + "/" + id + "?from=" + r.next }, "More →"));
  }).catch((e) => fill(out, errorBox(e)));
};

/*
 * An SSE stream read with fetch (headers can be sent): onOpen() once the
 * server answered (the subscription exists from then on), then
 * onMessage({id, event, data}) per message; resolves when the stream ends.
 */
async function readSSE(path, signal, onOpen, onMessage) {
  const r = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
  if (!r.ok) throw new ApiError(r.status, await r.text(), "GET", path);
  onOpen();
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const msg = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (!line || line[0] === ":") continue;
        const c = line.indexOf(":");
        const k = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
        if (k === "data") msg.data += (msg.data ? "\n" : "") + v;
        else if (k === "id") msg.id = v;
        else if (k === "event") msg.event = v;
      }
      if (msg.data) onMessage(msg);
    }
  }
}

pages.tail = (view, args, query) => {
  const fields = ["type", "stream_prefix", "stream_type", "stream", "tag", "correlation_id"];
  const inputs = Object.fromEntries(fields.map((f) => [f, el("input", { name: f, placeholder: f, value: query.get(f) || "" })]));
  const fromSel = el("select", { name: "from" }, el("option", { value: "now" }, "new events only"), el("option", { value: "1" }, "from the start"));
  fromSel.value = query.get("from") || "now";
  const status = el("span", { class: "muted", id: "tail-status" }, "stopped");
  const list = el("div", { class: "tail-list", id: "tail-events" });
  const err = el("div");
  let ctl = null, count = 0, lastId = null;
  const filterQuery = () => Object.fromEntries(fields.map((f) => [f, inputs[f].value.trim()]));
  async function start() {
    stop();
    const c = new AbortController();
    ctl = c;
    fill(err);
    const q = filterQuery();
    q.from = lastId ? String(Number(lastId) + 1) : fromSel.value;
    status.textContent = "connecting…";
    try {
      await readSSE("/subscribe" + qs(q), c.signal, () => { status.textContent = "live — " + count + " event(s)"; }, (m) => {
        if (m.id) lastId = m.id;
        if (m.event !== "message") {
          list.prepend(el("div", { class: "muted" }, m.event + ": " + m.data));
          return;
        }
        const e = JSON.parse(m.data);
        list.prepend(eventView(e));
        while (list.childElementCount > TAIL_MAX) list.lastElementChild.remove();
        status.textContent = "live — " + (++count) + " event(s)";
      });
      if (ctl === c) { status.textContent = "ended; reconnecting…"; setTimeout(() => { if (ctl === c) start(); }, 1000); }
    } catch (e) {
      if (c.signal.aborted) return;
      status.textContent = "stopped";
      fill(err, errorBox(e));
      ctl = null;
    }
  }
  function stop() { if (ctl) { const c = ctl; ctl = null; c.abort(); status.textContent = "stopped"; } }
  view.append(el("h1", {}, "Live tail of $all"),
    el("form", { class: "bar", id: "tail-form", onsubmit: (ev) => { ev.preventDefault(); lastId = null; count = 0; fill(list); start(); } },
      Object.values(inputs), fromSel, el("button", { type: "submit", id: "tail-start" }, "Start"),
      el("button", { type: "button", class: "ghost", id: "tail-stop", onclick: stop }, "Stop")),
    status, err, list);
  start();
  return stop;
};

/* The consumers' table: every kind through /subscriptions, paged. */
pages.consumers = (view, args, query) => {
  const kind = query.get("kind") || "";
  const after = query.get("after") || "";
  const out = el("div"), msg = el("div");
  const sel = el("select", { name: "kind", onchange: () => go("#/consumers" + qs({ kind: sel.value })) },
    ["", "subscription", "projection", "group"].map((k) => el("option", { value: k }, k || "all kinds")));
  sel.value = kind;
  view.append(el("h1", {}, "Consumers"), el("div", { class: "bar" }, sel), msg, out);
  const refresh = () => api("GET", "/subscriptions" + qs({ kind, after, limit: 100 })).then((r) => {
    fill(out, r.subscriptions.length ? el("div", { class: "scroll" }, el("table", { id: "consumers-table" },
      el("tr", {}, ["Name", "Kind", "Status", "Checkpoint", "Lag (events)", "Lag (ms)", "DLQ", "Processed", "Failed", ""].map((h) => el("th", {}, h))),
      r.subscriptions.map((c) => el("tr", { "data-name": c.name },
        el("td", {}, el("a", { href: (c.kind === "projection" ? "#/projection/" : "#/consumer/") + enc(c.name) }, c.name)),
        el("td", {}, c.kind), el("td", {}, badge(c.status)), el("td", {}, fmtNum(c.checkpoint)),
        el("td", {}, fmtNum(c.lag_events)), el("td", {}, fmtNum(c.lag_ms)),
        el("td", {}, el("a", { href: "#/dlq/" + enc(c.name) }, fmtNum(c.dlq_depth))),
        el("td", {}, fmtNum(c.processed)), el("td", {}, fmtNum(c.failed)),
        el("td", {}, consumerActions(c, msg, refresh, true)))))) : el("p", { class: "muted" }, "No consumer yet."),
    r.next_after ? el("a", { href: "#/consumers" + qs({ kind, after: r.next_after }) }, "Next →") : null);
  }).catch((e) => fill(out, errorBox(e)));
  refresh();
  const t = setInterval(refresh, 3000);
  return () => clearInterval(t);
};

/* Pause or resume, and reset: the same routes for every kind under /subscriptions. */
function consumerActions(c, out, after, small) {
  const base = "/subscriptions/" + enc(c.name);
  const opts = { small };
  return el("span", { class: "bar" },
    c.status === "paused"
      ? action("Resume", "Resume " + c.kind + " \u201c" + c.name + "\u201d?", () => api("POST", base + "/resume"), out, after, Object.assign({ id: "resume" }, opts))
      : action("Pause", "Pause " + c.kind + " \u201c" + c.name + "\u201d? It stops processing until resumed.", () => api("POST", base + "/pause"), out, after, Object.assign({ id: "pause" }, opts)),
    action("Reset", "Reset \u201c" + c.name + "\u201d to a position? Events from it are delivered again" +
      (c.kind === "projection" ? "; a projection starts over and its DLQ is emptied." : "."),
      (v) => api("POST", base + "/reset" + qs({ to: v.to.trim() })), out, after,
      Object.assign({ id: "reset", danger: true, fields: [{ name: "to", label: "Position (or now)", value: "1" }] }, opts)));
}

pages.consumer = (view, args) => {
  const name = args[0];
  const msg = el("div"), out = el("div");
  view.append(el("h1", {}, "Consumer ", el("code", {}, name)), msg, out);
  const refresh = () => api("GET", "/subscriptions/" + enc(name)).then((c) => {
    const parts = [
      el("div", { class: "bar" }, badge(c.status), el("span", {}, c.kind),
        el("a", { href: "#/dlq/" + enc(name) }, "DLQ (" + c.dlq_depth + ")"), consumerActions(c, msg, refresh)),
      el("div", { class: "cards" },
        [["Checkpoint", c.checkpoint], ["Lag (events)", c.lag_events], ["Lag (ms)", c.lag_ms], ["Processed", c.processed],
         ["Failed", c.failed], ["Parked", c.parked]].map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v" }, fmtNum(v))))),
    ];
    if (c.last_error) parts.push(el("h2", {}, "Last error"), el("pre", {}, c.last_error));
    if (c.kind === "group") {
      const members = c.consumers || [];
      parts.push(el("h2", {}, "Members (" + members.length + ")  in flight " + fmtNum(c.in_flight) + ", buffered " + fmtNum(c.buffered)),
        members.length ? el("div", { class: "scroll" }, el("table", { id: "members-table" },
          el("tr", {}, ["Consumer", "In flight", "Delivered", "Acked", "Nacked", "Timeouts", "Idle (ms)", ""].map((h) => el("th", {}, h))),
          members.map((m) => el("tr", {}, el("td", {}, m.name), el("td", {}, fmtNum(m.in_flight)), el("td", {}, fmtNum(m.delivered)),
            el("td", {}, fmtNum(m.acked)), el("td", {}, fmtNum(m.nacked)), el("td", {}, fmtNum(m.timeouts)), el("td", {}, fmtNum(m.idle_ms)),
            el("td", {}, action("Remove", "Remove consumer \u201c" + m.name + "\u201d from the group? Its unacked deliveries go to the others.",
              () => api("DELETE", "/groups/" + enc(name) + "/consumers/" + enc(m.name)), msg, refresh, { small: true, danger: true, id: "remove-member" }))))))
          : el("p", { class: "muted" }, "No consumer connected."));
    }
    parts.push(el("h2", {}, "Record"), el("pre", { id: "consumer-record" }, pretty(c)));
    fill(out, ...parts);
  }).catch((e) => fill(out, errorBox(e)));
  refresh();
  const t = setInterval(refresh, 3000);
  return () => clearInterval(t);
};

pages.dlq = (view, args, query) => {
  const name = args[0];
  const after = query.get("after") || "";
  const msg = el("div", { id: "dlq-message" }), out = el("div"), detail = el("div");
  const base = "/subscriptions/" + enc(name) + "/dlq";
  view.append(el("h1", {}, "Dead letters of ", el("a", { href: "#/consumer/" + enc(name) }, name)), msg, out, detail);
  const refresh = () => api("GET", base + qs({ after, limit: 100 })).then((r) => {
    fill(out,
      el("div", { class: "bar" }, el("span", { id: "dlq-depth" }, "depth " + r.depth),
        action("Retry all", "Deliver every parked event of \u201c" + name + "\u201d again, in position order?", () => api("POST", base + "/retry"), msg, refresh, { id: "retry-all" }),
        action("Purge", "Discard every parked event of \u201c" + name + "\u201d? This cannot be undone.", () => api("DELETE", base), msg, refresh, { danger: true, id: "purge" })),
      r.entries.length ? el("div", { class: "scroll" }, el("table", { id: "dlq-table" },
        el("tr", {}, ["Position", "Stream", "Type", "Attempts", "Last error", "First failure", "Last failure", "Blocked by", ""].map((h) => el("th", {}, h))),
        r.entries.map((d) => el("tr", { "data-position": d.position },
          el("td", {}, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); show(d.position); } }, String(d.position))),
          el("td", {}, d.stream + " @" + d.stream_position), el("td", {}, d.event_type), el("td", {}, fmtNum(d.attempts)),
          el("td", { class: "wrap" }, d.last_error), el("td", {}, d.first_failure_at), el("td", {}, d.last_failure_at),
          el("td", {}, d.blocked_by === null ? "" : String(d.blocked_by)),
          el("td", {}, el("span", { class: "bar" },
            action("Retry", "Deliver the event at position " + d.position + " to \u201c" + name + "\u201d again?", () => api("POST", base + "/" + d.position + "/retry"), msg, refresh, { small: true, id: "retry" }),
            action("Discard", "Discard the parked event at position " + d.position + "? It will not be delivered again.", () => api("DELETE", base + "/" + d.position), msg, refresh, { small: true, danger: true, id: "discard" })))))))
        : el("p", { class: "muted", id: "dlq-empty" }, "Nothing parked."),
      r.next_after ? el("a", { href: "#/dlq/" + enc(name) + qs({ after: r.next_after }) }, "Next →") : null);
  }).catch((e) => fill(out, errorBox(e)));
  function show(pos) {
    api("GET", base + "/" + pos).then((r) => fill(detail, el("h2", {}, "Entry " + pos), el("pre", {}, pretty(r))))
      .catch((e) => fill(detail, errorBox(e)));
  }
  refresh();
  const t = setInterval(refresh, 5000);
  return () => clearInterval(t);
};

pages.projections = (view) => {
  const msg = el("div"), out = el("div");
  const newBtn = action("New projection", "Create or replace a Lua projection (docs/http-api.md, Projections).",
    (v) => api("PUT", "/projections/" + enc(v.name.trim()), v.source, "text/x-lua"), msg, () => refresh(),
    { id: "new-projection", fields: [{ name: "name", label: "Name" }, { name: "source", label: "Lua script", textarea: true,
      value: "return {\n  partition = \"none\",\n  init = function() return { count = 0 } end,\n  handlers = {\n    [\"*\"] = function(s, e) s.count = s.count + 1 end,\n  },\n}\n" }] });
  view.append(el("h1", {}, "Projections"), el("div", { class: "bar" }, newBtn), msg, out);
  const refresh = () => api("GET", "/projections?limit=1000").then((r) => {
    fill(out, r.projections.length ? el("div", { class: "scroll" }, el("table", { id: "projections-table" },
      el("tr", {}, ["Name", "Status", "Running", "Checkpoint", "Lag (events)", "Events/s", "Generation", "Rebuild", "DLQ"].map((h) => el("th", {}, h))),
      r.projections.map((p) => el("tr", {},
        el("td", {}, el("a", { href: "#/projection/" + enc(p.name) }, p.name)), el("td", {}, badge(p.status)),
        el("td", {}, p.running ? "yes" : "no"), el("td", {}, fmtNum(p.checkpoint)), el("td", {}, fmtNum(p.lag_events)),
        el("td", {}, p.events_per_second === undefined ? "–" : p.events_per_second.toFixed(1)), el("td", {}, fmtNum(p.generation)),
        el("td", {}, p.rebuild ? p.rebuild.percent.toFixed(1) + " %" : ""),
        el("td", {}, el("a", { href: "#/dlq/" + enc(p.name) }, fmtNum(p.dlq_depth)))))))
      : el("p", { class: "muted" }, "No projection yet."));
  }).catch((e) => fill(out, errorBox(e)));
  refresh();
  const t = setInterval(refresh, 3000);
  return () => clearInterval(t);
};

pages.projection = (view, args, query) => {
  const name = args[0];
  const base = "/projections/" + enc(name);
  const msg = el("div"), head = el("div"), stateBox = el("div", { id: "projection-state" });
  const bar = el("div"), barFill = el("div"), label = el("span", {}, "");
  const progress = el("div", { class: "progress", id: "rebuild-progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, barFill, label);
  bar.append(progress);
  bar.hidden = true;
  let watching = null;    /* the generation before our rebuild, while we wait for its swap */
  let timer = null;
  let lastGen = null;
  /* the swap raises the generation: that is the 100 %, however fast the copy was */
  const rebuildBtn = () => action("Rebuild", "Recompute the state of \u201c" + name + "\u201d from a position? The current state answers queries until the copy reaches the head.",
    async (v) => {
      if (watching === null) watching = lastGen;
      setProgress(0, "rebuild requested");
      try {
        return await api("POST", base + "/rebuild" + qs({ from: v.from.trim() }));
      } catch (e) {
        watching = null;
        bar.hidden = true;
        throw e;
      }
    }, msg, () => { clearTimeout(timer); refresh(); },
    { id: "rebuild", fields: [{ name: "from", label: "From position", value: "1" }] });
  function setProgress(pct, text) {
    bar.hidden = false;
    barFill.style.width = pct + "%";
    progress.setAttribute("aria-valuenow", String(pct));
    label.textContent = text;
  }
  let loop = 0;             /* only the latest refresh schedules the next one */
  async function refresh() {
    const mine = ++loop;
    let p;
    try { p = await api("GET", base); } catch (e) { fill(head, errorBox(e)); return; }
    if (mine !== loop) return;
    lastGen = p.generation;
    if (p.rebuild) {
      setProgress(p.rebuild.percent, "rebuilding: " + p.rebuild.percent.toFixed(1) + " % (position " + p.rebuild.position + ")");
      if (watching === null) watching = p.generation;
    } else if (watching !== null && p.generation > watching) {
      setProgress(100, "rebuilt: 100 % — generation " + p.generation);
      watching = null;
      loadState();
    }
    fill(head,
      el("div", { class: "bar" }, badge(p.status), el("span", {}, p.running ? "running" : "not running"),
        el("a", { href: "#/dlq/" + enc(name) }, "DLQ (" + p.dlq_depth + ")"), rebuildBtn(), consumerActions(p, msg, refresh),
        action("Delete", "Delete projection \u201c" + name + "\u201d with its state and DLQ?", () => api("DELETE", base), msg, () => go("#/projections"), { danger: true, id: "delete" })),
      el("div", { class: "cards" },
        [["Checkpoint", fmtNum(p.checkpoint)], ["Lag (events)", fmtNum(p.lag_events)], ["Lag (ms)", fmtNum(p.lag_ms)],
         ["Events/s", p.events_per_second.toFixed(1)], ["Generation", fmtNum(p.generation)], ["Processed", fmtNum(p.processed)]]
          .map(([k, v]) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: "v", id: "proj-" + k.toLowerCase().replace(/\W+/g, "-") }, v)))),
      p.runner_error ? el("div", { class: "error" }, "runner: " + p.runner_error) : null,
      p.last_error ? el("details", {}, el("summary", {}, "Last error"), el("pre", {}, p.last_error)) : null);
    timer = setTimeout(refresh, p.rebuild || watching !== null ? 250 : 2000);
  }
  const partAfter = query.get("after") || "";
  async function loadState() {
    try {
      const s = await api("GET", base + "/state");
      fill(stateBox, el("h2", {}, "State"), el("pre", {}, pretty(s)));
      return;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) { fill(stateBox, errorBox(e)); return; }
    }
    /* partitioned (or nothing applied yet): list the partitions */
    try {
      const r = await api("GET", base + "/partitions" + qs({ after: partAfter, limit: 100 }));
      const one = el("div");
      fill(stateBox, el("h2", {}, "Partitions"),
        r.partitions.length ? el("div", { class: "bar", id: "partitions" }, r.partitions.map((k) => el("a", { href: "#", onclick: (ev) => {
          ev.preventDefault();
          api("GET", base + "/state/" + enc(k)).then((s) => fill(one, el("h2", {}, "Partition ", el("code", {}, k)), el("pre", {}, pretty(s))))
            .catch((er) => fill(one, errorBox(er)));
        } }, k))) : el("p", { class: "muted" }, "No state yet: no event applied."),
        r.next_after ? el("a", { href: "#/projection/" + enc(name) + qs({ after: r.next_after }) }, "More partitions →") : null, one);
    } catch (e) {
      fill(stateBox, errorBox(e));
    }
  }
  view.append(el("h1", {}, "Projection ", el("code", {}, name)), msg, bar, head, stateBox);
  refresh();
  loadState();
  return () => clearTimeout(timer);
};

/* The CQRS side: command types, named queries, aggregates (docs/http-api.md, Commands, queries and aggregates). */
pages.app = (view) => {
  const cmdOut = el("div", { id: "command-result" }), qOut = el("div", { id: "query-result" }), aOut = el("div", { id: "aggregate-result" });
  const types = el("select", { name: "command_type" }), queries = el("select", { name: "query" }), aggTypes = el("select", { name: "type" });
  const cmdId = el("input", { name: "aggregate_id", placeholder: "aggregate id" });
  const cmdData = el("textarea", { name: "data", placeholder: "{\"field\": \"value\"}" });
  cmdData.value = "{}";
  const qParams = el("input", { name: "params", placeholder: "status=paid&sort=customer" });
  const aggId = el("input", { name: "id", placeholder: "aggregate id" });
  const lists = el("div");
  view.append(el("h1", {}, "Commands, queries and aggregates"), lists,
    el("div", { class: "panel" }, el("h2", {}, "Run a command"),
      el("div", { class: "bar" }, types, cmdId,
        action("Send", "Run this command? Its events are appended when the aggregate accepts it.", async () => {
          let data;
          try { data = JSON.parse(cmdData.value || "{}"); } catch (e) { throw new Error("data is not JSON: " + e.message); }
          return api("POST", "/commands/" + enc(types.value), { aggregate_id: cmdId.value, data });
        }, cmdOut, null, { id: "send-command" })),
      cmdData, cmdOut),
    el("div", { class: "panel" }, el("h2", {}, "Ask a query"),
      el("form", { class: "bar", onsubmit: (ev) => {
        ev.preventDefault();
        api("GET", "/queries/" + enc(queries.value) + (qParams.value ? "?" + qParams.value.replace(/^\?/, "") : ""))
          .then((r) => fill(qOut, el("pre", {}, pretty(r)))).catch((e) => fill(qOut, errorBox(e)));
      } }, queries, qParams, el("button", { type: "submit" }, "Ask")), qOut),
    el("div", { class: "panel" }, el("h2", {}, "Load an aggregate"),
      el("form", { class: "bar", onsubmit: (ev) => {
        ev.preventDefault();
        const p = "/aggregates/" + enc(aggTypes.value) + "/" + enc(aggId.value);
        Promise.all([api("GET", p), api("GET", p + "/snapshots")])
          .then(([a, s]) => fill(aOut, el("pre", {}, pretty(a)), el("h2", {}, "Snapshots"), el("pre", {}, pretty(s))))
          .catch((e) => fill(aOut, errorBox(e)));
      } }, aggTypes, aggId, el("button", { type: "submit" }, "Load")), aOut));
  const fieldsOf = {};
  const fieldsLine = el("div", { class: "muted", id: "command-fields" });
  types.addEventListener("change", () => { fieldsLine.textContent = fieldsOf[types.value] || ""; });
  cmdData.before(fieldsLine);
  Promise.all([api("GET", "/commands"), api("GET", "/queries"), api("GET", "/aggregates")]).then(([c, q, a]) => {
    for (const t of c.commands || []) {
      fieldsOf[t.command_type] = "data fields: " + ((t.fields || []).map((f) => f.name + " (" + f.type + (f.required ? ", required" : "") + ")").join(", ") || "any");
    }
    const names = (x, key) => (Array.isArray(x) ? x : x[key] || []).map((i) => (typeof i === "string" ? i : i.name || i.command_type));
    fill(types, ...names(c, "commands").map((n) => el("option", {}, n)));
    fieldsLine.textContent = fieldsOf[types.value] || "";
    fill(queries, ...names(q, "queries").map((n) => el("option", {}, n)));
    fill(aggTypes, ...names(a, "aggregates").map((n) => el("option", {}, n)));
    fill(lists, el("details", {}, el("summary", {}, "Command types, queries and aggregate types as the server describes them"),
      el("pre", {}, pretty({ commands: c, queries: q, aggregates: a }))));
  }).catch((e) => fill(lists, errorBox(e)));
};

/*
 * SAGAS (docs/http-api.md, Sagas): the instances that need a look first,
 * counts by state, and one instance's steps, timeline and data with the
 * operator's actions.  The listing comes from the saga index; the counts
 * from the evstore_saga_instances gauge of /metrics (the same index), so
 * they cover every instance, not just the page shown.
 */
const SAGA_STATES = ["running", "compensating", "paused", "compensation_failed", "failed", "compensated", "completed"];
const SAGA_FINISHED = new Set(["completed", "compensated", "failed"]);
/* the order of the listing on the page: what an operator must act on first */
const SAGA_RANK = { compensation_failed: 0, compensating: 2, paused: 3, failed: 4, running: 5, compensated: 6, completed: 7 };
const SAGA_STUCK_S = 60;     /* unfinished with no transition for this long: "stuck", listed right after compensation_failed */

function ageOf(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "–";
  let s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 90) return s + " s ago";
  if ((s = Math.round(s / 60)) < 90) return s + " min ago";
  if ((s = Math.round(s / 60)) < 48) return s + " h ago";
  return Math.round(s / 24) + " d ago";
}
function sagaStuck(s) { return !SAGA_FINISHED.has(s.status) && s.status !== "paused" && (Date.now() - Date.parse(s.updated_at)) / 1000 >= SAGA_STUCK_S; }
function sagaRank(s) { return s.status === "compensation_failed" ? 0 : sagaStuck(s) ? 1 : SAGA_RANK[s.status] ?? 8; }

/* {type: {status: n}} from the evstore_saga_instances samples of /metrics */
function sagaCounts(text) {
  const out = {};
  for (const m of text.matchAll(/^evstore_saga_instances\{saga_type="((?:[^"\\]|\\.)*)",status="(\w+)"\} (\d+)$/gm)) {
    (out[m[1]] = out[m[1]] || {})[m[2]] = Number(m[3]);
  }
  return out;
}

pages.sagas = (view, args, query) => {
  const type = query.get("type") || "", status = query.get("status") || "", stuck = query.get("stuck_for") || "";
  const after = query.get("after") || "";
  const typeSel = el("select", { name: "type" }, el("option", { value: "" }, "every type"));
  const statusSel = el("select", { name: "status" }, el("option", { value: "" }, "every state"),
    SAGA_STATES.map((s) => el("option", { value: s }, s)));
  statusSel.value = status;
  const stuckIn = el("input", { name: "stuck_for", placeholder: "stuck for (30s, 5m…)", value: stuck, size: 14 });
  const counts = el("div", { class: "cards", id: "saga-counts" }), out = el("div", { id: "sagas-list" }), err = el("div");
  view.append(el("h1", {}, "Sagas"),
    el("form", { class: "bar", id: "saga-filter", onsubmit: (ev) => {
      ev.preventDefault();
      go("#/sagas" + qs({ type: typeSel.value, status: statusSel.value, stuck_for: stuckIn.value.trim() }));
    } }, typeSel, statusSel, stuckIn, el("button", { type: "submit" }, "Filter")),
    err, counts, out);
  const filterHref = (st) => "#/sagas" + qs({ type, status: st, stuck_for: stuck });
  async function refresh() {
    let r, c = {};
    try {
      const path = (type ? "/sagas/" + enc(type) : "/sagas") + qs({ status, stuck_for: stuck, after, limit: 1000 });
      [r, c] = await Promise.all([api("GET", path), api("GET", "/metrics").then(sagaCounts, () => ({}))]);
      fill(err);
    } catch (e) {
      fill(err, errorBox(e));
      return;
    }
    if (typeSel.options.length === 1) {
      const types = new Set(Object.keys(c).concat(r.sagas.map((s) => s.type), type ? [type] : []));
      typeSel.append(...[...types].sort().map((t) => el("option", { value: t }, t)));
      typeSel.value = type;
    }
    const by = {};
    for (const [t, m] of Object.entries(c)) if (!type || t === type) for (const [s, n] of Object.entries(m)) by[s] = (by[s] || 0) + n;
    fill(counts, SAGA_STATES.map((s) => el("a", { class: "card count" + (by[s] && s === "compensation_failed" ? " alarm" : "") + (s === status ? " on" : ""),
      href: filterHref(s === status ? "" : s), "data-status": s },
    el("div", { class: "k" }, s.replace("_", " ")), el("div", { class: "v" }, fmtNum(by[s] || 0)))));
    const list = r.sagas.slice().sort((a, b) => sagaRank(a) - sagaRank(b) || a.updated_at.localeCompare(b.updated_at) ||
      a.type.localeCompare(b.type) || a.id.localeCompare(b.id));
    fill(out, list.length ? el("div", { class: "rows", id: "sagas-rows" }, list.map((s) => el("div", {
      class: "row saga", "data-id": s.id, "data-type": s.type, "data-status": s.status },
    el("div", { class: "line" },
      el("a", { class: "mono", href: "#/saga/" + enc(s.type) + "/" + enc(s.id) }, s.type + "/" + s.id),
      badge(s.status), sagaStuck(s) ? el("span", { class: "badge stuck" }, "stuck") : null,
      s.step ? el("span", {}, "step ", el("strong", {}, s.step.name), s.step.attempt > 1 ? " (attempt " + s.step.attempt + ")" : "") : null,
      el("span", { class: "muted", title: s.updated_at }, "last change " + ageOf(s.updated_at)),
      s.next_due ? el("span", { class: "muted", title: s.next_due }, "next due " + s.next_due) : null),
    s.last_error ? el("div", { class: "saga-error" }, s.last_error) : null)))
      : el("p", { class: "muted", id: "sagas-empty" }, "No saga instance" + (status || type || stuck ? " matches." : " yet.")),
    r.next_after ? el("a", { id: "sagas-next", href: "#/sagas" + qs({ type, status, stuck_for: stuck, after: r.next_after }) }, "Next page →") : null);
  }
  refresh();
  const t = setInterval(refresh, 3000);
  return () => clearInterval(t);
};

/* Times in a saga's events are nanoseconds since the epoch: shown as ISO times. */
function sagaValue(k, v) {
  if (typeof v === "number" && v > 1e17 && /deadline|_at$|until|due/.test(k)) return new Date(v / 1e6).toISOString();
  return typeof v === "object" && v !== null ? el("code", {}, JSON.stringify(v)) : String(v);
}

/* One timeline entry: its time, type and whatever else the event says (commands, answers, errors, timers). */
function sagaEntry(type, id, t) {
  const cls = /Failed|Error|TimedOut|Refused/.test(t.type) ? "bad" : /Retry|Compensat|Paused|Skipped/.test(t.type) ? "warn" : "";
  const rest = Object.keys(t).filter((k) => !["version", "position", "type", "at"].includes(k));
  return el("li", { class: "tl " + cls, "data-type": t.type },
    el("div", { class: "head" },
      el("a", { class: "mono", href: "#/stream/" + enc("saga-" + type + "-" + id) + "?from=" + t.version }, "v" + t.version),
      el("span", { class: "type" }, t.type), el("span", { class: "muted" }, t.at)),
    rest.length ? el("div", { class: "kv" }, rest.map((k) => el("span", {}, el("span", { class: "muted" }, k + " "), sagaValue(k, t[k])))) : null);
}

/* Which actions the routes offer in a state (docs/http-api.md): the server still decides, and a 409 is shown as it says. */
function sagaActions(s) {
  const st = s.status, from = s.paused_from;
  return {
    pause: st === "running" || st === "compensating",
    resume: st === "paused",
    retry: st === "running" || st === "compensating" || st === "compensation_failed",
    skip: st === "running" || st === "compensating" || st === "compensation_failed",
    compensate: st === "running" || (st === "paused" && from === "running"),
    abort: !SAGA_FINISHED.has(st),
  };
}

pages.saga = (view, args) => {
  const [type, id] = args;
  const base = "/sagas/" + enc(type) + "/" + enc(id);
  const msg = el("div", { id: "saga-message" }), head = el("div", { id: "saga-head" }), steps = el("div", { id: "saga-steps" });
  const timeline = el("ol", { class: "timeline", id: "saga-timeline" }), data = el("pre", { id: "saga-data" });
  view.append(el("h1", {}, el("a", { href: "#/sagas" + qs({ type }) }, "Sagas"), " / ", el("code", {}, type + "/" + id)),
    msg, head, el("h2", {}, "Steps"), steps, el("h2", {}, "Timeline"), timeline, el("h2", {}, "Data"), data);
  const reason = { name: "reason", label: "Reason (kept in the saga's history)", placeholder: "optional" };
  const defs = [
    ["pause", "Pause", "Pause saga " + type + "/" + id + "? Its timers stop until it is resumed.", [reason]],
    ["resume", "Resume", "Resume saga " + type + "/" + id + "? Its timers shift by the pause.", []],
    ["retry", "Retry", "Run the current step's retry (or the failed compensations) of " + type + "/" + id + " now, with a fresh attempt budget?", []],
    ["skip", "Skip", "Count the current step (or the current compensations) of " + type + "/" + id + " as done without running it?",
      [{ name: "step", label: "Step (one of the current parallel group; empty: the current step)", placeholder: "optional" }, reason]],
    ["compensate", "Compensate", "Undo what " + type + "/" + id + " did, newest first?", [reason]],
    ["abort", "Abort", "Abort " + type + "/" + id + "? It ends as failed and nothing is compensated.", [reason]],
  ];
  let timer = null, loop = 0;
  async function refresh() {
    const mine = ++loop;
    clearTimeout(timer);
    let s;
    try { s = await api("GET", base); } catch (e) { if (mine === loop) fill(head, errorBox(e)); return; }
    if (mine !== loop) return;
    const can = sagaActions(s);
    const buttons = defs.filter(([a]) => can[a]).map(([a, label, question, fields]) =>
      action(label, question, (v) => api("POST", base + "/" + a + qs(v)), msg, refresh, {
        id: a, fields, danger: a === "abort" || a === "compensate",
        /* the answer is the whole instance: its state in a line, the rest folded */
        show: (r) => el("span", {}, "now ", el("strong", {}, r.status), r.step ? " at step " + r.step.name : "", " (version " + r.version + ")",
          el("details", {}, el("summary", {}, "The answer"), el("pre", {}, JSON.stringify(r)))),
      }));
    const card = (k, v, cid) => el("div", { class: "card", id: cid }, el("div", { class: "k" }, k), el("div", { class: "v small" }, v));
    fill(head,
      el("div", { class: "bar", id: "saga-actions" }, badge(s.status),
        s.paused_from ? el("span", { class: "muted" }, "paused from " + s.paused_from) : null,
        buttons.length ? buttons : el("span", { class: "muted" }, "finished: no action applies")),
      s.last_error ? el("div", { class: "error", id: "saga-last-error" }, el("strong", {}, "Last error "), s.last_error) : null,
      el("div", { class: "cards" },
        card("Status", s.status, "saga-status"),
        card("Step", s.step ? s.step.name + " #" + s.step.index + ", attempt " + s.step.attempt : "–", "saga-step"),
        card("Started", s.started_at), card("Last change", s.updated_at + " (" + ageOf(s.updated_at) + ")"),
        card("Next due", s.next_due || "–"), card("Deadline", s.deadline || "–"), card("Version", fmtNum(s.version), "saga-version"),
        card("Correlation", el("a", { href: "#/related/correlation_id/" + s.correlation_id }, s.correlation_id)),
        card("Stream", el("a", { href: "#/stream/" + enc(s.stream) }, s.stream)),
        s.lease ? card("Lease", s.lease.node + " until " + s.lease.until) : null));
    fill(steps, el("div", { class: "rows" }, s.steps.map((p, i) => el("div", { class: "row step", "data-step": p.name },
      el("div", { class: "line" },
        el("span", { class: "mono" }, String(i)), el("strong", {}, p.name), badge(p.status),
        el("span", { class: "muted" }, "group " + p.group + ", attempt " + p.attempt),
        p.accepted && p.accepted.length ? el("span", { class: "muted" }, "accepted " + JSON.stringify(p.accepted)) : null,
        p.deadline ? el("span", {}, "deadline " + p.deadline) : null, p.retry_at ? el("span", {}, "retry at " + p.retry_at) : null,
        p.compensation ? el("span", {}, "compensation ", badge(p.compensation.status), " attempt " + p.compensation.attempt +
          (p.compensation.retry_at ? ", retry at " + p.compensation.retry_at : "")) : null),
      p.last_error ? el("div", { class: "saga-error" }, p.last_error) : null))));
    fill(timeline, s.timeline.map((t) => sagaEntry(type, id, t)));
    data.textContent = pretty(s.data);
    if (!SAGA_FINISHED.has(s.status)) timer = setTimeout(refresh, 1500);
  }
  refresh();
  return () => { loop++; clearTimeout(timer); };
};

/*
 * SCHEMAS (docs/http-api.md, Schemas; docs/schemas.md): the registry's event
 * types with their versions, one version's JSON Schema, the type's
 * compatibility mode, deprecation, registering the next version (checked
 * first if the user asks), and validating data against a version.
 */
const SCHEMA_COMPAT = ["backward", "forward", "full", "none"];

pages.schemas = (view) => {
  const msg = el("div", { id: "schemas-message" }), out = el("div"), policy = el("div", { id: "schema-policy" });
  const typeIn = el("input", { name: "event_type", placeholder: "event type, e.g. OrderPlaced" });
  const body = el("textarea", { name: "schema", placeholder: "{\"type\": \"object\"}" });
  body.value = "{\n  \"type\": \"object\",\n  \"required\": [],\n  \"properties\": {}\n}\n";
  view.append(el("h1", {}, "Schemas"), policy, out,
    el("div", { class: "panel" }, el("h2", {}, "Register a schema"),
      el("p", { class: "muted" }, "The body is the JSON Schema; it becomes the type's next version (version 1 for a new type)."),
      el("div", { class: "bar" }, typeIn,
        action("Register", "Register this schema as the next version of the type? A version cannot be removed once registered.",
          () => api("PUT", "/schemas/" + enc(typeIn.value.trim()), body.value), msg, () => refresh(), { id: "register-new" })),
      body, msg));
  const refresh = () => api("GET", "/schemas").then((r) => {
    fill(out, r.types.length ? el("div", { class: "rows", id: "schema-types" }, r.types.map((t) => el("div", { class: "row", "data-type": t.event_type },
      el("div", { class: "line" },
        el("a", { href: "#/schema/" + enc(t.event_type) }, el("strong", {}, t.event_type)),
        el("span", {}, "latest v" + t.latest), el("span", { class: "muted" }, "compat " + t.compat),
        el("span", { class: "versions" }, t.versions.map((v) => el("a", { class: "badge" + (v.deprecated ? " paused" : ""),
          href: "#/schema/" + enc(t.event_type) + "?version=" + v.version, title: v.deprecated ? "deprecated" : "registered " + v.registered_at },
        "v" + v.version + (v.deprecated ? " deprecated" : ""))))))))
      : el("p", { class: "muted", id: "schemas-empty" }, "No schema registered yet: events of every type are stored as they come."));
  }).catch((e) => fill(out, errorBox(e)));
  api("GET", "/schema-policies/default").then((p) => fill(policy, el("p", { class: "muted" }, "Default policy: validation ",
    el("strong", {}, p.validation), ", deprecated versions ", el("strong", {}, p.deprecated), " (docs/schemas.md).")))
    .catch((e) => fill(policy, errorBox(e)));
  refresh();
};

pages.schema = (view, args, query) => {
  const type = args[0];
  const base = "/schemas/" + enc(type);
  const msg = el("div", { id: "schema-message" }), head = el("div"), versions = el("div", { id: "schema-versions" });
  const shown = el("div", { id: "schema-shown" }), valOut = el("div", { id: "validate-result" }), regOut = el("div", { id: "register-result" });
  const verSel = el("select", { name: "version" });
  const dataIn = el("textarea", { name: "data", placeholder: "{\"field\": \"value\"}" });
  dataIn.value = "{}";
  const next = el("textarea", { name: "schema" });
  let current = Number(query.get("version")) || 0;
  view.append(el("h1", {}, el("a", { href: "#/schemas" }, "Schemas"), " / ", el("code", {}, type)), msg, head, versions, shown,
    el("div", { class: "panel" }, el("h2", {}, "Validate data against a version"),
      el("form", { class: "bar", id: "validate-form", onsubmit: (ev) => {
        ev.preventDefault();
        const v = verSel.value;
        /* the answer is shown as the server sent it: a refusal names the pointer, keyword and schema path */
        api("POST", base + "/" + enc(v) + "/validate", dataIn.value, "application/json", true).then((text) => {
          let r = null;
          try { r = JSON.parse(text); } catch (e) { /* shown as it came */ }
          fill(valOut, r && r.valid === true ? el("div", { class: "ok" }, "valid against version " + v)
            : el("div", { class: "error", "data-valid": "false" }, el("strong", {}, "not valid against version " + v),
              r && r.message ? el("div", { class: "error-message" }, r.message) : null, el("pre", { class: "error-body" }, text)));
        }).catch((e) => fill(valOut, errorBox(e)));
      } }, el("label", { class: "f" }, "Version", verSel), el("button", { type: "submit", id: "validate" }, "Validate")),
      dataIn, valOut),
    el("div", { class: "panel" }, el("h2", {}, "Next version"),
      el("div", { class: "bar" },
        el("button", { type: "button", class: "ghost", id: "check", onclick: () => api("POST", base + "/check", next.value, "application/json", true)
          .then((text) => fill(regOut, el("div", { class: /"compatible":true/.test(text) ? "ok" : "error" }, el("pre", { class: "error-body" }, text))))
          .catch((e) => fill(regOut, errorBox(e))) }, "Check"),
        action("Register", "Register this schema as the next version of \u201c" + type + "\u201d?", () => api("PUT", base, next.value),
          regOut, () => refresh(), { id: "register" })),
      next, regOut));
  async function show(v) {
    current = v;
    try {
      const r = await api("GET", base + "/" + v);
      const schema = r.schema;
      delete r.schema;
      fill(shown, el("h2", {}, "Version " + v), el("pre", { id: "schema-json" }, pretty(schema)),
        el("details", {}, el("summary", {}, "Record"), el("pre", {}, pretty(r))));
      if (!next.value) next.value = pretty(schema);
    } catch (e) {
      fill(shown, errorBox(e));
    }
  }
  async function refresh() {
    let t;
    try { t = await api("GET", base); } catch (e) { fill(head, errorBox(e)); return; }
    const compat = el("select", { name: "compat" }, SCHEMA_COMPAT.map((c) => el("option", { value: c }, c)));
    compat.value = t.compat;
    fill(head, el("div", { class: "bar" }, el("span", {}, "latest v" + t.latest),
      el("label", { class: "f" }, "Compatibility", compat),
      action("Set mode", "Change the compatibility mode of \u201c" + type + "\u201d? It decides which next versions are accepted.",
        () => api("PUT", base + "/compat", { compat: compat.value }), msg, () => refresh(), { id: "set-compat" })));
    const verBase = (v) => base + "/" + v.version + "/deprecate";
    fill(versions, el("div", { class: "rows" }, t.versions.map((v) => el("div", { class: "row", "data-version": v.version },
      el("div", { class: "line" },
        el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); show(v.version); } }, el("strong", {}, "v" + v.version)),
        v.deprecated ? el("span", { class: "badge paused" }, "deprecated") : null,
        el("span", { class: "muted" }, "registered " + v.registered_at),
        v.migration_path ? el("span", { class: "muted" }, "migration " + v.migration_path) : null,
        v.upcast_to_next ? el("span", { class: "muted" }, "to v" + (v.version + 1) + ": " + v.upcast_to_next) : null,
        v.deprecated
          ? action("Undeprecate", "Mark version " + v.version + " of \u201c" + type + "\u201d current again?", () => api("DELETE", verBase(v)), msg, () => refresh(), { small: true, id: "undeprecate" })
          : action("Deprecate", "Mark version " + v.version + " of \u201c" + type + "\u201d deprecated? Appends of it then follow the deprecated policy.", () => api("POST", verBase(v)), msg, () => refresh(), { small: true, id: "deprecate" }))))));
    const keep = verSel.value;
    fill(verSel, t.versions.map((v) => el("option", { value: v.version }, "v" + v.version)));
    verSel.value = keep || String(t.latest);
    if (!current) current = t.latest;
    show(current);
  }
  refresh();
};

/* --------------------------------------------------------------- router */

let cleanup = null;

function go(hash) { if (location.hash === hash) route(); else location.hash = hash; }

function route() {
  const h = location.hash.replace(/^#\/?/, "") || "overview";
  const qi = h.indexOf("?");
  const path = qi < 0 ? h : h.slice(0, qi);
  const query = new URLSearchParams(qi < 0 ? "" : h.slice(qi + 1));
  const [page, ...rest] = path.split("/");
  const args = rest.map((a) => { try { return decodeURIComponent(a); } catch (e) { return a; } });
  if (cleanup) { try { cleanup(); } catch (e) { /* a page's own teardown: nothing to keep */ } }
  cleanup = null;
  const view = document.getElementById("view");
  fill(view);
  const render = pages[page];
  const navPage = { stream: "streams", related: "streams", consumer: "consumers", dlq: "consumers", projection: "projections", saga: "sagas", schema: "schemas" }[page] || page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === navPage);
  document.title = "evstore — " + navPage;
  if (!render) { view.append(el("h1", {}, "Not found"), el("p", {}, "No page \u201c" + page + "\u201d.")); return; }
  cleanup = render(view, args, query) || null;
}

function keyButton() {
  const b = document.getElementById("key-button");
  b.classList.toggle("set", !!apiKey());
  b.textContent = apiKey() ? "API key ✓" : "API key";
  b.onclick = async () => {
    const v = await ask("API key", "Sent as \u201cAuthorization: Bearer <key>\u201d with every request from this tab (kept in sessionStorage). Leave empty to send none.",
      [{ name: "key", label: "Key", value: apiKey() }], "Save");
    if (v === null) return;
    if (v.key.trim()) sessionStorage.setItem(KEY_STORE, v.key.trim()); else sessionStorage.removeItem(KEY_STORE);
    keyButton();
    route();
  };
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  keyButton();
  route();
  sample();
  setInterval(sample, SAMPLE_MS);
});
