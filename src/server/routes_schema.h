/*
 * routes_schema.h — the schema registry over HTTP (routes_schema.c): list,
 * show and register event schemas, and the 422 of an append the registry
 * refused.  The registry itself is opened by serve.c (srv->schemas).
 */
#ifndef EVS_ROUTES_SCHEMA_H
#define EVS_ROUTES_SCHEMA_H

#include "server/respond.h"

enum MHD_Result evs__route_schema_list(evs__req *rq);     /* GET /schemas */
enum MHD_Result evs__route_schema_type(evs__req *rq);     /* GET /schemas/{event_type} (rq->part) */
enum MHD_Result evs__route_schema_put(evs__req *rq);      /* PUT|POST /schemas/{event_type}?version=&migration_path= */
enum MHD_Result evs__route_schema_version(evs__req *rq);  /* GET /schemas/{event_type}/{version} (rq->id) */
enum MHD_Result evs__route_schema_check(evs__req *rq);     /* POST /schemas/{event_type}/check?version= */
enum MHD_Result evs__route_schema_validate(evs__req *rq);  /* POST /schemas/{event_type}/{version}/validate */
enum MHD_Result evs__route_schema_deprecate(evs__req *rq); /* POST|DELETE /schemas/{event_type}/{version}/deprecate */
enum MHD_Result evs__route_schema_compat(evs__req *rq);    /* GET|PUT /schemas/{event_type}/compat */
enum MHD_Result evs__route_schema_upcaster(evs__req *rq);  /* PUT|DELETE /schemas/{event_type}/{version}/upcaster */
/* GET|PUT|DELETE /schema-policies/default, .../stream-types/{stream_type}, .../event-types/{event_type} */
enum MHD_Result evs__route_schema_policy(evs__req *rq);

/*
 * A failed append (rc, with context): when the calling thread's last
 * append was refused by the schema registry, 422 with the violation's
 * pointer, keyword and schema path in detail; else as evs__respond_lib.
 * Call evs__schema_forget first, before the append, so that an older
 * refusal of this thread is never reported.
 */
enum MHD_Result evs__respond_append_failed(evs__req *rq, int rc, const char *context);
void evs__schema_forget(void);

#endif
