#!/usr/bin/env python3
"""make_seeds.py - writes the seed corpora of the fuzz targets
(tests/fuzz/corpus/NAME/), so that every seed is reproducible and says
what it is for.  Run it from anywhere; it rewrites the seeds it knows and
leaves other files (inputs a fuzzer found and someone committed) alone.

Binary seeds (records, LOST payloads, log segments) are laid out here by
hand from docs/format.md, independently of the C encoder, so a seed that
decodes also checks that the two agree on the format."""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


# --------------------------------------------------------------- json
for i, s in enumerate([
    '{"event_type":"OrderPlaced","data":{"id":1,"items":[1,2,3]},"metadata":{"user":"u1"}}',
    '{"event_type":"A","data":{},"event_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","causation_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"}',
    '[1,-2.5e10,true,false,null,"\\u00e9\\ud83d\\ude00",{"a":{"b":[[]]}}]',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
    '{"event_type":"T","data":{"x":"\u00e9"},"event_version":3,"occurred_at":"2026-11-22T05:40:48.123Z","tags":["a","b"]}',
    '{"a":1,"a":2}',
]):
    put("json", "seed-%02d" % i, s)

# --------------------------------------------------------------- time
for i, s in enumerate([
    "2026-11-22T05:40:48.123456789Z", "2026-11-22T05:40:48Z", "2024-02-29", "1970-01-01T00:00:00+01:00",
    "0000-01-01T00:00:00Z", "9999-12-31T23:59:60.999999999-23:59", "2026-11-22 05:40:48.1z",
    "1767225600000000000", "9223372036854775807", "2023-02-29T00:00:00Z",
]):
    put("time", "seed-%02d" % i, s)

# --------------------------------------------------------------- query
for i, s in enumerate([
    "type=OrderPlaced,OrderShipped&stream_type=order&since=2026-01-01T00:00:00Z&until=1767225600000000000",
    "stream=order-1&limit=10&from=now&direction=backward",
    "stream_prefix=ord%C3%A9&correlation_id=0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b&from=18446744073709551614",
    "stream=a%2Fb&after=x%00y&limit=0&direction=sideways",
    "type=&stream=%E2%82%AC&stream_prefix=x&limit=-1&from=1e3",
    "after=%zz&since=yesterday&type=" + ",".join("t%d" % k for k in range(40)),
]):
    put("query", "seed-%02d" % i, s)


# --------------------------------------------------------------- records
def event_entry(etype, stype, data, meta=b"{}", tags=b"", version=1, occurred=1767225600000000000,
                eid=bytes(range(16)), caus=None, corr=None):
    flags = (1 if caus else 0) | (2 if corr else 0)
    body = etype + stype + data + meta + tags
    size = len(pad8(b"\0" * (80 + len(body))))
    hdr = struct.pack("<IIq16s16s16sBBBBIII", size, version, occurred, eid, caus or b"\0" * 16, corr or b"\0" * 16,
                      flags, len(etype), len(stype), 0, len(data), len(meta), len(tags))
    assert len(hdr) == 80
    return pad8(hdr + body)


def record(stream, events, first_spos=1, recorded=1767225600123456789):
    head = pad8(struct.pack("<QqH", first_spos, recorded, len(stream)) + stream)
    return head + b"".join(events)


REC1 = record(b"order-1", [event_entry(b"OrderPlaced", b"order", b'{"id":1}')])
REC3 = record(b"order-2", [
    event_entry(b"OrderPlaced", b"order", b'{"id":2}', eid=b"\1" * 16),
    event_entry(b"ItemAdded", b"order", b'{"sku":"a"}', b'{"user":"u"}', b'["x","y"]', 2, eid=b"\2" * 16,
                caus=b"\3" * 16),
    event_entry(b"OrderShipped", b"order", b"{}", eid=b"\4" * 16, corr=b"\5" * 16),
], first_spos=5)
put("record", "one-event", REC1)
put("record", "three-events", REC3)
put("record", "short-entry", REC3[:-40])
put("record", "stream-only", record(b"s", []))
put("record", "long-stream", record(b"x" * 255, [event_entry(b"T", b"", b"{}")]))


# --------------------------------------------------------------- LOST payloads
def lost(repaired_at, entries):
    out = struct.pack("<qII", repaired_at, len(entries), 0)
    for stream, first, count in entries:
        out += pad8(struct.pack("<QIHH", first, count, len(stream), 0) + stream)
    return out


put("lost", "none", struct.pack("<I", 1) + lost(1767225600000000000, []))
put("lost", "one", struct.pack("<I", 3) + lost(1767225600000000000, [(b"order-1", 4, 3)]))
put("lost", "two", struct.pack("<I", 5) + lost(1767225600000000000, [(b"order-1", 1, 2), (b"cart-9", 7, 3)]))
put("lost", "zero-fill", struct.pack("<I", 2) + lost(1, [(b"a", 1, 2)]) + b"\0" * 40)
put("lost", "too-many", struct.pack("<I", 1) + lost(5, [(b"a", 1, 0xFFFFFFFF)]))


# --------------------------------------------------------------- log (fuzz_log.c)
def frame(ctl, count, payload):
    return struct.pack("<BBH", ctl, count, len(payload)) + payload


LOST3 = lost(1767225600000000000, [(b"order-1", 2, 3)])
# mode A: a log from the input alone
put("log", "a-one-record", b"\x00" + frame(0, 1, REC1))
put("log", "a-two-records", b"\x00" + frame(0, 1, REC1) + frame(0, 3, REC3))
put("log", "a-records-and-lost", b"\x00" + frame(0, 1, REC1) + frame(0x02, 3, LOST3) + frame(0, 3, REC3))
put("log", "a-second-segment", b"\x00" + frame(0, 1, REC1) + frame(0x08, 3, REC3))
put("log", "a-bad-middle", b"\x00" + frame(0, 1, REC1) + frame(0x01, 3, REC3) + frame(0, 1, REC1))
put("log", "a-torn-tail", b"\x00" + frame(0, 1, REC1) + frame(0x01, 3, REC3))
put("log", "a-gap", b"\x00" + frame(0, 1, REC1) + frame(0x04, 3, REC3))
put("log", "a-short-files", b"\x08" + frame(0, 1, REC1) + frame(0x08, 3, REC3))
put("log", "a-count-mismatch", b"\x00" + frame(0, 5, REC3))
put("log", "a-raw", b"\x00" + frame(0x40, 0, struct.pack("<IIQIIQ", 40, 0, 1, 1, 0, 0) + b"x" * 40))
put("log", "a-header-from-input", b"\x06" + b"EVSLOG01" + struct.pack("<IIQQQQ", 1, 64, 1, 7, 1, 65536) +
    b"\0" * 16 + frame(0, 1, REC1))


# mode B: the base store, edited (ops: 0 patch, 1 zero, 2 cut, 3 frame, 4 no index, 5 flip)
def op(kind, seg, *rest):
    return bytes([kind, seg]) + b"".join(rest)


u16 = lambda v: struct.pack("<H", v)
put("log", "b-clean", b"\x01")
put("log", "b-killed", b"\x03")
put("log", "b-flip-first", b"\x01" + op(5, 0, u16(200), b"\x04"))
put("log", "b-flip-last", b"\x01" + op(5, 1, u16(100), b"\x40"))
put("log", "b-zero-range", b"\x03" + op(1, 0, u16(64), u16(3000)))
put("log", "b-patch", b"\x01" + op(0, 0, u16(96), b"\x07" + b"\xff" * 8))
put("log", "b-cut", b"\x01" + op(2, 1, u16(5000)))
put("log", "b-no-index", b"\x01" + op(4, 0) + op(5, 0, u16(400), b"\x01"))
put("log", "b-new-record", b"\x01" + op(3, 1, frame(0, 1, record(b"order-1", [event_entry(b"Late", b"order", b"{}")],
                                                                   first_spos=6))))
put("log", "b-new-lost", b"\x03" + op(3, 1, frame(0x02, 2, lost(7, [(b"order-9", 1, 2)]))))
put("log", "b-new-bad-record", b"\x01" + op(3, 1, frame(0, 2, REC1)))


# --------------------------------------------------------------- ws (fuzz_ws.c)
for i, s in enumerate([
    '{"op":"subscribe","from":"now","filter":{"type":["OrderPlaced","OrderShipped"],"stream_type":"order"}}',
    '{"op":"subscribe","from":0,"filter":{"type":"A","stream":"order-1"}}',
    '{"op":"subscribe","from":-1,"filter":{"type":"a,b","color":"red"}}',
    '{"op":"unsubscribe"}', '{"op":"ping"}', '{"op":"leave"}', '{"op":"dance"}', '[1,2]', '{"op":',
    '{"op":"consume","group":"billing","consumer":"worker-1"}',
    '{"op":"consume","group":"b\\u0000x","consumer":7}',
    '{"op":"ack","position":12,"attempt":1}',
    '{"op":"ack","deliveries":[{"position":1,"attempt":1},{"position":2,"attempt":4294967296}]}',
    '{"op":"nack","position":3,"attempt":2,"action":"park","reason":"bad data"}',
    '{"op":"nack","position":3,"attempt":2,"action":"later"}',
    '{"op":"subscribe","op":"ping"}',
    '{"op":"subscribe","filter":{"type":["' + '","'.join("t%d" % k for k in range(33)) + '"]}}',
    '{"op":"consume","group":"' + "\u00e9" * 70 + '","zzz":1}',
    '{"op":"subscribe","filter":{"tag":["vip","eu"],"causation_id":"0b7e7d1c-5a1f-4c5e-9d3b-2f1a6c8e4d20"}}',
    '{"op":"subscribe","from":5,"filter":{"tag":"a,b","causation_id":"nope","tags":[]}}',
    '{"op":"command","ref":1,"command_type":"Add","aggregate_id":"c-1","data":{"k":1},"expected_version":0}',
    '{"op":"command","ref":{"no":1},"command_type":"Add"}',
    '{"op":"command","ref":"' + "x" * 300 + '","data":[1.5e300,null,true]}',
]):
    put("ws", "seed-%02d" % i, s)
# what the fuzzer found, written out (the inputs it found are kept as found-*):
# a record that checksums but does not decode, with a torn tail after it in short files
put("log", "a-undecodable-then-torn", b"\x08" + frame(0, 1, REC1) + frame(0, 5, REC3) + frame(0x09, 2, REC1))
# damage from segment 1 over an all-zero segment 2 to a record in segment 3
put("log", "a-damage-over-a-zero-segment", b"\x00" + frame(0, 1, REC1) + frame(0x01, 2, REC3) + frame(0x48, 0, b"") +
    frame(0x08, 3, REC3))
# the same record twice (the harness gives it fresh identities)
put("log", "a-same-record-twice", b"\x00" + frame(0, 1, REC1) + frame(0, 1, REC1))


# --------------------------------------------------------------- proj (fuzz_proj.c)
TOTALS = '''return {
  filter = {event_types = {"OrderPlaced", "ItemAdded"}, stream_prefix = "order-"},
  partition = "stream",
  init = {count = 0, total = 0, tags = {}},
  handlers = {
    OrderPlaced = function(s, e) s.count = s.count + 1; s.total = s.total + (e.data.total or 0); return s end,
    ItemAdded = function(s, e) table.insert(s.tags, e.data.sku); return s end,
    ["$any"] = function(s, e) s.last = e.type end,
  },
}'''
CUSTOM = '''return {
  partition = function(e) return e.stream_type .. ":" .. tostring(e.position % 2) end,
  init = function() return {seen = {}} end,
  handlers = {["$any"] = function(s, e) s.seen[#s.seen + 1] = e.id; for k, v in pairs(e.data) do s[k] = v end end},
}'''
for i, s in enumerate([
    "\x00" + TOTALS, "\x00" + CUSTOM,
    "\x01" + '{"source":' + json_str(TOTALS) + '}' if False else "\x01" + '{"source": "return {handlers = {}}"}',
    "\x01" + '{"source": "return {handlers = {}}", "extra": 1}', "\x01" + '{"source": 5}', "\x01" + '{"source":',
    "\x00return {handlers = {}, partition = \"none\", filter = {event_types = {\"\", 3}}}",
    "\x00while true do end",
    "\x00local t = {} for i = 1, 1e9 do t[i] = i end return {handlers = {}}",
    "\x00return setmetatable({handlers = {}}, {__index = function(t, k) error(\"no \" .. k) end})",
    "\x00return {handlers = setmetatable({}, {__index = function() while true do end end})}",
    "\x00return {handlers = {OrderPlaced = function(s, e) return setmetatable({}, {__gc = function() while true do end end}) end}}",
    "\x00return {handlers = {OrderPlaced = function(s, e) s.x = 0/0; s.y = function() end; s[1.5] = 1 end}}",
    "\x00return {handlers = {ItemAdded = function(s, e) local a = {}; a.me = a; s.loop = a end}}",
    "\x00return {handlers = {}, filter = {event_types = setmetatable({}, {__len = function() return 1e9 end})}}",
    "\x02" + '{"a":[1,2,{"b":null}],"c":1.5e300,"d":-0.0,"e":"\u00e9","1":true}',
    "\x02" + '[[],[[]],{},{"x":{}}]', "\x02" + '"just a string"', "\x02" + '{"k":' * 70 + '1' + '}' * 70,
]):
    put("proj", "seed-%02d" % i, s)


# --------------------------------------------------------------- config (fuzz_config.c)
for i, s in enumerate([
    '{"listen": "127.0.0.1:0", "durability": "batch", "batch_ms": 5, "threads": 8, "max_body": 1048576}',
    '{"max_connections": 4096, "timeout": 600, "max_ws_message": 128, "heartbeat_ms": 10, "access_log": "-"}',
    '{"dir": "/tmp/x", "access_log": "access.log"}',
    '{"threads": 65}', '{"threads": "8"}', '{"threads": -1}', '{"threads": 1.5}', '{"colour": "blue"}',
    '{"durability": "fast"}', '{"listen": "localhost:99999"}', '{"listen": "[::1]:2113"}', '{"listen": ""}',
    '{"threads": 2, "threads": 3}', '[]', '', '{"max_body": 18446744073709551615}', '{"heartbeat_ms": 9}',
    '{"app_dir": "app", "snapshot_every": 0, "snapshot_keep": 1000, "command_retries": 3, "idempotency_window": 60,'
    ' "query_timeout_ms": 0, "query_cache": 0, "group_idle_ms": 86400000}',
    '{"snapshot_keep": 0, "app_dir": ""}', '{"idempotency_window": 2592001}',
]):
    put("config", "seed-%02d" % i, s)


# --------------------------------------------------------------- master key (fuzz_master_key.c)
HEXKEY = "00112233445566778899aabbccddeeff" * 2
for i, s in enumerate([
    HEXKEY + "\n", "  " + HEXKEY.upper() + "\r\n\n", "abcd", HEXKEY[:-1] + "g", "\t" + HEXKEY + " \t", "",
    HEXKEY + "00", HEXKEY[:32] + " " + HEXKEY[32:],
]):
    put("master_key", "seed-%02d" % i, s)
