/*
 * routes_saga.h — the saga routes (routes_saga.c): instances listed and
 * shown, and an operator's actions on one.  Each route queues exactly one
 * answer.  rq->name holds the saga type, rq->part the instance id (checked
 * by http.c).
 */
#ifndef EVS_ROUTES_SAGA_H
#define EVS_ROUTES_SAGA_H

#include "evstore_saga.h"
#include "server/respond.h"

#define EVS_SRV_SAGA_MAX_LIMIT 1000u   /* instances in one page */

/* GET /sagas?type=&status=&stuck_for=&after=&limit=, GET /sagas/{saga}?status=&stuck_for=&after=&limit= */
enum MHD_Result evs__route_saga_list(evs__req *rq);
/* GET /sagas/{saga}/{instance}: the instance folded from its stream, with its steps and timeline */
enum MHD_Result evs__route_saga_show(evs__req *rq);
/* POST /sagas/{saga}/{instance}/{pause|resume|retry|skip|compensate|abort}?reason=&step= */
enum MHD_Result evs__route_saga_pause(evs__req *rq);
enum MHD_Result evs__route_saga_resume(evs__req *rq);
enum MHD_Result evs__route_saga_retry(evs__req *rq);
enum MHD_Result evs__route_saga_skip(evs__req *rq);
enum MHD_Result evs__route_saga_compensate(evs__req *rq);
enum MHD_Result evs__route_saga_abort(evs__req *rq);

#endif
