/*
 * routes_subjects.h — crypto-shredding over HTTP (routes_subjects.c):
 * forget a subject, export a subject's events.  Admin routes.
 */
#ifndef EVS_ROUTES_SUBJECTS_H
#define EVS_ROUTES_SUBJECTS_H

#include "server/respond.h"

enum MHD_Result evs__route_subject_forget(evs__req *rq); /* POST /admin/subjects/{subject}/forget (rq->part) */
enum MHD_Result evs__route_subject_export(evs__req *rq); /* GET /admin/subjects/{subject}/export (rq->part) */

#endif
