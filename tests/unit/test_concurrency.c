/*
 * test_concurrency.c — proves that concurrent appends through the group-commit
 * writer keep the store's promises under contention (also run under TSan).
 *
 * Eight or more threads append one-event appends with exact expected versions
 * to the same four shared streams and to one stream of their own, while two
 * reader threads read $all and the shared streams in a loop.  The test proves:
 *   1. every stream version is assigned exactly once: no two successful
 *      appends share a stream position, and a stream's version equals the
 *      number of appends acknowledged to it;
 *   2. a loser gets EVS_ECONFLICT with actual_version >= expected + 1 and
 *      exactly the message "Concurrency conflict: expected version X, actual
 *      version Y"; appends to a thread's own stream never conflict;
 *   3. the global positions of all successful appends are gapless 1..head
 *      and strictly increase, per thread, in the order the thread's appends
 *      were acknowledged;
 *   4. a full $all read afterwards returns exactly the acknowledged appends:
 *      the same event id, stream, stream position and data bytes at each
 *      global position, and nothing else;
 *   5. every event a concurrent reader sees is intact (its data names its own
 *      id, stream and writer) and reads are gapless from where they start up
 *      to at least the head observed before the read began;
 *   6. group commit happens: in sync mode with 8 threads the store's stats
 *      show batches <= appends and at least one batch that held more than one
 *      append (batches < appends), a property of the run, not a timing.
 * The sync-mode run is small (a few thousand appends); a larger run uses
 * durability NONE.  Worker threads do not use the CHECK macros (they are not
 * thread-safe); they record problems that the main thread then asserts on.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>

#include "testutil.h"

/*
 * ThreadSanitizer cannot see LMDB's own synchronisation: liblmdb is not
 * instrumented, and with MDB_WRITEMAP its writer memcpy()s into the shared
 * map while readers memcmp() committed pages, ordered only by LMDB's reader
 * table and meta-page stores.  Ignore the intercepted calls made from inside
 * liblmdb; the store's own threads, locks and atomics stay checked.
 */
#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void) { return "called_from_lib:liblmdb.so\n"; }
#endif

#define NSHARED 4
#define NREADERS 2
#define MAXTHREADS 16

/* One acknowledged append (all appends here carry exactly one event). */
typedef struct ack {
    uint64_t gpos;
    uint64_t spos;
    int stream; /* 0..NSHARED-1: shared-K; NSHARED + t: own stream of thread t */
    int thread;
    uint32_t seq;
    evs_uuid id;
} ack;


typedef struct run {
    evs_store *s;
    int nthreads;
    int attempts; /* per writer thread */
    atomic_int writers_left;
    atomic_int stop_readers;
} run;

typedef struct writer {
    run *run;
    int t;
    uint64_t seed;
    ack *acks;
    size_t nacks;
    uint64_t conflicts;
    problems p;
} writer;

typedef struct reader {
    run *run;
    int r;
    uint64_t seed;
    uint64_t passes, events;
    problems p;
} reader;

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void stream_name(int stream, char *buf, size_t n) {
    if (stream < NSHARED) snprintf(buf, n, "shared-%d", stream);
    else snprintf(buf, n, "own-%d", stream - NSHARED);
}

/* The data of an event: names its stream, writer, sequence and id. */
static int event_data(char *buf, size_t n, const char *stream, int t, uint32_t seq, const evs_uuid *id) {
    char u[37];
    evs_uuid_format(id, u);
    return snprintf(buf, n, "{\"s\":\"%s\",\"t\":%d,\"n\":%u,\"id\":\"%s\"}", stream, t, seq, u);
}

/* 1 when ev is intact: its data is exactly what its writer appended. */
static int event_intact(const evs_event *ev, char *why, size_t whyn) {
    int t = -1;
    unsigned seq = 0;
    char data[256];
    char stream[64];
    if (ev->stream_len >= sizeof stream) {
        snprintf(why, whyn, "stream name of %zu bytes", ev->stream_len);
        return 0;
    }
    memcpy(stream, ev->stream, ev->stream_len);
    stream[ev->stream_len] = 0;
    /* t and n are the only parts not derivable from the event itself */
    if (ev->data_len >= sizeof data) {
        snprintf(why, whyn, "gpos %llu: unexpected data \"%.*s\"", (unsigned long long)ev->global_position,
                 (int)(ev->data_len > 200 ? 200 : ev->data_len), ev->data);
        return 0;
    }
    memcpy(data, ev->data, ev->data_len);
    data[ev->data_len] = 0;
    const char *q = strstr(data, "\"t\":");
    if (!q || sscanf(q, "\"t\":%d,\"n\":%u", &t, &seq) != 2) {
        snprintf(why, whyn, "gpos %llu: unexpected data \"%.200s\"", (unsigned long long)ev->global_position, data);
        return 0;
    }
    char want[256];
    event_data(want, sizeof want, stream, t, seq, &ev->event_id);
    if (strcmp(want, data) != 0) {
        snprintf(why, whyn, "gpos %llu: data \"%.200s\", wanted \"%.200s\"", (unsigned long long)ev->global_position,
                 data, want);
        return 0;
    }
    if (ev->event_type_len != 4 || memcmp(ev->event_type, "Tick", 4) != 0) {
        snprintf(why, whyn, "gpos %llu: event type \"%.*s\"", (unsigned long long)ev->global_position,
                 (int)ev->event_type_len, ev->event_type);
        return 0;
    }
    return 1;
}

static void *writer_main(void *arg) {
    writer *w = arg;
    evs_store *s = w->run->s;
    uint64_t view[NSHARED] = {0}, own = 0, last_gpos = 0;
    w->acks = calloc((size_t)w->run->attempts, sizeof *w->acks);
    if (!w->acks) {
        problem(&w->p, "thread %d: out of memory", w->t);
        atomic_fetch_sub(&w->run->writers_left, 1);
        return NULL;
    }
    for (int i = 0; i < w->run->attempts; i++) {
        int shared = (int)(rnd(&w->seed) % 10) < 7;
        int k = shared ? (int)(rnd(&w->seed) % NSHARED) : NSHARED + w->t;
        uint64_t expected = shared ? view[k] : own;
        char stream[32], data[256];
        stream_name(k, stream, sizeof stream);
        evs_uuid id;
        evs_uuid_v7(&id);
        event_data(data, sizeof data, stream, w->t, (uint32_t)i, &id);
        evs_event_in e = tu_event("Tick", data);
        e.event_id = &id;
        evs_append_result res;
        int rc = evs_append(s, stream, (int64_t)expected, &e, 1, &res, NULL);
        if (rc == EVS_OK) {
            if (res.first_stream_position != expected + 1 || res.last_stream_position != expected + 1)
                problem(&w->p, "thread %d: %s expected %llu got stream positions %llu..%llu", w->t, stream,
                        (unsigned long long)expected, (unsigned long long)res.first_stream_position,
                        (unsigned long long)res.last_stream_position);
            if (res.first_global_position != res.last_global_position || res.idempotent)
                problem(&w->p, "thread %d: one event got global positions %llu..%llu (idempotent %d)", w->t,
                        (unsigned long long)res.first_global_position,
                        (unsigned long long)res.last_global_position, res.idempotent);
            if (res.first_global_position <= last_gpos)
                problem(&w->p, "thread %d: global position %llu after %llu: not increasing in commit order", w->t,
                        (unsigned long long)res.first_global_position, (unsigned long long)last_gpos);
            last_gpos = res.first_global_position;
            ack *a = &w->acks[w->nacks++];
            a->gpos = res.first_global_position;
            a->spos = res.first_stream_position;
            a->stream = k;
            a->thread = w->t;
            a->seq = (uint32_t)i;
            a->id = id;
            if (shared) view[k] = res.last_stream_position;
            else own = res.last_stream_position;
        } else if (rc == EVS_ECONFLICT && shared) {
            w->conflicts++;
            if (res.actual_version < expected + 1)
                problem(&w->p, "thread %d: %s conflict: actual version %llu < expected %llu + 1", w->t, stream,
                        (unsigned long long)res.actual_version, (unsigned long long)expected);
            char want[128];
            snprintf(want, sizeof want, "Concurrency conflict: expected version %llu, actual version %llu",
                     (unsigned long long)expected, (unsigned long long)res.actual_version);
            if (strcmp(evs_errmsg(), want) != 0)
                problem(&w->p, "thread %d: conflict message \"%s\", wanted \"%s\"", w->t, evs_errmsg(), want);
            view[k] = res.actual_version;
        } else {
            problem(&w->p, "thread %d: append %d to %s (expected %llu): %s: %s", w->t, i, stream,
                    (unsigned long long)expected, evs_errname(rc), evs_errmsg());
        }
    }
    atomic_fetch_sub(&w->run->writers_left, 1);
    return NULL;
}

/* One $all read from near the head: gapless, intact, reaching the head seen before. */
static void reader_all_pass(reader *rd) {
    evs_store *s = rd->run->s;
    uint64_t h = evs_head(s);
    uint64_t from = h > 300 ? h - (rnd(&rd->seed) % 300) : 1;
    if (from == 0) from = 1;
    evs_reader *r;
    int rc = evs_read_all(s, from, EVS_FORWARD, NULL, 0, &r);
    if (rc) {
        problem(&rd->p, "reader %d: read $all from %llu: %s: %s", rd->r, (unsigned long long)from, evs_errname(rc),
                evs_errmsg());
        return;
    }
    const evs_event *ev;
    uint64_t want = from;
    char why[512];
    /* bounded: a snapshot holds at most the head at its start */
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->global_position != want) {
            problem(&rd->p, "reader %d: $all from %llu returned position %llu, wanted %llu", rd->r,
                    (unsigned long long)from, (unsigned long long)ev->global_position, (unsigned long long)want);
            break;
        }
        if (!event_intact(ev, why, sizeof why)) problem(&rd->p, "reader %d: %s", rd->r, why);
        want++;
        rd->events++;
    }
    if (rc != EVS_OK && rc != EVS_DONE)
        problem(&rd->p, "reader %d: $all next: %s: %s", rd->r, evs_errname(rc), evs_errmsg());
    if (want - 1 < h)
        problem(&rd->p, "reader %d: $all read ended at %llu but the head was %llu before it began", rd->r,
                (unsigned long long)(want - 1), (unsigned long long)h);
    evs_reader_close(r);
}

/* One read of a shared stream from its start: positions 1.. in order, intact. */
static void reader_stream_pass(reader *rd) {
    evs_store *s = rd->run->s;
    char stream[32];
    stream_name((int)(rnd(&rd->seed) % NSHARED), stream, sizeof stream);
    evs_reader *r;
    int rc = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r);
    if (rc == EVS_ENOTFOUND) return; /* not appended to yet */
    if (rc) {
        problem(&rd->p, "reader %d: read %s: %s: %s", rd->r, stream, evs_errname(rc), evs_errmsg());
        return;
    }
    const evs_event *ev;
    uint64_t want = 1, last_g = 0;
    char why[512];
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (ev->stream_position != want || ev->global_position <= last_g ||
            ev->stream_len != strlen(stream) || memcmp(ev->stream, stream, ev->stream_len) != 0) {
            problem(&rd->p, "reader %d: %s: stream position %llu (wanted %llu), global %llu after %llu", rd->r, stream,
                    (unsigned long long)ev->stream_position, (unsigned long long)want,
                    (unsigned long long)ev->global_position, (unsigned long long)last_g);
            break;
        }
        if (!event_intact(ev, why, sizeof why)) problem(&rd->p, "reader %d: %s", rd->r, why);
        last_g = ev->global_position;
        want++;
        rd->events++;
    }
    if (rc != EVS_OK && rc != EVS_DONE)
        problem(&rd->p, "reader %d: %s next: %s: %s", rd->r, stream, evs_errname(rc), evs_errmsg());
    evs_reader_close(r);
}

static void *reader_main(void *arg) {
    reader *rd = arg;
    /* bounded: stops when the writers are done, or after many passes */
    for (uint64_t i = 0; i < 1000000 && !atomic_load(&rd->run->stop_readers); i++) {
        if (i % 2) reader_stream_pass(rd);
        else reader_all_pass(rd);
        rd->passes++;
    }
    return NULL;
}

static int cmp_gpos(const void *a, const void *b) {
    uint64_t x = ((const ack *)a)->gpos, y = ((const ack *)b)->gpos;
    return x < y ? -1 : x > y;
}

/* Run nthreads writers (attempts each) and the readers on a fresh store; verify. */
static void run_case(const char *label, evs_durability d, int nthreads, int attempts, uint64_t seed) {
    char *dir = tu_tempdir("concurrency");
    evs_store *s = tu_open(dir, d, 0);
    run rn;
    memset(&rn, 0, sizeof rn);
    rn.s = s;
    rn.nthreads = nthreads;
    rn.attempts = attempts;
    atomic_store(&rn.writers_left, nthreads);
    atomic_store(&rn.stop_readers, 0);
    writer w[MAXTHREADS];
    reader rdr[NREADERS];
    pthread_t wt[MAXTHREADS], rt[NREADERS];
    memset(w, 0, sizeof w);
    memset(rdr, 0, sizeof rdr);
    int64_t t0 = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    for (int r = 0; r < NREADERS; r++) {
        rdr[r].run = &rn;
        rdr[r].r = r;
        rdr[r].seed = seed * 31 + 1000 + (uint64_t)r;
        CHECK_INT(pthread_create(&rt[r], NULL, reader_main, &rdr[r]), 0);
    }
    for (int t = 0; t < nthreads; t++) {
        w[t].run = &rn;
        w[t].t = t;
        w[t].seed = seed * 7919 + (uint64_t)t + 1;
        CHECK_INT(pthread_create(&wt[t], NULL, writer_main, &w[t]), 0);
    }
    for (int t = 0; t < nthreads; t++) pthread_join(wt[t], NULL);
    atomic_store(&rn.stop_readers, 1);
    for (int r = 0; r < NREADERS; r++) pthread_join(rt[r], NULL);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double secs = (double)((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - t0) / 1e9;

    /* what the threads saw */
    size_t total = 0;
    uint64_t conflicts = 0, rpasses = 0, revents = 0;
    for (int t = 0; t < nthreads; t++) {
        if (w[t].p.count) fprintf(stderr, "%s: writer %d: %d problem(s), first: %s\n", label, t, w[t].p.count, w[t].p.first);
        CHECK_INT(w[t].p.count, 0);
        total += w[t].nacks;
        conflicts += w[t].conflicts;
    }
    for (int r = 0; r < NREADERS; r++) {
        if (rdr[r].p.count)
            fprintf(stderr, "%s: reader %d: %d problem(s), first: %s\n", label, r, rdr[r].p.count, rdr[r].p.first);
        CHECK_INT(rdr[r].p.count, 0);
        rpasses += rdr[r].passes;
        revents += rdr[r].events;
    }
    CHECK(conflicts > 0); /* the shared streams were contended */

    /* all acknowledged appends, ordered by global position */
    ack *all = calloc(total ? total : 1, sizeof *all);
    size_t n = 0;
    for (int t = 0; t < nthreads; t++) {
        memcpy(all + n, w[t].acks, w[t].nacks * sizeof *all);
        n += w[t].nacks;
    }
    qsort(all, n, sizeof *all, cmp_gpos);
    uint64_t head = evs_head(s);
    CHECK_INT(head, total);
    /* gapless 1..head, each position acknowledged exactly once */
    size_t gap_bad = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].gpos != i + 1) {
            if (gap_bad++ == 0)
                fprintf(stderr, "%s: acknowledged global positions: index %zu holds %llu\n", label, i,
                        (unsigned long long)all[i].gpos);
        }
    CHECK_INT(gap_bad, 0);
    /* every stream position assigned exactly once; versions = acknowledged counts */
    int nstreams = NSHARED + nthreads;
    for (int k = 0; k < nstreams; k++) {
        uint64_t cnt = 0;
        for (size_t i = 0; i < n; i++) cnt += all[i].stream == k;
        unsigned char *seen = calloc(cnt + 1, 1);
        size_t dup = 0, out_of_range = 0;
        uint64_t last_spos = 0;
        size_t disorder = 0;
        for (size_t i = 0; i < n; i++) {
            if (all[i].stream != k) continue;
            if (all[i].spos < 1 || all[i].spos > cnt) out_of_range++;
            else if (seen[all[i].spos]++) dup++;
            if (all[i].spos <= last_spos) disorder++; /* stream order follows global order */
            last_spos = all[i].spos;
        }
        free(seen);
        char name[32];
        stream_name(k, name, sizeof name);
        if (dup || out_of_range || disorder)
            fprintf(stderr, "%s: %s: %zu duplicate, %zu out-of-range, %zu out-of-order stream positions\n", label, name,
                    dup, out_of_range, disorder);
        CHECK_INT(dup, 0);
        CHECK_INT(out_of_range, 0);
        CHECK_INT(disorder, 0);
        evs_stream_info info;
        int rc = evs_stream_get_info(s, name, &info);
        if (cnt == 0) {
            CHECK_RC(rc, EVS_ENOTFOUND);
        } else {
            CHECK_RC(rc, EVS_OK);
            CHECK_INT(info.version, cnt);
        }
    }
    /* a full $all read matches the acknowledged appends exactly */
    evs_reader *r;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r), EVS_OK);
    const evs_event *ev;
    size_t i = 0, mismatches = 0;
    int rc;
    char why[512];
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK && i < n + 1) {
        char want_stream[32], want_data[256];
        const ack *a = i < n ? &all[i] : NULL;
        int ok = a != NULL;
        if (ok) {
            stream_name(a->stream, want_stream, sizeof want_stream);
            event_data(want_data, sizeof want_data, want_stream, a->thread, a->seq, &a->id);
            ok = ev->global_position == a->gpos && ev->stream_position == a->spos &&
                 !memcmp(&ev->event_id, &a->id, 16) && ev->stream_len == strlen(want_stream) &&
                 !memcmp(ev->stream, want_stream, ev->stream_len) && ev->data_len == strlen(want_data) &&
                 !memcmp(ev->data, want_data, ev->data_len) && event_intact(ev, why, sizeof why);
        }
        if (!ok && mismatches++ == 0)
            fprintf(stderr, "%s: $all event %zu (gpos %llu, %.*s@%llu) does not match the acknowledged append\n",
                    label, i, (unsigned long long)ev->global_position, (int)ev->stream_len, ev->stream,
                    (unsigned long long)ev->stream_position);
        i++;
    }
    CHECK_RC(rc, EVS_DONE);
    CHECK_INT(i, n);
    CHECK_INT(mismatches, 0);
    evs_reader_close(r);

    evs_store_stats st;
    CHECK_RC(evs_store_get_stats(s, &st), EVS_OK);
    CHECK_INT(st.appends, total);
    CHECK_INT(st.events_written, total);
    CHECK(st.batches >= 1);
    CHECK(st.batches <= st.appends);
    {
        /* the histograms account for every batch and every sync, each in one bucket */
        uint64_t nb = 0, ns = 0, low = 0;
        for (int k = 0; k <= EVS_BATCH_BUCKETS; k++) nb += st.batch_hist[k];
        for (int k = 0; k <= EVS_SYNC_BUCKETS; k++) ns += st.sync_hist[k];
        static const uint64_t bb[EVS_BATCH_BUCKETS] = EVS_BATCH_BOUNDS;
        for (int k = 0; k < EVS_BATCH_BUCKETS; k++) low += st.batch_hist[k] * (k ? bb[k - 1] + 1 : 1);
        CHECK_INT(nb, st.batches);
        CHECK_INT(ns, st.syncs);
        CHECK(low <= st.appends); /* each batch holds at least its bucket's lower bound */
        if (d == EVS_DURABILITY_SYNC) CHECK(st.sync_ns > 0);
        if (d == EVS_DURABILITY_NONE) CHECK_INT(ns, 0);
    }
    printf("%s: %d threads, %zu appends acknowledged, %llu conflicts, %llu batches (%.2f appends per batch), "
           "%llu syncs; readers: %llu passes, %llu events; %.2fs\n",
           label, nthreads, total, (unsigned long long)conflicts, (unsigned long long)st.batches,
           st.batches ? (double)st.appends / (double)st.batches : 0.0, (unsigned long long)st.syncs,
           (unsigned long long)rpasses, (unsigned long long)revents, secs);
    if (d == EVS_DURABILITY_SYNC) {
        /* group commit: at least one batch held more than one append */
        CHECK(st.batches < st.appends);
        CHECK(st.syncs <= st.batches);
    }
    evs_check_report rep;
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_INT(rep.events, total);
    CHECK_INT(rep.errors, 0);
    evs_store_close(s);

    /* and the same after a reopen */
    s = tu_open(dir, d, 0);
    CHECK_INT(evs_head(s), total);
    CHECK_STR(evs_store_recovery_report(s), "");
    evs_store_close(s);

    for (int t = 0; t < nthreads; t++) free(w[t].acks);
    free(all);
    tu_rmrf(dir);
    free(dir);
}

/*
 * Retries racing each other: threads append the same event id at once,
 * some with the stored content and some with other data.  Retries that
 * land in the batch that writes the event are compared with that batch's
 * own frame (not yet in the file), later ones with the log.  Exactly one
 * append writes; every retry with the same content is idempotent with its
 * positions and recorded_at; every other one is EVS_EDUPLICATE; the event
 * stored is the writer's.
 */
#define RETRY_THREADS 8

typedef struct retry_arg {
    evs_store *s;
    const evs_uuid *id;
    int t, round;
    atomic_int *go;
    int rc;
    evs_append_result res;
    char msg[256];
} retry_arg;

static void *retry_main(void *arg) {
    retry_arg *a = arg;
    char data[64];
    /* even threads send the one content, odd ones their own */
    snprintf(data, sizeof data, "{\"round\":%d,\"who\":%d}", a->round, a->t % 2 ? a->t : 0);
    evs_event_in e = tu_event("Retried", data);
    e.event_id = a->id;
    char stream[32];
    snprintf(stream, sizeof stream, "retry-%d", a->round);
    while (!atomic_load(a->go)) {
    }
    a->rc = evs_append(a->s, stream, EVS_EXPECT_ANY, &e, 1, &a->res, NULL);
    snprintf(a->msg, sizeof a->msg, "%s", a->rc ? evs_errmsg() : "");
    return NULL;
}

static void test_racing_retries(void) {
    char *d = tu_tempdir("retries");
    evs_store *s = tu_open(d, EVS_DURABILITY_SYNC, 0);
    int rounds = getenv("EVS_SANITIZED") ? 20 : 60;
    int bad = 0;
    for (int round = 0; round < rounds; round++) {
        evs_uuid id;
        evs_uuid_v7(&id);
        atomic_int go = 0;
        pthread_t th[RETRY_THREADS];
        retry_arg a[RETRY_THREADS];
        for (int t = 0; t < RETRY_THREADS; t++) {
            a[t] = (retry_arg){.s = s, .id = &id, .t = t, .round = round, .go = &go};
            pthread_create(&th[t], NULL, retry_main, &a[t]);
        }
        atomic_store(&go, 1);
        for (int t = 0; t < RETRY_THREADS; t++) pthread_join(th[t], NULL);
        int written = -1, nwritten = 0;
        for (int t = 0; t < RETRY_THREADS; t++)
            if (a[t].rc == EVS_OK && !a[t].res.idempotent) written = t, nwritten++;
        if (nwritten != 1) {
            bad++;
            fprintf(stderr, "round %d: %d appends wrote the event\n", round, nwritten);
            continue;
        }
        const retry_arg *w = &a[written];
        for (int t = 0; t < RETRY_THREADS; t++) {
            if (t == written) continue;
            int same = (t % 2 == 0) == (written % 2 == 0) && (t % 2 == 0 || t == written);
            if (same) {
                if (a[t].rc != EVS_OK || !a[t].res.idempotent ||
                    a[t].res.first_global_position != w->res.first_global_position ||
                    a[t].res.recorded_at != w->res.recorded_at) {
                    bad++;
                    fprintf(stderr, "round %d thread %d: a retry with the same content got %s (%s), idempotent %d\n",
                            round, t, evs_errname(a[t].rc), a[t].msg, a[t].res.idempotent);
                }
            } else if (a[t].rc != EVS_EDUPLICATE || !strstr(a[t].msg, "with other data")) {
                bad++;
                fprintf(stderr, "round %d thread %d: a retry with other data got %s (%s)\n", round, t,
                        evs_errname(a[t].rc), a[t].msg);
            }
        }
        /* the stored event is the writer's */
        evs_reader *rd;
        const evs_event *e;
        char stream[32], want[64];
        snprintf(stream, sizeof stream, "retry-%d", round);
        snprintf(want, sizeof want, "{\"round\":%d,\"who\":%d}", round, written % 2 ? written : 0);
        CHECK_RC(evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd), EVS_OK);
        int n = 0;
        while (evs_reader_next(rd, &e) == EVS_OK) {
            n++;
            CHECK_MEM(e->data, e->data_len, want);
        }
        CHECK_INT(n, 1);
        evs_reader_close(rd);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(evs_head(s), (uint64_t)rounds);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
}

int main(void) {
    const char *e = getenv("EVS_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    if (!seed) seed = 1;
    int sanitized = getenv("EVS_SANITIZED") != NULL;
    printf("concurrency: seed %llu (set EVS_SEED to repeat)\n", (unsigned long long)seed);
    /* sync durability: 8 threads x 600 attempts (some lose to conflicts) */
    run_case("sync", EVS_DURABILITY_SYNC, 8, 600, seed);
    /* no fsync: a bigger run with more threads */
    run_case("none", EVS_DURABILITY_NONE, 12, sanitized ? 800 : 2500, seed + 1);
    test_racing_retries();
    return TEST_REPORT();
}
