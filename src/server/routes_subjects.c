/*
 * routes_subjects.c — crypto-shredding over HTTP (include/evstore_crypt.h):
 *   POST /admin/subjects/{subject}/forget   destroy the subject's key;
 *        200 {"subject":...,"forgotten":true,"audit_position":N}
 *   GET  /admin/subjects/{subject}/export   the subject's events, decrypted;
 *        200 {"subject":...,"count":N,"events":[...]}
 * The store does the work (src/store/crypt.c); errors go through the one
 * error->status map (respond.c): 404 a subject without a key, 410 a
 * forgotten one (export), 422 no master key.  Both need the admin
 * permission when auth is on (the route table in http.c).
 */
#include <string.h>

#include "core/sb.h"
#include "evstore_crypt.h"
#include "server/routes_subjects.h"
#include "server/server.h"

enum MHD_Result evs__route_subject_forget(evs__req *rq) {
    evs_append_result audit;
    int rc = evs_subject_forget(rq->srv->store, rq->part, &audit);
    if (rc) return evs__respond_lib(rq, rc, "forget subject");
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"subject\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    evs__sb_printf(&out, ",\"forgotten\":true,\"audit_position\":%llu}",
                   (unsigned long long)audit.first_global_position);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

typedef struct export_ctx {
    evs__sb *out;
    int first;
} export_ctx;

static int add_event(void *arg, const evs_event *ev) {
    export_ctx *x = arg;
    if (!x->first) evs__sb_adds(x->out, ",");
    x->first = 0;
    evs__sb_event(x->out, ev);
    return x->out->oom ? EVS_ENOMEM : EVS_OK;
}

enum MHD_Result evs__route_subject_export(evs__req *rq) {
    evs__sb ev = {0};
    export_ctx x = {&ev, 1};
    uint64_t n = 0;
    int rc = evs_subject_export(rq->srv->store, rq->part, add_event, &x, &n);
    if (rc) {
        evs__sb_free(&ev);
        return evs__respond_lib(rq, rc, "export subject");
    }
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"subject\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    evs__sb_printf(&out, ",\"count\":%llu,\"events\":[", (unsigned long long)n);
    evs__sb_add(&out, ev.p ? ev.p : "", ev.len);
    evs__sb_adds(&out, "]}");
    evs__sb_free(&ev);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}
