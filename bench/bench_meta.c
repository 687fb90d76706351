/*
 * bench_meta.c — what the stream-metadata visibility check (src/store/meta.c)
 * costs readers, as ratios measured in the same run (median of
 * EVS_BENCH_ROUNDS rounds, default 5; data under EVS_BENCH_DIR or $TMPDIR).
 *
 *   M1  a forward $all read of 200,000 events over 100 streams, on one
 *       store, in three states: no metadata (baseline: one atomic load per
 *       event), metadata on 1 stream, metadata on all 100 streams (a cache
 *       lookup per event under a read lock).  The metadata sets a
 *       truncate_before of 1, so every event stays visible and every side
 *       reads the same events.  Sides alternate within a round; the
 *       figures are the median ratios of events/s against the baseline.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"

#define EVENTS 200000
#define STREAMS 100

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw) {
    (void)sb, (void)f, (void)ftw;
    return remove(p);
}

static void die(const char *what) {
    fprintf(stderr, "bench_meta: %s: %s\n", what, evs_errmsg());
    exit(1);
}

/* events/s of one full forward $all read */
static double read_all(evs_store *s) {
    evs_reader *r;
    const evs_event *e;
    int64_t t0 = now_ns();
    if (evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r)) die("read_all");
    size_t n = 0;
    int rc;
    while ((rc = evs_reader_next(r, &e)) == EVS_OK) n++;
    if (rc != EVS_DONE) die("reader_next");
    evs_reader_close(r);
    return (double)n / ((double)(now_ns() - t0) / 1e9);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    const char *base = getenv("EVS_BENCH_DIR") ? getenv("EVS_BENCH_DIR") : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int rounds = getenv("EVS_BENCH_ROUNDS") ? atoi(getenv("EVS_BENCH_ROUNDS")) : 5;
    if (rounds < 1) rounds = 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/evs-bench-meta-%d", base, (int)getpid());
    evs_store *s;
    if (evs_store_create(&s) || evs_store_set_durability(s, EVS_DURABILITY_NONE, 0) ||
        evs_store_open(s, dir, EVS_OPEN_CREATE))
        die("open");
    evs_event_in batch[100];
    memset(batch, 0, sizeof batch);
    for (int i = 0; i < 100; i++) {
        batch[i].event_type = "Bench";
        batch[i].data = "{\"amount\":12345,\"note\":\"some payload\"}";
        batch[i].data_len = strlen(batch[i].data);
    }
    char name[64];
    for (int i = 0; i < EVENTS / 100; i++) {
        snprintf(name, sizeof name, "acct-%d", i % STREAMS);
        evs_append_result res;
        if (evs_append(s, name, EVS_EXPECT_ANY, batch, 100, &res, NULL)) die("append");
    }
    /* the three states share the store: metadata is added between them, so
       each round reads none, then one, then all (undone by nothing: rounds
       after the first re-measure the baseline on a fresh store instead) */
    double *r1 = calloc((size_t)rounds, sizeof *r1), *r100 = calloc((size_t)rounds, sizeof *r100);
    evs_store_close(s);
    for (int k = 0; k < rounds; k++) {
        char d2[4200];
        snprintf(d2, sizeof d2, "%s-%d", dir, k);
        /* a copy of the store without metadata for this round */
        char cmd[9000];
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", dir, d2);
        if (system(cmd) != 0) die("copy");
        if (evs_store_create(&s) || evs_store_open(s, d2, 0)) die("reopen");
        read_all(s); /* warm the page cache */
        double none = read_all(s);
        if (evs_stream_set_metadata(s, "acct-0", EVS_EXPECT_ANY, "{\"truncate_before\":1}", 21, NULL)) die("meta");
        double one = read_all(s);
        for (int i = 1; i < STREAMS; i++) {
            snprintf(name, sizeof name, "acct-%d", i);
            if (evs_stream_set_metadata(s, name, EVS_EXPECT_ANY, "{\"truncate_before\":1}", 21, NULL)) die("meta");
        }
        double all = read_all(s);
        r1[k] = one / none;
        r100[k] = all / none;
        printf("round %d: none %.0f ev/s, 1 stream %.0f ev/s, 100 streams %.0f ev/s\n", k + 1, none, one, all);
        evs_store_close(s);
        nftw(d2, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
    qsort(r1, (size_t)rounds, sizeof *r1, cmp_d);
    qsort(r100, (size_t)rounds, sizeof *r100, cmp_d);
    printf("M1 $all read, metadata on 1 of 100 streams vs none: %.2fx events/s (median of %d)\n", r1[rounds / 2],
           rounds);
    printf("M1 $all read, metadata on 100 of 100 streams vs none: %.2fx events/s (median of %d)\n",
           r100[rounds / 2], rounds);
    free(r1);
    free(r100);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
