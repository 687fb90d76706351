/*
 * cli_read.c — `evstore read` and `evstore tail`: events as JSON lines.
 *
 * Both open the store read-only (EVS_OPEN_READONLY), so they work while
 * another process holds the writer lock and appends.  Events are printed as
 * they come out of the reader, one evs_event_to_json line each: a read
 * without --limit streams the whole stream or log without loading it.
 *
 * Filters (--type, --stream-type, --stream-prefix, --correlation,
 * --causation, --tag, --since, --until) apply only to the global log ($all); the store filters stream
 * reads by nothing, so a filter flag with a stream name is a usage error
 * that names the flag rather than being silently ignored.
 *
 * tail = read $all forward, then wait for the head to move (evs_wait_for)
 * and read again from where the reader stopped (evs_reader_position, which
 * advances past non-matching events too, so nothing is missed or repeated).
 * SIGINT/SIGTERM only set a flag: the wait uses a short timeout so the loop
 * notices it, closes the store properly and exits 0.
 *
 * With --url both run against a server (cli_remote.c): read pages through
 * GET /all or /streams/{s}, tail follows GET /subscribe (Server-Sent Events).
 * Arguments are parsed and checked here either way, so a usage error is the
 * same whichever the target.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char evs_read_help[] =
    "Usage: evstore read -d DIR|--url URL STREAM|'$all' [options]\n"
    "\n"
    "Print the events of STREAM, or of the whole log with '$all', as JSON lines.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR          the store directory (default: $EVSTORE_DIR)\n"
    "  --url URL              read from a running `evstore serve` at URL instead\n"
    "                         (default: $EVSTORE_URL), page by page\n"
    "  --from N               first position to read (stream position for a stream,\n"
    "                         global position for $all); default: 1 forward,\n"
    "                         the last event backward\n"
    "  --limit N              at most N events, N >= 1 (default: no limit)\n"
    "  --backward             newest first\n"
    "Filters, only with '$all' (all given must match):\n"
    "  --type T1,T2           event_type is one of these\n"
    "  --stream-type C        stream_type is C\n"
    "  --stream-prefix P      stream name starts with P\n"
    "  --correlation UUID     correlation_id is UUID\n"
    "  --causation UUID       causation_id is UUID\n"
    "  --tag T1,T2            the event carries one of these tags\n"
    "  --tag-match any|all    with --tag: any of them (default) or all of them\n"
    "  --since TIME           recorded at or after TIME (RFC 3339 or ns since the epoch)\n"
    "  --until TIME           recorded before TIME (both after 1970-01-01T00:00:00Z)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Works while another process (a server) holds the store.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 2 stream or store not found, 5 I/O error, corruption\n"
    "or server unreachable.\n";

static const char evs_tail_help[] =
    "Usage: evstore tail -d DIR|--url URL [--from N] [filters]\n"
    "\n"
    "Print the events of the whole log from global position N (default 1) as JSON\n"
    "lines, then keep following new events until interrupted (SIGINT or SIGTERM,\n"
    "then exit 0).  Works while another process appends.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR          the store directory (default: $EVSTORE_DIR)\n"
    "  --url URL              follow a running `evstore serve` at URL instead\n"
    "                         (default: $EVSTORE_URL) over Server-Sent Events; a\n"
    "                         dropped connection resumes after the last event\n"
    "  --from N               first global position to print (default: 1)\n"
    "  --type T1,T2           event_type is one of these\n"
    "  --stream-type C        stream_type is C\n"
    "  --stream-prefix P      stream name starts with P\n"
    "  --correlation UUID     correlation_id is UUID\n"
    "  --causation UUID       causation_id is UUID\n"
    "  --tag T1,T2            the event carries one of these tags\n"
    "  --tag-match any|all    with --tag: any of them (default) or all of them\n"
    "  --since TIME           recorded at or after TIME (RFC 3339 or ns since the epoch)\n"
    "  --until TIME           recorded before TIME (both after 1970-01-01T00:00:00Z)\n"
    "  -h, --help             show this help\n"
    "\n"
    "tail starts at position 1 (the whole log, then live); `GET /subscribe` without\n"
    "from= starts at the head instead (new events only).\n"
    "\n"
    "Exit status: 0 after SIGINT/SIGTERM, 1 usage, 2 store not found, 5 I/O error or\n"
    "server unreachable (with --url: not reachable again within 30 s of losing it).\n";

/* The filter flags and what they parse into. */
typedef struct evs_cli_filter {
    evs_filter f;
    char *types_buf;           /* --type value, split in place */
    const char **types;
    char *tags_buf;            /* --tag value, split in place */
    const char **tags;
    evs_uuid correlation;
    evs_uuid causation;
    const char *first_flag;    /* the first filter flag given, for messages */
    int tag_match_given;       /* --tag-match: meaningless without --tag */
} evs_cli_filter;

static void evs_cli_filter_free(evs_cli_filter *cf) {
    free(cf->types_buf);
    free((void *)cf->types);
    free(cf->tags_buf);
    free((void *)cf->tags);
    memset(cf, 0, sizeof *cf);
}

/* --tag T1,T2: any of these tags (1..255 bytes each). */
static int evs_cli_parse_tags(const evs__cli_args *a, const char *text, evs_cli_filter *cf) {
    free(cf->tags_buf);
    free((void *)cf->tags);
    cf->f.tags = NULL;
    cf->f.n_tags = 0;
    size_t n = 1;
    for (const char *p = text; *p; p++)
        if (*p == ',') n++;
    cf->tags_buf = strdup(text);
    cf->tags = calloc(n, sizeof *cf->tags);
    if (!cf->tags_buf || !cf->tags) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    size_t k = 0;
    for (char *p = cf->tags_buf;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (!p[0]) return evs__cli_usage(a->cmd, "--tag %s: empty tag (use T1,T2 without blanks)", text);
        if (strlen(p) > EVS_MAX_TAG_BYTES)
            return evs__cli_usage(a->cmd, "--tag: a tag is at most %u bytes", EVS_MAX_TAG_BYTES);
        cf->tags[k++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    cf->f.tags = cf->tags;
    cf->f.n_tags = k;
    return EVS_CLI_OK;
}

static int evs_cli_parse_types(const evs__cli_args *a, const char *text, evs_cli_filter *cf) {
    free(cf->types_buf);
    free((void *)cf->types);
    cf->types = NULL;
    cf->f.event_types = NULL;
    cf->f.n_event_types = 0;
    cf->types_buf = strdup(text);
    size_t n = 1;
    for (const char *p = text; *p; p++)
        if (*p == ',') n++;
    cf->types = calloc(n, sizeof *cf->types);
    if (!cf->types_buf || !cf->types) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    size_t k = 0;
    char *save = cf->types_buf;
    for (;;) {
        char *comma = strchr(save, ',');
        if (comma) *comma = '\0';
        if (!save[0])
            return evs__cli_usage(a->cmd, "--type %s: empty event type (use T1,T2 without blanks)",
                                  text);
        if (strlen(save) > EVS_MAX_TYPE_NAME)
            return evs__cli_usage(a->cmd, "--type: event type longer than %u bytes",
                                  EVS_MAX_TYPE_NAME);
        cf->types[k++] = save;
        if (!comma) break;
        save = comma + 1;
    }
    cf->f.event_types = cf->types;
    cf->f.n_event_types = k;
    return EVS_CLI_OK;
}

/*
 * If the current option is a filter flag, parse it into cf and set
 * *handled.  Returns an exit code.
 */
static int evs_cli_filter_opt(evs__cli_args *a, evs_cli_filter *cf, int *handled) {
    const char *v;
    int code;
    *handled = 1;
    if (evs__cli_is(a, "--type", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if ((code = evs_cli_parse_types(a, v, cf))) return code;
    } else if (evs__cli_is(a, "--stream-type", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if (!v[0]) return evs__cli_usage(a->cmd, "--stream-type: empty value");
        cf->f.stream_type = v;
    } else if (evs__cli_is(a, "--stream-prefix", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        cf->f.stream_prefix = v;
    } else if (evs__cli_is(a, "--correlation", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if (evs_uuid_parse(v, strlen(v), &cf->correlation) != EVS_OK)
            return evs__cli_usage(a->cmd,
                                  "--correlation %s: not a UUID (expected "
                                  "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                                  v);
        cf->f.correlation_id = &cf->correlation;
    } else if (evs__cli_is(a, "--tag", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if ((code = evs_cli_parse_tags(a, v, cf))) return code;
    } else if (evs__cli_is(a, "--tag-match", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if (strcmp(v, "any") && strcmp(v, "all"))
            return evs__cli_usage(a->cmd, "--tag-match %s: use any or all", v);
        cf->f.tag_match = strcmp(v, "all") == 0 ? EVS_TAGS_ALL : EVS_TAGS_ANY;
        cf->tag_match_given = 1;
    } else if (evs__cli_is(a, "--causation", NULL)) {
        if ((code = evs__cli_value(a, &v))) return code;
        if (evs_uuid_parse(v, strlen(v), &cf->causation) != EVS_OK)
            return evs__cli_usage(a->cmd,
                                  "--causation %s: not a UUID (expected "
                                  "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                                  v);
        cf->f.causation_id = &cf->causation;
    } else if (evs__cli_is(a, "--since", NULL) || evs__cli_is(a, "--until", NULL)) {
        int since = evs__cli_is(a, "--since", NULL);
        const char *flag = since ? "--since" : "--until";
        if ((code = evs__cli_value(a, &v))) return code;
        int64_t ns;
        evs__cli_clear_error();
        if (evs_time_parse(v, strlen(v), &ns) != EVS_OK)
            return evs__cli_usage(a->cmd, "%s %s: not a time: %s", flag, v, evs_errmsg());
        /* 0 is the filter's "unbounded": --until 0 would silently read everything */
        if (ns <= 0) return evs__cli_usage(a->cmd, "%s %s: must be after 1970-01-01T00:00:00Z", flag, v);
        if (since)
            cf->f.since = ns;
        else
            cf->f.until = ns;
    } else {
        *handled = 0;
        return EVS_CLI_OK;
    }
    /* a->name is overwritten by the next option: keep a literal instead. */
    static const char *const flags[] = {"--type", "--stream-type", "--stream-prefix", "--correlation",
                                        "--causation", "--tag", "--tag-match", "--since", "--until"};
    for (size_t i = 0; !cf->first_flag && i < sizeof flags / sizeof flags[0]; i++)
        if (evs__cli_is(a, flags[i], NULL)) cf->first_flag = flags[i];
    return EVS_CLI_OK;
}

/* The filter flags that only make sense together, once all are read.  Exit code. */
static int evs_cli_filter_check(const evs__cli_args *a, const evs_cli_filter *cf) {
    /* a lone --tag-match would filter nothing, which the user did not ask for */
    if (cf->tag_match_given && !cf->f.n_tags) return evs__cli_usage(a->cmd, "--tag-match needs --tag");
    return EVS_CLI_OK;
}

/* Print every event the reader yields.  *stop (may be NULL) ends early.  Status. */
static int evs_cli_drain(evs_reader *r, volatile sig_atomic_t *stop, size_t *printed) {
    const evs_event *ev;
    int rc = EVS_DONE;
    while (!(stop && *stop)) {
        rc = evs_reader_next(r, &ev);
        if (rc == EVS_ELOST) { /* said, not skipped in silence; the reader is already past it */
            fprintf(stderr, "evstore: %s\n", evs_errmsg());
            continue;
        }
        if (rc != EVS_OK) break;
        char *js = NULL;
        size_t jn = 0;
        rc = evs_event_to_json(ev, &js, &jn);
        if (rc != EVS_OK) return rc;
        fwrite(js, 1, jn, stdout);
        fputc('\n', stdout);
        free(js);
        if (printed) (*printed)++;
    }
    if (stop && *stop) return EVS_DONE;
    return rc;
}

int evs__cli_read(int argc, char **argv) {
    evs__cli_args a;
    evs_cli_filter cf;
    const char *opt_dir = NULL, *dir = NULL, *stream = NULL, *opt_url = NULL, *url = NULL;
    uint64_t from = 0, limit = 0;
    int have_from = 0, backward = 0;
    evs_store *store = NULL;
    evs_reader *reader = NULL;
    int code = EVS_CLI_OK;

    memset(&cf, 0, sizeof cf);
    evs__cli_args_init(&a, "read", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        int handled;
        const char *v;
        if (t == EVS_CLI_POSITIONAL) {
            if (stream) {
                code = evs__cli_usage(a.cmd, "unexpected argument \"%s\" (one STREAM or '$all')",
                                      a.arg);
                goto cleanup;
            }
            stream = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_read_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) goto cleanup;
        } else if (evs__cli_is(&a, "--from", NULL)) {
            if ((code = evs__cli_value(&a, &v))) goto cleanup;
            if ((code = evs__cli_u64(&a, "--from", v, UINT64_MAX, &from))) goto cleanup;
            if (from == 0) {
                code = evs__cli_usage(a.cmd, "--from 0: positions start at 1");
                goto cleanup;
            }
            have_from = 1;
        } else if (evs__cli_is(&a, "--limit", NULL)) {
            if ((code = evs__cli_value(&a, &v))) goto cleanup;
            if ((code = evs__cli_u64(&a, "--limit", v, SIZE_MAX, &limit))) goto cleanup;
            if (limit == 0) {
                code = evs__cli_usage(a.cmd, "--limit 0: at least 1 (leave --limit out to read everything)");
                goto cleanup;
            }
        } else if (evs__cli_is(&a, "--backward", NULL)) {
            if ((code = evs__cli_flag(&a))) goto cleanup;
            backward = 1;
        } else {
            if ((code = evs_cli_filter_opt(&a, &cf, &handled))) goto cleanup;
            if (!handled) {
                code = evs__cli_unknown(&a);
                goto cleanup;
            }
        }
    }
    if ((code = evs_cli_filter_check(&a, &cf))) goto cleanup;
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) goto cleanup;
    if (!stream) {
        code = evs__cli_usage(a.cmd, "missing STREAM (a stream name, or '$all' for every event)");
        goto cleanup;
    }
    int all = strcmp(stream, "$all") == 0;
    if (!all && cf.first_flag) {
        code = evs__cli_usage(a.cmd,
                              "%s filters only '$all'; a stream read returns all of the stream's "
                              "events",
                              cf.first_flag);
        goto cleanup;
    }
    if (url) {
        /* The server keeps UINT64_MAX for its own "end" and refuses it; every
           position that high is past the head, so the one below reads the
           same (nothing forward, from the last event backward), as -d does. */
        if (have_from && from == UINT64_MAX) from = UINT64_MAX - 1;
        code = evs__cli_remote_read(url, stream, have_from ? from : 0, limit, backward, &cf.f);
        goto cleanup;
    }
    if (!have_from) from = backward ? EVS_POSITION_END : 1;

    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;
    evs__cli_clear_error();
    int dirn = backward ? EVS_BACKWARD : EVS_FORWARD;
    int rc = all ? evs_read_all(store, from, dirn, &cf.f, (size_t)limit, &reader)
                 : evs_read_stream(store, stream, from, dirn, (size_t)limit, &reader);
    if (rc != EVS_OK) {
        code = evs__cli_lib_fail(rc, NULL);
        goto cleanup;
    }
    evs__cli_clear_error();
    rc = evs_cli_drain(reader, NULL, NULL);
    if (rc != EVS_DONE) code = evs__cli_lib_fail(rc, NULL);

cleanup:
    evs_reader_close(reader);
    code = evs__cli_close(store, dir, code);
    evs_cli_filter_free(&cf);
    return evs__cli_finish_output(code);
}

/* ------------------------------------------------------------------ tail */

static volatile sig_atomic_t evs_cli_tail_stop;

static void evs_cli_tail_signal(int sig) {
    (void)sig;
    evs_cli_tail_stop = 1;
}

/* How often the wait wakes up to notice a signal. */
#define EVS_CLI_TAIL_TICK_MS 200

int evs__cli_tail(int argc, char **argv) {
    evs__cli_args a;
    evs_cli_filter cf;
    const char *opt_dir = NULL, *dir = NULL, *opt_url = NULL, *url = NULL;
    uint64_t pos = 1;
    evs_store *store = NULL;
    evs_reader *reader = NULL;
    int code = EVS_CLI_OK;

    memset(&cf, 0, sizeof cf);
    evs__cli_args_init(&a, "tail", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        int handled;
        const char *v;
        if (t == EVS_CLI_POSITIONAL) {
            code = evs__cli_usage(a.cmd,
                                  "unexpected argument \"%s\" (tail follows the whole log; use "
                                  "--stream-prefix to narrow it)",
                                  a.arg);
            goto cleanup;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_tail_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) goto cleanup;
        } else if (evs__cli_is(&a, "--from", NULL)) {
            if ((code = evs__cli_value(&a, &v))) goto cleanup;
            if ((code = evs__cli_u64(&a, "--from", v, UINT64_MAX - 1, &pos))) goto cleanup;
            if (pos == 0) {
                code = evs__cli_usage(a.cmd, "--from 0: positions start at 1");
                goto cleanup;
            }
        } else {
            if ((code = evs_cli_filter_opt(&a, &cf, &handled))) goto cleanup;
            if (!handled) {
                code = evs__cli_unknown(&a);
                goto cleanup;
            }
        }
    }
    if ((code = evs_cli_filter_check(&a, &cf))) goto cleanup;
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) goto cleanup;

    /* No SA_RESTART needed: nothing here blocks in a system call that the
       signal must interrupt; the wait below (and the remote tail's poll)
       wakes up every tick. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = evs_cli_tail_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (url) {
        code = evs__cli_remote_tail(url, pos, &cf.f, &evs_cli_tail_stop);
        goto cleanup;
    }
    if ((code = evs__cli_open(dir, EVS_OPEN_READONLY, &store))) goto cleanup;
    while (!evs_cli_tail_stop) {
        evs__cli_clear_error();
        int rc = evs_read_all(store, pos, EVS_FORWARD, &cf.f, 0, &reader);
        if (rc != EVS_OK) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        rc = evs_cli_drain(reader, &evs_cli_tail_stop, NULL);
        if (rc != EVS_DONE) {
            code = evs__cli_lib_fail(rc, NULL);
            goto cleanup;
        }
        pos = evs_reader_position(reader);
        evs_reader_close(reader);
        reader = NULL;
        /* Whoever reads our output (a pipe, a log collector) sees each event
           as soon as it is stored, not when a stdio buffer fills. */
        if ((code = evs__cli_finish_output(EVS_CLI_OK))) goto cleanup;

        while (!evs_cli_tail_stop) {
            uint64_t head = 0;
            rc = evs_wait_for(store, pos, EVS_CLI_TAIL_TICK_MS, &head);
            if (rc == EVS_OK) break;
            if (rc == EVS_ETIMEDOUT) continue;
            code = evs__cli_lib_fail(rc, "waiting for events after position %llu",
                                     (unsigned long long)pos);
            goto cleanup;
        }
    }

cleanup:
    evs_reader_close(reader);
    code = evs__cli_close(store, dir, code);
    evs_cli_filter_free(&cf);
    return evs__cli_finish_output(code);
}
