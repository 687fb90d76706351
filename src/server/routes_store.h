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
/* An expected version as text: any, no-stream, exists or a number.  0, or -1 when it is none of them. */
int evs__parse_expected(const char *v, int64_t *out);
/*
 * The 409 of a concurrency conflict, for an append and a metadata write or
 * delete alike: {"error": msg, "actual_version", "detail": {"code":
 * "ECONFLICT", "stream", "expected_version"}}; actual is the version the
 * library refused against (no second read, which could see another).
 */
enum MHD_Result evs__respond_conflict(evs__req *rq, const char *msg, const char *stream, int64_t expected,
                                      uint64_t actual);

/* Stream metadata and delete (routes_stream_meta.c) */
enum MHD_Result evs__route_stream_meta_get(evs__req *rq); /* GET /streams/S/metadata */
enum MHD_Result evs__route_stream_meta_put(evs__req *rq); /* PUT /streams/S/metadata?expected= (body: object) */
enum MHD_Result evs__route_stream_delete(evs__req *rq);   /* DELETE /streams/S?hard=&expected= */

#endif
