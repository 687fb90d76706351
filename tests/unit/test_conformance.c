/*
 * test_conformance.c — the store's behaviour through the public API, the
 * same on every storage engine: expected versions, atomic multi-event
 * appends, byte-exact payloads, idempotent retries, reads of a stream and
 * of $all in both directions across pages, filters, stream info and
 * listing, evs_wait_for, bad input that stores nothing, and reopening.
 * Run as `test_conformance` (embedded) and `test_conformance postgresql`
 * (conformance.h); engine-specific expectations are marked where they are.
 */
#include <pthread.h>

#include "conformance.h"
#include "evstore_app.h"
#include "evstore_bus.h"
#include "evstore_schema.h"

static int append1(evs_store *s, const char *stream, int64_t exp, const char *type, const char *data,
                   evs_append_result *res) {
    evs_event_in e = tu_event(type, data);
    return evs_append(s, stream, exp, &e, 1, res, NULL);
}

static void test_expected_versions(evs_store *s) {
    evs_append_result r;
    CHECK_RC(append1(s, "order-1", EVS_EXPECT_EXISTS, "A", "{}", &r), EVS_ECONFLICT);
    CHECK_INT(r.actual_version, 0);
    CHECK_STR(evs_errmsg(), "Concurrency conflict: expected version exists, actual version 0");
    CHECK_RC(append1(s, "order-1", 3, "A", "{}", &r), EVS_ECONFLICT);
    CHECK_STR(evs_errmsg(), "Concurrency conflict: expected version 3, actual version 0");
    CHECK_RC(append1(s, "order-1", EVS_EXPECT_NO_STREAM, "OrderPlaced", "{\"n\":1}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 1);
    CHECK_INT(r.last_stream_position, 1);
    CHECK_INT(r.first_global_position, 1);
    CHECK_INT(r.idempotent, 0);
    CHECK(r.recorded_at > 0);
    CHECK_RC(append1(s, "order-1", EVS_EXPECT_NO_STREAM, "A", "{}", &r), EVS_ECONFLICT);
    CHECK_INT(r.actual_version, 1);
    CHECK_STR(evs_errmsg(), "Concurrency conflict: expected version 0, actual version 1");
    CHECK_RC(append1(s, "order-1", 1, "ItemAdded", "{}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 2);
    CHECK_INT(r.first_global_position, 2);
    CHECK_RC(append1(s, "order-1", 1, "A", "{}", &r), EVS_ECONFLICT);
    CHECK_INT(r.actual_version, 2);
    CHECK_RC(append1(s, "order-1", EVS_EXPECT_EXISTS, "ItemAdded", "{}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 3);
    CHECK_RC(append1(s, "order-1", EVS_EXPECT_ANY, "ItemAdded", "{}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 4);
    CHECK_RC(append1(s, "order-2", EVS_EXPECT_ANY, "OrderPlaced", "{}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 1);
    CHECK_INT(r.first_global_position, 5);
    CHECK_INT(evs_head(s), 5);
    CHECK_RC(append1(s, "order-1", -7, "A", "{}", &r), EVS_EINVAL);
    CHECK_INT(evs_head(s), 5);
}

/* Three events in one append: atomic, positions consecutive, every field back exactly as given. */
static void test_atomic_and_verbatim(evs_store *s) {
    const char *d1 = "{\"price\":1.50,\"big\":12345678901234567890,\"s\":\"\\u00e9\\n\",\"dup\":1,\"dup\":2}";
    const char *m1 = "{ \"user\" : \"x\" }";
    evs_uuid corr, caus, ids[3];
    evs_uuid_v7(&corr);
    evs_uuid_v7(&caus);
    const char *tags[] = {"vip", "eu \"west\""};
    evs_event_in ev[3] = {tu_event("ItemAdded", d1), tu_event("ItemAdded", "{}"), tu_event("Checked", "{\"a\":[1,2]}")};
    ev[0].metadata = m1;
    ev[0].metadata_len = strlen(m1);
    ev[0].correlation_id = &corr;
    ev[0].causation_id = &caus;
    ev[0].tags = tags;
    ev[0].ntags = 2;
    ev[0].event_version = 3;
    ev[0].occurred_at = 1700000000123456000LL; /* whole µs: PostgreSQL keeps µs (docs/postgresql.md) */
    ev[2].stream_type = "Cart";
    evs_append_result r;
    CHECK_RC(evs_append(s, "cart-9", EVS_EXPECT_NO_STREAM, ev, 3, &r, ids), EVS_OK);
    CHECK_INT(r.first_stream_position, 1);
    CHECK_INT(r.last_stream_position, 3);
    CHECK_INT(r.last_global_position - r.first_global_position, 2);
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "cart-9", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_MEM(e->data, e->data_len, d1);
    CHECK_MEM(e->metadata, e->metadata_len, m1);
    CHECK_MEM(e->stream, e->stream_len, "cart-9");
    CHECK_MEM(e->stream_type, e->stream_type_len, "cart");
    CHECK_MEM(e->event_type, e->event_type_len, "ItemAdded");
    CHECK_MEM(e->tags, e->tags_len, "[\"vip\",\"eu \\\"west\\\"\"]");
    CHECK(!memcmp(&e->event_id, &ids[0], 16));
    CHECK(e->has_correlation_id && !memcmp(&e->correlation_id, &corr, 16));
    CHECK(e->has_causation_id && !memcmp(&e->causation_id, &caus, 16));
    CHECK_INT(e->event_version, 3);
    CHECK_INT(e->occurred_at, 1700000000123456000LL);
    CHECK_INT(e->recorded_at, r.recorded_at);
    CHECK_INT(e->global_position, r.first_global_position);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_MEM(e->metadata, e->metadata_len, "{}");
    CHECK(e->tags == NULL && !e->has_correlation_id && !e->has_causation_id);
    CHECK_INT(e->event_version, 1);
    CHECK(e->occurred_at > 0);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_MEM(e->stream_type, e->stream_type_len, "Cart");
    CHECK_INT(e->stream_position, 3);
    CHECK_RC(evs_reader_next(rd, &e), EVS_DONE);
    evs_reader_close(rd);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "cart-9", &info), EVS_OK);
    CHECK_STR(info.name, "cart-9");
    CHECK_STR(info.stream_type, "cart");
    CHECK_INT(info.version, 3);
    CHECK_INT(info.first_global_position, r.first_global_position);
    CHECK_INT(info.last_global_position, r.last_global_position);
    CHECK_RC(evs_stream_get_info(s, "cart-404", &info), EVS_ENOTFOUND);
}

static void test_idempotency(evs_store *s) {
    evs_uuid id[2], other;
    evs_uuid_v7(&id[0]);
    evs_uuid_v7(&id[1]);
    evs_uuid_v7(&other);
    evs_event_in ev[2] = {tu_event("A", "{\"x\":1}"), tu_event("B", "{\"x\":2}")};
    ev[0].event_id = &id[0];
    ev[1].event_id = &id[1];
    evs_append_result r1, r2;
    CHECK_RC(evs_append(s, "idem-1", EVS_EXPECT_NO_STREAM, ev, 2, &r1, NULL), EVS_OK);
    uint64_t head = evs_head(s);
    /* the same append again: the original result, nothing written */
    CHECK_RC(evs_append(s, "idem-1", EVS_EXPECT_NO_STREAM, ev, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_global_position, r1.first_global_position);
    CHECK_INT(r2.last_stream_position, 2);
    CHECK_INT(r2.recorded_at, r1.recorded_at);
    CHECK_INT(evs_head(s), head);
    /* any expected version that fits, too */
    CHECK_RC(evs_append(s, "idem-1", EVS_EXPECT_ANY, ev, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    /* same ids, other content */
    evs_event_in changed[2] = {ev[0], ev[1]};
    changed[1].data = "{\"x\":3}";
    CHECK_RC(evs_append(s, "idem-1", EVS_EXPECT_NO_STREAM, changed, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "with other data");
    /* one id in another stream */
    CHECK_RC(evs_append(s, "idem-2", EVS_EXPECT_ANY, ev, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "already stored in another stream");
    /* a stored id followed by a new one */
    evs_event_in mixed[2] = {ev[0], tu_event("C", "{}")};
    mixed[1].event_id = &other;
    CHECK_RC(evs_append(s, "idem-1", EVS_EXPECT_ANY, mixed, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "is new but earlier events of this append are already stored");
    /* a retry whose expected version no longer fits is a conflict, as the first attempt would be */
    CHECK_RC(append1(s, "idem-1", 2, "D", "{}", &r2), EVS_OK);
    CHECK_RC(evs_append(s, "idem-1", 5, ev, 2, &r2, NULL), EVS_ECONFLICT);
    CHECK_INT(r2.actual_version, 3);
    CHECK_INT(evs_head(s), head + 1);
}

/* 700 events: more than any page, read in every direction, from the middle, with limits. */
static void test_reads(evs_store *s) {
    evs_append_result r;
    uint64_t g0 = evs_head(s);
    char data[64];
    for (int i = 1; i <= 700; i++) {
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        CHECK_RC(append1(s, i % 2 ? "page-odd" : "page-even", EVS_EXPECT_ANY, i % 3 ? "Tick" : "Tock", data, &r),
                 EVS_OK);
    }
    evs_reader *rd;
    const evs_event *e;
    int n = 0, ok = 1;
    CHECK_RC(evs_read_stream(s, "page-odd", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    while (evs_reader_next(rd, &e) == EVS_OK) {
        n++;
        snprintf(data, sizeof data, "{\"i\":%d}", 2 * n - 1);
        if (e->stream_position != (uint64_t)n || e->data_len != strlen(data) || memcmp(e->data, data, e->data_len))
            ok = 0;
    }
    CHECK_INT(n, 350);
    CHECK(ok);
    CHECK_INT(evs_reader_position(rd), 351);
    evs_reader_close(rd);
    /* backward from the end, limited */
    CHECK_RC(evs_read_stream(s, "page-even", EVS_POSITION_END, EVS_BACKWARD, 300, &rd), EVS_OK);
    n = 0;
    ok = 1;
    while (evs_reader_next(rd, &e) == EVS_OK) {
        if (e->stream_position != (uint64_t)(350 - n)) ok = 0;
        n++;
    }
    CHECK_INT(n, 300);
    CHECK(ok);
    CHECK_INT(evs_reader_position(rd), 50);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "page-none", 1, EVS_FORWARD, 0, &rd), EVS_ENOTFOUND);
    CHECK_RC(evs_read_stream(s, "$reserved", 1, EVS_FORWARD, 0, &rd), EVS_EINVAL);
    /* $all in pages of 97, each continuing where the last stopped */
    uint64_t pos = g0 + 1, want = g0 + 1;
    ok = 1;
    for (int page = 0; page < 20; page++) {
        CHECK_RC(evs_read_all(s, pos, EVS_FORWARD, NULL, 97, &rd), EVS_OK);
        while (evs_reader_next(rd, &e) == EVS_OK)
            if (e->global_position != want++) ok = 0;
        pos = evs_reader_position(rd);
        evs_reader_close(rd);
    }
    CHECK(ok);
    CHECK_INT(want, g0 + 701);
    CHECK_INT(pos, g0 + 701);
    /* $all backward from the end */
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, NULL, 0, &rd), EVS_OK);
    uint64_t g = evs_head(s);
    ok = 1;
    n = 0;
    while (evs_reader_next(rd, &e) == EVS_OK) {
        if (e->global_position != g--) ok = 0;
        n++;
    }
    CHECK(ok);
    CHECK_INT(n, evs_head(s));
    evs_reader_close(rd);
    /* listing, in byte order, after a name, by prefix */
    evs_stream_info out[4];
    size_t cnt;
    CHECK_RC(evs_list_streams(s, "page-", NULL, out, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 2);
    CHECK_STR(out[0].name, "page-even");
    CHECK_STR(out[1].name, "page-odd");
    CHECK_INT(out[1].version, 350);
    CHECK_RC(evs_list_streams(s, "page-", "page-even", out, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    CHECK_STR(out[0].name, "page-odd");
}

static int count_all(evs_store *s, const evs_filter *f, uint64_t *pos_out) {
    evs_reader *rd;
    const evs_event *e;
    int n = 0;
    if (evs_read_all(s, 1, EVS_FORWARD, f, 0, &rd)) return -1;
    while (evs_reader_next(rd, &e) == EVS_OK) n++;
    if (pos_out) *pos_out = evs_reader_position(rd);
    evs_reader_close(rd);
    return n;
}

static void test_filters(evs_store *s) {
    evs_uuid corr, caus;
    evs_uuid_v7(&corr);
    evs_uuid_v7(&caus);
    const char *t1[] = {"course:c1", "student:s1"}, *t2[] = {"course:c1"}, *t3[] = {"student:s2"};
    evs_event_in ev[3] = {tu_event("Enrolled", "{}"), tu_event("Enrolled", "{}"), tu_event("Left", "{}")};
    ev[0].tags = t1, ev[0].ntags = 2, ev[0].correlation_id = &corr;
    ev[1].tags = t2, ev[1].ntags = 1, ev[1].causation_id = &caus;
    ev[2].tags = t3, ev[2].ntags = 1, ev[2].correlation_id = &corr;
    evs_append_result r;
    int64_t before = evs_now_ns();
    CHECK_RC(evs_append(s, "enrol-1", EVS_EXPECT_ANY, ev, 3, &r, NULL), EVS_OK);
    CHECK_RC(append1(s, "other-1", EVS_EXPECT_ANY, "Enrolled", "{}", &r), EVS_OK);
    int64_t after = evs_now_ns();
    const char *types[] = {"Left", "Nope"};
    evs_filter f;
    uint64_t pos;
    memset(&f, 0, sizeof f);
    f.event_types = types, f.n_event_types = 2;
    CHECK_INT(count_all(s, &f, &pos), 1);
    CHECK_INT(pos, evs_head(s) + 1); /* a filtered read still moves past what it examined */
    memset(&f, 0, sizeof f);
    f.stream_type = "enrol";
    CHECK_INT(count_all(s, &f, NULL), 3);
    memset(&f, 0, sizeof f);
    f.stream_prefix = "othe";
    CHECK_INT(count_all(s, &f, NULL), 1);
    memset(&f, 0, sizeof f);
    f.correlation_id = &corr;
    CHECK_INT(count_all(s, &f, NULL), 2);
    memset(&f, 0, sizeof f);
    f.causation_id = &caus;
    CHECK_INT(count_all(s, &f, NULL), 1);
    const char *q1[] = {"course:c1", "student:s2"};
    memset(&f, 0, sizeof f);
    f.tags = q1, f.n_tags = 2;
    CHECK_INT(count_all(s, &f, NULL), 3);
    const char *q2[] = {"course:c1", "student:s1"};
    f.tags = q2, f.tag_match = EVS_TAGS_ALL;
    CHECK_INT(count_all(s, &f, NULL), 1);
    memset(&f, 0, sizeof f);
    f.since = before;
    f.until = after + 1000;
    CHECK_INT(count_all(s, &f, NULL), 4);
    f.since = after + 1000;
    f.until = 0;
    CHECK_INT(count_all(s, &f, &pos), 0);
    memset(&f, 0, sizeof f);
    f.event_types = types, f.n_event_types = 1, f.stream_prefix = "enrol", f.correlation_id = &corr;
    CHECK_INT(count_all(s, &f, NULL), 1);
}

/* Bad input: a clear error naming what is wrong, and nothing stored. */
static void test_bad_input(evs_store *s) {
    evs_append_result r;
    uint64_t head = evs_head(s);
    CHECK_RC(append1(s, "bad-1", EVS_EXPECT_ANY, "A", "{\"a\":", &r), EVS_EJSON);
    CHECK_CONTAINS(evs_errmsg(), "event 1: data");
    CHECK_RC(append1(s, "bad-1", EVS_EXPECT_ANY, "A", "[1]", &r), EVS_EJSON);
    CHECK_RC(append1(s, "$bad", EVS_EXPECT_ANY, "A", "{}", &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "reserved");
    CHECK_RC(append1(s, "", EVS_EXPECT_ANY, "A", "{}", &r), EVS_EINVAL);
    CHECK_RC(append1(s, "bad-1", EVS_EXPECT_ANY, "", "{}", &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "event_type is empty");
    evs_uuid nil, id;
    memset(&nil, 0, sizeof nil);
    evs_uuid_v7(&id);
    evs_event_in ev[2] = {tu_event("A", "{}"), tu_event("B", "{\"a\":}")};
    CHECK_RC(evs_append(s, "bad-1", EVS_EXPECT_ANY, ev, 2, &r, NULL), EVS_EJSON); /* the good one is not stored either */
    CHECK_CONTAINS(evs_errmsg(), "event 2: data");
    ev[1] = tu_event("B", "{}");
    ev[0].event_id = &id, ev[1].event_id = &id;
    CHECK_RC(evs_append(s, "bad-1", EVS_EXPECT_ANY, ev, 2, &r, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "more than once");
    ev[0].event_id = &nil;
    CHECK_RC(evs_append(s, "bad-1", EVS_EXPECT_ANY, ev, 1, &r, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "nil UUID");
    CHECK_RC(evs_append(s, "bad-1", EVS_EXPECT_ANY, ev, 0, &r, NULL), EVS_EINVAL);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_RC(append1(s, big, EVS_EXPECT_ANY, "A", "{}", &r), EVS_ELIMIT);
    CHECK_INT(evs_head(s), head);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "bad-1", &info), EVS_ENOTFOUND);
}

typedef struct waiter {
    evs_store *s;
    uint64_t want;
    int rc;
    uint64_t head;
} waiter;

static void *wait_main(void *arg) {
    waiter *w = arg;
    w->rc = evs_wait_for(w->s, w->want, 10000, &w->head);
    return NULL;
}

static void test_wait_for(evs_store *s) {
    uint64_t h = evs_head(s), got;
    CHECK_RC(evs_wait_for(s, h, 0, &got), EVS_OK);
    CHECK_RC(evs_wait_for(s, h + 1, 50, &got), EVS_ETIMEDOUT);
    CHECK_INT(got, h);
    waiter w = {s, h + 2, -1, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_main, &w);
    evs_append_result r;
    CHECK_RC(append1(s, "wait-1", EVS_EXPECT_ANY, "A", "{}", &r), EVS_OK);
    CHECK_RC(append1(s, "wait-1", EVS_EXPECT_ANY, "A", "{}", &r), EVS_OK);
    pthread_join(t, NULL);
    CHECK_RC(w.rc, EVS_OK);
    CHECK(w.head >= h + 2);
}

/* Positions a read of stream (forward from 1, or backward from the end) returns, into p; how many, or -rc. */
static int stream_positions(evs_store *s, const char *stream, int dir, uint64_t *p, int max) {
    evs_reader *rd;
    int rc = evs_read_stream(s, stream, dir == EVS_FORWARD ? 1 : EVS_POSITION_END, dir, 0, &rd);
    if (rc) return -rc;
    const evs_event *e;
    int n = 0;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (n < max) p[n++] = e->stream_position;
    evs_reader_close(rd);
    return rc == EVS_DONE ? n : -rc;
}

/* Events of stream in $all (prefix filter). */
static int all_count(evs_store *s, const char *stream) {
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.stream_prefix = stream;
    evs_reader *rd;
    if (evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd)) return -1;
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (e->stream_len == strlen(stream)) n++;
    evs_reader_close(rd);
    return rc == EVS_DONE ? n : -1;
}

/* Stream metadata and deletes: what readers and writers see, the same on every engine. */
static void test_stream_metadata(evs_store *s) {
    evs_append_result r;
    char *json = NULL, data[32];
    size_t len;
    uint64_t mv = 99, p[16];
    evs_stream_metadata m;
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &json, &len, &mv, &m), EVS_ENOTFOUND);
    for (int i = 1; i <= 10; i++) {
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        CHECK_RC(append1(s, "meta-1", EVS_EXPECT_ANY, "E", data, &r), EVS_OK);
    }
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &json, &len, &mv, &m), EVS_OK);
    CHECK_STR(json, "{}");
    CHECK_INT(mv, 0);
    CHECK_INT(m.max_count, -1);
    free(json);
    /* max_count: the last three */
    const char *mc = "{\"max_count\": 3, \"owner\":\"x\"}";
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_NO_STREAM, mc, strlen(mc), &mv), EVS_OK);
    CHECK_INT(mv, 1);
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_NO_STREAM, mc, strlen(mc), &mv), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "expected metadata version 0, actual 1");
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &json, &len, &mv, &m), EVS_OK);
    CHECK_STR(json, mc); /* exactly as given */
    CHECK_INT(len, strlen(mc));
    CHECK_INT(mv, 1);
    CHECK_INT(m.max_count, 3);
    free(json);
    int n = stream_positions(s, "meta-1", EVS_FORWARD, p, 16);
    CHECK_INT(n, 3);
    if (n == 3) CHECK(p[0] == 8 && p[1] == 9 && p[2] == 10);
    n = stream_positions(s, "meta-1", EVS_BACKWARD, p, 16);
    CHECK_INT(n, 3);
    if (n == 3) CHECK(p[0] == 10 && p[2] == 8);
    CHECK_INT(all_count(s, "meta-1"), 3);
    /* truncate_before replaces it */
    const char *tb = "{\"truncate_before\":5}";
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", 1, tb, strlen(tb), &mv), EVS_OK);
    CHECK_INT(mv, 2);
    n = stream_positions(s, "meta-1", EVS_FORWARD, p, 16);
    CHECK_INT(n, 6);
    if (n == 6) CHECK(p[0] == 5 && p[5] == 10);
    CHECK_INT(all_count(s, "meta-1"), 6);
    /* bad objects: refused naming what is wrong, nothing changed */
    const char *bad[] = {"{\"max_count\":-1}", "[1]", "{\"$tombstone\":true}", "{\"max_age\":\"1d\"}"};
    int want[] = {EVS_EINVAL, EVS_EJSON, EVS_EINVAL, EVS_EINVAL};
    for (int i = 0; i < 4; i++) CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_ANY, bad[i], strlen(bad[i]), &mv), want[i]);
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", NULL, NULL, &mv, NULL), EVS_OK);
    CHECK_INT(mv, 2);
    /* max_age 0: every event already recorded is too old */
    CHECK_RC(append1(s, "meta-2", EVS_EXPECT_ANY, "E", "{}", &r), EVS_OK);
    const char *age = "{\"max_age\":0}";
    CHECK_RC(evs_stream_set_metadata(s, "meta-2", EVS_EXPECT_ANY, age, strlen(age), &mv), EVS_OK);
    CHECK_INT(stream_positions(s, "meta-2", EVS_FORWARD, p, 16), 0);
    CHECK_INT(all_count(s, "meta-2"), 0);
    /* soft delete: reads as absent, "no stream" then continues its positions */
    for (int i = 0; i < 3; i++) CHECK_RC(append1(s, "meta-3", EVS_EXPECT_ANY, "E", "{}", &r), EVS_OK);
    CHECK_RC(evs_stream_delete(s, "meta-3", 2, 0), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "expected version 2, actual version 3");
    CHECK_RC(evs_stream_delete(s, "meta-3", 3, 0), EVS_OK);
    CHECK_INT(stream_positions(s, "meta-3", EVS_FORWARD, p, 16), -EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "not found (deleted)");
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "meta-3", &info), EVS_ENOTFOUND);
    size_t cnt = 9;
    CHECK_RC(evs_list_streams(s, "meta-3", NULL, &info, 1, &cnt), EVS_OK);
    CHECK_INT(cnt, 0);
    CHECK_INT(all_count(s, "meta-3"), 0);
    CHECK_RC(evs_stream_delete(s, "meta-3", EVS_EXPECT_ANY, 0), EVS_ENOTFOUND);
    CHECK_RC(append1(s, "meta-3", EVS_EXPECT_NO_STREAM, "Again", "{}", &r), EVS_OK);
    CHECK_INT(r.first_stream_position, 4);
    n = stream_positions(s, "meta-3", EVS_FORWARD, p, 16);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_INT(p[0], 4);
    CHECK_RC(evs_stream_get_info(s, "meta-3", &info), EVS_OK);
    CHECK_INT(info.version, 4);
    /* hard delete: never written again, whatever the expected version */
    CHECK_RC(append1(s, "meta-4", EVS_EXPECT_ANY, "E", "{}", &r), EVS_OK);
    CHECK_RC(evs_stream_delete(s, "meta-4", EVS_EXPECT_ANY, 1), EVS_OK);
    uint64_t head = evs_head(s);
    CHECK_RC(append1(s, "meta-4", EVS_EXPECT_ANY, "E", "{}", &r), EVS_EDELETED);
    CHECK_CONTAINS(evs_errmsg(), "hard-deleted (tombstone)");
    CHECK_RC(append1(s, "meta-4", 7, "E", "{}", &r), EVS_EDELETED);
    CHECK_RC(append1(s, "meta-4", EVS_EXPECT_NO_STREAM, "E", "{}", &r), EVS_EDELETED);
    CHECK_RC(evs_stream_set_metadata(s, "meta-4", EVS_EXPECT_ANY, "{}", 2, &mv), EVS_EDELETED);
    CHECK_RC(evs_stream_delete(s, "meta-4", EVS_EXPECT_ANY, 1), EVS_EDELETED);
    CHECK_INT(evs_head(s), head);
    CHECK_INT(stream_positions(s, "meta-4", EVS_FORWARD, p, 16), -EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "hard-deleted");
    CHECK_INT(all_count(s, "meta-4"), 0);
    /* a stream that was never written: metadata may be set ahead of its first event */
    const char *ahead = "{\"max_count\":1}";
    CHECK_RC(evs_stream_set_metadata(s, "meta-5", EVS_EXPECT_ANY, ahead, strlen(ahead), &mv), EVS_OK);
    CHECK_RC(append1(s, "meta-5", EVS_EXPECT_NO_STREAM, "E", "{}", &r), EVS_OK);
    CHECK_RC(append1(s, "meta-5", 1, "E", "{}", &r), EVS_OK);
    n = stream_positions(s, "meta-5", EVS_FORWARD, p, 16);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_INT(p[0], 2);
    /* all of it is consistent on every engine */
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.errors, 0);
    CHECK_INT(rep.index_head, evs_head(s));
    CHECK_INT(rep.events, evs_head(s));
}

/* Global positions an unfiltered $all read from `from` returns (forward, or backward down to `from`), in p. */
static int all_positions(evs_store *s, uint64_t from, int dir, uint64_t *p, int max) {
    evs_reader *rd;
    int rc = evs_read_all(s, dir == EVS_FORWARD ? from : EVS_POSITION_END, dir, NULL, 0, &rd);
    if (rc) return -rc;
    const evs_event *e;
    int n = 0;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK && e->global_position >= from)
        if (n < max) p[n++] = e->global_position;
    evs_reader_close(rd);
    return rc == EVS_DONE || rc == EVS_OK ? n : -rc;
}

/*
 * What metadata hides, in reads that span several pages (the PostgreSQL
 * engine reads 256 rows a page): two streams of 600 events in blocks of 50,
 * interleaved in $all; max_count on one, truncate_before on the other.  Each
 * read must start at the first event shown, skip exactly the hidden ones of
 * every page and keep the order, in both directions.
 */
static void test_metadata_pages(evs_store *s) {
    enum { LEN = 600, BLOCK = 50 };
    const char *name[2] = {"mpage-a", "mpage-b"};
    uint64_t g0 = evs_head(s), gpos[2][LEN + 1];
    static evs_event_in ev[BLOCK];
    char data[BLOCK][32];
    for (int b = 0; b < 2 * LEN / BLOCK; b++) {
        int k = b % 2, first = b / 2 * BLOCK + 1;
        for (int i = 0; i < BLOCK; i++) {
            snprintf(data[i], sizeof data[i], "{\"p\":%d}", first + i);
            ev[i] = tu_event("E", data[i]);
        }
        evs_append_result r;
        CHECK_RC(evs_append(s, name[k], EVS_EXPECT_ANY, ev, BLOCK, &r, NULL), EVS_OK);
        for (int i = 0; i < BLOCK; i++) gpos[k][first + i] = r.first_global_position + (uint64_t)i;
    }
    const char *mc = "{\"max_count\":300}", *tb = "{\"truncate_before\":100}";
    CHECK_RC(evs_stream_set_metadata(s, name[0], EVS_EXPECT_ANY, mc, strlen(mc), NULL), EVS_OK);
    CHECK_RC(evs_stream_set_metadata(s, name[1], EVS_EXPECT_ANY, tb, strlen(tb), NULL), EVS_OK);
    /* shown: mpage-a 301..600, mpage-b 100..600 */
    static uint64_t p[2 * LEN];
    int n = stream_positions(s, name[0], EVS_FORWARD, p, LEN), ok = 1;
    CHECK_INT(n, 300);
    for (int i = 0; i < n; i++) ok &= p[i] == (uint64_t)(301 + i);
    n = stream_positions(s, name[0], EVS_BACKWARD, p, LEN);
    CHECK_INT(n, 300);
    for (int i = 0; i < n; i++) ok &= p[i] == (uint64_t)(600 - i);
    n = stream_positions(s, name[1], EVS_FORWARD, p, LEN);
    CHECK_INT(n, 501);
    for (int i = 0; i < n; i++) ok &= p[i] == (uint64_t)(100 + i);
    n = stream_positions(s, name[1], EVS_BACKWARD, p, LEN);
    CHECK_INT(n, 501);
    for (int i = 0; i < n; i++) ok &= p[i] == (uint64_t)(600 - i);
    CHECK(ok);
    /* a forward read from inside the shown part, with its data */
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, name[0], 450, EVS_FORWARD, 0, &rd), EVS_OK);
    n = 0;
    while (evs_reader_next(rd, &e) == EVS_OK) {
        snprintf(data[0], sizeof data[0], "{\"p\":%d}", 450 + n);
        ok &= e->stream_position == (uint64_t)(450 + n) && e->data_len == strlen(data[0]) &&
              !memcmp(e->data, data[0], e->data_len);
        n++;
    }
    CHECK_INT(n, 151);
    CHECK_INT(evs_reader_position(rd), 601);
    evs_reader_close(rd);
    CHECK(ok);
    /* $all: every shown event once, in global order, in both directions */
    static uint64_t want[2 * LEN];
    int nw = 0;
    for (int b = 0; b < 2 * LEN / BLOCK; b++) /* the order of the appends is the global order */
        for (int k = b % 2, i = b / 2 * BLOCK + 1; i <= b / 2 * BLOCK + BLOCK; i++)
            if (k == 0 ? i > 300 : i >= 100) want[nw++] = gpos[k][i];
    CHECK_INT(nw, 801);
    n = all_positions(s, g0 + 1, EVS_FORWARD, p, 2 * LEN);
    CHECK(n >= nw); /* then the two $$ streams' events */
    ok = n >= nw;
    for (int i = 0; ok && i < nw; i++) ok &= p[i] == want[i];
    CHECK(ok);
    n = all_positions(s, g0 + 1, EVS_BACKWARD, p, 2 * LEN);
    CHECK(n >= nw);
    ok = n >= nw;
    for (int i = 0; ok && i < nw; i++) ok &= p[n - 1 - i] == want[i];
    CHECK(ok);
    CHECK_INT(all_count(s, name[0]), 300);
    CHECK_INT(all_count(s, name[1]), 501);
    /* a soft delete hides the whole stream from $all too */
    CHECK_RC(evs_stream_delete(s, name[1], EVS_EXPECT_ANY, 0), EVS_OK);
    CHECK_INT(all_count(s, name[1]), 0);
    CHECK_INT(stream_positions(s, name[1], EVS_FORWARD, p, LEN), -EVS_ENOTFOUND);
}

/*
 * Long stream reads (thousands of events, many pages; the PostgreSQL
 * engine reads them ahead on spare connections): every event once, in
 * order, with its data, with and without a limit, from inside the stream;
 * events appended while a read runs; metadata that comes to hide a prefix
 * while a read runs; and many long reads held open at once leave appends
 * and other reads working.
 */
static int long_check(evs_reader *rd, uint64_t first, uint64_t last) {
    const evs_event *e;
    char want[32];
    uint64_t at = first;
    int ok = 1, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
        snprintf(want, sizeof want, "{\"p\":%llu}", (unsigned long long)at);
        ok &= e->stream_position == at && e->data_len == strlen(want) && !memcmp(e->data, want, e->data_len);
        at++;
    }
    return ok && rc == EVS_DONE && at == last + 1;
}

static void long_append(evs_store *s, const char *stream, int from, int n) {
    static evs_event_in ev[100];
    static char data[100][32];
    for (int done = 0; done < n;) {
        int k = n - done < 100 ? n - done : 100;
        for (int i = 0; i < k; i++) {
            snprintf(data[i], sizeof data[i], "{\"p\":%d}", from + done + i);
            ev[i] = tu_event("Long", data[i]);
        }
        evs_append_result r;
        CHECK_RC(evs_append(s, stream, from + done - 1, ev, (size_t)k, &r, NULL), EVS_OK);
        done += k;
    }
}

static void test_long_reads(evs_store *s) {
    enum { LEN = 3000, HELD = 40 };
    long_append(s, "long-1", 1, LEN);
    evs_reader *rd;
    CHECK_RC(evs_read_stream(s, "long-1", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK(long_check(rd, 1, LEN));
    CHECK_INT(evs_reader_position(rd), LEN + 1);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "long-1", 1, EVS_FORWARD, 1500, &rd), EVS_OK);
    CHECK(long_check(rd, 1, 1500));
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "long-1", 700, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK(long_check(rd, 700, LEN));
    evs_reader_close(rd);
    /* a reader closed in the middle of a long read */
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "long-1", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    for (int i = 0; i < 300; i++) CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    evs_reader_close(rd);

    /* a read ends at the version the stream had when it began, whatever is appended meanwhile */
    long_append(s, "long-2", 1, 1200);
    CHECK_RC(evs_read_stream(s, "long-2", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->stream_position, 1);
    long_append(s, "long-2", 1201, 700);
    uint64_t at = 2;
    int ok = 1, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) ok &= e->stream_position == at++;
    CHECK_RC(rc, EVS_DONE);
    CHECK(ok);
    CHECK_INT(at, 1201);
    evs_reader_close(rd);

    /* a prefix hidden while the read runs: what follows comes in order, once, up to the end */
    long_append(s, "long-3", 1, 2000);
    CHECK_RC(evs_read_stream(s, "long-3", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    for (int i = 0; i < 10; i++) CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    const char *tb = "{\"truncate_before\":1500}";
    CHECK_RC(evs_stream_set_metadata(s, "long-3", EVS_EXPECT_ANY, tb, strlen(tb), NULL), EVS_OK);
    uint64_t prev = 10, first_after = 0;
    ok = 1;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
        ok &= e->stream_position > prev;
        prev = e->stream_position;
        if (prev >= 1500 && !first_after) first_after = prev;
    }
    CHECK_RC(rc, EVS_DONE);
    CHECK(ok);
    CHECK_INT(prev, 2000);
    CHECK_INT(first_after, 1500);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "long-3", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    CHECK_INT(e->stream_position, 1500);
    evs_reader_close(rd);

    /* many long reads held open in the middle: appends and other reads still run */
    static evs_reader *held[HELD];
    for (int i = 0; i < HELD; i++) {
        CHECK_RC(evs_read_stream(s, "long-1", 1, EVS_FORWARD, 0, &held[i]), EVS_OK);
        for (int k = 0; k < 300; k++) CHECK_RC(evs_reader_next(held[i], &e), EVS_OK);
    }
    long_append(s, "long-1", LEN + 1, 10);
    CHECK_RC(evs_read_stream(s, "long-1", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK(long_check(rd, 1, LEN + 10));
    evs_reader_close(rd);
    ok = 1;
    for (int i = 0; i < HELD; i++) {
        ok &= long_check(held[i], 301, LEN);
        evs_reader_close(held[i]);
    }
    CHECK(ok);
}

/* The subsystems above the store open on every engine; what works on the embedded log's files only
   (scavenge) answers EVS_ENOTSUP on the others, naming the operation, and changes nothing. */
static void test_engine_scope(evs_store *s) {
    evs_bus *bus = NULL;
    evs_schema_registry *reg = NULL;
    /* the consumer bus runs on both (its suites are tests/unit/test_bus_*.c) */
    CHECK_RC(evs_bus_open(s, &bus), EVS_OK);
    /* the schema registry too (tests/unit/test_schema_registry.c): its hook refuses an invalid append */
    CHECK_RC(evs_schema_open(s, &reg), EVS_OK);
    const char *sch = "{\"required\":[\"sku\"]}";
    evs_schema_def d = {"ScopeChecked", 0, sch, strlen(sch), NULL};
    uint32_t ver = 0;
    CHECK_RC(evs_schema_register(reg, &d, &ver, NULL), EVS_OK);
    CHECK_INT(ver, 1);
    evs_append_result r;
    CHECK_RC(append1(s, "scope-1", EVS_EXPECT_ANY, "ScopeChecked", "{}", &r), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "required property \"sku\" is missing");
    CHECK_RC(append1(s, "scope-1", EVS_EXPECT_ANY, "ScopeChecked", "{\"sku\":\"a\"}", &r), EVS_OK);
    evs_schema_close(reg);
    if (!cf_pg) {
        evs_bus_close(bus);
        return;
    }
    /* the application layer too (its suite: tests/unit/test_app.c, app_pg): its tables are in the database */
    evs_app *app = NULL;
    CHECK_RC(evs_app_open(s, bus, NULL, &app), EVS_OK);
    CHECK(app != NULL);
    evs_app_close(app);
    uint64_t head = evs_head(s);
    CHECK_RC(evs_scavenge(s, NULL, NULL), EVS_ENOTSUP);
    CHECK_CONTAINS(evs_errmsg(), "scavenge is not supported by the postgresql storage engine");
    CHECK_INT(evs_head(s), head);
    CHECK_STR(evs_strerror(EVS_ENOTSUP), "not supported by this storage engine");
    evs_bus_close(bus);
}

/* PostgreSQL only: a schema newer than this build is refused, never downgraded; the current one opens as is. */
static void test_pg_schema_version(const char *where) {
    PGconn *c = PQconnectdb(where);
    PGresult *r = PQexec(c, "SELECT max(version) FROM event_store_migrations");
    CHECK_INT(PQresultStatus(r), PGRES_TUPLES_OK);
    CHECK_STR(PQgetvalue(r, 0, 0), "10");
    PQclear(r);
    /* the hard delete of test_stream_metadata marked its stream's row guarded (the metadata's trigger) */
    r = PQexec(c, "SELECT guarded FROM event_streams WHERE aggregate_id = 'meta-4'");
    CHECK_INT(PQntuples(r), 1);
    if (PQntuples(r) == 1) CHECK_STR(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    /* a database of an earlier release (schema 3: no evs_append_batch, no bus table, no subject keys, no
       guarded stream rows, one trigger on them) is upgraded in place by an open; the bus table is empty here
       (the conformance cases open no consumer) */
    r = PQexec(c, "BEGIN; DROP FUNCTION evs_append_batch; DROP TABLE evs_bus_kv; DROP TABLE evs_subject_keys; "
                  "DROP TABLE evs_subject_master; DROP FUNCTION evs_subject_key; DROP FUNCTION evs_forget_subject; "
                  "DROP FUNCTION evs_subject_master_check; ALTER TABLE event_stream_metadata DROP COLUMN encrypt; "
                  "DROP TRIGGER event_stream_metadata_guard ON event_stream_metadata; DROP FUNCTION evs_guard_stream; "
                  "DROP TRIGGER event_streams_guarded ON event_streams; DROP TRIGGER event_streams_tombstone ON "
                  "event_streams; CREATE TRIGGER event_streams_tombstone BEFORE INSERT OR UPDATE ON event_streams "
                  "FOR EACH ROW EXECUTE FUNCTION evs_refuse_tombstoned(); ALTER TABLE event_streams DROP COLUMN "
                  "guarded; DELETE FROM event_store_migrations WHERE version IN (4, 5, 6, 7, 8, 9, 10); COMMIT");
    CHECK_INT(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, where, EVS_OPEN_CREATE), EVS_OK);
    evs_store_close(s);
    r = PQexec(c, "SELECT (SELECT max(version) FROM event_store_migrations), "
                  "(SELECT count(*) FROM pg_proc WHERE proname = 'evs_append_batch'), "
                  "(SELECT count(*) FROM pg_tables WHERE tablename = 'evs_bus_kv'), "
                  "(SELECT count(*) FROM pg_tables WHERE tablename = 'evs_subject_keys'), "
                  "(SELECT count(*) FROM pg_proc WHERE proname IN ('evs_append', 'evs_append_batch', "
                  "'evs_refuse_tombstoned') AND proconfig = '{enable_seqscan=off,plan_cache_mode=force_generic_plan}'), "
                  "(SELECT string_agg(tgname || ':' || (pg_get_triggerdef(oid) LIKE '%WHEN%'), ',' ORDER BY tgname) "
                  "FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'event_stream%'), "
                  "(SELECT string_agg(aggregate_id, ',' ORDER BY aggregate_id) FROM event_streams WHERE guarded), "
                  "(SELECT count(*) FROM event_streams s JOIN event_stream_metadata m USING (aggregate_id) "
                  "WHERE s.guarded <> (m.tombstone OR m.encrypt IS NOT NULL)), "
                  "(SELECT count(*) FROM event_stream_metadata)");
    CHECK_INT(PQresultStatus(r), PGRES_TUPLES_OK);
    CHECK_STR(PQgetvalue(r, 0, 0), "10");
    CHECK_STR(PQgetvalue(r, 0, 1), "1");
    CHECK_STR(PQgetvalue(r, 0, 2), "1");
    CHECK_STR(PQgetvalue(r, 0, 3), "1");
    CHECK_STR(PQgetvalue(r, 0, 4), "3");
    /* the upgrade marks the rows of streams with a tombstone (meta-4) and only those (the others' metadata
       sets limits); a stream row's update runs the check only WHEN it is guarded */
    CHECK_STR(PQgetvalue(r, 0, 5), "event_stream_metadata_guard:false,event_streams_guarded:true,"
                                   "event_streams_tombstone:false");
    CHECK_STR(PQgetvalue(r, 0, 6), "meta-4");
    CHECK_STR(PQgetvalue(r, 0, 7), "0");
    CHECK(atoi(PQgetvalue(r, 0, 8)) > 1);
    PQclear(r);
    r = PQexec(c, "INSERT INTO event_store_migrations (version, description) VALUES (99, 'from the future')");
    PQclear(r);
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, where, EVS_OPEN_CREATE), EVS_EFORMAT);
    CHECK_CONTAINS(evs_errmsg(), "schema is version 99, this build knows up to 10");
    evs_store_close(s);
    r = PQexec(c, "DELETE FROM event_store_migrations WHERE version = 99");
    PQclear(r);
    PQfinish(c);
}

/* How often event_store and event_streams were scanned whole, and looked up by an index, so far. */
static void pg_scans(PGconn *c, long long *seq, long long *idx) {
    PGresult *r = PQexec(c, "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(idx_scan), 0) FROM pg_stat_user_tables "
                            "WHERE relname IN ('event_store', 'event_streams')");
    CHECK_INT(PQresultStatus(r), PGRES_TUPLES_OK);
    *seq = atoll(PQgetvalue(r, 0, 0));
    *idx = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
}

/*
 * PostgreSQL only: appends to a young database look their event ids and
 * streams up through the indexes.  The append functions' statements are
 * planned once per session; planned while the tables were nearly empty they
 * used to be sequential scans, kept while the tables grew (each append then
 * read the whole table, until autovacuum's next ANALYZE replanned them).
 * Counted through PostgreSQL's own statistics: 400 appends from one thread
 * to a fresh database make about 800 index lookups and no whole-table scan.
 */
static void test_pg_young_tables(void) {
    char *where = cf_fresh("young");
    evs_store *s = cf_open(where);
    PGconn *c = PQconnectdb(where);
    CHECK_INT(PQstatus(c), CONNECTION_OK);
    long long seq0, idx0, seq, idx;
    pg_scans(c, &seq0, &idx0);
    evs_append_result r;
    for (int i = 0; i < 400; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "young-%d", i % 7);
        CHECK_RC(append1(s, stream, EVS_EXPECT_ANY, "E", "{\"i\":1}", &r), EVS_OK);
    }
    evs_store_close(s); /* its sessions end, and report their statistics as they do */
    /* statistics arrive when a session ends or goes idle: wait until the lookups are counted */
    for (int i = 0; i < 100; i++) {
        pg_scans(c, &seq, &idx);
        if ((seq - seq0) + (idx - idx0) >= 700) break;
        PGresult *x = PQexec(c, "SELECT pg_stat_clear_snapshot(), pg_sleep(0.1)");
        PQclear(x);
    }
    printf("young tables: %lld whole-table scans, %lld index lookups in 400 appends\n", seq - seq0, idx - idx0);
    CHECK((seq - seq0) + (idx - idx0) >= 700);
    CHECK(seq - seq0 <= 20); /* the store's open and its head read may scan; appends must not */
    PQfinish(c);
    cf_drop(where);
}

/* PostgreSQL only: check names what SQL run by hand broke, and a healed database checks clean again. */
static void test_pg_check(const char *where) {
    evs_store *s = cf_open(where);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    uint64_t head = evs_head(s);
    CHECK_INT(rep.events, head);
    evs_store_close(s);
    PGconn *c = PQconnectdb(where);
    struct {
        const char *damage, *heal, *names;
    } cases[] = {
        {"UPDATE event_streams SET version = version + 1 WHERE aggregate_id = 'order-2'",
         "UPDATE event_streams SET version = version - 1 WHERE aggregate_id = 'order-2'", "stream \"order-2\": its row says"},
        {"UPDATE event_store SET global_position = 1000000000 WHERE global_position = 3",
         "UPDATE event_store SET global_position = 3 WHERE global_position = 1000000000",
         "global position 4: expected 3 after 2 (a gap)"},
        {"UPDATE event_store_head SET global_position = global_position + 5",
         "UPDATE event_store_head SET global_position = global_position - 5", "head row says"},
        {"UPDATE event_streams SET guarded = false WHERE aggregate_id = 'meta-4'",
         "UPDATE event_streams SET guarded = true WHERE aggregate_id = 'meta-4'",
         "stream \"meta-4\": its metadata has a tombstone, but its row is not marked guarded"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PGresult *r = PQexec(c, cases[i].damage);
        CHECK_INT(PQresultStatus(r), PGRES_COMMAND_OK);
        PQclear(r);
        s = cf_open(where);
        CHECK_RC(evs_store_check(s, &rep), EVS_ECORRUPT);
        CHECK(rep.errors >= 1);
        CHECK_CONTAINS(rep.first_error, cases[i].names);
        CHECK_CONTAINS(evs_errmsg(), "check found");
        evs_store_close(s);
        r = PQexec(c, cases[i].heal);
        PQclear(r);
    }
    PQfinish(c);
    s = cf_open(where);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    evs_store_close(s);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    char *where = cf_fresh("conf");
    evs_store *s = cf_open(where);
    test_expected_versions(s);
    test_atomic_and_verbatim(s);
    test_idempotency(s);
    test_reads(s);
    test_filters(s);
    test_bad_input(s);
    test_wait_for(s);
    test_stream_metadata(s);
    test_metadata_pages(s);
    test_long_reads(s);
    test_engine_scope(s);
    /* reopen: everything is still there, the head too */
    uint64_t head = evs_head(s);
    CHECK_RC(evs_store_close(s), EVS_OK);
    s = cf_open(where);
    CHECK_INT(evs_head(s), head);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "page-odd", &info), EVS_OK);
    CHECK_INT(info.version, 350);
    evs_append_result r;
    CHECK_RC(append1(s, "order-1", 4, "After", "{}", &r), EVS_OK);
    CHECK_INT(r.first_global_position, head + 1);
    CHECK_RC(evs_store_close(s), EVS_OK);
    if (cf_pg) test_pg_schema_version(where);
    if (cf_pg) test_pg_check(where);
    if (cf_pg) test_pg_young_tables();
    cf_drop(where);
    return TEST_REPORT();
}
