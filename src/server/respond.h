/*
 * respond.h — the request a route answers (evs__req, filled by http.c) and
 * the one way to answer it.  Every answer of every route, errors, live
 * streams and upgrades included, leaves through evs__respond_queue, which
 * adds the common headers, counts the answer by route and status (and
 * errors by kind), and writes the access log line.
 *
 * Library failures become HTTP statuses through one table,
 * evs__http_status (respond.c lists it; docs/http-api.md documents it).
 * Error bodies are always {"error": "<message>", "detail": <JSON or null>};
 * for a library failure detail is {"code": "<EVS_ name>"}.
 *
 * Each evs__respond* queues exactly one response and returns what the
 * access handler hands back to libmicrohttpd.
 */
#ifndef EVS_RESPOND_H
#define EVS_RESPOND_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "core/sb.h"
#include "evstore_app.h"
#include "evstore_bus.h"
#include "server/state.h"

/* Statuses by number: libmicrohttpd renames some of its constants between releases. */
enum {
    EVS_HTTP_SWITCHING = 101, EVS_HTTP_OK = 200, EVS_HTTP_CREATED = 201, EVS_HTTP_BAD_REQUEST = 400,
    EVS_HTTP_UNAUTHORIZED = 401, EVS_HTTP_FORBIDDEN = 403,
    EVS_HTTP_NOT_FOUND = 404, EVS_HTTP_METHOD_NOT_ALLOWED = 405, EVS_HTTP_CONFLICT = 409, EVS_HTTP_GONE = 410,
    EVS_HTTP_TOO_LARGE = 413, EVS_HTTP_UNSUPPORTED_TYPE = 415, EVS_HTTP_UNPROCESSABLE = 422,
    EVS_HTTP_INTERNAL = 500, EVS_HTTP_NOT_IMPLEMENTED = 501, EVS_HTTP_UNAVAILABLE = 503, EVS_HTTP_GATEWAY_TIMEOUT = 504
};

/* Methods, as bits (a route's allowed set is a mask). */
enum { EVS_M_GET = 1, EVS_M_HEAD = 2, EVS_M_POST = 4, EVS_M_PUT = 8, EVS_M_DELETE = 16 };
#define EVS_M_READ (EVS_M_GET | EVS_M_HEAD)

/* What a route keeps of the request body. */
enum { EVS_BODY_NONE, EVS_BODY_JSON, EVS_BODY_LUA };

/*
 * One request, from its first call to its completion (http.c allocates and
 * frees it).  Path parameters are decoded and checked before a route runs.
 */
typedef struct evs__req {
    evs__srv *srv;
    struct MHD_Connection *c;
    const char *url, *method_name;        /* as received (the path still percent-encoded) */
    int64_t t0;                           /* the first call, monotonic ns, for the access log */
    int route;                            /* EVS_R_*: the label it is counted under */
    unsigned method;                      /* EVS_M_* */
    unsigned allowed;                     /* the methods of its path (a 405's Allow) */
    int counted;                          /* included in srv->active */
    int answered;                         /* refused on the first call: the body is dropped */
    int too_big;                          /* the body passed body_cap: 413 on the last call */
    int body_kind;                        /* EVS_BODY_* */
    size_t body_cap, got;
    evs__sb body;                         /* kept only when body_kind is not EVS_BODY_NONE */
    char stream[EVS_MAX_STREAM_NAME + 1]; /* /streams/{stream} */
    char name[EVS_BUS_MAX_NAME + 1];      /* /projections|subscriptions|groups/{name} */
    char part[EVS_MAX_STREAM_NAME + 1];   /* .../state/{partition}, .../consumers/{consumer} */
    char id[32];                          /* /streams/S/{position}, .../dlq/{position}, raw */
    const char *params;                   /* its route's query parameters, comma-separated (http.c's table) */
    struct evs__principal *who;           /* the verified key (auth.c); NULL: auth off or an open route */
    /* a route's own state across calls (a group long-poll), released at completion */
    void *state;
    void (*state_free)(void *state);
} evs__req;

/*
 * Answer later, off the worker: rq's state becomes `state` (released by
 * state_free at completion), its connection is suspended, and fn(state)
 * runs on a detached thread of its own, which must resume the connection
 * once the answer is in state; libmicrohttpd then calls the route again.
 * 0, or -1 when no thread could start: the connection is resumed and
 * rq->state cleared, so state is still the caller's to free and answer.
 */
int evs__req_run_suspended(evs__req *rq, void *state, void (*state_free)(void *), void *(*fn)(void *));

/*
 * Queue r with status: adds Connection: close while shutting down (not to
 * an upgrade) and Allow to a 405, counts, logs, and destroys r.
 */
enum MHD_Result evs__respond_queue(evs__req *rq, unsigned status, struct MHD_Response *r);
/* body (taken over, freed by libmicrohttpd) with status; ctype NULL means application/json. */
enum MHD_Result evs__respond(evs__req *rq, unsigned status, char *body, size_t len, const char *ctype);
/* The buffer's bytes as a JSON answer (the buffer is emptied); 503 when it ran out of memory. */
enum MHD_Result evs__respond_sb(evs__req *rq, unsigned status, evs__sb *out);
/* {"error": message, "detail": detail_json or null}.  5xx are also printed on stderr. */
enum MHD_Result evs__respond_error(evs__req *rq, unsigned status, const char *detail_json, const char *fmt, ...)
    EVS_PRINTF(4, 5);
/* A body that is not JSON: 400 with {"line", "column", "offset"}, counted as malformed JSON. */
enum MHD_Result evs__respond_malformed(evs__req *rq, long long line, long long column, long long offset,
                                       const char *fmt, ...) EVS_PRINTF(5, 6);

/*
 * The HTTP status of a library code: the one table.
 *   EVS_EINVAL -> 422, EVS_EJSON -> 400, EVS_ENOTFOUND -> 404,
 *   EVS_ECONFLICT, EVS_EDUPLICATE, EVS_ELOCKED -> 409, EVS_ELIMIT -> 413,
 *   EVS_EIO, EVS_EFAILED, EVS_ECLOSED, EVS_ENOMEM, -errno -> 503,
 *   EVS_EUNAUTHORIZED -> 401 (with WWW-Authenticate: Bearer), EVS_EFORBIDDEN -> 403,
 *   EVS_ETIMEDOUT -> 504, EVS_ECORRUPT, EVS_EFORMAT, EVS_EINDEX and anything else -> 500.
 */
unsigned evs__http_status(int rc);
/*
 * The HTTP status of a command's outcome: the same table for commands.
 *   accepted -> 201 when this request appended events, 200 when it
 *   appended none (nothing to do, or the original result of an earlier
 *   run: idempotent); rejected -> 422; conflict -> 409; invalid -> 400;
 *   unknown command type -> 404; failed -> 500.
 */
unsigned evs__command_status(const evs_command_result *r);
/* A library failure: status by the table, "context: evs_errmsg()" (context may be NULL). */
enum MHD_Result evs__respond_lib(evs__req *rq, int rc, const char *context);
/* The same with the message given (msg NULL: evs_errmsg()). */
enum MHD_Result evs__respond_code(evs__req *rq, int rc, const char *context, const char *msg);

#endif
