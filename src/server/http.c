/*
 * http.c — the server's one front door: libmicrohttpd's callbacks and the
 * one route table.  Every request, whatever it is for, is routed, checked
 * and answered the same way; every answer leaves through respond.c.
 *
 * libmicrohttpd calls the access handler several times per request:
 *   1. headers are in, *con_cls is NULL: we pick the route and check what
 *      can be checked without the body (path, method, shutdown, path
 *      parameters, content type, declared length).  Errors are answered
 *      here, so an oversized or mistyped upload is refused before it is
 *      read.  Otherwise we only allocate the request and return: queueing a
 *      response on this first call makes libmicrohttpd answer about five
 *      times slower (measured), so even bodiless GETs are answered on the
 *      second call.
 *   2. zero or more calls with body bytes, kept up to the route's body cap
 *      (and only when the route reads a body);
 *   3. a final call with no bytes: the route runs and queues its answer.
 *      A group long-poll suspends the connection instead; it is called once
 *      more when the poll ends (routes_groups.c).
 *
 * Routing.  Paths are split raw (the unescape callback is a no-op), so
 * "%2F" inside a stream or consumer name never becomes a separator; each
 * parameter segment is then decoded and checked (query.c's decoder).  The
 * table is searched in order for the first row whose path matches; that
 * path's rows together give the methods it allows (a 405 lists them in
 * Allow).  Literal paths come before parameter ones where both could match
 * (".../dlq/retry" before ".../dlq/{id}").  A parameter matches any
 * non-empty segment ({pos} also an empty one, which then is no position).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "evstore_schema.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/auth.h"
#include "server/query.h"
#include "server/routes_app.h"
#include "server/routes_dlq.h"
#include "server/routes_groups.h"
#include "server/routes_keys.h"
#include "server/routes_proj.h"
#include "server/routes_replay.h"
#include "server/routes_saga.h"
#include "server/routes_scavenge.h"
#include "server/routes_schema.h"
#include "server/routes_store.h"
#include "server/routes_subjects.h"
#include "server/routes_subs.h"
#include "server/routes_ui.h"
#include "server/sse.h"
#include "server/ws.h"

#define MAX_IGNORED_BODY ((size_t)64 << 10)  /* bodies a route does not read */
#define MAX_JSON_SETTINGS ((size_t)64 << 10) /* a group's settings, an ack */
#define MAX_SEGMENTS 6

/* What a route does with a request body (B_JSON_OPT: JSON, or no body at all for the defaults). */
enum { B_NONE, B_APPEND, B_SOURCE, B_JSON, B_JSON_OPT, B_COMMAND, B_SCHEMA, B_DATA, B_REPLAY };

/* Row flags. */
enum {
    F_LIVE = 1,      /* a live stream: not an in-flight request for shutdown's wait */
    F_STOPPING = 2,  /* answered while shutting down too (/health says so itself) */
    F_CONSUMERS = 4, /* needs the consumers (serve.c always starts them) */
    F_FREE_QUERY = 8 /* takes other parameters too (a query's field filters): each still once, with a value */
};

typedef struct route_def {
    const char *path;                /* segments; {name} is a parameter */
    unsigned methods;                /* EVS_M_* */
    int label;                       /* EVS_R_*: the metrics label */
    int body;                        /* B_* */
    int flags;                       /* F_* */
    const char *query;               /* the query parameters it takes, comma-separated ("": none) */
    int need;                        /* what the request's API key must hold (auth.h); every row has one */
    enum MHD_Result (*fn)(evs__req *rq);
} route_def;

/* The filters of a read of $all, and of a live stream (which also takes one exact stream). */
#define Q_FILTER "type,stream_type,stream_prefix,correlation_id,causation_id,tag,tag_match,since,until"
#define Q_PAGE "after,limit"

/*
 * Needs (auth.h).  Why each: a route that answers about one stream needs
 * the permission on it; /all, /subscribe and /ws show a restricted key only
 * its events; anything whose answer mixes every stream (projection state,
 * queries, aggregates, sagas, consumers' positions, the stream list) needs
 * the permission on all of them; changing the server's setup (projections,
 * subscriptions, groups, schemas, sagas, keys) is admin.  Open: /health and
 * the console's static files (the console itself calls the API with a key).
 */
#define OPEN EVS_NEED_OPEN
#define RD_STREAM EVS_NEED(EVS_PERM_READ, EVS_SCOPE_STREAM)
#define RD_ANY EVS_NEED(EVS_PERM_READ, EVS_SCOPE_ANY)
#define RD_ALL EVS_NEED(EVS_PERM_READ, EVS_SCOPE_ALL)
#define AP_STREAM EVS_NEED(EVS_PERM_APPEND, EVS_SCOPE_STREAM)
#define AP_ALL EVS_NEED(EVS_PERM_APPEND, EVS_SCOPE_ALL)
#define SUB_ANY EVS_NEED(EVS_PERM_SUBSCRIBE, EVS_SCOPE_ANY)
#define SUB_ALL EVS_NEED(EVS_PERM_SUBSCRIBE, EVS_SCOPE_ALL)
#define ADMIN EVS_NEED(EVS_PERM_ADMIN, EVS_SCOPE_ALL)

#define R EVS_M_READ
#define C F_CONSUMERS
#define CONSUMER_ROUTES(P, L, LISTQ)                                                                   \
    {P, R, L, B_NONE, C, LISTQ, RD_ALL, evs__route_consumer_list},                                     \
    {P "/{name}", R, L, B_NONE, C, "", RD_ALL, evs__route_consumer_get},                               \
    {P "/{name}", EVS_M_DELETE, L, B_NONE, C, "", ADMIN, evs__route_consumer_delete},                  \
    {P "/{name}/pause", EVS_M_POST, L, B_NONE, C, "", ADMIN, evs__route_consumer_pause},               \
    {P "/{name}/resume", EVS_M_POST, L, B_NONE, C, "", ADMIN, evs__route_consumer_resume},             \
    {P "/{name}/reset", EVS_M_POST, L, B_NONE, C, "to", ADMIN, evs__route_consumer_reset},             \
    {P "/{name}/dlq", R, L, B_NONE, C, Q_PAGE, RD_ALL, evs__route_dlq_list},                           \
    {P "/{name}/dlq", EVS_M_DELETE, L, B_NONE, C, "", ADMIN, evs__route_dlq_purge},                    \
    {P "/{name}/dlq/retry", EVS_M_POST, L, B_NONE, C, "", ADMIN, evs__route_dlq_retry_all},            \
    {P "/{name}/dlq/{id}", R, L, B_NONE, C, "", RD_ALL, evs__route_dlq_show},                          \
    {P "/{name}/dlq/{id}", EVS_M_DELETE, L, B_NONE, C, "", ADMIN, evs__route_dlq_discard},             \
    {P "/{name}/dlq/{id}/retry", EVS_M_POST, L, B_NONE, C, "", ADMIN, evs__route_dlq_retry}

/* The route table (docs/http-api.md documents every row). */
static const route_def routes[] = {
    {"/streams", R, EVS_R_LIST_STREAMS, B_NONE, 0, "prefix," Q_PAGE, RD_ALL, evs__route_list_streams},
    {"/streams/{stream}", R, EVS_R_READ_STREAM, B_NONE, 0, "from,limit,direction,upcast", RD_STREAM,
     evs__route_read_stream},
    {"/streams/{stream}", EVS_M_POST, EVS_R_APPEND, B_APPEND, 0, "expected", AP_STREAM, evs__route_append},
    {"/streams/{stream}", EVS_M_DELETE, EVS_R_STREAM_META, B_NONE, 0, "expected,hard", ADMIN,
     evs__route_stream_delete},
    {"/streams/{stream}/metadata", R, EVS_R_STREAM_META, B_NONE, 0, "", RD_STREAM, evs__route_stream_meta_get},
    {"/streams/{stream}/metadata", EVS_M_PUT, EVS_R_STREAM_META, B_JSON, 0, "expected", ADMIN,
     evs__route_stream_meta_put},
    {"/streams/{stream}/{pos}", R, EVS_R_READ_EVENT, B_NONE, 0, "", RD_STREAM, evs__route_read_event},
    {"/all", R, EVS_R_ALL, B_NONE, 0, "from,limit,direction,upcast," Q_FILTER, RD_ANY, evs__route_all},
    {"/subscribe", R, EVS_R_SUBSCRIBE, B_NONE, F_LIVE, "from,stream,upcast," Q_FILTER, SUB_ANY, evs__route_subscribe},
    {"/ws", R, EVS_R_WS, B_NONE, F_LIVE, "", SUB_ANY, evs__route_ws},
    {"/metrics", R, EVS_R_METRICS, B_NONE, 0, "", RD_ANY, evs__route_metrics},
    {"/health", R, EVS_R_HEALTH, B_NONE, F_STOPPING, "", OPEN, evs__route_health},
    {"/info", R, EVS_R_INFO, B_NONE, 0, "", RD_ANY, evs__route_info},

    {"/projections/{name}", EVS_M_PUT | EVS_M_POST, EVS_R_PROJECTIONS, B_SOURCE, C, "", ADMIN, evs__route_proj_put},
    {"/projections/{name}/state", R, EVS_R_PROJECTIONS, B_NONE, C, "as_of", RD_ALL, evs__route_proj_state},
    {"/projections/{name}/state/{partition}", R, EVS_R_PROJECTIONS, B_NONE, C, "as_of", RD_ALL,
     evs__route_proj_state},
    {"/projections/{name}/what-if", EVS_M_POST, EVS_R_PROJECTIONS, B_REPLAY, C, "", RD_ALL, evs__route_proj_what_if},
    {"/projections/{name}/compare", R, EVS_R_PROJECTIONS, B_NONE, C, "a,b", RD_ALL, evs__route_proj_compare},
    {"/projections/{name}/compare", EVS_M_POST, EVS_R_PROJECTIONS, B_REPLAY, C, "", RD_ALL, evs__route_proj_compare},
    {"/projections/{name}/partitions", R, EVS_R_PROJECTIONS, B_NONE, C, Q_PAGE, RD_ALL, evs__route_proj_partitions},
    {"/projections/{name}/rebuild", EVS_M_POST, EVS_R_PROJECTIONS, B_NONE, C, "from", ADMIN,
     evs__route_consumer_rebuild},
    CONSUMER_ROUTES("/projections", EVS_R_PROJECTIONS, Q_PAGE),

    {"/subscriptions/{name}", EVS_M_PUT | EVS_M_POST, EVS_R_SUBSCRIPTIONS, B_JSON_OPT, C, "", ADMIN,
     evs__route_sub_put},
    CONSUMER_ROUTES("/subscriptions", EVS_R_SUBSCRIPTIONS, "kind," Q_PAGE),

    {"/groups/{name}", EVS_M_PUT | EVS_M_POST, EVS_R_GROUPS, B_JSON_OPT, C, "", ADMIN, evs__route_group_put},
    {"/groups/{name}/next", EVS_M_POST, EVS_R_GROUPS, B_NONE, C, "consumer,timeout_ms", SUB_ALL,
     evs__route_group_next},
    {"/groups/{name}/ack", EVS_M_POST, EVS_R_GROUPS, B_JSON, C, "", SUB_ALL, evs__route_group_ack},
    {"/groups/{name}/nack", EVS_M_POST, EVS_R_GROUPS, B_JSON, C, "", SUB_ALL, evs__route_group_nack},
    {"/groups/{name}/consumers/{consumer}", EVS_M_DELETE, EVS_R_GROUPS, B_NONE, C, "", SUB_ALL,
     evs__route_group_leave},
    CONSUMER_ROUTES("/groups", EVS_R_GROUPS, Q_PAGE),

    {"/commands", R, EVS_R_COMMANDS, B_NONE, 0, "", RD_ANY, evs__route_command_list},
    {"/commands", EVS_M_POST, EVS_R_COMMANDS, B_COMMAND, 0, "", AP_ALL, evs__route_command_batch},
    {"/commands/{command}", EVS_M_POST, EVS_R_COMMANDS, B_COMMAND, 0, "", AP_ALL, evs__route_command},
    {"/queries", R, EVS_R_QUERIES, B_NONE, 0, "", RD_ALL, evs__route_query_list},
    /* a query's fields are its own parameters: evs__route_query checks them against the definition */
    {"/queries/{query}", R, EVS_R_QUERIES, B_NONE, F_FREE_QUERY,
     "sort,desc,offset,limit,partition,min_position,timeout_ms", RD_ALL, evs__route_query},
    {"/aggregates", R, EVS_R_AGGREGATES, B_NONE, 0, "", RD_ANY, evs__route_aggregate_list},
    {"/aggregates/{type}", R, EVS_R_AGGREGATES, B_NONE, 0, "", RD_ANY, evs__route_aggregate_type},
    {"/aggregates/{type}", EVS_M_PUT | EVS_M_POST, EVS_R_AGGREGATES, B_SOURCE, 0, "", ADMIN, evs__route_aggregate_put},
    {"/aggregates/{type}/{aggregate}", R, EVS_R_AGGREGATES, B_NONE, 0, "use_snapshot,as_of", RD_ALL,
     evs__route_aggregate_get},
    {"/aggregates/{type}/{aggregate}/snapshots", R, EVS_R_AGGREGATES, B_NONE, 0, "", RD_ALL,
     evs__route_aggregate_snapshots},
    {"/aggregates/{type}/{aggregate}/snapshots", EVS_M_POST, EVS_R_AGGREGATES, B_NONE, 0, "", AP_ALL,
     evs__route_aggregate_snapshots},

    {"/sagas", R, EVS_R_SAGAS, B_NONE, 0, "type,status,stuck_for," Q_PAGE, RD_ALL, evs__route_saga_list},
    {"/sagas/{saga}", R, EVS_R_SAGAS, B_NONE, 0, "status,stuck_for," Q_PAGE, RD_ALL, evs__route_saga_list},
    {"/sagas/{saga}/{instance}", R, EVS_R_SAGAS, B_NONE, 0, "", RD_ALL, evs__route_saga_show},
    {"/sagas/{saga}/{instance}/pause", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "reason", ADMIN, evs__route_saga_pause},
    {"/sagas/{saga}/{instance}/resume", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "", ADMIN, evs__route_saga_resume},
    {"/sagas/{saga}/{instance}/retry", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "", ADMIN, evs__route_saga_retry},
    {"/sagas/{saga}/{instance}/skip", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "step,reason", ADMIN, evs__route_saga_skip},
    {"/sagas/{saga}/{instance}/compensate", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "reason", ADMIN,
     evs__route_saga_compensate},
    {"/sagas/{saga}/{instance}/abort", EVS_M_POST, EVS_R_SAGAS, B_NONE, 0, "reason", ADMIN, evs__route_saga_abort},

    /* the web console (routes_ui.c): static files, query strings ignored */
    {"/", R, EVS_R_UI, B_NONE, 0, NULL, OPEN, evs__route_ui_index},
    {"/ui", R, EVS_R_UI, B_NONE, 0, NULL, OPEN, evs__route_ui_index},
    {"/ui/", R, EVS_R_UI, B_NONE, 0, NULL, OPEN, evs__route_ui_index},
    {"/ui/{file}", R, EVS_R_UI, B_NONE, 0, NULL, OPEN, evs__route_ui_file},
    {"/schemas", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_list},
    {"/schemas/{event_type}", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_type},
    {"/schemas/{event_type}", EVS_M_PUT | EVS_M_POST, EVS_R_SCHEMAS, B_SCHEMA, 0, "version,migration_path", ADMIN,
     evs__route_schema_put},
    {"/schemas/{event_type}/check", EVS_M_POST, EVS_R_SCHEMAS, B_SCHEMA, 0, "version", RD_ANY,
     evs__route_schema_check},
    {"/schemas/{event_type}/compat", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_compat},
    {"/schemas/{event_type}/compat", EVS_M_PUT, EVS_R_SCHEMAS, B_JSON, 0, "", ADMIN, evs__route_schema_compat},
    {"/schemas/{event_type}/{version}", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_version},
    {"/schemas/{event_type}/{version}/deprecate", EVS_M_POST | EVS_M_DELETE, EVS_R_SCHEMAS, B_NONE, 0, "", ADMIN,
     evs__route_schema_deprecate},
    {"/schemas/{event_type}/{version}/validate", EVS_M_POST, EVS_R_SCHEMAS, B_DATA, 0, "", RD_ANY,
     evs__route_schema_validate},
    {"/schemas/{event_type}/{version}/upcaster", EVS_M_PUT | EVS_M_POST, EVS_R_SCHEMAS, B_SOURCE, 0, "", ADMIN,
     evs__route_schema_upcaster},
    {"/schemas/{event_type}/{version}/upcaster", EVS_M_DELETE, EVS_R_SCHEMAS, B_NONE, 0, "", ADMIN,
     evs__route_schema_upcaster},
    {"/schema-policies/default", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_policy},
    {"/schema-policies/default", EVS_M_PUT, EVS_R_SCHEMAS, B_JSON, 0, "", ADMIN, evs__route_schema_policy},
    {"/schema-policies/stream-types/{stream_type}", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY,
     evs__route_schema_policy},
    {"/schema-policies/stream-types/{stream_type}", EVS_M_DELETE, EVS_R_SCHEMAS, B_NONE, 0, "", ADMIN,
     evs__route_schema_policy},
    {"/schema-policies/stream-types/{stream_type}", EVS_M_PUT, EVS_R_SCHEMAS, B_JSON, 0, "", ADMIN,
     evs__route_schema_policy},
    {"/schema-policies/event-types/{event_type}", R, EVS_R_SCHEMAS, B_NONE, 0, "", RD_ANY, evs__route_schema_policy},
    {"/schema-policies/event-types/{event_type}", EVS_M_DELETE, EVS_R_SCHEMAS, B_NONE, 0, "", ADMIN,
     evs__route_schema_policy},
    {"/schema-policies/event-types/{event_type}", EVS_M_PUT, EVS_R_SCHEMAS, B_JSON, 0, "", ADMIN,
     evs__route_schema_policy},

    /* API keys (routes_keys.c) */
    {"/keys", R, EVS_R_KEYS, B_NONE, 0, "", ADMIN, evs__route_keys_list},
    {"/keys", EVS_M_POST, EVS_R_KEYS, B_JSON, 0, "", ADMIN, evs__route_keys_create},
    {"/keys/{id}", EVS_M_DELETE, EVS_R_KEYS, B_NONE, 0, "", ADMIN, evs__route_keys_revoke},

    /* scavenge (routes_scavenge.c) */
    {"/admin/scavenge", R, EVS_R_SCAVENGE, B_NONE, 0, "", ADMIN, evs__route_scavenge_status},
    {"/admin/scavenge", EVS_M_POST, EVS_R_SCAVENGE, B_NONE, 0, "rate,dry_run", ADMIN, evs__route_scavenge_start},
    {"/admin/scavenge", EVS_M_DELETE, EVS_R_SCAVENGE, B_NONE, 0, "", ADMIN, evs__route_scavenge_cancel},
    /* crypto-shredding (routes_subjects.c) */
    {"/admin/subjects/{subject}/forget", EVS_M_POST, EVS_R_OTHER, B_NONE, 0, "", ADMIN, evs__route_subject_forget},
    {"/admin/subjects/{subject}/export", R, EVS_R_OTHER, B_NONE, 0, "", ADMIN, evs__route_subject_export},
};

#undef R
#undef C

#define NROUTES (sizeof routes / sizeof routes[0])

/* ------------------------------------------------------------ callbacks */

size_t evs__http_unescape_none(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls;
    (void)c;
    return strlen(s);
}

enum MHD_Result evs__http_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    evs__srv *srv = cls;
    (void)addr;
    (void)addrlen;
    if (atomic_load(&srv->shutting)) return MHD_NO; /* stopping: accept nothing new (serve.c) */
    return atomic_load(&srv->connections) < (long)srv->max_connections ? MHD_YES : MHD_NO;
}

void evs__http_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe) {
    evs__srv *srv = cls;
    (void)c;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&srv->connections, 1);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&srv->connections, 1);
}

/* -------------------------------------------------------------- matching */

typedef struct path {
    const char *seg[MAX_SEGMENTS];
    size_t len[MAX_SEGMENTS];
    int n;
} path;

/* Split the raw path at '/'; -1 when it is no path or has too many segments. */
static int split(const char *url, path *p) {
    p->n = 0;
    if (url[0] != '/') return -1;
    const char *s = url + 1;
    for (;;) {
        if (p->n == MAX_SEGMENTS) return -1;
        const char *slash = strchr(s, '/');
        p->seg[p->n] = s;
        p->len[p->n] = slash ? (size_t)(slash - s) : strlen(s);
        p->n++;
        if (!slash) return 0;
        s = slash + 1;
    }
}

/* The i-th segment of a pattern: [*at, *at + *n); 0 at the end. */
static int pattern_seg(const char **at, const char **seg, size_t *n) {
    if (**at != '/') return 0;
    const char *s = *at + 1;
    const char *e = strchr(s, '/');
    *seg = s;
    *n = e ? (size_t)(e - s) : strlen(s);
    *at = s + *n;
    return 1;
}

/* The pattern segment s[0..n) is exactly w. */
static int seg_is(const char *s, size_t n, const char *w) { return strlen(w) == n && memcmp(s, w, n) == 0; }

static int matches(const char *pattern, const path *p) {
    const char *at = pattern, *ps;
    size_t pn;
    int i = 0;
    while (pattern_seg(&at, &ps, &pn)) {
        if (i == p->n) return 0;
        if (ps[0] == '{') {
            if (p->len[i] == 0 && !seg_is(ps, pn, "{pos}")) return 0;
        } else if (pn != p->len[i] || memcmp(ps, p->seg[i], pn) != 0) {
            return 0;
        }
        i++;
    }
    return i == p->n;
}

static unsigned method_bit(const char *m) {
    if (strcmp(m, "GET") == 0) return EVS_M_GET;
    if (strcmp(m, "HEAD") == 0) return EVS_M_HEAD;
    if (strcmp(m, "POST") == 0) return EVS_M_POST;
    if (strcmp(m, "PUT") == 0) return EVS_M_PUT;
    if (strcmp(m, "DELETE") == 0) return EVS_M_DELETE;
    return 0;
}

/* The label of a path no row matched: its area's, so that /metrics shows where 404s went. */
static int label_of(const path *p) {
    if (p->n < 1) return EVS_R_OTHER;
    if (p->len[0] == 11 && memcmp(p->seg[0], "projections", 11) == 0) return EVS_R_PROJECTIONS;
    if (p->len[0] == 13 && memcmp(p->seg[0], "subscriptions", 13) == 0) return EVS_R_SUBSCRIPTIONS;
    if (p->len[0] == 6 && memcmp(p->seg[0], "groups", 6) == 0) return EVS_R_GROUPS;
    if (p->len[0] == 8 && memcmp(p->seg[0], "commands", 8) == 0) return EVS_R_COMMANDS;
    if (p->len[0] == 7 && memcmp(p->seg[0], "queries", 7) == 0) return EVS_R_QUERIES;
    if (p->len[0] == 10 && memcmp(p->seg[0], "aggregates", 10) == 0) return EVS_R_AGGREGATES;
    if (p->len[0] == 5 && memcmp(p->seg[0], "sagas", 5) == 0) return EVS_R_SAGAS;

    if (p->len[0] == 2 && memcmp(p->seg[0], "ui", 2) == 0) return EVS_R_UI;
    if (p->len[0] == 7 && memcmp(p->seg[0], "schemas", 7) == 0) return EVS_R_SCHEMAS;
    if (p->len[0] == 15 && memcmp(p->seg[0], "schema-policies", 15) == 0) return EVS_R_SCHEMAS;
    return EVS_R_OTHER;
}

/* --------------------------------------------------------------- parameters */

/* Queue an error on the first call and remember it (the body is then dropped). */
#define REFUSE(...)                                     \
    do {                                                \
        rq->answered = 1;                               \
        return evs__respond_error(rq, __VA_ARGS__);     \
    } while (0)

/*
 * Decode a raw segment into out (cap bytes; "" when it does not fit).  Length, or -1 with why.
 * Every name on the way in (an append's stream, too) fits: decoded straight into out, no copy.
 * Only a refusal decodes the segment again, whole, into a buffer of its own: an over-long name
 * is then a length however long (a 422 naming it), and what else is wrong with it is found as
 * if there were no limit (a malformed escape past the limit is still that, a 400).
 */
static long decode_seg(const char *seg, size_t n, char *out, size_t cap, char *why, size_t whycap) {
    long len = evs__pct_decode(seg, n, out, cap, why, whycap);
    if (len >= 0) return len;
    out[0] = '\0';
    if (n < cap) return -1; /* the decoded name is never longer than the raw one: refused for itself */
    char *tmp = malloc(n + 1);
    if (!tmp) {
        snprintf(why, whycap, "cannot be decoded: out of memory");
        return -1;
    }
    len = evs__pct_decode(seg, n, tmp, n + 1, why, whycap);
    free(tmp);
    return len;
}

/*
 * A stream name segment: the rules beyond decoding are the store's,
 * checked here so that GET and POST answer alike.
 */
static enum MHD_Result stream_param(evs__req *rq, const char *seg, size_t n, int *bad) {
    char why[96];
    char *tmp = rq->stream;
    *bad = 1;
    /* an over-long name gets the 422 with its length, however long (decode_seg) */
    long len = decode_seg(seg, n, tmp, sizeof rq->stream, why, sizeof why);
    if (len < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "stream name %s", why);
    if ((size_t)len > EVS_MAX_STREAM_NAME) {
        char d[64];
        snprintf(d, sizeof d, "{\"length\":%ld,\"limit\":%u}", len, EVS_MAX_STREAM_NAME);
        REFUSE(EVS_HTTP_UNPROCESSABLE, d, "stream name is %ld bytes, the limit is %u", len, EVS_MAX_STREAM_NAME);
    }
    /* Clients and proxies rewrite dot segments, so such a name could never
       be addressed reliably: refuse it rather than store it. */
    if (strcmp(tmp, ".") == 0 || strcmp(tmp, "..") == 0)
        REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "stream name \"%s\" is a dot segment", tmp);
    for (long i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)tmp[i];
        if (ch < 0x20 || ch == 0x7f)
            REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "stream name contains control character 0x%02x at byte %ld", ch,
                   i + 1);
    }
    if (tmp[0] == '$') REFUSE(EVS_HTTP_UNPROCESSABLE, NULL, "stream names starting with '$' are reserved");
    *bad = 0;
    return MHD_YES;
}

/* A consumer's name segment: 1..EVS_BUS_MAX_NAME bytes of UTF-8 without control characters. */
static enum MHD_Result name_param(evs__req *rq, const char *seg, size_t n, int *bad) {
    char why[96];
    *bad = 1;
    long l = decode_seg(seg, n, rq->name, sizeof rq->name, why, sizeof why);
    if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "consumer name %s", why);
    if ((size_t)l > EVS_BUS_MAX_NAME) {
        char d[64];
        snprintf(d, sizeof d, "{\"length\":%ld,\"limit\":%u}", l, EVS_BUS_MAX_NAME);
        REFUSE(EVS_HTTP_UNPROCESSABLE, d, "consumer name is %ld bytes, the limit is %u", l, EVS_BUS_MAX_NAME);
    }
    for (long i = 0; i < l; i++)
        if ((unsigned char)rq->name[i] < 0x20 || rq->name[i] == 0x7f)
            REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "consumer name contains control character 0x%02x at byte %ld",
                   (unsigned)(unsigned char)rq->name[i], i + 1);
    *bad = 0;
    return MHD_YES;
}

/* A partition or a group's consumer: decoded into rq->part, at most max bytes. */
static enum MHD_Result part_param(evs__req *rq, const char *what, size_t max, const char *seg, size_t n, int *bad) {
    char why[96];
    *bad = 1;
    long l = decode_seg(seg, n, rq->part, sizeof rq->part, why, sizeof why);
    if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "%s name %s", what, why);
    if ((size_t)l > max) REFUSE(EVS_HTTP_UNPROCESSABLE, NULL, "%s name is %ld bytes, the limit is %zu", what, l, max);
    *bad = 0;
    return MHD_YES;
}

/*
 * A command type, query name or aggregate type (into rq->name), or an
 * aggregate id (into rq->part): 1..max bytes of UTF-8 without control
 * characters, as the application layer takes them.
 */
static enum MHD_Result app_param(evs__req *rq, const char *what, size_t max, const char *seg, size_t n, char *out,
                                 size_t cap, int *bad) {
    char why[96];
    *bad = 1;
    long l = decode_seg(seg, n, out, cap, why, sizeof why);
    if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "%s %s", what, why);
    if ((size_t)l > max) REFUSE(EVS_HTTP_UNPROCESSABLE, NULL, "%s is %ld bytes, the limit is %zu", what, l, max);
    for (long i = 0; i < l; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "%s contains control character 0x%02x at byte %ld", what,
                   (unsigned)(unsigned char)out[i], i + 1);
    *bad = 0;
    return MHD_YES;
}

/* A saga type (into rq->name): 1..EVS_SAGA_MAX_NAME of letters, digits, '_' and '.'. */
static enum MHD_Result saga_param(evs__req *rq, const char *seg, size_t n, int *bad) {
    char why[96];
    *bad = 1;
    long l = decode_seg(seg, n, rq->name, sizeof rq->name, why, sizeof why);
    if (l < 0) REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "saga type %s", why);
    if ((size_t)l > EVS_SAGA_MAX_NAME)
        REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "saga type is %ld bytes, the limit is %u", l, EVS_SAGA_MAX_NAME);
    for (long i = 0; i < l; i++) {
        char ch = rq->name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.'))
            REFUSE(EVS_HTTP_BAD_REQUEST, NULL, "saga type \"%.64s\" may contain only letters, digits, '_' and '.'",
                   rq->name);
    }
    *bad = 0;
    return MHD_YES;
}

/*
 * A position, DLQ entry, schema version or key id segment, kept raw for the
 * route to parse.  One that does not fit is refused here: cutting it would
 * turn "000...0002xyz" (leading zeros are digits) into a number it is not.
 */
static enum MHD_Result id_param(evs__req *rq, const route_def *d, const char *ps, size_t pn, const char *seg,
                                size_t n, int *bad) {
    *bad = 1;
    if (n >= sizeof rq->id) {
        /* worded as the routes' own refusals of a segment that fits */
        const char *what = "DLQ entry", *is = "a global position (1, 2, ...)";
        if (seg_is(ps, pn, "{pos}")) what = "position", is = "a stream position (1, 2, ...)";
        else if (seg_is(ps, pn, "{version}")) what = "version", is = "a schema version";
        else if (strncmp(d->path, "/keys/", 6) == 0) what = "key", is = "a key id";
        char dt[64];
        snprintf(dt, sizeof dt, "{\"length\":%zu,\"limit\":%zu}", n, sizeof rq->id - 1);
        REFUSE(EVS_HTTP_BAD_REQUEST, dt, "%s \"%.20s...\" is not %s: %zu characters, the limit is %zu", what, seg, is,
               n, sizeof rq->id - 1);
    }
    memcpy(rq->id, seg, n);
    rq->id[n] = '\0';
    *bad = 0;
    return MHD_YES;
}

/* Every parameter of the row's path, in path order; *bad when one was refused. */
static enum MHD_Result params(evs__req *rq, const route_def *d, const path *p, int *bad) {
    const char *at = d->path, *ps;
    size_t pn;
    enum MHD_Result mr = MHD_YES;
    *bad = 0;
    for (int i = 0; pattern_seg(&at, &ps, &pn) && !*bad; i++) {
        if (ps[0] != '{') continue;
        if (seg_is(ps, pn, "{stream}")) {
            mr = stream_param(rq, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{name}")) {
            mr = name_param(rq, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{partition}")) {
            mr = part_param(rq, "partition", EVS_MAX_STREAM_NAME, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{subject}")) {
            mr = part_param(rq, "subject", EVS_MAX_STREAM_NAME, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{consumer}")) {
            mr = part_param(rq, "consumer", EVS_BUS_MAX_NAME, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{command}") || seg_is(ps, pn, "{query}") || seg_is(ps, pn, "{type}")) {
            const char *what = ps[1] == 'c' ? "command type" : ps[1] == 'q' ? "query name" : "aggregate type";
            mr = app_param(rq, what, EVS_APP_MAX_NAME, p->seg[i], p->len[i], rq->name, sizeof rq->name, bad);
        } else if (seg_is(ps, pn, "{saga}")) {
            mr = saga_param(rq, p->seg[i], p->len[i], bad);
        } else if (seg_is(ps, pn, "{instance}")) {
            mr = app_param(rq, "saga id", EVS_SAGA_MAX_ID, p->seg[i], p->len[i], rq->part, sizeof rq->part, bad);
        } else if (seg_is(ps, pn, "{stream_type}")) {
            mr = app_param(rq, "stream type", EVS_MAX_TYPE_NAME, p->seg[i], p->len[i], rq->part, sizeof rq->part, bad);
        } else if (seg_is(ps, pn, "{event_type}")) {
            mr = app_param(rq, "event type", EVS_MAX_TYPE_NAME, p->seg[i], p->len[i], rq->part, sizeof rq->part, bad);
        } else if (seg_is(ps, pn, "{aggregate}")) {
            mr = app_param(rq, "aggregate id", EVS_APP_MAX_ID, p->seg[i], p->len[i], rq->part, sizeof rq->part, bad);
        } else if (seg_is(ps, pn, "{pos}") || seg_is(ps, pn, "{id}") || seg_is(ps, pn, "{version}")) {
            mr = id_param(rq, d, ps, pn, p->seg[i], p->len[i], bad);
        } /* {file}: the console reads its path itself */
    }
    return mr;
}

/* "application/json; charset=utf-8" is application/json. */
static int media_is(const char *ct, const char *type) {
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n) != 0) return 0;
    ct += n;
    while (*ct == ' ') ct++;
    return *ct == '\0' || *ct == ';';
}

/* ------------------------------------------------------------ query */

#define MAX_QUERY_ARGS 64

typedef struct query_check {
    const char *known;               /* the row's list */
    int any;                         /* F_FREE_QUERY: names not in the list are taken too */
    char bad[80];                    /* the first parameter refused */
    int why;                         /* Q_UNKNOWN, Q_TWICE, Q_NO_VALUE */
    const char *seen[MAX_QUERY_ARGS]; /* the names met so far */
    size_t nseen;
} query_check;

enum { Q_OK, Q_UNKNOWN, Q_TWICE, Q_NO_VALUE, Q_MANY };

/* name is in the comma-separated list. */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int evs__query_listed(const evs__req *rq, const char *key) { return listed(rq->params, key); }

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    query_check *q = cls;
    (void)kind;
    if (q->why) return MHD_NO;
    int why = Q_OK;
    if (!q->any && !listed(q->known, key)) why = Q_UNKNOWN;
    for (size_t i = 0; !why && i < q->nseen; i++)
        if (strcmp(q->seen[i], key) == 0) why = Q_TWICE;
    if (!why && !value) why = Q_NO_VALUE;
    if (!why && q->nseen == MAX_QUERY_ARGS) why = Q_MANY; /* more than any route takes */
    if (why) {
        q->why = why;
        snprintf(q->bad, sizeof q->bad, "%.60s%s", key, strlen(key) > 60 ? "..." : "");
        return MHD_NO;
    }
    q->seen[q->nseen++] = key;
    return MHD_YES;
}

/*
 * Every query parameter must be one the route takes, given once, with a
 * value: a parameter that would be ignored (a filter the route does not
 * know, a typo) is a 400 naming it, never an unfiltered answer.
 */
static enum MHD_Result check_query(evs__req *rq, const route_def *d, int *bad) {
    query_check q;
    memset(&q, 0, sizeof q);
    q.known = d->query;
    q.any = (d->flags & F_FREE_QUERY) != 0;
    *bad = 0;
    if (!d->query) return MHD_YES; /* the route checks its parameters itself */
    MHD_get_connection_values(rq->c, MHD_GET_ARGUMENT_KIND, query_arg, &q);
    if (!q.why) return MHD_YES;
    *bad = 1;
    rq->answered = 1;
    evs__sb dt = {0};
    evs__sb_adds(&dt, "{\"parameter\":");
    evs__sb_json_str(&dt, q.bad, strlen(q.bad));
    evs__sb_adds(&dt, ",\"known\":[");
    int k = 0;
    for (const char *p = d->query; p && *p; k++) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (k) evs__sb_add(&dt, ",", 1);
        evs__sb_json_str(&dt, p, l);
        p = e ? e + 1 : NULL;
    }
    evs__sb_adds(&dt, "]}");
    enum MHD_Result mr;
    const char *detail = dt.oom ? NULL : dt.p;
    if (q.why == Q_TWICE)
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, detail, "parameter %s is given more than once%s", q.bad,
                                listed("type,tag", q.bad) ? " (give a comma-separated list once)" : "");
    else if (q.why == Q_NO_VALUE)
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, detail, "parameter %s has no value (%s=...)", q.bad, q.bad);
    else if (q.why == Q_MANY)
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, detail, "too many parameters (at most %d)", MAX_QUERY_ARGS);
    else if (!d->query[0])
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, detail, "unknown parameter %s: %s %s takes no parameters",
                                q.bad, rq->method_name, d->path);
    else
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, detail, "unknown parameter %s: %s %s takes %s", q.bad,
                                rq->method_name, d->path, d->query);
    evs__sb_free(&dt);
    return mr;
}

/* ------------------------------------------------------------- first call */

/* Everything that can be refused before a body is read; picks the row. */
static enum MHD_Result first_call(evs__req *rq, const route_def **row) {
    evs__srv *srv = rq->srv;
    const char *url = rq->url;
    path p;
    const route_def *hit = NULL;
    *row = NULL;
    if (split(url, &p)) {
        rq->route = label_of(&p);
        REFUSE(EVS_HTTP_NOT_FOUND, NULL, "no route for %.200s", url);
    }
    for (size_t i = 0; i < NROUTES && !hit; i++)
        if (matches(routes[i].path, &p)) hit = &routes[i];
    if (!hit) {
        rq->route = label_of(&p);
        REFUSE(EVS_HTTP_NOT_FOUND, NULL, "no route for %.200s", url);
    }
    const route_def *d = NULL;
    for (size_t i = (size_t)(hit - routes); i < NROUTES; i++)
        if (strcmp(routes[i].path, hit->path) == 0) {
            rq->allowed |= routes[i].methods;
            if (!d && (routes[i].methods & rq->method)) d = &routes[i];
        }
    rq->route = d ? d->label : hit->label;
    if (!d) REFUSE(EVS_HTTP_METHOD_NOT_ALLOWED, NULL, "method not allowed on %.200s", url);
    if (atomic_load(&srv->shutting) && !(d->flags & F_STOPPING))
        REFUSE(EVS_HTTP_UNAVAILABLE, NULL, "the server is shutting down");
    if ((d->flags & F_CONSUMERS) && !srv->bus) REFUSE(EVS_HTTP_UNAVAILABLE, NULL, "consumers are not available");
    /* who: the key is checked before anything about the request is (only the route's existence is public) */
    enum MHD_Result mr;
    if (evs__auth_check(rq, d->need, &mr)) {
        rq->answered = 1;
        return mr;
    }
    int bad;
    mr = params(rq, d, &p, &bad);
    if (bad) {
        rq->answered = 1;
        return mr;
    }
    /* what: with the path's {stream} decoded, its permission */
    if (rq->who && EVS_NEED_SCOPE(d->need) == EVS_SCOPE_STREAM &&
        !evs__principal_allows(rq->who, EVS_NEED_PERM(d->need), rq->stream, strlen(rq->stream), NULL, 0)) {
        rq->answered = 1;
        return evs__auth_forbid(rq, EVS_NEED_PERM(d->need), rq->stream, strlen(rq->stream), NULL, 0);
    }
    rq->params = d->query;
    mr = check_query(rq, d, &bad);
    if (bad) return mr;

    const char *ct = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    rq->body_cap = MAX_IGNORED_BODY;
    switch (d->body) {
    case B_APPEND:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "appends take Content-Type: application/json, not %s",
                   ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = srv->max_body;
        break;
    case B_SOURCE:
        if (media_is(ct, "text/x-lua") || media_is(ct, "text/plain")) {
            rq->body_kind = EVS_BODY_LUA;
            rq->body_cap = EVS_PROJ_MAX_SOURCE;
        } else if (media_is(ct, "application/json")) {
            rq->body_kind = EVS_BODY_JSON;
            rq->body_cap = EVS_PROJ_MAX_JSON_BODY;
        } else {
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL,
                   "a Lua script takes Content-Type text/x-lua or text/plain (the script), or "
                   "application/json ({\"source\": \"...\"}), not %.100s",
                   ct ? ct : "(none)");
        }
        break;
    case B_SCHEMA:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "a schema takes Content-Type: application/json, not %.100s",
                   ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = EVS_SCHEMA_MAX_BYTES;
        break;
    case B_REPLAY:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "this route takes Content-Type: application/json, not %.100s",
                   ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = EVS_REPLAY_MAX_BODY;
        break;
    case B_DATA:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "event data takes Content-Type: application/json, not %.100s",
                   ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = EVS_MAX_EVENT_BYTES;
        break;
    case B_COMMAND:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "commands take Content-Type: application/json, not %.100s",
                   ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = srv->max_body;
        break;
    case B_JSON_OPT:
        /* no Content-Type and no body: the route's defaults ({} for a group) */
        if (!ct && !MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
            const char *l = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (!l || strcmp(l, "0") == 0) {
                rq->body_kind = EVS_BODY_JSON;
                rq->body_cap = 0;
                break;
            }
        }
        /* fall through */
    case B_JSON:
        if (!media_is(ct, "application/json"))
            REFUSE(EVS_HTTP_UNSUPPORTED_TYPE, NULL, "this route takes Content-Type: application/json%s, not %.100s",
                   d->body == B_JSON_OPT ? " (or no body at all, for the defaults)" : "", ct ? ct : "(none)");
        rq->body_kind = EVS_BODY_JSON;
        rq->body_cap = MAX_JSON_SETTINGS;
        break;
    default: break;
    }
    const char *cl = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared;
    if (cl && evs__parse_u64(cl, UINT64_MAX, &declared) == 0 && declared > rq->body_cap) {
        char dl[96];
        snprintf(dl, sizeof dl, "{\"length\":%llu,\"limit\":%zu}", (unsigned long long)declared, rq->body_cap);
        REFUSE(EVS_HTTP_TOO_LARGE, dl, "request body of %llu bytes is over the limit of %zu",
               (unsigned long long)declared, rq->body_cap);
    }
    *row = d;
    return MHD_YES;
}

/* ------------------------------------------------------------ the handler */

/* The per-request state libmicrohttpd keeps for us. */
typedef struct http_req {
    evs__req rq;
    const route_def *row;           /* NULL once refused */
} http_req;

enum MHD_Result evs__http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    evs__srv *srv = cls;
    http_req *h = *con_cls;
    (void)version;
    if (!h) {
        if (!(h = calloc(1, sizeof *h))) return MHD_NO;
        *con_cls = h;
        evs__req *rq = &h->rq;
        rq->srv = srv;
        rq->c = c;
        rq->url = url;
        rq->method_name = method;
        rq->method = method_bit(method);
        if (srv->access_log) rq->t0 = evs__mono_ns();
        rq->counted = 1;
        atomic_fetch_add(&srv->active, 1);
        /* answered on a later call even when nothing is wrong (see the top) */
        return first_call(rq, &h->row);
    }
    evs__req *rq = &h->rq;
    rq->url = url;
    rq->method_name = method;
    if (rq->answered) { /* refused on the first call: drop whatever body follows */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        rq->got += *upload_size;
        if (rq->too_big || rq->got > rq->body_cap) {
            rq->too_big = 1; /* keep draining; the answer comes on the last call */
            evs__sb_free(&rq->body);
        } else if (rq->body_kind != EVS_BODY_NONE) {
            evs__sb_add(&rq->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_big) {
        char d[64];
        snprintf(d, sizeof d, "{\"limit\":%zu}", rq->body_cap);
        return evs__respond_error(rq, EVS_HTTP_TOO_LARGE, d, "request body is over the limit of %zu bytes",
                                  rq->body_cap);
    }
    if (rq->body.oom)
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory reading the request body");
    if (!h->row) return MHD_NO; /* cannot happen: every refusal sets answered */
    if ((h->row->flags & F_LIVE) && rq->counted) { /* a live stream is not an in-flight request for shutdown */
        rq->counted = 0;
        atomic_fetch_sub(&srv->active, 1);
    }
    return h->row->fn(rq);
}

void evs__http_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    evs__srv *srv = cls;
    http_req *h = *con_cls;
    (void)c;
    (void)toe;
    if (!h) return;
    evs__req *rq = &h->rq;
    if (rq->state && rq->state_free) rq->state_free(rq->state);
    evs__principal_unref(rq->who);
    if (rq->counted) atomic_fetch_sub(&srv->active, 1);
    evs__sb_free(&rq->body);
    free(h);
    *con_cls = NULL;
}

void evs__serve_print_routes(FILE *f) {
    static const struct {
        unsigned bit;
        const char *name;
    } ms[] = {{EVS_M_GET, "GET"}, {EVS_M_HEAD, "HEAD"}, {EVS_M_POST, "POST"}, {EVS_M_PUT, "PUT"},
              {EVS_M_DELETE, "DELETE"}};
    for (size_t i = 0; i < NROUTES; i++)
        for (size_t m = 0; m < sizeof ms / sizeof ms[0]; m++)
            if (routes[i].methods & ms[m].bit) {
                char need[32];
                evs__auth_need_text(routes[i].need, need, sizeof need);
                fprintf(f, "%s %s %s\n", ms[m].name, routes[i].path, need);
            }
}
