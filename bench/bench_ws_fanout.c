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
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define EVENT_PREFIX "{\"op\":\"event\""
#define PREFIX_LEN (sizeof EVENT_PREFIX - 1)

typedef struct client {
    int fd;
    long got;              /* event messages received */
    int done;
    /* frame parser */
    uint8_t hdr[14];
    size_t hdr_len, hdr_need;
    uint64_t left;         /* payload bytes still to skip in the current frame */
    uint8_t pre[PREFIX_LEN];
    size_t pre_len;        /* payload bytes seen of the current frame, up to PREFIX_LEN */
    int text;
} client;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res)) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Handshake on a blocking socket; bytes after the 101 head are not expected before we subscribe. */
static int handshake(int fd, const char *host) {
    char req[512], buf[2048];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     host);
    if (write_all(fd, req, (size_t)n)) return -1;
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n")) return strncmp(buf, "HTTP/1.1 101", 12) == 0 ? 0 : -1;
    }
    return -1;
}

/* A masked client text frame (the mask is zero: allowed, and XOR with 0 is a no-op). */
static int send_text(int fd, const char *msg) {
    uint8_t f[300];
    size_t n = strlen(msg), h;
    if (n > 256) return -1;
    f[0] = 0x81;
    if (n < 126) {
        f[1] = (uint8_t)(0x80 | n);
        h = 2;
    } else {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(n >> 8);
        f[3] = (uint8_t)n;
        h = 4;
    }
    memset(f + h, 0, 4);
    memcpy(f + h + 4, msg, n);
    return write_all(fd, f, h + 4 + n);
}

/* Feed received bytes through the frame parser. */
static void feed(client *c, const uint8_t *p, size_t n) {
    while (n) {
        if (c->left == 0 && c->hdr_need == 0) { /* start of a frame */
            c->hdr_len = 0;
            c->hdr_need = 2;
        }
        if (c->hdr_need) {
            while (n && c->hdr_len < c->hdr_need) {
                c->hdr[c->hdr_len++] = *p++;
                n--;
                if (c->hdr_len == 2) {
                    uint8_t l = c->hdr[1] & 0x7f;
                    c->hdr_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0);
                }
            }
            if (c->hdr_len < c->hdr_need) return;
            uint64_t len = c->hdr[1] & 0x7f;
            if (len == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len == 127) {
                len = 0;
                for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i];
            }
            c->text = (c->hdr[0] & 0x0f) == 1;
            c->left = len;
            c->pre_len = 0;
            c->hdr_need = 0;
            if (len == 0) continue;
        }
        size_t take = n < c->left ? n : (size_t)c->left;
        while (c->pre_len < PREFIX_LEN && take) {
            c->pre[c->pre_len++] = *p++;
            n--;
            take--;
            c->left--;
            if (c->pre_len == PREFIX_LEN && c->text && memcmp(c->pre, EVENT_PREFIX, PREFIX_LEN) == 0) c->got++;
        }
        p += take;
        n -= take;
        c->left -= take;
    }
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
        cl[i].fd = connect_to(host, port);
        if (cl[i].fd < 0 || handshake(cl[i].fd, host)) {
            fprintf(stderr, "client %d: connect or handshake failed\n", i);
            return 1;
        }
    }
    const char *types = argc > 6 ? argv[6] : NULL;
    double t0 = now_s();
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
        if (send_text(cl[i].fd, sub)) return 1;
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
                feed(c, buf, (size_t)r);
                if (!c->done && c->got >= want) {
                    c->done = 1;
                    left--;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    break;
                }
            }
        }
    }
    double t1 = now_s();
    for (int i = 0; i < nc; i++) close(cl[i].fd);
    printf("clients=%d events=%ld deliveries=%ld seconds=%.3f deliveries_per_s=%.0f\n", nc, want, (long)nc * want,
           t1 - t0, (double)nc * (double)want / (t1 - t0));
    free(cl);
    close(ep);
    return 0;
}
