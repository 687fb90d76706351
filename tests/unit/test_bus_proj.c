/*
 * test_bus_proj.c — C projections: per-stream, non-partitioned and custom
 * partitions; queries (one partition, paged partitions); a failing event
 * parked without touching the state and applied in order by a DLQ retry;
 * kill -9 of a child process while it projects (after restart the state
 * equals a fresh replay, event for event); rebuild into a fresh copy while
 * appends continue and the old state answers queries, then the swap; a
 * reset moves the projection back and empties its DLQ in one transaction
 * (a failure or a crash between the two steps leaves neither); `sub reset`
 * during a rebuild restarts the rebuild from that position.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "bus/bus_testing.h"
#include "evstore_bus.h"
#include "conformance.h"

/*
 * State: {"h":H,"last":L,"n":N,"sum":S}.  h chains every applied position,
 * so a skipped or doubly applied event changes it.
 */
typedef struct st {
    unsigned long long h, last, n, sum;
} st;

static void parse_state(const char *s, st *o) {
    memset(o, 0, sizeof *o);
    if (strcmp(s, "{}") != 0) sscanf(s, "{\"h\":%llu,\"last\":%llu,\"n\":%llu,\"sum\":%llu}", &o->h, &o->last, &o->n, &o->sum);
}

static int poison_fixed;

static int fold(void *ctx, const evs_event *ev, const char *state, size_t len, char **out, size_t *out_len, char *err,
                size_t cap) {
    (void)ctx, (void)len;
    if (!poison_fixed && ev->event_type_len == 6 && memcmp(ev->event_type, "Poison", 6) == 0) {
        snprintf(err, cap, "poison at %llu", (unsigned long long)ev->global_position);
        return 1;
    }
    st s;
    parse_state(state, &s);
    long v = 0;
    const char *p = memchr(ev->data, ':', ev->data_len);
    if (p) v = strtol(p + 1, NULL, 10);
    s.h = (s.h * 1000003ull + ev->global_position) & ((1ull << 52) - 1);
    s.last = ev->global_position;
    s.n++;
    s.sum += (unsigned long long)v;
    char buf[160];
    int n = snprintf(buf, sizeof buf, "{\"h\":%llu,\"last\":%llu,\"n\":%llu,\"sum\":%llu}", s.h, s.last, s.n, s.sum);
    *out = strdup(buf);
    *out_len = (size_t)n;
    return 0;
}

/* A config of the fold projection over the streams starting with prefix. */
static void fold_config(evs_proj_config *c, const char *name, const char *prefix) {
    evs_proj_config_init(c);
    c->name = name;
    c->apply = fold;
    c->filter.stream_prefix = prefix;
}

static int by_first_letter(void *ctx, const evs_event *ev, char *buf, size_t cap) {
    (void)ctx, (void)cap;
    buf[0] = ev->stream[0];
    return 1;
}

static void append_v(evs_store *s, const char *stream, const char *type, int v) {
    char data[32];
    snprintf(data, sizeof data, "{\"v\":%d}", v);
    evs_event_in e = tu_event(type, data);
    evs_append_result r;
    if (evs_append(s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL) != EVS_OK) {
        fprintf(stderr, "append: %s\n", evs_errmsg());
        exit(2);
    }
}

static void check_state(evs_bus *b, const char *name, const char *part, unsigned long long n, unsigned long long sum) {
    char *js = NULL;
    size_t len;
    CHECK_RC(evs_proj_get_state(b, name, part, &js, &len), EVS_OK);
    if (!js) return;
    st s;
    parse_state(js, &s);
    CHECK_INT(s.n, n);
    CHECK_INT(s.sum, sum);
    free(js);
}

static void test_partitions_and_queries(evs_store *s, evs_bus *b) {
    for (int i = 1; i <= 10; i++) append_v(s, i % 2 ? "acct-1" : "acct-2", "Deposited", i);
    append_v(s, "bank-1", "Opened", 100);
    evs_proj_config c;
    evs_proj_config_init(&c);
    c.name = "balances";
    c.apply = fold;
    const char *types[] = {"Deposited"};
    c.filter.event_types = types;
    c.filter.n_event_types = 1;
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 10);
    /* nothing is visible before the commit */
    char *js;
    CHECK_RC(evs_proj_get_state(b, "balances", "acct-1", &js, NULL), EVS_ENOTFOUND);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    check_state(b, "balances", "acct-1", 5, 1 + 3 + 5 + 7 + 9);
    check_state(b, "balances", "acct-2", 5, 2 + 4 + 6 + 8 + 10);
    CHECK_RC(evs_proj_get_state(b, "balances", "bank-1", &js, NULL), EVS_ENOTFOUND);
    evs_partition_name parts[4];
    size_t cnt;
    CHECK_RC(evs_proj_list_partitions(b, "balances", NULL, parts, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 2);
    CHECK_STR(parts[0].name, "acct-1");
    CHECK_STR(parts[1].name, "acct-2");
    CHECK_RC(evs_proj_list_partitions(b, "balances", "acct-1", parts, 4, &cnt), EVS_OK);
    CHECK_INT(cnt, 1);
    CHECK_STR(parts[0].name, "acct-2");
    evs_proj_status stt;
    CHECK_RC(evs_proj_get_status(p, &stt), EVS_OK);
    CHECK_STR(stt.info.kind, "projection");
    CHECK_INT(stt.info.checkpoint, evs_head(s));
    CHECK_INT(stt.info.lag_events, 0);
    CHECK_INT(stt.rebuilding, 0);
    evs_proj_close(p);

    /* one state for everything */
    evs_proj_config_init(&c);
    c.name = "total";
    c.apply = fold;
    c.partitioning = EVS_PARTITION_NONE;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    evs_proj_close(p);
    check_state(b, "total", NULL, 11, 155);

    /* custom partitions */
    evs_proj_config_init(&c);
    c.name = "letters";
    c.apply = fold;
    c.partitioning = EVS_PARTITION_CUSTOM;
    c.partition = by_first_letter;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    evs_proj_close(p);
    check_state(b, "letters", "a", 10, 55);
    check_state(b, "letters", "b", 1, 100);
    /* a subscription name is not a projection */
    CHECK_RC(evs_proj_get_state(b, "nope", NULL, &js, NULL), EVS_ENOTFOUND);
    c.partition = NULL;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_EINVAL);
}

static void test_failure_parks(evs_store *s, evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "poisoned", "cust-");
    c.per_stream_order = 1;
    c.checkpoint_every = 1000;
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    append_v(s, "cust-1", "Deposited", 1);
    append_v(s, "cust-2", "Deposited", 10);
    uint64_t bad = evs_head(s) + 1;
    append_v(s, "cust-1", "Poison", 2);
    append_v(s, "cust-1", "Deposited", 4);
    append_v(s, "cust-2", "Deposited", 20);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 3);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    /* cust-1 stopped before the poison, its follower parked behind it */
    check_state(b, "poisoned", "cust-1", 1, 1);
    check_state(b, "poisoned", "cust-2", 2, 30);
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(b, "poisoned", &depth), EVS_OK);
    CHECK_INT(depth, 2);
    poison_fixed = 1;
    size_t rel, failed;
    CHECK_RC(evs_proj_dlq_retry_all(p, &rel, &failed), EVS_OK);
    CHECK_INT(rel, 2);
    check_state(b, "poisoned", "cust-1", 3, 7);
    char *js;
    CHECK_RC(evs_proj_get_state(b, "poisoned", "cust-1", &js, NULL), EVS_OK);
    st st1;
    parse_state(js, &st1);
    CHECK_INT(st1.last, bad + 1);
    free(js);
    poison_fixed = 0;
    evs_proj_close(p);
}

/*
 * A rebuild computes the DLQ anew, as it computes the state: while it runs
 * users see the live entries (and cannot retry them); at the swap the live
 * entries from the rebuild's start are replaced by what the rebuild parked.
 * With per-stream order, an entry below a rebuild's start still holds its
 * stream back, and one the rebuild applied no longer does.
 */
static void dlq_positions(evs_bus *b, const char *name, uint64_t *out, size_t max, size_t *n) {
    evs_dlq_entry e[8];
    *n = 0;
    CHECK_RC(evs_dlq_list(b, name, 0, e, 8, n), EVS_OK);
    for (size_t i = 0; i < *n && i < max; i++) out[i] = e[i].position;
}

static void test_rebuild_dlq(evs_store *s, evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "redo", "redo-");
    c.per_stream_order = 1;
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    if (!p) return;
    append_v(s, "redo-1", "Deposited", 1);
    uint64_t bad = evs_head(s) + 1;
    append_v(s, "redo-1", "Poison", 2);
    append_v(s, "redo-1", "Deposited", 4);
    append_v(s, "redo-2", "Deposited", 8);
    size_t n;
    uint64_t pos[8];
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    dlq_positions(b, "redo", pos, 8, &n);
    CHECK_INT(n, 2);
    CHECK_INT(pos[0], bad);
    CHECK_INT(pos[1], bad + 1);

    /* 1. the handler still fails: the rebuild parks the same two, nothing doubles */
    CHECK_RC(evs_proj_rebuild(p, 0), EVS_OK);
    CHECK_RC(evs_proj_dlq_retry(p, bad), EVS_ECONFLICT);
    CHECK_CONTAINS(evs_errmsg(), "rebuilding");
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    evs_proj_status ps;
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 0);
    dlq_positions(b, "redo", pos, 8, &n);
    CHECK_INT(n, 2);
    evs_dlq_entry e;
    CHECK_RC(evs_dlq_get(b, "redo", bad + 1, &e), EVS_OK);
    CHECK_INT(e.blocked_by, bad);
    check_state(b, "redo", "redo-1", 1, 1);
    check_state(b, "redo", "redo-2", 1, 8);

    /* 2. a rebuild from after the parked event: it still holds its stream back */
    append_v(s, "redo-1", "Deposited", 16);
    uint64_t from = evs_head(s);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK); /* parked behind, live */
    CHECK_RC(evs_proj_rebuild(p, from), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    dlq_positions(b, "redo", pos, 8, &n);
    CHECK_INT(n, 3);
    CHECK_INT(pos[2], from);
    CHECK_RC(evs_dlq_get(b, "redo", from, &e), EVS_OK);
    CHECK_INT(e.blocked_by, bad);

    /* 3. fixed: a full rebuild applies every event once and empties the DLQ */
    poison_fixed = 1;
    CHECK_RC(evs_proj_rebuild(p, 0), EVS_OK);
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(b, "redo", &depth), EVS_OK);
    CHECK_INT(depth, 3); /* the live entries until the swap */
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_dlq_depth(b, "redo", &depth), EVS_OK);
    CHECK_INT(depth, 0);
    check_state(b, "redo", "redo-1", 4, 23);
    check_state(b, "redo", "redo-2", 1, 8);
    poison_fixed = 0;
    evs_proj_close(p);
    /* a restart sees the same */
    CHECK_RC(evs_dlq_depth(b, "redo", &depth), EVS_OK);
    CHECK_INT(depth, 0);
}

/*
 * A reset (evs_proj_reset) moves the projection back and empties its DLQ in
 * one transaction: a write failing, or the process dying, between the two
 * steps leaves neither done (the record still says "not rebuilding" at the
 * old checkpoint and every entry is still parked); without a failure both
 * are done at once.
 */
static int fail_at_reset(const char *point) { return strcmp(point, "proj_reset") == 0; }
static int die_at_reset(const char *point) {
    if (strcmp(point, "proj_reset") == 0) _exit(0);
    return 0;
}

static evs_projection *open_resettable(evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "resettable", "rst-");
    evs_projection *p = NULL;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    return p;
}

/* Not rebuilding, checkpoint at the head, `depth` entries parked, state n / sum. */
static void check_unreset(evs_store *s, evs_bus *b, evs_projection *p, uint64_t depth, unsigned long long n,
                          unsigned long long sum) {
    evs_proj_status ps;
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 0);
    CHECK_INT(ps.info.checkpoint, evs_head(s));
    evs_consumer_info ci;
    CHECK_RC(evs_consumer_get(b, "resettable", &ci), EVS_OK);
    CHECK_INT(ci.checkpoint, evs_head(s));
    uint64_t d;
    CHECK_RC(evs_dlq_depth(b, "resettable", &d), EVS_OK);
    CHECK_INT(d, depth);
    check_state(b, "resettable", "rst-1", n, sum);
}

static void test_reset_atomic(void) {
    char *d = cf_fresh("bus-reset");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    append_v(s, "rst-1", "Deposited", 1);
    append_v(s, "rst-1", "Poison", 2);
    append_v(s, "rst-1", "Deposited", 4);
    append_v(s, "rst-1", "Poison", 8);
    evs_projection *p = open_resettable(b);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    check_unreset(s, b, p, 2, 2, 5);

    /* 1. the write fails between moving back and emptying the DLQ: neither happened */
    evs__bus_fault_hook = fail_at_reset;
    CHECK_RC(evs_proj_reset(p, 0), EVS_EIO);
    CHECK_CONTAINS(evs_errmsg(), "proj_reset");
    evs__bus_fault_hook = NULL;
    check_unreset(s, b, p, 2, 2, 5);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 0); /* nothing is replayed */
    evs_proj_close(p);
    p = open_resettable(b);
    check_unreset(s, b, p, 2, 2, 5);
    evs_proj_close(p);
    evs_bus_close(b);
    CHECK_RC(evs_store_close(s), EVS_OK);

    /* 2. the process dies at that point: after a restart, neither happened */
    pid_t pid = fork();
    if (pid == 0) {
        evs_store *cs = NULL;
        evs_bus *cb = NULL;
        evs_projection *cp = NULL;
        if (evs_store_create(&cs) || evs_store_open(cs, d, 0) || evs_bus_open(cs, &cb)) _exit(3);
        evs_proj_config c;
        fold_config(&c, "resettable", "rst-");
        if (evs_proj_open(cb, &c, &cp)) _exit(4);
        evs__bus_fault_hook = die_at_reset;
        evs_proj_reset(cp, 0);
        _exit(5); /* the hook did not run */
    }
    CHECK(pid > 0);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    p = open_resettable(b);
    check_unreset(s, b, p, 2, 2, 5);

    /* 3. no failure: moved back and emptied together; the rebuild parks anew what still fails */
    CHECK_RC(evs_proj_reset(p, 0), EVS_OK);
    uint64_t depth;
    CHECK_RC(evs_dlq_depth(b, "resettable", &depth), EVS_OK);
    CHECK_INT(depth, 0);
    evs_proj_status ps;
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 1);
    CHECK_INT(ps.rebuild_position, 1);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 0);
    CHECK_RC(evs_dlq_depth(b, "resettable", &depth), EVS_OK);
    CHECK_INT(depth, 2);
    check_state(b, "resettable", "rst-1", 2, 5);
    evs_proj_close(p);
    evs_bus_close(b);
    CHECK_RC(evs_store_close(s), EVS_OK);
    cf_drop(d);
}

/*
 * `evstore sub reset` on a projection in the middle of a rebuild
 * (evs_consumer_set_position while it is closed) restarts the rebuild from
 * that position: the rebuild's start moves with it, so at the swap the live
 * DLQ entries between the new and the old start are replaced too, and no
 * event is applied twice to the rebuilt state.
 */
static void test_reset_position_during_rebuild(evs_store *s, evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "lowered", "low-");
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    if (!p) return;
    uint64_t p1 = evs_head(s) + 1;
    append_v(s, "low-1", "Deposited", 1);
    append_v(s, "low-1", "Poison", 2); /* p1 + 1 */
    append_v(s, "low-1", "Deposited", 4);
    append_v(s, "low-1", "Poison", 8); /* p1 + 3 */
    append_v(s, "low-1", "Deposited", 16);
    append_v(s, "low-1", "Deposited", 32);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    uint64_t pos[8];
    dlq_positions(b, "lowered", pos, 8, &n);
    CHECK_INT(n, 2);
    CHECK_INT(pos[0], p1 + 1);
    CHECK_INT(pos[1], p1 + 3);
    check_state(b, "lowered", "low-1", 4, 53);

    /* the handler is fixed; a rebuild from the second poison starts and stops after one event */
    poison_fixed = 1;
    CHECK_RC(evs_proj_rebuild(p, p1 + 3), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 1, &n), EVS_OK);
    CHECK_INT(n, 1);
    evs_proj_status ps;
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 1);
    CHECK_INT(ps.rebuild_position, p1 + 4);
    evs_proj_close(p);

    /* `sub reset lowered P` below the rebuild's start, before the first poison */
    CHECK_RC(evs_consumer_set_position(b, "lowered", p1 + 1), EVS_OK);
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    if (!p) return;
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 1);
    CHECK_INT(ps.rebuild_position, p1 + 1);
    dlq_positions(b, "lowered", pos, 8, &n); /* the live entries until the swap */
    CHECK_INT(n, 2);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_INT(n, 5);
    CHECK_RC(evs_proj_get_status(p, &ps), EVS_OK);
    CHECK_INT(ps.rebuilding, 0);
    /* both entries were replaced: the one between the new and the old start too */
    dlq_positions(b, "lowered", pos, 8, &n);
    CHECK_INT(n, 0);
    /* events p1+1 .. p1+5, each applied once */
    check_state(b, "lowered", "low-1", 5, 2 + 4 + 8 + 16 + 32);
    char *js = NULL;
    CHECK_RC(evs_proj_get_state(b, "lowered", "low-1", &js, NULL), EVS_OK);
    if (js) {
        st got;
        parse_state(js, &got);
        unsigned long long h = 0;
        for (uint64_t g = p1 + 1; g <= p1 + 5; g++) h = (h * 1000003ull + g) & ((1ull << 52) - 1);
        CHECK_INT(got.h, h);
        CHECK_INT(got.last, p1 + 5);
    }
    free(js);
    poison_fixed = 0;
    evs_proj_close(p);
}

/* ------------------------------------------------------------- kill -9 */

#define KILL_EVENTS 40000

static evs_projection *open_fold(evs_bus *b, const char *name, uint32_t every) {
    evs_proj_config c;
    fold_config(&c, name, "k-");
    c.checkpoint_every = every;
    c.page_size = 97;
    evs_projection *p = NULL;
    if (evs_proj_open(b, &c, &p) != EVS_OK) {
        fprintf(stderr, "open %s: %s\n", name, evs_errmsg());
        exit(2);
    }
    return p;
}

/* ready: a pipe the child writes one byte to once its projection is open */
static void child_project(const char *d, int ready) {
    evs_store *s = NULL;
    evs_bus *b = NULL;
    if (evs_store_create(&s) || evs_store_open(s, d, 0) || evs_bus_open(s, &b)) _exit(3);
    evs_projection *p = open_fold(b, "killed", 37);
    if (write(ready, "r", 1) != 1) _exit(5);
    close(ready);
    for (;;) {
        size_t n;
        if (evs_proj_poll(p, 0, 500, &n) != EVS_OK) _exit(4);
        if (n == 0) break;
    }
    evs_proj_close(p);
    evs_bus_close(b);
    evs_store_close(s);
    _exit(0);
}

static void test_kill9(void) {
    char *d = cf_fresh("bus-kill9");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 4 << 20);
    for (int i = 0; i < KILL_EVENTS / 100; i++) {
        char stream[16], data[100][32];
        evs_event_in ev[100];
        for (int j = 0; j < 100; j++) {
            snprintf(data[j], sizeof data[j], "{\"v\":%d}", (i * 100 + j) % 7);
            ev[j] = tu_event("Deposited", data[j]);
        }
        snprintf(stream, sizeof stream, "k-%d", i % 13);
        evs_append_result r;
        CHECK_RC(evs_append(s, stream, EVS_EXPECT_ANY, ev, 100, &r, NULL), EVS_OK);
    }
    evs_store_close(s);
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    int kills = 0, finished = 0;
    for (int round = 0; round < 30 && !finished; round++) {
        int fds[2];
        if (pipe(fds) != 0) exit(2);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child_project(d, fds[1]);
        }
        CHECK(pid > 0);
        close(fds[1]);
        /* the kill lands while the child projects, however long its open took
           (a sanitized build opens slowly): wait for it to be ready first */
        char c;
        if (read(fds[0], &c, 1) != 1) c = 0; /* it died before: waitpid below says how */
        close(fds[0]);
        struct timespec ts = {0, (long)(2000 + round * 2000 + rand() % 3000) * 1000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) kills++;
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) finished = 1;
        else {
            fprintf(stderr, "child failed with status %d (seed %u)\n", status, seed);
            CHECK(0);
        }
    }
    CHECK(kills > 0);
    printf("kill -9: %d kills, child finished: %s\n", kills, finished ? "yes" : "no");
    s = tu_open(d, EVS_DURABILITY_NONE, 4 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    evs_consumer_info before;
    CHECK_RC(evs_consumer_get(b, "killed", &before), EVS_OK);
    printf("kill -9: the killed children had checkpointed %llu of %d events\n",
           (unsigned long long)before.checkpoint, KILL_EVENTS);
    evs_projection *p = open_fold(b, "killed", 37), *f = open_fold(b, "fresh", 100000);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_poll(f, 0, 0, &n), EVS_OK);
    CHECK_INT(n, KILL_EVENTS);
    evs_proj_close(p);
    evs_proj_close(f);
    evs_partition_name parts[32];
    size_t cnt, cnt2;
    CHECK_RC(evs_proj_list_partitions(b, "killed", NULL, parts, 32, &cnt), EVS_OK);
    CHECK_INT(cnt, 13);
    CHECK_RC(evs_proj_list_partitions(b, "fresh", NULL, parts, 32, &cnt2), EVS_OK);
    CHECK_INT(cnt2, 13);
    unsigned long long total = 0;
    for (size_t i = 0; i < cnt2; i++) {
        char *a = NULL, *z = NULL;
        CHECK_RC(evs_proj_get_state(b, "killed", parts[i].name, &a, NULL), EVS_OK);
        CHECK_RC(evs_proj_get_state(b, "fresh", parts[i].name, &z, NULL), EVS_OK);
        if (a && z) {
            CHECK_STR(a, z);
            st x;
            parse_state(z, &x);
            total += x.n;
        }
        free(a);
        free(z);
    }
    CHECK_INT(total, KILL_EVENTS);
    if (tu_failures) fprintf(stderr, "kill -9 test: seed %u, %d kills\n", seed, kills);
    evs_bus_close(b);
    evs_store_close(s);
    cf_drop(d);
}

/* --------------------------------------------------------------- rebuild */

static void test_rebuild(evs_store *s, evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "rebuilt", "r-");
    c.page_size = 10;
    c.checkpoint_every = 25;
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    for (int i = 0; i < 200; i++) append_v(s, i % 2 ? "r-a" : "r-b", "Deposited", 1);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    check_state(b, "rebuilt", "r-a", 100, 100);
    CHECK_RC(evs_proj_rebuild(p, 0), EVS_OK);
    evs_proj_status stt;
    CHECK_RC(evs_proj_get_status(p, &stt), EVS_OK);
    CHECK_INT(stt.rebuilding, 1);
    CHECK(stt.rebuild_percent < 50);
    /* rebuild in small steps while appends continue; the old state answers */
    for (int round = 0; round < 10; round++) {
        append_v(s, "r-a", "Deposited", 2);
        CHECK_RC(evs_proj_poll(p, 0, 7, &n), EVS_OK);
        check_state(b, "rebuilt", "r-a", 100, 100);
    }
    CHECK_RC(evs_proj_get_status(p, &stt), EVS_OK);
    CHECK_INT(stt.rebuilding, 1);
    CHECK(stt.rebuild_percent > 0);
    /* close and reopen mid-rebuild: it resumes */
    evs_proj_close(p);
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_get_status(p, &stt), EVS_OK);
    CHECK_INT(stt.rebuilding, 0);
    CHECK_INT(stt.generation, 1);
    check_state(b, "rebuilt", "r-a", 110, 120);
    check_state(b, "rebuilt", "r-b", 100, 100);
    /* equal to a fresh replay */
    c.name = "rebuilt-fresh";
    evs_projection *f;
    CHECK_RC(evs_proj_open(b, &c, &f), EVS_OK);
    CHECK_RC(evs_proj_poll(f, 0, 0, &n), EVS_OK);
    evs_proj_close(f);
    const char *parts[] = {"r-a", "r-b"};
    for (int i = 0; i < 2; i++) {
        char *x = NULL, *y = NULL;
        CHECK_RC(evs_proj_get_state(b, "rebuilt", parts[i], &x, NULL), EVS_OK);
        CHECK_RC(evs_proj_get_state(b, "rebuilt-fresh", parts[i], &y, NULL), EVS_OK);
        if (x && y) CHECK_STR(x, y);
        free(x);
        free(y);
    }
    evs_proj_close(p);
}

/* A rebuild or reset from past head + 1 is refused and changes nothing: state, checkpoint and DLQ stay. */
static void test_rebuild_past_head(evs_store *s, evs_bus *b) {
    evs_proj_config c;
    fold_config(&c, "far", "far-");
    evs_projection *p;
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    append_v(s, "far-a", "Deposited", 5);
    append_v(s, "far-a", "Poison", 0);
    size_t n;
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    uint64_t h = evs_head(s), depth = 0;
    char want[96];
    snprintf(want, sizeof want, "position %llu lies past the store's head %llu", (unsigned long long)h + 2,
             (unsigned long long)h);
    CHECK_RC(evs_proj_rebuild(p, h + 2), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), want);
    CHECK_RC(evs_proj_reset(p, h + 2), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), want);
    evs_proj_status stt;
    CHECK_RC(evs_proj_get_status(p, &stt), EVS_OK);
    CHECK_INT(stt.rebuilding, 0);
    CHECK_INT(stt.info.checkpoint, h);
    CHECK_INT(stt.generation, 0);
    check_state(b, "far", "far-a", 1, 5);
    CHECK_RC(evs_dlq_depth(b, "far", &depth), EVS_OK);
    CHECK_INT(depth, 1);
    evs_proj_close(p);
    CHECK_RC(evs_consumer_set_position(b, "far", h + 2), EVS_EINVAL);
    CHECK_RC(evs_consumer_get(b, "far", &stt.info), EVS_OK);
    CHECK_INT(stt.info.checkpoint, h);
    /* what comes next is applied, not skipped */
    CHECK_RC(evs_proj_open(b, &c, &p), EVS_OK);
    append_v(s, "far-a", "Deposited", 7);
    CHECK_RC(evs_proj_poll(p, 0, 0, &n), EVS_OK);
    CHECK_RC(evs_proj_checkpoint(p), EVS_OK);
    check_state(b, "far", "far-a", 2, 12);
    evs_proj_close(p);
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    char *d = cf_fresh("bus-proj");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 1 << 20);
    evs_bus *b;
    CHECK_RC(evs_bus_open(s, &b), EVS_OK);
    test_partitions_and_queries(s, b);
    test_failure_parks(s, b);
    test_rebuild(s, b);
    test_rebuild_dlq(s, b);
    test_reset_position_during_rebuild(s, b);
    test_rebuild_past_head(s, b);
    evs_bus_close(b);
    evs_store_close(s);
    cf_drop(d);
    test_reset_atomic();
    test_kill9();
    return TEST_REPORT();
}
