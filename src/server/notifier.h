/*
 * notifier.h — the head notifier (notifier.c): one thread that waits on the
 * store's head and wakes the live streams, SSE and WebSocket, when it
 * moves and on a short tick (heartbeats, and a bound on any missed wake).
 */
#ifndef EVS_NOTIFIER_H
#define EVS_NOTIFIER_H

#include "server/state.h"

/* 0, or -1 when the thread cannot start. */
int evs__notifier_start(evs__srv *srv);
/* Stop and join the thread (no-op when not started). */
void evs__notifier_stop(evs__srv *srv);

#endif
