/*
 * bench_dcb.c — what tags and the DCB conditional append cost, as ratios
 * measured in the same run (median of rounds; EVS_BENCH_ROUNDS, default 5,
 * EVS_BENCH_SECONDS per side, default 1.0; data under EVS_BENCH_DIR or
 * $TMPDIR).
 *
 *   C1  8 client threads append one event each call (sync durability, so
 *       group commit batches them), tagged "course:N" and "student:M" from
 *       pools of 1,000 and 10,000.  Plain: evs_append.  Conditional:
 *       evs_append_if with the course-capacity condition (two items:
 *       StudentSubscribed x course tag, StudentSubscribed x student tag)
 *       after the head read just before the call, as a decision that has
 *       just read would.  Both sides run in every round on the same store,
 *       alternating which goes first; the figure is the median of the
 *       per-round ratios conditional/plain appends per second (refused
 *       appends count as done: the writer did the work of deciding).
 *   R1  reading the same 100 events of a stream by stream (evs_read_stream)
 *       and by a tag only that stream's events carry (evs_read_all with a
 *       tag filter, served by the tag index); ratio tag/stream events/s.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <time.h>

#include "evstore.h"

#define CLIENTS 8

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int rm_cb(const char *p, const struct stat *sb, int f, struct FTW *ftw) {
    (void)sb, (void)f, (void)ftw;
    return remove(p);
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_dcb: %s: %s (%s)\n", what, evs_errmsg(), evs_errname(rc));
    exit(1);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

typedef struct client {
    evs_store *s;
    int conditional, id;
    int64_t until;
    uint64_t seed;
    long done, refused;
} client;

static void *client_main(void *arg) {
    client *c = arg;
    const char *types[] = {"StudentSubscribed"};
    char ct[32], st[32], stream[48];
    while (now_ns() < c->until) {
        int course = (int)(rnd(&c->seed) % 1000), student = (int)(rnd(&c->seed) % 10000);
        snprintf(ct, sizeof ct, "course:%d", course);
        snprintf(st, sizeof st, "student:%d", student);
        snprintf(stream, sizeof stream, "subscription-%d-%d", c->id, course);
        const char *tags[] = {ct, st};
        evs_event_in e;
        memset(&e, 0, sizeof e);
        e.event_type = "StudentSubscribed";
        e.data = "{\"seats\":1}";
        e.data_len = strlen(e.data);
        e.tags = tags;
        e.ntags = 2;
        evs_append_result r;
        int rc;
        if (c->conditional) {
            evs_query_item q[2] = {{types, 1, &tags[0], 1}, {types, 1, &tags[1], 1}};
            evs_append_condition cond = {q, 2, evs_head(c->s)};
            rc = evs_append_if(c->s, stream, EVS_EXPECT_ANY, &cond, &e, 1, &r, NULL);
        } else {
            rc = evs_append(c->s, stream, EVS_EXPECT_ANY, &e, 1, &r, NULL);
        }
        if (rc == EVS_ECONDITION) c->refused++;
        else if (rc) die("append", rc);
        c->done++;
    }
    return NULL;
}

static double run_side(evs_store *s, int conditional, double secs, uint64_t seed, long *refused) {
    pthread_t th[CLIENTS];
    client c[CLIENTS];
    int64_t t0 = now_ns();
    for (int i = 0; i < CLIENTS; i++) {
        c[i] = (client){s, conditional, i, t0 + (int64_t)(secs * 1e9), seed * 31 + (uint64_t)i * 7919 + 1, 0, 0};
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    long done = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        done += c[i].done;
        *refused += c[i].refused;
    }
    return (double)done / ((double)(now_ns() - t0) / 1e9);
}

int main(void) {
    const char *e = getenv("EVS_BENCH_ROUNDS");
    int rounds = e ? atoi(e) : 5;
    if (getenv("EVS_BENCH_QUICK") && atoi(getenv("EVS_BENCH_QUICK"))) rounds = 3;
    if (rounds < 1) rounds = 1;
    e = getenv("EVS_BENCH_SECONDS");
    double secs = e ? atof(e) : 1.0;
    const char *base = getenv("EVS_BENCH_DIR");
    if (!base || !*base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench-dcb-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char sdir[4200];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    evs_store *s;
    int rc;
    if ((rc = evs_store_create(&s)) || (rc = evs_store_open(s, sdir, EVS_OPEN_CREATE))) die("open", rc);

    double plain[64], cond[64], ratio[64], rs[64], rt[64], rratio[64];
    long refused = 0;
    if (rounds > 64) rounds = 64;
    printf("C1: 8 clients, 1-event appends, sync durability, %d rounds of %.1f s a side\n", rounds, secs);
    for (int r = 0; r < rounds; r++) {
        if (r % 2 == 0) {
            plain[r] = run_side(s, 0, secs, (uint64_t)r, &refused);
            cond[r] = run_side(s, 1, secs, (uint64_t)r + 100, &refused);
        } else {
            cond[r] = run_side(s, 1, secs, (uint64_t)r + 100, &refused);
            plain[r] = run_side(s, 0, secs, (uint64_t)r, &refused);
        }
        ratio[r] = cond[r] / plain[r];
        printf("  round %d: plain %.0f/s, conditional %.0f/s, ratio %.3f\n", r + 1, plain[r], cond[r], ratio[r]);
    }
    double mr = median(ratio, rounds), mp = median(plain, rounds), mc = median(cond, rounds);
    printf("C1 plain appends/s (median)          %.0f\n", mp);
    printf("C1 conditional appends/s (median)    %.0f   (%ld refused by their condition in all)\n", mc, refused);
    printf("C1 ratio conditional/plain (median)  %.3f   target >= 0.70: %s\n", mr, mr >= 0.7 ? "met" : "MISSED");

    /* R1: a stream of 100 events whose events alone carry tag "order:<n>" */
    const char *t[1];
    char tag[32], stream[32];
    for (int k = 0; k < 50; k++) {
        snprintf(tag, sizeof tag, "order:%d", k);
        snprintf(stream, sizeof stream, "order-%d", k);
        t[0] = tag;
        evs_event_in ev[100];
        for (int i = 0; i < 100; i++) {
            memset(&ev[i], 0, sizeof ev[i]);
            ev[i].event_type = "OrderLine";
            ev[i].data = "{\"sku\":\"A-1\",\"qty\":2,\"price\":1999}";
            ev[i].data_len = strlen(ev[i].data);
            ev[i].tags = t;
            ev[i].ntags = 1;
        }
        evs_append_result res;
        if ((rc = evs_append(s, stream, EVS_EXPECT_ANY, ev, 50, &res, NULL))) die("fill", rc);
        if ((rc = evs_append(s, stream, EVS_EXPECT_ANY, ev + 50, 50, &res, NULL))) die("fill", rc);
    }
    printf("R1: read 100 events of a stream, by stream and by its tag (%llu events in the store)\n",
           (unsigned long long)evs_head(s));
    for (int r = 0; r < rounds; r++) {
        for (int side = 0; side < 2; side++) {
            long n = 0;
            int64_t t0 = now_ns(), until = t0 + (int64_t)(secs / 2 * 1e9);
            for (int k = 0; now_ns() < until; k = (k + 1) % 50) {
                snprintf(tag, sizeof tag, "order:%d", k);
                snprintf(stream, sizeof stream, "order-%d", k);
                evs_reader *rd;
                if (side == 0) rc = evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &rd);
                else {
                    evs_filter f;
                    memset(&f, 0, sizeof f);
                    t[0] = tag;
                    f.tags = t;
                    f.n_tags = 1;
                    rc = evs_read_all(s, 1, EVS_FORWARD, &f, 0, &rd);
                }
                if (rc) die("read", rc);
                const evs_event *ev;
                long got = 0;
                while ((rc = evs_reader_next(rd, &ev)) == EVS_OK) got++;
                evs_reader_close(rd);
                if (rc != EVS_DONE || got != 100) {
                    fprintf(stderr, "bench_dcb: read %ld events, wanted 100\n", got);
                    return 1;
                }
                n += got;
            }
            double rate = (double)n / ((double)(now_ns() - t0) / 1e9);
            if (side == 0) rs[r] = rate;
            else rt[r] = rate;
        }
        rratio[r] = rt[r] / rs[r];
        printf("  round %d: by stream %.0f ev/s, by tag %.0f ev/s, ratio %.3f\n", r + 1, rs[r], rt[r], rratio[r]);
    }
    double ms = median(rs, rounds), mt = median(rt, rounds), mrr = median(rratio, rounds);
    printf("R1 by stream events/s (median)       %.0f\n", ms);
    printf("R1 by tag events/s (median)          %.0f\n", mt);
    printf("R1 ratio tag/stream (median)         %.3f\n", mrr);
    if ((rc = evs_store_close(s))) die("close", rc);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
