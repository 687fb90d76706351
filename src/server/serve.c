/*
 * serve.c — one run of the server: the store and the daemon's lifecycle,
 * signals and the shutdown sequence.  The settings come checked from the
 * command (src/cli/cli_serve.c reads flags and the config file).
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
 *   5. stop the notifier, stop the daemon, let the WebSocket commands that
 *      are running finish (queued ones are dropped), stop the saga engine
 *      (each worker finishes the advance it is in), close the application
 *      layer (queued snapshots are written), the consumers, the schema
 *      registry and the store (which syncs).
 * Exit status 0 when all of it went through (5 after a store failure, or
 * when the close's final sync failed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "store/store_access.h"
#include "auth/keys.h"
#include "core/core.h"
#include "evstore_crypt.h"
#include "evstore_schema.h"
#include "server/app_host.h"
#include "server/cmdpool.h"
#include "server/consumers.h"
#include "server/http.h"
#include "server/notifier.h"
#include "server/routes_scavenge.h"
#include "server/nats_host.h"
#include "server/saga_host.h"
#include "evstore_crypt.h"
#include "server/server.h"
#include "server/sse.h"
#include "server/state.h"
#include "server/tls.h"
#include "server/ws.h"

#define HEADER_MEMORY ((size_t)32 << 10)  /* per connection: headers and the send buffer */

/*
 * Bind and listen ourselves, so the bound address (port 0 picks one) is
 * known before any worker thread can read it.  IPv4 or IPv6; the address
 * is shown as a URL's authority ("127.0.0.1:2113", "[::1]:2113").  Returns
 * the socket or -1.
 */
static int listen_on(const struct sockaddr_storage *sa, socklen_t salen, char *shown, size_t cap) {
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (bind(fd, (const struct sockaddr *)sa, salen) || listen(fd, 1024) ||
        getsockname(fd, (struct sockaddr *)&bound, &blen)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    char host[INET6_ADDRSTRLEN];
    if (bound.ss_family == AF_INET6) {
        const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &b6->sin6_addr, host, sizeof host);
        snprintf(shown, cap, "[%s]:%u", host, (unsigned)ntohs(b6->sin6_port));
    } else {
        const struct sockaddr_in *b4 = (const struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &b4->sin_addr, host, sizeof host);
        snprintf(shown, cap, "%s:%u", host, (unsigned)ntohs(b4->sin_port));
    }
    return fd;
}

/*
 * libmicrohttpd's own messages.  A client that goes away in the middle of
 * an answer is ordinary for live streams (a browser tab closes, tail gets
 * Ctrl-C): its connection is closed and its subscriber freed, and that is
 * no error of the server's, so those messages are not printed.
 */
static int client_went_away(const char *msg) {
    /* (the last: our content readers end that way when their client hung up,
       and say so themselves when it was a real failure) */
    static const char *const gone[] = {"forcibly closed by remote peer", "no longer available for sending",
                                       "Connection reset by peer", "Broken pipe", "remote side closed",
                                       "application error generating response"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        if (strstr(msg, gone[i])) return 1;
    return 0;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (client_went_away(msg)) return;
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    fprintf(stderr, "evstore serve: http: %s\n", msg);
}

/*
 * DIR/SERVE: "PID URL\n" while this server holds the store, so that an
 * evstore command refused by the store's lock can name the --url to use
 * instead (docs/format.md).  Written whole (rename) and only informative:
 * a failure to write it is not worth stopping for.
 */
static void serve_file_write(const char *dir, const char *scheme, const char *listen) {
    char path[4096], tmp[4112];
    snprintf(path, sizeof path, "%s/SERVE", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    int ok = fprintf(f, "%ld %s://%s\n", (long)getpid(), scheme, listen) > 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

static void serve_file_remove(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/SERVE", dir);
    unlink(path);
}

/* 127.0.0.0/8, ::1, or ::ffff:127.x.y.z: only this machine can connect. */
static int is_loopback(const struct sockaddr_storage *sa) {
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

int evs__serve(const evs__serve_config *cfg, char *why, size_t whycap) {
    int ret = EVS_OK;
    why[0] = '\0';
    evs__srv *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(why, whycap, "out of memory");
        return EVS_ENOMEM;
    }
    /* what logs and /info show: a PostgreSQL URL's password never appears */
    srv->dir = evs__engine_mask_url(cfg->dir, srv->dir_shown, sizeof srv->dir_shown);
    srv->durability_name = cfg->durability_name;
    srv->max_body = cfg->max_body;
    srv->max_connections = cfg->max_connections;
    srv->timeout_s = cfg->timeout_s;
    srv->threads = cfg->threads;
    srv->ws_frame_max = cfg->ws_frame_max;
    srv->heartbeat_ms = cfg->heartbeat_ms;
    srv->started_ns = evs__mono_ns();
    srv->access_log = cfg->access_log;

    /* Before any thread exists: the mask is inherited by all of them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP); /* reloads the TLS certificate (tls.c); ignored without TLS */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = evs_store_create(&srv->store);
    if (!rc) rc = evs_store_use_master_key(srv->store, cfg->master_key_file);
    if (!rc)
        rc = evs_store_set_durability(srv->store, cfg->durability,
                                      cfg->durability == EVS_DURABILITY_BATCH ? cfg->batch_ms : 0);
    if (!rc && cfg->segment_size) rc = evs_store_set_segment_size(srv->store, cfg->segment_size);
    if (rc) {
        snprintf(why, whycap, "serve: %s", evs_errmsg());
        ret = EVS_EIO; /* exit 5, as a store that does not open (below) */
        goto cleanup;
    }
    rc = evs_store_open(srv->store, cfg->dir, EVS_OPEN_CREATE);
    if (rc) {
        snprintf(why, whycap, "opening %s: %s", srv->dir, evs_errmsg());
        /* exit 5 ("the store could not be opened", serve --help) whatever the cause:
           4 is for --listen/TLS, and serve has no 2 */
        ret = EVS_EIO;
        goto cleanup;
    }
    const char *rep = evs_store_recovery_report(srv->store);
    if (rep && *rep) fprintf(stderr, "evstore serve: recovery: %s\n", rep);
    /* Another storage engine (engine/engine.h) runs all of what follows too: the store's core,
       API keys, the schema registry, the consumers, the application layer and the sagas keep
       their state in its database, shared by every server on it (each projection and the sagas
       run in one server at a time, the others standing by for the lease) */
    srv->engine = evs__store_engine_name(srv->store);
    /* API keys: the secret is made on first use (DIR/keys.secret; on another engine in its
       database, shared by every server on it); auth is on with --auth, or by itself when the
       store has keys (a store whose keys were made is never served open by accident) */
    if ((rc = evs__keys_open_store(srv->store, 1, &srv->keys))) {
        snprintf(why, whycap, "serve: API keys of %s: %s", srv->dir, evs_errmsg());
        ret = rc == EVS_ENOMEM ? rc : EVS_EIO; /* exit 5, whatever is wrong with the files */
        goto cleanup;
    }
    srv->auth = cfg->auth || evs__keys_active(srv->keys) > 0;
    if (!srv->auth && !cfg->insecure && !is_loopback(&cfg->addr)) {
        snprintf(why, whycap,
                 "serve: refusing to listen on %s without authentication: anyone who can reach it could read "
                 "and write every stream.  Create a key (evstore key create --role admin -d %s) and give --auth, "
                 "or give --insecure to serve it open anyway",
                 cfg->listen, srv->dir);
        ret = EVS_EINVAL;
        goto cleanup;
    }
    /* Always, before anything can append (consumers, the app, requests):
       every append through this server is checked by the registry, and
       the schema routes need it even on a store that has no schemas yet
       (DIR/schemas/ is created then; types without schemas cost one lookup).
       On another engine its tables are in the database, shared by every
       server on it (src/schema/registry.c, "Sharing"). */
    if ((rc = evs_schema_open(srv->store, &srv->schemas))) {
        snprintf(why, whycap, "serve: schema registry of %s: %s", srv->dir, evs_errmsg());
        ret = rc;
        goto cleanup;
    }
    if (evs__consumers_start(srv->store, srv->dir, cfg->group_idle_ms, evs_schema_upcast_map(srv->schemas),
                             &srv->bus, why, whycap)) { /* before any request: projections resume first */
        ret = EVS_EIO;
        goto cleanup;
    }
    if ((rc = evs__app_start(srv, cfg, why, whycap))) { /* after the consumers: queries read their state */
        ret = rc;
        goto cleanup;
    }
    if ((rc = evs__sagas_start(srv, cfg, why, whycap))) { /* after the app: its workers send commands */
        ret = rc;
        goto cleanup;
    }
    if ((rc = evs__nats_host_start(srv, cfg, why, whycap))) { /* the relay reads the store; the importer appends */
        ret = rc;
        goto cleanup;
    }
    /* The command runners, then the WebSocket hub, then the notifier: the hub's thread takes the
       runners' results (srv->cmds), and the notifier kicks the hub (srv->ws) as soon as the head
       moves, so each starts after what it calls into (a notifier started first raced the hub's
       start: TSan, it_pg_servers).  A runner kicks the hub only after a command, which only the
       hub hands it.  The cleanup below stops them in the reverse order. */
    if (evs__cmdpool_start(srv, srv->threads < EVS_CMDPOOL_MAX_THREADS ? srv->threads : EVS_CMDPOOL_MAX_THREADS,
                           evs__ws_kick)) {
        snprintf(why, whycap, "serve: cannot start the command threads");
        ret = EVS_EIO;
        goto cleanup;
    }
    srv->live_opened = evs__notifier_poke;
    if (evs__ws_start(srv) || evs__sse_start(srv) || evs__notifier_start(srv)) {
        snprintf(why, whycap, "serve: cannot start the live-stream threads");
        ret = EVS_EIO;
        goto cleanup;
    }

    int tls = cfg->tls_cert != NULL;
    if (tls && evs__tls_load(cfg->tls_cert, cfg->tls_key, why, whycap)) {
        ret = EVS_EINVAL;
        goto cleanup;
    }
    int lsock = listen_on(&cfg->addr, cfg->addrlen, srv->listen, sizeof srv->listen);
    if (lsock < 0) {
        snprintf(why, whycap, "serve: cannot listen on %s: %s", cfg->listen, strerror(errno));
        ret = EVS_EIO;
        goto cleanup;
    }
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO | (cfg->addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                     (tls ? MHD_USE_TLS : 0);
    /* TLS: the certificate comes from the callback at each handshake (SIGHUP swaps it), TLS 1.2+ only */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, evs__tls_callback()},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)EVS_TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    if (!tls) tls_opts[0].option = MHD_OPTION_END;
    srv->daemon = MHD_start_daemon(
        flags, 0, evs__http_accept, srv, evs__http_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL, /* first, or libmicrohttpd says so on stderr */
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lsock,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)srv->threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)srv->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, HEADER_MEMORY,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_NOTIFY_COMPLETED, evs__http_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, evs__http_conn_notify, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, evs__http_unescape_none, NULL,
        MHD_OPTION_END);
    if (!srv->daemon) {
        close(lsock);
        snprintf(why, whycap, "serve: cannot start the HTTP daemon on %s", srv->listen);
        ret = EVS_EIO;
        goto cleanup;
    }
    if (!srv->engine) serve_file_write(cfg->dir, tls ? "https" : "http", srv->listen);
    printf("evstore serve: listening on %s://%s (data %s, durability %s, auth %s)\n", tls ? "https" : "http",
           srv->listen, srv->dir, cfg->durability_name, srv->auth ? "on" : "off");
    fflush(stdout);

    int sig = 0;
    for (;;) {
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig != SIGHUP) break;
        /* SIGHUP: new handshakes get the certificate as it is now on disk; open connections keep theirs */
        char twhy[512];
        if (!tls) fprintf(stderr, "evstore serve: SIGHUP received; no TLS certificate to reload\n");
        else if (evs__tls_reload(twhy, sizeof twhy))
            fprintf(stderr, "evstore serve: SIGHUP: keeping the old certificate: %s\n", twhy);
        else fprintf(stderr, "evstore serve: SIGHUP: TLS certificate reloaded from %s\n", cfg->tls_cert);
    }
    fprintf(stderr, "evstore serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");

    /* 1-2: refuse new work, stop accepting */
    atomic_store(&srv->shutting, 1);
    /* 3: live subscribers get their final message (an SSE subscriber that
       was about to park sees `shutting` under the hub's lock, which the
       sweep takes after the store above: sse.c) */
    evs__sse_wake_all(srv);
    evs__ws_stop(srv);
    evs__consumers_quiesce(srv->bus); /* group long-polls end */
    evs__app_host_interrupt(srv);     /* and queries waiting for min_position */
    /* 4: in-flight requests and the SSE goodbyes, bounded */
    for (int i = 0; i < 1000 && (atomic_load(&srv->active) > 0 || evs__sse_count(srv) > 0); i++) {
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
        /* nor with an append waiting for its group commit: the store always calls back (a failed
           batch answers its members), so this ends; libmicrohttpd would abort otherwise */
        while (atomic_load(&srv->appends_waiting) > 0) sleep_ms(1);
        /* nor with a query waiting for min_position: interrupted at 3, it ends within 100 ms */
        while (atomic_load(&srv->query_waits) > 0) sleep_ms(1);
        MHD_stop_daemon(srv->daemon);
        if (!srv->engine) serve_file_remove(cfg->dir);
    }
    evs__notifier_free(srv); /* after the daemon: no stream can open and poke it */
    evs__tls_free(); /* after the daemon: no handshake can ask for a certificate any more */
    evs__sse_free(srv);     /* after the notifier and the daemon, its only users */
    evs__ws_stop(srv);      /* its thread takes the runners' results: it ends first (done at 3 unless
                               a start failed) */
    evs__cmdpool_stop(srv); /* before the hub goes: a runner that finishes kicks it */
    evs__ws_free(srv);
    evs__scavenge_job_stop();      /* rewrites the store's segments: before it closes */
    evs__nats_host_stop(srv);      /* reads the store: before it closes */
    evs__sagas_stop(srv);          /* its workers send commands: before the app */
    evs__app_stop(srv);            /* uses the bus: before the consumers */
    evs__consumers_stop(srv->bus); /* projections commit before the store closes */
    srv->bus = NULL;
    evs__keys_close(srv->keys);
    srv->keys = NULL;
    evs_schema_close(srv->schemas); /* after everything that appends, before the store */
    srv->schemas = NULL;
    if (srv->store && ret == EVS_OK) {
        char failure[512];
        if (evs_store_writable(srv->store, failure, sizeof failure) != EVS_OK) {
            snprintf(why, whycap, "serve: stopped after the store failed (%s): check the disk, then "
                                  "restart; what was acknowledged is on disk", failure);
            ret = EVS_EFAILED;
        }
    }
    /* the close syncs: in batch and none durability that is what makes the
       last acknowledged appends durable, so a failure is the exit status */
    evs__err_clear();
    int crc = evs_store_close(srv->store);
    if (crc && ret == EVS_OK) {
        snprintf(why, whycap, "serve: %s", evs_errmsg());
        ret = crc;
    }
    free(srv);
    if (ret == EVS_OK) fprintf(stderr, "evstore serve: stopped cleanly\n");
    return ret;
}
