/*
 * fuzz_lost.c — fuzz target for the payload of a LOST frame (record.h):
 * what `evstore repair` leaves where it removed damaged records.  Readers
 * decode it to name the lost range and when the repair ran, and the index
 * decodes it to mark the stream positions it held as lost.
 *
 * The input is one payload; the first 4 bytes (little-endian, when there
 * are 4) are the frame's event count, the rest is the payload.  Invariants:
 *   - evs__lost_next ends (EVS_DONE or EVS_ECORRUPT) within the header's
 *     entry count, every entry lies inside the payload and starts after the
 *     previous one, names a stream of 1..255 bytes and a range that starts
 *     at 1 or above;
 *   - evs__lost_valid (what the index, check and repair go by) accepts
 *     exactly the payloads that read to the end, whose ranges do not wrap
 *     past the largest position, and whose entries hold no more stream
 *     positions together than the frame's events (one lost event held one
 *     stream position); a refusal says why;
 *   - round trip: the entries of a valid payload are written again with
 *     evs__lost_size / evs__lost_encode, and reading that gives the same
 *     entries and time, and it is valid too.
 */
#define FUZZ_NAME "fuzz_lost"
#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "log/record.h"

#define MAX_ENTRIES 4096

typedef struct walked {
    evs_lost_stream e[MAX_ENTRIES];
    size_t n;
    int64_t at;
    int rc;
    uint64_t total;
    int wraps;
} walked;

static void walk(const uint8_t *p, size_t len, walked *w) {
    evs_lost_iter it = {0, 0};
    size_t prev_end = EVS_LOST_HEADER;
    w->n = 0;
    w->at = 0;
    w->total = 0;
    w->wraps = 0;
    for (;;) {
        evs_lost_stream e;
        int64_t at = 0;
        int rc = evs__lost_next(p, len, &it, &e, &at);
        if (rc != EVS_OK) {
            FUZZ_ASSERT(rc == EVS_DONE || rc == EVS_ECORRUPT, "rc %d", rc);
            w->rc = rc;
            break;
        }
        FUZZ_ASSERT(w->n < MAX_ENTRIES && w->n < evs__get32(p + 8), "more entries than the header says");
        const uint8_t *s = (const uint8_t *)e.stream;
        FUZZ_ASSERT(e.stream_len >= 1 && e.stream_len <= EVS_MAX_STREAM_NAME && s >= p + prev_end &&
                        s + e.stream_len <= p + len,
                    "entry %zu outside the payload", w->n);
        FUZZ_ASSERT(e.first >= 1 && e.count >= 1, "entry %zu: range %llu+%u", w->n, (unsigned long long)e.first,
                    e.count);
        if (e.first + e.count - 1 < e.first) w->wraps = 1;
        w->total += e.count;
        prev_end = (size_t)(s + e.stream_len - p);
        w->e[w->n++] = e;
        w->at = at;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t count = evs__get32(data);
    if (count == 0) count = 1;
    const uint8_t *p = data + 4;
    size_t len = size - 4;
    static walked a, b;
    walk(p, len, &a);
    char why[128] = "";
    int valid = evs__lost_valid(p, len, count, why, sizeof why) == EVS_OK;
    int want = a.rc == EVS_DONE && !a.wraps && a.total <= count;
    FUZZ_ASSERT(valid == want, "evs__lost_valid says %d (%s); %zu entries read (rc %d), %llu positions of %u", valid,
                why, a.n, a.rc, (unsigned long long)a.total, count);
    if (!valid) FUZZ_ASSERT(why[0], "refused without a reason");
    if (!valid || a.n == 0) return 0;
    size_t need = evs__lost_size(a.e, a.n);
    uint8_t *q = calloc(1, need);
    int64_t at = (int64_t)evs__get64(p);
    evs__lost_encode(q, at, a.e, a.n);
    walk(q, need, &b);
    FUZZ_ASSERT(b.rc == EVS_DONE && b.n == a.n && b.at == at, "re-encoded: %zu entries (rc %d), not %zu", b.n, b.rc,
                a.n);
    for (size_t i = 0; i < a.n; i++)
        FUZZ_ASSERT(a.e[i].first == b.e[i].first && a.e[i].count == b.e[i].count &&
                        a.e[i].stream_len == b.e[i].stream_len &&
                        memcmp(a.e[i].stream, b.e[i].stream, a.e[i].stream_len) == 0,
                    "entry %zu differs after a round trip", i);
    FUZZ_ASSERT(evs__lost_valid(q, need, count, why, sizeof why) == EVS_OK, "re-encoded payload refused: %s", why);
    free(q);
    return 0;
}
