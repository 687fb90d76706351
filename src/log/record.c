/*
 * record.c — encoding of one append (a log frame's payload).
 *
 * Why it lives in src/log/: it is the layout of the log's payloads, and
 * both the index (which turns a record into index entries, for the writer
 * and for recovery) and the store (which encodes appends and decodes
 * reads) use it.  The layers run io -> core -> log -> index -> store; the
 * lowest layer that every user sits on is the log, so the codec sits there
 * and every include of it points down.  It needs nothing but core; log.c
 * itself still treats payloads as opaque bytes and never calls it.
 *
 * One frame holds every event of one append, so an append is atomic by
 * construction: the frame's CRC either verifies and all events exist, or it
 * does not and none do.  Global positions are not stored per event: event i
 * of a frame has global position frame.first_gpos + i and stream position
 * first_stream_position + i.
 *
 * Payload layout, little-endian, offsets in bytes:
 *
 *   0   u64  first_stream_position   patched by the writer
 *   8   i64  recorded_at (ns)        patched by the writer
 *   16  u16  stream_len (1..255)
 *   18  ...  stream name bytes, then zero padding to a multiple of 8
 *   then one entry per event, each starting at a multiple of 8:
 *   0   u32  entry_len (this entry, padding included)
 *   4   u32  event_version
 *   8   i64  occurred_at (ns)
 *   16  16B  event_id
 *   32  16B  causation_id (zero when absent)
 *   48  16B  correlation_id (zero when absent)
 *   64  u8   flags: 1 = has causation_id, 2 = has correlation_id
 *   65  u8   event_type_len (1..255)
 *   66  u8   stream_type_len (1..255)
 *   67  u8   reserved, zero
 *   68  u32  data_len
 *   72  u32  metadata_len
 *   76  u32  tags_len (0: no tags; else a JSON array of strings)
 *   80  ...  event_type, stream_type, data, metadata, tags; zero padding to 8
 *
 * data and metadata are the caller's bytes, unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "log/record.h"

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

int evs__record_encode(const char *stream, size_t stream_len, const evs_event_in *events, const evs_uuid *ids,
                       const char *const *stream_types, const size_t *stream_type_lens,
                       const char *const *tags_json, const size_t *tags_json_lens, size_t n, uint8_t **out,
                       size_t *out_len) {
    size_t total = pad8(18 + stream_len);
    for (size_t i = 0; i < n; i++) {
        const evs_event_in *e = &events[i];
        size_t mlen = e->metadata ? e->metadata_len : 2;
        total += pad8(EVS_REC_EVENT_HEADER + strlen(e->event_type) + stream_type_lens[i] + e->data_len + mlen +
                      tags_json_lens[i]);
    }
    uint8_t *p = calloc(1, total);
    if (!p) return evs__err(EVS_ENOMEM, "out of memory encoding an append of %zu bytes", total);
    evs__put16(p + 16, (uint16_t)stream_len);
    memcpy(p + 18, stream, stream_len);
    size_t off = pad8(18 + stream_len);
    for (size_t i = 0; i < n; i++) {
        const evs_event_in *e = &events[i];
        uint8_t *q = p + off;
        size_t tlen = strlen(e->event_type);
        const char *meta = e->metadata ? e->metadata : "{}";
        size_t mlen = e->metadata ? e->metadata_len : 2;
        size_t elen = pad8(EVS_REC_EVENT_HEADER + tlen + stream_type_lens[i] + e->data_len + mlen + tags_json_lens[i]);
        evs__put32(q, (uint32_t)elen);
        evs__put32(q + 4, e->event_version ? e->event_version : 1);
        evs__put64(q + 8, (uint64_t)e->occurred_at);
        memcpy(q + 16, ids[i].b, 16);
        uint8_t flags = 0;
        if (e->causation_id) {
            memcpy(q + 32, e->causation_id->b, 16);
            flags |= 1;
        }
        if (e->correlation_id) {
            memcpy(q + 48, e->correlation_id->b, 16);
            flags |= 2;
        }
        q[64] = flags;
        q[65] = (uint8_t)tlen;
        q[66] = (uint8_t)stream_type_lens[i];
        evs__put32(q + 68, (uint32_t)e->data_len);
        evs__put32(q + 72, (uint32_t)mlen);
        evs__put32(q + 76, (uint32_t)tags_json_lens[i]);
        uint8_t *w = q + EVS_REC_EVENT_HEADER;
        memcpy(w, e->event_type, tlen);
        w += tlen;
        memcpy(w, stream_types[i], stream_type_lens[i]);
        w += stream_type_lens[i];
        memcpy(w, e->data, e->data_len);
        w += e->data_len;
        memcpy(w, meta, mlen);
        w += mlen;
        if (tags_json_lens[i]) memcpy(w, tags_json[i], tags_json_lens[i]);
        off += elen;
    }
    *out = p;
    *out_len = total;
    return EVS_OK;
}

int evs__record_stream(const uint8_t *p, size_t len, const char **stream, size_t *stream_len) {
    if (len < 18) return EVS_ECORRUPT;
    size_t sl = evs__get16(p + 16);
    if (sl == 0 || 18 + sl > len) return EVS_ECORRUPT;
    *stream = (const char *)p + 18;
    *stream_len = sl;
    return EVS_OK;
}

uint64_t evs__record_first_stream_pos(const uint8_t *p) { return evs__get64(p + EVS_REC_OFF_STREAM_POS); }
int64_t evs__record_recorded_at(const uint8_t *p) { return (int64_t)evs__get64(p + EVS_REC_OFF_RECORDED_AT); }

size_t evs__record_first_event(const uint8_t *p, size_t len) {
    if (len < 18) return 0;
    size_t off = pad8(18 + (size_t)evs__get16(p + 16));
    return off <= len ? off : 0;
}

size_t evs__record_decode(const uint8_t *p, size_t len, size_t off, uint64_t first_gpos, uint32_t idx,
                          evs_event *ev) {
    if (off + EVS_REC_EVENT_HEADER > len) return 0;
    const uint8_t *q = p + off;
    uint32_t elen = evs__get32(q);
    if (elen < EVS_REC_EVENT_HEADER || elen > len - off) return 0;
    size_t tlen = q[65], slen = q[66];
    uint32_t dlen = evs__get32(q + 68), mlen = evs__get32(q + 72), glen = evs__get32(q + 76);
    if ((uint64_t)EVS_REC_EVENT_HEADER + tlen + slen + dlen + mlen + glen > elen) return 0;
    size_t sl = evs__get16(p + 16);
    ev->stream = (const char *)p + 18;
    ev->stream_len = sl;
    memcpy(ev->event_id.b, q + 16, 16);
    ev->has_causation_id = (q[64] & 1) != 0;
    ev->has_correlation_id = (q[64] & 2) != 0;
    memcpy(ev->causation_id.b, q + 32, 16);
    memcpy(ev->correlation_id.b, q + 48, 16);
    ev->event_version = evs__get32(q + 4);
    ev->occurred_at = (int64_t)evs__get64(q + 8);
    const char *w = (const char *)q + EVS_REC_EVENT_HEADER;
    ev->event_type = w;
    ev->event_type_len = tlen;
    w += tlen;
    ev->stream_type = w;
    ev->stream_type_len = slen;
    w += slen;
    ev->data = w;
    ev->data_len = dlen;
    w += dlen;
    ev->metadata = w;
    ev->metadata_len = mlen;
    w += mlen;
    ev->tags = glen ? w : NULL;
    ev->tags_len = glen;
    ev->stream_position = evs__get64(p) + idx;
    ev->global_position = first_gpos + idx;
    ev->recorded_at = (int64_t)evs__get64(p + 8);
    return off + elen;
}

int evs__record_valid(const uint8_t *p, size_t len, uint32_t count, char *why, size_t cap) {
    const char *stream;
    size_t slen;
    if (evs__record_stream(p, len, &stream, &slen) != EVS_OK) {
        snprintf(why, cap, "malformed stream name in a record whose checksum verifies");
        return EVS_ECORRUPT;
    }
    size_t off = evs__record_first_event(p, len);
    for (uint32_t i = 0; i < count; i++) {
        evs_event ev;
        size_t next = off ? evs__record_decode(p, len, off, 1, i, &ev) : 0;
        if (!next) {
            snprintf(why, cap, "event %u of %u is malformed in a record whose checksum verifies", i + 1, count);
            return EVS_ECORRUPT;
        }
        if (!ev.event_type_len || !ev.stream_type_len) {
            snprintf(why, cap, "event %u of %u has an empty %s in a record whose checksum verifies", i + 1, count,
                     ev.event_type_len ? "stream type" : "event type");
            return EVS_ECORRUPT;
        }
        off = next;
    }
    return EVS_OK;
}

/* ---------------------------------------------------- LOST payloads */

size_t evs__lost_size(const evs_lost_stream *e, size_t n) {
    size_t total = EVS_LOST_HEADER;
    for (size_t i = 0; i < n; i++) total += pad8(16 + e[i].stream_len);
    return total;
}

void evs__lost_encode(uint8_t *p, int64_t repaired_at, const evs_lost_stream *e, size_t n) {
    evs__put64(p, (uint64_t)repaired_at);
    evs__put32(p + 8, (uint32_t)n);
    size_t off = EVS_LOST_HEADER;
    for (size_t i = 0; i < n; i++) {
        evs__put64(p + off, e[i].first);
        evs__put32(p + off + 8, e[i].count);
        evs__put16(p + off + 12, (uint16_t)e[i].stream_len);
        memcpy(p + off + 16, e[i].stream, e[i].stream_len);
        off += pad8(16 + e[i].stream_len);
    }
}

int evs__lost_next(const uint8_t *p, size_t len, evs_lost_iter *it, evs_lost_stream *out, int64_t *repaired_at) {
    if (len < EVS_LOST_HEADER) return EVS_ECORRUPT;
    if (repaired_at) *repaired_at = (int64_t)evs__get64(p);
    if (it->off == 0) it->off = EVS_LOST_HEADER;
    if (it->i >= evs__get32(p + 8)) return EVS_DONE;
    size_t at = it->off;
    if (at + 16 > len) return EVS_ECORRUPT;
    size_t sl = evs__get16(p + at + 12);
    if (sl == 0 || sl > EVS_MAX_STREAM_NAME || at + 16 + sl > len) return EVS_ECORRUPT;
    out->first = evs__get64(p + at);
    out->count = evs__get32(p + at + 8);
    out->stream_len = sl;
    out->stream = (const char *)p + at + 16;
    if (out->first == 0 || out->count == 0) return EVS_ECORRUPT;
    it->off = at + pad8(16 + sl);
    it->i++;
    return EVS_OK;
}

int evs__lost_valid(const uint8_t *p, size_t len, uint32_t count, char *why, size_t cap) {
    evs_lost_iter it = {0, 0};
    evs_lost_stream e;
    uint64_t total = 0;
    int rc;
    while ((rc = evs__lost_next(p, len, &it, &e, NULL)) == EVS_OK) {
        if (e.first + e.count - 1 < e.first) {
            snprintf(why, cap, "lost-record entry %u: stream positions %llu+%u run past the largest position", it.i,
                     (unsigned long long)e.first, e.count);
            return EVS_ECORRUPT;
        }
        total += e.count;
        if (total > count) {
            snprintf(why, cap, "lost-record entries hold more stream positions than the %u events it stands for",
                     count);
            return EVS_ECORRUPT;
        }
    }
    if (rc != EVS_DONE) {
        snprintf(why, cap, "lost-record entry %u is malformed", it.i + 1);
        return EVS_ECORRUPT;
    }
    return EVS_OK;
}

int evs__frame_payload_check(void *arg, const evs_frame *f, char *why, size_t cap) {
    (void)arg;
    if (f->flags & EVS_FRAME_LOST) return evs__lost_valid(f->payload, f->len, f->count, why, cap);
    return evs__record_valid(f->payload, f->len, f->count, why, cap);
}
