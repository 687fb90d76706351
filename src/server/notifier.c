/*
 * notifier.c — the head notifier.  Live subscribers are cursors on the log
 * that park when they reach the head (sse.c suspends the connection, the
 * WebSocket hub sleeps in epoll); this thread waits on evs_wait_for and,
 * when the head moves, kicks the WebSocket hub and resumes the SSE
 * subscribers that have something to read.  It also sweeps every
 * NOTIFY_TICK_MS, which is what makes SSE heartbeats go out and bounds the
 * delay of any wake-up the subscribers' own checks could miss.
 *
 * While no live stream is open (no SSE subscriber, no WebSocket client)
 * the thread does not wait on the head: following it costs two thread
 * wake-ups per group commit (this one and the WebSocket hub's), which on
 * this kind of machine was a tenth of the server's CPU under an append
 * load with nobody listening.  It sleeps until a stream opens (sse.c and
 * ws.c poke it through srv->live_opened after counting the stream, before
 * it reads anything) or the tick passes.  No wake-up is lost: a poke sets
 * a flag under the mutex the sleep checks, and the first wait after a
 * sleep starts from the head seen before it, so it returns at once if the
 * head moved meanwhile and every stream is woken.
 */
#include <pthread.h>
#include <time.h>

#include "server/notifier.h"
#include "server/sse.h"
#include "server/ws.h"

#define NOTIFY_TICK_MS 250

static int live_open(evs__srv *srv) { return evs__sse_count(srv) > 0 || evs__ws_count(srv) > 0; }

static void *notifier_main(void *arg) {
    evs__srv *srv = arg;
    uint64_t seen = evs_head(srv->store);
    while (!atomic_load(&srv->notifier_stop)) {
        if (!live_open(srv)) {
            pthread_mutex_lock(&srv->notifier_mu);
            if (!srv->notifier_poked && !atomic_load(&srv->notifier_stop)) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += NOTIFY_TICK_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&srv->notifier_cv, &srv->notifier_mu, &ts);
            }
            srv->notifier_poked = 0;
            pthread_mutex_unlock(&srv->notifier_mu);
            if (!live_open(srv)) continue;
        }
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
    pthread_mutex_init(&srv->notifier_mu, NULL);
    pthread_cond_init(&srv->notifier_cv, NULL);
    srv->notifier_inited = 1;
    if (pthread_create(&srv->notifier, NULL, notifier_main, srv)) return -1;
    srv->notifier_started = 1;
    return 0;
}

void evs__notifier_poke(evs__srv *srv) {
    if (!srv->notifier_inited) return;
    pthread_mutex_lock(&srv->notifier_mu);
    srv->notifier_poked = 1;
    pthread_cond_signal(&srv->notifier_cv);
    pthread_mutex_unlock(&srv->notifier_mu);
}

void evs__notifier_stop(evs__srv *srv) {
    if (!srv->notifier_started) return;
    atomic_store(&srv->notifier_stop, 1);
    evs__notifier_poke(srv);
    pthread_join(srv->notifier, NULL);
    srv->notifier_started = 0;
}

void evs__notifier_free(evs__srv *srv) {
    if (!srv->notifier_inited) return;
    pthread_mutex_destroy(&srv->notifier_mu);
    pthread_cond_destroy(&srv->notifier_cv);
    srv->notifier_inited = 0;
}
