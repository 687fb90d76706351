/*
 * http.c — the libmicrohttpd access handler: routing, request bodies, and
 * the helpers that turn results and errors into JSON responses.
 *
 * libmicrohttpd calls the handler several times per request:
 *   1. headers are in, *con_cls is NULL: we pick the route and check what
 *      can be checked without the body (method, content type, declared
 *      length).  Errors are answered here, so an oversized or mistyped
 *      upload is refused before it is read.  Otherwise we only allocate
 *      the request state and return: queueing a response on this first
 *      call makes libmicrohttpd answer about five times slower (measured),
 *      so even bodiless GETs are answered on the second call.
 *   2. zero or more calls with body bytes, appended to the request buffer
 *      up to the body cap;
 *   3. a final call with no bytes: the route runs and queues its response.
 *
 * Paths are split raw (the unescape callback is a no-op, see util.c), so
 * "%2F" inside a stream name never becomes a separator.  Every response is
 * JSON except /metrics (Prometheus text) and the live streams.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/srv.h"

typedef struct evs_req {
    int route;
    int method;             /* M_GET, M_POST, M_HEAD */
    int counted;            /* included in srv->active */
    int answered;           /* an error was queued on the first call */
    evs__sb body;
    int too_big;
    char stream[EVS_MAX_STREAM_NAME + 1];
    char pos[32];
} evs_req;

enum { M_GET = 1, M_POST, M_HEAD, M_OTHER };

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

const char *evs__query(struct MHD_Connection *c, const char *key) {
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
}

/* -------------------------------------------------------------- responses */

enum MHD_Result evs__respond(evs__srv *srv, struct MHD_Connection *c, int route, unsigned status,
                             char *body, size_t len, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/json");
    if (status == EVS_HTTP_METHOD_NOT_ALLOWED) {
        const char *allow = route == EVS_R_APPEND || route == EVS_R_READ_STREAM ? "GET, HEAD, POST"
                                                                                : "GET, HEAD";
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    /* While shutting down, do not invite the client to reuse the connection. */
    if (atomic_load(&srv->shutting)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result mr = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    evs__metrics_count(srv, route, status);
    return mr;
}

enum MHD_Result evs__respond_error(evs__srv *srv, struct MHD_Connection *c, int route,
                                   unsigned status, const char *detail_json, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"error\":");
    evs__sb_json_str(&b, msg, strlen(msg));
    evs__sb_adds(&b, ",\"detail\":");
    evs__sb_adds(&b, detail_json ? detail_json : "null");
    evs__sb_adds(&b, "}\n");
    if (status >= 500) fprintf(stderr, "evstore serve: %u: %s\n", status, msg);
    size_t len;
    char *p = evs__sb_take(&b, &len);
    if (!p) return MHD_NO;
    return evs__respond(srv, c, route, status, p, len, NULL);
}

enum MHD_Result evs__respond_lib(evs__srv *srv, struct MHD_Connection *c, int route, int rc,
                                 const char *context) {
    unsigned st;
    switch (rc) {
    case EVS_ENOTFOUND: st = EVS_HTTP_NOT_FOUND; break;
    case EVS_ECONFLICT:
    case EVS_EDUPLICATE: st = EVS_HTTP_CONFLICT; atomic_fetch_add(&srv->m.errors_conflict, 1); break;
    case EVS_EJSON:
    case EVS_EINVAL: st = EVS_HTTP_UNPROCESSABLE; atomic_fetch_add(&srv->m.errors_invalid, 1); break;
    case EVS_ELIMIT: st = EVS_HTTP_TOO_LARGE; atomic_fetch_add(&srv->m.errors_limit, 1); break;
    case EVS_EIO:
    case EVS_EFAILED:
    case EVS_ECLOSED:
    case EVS_ECORRUPT: st = EVS_HTTP_UNAVAILABLE; atomic_fetch_add(&srv->m.errors_io, 1); break;
    default:
        st = rc < 0 && rc > -4096 ? EVS_HTTP_UNAVAILABLE : EVS_HTTP_INTERNAL;
        atomic_fetch_add(&srv->m.errors_internal, 1);
        break;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "{\"code\":\"%s\"}", evs_errname(rc));
    const char *msg = evs_errmsg();
    if (!msg || !*msg) msg = evs_strerror(rc);
    if (context) return evs__respond_error(srv, c, route, st, detail, "%s: %s", context, msg);
    return evs__respond_error(srv, c, route, st, detail, "%s", msg);
}

/* ---------------------------------------------------------------- routing */

/*
 * Decode one raw path segment as a stream name.  Queues the error and
 * returns -1 when it is not usable; the rules beyond decoding are the
 * store's, checked here so that GET and POST answer alike.
 */
static int stream_segment(evs__srv *srv, struct MHD_Connection *c, int route, const char *seg,
                          size_t n, char *out, enum MHD_Result *mr) {
    char why[96];
    char tmp[4 * (EVS_MAX_STREAM_NAME + 1)];
    long len = evs__pct_decode(seg, n, tmp, sizeof tmp, why, sizeof why);
    if (len < 0) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL, "stream name %s", why);
        return -1;
    }
    if (len == 0) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_NOT_FOUND, NULL, "no such route");
        return -1;
    }
    if ((size_t)len > EVS_MAX_STREAM_NAME) {
        char d[64];
        snprintf(d, sizeof d, "{\"length\":%ld,\"limit\":%u}", len, EVS_MAX_STREAM_NAME);
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_UNPROCESSABLE, d,
                                 "stream name is %ld bytes, the limit is %u", len, EVS_MAX_STREAM_NAME);
        return -1;
    }
    /* Clients and proxies rewrite dot segments, so such a name could never
       be addressed reliably: refuse it rather than store it. */
    if (strcmp(tmp, ".") == 0 || strcmp(tmp, "..") == 0) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "stream name \"%s\" is a dot segment", tmp);
        return -1;
    }
    for (long i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)tmp[i];
        if (ch < 0x20 || ch == 0x7f) {
            *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                     "stream name contains control character 0x%02x at byte %ld",
                                     ch, i + 1);
            return -1;
        }
    }
    if (tmp[0] == '$') {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_UNPROCESSABLE, NULL,
                                 "stream names starting with '$' are reserved");
        return -1;
    }
    memcpy(out, tmp, (size_t)len + 1);
    return 0;
}

static int method_of(const char *m) {
    if (strcmp(m, "GET") == 0) return M_GET;
    if (strcmp(m, "POST") == 0) return M_POST;
    if (strcmp(m, "HEAD") == 0) return M_HEAD;
    return M_OTHER;
}

/* Route from the raw path; points stream_seg / pos_seg into url when present. */
static int route_of(const char *url, const char **stream_seg, size_t *stream_n,
                    const char **pos_seg) {
    *stream_seg = NULL;
    *pos_seg = NULL;
    if (strcmp(url, "/streams") == 0) return EVS_R_LIST_STREAMS;
    if (strncmp(url, "/streams/", 9) == 0) {
        const char *s = url + 9;
        const char *slash = strchr(s, '/');
        *stream_seg = s;
        if (!slash) {
            *stream_n = strlen(s);
            return EVS_R_READ_STREAM; /* or append: decided by the method */
        }
        *stream_n = (size_t)(slash - s);
        if (strchr(slash + 1, '/')) return EVS_R_OTHER;
        *pos_seg = slash + 1;
        return EVS_R_READ_EVENT;
    }
    if (strcmp(url, "/all") == 0) return EVS_R_ALL;
    if (strcmp(url, "/subscribe") == 0) return EVS_R_SUBSCRIBE;
    if (strcmp(url, "/ws") == 0) return EVS_R_WS;
    if (strcmp(url, "/metrics") == 0) return EVS_R_METRICS;
    if (strcmp(url, "/health") == 0) return EVS_R_HEALTH;
    if (strcmp(url, "/info") == 0) return EVS_R_INFO;
    return EVS_R_OTHER;
}

/* application/json, optionally with parameters ("; charset=utf-8"). */
static int json_content_type(const char *ct) {
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    if (strncasecmp(ct, "application/json", 16) != 0) return 0;
    const char *rest = ct + 16;
    while (*rest == ' ') rest++;
    return *rest == '\0' || *rest == ';';
}

/* Queue an error on the first call and remember it (the body is then dropped). */
#define REFUSE(...)                                 \
    do {                                            \
        rq->answered = 1;                           \
        return evs__respond_error(__VA_ARGS__);     \
    } while (0)

/* First call: everything that can be refused before reading a body. */
static enum MHD_Result first_call(evs__srv *srv, struct MHD_Connection *c, const char *url,
                                  evs_req *rq) {
    const char *seg, *pos;
    size_t segn = 0;
    int route = route_of(url, &seg, &segn, &pos);
    rq->route = route;
    if (route == EVS_R_OTHER)
        REFUSE(srv, c, route, EVS_HTTP_NOT_FOUND, NULL, "no route for %s", url);
    int post_ok = route == EVS_R_READ_STREAM;
    if (rq->method == M_OTHER || (rq->method == M_POST && !post_ok))
        REFUSE(srv, c, route, EVS_HTTP_METHOD_NOT_ALLOWED, NULL,
               "method not allowed on %s", url);
    if (rq->method == M_POST) rq->route = route = EVS_R_APPEND;
    if (atomic_load(&srv->shutting) && route != EVS_R_HEALTH)
        REFUSE(srv, c, route, EVS_HTTP_UNAVAILABLE, NULL,
               "the server is shutting down");
    enum MHD_Result mr = MHD_YES;
    if (seg && stream_segment(srv, c, route, seg, segn, rq->stream, &mr)) {
        rq->answered = 1;
        return mr;
    }
    if (pos) {
        size_t pn = strlen(pos);
        if (pn >= sizeof rq->pos) pn = sizeof rq->pos - 1; /* too long to be a number anyway */
        memcpy(rq->pos, pos, pn);
        rq->pos[pn] = '\0';
    }
    if (route == EVS_R_APPEND) {
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!json_content_type(ct))
            REFUSE(srv, c, route, EVS_HTTP_UNSUPPORTED_TYPE, NULL,
                   "appends take Content-Type: application/json, not %s",
                   ct ? ct : "(none)");
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t declared;
        if (cl && evs__parse_u64(cl, UINT64_MAX, &declared) == 0 && declared > srv->max_body) {
            char d[96];
            snprintf(d, sizeof d, "{\"length\":%llu,\"limit\":%zu}", (unsigned long long)declared,
                     srv->max_body);
            atomic_fetch_add(&srv->m.errors_limit, 1);
            REFUSE(srv, c, route, EVS_HTTP_TOO_LARGE, d,
                   "request body of %llu bytes is over the limit of %zu",
                   (unsigned long long)declared, srv->max_body);
        }
    }
    return MHD_YES;
}

enum MHD_Result evs__http_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    evs__srv *srv = cls;
    evs_req *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        rq->method = method_of(method);
        rq->counted = 1;
        atomic_fetch_add(&srv->active, 1);
        return first_call(srv, c, url, rq);
    }
    if (rq->answered) { /* refused on the first call: drop whatever body follows */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rq->too_big || rq->body.len + *upload_size > srv->max_body) {
            rq->too_big = 1; /* keep draining; the answer comes on the last call */
            evs__sb_free(&rq->body);
        } else {
            evs__sb_add(&rq->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    switch (rq->route) {
    case EVS_R_APPEND:
        if (rq->too_big) {
            atomic_fetch_add(&srv->m.errors_limit, 1);
            char d[64];
            snprintf(d, sizeof d, "{\"limit\":%zu}", srv->max_body);
            return evs__respond_error(srv, c, rq->route, EVS_HTTP_TOO_LARGE, d,
                                      "request body is over the limit of %zu bytes", srv->max_body);
        }
        if (rq->body.oom)
            return evs__respond_error(srv, c, rq->route, EVS_HTTP_UNAVAILABLE, NULL,
                                      "out of memory reading the request body");
        return evs__route_append(srv, c, rq->stream, rq->body.p ? rq->body.p : "", rq->body.len);
    case EVS_R_READ_STREAM: return evs__route_read_stream(srv, c, rq->stream);
    case EVS_R_READ_EVENT: return evs__route_read_event(srv, c, rq->stream, rq->pos);
    case EVS_R_LIST_STREAMS: return evs__route_list_streams(srv, c);
    case EVS_R_ALL: return evs__route_all(srv, c);
    case EVS_R_SUBSCRIBE:
        /* a live stream is not an in-flight request for shutdown's wait */
        if (rq->counted) {
            rq->counted = 0;
            atomic_fetch_sub(&srv->active, 1);
        }
        return evs__route_subscribe(srv, c);
    case EVS_R_WS:
        if (rq->counted) {
            rq->counted = 0;
            atomic_fetch_sub(&srv->active, 1);
        }
        return evs__route_ws(srv, c);
    case EVS_R_METRICS: return evs__route_metrics(srv, c);
    case EVS_R_HEALTH: return evs__route_health(srv, c);
    case EVS_R_INFO: return evs__route_info(srv, c);
    default: return evs__respond_error(srv, c, EVS_R_OTHER, EVS_HTTP_NOT_FOUND, NULL, "no such route");
    }
}

void evs__http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    evs__srv *srv = cls;
    evs_req *rq = *con_cls;
    (void)c;
    (void)toe;
    if (!rq) return;
    if (rq->counted) atomic_fetch_sub(&srv->active, 1);
    evs__sb_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}
