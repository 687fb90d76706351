/*
 * test_stream_meta.c — stream metadata and deletion (src/store/meta.c):
 *   1. metadata round trip: custom keys kept byte for byte, versions, the
 *      expected metadata version checked, bad input refused with the key
 *      named and nothing changed;
 *   2. truncate_before, max_count and max_age (an injected clock) on stream
 *      reads, $all reads and a subscription, which still advances past
 *      what it skips;
 *   3. soft delete: the stream reads as not found, appending with expected
 *      "no stream" re-creates it and positions continue;
 *   4. hard delete: appends and metadata writes refused with EVS_EDELETED;
 *   5. everything survives a reopen.
 */
#include "evstore_bus.h"
#include "store/store_access.h"
#include "store/store_testing.h"
#include "testutil.h"

static int64_t fake_now;
static int64_t fake_clock(void *ctx) {
    (void)ctx;
    return fake_now;
}

static void add(evs_store *s, const char *stream, int n) {
    for (int i = 0; i < n; i++) {
        evs_event_in e = tu_event("T", "{\"x\":1}");
        evs_append_result r;
        CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    }
}

/* Stream positions a forward read of stream shows; -1 on error (rc in *rc_out). */
static int read_spos(evs_store *s, const char *stream, uint64_t *pos, int max, int *rc_out) {
    evs_reader *rd;
    *rc_out = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd);
    if (*rc_out) return -1;
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (n < max) pos[n++] = e->stream_position;
    evs_reader_close(rd);
    *rc_out = rc;
    return rc == EVS_DONE ? n : -1;
}

/* How many events of `stream` a $all read shows, and the reader's end position. */
static int count_all(evs_store *s, const char *stream, uint64_t *end) {
    evs_reader *rd;
    if (evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd)) return -1;
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK)
        if (e->stream_len == strlen(stream) && !memcmp(e->stream, stream, e->stream_len)) n++;
    if (end) *end = evs_reader_position(rd);
    evs_reader_close(rd);
    return rc == EVS_DONE ? n : -1;
}

static void test_roundtrip(evs_store *s) {
    char *j;
    size_t jl;
    uint64_t v;
    evs_stream_metadata m;
    /* unknown stream, no metadata */
    CHECK_RC(evs_stream_get_metadata(s, "nope-1", &j, &jl, &v, &m), EVS_ENOTFOUND);
    add(s, "meta-1", 2);
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &j, &jl, &v, &m), EVS_OK);
    CHECK_STR(j, "{}");
    CHECK_INT(v, 0);
    CHECK_INT(m.max_count, -1);
    free(j);
    const char *doc = "{\"max_count\": 5, \"owner\": {\"team\": \"billing\"}, \"max_age\": null}";
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_NO_STREAM, doc, strlen(doc), &v), EVS_OK);
    CHECK_INT(v, 1);
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &j, &jl, &v, &m), EVS_OK);
    CHECK_STR(j, doc);
    CHECK_INT(v, 1);
    CHECK_INT(m.max_count, 5);
    CHECK_INT(m.max_age, -1);
    CHECK_INT(m.truncate_before, 0);
    free(j);
    /* the expected metadata version is checked */
    const char *d2 = "{\"truncate_before\": 2}";
    v = 99;
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_NO_STREAM, d2, strlen(d2), &v), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "expected metadata version 0, actual 1");
    CHECK_INT(v, 1); /* the actual version the refusal names, for the server's 409 */
    v = 99;
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", 0, d2, strlen(d2), &v), EVS_ECONFLICT);
    CHECK_INT(v, 1);
    /* bad input: nothing changes */
    const char *bad[] = {"{\"max_count\": -1}", "{\"max_age\": 1.5}", "{\"truncate_before\": \"x\"}",
                         "{\"max_count\": 3,", "[1]", "{\"$tombstone\": true}"};
    int want[] = {EVS_EINVAL, EVS_EINVAL, EVS_EINVAL, EVS_EJSON, EVS_EJSON, EVS_EINVAL};
    const char *named[] = {"max_count", "max_age", "truncate_before", "line 1", "object", "reserved"};
    for (int i = 0; i < 6; i++) {
        CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_ANY, bad[i], strlen(bad[i]), &v), want[i]);
        CHECK_CONTAINS(evs_errmsg(), named[i]);
    }
    CHECK_RC(evs_stream_set_metadata(s, "$bad", EVS_EXPECT_ANY, "{}", 2, &v), EVS_EINVAL);
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &j, &jl, &v, &m), EVS_OK);
    CHECK_STR(j, doc);
    CHECK_INT(v, 1);
    free(j);
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", 1, d2, strlen(d2), &v), EVS_OK);
    CHECK_INT(v, 2);
    CHECK_RC(evs_stream_set_metadata(s, "meta-1", EVS_EXPECT_ANY, "{}", 2, &v), EVS_OK);
    CHECK_INT(v, 3);
    /* metadata before the stream exists is allowed */
    CHECK_RC(evs_stream_set_metadata(s, "later-1", EVS_EXPECT_ANY, "{\"max_count\":1}", 15, &v), EVS_OK);
    add(s, "later-1", 3);
    uint64_t p[16];
    int rc;
    CHECK_INT(read_spos(s, "later-1", p, 16, &rc), 1);
    CHECK_INT(p[0], 3);
    /* many streams with metadata (the cache's hash index grows): each finds its own */
    char name[32];
    for (int i = 0; i < 70; i++) {
        snprintf(name, sizeof name, "many-%d", i);
        add(s, name, 2);
        char doc2[64];
        snprintf(doc2, sizeof doc2, "{\"max_count\": %d}", i % 3);
        CHECK_RC(evs_stream_set_metadata(s, name, EVS_EXPECT_NO_STREAM, doc2, strlen(doc2), NULL), EVS_OK);
    }
    add(s, "many-x", 2);
    for (int i = 0; i < 70; i++) {
        snprintf(name, sizeof name, "many-%d", i);
        CHECK_INT(read_spos(s, name, p, 16, &rc), i % 3); /* max_count 0, 1 or 2 of 2 events */
    }
    CHECK_INT(read_spos(s, "many-x", p, 16, &rc), 2);
}

static void test_truncation(evs_store *s, evs_bus *b) {
    add(s, "tr-1", 6);
    add(s, "keep-1", 2);
    /* a subscription over $all, caught up before the metadata changes */
    uint64_t p[16];
    int rc, n;
    uint64_t end;
    CHECK_INT(count_all(s, "tr-1", &end), 6);
    const char *d = "{\"truncate_before\": 3}";
    CHECK_RC(evs_stream_set_metadata(s, "tr-1", EVS_EXPECT_ANY, d, strlen(d), NULL), EVS_OK);
    n = read_spos(s, "tr-1", p, 16, &rc);
    CHECK_INT(n, 4);
    CHECK_INT(p[0], 3);
    CHECK_INT(count_all(s, "tr-1", &end), 4);
    CHECK_INT(end, evs_head(s) + 1); /* the reader still walked to the head */
    CHECK_INT(count_all(s, "keep-1", NULL), 2);
    /* backward reads skip the same */
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "tr-1", EVS_POSITION_END, EVS_BACKWARD, 0, &rd), EVS_OK);
    n = 0;
    while (evs_reader_next(rd, &e) == EVS_OK) n++;
    CHECK_INT(n, 4);
    evs_reader_close(rd);
    /* max_count on top: the last 2 */
    d = "{\"truncate_before\": 3, \"max_count\": 2}";
    CHECK_RC(evs_stream_set_metadata(s, "tr-1", EVS_EXPECT_ANY, d, strlen(d), NULL), EVS_OK);
    n = read_spos(s, "tr-1", p, 16, &rc);
    CHECK_INT(n, 2);
    CHECK_INT(p[0], 5);
    CHECK_INT(p[1], 6);
    add(s, "tr-1", 1); /* moves the window at once */
    n = read_spos(s, "tr-1", p, 16, &rc);
    CHECK_INT(n, 2);
    CHECK_INT(p[0], 6);
    CHECK_INT(count_all(s, "tr-1", NULL), 2);
    /* max_age, with the injected clock */
    fake_now = evs_now_ns();
    CHECK_RC(evs__store_set_clock(s, fake_clock, NULL), EVS_OK);
    d = "{\"max_age\": 60}";
    CHECK_RC(evs_stream_set_metadata(s, "tr-1", EVS_EXPECT_ANY, d, strlen(d), NULL), EVS_OK);
    CHECK_INT(read_spos(s, "tr-1", p, 16, &rc), 7);
    fake_now += 61LL * 1000000000;
    CHECK_INT(read_spos(s, "tr-1", p, 16, &rc), 0);
    CHECK_INT(count_all(s, "tr-1", NULL), 0);
    add(s, "tr-1", 1); /* recorded at the wall clock, 61 s before the fake one: too old */
    CHECK_INT(read_spos(s, "tr-1", p, 16, &rc), 0);
    fake_now -= 61LL * 1000000000;
    CHECK_INT(read_spos(s, "tr-1", p, 16, &rc), 8);
    CHECK_RC(evs__store_set_clock(s, NULL, NULL), EVS_OK);

    /* for the subscription below: only the last event of tr-1 shows */
    d = "{\"max_count\": 1}";
    CHECK_RC(evs_stream_set_metadata(s, "tr-1", EVS_EXPECT_ANY, d, strlen(d), NULL), EVS_OK);
    (void)b;
}

static int count_tr(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)err, (void)cap;
    int *n = ctx;
    if (ev->stream_len == 4 && !memcmp(ev->stream, "tr-1", 4)) n[0]++;
    n[1]++;
    return 0;
}

static void test_subscription(evs_store *s, evs_bus *b) {
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "meta-sub";
    c.checkpoint_every = 1;
    int n[2] = {0, 0};
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, count_tr, n, &sub), EVS_OK);
    size_t got;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &got), EVS_OK);
    CHECK_INT(n[0], 1); /* tr-1 shows its last event only */
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "meta-sub", &info), EVS_OK);
    CHECK_INT(info.checkpoint, evs_head(s)); /* advanced past every skipped position */
    /* live: a stream deleted while subscribed is skipped */
    add(s, "gone-1", 2);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &got), EVS_OK);
    CHECK_INT(got, 2);
    CHECK_RC(evs_stream_delete(s, "gone-1", EVS_EXPECT_ANY, 0), EVS_OK);
    add(s, "keep-1", 1);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &got), EVS_OK);
    CHECK_INT(got, 2); /* the metadata event and keep-1's */
    evs_sub_close(sub);
}

static void test_soft_delete(evs_store *s) {
    add(s, "del-1", 3);
    uint64_t p[16];
    int rc;
    evs_stream_info info;
    /* expected version checked */
    CHECK_RC(evs_stream_delete(s, "del-1", 2, 0), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "expected version 2, actual version 3");
    /* the server's variant hands back the stream's version the refusal names */
    uint64_t actual = 0;
    CHECK_RC(evs__stream_delete(s, "del-1", EVS_EXPECT_NO_STREAM, 0, &actual), EVS_ECONFLICT);
    CHECK_INT(actual, 3);
    CHECK_RC(evs_stream_delete(s, "del-1", 3, 0), EVS_OK);
    CHECK_INT(read_spos(s, "del-1", p, 16, &rc), -1);
    CHECK_RC(rc, EVS_ENOTFOUND);
    CHECK_RC(evs_stream_get_info(s, "del-1", &info), EVS_ENOTFOUND);
    CHECK_INT(count_all(s, "del-1", NULL), 0);
    evs_stream_info li[4];
    size_t nl;
    CHECK_RC(evs_list_streams(s, "del-", NULL, li, 4, &nl), EVS_OK);
    CHECK_INT(nl, 0); /* not listed either */
    CHECK_RC(evs_stream_delete(s, "del-1", EVS_EXPECT_ANY, 0), EVS_ENOTFOUND); /* already */
    CHECK_RC(evs_stream_delete(s, "never-1", EVS_EXPECT_ANY, 0), EVS_ENOTFOUND);
    CHECK_RC(evs_stream_delete(s, "never-1", EVS_EXPECT_ANY, 1), EVS_ENOTFOUND);
    /* re-create with "no stream": positions continue */
    evs_event_in e = tu_event("T", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(s, "del-1", EVS_EXPECT_EXISTS, &e, 1, &r, NULL), EVS_OK);
    /* (exists holds: the stream has a version; documented) */
    CHECK_INT(r.first_stream_position, 4);
    CHECK_RC(evs_stream_delete(s, "del-1", EVS_EXPECT_ANY, 0), EVS_OK);
    evs_uuid id;
    evs_uuid_v7(&id);
    e.event_id = &id;
    CHECK_RC(evs_append(s, "del-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL), EVS_OK);
    CHECK_INT(r.first_stream_position, 5);
    /* a retry of that re-creating append is idempotent, not a conflict */
    CHECK_RC(evs_append(s, "del-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL), EVS_OK);
    CHECK_INT(r.idempotent, 1);
    CHECK_INT(r.first_stream_position, 5);
    e.event_id = NULL;
    CHECK_INT(read_spos(s, "del-1", p, 16, &rc), 1);
    CHECK_INT(p[0], 5);
    CHECK_RC(evs_stream_get_info(s, "del-1", &info), EVS_OK);
    CHECK_INT(info.version, 5);
    CHECK_RC(evs_list_streams(s, "del-", NULL, li, 4, &nl), EVS_OK);
    CHECK_INT(nl, 1);
    /* "no stream" again is now a conflict: the stream exists */
    CHECK_RC(evs_append(s, "del-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL), EVS_ECONFLICT);
    CHECK_INT(count_all(s, "del-1", NULL), 1);
}

static void test_hard_delete(evs_store *s) {
    add(s, "hard-1", 2);
    CHECK_RC(evs_stream_delete(s, "hard-1", 2, 1), EVS_OK);
    uint64_t p[4];
    int rc;
    CHECK_INT(read_spos(s, "hard-1", p, 4, &rc), -1);
    CHECK_RC(rc, EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "hard-deleted");
    evs_event_in e = tu_event("T", "{}");
    evs_append_result r;
    uint64_t head = evs_head(s);
    CHECK_RC(evs_append(s, "hard-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL), EVS_EDELETED);
    CHECK_CONTAINS(evs_errmsg(), "hard-1");
    CHECK_RC(evs_append(s, "hard-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EDELETED);
    CHECK_RC(evs_stream_set_metadata(s, "hard-1", EVS_EXPECT_ANY, "{}", 2, NULL), EVS_EDELETED);
    CHECK_RC(evs_stream_delete(s, "hard-1", EVS_EXPECT_ANY, 0), EVS_EDELETED);
    CHECK_RC(evs_stream_delete(s, "hard-1", EVS_EXPECT_ANY, 1), EVS_EDELETED);
    CHECK_INT(evs_head(s), head); /* nothing stored */
    CHECK_INT(count_all(s, "hard-1", NULL), 0);
    evs_stream_metadata m;
    CHECK_RC(evs_stream_get_metadata(s, "hard-1", NULL, NULL, NULL, &m), EVS_OK);
    CHECK_INT(m.tombstone, 1);
}

static void check_after_reopen(evs_store *s) {
    uint64_t p[16];
    int rc;
    CHECK_INT(read_spos(s, "tr-1", p, 16, &rc), 1);
    CHECK_INT(p[0], 8);
    CHECK_INT(read_spos(s, "del-1", p, 16, &rc), 1);
    CHECK_INT(read_spos(s, "later-1", p, 16, &rc), 1);
    CHECK_INT(read_spos(s, "gone-1", p, 16, &rc), -1);
    CHECK_RC(rc, EVS_ENOTFOUND);
    evs_event_in e = tu_event("T", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(s, "hard-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EDELETED);
    char *j;
    uint64_t v;
    CHECK_RC(evs_stream_get_metadata(s, "meta-1", &j, NULL, &v, NULL), EVS_OK);
    CHECK_STR(j, "{}");
    CHECK_INT(v, 3);
    free(j);
    /* gone-1 re-created after the reopen continues its positions */
    CHECK_RC(evs_append(s, "gone-1", EVS_EXPECT_NO_STREAM, &e, 1, &r, NULL), EVS_OK);
    CHECK_INT(r.first_stream_position, 3);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
}

int main(void) {
    char *d = tu_tempdir("stream-meta");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    test_roundtrip(s);
    test_truncation(s, b);
    test_subscription(s, b);
    test_soft_delete(s);
    test_hard_delete(s);
    evs_bus_close(b);
    CHECK_RC(evs_store_close(s), EVS_OK);
    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    check_after_reopen(s);
    CHECK_RC(evs_store_close(s), EVS_OK);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}
