/*
 * routes_scavenge.h — the scavenge routes (routes_scavenge.c): start one in
 * the background, watch it, stop it.  Admin (http.c's table).  One runs at
 * a time per server; serve.c stops it before the store closes.
 */
#ifndef EVS_ROUTES_SCAVENGE_H
#define EVS_ROUTES_SCAVENGE_H

#include "server/respond.h"

/* POST /admin/scavenge?rate=MB/s&dry_run=true: 200 {"started": true, ...status}; 409 while one runs */
enum MHD_Result evs__route_scavenge_start(evs__req *rq);
/* GET /admin/scavenge: {"running", "segments_done", "segments_total", "bytes_reclaimed", ..., "totals": {...}} */
enum MHD_Result evs__route_scavenge_status(evs__req *rq);
/* DELETE /admin/scavenge: ask the running one to stop after its segment in progress */
enum MHD_Result evs__route_scavenge_cancel(evs__req *rq);
/* Stop and join a running scavenge (serve.c, before the store closes).  Idempotent. */
void evs__scavenge_job_stop(void);

#endif
