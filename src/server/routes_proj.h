/*
 * routes_proj.h — the projection routes of routes_proj.c.  Each queues
 * exactly one answer.
 */
#ifndef EVS_ROUTES_PROJ_H
#define EVS_ROUTES_PROJ_H

#include <jansson.h>

#include "server/respond.h"

#define EVS_PROJ_MAX_SOURCE ((size_t)1 << 20)    /* Lua source bytes */
#define EVS_PROJ_MAX_JSON_BODY ((size_t)2 << 20) /* {"source": ...}: room for escapes */

/*
 * A Lua script sent with PUT/POST (projections, aggregates): the body, or
 * the "source" member of a JSON body; checked for NUL bytes and UTF-8.
 * 0 with *src (pointing into the body or into *root, which the caller
 * releases with json_decref), or -1 after the answer (*mr; *root is then NULL).
 */
int evs__req_source(evs__req *rq, json_t **root, const char **src, size_t *n, enum MHD_Result *mr);
/* PUT|POST /projections/N: the script as text/x-lua or text/plain, or {"source": ...} as JSON */
enum MHD_Result evs__route_proj_put(evs__req *rq);
/* GET /projections/N/state, /projections/N/state/{partition} (rq->part) */
enum MHD_Result evs__route_proj_state(evs__req *rq);
/* GET /projections/N/partitions?after=&limit= */
enum MHD_Result evs__route_proj_partitions(evs__req *rq);

#endif
