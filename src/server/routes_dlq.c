/*
 * routes_dlq.c — dead-letter queues over HTTP, the same routes under
 * /subscriptions/N/dlq, /projections/N/dlq and /groups/N/dlq: list, show
 * (with the parked event), retry one or all, discard, purge.  An entry is
 * named by the global position of the parked event.
 *
 * Retrying depends on who runs the consumer: a projection run here
 * applies the event with its current script through its handle (taken
 * over from its runner); a group hands it out again to a consumer; a
 * subscription with a C handler is retried by the program that runs it,
 * so over HTTP that is a 409.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.h"
#include "server/records.h"
#include "server/routes_dlq.h"

#define DLQ_DEFAULT_PAGE 100u
#define DLQ_MAX_PAGE 1000u                  /* DLQ entries (about 1.4 KB each) */

static void entry_json(evs__sb *b, const evs_dlq_entry *e) {
    evs__sb_printf(b, "{\"position\":%llu,\"stream\":", (unsigned long long)e->position);
    evs__sb_json_str(b, e->stream, strlen(e->stream));
    evs__sb_printf(b, ",\"stream_position\":%llu,\"event_type\":", (unsigned long long)e->stream_position);
    evs__sb_json_str(b, e->event_type, strlen(e->event_type));
    evs__sb_printf(b, ",\"attempts\":%u,\"last_error\":", e->attempts);
    evs__sb_json_str(b, e->last_error, strlen(e->last_error));
    evs__sb_adds(b, ",\"first_failure_at\":");
    evs__sb_json_time(b, e->first_failure_at);
    evs__sb_adds(b, ",\"last_failure_at\":");
    evs__sb_json_time(b, e->last_failure_at);
    evs__sb_adds(b, ",\"blocked_by\":");
    if (e->blocked_by) evs__sb_printf(b, "%llu", (unsigned long long)e->blocked_by);
    else evs__sb_adds(b, "null");
    evs__sb_adds(b, "}");
}

/* The DLQ id segment: a global position.  0, or -1 after a 400. */
static int dlq_id(evs__req *rq, uint64_t *pos, enum MHD_Result *mr) {
    int rc = evs__parse_u64(rq->id, UINT64_MAX - 1, pos);
    if (rc || *pos == 0) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                   "DLQ entry \"%.31s\" is not a global position (1, 2, ...)%s", rq->id,
                   rc == -2 ? ": negative" : rc == -3 ? ": too large" : "");
        return -1;
    }
    return 0;
}

/* The page of entries after `after` (parameters checked by the caller). */
static enum MHD_Result dlq_list(evs__req *rq, const evs_consumer_info *info, uint64_t after, uint64_t limit) {
    enum MHD_Result mr = MHD_NO;
    uint64_t depth = 0;
    evs__sb out = {0};
    evs_dlq_entry *e = malloc((size_t)limit * sizeof *e);
    if (!e) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    size_t n = 0;
    int rc = evs_dlq_list(rq->srv->bus->bus, info->name, after, e, (size_t)limit, &n);
    if (!rc) rc = evs_dlq_depth(rq->srv->bus->bus, info->name, &depth);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "DLQ");
        goto cleanup;
    }
    evs__sb_adds(&out, "{\"consumer\":");
    evs__sb_json_str(&out, info->name, strlen(info->name));
    evs__sb_printf(&out, ",\"depth\":%llu,\"entries\":[", (unsigned long long)depth);
    for (size_t i = 0; i < n; i++) {
        if (i) evs__sb_add(&out, ",", 1);
        entry_json(&out, &e[i]);
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (n == limit) evs__sb_printf(&out, "%llu", (unsigned long long)e[n - 1].position);
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    free(e);
    evs__sb_free(&out);
    return mr;
}

/* GET .../dlq/ID: the entry and the parked event itself. */
static enum MHD_Result dlq_show(evs__req *rq, const evs_consumer_info *info, uint64_t pos) {
    evs_dlq_entry e;
    int rc = evs_dlq_get(rq->srv->bus->bus, info->name, pos, &e);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info->name,
                    (unsigned long long)pos);
    if (rc) return evs__respond_lib(rq, rc, "DLQ");
    evs__sb out = {0};
    entry_json(&out, &e);
    out.len--; /* reopen the object for the event */
    evs__sb_adds(&out, ",\"event\":");
    evs_reader *r = NULL;
    const evs_event *ev;
    char *js = NULL;
    size_t jn;
    if (evs_read_all(rq->srv->store, pos, EVS_FORWARD, NULL, 1, &r) == EVS_OK && evs_reader_next(r, &ev) == EVS_OK &&
        ev->global_position == pos && evs_event_to_json(ev, &js, &jn) == EVS_OK)
        evs__sb_add(&out, js, jn);
    else
        evs__sb_adds(&out, "null");
    free(js);
    evs_reader_close(r);
    evs__sb_adds(&out, "}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* POST .../dlq/ID/retry and .../dlq/retry: deliver parked events again to the handler. */
static enum MHD_Result dlq_retry(evs__req *rq, const evs_consumer_info *info, uint64_t pos) {
    evs_dlq_entry e;
    int rc;
    if (pos) {
        if ((rc = evs_dlq_get(rq->srv->bus->bus, info->name, pos, &e)) == EVS_ENOTFOUND)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info->name,
                        (unsigned long long)pos);
        if (rc) return evs__respond_lib(rq, rc, "DLQ");
    }
    if (evs__is_group(info)) {
        /* through the group: the event is delivered again to a consumer, and
           its entry stays until that delivery is acked or skipped */
        size_t queued = 0;
        evs__ghandle *gh = NULL;
        pthread_mutex_lock(&rq->srv->bus->admin_mu);
        rc = evs__group_open_locked(rq->srv->bus, info->name, &gh);
        if (!rc) rc = pos ? evs_group_dlq_retry(gh->g, pos) : evs_group_dlq_retry_all(gh->g, &queued);
        enum MHD_Result mr = MHD_NO;
        if (rc) mr = evs__respond_lib(rq, rc, "retry");
        pthread_mutex_unlock(&rq->srv->bus->admin_mu);
        evs__group_put(gh);
        if (rc) return mr;
        evs__sb out = {0};
        if (pos) evs__sb_printf(&out, "{\"position\":%llu,\"queued\":true}\n", (unsigned long long)pos);
        else evs__sb_printf(&out, "{\"queued\":%zu}\n", queued);
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    evs__runner *r = evs__is_projection(info) ? evs__runner_find(rq->srv->bus, info->name) : NULL;
    if (r) evs__runner_hold(r);
    if (!r || !r->p) {
        if (r) evs__runner_release(r);
        evs__runner_put(r);
        return evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL,
                    "%s \"%s\" has no handler in this server: retry it where it runs (evs_sub_dlq_retry)",
                    info->kind, info->name);
    }
    /* a rebuild replays into a fresh copy: a retried event would be applied there twice */
    evs_proj_status st;
    if (evs_proj_get_status(r->p, &st) == EVS_OK && st.rebuilding) {
        evs__runner_release(r);
        evs__runner_put(r);
        return evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "projection \"%s\" is rebuilding: retry after the rebuild", info->name);
    }
    size_t released = 0, still = 0;
    char msg[768] = "";
    if (pos) rc = evs_proj_dlq_retry(r->p, pos);
    else rc = evs_proj_dlq_retry_all(r->p, &released, &still);
    if (rc) evs__copy_errmsg(msg, sizeof msg, rc);
    evs__runner_release(r);
    evs__runner_put(r);
    evs__sb out = {0};
    if (!pos && !rc) {
        evs__sb_printf(&out, "{\"released\":%zu,\"still_parked\":%zu}\n", released, still);
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_OK) {
        evs__sb_printf(&out, "{\"position\":%llu,\"released\":true}\n", (unsigned long long)pos);
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_EFAILED) { /* the handler failed again: the entry stays, updated */
        if (evs_dlq_get(rq->srv->bus->bus, info->name, pos, &e) == EVS_OK) entry_json(&out, &e);
        else evs__sb_adds(&out, "null");
        size_t dl;
        char *d = evs__sb_take(&out, &dl);
        enum MHD_Result mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d ? d : "null", "%s", msg);
        free(d);
        return mr;
    }
    return evs__respond_code(rq, rc, "retry", msg);
}

/* GET .../dlq?after=&limit= */
enum MHD_Result evs__route_dlq_list(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    uint64_t after = 0, limit = DLQ_DEFAULT_PAGE;
    if (evs__query_u64(rq, "after", 0, UINT64_MAX - 1, &after, &mr) ||
        evs__query_u64(rq, "limit", 1, DLQ_MAX_PAGE, &limit, &mr) || evs__need_consumer(rq, &info, &mr))
        return mr;
    return dlq_list(rq, &info, after, limit);
}

/* DELETE .../dlq: purge */
enum MHD_Result evs__route_dlq_purge(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    uint64_t removed = 0;
    int rc = evs_dlq_purge(rq->srv->bus->bus, info.name, &removed);
    if (rc) return evs__respond_lib(rq, rc, "DLQ purge");
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"purged\":%llu}\n", (unsigned long long)removed);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* GET .../dlq/ID */
enum MHD_Result evs__route_dlq_show(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    uint64_t pos;
    if (dlq_id(rq, &pos, &mr) || evs__need_consumer(rq, &info, &mr)) return mr;
    return dlq_show(rq, &info, pos);
}

/* DELETE .../dlq/ID */
enum MHD_Result evs__route_dlq_discard(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    uint64_t pos;
    if (dlq_id(rq, &pos, &mr) || evs__need_consumer(rq, &info, &mr)) return mr;
    int rc = evs_dlq_discard(rq->srv->bus->bus, info.name, pos);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" has no DLQ entry at position %llu", info.name,
                                  (unsigned long long)pos);
    if (rc) return evs__respond_lib(rq, rc, "DLQ discard");
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"discarded\":%llu}\n", (unsigned long long)pos);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* POST .../dlq/ID/retry */
enum MHD_Result evs__route_dlq_retry(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    uint64_t pos;
    if (dlq_id(rq, &pos, &mr) || evs__need_consumer(rq, &info, &mr)) return mr;
    return dlq_retry(rq, &info, pos);
}

/* POST .../dlq/retry */
enum MHD_Result evs__route_dlq_retry_all(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    return dlq_retry(rq, &info, 0);
}
