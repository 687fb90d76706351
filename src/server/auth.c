/*
 * auth.c — the API-key check of every request (auth.h): Bearer parsing,
 * 401/403 through the one status table (EVS_EUNAUTHORIZED, EVS_EFORBIDDEN
 * in respond.c), failure counters, and the per-event permission filter.
 *
 * Nothing here ever prints or logs a presented key: failures are counted
 * by reason, and the 401 body says only which reason it was.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/auth.h"
#include "server/state.h"

static const char *const authf_names[EVS_AUTHF_COUNT] = {"missing", "malformed", "unknown", "revoked", "forbidden"};

const char *evs__authf_name(int reason) {
    return reason >= 0 && reason < EVS_AUTHF_COUNT ? authf_names[reason] : "unknown";
}

void evs__auth_need_text(int need, char *buf, size_t cap) {
    static const char *const scopes[] = {"", "stream", "any", "all"};
    unsigned perm = EVS_NEED_PERM(need);
    int scope = EVS_NEED_SCOPE(need);
    if (need == EVS_NEED_OPEN) snprintf(buf, cap, "open");
    else snprintf(buf, cap, "%s:%s", evs__perm_name(perm), scope >= 1 && scope <= 3 ? scopes[scope] : "?");
}

static void count_failure(evs__srv *srv, int reason) {
    evs__count_add(&srv->m.auth_failures[reason], 1);
}

static enum MHD_Result unauthorized(evs__req *rq, int reason, const char *msg) {
    count_failure(rq->srv, reason);
    char detail[96];
    snprintf(detail, sizeof detail, "{\"code\":\"%s\",\"reason\":\"%s\"}", evs_errname(EVS_EUNAUTHORIZED),
             evs__authf_name(reason));
    return evs__respond_error(rq, evs__http_status(EVS_EUNAUTHORIZED), detail, "%s", msg);
}

enum MHD_Result evs__auth_forbid(evs__req *rq, unsigned perm, const char *stream, size_t stream_len,
                                 const char *type, size_t type_len) {
    count_failure(rq->srv, EVS_AUTHF_FORBIDDEN);
    evs__sb d = {0};
    evs__sb_printf(&d, "{\"code\":\"%s\",\"permission\":\"%s\",\"stream\":", evs_errname(EVS_EFORBIDDEN),
                   evs__perm_name(perm));
    if (stream) evs__sb_json_str(&d, stream, stream_len);
    else evs__sb_adds(&d, "\"$all\"");
    if (type) {
        evs__sb_adds(&d, ",\"event_type\":");
        evs__sb_json_str(&d, type, type_len);
    }
    evs__sb_printf(&d, ",\"key\":\"%s\"}", rq->who ? rq->who->id : "");
    const char *what = stream ? "on stream" : "on every stream ($all)";
    enum MHD_Result mr;
    if (type)
        mr = evs__respond_error(rq, evs__http_status(EVS_EFORBIDDEN), d.oom ? NULL : d.p,
                                "key %s lacks the %s permission %s \"%.*s\" for event type \"%.*s\"",
                                rq->who ? rq->who->id : "?", evs__perm_name(perm), what, (int)stream_len,
                                stream ? stream : "", (int)type_len, type);
    else if (stream)
        mr = evs__respond_error(rq, evs__http_status(EVS_EFORBIDDEN), d.oom ? NULL : d.p,
                                "key %s lacks the %s permission %s \"%.*s\"", rq->who ? rq->who->id : "?",
                                evs__perm_name(perm), what, (int)stream_len, stream);
    else
        mr = evs__respond_error(rq, evs__http_status(EVS_EFORBIDDEN), d.oom ? NULL : d.p,
                                "key %s lacks the %s permission %s", rq->who ? rq->who->id : "?",
                                evs__perm_name(perm), what);
    evs__sb_free(&d);
    return mr;
}

int evs__auth_check(evs__req *rq, int need, enum MHD_Result *mr) {
    evs__srv *srv = rq->srv;
    if (!srv->auth || need == EVS_NEED_OPEN) return 0;
    const char *h = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        *mr = unauthorized(rq, EVS_AUTHF_MISSING, "this route needs an API key: send Authorization: Bearer <key>");
        return -1;
    }
    while (*h == ' ') h++;
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *mr = unauthorized(rq, EVS_AUTHF_MALFORMED, "the Authorization header must be \"Bearer <key>\"");
        return -1;
    }
    h += 7;
    while (*h == ' ') h++;
    evs__principal *who = NULL;
    int v = evs__keys_verify(srv->keys, h, &who);
    if (v != EVS_AUTH_OK) {
        *mr = v == EVS_AUTH_MALFORMED ? unauthorized(rq, EVS_AUTHF_MALFORMED, "the API key is not an evstore key (evs_<id>_<secret>)")
              : v == EVS_AUTH_REVOKED ? unauthorized(rq, EVS_AUTHF_REVOKED, "the API key was revoked")
                                      : unauthorized(rq, EVS_AUTHF_UNKNOWN, "the API key is not known to this server");
        return -1;
    }
    rq->who = who;
    unsigned perm = EVS_NEED_PERM(need);
    int ok;
    switch (EVS_NEED_SCOPE(need)) {
    case EVS_SCOPE_STREAM: ok = 1; break; /* http.c checks it once the path's {stream} is decoded */
    case EVS_SCOPE_ANY: ok = evs__principal_allows_any(who, perm); break;
    default: ok = evs__principal_allows_all(who, perm); break;
    }
    if (ok) return 0;
    *mr = evs__auth_forbid(rq, perm, NULL, 0, NULL, 0);
    return -1;
}

int evs__auth_event_ok(const evs__principal *who, unsigned perm, const evs_event *ev) {
    return !who || evs__principal_allows(who, perm, ev->stream, ev->stream_len, ev->event_type, ev->event_type_len);
}

void evs__auth_filter(evs__req *rq, evs__live_filter *lf, unsigned perm) {
    if (!rq->who || evs__principal_allows_all(rq->who, perm)) return;
    lf->who = evs__principal_ref(rq->who);
    lf->who_perm = perm;
}
