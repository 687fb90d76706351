/*
 * app_host.h — the server's application layer (app_host.c): opened after
 * the consumers (queries read projection state through their bus), with
 * the aggregates and queries of --app-dir and the scripts kept in the
 * store; closed after the daemon and the WebSocket commands stopped and
 * before the consumers.
 */
#ifndef EVS_APP_HOST_H
#define EVS_APP_HOST_H

#include <stddef.h>

#include "server/server.h"
#include "server/state.h"

/*
 * Open srv->app on srv->store and srv->bus, load cfg->app_dir (a failure
 * stops the start: why[] names the file), then the scripts kept in the
 * store (one that cannot be registered is skipped and said on stderr).
 * EVS_OK, or a failure with why[] filled.
 */
int evs__app_start(evs__srv *srv, const evs__serve_config *cfg, char *why, size_t whycap);
/* Shutting down: queries waiting for min_position end with EVS_ECLOSED
   within 100 ms (evs__app_interrupt), so their connections can be answered
   before the daemon stops.  NULL app: no-op. */
void evs__app_host_interrupt(evs__srv *srv);
/* Close srv->app (finishes queued snapshots).  NULL app: no-op. */
void evs__app_stop(evs__srv *srv);

#endif
