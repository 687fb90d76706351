/*
 * nats_host.h — the NATS JetStream relay in one run of the server
 * (`evstore serve --nats URLS`, nats_host.c): one thread that publishes the
 * store's $all to the stream (src/dist/), started after the store opened
 * and stopped before it closes, and its figures for /metrics.
 */
#ifndef EVS_NATS_HOST_H
#define EVS_NATS_HOST_H

#include <stddef.h>

#include "dist/nats_dist.h"
#include "server/server.h"
#include "server/state.h"

/*
 * Start the relay thread when cfg->nats.urls is set (srv->nats stays NULL
 * otherwise).  Settings that can never work (a bad stream name or prefix)
 * stop the start with why[] filled; an unreachable cluster does not: the
 * thread keeps connecting, logs why on stderr, and /metrics shows it as
 * down with its lag growing.
 */
int evs__nats_host_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap);
/* Stop the thread (the round in flight finishes or times out) and free it.  NULL: no-op. */
void evs__nats_host_stop(evs__srv *srv);

typedef struct evs__nats_host_stats {
    evs_nats_relay_stats relay;
    int up;                       /* 1 when the relay is connected and its checkpoint was read */
    int importing;                /* 1 with --nats-import: import holds its counts over all runs */
    evs_nats_import_stats import;
} evs__nats_host_stats;

/* The relay's figures (zeros before it first connected).  Any thread. */
void evs__nats_host_stats_get(evs__srv *srv, evs__nats_host_stats *out);

#endif
