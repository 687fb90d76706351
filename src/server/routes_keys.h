/*
 * routes_keys.h — the API-key routes (routes_keys.c): list, create (the
 * key's text is in that answer and nowhere else, ever) and revoke.  All are
 * admin (http.c's table); they work whether or not auth is on, so that the
 * first admin key can also be made over HTTP on a loopback server.
 */
#ifndef EVS_ROUTES_KEYS_H
#define EVS_ROUTES_KEYS_H

#include "server/respond.h"

/* GET /keys: {"keys": [{id, name, role, grants, created_at, revoked_at}]} */
enum MHD_Result evs__route_keys_list(evs__req *rq);
/* POST /keys {"role": R, "grants": ["PERM:STREAMS[:TYPES]", ...], "name": N}: 201 {"key": "evs_...", ...} */
enum MHD_Result evs__route_keys_create(evs__req *rq);
/* DELETE /keys/{id}: 200 with the record, revoked from the next request on */
enum MHD_Result evs__route_keys_revoke(evs__req *rq);

#endif
