/*
 * bench_bus.c — consumer benchmarks (issue 4):
 *   1. catch-up subscription over N events with a trivial handler
 *      (target >= 3,000,000 events/s in-process)
 *   2. a Lua counter projection over the same events (target >= 500,000/s)
 *   3. rebuild of that projection (seconds)
 *   4. live delivery latency, append acknowledgement -> handler, p50/p99
 *
 * N is EVS_BENCH_BUS_EVENTS (default 1,000,000; EVS_BENCH_QUICK=1: 100,000).
 * The store is built in $EVS_BENCH_DIR (default /tmp) with durability none
 * and removed at the end.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "evstore_bus.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int count_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ev, (void)err, (void)cap;
    (*(uint64_t *)ctx)++;
    return 0;
}

static const char *counter_lua =
    "return { partition = 'none', init = { count = 0 },\n"
    "  handlers = { ['$any'] = function(s, e) s.count = s.count + 1 end } }";

/* live latency: the handler records now - the append's acknowledgement time */
#define LAT_N 2000
static _Atomic int64_t ack_ns;
static int64_t lat[LAT_N];
static _Atomic int nlat;

static int64_t mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int lat_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx, (void)ev, (void)err, (void)cap;
    int i = atomic_load(&nlat);
    int64_t d = mono() - atomic_load(&ack_ns);
    if (i < LAT_N) lat[i] = d > 0 ? d : 0; /* the handler may run before the appender is woken */
    atomic_store(&nlat, i + 1);
    return 0;
}

static evs_subscription *lat_sub;
static _Atomic int lat_stop;

static void *lat_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&lat_stop)) {
        size_t n;
        if (evs_sub_poll(lat_sub, 100, 0, &n) != EVS_OK) break;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    const char *q = getenv("EVS_BENCH_QUICK");
    const char *ne = getenv("EVS_BENCH_BUS_EVENTS");
    uint64_t n = ne ? strtoull(ne, NULL, 10) : (q && *q == '1') ? 100000 : 1000000;
    if (n < 1000) n = 1000;
    char *d = tu_tempdir("bench-bus");
    evs_store *s = tu_open(d, EVS_DURABILITY_NONE, 0);
    evs_bus *b;
    if (evs_bus_open(s, &b)) {
        fprintf(stderr, "bus: %s\n", evs_errmsg());
        return 1;
    }
    printf("== bench_bus: %llu events ==\n", (unsigned long long)n);
    double t0 = now_s();
    static evs_event_in ev[1000];
    for (int i = 0; i < 1000; i++) ev[i] = tu_event("Tick", "{\"v\":1}");
    for (uint64_t i = 0; i < n / 1000; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "s-%llu", (unsigned long long)(i % 100));
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, 1000, &r, NULL)) {
            fprintf(stderr, "append: %s\n", evs_errmsg());
            return 1;
        }
    }
    n = evs_head(s);
    printf("setup: %llu events appended in %.2f s\n", (unsigned long long)n, now_s() - t0);

    /* 1. catch-up */
    evs_sub_config c;
    evs_sub_config_init(&c);
    c.name = "bench-catchup";
    c.checkpoint_every = 100000;
    uint64_t cnt = 0;
    evs_subscription *sub;
    if (evs_sub_open(b, &c, count_handler, &cnt, &sub)) return 1;
    t0 = now_s();
    size_t got;
    if (evs_sub_poll(sub, 0, 0, &got)) return 1;
    double dt = now_s() - t0;
    evs_sub_close(sub);
    printf("catch-up subscription: %llu events in %.3f s = %.0f events/s (target 3,000,000) %s\n",
           (unsigned long long)cnt, dt, (double)cnt / dt, (double)cnt / dt >= 3e6 ? "MET" : "MISSED");

    /* 2. Lua counter projection */
    evs_proj_config pc;
    evs_proj_config_init(&pc);
    pc.checkpoint_every = 100000;
    evs_projection *p;
    if (evs_proj_open_lua(b, "bench-counter", counter_lua, strlen(counter_lua), NULL, &pc, &p)) {
        fprintf(stderr, "lua: %s\n", evs_errmsg());
        return 1;
    }
    t0 = now_s();
    if (evs_proj_poll(p, 0, 0, &got)) return 1;
    if (evs_proj_checkpoint(p)) return 1;
    dt = now_s() - t0;
    printf("Lua counter projection: %zu events in %.3f s = %.0f events/s (target 500,000) %s\n", got, dt,
           (double)got / dt, (double)got / dt >= 5e5 ? "MET" : "MISSED");

    /* 3. rebuild */
    t0 = now_s();
    if (evs_proj_rebuild(p, 0) || evs_proj_poll(p, 0, 0, &got)) return 1;
    dt = now_s() - t0;
    evs_proj_status st;
    evs_proj_get_status(p, &st);
    printf("rebuild of the Lua projection: %zu events in %.3f s (swapped: %s)\n", got, dt,
           st.rebuilding ? "no" : "yes");
    evs_proj_close(p);

    /* 4. live latency */
    evs_sub_config_init(&c);
    c.name = "bench-live";
    c.from = EVS_SUB_FROM_NOW;
    if (evs_sub_open(b, &c, lat_handler, NULL, &lat_sub)) return 1;
    pthread_t th;
    pthread_create(&th, NULL, lat_thread, NULL);
    for (int i = 0; i < LAT_N; i++) {
        evs_event_in e = tu_event("Ping", "{}");
        evs_append_result r;
        if (evs_append(s, "live-1", EVS_EXPECT_ANY, &e, 1, &r, NULL)) return 1;
        atomic_store(&ack_ns, mono());
        while (atomic_load(&nlat) <= i) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    atomic_store(&lat_stop, 1);
    pthread_join(th, NULL);
    evs_sub_close(lat_sub);
    qsort(lat, LAT_N, sizeof lat[0], cmp64);
    printf("live delivery latency (append ack -> handler): p50 %.1f us, p99 %.1f us\n", (double)lat[LAT_N / 2] / 1e3,
           (double)lat[LAT_N * 99 / 100] / 1e3);

    evs_bus_close(b);
    evs_store_close(s);
    tu_rmrf(d);
    free(d);
    (void)tu_checks, (void)tu_failures;
    return 0;
}
