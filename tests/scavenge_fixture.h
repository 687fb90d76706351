/*
 * scavenge_fixture.h — what the scavenge tests share (unit, crash,
 * concurrency): a store filled with a mix of events that stay readable and
 * events that stream metadata hides, and a fingerprint of everything a
 * $all read shows, to compare before and after a scavenge.
 */
#ifndef EVS_SCAVENGE_FIXTURE_H
#define EVS_SCAVENGE_FIXTURE_H

#include "testutil.h"

/* One event as $all shows it: its positions and a hash of its JSON rendering (every field, every byte). */
typedef struct sf_event {
    uint64_t gpos, spos;
    uint64_t hash;
} sf_event;

typedef struct sf_snap {
    sf_event *ev;
    size_t n, cap;
    size_t lost_ranges;        /* ELOST reports */
    size_t scavenged_ranges;   /* of those, ones whose message says "scavenged" */
    uint64_t lost_positions;
} sf_snap;

static uint64_t sf_hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* Everything a forward $all read shows; EVS_OK or the read's error. */
static int sf_snapshot(evs_store *s, sf_snap *out) {
    memset(out, 0, sizeof *out);
    evs_reader *r;
    int rc = evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r);
    if (rc) return rc;
    const evs_event *e;
    for (;;) {
        rc = evs_reader_next(r, &e);
        if (rc == EVS_ELOST) {
            uint64_t a, b;
            out->lost_ranges++;
            if (strstr(evs_errmsg(), "scavenged")) out->scavenged_ranges++;
            if (evs_reader_lost(r, &a, &b) == EVS_OK) out->lost_positions += b - a + 1;
            continue;
        }
        if (rc) break;
        char *js;
        size_t jl;
        if (evs_event_to_json(e, &js, &jl)) {
            rc = EVS_ENOMEM;
            break;
        }
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 1024;
            out->ev = realloc(out->ev, out->cap * sizeof *out->ev);
        }
        out->ev[out->n++] = (sf_event){e->global_position, e->stream_position, sf_hash(js, jl)};
        free(js);
    }
    evs_reader_close(r);
    return rc == EVS_DONE ? EVS_OK : rc;
}

/* Is every event of a also in b, at the same positions with the same bytes (b may hold more, appended later)? */
static int sf_same(const sf_snap *a, const sf_snap *b, char *why, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && b->ev[j].gpos < a->ev[i].gpos) j++;
        if (j == b->n || b->ev[j].gpos != a->ev[i].gpos) {
            snprintf(why, cap, "event at global position %llu is gone", (unsigned long long)a->ev[i].gpos);
            return 0;
        }
        if (b->ev[j].spos != a->ev[i].spos || b->ev[j].hash != a->ev[i].hash) {
            snprintf(why, cap, "event at global position %llu differs", (unsigned long long)a->ev[i].gpos);
            return 0;
        }
    }
    return 1;
}

static void sf_free(sf_snap *s) {
    free(s->ev);
    memset(s, 0, sizeof *s);
}

static void sf_append(evs_store *s, const char *stream, int i) {
    char data[300];
    snprintf(data, sizeof data, "{\"n\":%d,\"pad\":\"%0200d\"}", i, i);
    evs_event_in e = tu_event(i % 3 ? "Happened" : "Other", data);
    const char *tags[] = {"t:a", "t:b"};
    e.tags = tags;
    e.ntags = (size_t)(i % 3);
    evs_append_result r;
    if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL)) {
        fprintf(stderr, "append to %s: %s\n", stream, evs_errmsg());
        exit(2);
    }
}

/*
 * Fill s: `rounds` rounds over 8 streams, then hide a good part of it:
 * "gone-*" hard-deleted, "soft-1" soft-deleted, "trunc-1" truncated before
 * its middle; "keep-*" stay whole.
 */
static void sf_populate(evs_store *s, int rounds) {
    static const char *streams[] = {"keep-1", "gone-1", "keep-2", "gone-2", "soft-1", "trunc-1", "keep-3", "gone-3"};
    for (int i = 0; i < rounds; i++)
        for (size_t k = 0; k < sizeof streams / sizeof *streams; k++) sf_append(s, streams[k], i);
    for (int k = 1; k <= 3; k++) {
        char n[16];
        snprintf(n, sizeof n, "gone-%d", k);
        if (evs_stream_delete(s, n, EVS_EXPECT_ANY, 1)) exit(2);
    }
    if (evs_stream_delete(s, "soft-1", EVS_EXPECT_ANY, 0)) exit(2);
    char meta[64];
    snprintf(meta, sizeof meta, "{\"truncate_before\":%d}", rounds / 2);
    if (evs_stream_set_metadata(s, "trunc-1", EVS_EXPECT_ANY, meta, strlen(meta), NULL)) exit(2);
}

#endif
