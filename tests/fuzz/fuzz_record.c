/*
 * fuzz_record.c — fuzz target for the record codec (src/log/record.c): the
 * payload of one log frame, decoded by every read, by the index when it
 * rebuilds from the log, and by check.  A frame's checksum only proves the
 * bytes are the ones written, not that a writer of this build wrote them
 * (an older or damaged writer, or a checksum collision), so the decoder
 * must stay inside the payload whatever the bytes say.
 *
 * The input is one payload.  It is walked as the index and the readers walk
 * it: stream name, first event, then entry after entry (up to 10,000, the
 * most one append holds).  Invariants:
 *   - every view (stream, event type, stream type, data, metadata, tags)
 *     lies inside the payload and inside its entry, and each entry starts
 *     after the previous one (no loop, no step backwards);
 *   - positions are the frame's plus the entry's index;
 *   - evs__record_valid (what the index and repair go by) takes the payload
 *     as a record of k events exactly when its first k entries decode with
 *     non-empty event and stream types (checked for k = 1, the number that
 *     decode, and one more), and says why when it does not;
 *   - round trip: the decoded events that the encoder accepts (an event
 *     type of 1..255 bytes without NUL, a stream type of at most 255, a
 *     version above 0; what the store's validation guarantees) are encoded
 *     again with evs__record_encode, the writer's patched fields copied,
 *     and decoding that payload gives the same events, field by field.
 */
#define FUZZ_NAME "fuzz_record"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "log/record.h"

#define MAX_EVENTS 10000
#define FIRST_GPOS 1000

static int inside(const uint8_t *p, size_t len, const char *v, size_t n) {
    return (const uint8_t *)v >= p && n <= len && (const uint8_t *)v - p <= (ptrdiff_t)(len - n);
}

static size_t walk(const uint8_t *p, size_t len, evs_event *evs, size_t max) {
    const char *stream;
    size_t slen;
    if (evs__record_stream(p, len, &stream, &slen) != EVS_OK) return 0;
    FUZZ_ASSERT(slen >= 1 && inside(p, len, stream, slen), "stream name outside the payload");
    size_t off = evs__record_first_event(p, len), n = 0;
    FUZZ_ASSERT(off == 0 || (off % 8 == 0 && off <= len), "first event at %zu of %zu", off, len);
    while (off && off < len && n < max) {
        evs_event *ev = &evs[n];
        memset(ev, 0, sizeof *ev);
        size_t next = evs__record_decode(p, len, off, FIRST_GPOS, (uint32_t)n, ev);
        if (!next) break;
        FUZZ_ASSERT(next > off && next <= len, "entry at %zu: next %zu of %zu", off, next, len);
        FUZZ_ASSERT(inside(p, len, ev->stream, ev->stream_len) && inside(p, len, ev->event_type, ev->event_type_len) &&
                        inside(p, len, ev->stream_type, ev->stream_type_len) && inside(p, len, ev->data, ev->data_len) &&
                        inside(p, len, ev->metadata, ev->metadata_len) &&
                        (!ev->tags || inside(p, len, ev->tags, ev->tags_len)),
                    "entry at %zu: a view leaves the payload", off);
        FUZZ_ASSERT((const uint8_t *)ev->event_type >= p + off &&
                        ev->metadata + ev->metadata_len + ev->tags_len <= (const char *)p + next,
                    "entry at %zu: fields outside the entry", off);
        FUZZ_ASSERT(ev->global_position == FIRST_GPOS + n &&
                        ev->stream_position == evs__record_first_stream_pos(p) + n,
                    "entry %zu: positions", n);
        n++;
        off = next;
    }
    return n;
}

static int encodable(const evs_event *e) {
    return e->event_type_len >= 1 && e->event_type_len <= EVS_MAX_TYPE_NAME &&
           !memchr(e->event_type, 0, e->event_type_len) && e->stream_type_len <= EVS_MAX_TYPE_NAME &&
           e->event_version > 0;
}

static void round_trip(const uint8_t *p, size_t len, const evs_event *evs, size_t n) {
    evs_event_in *in = calloc(n, sizeof *in);
    evs_uuid *ids = calloc(n, sizeof *ids), *caus = calloc(n, sizeof *caus), *corr = calloc(n, sizeof *corr);
    const char **stypes = calloc(n, sizeof *stypes), **tags = calloc(n, sizeof *tags);
    size_t *stlens = calloc(n, sizeof *stlens), *taglens = calloc(n, sizeof *taglens);
    char **types = calloc(n, sizeof *types);
    size_t k = 0;
    const evs_event *keep[MAX_EVENTS];
    for (size_t i = 0; i < n; i++) {
        const evs_event *e = &evs[i];
        if (!encodable(e)) continue;
        types[k] = malloc(e->event_type_len + 1);
        memcpy(types[k], e->event_type, e->event_type_len);
        types[k][e->event_type_len] = 0;
        in[k].event_type = types[k];
        in[k].data = e->data;
        in[k].data_len = e->data_len;
        in[k].metadata = e->metadata;
        in[k].metadata_len = e->metadata_len;
        in[k].event_version = e->event_version;
        in[k].occurred_at = e->occurred_at;
        caus[k] = e->causation_id;
        corr[k] = e->correlation_id;
        if (e->has_causation_id) in[k].causation_id = &caus[k];
        if (e->has_correlation_id) in[k].correlation_id = &corr[k];
        ids[k] = e->event_id;
        stypes[k] = e->stream_type;
        stlens[k] = e->stream_type_len;
        tags[k] = e->tags;
        taglens[k] = e->tags_len;
        keep[k++] = e;
    }
    if (k) {
        uint8_t *q = NULL;
        size_t qlen = 0;
        FUZZ_ASSERT(evs__record_encode(evs[0].stream, evs[0].stream_len, in, ids, stypes, stlens, tags, taglens, k, &q,
                                       &qlen) == EVS_OK,
                    "encode: %s", evs_errmsg());
        memcpy(q, p, EVS_REC_HEADER); /* the writer patches these */
        static evs_event again[MAX_EVENTS];
        size_t m = walk(q, qlen, again, MAX_EVENTS);
        FUZZ_ASSERT(m == k, "re-encoded payload holds %zu events, not %zu", m, k);
        for (size_t i = 0; i < k; i++) {
            const evs_event *a = keep[i], *b = &again[i];
#define SAME(f, n) (a->n == b->n && memcmp(a->f, b->f, a->n) == 0)
            FUZZ_ASSERT(SAME(stream, stream_len) && SAME(event_type, event_type_len) &&
                            SAME(stream_type, stream_type_len) && SAME(data, data_len) &&
                            SAME(metadata, metadata_len) && (a->tags ? b->tags && SAME(tags, tags_len) : !b->tags) &&
                            memcmp(&a->event_id, &b->event_id, 16) == 0 &&
                            a->has_causation_id == b->has_causation_id &&
                            a->has_correlation_id == b->has_correlation_id &&
                            (!a->has_causation_id || memcmp(&a->causation_id, &b->causation_id, 16) == 0) &&
                            (!a->has_correlation_id || memcmp(&a->correlation_id, &b->correlation_id, 16) == 0) &&
                            a->event_version == b->event_version && a->occurred_at == b->occurred_at &&
                            a->recorded_at == b->recorded_at,
                        "event %zu differs after a round trip", i);
#undef SAME
        }
        free(q);
    }
    for (size_t i = 0; i < k; i++) free(types[i]);
    free(in), free(ids), free(caus), free(corr), free(stypes), free(tags), free(stlens), free(taglens), free(types);
}

static void check_valid(const uint8_t *p, size_t len, const evs_event *evs, size_t n, int header_ok, uint32_t k) {
    char why[128] = "";
    int want = header_ok && k <= n;
    for (size_t i = 0; want && i < k; i++) want = evs[i].event_type_len && evs[i].stream_type_len;
    int got = evs__record_valid(p, len, k, why, sizeof why) == EVS_OK;
    FUZZ_ASSERT(got == want, "evs__record_valid(%u) says %d (%s), %zu entries decode", k, got, why, n);
    if (!got) FUZZ_ASSERT(why[0], "refused without a reason");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static evs_event evs[MAX_EVENTS];
    size_t n = walk(data, size, evs, MAX_EVENTS);
    const char *stream;
    size_t slen;
    int header_ok = evs__record_stream(data, size, &stream, &slen) == EVS_OK;
    if (n < MAX_EVENTS) {
        check_valid(data, size, evs, n, header_ok, 1);
        if (n > 1) check_valid(data, size, evs, n, header_ok, (uint32_t)n);
        check_valid(data, size, evs, n, header_ok, (uint32_t)n + 1);
    }
    if (n) round_trip(data, size, evs, n);
    return 0;
}
