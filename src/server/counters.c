/*
 * counters.c — the server's request counters (counters.h): the label
 * tables and the atomic adds.  No text is produced here; metrics.c renders.
 */
#include "server/counters.h"

static const char *const route_names[EVS_R_COUNT] = {
    "append", "read_stream", "read_event", "list_streams", "all", "subscribe",
    "ws", "metrics", "health", "info", "other",
    "projections", "subscriptions", "groups",
    "commands", "queries", "aggregates", "sagas",
    "ui",
    "schemas",
    "stream_meta",
    "keys",
    "scavenge",
};

static const unsigned status_codes[EVS_ST_NSLOTS - 1] = {
#define EVS__ST(code) code,
    EVS_SRV_STATUSES(EVS__ST)
#undef EVS__ST
};

static const char *const kind_names[EVS_ERRK_COUNT] = {
    "malformed_json", "invalid", "conflict", "limit", "io", "internal",
};

/* Upper bounds of the append latency buckets, in ns. */
static const int64_t lat_bounds[EVS_SRV_LAT_BUCKETS] = {
    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 5000000000,
};

static int status_slot(unsigned status) {
    for (int i = 0; i < EVS_ST_NSLOTS - 1; i++)
        if (status_codes[i] == status) return i;
    return EVS_ST_NSLOTS - 1;
}

void evs__count_add(_Atomic uint64_t *counter, uint64_t n) {
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

uint64_t evs__count_load(_Atomic uint64_t *counter) { return atomic_load_explicit(counter, memory_order_relaxed); }

void evs__count_answer(evs__counters *m, int route, unsigned status) {
    if (route < 0 || route >= EVS_R_COUNT) route = EVS_R_OTHER;
    evs__count_add(&m->requests[route][status_slot(status)], 1);
}

void evs__count_error(evs__counters *m, enum evs__err_kind kind) {
    if ((int)kind >= 0 && kind < EVS_ERRK_COUNT) evs__count_add(&m->errors[kind], 1);
}

void evs__count_append_latency(evs__counters *m, int64_t ns) {
    int b = 0;
    while (b < EVS_SRV_LAT_BUCKETS && ns > lat_bounds[b]) b++;
    evs__count_add(&m->lat_bucket[b], 1);
    evs__count_add(&m->lat_sum_ns, (uint64_t)(ns > 0 ? ns : 0));
    evs__count_add(&m->lat_count, 1);
}

const char *evs__route_name(int route) { return route >= 0 && route < EVS_R_COUNT ? route_names[route] : "other"; }

unsigned evs__status_of_slot(int slot) { return slot >= 0 && slot < EVS_ST_NSLOTS - 1 ? status_codes[slot] : 0; }

int64_t evs__latency_bound_ns(int bucket) { return lat_bounds[bucket]; }

const char *evs__err_kind_name(enum evs__err_kind kind) {
    return (int)kind >= 0 && kind < EVS_ERRK_COUNT ? kind_names[kind] : "internal";
}
