/*
 * saga_host.c — the saga engine in one run of the server (saga_host.h):
 * the definitions of --app-dir's sagas/ (evs_saga_load_dir, so that the
 * local `evstore saga` actions load the very same ones), the engine's
 * threads, and their end.
 *
 * The engine is opened only when there is something for it: definitions
 * in the app directory, or a saga index in the store (instances an earlier
 * run left, which an operator may still want to see and steer even when
 * this run was started without their definitions).  A store that never had
 * sagas gets no DIR/sagas/ (no index rows in its database) and no saga
 * command handler.
 *
 * On PostgreSQL every server on the database opens the engine; the one
 * holding the saga lease runs the sagas, the others stand by (evstore_saga.h)
 * and take over when it is gone.  Starting sagas and answering them works
 * through any server: both are appends.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "evstore_saga.h"
#include "server/saga_host.h"

/* path is a directory (or, for a file, exists). */
static int exists(const char *path, int dir) {
    struct stat st;
    return stat(path, &st) == 0 && (!dir || S_ISDIR(st.st_mode));
}

/* The store has a saga index (an engine ran on it before): a read-only look finds one. */
static int has_index(evs__srv *srv) {
    evs_saga_config c;
    evs_saga_config_init(&c);
    c.read_only = 1;
    evs_saga_engine *e = NULL;
    int rc = evs_saga_engine_open(srv->store, NULL, &c, &e);
    evs_saga_engine_close(e);
    return rc == EVS_OK;
}

int evs__sagas_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap) {
    char path[4200];
    int want = 0;
    if (cfg->app_dir) {
        snprintf(path, sizeof path, "%s/sagas", cfg->app_dir);
        want = exists(path, 1);
    }
    if (srv->engine) {
        want = want || has_index(srv);
    } else {
        snprintf(path, sizeof path, "%s/sagas/data.mdb", cfg->dir);
        want |= exists(path, 0);
    }
    if (!want) return EVS_OK;
    evs_saga_config sc;
    evs_saga_config_init(&sc);
    if (cfg->saga_workers) sc.workers = cfg->saga_workers;
    int rc = evs_saga_engine_open(srv->store, srv->app, &sc, &srv->sagas);
    if (rc) {
        snprintf(why, whycap, "serve: saga engine: %s", evs_errmsg());
        return rc;
    }
    size_t n = 0;
    if (cfg->app_dir && (rc = evs_saga_load_dir(srv->sagas, cfg->app_dir, &n))) {
        snprintf(why, whycap, "serve: --app-dir %s: %s", cfg->app_dir, evs_errmsg());
        return rc;
    }
    if ((rc = evs_saga_engine_start(srv->sagas))) {
        snprintf(why, whycap, "serve: saga engine: %s", evs_errmsg());
        return rc;
    }
    fprintf(stderr, "evstore serve: sagas: %zu type%s from the app directory, %u worker%s%s\n", n, n == 1 ? "" : "s",
            sc.workers, sc.workers == 1 ? "" : "s",
            srv->engine ? " (run by the server holding the saga lease; the others stand by)" : "");
    return EVS_OK;
}

void evs__sagas_stop(evs__srv *srv) {
    evs_saga_engine_close(srv->sagas);
    srv->sagas = NULL;
}
