/*
 * routes_groups.h — the group routes of routes_groups.c.  Each queues
 * exactly one answer (`next` on the call after its long-poll ended).
 */
#ifndef EVS_ROUTES_GROUPS_H
#define EVS_ROUTES_GROUPS_H

#include "server/respond.h"

/* PUT|POST /groups/N: create, or change the settings (the open group is closed: its consumers are released) */
enum MHD_Result evs__route_group_put(evs__req *rq);
/* POST /groups/N/next?consumer=&timeout_ms= (the long-poll; called again when it ends) */
enum MHD_Result evs__route_group_next(evs__req *rq);
/* POST /groups/N/ack, /groups/N/nack */
enum MHD_Result evs__route_group_ack(evs__req *rq);
enum MHD_Result evs__route_group_nack(evs__req *rq);
/* DELETE /groups/N/consumers/C (rq->part) */
enum MHD_Result evs__route_group_leave(evs__req *rq);

#endif
