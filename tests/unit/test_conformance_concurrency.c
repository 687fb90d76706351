/*
 * test_conformance_concurrency.c — 8 appenders on the same streams at once,
 * on every storage engine (conformance.h): each reads a stream's version
 * and appends with it as the expected version, retrying on conflicts, and
 * sometimes retries an acknowledged append with the same ids.  Afterwards:
 * the only failures seen were clean conflicts carrying the actual version
 * (never anything else, on PostgreSQL never a unique violation), every
 * acknowledged append is stored exactly once, global positions run 1..head
 * without a gap, each stream's positions 1..version, and a subscriber that
 * followed $all with evs_wait_for while the appenders ran saw every
 * position exactly once, in order.
 */
#include <pthread.h>

#include "conformance.h"

#define THREADS 8
#define STREAMS 4
#define PER_THREAD 150

typedef struct worker {
    evs_store *s;
    int id;
    int appended, conflicts, retries;
    problems p;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    char stream[32], data[64];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(stream, sizeof stream, "acct-%d", (i + w->id) % STREAMS);
        snprintf(data, sizeof data, "{\"w\":%d,\"i\":%d}", w->id, i);
        evs_uuid id;
        evs_uuid_v7(&id);
        evs_event_in ev[2] = {tu_event("Debited", data), tu_event("Noted", "{}")};
        ev[0].event_id = &id;
        size_t n = 1 + (size_t)(i % 2);
        for (;;) {
            evs_stream_info info;
            int rc = evs_stream_get_info(w->s, stream, &info);
            uint64_t v = rc == EVS_OK ? info.version : 0;
            if (rc && rc != EVS_ENOTFOUND) {
                problem(&w->p, "info %s: %s", stream, evs_errmsg());
                return NULL;
            }
            evs_append_result r;
            rc = evs_append(w->s, stream, (int64_t)v, ev, n, &r, NULL);
            if (rc == EVS_ECONFLICT) {
                if (r.actual_version <= v) problem(&w->p, "conflict with actual %llu <= expected %llu",
                                                   (unsigned long long)r.actual_version, (unsigned long long)v);
                w->conflicts++;
                continue;
            }
            if (rc) {
                problem(&w->p, "append %s: %s %s", stream, evs_errname(rc), evs_errmsg());
                return NULL;
            }
            if (r.idempotent) problem(&w->p, "a first append answered as a retry");
            w->appended += (int)n;
            if (i % 10 == 0) { /* a client that lost the answer retries: nothing new is stored */
                evs_append_result again;
                rc = evs_append(w->s, stream, (int64_t)v, ev, n, &again, NULL);
                if (rc || !again.idempotent || again.first_global_position != r.first_global_position)
                    problem(&w->p, "retry: rc %s idempotent %d", evs_errname(rc), again.idempotent);
                w->retries++;
            }
            break;
        }
    }
    return NULL;
}

typedef struct follower {
    evs_store *s;
    uint64_t until, seen;
    problems p;
} follower;

/* A subscriber: read $all from where it stopped, wait for more, until `until` is known. */
static void *follow_main(void *arg) {
    follower *f = arg;
    uint64_t pos = 1, want = 1;
    for (;;) {
        evs_reader *rd;
        const evs_event *e;
        if (evs_read_all(f->s, pos, EVS_FORWARD, NULL, 0, &rd)) {
            problem(&f->p, "read_all: %s", evs_errmsg());
            return NULL;
        }
        int rc;
        while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
            if (e->global_position != want) problem(&f->p, "saw %llu, wanted %llu", (unsigned long long)e->global_position,
                                                    (unsigned long long)want);
            want = e->global_position + 1;
            f->seen++;
        }
        pos = evs_reader_position(rd);
        evs_reader_close(rd);
        if (rc != EVS_DONE) problem(&f->p, "reader: %s", evs_errmsg());
        uint64_t until = __atomic_load_n(&f->until, __ATOMIC_ACQUIRE);
        if (until && pos > until) return NULL;
        uint64_t h;
        evs_wait_for(f->s, pos, 100, &h);
    }
}

int main(int argc, char **argv) {
    cf_init(argc, argv);
    printf("engine: %s\n", cf_engine());
    char *where = cf_fresh("conc");
    evs_store *s = cf_open(where);
    worker w[THREADS];
    pthread_t t[THREADS], ft;
    follower fo;
    memset(&fo, 0, sizeof fo);
    fo.s = s;
    pthread_create(&ft, NULL, follow_main, &fo);
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = s;
        w[i].id = i;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    int appended = 0, conflicts = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        appended += w[i].appended;
        conflicts += w[i].conflicts;
        CHECK_INT(w[i].p.count, 0);
        if (w[i].p.count) fprintf(stderr, "worker %d: %s\n", i, w[i].p.first);
    }
    uint64_t head = evs_head(s);
    __atomic_store_n(&fo.until, head, __ATOMIC_RELEASE);
    pthread_join(ft, NULL);
    CHECK_INT(fo.p.count, 0);
    if (fo.p.count) fprintf(stderr, "follower: %s\n", fo.p.first);
    CHECK_INT(fo.seen, head);
    printf("%d events appended by %d threads, %d conflicts\n", appended, THREADS, conflicts);
    CHECK_INT(head, appended);
    CHECK_INT(appended, THREADS * PER_THREAD * 3 / 2);
    /* every stream: positions 1..version, and the versions add up to the head */
    uint64_t sum = 0;
    for (int k = 0; k < STREAMS; k++) {
        char stream[32];
        snprintf(stream, sizeof stream, "acct-%d", k);
        evs_reader *rd;
        const evs_event *e;
        uint64_t want = 1;
        int ok = 1;
        CHECK_RC(evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd), EVS_OK);
        while (evs_reader_next(rd, &e) == EVS_OK)
            if (e->stream_position != want++) ok = 0;
        evs_reader_close(rd);
        CHECK(ok);
        sum += want - 1;
    }
    CHECK_INT(sum, head);
    CHECK_RC(evs_store_close(s), EVS_OK);
    cf_drop(where);
    return TEST_REPORT();
}
