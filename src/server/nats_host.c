/*
 * nats_host.c — runs the NATS JetStream relay beside the server (see
 * nats_host.h).  The relay object is made in the thread, not at start, so
 * the server comes up while the cluster is down; until it connects the
 * metrics say so.  A relay that stops on an error that retrying cannot fix
 * (the stream holds another store's events) is logged, destroyed and made
 * again a few seconds later, which also picks up an operator's fix.
 *
 * With --nats-import a second thread runs the importer (src/dist/
 * nats_import.c) into the server's store, following the stream.  NATS
 * trouble is retried inside it; a message it cannot import (and no
 * dead-letter stream) ends the run: it is logged and retried every 30 s,
 * so the same message meets an operator's fix (a dead-letter stream, a
 * corrected stream) without a restart.  Its acks follow the server's
 * durability: with --durability sync an append is fdatasync'd before JetStream
 * hears of it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/nats_host.h"

struct evs__nats_host {
    evs__srv *srv;
    evs_nats_config cfg;          /* strings point into the serve config, alive for the run */
    evs_nats_import_config icfg;  /* the importer's (target NULL: none) */
    pthread_t thread, ithread;
    int has_ithread;
    volatile sig_atomic_t stop;
    pthread_mutex_t mu;           /* guards relay and the import counts against the metrics */
    evs_nats_import_stats idone, irun; /* finished import runs' counts, the running one's */
    evs_nats_relay *relay;
    uint64_t errors_before;       /* failures of relays already destroyed */
};

static void host_sleep(evs__nats_host *h, unsigned ms) {
    for (unsigned t = 0; t < ms && !h->stop; t += 50) {
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void *host_main(void *arg) {
    evs__nats_host *h = arg;
    int said = 0;
    while (!h->stop) {
        evs_nats_relay *r = NULL;
        int rc = evs__nats_relay_create(h->srv->store, &h->cfg, &r);
        if (rc) {
            if (!said) fprintf(stderr, "evstore serve: nats: %s (retrying every 2 s)\n", evs_errmsg());
            said = 1;
            pthread_mutex_lock(&h->mu);
            h->errors_before++;
            pthread_mutex_unlock(&h->mu);
            host_sleep(h, 2000);
            continue;
        }
        if (said) fprintf(stderr, "evstore serve: nats: connected, publishing to stream %s\n",
                          h->cfg.stream ? h->cfg.stream : EVS_NATS_DEFAULT_STREAM);
        said = 0;
        pthread_mutex_lock(&h->mu);
        h->relay = r;
        pthread_mutex_unlock(&h->mu);
        rc = evs__nats_relay_run(r, 1, &h->stop, 1000, 0);
        if (rc) fprintf(stderr, "evstore serve: nats: relay stopped: %s (restarting in 5 s)\n", evs_errmsg());
        evs_nats_relay_stats st;
        evs__nats_relay_stats(r, &st);
        pthread_mutex_lock(&h->mu);
        h->relay = NULL;
        h->errors_before += st.errors + (rc ? 1 : 0);
        pthread_mutex_unlock(&h->mu);
        evs__nats_relay_destroy(r);
        if (rc) host_sleep(h, 5000);
    }
    return NULL;
}

/* The importer's progress callback (its thread): a copy for the metrics. */
static void import_progress(void *arg, const evs_nats_import_stats *st) {
    evs__nats_host *h = arg;
    pthread_mutex_lock(&h->mu);
    h->irun = *st;
    pthread_mutex_unlock(&h->mu);
}

static void *import_main(void *arg) {
    evs__nats_host *h = arg;
    while (!h->stop) {
        evs_nats_import_stats st;
        int rc = evs__nats_import(h->srv->store, &h->icfg, 1, &h->stop, &st);
        pthread_mutex_lock(&h->mu);
        h->idone.imported += st.imported;
        h->idone.already += st.already;
        h->idone.duplicates += st.duplicates;
        h->idone.rejected += st.rejected;
        h->idone.errors += st.errors + (rc ? 1 : 0);
        if (st.last_seq) h->idone.last_seq = st.last_seq;
        memset(&h->irun, 0, sizeof h->irun);
        pthread_mutex_unlock(&h->mu);
        if (h->stop) break;
        fprintf(stderr, "evstore serve: nats import: %s (%llu imported; trying again in 30 s)\n",
                rc ? evs_errmsg() : "stopped", (unsigned long long)st.imported);
        host_sleep(h, 30000);
    }
    return NULL;
}

int evs__nats_host_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap) {
    if (!cfg->nats.urls) return EVS_OK;
    int rc = evs__nats_relay_check(&cfg->nats);
    if (rc == EVS_OK && cfg->nats_import.target) rc = evs__nats_import_check(&cfg->nats_import);
    if (rc) {
        snprintf(why, whycap, "serve: %s", evs_errmsg());
        return rc;
    }
    evs__nats_host *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(why, whycap, "serve: out of memory for the NATS relay");
        return EVS_ENOMEM;
    }
    h->srv = srv;
    h->cfg = cfg->nats;
    h->cfg.log = stderr;
    h->icfg = cfg->nats_import;
    h->icfg.nats.log = stderr;
    h->icfg.progress = import_progress;
    h->icfg.progress_arg = h;
    pthread_mutex_init(&h->mu, NULL);
    if (pthread_create(&h->thread, NULL, host_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        snprintf(why, whycap, "serve: cannot start the NATS relay thread");
        return EVS_EIO;
    }
    if (h->icfg.target) {
        if (pthread_create(&h->ithread, NULL, import_main, h) != 0) {
            h->stop = 1;
            pthread_join(h->thread, NULL);
            pthread_mutex_destroy(&h->mu);
            free(h);
            snprintf(why, whycap, "serve: cannot start the NATS importer thread");
            return EVS_EIO;
        }
        h->has_ithread = 1;
    }
    srv->nats = h;
    return EVS_OK;
}

void evs__nats_host_stop(evs__srv *srv) {
    evs__nats_host *h = srv->nats;
    if (!h) return;
    h->stop = 1;
    pthread_join(h->thread, NULL);
    if (h->has_ithread) pthread_join(h->ithread, NULL);
    pthread_mutex_destroy(&h->mu);
    free(h);
    srv->nats = NULL;
    evs__nats_library_close();
}

void evs__nats_host_stats_get(evs__srv *srv, evs__nats_host_stats *out) {
    memset(out, 0, sizeof *out);
    evs__nats_host *h = srv->nats;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    if (h->relay) {
        evs__nats_relay_stats(h->relay, &out->relay);
        out->up = out->relay.connected;
    } else {
        out->relay.head = evs_head(srv->store);
    }
    out->relay.errors += h->errors_before;
    if (h->has_ithread) {
        out->importing = 1;
        out->import.imported = h->idone.imported + h->irun.imported;
        out->import.already = h->idone.already + h->irun.already;
        out->import.duplicates = h->idone.duplicates + h->irun.duplicates;
        out->import.rejected = h->idone.rejected + h->irun.rejected;
        out->import.errors = h->idone.errors + h->irun.errors;
        out->import.last_seq = h->irun.last_seq ? h->irun.last_seq : h->idone.last_seq;
    }
    pthread_mutex_unlock(&h->mu);
}
