/*
 * notifier.c — the head notifier.  Live subscribers are cursors on the log
 * that park when they reach the head (sse.c suspends the connection, the
 * WebSocket hub sleeps in epoll); this thread waits on evs_wait_for and,
 * when the head moves, kicks the WebSocket hub and resumes the SSE
 * subscribers that have something to read.  It also sweeps every
 * NOTIFY_TICK_MS, which is what makes SSE heartbeats go out and bounds the
 * delay of any wake-up the subscribers' own checks could miss.
 */
#include <pthread.h>

#include "server/notifier.h"
#include "server/sse.h"
#include "server/ws.h"

#define NOTIFY_TICK_MS 250

static void *notifier_main(void *arg) {
    evs__srv *srv = arg;
    uint64_t seen = evs_head(srv->store);
    while (!atomic_load(&srv->notifier_stop)) {
        uint64_t h = seen;
        int rc = evs_wait_for(srv->store, seen + 1, NOTIFY_TICK_MS, &h);
        if (rc != EVS_OK && rc != EVS_ETIMEDOUT) break;
        if (h > seen) {
            seen = h;
            evs__ws_kick(srv);
        }
        evs__sse_wake(srv, h, 0);
    }
    return NULL;
}

int evs__notifier_start(evs__srv *srv) {
    if (pthread_create(&srv->notifier, NULL, notifier_main, srv)) return -1;
    srv->notifier_started = 1;
    return 0;
}

void evs__notifier_stop(evs__srv *srv) {
    if (!srv->notifier_started) return;
    atomic_store(&srv->notifier_stop, 1);
    pthread_join(srv->notifier, NULL);
    srv->notifier_started = 0;
}
