/*
 * saga_host.h — the saga engine in one run of the server (saga_host.c):
 * opened after the application layer (its workers send commands through
 * it) when --app-dir has sagas or the store has a saga index, closed after
 * the daemon stopped and before the application layer.
 */
#ifndef EVS_SAGA_HOST_H
#define EVS_SAGA_HOST_H

#include <stddef.h>

#include "server/server.h"
#include "server/state.h"

/*
 * Open srv->sagas on srv->store and srv->app, register cfg->app_dir's
 * DIR/sagas/NAME.lua (a failure stops the start: why[] names the file) and
 * start cfg->saga_workers workers.  Nothing to do (srv->sagas stays NULL)
 * when neither the app directory nor the store has sagas.  EVS_OK, or a
 * failure with why[] filled.
 */
int evs__sagas_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap);
/* Stop the engine's threads (the advance in progress finishes) and close it.  NULL engine: no-op. */
void evs__sagas_stop(evs__srv *srv);

#endif
