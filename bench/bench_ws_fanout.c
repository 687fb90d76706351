/*
 * bench_ws_fanout.c — WebSocket fan-out load generator for `evstore serve`.
 *
 *     bench_ws_fanout HOST PORT CLIENTS EVENTS [FROM [TYPES]]
 *
 * Opens CLIENTS WebSocket connections to ws://HOST:PORT/ws, subscribes each
 * to $all from global position FROM (default 1), and reads until every
 * client has received EVENTS {"op":"event"} messages.  With TYPES (event
 * types, comma-separated) every client filters on those types plus one
 * type of its own that matches nothing: the same events, but a distinct
 * filter per client, so the server cannot share rendering between them.  Prints one line:
 *     clients=100 events=50000 deliveries=5000000 seconds=4.21 deliveries_per_s=1187648
 * The clock starts before the first subscribe is sent and stops when the
 * last client has its EVENTS; connection set-up is not timed.
 *
 * It is written in C, on one epoll thread, and looks only at frame headers
 * and the first bytes of each payload, so that on a machine it shares with
 * the server it costs far less than the server's side of each delivery
 * (a Python client measured itself, not the server).  Exit 0 when every
 * client got its events, 1 on any error.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "ws_client.h"

#define EVENT_PREFIX "{\"op\":\"event\""
#define PREFIX_LEN (sizeof EVENT_PREFIX - 1)

typedef struct client {
    int fd;
    long got;              /* event messages received */
    int done;
    wsc_parser ps;
} client;

static void on_frame(void *ctx, int opcode, const uint8_t *pre, size_t len) {
    client *c = ctx;
    if (opcode == 1 && len >= PREFIX_LEN && memcmp(pre, EVENT_PREFIX, PREFIX_LEN) == 0) c->got++;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT CLIENTS EVENTS [FROM]\n", argv[0]);
        return 1;
    }
    const char *host = argv[1], *port = argv[2];
    int nc = atoi(argv[3]);
    long want = atol(argv[4]);
    long from = argc > 5 ? atol(argv[5]) : 1;
    if (nc <= 0 || want <= 0) return 1;
    client *cl = calloc((size_t)nc, sizeof *cl);
    int ep = epoll_create1(0);
    if (!cl || ep < 0) return 1;
    for (int i = 0; i < nc; i++) {
        cl[i].fd = wsc_connect(host, port);
        if (cl[i].fd < 0 || wsc_handshake(cl[i].fd, host)) {
            fprintf(stderr, "client %d: connect or handshake failed\n", i);
            return 1;
        }
    }
    const char *types = argc > 6 ? argv[6] : NULL;
    double t0 = wsc_now();
    for (int i = 0; i < nc; i++) {
        char sub[256], list[160] = "";
        if (types) {
            /* "A,B" -> "A","B","only-<i>" */
            size_t k = 0;
            for (const char *p = types; *p && k < sizeof list - 40; p++) {
                if (p == types) list[k++] = '"';
                if (*p == ',') {
                    memcpy(list + k, "\",\"", 3);
                    k += 3;
                } else {
                    list[k++] = *p;
                }
            }
            snprintf(list + k, sizeof list - k, "\",\"only-%d\"", i);
            snprintf(sub, sizeof sub, "{\"op\":\"subscribe\",\"from\":%ld,\"filter\":{\"type\":[%s]}}", from,
                     list);
        } else {
            snprintf(sub, sizeof sub, "{\"op\":\"subscribe\",\"from\":%ld}", from);
        }
        if (wsc_send_text(cl[i].fd, sub)) return 1;
        fcntl(cl[i].fd, F_SETFL, fcntl(cl[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cl[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &e);
    }
    static uint8_t buf[1 << 18];
    int left = nc;
    while (left > 0) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 30000);
        if (n <= 0) {
            fprintf(stderr, "no progress for 30 s (%d clients not done)\n", left);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            client *c = evs[i].data.ptr;
            for (;;) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) {
                    fprintf(stderr, "a client lost its connection after %ld events\n", c->got);
                    return 1;
                }
                wsc_feed(&c->ps, buf, (size_t)r, on_frame, c);
                if (!c->done && c->got >= want) {
                    c->done = 1;
                    left--;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    break;
                }
            }
        }
    }
    double t1 = wsc_now();
    for (int i = 0; i < nc; i++) close(cl[i].fd);
    printf("clients=%d events=%ld deliveries=%ld seconds=%.3f deliveries_per_s=%.0f\n", nc, want, (long)nc * want,
           t1 - t0, (double)nc * (double)want / (t1 - t0));
    free(cl);
    close(ep);
    return 0;
}
