/*
 * test_append_async_concurrency.c — appends that do not wait
 * (evs__store_append_async, what the server answers HTTP appends with)
 * in the same group commit as evs_append's, durability sync:
 *
 *   mixed      4 threads calling evs_append and 4 submitting asynchronous
 *              appends, up to 8 outstanding each, exact expected versions
 *              (a submitter's appends to its stream are queued in order,
 *              so version i+1 follows i): every callback is called
 *              exactly once, with the positions its event holds in the
 *              log; the global order has no gap; each async event is read
 *              back by its id at the position its callback named.
 *   outcomes   a conflict (the actual version in the result), the
 *              idempotent retry of a stored id, and refusals at once (no
 *              events, a bad expected version: an error returned, the
 *              callback never called).
 *   close      appends submitted right before evs_store_close: close waits
 *              until each has its answer, and after a reopen exactly the
 *              acknowledged ones are there; and close called while the
 *              callbacks of several threads' appends still run (led by a
 *              submitter or by the committer): it returns after the last.
 *
 * Runs under TSan ("concurrency" in the name).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "store/store_access.h"
#include "testutil.h"

#define SYNC_THREADS 4
#define ASYNC_THREADS 4
#define PER_THREAD 300
#define OUTSTANDING 8

typedef struct answer {
    _Atomic int calls;
    int rc;
    evs_append_result res;
    evs_uuid id;
    char msg[256];
} answer;

typedef struct submitter {
    evs_store *s;
    int idx;
    answer ans[PER_THREAD];
    _Atomic int outstanding;
    problems p;
} submitter;

static void on_done(void *arg, int rc, const evs_append_result *res, const evs_uuid *ids, size_t n, const char *msg) {
    answer *a = arg;
    a->rc = rc;
    if (res) a->res = *res;
    if (n == 1 && ids) a->id = ids[0];
    snprintf(a->msg, sizeof a->msg, "%s", msg ? msg : "(null)");
    atomic_fetch_add_explicit(&a->calls, 1, memory_order_release);
}

/* For the mixed case: on_done, then one fewer outstanding for the submitter (arg: the answer; ans[0] - idx). */
typedef struct slot {
    answer *a;
    submitter *sub;
} slot;

static void on_done_counted(void *arg, int rc, const evs_append_result *res, const evs_uuid *ids, size_t n,
                            const char *msg) {
    slot *sl = arg;
    submitter *sub = sl->sub;
    on_done(sl->a, rc, res, ids, n, msg);
    free(sl);
    atomic_fetch_sub_explicit(&sub->outstanding, 1, memory_order_release);
}

static void *async_main(void *arg) {
    submitter *t = arg;
    char stream[32], data[48];
    snprintf(stream, sizeof stream, "async-%d", t->idx);
    for (int i = 0; i < PER_THREAD; i++) {
        while (atomic_load_explicit(&t->outstanding, memory_order_acquire) >= OUTSTANDING) sched_yield();
        snprintf(data, sizeof data, "{\"t\":%d,\"i\":%d}", t->idx, i);
        evs_event_in ev = tu_event("Queued", data);
        slot *sl = malloc(sizeof *sl);
        sl->a = &t->ans[i];
        sl->sub = t;
        atomic_fetch_add(&t->outstanding, 1);
        int rc = evs__store_append_async(t->s, stream, i, &ev, 1, on_done_counted, sl);
        if (rc) {
            atomic_fetch_sub(&t->outstanding, 1);
            free(sl);
            problem(&t->p, "async %d/%d refused: %s %s", t->idx, i, evs_errname(rc), evs_errmsg());
            return NULL;
        }
    }
    while (atomic_load_explicit(&t->outstanding, memory_order_acquire) > 0) sched_yield();
    return NULL;
}

static void *sync_main(void *arg) {
    submitter *t = arg;
    char stream[32], data[48];
    snprintf(stream, sizeof stream, "sync-%d", t->idx);
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(data, sizeof data, "{\"t\":%d,\"i\":%d}", t->idx, i);
        evs_event_in ev = tu_event("Waited", data);
        evs_append_result res;
        int rc = evs_append(t->s, stream, i, &ev, 1, &res, &t->ans[i].id);
        if (rc) {
            problem(&t->p, "sync %d/%d: %s %s", t->idx, i, evs_errname(rc), evs_errmsg());
            return NULL;
        }
        t->ans[i].res = res;
        atomic_store(&t->ans[i].calls, 1);
    }
    return NULL;
}

static void test_mixed(const char *dir) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
    static submitter subs[SYNC_THREADS + ASYNC_THREADS];
    pthread_t th[SYNC_THREADS + ASYNC_THREADS];
    memset(subs, 0, sizeof subs);
    for (int i = 0; i < SYNC_THREADS + ASYNC_THREADS; i++) {
        subs[i].s = s;
        subs[i].idx = i;
        pthread_create(&th[i], NULL, i < SYNC_THREADS ? sync_main : async_main, &subs[i]);
    }
    for (int i = 0; i < SYNC_THREADS + ASYNC_THREADS; i++) pthread_join(th[i], NULL);
    uint64_t total = 0;
    for (int t = 0; t < SYNC_THREADS + ASYNC_THREADS; t++) {
        submitter *sub = &subs[t];
        if (sub->p.count) fprintf(stderr, "submitter %d: %s\n", t, sub->p.first);
        CHECK_INT(sub->p.count, 0);
        for (int i = 0; i < PER_THREAD; i++) {
            answer *a = &sub->ans[i];
            CHECK_INT(atomic_load(&a->calls), 1);
            CHECK_RC(a->rc, EVS_OK);
            CHECK_INT(a->res.last_stream_position, (uint64_t)i + 1);
            CHECK_INT(a->res.first_global_position, a->res.last_global_position);
            if (t >= SYNC_THREADS) {
                CHECK_STR(a->msg, "");
                /* the callback's id is stored at the callback's position */
                uint64_t g = 0;
                CHECK_RC(evs__store_event_position(s, &a->id, &g), EVS_OK);
                CHECK_INT(g, a->res.first_global_position);
            }
            total++;
        }
    }
    CHECK_INT(evs_head(s), total);
    /* the log: 1..head without a gap, each event where its append's answer says */
    evs_reader *r;
    const evs_event *ev;
    uint64_t want = 1;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    int rc;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        CHECK_INT(ev->global_position, want);
        want++;
        int t = atoi(ev->stream + (ev->stream[0] == 's' ? 5 : 6));
        CHECK(t >= 0 && t < SYNC_THREADS + ASYNC_THREADS);
        if (t < 0 || t >= SYNC_THREADS + ASYNC_THREADS) continue;
        answer *a = &subs[t].ans[ev->stream_position - 1];
        CHECK_INT(a->res.first_global_position, ev->global_position);
        CHECK(memcmp(&a->id, &ev->event_id, sizeof a->id) == 0);
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(r);
    CHECK_INT(want - 1, total);
    CHECK_RC(evs_store_close(s), EVS_OK);
}

static void wait_answer(answer *a) {
    while (atomic_load_explicit(&a->calls, memory_order_acquire) == 0) sched_yield();
}

static void test_outcomes(const char *dir) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
    evs_event_in ev = tu_event("E", "{\"k\":1}");
    evs_uuid id;
    evs_uuid_v7(&id);
    ev.event_id = &id;
    static answer a[4];
    memset(a, 0, sizeof a);
    CHECK_RC(evs__store_append_async(s, "o-1", EVS_EXPECT_NO_STREAM, &ev, 1, on_done, &a[0]), EVS_OK);
    wait_answer(&a[0]);
    CHECK_RC(a[0].rc, EVS_OK);
    CHECK_INT(a[0].res.idempotent, 0);
    CHECK(memcmp(&a[0].id, &id, sizeof id) == 0);
    /* the same id again: the idempotent answer with the original positions */
    CHECK_RC(evs__store_append_async(s, "o-1", EVS_EXPECT_ANY, &ev, 1, on_done, &a[1]), EVS_OK);
    wait_answer(&a[1]);
    CHECK_RC(a[1].rc, EVS_OK);
    CHECK_INT(a[1].res.idempotent, 1);
    CHECK_INT(a[1].res.first_global_position, a[0].res.first_global_position);
    /* a conflict names the actual version */
    evs_event_in ev2 = tu_event("E", "{\"k\":2}");
    CHECK_RC(evs__store_append_async(s, "o-1", 5, &ev2, 1, on_done, &a[2]), EVS_OK);
    wait_answer(&a[2]);
    CHECK_RC(a[2].rc, EVS_ECONFLICT);
    CHECK_INT(a[2].res.actual_version, 1);
    CHECK_CONTAINS(a[2].msg, "expected version 5");
    /* refused at once: nothing queued, no callback */
    CHECK_RC(evs__store_append_async(s, "o-1", EVS_EXPECT_ANY, &ev2, 0, on_done, &a[3]), EVS_EINVAL);
    CHECK_CONTAINS(evs_errmsg(), "at least one event");
    CHECK_RC(evs__store_append_async(s, "o-1", -7, &ev2, 1, on_done, &a[3]), EVS_EINVAL);
    CHECK_RC(evs__store_append_async(s, "o-1", EVS_EXPECT_ANY, &ev2, 1, NULL, NULL), EVS_EINVAL);
    CHECK_INT(atomic_load(&a[3].calls), 0);
    CHECK_INT(evs_head(s), 1);
    CHECK_RC(evs_store_close(s), EVS_OK);
    CHECK_INT(atomic_load(&a[3].calls), 0);
}

static void test_close(const char *dir) {
    enum { N = 64 };
    static answer a[N];
    memset(a, 0, sizeof a);
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
    char data[32];
    for (int i = 0; i < N; i++) {
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        evs_event_in ev = tu_event("Late", data);
        CHECK_RC(evs__store_append_async(s, "late", i, &ev, 1, on_done, &a[i]), EVS_OK);
    }
    CHECK_RC(evs_store_close(s), EVS_OK); /* waits for every answer */
    int ok = 0;
    for (int i = 0; i < N; i++) {
        CHECK_INT(atomic_load(&a[i].calls), 1);
        CHECK_RC(a[i].rc, EVS_OK);
        ok += a[i].rc == EVS_OK;
    }
    s = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
    evs_stream_info si;
    CHECK_RC(evs_stream_get_info(s, "late", &si), EVS_OK);
    CHECK_INT(si.version, (uint64_t)ok);
    CHECK_RC(evs_store_close(s), EVS_OK);
}

/*
 * Close while callbacks run: the callbacks hold until close has begun, then
 * take a while; close must return only after every one of them (the store
 * is gone after it).  Callbacks run on a submitting thread that led its
 * batch, or on the committer.  Close is called once every submitting thread
 * has either returned or is itself running callbacks (its own append is
 * queued by then), so no submit can reach a closed store.
 */
#define RACE_THREADS 6
static _Atomic int race_closing, race_called, race_round;
static _Atomic int race_returned[RACE_THREADS], race_inside[RACE_THREADS];
static pthread_t race_th[RACE_THREADS];
static _Thread_local int race_me = -1; /* a submitting thread's index */
static evs_store *race_store;

static void race_done(void *arg, int rc, const evs_append_result *res, const evs_uuid *ids, size_t n,
                      const char *msg) {
    (void)arg, (void)res, (void)ids, (void)n, (void)msg;
    if (race_me >= 0) atomic_store(&race_inside[race_me], 1);
    while (!atomic_load(&race_closing)) sched_yield();
    struct timespec ts = {0, 20 * 1000000L}; /* the window close must not step through */
    nanosleep(&ts, NULL);
    if (rc == EVS_OK) atomic_fetch_add(&race_called, 1);
    else fprintf(stderr, "race append: %s\n", msg);
}

static void *race_main(void *arg) {
    long i = (long)arg;
    race_me = (int)i;
    char stream[48];
    snprintf(stream, sizeof stream, "race-%d-%ld", atomic_load(&race_round), i);
    evs_event_in ev = tu_event("Raced", "{\"r\":1}");
    int rc = evs__store_append_async(race_store, stream, EVS_EXPECT_NO_STREAM, &ev, 1, race_done, NULL);
    if (rc) fprintf(stderr, "race submit %ld: %s\n", i, evs_errmsg());
    atomic_store(&race_returned[i], rc == EVS_OK ? 1 : 2);
    return NULL;
}

static int race_all_queued(void) {
    for (int i = 0; i < RACE_THREADS; i++)
        if (!atomic_load(&race_returned[i]) && !atomic_load(&race_inside[i])) return 0;
    return 1;
}

static void test_close_race(const char *dir) {
    for (int round = 0; round < 5; round++) {
        race_store = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
        atomic_store(&race_round, round);
        atomic_store(&race_closing, 0);
        atomic_store(&race_called, 0);
        for (int i = 0; i < RACE_THREADS; i++) {
            atomic_store(&race_returned[i], 0);
            atomic_store(&race_inside[i], 0);
        }
        for (long i = 0; i < RACE_THREADS; i++) pthread_create(&race_th[i], NULL, race_main, (void *)i);
        while (!race_all_queued()) sched_yield();
        atomic_store(&race_closing, 1);
        CHECK_RC(evs_store_close(race_store), EVS_OK);
        CHECK_INT(atomic_load(&race_called), RACE_THREADS); /* every callback done before close returned */
        for (int i = 0; i < RACE_THREADS; i++) pthread_join(race_th[i], NULL);
        for (int i = 0; i < RACE_THREADS; i++) CHECK_INT(atomic_load(&race_returned[i]), 1);
        race_store = tu_open(dir, EVS_DURABILITY_SYNC, 1 << 20);
        CHECK_INT(evs_head(race_store), (uint64_t)RACE_THREADS * (uint64_t)(round + 1));
        CHECK_RC(evs_store_close(race_store), EVS_OK);
    }
}

int main(void) {
    char *d = tu_tempdir("async-mixed");
    test_mixed(d);
    tu_rmrf(d);
    free(d);
    d = tu_tempdir("async-outcomes");
    test_outcomes(d);
    tu_rmrf(d);
    free(d);
    d = tu_tempdir("async-close");
    test_close(d);
    tu_rmrf(d);
    free(d);
    d = tu_tempdir("async-close-race");
    test_close_race(d);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}
