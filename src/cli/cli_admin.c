/*
 * cli_admin.c — `evstore streams`, `evstore info`, `evstore check` and
 * `evstore repair`.
 *
 * All three open the store read-only, so they can inspect a store that a
 * running process is writing to, and `check` never repairs anything: it
 * reports.  (Repair of a torn tail is what a normal writable open does, and
 * its recovery report is printed by every command that opens the store.)
 *
 * `streams` pages through evs_list_streams with after = the last name seen,
 * so the listing is streamed in bounded memory however many streams exist.
 * `streams` and `info` also take --url (cli_remote.c); `check` needs the
 * files and stays local.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "cli/cli.h"
#include "evstore_bus.h"

static const char evs_streams_help[] =
    "Usage: evstore streams -d DIR|--url URL [--prefix P] [--limit N]\n"
    "\n"
    "List streams in name order as JSON lines: stream, stream_type, version,\n"
    "first/last global position, created_at, updated_at.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  --url URL         list the streams of a running `evstore serve` at URL\n"
    "                    instead (default: $EVSTORE_URL)\n"
    "  --prefix P        only streams whose name starts with P\n"
    "  --limit N         at most N streams, N >= 1 (default: all)\n"
    "  -h, --help        show this help\n"
    "\n"
    "Works while another process (a server) holds the store.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 store not found, 5 I/O error, corruption or\n"
    "server unreachable.\n";

static const char evs_info_help[] =
    "Usage: evstore info -d DIR|--url URL [STREAM]\n"
    "\n"
    "Without STREAM: the store's head position, number of streams and segments,\n"
    "bytes of log and durability mode, as one JSON object.  With STREAM: that\n"
    "stream's version, first/last global position, created_at, updated_at and\n"
    "stream_type (exit 2 if the stream has no events).\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  --url URL         ask a running `evstore serve` at URL instead (default:\n"
    "                    $EVSTORE_URL); durability is then the server's mode\n"
    "  -h, --help        show this help\n"
    "\n"
    "Works while another process (a server) holds the store.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 stream or store not found, 5 I/O error,\n"
    "corruption or server unreachable.\n";

static const char evs_check_help[] =
    "Usage: evstore check -d DIR\n"
    "\n"
    "Verify every record of the log and that the index agrees with it both\n"
    "ways (every record indexed where it is; every index entry a valid record),\n"
    "without changing anything.  Prints a JSON summary: records, events,\n"
    "lost_events (positions an earlier `evstore repair` removed), index_head,\n"
    "segments, errors, and of the consumers (DIR/consumers/): consumers and\n"
    "dlq_entries checked (every checkpoint at or below what exists, every DLQ\n"
    "entry an existing event).  On any problem exits 5 and names the first\n"
    "problem (a segment and offset, or a consumer) on stderr; `evstore repair`\n"
    "is the way out of damage to the log.\n"
    "\n"
    "Works while another process (a server) holds the store; it then checks what\n"
    "had been written when it started.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 the store is sound, 1 usage, 2 store not found, 5 damage found\n"
    "(or an I/O error).\n";

static const char evs_repair_help[] =
    "Usage: evstore repair -d DIR [--dry-run]\n"
    "\n"
    "Remove the damaged records of a store that open refuses as corrupt (for\n"
    "example \"segment 00000003.seg offset 81920: checksum mismatch\").  First\n"
    "prints, one JSON line each, every event the repair drops: its global\n"
    "position and, when the index knew it, its stream, stream position and\n"
    "event_id, with the damage that took it.  Then it replaces the damage by\n"
    "records of the loss, so that no position is ever given to another event:\n"
    "the head stays where it was, and reads report the removed range\n"
    "(\"lost\") instead of passing over it.  Ends with a JSON summary.\n"
    "Stop any server using the store first.  Take a copy of DIR before, if you\n"
    "may want the damaged bytes later.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  --dry-run         print what would be dropped; change nothing\n"
    "  -h, --help        show this help\n"
    "\n"
    "Exit status: 0 repaired (or nothing to repair), 1 usage, 2 no store,\n"
    "5 I/O error, the store is locked, or the damage cannot be repaired.\n";

/* Streams per evs_list_streams call: ~130 KiB of evs_stream_info. */
#define EVS_CLI_STREAMS_PAGE 256

int evs__cli_streams(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL, *prefix = NULL, *opt_url = NULL, *url = NULL;
    uint64_t limit = 0;
    evs_store *store = NULL;
    evs_stream_info *page = NULL;
    char after[EVS_MAX_STREAM_NAME + 1];
    int code = EVS_CLI_OK;

    evs__cli_args_init(&a, "streams", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        const char *v;
        if (t == EVS_CLI_POSITIONAL) {
            code = evs__cli_usage(a.cmd, "unexpected argument \"%s\" (use --prefix P)", a.arg);
            goto cleanup;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_streams_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) goto cleanup;
        } else if (evs__cli_is(&a, "--prefix", NULL)) {
            if ((code = evs__cli_value(&a, &prefix))) goto cleanup;
        } else if (evs__cli_is(&a, "--limit", NULL)) {
            if ((code = evs__cli_value(&a, &v))) goto cleanup;
            if ((code = evs__cli_u64(&a, "--limit", v, UINT64_MAX, &limit))) goto cleanup;
            if (limit == 0) {
                code = evs__cli_usage(a.cmd, "--limit 0: at least 1 (leave --limit out to list every stream)");
                goto cleanup;
            }
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) goto cleanup;
    if (url) {
        code = evs__cli_remote_streams(url, prefix, limit);
        goto cleanup;
    }

    page = calloc(EVS_CLI_STREAMS_PAGE, sizeof *page);
    if (!page) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto cleanup;
    }
    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;

    /* limit 0 means all; count down otherwise. */
    uint64_t left = limit ? limit : UINT64_MAX;
    int have_after = 0;
    while (left > 0) {
        size_t want = left < EVS_CLI_STREAMS_PAGE ? (size_t)left : EVS_CLI_STREAMS_PAGE;
        size_t got = 0;
        evs__cli_clear_error();
        int rc = evs_list_streams(store, prefix, have_after ? after : NULL, page, want, &got);
        if (rc != EVS_OK) {
            code = evs__cli_lib_fail(rc, "listing streams");
            goto cleanup;
        }
        for (size_t i = 0; i < got; i++) {
            evs__cli_json_stream_info(stdout, &page[i]);
            fputc('\n', stdout);
        }
        left -= got;
        if (got < want) break;
        memcpy(after, page[got - 1].name, sizeof after);
        after[sizeof after - 1] = '\0';
        have_after = 1;
    }

cleanup:
    code = evs__cli_close(store, dir, code);
    free(page);
    return evs__cli_finish_output(code);
}

static const char *evs_cli_durability_name(int d) {
    switch (d) {
    case EVS_DURABILITY_SYNC: return "sync";
    case EVS_DURABILITY_BATCH: return "batch";
    case EVS_DURABILITY_NONE: return "none";
    default: return "unknown";
    }
}

int evs__cli_info(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL, *stream = NULL, *opt_url = NULL, *url = NULL;
    evs_store *store = NULL;
    int code = EVS_CLI_OK;

    evs__cli_args_init(&a, "info", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (stream) {
                code = evs__cli_usage(a.cmd, "unexpected argument \"%s\" (at most one STREAM)",
                                      a.arg);
                goto cleanup;
            }
            stream = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_info_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) goto cleanup;
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) goto cleanup;
    if (url) {
        code = evs__cli_remote_info(url, stream);
        goto cleanup;
    }
    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;

    evs__cli_clear_error();
    if (stream) {
        evs_stream_info si;
        int rc = evs_stream_get_info(store, stream, &si);
        if (rc != EVS_OK) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        evs__cli_json_stream_info(stdout, &si);
        fputc('\n', stdout);
    } else {
        evs_store_stats st;
        int rc = evs_store_get_stats(store, &st);
        if (rc != EVS_OK) {
            code = evs__cli_lib_fail(rc, "store statistics of %s", dir);
            goto cleanup;
        }
        printf("{\"head\":%llu,\"streams\":%llu,\"segments\":%llu,\"log_bytes\":%llu,"
               "\"durability\":\"%s\"}\n",
               (unsigned long long)st.head, (unsigned long long)st.streams,
               (unsigned long long)st.segments, (unsigned long long)st.log_bytes,
               evs_cli_durability_name(st.durability));
    }

cleanup:
    code = evs__cli_close(store, dir, code);
    return evs__cli_finish_output(code);
}

int evs__cli_check(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL;
    evs_store *store = NULL;
    int code = EVS_CLI_OK;

    evs__cli_args_init(&a, "check", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            code = evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            goto cleanup;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_check_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;

    evs_check_report rep;
    memset(&rep, 0, sizeof rep);
    evs__cli_clear_error();
    int rc = evs_store_check(store, &rep);
    if (rc != EVS_OK && rc != EVS_ECORRUPT) {
        code = evs__cli_lib_fail(rc, "check %s", dir);
        goto cleanup;
    }
    rep.first_error[sizeof rep.first_error - 1] = '\0';
    /* the consumers' records, when the store has any */
    evs_bus_check_report brep;
    memset(&brep, 0, sizeof brep);
    int brc = EVS_OK;
    char cdir[4096];
    struct stat sb;
    snprintf(cdir, sizeof cdir, "%s/consumers", dir);
    if (stat(cdir, &sb) == 0) {
        evs_bus *bus = NULL;
        evs__cli_clear_error();
        if ((brc = evs_bus_open(store, &bus)) == EVS_OK) brc = evs_bus_check(bus, &brep);
        evs_bus_close(bus);
        if (brc != EVS_OK && brc != EVS_ECORRUPT) {
            code = evs__cli_lib_fail(brc, "check the consumers of %s", dir);
            goto cleanup;
        }
        if (brep.errors) {
            if (!rep.errors) snprintf(rep.first_error, sizeof rep.first_error, "%.500s", brep.first_error);
            rep.errors += brep.errors;
            if (rc == EVS_OK) rc = EVS_ECORRUPT;
        }
    }
    printf("{\"ok\":%s,\"records\":%llu,\"events\":%llu,\"lost_events\":%llu,\"index_head\":%llu,"
           "\"segments\":%llu,\"errors\":%llu",
           rc == EVS_OK ? "true" : "false", (unsigned long long)rep.records,
           (unsigned long long)rep.events, (unsigned long long)rep.lost_events,
           (unsigned long long)rep.index_head, (unsigned long long)rep.segments,
           (unsigned long long)rep.errors);
    printf(",\"consumers\":%llu,\"dlq_entries\":%llu", (unsigned long long)brep.consumers,
           (unsigned long long)brep.dlq_entries);
    if (rep.first_error[0]) {
        fputs(",\"first_error\":", stdout);
        evs__cli_json_str(stdout, rep.first_error, strlen(rep.first_error));
    }
    fputs("}\n", stdout);
    if (rc == EVS_ECORRUPT) {
        if (rep.errors && rep.first_error[0])
            code = evs__cli_fail(EVS_CLI_IO, "check %s: %llu error%s; first: %s", dir,
                                 (unsigned long long)rep.errors, rep.errors == 1 ? "" : "s",
                                 rep.first_error);
        else /* the report is empty: the library's message is all there is */
            code = evs__cli_lib_fail(rc, "check %s", dir);
    }

cleanup:
    code = evs__cli_close(store, dir, code);
    return evs__cli_finish_output(code);
}

static int print_lost(void *arg, const evs_lost_event *ev) {
    (void)arg;
    printf("{\"global_position\":%llu", (unsigned long long)ev->global_position);
    if (ev->known) {
        char id[37];
        evs_uuid_format(&ev->event_id, id);
        fputs(",\"stream\":", stdout);
        evs__cli_json_str(stdout, ev->stream, strlen(ev->stream));
        printf(",\"stream_position\":%llu,\"event_id\":\"%s\"", (unsigned long long)ev->stream_position, id);
    } else {
        fputs(",\"stream\":null,\"stream_position\":null,\"event_id\":null", stdout);
    }
    fputs(",\"damage\":", stdout);
    evs__cli_json_str(stdout, ev->where, strlen(ev->where));
    fputs("}\n", stdout);
    return 0;
}

int evs__cli_repair(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL;
    evs_store *store = NULL;
    int code = EVS_CLI_OK, dry = 0;

    evs__cli_args_init(&a, "repair", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            code = evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            goto cleanup;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_repair_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--dry-run", NULL)) {
            if ((code = evs__cli_flag(&a))) goto cleanup;
            dry = 1;
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if ((code = evs__cli_dir(&a, opt_dir, &dir))) goto cleanup;
    evs__cli_clear_error();
    int rc = evs_store_create(&store);
    evs_repair_report rep;
    memset(&rep, 0, sizeof rep);
    if (!rc) rc = evs_store_repair(store, dir, dry ? EVS_REPAIR_DRY_RUN : 0, print_lost, NULL, &rep);
    if (rc) {
        code = evs__cli_lib_fail(rc, "repair %s", dir);
        if (rc == EVS_ELOCKED)
            fprintf(stderr, "evstore: a repair needs the store to itself: stop the process that holds it (a "
                            "server: SIGTERM), then repair\n");
        goto cleanup;
    }
    printf("{\"dry_run\":%s,\"changed\":%s,\"damaged\":%llu,\"lost_events\":%llu,\"unknown_events\":%llu,"
           "\"head\":%llu", dry ? "true" : "false", rep.changed ? "true" : "false", (unsigned long long)rep.damaged,
           (unsigned long long)rep.lost_events, (unsigned long long)rep.unknown_events, (unsigned long long)rep.head);
    if (rep.first_damage[0]) {
        fputs(",\"first_damage\":", stdout);
        evs__cli_json_str(stdout, rep.first_damage, strlen(rep.first_damage));
    }
    fputs("}\n", stdout);

cleanup:
    evs_store_close(store);
    return evs__cli_finish_output(code);
}
