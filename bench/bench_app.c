/*
 * bench_app.c — the application layer's benchmarks (issue 9), each against
 * a baseline measured in the same run:
 *
 *   C1  commands/s with 1 client on 10,000 counter aggregates (durability
 *       sync), against raw evs_append of the same events (same streams,
 *       same data and metadata size, exact expected versions kept by the
 *       client) with 1 client;  C8  the same with 8 clients.  Rounds
 *       alternate raw and command runs on one store; the ratio is the
 *       median of the per-round ratios.  p95 command latency in-process
 *       comes from the 1-client command runs (median of the rounds' p95).
 *   L   load of one 10,000-event aggregate: with its snapshot (taken at the
 *       end of the stream) against folding every event; median of the
 *       loads' times, ratio = without / with.
 *   Q   a query with min_position right after a command, the projection
 *       run by its own thread (checkpoint_every 1): p50 / p99 of the wait.
 *
 * Environment: EVS_BENCH_DIR (default /tmp), EVS_BENCH_QUICK=1 (shorter
 * runs), EVS_BENCH_ROUNDS (default 5), EVS_BENCH_SECONDS per run (default 2),
 * EVS_BENCH_STATE_CACHE (the app's state_cache_entries; 0: commands load
 * every aggregate from snapshot and log).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "app_counter.h"
#include "evstore_app.h"
#include "evstore_bus.h"
#include "testutil.h"

#define AGGS 10000
#define MAX_LAT 400000

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what) {
    fprintf(stderr, "bench_app: %s: %s\n", what, evs_errmsg());
    exit(1);
}

static evs_store *store;
static evs_app *app;
static uint64_t versions[AGGS];        /* raw clients: each owns the aggregates i % clients == its index */
static double seconds = 2.0;

typedef struct client {
    int idx, nclients, raw;
    uint64_t rng;
    long ops;
    int64_t *lat;
    long nlat;
} client;

static pthread_barrier_t bar;

static void *client_main(void *arg) {
    client *c = arg;
    char data[32], id[16], stream[32];
    static _Atomic unsigned epoch;
    unsigned my_epoch = ++epoch; /* command ids differ between runs */
    /* metadata of the size the command bus writes: command_id and command_type plus the caller's */
    const char *meta = "{\"command_id\":\"0190a4e2-7b1c-7cc0-8000-000000000001\",\"command_type\":\"Add\",\"user\":\"bench\"}";
    pthread_barrier_wait(&bar);
    int64_t end = now_ns() + (int64_t)(seconds * 1e9);
    while (now_ns() < end) {
        c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
        int agg = (int)((c->rng % (AGGS / c->nclients)) * (uint64_t)c->nclients + (uint64_t)c->idx);
        snprintf(data, sizeof data, "{\"n\":%d}", 1 + (int)(c->rng % 1000));
        int64_t t0 = now_ns();
        if (c->raw) {
            snprintf(stream, sizeof stream, "counter-%d", agg);
            evs_uuid cz, corr;
            evs_uuid_v7(&cz);
            evs_uuid_v7(&corr);
            evs_event_in e = {0};
            e.event_type = "Added";
            e.data = data;
            e.data_len = strlen(data);
            e.metadata = meta;
            e.metadata_len = strlen(meta);
            e.causation_id = &cz;
            e.correlation_id = &corr;
            evs_append_result r;
            if (evs_append(store, stream, (int64_t)versions[agg], &e, 1, &r, NULL)) die("raw append");
            versions[agg] = r.last_stream_position;
        } else {
            snprintf(id, sizeof id, "%d", agg);
            char cid[48];
            snprintf(cid, sizeof cid, "c%u-%d-%ld-%llx", my_epoch, c->idx, c->ops, (unsigned long long)c->rng);
            evs_command cmd;
            evs_command_init(&cmd);
            cmd.command_id = cid; /* with an id, so the idempotency lookup is paid like a real client's */
            cmd.command_type = "Add";
            cmd.aggregate_id = id;
            cmd.data = data;
            cmd.data_len = strlen(data);
            cmd.metadata = "{\"user\":\"bench\"}";
            cmd.metadata_len = strlen(cmd.metadata);
            evs_command_result r;
            if (evs_app_execute(app, &cmd, &r)) die("command");
            if (r.outcome != EVS_CMD_ACCEPTED) {
                fprintf(stderr, "bench_app: command %s: %s\n", evs_command_outcome_name(r.outcome), r.reason);
                exit(1);
            }
            versions[agg] = r.version;
            evs_command_result_free(&r);
        }
        int64_t t1 = now_ns();
        if (c->nlat < MAX_LAT) c->lat[c->nlat++] = t1 - t0;
        c->ops++;
    }
    return NULL;
}

/* One run: events/s, and the run's p95 latency in ms and appends per group commit. */
static double run(int nclients, int raw, double *p95, double *per_commit, double *hit) {
    evs_store_stats st0, st1;
    evs_app_stats a0, a1;
    if (evs_store_get_stats(store, &st0) || evs_app_get_stats(app, &a0)) die("stats");
    client cl[8];
    pthread_t th[8];
    pthread_barrier_init(&bar, NULL, (unsigned)nclients + 1);
    for (int i = 0; i < nclients; i++) {
        cl[i] = (client){.idx = i, .nclients = nclients, .raw = raw, .rng = 88172645463325252ull + (uint64_t)i * 7919};
        cl[i].lat = malloc(MAX_LAT * sizeof(int64_t));
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    pthread_barrier_wait(&bar);
    int64_t t0 = now_ns();
    long ops = 0, nl = 0;
    int64_t *all = malloc((size_t)nclients * MAX_LAT * sizeof(int64_t));
    for (int i = 0; i < nclients; i++) {
        pthread_join(th[i], NULL);
        ops += cl[i].ops;
        memcpy(all + nl, cl[i].lat, (size_t)cl[i].nlat * sizeof(int64_t));
        nl += cl[i].nlat;
        free(cl[i].lat);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    qsort(all, (size_t)nl, sizeof *all, cmp_i);
    *p95 = nl ? (double)all[(size_t)((double)nl * 0.95)] / 1e6 : 0;
    free(all);
    if (evs_store_get_stats(store, &st1) || evs_app_get_stats(app, &a1)) die("stats");
    uint64_t hits = a1.state_cache_hits - a0.state_cache_hits, looks = hits + a1.state_cache_misses - a0.state_cache_misses;
    *hit = looks ? (double)hits / (double)looks : 0;
    *per_commit = st1.batches > st0.batches ? (double)(st1.appends - st0.appends) / (double)(st1.batches - st0.batches) : 0;
    pthread_barrier_destroy(&bar);
    return (double)ops / secs;
}

static void throughput(int rounds) {
    for (int clients = 1; clients <= 8; clients += 7) {
        double ratio[16], raw_r[16], cmd_r[16], p95c[16], p95r[16], pcr, pcc, hit;
        for (int i = 0; i < rounds; i++) {
            raw_r[i] = run(clients, 1, &p95r[i], &pcr, &hit);
            cmd_r[i] = run(clients, 0, &p95c[i], &pcc, &hit);
            ratio[i] = cmd_r[i] / raw_r[i];
            printf("  C%d round %d/%d: raw appends %.0f/s (p95 %.2f ms, %.1f per commit), commands %.0f/s (p95 %.2f ms, "
                   "%.1f per commit, %.0f%% from cached states); %.2fx\n",
                   clients, i + 1, rounds, raw_r[i], p95r[i], pcr, cmd_r[i], p95c[i], pcc, 100 * hit, ratio[i]);
        }
        double mr = median(ratio, rounds), mc = median(cmd_r, rounds), ma = median(raw_r, rounds);
        double mp = median(p95c, rounds), mpr = median(p95r, rounds);
        printf("C%d: commands %.0f/s vs raw appends of the same events %.0f/s: %.2fx (median of per-round ratios); "
               "p95 command %.2f ms, raw append %.2f ms\n",
               clients, mc, ma, mr, mp, mpr);
        fflush(stdout);
    }
}

static void load_bench(const char *dir, int reps) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    evs_app *a;
    if (evs_app_open(s, NULL, NULL, &a) || tc_register(a, "v1")) die("open");
    char data[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(data, sizeof data, "{\"n\":%d}", 1 + i % 97);
        evs_event_in e = tu_event("Added", data);
        evs_append_result r;
        if (evs_append(s, "counter-big", i, &e, 1, &r, NULL)) die("append");
    }
    uint64_t v;
    if (evs_aggregate_snapshot(a, "counter", "big", &v)) die("snapshot");
    double with[64], without[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        char *j;
        evs_load_info info;
        if (evs_aggregate_load_json(a, "counter", "big", EVS_LOAD_NO_SNAPSHOT, &j, NULL, &info)) die("load");
        free(j);
        without[i] = (double)info.duration_ns / 1e6;
        if (evs_aggregate_load_json(a, "counter", "big", 0, &j, NULL, &info)) die("load");
        free(j);
        with[i] = (double)info.duration_ns / 1e6;
        if (info.snapshot_version != 10000) die("the snapshot was not used");
    }
    double mw = median(with, reps), mo = median(without, reps);
    evs_app_stats st;
    evs_app_get_stats(a, &st);
    printf("L: load of a 10,000-event aggregate: %.3f ms with its snapshot, %.3f ms folding every event: %.0fx faster "
           "(median of %d loads); snapshot create %.3f ms\n",
           mw, mo, mo / mw, reps, (double)st.snapshot_create_ns / (double)(st.snapshots_created ? st.snapshots_created : 1) / 1e6);
    evs_app_close(a);
    evs_store_close(s);
}

static const char *totals_lua =
    "return { filter = { stream_prefix = 'counter-' }, init = { sum = 0 },\n"
    "  handlers = { Added = function(s, e) s.sum = s.sum + e.data.n end } }";

static evs_projection *qproj;
static _Atomic int qstop;

static void *proj_runner(void *arg) {
    (void)arg;
    while (!qstop) evs_proj_poll(qproj, 50, 0, NULL);
    return NULL;
}

static void query_bench(const char *dir, int n) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_SYNC, 0);
    evs_bus *b;
    if (evs_bus_open(s, &b)) die("bus");
    evs_app *a;
    if (evs_app_open(s, b, NULL, &a) || tc_register(a, "v1")) die("open");
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.checkpoint_every = 1;
    if (evs_proj_open_lua(b, "totals", totals_lua, strlen(totals_lua), NULL, &pc, &qproj)) die("projection");
    evs_query_def q = {"totals", "totals", NULL, 0, 10, 100};
    if (evs_app_register_query(a, &q)) die("query");
    pthread_t th;
    pthread_create(&th, NULL, proj_runner, NULL);
    int64_t *w = malloc((size_t)n * sizeof *w);
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i % 100);
        evs_command c;
        evs_command_init(&c);
        c.command_type = "Add";
        c.aggregate_id = id;
        c.data = "{\"n\":1}";
        c.data_len = 7;
        evs_command_result r;
        if (evs_app_execute(a, &c, &r) || r.outcome != EVS_CMD_ACCEPTED) die("command");
        evs_query_params p;
        memset(&p, 0, sizeof p);
        p.partition = "counter-0";
        p.min_position = r.last_position;
        p.timeout_ms = 5000;
        evs_query_result qr;
        int64_t t0 = now_ns();
        if (evs_app_query(a, "totals", &p, &qr)) die("query");
        w[i] = now_ns() - t0;
        evs_query_result_free(&qr);
        evs_command_result_free(&r);
    }
    qstop = 1;
    pthread_join(th, NULL);
    qsort(w, (size_t)n, sizeof *w, cmp_i);
    printf("Q: query with min_position right after a command (durability sync, projection on its own thread, "
           "checkpoint_every 1): wait p50 %.3f ms, p99 %.3f ms over %d queries\n",
           (double)w[n / 2] / 1e6, (double)w[(size_t)(n * 0.99)] / 1e6, n);
    free(w);
    evs_proj_close(qproj);
    evs_app_close(a);
    evs_bus_close(b);
    evs_store_close(s);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *q = getenv("EVS_BENCH_QUICK"), *r = getenv("EVS_BENCH_ROUNDS"), *sec = getenv("EVS_BENCH_SECONDS");
    int quick = q && *q && strcmp(q, "0") != 0;
    int rounds = r ? atoi(r) : 5;
    if (rounds < 1) rounds = 1;
    if (rounds > 16) rounds = 16;
    seconds = sec ? atof(sec) : quick ? 0.5 : 2.0;
    const char *base = getenv("EVS_BENCH_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench-app-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/c", dir);
    store = tu_open(sub, EVS_DURABILITY_SYNC, 0);
    evs_app_config cfg;
    evs_app_config_init(&cfg);
    const char *sc = getenv("EVS_BENCH_STATE_CACHE");
    if (sc && *sc) {
        char *end;
        unsigned long v = strtoul(sc, &end, 10);
        if (*end || v > UINT32_MAX) {
            fprintf(stderr, "bench_app: EVS_BENCH_STATE_CACHE=%s is not a number of entries\n", sc);
            return 2;
        }
        cfg.state_cache_entries = (uint32_t)v;
    }
    if (evs_app_open(store, NULL, &cfg, &app) || tc_register(app, "v1")) die("open");
    printf("bench_app: %d rounds of %.1f s per side, %d aggregates, durability sync, state cache %u entries\n", rounds,
           seconds, AGGS, cfg.state_cache_entries);
    throughput(rounds);
    evs_app_close(app);
    evs_store_close(store);
    snprintf(sub, sizeof sub, "%s/l", dir);
    load_bench(sub, quick ? 11 : 31);
    snprintf(sub, sizeof sub, "%s/q", dir);
    query_bench(sub, quick ? 200 : 1000);
    tu_rmrf(dir);
    return tu_failures + tu_checks; /* 0: the bench asserts nothing, it measures */
}
