/*
 * counters.h — what the server counts about its HTTP requests: answers by
 * route and status, error kinds, append latency, events read and pushed.
 * metrics.c turns them into Prometheus text; respond.c counts every answer.
 *
 * Everything is a relaxed atomic: a scrape may see one counter a request
 * ahead of another, which Prometheus tolerates, and the hot path pays one
 * uncontended atomic add per fact.
 */
#ifndef EVS_COUNTERS_H
#define EVS_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

/* The route label of evstore_http_requests_total: one per route of the table, and "other". */
enum evs_route {
    EVS_R_APPEND, EVS_R_READ_STREAM, EVS_R_READ_EVENT, EVS_R_LIST_STREAMS, EVS_R_ALL,
    EVS_R_SUBSCRIBE, EVS_R_WS, EVS_R_METRICS, EVS_R_HEALTH, EVS_R_INFO, EVS_R_OTHER,
    EVS_R_PROJECTIONS, EVS_R_SUBSCRIPTIONS, EVS_R_GROUPS,
    EVS_R_COMMANDS, EVS_R_QUERIES, EVS_R_AGGREGATES, EVS_R_SAGAS,
    EVS_R_UI,
    EVS_R_SCHEMAS,
    EVS_R_STREAM_META,
    EVS_R_KEYS,
    EVS_R_SCAVENGE,
    EVS_R_COUNT
};

/* The statuses the server sends; anything else is counted as "other". */
#define EVS_SRV_STATUSES(X) \
    X(101) X(200) X(201) X(400) X(401) X(403) X(404) X(405) X(409) X(413) X(415) X(422) X(500) X(503) X(504)
enum { EVS_ST_NSLOTS = 16 };             /* the statuses above, and "other" */

#define EVS_SRV_LAT_BUCKETS 14

/* Kinds of evstore_http_errors_total. */
enum evs__err_kind {
    EVS_ERRK_JSON, EVS_ERRK_INVALID, EVS_ERRK_CONFLICT, EVS_ERRK_LIMIT, EVS_ERRK_IO, EVS_ERRK_INTERNAL,
    EVS_ERRK_COUNT
};

typedef struct evs__counters {
    _Atomic uint64_t requests[EVS_R_COUNT][EVS_ST_NSLOTS];
    _Atomic uint64_t lat_bucket[EVS_SRV_LAT_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t lat_sum_ns, lat_count;
    _Atomic uint64_t events_appended;      /* through HTTP, idempotent retries excluded */
    _Atomic uint64_t events_read;          /* returned by read routes */
    _Atomic uint64_t deliveries_sse, deliveries_ws;
    _Atomic uint64_t errors[EVS_ERRK_COUNT];
    _Atomic uint64_t auth_failures[8];     /* by reason (auth.h: EVS_AUTHF_*) */
} evs__counters;

/* One answer of route with status. */
void evs__count_answer(evs__counters *m, int route, unsigned status);
void evs__count_error(evs__counters *m, enum evs__err_kind kind);
/* An append's time from handing it to the store until it was durable. */
void evs__count_append_latency(evs__counters *m, int64_t ns);
void evs__count_add(_Atomic uint64_t *counter, uint64_t n);
uint64_t evs__count_load(_Atomic uint64_t *counter);

/* For rendering: a route's label, the status of a slot (0: "other"), a latency bucket's bound in ns. */
const char *evs__route_name(int route);
unsigned evs__status_of_slot(int slot);
int64_t evs__latency_bound_ns(int bucket);
/* The label of an error kind ("malformed_json", "invalid", ...). */
const char *evs__err_kind_name(enum evs__err_kind kind);

#endif
