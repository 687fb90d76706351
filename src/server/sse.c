/*
 * sse.c — GET /subscribe (Server-Sent Events): the live subscribers, their
 * content reader, and waking them (called by the notifier, notifier.c).
 *
 * A subscriber is a cursor on the log: `next` is the next global position
 * it has to examine.  libmicrohttpd asks the response's content reader for
 * bytes whenever the socket can take more; the reader renders events from
 * the log starting at `next` until the socket buffer's worth is ready.  So
 * catch-up and live are the same code path and there is no hand-over at
 * which an event could be lost or sent twice; a slow consumer costs no
 * memory beyond one buffer (it just falls behind and reads the log later).
 *
 * When the cursor reaches the head the reader suspends the connection
 * (MHD_suspend_connection) instead of blocking a worker thread, and the
 * notifier thread, which waits on evs_wait_for, resumes it once the head
 * moves, when a heartbeat is due, or at shutdown (evs__sse_wake).
 *
 * No lost wake-up: the reader decides to suspend while holding the hub's
 * mu, after re-reading the head (and `shutting`) under it; a sweep reads
 * the head (or sets `shutting`) before taking mu and resumes every
 * suspended subscriber whose `next` is at or below it.  A subscriber that
 * suspended after the sweep saw that same head under the lock, so it had
 * nothing to read.  The notifier also sweeps on a short tick, which bounds
 * any delay to that tick.
 *
 * Resuming happens outside the lock: a subscriber flagged `suspended` is
 * suspended inside libmicrohttpd and cannot complete (and be freed) until
 * somebody resumes it, and only the one who cleared the flag does.
 *
 * A client that hangs up while its subscriber is suspended is found by the
 * notifier's sweep (a poll of the suspended sockets, sse_find_gone) and the
 * subscriber ends at once, so /metrics never counts the dead.
 *
 * Wire format: "retry:" once, then per event "id: <global position>" and
 * "data: <event JSON>" (one line: the renderer never emits a raw newline),
 * heartbeats as comment lines, and at shutdown a final "event: shutdown"
 * whose id is the last position examined (and whose data says it twice:
 * last_event_id, and next = the from= to continue with).  Last-Event-ID
 * resumes exactly after that position.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/start.h"
#include "evstore_schema.h"
#include "server/auth.h"
#include "server/query.h"
#include "server/sse.h"

#define SSE_READ_BATCH 256           /* events per log read */
#define SSE_KEEP_BUF ((size_t)1 << 20) /* drop a drained buffer larger than this */

typedef struct evs__sse_hub evs__sse_hub;
typedef struct evs__sse_sub evs__sse_sub;

struct evs__sse_hub {
    pthread_mutex_t mu;              /* the list and every `suspended` */
    evs__sse_sub *head;
    _Atomic long count;
};

struct evs__sse_sub {
    evs__srv *srv;
    struct MHD_Connection *conn;
    int fd;                          /* the client's socket, polled while suspended (-1: unknown) */
    _Atomic int gone;                /* the client hung up while suspended: end without a word */
    evs__live_filter lf;
    evs_schema_registry *up;         /* ?upcast=latest: the server's registry; NULL: events as stored */
    _Atomic uint64_t next;           /* next global position to examine */
    evs__sb pend;                    /* rendered, not yet handed to MHD */
    size_t pend_off;
    int suspended;                   /* guarded by the hub's mu */
    int said_bye;
    _Atomic int64_t last_write_ns;
    evs__sse_sub *prev, *nxt;        /* guarded by the hub's mu */
};

/* Render events from the log into sub->pend until about `want` bytes. */
static int sse_fill(evs__sse_sub *sub, size_t want) {
    evs__srv *srv = sub->srv;
    uint64_t from = atomic_load(&sub->next);
    if (from > evs_head(srv->store)) return EVS_OK;
    evs_reader *r = NULL;
    uint64_t delivered = 0;
    int rc = evs_read_all(srv->store, from, EVS_FORWARD, &sub->lf.f, SSE_READ_BATCH, &r);
    if (rc) return rc;
    for (;;) {
        const evs_event *ev;
        rc = evs_reader_next(r, &ev);
        if (rc == EVS_DONE) {
            uint64_t p = evs_reader_position(r);
            if (p > atomic_load(&sub->next)) atomic_store(&sub->next, p);
            rc = EVS_OK;
            break;
        }
        if (rc == EVS_ELOST) { /* positions a repair removed: an event of their own, then read on */
            uint64_t a = 0, z = 0;
            evs_reader_lost(r, &a, &z);
            atomic_store(&sub->next, evs_reader_position(r));
            evs__sb_printf(&sub->pend, "event: lost\ndata: {\"first\":%llu,\"last\":%llu,\"message\":",
                           (unsigned long long)a, (unsigned long long)z);
            evs__sb_json_str(&sub->pend, evs_errmsg(), strlen(evs_errmsg()));
            evs__sb_adds(&sub->pend, "}\n\n");
            continue;
        }
        if (rc) break;
        atomic_store(&sub->next, ev->global_position + 1);
        if (!evs__live_filter_match(&sub->lf, ev)) continue;
        char id[40];
        evs_event shown;
        void *owned = NULL;
        if (sub->up && evs_schema_upcast(sub->up, ev, &shown, &owned) != EVS_OK) {
            /* said, and read past: a live stream has no status to fail with */
            int idn = snprintf(id, sizeof id, "event: upcast_error\nid: %llu\n", (unsigned long long)ev->global_position);
            evs__sb_add(&sub->pend, id, (size_t)idn);
            evs__sb_printf(&sub->pend, "data: {\"global_position\":%llu,\"error\":",
                           (unsigned long long)ev->global_position);
            evs__sb_json_str(&sub->pend, evs_errmsg(), strlen(evs_errmsg()));
            evs__sb_adds(&sub->pend, "}\n\n");
            continue;
        }
        if (sub->up) ev = &shown;
        int idn = snprintf(id, sizeof id, "id: %llu\ndata: ", (unsigned long long)ev->global_position);
        evs__sb_add(&sub->pend, id, (size_t)idn);
        evs__sb_event(&sub->pend, ev); /* rendered in place, no copy per event */
        free(owned);
        evs__sb_add(&sub->pend, "\n\n", 2);
        if (sub->pend.oom) {
            rc = EVS_ENOMEM;
            break;
        }
        delivered++;
        if (sub->pend.len >= want) break;
    }
    evs_reader_close(r);
    evs__count_add(&srv->m.deliveries_sse, delivered);
    return rc;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    evs__sse_sub *sub = cls;
    evs__srv *srv = sub->srv;
    (void)pos;
    for (int round = 0;; round++) {
        if (sub->pend_off < sub->pend.len) {
            size_t n = sub->pend.len - sub->pend_off;
            if (n > max) n = max;
            memcpy(buf, sub->pend.p + sub->pend_off, n);
            sub->pend_off += n;
            if (sub->pend_off == sub->pend.len) {
                sub->pend_off = 0;
                sub->pend.len = 0;
                if (sub->pend.cap > SSE_KEEP_BUF) evs__sb_free(&sub->pend);
            }
            atomic_store(&sub->last_write_ns, evs__mono_ns());
            return (ssize_t)n;
        }
        if (sub->gone) return MHD_CONTENT_READER_END_WITH_ERROR; /* nobody to say anything to */
        if (sub->said_bye) return MHD_CONTENT_READER_END_OF_STREAM;
        if (atomic_load(&srv->shutting)) {
            /* One resume point, said both ways: the event's id (what an
               EventSource sends back as Last-Event-ID by itself) is the last
               position examined, and `next` (what from= takes) is the one
               after it.  Positions a filter skipped are covered too. */
            uint64_t next = atomic_load(&sub->next);
            evs__sb_printf(&sub->pend,
                           "event: shutdown\nid: %llu\ndata: {\"reason\":\"server shutting down\",\"last_event_id\":%llu,"
                           "\"next\":%llu}\n\n",
                           (unsigned long long)(next - 1), (unsigned long long)(next - 1), (unsigned long long)next);
            sub->said_bye = 1;
            continue;
        }
        uint64_t before = atomic_load(&sub->next);
        int rc = sse_fill(sub, max);
        if (rc) {
            fprintf(stderr, "evstore serve: subscriber at position %llu: %s\n", (unsigned long long)before,
                    evs_errmsg());
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (sub->pend.len) continue;
        int64_t now = evs__mono_ns();
        if (now - atomic_load(&sub->last_write_ns) >= (int64_t)srv->heartbeat_ms * 1000000) {
            evs__sb_printf(&sub->pend, ": heartbeat %llu\n\n", (unsigned long long)evs_head(srv->store));
            continue;
        }
        pthread_mutex_lock(&srv->sse->mu);
        /* events arrived since the read (bounded: a reader must not spin) */
        int more = evs_head(srv->store) >= atomic_load(&sub->next);
        if (atomic_load(&srv->shutting) || (more && round < 64)) {
            pthread_mutex_unlock(&srv->sse->mu);
            continue;
        }
        /* Nothing to send: park the connection; the notifier resumes it. */
        sub->suspended = 1;
        MHD_suspend_connection(sub->conn);
        pthread_mutex_unlock(&srv->sse->mu);
        return 0;
    }
}

static void sse_free(void *cls) {
    evs__sse_sub *sub = cls;
    evs__sse_hub *hub = sub->srv->sse;
    pthread_mutex_lock(&hub->mu);
    if (sub->prev) sub->prev->nxt = sub->nxt;
    else hub->head = sub->nxt;
    if (sub->nxt) sub->nxt->prev = sub->prev;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_sub(&hub->count, 1);
    evs__live_filter_free(&sub->lf);
    evs__sb_free(&sub->pend);
    free(sub);
}

enum MHD_Result evs__route_subscribe(evs__req *rq) {
    evs__srv *srv = rq->srv;
    struct MHD_Connection *c = rq->c;
    evs__sse_hub *hub = srv->sse;
    enum MHD_Result mr = MHD_NO;
    evs__sse_sub *sub = calloc(1, sizeof *sub);
    if (!sub) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    sub->srv = srv;
    sub->conn = c;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    sub->fd = ci ? (int)ci->connect_fd : -1;
    if (evs__query_filter(rq, 1, &sub->lf, &mr)) goto fail;
    evs__auth_filter(rq, &sub->lf, EVS_PERM_SUBSCRIBE); /* skipped events still move the cursor (sse_fill) */
    const char *upv = evs__query(rq, "upcast");
    if (upv && strcmp(upv, "latest") != 0) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter upcast=%.40s: the only value is latest", upv);
        goto fail;
    }
    if (upv) sub->up = srv->schemas;
    /* Start: Last-Event-ID (a reconnecting EventSource) wins over from=.  The bus says where that is
       and refuses a start past head + 1 (evs__bus_start_next: one rule, one message); the prefix says
       which of the two asked for it. */
    uint64_t start;
    char said[64];
    const char *lei = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    const char *from = evs__query(rq, "from");
    if (lei && *lei) {
        uint64_t id;
        /* at most UINT64_MAX - 2: id + 1 must stay a position, not EVS_SUB_FROM_NOW */
        if (evs__parse_u64(lei, UINT64_MAX - 2, &id)) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                    "Last-Event-ID \"%.40s\" is not a global position", lei);
            goto fail;
        }
        start = id + 1;
        snprintf(said, sizeof said, "Last-Event-ID %llu", (unsigned long long)id);
    } else if (!from || strcmp(from, "now") == 0) {
        start = EVS_SUB_FROM_NOW;
        said[0] = 0;
    } else {
        int rc = evs__parse_u64(from, UINT64_MAX - 1, &start); /* 0 is EVS_SUB_FROM_START: 1 */
        if (rc) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                    "parameter from=%.40s is not \"now\" or a global position%s", from,
                                    rc == -2 ? " (negative)" : rc == -3 ? " (too large)" : "");
            goto fail;
        }
        snprintf(said, sizeof said, "parameter from=%llu", (unsigned long long)start);
    }
    int brc = evs__bus_start_next(srv->store, NULL, start, &start);
    if (brc) {
        mr = evs__respond_lib(rq, brc, said[0] ? said : NULL);
        goto fail;
    }
    atomic_store(&sub->next, start);
    atomic_store(&sub->last_write_ns, evs__mono_ns());
    evs__sb_adds(&sub->pend, "retry: 1000\n\n");

    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, sse_reader,
                                                                  sub, sse_free);
    if (!resp) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto fail;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    pthread_mutex_lock(&hub->mu);
    sub->nxt = hub->head;
    if (hub->head) hub->head->prev = sub;
    hub->head = sub;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_add(&hub->count, 1);
    if (srv->live_opened) srv->live_opened(srv); /* counted first: the notifier follows the head from now */
    /* from here the response owns sub (sse_free) */
    return evs__respond_queue(rq, EVS_HTTP_OK, resp);
fail:
    evs__live_filter_free(&sub->lf);
    evs__sb_free(&sub->pend);
    free(sub);
    return mr;
}

/* ---------------------------------------------------------------- waking */

/*
 * Suspended subscribers whose client hung up: flagged `gone`.  A suspended
 * connection is out of libmicrohttpd's sight, so without this a dead
 * subscriber would stay (and count in /metrics) until the next event or
 * heartbeat tried to write to it.  One poll() over their sockets, without
 * waiting; under the hub's mu, which keeps every polled socket open (a
 * suspended connection cannot close).
 */
static void sse_find_gone(evs__sse_hub *hub) {
    struct pollfd pf[256];
    evs__sse_sub *who[256];
    evs__sse_sub *s = hub->head;
    while (s) {
        nfds_t n = 0;
        for (; s && n < 256; s = s->nxt)
            if (s->suspended && !s->gone && s->fd >= 0) {
                pf[n] = (struct pollfd){.fd = s->fd, .events = POLLRDHUP};
                who[n++] = s;
            }
        if (n && poll(pf, n, 0) > 0)
            for (nfds_t i = 0; i < n; i++)
                if (pf[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) who[i]->gone = 1;
    }
}

void evs__sse_wake(evs__srv *srv, uint64_t head, int all) {
    /* Flags are cleared under the lock; the resumes happen after it, in batches. */
    evs__sse_hub *hub = srv->sse;
    struct MHD_Connection *batch[64];
    if (!hub) return;
    pthread_mutex_lock(&hub->mu);
    sse_find_gone(hub);
    pthread_mutex_unlock(&hub->mu);
    for (;;) {
        size_t n = 0;
        int64_t now = evs__mono_ns();
        int64_t hb = (int64_t)srv->heartbeat_ms * 1000000;
        pthread_mutex_lock(&hub->mu);
        if (atomic_load(&srv->shutting)) all = 1;
        for (evs__sse_sub *s = hub->head; s && n < 64; s = s->nxt) {
            if (!s->suspended) continue;
            if (all || s->gone || atomic_load(&s->next) <= head || now - atomic_load(&s->last_write_ns) >= hb) {
                s->suspended = 0;
                batch[n++] = s->conn;
            }
        }
        pthread_mutex_unlock(&hub->mu);
        for (size_t i = 0; i < n; i++) MHD_resume_connection(batch[i]);
        if (n < 64) return;
    }
}

void evs__sse_wake_all(evs__srv *srv) { evs__sse_wake(srv, evs_head(srv->store), 1); }

/* ------------------------------------------------------------- lifecycle */

int evs__sse_start(evs__srv *srv) {
    evs__sse_hub *hub = calloc(1, sizeof *hub);
    if (!hub) return -1;
    pthread_mutex_init(&hub->mu, NULL);
    srv->sse = hub;
    return 0;
}

void evs__sse_free(evs__srv *srv) {
    evs__sse_hub *hub = srv->sse;
    if (!hub) return;
    pthread_mutex_destroy(&hub->mu);
    free(hub);
    srv->sse = NULL;
}

long evs__sse_count(evs__srv *srv) { return srv->sse ? atomic_load(&srv->sse->count) : 0; }

uint64_t evs__sse_max_lag(evs__srv *srv, uint64_t head) {
    evs__sse_hub *hub = srv->sse;
    uint64_t worst = 0;
    if (!hub) return 0;
    pthread_mutex_lock(&hub->mu);
    for (evs__sse_sub *s = hub->head; s; s = s->nxt) {
        uint64_t nx = atomic_load(&s->next);
        uint64_t lag = head + 1 > nx ? head + 1 - nx : 0;
        if (lag > worst) worst = lag;
    }
    pthread_mutex_unlock(&hub->mu);
    return worst;
}
