/*
 * notifier.h — the head notifier (notifier.c): one thread that waits on the
 * store's head and wakes the live streams, SSE and WebSocket, when it
 * moves and on a short tick (heartbeats, and a bound on any missed wake);
 * while no live stream is open it does not follow the head at all.
 */
#ifndef EVS_NOTIFIER_H
#define EVS_NOTIFIER_H

#include "server/state.h"

/* 0, or -1 when the thread cannot start. */
int evs__notifier_start(evs__srv *srv);
/* Stop and join the thread (no-op when not started). */
void evs__notifier_stop(evs__srv *srv);
/* A live stream opened: wake the notifier if it sleeps because none was (srv->live_opened). */
void evs__notifier_poke(evs__srv *srv);
/* After the daemon stopped (nothing can poke any more): free what start made. */
void evs__notifier_free(evs__srv *srv);

#endif
