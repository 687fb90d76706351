/*
 * ws.c — GET /ws: WebSocket subscriptions, framed by libwslay, on one
 * epoll thread that owns every upgraded socket.
 *
 * Handshake: the access handler checks the upgrade headers and answers 101
 * through libmicrohttpd's upgrade response; MHD then hands over the raw,
 * non-blocking socket (plus any bytes it already read) in ws_upgraded, on a
 * worker thread.  That thread only queues the client for the hub and kicks
 * its eventfd; everything after runs on the hub thread, so no WebSocket
 * state is shared between threads except the client list (for /metrics)
 * and each cursor's atomic `next`.
 *
 * Protocol (text frames, one JSON object each; docs/http-api.md):
 *   client: {"op":"subscribe","from":N|"now","filter":{"type":..,"stream_type":..,"stream":..}}
 *           {"op":"unsubscribe"}  {"op":"ping"}
 *   server: {"op":"subscribed","from":N,"head":H}  {"op":"event","event":{...}}
 *           {"op":"heartbeat","head":H}  {"op":"unsubscribed","next":N}  {"op":"pong"}
 *           {"op":"error","error":"...","detail":...}  {"op":"shutdown"} then a close frame
 * Control messages are parsed with jansson: they are small and rare, and
 * never on the event path.
 *
 * Flow control: like SSE, a subscription is a cursor on the log.  The hub
 * reads more events for a client only while fewer than WS_QUEUE_MSGS
 * messages (and WS_QUEUE_BYTES) wait in its wslay queue, so a client that
 * does not read costs a bounded queue and resumes from the log when its
 * socket drains; nothing is skipped and nothing is held per event.
 */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "server/srv.h"

#define WS_QUEUE_MSGS 64
#define WS_QUEUE_BYTES ((size_t)512 << 10)
#define WS_READ_BATCH 64
#define WS_TICK_MS 200
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct ws_client ws_client;

struct ws_client {
    evs__ws_hub *hub;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    wslay_event_context_ptr ctx;
    char *extra;                   /* bytes MHD read past the handshake */
    size_t extra_len, extra_off;
    int subscribed;
    evs__live_filter lf;
    _Atomic uint64_t next;
    int64_t last_send_ns;
    uint32_t mask;                 /* current epoll interest */
    ws_client *prev, *nxt;
};

struct evs__ws_hub {
    evs__srv *srv;
    int epfd, efd;
    pthread_t th;
    int started;
    _Atomic int stop;
    pthread_mutex_t mu;            /* guards pending, clients (links), stopped */
    ws_client *pending;
    ws_client *clients;
    int stopped;
    _Atomic long count;
    int busy;                      /* hub thread only: a client is behind with room to send */
};

/* ------------------------------------------------------------- messages */

static void send_text(ws_client *cl, const char *p, size_t n) {
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)p, n};
    wslay_event_queue_msg(cl->ctx, &m);
}

static void send_error(ws_client *cl, const char *detail_json, const char *fmt, ...) EVS_PRINTF(3, 4);
static void send_error(ws_client *cl, const char *detail_json, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"op\":\"error\",\"error\":");
    evs__sb_json_str(&b, msg, strlen(msg));
    evs__sb_adds(&b, ",\"detail\":");
    evs__sb_adds(&b, detail_json ? detail_json : "null");
    evs__sb_adds(&b, "}");
    if (!b.oom) send_text(cl, b.p, b.len);
    evs__sb_free(&b);
}

/* A JSON string member as a malloc'd copy; -1 if present but not a usable string. */
static int str_member(json_t *obj, const char *key, size_t maxlen, char **out) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return -1;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > maxlen || memchr(s, '\0', n)) return -1;
    *out = strdup(s);
    return *out ? 0 : -1;
}

/* filter.type: one name or an array of names, joined for evs__live_filter. */
static int types_member(json_t *filter, char **out) {
    json_t *t = json_object_get(filter, "type");
    *out = NULL;
    if (!t || json_is_null(t)) return 0;
    if (json_is_string(t)) return str_member(filter, "type", EVS_MAX_TYPE_NAME, out);
    if (!json_is_array(t) || json_array_size(t) == 0 || json_array_size(t) > EVS_SRV_MAX_FILTER_TYPES) return -1;
    evs__sb b = {0};
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > EVS_MAX_TYPE_NAME ||
            strchr(json_string_value(v), ',')) {
            evs__sb_free(&b);
            return -1;
        }
        if (i) evs__sb_add(&b, ",", 1);
        evs__sb_adds(&b, json_string_value(v));
    }
    *out = evs__sb_take(&b, NULL);
    return *out ? 0 : -1;
}

static void on_subscribe(ws_client *cl, json_t *msg) {
    evs__srv *srv = cl->hub->srv;
    if (cl->subscribed) {
        send_error(cl, NULL, "already subscribed; send {\"op\":\"unsubscribe\"} first");
        return;
    }
    /* filled in place: lf.f points into lf itself, so it must not be copied */
    evs__live_filter *lf = &cl->lf;
    evs__live_filter_free(lf);
    json_t *filter = json_object_get(msg, "filter");
    if (filter && !json_is_null(filter)) {
        if (!json_is_object(filter) || types_member(filter, &lf->types_buf) ||
            str_member(filter, "stream_type", EVS_MAX_TYPE_NAME, &lf->stream_type) ||
            str_member(filter, "stream", EVS_MAX_STREAM_NAME, &lf->stream)) {
            send_error(cl, NULL, "filter must be an object with optional type (a name or an array of "
                                 "names), stream_type and stream (non-empty strings)");
            evs__live_filter_free(lf);
            return;
        }
        const char *k;
        json_t *v;
        json_object_foreach(filter, k, v) {
            if (strcmp(k, "type") && strcmp(k, "stream_type") && strcmp(k, "stream")) {
                send_error(cl, NULL, "filter: unknown field \"%.64s\"", k);
                evs__live_filter_free(lf);
                return;
            }
        }
    }
    if (evs__live_filter_finish(lf)) {
        send_error(cl, NULL, "filter: names must be 1..255 bytes, at most %u types", EVS_SRV_MAX_FILTER_TYPES);
        evs__live_filter_free(lf);
        return;
    }
    json_t *from = json_object_get(msg, "from");
    uint64_t start;
    if (!from || json_is_null(from) || (json_is_string(from) && strcmp(json_string_value(from), "now") == 0)) {
        start = evs_head(srv->store) + 1;
    } else if (json_is_integer(from) && json_integer_value(from) >= 0) {
        start = (uint64_t)json_integer_value(from);
        if (start == 0) start = 1;
    } else {
        send_error(cl, NULL, "from must be \"now\" or a global position (a non-negative integer)");
        evs__live_filter_free(lf);
        return;
    }
    atomic_store(&cl->next, start);
    cl->subscribed = 1;
    char reply[128];
    int n = snprintf(reply, sizeof reply, "{\"op\":\"subscribed\",\"from\":%llu,\"head\":%llu}",
                     (unsigned long long)start, (unsigned long long)evs_head(srv->store));
    send_text(cl, reply, (size_t)n);
}

static void on_text(ws_client *cl, const uint8_t *p, size_t n) {
    json_error_t je;
    json_t *msg = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!msg) {
        char d[64];
        snprintf(d, sizeof d, "{\"line\":%d,\"column\":%d}", je.line, je.column);
        send_error(cl, d, "malformed JSON: line %d, column %d: %s", je.line, je.column, je.text);
        return;
    }
    const char *op = json_is_object(msg) ? json_string_value(json_object_get(msg, "op")) : NULL;
    if (!op) {
        send_error(cl, NULL, "a message is an object with an \"op\" string");
    } else if (strcmp(op, "subscribe") == 0) {
        on_subscribe(cl, msg);
    } else if (strcmp(op, "unsubscribe") == 0) {
        if (!cl->subscribed) {
            send_error(cl, NULL, "not subscribed");
        } else {
            cl->subscribed = 0;
            evs__live_filter_free(&cl->lf);
            char reply[96];
            int k = snprintf(reply, sizeof reply, "{\"op\":\"unsubscribed\",\"next\":%llu}",
                             (unsigned long long)atomic_load(&cl->next));
            send_text(cl, reply, (size_t)k);
        }
    } else if (strcmp(op, "ping") == 0) {
        send_text(cl, "{\"op\":\"pong\"}", 13);
    } else {
        send_error(cl, NULL, "unknown op \"%.64s\" (subscribe, unsubscribe, ping)", op);
    }
    json_decref(msg);
}

/* ------------------------------------------------------- wslay callbacks */

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    ws_client *cl = ud;
    (void)flags;
    if (cl->extra_off < cl->extra_len) {
        size_t n = cl->extra_len - cl->extra_off;
        if (n > len) n = len;
        memcpy(buf, cl->extra + cl->extra_off, n);
        cl->extra_off += n;
        return (ssize_t)n;
    }
    ssize_t r;
    do r = recv(cl->fd, buf, len, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (r <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return r;
}

static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
    ws_client *cl = ud;
    (void)flags;
    ssize_t r;
    do r = send(cl->fd, data, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN || errno == EWOULDBLOCK ? WSLAY_ERR_WOULDBLOCK
                                                                           : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    cl->last_send_ns = evs__mono_ns();
    return r;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
    ws_client *cl = ud;
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME) on_text(cl, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME) send_error(cl, NULL, "binary frames are not used; send JSON text");
}

static const struct wslay_event_callbacks callbacks = {cb_recv, cb_send, NULL, NULL, NULL, NULL, cb_msg};

/* ------------------------------------------------------------------ hub */

static void client_destroy(evs__ws_hub *hub, ws_client *cl) {
    epoll_ctl(hub->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
    pthread_mutex_lock(&hub->mu);
    if (cl->prev) cl->prev->nxt = cl->nxt;
    else hub->clients = cl->nxt;
    if (cl->nxt) cl->nxt->prev = cl->prev;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_sub(&hub->count, 1);
    if (cl->ctx) wslay_event_context_free(cl->ctx);
    MHD_upgrade_action(cl->urh, MHD_UPGRADE_ACTION_CLOSE);
    evs__live_filter_free(&cl->lf);
    free(cl->extra);
    free(cl);
}

/* Queue events from the log while the client's queue has room. */
static int pump_events(evs__ws_hub *hub, ws_client *cl, uint64_t head) {
    evs__srv *srv = hub->srv;
    while (cl->subscribed && atomic_load(&cl->next) <= head &&
           wslay_event_get_queued_msg_count(cl->ctx) < WS_QUEUE_MSGS &&
           wslay_event_get_queued_msg_length(cl->ctx) < WS_QUEUE_BYTES) {
        evs_reader *r = NULL;
        int rc = evs_read_all(srv->store, atomic_load(&cl->next), EVS_FORWARD, &cl->lf.f, WS_READ_BATCH, &r);
        if (rc) return rc;
        evs__sb b = {0};
        for (;;) {
            const evs_event *ev;
            rc = evs_reader_next(r, &ev);
            if (rc == EVS_DONE) {
                uint64_t p = evs_reader_position(r);
                if (p > atomic_load(&cl->next)) atomic_store(&cl->next, p);
                rc = EVS_OK;
                break;
            }
            if (rc) break;
            atomic_store(&cl->next, ev->global_position + 1);
            if (!evs__live_filter_match(&cl->lf, ev)) continue;
            char *js;
            size_t jn;
            if ((rc = evs_event_to_json(ev, &js, &jn))) break;
            b.len = 0;
            evs__sb_adds(&b, "{\"op\":\"event\",\"event\":");
            evs__sb_add(&b, js, jn);
            evs__sb_add(&b, "}", 1);
            free(js);
            if (b.oom) {
                rc = EVS_ENOMEM;
                break;
            }
            send_text(cl, b.p, b.len);
            atomic_fetch_add_explicit(&srv->m.deliveries_ws, 1, memory_order_relaxed);
            if (wslay_event_get_queued_msg_count(cl->ctx) >= WS_QUEUE_MSGS ||
                wslay_event_get_queued_msg_length(cl->ctx) >= WS_QUEUE_BYTES)
                break;
        }
        evs__sb_free(&b);
        evs_reader_close(r);
        if (rc) return rc;
    }
    return EVS_OK;
}

/*
 * Feed, send, and re-arm one client; 0 to keep it, -1 to destroy it.  A
 * client behind the head is fed again as long as its socket takes what was
 * queued, for a few rounds; after that (fairness) hub->busy makes the next
 * epoll_wait return at once instead of sleeping until the tick.
 */
static int client_step(evs__ws_hub *hub, ws_client *cl, uint64_t head, int64_t now) {
    if (now - cl->last_send_ns >= (int64_t)hub->srv->heartbeat_ms * 1000000 && wslay_event_get_write_enabled(cl->ctx)) {
        char hb[80];
        int n = snprintf(hb, sizeof hb, "{\"op\":\"heartbeat\",\"head\":%llu}", (unsigned long long)head);
        send_text(cl, hb, (size_t)n);
        cl->last_send_ns = now;
    }
    for (int round = 0; round < 8; round++) {
        if (cl->subscribed && pump_events(hub, cl, head)) {
            fprintf(stderr, "evstore serve: ws subscriber at position %llu: %s\n",
                    (unsigned long long)atomic_load(&cl->next), evs_errmsg());
            cl->subscribed = 0; /* stop reading; the close frame tells the client */
            wslay_event_queue_close(cl->ctx, 1011, (const uint8_t *)"log read failed", 15);
        }
        if (wslay_event_want_write(cl->ctx) && wslay_event_send(cl->ctx)) return -1;
        if (wslay_event_want_write(cl->ctx)) break;       /* socket full: wait for EPOLLOUT */
        if (!cl->subscribed || atomic_load(&cl->next) > head) break;
        if (round == 7) hub->busy = 1;
    }
    if (!wslay_event_want_read(cl->ctx) && !wslay_event_want_write(cl->ctx)) return -1;
    uint32_t mask = (wslay_event_want_read(cl->ctx) ? EPOLLIN : 0) |
                    (wslay_event_want_write(cl->ctx) ? EPOLLOUT : 0);
    if (mask != cl->mask) {
        struct epoll_event e = {.events = mask, .data.ptr = cl};
        epoll_ctl(hub->epfd, EPOLL_CTL_MOD, cl->fd, &e);
        cl->mask = mask;
    }
    return 0;
}

static void adopt_pending(evs__ws_hub *hub) {
    pthread_mutex_lock(&hub->mu);
    ws_client *list = hub->pending;
    hub->pending = NULL;
    pthread_mutex_unlock(&hub->mu);
    while (list) {
        ws_client *cl = list;
        list = cl->nxt;
        cl->prev = cl->nxt = NULL;
        int ok = wslay_event_context_server_init(&cl->ctx, &callbacks, cl) == 0;
        if (ok) {
            wslay_event_config_set_max_recv_msg_length(cl->ctx, hub->srv->ws_frame_max);
            cl->mask = EPOLLIN;
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = cl};
            ok = epoll_ctl(hub->epfd, EPOLL_CTL_ADD, cl->fd, &e) == 0;
        }
        pthread_mutex_lock(&hub->mu);
        cl->nxt = hub->clients;
        if (hub->clients) hub->clients->prev = cl;
        hub->clients = cl;
        pthread_mutex_unlock(&hub->mu);
        if (!ok) {
            client_destroy(hub, cl);
            continue;
        }
        /* bytes that came with the handshake are parsed now */
        if (cl->extra_len && wslay_event_recv(cl->ctx)) client_destroy(hub, cl);
    }
}

/* Flush every client's queue for at most ms milliseconds. */
static void flush_all(evs__ws_hub *hub, int ms) {
    int64_t deadline = evs__mono_ns() + (int64_t)ms * 1000000;
    while (hub->clients && evs__mono_ns() < deadline) {
        int pending = 0;
        for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
            if (wslay_event_want_write(cl->ctx) && wslay_event_send(cl->ctx) == 0 &&
                wslay_event_want_write(cl->ctx))
                pending = 1;
        if (!pending) return;
        struct epoll_event evs[16];
        epoll_wait(hub->epfd, evs, 16, 20);
    }
}

/*
 * Shutdown: {"op":"shutdown"} first, then the close frame.  wslay sends
 * queued control frames ahead of data, so the close is queued only after
 * the goodbye has left (or the time for it is up).
 */
static void goodbye(evs__ws_hub *hub) {
    for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
        if (wslay_event_get_write_enabled(cl->ctx)) send_text(cl, "{\"op\":\"shutdown\"}", 17);
    flush_all(hub, 500);
    for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
        if (wslay_event_get_write_enabled(cl->ctx))
            wslay_event_queue_close(cl->ctx, 1001, (const uint8_t *)"server shutting down", 20);
    flush_all(hub, 500);
    while (hub->clients) client_destroy(hub, hub->clients);
}

static void *hub_main(void *arg) {
    evs__ws_hub *hub = arg;
    struct epoll_event evs[64];
    while (!atomic_load(&hub->stop)) {
        int n = epoll_wait(hub->epfd, evs, 64, hub->busy ? 0 : WS_TICK_MS);
        hub->busy = 0;
        for (int i = 0; i < n; i++) {
            ws_client *cl = evs[i].data.ptr;
            if (!cl) {
                uint64_t v;
                if (read(hub->efd, &v, sizeof v) < 0) { /* drained already */
                }
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (wslay_event_recv(cl->ctx)) {
                    client_destroy(hub, cl);
                    /* later entries may name the same client: forget them */
                    for (int j = i + 1; j < n; j++)
                        if (evs[j].data.ptr == cl) evs[j].data.ptr = NULL, evs[j].events = 0;
                    continue;
                }
            }
        }
        adopt_pending(hub);
        uint64_t head = evs_head(hub->srv->store);
        int64_t now = evs__mono_ns();
        ws_client *cl = hub->clients;
        while (cl) {
            ws_client *nx = cl->nxt;
            if (client_step(hub, cl, head, now)) client_destroy(hub, cl);
            cl = nx;
        }
    }
    adopt_pending(hub);
    goodbye(hub);
    return NULL;
}

/* ------------------------------------------------------------ interface */

static void ws_upgraded(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra_in,
                        size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh) {
    evs__srv *srv = cls;
    evs__ws_hub *hub = srv->ws;
    (void)c;
    (void)con_cls;
    ws_client *cl = calloc(1, sizeof *cl);
    if (cl && extra_in_size) {
        cl->extra = malloc(extra_in_size);
        if (cl->extra) {
            memcpy(cl->extra, extra_in, extra_in_size);
            cl->extra_len = extra_in_size;
        } else {
            free(cl);
            cl = NULL;
        }
    }
    pthread_mutex_lock(&hub->mu);
    if (!cl || hub->stopped) {
        pthread_mutex_unlock(&hub->mu);
        free(cl ? cl->extra : NULL);
        free(cl);
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        return;
    }
    cl->hub = hub;
    cl->fd = sock;
    cl->urh = urh;
    cl->last_send_ns = evs__mono_ns();
    cl->nxt = hub->pending;
    hub->pending = cl;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_add(&hub->count, 1);
    uint64_t one = 1;
    if (write(hub->efd, &one, sizeof one) < 0) { /* the tick adopts it anyway */
    }
}

/* 1 if the comma-separated header value holds token (case-insensitive). */
static int has_token(const char *v, const char *token) {
    size_t tn = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == ',' || *v == '\t') v++;
        const char *end = v;
        while (*end && *end != ',') end++;
        const char *e2 = end;
        while (e2 > v && (e2[-1] == ' ' || e2[-1] == '\t')) e2--;
        if ((size_t)(e2 - v) == tn && strncasecmp(v, token, tn) == 0) return 1;
        v = end;
    }
    return 0;
}

enum MHD_Result evs__route_ws(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_WS;
    const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
    const char *conn = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    if (!up || !has_token(up, "websocket") || !conn || !has_token(conn, "upgrade"))
        return evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                  "/ws is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade");
    if (!ver || strcmp(ver, "13") != 0)
        return evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL, "Sec-WebSocket-Version must be 13");
    if (!key || strlen(key) != 24)
        return evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                  "Sec-WebSocket-Key must be 16 bytes in base64");
    char buf[24 + sizeof WS_GUID];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof WS_GUID);
    uint8_t digest[20];
    evs__sha1(buf, 24 + sizeof WS_GUID - 1, digest);
    char accept[32];
    evs__base64(digest, 20, accept);
    struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_upgraded, srv);
    if (!resp) return evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    enum MHD_Result mr = MHD_queue_response(c, EVS_HTTP_SWITCHING, resp);
    MHD_destroy_response(resp);
    evs__metrics_count(srv, R, EVS_HTTP_SWITCHING);
    return mr;
}

int evs__ws_start(evs__srv *srv) {
    evs__ws_hub *hub = calloc(1, sizeof *hub);
    if (!hub) return -1;
    hub->srv = srv;
    hub->epfd = epoll_create1(EPOLL_CLOEXEC);
    hub->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&hub->mu, NULL);
    srv->ws = hub;
    if (hub->epfd < 0 || hub->efd < 0) return -1;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->efd, &e)) return -1;
    if (pthread_create(&hub->th, NULL, hub_main, hub)) return -1;
    hub->started = 1;
    return 0;
}

void evs__ws_kick(evs__srv *srv) {
    evs__ws_hub *hub = srv->ws;
    uint64_t one = 1;
    if (hub && hub->efd >= 0 && write(hub->efd, &one, sizeof one) < 0) { /* counter full: already kicked */
    }
}

void evs__ws_stop(evs__srv *srv) {
    evs__ws_hub *hub = srv->ws;
    if (!hub) return;
    pthread_mutex_lock(&hub->mu);
    hub->stopped = 1; /* upgrades from now on are closed at once */
    pthread_mutex_unlock(&hub->mu);
    if (hub->started) {
        atomic_store(&hub->stop, 1);
        evs__ws_kick(srv);
        pthread_join(hub->th, NULL);
        hub->started = 0;
    }
}

void evs__ws_free(evs__srv *srv) {
    evs__ws_hub *hub = srv->ws;
    if (!hub) return;
    evs__ws_stop(srv);
    if (hub->epfd >= 0) close(hub->epfd);
    if (hub->efd >= 0) close(hub->efd);
    pthread_mutex_destroy(&hub->mu);
    free(hub);
    srv->ws = NULL;
}

long evs__ws_count(evs__srv *srv) { return srv->ws ? atomic_load(&srv->ws->count) : 0; }

uint64_t evs__ws_max_lag(evs__srv *srv, uint64_t head) {
    evs__ws_hub *hub = srv->ws;
    uint64_t worst = 0;
    if (!hub) return 0;
    pthread_mutex_lock(&hub->mu);
    for (ws_client *cl = hub->clients; cl; cl = cl->nxt) {
        uint64_t nx = atomic_load(&cl->next);
        uint64_t lag = head + 1 > nx ? head + 1 - nx : 0;
        if (lag > worst) worst = lag;
    }
    pthread_mutex_unlock(&hub->mu);
    return worst;
}
