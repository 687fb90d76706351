/*
 * cli_nats.c — `evstore nats publish | mirror | import | info`: the NATS
 * JetStream relay, mirror and importer of src/dist/ as commands
 * (docs/distribution.md).
 *
 * publish opens the store read-only, so it runs beside `evstore serve` on
 * the same directory as well as alone; mirror owns its store (the only
 * writer, so positions stay the source's); import opens its store with the
 * default durability (acknowledged = fdatasync'd), since it acks JetStream
 * once an append returns.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup_internal.h"
#include "cli/cli.h"
#include "dist/nats_dist.h"

static const char nats_help[] =
    "Usage: evstore nats publish -d DIR --nats URLS [--follow] [OPTIONS]\n"
    "       evstore nats mirror -d DIR --nats URLS [--follow] [OPTIONS]\n"
    "       evstore nats import -d DIR --nats URLS --stream NAME --to TEMPLATE [--follow] [OPTIONS]\n"
    "       evstore nats info --nats URLS [--stream NAME]\n"
    "\n"
    "Carry the store's events through a NATS JetStream stream (docs/distribution.md).\n"
    "  publish  publish $all in global order from where the stream ends (the\n"
    "           message at stream sequence N is the event at global position N;\n"
    "           Nats-Msg-Id is the event id), creating the stream when missing;\n"
    "           without --follow it stops once the head seen at the start is\n"
    "           published.  Opens DIR read-only: it may run beside evstore serve.\n"
    "  mirror   rebuild a store in DIR (created if missing) from the stream: same\n"
    "           event ids, streams, positions, data and metadata; resumes from\n"
    "           its own head.  Without --follow it stops at the stream's end.\n"
    "           A run that fails having stored nothing (mirror or import)\n"
    "           removes the store it created in DIR.\n"
    "  import   append what other services publish to stream NAME into the store,\n"
    "           each message once, in order, through a durable consumer; acks\n"
    "           only what is durable.  Event id: Nats-Msg-Id (a UUID, or derived\n"
    "           from it), else derived from (stream, sequence); event type:\n"
    "           header Evs-Event-Type, else the subject's last token; header\n"
    "           Evs-Expected-Version: a version, any, no_stream or exists.  A\n"
    "           message that cannot be imported stops it (exit 3 or 4, naming\n"
    "           the sequence) unless --dead-letter takes it.\n"
    "  info     the stream's messages, sequences, replicas and leader as JSON.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR            the store (default: $EVSTORE_DIR)\n"
    "  --nats URLS              nats://HOST:PORT[,nats://HOST:PORT...]: servers of the\n"
    "                           cluster; any one that answers will do\n"
    "  --stream NAME            the JetStream stream (default EVSTORE)\n"
    "  --subject-prefix P       subjects are P.STREAM_TYPE.EVENT_TYPE (default evs)\n"
    "  --subject-template T     publish: what follows the prefix, tokens of literal text\n"
    "                           or {stream}, {stream_type}, {event_type} (default\n"
    "                           {stream_type}.{event_type})\n"
    "  --filter-stream-prefix P publish: only events of streams named P...\n"
    "  --filter-stream-type T   publish: only events of streams of type T\n"
    "  --filter-event-type A,B  publish: only events of these types\n"
    "  --replicas N             replicas of a stream publish creates (default 1, at most 5)\n"
    "  --window N               publishes in flight before waiting for their\n"
    "                           acknowledgements (default 256, at most 10000)\n"
    "  --timeout-ms N           wait for an acknowledgement or API answer (default 5000)\n"
    "  --attempts N             publish without --follow: recoveries tried before\n"
    "                           giving up (default 30)\n"
    "  --follow                 keep going until SIGINT or SIGTERM\n"
    "Import options:\n"
    "  --to TEMPLATE            the store stream: text with {subject}, {N} or {-N} (subject\n"
    "                           token N, from the end with -), {header:NAME}\n"
    "  --subject S              import only subject S of the stream (wildcards allowed)\n"
    "  --consumer NAME          the durable consumer (default evstore-import)\n"
    "  --event-type TEMPLATE    the event type, instead of the header or last token\n"
    "  --dead-letter STREAM     append messages that cannot be imported to STREAM\n"
    "                           (event type ImportRejected) and go on\n"
    "  --batch N                messages per fetch (default 256)\n"
    "  --ack-wait-ms N          the consumer's ack wait (default 30000)\n"
    "  -h, --help               show this help\n";

static volatile sig_atomic_t nats_stop;

/* 2: DIR is absent, 1: it is an empty directory, 0: it holds something (kept whatever happens). */
static int dir_fresh(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0) return errno == ENOENT ? 2 : 0;
    return evs__bk_dir_empty(dir) == 1;
}

static void nats_signal(int sig) {
    (void)sig;
    nats_stop = 1;
}

int evs__cli_nats(int argc, char **argv) {
    evs__cli_args a;
    const char *sub = NULL, *opt_dir = NULL, *dir = NULL, *v = NULL;
    evs_nats_config cfg;
    evs_nats_import_config imp;
    int follow = 0, code = EVS_CLI_OK, rc;
    uint64_t n = 0, attempts = 30;
    evs_store *store = NULL;
    evs_nats_relay *relay = NULL;
    int used_nats = 0, fresh = 0;

    memset(&cfg, 0, sizeof cfg);
    memset(&imp, 0, sizeof imp);
    evs__cli_args_init(&a, "nats", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (sub) {
                code = evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
                goto cleanup;
            }
            sub = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(nats_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--nats", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.urls))) goto cleanup;
        } else if (evs__cli_is(&a, "--stream", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.stream))) goto cleanup;
        } else if (evs__cli_is(&a, "--subject-prefix", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.subject_prefix))) goto cleanup;
        } else if (evs__cli_is(&a, "--replicas", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--replicas", v, 5, &n))) goto cleanup;
            cfg.replicas = (unsigned)n;
        } else if (evs__cli_is(&a, "--window", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--window", v, EVS_NATS_MAX_WINDOW, &n)))
                goto cleanup;
            cfg.window = (unsigned)n;
        } else if (evs__cli_is(&a, "--timeout-ms", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--timeout-ms", v, 600000, &n)))
                goto cleanup;
            cfg.timeout_ms = (unsigned)n;
        } else if (evs__cli_is(&a, "--attempts", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--attempts", v, 1000000, &attempts)))
                goto cleanup;
        } else if (evs__cli_is(&a, "--subject-template", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.subject_template))) goto cleanup;
        } else if (evs__cli_is(&a, "--filter-stream-prefix", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.filter_stream_prefix))) goto cleanup;
        } else if (evs__cli_is(&a, "--filter-stream-type", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.filter_stream_type))) goto cleanup;
        } else if (evs__cli_is(&a, "--filter-event-type", NULL)) {
            if ((code = evs__cli_value(&a, &cfg.filter_event_types))) goto cleanup;
        } else if (evs__cli_is(&a, "--to", NULL)) {
            if ((code = evs__cli_value(&a, &imp.target))) goto cleanup;
        } else if (evs__cli_is(&a, "--subject", NULL)) {
            if ((code = evs__cli_value(&a, &imp.subject))) goto cleanup;
        } else if (evs__cli_is(&a, "--consumer", NULL)) {
            if ((code = evs__cli_value(&a, &imp.consumer))) goto cleanup;
        } else if (evs__cli_is(&a, "--event-type", NULL)) {
            if ((code = evs__cli_value(&a, &imp.event_type))) goto cleanup;
        } else if (evs__cli_is(&a, "--dead-letter", NULL)) {
            if ((code = evs__cli_value(&a, &imp.dead_letter))) goto cleanup;
        } else if (evs__cli_is(&a, "--batch", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--batch", v, EVS_NATS_MAX_WINDOW, &n)))
                goto cleanup;
            imp.batch = (unsigned)n;
        } else if (evs__cli_is(&a, "--ack-wait-ms", NULL)) {
            if ((code = evs__cli_value(&a, &v)) || (code = evs__cli_u64(&a, "--ack-wait-ms", v, 3600000, &n)))
                goto cleanup;
            imp.ack_wait_ms = (unsigned)n;
        } else if (evs__cli_is(&a, "--follow", NULL)) {
            if ((code = evs__cli_flag(&a))) goto cleanup;
            follow = 1;
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if (!sub) {
        code = evs__cli_usage(a.cmd, "missing what to do: publish, mirror, import or info");
        goto cleanup;
    }
    if (!cfg.urls) {
        code = evs__cli_usage(a.cmd, "missing --nats URLS (nats://HOST:PORT[,...])");
        goto cleanup;
    }
    cfg.log = stderr;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nats_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    used_nats = 1;

    if (strcmp(sub, "info") == 0) {
        evs_nats_stream_state ss;
        if ((rc = evs__nats_stream_state(&cfg, &ss))) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        printf("{\"stream\":");
        evs__cli_json_str(stdout, cfg.stream ? cfg.stream : EVS_NATS_DEFAULT_STREAM,
                          strlen(cfg.stream ? cfg.stream : EVS_NATS_DEFAULT_STREAM));
        printf(",\"messages\":%llu,\"first_seq\":%llu,\"last_seq\":%llu,\"bytes\":%llu,\"replicas\":%u,\"leader\":",
               (unsigned long long)ss.messages, (unsigned long long)ss.first_seq, (unsigned long long)ss.last_seq,
               (unsigned long long)ss.bytes, ss.replicas);
        evs__cli_json_str(stdout, ss.leader, strlen(ss.leader));
        printf("}\n");
    } else if (strcmp(sub, "publish") == 0) {
        if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
        if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;
        if ((rc = evs__nats_relay_create(store, &cfg, &relay))) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        rc = evs__nats_relay_run(relay, follow, &nats_stop, 1000, (unsigned)attempts);
        evs_nats_relay_stats st;
        evs__nats_relay_stats(relay, &st);
        if (rc) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        printf("{\"published\":%llu,\"head\":%llu,\"errors\":%llu}\n", (unsigned long long)st.published,
               (unsigned long long)st.head, (unsigned long long)st.errors);
    } else if (strcmp(sub, "mirror") == 0) {
        if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
        fresh = dir_fresh(dir);
        if ((rc = evs_store_create(&store)) || (rc = evs_store_set_durability(store, EVS_DURABILITY_BATCH, 10)) ||
            (rc = evs_store_open(store, dir, EVS_OPEN_CREATE))) {
            code = evs__cli_lib_fail(rc, "%s", dir);
            evs_store_close(store);
            store = NULL;
            goto cleanup;
        }
        uint64_t appended = 0;
        rc = evs__nats_mirror(store, &cfg, follow, &nats_stop, &appended);
        if (rc) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        printf("{\"appended\":%llu,\"head\":%llu}\n", (unsigned long long)appended,
               (unsigned long long)evs_head(store));
    } else if (strcmp(sub, "import") == 0) {
        imp.nats = cfg;
        if (!imp.target) {
            code = evs__cli_usage(a.cmd, "import: missing --to TEMPLATE (the store stream)");
            goto cleanup;
        }
        if (!cfg.stream) {
            code = evs__cli_usage(a.cmd, "import: missing --stream NAME (the JetStream stream to read)");
            goto cleanup;
        }
        if ((rc = evs__nats_import_check(&imp))) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
        fresh = dir_fresh(dir);
        if ((code = evs__cli_open(dir, EVS_OPEN_CREATE, &store))) goto cleanup;
        evs_nats_import_stats ist;
        rc = evs__nats_import(store, &imp, follow, &nats_stop, &ist);
        printf("{\"imported\":%llu,\"already\":%llu,\"duplicates\":%llu,\"rejected\":%llu,\"errors\":%llu,"
               "\"last_seq\":%llu}\n",
               (unsigned long long)ist.imported, (unsigned long long)ist.already, (unsigned long long)ist.duplicates,
               (unsigned long long)ist.rejected, (unsigned long long)ist.errors, (unsigned long long)ist.last_seq);
        if (rc) code = evs__cli_lib_fail(rc, NULL);
    } else {
        code = evs__cli_usage(a.cmd, "unknown action \"%s\" (publish, mirror, import or info)", sub);
    }
cleanup:
    evs__nats_relay_destroy(relay);
    if (store) {
        /* a store this run created and a failed run left empty (NATS unreachable, no such
           stream, ...) is removed again, with DIR itself when the run made it: a failed
           command leaves no new files or directories behind */
        int drop = fresh && code != EVS_CLI_OK && evs_head(store) == 0;
        code = evs__cli_close(store, dir, code);
        if (drop) {
            evs__bk_rm_contents(dir);
            if (fresh == 2) rmdir(dir);
        }
    }
    if (used_nats) evs__nats_library_close();
    return evs__cli_finish_output(code);
}
