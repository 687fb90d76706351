/*
 * records.c — consumer records as the consumer routes show them (see
 * records.h): finding the request's consumer, and the JSON of a record,
 * with a projection's runner and a group's settings and live figures.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "server/records.h"

static void json_str_or_null(evs__sb *b, const char *s) {
    if (s && *s) evs__sb_json_str(b, s, strlen(s));
    else evs__sb_adds(b, "null");
}

/* A consumer record (the one writer: bus/settings.c); v (projections only) adds what the runner knows. */
void evs__consumer_json(evs__sb *b, const evs_consumer_info *i, const evs__run_view *v) {
    evs__consumer_record_json(b, i);
    if (!v) return;
    b->len--; /* reopen the object for the runner's fields */
    evs__sb_printf(b, ",\"running\":%s,\"runner_error\":", v->running ? "true" : "false");
    json_str_or_null(b, v->error);
    if (v->running && v->have_snap) {
        evs__sb_printf(b, ",\"generation\":%llu,\"events_per_second\":%.1f,\"rebuild\":",
                       (unsigned long long)v->snap.generation, v->snap.events_per_second);
        if (v->snap.rebuilding)
            evs__sb_printf(b, "{\"position\":%llu,\"percent\":%.1f}",
                           (unsigned long long)v->snap.rebuild_position, v->snap.rebuild_percent);
        else
            evs__sb_adds(b, "null");
    } else {
        evs__sb_adds(b, ",\"generation\":null,\"events_per_second\":0,\"rebuild\":null");
    }
    evs__sb_adds(b, "}");
}

const char *evs__area_kind(const evs__req *rq) {
    return rq->route == EVS_R_PROJECTIONS ? "projection" : rq->route == EVS_R_GROUPS ? "group" : "subscription";
}

/*
 * The record of the request's consumer; on /projections it must be a
 * projection, on /groups a group (/subscriptions takes any kind).  0, or -1
 * after queueing the answer (404, or the failure).
 */
int evs__need_consumer(evs__req *rq, evs_consumer_info *out, enum MHD_Result *mr) {
    int rc = evs_consumer_get(rq->srv->bus->bus, rq->name, out);
    if (rc == EVS_ENOTFOUND) {
        *mr = evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "%s \"%s\" not found", evs__area_kind(rq), rq->name);
        return -1;
    }
    if (rc) {
        *mr = evs__respond_lib(rq, rc, "consumer");
        return -1;
    }
    if (rq->route != EVS_R_SUBSCRIPTIONS && strcmp(out->kind, evs__area_kind(rq)) != 0) {
        *mr = evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "\"%s\" is a %s, not a %s", rq->name, out->kind,
                   evs__area_kind(rq));
        return -1;
    }
    return 0;
}

static void group_extra_json(evs__sb *b, const evs_group_info *gi, evs__ghandle *gh) {
    evs__group_settings_json(b, gi);
    evs__sb_printf(b, ",\"open\":%s,\"in_flight\":%llu,\"buffered\":%llu,\"consumers\":[", gh && gh->g ? "true" : "false",
                   (unsigned long long)gi->in_flight, (unsigned long long)gi->buffered);
    if (gh && gh->g) {
        evs_group_member_info mi[64];
        size_t n = 0;
        int64_t now = evs__mono_ns();
        if (evs_group_list_members(gh->g, mi, 64, &n) != EVS_OK) n = 0;
        for (size_t i = 0; i < n; i++) {
            evs__sb_adds(b, i ? ",{\"name\":" : "{\"name\":");
            evs__sb_json_str(b, mi[i].name, strlen(mi[i].name));
            evs__sb_printf(b, ",\"in_flight\":%u,\"delivered\":%llu,\"acked\":%llu,\"nacked\":%llu,\"timeouts\":%llu",
                           mi[i].in_flight, (unsigned long long)mi[i].delivered, (unsigned long long)mi[i].acked,
                           (unsigned long long)mi[i].nacked, (unsigned long long)mi[i].timeouts);
            long long idle = evs__group_member_idle_ms(gh, mi[i].name, now);
            if (idle >= 0) evs__sb_printf(b, ",\"idle_ms\":%lld", idle);
            evs__sb_adds(b, "}");
        }
    }
    evs__sb_adds(b, "]");
}

/* A group's record and settings; live figures and consumers when it is open here. */
int evs__group_json(evs__req *rq, evs__sb *b, const char *name) {
    evs_group_info gi;
    int rc = evs_group_get(rq->srv->bus->bus, name, &gi);
    if (rc) return rc;
    pthread_mutex_lock(&rq->srv->bus->admin_mu); /* the handle's calls are serialised with closing it */
    evs__ghandle *gh = evs__group_find(rq->srv->bus, name);
    if (gh) evs__group_expire_idle(gh); /* silent consumers leave before they are shown */
    if (gh && gh->g) {
        evs_group_info live;
        if (evs_group_get_info(gh->g, &live) == EVS_OK) gi = live;
    }
    evs__consumer_json(b, &gi.info, NULL);
    b->len--; /* reopen the object for the group's fields */
    group_extra_json(b, &gi, gh);
    pthread_mutex_unlock(&rq->srv->bus->admin_mu);
    evs__group_put(gh);
    evs__sb_adds(b, "}");
    return EVS_OK;
}

/* The current status of the request's consumer as the answer. */
enum MHD_Result evs__answer_consumer(evs__req *rq, unsigned status) {
    evs_consumer_info info;
    enum MHD_Result mr;
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    evs__run_view v;
    evs__sb out = {0};
    if (evs__is_group(&info)) {
        int rc = evs__group_json(rq, &out, info.name);
        if (rc) {
            evs__sb_free(&out);
            return evs__respond_lib(rq, rc, "group");
        }
    } else {
        if (evs__is_projection(&info)) evs__runner_view(rq->srv->bus, info.name, &v);
        evs__consumer_json(&out, &info, evs__is_projection(&info) ? &v : NULL);
    }
    evs__sb_adds(&out, "\n");
    return evs__respond_sb(rq, status, &out);
}

enum MHD_Result evs__respond_settings_error(evs__req *rq, const evs__settings_err *e) {
    evs__sb d = {0};
    evs__sb_adds(&d, "{\"field\":");
    const char *f = e->field ? e->field : "";
    evs__sb_json_str(&d, f, strlen(f));
    evs__sb_adds(&d, "}");
    enum MHD_Result mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d.oom ? NULL : d.p, "%s", e->why);
    evs__sb_free(&d);
    return mr;
}
