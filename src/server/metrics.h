/*
 * metrics.h — GET /metrics (metrics.c), the server's Prometheus text.
 */
#ifndef EVS_METRICS_H
#define EVS_METRICS_H

#include "server/respond.h"

enum MHD_Result evs__route_metrics(evs__req *rq);

#endif
