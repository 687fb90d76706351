/*
 * routes_replay.h — the routes of routes_replay.c: state as of a point,
 * what-if and compare.  Each queues exactly one answer.
 */
#ifndef EVS_ROUTES_REPLAY_H
#define EVS_ROUTES_REPLAY_H

#include "server/respond.h"

/* A what-if body: a script given plus inserts and exclusions. */
#define EVS_REPLAY_MAX_BODY ((size_t)4 << 20)

/* GET /projections/N/state[/PARTITION]?as_of=: the state of that partition as of the point */
enum MHD_Result evs__proj_state_as_of(evs__req *rq, const char *as_of_text);
/* POST /projections/N/what-if */
enum MHD_Result evs__route_proj_what_if(evs__req *rq);
/* GET /projections/N/compare?a=&b=, POST /projections/N/compare {"a", "b"} */
enum MHD_Result evs__route_proj_compare(evs__req *rq);

#endif
