/*
 * test_group_commit_concurrency.c — the group commit's hand-offs under a
 * jittered load (src/store/store.c: requests acknowledged through their
 * futex state word, the lead handed to the next front of the queue, the
 * sync-mode leader that gathers appenders on their way, the batch-mode
 * syncer, evs_wait_for sleeping on head_cv); also run under TSan.
 *
 * A lost wake-up shows as a thread that never returns, so every wait here
 * is unbounded and a watchdog names the hang (after two minutes without any
 * progress, far beyond any healthy pause) instead of letting ctest's
 * timeout kill the test without a word.  In each durability mode:
 *   1. many threads make short appends with random pauses between them
 *      (none, a yield, or up to 200 us), so appenders arrive while a batch
 *      is gathered, committed and handed over; some appends carry invalid
 *      JSON and fail before they queue (an appender leaving while a leader
 *      waits for it).  Every valid append returns exactly once with the
 *      positions it was given: each thread's own stream ends at the events
 *      it appended (exact expected versions, so nothing was applied twice
 *      or lost), its global positions increase in the order it was
 *      acknowledged, and the head equals the events acknowledged;
 *   2. evs_wait_for callers waiting forever for the next position all
 *      return once the head reaches what they wait for (a head broadcast
 *      that was skipped would leave one asleep);
 *   3. twin threads send the same appends with the same caller-chosen
 *      event ids, racing through the same and neighbouring batches: each
 *      append is stored once, one twin's acknowledgement is the write and
 *      the other's is idempotent with the same positions; where an append
 *      mixes a caller-chosen id with a store-generated one, exactly one twin
 *      succeeds and the other gets EVS_EDUPLICATE (the generated ids
 *      differ, so it is not a retry);
 *   4. afterwards $all holds exactly head events, gapless, evs_store_check
 *      finds nothing wrong, and a reopen has the same head.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "testutil.h"

#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) { return "called_from_lib:liblmdb.so\n"; }
#endif

#define MAXOWN 48
#define MAXPAIRS 8
#define NWAITERS 3
#define MAXK 400

typedef struct run {
    evs_store *s;
    int k;                     /* appends per thread */
    uint64_t expected_events;  /* what the run stores when every append does what it should */
    atomic_long progress;      /* bumped by every return from the store */
    atomic_int appenders_left;
    evs_uuid twin_ids[MAXPAIRS][MAXK][2];
} run;

typedef struct own_arg {
    run *rn;
    int t;
    uint64_t seed, events, bad_json;
    problems p;
} own_arg;

typedef struct twin_res {
    int rc;
    evs_append_result res;
} twin_res;

typedef struct twin_arg {
    run *rn;
    int pair, twin;
    uint64_t seed;
    twin_res *out;             /* [k] */
    problems p;
} twin_arg;

typedef struct waiter_arg {
    run *rn;
    uint64_t returns;
    problems p;
} waiter_arg;

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* None, a yield, or a sleep of up to 200 us: arrivals land in every phase of a batch. */
static void jitter(uint64_t *seed) {
    uint64_t r = rnd(seed) % 10;
    if (r < 4) return;
    if (r < 6) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, (long)(rnd(seed) % 200000)};
    nanosleep(&ts, NULL);
}

/* Events in own-thread append i: 1 or 3, so batches mix sizes. */
static uint32_t own_count(int i) { return i % 5 == 4 ? 3 : 1; }

static void *own_main(void *arg) {
    own_arg *a = arg;
    run *rn = a->rn;
    char stream[32];
    snprintf(stream, sizeof stream, "own-%d", a->t);
    uint64_t version = 0, last_gpos = 0;
    for (int i = 0; i < rn->k; i++) {
        jitter(&a->seed);
        char data[3][64];
        evs_event_in ev[3];
        uint32_t n = own_count(i);
        for (uint32_t j = 0; j < n; j++) {
            snprintf(data[j], sizeof data[j], "{\"t\":%d,\"i\":%d,\"j\":%u}", a->t, i, j);
            ev[j] = tu_event("Own", data[j]);
        }
        evs_append_result res;
        if (rnd(&a->seed) % 20 == 0) {
            /* invalid: refused before it queues, while a leader may be counting on it */
            evs_event_in bad = tu_event("Own", "{\"unterminated\":");
            int rc = evs_append(rn->s, stream, (int64_t)version, &bad, 1, &res, NULL);
            atomic_fetch_add(&rn->progress, 1);
            if (rc != EVS_EJSON) problem(&a->p, "own-%d: invalid append: %s, wanted EJSON", a->t, evs_errname(rc));
            a->bad_json++;
        }
        int rc = evs_append(rn->s, stream, (int64_t)version, ev, n, &res, NULL);
        atomic_fetch_add(&rn->progress, 1);
        if (rc != EVS_OK) {
            problem(&a->p, "own-%d: append %d: %s: %s", a->t, i, evs_errname(rc), evs_errmsg());
            continue;
        }
        if (res.first_stream_position != version + 1 || res.last_stream_position != version + n || res.idempotent)
            problem(&a->p, "own-%d: append %d got stream positions %llu..%llu (idempotent %d) after version %llu",
                    a->t, i, (unsigned long long)res.first_stream_position,
                    (unsigned long long)res.last_stream_position, res.idempotent, (unsigned long long)version);
        if (res.first_global_position <= last_gpos ||
            res.last_global_position != res.first_global_position + n - 1)
            problem(&a->p, "own-%d: append %d got global positions %llu..%llu after %llu", a->t, i,
                    (unsigned long long)res.first_global_position, (unsigned long long)res.last_global_position,
                    (unsigned long long)last_gpos);
        version = res.last_stream_position;
        last_gpos = res.last_global_position;
        a->events += n;
    }
    atomic_fetch_sub(&rn->appenders_left, 1);
    return NULL;
}

static void *twin_main(void *arg) {
    twin_arg *a = arg;
    run *rn = a->rn;
    char stream[32];
    snprintf(stream, sizeof stream, "twin-%d", a->pair);
    for (int i = 0; i < rn->k; i++) {
        jitter(&a->seed);
        char d0[64], d1[64];
        snprintf(d0, sizeof d0, "{\"pair\":%d,\"i\":%d,\"e\":0}", a->pair, i);
        snprintf(d1, sizeof d1, "{\"pair\":%d,\"i\":%d,\"e\":1}", a->pair, i);
        evs_event_in ev[2] = {tu_event("Twin", d0), tu_event("Twin", d1)};
        ev[0].event_id = &rn->twin_ids[a->pair][i][0];
        /* every fourth append: the second id is left to the store, so it differs between the twins */
        if (i % 4 != 3) ev[1].event_id = &rn->twin_ids[a->pair][i][1];
        a->out[i].rc = evs_append(rn->s, stream, EVS_EXPECT_ANY, ev, 2, &a->out[i].res, NULL);
        atomic_fetch_add(&rn->progress, 1);
    }
    atomic_fetch_sub(&rn->appenders_left, 1);
    return NULL;
}

/* Wait forever for the next position, again and again, up to what the run stores. */
static void *waiter_main(void *arg) {
    waiter_arg *a = arg;
    run *rn = a->rn;
    uint64_t seen = 0;
    while (seen < rn->expected_events) {
        uint64_t h = 0;
        int rc = evs_wait_for(rn->s, seen + 1, -1, &h);
        atomic_fetch_add(&rn->progress, 1);
        a->returns++;
        if (rc != EVS_OK || h < seen + 1) {
            problem(&a->p, "wait_for(%llu): %s, head %llu", (unsigned long long)(seen + 1), evs_errname(rc),
                    (unsigned long long)h);
            return NULL;
        }
        seen = h;
    }
    return NULL;
}

typedef struct watchdog_arg {
    run *rn;
    atomic_int stop;
    const char *label;
} watchdog_arg;

static void *watchdog_main(void *arg) {
    watchdog_arg *w = arg;
    long last = -1;
    int still = 0;
    while (!atomic_load(&w->stop)) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        long now = atomic_load(&w->rn->progress);
        if (now != last) {
            last = now;
            still = 0;
        } else if (++still == 1200) {
            fprintf(stderr, "%s: no append or wait returned for 120 s (%ld returns so far, %d appenders still "
                            "running, head %llu): a lost wake-up\n",
                    w->label, now, atomic_load(&w->rn->appenders_left), (unsigned long long)evs_head(w->rn->s));
            abort();
        }
    }
    return NULL;
}

static void run_case(const char *label, evs_durability d, unsigned batch_ms, int nown, int npairs, int k,
                     uint64_t seed) {
    char *dir = tu_tempdir("gcommit");
    evs_store *s = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_set_durability(s, d, batch_ms), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, EVS_OPEN_CREATE), EVS_OK);
    run *rn = calloc(1, sizeof *rn);
    rn->s = s;
    rn->k = k;
    for (int i = 0; i < k; i++) rn->expected_events += (uint64_t)nown * own_count(i);
    rn->expected_events += (uint64_t)npairs * (uint64_t)k * 2;
    for (int p = 0; p < npairs; p++)
        for (int i = 0; i < k; i++) {
            evs_uuid_v7(&rn->twin_ids[p][i][0]);
            evs_uuid_v7(&rn->twin_ids[p][i][1]);
        }
    atomic_store(&rn->appenders_left, nown + 2 * npairs);

    watchdog_arg wd = {.rn = rn, .label = label};
    pthread_t wdt, wt[NWAITERS], ot[MAXOWN], tt[2 * MAXPAIRS];
    waiter_arg wa[NWAITERS];
    own_arg oa[MAXOWN];
    twin_arg ta[2 * MAXPAIRS];
    memset(wa, 0, sizeof wa);
    memset(oa, 0, sizeof oa);
    memset(ta, 0, sizeof ta);
    CHECK_INT(pthread_create(&wdt, NULL, watchdog_main, &wd), 0);
    for (int i = 0; i < NWAITERS; i++) {
        wa[i].rn = rn;
        CHECK_INT(pthread_create(&wt[i], NULL, waiter_main, &wa[i]), 0);
    }
    for (int t = 0; t < nown; t++) {
        oa[t].rn = rn;
        oa[t].t = t;
        oa[t].seed = seed * 7919 + (uint64_t)t + 1;
        CHECK_INT(pthread_create(&ot[t], NULL, own_main, &oa[t]), 0);
    }
    for (int t = 0; t < 2 * npairs; t++) {
        ta[t].rn = rn;
        ta[t].pair = t / 2;
        ta[t].twin = t % 2;
        ta[t].seed = seed * 104729 + (uint64_t)t + 1;
        ta[t].out = calloc((size_t)k, sizeof *ta[t].out);
        CHECK_INT(pthread_create(&tt[t], NULL, twin_main, &ta[t]), 0);
    }
    for (int t = 0; t < nown; t++) pthread_join(ot[t], NULL);
    for (int t = 0; t < 2 * npairs; t++) pthread_join(tt[t], NULL);

    /* should an append have gone wrong (reported below), the waiters still get their positions */
    uint64_t head = evs_head(s);
    for (uint64_t h = head; h < rn->expected_events; h++) {
        evs_event_in e = tu_event("Filler", "{}");
        evs_append_result res;
        if (evs_append(s, "filler-1", EVS_EXPECT_ANY, &e, 1, &res, NULL)) break;
    }
    for (int i = 0; i < NWAITERS; i++) pthread_join(wt[i], NULL);
    atomic_store(&wd.stop, 1);
    pthread_join(wdt, NULL);

    /* 1. own streams */
    uint64_t own_events = 0, bad = 0;
    for (int t = 0; t < nown; t++) {
        if (oa[t].p.count) fprintf(stderr, "%s: own-%d: %d problem(s), first: %s\n", label, t, oa[t].p.count, oa[t].p.first);
        CHECK_INT(oa[t].p.count, 0);
        own_events += oa[t].events;
        bad += oa[t].bad_json;
        char name[32];
        snprintf(name, sizeof name, "own-%d", t);
        evs_stream_info info;
        CHECK_RC(evs_stream_get_info(s, name, &info), EVS_OK);
        CHECK_INT(info.version, oa[t].events);
    }
    /* 3. twins */
    uint64_t twin_events = 0, idem = 0, dup = 0;
    for (int p = 0; p < npairs; p++) {
        twin_res *a = ta[2 * p].out, *b = ta[2 * p + 1].out;
        size_t wrong = 0;
        for (int i = 0; i < k; i++) {
            int ok;
            if (i % 4 != 3) {
                ok = a[i].rc == EVS_OK && b[i].rc == EVS_OK && a[i].res.idempotent + b[i].res.idempotent == 1 &&
                     a[i].res.first_global_position == b[i].res.first_global_position &&
                     a[i].res.first_stream_position == b[i].res.first_stream_position &&
                     a[i].res.last_global_position == a[i].res.first_global_position + 1;
                idem++;
            } else {
                ok = (a[i].rc == EVS_OK && b[i].rc == EVS_EDUPLICATE && !a[i].res.idempotent) ||
                     (b[i].rc == EVS_OK && a[i].rc == EVS_EDUPLICATE && !b[i].res.idempotent);
                dup++;
            }
            if (!ok && wrong++ == 0)
                fprintf(stderr, "%s: twin-%d append %d: %s (gpos %llu, idempotent %d) and %s (gpos %llu, idempotent %d)\n",
                        label, p, i, evs_errname(a[i].rc), (unsigned long long)a[i].res.first_global_position,
                        a[i].res.idempotent, evs_errname(b[i].rc), (unsigned long long)b[i].res.first_global_position,
                        b[i].res.idempotent);
        }
        CHECK_INT(wrong, 0);
        twin_events += 2 * (uint64_t)k;
        char name[32];
        snprintf(name, sizeof name, "twin-%d", p);
        evs_stream_info info;
        CHECK_RC(evs_stream_get_info(s, name, &info), EVS_OK);
        CHECK_INT(info.version, 2 * (uint64_t)k);
        free(ta[2 * p].out);
        free(ta[2 * p + 1].out);
    }
    /* 2. waiters */
    for (int i = 0; i < NWAITERS; i++) {
        if (wa[i].p.count) fprintf(stderr, "%s: waiter %d: %s\n", label, i, wa[i].p.first);
        CHECK_INT(wa[i].p.count, 0);
        CHECK(wa[i].returns > 0);
    }
    /* 4. the store holds exactly that, gapless */
    head = evs_head(s);
    CHECK_INT(head, own_events + twin_events);
    CHECK_INT(head, rn->expected_events);
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    const evs_event *ev;
    uint64_t n = 0, gaps = 0;
    int rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK)
        if (ev->global_position != ++n) gaps++;
    CHECK_RC(rc, EVS_DONE);
    CHECK_INT(n, head);
    CHECK_INT(gaps, 0);
    evs_reader_close(r);
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, head);
    evs_store_stats st;
    CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
    printf("%s: %d + %d threads, %llu events, %llu invalid appends refused, %llu twin retries, %llu mixed-id twins, "
           "%llu batches for %llu appends, %llu syncs\n",
           label, nown, 2 * npairs, (unsigned long long)head, (unsigned long long)bad, (unsigned long long)idem,
           (unsigned long long)dup, (unsigned long long)st.batches, (unsigned long long)st.appends,
           (unsigned long long)st.syncs);
    CHECK_RC(evs_store_close(s), EVS_OK);
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, dir, 0), EVS_OK);
    CHECK_INT(evs_head(s), head);
    CHECK_STR(evs_store_recovery_report(s), "");
    CHECK_RC(evs_store_close(s), EVS_OK);
    free(rn);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    if (!seed) seed = 1;
    int sanitized = getenv("EVS_SANITIZED") != NULL;
    printf("group commit: seed %llu (set EVS_SEED to repeat)\n", (unsigned long long)seed);
    /* sync: fdatasync per batch, and the leader gathers appenders on their way */
    run_case("sync", EVS_DURABILITY_SYNC, 0, 24, 4, sanitized ? 25 : 60, seed);
    /* batch: the syncer's requests queue among the appends */
    run_case("batch", EVS_DURABILITY_BATCH, 1, 40, 4, sanitized ? 60 : 200, seed + 1);
    run_case("none", EVS_DURABILITY_NONE, 0, MAXOWN, MAXPAIRS, sanitized ? 80 : MAXK, seed + 2);
    return TEST_REPORT();
}
