/*
 * test_store.c — the store's semantics through the public API: expected
 * versions, idempotency, atomic multi-event appends, every read direction
 * and filter, paging, limits, bad input, reopen, locking and index rebuild.
 */
#include <pthread.h>

#include "testutil.h"

static char *dir;

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
}

static void test_atomic_and_verbatim(evs_store *s) {
    const char *d1 = "{\"price\":1.50,\"big\":12345678901234567890,\"s\":\"\\u00e9\\n\"}";
    const char *m1 = "{ \"user\" : \"x\" }";
    evs_uuid corr, caus;
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
    ev[0].occurred_at = 1000;
    ev[2].stream_type = "special";
    ev[2].correlation_id = &corr;
    evs_uuid ids[3];
    evs_append_result r;
    CHECK_RC(evs_append(s, "cart-9", EVS_EXPECT_NO_STREAM, ev, 3, &r, ids), EVS_OK);
    CHECK_INT(r.first_stream_position, 1);
    CHECK_INT(r.last_stream_position, 3);
    CHECK_INT(r.last_global_position - r.first_global_position, 2);
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "cart-9", 1, EVS_FORWARD, 0, &rd), EVS_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
        if (!e) break;
        CHECK_INT(e->stream_position, i + 1);
        CHECK_INT(e->global_position, r.first_global_position + (uint64_t)i);
        CHECK(memcmp(&e->event_id, &ids[i], 16) == 0);
        CHECK_MEM(e->stream, e->stream_len, "cart-9");
        CHECK_INT(e->recorded_at, r.recorded_at);
        if (i == 0) {
            CHECK_MEM(e->data, e->data_len, d1);
            CHECK_MEM(e->metadata, e->metadata_len, m1);
            CHECK_MEM(e->event_type, e->event_type_len, "ItemAdded");
            CHECK_MEM(e->stream_type, e->stream_type_len, "cart");
            CHECK_MEM(e->tags, e->tags_len, "[\"vip\",\"eu \\\"west\\\"\"]");
            CHECK(e->has_correlation_id && !memcmp(&e->correlation_id, &corr, 16));
            CHECK(e->has_causation_id && !memcmp(&e->causation_id, &caus, 16));
            CHECK_INT(e->event_version, 3);
            CHECK_INT(e->occurred_at, 1000);
        } else if (i == 1) {
            CHECK_MEM(e->metadata, e->metadata_len, "{}");
            CHECK(e->tags == NULL);
            CHECK(!e->has_correlation_id && !e->has_causation_id);
            CHECK_INT(e->event_version, 1);
            CHECK(e->occurred_at > 0);
        } else {
            CHECK_MEM(e->stream_type, e->stream_type_len, "special");
        }
    }
    CHECK_RC(evs_reader_next(rd, &e), EVS_DONE);
    evs_reader_close(rd);

    /* a bad event anywhere stores nothing */
    uint64_t head = evs_head(s);
    evs_event_in bad[2] = {tu_event("Ok", "{}"), tu_event("Bad", "{\"a\":}")};
    CHECK_RC(evs_append(s, "cart-9", EVS_EXPECT_ANY, bad, 2, &r, NULL), EVS_EJSON);
    CHECK_CONTAINS(evs_errmsg(), "event 2: data: line 1, column 6");
    CHECK_INT(evs_head(s), head);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "cart-9", &info), EVS_OK);
    CHECK_INT(info.version, 3);
}

static void test_idempotency(evs_store *s) {
    evs_uuid ids[2];
    evs_uuid_v7(&ids[0]);
    evs_uuid_v7(&ids[1]);
    evs_event_in ev[2] = {tu_event("Paid", "{\"amount\":10}"), tu_event("Shipped", "{}")};
    ev[0].event_id = &ids[0];
    ev[1].event_id = &ids[1];
    evs_append_result r, r2;
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_NO_STREAM, ev, 2, &r, NULL), EVS_OK);
    uint64_t head = evs_head(s);
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_NO_STREAM, ev, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_global_position, r.first_global_position);
    CHECK_INT(r2.last_stream_position, 2);
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, ev, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(evs_head(s), head);
    /* same ids at other positions: the caller's expectation is wrong */
    CHECK_RC(evs_append(s, "pay-1", 5, ev, 2, &r2, NULL), EVS_ECONFLICT);
    CHECK_INT(r2.actual_version, 2);
    /* the ids in another stream */
    CHECK_RC(evs_append(s, "pay-2", EVS_EXPECT_ANY, ev, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "another stream");
    /* a retry that adds a new event to stored ones */
    evs_uuid fresh;
    evs_uuid_v7(&fresh);
    evs_event_in ev3[3] = {ev[0], ev[1], tu_event("X", "{}")};
    ev3[2].event_id = &fresh;
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, ev3, 3, &r2, NULL), EVS_EDUPLICATE);
    /* the second one alone, where it is stored: with "any" that is a retry too */
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, &ev[1], 1, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_stream_position, 2);
    /* ...but not when the caller expects it at the start of the stream */
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_NO_STREAM, &ev[1], 1, &r2, NULL), EVS_ECONFLICT);
    /* the same id twice in one append */
    evs_event_in twice[2] = {tu_event("X", "{}"), tu_event("Y", "{}")};
    twice[0].event_id = &fresh;
    twice[1].event_id = &fresh;
    CHECK_RC(evs_append(s, "pay-3", EVS_EXPECT_ANY, twice, 2, &r2, NULL), EVS_EINVAL);
    CHECK_INT(evs_head(s), head);
    /* a single-event retry */
    evs_event_in one = tu_event("Refunded", "{}");
    one.event_id = &fresh;
    CHECK_RC(evs_append(s, "pay-1", 2, &one, 1, &r, NULL), EVS_OK);
    CHECK_RC(evs_append(s, "pay-1", 2, &one, 1, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_stream_position, 3);
    /* the idempotent answer carries the original recorded_at */
    CHECK(r.recorded_at > 0);
    CHECK_INT(r2.recorded_at, r.recorded_at);
    /* a stored id with other content is no retry: refused, the stored event stays */
    head = evs_head(s);
    evs_event_in changed = one;
    changed.data = "{\"x\":1}";
    changed.data_len = strlen(changed.data);
    CHECK_RC(evs_append(s, "pay-1", 2, &changed, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "already stored (global position");
    CHECK_CONTAINS(evs_errmsg(), "with other data");
    changed = one;
    changed.metadata = "{\"who\":\"b\"}";
    changed.metadata_len = strlen(changed.metadata);
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, &changed, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "with other metadata");
    changed = one;
    changed.event_type = "Refund";
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, &changed, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "with other event_type");
    const char *tag[] = {"t"};
    changed = one;
    changed.tags = tag;
    changed.ntags = 1;
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, &changed, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "with other tags");
    /* the second event of a two-event retry differs: named as event 2 */
    evs_event_in ev2[2] = {ev[0], ev[1]};
    ev2[1].data = "{\"changed\":true}";
    ev2[1].data_len = strlen(ev2[1].data);
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, ev2, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "event 2: event_id");
    /* occurred_at is not content (it defaults to now on every call) */
    changed = one;
    changed.occurred_at = 12345;
    CHECK_RC(evs_append(s, "pay-1", EVS_EXPECT_ANY, &changed, 1, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(evs_head(s), head);
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "pay-1", 3, EVS_FORWARD, 1, &rd), EVS_OK);
    CHECK_RC(evs_reader_next(rd, &e), EVS_OK);
    if (e) {
        CHECK_MEM(e->data, e->data_len, "{}");
        CHECK_MEM(e->event_type, e->event_type_len, "Refunded");
    }
    evs_reader_close(rd);


    /* ids the store generated (they skip the idempotency lookups), sent
       back by the caller: a retry like any other */
    evs_event_in gen[2] = {tu_event("A", "{}"), tu_event("B", "{}")};
    evs_uuid got[2];
    CHECK_RC(evs_append(s, "gen-1", EVS_EXPECT_NO_STREAM, gen, 2, &r, got), EVS_OK);
    CHECK_INT(r.idempotent, 0);
    head = evs_head(s);
    gen[0].event_id = &got[0];
    gen[1].event_id = &got[1];
    CHECK_RC(evs_append(s, "gen-1", EVS_EXPECT_NO_STREAM, gen, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_global_position, r.first_global_position);
    CHECK_RC(evs_append(s, "gen-2", EVS_EXPECT_ANY, gen, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_INT(evs_head(s), head);
    /* a caller's id and one the store makes, in one append */
    evs_uuid mine, made[2];
    evs_uuid_v7(&mine);
    evs_event_in mix[2] = {tu_event("A", "{}"), tu_event("B", "{}")};
    mix[0].event_id = &mine;
    CHECK_RC(evs_append(s, "mix-1", EVS_EXPECT_ANY, mix, 2, &r, made), EVS_OK);
    CHECK_INT(r.idempotent, 0);
    CHECK(!memcmp(&made[0], &mine, 16));
    CHECK(memcmp(&made[1], &mine, 16) != 0);
    head = evs_head(s);
    /* sent again as it was, the store makes a new second id: not a retry, nothing stored */
    CHECK_RC(evs_append(s, "mix-1", EVS_EXPECT_ANY, mix, 2, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "event 2");
    CHECK_INT(evs_head(s), head);
    /* sent again with the id the store made: a retry */
    mix[1].event_id = &made[1];
    CHECK_RC(evs_append(s, "mix-1", EVS_EXPECT_ANY, mix, 2, &r2, NULL), EVS_OK);
    CHECK_INT(r2.idempotent, 1);
    CHECK_INT(r2.first_global_position, r.first_global_position);
    /* the caller's id alone in another stream: a duplicate, found without the generated one's help */
    CHECK_RC(evs_append(s, "mix-2", EVS_EXPECT_ANY, mix, 1, &r2, NULL), EVS_EDUPLICATE);
    CHECK_CONTAINS(evs_errmsg(), "another stream");
    CHECK_INT(evs_head(s), head);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "mix-1", &info), EVS_OK);
    CHECK_INT(info.version, 2);
}

static void test_bad_input(evs_store *s) {
    uint64_t head = evs_head(s);
    evs_append_result r;
    evs_event_in e = tu_event("T", "{}");
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = 0;
    CHECK_RC(evs_append(s, "", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "stream name is empty");
    CHECK_RC(evs_append(s, longname, EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_ELIMIT);
    CHECK_RC(evs_append(s, "bad\xff", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "UTF-8");
    CHECK_RC(evs_append(s, "tab\there", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
    CHECK_RC(evs_append(s, "$all", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
    CHECK_RC(evs_append(s, NULL, EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_EINVAL);
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &e, 0, &r, NULL), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "at least one event");
    evs_event_in bad = tu_event("T", "[1,2]");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EJSON);
    bad = tu_event("T", "\"str\"");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EJSON);
    bad = tu_event("T", "{\"a\":1,}");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EJSON);
    bad = tu_event("T", "{}");
    bad.metadata = "{";
    bad.metadata_len = 1;
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EJSON);
    CHECK_CONTAINS(evs_errmsg(), "metadata");
    bad = tu_event("", "{}");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EINVAL);
    bad = tu_event(NULL, "{}");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EINVAL);
    bad = tu_event("T", "{}");
    bad.data = NULL;
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EINVAL);
    evs_uuid nil;
    memset(&nil, 0, sizeof nil);
    bad = tu_event("T", "{}");
    bad.event_id = &nil;
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EINVAL);
    const char *badtags[] = {"ok", ""};
    bad = tu_event("T", "{}");
    bad.tags = badtags;
    bad.ntags = 2;
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_EINVAL);
    /* oversized event: 16 MiB + 1 of valid JSON */
    size_t big = EVS_MAX_EVENT_BYTES + 1;
    char *data = malloc(big + 1);
    memset(data, ' ', big);
    data[0] = '{';
    data[big - 1] = '}';
    data[big] = 0;
    bad = tu_event("T", data);
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, &bad, 1, &r, NULL), EVS_ELIMIT);
    free(data);
    /* too many events */
    size_t n = EVS_MAX_EVENTS_PER_APPEND + 1;
    evs_event_in *many = calloc(n, sizeof *many);
    for (size_t i = 0; i < n; i++) many[i] = tu_event("T", "{}");
    CHECK_RC(evs_append(s, "ok-1", EVS_EXPECT_ANY, many, n, &r, NULL), EVS_ELIMIT);
    free(many);
    CHECK_INT(evs_head(s), head);
    CHECK_RC(evs_stream_get_info(s, "ok-1", &(evs_stream_info){0}), EVS_ENOTFOUND);
}

static void fill(evs_store *s) {
    /* 3 streams, 30 events, types rotating, correlation on every 5th */
    evs_uuid corr;
    memset(&corr, 0x11, sizeof corr);
    for (int i = 0; i < 30; i++) {
        char stream[32], data[64];
        snprintf(stream, sizeof stream, "%s-%d", i % 3 == 0 ? "acct" : "user", i % 3);
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        evs_event_in e = tu_event(i % 2 ? "Odd" : (i % 4 ? "Two" : "Four"), data);
        if (i % 5 == 0) e.correlation_id = &corr;
        evs_append_result r;
        CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
        CHECK_INT(r.first_global_position, i + 1);
    }
}

/* Read everything a reader yields into positions[]; returns the count. */
static int drain(evs_reader *rd, uint64_t *pos, int max) {
    const evs_event *e;
    int n = 0, rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
        if (n < max) pos[n] = e->global_position;
        n++;
    }
    CHECK_RC(rc, EVS_DONE);
    return n;
}

/*
 * A stream longer than the distance its reader's cursor runs ahead, its
 * events spread through the log between other streams' and some several
 * to a record: every window of it, either way, with and without a limit,
 * before and after a reopen, returns exactly its events in order.
 */
/* lo: the stream's first visible position (truncate_before) */
static void check_window(evs_store *s, uint64_t from, int way, size_t limit, uint64_t len, uint64_t lo) {
    evs_reader *rd;
    const evs_event *e;
    CHECK_RC(evs_read_stream(s, "long-1", from, way, limit, &rd), EVS_OK);
    const uint64_t start = from == EVS_POSITION_END ? len : way == EVS_FORWARD && from < lo ? lo : from;
    uint64_t want = start, n = 0;
    int rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
        char data[32];
        int m = snprintf(data, sizeof data, "{\"n\":%llu}", (unsigned long long)want);
        CHECK_INT(e->stream_position, want);
        CHECK_INT(e->data_len, (size_t)m);
        if (e->data_len == (size_t)m) CHECK(memcmp(e->data, data, (size_t)m) == 0);
        if (e->stream_position != want) break;
        n++;
        want += way == EVS_FORWARD ? 1 : (uint64_t)-1;
    }
    CHECK_RC(rc, EVS_DONE);
    uint64_t avail = way == EVS_FORWARD ? (start > len ? 0 : len - start + 1) : (start < lo ? 0 : start - lo + 1);
    CHECK_INT(n, limit && limit < avail ? limit : avail);
    /* a backward read that ran out walked past the hidden positions too */
    CHECK_INT(evs_reader_position(rd), way == EVS_BACKWARD && (!limit || limit > avail) ? 0 : want);
    evs_reader_close(rd);
}

static void test_long_stream_windows(void) {
    char *d = tu_tempdir("store_long");
    /* 64 KiB segments: the stream spans several */
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 64 * 1024);
    uint64_t len = 0;
    for (int i = 0; len < 600; i++) {
        evs_event_in ev[5];
        char data[5][32];
        int k = i % 7 == 3 ? 5 : 1; /* now and then several to a record */
        for (int j = 0; j < k; j++) {
            snprintf(data[j], sizeof data[j], "{\"n\":%llu}", (unsigned long long)(len + 1 + (uint64_t)j));
            ev[j] = tu_event("Step", data[j]);
        }
        evs_append_result r;
        CHECK_RC(evs_append(s, "long-1", EVS_EXPECT_ANY, ev, (size_t)k, &r, NULL), EVS_OK);
        len += (uint64_t)k;
        for (int j = 0; j < 1 + i % 3; j++) {
            char other[32];
            snprintf(other, sizeof other, "other-%d", (i + j) % 4);
            evs_event_in o = tu_event("Noise", "{\"x\":1}");
            CHECK_RC(evs_append(s, other, EVS_EXPECT_ANY, &o, 1, &r, NULL), EVS_OK);
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        const uint64_t froms[] = {1, 2, 15, 16, 17, 33, 300, len - 3, len, len + 1};
        const size_t limits[] = {0, 1, 15, 16, 17, 40};
        for (size_t f = 0; f < sizeof froms / sizeof *froms; f++)
            for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
                check_window(s, froms[f], EVS_FORWARD, limits[l], len, 1);
                if (froms[f] <= len) check_window(s, froms[f], EVS_BACKWARD, limits[l], len, 1);
            }
        check_window(s, EVS_POSITION_END, EVS_BACKWARD, 0, len, 1);
        check_window(s, EVS_POSITION_END, EVS_BACKWARD, 20, len, 1);
        evs_store_close(s);
        s = tu_open(d, EVS_DURABILITY_NONE, 64 * 1024);
    }
    /* positions below 300 hidden: a backward read walks them one entry at a
       time once its limit leaves room for one event only */
    const char *meta = "{\"truncate_before\": 300}";
    CHECK_RC(evs_stream_set_metadata(s, "long-1", EVS_EXPECT_ANY, meta, strlen(meta), NULL), EVS_OK);
    const uint64_t tfroms[] = {1, 299, 300, 301, 310, 316, 317, len, EVS_POSITION_END};
    const size_t tlimits[] = {0, 1, 2, 11, 12, 17};
    for (size_t f = 0; f < sizeof tfroms / sizeof *tfroms; f++)
        for (size_t l = 0; l < sizeof tlimits / sizeof *tlimits; l++) {
            if (tfroms[f] != EVS_POSITION_END) check_window(s, tfroms[f], EVS_FORWARD, tlimits[l], len, 300);
            check_window(s, tfroms[f], EVS_BACKWARD, tlimits[l], len, 300);
        }
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

static void test_reads(evs_store *s) {
    evs_reader *rd;
    uint64_t pos[64];
    int n;
    /* stream forward with paging */
    CHECK_RC(evs_read_stream(s, "user-1", 1, EVS_FORWARD, 4, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 4);
    CHECK_INT(pos[0], 2);
    CHECK_INT(pos[3], 11);
    CHECK_INT(evs_reader_position(rd), 5);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "user-1", 5, EVS_FORWARD, 100, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 6);
    CHECK_INT(pos[0], 14);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "user-1", 11, EVS_FORWARD, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 0);
    evs_reader_close(rd);
    /* stream backward */
    CHECK_RC(evs_read_stream(s, "user-1", EVS_POSITION_END, EVS_BACKWARD, 3, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 3);
    CHECK_INT(pos[0], 29);
    CHECK_INT(pos[2], 23);
    CHECK_INT(evs_reader_position(rd), 7);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "user-1", 2, EVS_BACKWARD, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 2);
    CHECK_INT(pos[1], 2);
    evs_reader_close(rd);
    CHECK_RC(evs_read_stream(s, "nobody-1", 1, EVS_FORWARD, 0, &rd), EVS_ENOTFOUND);
    CHECK_CONTAINS(evs_errmsg(), "nobody-1");
    /* $all */
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 30);
    for (int i = 0; i < 30 && i < n; i++) CHECK_INT(pos[i], i + 1);
    CHECK_INT(evs_reader_position(rd), 31);
    evs_reader_close(rd);
    CHECK_RC(evs_read_all(s, 28, EVS_FORWARD, NULL, 10, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 3);
    evs_reader_close(rd);
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, NULL, 5, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 5);
    CHECK_INT(pos[0], 30);
    CHECK_INT(pos[4], 26);
    CHECK_INT(evs_reader_position(rd), 25);
    evs_reader_close(rd);
    CHECK_RC(evs_read_all(s, 99, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 0);
    evs_reader_close(rd);
    /* filters: two event types merged in order */
    const char *types[] = {"Four", "Odd"};
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.event_types = types;
    f.n_event_types = 2;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 15 + 8);
    int ordered = 1;
    for (int i = 1; i < n; i++) ordered &= pos[i] > pos[i - 1];
    CHECK(ordered);
    CHECK_INT(evs_reader_position(rd), 31);
    evs_reader_close(rd);
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, &f, 4, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 4);
    CHECK_INT(pos[0], 30);
    CHECK_INT(pos[1], 29);
    CHECK_INT(pos[2], 28);
    CHECK_INT(pos[3], 26);
    evs_reader_close(rd);
    /* a filter that matches nothing still advances the position */
    const char *none[] = {"Nothing"};
    f.event_types = none;
    f.n_event_types = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 0);
    CHECK_INT(evs_reader_position(rd), 31);
    evs_reader_close(rd);
    /* stream type */
    memset(&f, 0, sizeof f);
    f.stream_type = "acct";
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 10);
    CHECK_INT(pos[1], 4);
    evs_reader_close(rd);
    /* prefix */
    memset(&f, 0, sizeof f);
    f.stream_prefix = "user-2";
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 10);
    CHECK_INT(pos[0], 3);
    evs_reader_close(rd);
    /* correlation combined with a type */
    evs_uuid corr;
    memset(&corr, 0x11, sizeof corr);
    memset(&f, 0, sizeof f);
    f.correlation_id = &corr;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 6);
    CHECK_INT(pos[1], 6);
    evs_reader_close(rd);
    const char *odd[] = {"Odd"};
    f.event_types = odd;
    f.n_event_types = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 64);
    CHECK_INT(n, 3); /* 6, 16, 26 are even: i=5,15,25 -> positions 6,16,26 hold odd i */
    evs_reader_close(rd);
    /* time range: everything recorded so far vs nothing */
    memset(&f, 0, sizeof f);
    f.since = evs_now_ns() + 1000000000LL;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 0);
    evs_reader_close(rd);
    memset(&f, 0, sizeof f);
    f.since = 1;
    f.until = evs_now_ns() + 1000000000LL;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 30);
    evs_reader_close(rd);
    f.until = 1;
    f.since = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 64), 0);
    evs_reader_close(rd);
    memset(&f, 0, sizeof f);
    f.since = 10, f.until = 5;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_EINVAL);
}

static void test_time_range(evs_store *s) {
    uint64_t head = evs_head(s);
    evs_append_result r;
    struct timespec ts = {0, 3000000};
    CHECK_RC(append1(s, "clock-1", EVS_EXPECT_ANY, "Tick", "{}", &r), EVS_OK);
    int64_t t1 = r.recorded_at;
    nanosleep(&ts, NULL);
    CHECK_RC(append1(s, "clock-1", EVS_EXPECT_ANY, "Tick", "{}", &r), EVS_OK);
    int64_t t2 = r.recorded_at;
    nanosleep(&ts, NULL);
    CHECK_RC(append1(s, "clock-1", EVS_EXPECT_ANY, "Tick", "{}", &r), EVS_OK);
    CHECK(t2 > t1);
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.since = t2;
    evs_reader *rd;
    uint64_t pos[8];
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    int n = drain(rd, pos, 8);
    CHECK_INT(n, 2);
    CHECK_INT(pos[0], head + 2);
    evs_reader_close(rd);
    f.since = t1;
    f.until = t2;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 8);
    CHECK_INT(n, 1);
    CHECK_INT(pos[0], head + 1);
    evs_reader_close(rd);
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, &f, 0, &rd), EVS_OK);
    n = drain(rd, pos, 8);
    CHECK_INT(n, 1);
    CHECK_INT(pos[0], head + 1);
    evs_reader_close(rd);
}

static void test_streams_list(evs_store *s) {
    evs_stream_info info[4];
    size_t n;
    CHECK_RC(evs_list_streams(s, "user-", NULL, info, 4, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_STR(info[0].name, "user-1");
    CHECK_STR(info[1].name, "user-2");
    CHECK_INT(info[0].version, 10);
    CHECK_STR(info[0].stream_type, "user");
    CHECK_RC(evs_list_streams(s, NULL, NULL, info, 2, &n), EVS_OK);
    CHECK_INT(n, 2);
    char after[256];
    snprintf(after, sizeof after, "%s", info[1].name);
    size_t total = 2;
    while (n == 2) {
        CHECK_RC(evs_list_streams(s, NULL, after, info, 2, &n), EVS_OK);
        CHECK(n == 0 || strcmp(info[0].name, after) > 0);
        total += n;
        if (n) snprintf(after, sizeof after, "%s", info[n - 1].name);
    }
    evs_store_stats st;
    CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
    CHECK_INT(total, st.streams);
    CHECK_RC(evs_stream_get_info(s, "acct-0", &info[0]), EVS_OK);
    CHECK_INT(info[0].first_global_position, 1);
    CHECK_INT(info[0].last_global_position, 28);
    CHECK(info[0].created_at <= info[0].updated_at);
}

typedef struct waiter {
    evs_store *s;
    uint64_t want;
    int rc;
} waiter;

static void *wait_thread(void *arg) {
    waiter *w = arg;
    uint64_t h;
    w->rc = evs_wait_for(w->s, w->want, 10000, &h);
    return NULL;
}

static void test_wait(evs_store *s) {
    uint64_t h;
    CHECK_RC(evs_wait_for(s, evs_head(s) + 1, 20, &h), EVS_ETIMEDOUT);
    CHECK_RC(evs_wait_for(s, evs_head(s), 0, &h), EVS_OK);
    waiter w = {s, evs_head(s) + 1, -1};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    evs_append_result r;
    CHECK_RC(append1(s, "wake-1", EVS_EXPECT_ANY, "Wake", "{}", &r), EVS_OK);
    pthread_join(t, NULL);
    CHECK_RC(w.rc, EVS_OK);
}

static void test_limits_and_settings(void) {
    evs_store *s;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_limit(s, EVS_LIMIT_EVENT_BYTES, EVS_MAX_EVENT_BYTES + 1ull), EVS_ELIMIT);
    CHECK_RC(evs_store_set_limit(s, EVS_LIMIT_EVENTS_PER_APPEND, 2), EVS_OK);
    CHECK_RC(evs_store_set_limit(s, EVS_LIMIT_STREAM_NAME, 8), EVS_OK);
    CHECK_RC(evs_store_set_limit(s, EVS_LIMIT_EVENT_BYTES, 64), EVS_OK);
    CHECK_RC(evs_store_set_segment_size(s, 100), EVS_EINVAL);
    CHECK_RC(evs_store_set_durability(s, EVS_DURABILITY_BATCH, 0), EVS_EINVAL);
    char *d = tu_tempdir("limits");
    CHECK_RC(evs_store_open(s, d, EVS_OPEN_CREATE), EVS_OK);
    CHECK_RC(evs_store_set_limit(s, EVS_LIMIT_STREAM_NAME, 4), EVS_EINVAL);
    evs_append_result r;
    evs_event_in ev[3] = {tu_event("T", "{}"), tu_event("T", "{}"), tu_event("T", "{}")};
    CHECK_RC(evs_append(s, "a-1", EVS_EXPECT_ANY, ev, 3, &r, NULL), EVS_ELIMIT);
    CHECK_RC(evs_append(s, "a-1", EVS_EXPECT_ANY, ev, 2, &r, NULL), EVS_OK);
    CHECK_RC(evs_append(s, "longer-than-8", EVS_EXPECT_ANY, ev, 1, &r, NULL), EVS_ELIMIT);
    evs_event_in big = tu_event("T", "{\"x\":\"0123456789012345678901234567890123456789012345678901234567890\"}");
    CHECK_RC(evs_append(s, "a-1", EVS_EXPECT_ANY, &big, 1, &r, NULL), EVS_ELIMIT);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
    evs_store_close(NULL);
}

static void test_reopen_lock_readonly(void) {
    char *d = tu_tempdir("reopen");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 64 * 1024);
    /* enough to span several 64 KiB segments */
    char data[600];
    memset(data, 'x', sizeof data);
    memcpy(data, "{\"p\":\"", 6);
    memcpy(data + sizeof data - 3, "\"}", 3);
    for (int i = 0; i < 600; i++) {
        evs_event_in e = tu_event("Big", data);
        evs_append_result r;
        char stream[32];
        snprintf(stream, sizeof stream, "s-%d", i % 7);
        CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    }
    evs_store_stats st;
    CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
    CHECK(st.segments >= 5);
    CHECK_INT(st.head, 600);
    /* a second writer is refused */
    evs_store *s2;
    CHECK_RC(evs_store_create(&s2), EVS_OK);
    CHECK_RC(evs_store_open(s2, d, EVS_OPEN_CREATE), EVS_ELOCKED);
    CHECK_CONTAINS(evs_errmsg(), "locked by another process");
    evs_store_close(s2);
    /* a reader may open alongside */
    CHECK_RC(evs_store_create(&s2), EVS_OK);
    CHECK_RC(evs_store_open(s2, d, EVS_OPEN_READONLY), EVS_OK);
    CHECK_INT(evs_head(s2), 600);
    evs_reader *rd;
    uint64_t pos[8];
    CHECK_RC(evs_read_all(s2, 595, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 6);
    evs_reader_close(rd);
    evs_event_in e = tu_event("T", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(s2, "x-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_ECLOSED);
    evs_store_close(s2);
    evs_store_close(s);
    /* reopen: everything is there and the log is clean */
    s = tu_open(d, EVS_DURABILITY_SYNC, 64 * 1024);
    CHECK_STR(evs_store_recovery_report(s), "");
    CHECK_INT(evs_head(s), 600);
    evs_stream_info info;
    CHECK_RC(evs_stream_get_info(s, "s-3", &info), EVS_OK);
    CHECK_INT(info.version, 86);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, 600);
    CHECK_INT(rep.errors, 0);
    evs_store_close(s);
    /* lose the index entirely: it is rebuilt from the log */
    char idx[4096];
    snprintf(idx, sizeof idx, "%s/index", d);
    tu_rmrf(idx);
    s = tu_open(d, EVS_DURABILITY_SYNC, 64 * 1024);
    CHECK_INT(evs_head(s), 600);
    CHECK_RC(evs_stream_get_info(s, "s-3", &info), EVS_OK);
    CHECK_INT(info.version, 86);
    CHECK_RC(evs_read_stream(s, "s-6", EVS_POSITION_END, EVS_BACKWARD, 1, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 1);
    CHECK_INT(pos[0], 595);
    evs_reader_close(rd);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    /* appends continue gaplessly after the rebuild */
    CHECK_RC(evs_append(s, "s-6", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    CHECK_INT(r.first_global_position, 601);
    evs_store_close(s);
    /* opening a missing store without create */
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, "/nonexistent/evs/dir", 0), EVS_ENOTFOUND);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

/*
 * Tags (any of) and the causation id filter $all reads: on a scan, on top
 * of an indexed condition, backward, and with their bad values refused.
 */
static void test_tag_causation_filter(void) {
    char *d = tu_tempdir("tags");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
    evs_uuid cause, other;
    evs_uuid_v7(&cause);
    evs_uuid_v7(&other);
    const char *vip[] = {"vip"}, *vip_eu[] = {"eu", "vip"}, *eu[] = {"eu"}, *odd[] = {"a,b \"q\""};
    struct {
        const char *type;
        const char *const *tags;
        size_t ntags;
        const evs_uuid *cause;
    } spec[] = {
        {"A", vip, 1, NULL},     /* 1 */
        {"B", NULL, 0, &cause},  /* 2 */
        {"A", vip_eu, 2, &cause}, /* 3 */
        {"B", eu, 1, &other},    /* 4 */
        {"A", NULL, 0, NULL},    /* 5 */
        {"B", odd, 1, &cause},   /* 6 */
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        evs_event_in e = tu_event(spec[i].type, "{}");
        e.tags = spec[i].tags;
        e.ntags = spec[i].ntags;
        e.causation_id = spec[i].cause;
        evs_append_result r;
        CHECK_RC(evs_append(s, "t-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    }
    evs_reader *rd;
    uint64_t pos[8];
    const char *want_vip[] = {"vip"}, *want_any[] = {"nope", "eu"}, *want_odd[] = {"a,b \"q\""};
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.tags = want_vip;
    f.n_tags = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 2);
    CHECK_INT(pos[0], 1);
    CHECK_INT(pos[1], 3);
    CHECK_INT(evs_reader_position(rd), 7); /* past every event examined */
    evs_reader_close(rd);
    f.tags = want_any; /* any of them */
    f.n_tags = 2;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 2);
    CHECK_INT(pos[0], 3);
    CHECK_INT(pos[1], 4);
    evs_reader_close(rd);
    f.tags = want_odd; /* quotes and a comma inside a tag: compared decoded */
    f.n_tags = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 1);
    CHECK_INT(pos[0], 6);
    evs_reader_close(rd);
    memset(&f, 0, sizeof f);
    f.causation_id = &cause;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 3);
    CHECK_INT(pos[0], 2);
    CHECK_INT(pos[1], 3);
    CHECK_INT(pos[2], 6);
    evs_reader_close(rd);
    /* backward, combined with the type index and a tag */
    const char *types[] = {"A"};
    f.event_types = types;
    f.n_event_types = 1;
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 1);
    CHECK_INT(pos[0], 3);
    evs_reader_close(rd);
    f.causation_id = NULL;
    f.tags = want_vip;
    f.n_tags = 1;
    CHECK_RC(evs_read_all(s, EVS_POSITION_END, EVS_BACKWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 2);
    CHECK_INT(pos[0], 3);
    CHECK_INT(pos[1], 1);
    evs_reader_close(rd);
    /* a causation id nothing carries: nothing, and the reader still gets to the end */
    memset(&f, 0, sizeof f);
    evs_uuid none;
    evs_uuid_v7(&none);
    f.causation_id = &none;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_OK);
    CHECK_INT(drain(rd, pos, 8), 0);
    CHECK_INT(evs_reader_position(rd), 7);
    evs_reader_close(rd);
    /* bad tags */
    const char *empty[] = {""};
    memset(&f, 0, sizeof f);
    f.tags = empty;
    f.n_tags = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "tag 1");
    f.tags = NULL;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd), EVS_EINVAL);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

int main(void) {
    dir = tu_tempdir("store");
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 0);
    evs_reader *rd;
    CHECK_INT(evs_head(s), 0);
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    const evs_event *e;
    CHECK_RC(evs_reader_next(rd, &e), EVS_DONE);
    evs_reader_close(rd);
    test_expected_versions(s);
    test_atomic_and_verbatim(s);
    test_idempotency(s);
    test_bad_input(s);
    evs_store_close(s);
    tu_rmrf(dir);
    s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    fill(s);
    test_reads(s);
    test_streams_list(s);
    test_time_range(s);
    test_wait(s);
    evs_store_close(s);
    tu_rmrf(dir);
    free(dir);
    test_limits_and_settings();
    test_reopen_lock_readonly();
    test_tag_causation_filter();
    test_long_stream_windows();
    return TEST_REPORT();
}
