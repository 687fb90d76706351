/*
 * routes_dlq.h — the dead-letter-queue routes of routes_dlq.c, under every
 * consumer kind's path.  Each queues exactly one answer.
 */
#ifndef EVS_ROUTES_DLQ_H
#define EVS_ROUTES_DLQ_H

#include "server/respond.h"

enum MHD_Result evs__route_dlq_list(evs__req *rq);      /* GET .../dlq?after=&limit= */
enum MHD_Result evs__route_dlq_purge(evs__req *rq);     /* DELETE .../dlq */
enum MHD_Result evs__route_dlq_show(evs__req *rq);      /* GET .../dlq/{position} (rq->id) */
enum MHD_Result evs__route_dlq_discard(evs__req *rq);   /* DELETE .../dlq/{position} */
enum MHD_Result evs__route_dlq_retry(evs__req *rq);     /* POST .../dlq/{position}/retry */
enum MHD_Result evs__route_dlq_retry_all(evs__req *rq); /* POST .../dlq/retry */

#endif
