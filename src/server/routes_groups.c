/*
 * routes_groups.c — competing-consumer groups over HTTP: create or change
 * a group (PUT|POST /groups/N with its settings as JSON), the long-poll
 * `next`, `ack` and `nack`, and DELETE of one consumer.  Lists, status,
 * pause, resume, reset and delete are routes_subs.c's, DLQs routes_dlq.c's;
 * the open groups and their members are consumers.c's.
 *
 * Long-poll.  evs_group_next blocks, and a libmicrohttpd worker serves many
 * connections: so `next` suspends the connection and waits on a thread of
 * its own (at most EVS_GROUP_MAX_POLLS of them), which resumes the
 * connection with the result; libmicrohttpd then calls the route again and
 * it answers.  At shutdown evs__consumers_quiesce cancels the waits, so
 * every suspended connection is resumed before the daemon stops.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/settings.h"
#include "server/query.h"
#include "server/records.h"
#include "server/routes_groups.h"

#define GROUP_MAX_TIMEOUT_MS 30000u
#define GROUP_DEFAULT_TIMEOUT_MS 5000u

/*
 * PUT|POST /groups/N: create a group, or replace the settings of one
 * (checkpoint, counters and DLQ are kept).  Replacing closes the open
 * group: its consumers are released and their unacked deliveries are
 * handed out again when they come back.
 */
enum MHD_Result evs__route_group_put(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    evs__group_settings_in g;
    evs__settings_err j;
    if (evs__req_settings(rq, &root, &mr)) return mr;
    if (evs__group_settings_parse(root, rq->name, &g, &j)) {
        mr = evs__respond_settings_error(rq, &j);
        json_decref(root);
        return mr;
    }
    evs__consumers *bs = rq->srv->bus;
    pthread_mutex_lock(&bs->admin_mu);
    evs_consumer_info info;
    int rc = evs_consumer_get(bs->bus, rq->name, &info);
    int exists = rc == EVS_OK;
    if (rc && rc != EVS_ENOTFOUND) {
        mr = evs__respond_lib(rq, rc, "group");
    } else if (exists && !evs__is_group(&info)) {
        mr = evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "\"%s\" is a %s; a group needs another name", rq->name, info.kind);
    } else {
        if (exists) {
            evs__ghandle *gh = evs__group_find(bs, rq->name);
            if (gh) {
                evs__group_retire(gh);
                evs__group_put(gh);
            }
            rc = evs_group_update(bs->bus, &g.c);
        } else {
            rc = evs_group_create(bs->bus, &g.c);
        }
        if (rc) mr = evs__respond_lib(rq, rc, exists ? "group update" : "group create");
    }
    pthread_mutex_unlock(&bs->admin_mu);
    json_decref(root);
    if (rc || (exists && !evs__is_group(&info))) return mr;
    return evs__answer_consumer(rq, exists ? EVS_HTTP_OK : EVS_HTTP_CREATED);
}

/* ack|nack body: {"consumer": C, "position": P, "attempt": A[, "action": ..., "reason": ...]}. */
static enum MHD_Result group_answer(evs__req *rq, int nack) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    static const char *const akeys[] = {"consumer", "position", "attempt", NULL};
    static const char *const nkeys[] = {"consumer", "position", "attempt", "action", "reason", NULL};
    evs__settings_err j;
    memset(&j, 0, sizeof j);
    const char *consumer = NULL, *action = NULL, *reason = NULL;
    long long pos = 0, attempt = 0;
    if (evs__req_json(rq, &root, &mr)) return mr;
    if (!json_is_object(root)) evs__settings_fail(&j, "", "expected an object {\"consumer\", \"position\", \"attempt\"}");
    else if (!evs__settings_keys(&j, root, "the answer", nack ? nkeys : akeys) &&
             !evs__settings_str(&j, root, "consumer", EVS_BUS_MAX_NAME, &consumer) &&
             !evs__settings_int(&j, root, "position", 1, INT64_MAX, &pos) && !evs__settings_int(&j, root, "attempt", 1, UINT32_MAX, &attempt) &&
             !evs__settings_str(&j, root, "action", 16, &action) && !evs__settings_str(&j, root, "reason", 500, &reason)) {
        if (!consumer) evs__settings_fail(&j, "consumer", "consumer is required");
        else if (!pos) evs__settings_fail(&j, "position", "position is required");
        else if (!attempt) evs__settings_fail(&j, "attempt", "attempt is required");
    }
    evs_nack_action act = EVS_NACK_RETRY;
    if (!j.field && action) {
        if (strcmp(action, "retry") == 0) act = EVS_NACK_RETRY;
        else if (strcmp(action, "park") == 0) act = EVS_NACK_PARK;
        else if (strcmp(action, "skip") == 0) act = EVS_NACK_SKIP;
        else evs__settings_fail(&j, "action", "action must be \"retry\", \"park\" or \"skip\"");
    }
    if (j.field) {
        mr = evs__respond_settings_error(rq, &j);
        goto cleanup;
    }
    evs_consumer_info info;
    if (evs__need_consumer(rq, &info, &mr)) goto cleanup;
    evs__ghandle *gh = evs__group_find(rq->srv->bus, info.name);
    if (!gh) {
        mr = evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL,
                  "group \"%s\" has no open deliveries (it was closed or the server restarted): ask again with next",
                  info.name);
        goto cleanup;
    }
    evs__gmember *m;
    char msg[512];
    int rc = evs__member_acquire(gh, consumer, 0, &m, msg, sizeof msg);
    if (rc) {
        evs__group_put(gh);
        mr = evs__respond_error(rq, rc == EVS_ENOTFOUND ? EVS_HTTP_CONFLICT : evs__http_status(rc), NULL, "%s", msg);
        goto cleanup;
    }
    evs_delivery_id id = {(uint64_t)pos, (uint32_t)attempt};
    rc = nack ? evs_group_nack(m->m, id, act, reason) : evs_group_ack(m->m, id);
    if (rc) evs__copy_errmsg(msg, sizeof msg, rc);
    evs__member_release(gh, m);
    evs__group_put(gh);
    if (rc) {
        mr = evs__respond_code(rq, rc, nack ? "nack" : "ack", msg);
        goto cleanup;
    }
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"%s\":{\"position\":%lld,\"attempt\":%lld}", nack ? "nacked" : "acked", pos, attempt);
    if (nack) evs__sb_printf(&out, ",\"action\":\"%s\"", act == EVS_NACK_PARK ? "park" : act == EVS_NACK_SKIP ? "skip" : "retry");
    evs__sb_adds(&out, "}\n");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    json_decref(root);
    return mr;
}

/*
 * A long-poll in progress (rq->state).  The poll thread writes the result
 * and sets done before it resumes the connection; from then on only the
 * request's thread touches it, and the request's completion frees it.
 */
enum { JOB_RUNNING = 1, JOB_DONE };

typedef struct poll_job {
    _Atomic int state;                /* JOB_* */
    int rc;
    char msg[512];
    evs_delivery *d;                  /* the delivery, until the answer or the completion */
    evs__ghandle *gh;                 /* a reference, dropped at completion */
    evs__gmember *m;                  /* busy for the poll thread */
    int timeout_ms;
    char consumer[EVS_BUS_MAX_NAME + 1];
    struct MHD_Connection *conn;
    evs__consumers *bs;
} poll_job;

static void poll_job_free(void *p) {
    poll_job *job = p;
    evs_delivery_free(job->d); /* answered or not, the delivery is the library's to time out */
    evs__group_put(job->gh);
    free(job);
}

/* The long-poll thread: wait for a delivery, then resume the connection. */
static void *poll_main(void *arg) {
    poll_job *job = arg;
    evs_delivery *d = NULL;
    job->rc = evs_group_next(job->m->m, job->timeout_ms, &d);
    if (job->rc) evs__copy_errmsg(job->msg, sizeof job->msg, job->rc);
    job->d = d;
    evs__member_release(job->gh, job->m);
    job->m = NULL;
    struct MHD_Connection *c = job->conn;
    evs__consumers *bs = job->bs;
    atomic_store_explicit(&job->state, JOB_DONE, memory_order_release);
    MHD_resume_connection(c); /* the request, and job with it, may be gone from here on */
    atomic_fetch_sub(&bs->polls, 1);
    return NULL;
}

/* The resumed long-poll: one delivery, or none with the reason. */
static enum MHD_Result next_done(evs__req *rq, poll_job *job) {
    evs__sb out = {0};
    int rc = job->rc;
    if (rc == EVS_OK) {
        evs_delivery *d = job->d;
        char *js = NULL;
        size_t jn;
        int jrc = evs_event_to_json(&d->event, &js, &jn);
        if (jrc) return evs__respond_lib(rq, jrc, "render the delivery");
        evs__sb_adds(&out, "{\"consumer\":");
        evs__sb_json_str(&out, job->consumer, strlen(job->consumer));
        evs__sb_printf(&out, ",\"delivery\":{\"position\":%llu,\"attempt\":%u},\"event\":",
                       (unsigned long long)d->id.position, d->id.attempt);
        evs__sb_add(&out, js, jn);
        evs__sb_adds(&out, "}\n");
        free(js);
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_ETIMEDOUT) { /* nothing for this consumer in time: an answer, not an error */
        evs__sb_adds(&out, "{\"consumer\":");
        evs__sb_json_str(&out, job->consumer, strlen(job->consumer));
        evs__sb_adds(&out, ",\"delivery\":null,\"event\":null,\"reason\":");
        evs__sb_json_str(&out, job->msg, strlen(job->msg));
        evs__sb_adds(&out, "}\n");
        return evs__respond_sb(rq, EVS_HTTP_OK, &out);
    }
    if (rc == EVS_ECLOSED)
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL,
                                  "next: group \"%s\" was closed (updated, reset, deleted, or the server is stopping): "
                                  "ask again", rq->name);
    return evs__respond_code(rq, rc, "next", job->msg);
}

/*
 * POST /groups/N/next?consumer=&timeout_ms=: start the long-poll; the
 * connection is suspended, and the answer comes when the poll thread
 * resumes it and libmicrohttpd calls the route again.
 */
enum MHD_Result evs__route_group_next(evs__req *rq) {
    poll_job *job = rq->state;
    if (job) return atomic_load_explicit(&job->state, memory_order_acquire) == JOB_DONE ? next_done(rq, job) : MHD_YES;
    enum MHD_Result mr = MHD_NO;
    char *consumer = NULL;
    uint64_t timeout = GROUP_DEFAULT_TIMEOUT_MS;
    evs_consumer_info info;
    evs__ghandle *gh = NULL;
    evs__consumers *bs = rq->srv->bus;
    if (evs__query_text(rq, "consumer", EVS_BUS_MAX_NAME, &consumer, &mr) ||
        evs__query_u64(rq, "timeout_ms", 0, GROUP_MAX_TIMEOUT_MS, &timeout, &mr))
        goto cleanup;
    if (!consumer || !*consumer) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                "parameter consumer (the consumer's name, 1..%u bytes) is required", EVS_BUS_MAX_NAME);
        goto cleanup;
    }
    for (const char *p = consumer; *p; p++)
        if ((unsigned char)*p < 0x20) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter consumer contains a control character");
            goto cleanup;
        }
    if (evs__need_consumer(rq, &info, &mr)) goto cleanup;
    int rc = evs__group_open(bs, info.name, &gh);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "open group");
        goto cleanup;
    }
    if (!(job = calloc(1, sizeof *job))) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    if (atomic_fetch_add(&bs->polls, 1) >= EVS_GROUP_MAX_POLLS) {
        atomic_fetch_sub(&bs->polls, 1);
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "%d long-polls are waiting already; try again",
                                EVS_GROUP_MAX_POLLS);
        goto cleanup;
    }
    char msg[512];
    if ((rc = evs__member_acquire(gh, consumer, 1, &job->m, msg, sizeof msg))) {
        atomic_fetch_sub(&bs->polls, 1);
        /* a group with all the consumers it may have is a conflict with them, not a size limit */
        mr = evs__respond_error(rq, rc == EVS_ELIMIT ? EVS_HTTP_CONFLICT : evs__http_status(rc), NULL, "%s", msg);
        goto cleanup;
    }
    job->gh = gh;
    gh = NULL;
    job->timeout_ms = (int)timeout;
    job->conn = rq->c;
    job->bs = bs;
    snprintf(job->consumer, sizeof job->consumer, "%s", consumer);
    atomic_store(&job->state, JOB_RUNNING);
    if (evs__req_run_suspended(rq, job, poll_job_free, poll_main)) {
        evs__member_release(job->gh, job->m);
        job->m = NULL;
        atomic_fetch_sub(&bs->polls, 1);
        poll_job_free(job);
        job = NULL;
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "cannot start a long-poll thread");
        goto cleanup;
    }
    job = NULL; /* the request's now */
    mr = MHD_YES;
cleanup:
    free(job);
    evs__group_put(gh);
    free(consumer);
    return mr;
}

/* DELETE /groups/N/consumers/C: the consumer leaves now. */
enum MHD_Result evs__route_group_leave(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    /* under admin_mu: closing the group (which frees members) waits for us */
    pthread_mutex_lock(&rq->srv->bus->admin_mu);
    evs__ghandle *gh = evs__group_find(rq->srv->bus, info.name);
    int rc = gh ? evs__member_remove(gh, rq->part) : EVS_ENOTFOUND;
    pthread_mutex_unlock(&rq->srv->bus->admin_mu);
    evs__group_put(gh);
    if (rc) return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "consumer \"%s\" is not connected to group \"%s\"", rq->part, info.name);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"left\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    evs__sb_adds(&out, "}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_group_ack(evs__req *rq) { return group_answer(rq, 0); }
enum MHD_Result evs__route_group_nack(evs__req *rq) { return group_answer(rq, 1); }
