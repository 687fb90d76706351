/*
 * routes_store.h — the event store's routes (routes_store.c): appends,
 * reads, the stream list, /info and /health.  Each queues exactly one
 * answer.
 */
#ifndef EVS_ROUTES_STORE_H
#define EVS_ROUTES_STORE_H

#include "server/respond.h"

enum MHD_Result evs__route_append(evs__req *rq);        /* POST /streams/S (body: one event or an array) */
enum MHD_Result evs__route_read_stream(evs__req *rq);   /* GET /streams/S?from=&limit=&direction= */
enum MHD_Result evs__route_read_event(evs__req *rq);    /* GET /streams/S/{position} (rq->id) */
enum MHD_Result evs__route_list_streams(evs__req *rq);  /* GET /streams?prefix=&after=&limit= */
enum MHD_Result evs__route_all(evs__req *rq);           /* GET /all with filters */
enum MHD_Result evs__route_info(evs__req *rq);          /* GET /info */
enum MHD_Result evs__route_health(evs__req *rq);        /* GET /health */

#endif
