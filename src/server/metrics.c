/*
 * metrics.c — counters kept by the server and GET /metrics in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Everything is a relaxed atomic: a scrape may see one counter a request
 * ahead of another, which Prometheus tolerates, and the hot path pays one
 * uncontended atomic add per fact.  Store-side figures (appends, events,
 * bytes, fsyncs, group-commit batches) come from evs_store_get_stats at
 * scrape time rather than being counted twice.
 *
 * Format rules that matter to parsers: one HELP and one TYPE line per
 * family, before its samples; histogram buckets cumulative, ending with
 * le="+Inf" equal to _count; label values escaped; a final newline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/routes_bus.h"
#include "server/srv.h"

static const char *const route_names[EVS_R_COUNT] = {
    "append", "read_stream", "read_event", "list_streams", "all", "subscribe",
    "ws", "metrics", "health", "info", "other",
    "projections", "subscriptions", "groups",
};

static const unsigned status_codes[EVS_ST_NSLOTS - 1] = {
#define EVS__ST(code) code,
    EVS_SRV_STATUSES(EVS__ST)
#undef EVS__ST
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

void evs__metrics_count(evs__srv *srv, int route, unsigned status) {
    if (route < 0 || route >= EVS_R_COUNT) route = EVS_R_OTHER;
    atomic_fetch_add_explicit(&srv->m.requests[route][status_slot(status)], 1, memory_order_relaxed);
    if (srv->access_log) evs__reqlog_write(srv, status);
}

void evs__metrics_append_latency(evs__srv *srv, int64_t ns) {
    int b = 0;
    while (b < EVS_SRV_LAT_BUCKETS && ns > lat_bounds[b]) b++;
    atomic_fetch_add_explicit(&srv->m.lat_bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->m.lat_sum_ns, (uint64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->m.lat_count, 1, memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *p) { return atomic_load_explicit(p, memory_order_relaxed); }

static void family(evs__sb *b, const char *name, const char *type, const char *help) {
    evs__sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(evs__sb *b, const char *name, uint64_t v) {
    evs__sb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

enum MHD_Result evs__route_metrics(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_METRICS;
    evs_store_stats st;
    int rc = evs_store_get_stats(srv->store, &st);
    if (rc) return evs__respond_lib(srv, c, R, rc, "metrics");
    evs__sb b = {0};
    evs__metrics *m = &srv->m;

    family(&b, "evstore_head_position", "gauge", "Last global position in the log.");
    sample(&b, "evstore_head_position", st.head);
    family(&b, "evstore_streams", "gauge", "Streams with at least one event.");
    sample(&b, "evstore_streams", st.streams);
    family(&b, "evstore_log_segments", "gauge", "Segment files in the log.");
    sample(&b, "evstore_log_segments", st.segments);
    family(&b, "evstore_log_bytes", "gauge", "Bytes in the log.");
    sample(&b, "evstore_log_bytes", st.log_bytes);
    family(&b, "evstore_appends_total", "counter", "Appends committed since the store was opened.");
    sample(&b, "evstore_appends_total", st.appends);
    family(&b, "evstore_events_written_total", "counter", "Events written since the store was opened.");
    sample(&b, "evstore_events_written_total", st.events_written);
    family(&b, "evstore_bytes_written_total", "counter", "Log bytes written since the store was opened.");
    sample(&b, "evstore_bytes_written_total", st.bytes_written);
    family(&b, "evstore_fsyncs_total", "counter", "fdatasync calls since the store was opened.");
    sample(&b, "evstore_fsyncs_total", st.syncs);
    family(&b, "evstore_commit_batches_total", "counter", "Group commits since the store was opened.");
    sample(&b, "evstore_commit_batches_total", st.batches);
    family(&b, "evstore_commit_batch_appends_avg", "gauge",
           "Average appends per group commit since the store was opened.");
    evs__sb_printf(&b, "evstore_commit_batch_appends_avg %.3f\n",
                   st.batches ? (double)st.appends / (double)st.batches : 0.0);
    {
        static const uint64_t sync_us[EVS_SYNC_BUCKETS] = EVS_SYNC_BOUNDS_US;
        static const uint64_t batch_n[EVS_BATCH_BUCKETS] = EVS_BATCH_BOUNDS;
        family(&b, "evstore_fdatasync_duration_seconds", "histogram",
               "Log syncs (a group commit's write and its fdatasync, or batch mode's periodic fdatasync).");
        uint64_t cum = 0;
        for (int i = 0; i < EVS_SYNC_BUCKETS; i++) {
            cum += st.sync_hist[i];
            evs__sb_printf(&b, "evstore_fdatasync_duration_seconds_bucket{le=\"%g\"} %llu\n",
                           (double)sync_us[i] / 1e6, (unsigned long long)cum);
        }
        cum += st.sync_hist[EVS_SYNC_BUCKETS];
        evs__sb_printf(&b, "evstore_fdatasync_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        evs__sb_printf(&b, "evstore_fdatasync_duration_seconds_sum %.9f\n", (double)st.sync_ns / 1e9);
        evs__sb_printf(&b, "evstore_fdatasync_duration_seconds_count %llu\n", (unsigned long long)cum);
        family(&b, "evstore_commit_batch_appends", "histogram", "Appends carried by each group commit.");
        cum = 0;
        for (int i = 0; i < EVS_BATCH_BUCKETS; i++) {
            cum += st.batch_hist[i];
            evs__sb_printf(&b, "evstore_commit_batch_appends_bucket{le=\"%llu\"} %llu\n", (unsigned long long)batch_n[i],
                           (unsigned long long)cum);
        }
        cum += st.batch_hist[EVS_BATCH_BUCKETS];
        evs__sb_printf(&b, "evstore_commit_batch_appends_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        /* appends and the buckets are read at slightly different moments: the sum may lead by a batch */
        evs__sb_printf(&b, "evstore_commit_batch_appends_sum %llu\n", (unsigned long long)st.appends);
        evs__sb_printf(&b, "evstore_commit_batch_appends_count %llu\n", (unsigned long long)cum);
    }

    family(&b, "evstore_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int r = 0; r < EVS_R_COUNT; r++)
        for (int s = 0; s < EVS_ST_NSLOTS; s++) {
            uint64_t v = ld(&m->requests[r][s]);
            if (!v) continue;
            if (s < EVS_ST_NSLOTS - 1)
                evs__sb_printf(&b, "evstore_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                               route_names[r], status_codes[s], (unsigned long long)v);
            else
                evs__sb_printf(&b, "evstore_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                               route_names[r], (unsigned long long)v);
        }

    family(&b, "evstore_http_append_duration_seconds", "histogram",
           "Time from handing an HTTP append to the store until it was durable.");
    uint64_t cum = 0;
    for (int i = 0; i < EVS_SRV_LAT_BUCKETS; i++) {
        cum += ld(&m->lat_bucket[i]);
        evs__sb_printf(&b, "evstore_http_append_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       (double)lat_bounds[i] / 1e9, (unsigned long long)cum);
    }
    cum += ld(&m->lat_bucket[EVS_SRV_LAT_BUCKETS]);
    /* _count is read separately and may trail the buckets by a request in
       flight; report the bucket total so the exposition stays consistent. */
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)cum);
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_sum %.9f\n", (double)ld(&m->lat_sum_ns) / 1e9);
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_count %llu\n", (unsigned long long)cum);

    family(&b, "evstore_http_events_appended_total", "counter", "Events appended through HTTP (retries excluded).");
    sample(&b, "evstore_http_events_appended_total", ld(&m->events_appended));
    family(&b, "evstore_http_events_read_total", "counter", "Events returned by the HTTP read routes.");
    sample(&b, "evstore_http_events_read_total", ld(&m->events_read));

    family(&b, "evstore_http_errors_total", "counter", "Failed HTTP requests, by kind.");
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"malformed_json\"} %llu\n",
                   (unsigned long long)ld(&m->errors_json));
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"invalid\"} %llu\n",
                   (unsigned long long)ld(&m->errors_invalid));
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"conflict\"} %llu\n",
                   (unsigned long long)ld(&m->errors_conflict));
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"limit\"} %llu\n",
                   (unsigned long long)ld(&m->errors_limit));
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"io\"} %llu\n", (unsigned long long)ld(&m->errors_io));
    evs__sb_printf(&b, "evstore_http_errors_total{kind=\"internal\"} %llu\n",
                   (unsigned long long)ld(&m->errors_internal));

    long nsse = atomic_load(&srv->sse_count), nws = evs__ws_count(srv);
    family(&b, "evstore_live_subscribers", "gauge", "Connected live subscribers, by protocol.");
    evs__sb_printf(&b, "evstore_live_subscribers{protocol=\"sse\"} %ld\n", nsse);
    evs__sb_printf(&b, "evstore_live_subscribers{protocol=\"ws\"} %ld\n", nws);
    family(&b, "evstore_live_subscriber_max_lag_events", "gauge",
           "Largest distance in global positions between the head and a subscriber's cursor.");
    uint64_t lag = evs__sse_max_lag(srv, st.head), wlag = evs__ws_max_lag(srv, st.head);
    sample(&b, "evstore_live_subscriber_max_lag_events", lag > wlag ? lag : wlag);
    family(&b, "evstore_live_deliveries_total", "counter", "Events pushed to live subscribers, by protocol.");
    evs__sb_printf(&b, "evstore_live_deliveries_total{protocol=\"sse\"} %llu\n",
                   (unsigned long long)ld(&m->deliveries_sse));
    evs__sb_printf(&b, "evstore_live_deliveries_total{protocol=\"ws\"} %llu\n",
                   (unsigned long long)ld(&m->deliveries_ws));
    evs__bus_metrics(srv, &b);

    size_t len;
    char *p = evs__sb_take(&b, &len);
    if (!p) return evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    return evs__respond(srv, c, R, EVS_HTTP_OK, p, len, "text/plain; version=0.0.4; charset=utf-8");
}
