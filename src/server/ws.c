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
 *   client: {"op":"subscribe","from":N|"now","upcast":"latest","filter":{"type":..,"stream_type":..,"stream":..,
 *            "tag":..,"tag_match":"any"|"all","causation_id":..}}
 *           {"op":"unsubscribe"}  {"op":"ping"}
 *           {"op":"consume","group":G,"consumer":C}  {"op":"leave"}
 *           {"op":"ack","position":P,"attempt":A} or {"op":"ack","deliveries":[{..},..]}
 *           {"op":"nack","position":P,"attempt":A,"action":"retry"|"park"|"skip","reason":".."}
 *           {"op":"command","ref":R,"command_type":..,"aggregate_id":..,"data":{..},...}
 *   server: {"op":"subscribed","from":N,"head":H}  {"op":"event","event":{...}}
 *           {"op":"lost","first":F,"last":L}  {"op":"upcast_error","global_position":P}
 *           {"op":"heartbeat","head":H}  {"op":"unsubscribed","next":N}  {"op":"pong"}
 *           {"op":"consuming","group":G,"consumer":C}  {"op":"left","group":G[,"reason":..]}
 *           {"op":"delivery","delivery":{"position":P,"attempt":A},"event":{...}}
 *           {"op":"acked","count":N}  {"op":"nacked","position":P,"attempt":A,"action":..}
 *           {"op":"result","ref":R,"status":S,"result":{...}}
 *           {"op":"error","error":"...","detail":...}  {"op":"shutdown"} then a close frame
 *
 * Group consumers (competing consumers, consumers.c) are members tied to
 * the connection: closing it leaves the group, and its unacked deliveries
 * go to the other consumers.  The hub asks the group for work without
 * waiting (evs__gconn_next) whenever it looks at the client: after input
 * (an ack frees room), after an append kick, and on the tick (ack timeouts
 * and retry backoff).  Deliveries queue in wslay while fewer than
 * WS_GROUP_QUEUE messages wait; the group's max_in_flight bounds them too.
 * Control messages are parsed with jansson: they are small and rare, and
 * never on the event path; ws_msg.c reads them, this file acts on them.
 *
 * Commands ({"op":"command"}) wait for a durable append, which this thread
 * must never do: they go to the command runners (cmdpool.c), which kick
 * the hub when an answer is ready; the hub sends it to the connection that
 * asked (by its id), if it is still open.
 *
 * Flow control: like SSE, a subscription is a cursor on the log.  A client
 * gets its next events only once the previous ones have left for its
 * socket, so a client that does not read holds one block (below) and
 * resumes from the log when its socket drains; nothing is skipped.  The
 * replies to what a client sends are bounded too: a client that sends and
 * does not read is not read from until they drain (client_backlogged).
 *
 * Fan-out: event frames do not go through wslay (which copies every message
 * and writes each frame with its own send calls).  The hub renders a run of
 * events once into a block of complete WebSocket frames, and every client
 * with the same filter that needs that run sends from the same block with
 * one send() per socket-buffer's worth: 100 subscribers cost one render per
 * event, not 100.  Blocks are keyed by the filter (a chain per distinct
 * filter) and by the position they start at; a client asks for the block
 * starting at its `next`, renders it from the log if no one has, and the
 * block then covers [from, next) for everyone.  Clients reading in step
 * share every block; a client that starts elsewhere renders its own until
 * it meets the others at the head, where every block ends.  Recent blocks
 * stay cached up to WS_CACHE_BYTES (oldest dropped first; one still being
 * sent lives until its last sender is done).
 *
 * Ordering: the other messages (subscribed, heartbeat, errors, the close
 * frame) still go through wslay.  wslay may send only while the client has
 * no block in flight, and a new block is taken only when wslay has nothing
 * to send, so frames never interleave and messages keep their order.
 * wslay's output is gathered in a per-client buffer (obuf) and sent with
 * one send() per 32 KiB; obuf counts as "something to send" for that rule.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "bus/start.h"
#include "core/event_json.h"
#include "evstore_schema.h"
#include "server/auth.h"
#include "server/cmdpool.h"
#include "server/consumers.h"
#include "server/query.h"
#include "server/sha1.h"
#include "server/ws.h"
#include "server/ws_msg.h"

#define WS_BLOCK_EVENTS 256                /* events read from the log per block */
#define WS_BLOCK_BYTES ((size_t)64 << 10)  /* a block stops growing here */
#define WS_CACHE_BYTES ((size_t)16 << 20)  /* rendered blocks kept for reuse, per server */
#define WS_EVENT_PREFIX "{\"op\":\"event\",\"event\":"
#define WS_TICK_MS 200
#define WS_OBUF_BYTES ((size_t)32 << 10) /* wslay's frames gathered per send() */
#define WS_GROUP_QUEUE 64                  /* deliveries queued ahead of the socket, per consumer */
/* Replies queued for a client that does not read them: past either bound
   the hub stops reading from it until they drain (see client_backlogged). */
#define WS_MAX_QUEUED (WS_GROUP_QUEUE + 256)
#define WS_MAX_QUEUED_BYTES ((size_t)1 << 20)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct evs__ws_hub evs__ws_hub;
typedef struct ws_client ws_client;
typedef struct ws_block ws_block;
typedef struct ws_chain ws_chain;

/* Complete event frames for the events of [from, next) that pass a chain's filter. */
struct ws_block {
    ws_chain *chain;               /* NULL once out of the cache */
    uint64_t from, next;
    uint64_t nevents;
    int refs;                      /* clients sending from it */
    ws_block *cprev, *cnext;       /* the chain's blocks, newest first */
    ws_block *older, *newer;       /* every cached block, by age */
    size_t len, cap;
    unsigned char *data;
};

/* The clients that share one filter, and the blocks rendered for it. */
struct ws_chain {
    char *key;                     /* the filter, canonical */
    int refs;                      /* subscribed clients */
    ws_block *blocks;
    ws_chain *prev, *next;
};

struct ws_client {
    evs__ws_hub *hub;
    int fd;
    struct MHD_UpgradeResponseHandle *urh;
    wslay_event_context_ptr ctx;
    char *extra;                   /* bytes MHD read past the handshake */
    size_t extra_len, extra_off;
    int subscribed;
    int upcast;                    /* "upcast":"latest": events shown as their type's latest version */
    evs__live_filter lf;
    _Atomic uint64_t next;
    int64_t last_send_ns;
    uint32_t mask;                 /* current epoll interest */
    ws_chain *chain;               /* while subscribed */
    ws_block *blk;                 /* frames being sent (a reference) */
    size_t blk_off;
    unsigned char *obuf;           /* wslay's frames not yet sent, [ooff, olen); NULL when empty */
    size_t olen, ooff;
    int closing;                   /* we queued a close frame: no more events */
    evs__gconn *gc;                /* while consuming a group */
    int pull_full;                 /* the last pull stopped at WS_GROUP_QUEUE */
    int64_t pull_after_ns;         /* a delivery failed: no pull before this (monotonic) */
    char consumer[EVS_BUS_MAX_NAME + 1];
    uint64_t id;                   /* names the connection to the command runners (1, 2, ...) */
    evs__principal *who;           /* the key checked at the upgrade (a reference); NULL: auth off */
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
    uint64_t consumers;            /* hub thread only: names consumers that give none */
    uint64_t last_id;              /* hub thread only: the last connection id given */
    /* the block cache, hub thread only */
    ws_chain *chains;
    ws_block *oldest, *newest;
    size_t cache_bytes;
};

static ws_chain *chain_get(evs__ws_hub *hub, const evs__live_filter *lf, int upcast);
static void chain_put(evs__ws_hub *hub, ws_chain *ch);
static int client_open(const ws_client *cl);

/* ------------------------------------------------------------- messages */

static void send_text(ws_client *cl, const char *p, size_t n) {
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)p, n};
    wslay_event_queue_msg(cl->ctx, &m);
}

/* {"op":"error"} with a refusal from ws_msg.c (or one of ours, evs__ws_refuse). */
static void send_refusal(ws_client *cl, const evs__ws_err *e) {
    evs__sb b = {0};
    evs__ws_error_json(&b, e->detail, e->msg);
    if (!b.oom) send_text(cl, b.p, b.len);
    evs__sb_free(&b);
}

static void send_error(ws_client *cl, const char *detail_json, const char *fmt, ...) EVS_PRINTF(3, 4);
static void send_error(ws_client *cl, const char *detail_json, const char *fmt, ...) {
    evs__ws_err e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    evs__sb b = {0};
    evs__ws_error_json(&b, detail_json, e.msg);
    if (!b.oom) send_text(cl, b.p, b.len);
    evs__sb_free(&b);
}

/*
 * Each operation is checked against the key of the upgrade, as an HTTP
 * request with the same need would be (auth.h); 1 when it may go on.
 */
static int ws_allowed(ws_client *cl, unsigned perm, int all) {
    if (!cl->who) return 1;
    if (all ? evs__principal_allows_all(cl->who, perm) : evs__principal_allows_any(cl->who, perm)) return 1;
    evs__count_add(&cl->hub->srv->m.auth_failures[EVS_AUTHF_FORBIDDEN], 1);
    char d[160];
    snprintf(d, sizeof d, "{\"code\":\"%s\",\"permission\":\"%s\",\"stream\":\"$all\",\"key\":\"%s\"}",
             evs_errname(EVS_EFORBIDDEN), evs__perm_name(perm), cl->who->id);
    send_error(cl, d, "key %s lacks the %s permission %s", cl->who->id, evs__perm_name(perm),
               all ? "on every stream ($all)" : "on any stream");
    return 0;
}

static void on_subscribe(ws_client *cl, const evs__ws_msg *msg) {
    evs__srv *srv = cl->hub->srv;
    if (!ws_allowed(cl, EVS_PERM_SUBSCRIBE, 0)) return;
    if (cl->subscribed) {
        send_error(cl, NULL, "already subscribed; send {\"op\":\"unsubscribe\"} first");
        return;
    }
    /* filled in place: lf.f points into lf itself, so it must not be copied */
    evs__live_filter *lf = &cl->lf;
    evs__live_filter_free(lf);
    int from_now, upcast;
    uint64_t start;
    evs__ws_err e;
    if (evs__ws_msg_subscribe(msg, lf, &from_now, &start, &upcast, &e)) {
        send_refusal(cl, &e);
        return;
    }
    /* a restricted key sees only what it may: its id is part of the chain's key, so no block is shared
       with a client that may see more */
    if (cl->who && !evs__principal_allows_all(cl->who, EVS_PERM_SUBSCRIBE)) {
        lf->who = evs__principal_ref(cl->who);
        lf->who_perm = EVS_PERM_SUBSCRIBE;
    }
    /* past head + 1 it would stay silent until the log grew there, skipping what came before: the
       bus's rule and message, as for SSE and every consumer */
    if (evs__bus_start_next(srv->store, NULL, from_now ? EVS_SUB_FROM_NOW : start, &start)) {
        send_error(cl, NULL, "from: %s", evs_errmsg());
        evs__live_filter_free(lf);
        return;
    }
    cl->upcast = upcast && srv->schemas;
    if (!(cl->chain = chain_get(cl->hub, lf, cl->upcast))) {
        send_error(cl, NULL, "out of memory");
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

/* ------------------------------------------------------ group consumers */

/* Stop consuming; reason NULL when the client asked. */
static void consume_end(ws_client *cl, const char *reason) {
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"op\":\"left\",\"group\":");
    const char *g = evs__gconn_group(cl->gc);
    evs__sb_json_str(&b, g, strlen(g));
    if (reason) {
        evs__sb_adds(&b, ",\"reason\":");
        evs__sb_json_str(&b, reason, strlen(reason));
    }
    evs__sb_adds(&b, "}");
    if (!b.oom) send_text(cl, b.p, b.len);
    evs__sb_free(&b);
    evs__gconn_leave(cl->gc);
    cl->gc = NULL;
}

static void on_consume(ws_client *cl, const evs__ws_msg *msg) {
    if (!ws_allowed(cl, EVS_PERM_SUBSCRIBE, 1)) return; /* a group's events are not filtered per key */
    if (cl->gc) {
        send_error(cl, NULL, "already consuming group \"%s\"; send {\"op\":\"leave\"} first", evs__gconn_group(cl->gc));
        return;
    }
    char group[EVS_BUS_MAX_NAME + 1], name[EVS_BUS_MAX_NAME + 1];
    evs__ws_err e;
    if (evs__ws_msg_consume(msg, group, name, &e)) {
        send_refusal(cl, &e);
        return;
    }
    if (!name[0]) snprintf(name, sizeof name, "ws-%llu", (unsigned long long)++cl->hub->consumers);
    char why[512];
    int rc = evs__gconn_join(cl->hub->srv->bus, group, name, &cl->gc, why, sizeof why);
    if (rc) {
        evs__sb d = {0};
        evs__sb_adds(&d, "{\"group\":");
        evs__sb_json_str(&d, group, strlen(group));
        evs__sb_printf(&d, ",\"code\":\"%s\"}", rc == EVS_ENOTFOUND ? "not_found" : rc == EVS_ELOCKED ? "consumer_taken"
                                                                                                  : "unavailable");
        send_error(cl, d.oom ? NULL : d.p, "consume: %s", why);
        evs__sb_free(&d);
        return;
    }
    snprintf(cl->consumer, sizeof cl->consumer, "%s", name);
    evs__sb b = {0};
    evs__sb_adds(&b, "{\"op\":\"consuming\",\"group\":");
    evs__sb_json_str(&b, group, strlen(group));
    evs__sb_adds(&b, ",\"consumer\":");
    evs__sb_json_str(&b, name, strlen(name));
    evs__sb_adds(&b, "}");
    if (!b.oom) send_text(cl, b.p, b.len);
    evs__sb_free(&b);
}

static void refused(ws_client *cl, const char *op, evs_delivery_id id, const char *why) {
    char d[128];
    snprintf(d, sizeof d, "{\"op\":\"%s\",\"position\":%llu,\"attempt\":%u}", op,
             (unsigned long long)id.position, id.attempt);
    send_error(cl, d, "%s", why);
}

/* ack: one delivery, or {"deliveries": [...]}: each refused one gets an error, then {"acked": N taken}. */
static void on_ack(ws_client *cl, const evs__ws_msg *msg) {
    if (!cl->gc) {
        send_error(cl, NULL, "ack: not consuming a group");
        return;
    }
    /* all checked before any is taken: a bad message changes nothing */
    evs_delivery_id *ids;
    size_t n;
    evs__ws_err e;
    if (evs__ws_msg_ack(msg, &ids, &n, &e)) {
        send_refusal(cl, &e);
        return;
    }
    size_t taken = 0;
    for (size_t i = 0; i < n && cl->gc; i++) {
        char why[512];
        int rc = evs__gconn_answer(cl->gc, 0, ids[i], EVS_NACK_RETRY, NULL, why, sizeof why);
        if (rc == EVS_OK) taken++;
        else if (rc == EVS_ECLOSED) consume_end(cl, why);
        else refused(cl, "ack", ids[i], why);
    }
    free(ids);
    char reply[64];
    int k = snprintf(reply, sizeof reply, "{\"op\":\"acked\",\"count\":%zu}", taken);
    send_text(cl, reply, (size_t)k);
}

static void on_nack(ws_client *cl, const evs__ws_msg *msg) {
    if (!cl->gc) {
        send_error(cl, NULL, "nack: not consuming a group");
        return;
    }
    evs_delivery_id id;
    evs_nack_action act;
    const char *an, *reason;
    evs__ws_err e;
    if (evs__ws_msg_nack(msg, &id, &act, &an, &reason, &e)) {
        send_refusal(cl, &e);
        return;
    }
    char why[512];
    int rc = evs__gconn_answer(cl->gc, 1, id, act, reason, why, sizeof why);
    if (rc == EVS_ECLOSED) {
        consume_end(cl, why);
        return;
    }
    if (rc) {
        refused(cl, "nack", id, why);
        return;
    }
    char reply[128];
    int k = snprintf(reply, sizeof reply, "{\"op\":\"nacked\",\"position\":%llu,\"attempt\":%u,\"action\":\"%s\"}",
                     (unsigned long long)id.position, id.attempt, an);
    send_text(cl, reply, (size_t)k);
}

/*
 * Queue one delivery for a consuming client if one is due; 1 if it did.
 * The group ends the membership when it is closed under the client or
 * stopped (status "error"); the client hears why in {"op":"left"}.
 */
static int client_pull(ws_client *cl) {
    static const size_t pre = sizeof "{\"op\":\"delivery\",\"delivery\":{\"position\":18446744073709551615,"
                                      "\"attempt\":4294967295},\"event\":";
    if (!cl->gc || !client_open(cl) || evs__mono_ns() < cl->pull_after_ns) return 0;
    if (wslay_event_get_queued_msg_count(cl->ctx) >= WS_GROUP_QUEUE) {
        cl->pull_full = 1;
        return 0;
    }
    evs_delivery *d;
    char why[512];
    int rc = evs__gconn_next(cl->gc, &d, why, sizeof why);
    if (rc == EVS_ETIMEDOUT) return 0;
    if (rc == EVS_ECLOSED || rc == EVS_EFAILED) { /* the membership is over */
        consume_end(cl, why);
        return 0;
    }
    if (rc) {
        /* one delivery failed (the event could not be read, out of memory):
           the group keeps it for later, the consumer stays, and says so;
           this consumer asks again in a second, so a bad event is no loop */
        fprintf(stderr, "evstore serve: ws consumer \"%s\" of group \"%s\": %s\n", cl->consumer,
                evs__gconn_group(cl->gc), why);
        send_error(cl, "{\"op\":\"delivery\"}", "a delivery failed: %s", why);
        cl->pull_after_ns = evs__mono_ns() + 1000000000LL;
        return 0;
    }
    size_t need = evs__event_json_render(&d->event, NULL, 0);
    char *buf = malloc(pre + need + 2);
    if (!buf) {
        evs_delivery_free(d); /* unacked: its ack timeout hands it out again */
        send_error(cl, "{\"op\":\"delivery\"}", "a delivery failed: out of memory");
        cl->pull_after_ns = evs__mono_ns() + 1000000000LL;
        return 0;
    }
    int k = snprintf(buf, pre, "{\"op\":\"delivery\",\"delivery\":{\"position\":%llu,\"attempt\":%u},\"event\":",
                     (unsigned long long)d->id.position, d->id.attempt);
    size_t len = (size_t)k + evs__event_json_render(&d->event, buf + k, need + 1);
    buf[len++] = '}';
    send_text(cl, buf, len);
    free(buf);
    evs_delivery_free(d);
    evs__count_add(&cl->hub->srv->m.deliveries_ws, 1);
    return 1;
}

/*
 * Deal what the groups have to their connected consumers, one delivery per
 * consumer per round: consumers of one group take turns as they would
 * blocking in evs_group_next, instead of the first one asked taking all.
 */
static void pull_all(evs__ws_hub *hub) {
    for (int more = 1; more;) {
        more = 0;
        for (ws_client *cl = hub->clients; cl; cl = cl->nxt) more |= client_pull(cl);
    }
}

/*
 * {"op":"command", "ref": R, ...the command...}: to the command runners.
 * ref (read by evs__ws_msg_command) is echoed in the result so that a
 * client can match answers it pipelines.
 */
static void on_command(ws_client *cl, const evs__ws_msg *msg) {
    char *text, *ref_text, why[256];
    size_t len;
    evs__ws_err e;
    if (!ws_allowed(cl, EVS_PERM_APPEND, 1)) return; /* as POST /commands */
    if (evs__ws_msg_command(msg, &text, &len, &ref_text, &e)) {
        send_refusal(cl, &e);
        return;
    }
    if (evs__cmdpool_submit(cl->hub->srv, cl->id, text, len, ref_text, why, sizeof why)) {
        evs__sb d = {0};
        evs__sb_adds(&d, "{\"op\":\"command\",\"ref\":");
        evs__sb_adds(&d, ref_text ? ref_text : "null");
        evs__sb_adds(&d, "}");
        send_error(cl, d.oom ? NULL : d.p, "command: %s", why);
        evs__sb_free(&d);
    }
    free(text);
    free(ref_text);
}

/* Answers of finished commands, to their connections (gone ones: dropped). */
static void deliver_results(evs__ws_hub *hub) {
    evs__cmddone *list = evs__cmdpool_take(hub->srv);
    for (evs__cmddone *d = list; d; d = d->next)
        for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
            if (cl->id == d->conn) {
                if (wslay_event_get_write_enabled(cl->ctx)) send_text(cl, d->text, d->len);
                break;
            }
    evs__cmddone_free(list);
}

static void on_text(ws_client *cl, const uint8_t *p, size_t n) {
    evs__ws_msg msg;
    evs__ws_err e;
    if (evs__ws_msg_parse((const char *)p, n, &msg, &e)) {
        send_refusal(cl, &e);
        return;
    }
    switch (msg.op) {
    case EVS_WS_SUBSCRIBE: on_subscribe(cl, &msg); break;
    case EVS_WS_UNSUBSCRIBE:
        if (!cl->subscribed) {
            send_error(cl, NULL, "not subscribed");
        } else {
            cl->subscribed = 0;
            chain_put(cl->hub, cl->chain);
            cl->chain = NULL;
            evs__live_filter_free(&cl->lf);
            /* a block in flight is still sent whole: its events are before `next` */
            char reply[96];
            int k = snprintf(reply, sizeof reply, "{\"op\":\"unsubscribed\",\"next\":%llu}",
                             (unsigned long long)atomic_load(&cl->next));
            send_text(cl, reply, (size_t)k);
        }
        break;
    case EVS_WS_PING: send_text(cl, "{\"op\":\"pong\"}", 13); break;
    case EVS_WS_CONSUME: on_consume(cl, &msg); break;
    case EVS_WS_ACK: on_ack(cl, &msg); break;
    case EVS_WS_NACK: on_nack(cl, &msg); break;
    case EVS_WS_LEAVE:
        if (cl->gc) consume_end(cl, NULL);
        else send_error(cl, NULL, "leave: not consuming a group");
        break;
    case EVS_WS_COMMAND: on_command(cl, &msg); break;
    }
    evs__ws_msg_free(&msg);
}

/* ------------------------------------------------------- wslay callbacks */

/*
 * Every request a client sends may queue a reply (a pong, an error, an
 * ack's count), and wslay answers its pings by itself.  A client that sends
 * and never reads would make that queue grow without bound, so once it
 * holds WS_MAX_QUEUED messages or WS_MAX_QUEUED_BYTES the hub reads no more
 * from that client (EPOLLIN off, and cb_recv stops wslay mid-buffer) until
 * its socket takes them: the client's own sends then block in its kernel,
 * as TCP intends.  Deliveries stop at WS_GROUP_QUEUE, below the bound, so a
 * consumer that reads is never held back by it.
 */
static int client_backlogged(const ws_client *cl) {
    return wslay_event_get_queued_msg_count(cl->ctx) >= WS_MAX_QUEUED ||
           wslay_event_get_queued_msg_length(cl->ctx) >= WS_MAX_QUEUED_BYTES;
}

static ssize_t cb_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud) {
    ws_client *cl = ud;
    (void)flags;
    if (client_backlogged(cl)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
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

/* Send what obuf holds: 0 (all sent, or the socket is full), -1 when the connection failed. */
static int obuf_drain(ws_client *cl) {
    while (cl->ooff < cl->olen) {
        ssize_t r = send(cl->fd, cl->obuf + cl->ooff, cl->olen - cl->ooff, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (r <= 0) return -1;
        cl->ooff += (size_t)r;
        cl->last_send_ns = evs__mono_ns();
    }
    free(cl->obuf);
    cl->obuf = NULL;
    cl->olen = cl->ooff = 0;
    return 0;
}

/*
 * wslay writes each message with calls of its own; a consumer's deliveries
 * are many small messages, so they are gathered in obuf and leave with one
 * send() per WS_OBUF_BYTES (client_write drains it).
 */
static ssize_t cb_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud) {
    ws_client *cl = ud;
    (void)flags;
    if (cl->olen == WS_OBUF_BYTES) {
        if (obuf_drain(cl)) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        if (cl->olen) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
    }
    if (!cl->obuf) {
        if (!(cl->obuf = malloc(WS_OBUF_BYTES))) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        cl->olen = cl->ooff = 0;
    } else if (cl->ooff && cl->ooff == cl->olen) {
        cl->olen = cl->ooff = 0;
    }
    size_t n = WS_OBUF_BYTES - cl->olen < len ? WS_OBUF_BYTES - cl->olen : len;
    memcpy(cl->obuf + cl->olen, data, n);
    cl->olen += n;
    return (ssize_t)n;
}

static void cb_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
    ws_client *cl = ud;
    (void)ctx;
    if (arg->opcode == WSLAY_TEXT_FRAME) on_text(cl, arg->msg, arg->msg_length);
    else if (arg->opcode == WSLAY_BINARY_FRAME) send_error(cl, NULL, "binary frames are not used; send JSON text");
}

static const struct wslay_event_callbacks callbacks = {cb_recv, cb_send, NULL, NULL, NULL, NULL, cb_msg};

/* ------------------------------------------------------------------ hub */

/* ---------------------------------------------------------- block cache */

static void block_free(ws_block *b) {
    free(b->data);
    free(b);
}

/* Out of the cache; freed now, or by its last sender. */
static void block_uncache(evs__ws_hub *hub, ws_block *b) {
    ws_chain *ch = b->chain;
    if (!ch) return;
    if (b->cprev) b->cprev->cnext = b->cnext;
    else ch->blocks = b->cnext;
    if (b->cnext) b->cnext->cprev = b->cprev;
    if (b->older) b->older->newer = b->newer;
    else hub->oldest = b->newer;
    if (b->newer) b->newer->older = b->older;
    else hub->newest = b->older;
    b->chain = NULL;
    b->cprev = b->cnext = b->older = b->newer = NULL;
    hub->cache_bytes -= b->cap + sizeof *b;
    if (b->refs == 0) block_free(b);
}

static void block_release(ws_block *b) {
    if (--b->refs == 0 && !b->chain) block_free(b);
}

static void block_cache(evs__ws_hub *hub, ws_chain *ch, ws_block *b) {
    b->chain = ch;
    b->cnext = ch->blocks;
    if (ch->blocks) ch->blocks->cprev = b;
    ch->blocks = b;
    b->older = hub->newest;
    if (hub->newest) hub->newest->newer = b;
    else hub->oldest = b;
    hub->newest = b;
    hub->cache_bytes += b->cap + sizeof *b;
    while (hub->cache_bytes > WS_CACHE_BYTES && hub->oldest) block_uncache(hub, hub->oldest);
}

/* The chain of clients with this filter (a new one if none); NULL when out of memory. */
/* One field of a chain key, length first: no value can pass for another. */
static void key_field(evs__sb *k, char tag, const char *v) {
    if (v) evs__sb_printf(k, "%c%zu:%s", tag, strlen(v), v);
}

static ws_chain *chain_get(evs__ws_hub *hub, const evs__live_filter *lf, int upcast) {
    evs__sb k = {0};
    if (upcast) key_field(&k, 'u', "latest"); /* upcast blocks are other bytes */
    /* names in the order given: a different order only costs sharing */
    for (size_t i = 0; i < lf->ntypes; i++) key_field(&k, 't', lf->types[i]);
    key_field(&k, 's', lf->stream_type);
    key_field(&k, 'n', lf->stream);
    for (size_t i = 0; i < lf->ntags; i++) key_field(&k, 'g', lf->tags[i]);
    if (lf->tag_all) key_field(&k, 'm', "all");
    if (lf->has_causation) {
        char u[37];
        evs_uuid_format(&lf->causation, u);
        key_field(&k, 'c', u);
    }
    if (lf->who) key_field(&k, 'k', lf->who->id); /* a restricted key's events are its own */
    evs__sb_add(&k, "", 1); /* a key even for no filter at all */
    if (k.oom || !k.p) {
        evs__sb_free(&k);
        return NULL;
    }
    for (ws_chain *ch = hub->chains; ch; ch = ch->next)
        if (strcmp(ch->key, k.p) == 0) {
            ch->refs++;
            evs__sb_free(&k);
            return ch;
        }
    ws_chain *ch = calloc(1, sizeof *ch);
    if (!ch) {
        evs__sb_free(&k);
        return NULL;
    }
    ch->key = evs__sb_take(&k, NULL);
    ch->refs = 1;
    ch->next = hub->chains;
    if (hub->chains) hub->chains->prev = ch;
    hub->chains = ch;
    return ch;
}

static void chain_put(evs__ws_hub *hub, ws_chain *ch) {
    if (!ch || --ch->refs > 0) return;
    while (ch->blocks) block_uncache(hub, ch->blocks);
    if (ch->prev) ch->prev->next = ch->next;
    else hub->chains = ch->next;
    if (ch->next) ch->next->prev = ch->prev;
    free(ch->key);
    free(ch);
}

/*
 * Append one event as a complete text frame: {"op":"event","event":{...}}.
 * The payload is rendered in place after room for a 4-byte header and moved
 * when its length needs the short (2-byte) or long (10-byte) form.
 */
static int block_add(ws_block *b, const evs_event *ev) {
    const size_t pre = sizeof WS_EVENT_PREFIX - 1;
    for (int pass = 0;; pass++) {
        size_t room = b->cap - b->len, need;
        unsigned char *h = b->data + b->len;
        if (room > 4 + pre + 1)
            need = evs__event_json_render(ev, (char *)h + 4 + pre, room - 4 - pre - 1);
        else
            need = evs__event_json_render(ev, NULL, 0);
        size_t plen = pre + need + 1, hdr = plen <= 0xffff ? 4 : 10;
        if (hdr + plen <= room) {
            memcpy(h + 4, WS_EVENT_PREFIX, pre);
            h[4 + pre + need] = '}';
            h[0] = 0x81; /* FIN, text */
            if (plen < 126) {
                h[1] = (unsigned char)plen;
                memmove(h + 2, h + 4, plen);
                b->len += 2 + plen;
            } else if (plen <= 0xffff) {
                h[1] = 126;
                h[2] = (unsigned char)(plen >> 8);
                h[3] = (unsigned char)plen;
                b->len += 4 + plen;
            } else {
                memmove(h + 10, h + 4, plen);
                h[1] = 127;
                for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)plen >> (56 - 8 * i));
                b->len += 10 + plen;
            }
            return EVS_OK;
        }
        if (pass) return evs__err(EVS_ENOMEM, "ws: event frame does not fit"); /* cannot happen */
        size_t ncap = b->len + 10 + plen;
        if (ncap < WS_BLOCK_BYTES + 4096) ncap = WS_BLOCK_BYTES + 4096;
        unsigned char *np = realloc(b->data, ncap);
        if (!np) return evs__err(EVS_ENOMEM, "ws: out of memory for %zu bytes of events", ncap);
        b->data = np;
        b->cap = ncap;
    }
}

/* Append one small text frame (at most 125 bytes: a `lost` notice). */
static int block_add_text(ws_block *b, const char *text, size_t n) {
    if (n > 125) n = 125;
    if (b->cap - b->len < 2 + n) {
        size_t ncap = b->len + 2 + n + WS_BLOCK_BYTES;
        unsigned char *np = realloc(b->data, ncap);
        if (!np) return evs__err(EVS_ENOMEM, "ws: out of memory");
        b->data = np;
        b->cap = ncap;
    }
    b->data[b->len] = 0x81; /* FIN, text */
    b->data[b->len + 1] = (unsigned char)n;
    memcpy(b->data + b->len + 2, text, n);
    b->len += 2 + n;
    return EVS_OK;
}

/* Read and render the block that starts at the client's `next`. */
static int block_render(evs__ws_hub *hub, ws_client *cl, ws_block **out) {
    uint64_t from = atomic_load(&cl->next);
    evs_reader *r = NULL;
    int rc;
    ws_block *b = calloc(1, sizeof *b);
    if (!b) return evs__err(EVS_ENOMEM, "ws: out of memory");
    b->from = b->next = from;
    if ((rc = evs_read_all(hub->srv->store, from, EVS_FORWARD, &cl->lf.f, WS_BLOCK_EVENTS, &r))) goto fail;
    for (;;) {
        const evs_event *ev;
        rc = evs_reader_next(r, &ev);
        if (rc == EVS_DONE) {
            uint64_t p = evs_reader_position(r);
            if (p > b->next) b->next = p;
            rc = EVS_OK;
            break;
        }
        if (rc == EVS_ELOST) { /* positions a repair removed: say so, then read on */
            uint64_t a = 0, z = 0;
            evs_reader_lost(r, &a, &z);
            b->next = evs_reader_position(r);
            char t[128];
            int n = snprintf(t, sizeof t, "{\"op\":\"lost\",\"first\":%llu,\"last\":%llu}", (unsigned long long)a,
                             (unsigned long long)z);
            if ((rc = block_add_text(b, t, (size_t)n))) goto fail;
            continue;
        }
        if (rc) goto fail;
        b->next = ev->global_position + 1;
        if (!evs__live_filter_match(&cl->lf, ev)) continue;
        if (cl->upcast) {
            evs_event shown;
            void *owned = NULL;
            if (evs_schema_upcast(hub->srv->schemas, ev, &shown, &owned) != EVS_OK) {
                /* said, and read past, as SSE does: a live stream has no status to fail with;
                   the reason is the registry's (GET /streams/...?upcast=latest names it) */
                char t[128];
                int n = snprintf(t, sizeof t, "{\"op\":\"upcast_error\",\"global_position\":%llu}",
                                 (unsigned long long)ev->global_position);
                if ((rc = block_add_text(b, t, (size_t)n))) goto fail;
                continue;
            }
            rc = block_add(b, &shown);
            free(owned);
            if (rc) goto fail;
        } else if ((rc = block_add(b, ev))) {
            goto fail;
        }
        b->nevents++;
        if (b->len >= WS_BLOCK_BYTES) break;
    }
    evs_reader_close(r);
    /* keep only what is used: cached blocks count against WS_CACHE_BYTES */
    if (b->len == 0) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    } else if (b->cap - b->len > 4096) {
        unsigned char *np = realloc(b->data, b->len);
        if (np) {
            b->data = np;
            b->cap = b->len;
        }
    }
    *out = b;
    return EVS_OK;
fail:
    evs_reader_close(r);
    block_free(b);
    return rc;
}

/* Give the client the block at its `next`: shared when cached, else rendered (and cached). */
static int client_feed(evs__ws_hub *hub, ws_client *cl) {
    uint64_t next = atomic_load(&cl->next);
    ws_block *b = NULL;
    int fresh = 0, rc;
    for (ws_block *c = cl->chain->blocks; c && !b; c = c->cnext)
        if (c->from == next) b = c;
    if (!b) {
        if ((rc = block_render(hub, cl, &b))) return rc;
        fresh = 1;
    }
    if (b->next <= next) { /* nothing to read after all: cannot happen below the head */
        if (fresh) block_free(b);
        return EVS_OK;
    }
    atomic_store(&cl->next, b->next);
    if (b->nevents) evs__count_add(&hub->srv->m.deliveries_ws, b->nevents);
    if (b->len) {
        b->refs++;
        cl->blk = b;
        cl->blk_off = 0;
    }
    if (fresh) block_cache(hub, cl->chain, b); /* after the reference: the trim cannot free it */
    return EVS_OK;
}

/* ------------------------------------------------------------------ hub */

static void client_destroy(evs__ws_hub *hub, ws_client *cl) {
    epoll_ctl(hub->epfd, EPOLL_CTL_DEL, cl->fd, NULL);
    pthread_mutex_lock(&hub->mu);
    if (cl->prev) cl->prev->nxt = cl->nxt;
    else hub->clients = cl->nxt;
    if (cl->nxt) cl->nxt->prev = cl->prev;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_sub(&hub->count, 1);
    if (cl->blk) block_release(cl->blk);
    free(cl->obuf);
    evs__gconn_leave(cl->gc); /* its unacked deliveries go to the other consumers */
    chain_put(hub, cl->chain);
    if (cl->ctx) wslay_event_context_free(cl->ctx);
    MHD_upgrade_action(cl->urh, MHD_UPGRADE_ACTION_CLOSE);
    evs__live_filter_free(&cl->lf);
    free(cl->extra);
    evs__principal_unref(cl->who);
    free(cl);
}

/*
 * Send what the client has: the rest of its block first, then wslay's
 * queue (only with no block in flight, so frames never interleave).
 * 0, or -1 when the connection failed.
 */
static int client_write(ws_client *cl) {
    if (obuf_drain(cl)) return -1;
    if (cl->obuf) return 0; /* EPOLLOUT will tell */
    while (cl->blk) {
        ws_block *b = cl->blk;
        while (cl->blk_off < b->len) {
            ssize_t r = send(cl->fd, b->data + cl->blk_off, b->len - cl->blk_off, MSG_NOSIGNAL);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0; /* EPOLLOUT will tell */
            if (r <= 0) return -1;
            cl->blk_off += (size_t)r;
            cl->last_send_ns = evs__mono_ns();
        }
        block_release(b);
        cl->blk = NULL;
        cl->blk_off = 0;
    }
    if (wslay_event_want_write(cl->ctx) && wslay_event_send(cl->ctx)) return -1;
    return obuf_drain(cl);
}

/* Bytes wait for the socket: a block, wslay's queue, or obuf. */
static int client_pending(const ws_client *cl) { return cl->blk || cl->obuf || wslay_event_want_write(cl->ctx); }

/* 1 while more events may be queued for the client. */
static int client_open(const ws_client *cl) {
    return !cl->closing && wslay_event_get_write_enabled(cl->ctx) && wslay_event_get_read_enabled(cl->ctx);
}

/*
 * Feed, send, and re-arm one client; 0 to keep it, -1 to destroy it.  A
 * client behind the head is fed again as long as its socket takes what was
 * sent, for a few rounds; after that (fairness) hub->busy makes the next
 * epoll_wait return at once instead of sleeping until the tick.
 */
static int client_step(evs__ws_hub *hub, ws_client *cl, uint64_t head, int64_t now) {
    /* a heartbeat only into an idle connection, so they never pile up */
    if (now - cl->last_send_ns >= (int64_t)hub->srv->heartbeat_ms * 1000000 && !cl->blk &&
        wslay_event_get_queued_msg_count(cl->ctx) == 0 && client_open(cl)) {
        char hb[80];
        int n = snprintf(hb, sizeof hb, "{\"op\":\"heartbeat\",\"head\":%llu}", (unsigned long long)head);
        send_text(cl, hb, (size_t)n);
        cl->last_send_ns = now;
    }
    for (int round = 0; round < 8; round++) {
        if (client_write(cl)) return -1;
        if (client_pending(cl)) break; /* socket full: wait for EPOLLOUT */
        if (!cl->subscribed || !client_open(cl) || atomic_load(&cl->next) > head) break;
        if (client_feed(hub, cl)) {
            fprintf(stderr, "evstore serve: ws subscriber at position %llu: %s\n",
                    (unsigned long long)atomic_load(&cl->next), evs_errmsg());
            cl->subscribed = 0; /* stop reading; the close frame tells the client */
            chain_put(hub, cl->chain);
            cl->chain = NULL;
            wslay_event_queue_close(cl->ctx, 1011, (const uint8_t *)"log read failed", 15);
            cl->closing = 1;
            continue;
        }
        if (round == 7) hub->busy = 1;
    }
    int want_out = client_pending(cl);
    if (!wslay_event_want_read(cl->ctx) && !want_out) return -1;
    if (cl->pull_full && !want_out) { /* its queue drained without EPOLLOUT: pull again at once */
        cl->pull_full = 0;
        hub->busy = 1;
    }
    uint32_t mask = (wslay_event_want_read(cl->ctx) && !client_backlogged(cl) ? EPOLLIN : 0) | (want_out ? EPOLLOUT : 0);
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
        cl->id = ++hub->last_id;
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
            if (client_pending(cl) && client_write(cl) == 0 && client_pending(cl))
                pending = 1;
        if (!pending) return;
        struct epoll_event evs[16];
        epoll_wait(hub->epfd, evs, 16, 20);
    }
}

/*
 * Shutdown: {"op":"shutdown"} first, then the close frame.  wslay sends
 * queued control frames ahead of data, so the close is queued only after
 * the goodbye has left (or the time for it is up).  Both follow the block
 * in flight, if any, which is sent whole.
 */
static void goodbye(evs__ws_hub *hub) {
    for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
        if (wslay_event_get_write_enabled(cl->ctx)) send_text(cl, "{\"op\":\"shutdown\"}", 17);
    flush_all(hub, 500);
    for (ws_client *cl = hub->clients; cl; cl = cl->nxt)
        if (wslay_event_get_write_enabled(cl->ctx)) {
            wslay_event_queue_close(cl->ctx, 1001, (const uint8_t *)"server shutting down", 20);
            cl->closing = 1;
        }
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
            /* a hang-up: what the client sent before is still read (acks
               count), unless we stopped reading it, where the event would
               only repeat: then it is final */
            int hup = (evs[i].events & (EPOLLHUP | EPOLLERR)) != 0;
            if (hup || (evs[i].events & EPOLLIN)) {
                if ((hup && client_backlogged(cl)) || wslay_event_recv(cl->ctx)) {
                    client_destroy(hub, cl);
                    /* later entries may name the same client: forget them */
                    for (int j = i + 1; j < n; j++)
                        if (evs[j].data.ptr == cl) evs[j].data.ptr = NULL, evs[j].events = 0;
                    continue;
                }
            }
        }
        adopt_pending(hub);
        pull_all(hub);
        deliver_results(hub);
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
    /* con_cls is http.c's request, which starts with the evs__req */
    cl->who = con_cls ? evs__principal_ref(((evs__req *)con_cls)->who) : NULL;
    cl->fd = sock;
    cl->urh = urh;
    cl->last_send_ns = evs__mono_ns();
    cl->nxt = hub->pending;
    hub->pending = cl;
    pthread_mutex_unlock(&hub->mu);
    atomic_fetch_add(&hub->count, 1);
    if (hub->srv->live_opened) hub->srv->live_opened(hub->srv); /* counted first: the notifier follows the head */
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

enum MHD_Result evs__route_ws(evs__req *rq) {
    struct MHD_Connection *c = rq->c;
    const char *up = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
    const char *conn = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    const char *ver = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Version");
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-WebSocket-Key");
    if (!up || !has_token(up, "websocket") || !conn || !has_token(conn, "upgrade"))
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                  "/ws is a WebSocket endpoint: send Upgrade: websocket and Connection: Upgrade");
    if (!ver || strcmp(ver, "13") != 0)
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "Sec-WebSocket-Version must be 13");
    if (!key || strlen(key) != 24)
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                  "Sec-WebSocket-Key must be 16 bytes in base64");
    char buf[24 + sizeof WS_GUID];
    memcpy(buf, key, 24);
    memcpy(buf + 24, WS_GUID, sizeof WS_GUID);
    uint8_t digest[20];
    evs__sha1(buf, 24 + sizeof WS_GUID - 1, digest);
    char accept[32];
    evs__base64(digest, 20, accept);
    struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_upgraded, rq->srv);
    if (!resp) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    return evs__respond_queue(rq, EVS_HTTP_SWITCHING, resp);
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
    /* every client is gone, and with them every chain; drop what is left */
    while (hub->oldest) block_uncache(hub, hub->oldest);
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
