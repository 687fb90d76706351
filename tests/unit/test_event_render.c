/*
 * test_event_render.c — the allocation-free event renderer
 * (evs__event_json_render in src/core/event_json.c).
 *
 * The renderer formats numbers, UUIDs and times by hand and caches the
 * date part of times per second, so it is checked against an independent
 * reference built here from the public formatters (evs_uuid_format,
 * evs_time_format, snprintf): random events, times over the whole int64 range
 * (1677 to 2262) and before 1970, seconds that alternate so the cache must miss
 * and hit, and every buffer size from 0 to the full length (the full
 * length returned every time, nothing written past the end).  test_event_json.c checks field names and values with jansson.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/event_json.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Reference: the object as the renderer must write it, with the public formatters. */
static size_t reference(const evs_event *ev, char *out, size_t cap) {
    char id[37], c[37], k[37], occ[40], rec[40];
    evs_uuid_format(&ev->event_id, id);
    evs_uuid_format(&ev->causation_id, c);
    evs_uuid_format(&ev->correlation_id, k);
    evs_time_format(ev->occurred_at, occ);
    evs_time_format(ev->recorded_at, rec);
    char cq[40] = "null", kq[40] = "null";
    if (ev->has_causation_id) snprintf(cq, sizeof cq, "\"%s\"", c);
    if (ev->has_correlation_id) snprintf(kq, sizeof kq, "\"%s\"", k);
    int n = snprintf(out, cap,
                     "{\"global_position\":%" PRIu64 ",\"stream\":\"%.*s\",\"stream_position\":%" PRIu64
                     ",\"event_id\":\"%s\",\"event_type\":\"%.*s\",\"event_version\":%u,\"stream_type\":\"%.*s\""
                     ",\"data\":%.*s,\"metadata\":%.*s,\"causation_id\":%s,\"correlation_id\":%s,\"tags\":%.*s"
                     ",\"occurred_at\":\"%s\",\"recorded_at\":\"%s\"}",
                     ev->global_position, (int)ev->stream_len, ev->stream, ev->stream_position, id,
                     (int)ev->event_type_len, ev->event_type, ev->event_version ? ev->event_version : 1u,
                     (int)ev->stream_type_len, ev->stream_type, (int)ev->data_len, ev->data,
                     ev->metadata ? (int)ev->metadata_len : 2, ev->metadata ? ev->metadata : "{}",
                     cq, kq, ev->tags ? (int)ev->tags_len : 2, ev->tags ? ev->tags : "[]", occ, rec);
    return (size_t)n;
}

static int64_t random_time(void) {
    switch (next_rand() % 6) {
    case 0: return (int64_t)(next_rand() % 4000000000ull) * 1000000000 + (int64_t)(next_rand() % 1000000000);
    case 1: return -(int64_t)(next_rand() % 9000000000ull) * 1000000000 - (int64_t)(next_rand() % 1000000000);
    case 2: return (int64_t)next_rand();   /* anywhere in int64: 1677 to 2262 */
    case 3: return INT64_MAX - (int64_t)(next_rand() % 3000000000ull);   /* the last representable seconds */
    case 4: return INT64_MIN + (int64_t)(next_rand() % 3000000000ull);   /* the first ones */
    default: return 1795000000LL * 1000000000 + (int64_t)(next_rand() % 4) * 1000000000 + 17; /* few seconds */
    }
}

static void random_uuid(evs_uuid *u) {
    for (int i = 0; i < 16; i++) u->b[i] = (uint8_t)next_rand();
}

static void test_against_reference(void) {
    static const char *const datas[] = {"{}", "{\"a\":1.50,\"b\":[1,2,{\"c\":null}]}",
                                        "{\"s\":\"caf\\u00e9 \xc3\xa9\",\"big\":12345678901234567890}"};
    char got[2048], want[2048];
    for (int i = 0; i < 20000; i++) {
        evs_event ev;
        memset(&ev, 0, sizeof ev);
        random_uuid(&ev.event_id);
        random_uuid(&ev.causation_id);
        random_uuid(&ev.correlation_id);
        ev.has_causation_id = (int)(next_rand() & 1);
        ev.has_correlation_id = (int)(next_rand() & 1);
        ev.stream = "order-42";
        ev.stream_len = 8;
        ev.stream_type = "order";
        ev.stream_type_len = 5;
        ev.event_type = "OrderPlaced";
        ev.event_type_len = 11;
        const char *d = datas[next_rand() % 3];
        ev.data = d;
        ev.data_len = strlen(d);
        if (next_rand() & 1) {
            ev.metadata = "{\"u\":\"x\"}";
            ev.metadata_len = 9;
        }
        if (next_rand() & 1) {
            ev.tags = "[\"t\"]";
            ev.tags_len = 5;
        }
        ev.event_version = (uint32_t)(next_rand() % 3);
        ev.global_position = i % 7 == 0 ? UINT64_MAX - (uint64_t)i : next_rand() >> (next_rand() % 64);
        ev.stream_position = (uint64_t)i;
        ev.occurred_at = random_time();
        ev.recorded_at = i % 3 ? ev.occurred_at + 1000 : random_time();
        size_t wn = reference(&ev, want, sizeof want);
        size_t gn = evs__event_json_render(&ev, got, sizeof got);
        if (gn != wn || memcmp(got, want, wn) != 0) {
            CHECK_MEM(got, gn, want);
            fprintf(stderr, "  occurred_at %" PRId64 ", recorded_at %" PRId64 "\n", ev.occurred_at, ev.recorded_at);
            return;
        }
    }
    CHECK(1);
}

static evs_event sample(void) {
    evs_event ev;
    memset(&ev, 0, sizeof ev);
    random_uuid(&ev.event_id);
    ev.stream = "s\"q\\\x01-\xc3\xa9";
    ev.stream_len = strlen(ev.stream);
    ev.stream_type = "s";
    ev.stream_type_len = 1;
    ev.event_type = "T";
    ev.event_type_len = 1;
    ev.data = "{\n  \"a\": 1,\r\n  \"b\": \"x\"\n}";
    ev.data_len = strlen(ev.data);
    ev.metadata = "{\"m\":\n1}";
    ev.metadata_len = strlen(ev.metadata);
    ev.tags = "[\n\"t\"]";
    ev.tags_len = strlen(ev.tags);
    ev.global_position = 12345;
    ev.stream_position = 7;
    ev.occurred_at = 1795000000123456789LL;
    ev.recorded_at = 1795000000123456790LL;
    return ev;
}

/* Every buffer size: the full length back and nothing written past cap. */
static void test_truncation(void) {
    evs_event ev = sample();
    size_t need = evs__event_json_render(&ev, NULL, 0);
    char *full = malloc(need + 1), *buf = malloc(need + 16);
    if (!full || !buf) {
        CHECK(0);
        free(full);
        free(buf);
        return;
    }
    CHECK_INT(evs__event_json_render(&ev, full, need), need);
    full[need] = '\0'; /* for the CHECK_CONTAINS below */
    for (size_t cap = 0; cap <= need; cap++) {
        memset(buf, 0x5a, need + 16);
        size_t n = evs__event_json_render(&ev, buf, cap);
        int bad = n != need || (cap == need && memcmp(buf, full, need) != 0);
        for (size_t i = cap; i < need + 16; i++) bad |= buf[i] != 0x5a;
        if (bad) {
            fprintf(stderr, "  cap %zu: returned %zu (want %zu) or wrote outside\n", cap, n, need);
            CHECK(0);
            break;
        }
    }
    /* escaping and line breaks: one line, every value the same */
    CHECK(memchr(full, '\n', need) == NULL && memchr(full, '\r', need) == NULL);
    CHECK_CONTAINS(full, "\"stream\":\"s\\\"q\\\\\\u0001-\xc3\xa9\"");
    CHECK_CONTAINS(full, "\"data\":{   \"a\": 1,    \"b\": \"x\" }");
    CHECK_CONTAINS(full, "\"metadata\":{\"m\": 1}");
    CHECK_CONTAINS(full, "\"tags\":[ \"t\"]");
    /* the wrapper allocates exactly this */
    char *js = NULL;
    size_t jn = 0;
    CHECK_RC(evs_event_to_json(&ev, &js, &jn), EVS_OK);
    CHECK_MEM(js, jn, full);
    CHECK(js && js[jn] == '\0');
    free(js);
    free(full);
    free(buf);
}

/* A large payload: the wrapper's first guess must grow. */
static void test_wrapper_grows(void) {
    evs_event ev = sample();
    size_t n = 100000;
    char *d = malloc(n + 1);
    if (!d) {
        CHECK(0);
        return;
    }
    memset(d, ' ', n);
    d[0] = '{';
    d[n - 1] = '}';
    d[n] = '\0';
    ev.data = d;
    ev.data_len = n;
    ev.stream = "s";
    ev.stream_len = 1;
    char *js = NULL;
    size_t jn = 0;
    CHECK_RC(evs_event_to_json(&ev, &js, &jn), EVS_OK);
    CHECK_INT(jn, evs__event_json_render(&ev, NULL, 0));
    CHECK(js && strlen(js) == jn);
    free(js);
    free(d);
}

int main(void) {
    test_against_reference();
    test_truncation();
    test_wrapper_grows();
    return TEST_REPORT();
}
