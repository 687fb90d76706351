/*
 * test_alloc_fail.c — every allocation the library makes can fail: the
 * caller gets a clean error and the store stays consistent.
 *
 * EVS_WRAP: malloc calloc realloc strdup
 *
 * The test is linked with -Wl,--wrap for the allocation functions the
 * library calls (src/ uses no others), so every call from the statically
 * linked libevstore objects reaches the hook below.  LMDB, jansson and
 * libc's internal allocations are shared-library calls and keep the real
 * allocator: their failures are not covered.  Nor is the Lua sandbox (no
 * Lua projection in the workload): Lua raises an allocation failure as an
 * error, and src/bus/proj_lua.c makes many API calls outside a protected
 * call, where Lua can only abort (docs/testing.md).
 *
 * For N = 1, 2, 3, ... the hook fails the N-th allocation made while a
 * workload runs (once; later ones succeed), on a fresh store each time, in
 * one of two modes: "once" (only the N-th fails) and "from" (the N-th and
 * every one after it fail, as when memory is gone for good; run for every
 * STRIDE-th N).  The workload: create and open a store (64 KiB segments,
 * so appends roll segments), append to three streams (1..40 events per
 * append, one append too big for a segment), read a stream and $all (both
 * directions, filtered), open the bus and a subscription and poll it, set
 * its checkpoint, run a C projection and a consumer group (one delivery,
 * acked), close everything; then open the store again and check it, and
 * once more without its index (rebuilt from the log), closing each time.
 * Each step must succeed or fail with
 * EVS_ENOMEM (or, after an earlier failure made the store refuse writes,
 * EVS_EFAILED; a close reports EVS_EIO or EVS_EFAILED then) and a message.
 * Then, with the real allocator: the store opens, evs_store_check passes
 * (log, index and consumers), every acknowledged append is there with its
 * positions and data, every append present is whole and was attempted,
 * and an append takes the next position.  N grows until the workload runs
 * to the end without the hook firing.
 *
 * EVS_ALLOC_STRIDE (default 7) sets the stride of the "from" mode;
 * EVS_ALLOC_VERBOSE=1 prints every failed step with its message.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "evstore_bus.h"
#include "testutil.h"

/* ------------------------------------------------------------ the hook */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static _Atomic int armed;             /* count (and fail) allocations now */
static _Atomic long counted;          /* allocations since armed */
static long fail_at;                  /* the first one to fail */
static int fail_from;                 /* 1: every one from fail_at fails */
static _Atomic long failed;           /* how many the hook failed */

static int fail_now(void) {
    if (!atomic_load(&armed)) return 0;
    long k = atomic_fetch_add(&counted, 1) + 1;
    if (k == fail_at || (fail_from && k > fail_at)) {
        atomic_fetch_add(&failed, 1);
        return 1;
    }
    return 0;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }
/* realloc(p, 0) frees; a failed growth leaves p as it was, as realloc does */
void *__wrap_realloc(void *p, size_t n) { return n && fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }

/* ------------------------------------------------------------ the workload */

#define MAX_APPENDS 16
#define MAX_EV 40

typedef struct attempt {
    const char *stream;
    size_t n;
    int rc;                       /* evs_append's status */
    evs_append_result res;
    evs_uuid ids[MAX_EV];
    char data[MAX_EV][64];
    size_t big;                   /* the big append: bytes of padding */
} attempt;

static attempt att[MAX_APPENDS];
static size_t natt;
static char bigdata[40000];

/* Handler of the subscription: events must come in order. */
typedef struct seen {
    uint64_t last;
    int bad;
    size_t n;
} seen;

static int on_event(void *ctx, const evs_event *ev, char *err, size_t cap) {
    seen *s = ctx;
    if (ev->global_position <= s->last) s->bad = 1;
    s->last = ev->global_position;
    s->n++;
    (void)err, (void)cap;
    return 0;
}

/* A step's status: fine, or a failure the hook explains.  Returns 1 when it failed. */
static int verbose;
static int step(const char *what, int rc, long n, int allow_failed) {
    if (rc == EVS_OK || rc == EVS_DONE) return 0;
    if (verbose) printf("N=%ld %s: %s: %s\n", n, what, evs_errname(rc), evs_errmsg());
    int ok = rc == EVS_ENOMEM || (allow_failed && (rc == EVS_EFAILED || rc == EVS_ECLOSED));
    if (!ok || !evs_errmsg()[0] || atomic_load(&failed) == 0) {
        fprintf(stderr, "N=%ld %s: %s (%s) after %ld failed allocation(s)\n", n, what, evs_errname(rc), evs_errmsg(),
                atomic_load(&failed));
        CHECK(ok && evs_errmsg()[0] && atomic_load(&failed) > 0);
    }
    return 1;
}

static const char *const streams[] = {"order-1", "cart-2", "user-3"};

static void plan(void) {
    static const size_t sizes[MAX_APPENDS] = {1, 3, 40, 2, 1, 7, 1, 12, 5, 1, 2, 30, 1, 1, 4, 1};
    natt = MAX_APPENDS;
    for (size_t a = 0; a < natt; a++) {
        att[a].stream = streams[a % 3];
        att[a].n = sizes[a];
        att[a].big = a == 9 ? 36000 : 0; /* bigger than what is left of a 64 KiB segment */
        for (size_t i = 0; i < att[a].n; i++) {
            memset(&att[a].ids[i], 0, sizeof att[a].ids[i]);
            att[a].ids[i].b[0] = 0xA1;
            att[a].ids[i].b[6] = 0x70;
            att[a].ids[i].b[8] = 0x80;
            att[a].ids[i].b[14] = (uint8_t)a;
            att[a].ids[i].b[15] = (uint8_t)i;
            snprintf(att[a].data[i], sizeof att[a].data[i], "{\"a\":%zu,\"i\":%zu}", a, i);
        }
    }
    memcpy(bigdata, "{\"pad\":\"", 8);
    memset(bigdata + 8, 'x', 36000);
    memcpy(bigdata + 8 + 36000, "\"}", 3);
}

static const char *data_of(const attempt *a, size_t i, size_t *len) {
    if (a->big && i == 0) {
        *len = 8 + a->big + 2;
        return bigdata;
    }
    *len = strlen(a->data[i]);
    return a->data[i];
}

/* The C projection counts events; its state is the callback's, made with the real allocator. */
static int count_apply(void *ctx, const evs_event *ev, const char *state, size_t state_len, char **new_state,
                       size_t *new_len, char *err, size_t errcap) {
    (void)ctx, (void)ev, (void)err, (void)errcap;
    long k = state_len > 5 ? atol(state + 5) : 0; /* {"n":K} */
    char *p = __real_malloc(32);
    if (!p) return 1;
    *new_len = (size_t)snprintf(p, 32, "{\"n\":%ld}", k + 1);
    *new_state = p;
    return 0;
}

/* The workload with the hook armed.  Returns the number of steps that failed. */
static int workload(const char *dir, long n) {
    int fails = 0;
    evs_store *s = NULL;
    evs_bus *b = NULL;
    evs_subscription *sub = NULL;
    evs_projection *proj = NULL;
    evs_group *g = NULL;
    evs_group_member *m = NULL;
    for (size_t a = 0; a < natt; a++) att[a].rc = 1; /* not attempted */
    atomic_store(&armed, 1);
    int rc = evs_store_create(&s);
    if (step("create", rc, n, 0)) {
        atomic_store(&armed, 0);
        return 1;
    }
    evs_store_set_segment_size(s, 64 * 1024);
    evs_store_set_index_map_size(s, 8u << 20);
    rc = evs_store_open(s, dir, EVS_OPEN_CREATE);
    if (step("open", rc, n, 0)) {
        fails++;
        goto close;
    }
    evs_event_in in[MAX_EV];
    for (size_t a = 0; a < natt; a++) {
        memset(in, 0, sizeof in);
        for (size_t i = 0; i < att[a].n; i++) {
            in[i].event_type = i % 2 ? "Odd" : "Even";
            in[i].data = data_of(&att[a], i, &in[i].data_len);
            in[i].event_id = &att[a].ids[i];
        }
        att[a].rc = evs_append(s, att[a].stream, EVS_EXPECT_ANY, in, att[a].n, &att[a].res, NULL);
        fails += step("append", att[a].rc, n, 1);
    }
    /* reads: a stream both ways, $all filtered */
    for (int dirn = 0; dirn < 2; dirn++) {
        evs_reader *r = NULL;
        rc = evs_read_stream(s, "cart-2", dirn == EVS_FORWARD ? 1 : EVS_POSITION_END, dirn, 0, &r);
        if (rc == EVS_ENOTFOUND) continue; /* no append to it was taken */
        if (step("read_stream", rc, n, 0)) {
            fails++;
            continue;
        }
        const evs_event *ev;
        while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {}
        fails += step("reader_next", rc, n, 0);
        evs_reader_close(r);
    }
    const char *types[] = {"Odd"};
    evs_filter f = {.event_types = types, .n_event_types = 1};
    evs_reader *r = NULL;
    rc = evs_read_all(s, 1, EVS_FORWARD, &f, 0, &r);
    if (!step("read_all", rc, n, 0)) {
        const evs_event *ev;
        while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {}
        fails += step("reader_next($all)", rc, n, 0);
        evs_reader_close(r);
    } else {
        fails++;
    }
    /* the bus: a subscription over $all, polled, checkpointed */
    rc = evs_bus_open(s, &b);
    if (step("bus_open", rc, n, 1)) {
        fails++;
        b = NULL;
        goto close;
    }
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "alloc-sub";
    c.checkpoint_every = 5;
    seen sn = {0, 0, 0};
    rc = evs_sub_open(b, &c, on_event, &sn, &sub);
    if (step("sub_open", rc, n, 1)) {
        fails++;
        sub = NULL;
        goto close;
    }
    size_t delivered;
    fails += step("sub_poll", evs_sub_poll(sub, 0, 0, &delivered), n, 1);
    CHECK(!sn.bad);
    fails += step("sub_checkpoint", evs_sub_checkpoint(sub), n, 1);
    /* a C projection and a Lua one, polled and committed */
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.name = "alloc-proj";
    pc.apply = count_apply;
    rc = evs_proj_open(b, &pc, &proj);
    if (!step("proj_open", rc, n, 1)) {
        fails += step("proj_poll", evs_proj_poll(proj, 0, 0, NULL), n, 1);
        fails += step("proj_checkpoint", evs_proj_checkpoint(proj), n, 1);
    } else {
        fails++;
        proj = NULL;
    }
    /* a consumer group: one delivery, acked */
    evs_group_config gc;
    evs_group_config_init(&gc);
    gc.name = "alloc-group";
    rc = evs_group_create(b, &gc);
    if (rc == EVS_OK || !step("group_create", rc, n, 1)) {
        rc = evs_group_open(b, "alloc-group", NULL, &g);
        if (!step("group_open", rc, n, 1)) {
            rc = evs_group_join(g, "c1", &m);
            if (!step("group_join", rc, n, 1)) {
                evs_delivery *d = NULL;
                rc = evs_group_next(m, 0, &d);
                if (rc != EVS_ETIMEDOUT && !step("group_next", rc, n, 1)) {
                    fails += step("group_ack", evs_group_ack(m, d->id), n, 1);
                    evs_delivery_free(d);
                } else if (rc != EVS_ETIMEDOUT) {
                    fails++;
                }
                evs_group_leave(m);
            } else {
                fails++;
            }
            evs_group_close(g);
        } else {
            fails++;
        }
    } else {
        fails++;
    }
close:
    if (proj) evs_proj_close(proj);
    if (sub) evs_sub_close(sub);
    if (b) evs_bus_close(b);
    rc = evs_store_close(s);
    /* the final sync cannot fail here; an earlier failure is reported again */
    if (rc != EVS_OK) {
        CHECK(rc == EVS_EFAILED || rc == EVS_EIO || rc == EVS_ENOMEM);
        fails++;
    }
    /* a second session: open what is there, check it; then without the index (rebuilt from the log) */
    for (int rebuild = 0; rebuild < 2; rebuild++) {
        if (rebuild) {
            char ix[4096];
            snprintf(ix, sizeof ix, "%s/index", dir);
            atomic_store(&armed, 0);
            tu_rmrf(ix);
            atomic_store(&armed, 1);
        }
        s = NULL;
        if (step("create again", evs_store_create(&s), n, 0)) {
            fails++;
            continue;
        }
        evs_store_set_segment_size(s, 64 * 1024);
        evs_store_set_index_map_size(s, 8u << 20);
        rc = evs_store_open(s, dir, EVS_OPEN_CREATE); /* the first open may have failed before making it */
        if (!step(rebuild ? "open (rebuild)" : "open again", rc, n, 0)) {
            evs_check_report cr;
            rc = evs_store_check(s, &cr);
            if (rc == EVS_ECORRUPT) fprintf(stderr, "N=%ld: check in session 2: %s\n", n, cr.first_error);
            fails += step("check", rc, n, 0);
        } else {
            fails++;
        }
        rc = evs_store_close(s);
        if (rc != EVS_OK) CHECK(rc == EVS_EIO || rc == EVS_ENOMEM);
    }
    atomic_store(&armed, 0);
    return fails;
}

/* ------------------------------------------------------------ the check */

static int find_attempt(const evs_event *ev, size_t *ai, size_t *ii) {
    for (size_t a = 0; a < natt; a++)
        for (size_t i = 0; i < att[a].n; i++)
            if (memcmp(&att[a].ids[i], &ev->event_id, 16) == 0) {
                *ai = a;
                *ii = i;
                return 1;
            }
    return 0;
}

static void verify(const char *dir, long n) {
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    evs_store_set_segment_size(s, 64 * 1024);
    evs_store_set_index_map_size(s, 8u << 20);
    int rc = evs_store_open(s, dir, EVS_OPEN_CREATE);
    if (rc != EVS_OK) {
        fprintf(stderr, "N=%ld: reopen with the real allocator: %s\n", n, evs_errmsg());
        CHECK_RC(rc, EVS_OK);
        evs_store_close(s);
        return;
    }
    evs_check_report cr;
    rc = evs_store_check(s, &cr);
    if (rc != EVS_OK) fprintf(stderr, "N=%ld: check: %s\n", n, cr.first_error);
    CHECK_RC(rc, EVS_OK);
    /* every event present belongs to an attempted append, whole, at the positions acknowledged */
    size_t present[MAX_APPENDS] = {0};
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    const evs_event *ev;
    uint64_t expect = 1;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        size_t a, i;
        CHECK_INT(ev->global_position, expect);
        expect = ev->global_position + 1;
        if (!find_attempt(ev, &a, &i)) {
            fprintf(stderr, "N=%ld: position %llu holds an event never appended\n", n,
                    (unsigned long long)ev->global_position);
            CHECK(0);
            continue;
        }
        size_t dl;
        const char *d = data_of(&att[a], i, &dl);
        CHECK(ev->data_len == dl && memcmp(ev->data, d, dl) == 0);
        CHECK(ev->stream_len == strlen(att[a].stream) && memcmp(ev->stream, att[a].stream, ev->stream_len) == 0);
        if (att[a].rc == EVS_OK) {
            CHECK_INT(ev->global_position, att[a].res.first_global_position + i);
            CHECK_INT(ev->stream_position, att[a].res.first_stream_position + i);
        }
        present[a]++;
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    for (size_t a = 0; a < natt; a++) {
        if (att[a].rc == EVS_OK && present[a] != att[a].n)
            fprintf(stderr, "N=%ld: acknowledged append %zu has %zu of its %zu events\n", n, a, present[a], att[a].n);
        if (att[a].rc == EVS_OK) CHECK_INT(present[a], att[a].n);
        else CHECK(present[a] == 0 || present[a] == att[a].n); /* never partly */
    }
    /* appends go on at the next position */
    uint64_t head = evs_head(s);
    evs_event_in e = tu_event("After", "{}");
    evs_append_result res;
    CHECK_RC(evs_append(s, "after-1", EVS_EXPECT_ANY, &e, 1, &res, NULL), EVS_OK);
    CHECK_INT(res.first_global_position, head + 1);
    CHECK_RC(evs_store_close(s), EVS_OK);
}

static long run_mode(int from, long stride) {
    long n = 0, rounds = 0;
    for (;;) {
        n += from ? stride : 1;
        char *dir = tu_tempdir("alloc");
        fail_at = n;
        fail_from = from;
        atomic_store(&counted, 0);
        atomic_store(&failed, 0);
        int fails = workload(dir, n);
        long fired = atomic_load(&failed);
        long total = atomic_load(&counted);
        if (fired == 0) CHECK_INT(fails, 0);
        verify(dir, n);
        tu_rmrf(dir);
        free(dir);
        rounds++;
        if (fired == 0) {
            printf("%s mode: the workload makes %ld allocations; %ld runs, every one clean\n", from ? "from" : "once",
                   total, rounds);
            return total;
        }
        if (tu_failures > 20) return -1; /* enough to go on */
    }
}

int main(void) {
    const char *st = getenv("EVS_ALLOC_STRIDE");
    long stride = st && atol(st) > 0 ? atol(st) : 7;
    verbose = getenv("EVS_ALLOC_VERBOSE") != NULL;
    plan();
    long once = run_mode(0, 1);
    long from = run_mode(1, stride);
    CHECK(once > 100 && from > 100);
    return TEST_REPORT();
}
