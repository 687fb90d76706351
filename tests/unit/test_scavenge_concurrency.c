/*
 * test_scavenge_concurrency.c — scavenge while appends, reads and checks
 * go on (label concurrency: runs under ThreadSanitizer).
 *
 * A store (batch durability, 64 KiB segments) is filled with events that
 * stay and events that metadata hides (tests/scavenge_fixture.h) and
 * fingerprinted.  Then, at the same time: two appenders add events and
 * create and hard-delete short streams (new garbage for the next pass);
 * two readers walk $all again and again and compare what they see with the
 * fingerprint (every event there, same positions, same bytes; a reader's
 * snapshot taken before a segment swap keeps reading the old segment); one
 * thread runs `check` in a loop; and the main thread scavenges pass after
 * pass.  Afterwards: the fingerprint still holds, `check` is clean, space
 * was given back, and all of it again after a reopen.
 */
#include <pthread.h>

#include "scavenge_fixture.h"

static evs_store *st;
static sf_snap before;
static int stop;
static problems probs;
static pthread_mutex_t probs_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *what, const char *why) {
    pthread_mutex_lock(&probs_mu);
    problem(&probs, "%s: %s", what, why);
    pthread_mutex_unlock(&probs_mu);
}

static int stopping(void) { return __atomic_load_n(&stop, __ATOMIC_RELAXED); }

static void *appender(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int i = 0; !stopping(); i++) {
        char name[32];
        snprintf(name, sizeof name, "live-%d", id);
        sf_append(st, name, i);
        snprintf(name, sizeof name, "tmp%d-%d", id, i / 20);
        sf_append(st, name, i);
        if (i % 20 == 19 && evs_stream_delete(st, name, EVS_EXPECT_ANY, 1)) note("delete", evs_errmsg());
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    int passes = 0;
    while (!stopping() || passes < 2) {
        sf_snap now;
        char why[200] = "";
        int rc = sf_snapshot(st, &now);
        if (rc) note("read $all", evs_errmsg());
        else if (!sf_same(&before, &now, why, sizeof why)) note("read $all", why);
        sf_free(&now);
        passes++;
    }
    return NULL;
}

static void *checker(void *arg) {
    (void)arg;
    while (!stopping()) {
        evs_check_report rep;
        if (evs_store_check(st, &rep)) note("check", evs_errmsg());
    }
    return NULL;
}

int main(void) {
    char *d = tu_tempdir("scav-conc");
    st = tu_open(d, EVS_DURABILITY_BATCH, 64 << 10);
    sf_populate(st, 60);
    for (int i = 0; i < 150; i++) sf_append(st, "keep-4", i);
    CHECK_RC(sf_snapshot(st, &before), EVS_OK);
    evs_store_stats s0;
    CHECK_RC(evs_store_get_stats(st, &s0), EVS_OK);

    pthread_t th[5];
    pthread_create(&th[0], NULL, appender, (void *)1);
    pthread_create(&th[1], NULL, appender, (void *)2);
    pthread_create(&th[2], NULL, reader, NULL);
    pthread_create(&th[3], NULL, reader, NULL);
    pthread_create(&th[4], NULL, checker, NULL);
    uint64_t reclaimed = 0, rewritten = 0;
    for (int pass = 0; pass < 6; pass++) {
        evs_scavenge_progress p;
        int rc = evs_scavenge(st, NULL, &p);
        if (rc) note("scavenge", evs_errmsg());
        reclaimed += p.bytes_reclaimed;
        rewritten += p.segments_rewritten;
        /* a second scavenge at the same time is refused */
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 5; i++) pthread_join(th[i], NULL);
    if (probs.count) fprintf(stderr, "%d problem(s), first: %s\n", probs.count, probs.first);
    CHECK_INT(probs.count, 0);
    CHECK(reclaimed > 0 && rewritten > 0);

    evs_check_report rep;
    CHECK_RC(evs_store_check(st, &rep), EVS_OK);
    CHECK_RC(evs_store_close(st), EVS_OK);
    st = tu_open(d, EVS_DURABILITY_BATCH, 64 << 10);
    sf_snap now;
    char why[200] = "";
    CHECK_RC(sf_snapshot(st, &now), EVS_OK);
    CHECK(sf_same(&before, &now, why, sizeof why));
    if (why[0]) fprintf(stderr, "after reopen: %s\n", why);
    CHECK(now.scavenged_ranges > 0);
    sf_free(&now);
    CHECK_RC(evs_store_check(st, &rep), EVS_OK);
    CHECK_RC(evs_store_close(st), EVS_OK);
    sf_free(&before);
    tu_rmrf(d);
    free(d);
    return TEST_REPORT();
}
