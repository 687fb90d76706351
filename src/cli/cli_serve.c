/*
 * cli_serve.c — `evstore serve`: its flags, its JSON config file, and the
 * checks that turn them into one evs__serve_config for the server
 * (src/server/serve.c runs it).
 *
 * One table (opt_defs) serves the flags and the file, so both accept
 * exactly the same settings with the same bounds; a flag wins over the
 * file.  Numbers above a hard cap are refused, not clamped: a limit the
 * user asked for and silently did not get is worse than an error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "server/server.h"


static const char serve_help[] =
    "Usage: evstore serve [-d DIR] [--listen ADDR:PORT] [--durability sync|batch|none] [--config FILE] [OPTIONS]\n"
    "\n"
    "Run the HTTP/JSON server on the store in DIR (created if missing): appends,\n"
    "reads, the stream list, live streams over Server-Sent Events (/subscribe)\n"
    "and WebSocket (/ws), projections and groups, commands, queries and\n"
    "aggregates (/commands, /queries, /aggregates), sagas (/sagas), and\n"
    "Prometheus metrics (/metrics).  See docs/http-api.md.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR            the store directory (default: $EVSTORE_DIR)\n"
    "  --listen ADDR:PORT       address and port: IPv4, [IPv6] or localhost (default\n"
    "                           127.0.0.1:2113; port 0 picks a free one; the address\n"
    "                           is printed on stdout)\n"
    "  --segment-size BYTES     size of new log segments (default 64 MiB; 65536 at\n"
    "                           least): smaller ones let scavenge give space back sooner\n"
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
    "  --app-dir DIR            the application: every DIR/NAME.lua is the Lua aggregate\n"
    "                           NAME, DIR/queries.json names queries, and every\n"
    "                           DIR/sagas/NAME.lua (or NAME_saga.lua) is the saga NAME\n"
    "                           run by the server, with settings from the .json file\n"
    "                           of the same stem when there is one\n"
    "                           (default: none; aggregates can also be put with\n"
    "                           PUT /aggregates/NAME)\n"
    "  --saga-workers N         saga engine worker threads (default 4, at most 64)\n"
    "  --snapshot-every N       snapshot an aggregate every N events (default 100; 0: never)\n"
    "  --snapshot-keep N        snapshots kept per aggregate (default 5, at most 1000)\n"
    "  --command-retries N      reload-and-decide rounds after a conflict (default 10)\n"
    "  --idempotency-window S   seconds a command result without events is remembered\n"
    "                           (default 3600; commands with events: as long as they exist)\n"
    "  --query-timeout-ms N     longest min_position wait of a query (default 5000)\n"
    "  --query-cache N          cached query answers (default 256; 0: none)\n"
    "  --group-idle-ms N        an HTTP group consumer silent for its group's ack\n"
    "                           timeout plus N ms leaves (default 30000)\n"
    "  --nats URLS              publish every event to a NATS JetStream stream as it is\n"
    "                           stored (nats://HOST:PORT[,...]; see docs/distribution.md);\n"
    "                           lag and state in /metrics (evstore_nats_*)\n"
    "  --nats-stream NAME       the JetStream stream (default EVSTORE)\n"
    "  --nats-subject-prefix P  subjects P.STREAM_TYPE.EVENT_TYPE (default evs)\n"
    "  --nats-replicas N        replicas of the stream when the relay creates it (default 1)\n"
    "  --nats-subject-template T, --nats-filter-stream-prefix P, --nats-filter-stream-type T,\n"
    "  --nats-filter-event-type A,B  the relay's subjects and filter, as for\n"
    "                           `evstore nats publish`\n"
    "  --nats-import NAME       also import JetStream stream NAME (other services'\n"
    "                           messages) into the store, as `evstore nats import`\n"
    "  --nats-import-to T       the target stream template (required with --nats-import)\n"
    "  --nats-import-subject S  import only subject S of that stream\n"
    "  --nats-import-dead-letter STREAM  where messages that cannot be imported go\n"
    "                           (without it the importer stops at one, logs why, and\n"
    "                           tries again every 30 s)\n"
    "  --auth                   every route but /health and the console's files needs an\n"
    "                           API key (Authorization: Bearer KEY; see evstore key).\n"
    "                           On by itself when the store holds a key that is not\n"
    "                           revoked (DIR/keys.json; on PostgreSQL its database);\n"
    "                           off otherwise\n"
    "  --insecure               serve a non-loopback address without authentication\n"
    "                           (refused otherwise)\n"
    "  --print-routes           print every route as METHOD PATH NEED and exit\n"
    "  --tls-cert FILE          serve HTTPS and WSS (TLS 1.2 and 1.3) with this PEM\n"
    "                           certificate chain; SIGHUP reloads it and the key for\n"
    "                           new connections without dropping open ones\n"
    "  --tls-key FILE           the certificate's private key (PEM)\n"
    "  --config FILE            settings from a JSON object with the same names\n"
    "                           (dir, listen, segment_size, durability, batch_ms,\n"
    "                           threads, max_body, max_connections, timeout,\n"
    "                           max_ws_message, heartbeat_ms, access_log, app_dir,\n"
    "                           snapshot_every, snapshot_keep, command_retries,\n"
    "                           idempotency_window, query_timeout_ms, query_cache,\n"
    "                           group_idle_ms, saga_workers, nats, nats_stream,\n"
    "                           nats_subject_prefix, nats_replicas, nats_import,\n"
    "                           nats_import_to, nats_import_subject,\n"
    "                           nats_import_dead_letter, nats_subject_template,\n"
    "                           nats_filter_stream_prefix, nats_filter_stream_type,\n"
    "                           nats_filter_event_type, tls_cert, tls_key); flags win\n"
    "                           over the file\n"
    "  -h, --help               show this help\n"
    "\n"
    "Limits can be lowered, never raised above the hard caps.  SIGINT or SIGTERM\n"
    "stops the server cleanly: in-flight appends finish, then it exits 0.  While it\n"
    "runs, other evstore commands reach the store with --url (read-only ones also\n"
    "with -d).\n"
    "\n"
    "Exit status: 0 stopped cleanly, 1 usage (a bad option or config file, or a\n"
    "config file that does not exist), 4 a non-loopback --listen without --auth\n"
    "or --insecure, or TLS files that do not load or do not match, 5 the store\n"
    "could not be opened (held by another process, damaged), DIR's API key files\n"
    "are damaged, the address could not be listened on, the store\n"
    "failed while serving, or its final sync at the stop failed.\n";

typedef struct serve_opts {
    const char *dir;
    const char *listen;
    const char *durability;
    const char *access_log;
    const char *app_dir;
    const char *nats, *nats_stream, *nats_prefix;
    const char *nats_import, *nats_import_to, *nats_import_subject, *nats_import_dlq;
    const char *nats_template, *nats_f_prefix, *nats_f_type, *nats_f_etypes;
    uint64_t nats_replicas;
    const char *tls_cert, *tls_key;
    uint64_t batch_ms, threads, max_body, max_conn, timeout_s, ws_frame, heartbeat_ms, group_idle_ms, saga_workers;
    uint64_t snap_every, snap_keep, retries, idem_s, query_ms, query_cache;
    uint64_t segment_size;      /* 0: the store's default */
    const char *config;
    int auth, insecure;         /* --auth, --insecure */
    json_t *cfg;                /* keeps the config's strings alive */
    uint64_t set;               /* OPT_* bits given as flags (flags win) */
} serve_opts;

/*
 * The options, with their config-file key, bounds and hard cap.  One table
 * serves the flags and the file, so both accept exactly the same settings.
 */
enum { OPT_DIR, OPT_LISTEN, OPT_DURABILITY, OPT_BATCH, OPT_THREADS, OPT_BODY, OPT_CONN, OPT_TIMEOUT,
       OPT_WSMSG, OPT_HEARTBEAT, OPT_ACCESS, OPT_APPDIR, OPT_SNAPEVERY, OPT_SNAPKEEP, OPT_RETRIES, OPT_IDEM,
       OPT_QUERYMS, OPT_QCACHE, OPT_GROUP_IDLE, OPT_SAGA_WORKERS, OPT_NATS, OPT_NATS_STREAM, OPT_NATS_PREFIX,
       OPT_NATS_REPLICAS, OPT_TLS_CERT, OPT_TLS_KEY, OPT_SEGMENT_SIZE, OPT_NATS_IMPORT, OPT_NATS_IMPORT_TO,
       OPT_NATS_IMPORT_SUBJECT, OPT_NATS_IMPORT_DLQ, OPT_NATS_TEMPLATE, OPT_NATS_F_PREFIX, OPT_NATS_F_TYPE,
       OPT_NATS_F_ETYPES, OPT_COUNT };
_Static_assert(OPT_COUNT <= 64, "serve_opts.set holds one bit per option");

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
    {"--app-dir", NULL, "app_dir", 0, 0, offsetof(serve_opts, app_dir)},
    {"--snapshot-every", NULL, "snapshot_every", 0, 10000000, offsetof(serve_opts, snap_every)},
    {"--snapshot-keep", NULL, "snapshot_keep", 1, 1000, offsetof(serve_opts, snap_keep)},
    {"--command-retries", NULL, "command_retries", 0, EVS_APP_MAX_RETRIES, offsetof(serve_opts, retries)},
    {"--idempotency-window", NULL, "idempotency_window", 1, 30ull * 86400, offsetof(serve_opts, idem_s)},
    {"--query-timeout-ms", NULL, "query_timeout_ms", 0, 600000, offsetof(serve_opts, query_ms)},
    {"--query-cache", NULL, "query_cache", 0, 1000000, offsetof(serve_opts, query_cache)},
    {"--group-idle-ms", NULL, "group_idle_ms", 0, EVS_SRV_MAX_GROUP_IDLE_MS, offsetof(serve_opts, group_idle_ms)},
    {"--saga-workers", NULL, "saga_workers", 1, EVS_SRV_MAX_SAGA_WORKERS, offsetof(serve_opts, saga_workers)},
    {"--nats", NULL, "nats", 0, 0, offsetof(serve_opts, nats)},
    {"--nats-stream", NULL, "nats_stream", 0, 0, offsetof(serve_opts, nats_stream)},
    {"--nats-subject-prefix", NULL, "nats_subject_prefix", 0, 0, offsetof(serve_opts, nats_prefix)},
    {"--nats-replicas", NULL, "nats_replicas", 1, 5, offsetof(serve_opts, nats_replicas)},
    {"--tls-cert", NULL, "tls_cert", 0, 0, offsetof(serve_opts, tls_cert)},
    {"--tls-key", NULL, "tls_key", 0, 0, offsetof(serve_opts, tls_key)},
    {"--segment-size", NULL, "segment_size", 65536, 1ull << 31, offsetof(serve_opts, segment_size)},
    {"--nats-import", NULL, "nats_import", 0, 0, offsetof(serve_opts, nats_import)},
    {"--nats-import-to", NULL, "nats_import_to", 0, 0, offsetof(serve_opts, nats_import_to)},
    {"--nats-import-subject", NULL, "nats_import_subject", 0, 0, offsetof(serve_opts, nats_import_subject)},
    {"--nats-import-dead-letter", NULL, "nats_import_dead_letter", 0, 0, offsetof(serve_opts, nats_import_dlq)},
    {"--nats-subject-template", NULL, "nats_subject_template", 0, 0, offsetof(serve_opts, nats_template)},
    {"--nats-filter-stream-prefix", NULL, "nats_filter_stream_prefix", 0, 0, offsetof(serve_opts, nats_f_prefix)},
    {"--nats-filter-stream-type", NULL, "nats_filter_stream_type", 0, 0, offsetof(serve_opts, nats_f_type)},
    {"--nats-filter-event-type", NULL, "nats_filter_event_type", 0, 0, offsetof(serve_opts, nats_f_etypes)},
};

/*
 * Settings from a JSON config file: {"listen": "...", "threads": 8, ...},
 * keys as in opt_defs.  Applied only where no flag was given.  Exit code.
 */
static int load_config(serve_opts *o) {
    json_error_t je;
    struct stat st;
    if (stat(o->config, &st) != 0)
        return evs__cli_fail(EVS_CLI_USAGE, "--config %s: %s", o->config,
                             errno == ENOENT ? "the file does not exist" : strerror(errno));
    if (S_ISDIR(st.st_mode)) return evs__cli_fail(EVS_CLI_USAGE, "--config %s: is a directory, not a file", o->config);
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
        if (o->set & (1ull << i)) continue; /* the flag wins */
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

/* A setting that needs another: either may come from the config file, so the message names the file too. */
static int needs_other(const serve_opts *o, const char *what) {
    if (o->config) return evs__cli_usage("serve", "%s (settings from the command line and --config %s)", what, o->config);
    return evs__cli_usage("serve", "%s", what);
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
        if (evs__cli_is(&a, "--print-routes", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            evs__serve_print_routes(stdout);
            return -1;
        }
        if (evs__cli_is(&a, "--auth", NULL)) {
            /* a switch: "--auth=no" must not turn it on */
            if ((code = evs__cli_flag(&a))) return code;
            o->auth = 1;
            continue;
        }
        if (evs__cli_is(&a, "--insecure", NULL)) {
            /* a switch: "--insecure=no" must not turn it on */
            if ((code = evs__cli_flag(&a))) return code;
            o->insecure = 1;
            continue;
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
        o->set |= 1ull << i;
    }
    if (o->config && (code = load_config(o))) return code;
    /* -d or "dir" in the config, else $EVSTORE_DIR */
    if ((code = evs__cli_dir(&a, o->dir, &o->dir))) return code;
    return EVS_CLI_OK;
}

/*
 * ADDR:PORT: an IPv4 address, an IPv6 address in brackets ("[::1]:2113",
 * as in a URL), or localhost (127.0.0.1).
 */
static int parse_listen(const char *s, struct sockaddr_storage *sa, socklen_t *salen) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= 64) return -1;
    char host[64];
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    uint64_t port;
    if (evs__parse_u64(colon + 1, 65535, &port)) return -1;
    memset(sa, 0, sizeof *sa);
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        host[hl - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1) return -1;
        *salen = sizeof *s6;
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) return -1;
    *salen = sizeof *s4;
    return 0;
}

/* Parse one run's settings and run the server; the exit status. */
int evs__cli_serve(int argc, char **argv) {
    serve_opts o = {.listen = "127.0.0.1:2113", .durability = "sync", .batch_ms = 10,
                    .threads = EVS_SRV_DEFAULT_THREADS, .max_body = EVS_SRV_DEFAULT_BODY,
                    .max_conn = EVS_SRV_DEFAULT_CONNECTIONS, .timeout_s = EVS_SRV_DEFAULT_TIMEOUT_S,
                    .ws_frame = EVS_SRV_DEFAULT_WS_FRAME, .heartbeat_ms = EVS_SRV_DEFAULT_HEARTBEAT_MS,
                    .snap_every = 100, .snap_keep = 5, .retries = 10, .idem_s = 3600, .query_ms = 5000,
                    .query_cache = 256, .group_idle_ms = EVS_SRV_DEFAULT_GROUP_IDLE_MS,
                    .saga_workers = EVS_SRV_DEFAULT_SAGA_WORKERS};
    evs__serve_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int code = parse_opts(argc, argv, &o);
    if (code) {
        json_decref(o.cfg);
        return code < 0 ? evs__cli_finish_output(EVS_CLI_OK) : code;
    }
    if (strcmp(o.durability, "sync") == 0) cfg.durability = EVS_DURABILITY_SYNC;
    else if (strcmp(o.durability, "batch") == 0) cfg.durability = EVS_DURABILITY_BATCH;
    else if (strcmp(o.durability, "none") == 0) cfg.durability = EVS_DURABILITY_NONE;
    else {
        code = evs__cli_usage("serve", "--durability %s: use sync, batch or none", o.durability);
        goto cleanup;
    }
    if (parse_listen(o.listen, &cfg.addr, &cfg.addrlen)) {
        code = evs__cli_usage("serve", "--listen %s: expected ADDRESS:PORT with an IPv4 address, [IPv6] in "
                                       "brackets or localhost, e.g. 127.0.0.1:2113 or [::1]:2113", o.listen);
        goto cleanup;
    }
    if (o.access_log && strcmp(o.access_log, "-") == 0) {
        cfg.access_log = stderr;
    } else if (o.access_log) {
        if (!(cfg.access_log = fopen(o.access_log, "a"))) {
            code = evs__cli_fail(EVS_CLI_USAGE, "serve: cannot open the access log %s: %s", o.access_log,
                                 strerror(errno));
            goto cleanup;
        }
        setvbuf(cfg.access_log, NULL, _IOLBF, 0); /* whole lines, as they happen */
    }
    cfg.dir = o.dir;
    cfg.master_key_file = evs__cli_master_key_file;
    cfg.listen = o.listen;
    cfg.durability_name = o.durability;
    cfg.batch_ms = (unsigned)o.batch_ms;
    cfg.segment_size = o.segment_size;
    cfg.threads = (unsigned)o.threads;
    cfg.max_body = (size_t)o.max_body;
    cfg.max_connections = (unsigned)o.max_conn;
    cfg.timeout_s = (unsigned)o.timeout_s;
    cfg.ws_frame_max = (size_t)o.ws_frame;
    cfg.heartbeat_ms = (unsigned)o.heartbeat_ms;
    cfg.app_dir = o.app_dir;
    evs_app_config_init(&cfg.app);
    cfg.app.snapshot_every = (uint32_t)o.snap_every;
    cfg.app.snapshot_keep = (uint32_t)o.snap_keep;
    cfg.app.max_retries = (uint32_t)o.retries;
    cfg.app.idempotency_window_ns = (int64_t)o.idem_s * 1000000000ll;
    cfg.app.query_timeout_ms = (int)o.query_ms;
    cfg.app.query_cache_entries = (uint32_t)o.query_cache;
    cfg.group_idle_ms = (unsigned)o.group_idle_ms;
    cfg.saga_workers = (unsigned)o.saga_workers;
    if (!o.nats && (o.nats_stream || o.nats_prefix || o.nats_replicas || o.nats_template || o.nats_f_prefix ||
                    o.nats_f_type || o.nats_f_etypes)) {
        code = needs_other(&o, "--nats-stream, --nats-subject-prefix, --nats-replicas, --nats-subject-template and "
                                "--nats-filter-* need --nats URLS");
        goto cleanup;
    }
    cfg.nats.urls = o.nats;
    cfg.nats.stream = o.nats_stream;
    cfg.nats.subject_prefix = o.nats_prefix;
    cfg.nats.replicas = (unsigned)o.nats_replicas;
    cfg.nats.subject_template = o.nats_template;
    cfg.nats.filter_stream_prefix = o.nats_f_prefix;
    cfg.nats.filter_stream_type = o.nats_f_type;
    cfg.nats.filter_event_types = o.nats_f_etypes;
    if ((o.nats_import_to || o.nats_import_subject || o.nats_import_dlq) && !o.nats_import) {
        code = needs_other(&o, "--nats-import-to, --nats-import-subject and --nats-import-dead-letter need "
                                "--nats-import STREAM");
        goto cleanup;
    }
    if (o.nats_import && (!o.nats || !o.nats_import_to)) {
        code = needs_other(&o, "--nats-import needs --nats URLS and --nats-import-to TEMPLATE");
        goto cleanup;
    }
    if (o.nats_import) {
        cfg.nats_import.nats.urls = o.nats;
        cfg.nats_import.nats.stream = o.nats_import;
        cfg.nats_import.target = o.nats_import_to;
        cfg.nats_import.subject = o.nats_import_subject;
        cfg.nats_import.dead_letter = o.nats_import_dlq;
    }
    if (!o.tls_cert != !o.tls_key) {
        code = evs__cli_usage("serve", "--tls-cert and --tls-key go together (the certificate chain and its key, PEM)");
        goto cleanup;
    }
    cfg.tls_cert = o.tls_cert;
    cfg.tls_key = o.tls_key;
    cfg.auth = o.auth;
    cfg.insecure = o.insecure;

    char why[1024] = "";
    int rc = evs__serve(&cfg, why, sizeof why);
    code = rc == EVS_OK ? EVS_CLI_OK : evs__cli_fail(evs__cli_exit_code(rc), "%s", why);
cleanup:
    if (cfg.access_log && cfg.access_log != stderr) fclose(cfg.access_log);
    json_decref(o.cfg); /* last: o.dir and friends may point into it */
    return code;
}
