/*
 * serve.c — `evstore serve`: options, the store and the daemon's lifecycle,
 * signals and the shutdown sequence.
 *
 * Signals: SIGINT and SIGTERM are blocked before any thread starts (the
 * store's writer, libmicrohttpd's workers, ours), so every thread inherits
 * the mask and only the main thread, in sigwait, ever receives them.  No
 * work happens in a signal handler.
 *
 * Shutdown, in this order, so that nothing acknowledged is lost and no
 * client is left hanging:
 *   1. shutting = 1: new requests get 503 with "Connection: close";
 *   2. stop accepting: the accept policy refuses every new connection from
 *      here on (not MHD_quiesce_daemon: with a thread pool on epoll it
 *      races the workers removing the socket from their epoll sets, and
 *      libmicrohttpd 0.9.75 aborts when it loses — seen under load here);
 *   3. wake every live subscriber: SSE streams send a final "shutdown"
 *      event and end, WebSocket clients get {"op":"shutdown"} and a close;
 *   4. wait for requests in flight (appends blocked in the store finish and
 *      their answers are sent), up to a bound;
 *   5. stop the notifier, stop the daemon, close the store (which syncs).
 * Exit status 0 when all of it went through (5 after a store failure).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/routes_bus.h"
#include "server/server.h"
#include "server/srv.h"

static const char serve_help[] =
    "Usage: evstore serve [-d DIR] [--listen ADDR:PORT] [--durability sync|batch|none] [--config FILE] [OPTIONS]\n"
    "\n"
    "Run the HTTP/JSON server on the store in DIR (created if missing): appends,\n"
    "reads, the stream list, live streams over Server-Sent Events (/subscribe)\n"
    "and WebSocket (/ws), and Prometheus metrics (/metrics).  See docs/http-api.md.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR            the store directory (default: $EVSTORE_DIR)\n"
    "  --listen ADDR:PORT       IPv4 address and port (default 127.0.0.1:2113; port 0\n"
    "                           picks a free one; the address is printed on stdout)\n"
    "  --durability MODE        sync (default): acknowledged means fdatasync'd;\n"
    "                           batch: fdatasync at most every --batch-ms; none\n"
    "  --batch-ms N             sync interval for batch mode (default 10)\n"
    "  --threads N              HTTP worker threads (default 16, at most 64)\n"
    "  --max-body BYTES         request body limit (default 32 MiB, at most 80 MiB)\n"
    "  --max-connections N      concurrent connections (default 1024, at most 4096)\n"
    "  --timeout SECONDS        idle/slow client timeout (default 30, at most 600)\n"
    "  --max-ws-message BYTES   WebSocket client message limit (default 64 KiB, at most 1 MiB)\n"
    "  --heartbeat-ms N         live stream heartbeat interval (default 15000)\n"
    "  --access-log FILE        one line per answered request, appended to FILE\n"
    "                           (- for standard error; default: none)\n"
    "  --config FILE            settings from a JSON object with the same names\n"
    "                           (dir, listen, durability, batch_ms, threads, max_body,\n"
    "                           max_connections, timeout, max_ws_message, heartbeat_ms,\n"
    "                           access_log); flags win over the file\n"
    "  -h, --help               show this help\n"
    "\n"
    "Limits can be lowered, never raised above the hard caps.  SIGINT or SIGTERM\n"
    "stops the server cleanly: in-flight appends finish, then it exits 0.\n";

typedef struct serve_opts {
    const char *dir;
    const char *listen;
    const char *durability;
    const char *access_log;
    uint64_t batch_ms, threads, max_body, max_conn, timeout_s, ws_frame, heartbeat_ms;
    const char *config;
    json_t *cfg;                /* keeps the config's strings alive */
    unsigned set;               /* OPT_* bits given as flags (flags win) */
} serve_opts;

/*
 * The options, with their config-file key, bounds and hard cap.  One table
 * serves the flags and the file, so both accept exactly the same settings.
 */
enum { OPT_DIR, OPT_LISTEN, OPT_DURABILITY, OPT_BATCH, OPT_THREADS, OPT_BODY, OPT_CONN, OPT_TIMEOUT,
       OPT_WSMSG, OPT_HEARTBEAT, OPT_ACCESS, OPT_COUNT };

typedef struct opt_def {
    const char *flag, *shrt, *key;
    uint64_t min, max;          /* numbers only (max 0: a string) */
    size_t off;
} opt_def;

static const opt_def opt_defs[OPT_COUNT] = {
    {"--dir", "-d", "dir", 0, 0, offsetof(serve_opts, dir)},
    {"--listen", NULL, "listen", 0, 0, offsetof(serve_opts, listen)},
    {"--durability", NULL, "durability", 0, 0, offsetof(serve_opts, durability)},
    {"--batch-ms", NULL, "batch_ms", 1, 60000, offsetof(serve_opts, batch_ms)},
    {"--threads", NULL, "threads", 1, EVS_SRV_MAX_THREADS, offsetof(serve_opts, threads)},
    {"--max-body", NULL, "max_body", 1024, EVS_SRV_MAX_BODY, offsetof(serve_opts, max_body)},
    {"--max-connections", NULL, "max_connections", 1, EVS_SRV_MAX_CONNECTIONS, offsetof(serve_opts, max_conn)},
    {"--timeout", NULL, "timeout", 1, EVS_SRV_MAX_TIMEOUT_S, offsetof(serve_opts, timeout_s)},
    {"--max-ws-message", NULL, "max_ws_message", 128, EVS_SRV_MAX_WS_FRAME, offsetof(serve_opts, ws_frame)},
    {"--heartbeat-ms", NULL, "heartbeat_ms", 10, 3600000, offsetof(serve_opts, heartbeat_ms)},
    {"--access-log", NULL, "access_log", 0, 0, offsetof(serve_opts, access_log)},
};

/*
 * Settings from a JSON config file: {"listen": "...", "threads": 8, ...},
 * keys as in opt_defs.  Applied only where no flag was given.  Exit code.
 */
static int load_config(serve_opts *o) {
    json_error_t je;
    o->cfg = json_load_file(o->config, JSON_REJECT_DUPLICATES, &je);
    if (!o->cfg)
        return evs__cli_fail(EVS_CLI_USAGE, "config %s: line %d, column %d: %s", o->config, je.line, je.column,
                             je.text);
    if (!json_is_object(o->cfg))
        return evs__cli_fail(EVS_CLI_USAGE, "config %s: expected a JSON object of settings", o->config);
    const char *key;
    json_t *v;
    json_object_foreach(o->cfg, key, v) {
        int i = 0;
        while (i < OPT_COUNT && strcmp(opt_defs[i].key, key) != 0) i++;
        if (i == OPT_COUNT) return evs__cli_fail(EVS_CLI_USAGE, "config %s: unknown setting \"%s\"", o->config, key);
        const opt_def *d = &opt_defs[i];
        if (o->set & (1u << i)) continue; /* the flag wins */
        if (!d->max) {
            if (!json_is_string(v) || !json_string_value(v)[0])
                return evs__cli_fail(EVS_CLI_USAGE, "config %s: %s must be a non-empty string", o->config, key);
            *(const char **)((char *)o + d->off) = json_string_value(v);
        } else {
            if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)d->min ||
                (uint64_t)json_integer_value(v) > d->max)
                return evs__cli_fail(EVS_CLI_USAGE, "config %s: %s must be an integer in %llu..%llu", o->config,
                                     key, (unsigned long long)d->min, (unsigned long long)d->max);
            *(uint64_t *)((char *)o + d->off) = (uint64_t)json_integer_value(v);
        }
    }
    return EVS_CLI_OK;
}

/* A numeric option with a hard cap: above the cap is an error, not a clamp. */
static int opt_num(evs__cli_args *a, uint64_t min, uint64_t max, uint64_t *out) {
    const char *v;
    int code = evs__cli_value(a, &v);
    if (code) return code;
    if ((code = evs__cli_u64(a, a->name, v, max, out))) return code;
    if (*out < min) return evs__cli_usage(a->cmd, "%s %s: must be at least %llu", a->name, v,
                                          (unsigned long long)min);
    return EVS_CLI_OK;
}

static int parse_opts(int argc, char **argv, serve_opts *o) {
    evs__cli_args a;
    evs__cli_args_init(&a, "serve", argc, argv);
    int k, code;
    while ((k = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (k == EVS_CLI_POSITIONAL) return evs__cli_usage("serve", "unexpected argument \"%s\"", a.arg);
        if (evs__cli_is(&a, "--help", "-h")) {
            fputs(serve_help, stdout);
            return -1;
        }
        if (evs__cli_is(&a, "--config", NULL)) {
            if ((code = evs__cli_value(&a, &o->config))) return code;
            continue;
        }
        int i = 0;
        while (i < OPT_COUNT && !evs__cli_is(&a, opt_defs[i].flag, opt_defs[i].shrt)) i++;
        if (i == OPT_COUNT) return evs__cli_unknown(&a);
        const opt_def *d = &opt_defs[i];
        if (d->max) code = opt_num(&a, d->min, d->max, (uint64_t *)((char *)o + d->off));
        else code = evs__cli_value(&a, (const char **)((char *)o + d->off));
        if (code) return code;
        o->set |= 1u << i;
    }
    if (o->config && (code = load_config(o))) return code;
    /* -d or "dir" in the config, else $EVSTORE_DIR */
    if ((code = evs__cli_dir(&a, o->dir, &o->dir))) return code;
    return EVS_CLI_OK;
}

static int parse_listen(const char *s, struct sockaddr_in *sa) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= 64) return -1;
    char host[64];
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    uint64_t port;
    if (evs__parse_u64(colon + 1, 65535, &port)) return -1;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) return -1;
    return 0;
}

/*
 * Bind and listen ourselves, so the bound address (port 0 picks one) is
 * known before any worker thread can read it.  Returns the socket or -1.
 */
static int listen_on(const struct sockaddr_in *sa, char *shown, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) || listen(fd, 1024) ||
        getsockname(fd, (struct sockaddr *)&bound, &blen)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &bound.sin_addr, host, sizeof host);
    snprintf(shown, cap, "%s:%u", host, (unsigned)ntohs(bound.sin_port));
    return fd;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    fprintf(stderr, "evstore serve: http: %s\n", msg);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

int evs__cli_serve(int argc, char **argv) {
    serve_opts o = {.listen = "127.0.0.1:2113", .durability = "sync", .batch_ms = 10, .threads = 16,
                    .max_body = EVS_SRV_DEFAULT_BODY, .max_conn = EVS_SRV_DEFAULT_CONNECTIONS,
                    .timeout_s = EVS_SRV_DEFAULT_TIMEOUT_S, .ws_frame = EVS_SRV_DEFAULT_WS_FRAME,
                    .heartbeat_ms = 15000};
    int code = parse_opts(argc, argv, &o);
    if (code) {
        json_decref(o.cfg);
        return code < 0 ? evs__cli_finish_output(EVS_CLI_OK) : code;
    }

    evs_durability mode;
    if (strcmp(o.durability, "sync") == 0) mode = EVS_DURABILITY_SYNC;
    else if (strcmp(o.durability, "batch") == 0) mode = EVS_DURABILITY_BATCH;
    else if (strcmp(o.durability, "none") == 0) mode = EVS_DURABILITY_NONE;
    else {
        code = evs__cli_usage("serve", "--durability %s: use sync, batch or none", o.durability);
        json_decref(o.cfg);
        return code;
    }
    struct sockaddr_in sa;
    if (parse_listen(o.listen, &sa)) {
        code = evs__cli_usage("serve", "--listen %s: expected IPV4ADDRESS:PORT, e.g. 127.0.0.1:2113", o.listen);
        json_decref(o.cfg);
        return code;
    }

    evs__srv *srv = calloc(1, sizeof *srv);
    if (!srv) {
        json_decref(o.cfg);
        return evs__cli_fail(EVS_CLI_IO, "out of memory");
    }
    srv->dir = o.dir;
    srv->durability_name = o.durability;
    srv->max_body = (size_t)o.max_body;
    srv->max_connections = (unsigned)o.max_conn;
    srv->timeout_s = (unsigned)o.timeout_s;
    srv->threads = (unsigned)o.threads;
    srv->ws_frame_max = (size_t)o.ws_frame;
    srv->heartbeat_ms = (unsigned)o.heartbeat_ms;
    srv->started_ns = evs__mono_ns();
    if (o.access_log && strcmp(o.access_log, "-") == 0) {
        srv->access_log = stderr;
    } else if (o.access_log) {
        if (!(srv->access_log = fopen(o.access_log, "a"))) {
            code = evs__cli_fail(EVS_CLI_USAGE, "serve: cannot open the access log %s: %s", o.access_log,
                                 strerror(errno));
            free(srv);
            json_decref(o.cfg);
            return code;
        }
        setvbuf(srv->access_log, NULL, _IOLBF, 0); /* whole lines, as they happen */
    }
    pthread_mutex_init(&srv->sub_mu, NULL);

    /* Before any thread exists: the mask is inherited by all of them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    code = EVS_CLI_OK;
    int rc = evs_store_create(&srv->store);
    if (!rc) rc = evs_store_set_durability(srv->store, mode, mode == EVS_DURABILITY_BATCH ? (unsigned)o.batch_ms : 0);
    if (rc) {
        code = evs__cli_lib_fail(rc, "serve");
        goto cleanup;
    }
    rc = evs_store_open(srv->store, o.dir, EVS_OPEN_CREATE);
    if (rc) {
        code = evs__cli_lib_fail(rc, "opening %s", o.dir);
        goto cleanup;
    }
    const char *rep = evs_store_recovery_report(srv->store);
    if (rep && *rep) fprintf(stderr, "evstore serve: recovery: %s\n", rep);

    if (evs__bus_srv_start(srv)) { /* before any request: projections resume first */
        code = EVS_CLI_IO;
        goto cleanup;
    }
    if (evs__notifier_start(srv) || evs__ws_start(srv)) {
        code = evs__cli_fail(EVS_CLI_IO, "serve: cannot start the live-stream threads");
        goto cleanup;
    }

    int lsock = listen_on(&sa, srv->listen, sizeof srv->listen);
    if (lsock < 0) {
        code = evs__cli_fail(EVS_CLI_IO, "serve: cannot listen on %s: %s", o.listen, strerror(errno));
        goto cleanup;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    srv->daemon = MHD_start_daemon(
        flags, 0, evs__http_accept, srv, evs__bus_http_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lsock,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)srv->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)EVS_SRV_HEADER_MEMORY,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_NOTIFY_COMPLETED, evs__bus_http_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, evs__http_conn_notify, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, evs__http_unescape_none, NULL,
        MHD_OPTION_END);
    if (!srv->daemon) {
        close(lsock);
        code = evs__cli_fail(EVS_CLI_IO, "serve: cannot start the HTTP daemon on %s", srv->listen);
        goto cleanup;
    }
    printf("evstore serve: listening on http://%s (data %s, durability %s)\n", srv->listen, o.dir, o.durability);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "evstore serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");

    /* 1-2: refuse new work, stop accepting */
    pthread_mutex_lock(&srv->sub_mu);
    atomic_store(&srv->shutting, 1);
    pthread_mutex_unlock(&srv->sub_mu);
    /* 3: live subscribers get their final message */
    evs__sse_wake_all(srv);
    evs__ws_stop(srv);
    evs__bus_srv_quiesce(srv); /* group long-polls end */
    /* 4: in-flight requests and the SSE goodbyes, bounded */
    for (int i = 0; i < 1000 && (atomic_load(&srv->active) > 0 || atomic_load(&srv->sse_count) > 0); i++) {
        if (i % 10 == 0) evs__sse_wake_all(srv);
        sleep_ms(10);
    }
    if (atomic_load(&srv->active) > 0)
        fprintf(stderr, "evstore serve: %ld requests still in flight at shutdown\n", atomic_load(&srv->active));

cleanup:
    /* 5 */
    evs__notifier_stop(srv);
    if (srv->daemon) {
        evs__sse_wake_all(srv); /* the daemon must not stop with suspended connections */
        MHD_stop_daemon(srv->daemon);
    }
    evs__ws_free(srv);
    evs__bus_srv_stop(srv); /* projections commit before the store closes */
    if (srv->store && code == EVS_CLI_OK) {
        char why[512];
        if (evs_store_writable(srv->store, why, sizeof why) != EVS_OK)
            code = evs__cli_fail(EVS_CLI_IO, "serve: stopped after the store failed (%s): check the disk, then "
                                             "restart; what was acknowledged is on disk", why);
    }
    evs_store_close(srv->store);
    if (srv->access_log && srv->access_log != stderr) fclose(srv->access_log);
    pthread_mutex_destroy(&srv->sub_mu);
    free(srv);
    if (code == EVS_CLI_OK) fprintf(stderr, "evstore serve: stopped cleanly\n");
    json_decref(o.cfg); /* last: o.dir and friends may point into it */
    return code;
}
