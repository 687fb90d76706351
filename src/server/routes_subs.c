/*
 * routes_subs.c — the routes on consumer records, for every kind: the
 * lists (GET /subscriptions?kind=, /projections, /groups), one record,
 * DELETE, and pause, resume, reset and rebuild.  Under /subscriptions they
 * take any kind; under /projections and /groups only their own.
 *
 * A projection run here is paused, reset or rebuilt through its handle
 * (taken over from its runner), an open group through its group handle;
 * any other consumer is not open in this process, so its record is changed
 * directly.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.h"
#include "server/records.h"
#include "server/routes_subs.h"

#define SUBS_DEFAULT_PAGE 100u
#define SUBS_MAX_PAGE 1000u                  /* records (about 3.6 KB each) */

enum { ACT_PAUSE, ACT_RESUME, ACT_RESET, ACT_REBUILD };

/* GET /projections, GET /subscriptions[?kind=]: records in name order, paged by after. */
enum MHD_Result evs__route_consumer_list(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    evs_consumer_info *page = NULL;
    char *after = NULL, *kind = NULL;
    evs__sb out = {0};
    uint64_t limit = SUBS_DEFAULT_PAGE;
    if (evs__query_u64(rq, "limit", 1, SUBS_MAX_PAGE, &limit, &mr) ||
        evs__query_text(rq, "after", EVS_BUS_MAX_NAME, &after, &mr) ||
        (rq->route == EVS_R_SUBSCRIPTIONS && evs__query_text(rq, "kind", 32, &kind, &mr)))
        goto cleanup;
    const char *want = rq->route == EVS_R_SUBSCRIPTIONS ? kind : evs__area_kind(rq);
    if (want && strcmp(want, "projection") != 0 && strcmp(want, "subscription") != 0 && strcmp(want, "group") != 0) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter kind=%.40s: use subscription, projection or group", want);
        goto cleanup;
    }
    if (!(page = calloc(EVS_CONSUMERS_LIST_CHUNK, sizeof *page))) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    char cursor[EVS_BUS_MAX_NAME + 1];
    snprintf(cursor, sizeof cursor, "%s", after ? after : "");
    evs__sb_printf(&out, "{\"%s\":[", rq->route == EVS_R_PROJECTIONS     ? "projections"
                                       : rq->route == EVS_R_GROUPS ? "groups"
                                                                 : "subscriptions");
    uint64_t count = 0;
    size_t n;
    int more = 1;
    char last[EVS_BUS_MAX_NAME + 1] = "";
    while (more && count < limit) {
        int rc = evs_consumer_list(rq->srv->bus->bus, cursor[0] ? cursor : NULL, page, EVS_CONSUMERS_LIST_CHUNK, &n);
        if (rc) {
            mr = evs__respond_lib(rq, rc, "list consumers");
            goto cleanup;
        }
        more = n == EVS_CONSUMERS_LIST_CHUNK;
        for (size_t i = 0; i < n && count < limit; i++) {
            snprintf(cursor, sizeof cursor, "%s", page[i].name);
            if (want && strcmp(page[i].kind, want) != 0) continue;
            evs__run_view v;
            int proj = evs__is_projection(&page[i]);
            if (proj) evs__runner_view(rq->srv->bus, page[i].name, &v);
            if (count++) evs__sb_add(&out, ",", 1);
            if (!evs__is_group(&page[i]) || evs__group_json(rq, &out, page[i].name) != EVS_OK)
                evs__consumer_json(&out, &page[i], proj ? &v : NULL);
            snprintf(last, sizeof last, "%s", page[i].name);
            if (count == limit && (i + 1 < n || more)) more = 2; /* stopped with records left */
        }
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (more == 2) evs__sb_json_str(&out, last, strlen(last));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    free(page);
    free(after);
    free(kind);
    evs__sb_free(&out);
    return mr;
}

/* DELETE /projections/N, /subscriptions/N: the record, its state and its DLQ. */
enum MHD_Result evs__route_consumer_delete(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    pthread_mutex_lock(&rq->srv->bus->admin_mu);
    if (evs__need_consumer(rq, &info, &mr)) goto out;
    evs__runner *r = evs__runner_find(rq->srv->bus, info.name);
    if (r) {
        evs__runner_retire(r);
        evs__runner_put(r);
    }
    evs__ghandle *gh = evs__group_find(rq->srv->bus, info.name);
    if (gh) {
        evs__group_retire(gh);
        evs__group_put(gh);
    }
    int rc = evs_consumer_delete(rq->srv->bus->bus, info.name);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "delete");
        goto out;
    }
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"deleted\":");
    evs__sb_json_str(&out, info.name, strlen(info.name));
    evs__sb_printf(&out, ",\"kind\":\"%s\"}\n", info.kind);
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
out:
    pthread_mutex_unlock(&rq->srv->bus->admin_mu);
    return mr;
}

/*
 * POST .../pause, resume, reset, rebuild.  A projection run here goes
 * through its handle; any other consumer is not open in this process, so
 * its record is changed directly.
 *   reset (subscription): the next position is ?to= (a position or now; default 1).
 *   reset (projection): start over from ?to= (default 1): a fresh state is
 *     built from there (the current one answers until it catches up) and the
 *     DLQ is emptied, in the one transaction of evs_proj_reset.
 *   rebuild (projection): recompute the state from ?from= (default 1) into a
 *     fresh copy, then swap; the DLQ is kept.
 */
static enum MHD_Result action(evs__req *rq, int op) {
    evs_consumer_info info;
    enum MHD_Result mr = MHD_NO;
    uint64_t pos = 1;
    if (op == ACT_RESET && evs__query_position(rq, "to", &pos, &mr)) return mr;
    if (op == ACT_REBUILD && evs__query_position(rq, "from", &pos, &mr)) return mr;
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    int rc = EVS_OK;
    const char *what = op == ACT_PAUSE ? "pause" : op == ACT_RESUME ? "resume" : op == ACT_RESET ? "reset" : "rebuild";
    if (evs__is_group(&info)) {
        /* an open group pauses through its handle; a reset needs it closed */
        pthread_mutex_lock(&rq->srv->bus->admin_mu);
        evs__ghandle *gh = evs__group_find(rq->srv->bus, info.name);
        if (op == ACT_PAUSE || op == ACT_RESUME) {
            if (gh && gh->g) rc = op == ACT_PAUSE ? evs_group_pause(gh->g) : evs_group_resume(gh->g);
            else rc = evs_consumer_set_status(rq->srv->bus->bus, info.name, op == ACT_PAUSE ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
        } else {
            /* a refused position is refused before the group is closed: its consumers stay connected.
               So two calls: the first checks the position before the open check (modify_closed) and
               answers EVS_ELOCKED only for a position it accepts; the second moves the closed group.
               (test_reset_past_the_head_is_refused_and_keeps_the_group_open) */
            rc = evs_consumer_set_position(rq->srv->bus->bus, info.name, pos);
            if (rc == EVS_ELOCKED && gh) {
                evs__group_retire(gh);
                rc = evs_consumer_set_position(rq->srv->bus->bus, info.name, pos);
            }
        }
        if (rc) mr = evs__respond_lib(rq, rc, what);
        pthread_mutex_unlock(&rq->srv->bus->admin_mu);
        evs__group_put(gh);
        return rc ? mr : evs__answer_consumer(rq, EVS_HTTP_OK);
    }
    evs__runner *r = evs__is_projection(&info) ? evs__runner_find(rq->srv->bus, info.name) : NULL;
    if (r) evs__runner_hold(r);
    if (r && r->p) {
        switch (op) {
        case ACT_PAUSE: rc = evs_proj_pause(r->p); break;
        case ACT_RESUME: rc = evs_proj_resume(r->p); break;
        case ACT_REBUILD: rc = evs_proj_rebuild(r->p, pos); break;
        default: rc = evs_proj_reset(r->p, pos); break; /* moved back and DLQ emptied: one transaction */
        }
    } else if (op == ACT_PAUSE || op == ACT_RESUME) {
        rc = evs_consumer_set_status(rq->srv->bus->bus, info.name, op == ACT_PAUSE ? EVS_CONSUMER_PAUSED : EVS_CONSUMER_ACTIVE);
    } else if (!evs__is_projection(&info)) {
        rc = evs_consumer_set_position(rq->srv->bus->bus, info.name, pos);
    } else {
        int had = r != NULL;
        if (r) evs__runner_release(r);
        evs__runner_put(r);
        return evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "projection \"%s\" is not run by this server (%s): it cannot %s here",
                    info.name, had ? "its script cannot run" : "no stored Lua script", what);
    }
    if (r) evs__runner_release(r);
    evs__runner_put(r);
    if (rc) return evs__respond_lib(rq, rc, what);
    return evs__answer_consumer(rq, EVS_HTTP_OK);
}

/* The record's handler: never called (the record is only created or changed here). */
static int no_handler(void *ctx, const evs_event *ev, char *err, size_t cap) {
    (void)ctx, (void)ev;
    snprintf(err, cap, "no handler: the server does not run subscriptions");
    return 1;
}

/*
 * PUT|POST /subscriptions/N: create a subscription's record (201), or
 * replace its settings (200; checkpoint, counters and DLQ are kept).  The
 * program that runs it (evs_sub_open) finds it where it was left: `from`
 * decides where a new one starts, e.g. "now" for "what happens from here".
 */
enum MHD_Result evs__route_sub_put(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    evs__sub_settings_in sj;
    evs__settings_err j;
    if (evs__req_settings(rq, &root, &mr)) return mr;
    if (evs__sub_settings_parse(root, rq->name, &sj, &j)) {
        mr = evs__respond_settings_error(rq, &j);
        json_decref(root);
        return mr;
    }
    evs__consumers *bs = rq->srv->bus;
    evs_consumer_info info;
    pthread_mutex_lock(&bs->admin_mu);
    int rc = evs_consumer_get(bs->bus, rq->name, &info);
    int exists = rc == EVS_OK, ok = 0;
    if (rc && rc != EVS_ENOTFOUND) {
        mr = evs__respond_lib(rq, rc, "subscription");
    } else if (exists && strcmp(info.kind, "subscription") != 0) {
        mr = evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "\"%s\" is a %s; a subscription needs another name",
                                rq->name, info.kind);
    } else {
        evs_subscription *sub = NULL;
        if ((rc = evs_sub_open(bs->bus, &sj.c, no_handler, NULL, &sub))) {
            mr = evs__respond_lib(rq, rc, exists ? "subscription update" : "subscription create");
        } else {
            evs_sub_close(sub);
            ok = 1;
        }
    }
    pthread_mutex_unlock(&bs->admin_mu);
    json_decref(root);
    return ok ? evs__answer_consumer(rq, exists ? EVS_HTTP_OK : EVS_HTTP_CREATED) : mr;
}

enum MHD_Result evs__route_consumer_get(evs__req *rq) { return evs__answer_consumer(rq, EVS_HTTP_OK); }
enum MHD_Result evs__route_consumer_pause(evs__req *rq) { return action(rq, ACT_PAUSE); }
enum MHD_Result evs__route_consumer_resume(evs__req *rq) { return action(rq, ACT_RESUME); }
enum MHD_Result evs__route_consumer_reset(evs__req *rq) { return action(rq, ACT_RESET); }
enum MHD_Result evs__route_consumer_rebuild(evs__req *rq) { return action(rq, ACT_REBUILD); }
