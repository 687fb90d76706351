/*
 * server.h — what the evstore command needs from the server: the settings
 * of one run, their hard caps, and the call that runs it.  Reading flags and
 * the config file is the command's (src/cli/cli_serve.c); everything else in
 * src/server/ is internal and reached only through this call.
 */
#ifndef EVS_SERVER_H
#define EVS_SERVER_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdio.h>

#include "evstore.h"
#include "evstore_app.h"
#include "dist/nats_dist.h"

/*
 * Hard caps: configuration may lower these but never raise them.  The body
 * cap leaves room for the JSON envelope around EVS_MAX_APPEND_BYTES of data.
 */
#define EVS_SRV_MAX_BODY ((size_t)80 << 20)
#define EVS_SRV_DEFAULT_BODY ((size_t)32 << 20)
#define EVS_SRV_MAX_CONNECTIONS 4096u
#define EVS_SRV_DEFAULT_CONNECTIONS 1024u
#define EVS_SRV_MAX_TIMEOUT_S 600u
#define EVS_SRV_DEFAULT_TIMEOUT_S 30u
#define EVS_SRV_MAX_THREADS 64u
#define EVS_SRV_DEFAULT_THREADS 16u
#define EVS_SRV_MAX_WS_FRAME ((size_t)1 << 20)    /* client -> server message */
#define EVS_SRV_DEFAULT_WS_FRAME ((size_t)64 << 10)
#define EVS_SRV_DEFAULT_HEARTBEAT_MS 15000u
#define EVS_SRV_DEFAULT_GROUP_IDLE_MS 30000u      /* an HTTP group consumer silent this long past its ack timeout leaves */
#define EVS_SRV_MAX_GROUP_IDLE_MS 86400000u
#define EVS_SRV_DEFAULT_SAGA_WORKERS 4u
#define EVS_SRV_MAX_SAGA_WORKERS 64u             /* the saga engine's own cap */

/* One run of the server, checked and clamped by the caller. */
typedef struct evs__serve_config {
    const char *dir;              /* the store (created if missing) */
    struct sockaddr_storage addr; /* where to listen (IPv4 or IPv6); port 0 picks a free one */
    socklen_t addrlen;
    const char *listen;           /* addr as the user wrote it, for messages */
    evs_durability durability;
    const char *durability_name;  /* "sync", "batch" or "none", for /info */
    unsigned batch_ms;            /* batch durability's sync interval */
    uint64_t segment_size;        /* new log segments' size; 0: the store's default */
    unsigned threads, max_connections, timeout_s, heartbeat_ms, group_idle_ms;
    size_t max_body, ws_frame_max;
    FILE *access_log;             /* one line per answered request; NULL: none.  The caller's to close. */
    const char *app_dir;          /* aggregates (NAME.lua) and queries.json loaded at start; NULL: none */
    evs_app_config app;           /* the application layer's settings */
    unsigned saga_workers;        /* saga engine worker threads (app_dir/sagas/, saga_host.c) */
    evs_nats_config nats;         /* the JetStream relay (nats_host.c); urls NULL: none */
    evs_nats_import_config nats_import; /* the JetStream importer (nats_host.c); target NULL: none */
    int auth;                     /* --auth: every route but the open ones needs an API key */
    int insecure;                 /* --insecure: serve a non-loopback address without keys anyway */
    const char *tls_cert, *tls_key; /* PEM files: HTTPS and WSS (tls.c); NULL: plain HTTP.  Reloaded on SIGHUP. */
    const char *master_key_file;  /* crypto-shredding's master key (evstore_crypt.h); NULL: EVSTORE_MASTER_KEY or none */
} evs__serve_config;

/*
 * Run the HTTP/JSON server until SIGINT or SIGTERM, then shut down cleanly.
 * Returns EVS_OK after a clean shutdown.  Otherwise a status for the exit
 * code (the library's own when the store could not be opened, EVS_EIO for
 * anything else that kept the server from starting, EVS_EFAILED when the
 * store failed while serving, evs_store_close's status when its final sync
 * failed) and why[] says what happened, as a sentence for "evstore: <why>".
 */
int evs__serve(const evs__serve_config *cfg, char *why, size_t whycap);

/* Every route as "METHOD PATH NEED" lines (`evstore serve --print-routes`; NEED as in auth.h: open, read:stream, ...). */
void evs__serve_print_routes(FILE *f);

#endif
