/*
 * app_host.c — the application layer in one run of the server: opening it
 * on the server's store and bus, loading what the application is made of,
 * and closing it (app_host.h).
 *
 * Order at start: the app directory first (its types are the deployed
 * ones), then the scripts kept in the store by PUT /aggregates/{type}.
 * A kept script whose type or commands the directory already defines is
 * not loaded, and the server says so on stderr: the directory wins, the
 * kept script stays on disk untouched, and PUT refuses to replace a type
 * that came from the directory.
 */
#include <stdio.h>
#include <string.h>

#include "app/app_access.h"
#include "evstore_schema.h"
#include "server/app_host.h"
#include "server/consumers.h"

int evs__app_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap) {
    /* aggregates evolve from the latest version of each event, as projections do */
    evs_app_config ac = cfg->app;
    ac.map = evs_schema_upcast_map(srv->schemas);
    int rc = evs_app_open(srv->store, srv->bus ? srv->bus->bus : NULL, &ac, &srv->app);
    if (rc) {
        snprintf(why, whycap, "serve: application layer: %s", evs_errmsg());
        return rc;
    }
    srv->query_timeout_ms = (unsigned)cfg->app.query_timeout_ms;
    if (cfg->app_dir && (rc = evs_app_load_dir(srv->app, cfg->app_dir))) {
        snprintf(why, whycap, "serve: --app-dir %s: %s", cfg->app_dir, evs_errmsg());
        return rc;
    }
    char report[4096];
    if ((rc = evs_app_load_stored(srv->app, report, sizeof report))) {
        snprintf(why, whycap, "serve: aggregate scripts kept in the store: %s", evs_errmsg());
        return rc;
    }
    for (char *line = report, *nl; *line; line = nl ? nl + 1 : line + strlen(line)) {
        if ((nl = strchr(line, '\n'))) *nl = '\0';
        fprintf(stderr, "evstore serve: %s\n", line);
    }
    return EVS_OK;
}

void evs__app_host_interrupt(evs__srv *srv) { evs__app_interrupt(srv->app); }

void evs__app_stop(evs__srv *srv) {
    evs_app_close(srv->app);
    srv->app = NULL;
}
