/*
 * cmdpool.h — the threads that run WebSocket commands (cmdpool.c).  The
 * WebSocket hub owns every socket on one thread and must never wait for a
 * command's fdatasync, so it hands commands over here and picks the
 * answers up when it is kicked.
 *
 * Order: the commands of one connection run one at a time, in the order
 * they were sent, so their answers come back in that order too; commands
 * of different connections run side by side (and share the store's group
 * commit).
 */
#ifndef EVS_CMDPOOL_H
#define EVS_CMDPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "server/state.h"

#define EVS_CMDPOOL_MAX_THREADS 8u
#define EVS_CMDPOOL_MAX_QUEUED 4096u   /* commands waiting, all connections */
#define EVS_CMDPOOL_MAX_PER_CONN 64u   /* commands waiting or running, one connection */

/* A finished command: the text of its {"op":"result",...} message for connection conn. */
typedef struct evs__cmddone {
    uint64_t conn;
    char *text;
    size_t len;
    struct evs__cmddone *next;
} evs__cmddone;

/*
 * Start `threads` runners into srv->cmds: 0, or -1.  notify(srv) is
 * called (from a runner) whenever an answer is ready: the WebSocket hub's
 * kick, handed in by serve.c so that this file needs nothing of ws.c.
 */
int evs__cmdpool_start(evs__srv *srv, unsigned threads, void (*notify)(evs__srv *srv));
/*
 * Queue a command (JSON text, copied) for connection conn; ref_json (may
 * be NULL) is echoed in the answer.  0, or -1 with why[] when the queue is
 * full (for the connection or for all).
 */
int evs__cmdpool_submit(evs__srv *srv, uint64_t conn, const char *json, size_t len, const char *ref_json,
                        char *why, size_t whycap);
/* The finished commands, oldest first (the caller frees them with evs__cmddone_free). */
evs__cmddone *evs__cmdpool_take(evs__srv *srv);
void evs__cmddone_free(evs__cmddone *d);
/* Stop: commands not started are dropped, running ones finish; then join.  NULL pool: no-op. */
void evs__cmdpool_stop(evs__srv *srv);

#endif
