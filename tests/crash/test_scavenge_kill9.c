/*
 * test_scavenge_kill9.c — a scavenge killed at any point loses nothing and
 * leaves a store that opens, checks clean and finishes the job.
 *
 * A store is filled once (tests/scavenge_fixture.h: streams hard-deleted,
 * soft-deleted and truncated between others that stay; sync durability,
 * 64 KiB segments) and fingerprinted.  Each case copies it afresh and forks
 * a child that opens the copy and scavenges it, and the child dies:
 *   - at each of the six steps of scavenge.c (EVS_SCAVENGE_CRASH_AT=1..6,
 *     an _exit right after the step: new file written, marker written,
 *     file renamed, index committed, index synced, marker removed), also
 *     with appends going on in another thread;
 *   - by SIGKILL at a random moment of a rate-limited run (EVS_CRASH_CYCLES
 *     cycles, default 12; EVS_SEED repeats a run), and one cycle in three
 *     the first reopen is killed too.
 * The parent then opens the copy and proves: every event the fingerprint
 * holds is readable at the same positions with the same bytes; `check` is
 * clean; no scavenge.json or .seg.scav is left; a scavenge to the end then
 * gives back exactly what a scavenge of an untouched copy gives back (the
 * log ends at the same size), and the events are still all there.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "scavenge_fixture.h"

static char *pristine;
static sf_snap before;
static uint64_t final_bytes;

static uint64_t log_bytes(evs_store *s) {
    evs_store_stats st;
    if (evs_store_get_stats(s, &st)) return 0;
    return st.log_bytes;
}

static void copy_store(const char *from, const char *to) {
    char cmd[9000];
    tu_rmrf(to);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", from, to);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy %s\n", from);
        exit(2);
    }
}

static volatile int stop_appends;

static void *appender(void *arg) {
    evs_store *s = arg;
    for (int i = 0; !__atomic_load_n(&stop_appends, __ATOMIC_RELAXED); i++) sf_append(s, "live-1", i);
    return NULL;
}

/* The child: open, (append meanwhile,) scavenge; exit 0 when it ran to the end. */
static void child(const char *dir, int step, uint64_t rate, int appends) {
    if (step) {
        char b[16];
        snprintf(b, sizeof b, "%d", step);
        setenv("EVS_SCAVENGE_CRASH_AT", b, 1);
    }
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 64 << 10);
    pthread_t t;
    if (appends) pthread_create(&t, NULL, appender, s);
    evs_scavenge_options o;
    memset(&o, 0, sizeof o);
    o.rate_bytes_per_sec = rate;
    int rc = evs_scavenge(s, &o, NULL);
    if (appends) {
        __atomic_store_n(&stop_appends, 1, __ATOMIC_RELAXED);
        pthread_join(t, NULL);
    }
    evs_store_close(s);
    _exit(rc ? 3 : 0);
}

static int leftovers(const char *dir) {
    char p[4200], cmd[4400];
    snprintf(p, sizeof p, "%s/scavenge.json", dir);
    if (access(p, F_OK) == 0) return 1;
    snprintf(cmd, sizeof cmd, "ls '%s'/log | grep -q '\\.scav$'", dir);
    return system(cmd) == 0;
}

/* After the crash: open, prove, finish, prove again. */
static void verify(const char *dir, const char *what) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 64 << 10);
    sf_snap now;
    char why[200] = "";
    CHECK_RC(sf_snapshot(s, &now), EVS_OK);
    if (!sf_same(&before, &now, why, sizeof why)) fprintf(stderr, "%s: %s\n", what, why);
    CHECK(why[0] == 0);
    sf_free(&now);
    evs_check_report rep;
    int rc = evs_store_check(s, &rep);
    if (rc) fprintf(stderr, "%s: check: %s\n", what, evs_errmsg());
    CHECK_RC(rc, EVS_OK);
    CHECK(!leftovers(dir));
    CHECK_RC(evs_scavenge(s, NULL, NULL), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    s = tu_open(dir, EVS_DURABILITY_SYNC, 64 << 10);
    /* appends that ran in the child add records (live-1 is never hidden) */
    uint64_t lb = log_bytes(s);
    CHECK(lb >= final_bytes);
    if (lb < final_bytes) fprintf(stderr, "%s: log holds %llu bytes, below %llu\n", what, (unsigned long long)lb,
                                  (unsigned long long)final_bytes);
    CHECK_RC(sf_snapshot(s, &now), EVS_OK);
    why[0] = 0;
    if (!sf_same(&before, &now, why, sizeof why)) fprintf(stderr, "%s, finished: %s\n", what, why);
    CHECK(why[0] == 0);
    sf_free(&now);
    CHECK_RC(evs_store_check(s, &rep), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
}

static int wait_child(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) {}
    return st;
}

int main(void) {
    const char *seed_env = getenv("EVS_SEED");
    unsigned seed = seed_env ? (unsigned)atoi(seed_env) : (unsigned)time(NULL);
    const char *cyc = getenv("EVS_CRASH_CYCLES");
    int cycles = cyc ? atoi(cyc) : 12;
    printf("seed %u\n", seed);
    srand(seed);
    pristine = tu_tempdir("scav-kill9");
    char *work = tu_tempdir("scav-kill9-work");
    evs_store *s = tu_open(pristine, EVS_DURABILITY_SYNC, 64 << 10);
    sf_populate(s, 120);
    for (int i = 0; i < 250; i++) sf_append(s, "keep-4", i);
    CHECK_RC(sf_snapshot(s, &before), EVS_OK);
    CHECK_RC(evs_store_close(s), EVS_OK);
    /* the reference: a scavenge nobody interrupts */
    copy_store(pristine, work);
    s = tu_open(work, EVS_DURABILITY_SYNC, 64 << 10);
    evs_scavenge_progress p;
    CHECK_RC(evs_scavenge(s, NULL, &p), EVS_OK);
    CHECK(p.segments_rewritten >= 3 && p.bytes_reclaimed > 0);
    CHECK_RC(evs_store_close(s), EVS_OK);
    s = tu_open(work, EVS_DURABILITY_SYNC, 64 << 10);
    final_bytes = log_bytes(s);
    CHECK_RC(evs_store_close(s), EVS_OK);

    /* every step, with and without appends going on */
    for (int appends = 0; appends < 2; appends++)
        for (int step = 1; step <= 6; step++) {
            copy_store(pristine, work);
            pid_t pid = fork();
            if (pid == 0) child(work, step, 0, appends);
            int st = wait_child(pid);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 86);
            char what[64];
            snprintf(what, sizeof what, "step %d%s", step, appends ? " with appends" : "");
            verify(work, what);
        }

    /* random kills of a rate-limited run; sometimes of the reopen too */
    for (int c = 0; c < cycles; c++) {
        copy_store(pristine, work);
        pid_t pid = fork();
        if (pid == 0) child(work, 0, 3u << 20, c & 1);
        struct timespec ts = {0, (long)(rand() % 250) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        wait_child(pid);
        if (c % 3 == 2) {
            pid = fork();
            if (pid == 0) child(work, 0, 0, 0);
            ts.tv_nsec = (long)(rand() % 20) * 1000000L;
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
            wait_child(pid);
        }
        char what[64];
        snprintf(what, sizeof what, "random kill %d", c);
        verify(work, what);
    }
    sf_free(&before);
    tu_rmrf(work);
    tu_rmrf(pristine);
    free(work);
    free(pristine);
    return TEST_REPORT();
}
