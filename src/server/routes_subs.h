/*
 * routes_subs.h — routes on consumer records of every kind (routes_subs.c).
 * Each queues exactly one answer.
 */
#ifndef EVS_ROUTES_SUBS_H
#define EVS_ROUTES_SUBS_H

#include "server/respond.h"

/* GET /subscriptions?kind=&after=&limit=, GET /projections, GET /groups */
enum MHD_Result evs__route_consumer_list(evs__req *rq);
/* GET {/subscriptions,/projections,/groups}/N */
/* PUT|POST /subscriptions/N: create or change a subscription's record (settings as JSON, none: defaults). */
enum MHD_Result evs__route_sub_put(evs__req *rq);
enum MHD_Result evs__route_consumer_get(evs__req *rq);
/* DELETE .../N: the record, its state and its DLQ (a runner or an open group is closed first) */
enum MHD_Result evs__route_consumer_delete(evs__req *rq);
/* POST .../N/pause, /resume, /reset?to=, /rebuild?from= (rebuild: projections only) */
enum MHD_Result evs__route_consumer_pause(evs__req *rq);
enum MHD_Result evs__route_consumer_resume(evs__req *rq);
enum MHD_Result evs__route_consumer_reset(evs__req *rq);
enum MHD_Result evs__route_consumer_rebuild(evs__req *rq);

#endif
