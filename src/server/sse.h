/*
 * sse.h — GET /subscribe, live subscribers over Server-Sent Events
 * (sse.c).  serve.c starts the hub before the daemon and frees it after;
 * the notifier (notifier.c) wakes subscribers when the head moves, and
 * serve.c wakes them all at shutdown for their goodbye.
 */
#ifndef EVS_SSE_H
#define EVS_SSE_H

#include <stdint.h>

#include "server/respond.h"

/* 0, or -1 when out of memory. */
int evs__sse_start(evs__srv *srv);
/* After the daemon stopped (no subscriber is left). */
void evs__sse_free(evs__srv *srv);
/* GET /subscribe: the response owns the subscriber from here. */
enum MHD_Result evs__route_subscribe(evs__req *rq);
/* Resume suspended subscribers with work: events at or below head, a heartbeat due, or all of them. */
void evs__sse_wake(evs__srv *srv, uint64_t head, int all);
void evs__sse_wake_all(evs__srv *srv);
/* Connected subscribers, and the largest head - next over them (for /info and /metrics). */
long evs__sse_count(evs__srv *srv);
uint64_t evs__sse_max_lag(evs__srv *srv, uint64_t head);

#endif
