/*
 * test_pg_restart.c — the PostgreSQL engine while its database restarts
 * under load.  A private cluster of its own (tests/pg_cluster.py, so the
 * shared fixture's other tests are not disturbed) is restarted twice while
 * four threads append.  Checked: an append that fails says why (EVS_EIO
 * naming PostgreSQL, never a crash or a hang), a retry with the same event
 * ids succeeds once the database is back (stored now, or answered as the
 * idempotent retry of what had committed), every acknowledged event is
 * stored exactly once with no gap in the global order, and evs_wait_for
 * still hears of appends made through another handle after the restarts
 * (the listener reconnected).  A last restart while every pooled connection
 * is idle must not fail the reads after it.  Exit 77 without PostgreSQL.
 */
#include <libpq-fe.h>
#include <pthread.h>

#include "testutil.h"

#define THREADS 4
#define PER_THREAD 120

static char state[512], script[1024], url[512];

static int cluster(const char *cmd) {
    char line[2048];
    snprintf(line, sizeof line, "python3 %s %s %s >/dev/null", script, cmd, state);
    return system(line);
}

typedef struct worker {
    evs_store *s;
    int id;
    evs_uuid ids[PER_THREAD];
    uint64_t gpos[PER_THREAD];
    int failures;
    problems p;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    char stream[32], data[64];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(stream, sizeof stream, "acct-%d", w->id);
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        evs_uuid_v7(&w->ids[i]);
        evs_event_in ev = tu_event("Moved", data);
        ev.event_id = &w->ids[i];
        for (int attempt = 0;; attempt++) {
            evs_append_result r;
            /* expected = the version this append makes: exact, so a retry after an unknown outcome is safe */
            int rc = evs_append(w->s, stream, i, &ev, 1, &r, NULL);
            if (rc == EVS_OK) {
                w->gpos[i] = r.first_global_position;
                break;
            }
            w->failures++;
            if (rc != EVS_EIO || !strstr(evs_errmsg(), "postgresql")) {
                problem(&w->p, "append %d: %s %s", i, evs_errname(rc), evs_errmsg());
                return NULL;
            }
            if (attempt > 600) {
                problem(&w->p, "append %d: still failing after a minute: %s", i, evs_errmsg());
                return NULL;
            }
            struct timespec ts = {0, 100 * 1000000};
            nanosleep(&ts, NULL);
        }
        struct timespec ts = {0, 10 * 1000000}; /* a steady load that outlasts both restarts */
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(void) {
    /* the cluster script is next to this file's folder */
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    if (!slash) return 77;
    *slash = '\0';
    slash = strrchr(script, '/');
    if (!slash) return 77;
    snprintf(slash, sizeof script - (size_t)(slash - script), "/pg_cluster.py");
    char *tmp = tu_tempdir("pgrestart");
    snprintf(state, sizeof state, "%s/cluster.json", tmp);
    int st = cluster("start");
    if (st != 0) {
        printf("skipped: no PostgreSQL cluster could be started (Debian package postgresql)\n");
        tu_rmrf(tmp);
        free(tmp);
        return 77;
    }
    FILE *f = fopen(state, "r");
    char buf[2048] = "";
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    const char *u = strstr(buf, "\"url\": \"") + 8;
    snprintf(url, sizeof url, "%.*s", (int)(strchr(u, '"') - u), u);

    evs_store *s = NULL, *other = NULL;
    CHECK_RC(evs_store_create(&s), EVS_OK);
    CHECK_RC(evs_store_open(s, url, EVS_OPEN_CREATE), EVS_OK);
    worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = s;
        w[i].id = i;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int k = 0; k < 2; k++) {
        struct timespec ts = {0, 300 * 1000000};
        nanosleep(&ts, NULL);
        CHECK_INT(cluster("restart"), 0);
    }
    int failures = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(w[i].p.count, 0);
        if (w[i].p.count) fprintf(stderr, "worker %d: %s\n", i, w[i].p.first);
        failures += w[i].failures;
    }
    printf("%d appends failed during the restarts and were retried\n", failures);
    /* once more with every pooled connection idle: the next calls must not fail on them */
    CHECK_INT(cluster("restart"), 0);
    /* every acknowledged event once, at the position acknowledged, no gap */
    uint64_t head = evs_head(s);
    CHECK_INT(head, THREADS * PER_THREAD);
    evs_reader *rd;
    const evs_event *e;
    uint64_t want = 1;
    int ok = 1, found = 0;
    CHECK_RC(evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &rd), EVS_OK);
    int rc;
    while ((rc = evs_reader_next(rd, &e)) == EVS_OK) {
        if (e->global_position != want++) ok = 0;
        int wid = (int)(e->stream[e->stream_len - 1] - '0');
        uint64_t sp = e->stream_position;
        if (wid >= 0 && wid < THREADS && sp >= 1 && sp <= PER_THREAD && !memcmp(&e->event_id, &w[wid].ids[sp - 1], 16) &&
            w[wid].gpos[sp - 1] == e->global_position)
            found++;
        else if (found == 0 && want == 2)
            fprintf(stderr, "first event: %.*s/%llu gpos %llu, acknowledged at %llu\n", (int)e->stream_len, e->stream,
                    (unsigned long long)sp, (unsigned long long)e->global_position,
                    wid >= 0 && wid < THREADS && sp >= 1 && sp <= PER_THREAD ? (unsigned long long)w[wid].gpos[sp - 1] : 0ULL);
    }
    CHECK_RC(rc, EVS_DONE);
    evs_reader_close(rd);
    CHECK(ok);
    CHECK_INT(found, THREADS * PER_THREAD);
    /* the listener reconnected: an append through another handle wakes a waiter on this one */
    CHECK_RC(evs_store_create(&other), EVS_OK);
    CHECK_RC(evs_store_open(other, url, 0), EVS_OK);
    evs_append_result r;
    evs_event_in ev = tu_event("Late", "{}");
    CHECK_RC(evs_append(other, "late-1", EVS_EXPECT_ANY, &ev, 1, &r, NULL), EVS_OK);
    uint64_t h;
    CHECK_RC(evs_wait_for(s, r.last_global_position, 10000, &h), EVS_OK);
    CHECK_INT(h, r.last_global_position);
    CHECK_RC(evs_store_close(other), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    cluster("stop");
    tu_rmrf(tmp);
    free(tmp);
    return TEST_REPORT();
}
