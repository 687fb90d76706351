/*
 * routes_app.h — the application layer's routes (routes_app.c): commands,
 * queries, aggregates.  Each route queues exactly one answer.
 */
#ifndef EVS_ROUTES_APP_H
#define EVS_ROUTES_APP_H

#include "server/respond.h"

#define EVS_APP_MAX_BATCH 1000u        /* commands in one POST /commands */
#define EVS_APP_MAX_QUERY_FILTERS 32u  /* field=value parameters of one query */

/*
 * Run one command given as JSON text (type: the route's command type, or
 * NULL when the body names it) and write its answer into out: the
 * result object (evs_command_result_to_json), which for an outcome other
 * than accepted also carries "error" (the reason) and "detail"
 * ({"outcome", "field"}); a failure of the store or DIR/app/ is the usual
 * error body.  *status is the answer's status (respond.c's tables);
 * *position the result's last_position (0 when none).  POST /commands,
 * /commands/{type} and the WebSocket's {"op":"command"} all answer
 * through here.
 */
void evs__app_command(evs__srv *srv, const char *type, const char *json, size_t len, evs__sb *out,
                      unsigned *status, uint64_t *position);

/* POST /commands/{command} (rq->name): one command */
enum MHD_Result evs__route_command(evs__req *rq);
/* POST /commands: an array of commands, run in order, each answered */
enum MHD_Result evs__route_command_batch(evs__req *rq);
/* GET /commands, /queries, /aggregates: what is registered */
enum MHD_Result evs__route_command_list(evs__req *rq);
enum MHD_Result evs__route_query_list(evs__req *rq);
enum MHD_Result evs__route_aggregate_list(evs__req *rq);
/* GET /queries/{query} (rq->name)?field=value&sort=&desc=&offset=&limit=&partition=&min_position=&timeout_ms= */
enum MHD_Result evs__route_query(evs__req *rq);
/* GET /aggregates/{type} (rq->name): the type, its commands and its script */
enum MHD_Result evs__route_aggregate_type(evs__req *rq);
/* PUT|POST /aggregates/{type}: register or replace a Lua aggregate kept in the store */
enum MHD_Result evs__route_aggregate_put(evs__req *rq);
/* GET /aggregates/{type}/{aggregate} (rq->part: the id)?use_snapshot=: the state, loaded */
enum MHD_Result evs__route_aggregate_get(evs__req *rq);
/* GET|POST /aggregates/{type}/{aggregate}/snapshots: the stored snapshots; take one now */
enum MHD_Result evs__route_aggregate_snapshots(evs__req *rq);

#endif
