/*
 * test_bus_dlq.c — failure handling: the backoff schedule (checked on a fake
 * clock, no sleeping), parking in the DLQ, retry from the DLQ after the
 * handler is fixed, per-stream order (followers parked behind, released in
 * order), stop-on-failure, DLQ listing/discard/purge/retention, and a DLQ
 * that survives a reopen.
 */
#include "evstore_bus.h"
#include "conformance.h"

typedef struct fake_clock {
    int64_t now;
    int64_t sleeps[64];
    int nsleeps;
} fake_clock;

static int64_t fc_now(void *ctx) { return ((fake_clock *)ctx)->now; }
static void fc_sleep(void *ctx, int64_t ns) {
    fake_clock *f = ctx;
    if (f->nsleeps < 64) f->sleeps[f->nsleeps] = ns;
    f->nsleeps++;
    f->now += ns;
}
static uint64_t fc_random(void *ctx) {
    (void)ctx;
    return UINT64_MAX; /* the top of the jitter range */
}

/* Fails every event of a "bad" stream (prefix "bad") until fixed; records the rest. */
typedef struct flaky {
    int fixed;
    int fail_times;            /* fail this many calls, then succeed (when > 0) */
    int calls;
    uint64_t handled[256];
    char streams[256][32];
    size_t n;
} flaky;

static int flaky_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    flaky *f = ctx;
    f->calls++;
    int bad = ev->stream_len >= 3 && memcmp(ev->stream, "bad", 3) == 0;
    if (f->fail_times > 0) {
        f->fail_times--;
        snprintf(err, cap, "transient failure %d", f->calls);
        return 1;
    }
    if (bad && !f->fixed) {
        snprintf(err, cap, "cannot handle %.*s", (int)ev->stream_len, ev->stream);
        return 1;
    }
    if (f->n < 256) {
        f->handled[f->n] = ev->global_position;
        snprintf(f->streams[f->n], 32, "%.*s", (int)ev->stream_len, ev->stream);
    }
    f->n++;
    return 0;
}

static uint64_t append1(evs_store *s, const char *stream) {
    evs_event_in e = tu_event("E", "{}");
    evs_append_result r;
    if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
        fprintf(stderr, "append: %s\n", evs_errmsg());
        exit(2);
    }
    return r.first_global_position;
}

static void test_backoff_formula(void) {
    evs_retry_policy p;
    evs_retry_policy_default(&p);
    CHECK_INT(p.max_retries, 3);
    CHECK_INT(evs_retry_delay_ns(&p, 1, 0), 1000000000);
    CHECK_INT(evs_retry_delay_ns(&p, 2, 0), 2000000000);
    CHECK_INT(evs_retry_delay_ns(&p, 3, 0), 4000000000);
    CHECK_INT(evs_retry_delay_ns(&p, 10, 0), 60000000000); /* capped */
    p.backoff = EVS_BACKOFF_LINEAR;
    CHECK_INT(evs_retry_delay_ns(&p, 3, 0), 3000000000);
    p.backoff = EVS_BACKOFF_FIXED;
    CHECK_INT(evs_retry_delay_ns(&p, 3, 0), 1000000000);
    p.backoff = EVS_BACKOFF_EXPONENTIAL;
    p.jitter = 0.5;
    int64_t lo = evs_retry_delay_ns(&p, 2, 0), hi = evs_retry_delay_ns(&p, 2, UINT64_MAX);
    CHECK_INT(lo, 1000000000);
    CHECK(hi > 2900000000 && hi <= 3000000000);
}

static void test_retry_then_park(evs_store *s, evs_bus *b) {
    fake_clock fc = {1000000000000, {0}, 0};
    evs_clock clk = {fc_now, fc_sleep, fc_random, &fc};
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "park";
    c.from = evs_head(s) + 1;
    c.clock = &clk;
    flaky *f = calloc(1, sizeof *f);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, flaky_handler, f, &sub), EVS_OK);
    uint64_t g1 = append1(s, "good-1");
    uint64_t gb = append1(s, "bad-1");
    uint64_t g2 = append1(s, "good-2");
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    /* the schedule: 1 s, 2 s, 4 s, then parked */
    CHECK_INT(fc.nsleeps, 3);
    CHECK_INT(fc.sleeps[0], 1000000000);
    CHECK_INT(fc.sleeps[1], 2000000000);
    CHECK_INT(fc.sleeps[2], 4000000000);
    CHECK_INT(f->calls, 1 + 1 + 3 + 1);
    CHECK_INT(f->handled[0], g1);
    CHECK_INT(f->handled[1], g2);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(b, "park", gb, &e), EVS_OK);
    CHECK_INT(e.attempts, 4);
    CHECK_STR(e.stream, "bad-1");
    CHECK_STR(e.event_type, "E");
    CHECK_STR(e.last_error, "cannot handle bad-1");
    CHECK_INT(e.first_failure_at, 1000000000000);
    CHECK_INT(e.last_failure_at, 1000000000000 + 7000000000);
    evs_consumer_info info;
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    CHECK_RC(evs_consumer_get(b, "park", &info), EVS_OK);
    CHECK_INT(info.dlq_depth, 1);
    CHECK_INT(info.parked, 1);
    CHECK_INT(info.failed, 1);
    CHECK_INT(info.retry_count, 3);
    CHECK_INT(info.checkpoint, g2);
    CHECK_CONTAINS(info.last_error, "cannot handle bad-1");
    /* retry from the DLQ still fails, then succeeds once fixed */
    CHECK_RC(evs_sub_dlq_retry(sub, gb), EVS_EFAILED);
    CHECK_RC(evs_dlq_get(b, "park", gb, &e), EVS_OK);
    CHECK_INT(e.attempts, 5);
    f->fixed = 1;
    CHECK_RC(evs_sub_dlq_retry(sub, gb), EVS_OK);
    CHECK_RC(evs_dlq_get(b, "park", gb, &e), EVS_ENOTFOUND);
    CHECK_INT(f->handled[2], gb);
    CHECK_RC(evs_sub_dlq_retry(sub, gb), EVS_ENOTFOUND);
    /* a transient failure is absorbed by the retries */
    f->fail_times = 2;
    fc.nsleeps = 0;
    uint64_t g3 = append1(s, "good-3");
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(fc.nsleeps, 2);
    CHECK_INT(f->handled[3], g3);
    CHECK_RC(evs_dlq_depth(b, "park", &info.dlq_depth), EVS_OK);
    CHECK_INT(info.dlq_depth, 0);
    evs_sub_close(sub);
    free(f);
}

static void test_per_stream_order(evs_store *s, evs_bus *b) {
    fake_clock fc = {5000, {0}, 0};
    evs_clock clk = {fc_now, fc_sleep, NULL, &fc};
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "ordered";
    c.from = evs_head(s) + 1;
    c.clock = &clk;
    c.retry.max_retries = 1;
    c.per_stream_order = 1;
    flaky *f = calloc(1, sizeof *f);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, flaky_handler, f, &sub), EVS_OK);
    uint64_t b1 = append1(s, "bad-A");
    uint64_t o1 = append1(s, "ok-1");
    uint64_t b2 = append1(s, "bad-A");
    uint64_t o2 = append1(s, "ok-2");
    uint64_t b3 = append1(s, "bad-A");
    size_t n;
    f->fixed = 0;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_INT(f->handled[0], o1);
    CHECK_INT(f->handled[1], o2);
    /* b2 and b3 were parked behind b1 without calling the handler */
    CHECK_INT(f->calls, 2 + 2);
    evs_dlq_entry list[8];
    size_t cnt;
    CHECK_RC(evs_dlq_list(b, "ordered", 0, list, 8, &cnt), EVS_OK);
    CHECK_INT(cnt, 3);
    CHECK_INT(list[0].position, b1);
    CHECK_INT(list[0].attempts, 2);
    CHECK_INT(list[1].position, b2);
    CHECK_INT(list[1].attempts, 0);
    CHECK_INT(list[1].blocked_by, b1);
    CHECK_CONTAINS(list[1].last_error, "waiting behind position");
    CHECK_INT(list[2].position, b3);
    /* paging */
    CHECK_RC(evs_dlq_list(b, "ordered", b1, list, 1, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    CHECK_INT(list[0].position, b2);
    /* a follower cannot jump the queue */
    CHECK_RC(evs_sub_dlq_retry(sub, b2), EVS_ECONFLICT);
    /* while still broken, retry-all releases nothing and keeps order */
    size_t rel, bad;
    CHECK_RC(evs_sub_dlq_retry_all(sub, &rel, &bad), EVS_OK);
    CHECK_INT(rel, 0);
    CHECK_INT(bad, 3);
    /* a new event of bad-A is still parked behind */
    uint64_t b4 = append1(s, "bad-A");
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    CHECK_RC(evs_dlq_get(b, "ordered", b4, &list[0]), EVS_OK);
    /* fixed: released in the original order */
    f->fixed = 1;
    size_t before = f->n;
    CHECK_RC(evs_sub_dlq_retry_all(sub, &rel, &bad), EVS_OK);
    CHECK_INT(rel, 4);
    CHECK_INT(bad, 0);
    CHECK_INT(f->handled[before + 0], b1);
    CHECK_INT(f->handled[before + 1], b2);
    CHECK_INT(f->handled[before + 2], b3);
    CHECK_INT(f->handled[before + 3], b4);
    /* the stream flows again */
    uint64_t b5 = append1(s, "bad-A");
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(f->handled[before + 4], b5);
    evs_sub_close(sub);
    free(f);
}

static void test_stop(evs_store *s, evs_bus *b) {
    fake_clock fc = {0, {0}, 0};
    evs_clock clk = {fc_now, fc_sleep, NULL, &fc};
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "stopper";
    c.from = evs_head(s) + 1;
    c.clock = &clk;
    c.on_failure = EVS_ON_FAILURE_STOP;
    c.retry.backoff = EVS_BACKOFF_FIXED;
    c.retry.max_retries = 2;
    flaky *f = calloc(1, sizeof *f);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, flaky_handler, f, &sub), EVS_OK);
    append1(s, "ok-x");
    uint64_t bad = append1(s, "bad-x");
    append1(s, "ok-y");
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_EFAILED);
    CHECK_CONTAINS(evs_errmsg(), "cannot handle bad-x");
    CHECK_INT(n, 1);
    CHECK_INT(fc.nsleeps, 2);
    CHECK_INT(fc.sleeps[1], 1000000000);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_EFAILED);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "stopper", &info), EVS_OK);
    CHECK_INT(info.status, EVS_CONSUMER_ERROR);
    CHECK_INT(info.checkpoint, bad - 1);
    CHECK_INT(info.dlq_depth, 0);
    f->fixed = 1;
    CHECK_RC(evs_sub_resume(sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_INT(f->handled[1], bad);
    evs_sub_close(sub);
    free(f);
}

static void test_dlq_admin(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    fake_clock fc = {1000, {0}, 0};
    evs_clock clk = {fc_now, fc_sleep, NULL, &fc};
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "admin";
    c.from = evs_head(s) + 1;
    c.clock = &clk;
    c.retry.max_retries = 0;
    c.dlq_max_count = 5;
    flaky *f = calloc(1, sizeof *f);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, flaky_handler, f, &sub), EVS_OK);
    uint64_t p[8];
    for (int i = 0; i < 8; i++) {
        fc.now += 1000;
        p[i] = append1(s, "bad-z");
        size_t n;
        CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    }
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(b, "admin", &depth), EVS_OK);
    CHECK_INT(depth, 5); /* count retention kept the newest five */
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(b, "admin", p[2], &e), EVS_ENOTFOUND);
    CHECK_RC(evs_dlq_get(b, "admin", p[3], &e), EVS_OK);
    CHECK_INT(e.attempts, 1);
    evs_sub_close(sub);
    evs_bus_close(b);
    evs_store_close(s);
    /* survives a reopen */
    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    CHECK_RC(evs_dlq_depth(b, "admin", &depth), EVS_OK);
    CHECK_INT(depth, 5);
    CHECK_RC(evs_dlq_discard(b, "admin", p[3]), EVS_OK);
    CHECK_RC(evs_dlq_discard(b, "admin", p[3]), EVS_ENOTFOUND);
    uint64_t removed;
    /* age retention: last failures at 5000..9000 (p[4..7] at 6000..9000) */
    CHECK_RC(evs_dlq_prune(b, "admin", 2500, 0, 10000, &removed), EVS_OK);
    CHECK_INT(removed, 2);
    CHECK_RC(evs_dlq_purge(b, "admin", &removed), EVS_OK);
    CHECK_INT(removed, 2);
    CHECK_RC(evs_dlq_depth(b, "admin", &depth), EVS_OK);
    CHECK_INT(depth, 0);
    evs_bus_close(b);
    evs_store_close(s);
    free(f);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    char *d = cf_fresh("bus-dlq");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    test_backoff_formula();
    test_retry_then_park(s, b);
    test_per_stream_order(s, b);
    test_stop(s, b);
    evs_bus_close(b);
    evs_store_close(s);
    test_dlq_admin(d);
    cf_drop(d);
    return TEST_REPORT();
}
