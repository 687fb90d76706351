/*
 * state.h — the state one run of the server shares between its files
 * (evs__srv).  It declares no functions: each file's own header says what
 * that file does, and the comment on each field below says which file owns
 * it.  serve.c creates the state, starts the pieces in order and stops them
 * in reverse (see serve.c for the shutdown sequence).
 *
 * Threads that touch it: libmicrohttpd's pool of epoll workers (every
 * request), the notifier (notifier.c), the WebSocket hub (ws.c), one runner
 * per projection and one thread per waiting group long-poll (consumers.c,
 * routes_groups.c), the saga engine's threads (saga_host.c), and the main
 * thread (serve.c).  Settings are written
 * before any thread starts and only read afterwards; everything written
 * while serving is atomic or behind the owner's own lock.
 */
#ifndef EVS_STATE_H
#define EVS_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "evstore.h"
#include "server/counters.h"

struct MHD_Daemon;
struct evs__sse_hub;
struct evs__ws_hub;
struct evs__consumers;
struct evs_app;
struct evs__cmdpool;
struct evs_saga_engine;
struct evs_schema_registry;
struct evs__nats_host;

typedef struct evs__nats_host evs__nats_host;
struct evs__keystore;

typedef struct evs__srv {
    evs_store *store;
    struct evs_schema_registry *schemas; /* DIR/schemas/, checks every append (serve.c; thread-safe) */
    struct MHD_Daemon *daemon;    /* serve.c */
    const char *dir;              /* as shown: a PostgreSQL URL's password masked */
    const char *engine;           /* NULL: embedded; else the storage engine's name (serve.c): routes of
                                     subsystems it does not run answer 501 (http.c) */
    char dir_shown[1024];
    const char *durability_name;
    char listen[80];              /* "127.0.0.1:2113" as bound */

    /* settings (already checked against the hard caps of server.h) */
    size_t max_body;
    unsigned max_connections, timeout_s, threads;
    size_t ws_frame_max;
    unsigned heartbeat_ms;
    unsigned query_timeout_ms;    /* cap of a query's min_position wait (the app's setting) */
    struct evs__keystore *keys;   /* DIR's API keys (serve.c; thread-safe), for /keys and the checks */
    int auth;                     /* 1: every route but the open ones needs a key (auth.c) */
    FILE *access_log;             /* one line per answered request (respond.c); NULL: off */

    int64_t started_ns;
    _Atomic int shutting;         /* 1: new requests get 503, live streams end (serve.c) */
    _Atomic long active;          /* requests between first call and completion (http.c) */
    _Atomic long connections;     /* open HTTP connections, upgraded ones until upgrade (http.c) */
    _Atomic long appends_waiting; /* appends whose connection is suspended until their group commit
                                     calls back (routes_store.c); the daemon must not stop before 0 */
    _Atomic long query_waits;     /* queries whose connection is suspended while they wait for
                                     min_position (routes_app.c); the daemon must not stop before 0 */

    evs__counters m;              /* counters.c, counted by respond.c and the routes */

    pthread_t notifier;           /* notifier.c */
    int notifier_started;
    _Atomic int notifier_stop;
    pthread_mutex_t notifier_mu;  /* notifier.c: its sleep while no live stream is open */
    pthread_cond_t notifier_cv;
    int notifier_inited, notifier_poked;
    /* A live stream opened (an SSE subscriber, a WebSocket client): sse.c and ws.c call it,
       serve.c sets it to evs__notifier_poke before the daemon starts. */
    void (*live_opened)(struct evs__srv *srv);

    struct evs__sse_hub *sse;     /* live SSE subscribers (sse.c) */
    struct evs__ws_hub *ws;       /* the WebSocket thread and its clients (ws.c) */
    struct evs__consumers *bus;   /* projection runners and open groups (consumers.c) */
    struct evs_app *app;          /* aggregates, commands, queries (app_host.c; thread-safe) */
    struct evs__cmdpool *cmds;    /* threads running WebSocket commands (cmdpool.c) */
    struct evs_saga_engine *sagas; /* the saga engine (saga_host.c; thread-safe); NULL: no sagas */
    struct evs__nats_host *nats;  /* the NATS JetStream relay (nats_host.c); NULL: no --nats */
} evs__srv;

#endif
