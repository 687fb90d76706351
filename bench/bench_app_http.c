/*
 * bench_app_http.c — commands over HTTP against the same commands
 * in-process, in the same run (issue 9: p95 command latency over HTTP
 * <= 10 ms).
 *
 *     bench_app_http EVSTORE_BIN
 *
 * One store (durability sync, the default), one app directory holding a
 * Lua counter aggregate (`Add {k}` appends one `Added` event to
 * "counter-{id}", 10,000 ids drawn at random), and for R rounds, in turn:
 *   HTTP        `EVSTORE_BIN serve -d STORE --app-dir APPDIR` and keep-alive
 *               clients, each on its own connection and thread, sending
 *               POST /commands/Add with a command id (so the idempotency
 *               lookup is paid as by a real client): 1 client, then 8;
 *   in-process  the store opened by this program with the same app
 *               directory (evs_app_load_dir), evs_app_execute_json of the
 *               same JSON bodies from 1 thread, then 8.
 * The two sides take turns at going first.  Each run lasts S seconds;
 * latency is timed per command by the client, and CPU per command is read
 * for the process holding the store (the server from /proc, or this one)
 * and, over HTTP, for the clients (this process) apart
 * (HTTP: request written to answer read).  Per round: throughput and p50 /
 * p95 / p99 of both sides, the ratio HTTP / in-process of the 8-client
 * throughput and of the 1-client p95; then the medians over the rounds.
 *
 * Environment: EVS_BENCH_ROUNDS (default 5), EVS_BENCH_SECONDS (default 3;
 * EVS_BENCH_QUICK=1: 1 and 2 rounds), EVS_BENCH_DIR (default /tmp).  The
 * clients share the 2 cores with the server, as they do in-process.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "evstore_app.h"
#include "serve_child.h"
#include "testutil.h"
#include "ws_client.h"

#define AGGS 10000
#define MAX_CLIENTS 8
#define MAX_LAT 1000000

static const char *counter_lua =
    "return {\n"
    "  init = function() return { n = 0 } end,\n"
    "  evolve = { Added = function(s, e) s.n = s.n + e.data.k end },\n"
    "  commands = {\n"
    "    Add = { fields = { k = 'integer' }, decide = function(s, c)\n"
    "      return { { type = 'Added', data = { k = c.data.k } } } end },\n"
    "  },\n"
    "}\n";

static double seconds = 3.0;
static unsigned epoch;   /* command ids differ between runs */
static evs_app *app;     /* in-process runs */
static const char *port; /* HTTP runs */

typedef struct client {
    int idx, http;
    uint64_t rng;
    long ops, failed;
    double *lat;
    long nlat;
} client;

static pthread_barrier_t bar;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One request on a keep-alive connection: the status, or -1 when the connection failed. */
static int http_post(int fd, const char *path, const char *body, char *buf, size_t cap) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     path, strlen(body), body);
    if (wsc_write_all(fd, req, (size_t)n)) return -1;
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (!end && got >= cap - 1) return -1;
    }
    const char *cl = strcasestr(buf, "content-length:");
    size_t want = (size_t)(end + 4 - buf) + (cl ? (size_t)strtoul(cl + 15, NULL, 10) : 0);
    while (got < want) {
        if (want >= cap) return -1;
        ssize_t r = read(fd, buf + got, want - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    buf[got] = 0;
    return atoi(buf + 9);
}

static void *client_main(void *arg) {
    client *c = arg;
    char body[160], resp[4096];
    int fd = -1;
    if (c->http) {
        fd = wsc_connect("127.0.0.1", port);
        int one = 1;
        if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    pthread_barrier_wait(&bar);
    if (c->http && fd < 0) {
        c->failed++;
        return NULL;
    }
    double end = wsc_now() + seconds;
    while (wsc_now() < end) {
        c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
        snprintf(body, sizeof body, "{\"command_id\":\"b%u-%d-%ld\",\"aggregate_id\":\"%d\",\"data\":{\"k\":%d}}", epoch,
                 c->idx, c->ops, (int)(c->rng % AGGS), 1 + (int)(c->rng % 1000));
        double t0 = wsc_now();
        int ok;
        if (c->http) {
            int st = http_post(fd, "/commands/Add", body, resp, sizeof resp);
            if (st < 0) {
                c->failed++;
                break;
            }
            ok = st == 201;
        } else {
            evs_command_result r;
            ok = evs_app_execute_json(app, "Add", body, strlen(body), &r) == EVS_OK;
            if (ok) {
                ok = r.outcome == EVS_CMD_ACCEPTED;
                evs_command_result_free(&r);
            }
        }
        double dt = wsc_now() - t0;
        if (!ok) c->failed++;
        if (c->nlat < MAX_LAT) c->lat[c->nlat++] = dt * 1e3;
        c->ops++;
    }
    if (fd >= 0) close(fd);
    return NULL;
}

typedef struct figures {
    double rate, p50, p95, p99;
    double cpu_us, client_us; /* CPU per command: the store's process (server or this one), the HTTP clients */
} figures;

static pid_t server_pid; /* HTTP runs */

/* CPU seconds used so far: this process (pid 0), or the server's (from /proc). */
static double cpu_seconds(pid_t pid) {
    if (!pid) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               (double)ru.ru_stime.tv_usec / 1e6;
    }
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* fields after the command name: state is field 3, utime 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

static figures run(int nclients, int http) {
    client cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    epoch++;
    pthread_barrier_init(&bar, NULL, (unsigned)nclients + 1);
    for (int i = 0; i < nclients; i++) {
        cl[i] = (client){.idx = i, .http = http, .rng = 88172645463325252ull + (uint64_t)(i + 1) * 7919 * epoch};
        cl[i].lat = malloc(MAX_LAT * sizeof(double));
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    pthread_barrier_wait(&bar);
    double t0 = wsc_now(), cpu0 = cpu_seconds(http ? server_pid : 0), self0 = cpu_seconds(0);
    long ops = 0, nl = 0, failed = 0;
    double *all = malloc((size_t)nclients * MAX_LAT * sizeof(double));
    for (int i = 0; i < nclients; i++) {
        pthread_join(th[i], NULL);
        ops += cl[i].ops;
        failed += cl[i].failed;
        memcpy(all + nl, cl[i].lat, (size_t)cl[i].nlat * sizeof(double));
        nl += cl[i].nlat;
        free(cl[i].lat);
    }
    double secs = wsc_now() - t0;
    double cpu = cpu_seconds(http ? server_pid : 0) - cpu0, self = cpu_seconds(0) - self0;
    pthread_barrier_destroy(&bar);
    if (failed) {
        fprintf(stderr, "bench_app_http: %ld of %ld commands failed (%s)\n", failed, ops, http ? "HTTP" : "in-process");
        exit(1);
    }
    qsort(all, (size_t)nl, sizeof *all, cmp_d);
    figures f = {(double)ops / secs, all[(size_t)(nl * 0.50)], all[(size_t)(nl * 0.95)], all[(size_t)(nl * 0.99)],
                 ops ? cpu * 1e6 / (double)ops : 0, http && ops ? self * 1e6 / (double)ops : 0};
    free(all);
    return f;
}

static pid_t start_server(const char *bin, const char *dir, const char *appdir, char *port_out, size_t cap) {
    char *argv[] = {(char *)bin, "serve", "-d", (char *)dir, "--app-dir", (char *)appdir, "--listen", "127.0.0.1:0", NULL};
    int p = 0;
    pid_t pid = serve_child_start(argv, &p);
    if (pid > 0) snprintf(port_out, cap, "%d", p);
    return pid;
}

static void show(const char *what, figures f) {
    printf("    %-22s %8.0f commands/s   p50 %6.2f ms  p95 %6.2f ms  p99 %6.2f ms   CPU/command %4.0f us", what, f.rate,
           f.p50, f.p95, f.p99, f.cpu_us);
    if (f.client_us) printf(" (+ clients %.0f us)", f.client_us);
    printf("\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_app_http EVSTORE_BIN\n");
        return 2;
    }
    const char *q = getenv("EVS_BENCH_QUICK"), *r = getenv("EVS_BENCH_ROUNDS"), *sec = getenv("EVS_BENCH_SECONDS");
    int quick = q && *q && strcmp(q, "0") != 0;
    int rounds = r ? atoi(r) : quick ? 2 : 5;
    if (rounds < 1) rounds = 1;
    if (rounds > 16) rounds = 16;
    seconds = sec ? atof(sec) : quick ? 1.0 : 3.0;
    const char *base = getenv("EVS_BENCH_DIR");
    char dir[4096], store[4200], appdir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/bench-app-http-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(appdir, sizeof appdir, "%s/app", dir);
    snprintf(path, sizeof path, "%s/counter.lua", appdir);
    mkdir(appdir, 0755);
    FILE *f = fopen(path, "w");
    if (!f || fputs(counter_lua, f) < 0 || fclose(f)) {
        perror(path);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("bench_app_http: %d rounds of %.1f s per run, %d counter aggregates (Lua), durability sync, "
           "command ids sent\n", rounds, seconds, AGGS);
    double ratio8[16], ratio_p95[16], h1p95[16], h8p95[16], i1p95[16], h8r[16], i8r[16], h1r[16], i1r[16];
    for (int i = 0; i < rounds; i++) {
        figures h1, h8, i1, i8;
        /* the sides take turns at going first, so a trend in the disk's speed is shared */
        for (int side = 0; side < 2; side++) {
            if ((side == 0) == (i % 2 == 0)) {
                char portbuf[16];
                pid_t pid = start_server(argv[1], store, appdir, portbuf, sizeof portbuf);
                if (pid < 0) return 1;
                port = portbuf;
                server_pid = pid;
                h1 = run(1, 1);
                h8 = run(8, 1);
                kill(pid, SIGTERM);
                int status = 0;
                waitpid(pid, &status, 0);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fprintf(stderr, "bench_app_http: the server exited with status %d\n", status);
                    return 1;
                }
            } else {
                evs_store *s = tu_open(store, EVS_DURABILITY_SYNC, 0);
                if (evs_app_open(s, NULL, NULL, &app) || evs_app_load_dir(app, appdir)) {
                    fprintf(stderr, "bench_app_http: %s\n", evs_errmsg());
                    return 1;
                }
                i1 = run(1, 0);
                i8 = run(8, 0);
                evs_app_close(app);
                evs_store_close(s);
            }
        }
        printf("  round %d/%d\n", i + 1, rounds);
        show("HTTP, 1 client", h1);
        show("in-process, 1 client", i1);
        show("HTTP, 8 clients", h8);
        show("in-process, 8 clients", i8);
        ratio8[i] = h8.rate / i8.rate;
        ratio_p95[i] = h1.p95 / i1.p95;
        h1p95[i] = h1.p95, h8p95[i] = h8.p95, i1p95[i] = i1.p95;
        h8r[i] = h8.rate, i8r[i] = i8.rate, h1r[i] = h1.rate, i1r[i] = i1.rate;
        printf("    throughput HTTP / in-process, 8 clients: %.2fx; p95 HTTP / in-process, 1 client: %.2fx\n",
               ratio8[i], ratio_p95[i]);
    }
    double mr8 = median(ratio8, rounds), mrp = median(ratio_p95, rounds);
    printf("median: HTTP p95 %.2f ms (1 client), %.2f ms (8 clients) [target <= 10 ms: %s]; in-process p95 %.2f ms\n",
           median(h1p95, rounds), median(h8p95, rounds), median(h1p95, rounds) <= 10 && median(h8p95, rounds) <= 10
                                                               ? "met" : "not met",
           median(i1p95, rounds));
    printf("median: 8 clients %.0f commands/s over HTTP vs %.0f in-process: %.2fx; 1 client %.0f vs %.0f; "
           "p95 ratio (1 client) %.2fx\n",
           median(h8r, rounds), median(i8r, rounds), mr8, median(h1r, rounds), median(i1r, rounds), mrp);
    tu_rmrf(dir);
    return tu_failures + tu_checks; /* 0: the bench asserts nothing, it measures */
}
