/*
 * respond.c — the one way out of the server for an answer (respond.h):
 * common headers, the error body, the status of a library code, the
 * counters, and the access log.
 *
 * Error kinds are counted from the status alone (409 conflict, 413 limit,
 * 422 invalid, 500 internal, 503 and 504 io) plus malformed JSON, which is
 * a 400 said by evs__respond_malformed; so every route counts alike.
 *
 * The access log line: time (UTC, ms), client, method, path as received
 * (still percent-encoded, so no control byte reaches the log), status and
 * the time since the request's first call.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/respond.h"

/* --------------------------------------------------------------- the table */

unsigned evs__http_status(int rc) {
    switch (rc) {
    case EVS_EINVAL: return EVS_HTTP_UNPROCESSABLE;    /* well-formed but invalid */
    case EVS_EJSON: return EVS_HTTP_BAD_REQUEST;       /* not JSON at all */
    case EVS_ENOTFOUND: return EVS_HTTP_NOT_FOUND;
    case EVS_ECONFLICT:
    case EVS_ECONDITION:                               /* a DCB append's query matched a newer event */
    case EVS_EDUPLICATE:
    case EVS_ELOCKED: return EVS_HTTP_CONFLICT;        /* held by another (a consumer name taken, ...) */
    case EVS_ELIMIT: return EVS_HTTP_TOO_LARGE;        /* over a limit: more would not fit */
    case EVS_EIO:
    case EVS_EFAILED:
    case EVS_ECLOSED:
    case EVS_ENOMEM: return EVS_HTTP_UNAVAILABLE;      /* the server cannot now; a retry may work */
    case EVS_ETIMEDOUT: return EVS_HTTP_GATEWAY_TIMEOUT;
    case EVS_ELOST: return EVS_HTTP_GONE;              /* removed by a repair of a damaged log */
    case EVS_EDELETED: return EVS_HTTP_GONE;           /* a hard-deleted stream: never again */
    case EVS_EKEY: return EVS_HTTP_UNPROCESSABLE;      /* no master key, or a forgotten subject (evstore_crypt.h) */
    case EVS_EUNAUTHORIZED: return EVS_HTTP_UNAUTHORIZED; /* no key, or one that is unknown or revoked */
    case EVS_EFORBIDDEN: return EVS_HTTP_FORBIDDEN;       /* a valid key without the permission */
    case EVS_ENOTSUP: return EVS_HTTP_NOT_IMPLEMENTED;    /* the store's engine does not do it (yet) */
    case EVS_ECORRUPT:
    case EVS_EFORMAT:
    case EVS_EINDEX: return EVS_HTTP_INTERNAL;         /* stored data is wrong: retrying will not help */
    default: return rc < 0 && rc > -4096 ? EVS_HTTP_UNAVAILABLE : EVS_HTTP_INTERNAL; /* -errno: I/O */
    }
}

unsigned evs__command_status(const evs_command_result *r) {
    switch (r->outcome) {
    case EVS_CMD_ACCEPTED: return r->n_events && !r->idempotent ? EVS_HTTP_CREATED : EVS_HTTP_OK;
    case EVS_CMD_REJECTED: return EVS_HTTP_UNPROCESSABLE; /* decide said no: the domain's reason */
    case EVS_CMD_CONFLICT: return EVS_HTTP_CONFLICT;      /* expected_version, or retries ran out */
    case EVS_CMD_INVALID: return EVS_HTTP_BAD_REQUEST;    /* malformed command or data */
    case EVS_CMD_UNKNOWN: return EVS_HTTP_NOT_FOUND;      /* no handler for the command type */
    default: return EVS_HTTP_INTERNAL;                    /* the handler failed (a script error) */
    }
}

/* ------------------------------------------------------------ access log */

static void log_line(const evs__req *rq, unsigned status) {
    char addr[INET6_ADDRSTRLEN + 8] = "-";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(rq->c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ci->client_addr;
        char ip[INET_ADDRSTRLEN];
        if (inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip))
            snprintf(addr, sizeof addr, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ci->client_addr;
        char ip[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip))
            snprintf(addr, sizeof addr, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    double ms = (double)(evs__mono_ns() - rq->t0) / 1e6;
    fprintf(rq->srv->access_log, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %s %u %.3fms\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, addr,
            rq->method_name ? rq->method_name : "-", rq->url ? rq->url : "-", status, ms);
}

/* -------------------------------------------------------------- answers */

static void allow_text(unsigned m, char *buf, size_t cap) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{EVS_M_GET, "GET"}, {EVS_M_HEAD, "HEAD"}, {EVS_M_POST, "POST"}, {EVS_M_PUT, "PUT"},
                 {EVS_M_DELETE, "DELETE"}};
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (m & names[i].bit) {
            size_t l = strlen(buf);
            snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", names[i].name);
        }
}

enum MHD_Result evs__respond_queue(evs__req *rq, unsigned status, struct MHD_Response *r) {
    evs__srv *srv = rq->srv;
    if (status == EVS_HTTP_METHOD_NOT_ALLOWED) {
        char allow[64];
        allow_text(rq->allowed, allow, sizeof allow);
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (status == EVS_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"evstore\"");
    /* While shutting down, do not invite the client to reuse the connection. */
    if (status != EVS_HTTP_SWITCHING && atomic_load(&srv->shutting))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result mr = MHD_queue_response(rq->c, status, r);
    MHD_destroy_response(r);
    evs__count_answer(&srv->m, rq->route, status);
    switch (status) {
    case EVS_HTTP_CONFLICT: evs__count_error(&srv->m, EVS_ERRK_CONFLICT); break;
    case EVS_HTTP_TOO_LARGE: evs__count_error(&srv->m, EVS_ERRK_LIMIT); break;
    case EVS_HTTP_UNPROCESSABLE: evs__count_error(&srv->m, EVS_ERRK_INVALID); break;
    case EVS_HTTP_INTERNAL: evs__count_error(&srv->m, EVS_ERRK_INTERNAL); break;
    case EVS_HTTP_UNAVAILABLE:
    case EVS_HTTP_GATEWAY_TIMEOUT: evs__count_error(&srv->m, EVS_ERRK_IO); break;
    default: break;
    }
    if (srv->access_log) log_line(rq, status);
    return mr;
}

enum MHD_Result evs__respond(evs__req *rq, unsigned status, char *body, size_t len, const char *ctype) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype ? ctype : "application/json");
    return evs__respond_queue(rq, status, r);
}

enum MHD_Result evs__respond_sb(evs__req *rq, unsigned status, evs__sb *out) {
    size_t len;
    char *p = evs__sb_take(out, &len);
    if (!p) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    return evs__respond(rq, status, p, len, NULL);
}

static enum MHD_Result error_v(evs__req *rq, unsigned status, const char *detail_json, const char *fmt,
                               va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (status >= 500) fprintf(stderr, "evstore serve: %u: %s\n", status, msg);
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"error\":");
    evs__sb_json_str(&b, msg, strlen(msg));
    evs__sb_adds(&b, ",\"detail\":");
    evs__sb_adds(&b, detail_json ? detail_json : "null");
    evs__sb_adds(&b, "}\n");
    size_t len;
    char *p = evs__sb_take(&b, &len);
    if (!p) return MHD_NO;
    return evs__respond(rq, status, p, len, NULL);
}

enum MHD_Result evs__respond_error(evs__req *rq, unsigned status, const char *detail_json, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result mr = error_v(rq, status, detail_json, fmt, ap);
    va_end(ap);
    return mr;
}

enum MHD_Result evs__respond_malformed(evs__req *rq, long long line, long long column, long long offset,
                                       const char *fmt, ...) {
    char d[96];
    snprintf(d, sizeof d, "{\"line\":%lld,\"column\":%lld,\"offset\":%lld}", line, column, offset);
    evs__count_error(&rq->srv->m, EVS_ERRK_JSON);
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result mr = error_v(rq, EVS_HTTP_BAD_REQUEST, d, fmt, ap);
    va_end(ap);
    return mr;
}

enum MHD_Result evs__respond_code(evs__req *rq, int rc, const char *context, const char *msg) {
    char detail[64];
    snprintf(detail, sizeof detail, "{\"code\":\"%s\"}", evs_errname(rc));
    if (!msg) {
        msg = evs_errmsg();
        if (!msg || !*msg) msg = evs_strerror(rc);
    }
    if (rc == EVS_EJSON) evs__count_error(&rq->srv->m, EVS_ERRK_JSON);
    if (context) return evs__respond_error(rq, evs__http_status(rc), detail, "%s: %s", context, msg);
    return evs__respond_error(rq, evs__http_status(rc), detail, "%s", msg);
}

enum MHD_Result evs__respond_lib(evs__req *rq, int rc, const char *context) {
    return evs__respond_code(rq, rc, context, NULL);
}

int evs__req_run_suspended(evs__req *rq, void *state, void (*state_free)(void *), void *(*fn)(void *)) {
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 << 10);
    rq->state = state;
    rq->state_free = state_free;
    /* suspended before the thread starts: it may resume the connection at once */
    MHD_suspend_connection(rq->c);
    int rc = pthread_create(&t, &a, fn, state);
    pthread_attr_destroy(&a);
    if (rc == 0) return 0;
    rq->state = NULL;
    rq->state_free = NULL;
    MHD_resume_connection(rq->c);
    return -1;
}
