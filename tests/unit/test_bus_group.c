/*
 * test_bus_group.c — persistent subscription groups (competing consumers):
 * records and settings, one delivery of an event at a time and every event
 * finished once, ack timeouts and their redelivery (on a fake clock, no
 * sleeping), late acks refused after a redelivery, pinned streams keeping
 * their order across three consumers and after one leaves, round-robin
 * spreading, max_in_flight backpressure, nack retry / park / skip, the STOP
 * policy, DLQ retries through the group, filters and lag, pause and cancel,
 * and a restart (clean, and a killed process) resuming at the first
 * unfinished event without losing one.
 */
#include <sys/wait.h>

#include "evstore_bus.h"
#include "conformance.h"

#define SEC 1000000000LL

typedef struct fake_clock {
    int64_t now;
} fake_clock;

static int64_t fc_now(void *ctx) { return ((fake_clock *)ctx)->now; }
static uint64_t fc_random(void *ctx) {
    (void)ctx;
    return 0;
}

typedef struct fixture {
    char *dir;
    evs_store *s;
    evs_bus *b;
    fake_clock fc;
    evs_clock clock;
} fixture;

static void fx_open(fixture *f, const char *tag) {
    memset(f, 0, sizeof *f);
    f->dir = cf_fresh(tag);
    f->s = tu_open(f->dir, EVS_DURABILITY_NONE, 1 << 20);
    if (evs_bus_open(f->s, &f->b) != EVS_OK) {
        fprintf(stderr, "bus_open: %s\n", evs_errmsg());
        exit(2);
    }
    f->fc.now = 1000 * SEC;
    f->clock.now_ns = fc_now;
    f->clock.random = fc_random;
    f->clock.ctx = &f->fc;
}

static void fx_close(fixture *f) {
    evs_bus_close(f->b);
    evs_store_close(f->s);
    cf_drop(f->dir);
}

static uint64_t append1(evs_store *s, const char *stream, const char *type) {
    evs_event_in e = tu_event(type, "{\"v\":1}");
    evs_append_result r;
    if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
        fprintf(stderr, "append: %s\n", evs_errmsg());
        exit(2);
    }
    return r.first_global_position;
}

static evs_group *open_group(fixture *f, evs_group_config *c) {
    evs_group *g = NULL;
    int rc = evs_group_create(f->b, c);
    if (rc == EVS_OK) rc = evs_group_open(f->b, c->name, &f->clock, &g);
    if (rc != EVS_OK) {
        fprintf(stderr, "group %s: %s\n", c->name, evs_errmsg());
        exit(2);
    }
    return g;
}

static evs_group_member *join(evs_group *g, const char *name) {
    evs_group_member *m = NULL;
    if (evs_group_join(g, name, &m) != EVS_OK) {
        fprintf(stderr, "join %s: %s\n", name, evs_errmsg());
        exit(2);
    }
    return m;
}

/* One delivery without waiting; NULL (and a failed check) if none. */
static evs_delivery *take(evs_group_member *m) {
    evs_delivery *d = NULL;
    CHECK_RC(evs_group_next(m, 0, &d), EVS_OK);
    return d;
}

/* Ack and free. */
static void ack(evs_group_member *m, evs_delivery *d) {
    if (!d) return;
    CHECK_RC(evs_group_ack(m, d->id), EVS_OK);
    evs_delivery_free(d);
}

static evs_group_info ginfo(evs_group *g) {
    evs_group_info i;
    CHECK_RC(evs_group_get_info(g, &i), EVS_OK);
    return i;
}

static int noop_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx, (void)ev, (void)err, (void)cap;
    return 0;
}

static int stream_index(const evs_event *ev) { return ev->stream[ev->stream_len - 1] - '0'; }

/* ------------------------------------------------------------------ tests */

static void test_records(void) {
    fixture f;
    fx_open(&f, "grp-rec");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "g1";
    c.owner = "billing";
    CHECK_RC(evs_group_create(f.b, &c), EVS_OK);
    CHECK_RC(evs_group_create(f.b, &c), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "already exists");
    evs_group_info gi;
    CHECK_RC(evs_group_get(f.b, "g1", &gi), EVS_OK);
    CHECK_STR(gi.info.kind, "group");
    CHECK_STR(gi.info.owner, "billing");
    CHECK_INT(gi.strategy, EVS_GROUP_ROUND_ROBIN);
    CHECK_INT(gi.ack_timeout_ns, 30 * SEC);
    CHECK_INT(gi.max_in_flight, 10);
    CHECK_INT(gi.buffer_size, 1000);
    CHECK_INT(gi.retry.max_retries, 3);
    CHECK_INT(gi.info.max_retries, 3);
    CHECK_INT(gi.info.status, EVS_CONSUMER_ACTIVE);
    CHECK_INT(gi.info.checkpoint, 0);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(f.b, "g1", &ci), EVS_OK);
    CHECK_STR(ci.kind, "group");

    /* update replaces the settings, not the position */
    const char *types[] = {"OrderPlaced"};
    c.filter.event_types = types;
    c.filter.n_event_types = 1;
    c.strategy = EVS_GROUP_PINNED;
    c.max_in_flight = 3;
    c.retry.max_retries = 7;
    c.retry.jitter = 0.25;
    CHECK_RC(evs_group_update(f.b, &c), EVS_OK);
    CHECK_RC(evs_group_get(f.b, "g1", &gi), EVS_OK);
    CHECK_INT(gi.strategy, EVS_GROUP_PINNED);
    CHECK_INT(gi.max_in_flight, 3);
    CHECK_INT(gi.retry.max_retries, 7);
    CHECK(gi.retry.jitter == 0.25);
    CHECK_CONTAINS(gi.info.filter_json, "\"event_types\":[\"OrderPlaced\"]");

    /* bad settings */
    evs_group_config bad = c;
    bad.name = "bad";
    bad.max_in_flight = EVS_GROUP_MAX_IN_FLIGHT + 1;
    CHECK_RC(evs_group_create(f.b, &bad), EVS_ELIMIT);
    bad.max_in_flight = 0;
    bad.buffer_size = EVS_BUS_MAX_PAGE + 1;
    CHECK_RC(evs_group_create(f.b, &bad), EVS_ELIMIT);
    bad.buffer_size = 0;
    bad.strategy = (evs_group_strategy)7;
    CHECK_RC(evs_group_create(f.b, &bad), EVS_EINVAL);
    bad.strategy = EVS_GROUP_ROUND_ROBIN;
    bad.ack_timeout_ns = -1;
    CHECK_RC(evs_group_create(f.b, &bad), EVS_EINVAL);
    bad.name = "";
    CHECK_RC(evs_group_create(f.b, &bad), EVS_EINVAL);
    CHECK_RC(evs_group_get(f.b, "bad", &gi), EVS_ENOTFOUND);
    bad.name = "nothere";
    bad.ack_timeout_ns = 0;
    CHECK_RC(evs_group_update(f.b, &bad), EVS_ENOTFOUND);

    /* strategy names */
    evs_group_strategy st;
    CHECK_STR(evs_group_strategy_name(EVS_GROUP_PINNED), "pinned");
    CHECK_RC(evs_group_strategy_parse("round_robin", &st), EVS_OK);
    CHECK_INT(st, EVS_GROUP_ROUND_ROBIN);
    CHECK_RC(evs_group_strategy_parse("random", &st), EVS_EINVAL);

    /* a group is not a subscription, and the other way round */
    evs_sub_config sc;
    evs_sub_config_init(&sc);
    sc.name = "g1";
    evs_subscription *sub;
    CHECK_RC(evs_sub_open(f.b, &sc, noop_handler, NULL, &sub), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "consumer \"g1\" is a group");
    CHECK_RC(evs_group_get(f.b, "nope", &gi), EVS_ENOTFOUND);
    evs_group *g;
    CHECK_RC(evs_group_open(f.b, "nope", NULL, &g), EVS_ENOTFOUND);

    /* open: one handle per name; the record is locked while open */
    CHECK_RC(evs_group_open(f.b, "g1", &f.clock, &g), EVS_OK);
    evs_group *g2;
    CHECK_RC(evs_group_open(f.b, "g1", NULL, &g2), EVS_ELOCKED);
    CHECK_RC(evs_group_update(f.b, &c), EVS_ELOCKED);
    CHECK_RC(evs_consumer_delete(f.b, "g1"), EVS_ELOCKED);
    evs_group_member *a = join(g, "a"), *dup;
    CHECK_RC(evs_group_join(g, "a", &dup), EVS_ELOCKED);
    CHECK_RC(evs_group_join(g, "", &dup), EVS_EINVAL);
    evs_group_member_info mi[4];
    size_t n;
    CHECK_RC(evs_group_list_members(g, mi, 4, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_STR(mi[0].name, "a");
    CHECK_INT(ginfo(g).members, 1);
    (void)a; /* released by close */
    evs_group_close(g);
    CHECK_RC(evs_consumer_delete(f.b, "g1"), EVS_OK);
    CHECK_RC(evs_group_get(f.b, "g1", &gi), EVS_ENOTFOUND);
    fx_close(&f);
}

static void test_one_at_a_time(void) {
    fixture f;
    fx_open(&f, "grp-once");
    for (int i = 0; i < 20; i++) {
        char stream[16];
        snprintf(stream, sizeof stream, "acct-%d", i % 4);
        append1(f.s, stream, "Deposited");
    }
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "once";
    c.max_in_flight = 100;
    evs_group *g = open_group(&f, &c);
    evs_group_member *m[3] = {join(g, "a"), join(g, "b"), join(g, "c")};
    evs_delivery *held[32] = {0};
    int owner[32] = {0}, count = 0, idle = 0;
    /* pull without acking: every event goes out once, to one consumer */
    for (int turn = 0; idle < 3 && turn < 100; turn++) {
        evs_delivery *d = NULL;
        int rc = evs_group_next(m[turn % 3], 0, &d);
        if (rc == EVS_ETIMEDOUT) {
            idle++;
            continue;
        }
        CHECK_RC(rc, EVS_OK);
        if (!d) break;
        idle = 0;
        uint64_t p = d->id.position;
        CHECK_INT(d->id.attempt, 1);
        CHECK(p >= 1 && p <= 20);
        if (p < 1 || p > 20) continue;
        CHECK(held[p] == NULL); /* never two deliveries of one event at once */
        held[p] = d;
        owner[p] = turn % 3;
        count++;
    }
    CHECK_INT(count, 20);
    /* the copies stay valid while other deliveries are made */
    CHECK_MEM(held[5]->event.stream, held[5]->event.stream_len, "acct-0");
    CHECK_STR(held[5]->event.event_type, "Deposited");
    CHECK_MEM(held[5]->event.data, held[5]->event.data_len, "{\"v\":1}");
    CHECK_INT(held[5]->event.global_position, 5);
    evs_delivery *d = NULL;
    CHECK_RC(evs_group_next(m[0], 0, &d), EVS_ETIMEDOUT);
    CHECK_CONTAINS(evs_errmsg(), "no event for consumer \"a\"");
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.in_flight, 20);
    CHECK_INT(gi.buffered, 20);
    CHECK_INT(gi.members, 3);
    CHECK_INT(gi.info.checkpoint, 0);
    CHECK_INT(gi.info.lag_events, 20);
    /* acks out of order: the checkpoint moves only over the finished prefix */
    for (int p = 20; p >= 2; p--) ack(m[owner[p]], held[p]);
    gi = ginfo(g);
    CHECK_INT(gi.info.checkpoint, 0);
    CHECK_INT(gi.in_flight, 1);
    ack(m[owner[1]], held[1]);
    gi = ginfo(g);
    CHECK_INT(gi.info.checkpoint, 20);
    CHECK_INT(gi.info.processed, 20);
    CHECK_INT(gi.info.lag_events, 0);
    CHECK_INT(gi.in_flight, 0);
    CHECK_INT(gi.buffered, 0);
    evs_group_member_info mi[3];
    size_t n;
    CHECK_RC(evs_group_list_members(g, mi, 3, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_INT(mi[0].acked + mi[1].acked + mi[2].acked, 20);
    CHECK_INT(mi[0].delivered + mi[1].delivered + mi[2].delivered, 20);
    for (int i = 0; i < 3; i++) evs_group_leave(m[i]);
    evs_group_close(g);
    /* close wrote the checkpoint */
    CHECK_RC(evs_group_get(f.b, "once", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, 20);
    CHECK_INT(gi.info.processed, 20);
    fx_close(&f);
}

static void test_ack_timeout(void) {
    fixture f;
    fx_open(&f, "grp-timeout");
    for (int i = 0; i < 4; i++) append1(f.s, "job-1", "Job");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "jobs";
    c.ack_timeout_ns = 10 * SEC;
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a"), *b = join(g, "b");

    evs_delivery *a1 = take(a);
    CHECK_INT(a1->id.position, 1);
    f.fc.now += 5 * SEC;
    evs_delivery *b2 = take(b); /* event 1 is still a's */
    CHECK_INT(b2->id.position, 2);
    f.fc.now += 6 * SEC;        /* 11 s after a took event 1 */
    evs_delivery *b1 = take(b);
    CHECK_INT(b1->id.position, 1);
    CHECK_INT(b1->id.attempt, 2);
    /* a's answer comes too late: refused, not counted */
    CHECK_RC(evs_group_ack(a, a1->id), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "delivery 1 of event 1 was redelivered; its ack is refused");
    CHECK_RC(evs_group_nack(a, a1->id, EVS_NACK_SKIP, NULL), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "delivery 1 of event 1 was redelivered; its nack is refused");
    ack(b, b1);
    ack(b, b2);                 /* its deadline (15 s) has not passed */
    evs_delivery_free(a1);
    CHECK_INT(ginfo(g).info.processed, 2);

    /* timed out but not handed out again: the late ack is still taken */
    evs_delivery *a3 = take(a);
    CHECK_INT(a3->id.position, 3);
    f.fc.now += 11 * SEC;
    ack(a, a3);

    /* nobody else asks: the same consumer gets its expired event again */
    evs_delivery *a4 = take(a);
    f.fc.now += 10 * SEC;
    evs_delivery *again = take(a);
    CHECK_INT(again->id.position, 4);
    CHECK_INT(again->id.attempt, 2);
    CHECK_RC(evs_group_ack(a, a4->id), EVS_ECONFLICT);
    ack(a, again);
    evs_delivery_free(a4);

    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.timeouts, 3);
    CHECK_INT(gi.info.retry_count, 3);
    CHECK_INT(gi.info.processed, 4);
    CHECK_INT(gi.info.checkpoint, 4);
    evs_group_member_info mi[2];
    size_t n;
    CHECK_RC(evs_group_list_members(g, mi, 2, &n), EVS_OK);
    CHECK_INT(mi[0].timeouts, 3);
    CHECK_INT(mi[1].timeouts, 0);
    evs_group_leave(a);
    evs_group_leave(b);
    evs_group_close(g);
    fx_close(&f);
}

/* Pull round-robin over the members until none gets anything. */
typedef struct got {
    int member, stream;
    uint64_t sp;
    evs_delivery *d;
} got;

static size_t drain(evs_group_member **m, int nm, got *out, size_t cap) {
    size_t n = 0;
    int idle = 0;
    for (int turn = 0; idle < nm && n < cap; turn++) {
        evs_delivery *d = NULL;
        int rc = evs_group_next(m[turn % nm], 0, &d);
        if (rc != EVS_OK) {
            CHECK_RC(rc, EVS_ETIMEDOUT);
            idle++;
            continue;
        }
        idle = 0;
        out[n].member = turn % nm;
        out[n].stream = stream_index(&d->event);
        out[n].sp = d->event.stream_position;
        out[n].d = d;
        n++;
    }
    return n;
}

static void test_pinned(void) {
    fixture f;
    fx_open(&f, "grp-pinned");
    for (int k = 0; k < 4; k++)
        for (int s = 0; s < 6; s++) {
            char stream[16];
            snprintf(stream, sizeof stream, "cart-%d", s);
            append1(f.s, stream, "ItemAdded");
        }
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "carts";
    c.strategy = EVS_GROUP_PINNED;
    c.max_in_flight = 100;
    evs_group *g = open_group(&f, &c);
    evs_group_member *m[3] = {join(g, "alpha"), join(g, "beta"), join(g, "gamma")};
    got *gt = calloc(64, sizeof *gt);
    size_t n = drain(m, 3, gt, 64);
    CHECK_INT(n, 24);
    int owner[6] = {-1, -1, -1, -1, -1, -1}, members_used = 0, per_member[3] = {0};
    uint64_t last[6] = {0};
    for (size_t i = 0; i < n; i++) {
        int s = gt[i].stream;
        if (owner[s] < 0) owner[s] = gt[i].member;
        CHECK_INT(gt[i].member, owner[s]);  /* one consumer per stream */
        CHECK_INT(gt[i].sp, last[s] + 1);    /* in stream order */
        last[s] = gt[i].sp;
        per_member[gt[i].member]++;
    }
    for (int i = 0; i < 3; i++) members_used += per_member[i] > 0;
    CHECK(members_used >= 2); /* streams are spread over the consumers */

    /* the owner of cart-0 leaves holding unacked events: each of its streams
       passes, whole and in order, to one remaining consumer */
    int leaver = owner[0];
    for (size_t i = 0; i < n; i++) {
        if (gt[i].member != leaver || gt[i].sp == 1) ack(m[gt[i].member], gt[i].d);
        else evs_delivery_free(gt[i].d);
    }
    evs_group_leave(m[leaver]);
    evs_group_member *rest[2];
    int ri = 0;
    for (int i = 0; i < 3; i++)
        if (i != leaver) rest[ri++] = m[i];
    n = drain(rest, 2, gt, 64);
    int moved = 0, new_owner[6] = {-1, -1, -1, -1, -1, -1};
    uint64_t next_sp[6];
    for (int s = 0; s < 6; s++) next_sp[s] = 2;
    for (size_t i = 0; i < n; i++) {
        int s = gt[i].stream;
        CHECK_INT(owner[s], leaver);          /* only the leaver's events come again */
        if (new_owner[s] < 0) new_owner[s] = gt[i].member;
        CHECK_INT(gt[i].member, new_owner[s]);
        CHECK_INT(gt[i].sp, next_sp[s]);
        next_sp[s]++;
        CHECK_INT(gt[i].d->id.attempt, 2);
        moved++;
        ack(rest[gt[i].member], gt[i].d);
    }
    int leaver_streams = 0;
    for (int s = 0; s < 6; s++) leaver_streams += owner[s] == leaver;
    CHECK_INT(moved, leaver_streams * 3);

    /* new events: streams of the remaining consumers stay where they were */
    for (int s = 0; s < 6; s++) {
        char stream[16];
        snprintf(stream, sizeof stream, "cart-%d", s);
        append1(f.s, stream, "ItemAdded");
    }
    n = drain(rest, 2, gt, 64);
    CHECK_INT(n, 6);
    for (size_t i = 0; i < n; i++) {
        int s = gt[i].stream;
        evs_group_member *want = owner[s] == leaver ? rest[new_owner[s]] : m[owner[s]];
        CHECK(rest[gt[i].member] == want);
        CHECK_INT(gt[i].sp, 5);
        ack(rest[gt[i].member], gt[i].d);
    }
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.info.checkpoint, evs_head(f.s));
    CHECK_INT(gi.in_flight, 0);
    evs_group_leave(rest[0]);
    evs_group_leave(rest[1]);
    evs_group_close(g);
    free(gt);
    fx_close(&f);
}

/*
 * Pinned: a consumer that joins mid-way gets its share of the backlog.  The
 * first consumer has had every stream (so every stream has events left and
 * was pinned to it before).  While it holds deliveries of all of them, the
 * newcomer waits (a stream never has deliveries out with two consumers);
 * once they are answered, each stream follows its home and the newcomer
 * takes its streams at once.  Through the rest of the backlog no stream is
 * out with two consumers, each stream's events arrive in order and go to
 * one consumer, and both consumers get streams.
 */
#define PJ_STREAMS 8
#define PJ_PER 20
static void test_pinned_join_spreads(void) {
    fixture f;
    fx_open(&f, "grp-pinjoin");
    for (int k = 0; k < PJ_PER; k++)
        for (int s = 0; s < PJ_STREAMS; s++) {
            char stream[16];
            snprintf(stream, sizeof stream, "pj-%d", s);
            append1(f.s, stream, "Step");
        }
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "pinjoin";
    c.strategy = EVS_GROUP_PINNED;
    c.max_in_flight = PJ_STREAMS;
    evs_group *g = open_group(&f, &c);
    evs_group_member *m[2] = {join(g, "first"), NULL};
    uint64_t last_sp[PJ_STREAMS] = {0};
    int out_by[PJ_STREAMS], out_n[PJ_STREAMS] = {0}, owner[PJ_STREAMS], per[2] = {0};
    for (int s = 0; s < PJ_STREAMS; s++) out_by[s] = owner[s] = -1;

    /* alone: one event of every stream goes out to the first consumer; it holds them */
    evs_delivery *held[PJ_STREAMS];
    for (int i = 0; i < PJ_STREAMS; i++) {
        held[i] = take(m[0]);
        if (!held[i]) return;
        CHECK_INT(held[i]->event.stream_position, 1);
    }
    m[1] = join(g, "second");
    evs_delivery *none = NULL;
    CHECK_RC(evs_group_next(m[1], 0, &none), EVS_ETIMEDOUT); /* every stream is out with "first" */
    for (int i = 0; i < PJ_STREAMS; i++) {
        last_sp[stream_index(&held[i]->event)] = 1;
        ack(m[0], held[i]);
    }
    /* nothing in flight: the newcomer's streams are its own now */
    evs_delivery *d = NULL;
    CHECK_RC(evs_group_next(m[1], 0, &d), EVS_OK);
    if (!d) return;
    CHECK_INT(d->event.stream_position, 2);
    int s0 = stream_index(&d->event);
    owner[s0] = 1, out_by[s0] = 1, out_n[s0] = 1, last_sp[s0] = 2, per[1] = 1;
    evs_delivery *hold[2][4] = {{NULL}, {d}};
    int nh[2] = {0, 1};

    /* the rest: turns of taking up to 3, answering the oldest ones held now and then */
    size_t delivered = PJ_STREAMS + 1;
    for (int turn = 0, idle = 0; idle < 4 && turn < 10000; turn++) {
        int i = turn % 2, any = 0;
        for (int k = 0; k < 3 && nh[i] < 4; k++) {
            if (evs_group_next(m[i], 0, &d) != EVS_OK) break;
            any = 1;
            int s = stream_index(&d->event);
            if (out_n[s] > 0 && out_by[s] != i) CHECK(!"a stream is out with two consumers");
            if (owner[s] < 0) owner[s] = i;
            CHECK_INT(i, owner[s]); /* after the rebalance a stream stays with its consumer */
            CHECK_INT(d->event.stream_position, last_sp[s] + 1);
            CHECK_INT(d->id.attempt, 1);
            last_sp[s] = d->event.stream_position;
            out_by[s] = i, out_n[s]++, per[i]++;
            hold[i][nh[i]++] = d;
            delivered++;
        }
        /* answer all but the newest (so deliveries stay in flight across turns) */
        while (nh[i] > (turn % 3 == 0 ? 0 : 1)) {
            evs_delivery *x = hold[i][0];
            memmove(&hold[i][0], &hold[i][1], (size_t)(nh[i] - 1) * sizeof x);
            nh[i]--;
            out_n[stream_index(&x->event)]--;
            ack(m[i], x);
        }
        idle = any ? 0 : idle + 1;
    }
    for (int i = 0; i < 2; i++)
        while (nh[i] > 0) ack(m[i], hold[i][--nh[i]]);
    CHECK_INT(delivered, PJ_STREAMS * PJ_PER);
    int streams_of[2] = {0, 0};
    for (int s = 0; s < PJ_STREAMS; s++) {
        CHECK_INT(last_sp[s], PJ_PER);
        if (owner[s] >= 0) streams_of[owner[s]]++;
    }
    CHECK(streams_of[0] > 0 && streams_of[1] > 0); /* the backlog was shared */
    CHECK(per[1] >= PJ_PER - 1);
    printf("pinned join: the newcomer took %d of %d streams, %d of %d backlog events\n", streams_of[1], PJ_STREAMS,
           per[1], PJ_STREAMS * (PJ_PER - 1));
    CHECK_INT(ginfo(g).info.checkpoint, evs_head(f.s));
    evs_group_leave(m[0]);
    evs_group_leave(m[1]);
    evs_group_close(g);
    fx_close(&f);
}

static void test_round_robin_spreads(void) {
    fixture f;
    fx_open(&f, "grp-rr");
    for (int i = 0; i < 9; i++) append1(f.s, "solo-1", "Tick");
    for (int strategy = 0; strategy < 2; strategy++) {
        evs_group_config c;
        evs_group_config_init(&c);
        c.name = strategy ? "pin" : "rr";
        c.strategy = strategy ? EVS_GROUP_PINNED : EVS_GROUP_ROUND_ROBIN;
        evs_group *g = open_group(&f, &c);
        evs_group_member *m[3] = {join(g, "a"), join(g, "b"), join(g, "c")};
        int per[3] = {0};
        uint64_t expect = 1;
        for (int turn = 0; turn < 30; turn++) {
            evs_delivery *d = NULL;
            int rc = evs_group_next(m[turn % 3], 0, &d);
            if (rc == EVS_ETIMEDOUT) continue;
            CHECK_RC(rc, EVS_OK);
            if (!d) continue;
            CHECK_INT(d->id.position, expect);
            expect++;
            per[turn % 3]++;
            ack(m[turn % 3], d);
        }
        CHECK_INT(expect, 10);
        if (strategy == 0) {
            /* one stream, spread evenly over the consumers taking turns */
            CHECK_INT(per[0], 3);
            CHECK_INT(per[1], 3);
            CHECK_INT(per[2], 3);
        } else {
            /* pinned: the stream stays with one consumer */
            CHECK((per[0] == 9) + (per[1] == 9) + (per[2] == 9) == 1);
        }
        for (int i = 0; i < 3; i++) evs_group_leave(m[i]);
        evs_group_close(g);
    }
    fx_close(&f);
}

static void test_max_in_flight(void) {
    fixture f;
    fx_open(&f, "grp-inflight");
    for (int i = 0; i < 5; i++) append1(f.s, "q-1", "Work");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "work";
    c.max_in_flight = 2;
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a"), *b = join(g, "b");
    evs_delivery *d1 = take(a), *d2 = take(a), *d = NULL;
    CHECK_RC(evs_group_next(a, 0, &d), EVS_ETIMEDOUT);
    CHECK(d == NULL);
    CHECK_CONTAINS(evs_errmsg(), "consumer \"a\" holds 2 unacked deliveries (max_in_flight 2)");
    /* waiting does not help while nothing is acked */
    CHECK_RC(evs_group_next(a, 30, &d), EVS_ETIMEDOUT);
    evs_delivery *d3 = take(b); /* others are not held back */
    CHECK_INT(d3->id.position, 3);
    evs_group_member_info mi[2];
    size_t n;
    CHECK_RC(evs_group_list_members(g, mi, 2, &n), EVS_OK);
    CHECK_INT(mi[0].in_flight, 2);
    CHECK_INT(mi[1].in_flight, 1);
    ack(a, d1);
    evs_delivery *d4 = take(a);
    CHECK_INT(d4->id.position, 4);
    CHECK_RC(evs_group_next(a, 0, &d), EVS_ETIMEDOUT);
    ack(a, d2);
    ack(a, d4);
    ack(b, d3);
    evs_delivery *d5 = take(a);
    CHECK_INT(d5->id.position, 5);
    ack(a, d5);
    CHECK_INT(ginfo(g).info.checkpoint, 5);
    evs_group_leave(a);
    evs_group_leave(b);
    evs_group_close(g);
    fx_close(&f);
}

static void test_nack(void) {
    fixture f;
    fx_open(&f, "grp-nack");
    uint64_t p1 = append1(f.s, "x-1", "A");
    uint64_t p2 = append1(f.s, "x-2", "B");
    uint64_t p3 = append1(f.s, "x-3", "C");
    uint64_t p4 = append1(f.s, "x-4", "D");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "nacks";
    c.retry.backoff = EVS_BACKOFF_FIXED;
    c.retry.initial_delay_ns = 5 * SEC;
    c.retry.max_retries = 2;
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a");

    /* retry: back after the backoff, not before */
    evs_delivery *d = take(a), *none = NULL;
    CHECK_INT(d->id.position, p1);
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_RETRY, "boom 1"), EVS_OK);
    evs_delivery_free(d);
    /* park: straight to the DLQ */
    d = take(a);
    CHECK_INT(d->id.position, p2);
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_PARK, "poison"), EVS_OK);
    evs_delivery_free(d);
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(f.b, "nacks", &depth), EVS_OK);
    CHECK_INT(depth, 1);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(f.b, "nacks", p2, &e), EVS_OK);
    CHECK_INT(e.attempts, 1);
    CHECK_STR(e.last_error, "poison");
    CHECK_STR(e.stream, "x-2");
    CHECK_STR(e.event_type, "B");
    CHECK_INT(e.stream_position, 1);
    /* skip: finished, not parked */
    d = take(a);
    CHECK_INT(d->id.position, p3);
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_SKIP, NULL), EVS_OK);
    evs_delivery_free(d);
    CHECK_RC(evs_dlq_get(f.b, "nacks", p3, &e), EVS_ENOTFOUND);
    d = take(a);
    CHECK_INT(d->id.position, p4);
    ack(a, d);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    f.fc.now += 4 * SEC;
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    CHECK_INT(ginfo(g).info.checkpoint, 0); /* event 1 is not finished */
    f.fc.now += 1 * SEC;
    d = take(a);
    CHECK_INT(d->id.position, p1);
    CHECK_INT(d->id.attempt, 2);
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_RETRY, "boom 2"), EVS_OK);
    evs_delivery_free(d);
    f.fc.now += 5 * SEC;
    d = take(a);
    CHECK_INT(d->id.attempt, 3);
    /* the second retry was the last: this failure parks it */
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_RETRY, "boom 3"), EVS_OK);
    evs_delivery_free(d);
    f.fc.now += 60 * SEC;
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    CHECK_RC(evs_dlq_get(f.b, "nacks", p1, &e), EVS_OK);
    CHECK_INT(e.attempts, 3);
    CHECK_STR(e.last_error, "boom 3");
    CHECK_INT(e.first_failure_at, 1000 * SEC);
    CHECK_INT(e.last_failure_at, 1010 * SEC);
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.info.checkpoint, p4);
    CHECK_INT(gi.info.dlq_depth, 2);
    CHECK_INT(gi.info.retry_count, 2);
    CHECK_INT(gi.info.parked, 2);
    CHECK_INT(gi.info.failed, 2);
    CHECK_INT(gi.info.processed, 1);
    CHECK_INT(gi.skipped, 1);
    CHECK_CONTAINS(gi.info.last_error, "boom 3");
    /* the transaction that parked event 1 also wrote the checkpoint past it */
    CHECK_RC(evs_group_get(f.b, "nacks", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, p4);
    CHECK_INT(gi.info.parked, 2);

    /* retry from the DLQ through the group: the attempt count continues */
    CHECK_RC(evs_group_dlq_retry(g, p2), EVS_OK);
    CHECK_RC(evs_group_dlq_retry(g, p2), EVS_ECONFLICT);
    CHECK_RC(evs_group_dlq_retry(g, p3), EVS_ENOTFOUND);
    d = take(a);
    CHECK_INT(d->id.position, p2);
    CHECK_INT(d->id.attempt, 2);
    ack(a, d);
    CHECK_RC(evs_dlq_get(f.b, "nacks", p2, &e), EVS_ENOTFOUND);
    size_t queued;
    CHECK_RC(evs_group_dlq_retry_all(g, &queued), EVS_OK);
    CHECK_INT(queued, 1);
    d = take(a);
    CHECK_INT(d->id.position, p1);
    CHECK_INT(d->id.attempt, 4);
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_PARK, "still bad"), EVS_OK);
    evs_delivery_free(d);
    CHECK_RC(evs_dlq_get(f.b, "nacks", p1, &e), EVS_OK);
    CHECK_INT(e.attempts, 4);
    CHECK_STR(e.last_error, "still bad");
    CHECK_RC(evs_dlq_depth(f.b, "nacks", &depth), EVS_OK);
    CHECK_INT(depth, 1);
    CHECK_INT(ginfo(g).info.checkpoint, p4); /* replays never move the checkpoint */
    evs_group_leave(a);
    evs_group_close(g);
    fx_close(&f);
}

static void test_stop_and_timeout_park(void) {
    fixture f;
    fx_open(&f, "grp-stop");
    uint64_t p1 = append1(f.s, "y-1", "A");
    uint64_t p2 = append1(f.s, "y-2", "A");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "stopper";
    c.retry.max_retries = 0;
    c.on_failure = EVS_ON_FAILURE_STOP;
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a");
    evs_delivery *d = take(a), *none = NULL;
    CHECK_RC(evs_group_nack(a, d->id, EVS_NACK_RETRY, "cannot"), EVS_OK);
    evs_delivery_free(d);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_EFAILED);
    CHECK_CONTAINS(evs_errmsg(), "cannot");
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(f.b, "stopper", &ci), EVS_OK);
    CHECK_INT(ci.status, EVS_CONSUMER_ERROR);
    CHECK_RC(evs_group_resume(g), EVS_OK);
    d = take(a);
    CHECK_INT(d->id.position, p1);
    CHECK_INT(d->id.attempt, 2);
    ack(a, d);
    ack(a, take(a));
    CHECK_INT(ginfo(g).info.status, EVS_CONSUMER_ACTIVE);
    evs_group_leave(a);
    evs_group_close(g);

    /* ack timeouts count as failures too: with no retries left, the event is parked */
    uint64_t p3 = append1(f.s, "y-3", "A");
    uint64_t p4 = append1(f.s, "y-4", "A");
    evs_group_config_init(&c);
    c.name = "hangs";
    c.from = p3;
    c.ack_timeout_ns = 1 * SEC;
    c.retry.max_retries = 0;
    g = open_group(&f, &c);
    a = join(g, "a");
    evs_delivery *h = take(a);
    CHECK_INT(h->id.position, p3);
    f.fc.now += 2 * SEC;
    d = take(a);
    CHECK_INT(d->id.position, p4);
    ack(a, d);
    CHECK_RC(evs_group_ack(a, h->id), EVS_ECONFLICT);
    evs_delivery_free(h);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(f.b, "hangs", p3, &e), EVS_OK);
    CHECK_CONTAINS(e.last_error, "delivery 1 to consumer \"a\" was not acked within 1000 ms");
    CHECK_INT(ginfo(g).info.checkpoint, p4);
    (void)p2;
    evs_group_leave(a);
    evs_group_close(g);
    fx_close(&f);
}

static void test_answer_errors(void) {
    fixture f;
    fx_open(&f, "grp-errors");
    for (int i = 0; i < 4; i++) append1(f.s, "z-1", "A");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "errs";
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a"), *b = join(g, "b");
    evs_delivery *d1 = take(a), *d2 = take(a);
    evs_delivery_id id1 = d1->id;
    CHECK_RC(evs_group_ack(b, d2->id), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "is held by consumer \"a\", not \"b\"");
    ack(a, d1);
    CHECK_RC(evs_group_ack(a, id1), EVS_ECONFLICT); /* twice */
    CHECK_CONTAINS(evs_errmsg(), "already finished");
    evs_delivery_id never = {4, 1};
    CHECK_RC(evs_group_ack(a, never), EVS_ENOTFOUND); /* read ahead, not delivered */
    CHECK_CONTAINS(evs_errmsg(), "event 4 has no delivery 1");
    evs_delivery_id beyond = {99, 1};
    CHECK_RC(evs_group_ack(a, beyond), EVS_ENOTFOUND);
    evs_delivery_id zero = {2, 0};
    CHECK_RC(evs_group_ack(a, zero), EVS_ENOTFOUND);
    CHECK_RC(evs_group_nack(a, d2->id, (evs_nack_action)9, NULL), EVS_EINVAL);
    CHECK_RC(evs_group_nack(a, d2->id, EVS_NACK_RETRY, NULL), EVS_OK);
    CHECK_RC(evs_group_ack(a, d2->id), EVS_ECONFLICT); /* already answered */
    CHECK_CONTAINS(evs_errmsg(), "was already answered");
    evs_delivery_free(d2);
    /* leaving hands the unacked deliveries to the others */
    evs_delivery *d3 = take(a);
    CHECK_INT(d3->id.position, 3);
    evs_group_leave(a);
    evs_delivery *x = take(b);
    CHECK_INT(x->id.position, 3);
    CHECK_INT(x->id.attempt, 2);
    ack(b, x);
    evs_delivery_free(d3);
    /* cancel: the next pull returns at once, then pulls work again */
    evs_group_cancel(b);
    evs_delivery *none = NULL;
    CHECK_RC(evs_group_next(b, 10000, &none), EVS_ECLOSED);
    CHECK_CONTAINS(evs_errmsg(), "cancelled");
    evs_delivery *d4 = NULL;
    CHECK_RC(evs_group_next(b, 0, &d4), EVS_OK);
    ack(b, d4);
    /* pause: nothing is delivered, acks are still taken; persisted */
    f.fc.now += 60 * SEC; /* event 2 is due again */
    evs_delivery *d2b = take(b);
    CHECK_RC(evs_group_pause(g), EVS_OK);
    CHECK_RC(evs_group_next(b, 0, &none), EVS_ETIMEDOUT);
    CHECK_CONTAINS(evs_errmsg(), "paused");
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(f.b, "errs", &ci), EVS_OK);
    CHECK_INT(ci.status, EVS_CONSUMER_PAUSED);
    ack(b, d2b);
    CHECK_RC(evs_group_resume(g), EVS_OK);
    uint64_t p5 = append1(f.s, "z-1", "A");
    evs_delivery *d5 = NULL;
    CHECK_RC(evs_group_next(b, 1000, &d5), EVS_OK);
    if (d5) CHECK_INT(d5->id.position, p5);
    ack(b, d5);
    CHECK_INT(ginfo(g).info.checkpoint, p5);
    evs_group_leave(b);
    evs_group_close(g);
    fx_close(&f);
}

static void test_filters_and_lag(void) {
    fixture f;
    fx_open(&f, "grp-filter");
    append1(f.s, "old-1", "Wanted"); /* before the group: from now skips it */
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "wanted";
    c.from = EVS_SUB_FROM_NOW;
    const char *types[] = {"Wanted"};
    c.filter.event_types = types;
    c.filter.n_event_types = 1;
    c.checkpoint_every = 1;
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a");
    for (int i = 0; i < 3; i++) append1(f.s, "n-1", "Other");
    uint64_t w1 = append1(f.s, "w-1", "Wanted");
    for (int i = 0; i < 3; i++) append1(f.s, "n-1", "Other");
    uint64_t w2 = append1(f.s, "w-2", "Wanted");
    for (int i = 0; i < 3; i++) append1(f.s, "n-1", "Other");
    evs_delivery *d1 = take(a), *d2 = take(a), *none = NULL;
    CHECK_INT(d1->id.position, w1);
    CHECK_INT(d2->id.position, w2);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.info.checkpoint, w1 - 1); /* the filtered-out events before w1 count as done */
    CHECK_INT(gi.info.lag_events, evs_head(f.s) - (w1 - 1));
    ack(a, d1);
    ack(a, d2);
    CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    CHECK_RC(evs_group_get(f.b, "wanted", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, evs_head(f.s)); /* past the trailing filtered-out events */
    CHECK_INT(gi.info.lag_events, 0);
    CHECK_INT(gi.info.processed, 2);
    evs_group_leave(a);
    evs_group_close(g);

    /* tags */
    evs_group_config_init(&c);
    c.name = "vip";
    c.tag = "vip";
    c.from = EVS_SUB_FROM_NOW;
    g = open_group(&f, &c);
    a = join(g, "a");
    const char *tags[] = {"vip"};
    evs_event_in e = tu_event("Tagged", "{}");
    evs_append_result r;
    CHECK_RC(evs_append(f.s, "t-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    e.tags = tags;
    e.ntags = 1;
    CHECK_RC(evs_append(f.s, "t-1", EVS_EXPECT_ANY, &e, 1, &r, NULL), EVS_OK);
    evs_delivery *d = take(a);
    CHECK_INT(d->id.position, r.first_global_position);
    CHECK_MEM(d->event.tags, d->event.tags_len, "[\"vip\"]");
    ack(a, d);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    evs_group_leave(a);
    evs_group_close(g);
    fx_close(&f);
}

static void test_restart(void) {
    fixture f;
    fx_open(&f, "grp-restart");
    for (int i = 0; i < 10; i++) append1(f.s, "r-1", "A");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "durable";
    evs_group *g = open_group(&f, &c);
    evs_group_member *a = join(g, "a");
    evs_delivery *d[6];
    for (int i = 1; i <= 5; i++) d[i] = take(a);
    int acked[11] = {0};
    for (int i = 1; i <= 5; i++) {
        if (i == 3) {
            evs_delivery_free(d[i]);
            continue;
        }
        acked[i] = 1;
        ack(a, d[i]);
    }
    evs_group_leave(a);
    evs_group_close(g);
    evs_bus_close(f.b);
    evs_store_close(f.s);

    f.s = tu_open(f.dir, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(f.s, &f.b), EVS_OK);
    evs_group_info gi;
    CHECK_RC(evs_group_get(f.b, "durable", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, 2);
    CHECK_INT(gi.info.processed, 4);
    CHECK_RC(evs_group_open(f.b, "durable", &f.clock, &g), EVS_OK);
    evs_group_member *b = join(g, "b");
    uint64_t expect = 3;
    evs_delivery *x;
    while (evs_group_next(b, 0, &x) == EVS_OK) {
        CHECK_INT(x->id.position, expect); /* from the first unfinished event, in order */
        CHECK_INT(x->id.attempt, 1);
        acked[x->id.position] = 1;
        expect++;
        ack(b, x);
    }
    CHECK_INT(expect, 11);
    for (int i = 1; i <= 10; i++) CHECK_INT(acked[i], 1); /* none lost */
    CHECK_INT(ginfo(g).info.checkpoint, 10);
    evs_group_leave(b);
    evs_group_close(g);
    fx_close(&f);
}

/* A process killed without closing anything: the checkpoint written so far holds. */
static void test_crash(void) {
    fixture f;
    fx_open(&f, "grp-crash");
    for (int i = 0; i < 12; i++) append1(f.s, "k-1", "A");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "crashy";
    c.checkpoint_every = 1;
    CHECK_RC(evs_group_create(f.b, &c), EVS_OK);
    evs_bus_close(f.b);
    evs_store_close(f.s);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        evs_store *s = tu_open(f.dir, EVS_DURABILITY_NONE, 1 << 20);
        evs_bus *b;
        evs_group *g;
        evs_group_member *m;
        evs_delivery *d[9];
        if (evs_bus_open(s, &b) || evs_group_open(b, "crashy", NULL, &g) || evs_group_join(g, "a", &m)) _exit(3);
        for (int i = 1; i <= 8; i++)
            if (evs_group_next(m, 0, &d[i]) || d[i]->id.position != (uint64_t)i) _exit(4);
        for (int i = 1; i <= 8; i++)
            if (i != 6 && i != 8 && evs_group_ack(m, d[i]->id)) _exit(5);
        _exit(0); /* no close, no final checkpoint */
    }
    int status = 0;
    CHECK(pid > 0);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), 0);
    f.s = tu_open(f.dir, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(f.s, &f.b), EVS_OK);
    evs_group_info gi;
    CHECK_RC(evs_group_get(f.b, "crashy", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, 5);
    evs_group *g;
    CHECK_RC(evs_group_open(f.b, "crashy", NULL, &g), EVS_OK);
    evs_group_member *m = join(g, "b");
    uint64_t expect = 6;
    evs_delivery *x;
    while (evs_group_next(m, 0, &x) == EVS_OK) {
        CHECK_INT(x->id.position, expect); /* 7 comes again: at-least-once, 6 and 8 are not lost */
        expect++;
        ack(m, x);
    }
    CHECK_INT(expect, 13);
    CHECK_INT(ginfo(g).info.checkpoint, 12);
    evs_group_leave(m);
    evs_group_close(g);
    fx_close(&f);
}

/*
 * per_stream_order: one delivery of a stream out at a time; a parked event
 * parks its stream's later events behind it (new ones too, and after a
 * reopen) while other streams flow; a follower cannot be retried before it;
 * retry-all delivers them again in order, one at a time.
 */
static void test_per_stream_order(void) {
    fixture f;
    fx_open(&f, "grp-order");
    uint64_t s1 = append1(f.s, "o-1", "A");
    uint64_t s2 = append1(f.s, "o-1", "A");
    uint64_t t1 = append1(f.s, "o-2", "A");
    uint64_t s3 = append1(f.s, "o-1", "A");
    uint64_t t2 = append1(f.s, "o-2", "A");
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "ordered";
    c.per_stream_order = 1;
    c.max_in_flight = 100;
    evs_group *g = open_group(&f, &c);
    CHECK_INT(ginfo(g).per_stream_order, 1);
    evs_group_member *a = join(g, "a");
    /* one per stream: s1 and t1 go out, s2 and t2 wait */
    evs_delivery *d1 = take(a), *d2 = take(a), *none = NULL;
    CHECK_INT(d1->id.position, s1);
    CHECK_INT(d2->id.position, t1);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    ack(a, d2);
    evs_delivery *d3 = take(a);
    CHECK_INT(d3->id.position, t2);
    ack(a, d3);
    /* s1 parked: s2, s3 and a new s4 park behind it; o-2 keeps flowing */
    CHECK_RC(evs_group_nack(a, d1->id, EVS_NACK_PARK, "bad s1"), EVS_OK);
    evs_delivery_free(d1);
    uint64_t s4 = append1(f.s, "o-1", "A");
    uint64_t t3 = append1(f.s, "o-2", "A");
    evs_delivery *d4 = take(a);
    CHECK_INT(d4->id.position, t3);
    ack(a, d4);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(f.b, "ordered", &depth), EVS_OK);
    CHECK_INT(depth, 4);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(f.b, "ordered", s3, &e), EVS_OK);
    CHECK_INT(e.blocked_by, s1);
    CHECK_INT(e.attempts, 0);
    CHECK_CONTAINS(e.last_error, "waiting behind position");
    CHECK_INT(ginfo(g).info.checkpoint, t3); /* parked events count as finished */
    /* a follower cannot jump the queue */
    CHECK_RC(evs_group_dlq_retry(g, s2), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "waits behind");
    /* a reopen remembers: a new event of o-1 parks behind s1 */
    evs_group_leave(a);
    evs_group_close(g);
    CHECK_RC(evs_group_open(f.b, "ordered", &f.clock, &g), EVS_OK);
    a = join(g, "a");
    uint64_t s5 = append1(f.s, "o-1", "A");
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT);
    CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    CHECK_RC(evs_dlq_get(f.b, "ordered", s5, &e), EVS_OK);
    CHECK_INT(e.blocked_by, s1);
    /* retry all: s1 first, then each follower once the one before is acked */
    size_t queued = 0;
    CHECK_RC(evs_group_dlq_retry_all(g, &queued), EVS_OK);
    CHECK_INT(queued, 5);
    uint64_t want[] = {s1, s2, s3, s4, s5};
    for (int i = 0; i < 5; i++) {
        evs_delivery *d = take(a);
        if (!d) break;
        CHECK_INT(d->id.position, want[i]);
        CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT); /* nothing else of o-1 meanwhile */
        ack(a, d);
        CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    }
    CHECK_RC(evs_dlq_depth(f.b, "ordered", &depth), EVS_OK);
    CHECK_INT(depth, 0);
    /* the stream flows again */
    uint64_t s6 = append1(f.s, "o-1", "A");
    evs_delivery *d6 = take(a);
    if (d6) CHECK_INT(d6->id.position, s6);
    ack(a, d6);
    /* a replay that fails again parks its followers' replays behind it again */
    uint64_t s7 = append1(f.s, "o-1", "A");
    uint64_t s8 = append1(f.s, "o-1", "A");
    evs_delivery *d7 = take(a);
    CHECK_RC(evs_group_nack(a, d7->id, EVS_NACK_PARK, "bad s7"), EVS_OK);
    evs_delivery_free(d7);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT); /* s8 parked behind */
    CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    CHECK_RC(evs_group_dlq_retry_all(g, &queued), EVS_OK);
    CHECK_INT(queued, 2);
    d7 = take(a);
    if (d7) CHECK_INT(d7->id.position, s7);
    CHECK_RC(evs_group_nack(a, d7->id, EVS_NACK_PARK, "still bad"), EVS_OK);
    evs_delivery_free(d7);
    CHECK_RC(evs_group_next(a, 0, &none), EVS_ETIMEDOUT); /* s8's replay waits behind s7 again */
    CHECK_RC(evs_group_checkpoint(g), EVS_OK);
    CHECK_RC(evs_dlq_get(f.b, "ordered", s8, &e), EVS_OK);
    CHECK_INT(e.blocked_by, s7);
    CHECK_RC(evs_dlq_depth(f.b, "ordered", &depth), EVS_OK);
    CHECK_INT(depth, 2);
    evs_group_leave(a);
    evs_group_close(g);
    fx_close(&f);
}

/*
 * Group state is current when read, not only after a consumer's next call:
 * every read below follows the consumer's last call directly.
 *   1. per-stream order: an event parked by a nack holds its stream's later
 *      events (already read ahead) parked behind it at once;
 *   2. an idle consumer whose delivery's ack timeout passed no longer holds
 *      it (and with no retries left it is parked);
 *   3. the checkpoint, counters and lag of an open group read through the
 *      bus (evs_consumer_get / _list, evs_group_get) are the live ones, not
 *      the last record written.
 */
static void check_parked(fixture *f, evs_group *g, const char *name, uint64_t parked, uint64_t depth) {
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.info.parked, parked);
    CHECK_INT(gi.info.dlq_depth, depth);
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(f->b, name, &ci), EVS_OK);
    CHECK_INT(ci.parked, parked);
    CHECK_INT(ci.dlq_depth, depth);
    CHECK_RC(evs_group_get(f->b, name, &gi), EVS_OK);
    CHECK_INT(gi.info.parked, parked);
    CHECK_INT(gi.members, 1);
    uint64_t d;
    CHECK_RC(evs_dlq_depth(f->b, name, &d), EVS_OK);
    CHECK_INT(d, depth);
}

static void test_state_current_when_read(void) {
    fixture f;
    fx_open(&f, "grp-current");
    uint64_t a1 = append1(f.s, "cur-1", "A");
    uint64_t a2 = append1(f.s, "cur-1", "A");
    uint64_t b1 = append1(f.s, "cur-2", "A");
    uint64_t a3 = append1(f.s, "cur-1", "A");

    /* 1. park via nack; its followers are parked before anyone asks for work */
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = "current-order";
    c.per_stream_order = 1;
    c.checkpoint_ms = 60000;
    c.checkpoint_every = 1000;
    evs_group *g = open_group(&f, &c);
    evs_group_member *m = join(g, "m");
    evs_delivery *d = take(m);
    CHECK_INT(d->id.position, a1);
    CHECK_RC(evs_group_nack(m, d->id, EVS_NACK_PARK, "bad"), EVS_OK);
    evs_delivery_free(d);
    check_parked(&f, g, "current-order", 3, 3);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(f.b, "current-order", a2, &e), EVS_OK);
    CHECK_INT(e.blocked_by, a1);
    CHECK_RC(evs_dlq_get(f.b, "current-order", a3, &e), EVS_OK);
    CHECK_INT(e.blocked_by, a1);
    CHECK_INT(ginfo(g).buffered, 1); /* only cur-2's event is left to deliver */
    d = take(m);
    CHECK_INT(d->id.position, b1);
    ack(m, d);
    evs_group_leave(m);
    evs_group_close(g);

    /* 2. an idle consumer: its delivery times out, with no retry left it is parked */
    evs_group_config_init(&c);
    c.name = "current-idle";
    c.ack_timeout_ns = 5 * SEC;
    c.retry.max_retries = 0;
    c.checkpoint_ms = 60000;
    g = open_group(&f, &c);
    m = join(g, "idle");
    d = take(m);
    CHECK_INT(d->id.position, a1);
    evs_group_info gi = ginfo(g);
    CHECK_INT(gi.in_flight, 1);
    f.fc.now += 6 * SEC; /* and nobody calls */
    gi = ginfo(g);
    CHECK_INT(gi.in_flight, 0);
    CHECK_INT(gi.timeouts, 1);
    evs_group_member_info mi;
    size_t n;
    CHECK_RC(evs_group_list_members(g, &mi, 1, &n), EVS_OK);
    CHECK_INT(n, 1);
    CHECK_INT(mi.in_flight, 0);
    CHECK_INT(mi.timeouts, 1);
    check_parked(&f, g, "current-idle", 1, 1);
    CHECK_RC(evs_dlq_get(f.b, "current-idle", a1, &e), EVS_OK);
    CHECK_CONTAINS(e.last_error, "was not acked within 5000 ms");
    evs_delivery_free(d);
    evs_group_leave(m);
    evs_group_close(g);

    /* 3. checkpoint and lag through the bus, before any checkpoint is due */
    evs_group_config_init(&c);
    c.name = "current-lag";
    c.checkpoint_ms = 60000;
    c.checkpoint_every = 1000;
    g = open_group(&f, &c);
    m = join(g, "m");
    for (int i = 0; i < 4; i++) ack(m, take(m));
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(f.b, "current-lag", &ci), EVS_OK);
    CHECK_INT(ci.checkpoint, evs_head(f.s));
    CHECK_INT(ci.processed, 4);
    CHECK_INT(ci.lag_events, 0);
    evs_consumer_info list[8];
    CHECK_RC(evs_consumer_list(f.b, NULL, list, 8, &n), EVS_OK);
    int seen = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, "current-lag") == 0) {
            seen = 1;
            CHECK_INT(list[i].checkpoint, evs_head(f.s));
            CHECK_INT(list[i].lag_events, 0);
        }
    CHECK(seen);
    CHECK_RC(evs_group_get(f.b, "current-lag", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, evs_head(f.s));
    CHECK_INT(gi.members, 1);
    append1(f.s, "cur-3", "A");
    CHECK_RC(evs_consumer_get(f.b, "current-lag", &ci), EVS_OK);
    CHECK_INT(ci.lag_events, 1);
    evs_group_leave(m);
    evs_group_close(g);
    /* closed: the stored record, which the close wrote */
    CHECK_RC(evs_group_get(f.b, "current-lag", &gi), EVS_OK);
    CHECK_INT(gi.info.checkpoint, evs_head(f.s) - 1);
    CHECK_INT(gi.members, 0);
    fx_close(&f);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    tu_verbose = getenv("EVS_VERBOSE") != NULL;
    test_records();
    test_one_at_a_time();
    test_ack_timeout();
    test_pinned();
    test_pinned_join_spreads();
    test_round_robin_spreads();
    test_max_in_flight();
    test_nack();
    test_stop_and_timeout_park();
    test_answer_errors();
    test_filters_and_lag();
    test_restart();
    test_crash();
    test_per_stream_order();
    test_state_current_when_read();
    return TEST_REPORT();
}
