/*
 * ws.h — GET /ws, WebSocket subscriptions and group consumers on one hub
 * thread (ws.c).  serve.c starts the hub before the daemon, stops it at
 * shutdown (every client gets {"op":"shutdown"} and a close), and frees it
 * after the daemon stopped; the notifier kicks it when the head moves.
 */
#ifndef EVS_WS_H
#define EVS_WS_H

#include <stdint.h>

#include "server/respond.h"

/* 0, or -1 when the hub cannot start (serve.c then stops). */
int evs__ws_start(evs__srv *srv);
/* GET /ws: check the handshake and answer 101; the hub takes the socket over. */
enum MHD_Result evs__route_ws(evs__req *rq);
/* The head moved (called by the notifier). */
void evs__ws_kick(evs__srv *srv);
/* Say goodbye to every WebSocket client, close them and join the thread. */
void evs__ws_stop(evs__srv *srv);
/* After the daemon stopped: release the hub (stops it first if needed). */
void evs__ws_free(evs__srv *srv);
/* Connected clients, and the largest head - next over their subscriptions (for /info and /metrics). */
long evs__ws_count(evs__srv *srv);
uint64_t evs__ws_max_lag(evs__srv *srv, uint64_t head);

#endif
