/*
 * bench_scavenge.c — what a scavenge (src/store/scavenge.c) delivers and
 * what it costs appends, measured in the same run (median of
 * EVS_BENCH_ROUNDS rounds, default 3; data under EVS_BENCH_DIR or $TMPDIR).
 *
 * A template store (sync durability, 1 MiB segments) holds 40,000 events
 * of about 450 bytes over 40 streams, appended in atomic appends of 50;
 * then half of the streams are hard-deleted, so about half of the log is
 * hidden.  Each round copies the template three times and measures:
 *   S0  append latency alone: one thread appends single events (sync) for
 *       the same wall time a scavenge takes, no scavenge (the baseline);
 *   S1  the same appends while an uncapped scavenge runs: p99 latency as
 *       a ratio to S0's, and reclaim throughput: segment bytes examined
 *       per second and bytes given back per second;
 *   S2  the same with the scavenge capped at 4 MB/s (read plus written).
 * Prints p50/p99 of each side, the ratios, and the throughputs.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"

#define EVENTS 40000
#define STREAMS 40
#define PER_APPEND 50
#define SEGMENT (1u << 20)
#define RATE_CAP (4u * 1000 * 1000)

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw) {
    (void)sb, (void)f, (void)ftw;
    return remove(p);
}

static void rmrf(const char *d) { nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static void die(const char *what) {
    fprintf(stderr, "bench_scavenge: %s: %s\n", what, evs_errmsg());
    exit(1);
}

static evs_store *open_store(const char *dir) {
    evs_store *s;
    if (evs_store_create(&s) || evs_store_set_segment_size(s, SEGMENT) ||
        evs_store_set_durability(s, EVS_DURABILITY_SYNC, 0) || evs_store_open(s, dir, EVS_OPEN_CREATE))
        die(dir);
    return s;
}

static void make_template(const char *dir) {
    evs_store *s = open_store(dir);
    char data[512];
    evs_event_in ev[PER_APPEND];
    for (int i = 0; i < EVENTS / PER_APPEND; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "s%d-%d", i % STREAMS, i % STREAMS);
        snprintf(data, sizeof data, "{\"i\":%d,\"pad\":\"%0400d\"}", i, i);
        for (int k = 0; k < PER_APPEND; k++) {
            memset(&ev[k], 0, sizeof ev[k]);
            ev[k].event_type = "Bench";
            ev[k].data = data;
            ev[k].data_len = strlen(data);
        }
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, PER_APPEND, &r, NULL)) die("append");
    }
    for (int k = 0; k < STREAMS; k += 2) {
        char stream[32];
        snprintf(stream, sizeof stream, "s%d-%d", k, k);
        if (evs_stream_delete(s, stream, EVS_EXPECT_ANY, 1)) die("delete");
    }
    /* a few more appends so the hidden events' segments are sealed and synced past */
    for (int i = 0; i < 40; i++) {
        evs_append_result r;
        if (evs_append(s, "tail-1", EVS_EXPECT_ANY, ev, PER_APPEND, &r, NULL)) die("append");
    }
    if (evs_store_close(s)) die("close");
}

static void copy_store(const char *from, const char *to) {
    char cmd[9000];
    rmrf(to);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", from, to);
    if (system(cmd) != 0) die("cp");
}

typedef struct appender {
    evs_store *s;
    int64_t until;            /* stop at this time (0: when *done) */
    const int *done;
    int64_t *lat;
    size_t n, cap;
} appender;

static void *append_loop(void *arg) {
    appender *a = arg;
    const char *data = "{\"x\":1}";
    evs_event_in e;
    memset(&e, 0, sizeof e);
    e.event_type = "Live";
    e.data = data;
    e.data_len = strlen(data);
    for (;;) {
        int64_t t0 = now_ns();
        if (a->until ? t0 >= a->until : __atomic_load_n(a->done, __ATOMIC_ACQUIRE)) break;
        evs_append_result r;
        if (evs_append(a->s, "live-1", EVS_EXPECT_ANY, &e, 1, &r, NULL)) die("live append");
        if (a->n < a->cap) a->lat[a->n++] = now_ns() - t0;
    }
    return NULL;
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_d(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double pct(int64_t *v, size_t n, double p) {
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1));
    return (double)v[i] / 1000.0; /* us */
}

typedef struct side {
    double p50, p99, examined_mbs, reclaimed_mbs, secs;
    size_t appends;
} side;

/* One side: appends for `secs` alone (rate < 0), or while a scavenge at `rate` runs. */
static side run_side(const char *dir, int64_t rate, double secs) {
    side out;
    memset(&out, 0, sizeof out);
    evs_store *s = open_store(dir);
    int done = 0;
    appender a = {.s = s, .done = &done, .cap = 1u << 20};
    a.lat = malloc(a.cap * sizeof *a.lat);
    if (rate < 0) a.until = now_ns() + (int64_t)(secs * 1e9);
    pthread_t th;
    pthread_create(&th, NULL, append_loop, &a);
    if (rate >= 0) {
        evs_scavenge_options o;
        memset(&o, 0, sizeof o);
        o.rate_bytes_per_sec = (uint64_t)rate;
        evs_scavenge_progress p;
        int64_t t0 = now_ns();
        if (evs_scavenge(s, &o, &p)) die("scavenge");
        out.secs = (double)(now_ns() - t0) / 1e9;
        out.examined_mbs = (double)p.bytes_examined / 1e6 / out.secs;
        out.reclaimed_mbs = (double)p.bytes_reclaimed / 1e6 / out.secs;
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    } else {
        out.secs = secs;
    }
    pthread_join(th, NULL);
    out.appends = a.n;
    out.p50 = pct(a.lat, a.n, 0.50);
    out.p99 = pct(a.lat, a.n, 0.99);
    free(a.lat);
    if (evs_store_close(s)) die("close");
    return out;
}

static double med(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

int main(void) {
    const char *base = getenv("EVS_BENCH_DIR");
    if (!base || !*base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    const char *re = getenv("EVS_BENCH_ROUNDS");
    int rounds = re ? atoi(re) : 3;
    if (rounds < 1) rounds = 1;
    if (rounds > 15) rounds = 15;
    char tpl[4096], work[4200];
    snprintf(tpl, sizeof tpl, "%s/evs-bench-scav-XXXXXX", base);
    if (!mkdtemp(tpl)) die("mkdtemp");
    snprintf(work, sizeof work, "%s-work", tpl);
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s/store", tpl);
    make_template(tdir);

    double r_p99_fast[15], r_p99_cap[15], ex_fast[15], rc_fast[15], ex_cap[15], rc_cap[15];
    double b_p99[15], f_p99[15], c_p99[15], b_p50[15], f_p50[15], c_p50[15];
    for (int r = 0; r < rounds; r++) {
        copy_store(tdir, work);
        side fast = run_side(work, 0, 0);
        copy_store(tdir, work);
        side base_s = run_side(work, -1, fast.secs < 1.0 ? 1.0 : fast.secs);
        copy_store(tdir, work);
        side cap = run_side(work, RATE_CAP, 0);
        b_p99[r] = base_s.p99, f_p99[r] = fast.p99, c_p99[r] = cap.p99;
        b_p50[r] = base_s.p50, f_p50[r] = fast.p50, c_p50[r] = cap.p50;
        r_p99_fast[r] = fast.p99 / base_s.p99;
        r_p99_cap[r] = cap.p99 / base_s.p99;
        ex_fast[r] = fast.examined_mbs, rc_fast[r] = fast.reclaimed_mbs;
        ex_cap[r] = cap.examined_mbs, rc_cap[r] = cap.reclaimed_mbs;
        printf("round %d: baseline p50 %.0f us p99 %.0f us (%zu appends); uncapped %.2f s p99 %.0f us "
               "(%zu appends); capped %.2f s p99 %.0f us (%zu appends)\n",
               r + 1, base_s.p50, base_s.p99, base_s.appends, fast.secs, fast.p99, fast.appends, cap.secs, cap.p99,
               cap.appends);
        fflush(stdout);
    }
    printf("S0 appends alone:            p50 %.0f us, p99 %.0f us\n", med(b_p50, rounds), med(b_p99, rounds));
    printf("S1 during uncapped scavenge: p50 %.0f us, p99 %.0f us, p99 ratio %.2fx; examined %.1f MB/s, "
           "reclaimed %.1f MB/s\n", med(f_p50, rounds), med(f_p99, rounds), med(r_p99_fast, rounds),
           med(ex_fast, rounds), med(rc_fast, rounds));
    printf("S2 during scavenge at 4 MB/s: p50 %.0f us, p99 %.0f us, p99 ratio %.2fx; examined %.1f MB/s, "
           "reclaimed %.1f MB/s\n", med(c_p50, rounds), med(c_p99, rounds), med(r_p99_cap, rounds),
           med(ex_cap, rounds), med(rc_cap, rounds));
    printf("(median of %d rounds)\n", rounds);
    rmrf(work);
    rmrf(tpl);
    return 0;
}
