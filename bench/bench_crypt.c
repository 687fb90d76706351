/*
 * bench_crypt.c — what crypto-shredding (src/store/crypt.c) costs appends
 * and reads, as ratios against plaintext measured in the same run (median
 * of EVS_BENCH_ROUNDS rounds, default 5; data under EVS_BENCH_DIR or
 * $TMPDIR; EVS_BENCH_QUICK=1 for a smoke run).
 *
 * Both sides run in one store, on two streams that differ only in their
 * metadata: "plain-…" has none, "enc-…" has "$encrypt": "stream" (one
 * subject, its key cached after the first append).  Event data is a
 * 200-byte JSON object.  Sides alternate within a round.
 *   A1    1-event appends, durability none (the CPU cost of sealing)
 *   A100  100-event appends, durability none
 *   S1    1-event appends, durability sync (fdatasync per append)
 *   S100  100-event appends, durability sync
 *   R     a forward read of a whole stream (events/s; opening every event)
 * Printed: events/s of each side and the ratio encrypted / plaintext.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evstore.h"
#include "evstore_crypt.h"

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
    fprintf(stderr, "bench_crypt: %s: %s\n", what, evs_errmsg());
    exit(1);
}

static char DATA[256];

static evs_store *open_store(const char *dir, evs_durability d) {
    evs_store *s;
    uint8_t k[32];
    memset(k, 0x42, sizeof k);
    if (evs_store_create(&s) || evs_store_set_master_key(s, k) || evs_store_set_durability(s, d, 0) ||
        evs_store_open(s, dir, EVS_OPEN_CREATE))
        die("open");
    return s;
}

/* events/s of `appends` appends of `per` events to stream */
static double append_rate(evs_store *s, const char *stream, int appends, int per) {
    evs_event_in ev[100];
    for (int i = 0; i < per; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        ev[i].event_type = "Measured";
        ev[i].data = DATA;
        ev[i].data_len = strlen(DATA);
    }
    evs_append_result r;
    int64_t t0 = now_ns();
    for (int i = 0; i < appends; i++)
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, (size_t)per, &r, NULL)) die("append");
    return (double)appends * per * 1e9 / (double)(now_ns() - t0);
}

static double read_rate(evs_store *s, const char *stream) {
    evs_reader *r;
    const evs_event *e;
    int64_t t0 = now_ns();
    if (evs_read_stream(s, stream, 1, EVS_FORWARD, 0, &r)) die("read");
    size_t n = 0;
    int rc;
    while ((rc = evs_reader_next(r, &e)) == EVS_OK) n += e->data_len > 0;
    if (rc != EVS_DONE) die("read next");
    evs_reader_close(r);
    return (double)n * 1e9 / (double)(now_ns() - t0);
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAXR 15

int main(void) {
    const char *base = getenv("EVS_BENCH_DIR");
    if (!base || !*base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    int quick = getenv("EVS_BENCH_QUICK") && atoi(getenv("EVS_BENCH_QUICK"));
    int rounds = getenv("EVS_BENCH_ROUNDS") ? atoi(getenv("EVS_BENCH_ROUNDS")) : (quick ? 3 : 5);
    if (rounds < 1) rounds = 1;
    if (rounds > MAXR) rounds = MAXR;
    int n1 = quick ? 2000 : 20000, n100 = quick ? 50 : 400, s1 = quick ? 100 : 500, s100 = quick ? 20 : 100;
    snprintf(DATA, sizeof DATA, "{\"customer\":\"c-000042\",\"name\":\"Alice Example\",\"email\":"
                                "\"alice@example.org\",\"address\":\"1 Long Street, Springfield\",\"items\":"
                                "[1,2,3,4,5,6,7,8],\"total\":12345,\"note\":\"%s\"}",
             "padding-padding-padding-padding-padd");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench-crypt-%d", base, (int)getpid());
    const char *names[5] = {"A1 1-event appends, none", "A100 100-event appends, none", "S1 1-event appends, sync",
                            "S100 100-event appends, sync", "R stream read"};
    double plain[5][MAXR], enc[5][MAXR], ratio[5][MAXR];
    printf("bench_crypt: %d rounds; data %zu bytes; encrypted = \"$encrypt\": \"stream\" (XChaCha20-Poly1305)\n",
           rounds, strlen(DATA));
    for (int r = 0; r < rounds; r++) {
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        evs_store *s = open_store(dir, EVS_DURABILITY_NONE);
        char ps[64], es[64];
        snprintf(ps, sizeof ps, "plain-%d", r);
        snprintf(es, sizeof es, "enc-%d", r);
        const char *meta = "{\"$encrypt\":\"stream\"}";
        if (evs_stream_set_metadata(s, es, EVS_EXPECT_ANY, meta, strlen(meta), NULL)) die("metadata");
        append_rate(s, es, 1, 1); /* the key is created once, outside the timing */
        int order = r % 2;        /* alternate which side goes first */
        for (int side = 0; side < 2; side++) {
            int e = side ^ order;
            double a1 = append_rate(s, e ? es : ps, n1, 1), a100 = append_rate(s, e ? es : ps, n100, 100);
            (e ? enc : plain)[0][r] = a1;
            (e ? enc : plain)[1][r] = a100;
        }
        for (int side = 0; side < 2; side++) {
            int e = side ^ order;
            (e ? enc : plain)[4][r] = read_rate(s, e ? es : ps);
        }
        if (evs_store_close(s)) die("close");
        s = open_store(dir, EVS_DURABILITY_SYNC);
        for (int side = 0; side < 2; side++) {
            int e = side ^ order;
            (e ? enc : plain)[2][r] = append_rate(s, e ? es : ps, s1, 1);
            (e ? enc : plain)[3][r] = append_rate(s, e ? es : ps, s100, 100);
        }
        if (evs_store_close(s)) die("close");
        for (int w = 0; w < 5; w++) ratio[w][r] = enc[w][r] / plain[w][r];
    }
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    for (int w = 0; w < 5; w++)
        printf("  %-30s plaintext %10.0f ev/s  encrypted %10.0f ev/s  ratio %.2f (median of %d)\n", names[w],
               median(plain[w], rounds), median(enc[w], rounds), median(ratio[w], rounds), rounds);
    return 0;
}
