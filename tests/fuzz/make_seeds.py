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
