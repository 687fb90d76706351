/*
 * routes_saga.c — the saga engine over HTTP (include/evstore_saga.h): what
 * an operator needs to find the instances that need a hand and to steer
 * one of them.  The engine is the server's (saga_host.c); without one (no
 * sagas in --app-dir nor in the store) listings are empty and an instance
 * is not found.
 *
 * Listings come from the engine's index (by type, then status, then the
 * time of the last transition, oldest first, so `stuck_for` leads with the
 * instances stuck longest) and page with an opaque cursor handed back as
 * `after`.  An instance is shown folded from its own stream
 * saga-{type}-{id}, which GET /streams/... reads too.  An action answers
 * with the instance as it is after the action was recorded; the engine's
 * workers carry on from there.  Statuses come from respond.c's table: an
 * unknown type or instance 404, an action that does not apply to the
 * instance's state 409 (the message names the state), another node's
 * lease 409.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evstore_saga.h"
#include "server/query.h"
#include "server/routes_saga.h"

#define MAX_REASON 1000u

/* ---------------------------------------------------------------- listing */

/* A saga type given as a query parameter: as the path's {saga} (http.c), 0 or -1 after a 400. */
static int type_param(evs__req *rq, char **type, enum MHD_Result *mr) {
    if (evs__query_text(rq, "type", EVS_SAGA_MAX_NAME, type, mr)) return -1;
    if (!*type) return 0;
    const char *t = *type;
    int ok = *t != '\0';
    for (; *t && ok; t++) ok = (*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
                               *t == '_' || *t == '.';
    if (ok) return 0;
    *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"type\"}",
                             "parameter type=%.64s is no saga type (1..%u of letters, digits, '_' and '.')", *type,
                             EVS_SAGA_MAX_NAME);
    free(*type);
    *type = NULL;
    return -1;
}

static int status_param(evs__req *rq, int *status, enum MHD_Result *mr) {
    const char *v = evs__query(rq, "status");
    *status = -1;
    if (!v) return 0;
    if (evs_saga_status_parse(v, status) == EVS_OK) return 0;
    *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"status\"}",
                             "parameter status=%.40s is no saga status (running, compensating, completed, "
                             "compensated, failed, compensation_failed, paused)",
                             v);
    return -1;
}

static int stuck_param(evs__req *rq, int64_t *ns, enum MHD_Result *mr) {
    const char *v = evs__query(rq, "stuck_for");
    *ns = 0;
    if (!v) return 0;
    int rc = evs__parse_duration_ns(v, ns);
    if (rc == 0 && *ns > 0) return 0;
    *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"stuck_for\"}",
                             "parameter stuck_for=%.40s %s (a duration: 90, 250ms, 30s, 5m, 2h or 1d)", v,
                             rc == -2 ? "is negative" : rc == -3 ? "is too large" : rc == 0 ? "is zero"
                                                                                   : "is not a duration");
    return -1;
}

enum MHD_Result evs__route_saga_list(evs__req *rq) {
    enum MHD_Result mr;
    char *type = NULL, *after = NULL;
    int status;
    int64_t stuck;
    uint64_t limit = 100;
    if (rq->name[0] == '\0' && type_param(rq, &type, &mr)) return mr;
    if (status_param(rq, &status, &mr) || stuck_param(rq, &stuck, &mr) ||
        evs__query_u64(rq, "limit", 1, EVS_SRV_SAGA_MAX_LIMIT, &limit, &mr) ||
        evs__query_text(rq, "after", EVS_SAGA_CURSOR_MAX - 1, &after, &mr)) {
        free(type);
        return mr;
    }
    evs_saga_info *page = calloc((size_t)limit, sizeof *page);
    char next[EVS_SAGA_CURSOR_MAX] = "";
    size_t n = 0;
    int rc = EVS_OK;
    if (!page) rc = evs__err(EVS_ENOMEM, "out of memory");
    if (!rc && rq->srv->sagas) {
        evs_saga_query q = {rq->name[0] ? rq->name : type, status, stuck, after, (size_t)limit};
        rc = evs_saga_list(rq->srv->sagas, &q, page, (size_t)limit, &n, next);
    }
    free(type);
    free(after);
    if (rc == EVS_EINVAL) { /* the only thing of ours the engine can refuse: a cursor it did not give */
        free(page);
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, "{\"parameter\":\"after\"}",
                                  "parameter after is not a cursor of this listing (pass next_after back as it came)");
    }
    if (rc) {
        free(page);
        return evs__respond_lib(rq, rc, "sagas");
    }
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"sagas\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        char *js;
        size_t len;
        if ((rc = evs_saga_info_to_json(&page[i], &js, &len))) break;
        if (i) evs__sb_add(&out, ",", 1);
        evs__sb_add(&out, js, len);
        free(js);
    }
    free(page);
    if (rc) {
        evs__sb_free(&out);
        return evs__respond_lib(rq, rc, "sagas");
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (next[0]) evs__sb_json_str(&out, next, strlen(next));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* ---------------------------------------------------------------- showing */

static enum MHD_Result no_engine(evs__req *rq) {
    return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, "{\"code\":\"EVS_ENOTFOUND\"}",
                              "no saga %s/%s: this server runs no sagas (serve --app-dir DIR with DIR/sagas/NAME.lua)",
                              rq->name, rq->part);
}

/* The instance as evs_saga_show_json gives it, with status. */
static enum MHD_Result show(evs__req *rq, unsigned status) {
    char *js = NULL;
    size_t len = 0;
    int rc = evs_saga_show_json(rq->srv->sagas, rq->name, rq->part, &js, &len);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb out = {0};
    evs__sb_add(&out, js, len);
    evs__sb_adds(&out, "\n");
    free(js);
    return evs__respond_sb(rq, status, &out);
}

enum MHD_Result evs__route_saga_show(evs__req *rq) {
    if (!rq->srv->sagas) return no_engine(rq);
    return show(rq, EVS_HTTP_OK);
}

/* ---------------------------------------------------------------- acting */

enum { A_PAUSE, A_RESUME, A_RETRY, A_SKIP, A_COMPENSATE, A_ABORT };

static enum MHD_Result act(evs__req *rq, int what) {
    evs_saga_engine *e = rq->srv->sagas;
    if (!e) return no_engine(rq);
    enum MHD_Result mr;
    char *reason = NULL, *step = NULL;
    /* the route table lets through only the parameters each action takes */
    if (evs__query_text(rq, "reason", MAX_REASON, &reason, &mr)) return mr;
    if (evs__query_text(rq, "step", EVS_SAGA_MAX_STEP_NAME, &step, &mr)) {
        free(reason);
        return mr;
    }
    int rc;
    switch (what) {
    case A_PAUSE: rc = evs_saga_pause(e, rq->name, rq->part, reason); break;
    case A_RESUME: rc = evs_saga_resume(e, rq->name, rq->part); break;
    case A_RETRY: rc = evs_saga_retry_now(e, rq->name, rq->part); break;
    case A_SKIP: rc = evs_saga_skip(e, rq->name, rq->part, step, reason); break;
    case A_COMPENSATE: rc = evs_saga_compensate(e, rq->name, rq->part, reason); break;
    default: rc = evs_saga_abort(e, rq->name, rq->part, reason); break;
    }
    free(reason);
    free(step);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    return show(rq, EVS_HTTP_OK);
}

enum MHD_Result evs__route_saga_pause(evs__req *rq) { return act(rq, A_PAUSE); }
enum MHD_Result evs__route_saga_resume(evs__req *rq) { return act(rq, A_RESUME); }
enum MHD_Result evs__route_saga_retry(evs__req *rq) { return act(rq, A_RETRY); }
enum MHD_Result evs__route_saga_skip(evs__req *rq) { return act(rq, A_SKIP); }
enum MHD_Result evs__route_saga_compensate(evs__req *rq) { return act(rq, A_COMPENSATE); }
enum MHD_Result evs__route_saga_abort(evs__req *rq) { return act(rq, A_ABORT); }
