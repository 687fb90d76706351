/*
 * metrics.c — GET /metrics: everything the server exposes to Prometheus,
 * in the text exposition format (version 0.0.4), and the only place that
 * writes it: the store's figures, the request counters (counters.c), the
 * live subscribers, one series per durable consumer (consumers.c), the
 * application layer's commands, snapshots and queries (evs_app_get_stats),
 * the saga engine's instances, steps and timers (evs_saga_get_*_stats),
 * and the NATS JetStream relay's checkpoint and lag (nats_host.c).
 *
 * Store-side figures (appends, events, bytes, fsyncs, group-commit
 * batches) come from evs_store_get_stats at scrape time rather than being
 * counted twice.
 *
 * Format rules that matter to parsers: one HELP and one TYPE line per
 * family, before its samples; histogram buckets cumulative, ending with
 * le="+Inf" equal to _count; label values escaped; a final newline.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore_saga.h"
#include "evstore_schema.h"
#include "server/auth.h"
#include "server/consumers.h"
#include "server/metrics.h"
#include "server/nats_host.h"
#include "server/sse.h"
#include "server/ws.h"

#define METRICS_MAX_CONSUMERS 10000u  /* /metrics stops listing consumers here */

static void family(evs__sb *b, const char *name, const char *type, const char *help) {
    evs__sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(evs__sb *b, const char *name, uint64_t v) {
    evs__sb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* ------------------------------------------------------------ consumers */

/* A label value: backslash, double quote and line feed escaped. */
static void label(evs__sb *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') evs__sb_adds(b, "\\\\");
        else if (*s == '"') evs__sb_adds(b, "\\\"");
        else if (*s == '\n') evs__sb_adds(b, "\\n");
        else evs__sb_add(b, s, 1);
    }
}

static void labels(evs__sb *b, const char *name, const evs__consumer_row *r) {
    evs__sb_adds(b, name);
    evs__sb_adds(b, "{consumer=\"");
    label(b, r->name);
    evs__sb_printf(b, "\",kind=\"%s\"}", r->kind);
}

enum { F_CHECKPOINT, F_LAG, F_LAG_S, F_PROCESSED, F_FAILED, F_RETRIED, F_PARKED, F_DLQ };

/* The per-consumer families (nothing when there are no consumers). */
static void consumer_families(evs__consumers *cs, evs__sb *b) {
    evs__consumer_row *rows;
    size_t nrows;
    evs__consumers_rows(cs, METRICS_MAX_CONSUMERS, &rows, &nrows);
    if (!nrows) return;
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"evstore_consumer_checkpoint_position", "gauge", "Last global position a consumer has processed."},
        {"evstore_consumer_lag_events", "gauge", "Events between a consumer's checkpoint and the head."},
        {"evstore_consumer_lag_seconds", "gauge", "Age of the oldest event a consumer has not processed."},
        {"evstore_consumer_processed_total", "counter", "Events a consumer's handler processed."},
        {"evstore_consumer_failed_total", "counter", "Events whose handler failed after every retry."},
        {"evstore_consumer_retries_total", "counter", "Handler retries, DLQ retries included."},
        {"evstore_consumer_parked_total", "counter", "Events moved to a consumer's dead-letter queue."},
        {"evstore_consumer_dlq_depth", "gauge", "Entries in a consumer's dead-letter queue."},
    };
    for (int f = 0; f < (int)(sizeof fams / sizeof fams[0]); f++) {
        family(b, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < nrows; i++) {
            const evs__consumer_row *r = &rows[i];
            labels(b, fams[f].name, r);
            switch (f) {
            case F_LAG_S: evs__sb_printf(b, " %.3f\n", (double)r->lag_ms / 1e3); break;
            default: {
                uint64_t v = f == F_CHECKPOINT ? r->checkpoint : f == F_LAG ? r->lag_events
                           : f == F_PROCESSED  ? r->processed  : f == F_FAILED ? r->failed
                           : f == F_RETRIED    ? r->retried    : f == F_PARKED ? r->parked : r->dlq;
                evs__sb_printf(b, " %llu\n", (unsigned long long)v);
            }
            }
        }
    }
    /* status as a state set: one series per status, 1 for the current one */
    family(b, "evstore_consumer_status", "gauge", "Consumer status (1 for the current one).");
    static const int statuses[] = {EVS_CONSUMER_ACTIVE, EVS_CONSUMER_PAUSED, EVS_CONSUMER_ERROR};
    for (size_t i = 0; i < nrows; i++)
        for (int s = 0; s < 3; s++) {
            evs__sb_adds(b, "evstore_consumer_status{consumer=\"");
            label(b, rows[i].name);
            evs__sb_printf(b, "\",kind=\"%s\",status=\"%s\"} %d\n", rows[i].kind,
                           evs_consumer_status_name(statuses[s]), rows[i].status == statuses[s]);
        }
    int any_proj = 0, any_group = 0;
    for (size_t i = 0; i < nrows; i++) any_proj |= rows[i].proj, any_group |= rows[i].group;
    if (any_group) {
        family(b, "evstore_group_consumers", "gauge", "Consumers connected to a group.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].group) {
                labels(b, "evstore_group_consumers", &rows[i]);
                evs__sb_printf(b, " %llu\n", (unsigned long long)rows[i].members);
            }
        family(b, "evstore_group_in_flight", "gauge", "Deliveries of a group waiting for an ack.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].group) {
                labels(b, "evstore_group_in_flight", &rows[i]);
                evs__sb_printf(b, " %llu\n", (unsigned long long)rows[i].in_flight);
            }
    }
    if (any_proj) {
        family(b, "evstore_projection_running", "gauge", "1 when the server runs the projection.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_running", &rows[i]);
                evs__sb_printf(b, " %d\n", rows[i].running);
            }
        family(b, "evstore_projection_rebuild_progress_ratio", "gauge",
             "Progress of a projection's rebuild, 0..1 (0 when not rebuilding).");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_rebuild_progress_ratio", &rows[i]);
                evs__sb_printf(b, " %.4f\n", rows[i].rebuilding ? rows[i].percent / 100.0 : 0.0);
            }
        family(b, "evstore_projection_events_per_second", "gauge", "Events per second over a projection's last poll.");
        for (size_t i = 0; i < nrows; i++)
            if (rows[i].proj) {
                labels(b, "evstore_projection_events_per_second", &rows[i]);
                evs__sb_printf(b, " %.1f\n", rows[i].rate);
            }
    }
    free(rows);
}

/* ------------------------------------------------------------- schemas */

/* Per event type with schemas: the registry's counters since the server started (evs_schema_stats). */
static void schema_families(evs_schema_registry *reg, evs__sb *b) {
    evs_schema_type_stats *st = NULL;
    size_t n = 0, cap = 0;
    char after[EVS_MAX_TYPE_NAME + 1] = "";
    for (;;) {
        if (n + 64 > cap) {
            evs_schema_type_stats *ns = realloc(st, (cap + 64) * sizeof *ns);
            if (!ns) break;
            st = ns;
            cap += 64;
        }
        size_t got = 0;
        if (evs_schema_stats(reg, after[0] ? after : NULL, st + n, 64, &got) || got == 0) break;
        n += got;
        snprintf(after, sizeof after, "%s", st[n - 1].event_type);
        if (got < 64) break;
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } fams[] = {
        {"evstore_schema_validated_total", "Appended events checked against their schema, by event type.",
         offsetof(evs_schema_type_stats, validated)},
        {"evstore_schema_refused_total", "Appends refused by the schema registry, by event type.",
         offsetof(evs_schema_type_stats, refused)},
        {"evstore_schema_warned_total", "Events stored although invalid (policy warn), by event type.",
         offsetof(evs_schema_type_stats, warned)},
        {"evstore_schema_deprecated_appends_total", "Events of a deprecated schema version appended or refused.",
         offsetof(evs_schema_type_stats, deprecated_appends)},
        {"evstore_schema_upcasted_total", "Events upcast on read, by event type.",
         offsetof(evs_schema_type_stats, upcasted)},
        {"evstore_schema_upcast_failures_total", "Events that could not be upcast on read, by event type.",
         offsetof(evs_schema_type_stats, upcast_failures)},
    };
    for (size_t f = 0; n && f < sizeof fams / sizeof fams[0]; f++) {
        family(b, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < n; i++) {
            evs__sb_adds(b, fams[f].name);
            evs__sb_adds(b, "{event_type=\"");
            label(b, st[i].event_type);
            uint64_t v;
            memcpy(&v, (const char *)&st[i] + fams[f].off, sizeof v);
            evs__sb_printf(b, "\"} %llu\n", (unsigned long long)v);
        }
    }
    free(st);
}

/* ------------------------------------------------------ application layer */

/* A summary without quantiles: _sum in seconds and _count. */
static void summary(evs__sb *b, const char *name, const char *help, uint64_t sum_ns, uint64_t count) {
    family(b, name, "summary", help);
    evs__sb_printf(b, "%s_sum %.9f\n%s_count %llu\n", name, (double)sum_ns / 1e9, name, (unsigned long long)count);
}

static void app_families(evs__srv *srv, evs__sb *b) {
    evs_app *a = srv->app;
    evs_app_stats st;
    if (evs_app_get_stats(a, &st)) return;
    family(b, "evstore_commands_total", "counter", "Commands handled, by outcome.");
    for (int o = 0; o < EVS_CMD_OUTCOMES; o++)
        evs__sb_printf(b, "evstore_commands_total{outcome=\"%s\"} %llu\n", evs_command_outcome_name(o),
                       (unsigned long long)st.commands[o]);
    evs_command_type_stats *ts = NULL;
    size_t n = 0, cap = 64;
    /* the registry may grow between the calls: ask again with room for all */
    for (;;) {
        evs_command_type_stats *nt = realloc(ts, cap * sizeof *nt);
        if (!nt) break;
        ts = nt;
        if (evs_app_command_stats(a, ts, cap, &n) || n < cap) break;
        cap *= 2;
    }
    if (ts && n) {
        family(b, "evstore_commands_by_type_total", "counter",
               "Commands handled, by registered command type and outcome.");
        for (size_t i = 0; i < n; i++)
            for (int o = 0; o < EVS_CMD_OUTCOMES; o++) {
                evs__sb_adds(b, "evstore_commands_by_type_total{command_type=\"");
                label(b, ts[i].command_type);
                evs__sb_printf(b, "\",outcome=\"%s\"} %llu\n", evs_command_outcome_name(o),
                               (unsigned long long)ts[i].outcomes[o]);
            }
    }
    free(ts);
    static const uint64_t bounds_us[EVS_CMD_BUCKETS] = EVS_CMD_BOUNDS_US;
    family(b, "evstore_command_duration_seconds", "histogram",
           "Time to handle a command: load, decide, append (durable), with retries.");
    uint64_t cum = 0;
    for (int i = 0; i < EVS_CMD_BUCKETS; i++) {
        cum += st.duration_hist[i];
        evs__sb_printf(b, "evstore_command_duration_seconds_bucket{le=\"%g\"} %llu\n", (double)bounds_us[i] / 1e6,
                       (unsigned long long)cum);
    }
    cum += st.duration_hist[EVS_CMD_BUCKETS];
    evs__sb_printf(b, "evstore_command_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    evs__sb_printf(b, "evstore_command_duration_seconds_sum %.9f\n", (double)st.duration_ns / 1e9);
    evs__sb_printf(b, "evstore_command_duration_seconds_count %llu\n", (unsigned long long)cum);
    family(b, "evstore_command_idempotent_hits_total", "counter",
           "Commands answered with the result of an earlier run of the same command id.");
    sample(b, "evstore_command_idempotent_hits_total", st.idempotent_hits);
    family(b, "evstore_command_validation_errors_total", "counter", "Commands refused as invalid.");
    sample(b, "evstore_command_validation_errors_total", st.validation_errors);
    family(b, "evstore_command_handler_not_found_total", "counter", "Commands of a type without a handler.");
    sample(b, "evstore_command_handler_not_found_total", st.handler_not_found);
    family(b, "evstore_command_conflict_retries_total", "counter",
           "Reload-and-decide rounds after a concurrency conflict.");
    sample(b, "evstore_command_conflict_retries_total", st.conflict_retries);
    summary(b, "evstore_snapshot_load_duration_seconds", "Aggregate loads that started from a snapshot.",
            st.snapshot_load_ns, st.snapshot_loads);
    family(b, "evstore_snapshot_load_max_seconds", "gauge", "Longest snapshot load since the server started.");
    evs__sb_printf(b, "evstore_snapshot_load_max_seconds %.9f\n", (double)st.snapshot_load_max_ns / 1e9);
    summary(b, "evstore_snapshot_create_duration_seconds", "Snapshots taken (background and on demand).",
            st.snapshot_create_ns, st.snapshots_created);
    family(b, "evstore_snapshot_create_max_seconds", "gauge", "Longest snapshot creation since the server started.");
    evs__sb_printf(b, "evstore_snapshot_create_max_seconds %.9f\n", (double)st.snapshot_create_max_ns / 1e9);
    family(b, "evstore_snapshots_ignored_total", "counter",
           "Snapshots not applied: another schema version or evolve code, or not of this log.");
    sample(b, "evstore_snapshots_ignored_total", st.snapshots_ignored);
    family(b, "evstore_snapshots_dropped_total", "counter",
           "Background snapshots not taken because the queue was full (a later command asks again).");
    sample(b, "evstore_snapshots_dropped_total", st.snapshots_dropped);
    family(b, "evstore_queries_total", "counter", "Named queries answered or refused after validation.");
    sample(b, "evstore_queries_total", st.queries);
    family(b, "evstore_query_cache_hits_total", "counter", "Queries answered from the result cache.");
    sample(b, "evstore_query_cache_hits_total", st.query_cache_hits);
    family(b, "evstore_query_cache_misses_total", "counter", "Queries computed from projection state.");
    sample(b, "evstore_query_cache_misses_total", st.query_cache_misses);
    family(b, "evstore_query_waits_total", "counter", "Queries that waited for min_position.");
    sample(b, "evstore_query_waits_total", st.query_waits);
    family(b, "evstore_query_timeouts_total", "counter", "Queries whose projection did not reach min_position in time.");
    sample(b, "evstore_query_timeouts_total", st.query_timeouts);
    family(b, "evstore_queries_waiting", "gauge",
           "Queries waiting for min_position now on a thread of their own (past 2 ms on an HTTP worker).");
    evs__sb_printf(b, "evstore_queries_waiting %ld\n", atomic_load(&srv->query_waits));
}

/* ------------------------------------------------------------------- nats */

/* The relay (serve --nats): what JetStream acknowledged and how far behind the head it is. */
static void nats_families(evs__srv *srv, evs__sb *b) {
    evs__nats_host_stats st;
    evs__nats_host_stats_get(srv, &st);
    uint64_t lag = st.relay.head > st.relay.published ? st.relay.head - st.relay.published : 0;
    family(b, "evstore_nats_up", "gauge", "1 while the NATS relay is connected and publishing.");
    sample(b, "evstore_nats_up", (uint64_t)st.up);
    family(b, "evstore_nats_published_position", "gauge",
           "Last global position JetStream acknowledged (the relay's checkpoint).");
    sample(b, "evstore_nats_published_position", st.relay.published);
    family(b, "evstore_nats_lag_events", "gauge", "Events stored but not yet acknowledged by JetStream (head - published).");
    sample(b, "evstore_nats_lag_events", lag);
    family(b, "evstore_nats_errors_total", "counter",
           "Failed relay rounds and connection attempts (each followed by a recovery).");
    sample(b, "evstore_nats_errors_total", st.relay.errors);
    if (!st.importing) return;
    /* the importer (serve --nats-import), over all its runs since the start */
    family(b, "evstore_nats_import_imported_total", "counter", "Messages the NATS importer appended as new events.");
    sample(b, "evstore_nats_import_imported_total", st.import.imported);
    family(b, "evstore_nats_import_already_total", "counter", "Redelivered messages found stored already (no-ops).");
    sample(b, "evstore_nats_import_already_total", st.import.already);
    family(b, "evstore_nats_import_duplicates_total", "counter",
           "Messages skipped: their Nats-Msg-Id was imported before with other content.");
    sample(b, "evstore_nats_import_duplicates_total", st.import.duplicates);
    family(b, "evstore_nats_import_rejected_total", "counter", "Messages sent to the dead-letter stream.");
    sample(b, "evstore_nats_import_rejected_total", st.import.rejected);
    family(b, "evstore_nats_import_errors_total", "counter",
           "NATS failures the importer recovered from, and runs that stopped.");
    sample(b, "evstore_nats_import_errors_total", st.import.errors);
    family(b, "evstore_nats_import_last_sequence", "gauge", "The last JetStream stream sequence imported.");
    sample(b, "evstore_nats_import_last_sequence", st.import.last_seq);
}

/* ------------------------------------------------------------------ sagas */

#define METRICS_MAX_SAGA_TYPES 256u   /* saga types listed (the engine has at most what is registered and indexed) */
#define METRICS_MAX_SAGA_STEPS 4096u

static void saga_type_label(evs__sb *b, const char *name, const char *type) {
    evs__sb_adds(b, name);
    evs__sb_adds(b, "{saga_type=\"");
    label(b, type);
    evs__sb_adds(b, "\"");
}

/*
 * The saga engine's figures: per type, what ever entered each outcome (kept
 * in the engine's index, so they survive restarts), instances in each
 * state now, timers, failed attempts; per step, completion durations; and
 * the engine's own figures since the server started.
 */
static void saga_families(evs_saga_engine *e, evs__sb *b) {
    evs_saga_type_stats *ts = calloc(METRICS_MAX_SAGA_TYPES, sizeof *ts);
    evs_saga_step_stats *ss = calloc(METRICS_MAX_SAGA_STEPS, sizeof *ss);
    size_t nt = 0, ns = 0;
    evs_saga_engine_stats es;
    if (!ts || !ss || evs_saga_get_type_stats(e, ts, METRICS_MAX_SAGA_TYPES, &nt) ||
        evs_saga_get_step_stats(e, ss, METRICS_MAX_SAGA_STEPS, &ns) || evs_saga_get_engine_stats(e, &es)) {
        free(ts);
        free(ss);
        return;
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } outcomes[] = {
        {"evstore_sagas_started_total", "Saga instances started.", offsetof(evs_saga_type_stats, started)},
        {"evstore_sagas_completed_total", "Saga instances that completed.", offsetof(evs_saga_type_stats, completed)},
        {"evstore_sagas_compensated_total", "Saga instances whose compensation finished.",
         offsetof(evs_saga_type_stats, compensated)},
        {"evstore_sagas_failed_total", "Saga instances that stopped without compensating (aborted, or nothing to undo).",
         offsetof(evs_saga_type_stats, failed)},
        {"evstore_sagas_compensation_failed_total",
         "Saga instances whose compensation ran out of retries (an operator decides).",
         offsetof(evs_saga_type_stats, compensation_failed)},
        {"evstore_saga_step_failures_total", "Failed attempts of saga step actions.",
         offsetof(evs_saga_type_stats, step_failures)},
        {"evstore_saga_compensation_failures_total", "Failed attempts of saga compensations.",
         offsetof(evs_saga_type_stats, compensation_failures)},
    };
    for (size_t f = 0; f < sizeof outcomes / sizeof outcomes[0]; f++) {
        family(b, outcomes[f].name, "counter", outcomes[f].help);
        for (size_t i = 0; i < nt; i++) {
            saga_type_label(b, outcomes[f].name, ts[i].type);
            evs__sb_printf(b, "} %llu\n",
                           (unsigned long long)*(const uint64_t *)((const char *)&ts[i] + outcomes[f].off));
        }
    }
    family(b, "evstore_saga_instances", "gauge", "Saga instances in each status now.");
    for (size_t i = 0; i < nt; i++)
        for (int st = 0; st < EVS_SAGA_STATES; st++) {
            saga_type_label(b, "evstore_saga_instances", ts[i].type);
            evs__sb_printf(b, ",status=\"%s\"} %llu\n", evs_saga_status_name(st),
                           (unsigned long long)ts[i].by_state[st]);
        }
    family(b, "evstore_saga_timers_pending", "gauge",
           "Saga timers waiting (step deadlines, retry times, saga deadlines).");
    for (size_t i = 0; i < nt; i++) {
        saga_type_label(b, "evstore_saga_timers_pending", ts[i].type);
        evs__sb_printf(b, "} %llu\n", (unsigned long long)ts[i].timers_pending);
    }
    static const uint64_t bounds_ms[EVS_SAGA_BUCKETS] = EVS_SAGA_BOUNDS_MS;
    family(b, "evstore_saga_step_duration_seconds", "histogram",
           "Completed saga steps, from becoming current to completion (retries and waits included).");
    for (size_t i = 0; i < ns; i++) {
        uint64_t cum = 0;
        for (int k = 0; k <= EVS_SAGA_BUCKETS; k++) {
            cum += ss[i].hist[k];
            saga_type_label(b, "evstore_saga_step_duration_seconds_bucket", ss[i].type);
            evs__sb_adds(b, ",step=\"");
            label(b, ss[i].step);
            if (k < EVS_SAGA_BUCKETS) evs__sb_printf(b, "\",le=\"%g\"} %llu\n", (double)bounds_ms[k] / 1e3,
                                                      (unsigned long long)cum);
            else evs__sb_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        saga_type_label(b, "evstore_saga_step_duration_seconds_sum", ss[i].type);
        evs__sb_adds(b, ",step=\"");
        label(b, ss[i].step);
        evs__sb_printf(b, "\"} %.9f\n", (double)ss[i].sum_ns / 1e9);
        saga_type_label(b, "evstore_saga_step_duration_seconds_count", ss[i].type);
        evs__sb_adds(b, ",step=\"");
        label(b, ss[i].step);
        evs__sb_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    free(ts);
    free(ss);

    family(b, "evstore_saga_dispatcher_lag_events", "gauge",
           "Global positions between the head and what the saga engine has indexed.");
    sample(b, "evstore_saga_dispatcher_lag_events", es.head + 1 > es.position ? es.head + 1 - es.position : 0);
    static const uint64_t late_us[EVS_SAGA_LATE_BUCKETS] = EVS_SAGA_LATE_BOUNDS_US;
    family(b, "evstore_saga_timer_lateness_seconds", "histogram",
           "Saga timers fired since the server started, by how late a worker took them.");
    uint64_t cum = 0;
    for (int k = 0; k < EVS_SAGA_LATE_BUCKETS; k++) {
        cum += es.late_hist[k];
        evs__sb_printf(b, "evstore_saga_timer_lateness_seconds_bucket{le=\"%g\"} %llu\n", (double)late_us[k] / 1e6,
                       (unsigned long long)cum);
    }
    cum += es.late_hist[EVS_SAGA_LATE_BUCKETS];
    evs__sb_printf(b, "evstore_saga_timer_lateness_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    /* Prometheus histograms carry _sum too: without it rate(_sum)/rate(_count) (the mean) cannot be taken */
    evs__sb_printf(b, "evstore_saga_timer_lateness_seconds_sum %.9f\n", (double)es.late_sum_ns / 1e9);
    evs__sb_printf(b, "evstore_saga_timer_lateness_seconds_count %llu\n", (unsigned long long)cum);
    static const struct {
        const char *name, *help;
        size_t off;
    } engine[] = {
        {"evstore_saga_advances_total", "Saga instance runs by the engine's workers.",
         offsetof(evs_saga_engine_stats, advances)},
        {"evstore_saga_commands_total", "Effects sent by sagas (commands and appends).",
         offsetof(evs_saga_engine_stats, commands)},
        {"evstore_saga_lookups_total", "Effects looked up (never re-sent) before a timeout or an operator's action.",
         offsetof(evs_saga_engine_stats, lookups)},
        {"evstore_saga_conflicts_total", "Saga transitions refused on the stream's version (another writer).",
         offsetof(evs_saga_engine_stats, conflicts)},
        {"evstore_saga_errors_total", "Store or index errors of the saga engine (the run is retried).",
         offsetof(evs_saga_engine_stats, errors)},
    };
    for (size_t f = 0; f < sizeof engine / sizeof engine[0]; f++) {
        family(b, engine[f].name, "counter", engine[f].help);
        sample(b, engine[f].name, *(const uint64_t *)((const char *)&es + engine[f].off));
    }
    family(b, "evstore_saga_work_queued", "gauge", "Saga instances waiting for a worker.");
    sample(b, "evstore_saga_work_queued", es.queued);
    family(b, "evstore_saga_work_running", "gauge", "Saga instances a worker holds.");
    sample(b, "evstore_saga_work_running", es.running);
}

enum MHD_Result evs__route_metrics(evs__req *rq) {
    evs__srv *srv = rq->srv;
    evs_store_stats st;
    int rc = evs_store_get_stats(srv->store, &st);
    if (rc) return evs__respond_lib(rq, rc, "metrics");
    evs__sb b = {0};
    evs__counters *m = &srv->m;

    family(&b, "evstore_head_position", "gauge", "Last global position in the log.");
    sample(&b, "evstore_head_position", st.head);
    family(&b, "evstore_streams", "gauge", "Streams with at least one event.");
    sample(&b, "evstore_streams", st.streams);
    family(&b, "evstore_log_segments", "gauge", "Segment files in the log.");
    sample(&b, "evstore_log_segments", st.segments);
    family(&b, "evstore_log_bytes", "gauge", "Bytes in the log.");
    sample(&b, "evstore_log_bytes", st.log_bytes);
    {
        evs_scavenge_stats ss;
        memset(&ss, 0, sizeof ss);
        (void)evs_scavenge_get_stats(srv->store, &ss);
        family(&b, "evstore_scavenge_running", "gauge", "1 while a scavenge runs.");
        sample(&b, "evstore_scavenge_running", (uint64_t)ss.running);
        family(&b, "evstore_scavenge_segments_done", "gauge", "Segments the running (or last) scavenge examined.");
        sample(&b, "evstore_scavenge_segments_done", ss.last.segments_done);
        family(&b, "evstore_scavenge_segments_planned", "gauge", "Segments the running (or last) scavenge may rewrite.");
        sample(&b, "evstore_scavenge_segments_planned", ss.last.segments_total);
        family(&b, "evstore_scavenge_runs_total", "counter", "Scavenge runs finished since the store was opened.");
        sample(&b, "evstore_scavenge_runs_total", ss.runs);
        family(&b, "evstore_scavenge_bytes_reclaimed_total", "counter",
               "Log bytes scavenge gave back since the store was opened (finished runs).");
        sample(&b, "evstore_scavenge_bytes_reclaimed_total", ss.bytes_reclaimed);
        family(&b, "evstore_scavenge_segments_rewritten_total", "counter",
               "Segments scavenge rewrote since the store was opened (finished runs).");
        sample(&b, "evstore_scavenge_segments_rewritten_total", ss.segments_rewritten);
        family(&b, "evstore_scavenge_events_removed_total", "counter",
               "Hidden events scavenge removed since the store was opened (finished runs).");
        sample(&b, "evstore_scavenge_events_removed_total", ss.events_removed);
    }
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
            uint64_t v = evs__count_load(&m->requests[r][s]);
            if (!v) continue;
            if (s < EVS_ST_NSLOTS - 1)
                evs__sb_printf(&b, "evstore_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                               evs__route_name(r), evs__status_of_slot(s), (unsigned long long)v);
            else
                evs__sb_printf(&b, "evstore_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                               evs__route_name(r), (unsigned long long)v);
        }

    family(&b, "evstore_http_append_duration_seconds", "histogram",
           "Time from handing an HTTP append to the store until it was durable.");
    uint64_t cum = 0;
    for (int i = 0; i < EVS_SRV_LAT_BUCKETS; i++) {
        cum += evs__count_load(&m->lat_bucket[i]);
        evs__sb_printf(&b, "evstore_http_append_duration_seconds_bucket{le=\"%g\"} %llu\n",
                       (double)evs__latency_bound_ns(i) / 1e9, (unsigned long long)cum);
    }
    cum += evs__count_load(&m->lat_bucket[EVS_SRV_LAT_BUCKETS]);
    /* _count is read separately and may trail the buckets by a request in
       flight; report the bucket total so the exposition stays consistent. */
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                   (unsigned long long)cum);
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_sum %.9f\n", (double)evs__count_load(&m->lat_sum_ns) / 1e9);
    evs__sb_printf(&b, "evstore_http_append_duration_seconds_count %llu\n", (unsigned long long)cum);

    family(&b, "evstore_http_events_appended_total", "counter", "Events appended through HTTP (retries excluded).");
    sample(&b, "evstore_http_events_appended_total", evs__count_load(&m->events_appended));
    family(&b, "evstore_http_events_read_total", "counter", "Events returned by the HTTP read routes.");
    sample(&b, "evstore_http_events_read_total", evs__count_load(&m->events_read));

    family(&b, "evstore_http_errors_total", "counter", "Failed HTTP requests, by kind.");
    for (int k = 0; k < EVS_ERRK_COUNT; k++)
        evs__sb_printf(&b, "evstore_http_errors_total{kind=\"%s\"} %llu\n", evs__err_kind_name((enum evs__err_kind)k),
                       (unsigned long long)evs__count_load(&m->errors[k]));

    family(&b, "evstore_auth_failures_total", "counter",
           "Requests refused for their API key, by reason (missing, malformed, unknown, revoked: 401; forbidden: 403).");
    for (int k = 0; k < EVS_AUTHF_COUNT; k++)
        evs__sb_printf(&b, "evstore_auth_failures_total{reason=\"%s\"} %llu\n", evs__authf_name(k),
                       (unsigned long long)evs__count_load(&m->auth_failures[k]));
    family(&b, "evstore_auth_enabled", "gauge", "1 when every route but the open ones needs an API key.");
    sample(&b, "evstore_auth_enabled", (uint64_t)srv->auth);

    long nsse = evs__sse_count(srv), nws = evs__ws_count(srv);
    family(&b, "evstore_live_subscribers", "gauge", "Connected live subscribers, by protocol.");
    evs__sb_printf(&b, "evstore_live_subscribers{protocol=\"sse\"} %ld\n", nsse);
    evs__sb_printf(&b, "evstore_live_subscribers{protocol=\"ws\"} %ld\n", nws);
    family(&b, "evstore_live_subscriber_max_lag_events", "gauge",
           "Largest distance in global positions between the head and a subscriber's cursor.");
    uint64_t lag = evs__sse_max_lag(srv, st.head), wlag = evs__ws_max_lag(srv, st.head);
    sample(&b, "evstore_live_subscriber_max_lag_events", lag > wlag ? lag : wlag);
    family(&b, "evstore_live_deliveries_total", "counter", "Events pushed to live subscribers, by protocol.");
    evs__sb_printf(&b, "evstore_live_deliveries_total{protocol=\"sse\"} %llu\n",
                   (unsigned long long)evs__count_load(&m->deliveries_sse));
    evs__sb_printf(&b, "evstore_live_deliveries_total{protocol=\"ws\"} %llu\n",
                   (unsigned long long)evs__count_load(&m->deliveries_ws));
    if (srv->bus) consumer_families(srv->bus, &b);
    if (srv->app) app_families(srv, &b);
    if (srv->sagas) saga_families(srv->sagas, &b);
    if (srv->schemas) schema_families(srv->schemas, &b);
    if (srv->nats) nats_families(srv, &b);

    size_t len;
    char *p = evs__sb_take(&b, &len);
    if (!p) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    return evs__respond(rq, EVS_HTTP_OK, p, len, "text/plain; version=0.0.4; charset=utf-8");
}
