/*
 * bench_replay.c — replay speed of a Lua projection into a temporary state
 * (evs_proj_replay, issue 13 §5: the seed's 10,000 events in under 1 s,
 * target >= 100x that = 1,000,000 events/s) over N events, against two
 * baselines measured in the same run on the same events:
 *   - a plain read of the log (evs_read_all, counting): the floor any
 *     replay pays;
 *   - the live Lua projection (evs_proj_open_lua + poll from the start,
 *     committing state and checkpoint every 1000 events): what rebuilding
 *     the state the ordinary way costs.
 * Scripts: a counter that does not touch e.data, and a per-stream sum of
 * e.data.amount (decodes every event's data).  Also a what-if run of the
 * sum (1,000 positions excluded, 1,000 events inserted), and the decoding
 * of e.data into a table alone: the sandbox's direct decoder against its
 * jansson path on the same text.  Median of EVS_BENCH_RUNS runs (default 5).
 *
 * N is EVS_BENCH_REPLAY_EVENTS (default 1,000,000; EVS_BENCH_QUICK=1:
 * 100,000).  The store is built under $TMPDIR, durability none, removed at the end.
 */
#include <time.h>

#include "bus/lua_sandbox.h"
#include "evstore_bus.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *count_lua =
    "return { partition = 'none', init = { count = 0 },\n"
    "  handlers = { ['$any'] = function(s, e) s.count = s.count + 1 end } }";

static const char *sum_lua =
    "return { init = { sum = 0, n = 0 },\n"
    "  handlers = { Tick = function(s, e) s.sum = s.sum + e.data.amount; s.n = s.n + 1 end } }";

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double plain_read(evs_store *s, uint64_t n) {
    evs_reader *r;
    const evs_event *ev;
    double t0 = now_s();
    if (evs_read_all(s, 1, EVS_FORWARD, NULL, 0, &r)) exit(1);
    uint64_t c = 0, sum = 0;
    while (evs_reader_next(r, &ev) == EVS_OK) c++, sum += ev->data_len;
    evs_reader_close(r);
    double dt = now_s() - t0;
    if (c != n || !sum) {
        fprintf(stderr, "read %llu of %llu\n", (unsigned long long)c, (unsigned long long)n);
        exit(1);
    }
    return (double)c / dt;
}

static double replay(evs_bus *b, const char *src, const evs_replay_opts *o, uint64_t want) {
    evs_replay_result r;
    double t0 = now_s();
    if (evs_proj_replay(b, NULL, src, strlen(src), o, &r)) {
        fprintf(stderr, "replay: %s\n", evs_errmsg());
        exit(1);
    }
    double dt = now_s() - t0;
    if (r.events_applied != want) {
        fprintf(stderr, "replay applied %llu, wanted %llu\n", (unsigned long long)r.events_applied,
                (unsigned long long)want);
        exit(1);
    }
    evs_replay_result_free(&r);
    return (double)r.events_read / dt;
}

/* Decodes of one event's data per second, direct (tree 0) or through jansson (tree 1). */
static double decode(evs__sandbox *x, int tree, const char *text) {
    lua_State *L = evs__sandbox_state(x);
    size_t n = strlen(text);
    double t0 = now_s();
    for (int i = 0; i < 1000000; i++) {
        if ((tree ? evs__sandbox_push_json_tree(L, text, n) : evs__sandbox_push_json(L, text, n))) exit(1);
        lua_pop(L, 1);
    }
    return 1e6 / (now_s() - t0);
}

static double live(evs_bus *b, const char *src, int run, uint64_t n) {
    char name[64];
    snprintf(name, sizeof name, "bench-live-%d-%zu", run, strlen(src));
    evs_projection *p;
    if (evs_proj_open_lua(b, name, src, strlen(src), NULL, NULL, &p)) {
        fprintf(stderr, "proj: %s\n", evs_errmsg());
        exit(1);
    }
    double t0 = now_s();
    size_t got = 0, k;
    do {
        if (evs_proj_poll(p, 0, 0, &k)) exit(1);
        got += k;
    } while (k);
    evs_proj_close(p);
    double dt = now_s() - t0;
    if (got != n) exit(1);
    evs_consumer_delete(b, name);
    return (double)got / dt;
}

int main(void) {
    const char *q = getenv("EVS_BENCH_QUICK"), *ne = getenv("EVS_BENCH_REPLAY_EVENTS"), *nr = getenv("EVS_BENCH_RUNS");
    uint64_t n = ne ? strtoull(ne, NULL, 10) : (q && *q == '1') ? 100000 : 1000000;
    int runs = nr ? atoi(nr) : 5;
    if (n < 10000) n = 10000;
    (void)tu_checks, (void)tu_failures; /* testutil.h's, unused by a benchmark */
    if (runs < 1 || runs > 50) runs = 5;
    char *d = tu_tempdir("bench-replay");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
    evs_bus *b;
    if (evs_bus_open(s, &b)) return 1;
    printf("== bench_replay: %llu events, median of %d runs ==\n", (unsigned long long)n, runs);
    static evs_event_in ev[1000];
    static char data[1000][32];
    for (uint64_t i = 0; i < n / 1000; i++) {
        for (int k = 0; k < 1000; k++) {
            snprintf(data[k], sizeof data[k], "{\"amount\":%d,\"v\":1}", (int)((i * 1000 + (uint64_t)k) % 97));
            ev[k] = tu_event("Tick", data[k]);
        }
        char stream[32];
        snprintf(stream, sizeof stream, "s-%llu", (unsigned long long)(i % 100));
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, 1000, &r, NULL)) return 1;
    }
    n = evs_head(s);

    uint64_t *excl = malloc(1000 * sizeof *excl);
    evs_replay_insert *ins = calloc(1000, sizeof *ins);
    for (int i = 0; i < 1000; i++) {
        excl[i] = (uint64_t)i * (n / 1000) + 1;
        ins[i] = (evs_replay_insert){.after = (uint64_t)i * (n / 1000) + 7, .stream = "s-1", .event_type = "Tick",
                                     .data = "{\"amount\":5}", .data_len = 12};
    }
    evs_replay_opts wi = {0};
    wi.exclude_positions = excl;
    wi.n_exclude_positions = 1000;
    wi.inserts = ins;
    wi.n_inserts = 1000;

    if (getenv("EVS_BENCH_REPLAY_ONLY")) { /* for a profiler: the Lua counter's replay alone */
        for (int i = 0; i < runs; i++) printf("replay count %.0f/s\n", replay(b, count_lua, NULL, n));
        evs_bus_close(b);
        evs_store_close(s);
        tu_rmrf(d);
        return 0;
    }
    double rd[50], rc[50], rs[50], rw[50], lc[50], ls[50], ratio_c[50], ratio_s[50], ratio_lc[50], ratio_ls[50];
    double dd[50], dt[50], ratio_d[50];
    evs__sandbox *sbx;
    if (evs__sandbox_new(NULL, &sbx)) return 1;
    for (int i = 0; i < runs; i++) {
        rd[i] = plain_read(s, n);
        rc[i] = replay(b, count_lua, NULL, n);
        rs[i] = replay(b, sum_lua, NULL, n);
        rw[i] = replay(b, sum_lua, &wi, n);
        lc[i] = live(b, count_lua, i, n);
        ls[i] = live(b, sum_lua, i, n);
        ratio_c[i] = rc[i] / rd[i];
        ratio_s[i] = rs[i] / rd[i];
        ratio_lc[i] = rc[i] / lc[i];
        ratio_ls[i] = rs[i] / ls[i];
        dd[i] = decode(sbx, 0, data[7]);
        dt[i] = decode(sbx, 1, data[7]);
        ratio_d[i] = dd[i] / dt[i];
        printf("run %d: read %.0f/s, replay count %.0f/s, replay sum %.0f/s, what-if %.0f/s, live count %.0f/s, "
               "live sum %.0f/s\n",
               i + 1, rd[i], rc[i], rs[i], rw[i], lc[i], ls[i]);
    }
    double mrc = median(rc, runs), mrs = median(rs, runs);
    printf("plain read of the log:            %12.0f events/s\n", median(rd, runs));
    printf("replay, Lua counter:              %12.0f events/s (%.2fx of the read; %.2fx the live projection) "
           "target 1,000,000: %s\n",
           mrc, median(ratio_c, runs), median(ratio_lc, runs), mrc >= 1e6 ? "MET" : "MISSED");
    printf("replay, Lua per-stream sum:       %12.0f events/s (%.2fx of the read; %.2fx the live projection) "
           "target 1,000,000: %s\n",
           mrs, median(ratio_s, runs), median(ratio_ls, runs), mrs >= 1e6 ? "MET" : "MISSED");
    printf("what-if of the sum (1,000 out, 1,000 in): %12.0f events/s\n", median(rw, runs));
    printf("live Lua projection, counter:     %12.0f events/s\n", median(lc, runs));
    printf("live Lua projection, sum:         %12.0f events/s\n", median(ls, runs));
    printf("e.data decode (%s): direct %.0f/s, jansson %.0f/s: %.2fx\n", data[7], median(dd, runs),
           median(dt, runs), median(ratio_d, runs));
    evs__sandbox_free(sbx);
    free(excl);
    free(ins);
    evs_bus_close(b);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
    return 0;
}
