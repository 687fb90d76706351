/*
 * srv.h — internals of `evstore serve`, shared by the files of src/server/.
 *
 * Layout:
 *   serve.c    command line, store and daemon lifecycle, signals, shutdown
 *   http.c     libmicrohttpd access handler: routing, bodies, responses
 *   routes.c   the JSON routes (append, reads, stream list, info, health)
 *   routes_bus.c  projections (one runner thread each), groups, consumers, DLQs
 *   metrics.c  counters, histograms and the Prometheus text rendering
 *   sse.c      GET /subscribe (Server-Sent Events) and the head notifier
 *   ws.c       GET /ws (WebSocket over libwslay) on one epoll thread
 *   util.c     percent-decoding, strict numbers, SHA-1, the access log
 *
 * Threads: libmicrohttpd runs a pool of epoll workers that call the access
 * handler; each append blocks its worker in evs_append, and the store's
 * group commit gathers the appends of all workers into one write.  One
 * notifier thread waits on the store head and wakes live subscribers; one
 * WebSocket thread owns every upgraded socket.  The main thread only waits
 * for a signal and then runs the shutdown sequence (serve.c).
 *
 * Live subscribers (SSE and WebSocket) are cursors on the log: each keeps
 * the next global position it has to look at and reads from the log when
 * its socket can take more.  There is no per-subscriber queue of events to
 * overflow: a slow consumer simply falls behind the head and catches up by
 * reading, so memory per subscriber is bounded by one socket buffer's worth
 * of rendered events and nothing is skipped or repeated at the switch from
 * catch-up to live.
 */
#ifndef EVS_SRV_H
#define EVS_SRV_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "core/sb.h"
#include "evstore.h"
#include "server/server.h"

/* ------------------------------------------------------------- hard caps */

#define EVS_SRV_MAX_PAGE 10000u          /* events or streams per read page */
#define EVS_SRV_DEFAULT_PAGE 100u
#define EVS_SRV_MAX_PAGE_BYTES ((size_t)32 << 20) /* a page stops growing here */
#define EVS_SRV_MAX_FILTER_TYPES 32u
#define EVS_SRV_HEADER_MEMORY ((size_t)32 << 10)  /* per connection: headers and the send buffer */

/* Statuses by number: libmicrohttpd renames some of its constants between releases. */
enum {
    EVS_HTTP_SWITCHING = 101, EVS_HTTP_OK = 200, EVS_HTTP_CREATED = 201, EVS_HTTP_BAD_REQUEST = 400,
    EVS_HTTP_NOT_FOUND = 404, EVS_HTTP_METHOD_NOT_ALLOWED = 405, EVS_HTTP_CONFLICT = 409,
    EVS_HTTP_TOO_LARGE = 413, EVS_HTTP_UNSUPPORTED_TYPE = 415, EVS_HTTP_UNPROCESSABLE = 422,
    EVS_HTTP_INTERNAL = 500, EVS_HTTP_UNAVAILABLE = 503
};

/* ----------------------------------------------------------------- input */

/*
 * Percent-decode in[0..n) into out (cap bytes, NUL-terminated).  Rejects a
 * malformed escape, a decoded NUL and invalid UTF-8; on failure returns -1
 * with a message in why.  Returns the decoded length.
 */
long evs__pct_decode(const char *in, size_t n, char *out, size_t cap, char *why, size_t whycap);


/* SHA-1 of p[0..n) (for the WebSocket handshake only). */
void evs__sha1(const void *p, size_t n, uint8_t out[20]);
/* Standard base64 with padding into out (4 * ceil(n / 3) + 1 bytes). */
void evs__base64(const uint8_t *p, size_t n, char *out);

/* --------------------------------------------------------------- metrics */

enum evs_route {
    EVS_R_APPEND, EVS_R_READ_STREAM, EVS_R_READ_EVENT, EVS_R_LIST_STREAMS, EVS_R_ALL,
    EVS_R_SUBSCRIBE, EVS_R_WS, EVS_R_METRICS, EVS_R_HEALTH, EVS_R_INFO, EVS_R_OTHER,
    EVS_R_PROJECTIONS, EVS_R_SUBSCRIPTIONS, EVS_R_GROUPS, /* routes_bus.c */
    EVS_R_COUNT
};

/* The statuses we send; anything else is counted as "other". */
#define EVS_SRV_STATUSES(X) \
    X(101) X(200) X(201) X(400) X(404) X(405) X(409) X(413) X(415) X(422) X(500) X(503)
enum { EVS_ST_NSLOTS = 13 };

#define EVS_SRV_LAT_BUCKETS 14

typedef struct evs__metrics {
    _Atomic uint64_t requests[EVS_R_COUNT][EVS_ST_NSLOTS];
    _Atomic uint64_t lat_bucket[EVS_SRV_LAT_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t lat_sum_ns, lat_count;
    _Atomic uint64_t events_appended;      /* through HTTP, idempotent retries excluded */
    _Atomic uint64_t events_read;          /* returned by read routes */
    _Atomic uint64_t deliveries_sse, deliveries_ws;
    _Atomic uint64_t errors_json, errors_invalid, errors_conflict, errors_limit, errors_io,
        errors_internal;
} evs__metrics;

/* ----------------------------------------------------------------- server */

typedef struct evs__sse_sub evs__sse_sub;
typedef struct evs__ws_hub evs__ws_hub;

typedef struct evs__srv {
    evs_store *store;
    struct MHD_Daemon *daemon;
    const char *dir;
    const char *durability_name;
    char listen[80];              /* "127.0.0.1:2113" as bound */

    /* limits (already clamped to the hard caps) */
    size_t max_body;
    unsigned max_connections, timeout_s, threads;
    size_t ws_frame_max;
    unsigned heartbeat_ms;
    FILE *access_log;             /* one line per answered request; NULL: off */

    int64_t started_ns;
    _Atomic int shutting;         /* 1: answer 503, end live streams */
    _Atomic long active;          /* requests between first call and completion */
    _Atomic long connections;     /* open HTTP connections (upgraded ones until upgrade) */

    evs__metrics m;

    /* live subscribers (sse.c) */
    pthread_mutex_t sub_mu;
    evs__sse_sub *sse_head;
    _Atomic long sse_count;
    pthread_t notifier;
    int notifier_started;
    _Atomic int notifier_stop;

    /* WebSocket thread (ws.c) */
    evs__ws_hub *ws;

    /* projections, consumers and their DLQs (routes_bus.c) */
    struct evs__bus_srv *bus;
} evs__srv;

/* http.c */
enum MHD_Result evs__http_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls);
void evs__http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe);
size_t evs__http_unescape_none(void *cls, struct MHD_Connection *c, char *s);
/*
 * The connection limit, enforced here as well: with a thread pool
 * libmicrohttpd splits its own limit between the workers, so one busy
 * worker could refuse while another accepts past the total.
 */
enum MHD_Result evs__http_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void evs__http_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe);

/*
 * Queue a response (body taken over, freed by MHD) and count it.  content
 * type NULL means application/json.  Returns the MHD result to hand back.
 */
enum MHD_Result evs__respond(evs__srv *srv, struct MHD_Connection *c, int route, unsigned status,
                             char *body, size_t len, const char *ctype);
/* {"error": msg, "detail": detail_json or null} with the status. */
enum MHD_Result evs__respond_error(evs__srv *srv, struct MHD_Connection *c, int route,
                                   unsigned status, const char *detail_json, const char *fmt, ...)
    EVS_PRINTF(6, 7);
/* A library failure mapped to its HTTP status, message from evs_errmsg(). */
enum MHD_Result evs__respond_lib(evs__srv *srv, struct MHD_Connection *c, int route, int rc,
                                 const char *context);
/* The raw (still percent-encoded) query argument, or NULL. */
const char *evs__query(struct MHD_Connection *c, const char *key);

/* routes.c — each queues exactly one response. */
enum MHD_Result evs__route_append(evs__srv *srv, struct MHD_Connection *c, const char *stream,
                                  const char *body, size_t len);
enum MHD_Result evs__route_read_stream(evs__srv *srv, struct MHD_Connection *c, const char *stream);
enum MHD_Result evs__route_read_event(evs__srv *srv, struct MHD_Connection *c, const char *stream,
                                      const char *pos);
enum MHD_Result evs__route_list_streams(evs__srv *srv, struct MHD_Connection *c);
enum MHD_Result evs__route_all(evs__srv *srv, struct MHD_Connection *c);
enum MHD_Result evs__route_info(evs__srv *srv, struct MHD_Connection *c);
enum MHD_Result evs__route_health(evs__srv *srv, struct MHD_Connection *c);

/*
 * Decode and check a query value as text: percent-decoded, no NUL, valid
 * UTF-8.  Queues a 400 and returns -1 when it is not; 0 with *out (malloc'd,
 * caller frees, NULL when absent).
 */
int evs__query_text(evs__srv *srv, struct MHD_Connection *c, int route, const char *key,
                    size_t maxlen, char **out, enum MHD_Result *mr);
/*
 * A live-stream filter from query or protocol fields: event types (comma
 * separated), stream type and one exact stream; from queries also a stream
 * prefix, a correlation id and a recorded_at range.  Owns its strings.
 */
typedef struct evs__live_filter {
    char *types_buf;
    const char *types[EVS_SRV_MAX_FILTER_TYPES];
    size_t ntypes;
    char *stream_type;
    char *stream;
    size_t stream_len;
    char *stream_prefix;          /* not together with stream */
    int has_correlation;
    evs_uuid correlation;
    int64_t since, until;         /* 0: unbounded */
    evs_filter f;                 /* points into the fields above */
} evs__live_filter;
/*
 * The filter parameters of /all and /subscribe: type, stream_type,
 * stream_prefix, correlation_id, since, until, and with allow_stream also
 * stream.  0 with lf finished, or -1 after queueing a 400 (*mr).
 */
int evs__query_filter(evs__srv *srv, struct MHD_Connection *c, int route, int allow_stream,
                      evs__live_filter *lf, enum MHD_Result *mr);
/* Split types_buf on ',' into types[]; -1 when there are too many or an empty one. */
int evs__live_filter_finish(evs__live_filter *lf);
void evs__live_filter_free(evs__live_filter *lf);
/* 1 if ev passes the parts evs_filter cannot express (the exact stream). */
int evs__live_filter_match(const evs__live_filter *lf, const evs_event *ev);

/* metrics.c */
void evs__metrics_count(evs__srv *srv, int route, unsigned status);

/*
 * Access log (util.c).  The access handler brackets each call with
 * enter/leave so that evs__metrics_count, which every answer passes
 * through, can write the line: time, client, method, path, status and the
 * time since the request's first call (t0, monotonic ns).
 */
void evs__reqlog_enter(struct MHD_Connection *c, const char *method, const char *url, int64_t t0);
void evs__reqlog_leave(void);
void evs__reqlog_write(evs__srv *srv, unsigned status);
void evs__metrics_append_latency(evs__srv *srv, int64_t ns);
enum MHD_Result evs__route_metrics(evs__srv *srv, struct MHD_Connection *c);

/* sse.c */
enum MHD_Result evs__route_subscribe(evs__srv *srv, struct MHD_Connection *c);
int evs__notifier_start(evs__srv *srv);
/* Wake every suspended SSE subscriber (shutdown, or the notifier's tick). */
void evs__sse_wake_all(evs__srv *srv);
void evs__notifier_stop(evs__srv *srv);
/* The largest head - next over live subscribers (for /metrics). */
uint64_t evs__sse_max_lag(evs__srv *srv, uint64_t head);

/* ws.c */
int evs__ws_start(evs__srv *srv);
enum MHD_Result evs__route_ws(evs__srv *srv, struct MHD_Connection *c);
/* The head moved (called by the notifier). */
void evs__ws_kick(evs__srv *srv);
/* Say goodbye to every WebSocket client, close them and join the thread. */
void evs__ws_stop(evs__srv *srv);
/* After the daemon stopped: release the hub (stops it first if needed). */
void evs__ws_free(evs__srv *srv);
long evs__ws_count(evs__srv *srv);
uint64_t evs__ws_max_lag(evs__srv *srv, uint64_t head);

#endif
