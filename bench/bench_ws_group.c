/*
 * bench_ws_group.c — competing consumers over WebSocket, with acks (issue 4).
 *
 *     bench_ws_group EVSTORE_BIN
 *
 * Builds a store of N events (appends of 10 events to 1,000 order streams,
 * the shape of an online shop's writes), then alternates, for R rounds:
 *   in-process — the baseline: C consumer threads on the library's group
 *                (evs_group_next + evs_group_ack, one ack per event);
 *   WebSocket  — `EVSTORE_BIN serve` on the same store, C consumers each on
 *                its own connection ({"op":"consume"}), acking in batches of
 *                B deliveries ({"op":"ack","deliveries":[...]}) and whenever
 *                the socket has nothing more to read.
 * Each round uses a fresh group (max_in_flight 1000, from position 1) and
 * ends when all N events are acked.  Prints each round, the medians, and the
 * WebSocket figure as a ratio of the in-process one.
 *
 * Environment: EVS_BENCH_GROUP_EVENTS (N, default 200,000; EVS_BENCH_QUICK=1:
 * 20,000), EVS_BENCH_GROUP_CONSUMERS (C, default 4), EVS_BENCH_GROUP_ROUNDS
 * (R, default 3), EVS_BENCH_GROUP_ACK_BATCH (B, default 100).  The store is
 * built in $EVS_BENCH_DIR (default /tmp), durability none, and removed at
 * the end.  The client reads only frame headers and the first bytes of each
 * delivery (bench/ws_client.h): it shares the cores with the server.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "evstore_bus.h"
#include "serve_child.h"
#include "testutil.h"
#include "ws_client.h"

#define MAX_CONSUMERS 64
#define MAX_BATCH 1000

static uint64_t n_events;

/* ------------------------------------------------------------ in-process */

typedef struct inproc {
    evs_group *g;
    _Atomic uint64_t acked;
    int failed;
} inproc;

static void *inproc_consumer(void *arg) {
    static _Atomic int seq;
    inproc *ip = arg;
    char name[32];
    snprintf(name, sizeof name, "c%d", atomic_fetch_add(&seq, 1));
    evs_group_member *m;
    if (evs_group_join(ip->g, name, &m)) {
        fprintf(stderr, "join: %s\n", evs_errmsg());
        ip->failed = 1;
        return NULL;
    }
    while (atomic_load(&ip->acked) < n_events) {
        evs_delivery *d;
        int rc = evs_group_next(m, 100, &d);
        if (rc == EVS_ETIMEDOUT) continue;
        if (rc || evs_group_ack(m, d->id)) {
            fprintf(stderr, "next/ack: %s\n", evs_errmsg());
            ip->failed = 1;
            evs_delivery_free(d);
            break;
        }
        evs_delivery_free(d);
        atomic_fetch_add(&ip->acked, 1);
    }
    evs_group_leave(m);
    return NULL;
}

static double run_inproc(const char *dir, int round, int nc) {
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    evs_bus *b;
    if (!s || evs_bus_open(s, &b)) {
        fprintf(stderr, "open: %s\n", evs_errmsg());
        exit(1);
    }
    char name[32];
    snprintf(name, sizeof name, "inproc-%d", round);
    evs_group_config c;
    evs_group_config_init(&c);
    c.name = name;
    c.max_in_flight = 1000;
    inproc ip = {0};
    if (evs_group_create(b, &c) || evs_group_open(b, name, NULL, &ip.g)) {
        fprintf(stderr, "group: %s\n", evs_errmsg());
        exit(1);
    }
    pthread_t th[MAX_CONSUMERS];
    double t0 = wsc_now();
    for (int i = 0; i < nc; i++) pthread_create(&th[i], NULL, inproc_consumer, &ip);
    for (int i = 0; i < nc; i++) pthread_join(th[i], NULL);
    double dt = wsc_now() - t0;
    evs_group_close(ip.g);
    evs_bus_close(b);
    evs_store_close(s);
    if (ip.failed) exit(1);
    return (double)n_events / dt;
}

/* ------------------------------------------------------------- WebSocket */

typedef struct wsc {
    int fd;
    wsc_parser ps;
    size_t npend;
    uint64_t pos[MAX_BATCH];
    uint32_t att[MAX_BATCH];
    int failed;
} wsc;

static _Atomic uint64_t ws_acked;
static size_t ack_batch;

static void flush_acks(wsc *c) {
    if (!c->npend) return;
    static char msg[64 + MAX_BATCH * 64];
    static uint8_t frame[sizeof msg + 14];
    size_t k = (size_t)snprintf(msg, sizeof msg, "{\"op\":\"ack\",\"deliveries\":[");
    for (size_t i = 0; i < c->npend; i++)
        k += (size_t)snprintf(msg + k, sizeof msg - k, "%s{\"position\":%llu,\"attempt\":%u}", i ? "," : "",
                              (unsigned long long)c->pos[i], c->att[i]);
    k += (size_t)snprintf(msg + k, sizeof msg - k, "]}");
    if (k >= sizeof msg) { /* cannot happen: 64 bytes per delivery is room enough */
        c->failed = 1;
        return;
    }
    if (wsc_write_all(c->fd, frame, wsc_frame(frame, msg, k))) c->failed = 1;
    c->npend = 0;
}

static int prefix(const uint8_t *p, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n >= l && memcmp(p, lit, l) == 0;
}

static void on_frame(void *ctx, int opcode, const uint8_t *pre, size_t len) {
    wsc *c = ctx;
    static const char dl[] = "{\"op\":\"delivery\",\"delivery\":{\"position\":";
    static const char ak[] = "{\"op\":\"acked\",\"count\":";
    if (opcode != 1) return;
    char tmp[WSC_PRE + 1];
    memcpy(tmp, pre, len);
    tmp[len] = '\0';
    if (prefix(pre, len, dl)) {
        char *e;
        uint64_t pos = strtoull(tmp + sizeof dl - 1, &e, 10);
        const char *a = strstr(e, "\"attempt\":");
        if (!a) {
            c->failed = 1;
            return;
        }
        c->pos[c->npend] = pos;
        c->att[c->npend] = (uint32_t)strtoul(a + 10, NULL, 10);
        if (++c->npend >= ack_batch) flush_acks(c);
    } else if (prefix(pre, len, ak)) {
        atomic_fetch_add(&ws_acked, strtoull(tmp + sizeof ak - 1, NULL, 10));
    } else if (prefix(pre, len, "{\"op\":\"error\"") || prefix(pre, len, "{\"op\":\"left\"")) {
        fprintf(stderr, "server: %s\n", tmp);
        c->failed = 1;
    }
}

/* `serve` on dir (durability none); *port from its first line. */
static pid_t start_server(const char *bin, const char *dir, int *port) {
    char *argv[] = {(char *)bin, "serve", "-d", (char *)dir, "--listen", "127.0.0.1:0", "--durability", "none", NULL};
    return serve_child_start(argv, port);
}

static int put_group(const char *port, const char *name) {
    int fd = wsc_connect("127.0.0.1", port);
    if (fd < 0) return -1;
    const char *body = "{\"from\":1,\"max_in_flight\":1000}";
    char req[512], resp[256];
    int n = snprintf(req, sizeof req,
                     "PUT /groups/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     name, strlen(body), body);
    int ok = wsc_write_all(fd, req, (size_t)n) == 0;
    ssize_t r = ok ? read(fd, resp, sizeof resp - 1) : -1;
    close(fd);
    if (r < 12) return -1;
    resp[r] = '\0';
    return strncmp(resp + 9, "201", 3) == 0 ? 0 : -1;
}

static double run_ws(const char *bin, const char *dir, int round, int nc) {
    int port;
    pid_t pid = start_server(bin, dir, &port);
    if (pid < 0) exit(1);
    char ports[16], name[32];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(name, sizeof name, "ws-%d", round);
    if (put_group(ports, name)) {
        fprintf(stderr, "PUT /groups/%s failed\n", name);
        exit(1);
    }
    static wsc cl[MAX_CONSUMERS];
    memset(cl, 0, sizeof cl);
    int ep = epoll_create1(0);
    for (int i = 0; i < nc; i++) {
        cl[i].fd = wsc_connect("127.0.0.1", ports);
        if (cl[i].fd < 0 || wsc_handshake(cl[i].fd, "127.0.0.1")) {
            fprintf(stderr, "consumer %d: connect or handshake failed\n", i);
            exit(1);
        }
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cl[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &e);
    }
    atomic_store(&ws_acked, 0);
    double t0 = wsc_now();
    for (int i = 0; i < nc; i++) {
        char msg[128];
        snprintf(msg, sizeof msg, "{\"op\":\"consume\",\"group\":\"%s\",\"consumer\":\"c%d\"}", name, i);
        if (wsc_send_text(cl[i].fd, msg)) exit(1);
    }
    static uint8_t buf[1 << 18];
    while (atomic_load(&ws_acked) < n_events) {
        struct epoll_event evs[MAX_CONSUMERS];
        int n = epoll_wait(ep, evs, MAX_CONSUMERS, 30000);
        if (n <= 0) {
            fprintf(stderr, "no progress for 30 s (%llu of %llu acked)\n", (unsigned long long)atomic_load(&ws_acked),
                    (unsigned long long)n_events);
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            wsc *c = evs[i].data.ptr;
            for (;;) {
                ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r <= 0) {
                    fprintf(stderr, "a consumer lost its connection\n");
                    exit(1);
                }
                wsc_feed(&c->ps, buf, (size_t)r, on_frame, c);
            }
            flush_acks(c); /* nothing more to read now: answer what came */
            if (c->failed) exit(1);
        }
    }
    double dt = wsc_now() - t0;
    for (int i = 0; i < nc; i++) close(cl[i].fd);
    close(ep);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return (double)n_events / dt;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t env_u64(const char *name, uint64_t dflt) {
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EVSTORE_BIN\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    const char *q = getenv("EVS_BENCH_QUICK");
    n_events = env_u64("EVS_BENCH_GROUP_EVENTS", q && *q == '1' ? 20000 : 200000);
    if (n_events < 1000) n_events = 1000;
    n_events -= n_events % 1000;
    int nc = (int)env_u64("EVS_BENCH_GROUP_CONSUMERS", 4);
    int rounds = (int)env_u64("EVS_BENCH_GROUP_ROUNDS", 3);
    ack_batch = (size_t)env_u64("EVS_BENCH_GROUP_ACK_BATCH", 100);
    if (nc < 1 || nc > MAX_CONSUMERS || rounds < 1 || rounds > 15 || ack_batch < 1 || ack_batch > MAX_BATCH) {
        fprintf(stderr, "bad settings: consumers 1..%d, rounds 1..15, ack batch 1..%d\n", MAX_CONSUMERS, MAX_BATCH);
        return 2;
    }
    char *dir = tu_tempdir("bench-wsgroup");
    evs_store *s = tu_open(dir, EVS_DURABILITY_NONE, 0);
    static evs_event_in ev[10];
    for (int i = 0; i < 10; i++) ev[i] = tu_event("OrderPlaced", "{\"order\":42,\"total\":\"19.90\",\"items\":3}");
    for (uint64_t i = 0; i < n_events / 10; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "order-%llu", (unsigned long long)(i % 1000));
        evs_append_result r;
        if (evs_append(s, stream, EVS_EXPECT_ANY, ev, 10, &r, NULL)) {
            fprintf(stderr, "append: %s\n", evs_errmsg());
            return 1;
        }
    }
    evs_store_close(s);
    printf("== bench_ws_group: %llu events, %d consumers, acks in batches of %zu (WebSocket) ==\n",
           (unsigned long long)n_events, nc, ack_batch);
    double inp[15], ws[15];
    for (int r = 0; r < rounds; r++) {
        inp[r] = run_inproc(dir, r, nc);
        ws[r] = run_ws(argv[1], dir, r, nc);
        printf("round %d: in-process %.0f events/s, WebSocket %.0f events/s (%.2fx)\n", r + 1, inp[r], ws[r],
               ws[r] / inp[r]);
        fflush(stdout);
    }
    qsort(inp, (size_t)rounds, sizeof inp[0], cmpd);
    qsort(ws, (size_t)rounds, sizeof ws[0], cmpd);
    printf("group consumers over WebSocket with acks: median %.0f events/s = %.2fx the in-process group "
           "(median %.0f events/s)\n",
           ws[rounds / 2], ws[rounds / 2] / inp[rounds / 2], inp[rounds / 2]);
    tu_rmrf(dir);
    free(dir);
    (void)tu_checks, (void)tu_failures;
    return 0;
}
