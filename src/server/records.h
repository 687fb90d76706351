/*
 * records.h — what every consumer route (routes_subs.c, routes_proj.c,
 * routes_groups.c, routes_dlq.c) shares: the request's consumer record and
 * its JSON.  Routes under /projections and /groups see only their own kind;
 * /subscriptions sees every kind.
 */
#ifndef EVS_RECORDS_H
#define EVS_RECORDS_H

#include "bus/settings.h"
#include "server/consumers.h"
#include "server/respond.h"

/* "projection", "group" or "subscription": the kind the request's path is about. */
const char *evs__area_kind(const evs__req *rq);
/*
 * The record of the request's consumer (rq->name) of the path's kind.  0,
 * or -1 after queueing the answer (404, or the failure).
 */
int evs__need_consumer(evs__req *rq, evs_consumer_info *out, enum MHD_Result *mr);
/* A consumer record as JSON; v (projections only) adds what the runner knows. */
void evs__consumer_json(evs__sb *b, const evs_consumer_info *i, const evs__run_view *v);
/* A group's record and settings; live figures and consumers when it is open here.  A library status. */
int evs__group_json(evs__req *rq, evs__sb *b, const char *name);
/* Settings that were refused (bus/settings.h): 422 naming the field in detail.field. */
enum MHD_Result evs__respond_settings_error(evs__req *rq, const evs__settings_err *e);
/* The request's consumer, as it is now, as the answer with status. */
enum MHD_Result evs__answer_consumer(evs__req *rq, unsigned status);

#endif
