/*
 * test_bus_sub.c — subscriptions: catch-up then live in global order,
 * filters (event types, prefix, tag, stream subscriptions), a filtered
 * checkpoint that advances when nothing matches, durable checkpoints across
 * a reopen, from-now, pause/resume/reset, and the records users see.
 *
 * One suite for both engines (conformance.h): run with "postgresql", the
 * consumers live in the store's database; the read-only environment of the
 * embedded engine's consumers/ directory has no counterpart there.
 */
#include "conformance.h"
#include "evstore_bus.h"

typedef struct seen {
    uint64_t pos[4096];
    char type[4096][16];
    size_t n;
} seen;

static int record_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    seen *s = ctx;
    (void)err, (void)cap;
    if (s->n < 4096) {
        s->pos[s->n] = ev->global_position;
        snprintf(s->type[s->n], 16, "%.*s", (int)ev->event_type_len, ev->event_type);
    }
    s->n++;
    return 0;
}

static void append_n(evs_store *s, const char *stream, const char *type, int n) {
    for (int i = 0; i < n; i++) {
        evs_event_in e = tu_event(type, "{\"x\":1}");
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
            fprintf(stderr, "append failed: %s\n", evs_errmsg());
            exit(2);
        }
    }
}

static void test_catchup_then_live(evs_store *s, evs_bus *b) {
    append_n(s, "order-1", "OrderPlaced", 5);
    append_n(s, "user-1", "UserCreated", 5);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "all";
    c.page_size = 3; /* several pages during catch-up */
    seen *sn = calloc(1, sizeof *sn);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 10);
    CHECK_INT(sn->n, 10);
    for (size_t i = 0; i < sn->n && i < 10; i++) CHECK_INT(sn->pos[i], i + 1);
    /* nothing new: a zero timeout returns at once */
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    /* live */
    append_n(s, "order-2", "OrderPlaced", 2);
    CHECK_RC(evs_sub_poll(sub, 1000, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_INT(sn->n, 12);
    CHECK_INT(sn->pos[11], 12);
    /* max_events */
    append_n(s, "order-3", "OrderPlaced", 4);
    CHECK_RC(evs_sub_poll(sub, 0, 3, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(sn->pos[15], 16);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "all", &info), EVS_OK); /* not yet checkpointed: stored value lags */
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    CHECK_RC(evs_consumer_get(b, "all", &info), EVS_OK);
    CHECK_INT(info.checkpoint, 16);
    CHECK_INT(info.processed, 16);
    CHECK_INT(info.status, EVS_CONSUMER_ACTIVE);
    CHECK_STR(info.kind, "subscription");
    CHECK_INT(info.lag_events, 0);
    CHECK(info.last_processed_at > 0);
    /* a second open of the same name is refused */
    evs_subscription *dup;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &dup), EVS_ELOCKED);
    evs_sub_close(sub);
    free(sn);
}

static void test_filters(evs_store *s, evs_bus *b) {
    uint64_t head = evs_head(s);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "orders-only";
    const char *types[] = {"OrderPlaced"};
    c.filter.event_types = types;
    c.filter.n_event_types = 1;
    c.from = head + 1;
    c.checkpoint_every = 1;
    seen *sn = calloc(1, sizeof *sn);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    /* many events that do not match: the checkpoint still moves */
    append_n(s, "user-2", "UserCreated", 50);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "orders-only", &info), EVS_OK);
    CHECK_INT(info.checkpoint, head + 50);
    CHECK_CONTAINS(info.filter_json, "\"event_types\":[\"OrderPlaced\"]");
    append_n(s, "order-9", "OrderPlaced", 1);
    CHECK_RC(evs_sub_poll(sub, 1000, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(sn->pos[0], head + 51);
    evs_sub_close(sub);

    /* tag and prefix */
    evs_sub_config_init(&c);
    c.name = "vip";
    c.tag = "vip";
    c.filter.stream_prefix = "cust-";
    c.from = evs_head(s) + 1;
    memset(sn, 0, sizeof *sn);
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    const char *tags[] = {"eu", "vip"};
    evs_event_in e = tu_event("Tagged", "{}");
    e.tags = tags;
    e.ntags = 2;
    evs_append_result r;
    CHECK_RC(evs_append(s, "cust-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    CHECK_RC(evs_append(s, "other-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    e.ntags = 1;
    CHECK_RC(evs_append(s, "cust-2", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 1000, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(sn->n, 1);
    CHECK_INT(sn->pos[0], r.first_global_position - 2);
    evs_sub_close(sub);

    /* one stream, with a type filter */
    evs_sub_config_init(&c);
    c.name = "stream-order-1";
    c.stream = "order-1";
    memset(sn, 0, sizeof *sn);
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 5);
    append_n(s, "order-1", "OrderShipped", 1);
    append_n(s, "order-7", "OrderShipped", 1);
    CHECK_RC(evs_sub_poll(sub, 1000, 0, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(sn->type[5], "OrderShipped");
    evs_sub_close(sub);
    /* the stored record names the stream: opening it on $all is refused */
    c.stream = NULL;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_EINVAL);

    /* a stream that does not exist yet, from now */
    evs_sub_config_init(&c);
    c.name = "future";
    c.stream = "later-1";
    c.from = EVS_SUB_FROM_NOW;
    memset(sn, 0, sizeof *sn);
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    append_n(s, "later-1", "A", 2);
    CHECK_RC(evs_sub_poll(sub, 1000, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    evs_sub_close(sub);
    free(sn);
}

static void test_pause_reset(evs_store *s, evs_bus *b) {
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "pausable";
    c.from = EVS_SUB_FROM_NOW;
    seen *sn = calloc(1, sizeof *sn);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    uint64_t h = evs_head(s);
    append_n(s, "p-1", "A", 3);
    CHECK_RC(evs_sub_pause(sub), EVS_OK);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0);
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, "pausable", &info), EVS_OK);
    CHECK_INT(info.status, EVS_CONSUMER_PAUSED);
    CHECK_INT(info.lag_events, 3);
    CHECK_RC(evs_sub_resume(sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_RC(evs_sub_reset(sub, h + 2), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 2);
    CHECK_INT(sn->pos[3], h + 2);
    /* cancel before poll makes it return at once */
    evs_sub_cancel(sub);
    int64_t t0 = evs_now_ns();
    CHECK_RC(evs_sub_poll(sub, 5000, 0, &n), EVS_OK);
    CHECK(evs_now_ns() - t0 < 1000000000);
    evs_sub_close(sub);
    /* by name, while closed */
    CHECK_RC(evs_consumer_set_status(b, "pausable", EVS_CONSUMER_PAUSED), EVS_OK);
    CHECK_RC(evs_consumer_get(b, "pausable", &info), EVS_OK);
    CHECK_STR(evs_consumer_status_name(info.status), "paused");
    CHECK_RC(evs_consumer_set_position(b, "pausable", 1), EVS_OK);
    CHECK_RC(evs_consumer_get(b, "pausable", &info), EVS_OK);
    CHECK_INT(info.checkpoint, 0);
    CHECK_RC(evs_consumer_delete(b, "pausable"), EVS_OK);
    CHECK_RC(evs_consumer_get(b, "pausable", &info), EVS_ENOTFOUND);
    CHECK_RC(evs_consumer_delete(b, "pausable"), EVS_ENOTFOUND);
    free(sn);
}

/* The next position a record of name holds (checkpoint + 1). */
static uint64_t next_of(evs_bus *b, const char *name) {
    evs_consumer_info info;
    CHECK_RC(evs_consumer_get(b, name, &info), EVS_OK);
    return info.checkpoint + 1;
}

/*
 * A start past head + 1 (a stream subscription: past its stream's version
 * + 1) is refused, naming the position and the head, and changes nothing:
 * it would skip every event appended up to there.  head + 1 is "after
 * everything stored"; EVS_SUB_FROM_NOW resolves to it, per stream.
 */
static void test_position_past_head(evs_store *s, evs_bus *b) {
    append_n(s, "far-1", "A", 2);
    uint64_t h = evs_head(s);
    char want[96];
    snprintf(want, sizeof want, "lies past the store's head %llu", (unsigned long long)h);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "far";
    c.from = h + 2;
    evs_subscription *sub;
    evs_consumer_info info;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), want);
    CHECK_RC(evs_consumer_get(b, "far", &info), EVS_ENOTFOUND);
    evs_group_config g;
    evs_group_config_init(&g);
    g.name = "far-group";
    g.from = h + 2;
    CHECK_RC(evs_group_create(b, &g), EVS_EINVAL);
    CHECK_RC(evs_consumer_get(b, "far-group", &info), EVS_ENOTFOUND);
    c.from = h; /* the last event */
    seen *sn = calloc(1, sizeof *sn);
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    CHECK_RC(evs_sub_reset(sub, h + 2), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), want);
    CHECK_RC(evs_sub_reset(sub, UINT64_MAX - 1), EVS_EINVAL);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 1); /* still at h */
    CHECK_INT(sn->pos[0], h);
    CHECK_RC(evs_sub_reset(sub, h + 1), EVS_OK);
    evs_sub_close(sub);
    CHECK_INT(next_of(b, "far"), h + 1);
    CHECK_RC(evs_consumer_set_position(b, "far", h + 2), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), want);
    CHECK_INT(next_of(b, "far"), h + 1);
    /* a stream subscription counts in its stream's positions */
    evs_sub_config_init(&c);
    c.name = "far-stream";
    c.stream = "far-1";
    c.from = 4;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "past the end of stream \"far-1\" (version 2)");
    c.from = 3;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_OK);
    evs_sub_close(sub);
    append_n(s, "far-2", "A", 3); /* the head moves, the stream does not */
    CHECK_RC(evs_consumer_set_position(b, "far-stream", 1), EVS_OK);
    CHECK_RC(evs_consumer_set_position(b, "far-stream", EVS_SUB_FROM_NOW), EVS_OK);
    CHECK_INT(next_of(b, "far-stream"), 3);
    CHECK_RC(evs_consumer_set_position(b, "far-stream", 4), EVS_EINVAL);
    CHECK_INT(next_of(b, "far-stream"), 3);
    CHECK_RC(evs_consumer_delete(b, "far"), EVS_OK);
    CHECK_RC(evs_consumer_delete(b, "far-stream"), EVS_OK);
    free(sn);
}

static void test_restart_resumes(const char *d) {
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "durable";
    c.checkpoint_every = 10;
    seen *sn = calloc(1, sizeof *sn);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    uint64_t head = evs_head(s);
    size_t n;
    CHECK_RC(evs_sub_poll(sub, 0, 25, &n), EVS_OK);
    CHECK_INT(n, 25);
    evs_sub_close(sub); /* close writes the checkpoint */
    evs_bus_close(b);
    evs_store_close(s);

    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    memset(sn, 0, sizeof *sn);
    c.from = EVS_SUB_FROM_NOW; /* ignored: the record exists */
    CHECK_RC(evs_sub_open(b, &c, record_handler, sn, &sub), EVS_OK);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_INT(n, head - 25);
    CHECK_INT(sn->pos[0], 26);
    evs_consumer_info list[16];
    size_t cnt;
    CHECK_RC(evs_consumer_list(b, NULL, list, 16, &cnt), EVS_OK);
    CHECK(cnt >= 5);
    CHECK_STR(list[0].name, "all");
    CHECK_RC(evs_consumer_list(b, "all", list, 1, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    CHECK_STR(list[0].name, "durable");
    evs_sub_close(sub);
    evs_bus_close(b);
    evs_store_close(s);
    free(sn);
}

static void test_bad_args(evs_bus *b) {
    evs_sub_config c;
    evs_sub_config_init(&c);
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "consumer name is empty");
    c.name = "x";
    c.page_size = 5000;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_ELIMIT);
    c.page_size = 0;
    CHECK_RC(evs_sub_open(b, &c, NULL, NULL, &sub), EVS_EINVAL);
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[199] = 0;
    c.name = longname;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    /* a record cannot keep tag or causation filters: refused, not dropped */
    const char *tags[] = {"vip"};
    evs_uuid cause;
    evs_uuid_v7(&cause);
    c.name = "tagged";
    c.filter.tags = tags;
    c.filter.n_tags = 1;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "no tags or causation_id");
    c.filter.tags = NULL;
    c.filter.n_tags = 0;
    c.filter.causation_id = &cause;
    CHECK_RC(evs_sub_open(b, &c, record_handler, NULL, &sub), EVS_EINVAL);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(b, "tagged", &ci), EVS_ENOTFOUND);
    evs_group_config g;
    evs_group_config_init(&g);
    g.name = "tagged-group";
    g.filter.tags = tags;
    g.filter.n_tags = 1;
    CHECK_RC(evs_group_create(b, &g), EVS_EINVAL);
    CHECK_RC(evs_consumer_get(b, "tagged-group", &ci), EVS_ENOTFOUND);
}

static int park_all(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx;
    snprintf(err, cap, "refused %llu", (unsigned long long)ev->global_position);
    return 1;
}

/*
 * A store open read-only (as the CLI opens one a server holds) opens its
 * consumers read-only: what the writer's process committed can be read,
 * nothing can be changed, and the writer goes on undisturbed.
 */
static void test_readonly_bus(void) {
    char *d = tu_tempdir("bus-ro");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_store *ro;
    evs_bus *rb = NULL;
    CHECK_RC(evs_store_create(&ro), EVS_OK);
    CHECK_RC(evs_store_open(ro, d, EVS_OPEN_READONLY), EVS_OK);
    CHECK_RC(evs_bus_open(ro, &rb), EVS_ENOTFOUND); /* no consumers/ yet: nothing is created */
    CHECK_CONTAINS(evs_errmsg(), "no consumers");
    CHECK(rb == NULL);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    append_n(s, "ro-1", "A", 3);
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "parker";
    c.retry.max_retries = 0;
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(b, &c, park_all, NULL, &sub), EVS_OK);
    size_t n = 0;
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    /* the other process's view */
    CHECK_RC(evs_bus_open(ro, &rb), EVS_OK);
    evs_consumer_info list[4], one;
    size_t cnt = 0;
    CHECK_RC(evs_consumer_list(rb, NULL, list, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    CHECK_RC(evs_consumer_get(rb, "parker", &one), EVS_OK);
    CHECK_INT(one.checkpoint, 3);
    CHECK_INT(one.dlq_depth, 3);
    evs_dlq_entry e[4];
    CHECK_RC(evs_dlq_list(rb, "parker", 0, e, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 3);
    CHECK_RC(evs_consumer_get(rb, "nobody", &one), EVS_ENOTFOUND);
    /* changes are refused, and say why */
    CHECK_RC(evs_dlq_discard(rb, "parker", 1), EVS_ECLOSED);
    CHECK_CONTAINS(evs_errmsg(), "read-only");
    CHECK_RC(evs_consumer_set_position(rb, "parker", 1), EVS_ECLOSED);
    evs_subscription *other;
    evs_sub_config c2;
    evs_sub_config_init(&c2);
    c2.name = "new-one";
    CHECK_RC(evs_sub_open(rb, &c2, record_handler, NULL, &other), EVS_ECLOSED);
    /* the writer goes on, and the reader sees its later commits */
    append_n(s, "ro-1", "A", 2);
    CHECK_RC(evs_sub_poll(sub, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_sub_checkpoint(sub), EVS_OK);
    CHECK_RC(evs_consumer_get(rb, "parker", &one), EVS_OK);
    CHECK_INT(one.checkpoint, 5);
    CHECK_INT(one.dlq_depth, 5);
    CHECK_RC(evs_consumer_get(rb, "new-one", &one), EVS_ENOTFOUND);
    evs_bus_close(rb);
    evs_store_close(ro);
    evs_sub_close(sub);
    evs_bus_close(b);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    char *d = cf_fresh("bus-sub");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    test_catchup_then_live(s, b);
    test_filters(s, b);
    test_pause_reset(s, b);
    test_position_past_head(s, b);
    test_bad_args(b);
    evs_bus_close(b);
    evs_store_close(s);
    test_restart_resumes(d);
    if (!cf_pg) test_readonly_bus();
    cf_drop(d);
    return TEST_REPORT();
}
