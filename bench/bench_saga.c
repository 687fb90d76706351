/*
 * bench_saga.c — the saga layer's benchmarks (issue 10), each against a
 * baseline measured in the same run:
 *
 *   S   orders/s through the shop's order saga (examples/shop/sagas/order_saga.lua:
 *       reserve, authorize, ship — a carrier, a subscription group of 8,
 *       answers ShipmentScheduled —, capture, complete), in-process, durability
 *       sync, 8 saga workers: N orders are submitted by 8 clients and timed
 *       until the last saga completed.  Baseline: the same commands sent by
 *       8 clients without a saga (SubmitOrder, ReserveStock,
 *       AuthorizePayment, CreateShipment, ScheduleShipment, CapturePayment,
 *       CompleteOrder per order), same store, same N.  Rounds alternate the
 *       two; the ratio is the median of the per-round ratios (target >= 0.5).
 *   T   timer accuracy: rounds of 1,000 probe sagas (started over 2 s) whose
 *       only step waits 2 s for an answer that never comes, in a store where
 *       100,000 other instances wait with timers an hour away; lateness =
 *       when the timeout was recorded minus its deadline (from the log), and
 *       worker start minus deadline (the engine's histogram).  Baseline: the
 *       same probes in a store with no other timer, its engine open in the
 *       same process; rounds alternate, the ratio is the median of the
 *       per-round p99 ratios.  Durability none.
 *   M   memory per idle instance: RssAnon (/proc/self/status) and DIR/sagas/
 *       and log bytes grown while the 100,000 idle instances were created,
 *       once the engine is idle, divided by 100,000.
 *
 * Environment: EVS_BENCH_DIR (default /tmp), EVS_BENCH_QUICK=1 (smaller),
 * EVS_BENCH_ROUNDS (default 5), EVS_BENCH_ORDERS per round (default 1000),
 * EVS_BENCH_IDLE (default 100000), EVS_BENCH_ONLY=S or T (one of the two),
 * EVS_BENCH_SEGMENT (segment size of T's stores, bytes).  The load average
 * is printed with each part: on a shared machine it explains the rounds
 * whose workers all stall at once.
 */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "evstore_app.h"
#include "evstore_bus.h"
#include "evstore_saga.h"
#include "testutil.h"

#ifndef SHOP_SCRIPTS
#define SHOP_SCRIPTS "examples/shop"
#endif

#define CLIENTS 8

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double pct(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return n ? v[i] : 0;
}

static void print_load(const char *what) {
    FILE *f = fopen("/proc/loadavg", "r");
    char b[64] = "?";
    if (f && fgets(b, sizeof b, f)) b[strcspn(b, "\n")] = 0;
    if (f) fclose(f);
    printf("%s: load average %s\n", what, b);
}

static void die(const char *what) {
    fprintf(stderr, "bench_saga: %s: %s\n", what, evs_errmsg());
    exit(1);
}

static char *slurp(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", SHOP_SCRIPTS, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_saga: cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) exit(1);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static long rss_anon_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

static uint64_t dir_bytes(const char *path) {
    DIR *d = opendir(path);
    uint64_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[4600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        if (de->d_name[0] != '.' && stat(p, &st) == 0) n += (uint64_t)st.st_blocks * 512;
    }
    if (d) closedir(d);
    return n;
}

/* ------------------------------------------------------------ S: the shop */

static evs_store *store;
static evs_app *app;
static evs_bus *bus;
static evs_saga_engine *eng;

static int cmd(const char *json) {
    evs_command_result r;
    if (evs_app_execute_json(app, NULL, json, strlen(json), &r)) die("command");
    int o = r.outcome;
    if (o != EVS_CMD_ACCEPTED) fprintf(stderr, "bench_saga: %s -> %s\n", json, r.reason);
    evs_command_result_free(&r);
    return o;
}

/*
 * The carrier: a subscription group of CLIENTS members (competing consumers),
 * so the outside service answers as many shipments at once as the raw side
 * has clients; it answers with the shipment's correlation id.
 */
static void carrier_answer(const evs_event *ev) {
    char id[37], corr[37], json[512];
    evs_uuid_format(&ev->event_id, id);
    evs_uuid_format(&ev->correlation_id, corr);
    snprintf(json, sizeof json,
             "{\"command_id\":\"carrier-%s\",\"command_type\":\"ScheduleShipment\",\"aggregate_id\":\"%.*s\","
             "\"correlation_id\":\"%s\",\"data\":{\"carrier\":\"post\"}}",
             id, (int)ev->stream_len - 9, ev->stream + 9, corr);
    cmd(json);
}

static evs_group *carrier_group;
static evs_group_member *carrier_members[CLIENTS];
static pthread_t carrier_threads[CLIENTS];

static void *carrier_main(void *arg) {
    evs_group_member *m = arg;
    evs_delivery *dl;
    for (;;) {
        int rc = evs_group_next(m, 100, &dl);
        if (rc == EVS_ECLOSED) break;
        if (rc) continue;
        carrier_answer(&dl->event);
        evs_group_ack(m, dl->id);
        evs_delivery_free(dl);
    }
    return NULL;
}

static void carrier_start(void) {
    static const char *const created[] = {"ShipmentCreated"};
    static int created_group;
    if (!created_group) {
        evs_group_config gc;
        evs_group_config_init(&gc);
        gc.name = "carrier";
        gc.filter.event_types = created;
        gc.filter.n_event_types = 1;
        gc.from = EVS_SUB_FROM_NOW;
        gc.max_in_flight = 4;
        if (evs_group_create(bus, &gc)) die("carrier group");
        created_group = 1;
    } else if (evs_consumer_set_position(bus, "carrier", EVS_SUB_FROM_NOW)) {
        die("carrier position"); /* the raw side's shipments are not the carrier's business */
    }
    if (evs_group_open(bus, "carrier", NULL, &carrier_group)) die("carrier open");
    for (int i = 0; i < CLIENTS; i++) {
        char name[16];
        snprintf(name, sizeof name, "truck%d", i);
        if (evs_group_join(carrier_group, name, &carrier_members[i])) die("carrier join");
        pthread_create(&carrier_threads[i], NULL, carrier_main, carrier_members[i]);
    }
}

static void carrier_stop(void) {
    for (int i = 0; i < CLIENTS; i++) evs_group_cancel(carrier_members[i]);
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(carrier_threads[i], NULL);
        evs_group_leave(carrier_members[i]);
    }
    evs_group_close(carrier_group);
}

typedef struct client {
    int idx, first, n, raw;
} client;

static char side; /* 'r': orders of the raw side, 's': of the saga side (the saga skips 'r' orders) */

/* Create and fill orders [first, first + n) of the current side (not timed). */
static void prepare(int first, int n) {
    char json[512];
    for (int i = first; i < first + n; i++) {
        snprintf(json, sizeof json, "{\"command_type\":\"CreateOrder\",\"aggregate_id\":\"%c%d\",\"data\":{\"customer\":\"c\"}}",
                 side, i);
        cmd(json);
        /* a product of its own: the benchmark measures throughput, not contention on one stock */
        snprintf(json, sizeof json,
                 "{\"command_type\":\"AddItem\",\"aggregate_id\":\"%c%d\",\"data\":{\"sku\":\"%c%d\",\"quantity\":1,"
                 "\"unit_price\":\"4.10\"}}",
                 side, i, side, i);
        cmd(json);
        snprintf(json, sizeof json, "{\"command_type\":\"Restock\",\"aggregate_id\":\"%c%d\",\"data\":{\"quantity\":5}}", side, i);
        cmd(json);
    }
}

static void *client_main(void *arg) {
    client *c = arg;
    char json[512], id[32];
    for (int i = c->first + c->idx; i < c->first + c->n; i += CLIENTS) {
        snprintf(id, sizeof id, "%c%d", side, i);
        snprintf(json, sizeof json,
                 "{\"command_type\":\"SubmitOrder\",\"aggregate_id\":\"%s\",\"data\":{\"card\":\"tok_visa\","
                 "\"address\":\"1 Main St\"}}",
                 id);
        cmd(json);
        if (!c->raw) continue;
        /* the saga's commands, and the carrier's answer, one after the other */
        snprintf(json, sizeof json,
                 "{\"command_type\":\"ReserveStock\",\"aggregate_id\":\"%s\",\"data\":{\"order_id\":\"%s\",\"quantity\":1}}", id,
                 id);
        cmd(json);
        snprintf(json, sizeof json,
                 "{\"command_type\":\"AuthorizePayment\",\"aggregate_id\":\"%s\",\"data\":{\"order_id\":\"%s\",\"amount\":\"4.10\","
                 "\"card\":\"tok_visa\"}}",
                 id, id);
        cmd(json);
        snprintf(json, sizeof json,
                 "{\"command_type\":\"CreateShipment\",\"aggregate_id\":\"%s\",\"data\":{\"order_id\":\"%s\",\"address\":"
                 "\"1 Main St\"}}",
                 id, id);
        cmd(json);
        snprintf(json, sizeof json, "{\"command_type\":\"ScheduleShipment\",\"aggregate_id\":\"%s\",\"data\":{\"carrier\":\"post\"}}", id);
        cmd(json);
        snprintf(json, sizeof json, "{\"command_type\":\"CapturePayment\",\"aggregate_id\":\"%s\",\"data\":{}}", id);
        cmd(json);
        snprintf(json, sizeof json, "{\"command_type\":\"CompleteOrder\",\"aggregate_id\":\"%s\",\"data\":{\"payment_id\":\"%s\"}}",
                 id, id);
        cmd(json);
    }
    return NULL;
}

static uint64_t completed_sagas(void) {
    evs_saga_type_stats ts;
    size_t n;
    if (evs_saga_get_type_stats(eng, &ts, 1, &n) || n != 1) return 0;
    return ts.completed;
}

/* One run over orders [first, first + n): orders/s. */
static double last_appends, last_syncs; /* per order, of the last run */

static double shop_run(int first, int n, int raw) {
    side = raw ? 'r' : 's';
    prepare(first, n);
    uint64_t done0 = completed_sagas();
    evs_store_stats st0, st1;
    evs_store_get_stats(store, &st0);
    client cl[CLIENTS];
    pthread_t th[CLIENTS];
    int64_t t0 = now_ns();
    for (int i = 0; i < CLIENTS; i++) {
        cl[i] = (client){i, first, n, raw};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < CLIENTS; i++) pthread_join(th[i], NULL);
    if (!raw) {
        int64_t until = now_ns() + 600ll * 1000000000;
        while (completed_sagas() < done0 + (uint64_t)n && now_ns() < until) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (completed_sagas() < done0 + (uint64_t)n) {
            fprintf(stderr, "bench_saga: only %llu of %d sagas completed\n", (unsigned long long)(completed_sagas() - done0), n);
            exit(1);
        }
    }
    double rate = (double)n / ((double)(now_ns() - t0) / 1e9);
    evs_store_get_stats(store, &st1);
    last_appends = (double)(st1.appends - st0.appends) / n;
    last_syncs = (double)(st1.syncs - st0.syncs) / n;
    return rate;
}

static void shop_bench(const char *dir, int rounds, int orders) {
    char *src;
    size_t n;
    evs_store_create(&store);
    if (evs_store_open(store, dir, EVS_OPEN_CREATE) || evs_bus_open(store, &bus) || evs_app_open(store, bus, NULL, &app))
        die("open");
    static const char *const aggs[] = {"order", "inventory", "payment", "shipment"};
    for (int i = 0; i < 4; i++) {
        char file[64];
        snprintf(file, sizeof file, "%s.lua", aggs[i]);
        src = slurp(file, &n);
        if (evs_app_register_lua_aggregate(app, aggs[i], src, n)) die(file);
        free(src);
    }
    evs_saga_config sc;
    evs_saga_config_init(&sc);
    sc.workers = CLIENTS;
    if (evs_saga_engine_open(store, app, &sc, &eng)) die("engine");
    src = slurp("sagas/order_saga.lua", &n);
    /* the shop's saga, except that the raw side's orders ("r...") start none */
    const char *key = "key = \"stream_id\"";
    char *at = strstr(src, key);
    if (!at) die("order_saga.lua has no key = \"stream_id\"");
    const char *fn = "key = function(e) local id = e.stream:sub(7) if id:sub(1, 1) == 'r' then return nil end return id end";
    size_t nl = n - strlen(key) + strlen(fn);
    char *src2 = malloc(nl + 1);
    snprintf(src2, nl + 1, "%.*s%s%s", (int)(at - src), src, fn, at + strlen(key));
    if (evs_saga_register_lua(eng, "order", src2, nl, NULL)) die("order_saga.lua");
    free(src);
    free(src2);
    if (evs_saga_engine_start(eng)) die("start");
    double ratio[16], sr[16], rr[16];
    int next = 0;
    print_load("S");
    printf("S: %d rounds of %d orders per side, %d clients, %u saga workers, durability sync\n", rounds, orders, CLIENTS,
           sc.workers);
    /* warm up both sides (Lua sandboxes, caches, the carrier's record): not counted */
    shop_run(next, orders / 4 + 1, 1);
    next += orders / 4 + 1;
    carrier_start();
    shop_run(next, orders / 4 + 1, 0);
    next += orders / 4 + 1;
    carrier_stop();
    for (int r = 0; r < rounds; r++) {
        rr[r] = shop_run(next, orders, 1);
        double ra = last_appends, rsy = last_syncs;
        next += orders;
        carrier_start(); /* it answers only the saga side's shipments (the raw side schedules its own) */
        sr[r] = shop_run(next, orders, 0);
        next += orders;
        carrier_stop();
        ratio[r] = sr[r] / rr[r];
        printf("  S round %d/%d: raw commands %.0f orders/s (%.1f appends, %.2f log syncs per order), order saga %.0f sagas/s "
               "(%.1f appends, %.2f syncs); %.2fx\n",
               r + 1, rounds, rr[r], ra, rsy, sr[r], last_appends, last_syncs, ratio[r]);
    }
    double mr = median(ratio, rounds), ms = median(sr, rounds), mraw = median(rr, rounds);
    printf("S: order saga %.0f sagas/s vs the same commands without it %.0f orders/s: %.2fx (median of per-round ratios; "
           "target >= 0.5: %s)\n",
           ms, mraw, mr, mr >= 0.5 ? "met" : "NOT met");
    evs_saga_engine_stats es;
    if (evs_saga_get_engine_stats(eng, &es) == EVS_OK)
        printf("   engine: %llu runs, %llu commands, %llu transition batches, %llu conflicts\n",
               (unsigned long long)es.advances, (unsigned long long)es.commands, (unsigned long long)es.flushes,
               (unsigned long long)es.conflicts);
    evs_saga_engine_close(eng);
    evs_app_close(app);
    evs_bus_close(bus);
    evs_store_close(store);
}

/* ------------------------------------------------------ T, M: the timers */

static const char *const waiting_lua_fmt =
    "return {\n"
    "  start = { event_types = { '%s' }, key = 'stream_id' },\n"
    "  steps = { { name = 'wait', complete_on = { 'Never' }, timeout = %g, retry = { max_attempts = 1 } } },\n"
    "}\n";

/* One store with its engine: the types "idle" (waits an hour) and "probe" (waits 2 s). */
typedef struct tstore {
    evs_store *s;
    evs_app *a;
    evs_saga_engine *e;
    int probes;                   /* probe instances started so far */
} tstore;

static void timers_open(tstore *t, const char *dir) {
    memset(t, 0, sizeof *t);
    t->s = tu_open(dir, EVS_DURABILITY_NONE, getenv("EVS_BENCH_SEGMENT") ? strtoull(getenv("EVS_BENCH_SEGMENT"), NULL, 10) : 0);
    if (evs_app_open(t->s, NULL, NULL, &t->a)) die("app");
    evs_saga_config sc;
    evs_saga_config_init(&sc);
    sc.from = EVS_SUB_FROM_START;
    if (evs_saga_engine_open(t->s, t->a, &sc, &t->e)) die("engine");
    char src[512];
    snprintf(src, sizeof src, waiting_lua_fmt, "IdleStarted", 3600.0);
    if (evs_saga_register_lua(t->e, "idle", src, strlen(src), NULL)) die("idle");
    snprintf(src, sizeof src, waiting_lua_fmt, "ProbeStarted", 2.0);
    if (evs_saga_register_lua(t->e, "probe", src, strlen(src), NULL)) die("probe");
    if (evs_saga_engine_start(t->e)) die("start");
}

static void timers_close(tstore *t) {
    evs_saga_engine_close(t->e);
    evs_app_close(t->a);
    evs_store_close(t->s);
}

/* Start instances first..first+n-1 by appending their starting events (prefix-i streams), paced over spread_ms. */
static void start_many(tstore *t, const char *type, const char *prefix, int first, int n, int spread_ms) {
    evs_event_in ev = tu_event(type, "{}");
    evs_append_result ar;
    int64_t t0 = now_ns();
    for (int i = 0; i < n; i++) {
        char stream[64];
        snprintf(stream, sizeof stream, "%s-%d", prefix, first + i);
        if (evs_append(t->s, stream, EVS_EXPECT_ANY, &ev, 1, &ar, NULL)) die("append");
        if (spread_ms) {
            int64_t due = t0 + (int64_t)spread_ms * 1000000 * (i + 1) / n;
            while (now_ns() < due) {
                struct timespec ts = {0, 100000};
                nanosleep(&ts, NULL);
            }
        }
    }
}

static uint64_t probes_failed(tstore *t) {
    evs_saga_type_stats ts[4];
    size_t k;
    if (evs_saga_get_type_stats(t->e, ts, 4, &k)) return 0;
    for (size_t i = 0; i < k; i++)
        if (!strcmp(ts[i].type, "probe")) return ts[i].failed;
    return 0;
}

/* Lateness of probes first..first+n-1, from the log: SagaStepFailed.at - SagaStepWaiting.deadline (ms). */
static int probe_lateness(tstore *t, int first, int n, double *late) {
    int got = 0;
    for (int i = first; i < first + n; i++) {
        char stream[64];
        snprintf(stream, sizeof stream, "saga-probe-%d", i);
        evs_reader *r;
        const evs_event *ev;
        int64_t deadline = 0, at = 0;
        if (evs_read_stream(t->s, stream, 1, EVS_FORWARD, 0, &r)) continue;
        while (evs_reader_next(r, &ev) == EVS_OK) {
            json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
            if (ev->event_type_len == 15 && !memcmp(ev->event_type, "SagaStepWaiting", 15))
                deadline = json_integer_value(json_object_get(d, "deadline"));
            if (ev->event_type_len == 14 && !memcmp(ev->event_type, "SagaStepFailed", 14))
                at = json_integer_value(json_object_get(d, "at"));
            json_decref(d);
        }
        evs_reader_close(r);
        if (deadline && at) late[got++] = (double)(at - deadline) / 1e6;
    }
    return got;
}

/* One round of n probes started over 2 s on store t: p50, p99, max lateness in ms. */
static void probe_round(tstore *t, int n, double *p50, double *p99, double *max) {
    int first = t->probes;
    uint64_t failed0 = probes_failed(t);
    start_many(t, "ProbeStarted", "probe", first, n, 2000);
    t->probes += n;
    int64_t until = now_ns() + 120ll * 1000000000;
    while (probes_failed(t) < failed0 + (uint64_t)n && now_ns() < until) {
        struct timespec sl = {0, 20000000};
        nanosleep(&sl, NULL);
    }
    double *late = malloc((size_t)n * sizeof *late);
    int got = probe_lateness(t, first, n, late);
    *p50 = pct(late, got, 0.5);
    *p99 = pct(late, got, 0.99);
    *max = got ? late[got - 1] : 0;
    free(late);
    if (got != n) printf("   (only %d of %d probes timed out in time)\n", got, n);
}

/* The engine's histogram of worker start minus due: the bucket holding the p99, in ms (-1: the last). */
static double worker_p99(tstore *t) {
    evs_saga_engine_stats es;
    if (evs_saga_get_engine_stats(t->e, &es)) return 0;
    static const uint64_t bounds[EVS_SAGA_LATE_BUCKETS] = EVS_SAGA_LATE_BOUNDS_US;
    uint64_t total = 0, acc = 0;
    for (int i = 0; i <= EVS_SAGA_LATE_BUCKETS; i++) total += es.late_hist[i];
    for (int i = 0; i <= EVS_SAGA_LATE_BUCKETS; i++) {
        acc += es.late_hist[i];
        if (acc >= total * 99 / 100) return i < EVS_SAGA_LATE_BUCKETS ? (double)bounds[i] / 1000 : -1;
    }
    return 0;
}

static void timer_bench(const char *dir, int idle, int nprobes, int rounds) {
    char sub[4200], sdir[4300];
    tstore base, big;
    snprintf(sub, sizeof sub, "%s/base", dir);
    timers_open(&base, sub);
    snprintf(sub, sizeof sub, "%s/loaded", dir);
    timers_open(&big, sub);
    /* M: the idle instances, and what they cost */
    if (evs_saga_engine_wait_idle(big.e, 60000)) die("idle");
    long rss0 = rss_anon_kb();
    snprintf(sdir, sizeof sdir, "%s/sagas", sub);
    uint64_t disk0 = dir_bytes(sdir);
    evs_store_stats st0, st1;
    evs_store_get_stats(big.s, &st0);
    int64_t t0 = now_ns();
    start_many(&big, "IdleStarted", "idle", 0, idle, 0);
    if (evs_saga_engine_wait_idle(big.e, 600000)) die("wait for the idle instances");
    double secs = (double)(now_ns() - t0) / 1e9;
    long rss1 = rss_anon_kb();
    uint64_t disk1 = dir_bytes(sdir);
    evs_store_get_stats(big.s, &st1);
    evs_saga_engine_stats es;
    if (evs_saga_get_engine_stats(big.e, &es)) die("stats");
    printf("M: %d idle instances started in %.1f s (%.0f/s), %llu timers pending\n", idle, secs, idle / secs,
           (unsigned long long)es.timers_pending);
    /* the setup leaves some 200 MB dirty (log, index, DIR/sagas/): write it back now, so that the probe rounds do
       not measure the kernel's writeback stalling the mapped files 30 s later */
    int64_t ts0 = now_ns();
    sync();
    printf("M: sync after the setup: %.1f s\n", (double)(now_ns() - ts0) / 1e9);
    printf("M: per idle instance: %.0f bytes of RssAnon, %.0f bytes of DIR/sagas/, %.0f bytes of log (its SagaStarted and "
           "SagaStepWaiting, and the starting event)\n",
           (double)(rss1 - rss0) * 1024 / idle, (double)(disk1 - disk0) / idle,
           (double)(st1.log_bytes - st0.log_bytes) / idle);
    /* T: probe rounds alternate between the store with no other timer and the loaded one */
    print_load("T");
    double ratio[16], b99[16], l99[16];
    for (int r = 0; r < rounds; r++) {
        double b50, bmax, l50, lmax;
        probe_round(&base, nprobes, &b50, &b99[r], &bmax);
        probe_round(&big, nprobes, &l50, &l99[r], &lmax);
        ratio[r] = b99[r] > 0 ? l99[r] / b99[r] : 0;
        printf("  T round %d/%d: %d probes, lateness p50 %.2f / p99 %.2f / max %.2f ms with %d timers pending; "
               "p50 %.2f / p99 %.2f / max %.2f ms with none; p99 %.2fx\n",
               r + 1, rounds, nprobes, l50, l99[r], lmax, idle, b50, b99[r], bmax, ratio[r]);
    }
    double mr = median(ratio, rounds), ml = median(l99, rounds), mb = median(b99, rounds);
    printf("T: timeout recorded minus deadline, p99 %.2f ms with %d timers pending vs %.2f ms with none: %.2fx (median of "
           "per-round ratios)\n",
           ml, idle, mb, mr);
    double lw = worker_p99(&big), bw = worker_p99(&base);
    char lwb[32], bwb[32];
    snprintf(lwb, sizeof lwb, lw < 0 ? "> 5000" : "<= %.1f", lw);
    snprintf(bwb, sizeof bwb, bw < 0 ? "> 5000" : "<= %.1f", bw);
    printf("T: worker start minus deadline (the engine's histogram, all rounds), p99: %s ms loaded, %s ms baseline\n", lwb,
           bwb);
    timers_close(&big);
    timers_close(&base);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *q = getenv("EVS_BENCH_QUICK"), *r = getenv("EVS_BENCH_ROUNDS"), *o = getenv("EVS_BENCH_ORDERS"),
               *id = getenv("EVS_BENCH_IDLE");
    int quick = q && *q && strcmp(q, "0") != 0;
    int rounds = r ? atoi(r) : quick ? 3 : 5;
    if (rounds < 1) rounds = 1;
    if (rounds > 16) rounds = 16;
    int orders = o ? atoi(o) : quick ? 200 : 1000;
    int idle = id ? atoi(id) : quick ? 10000 : 100000;
    const char *base = getenv("EVS_BENCH_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench-saga-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char sub[4200];
    const char *only = getenv("EVS_BENCH_ONLY");
    snprintf(sub, sizeof sub, "%s/shop", dir);
    if (!only || strchr(only, 'S')) shop_bench(sub, rounds, orders);
    if (!only || strchr(only, 'T') || strchr(only, 'M')) timer_bench(dir, idle, quick ? 300 : 1000, quick ? 2 : rounds);
    tu_rmrf(dir);
    return tu_failures + tu_checks;
}
