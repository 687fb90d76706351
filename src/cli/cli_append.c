/*
 * cli_append.c — `evstore append`: one atomic append from the command line.
 *
 * Events come as JSON objects in the arguments or, when there are none, as
 * JSON lines on stdin (one event per line, blank lines skipped).  All events
 * of one invocation go to the store in ONE evs_append call, so they are
 * stored together or not at all.
 *
 * Every event is parsed before the store is opened: a typo in event 7 of a
 * batch must not leave events 1..6 stored, and must not create a store
 * directory either.  With --url the checked events go to the server as one
 * JSON array in one POST (cli_remote.c), so the append stays atomic.  Messages name the event and its source line, then the
 * parser's line and column within it:
 *     evstore: event 2 (stdin line 3): line 1, column 17: expected ',' or '}'
 *
 * Memory: the parsed events point into the input text (data and metadata are
 * handed to the store byte for byte), and each evs_event_parsed.ev points
 * into its own evs_event_parsed, so the input buffer and the parsed array are
 * allocated once, at their final size, and never moved.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_schema.h"
#include "core/condition_json.h"
#include "core/event_json.h"

static const char evs_append_help[] =
    "Usage: evstore append -d DIR|--url URL STREAM [--expected any|no-stream|exists|N]\n"
    "                      [--condition JSON] [EVENT_JSON ...]\n"
    "\n"
    "Append events to STREAM in one atomic append.  Each event is a JSON object:\n"
    "  {\"event_type\": \"OrderPlaced\", \"data\": {...}, \"metadata\": {...},\n"
    "   \"event_id\": \"UUID\", \"correlation_id\": \"UUID\", \"causation_id\": \"UUID\",\n"
    "   \"event_version\": 1, \"stream_type\": \"order\", \"tags\": [\"...\"],\n"
    "   \"occurred_at\": \"2026-01-01T00:00:00Z\"}\n"
    "event_type and data are required.  With no EVENT_JSON arguments, events are\n"
    "read from stdin, one JSON object per line (blank lines are skipped).\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR        the store directory (default: $EVSTORE_DIR); created if missing\n"
    "  --url URL            append through a running `evstore serve` at URL instead\n"
    "                       (default: $EVSTORE_URL), e.g. http://127.0.0.1:2113\n"
    "  --expected V         append only if the stream's version is V:\n"
    "                         any (default), no-stream, exists, or a version number\n"
    "  --condition JSON     append only if no event matching the query was stored after\n"
    "                       position P (a DCB condition; exit status 3 when one was):\n"
    "                         {\"after\": P, \"query\": [{\"types\": [...], \"tags\": [...]}]}\n"
    "                       (once: the query's items are OR'd)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Prints one JSON line: stream, first/last stream and global positions,\n"
    "idempotent (true when the same event ids were already stored there) and\n"
    "event_ids.  Re-sending events with the same event_id is safe.\n"
    "\n"
    "Exit status: 0 ok, 1 usage, 3 concurrency conflict, 4 invalid input\n"
    "(nothing stored), 5 I/O error or server unreachable.\n";

/*
 * stdin cap: one append holds at most EVS_MAX_APPEND_BYTES of events; the
 * JSON envelope around data and metadata adds a little per event, so allow
 * a generous margin before refusing to read further.
 */
#define EVS_CLI_STDIN_MAX ((size_t)EVS_MAX_APPEND_BYTES + 16u * 1024 * 1024)

typedef evs__cli_src evs_cli_src; /* cli.h: the remote append takes them too */

/* Read all of stdin into *out (NUL-terminated for safety).  Exit code. */
static int evs_cli_read_stdin(char **out, size_t *out_len) {
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    int code = EVS_CLI_OK;
    if (!buf) {
        code = evs__cli_fail(EVS_CLI_IO, "reading stdin: out of memory");
        goto cleanup;
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > EVS_CLI_STDIN_MAX) {
                code = evs__cli_fail(EVS_CLI_INVALID,
                                     "stdin: more than %zu MiB of input; one append holds at most "
                                     "%u MiB of events",
                                     EVS_CLI_STDIN_MAX >> 20, EVS_MAX_APPEND_BYTES >> 20);
                goto cleanup;
            }
            size_t ncap = cap * 2;
            /* one byte past the cap tells "too much" from "exactly the cap" */
            if (ncap > EVS_CLI_STDIN_MAX + 2) ncap = EVS_CLI_STDIN_MAX + 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                code = evs__cli_fail(EVS_CLI_IO, "reading stdin: out of memory");
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(STDIN_FILENO, buf + len, cap - len - 1);
        if (r == 0) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            code = evs__cli_fail(EVS_CLI_IO, "reading stdin: %s", strerror(errno));
            goto cleanup;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
cleanup:
    free(buf);
    return code;
}

static int evs_cli_blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
    return 1;
}

/*
 * Split stdin text into non-blank lines.  *srcs is allocated with room for
 * every line; *n receives how many are events.  Exit code.
 */
static int evs_cli_split_lines(const char *text, size_t len, evs_cli_src **srcs, size_t *n) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') lines++;
    evs_cli_src *s = calloc(lines, sizeof *s);
    if (!s) return evs__cli_fail(EVS_CLI_IO, "reading stdin: out of memory");
    size_t count = 0, start = 0;
    unsigned line = 1;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n') continue;
        if (!evs_cli_blank(text + start, i - start)) {
            s[count].p = text + start;
            s[count].n = i - start;
            s[count].line = line;
            count++;
        }
        start = i + 1;
        line++;
    }
    *srcs = s;
    *n = count;
    return EVS_CLI_OK;
}

static int evs_cli_parse_expected(const evs__cli_args *a, const char *text, int64_t *out) {
    if (strcmp(text, "any") == 0) {
        *out = EVS_EXPECT_ANY;
        return EVS_CLI_OK;
    }
    if (strcmp(text, "no-stream") == 0) {
        *out = EVS_EXPECT_NO_STREAM;
        return EVS_CLI_OK;
    }
    if (strcmp(text, "exists") == 0) {
        *out = EVS_EXPECT_EXISTS;
        return EVS_CLI_OK;
    }
    if (!(text[0] >= '0' && text[0] <= '9') && text[0] != '-')
        return evs__cli_usage(a->cmd,
                              "--expected %s: not a version (use any, no-stream, exists or a number)",
                              text);
    uint64_t v;
    int code = evs__cli_u64(a, "--expected", text, (uint64_t)INT64_MAX, &v);
    if (code) return code;
    *out = (int64_t)v;
    return EVS_CLI_OK;
}

static void evs_cli_print_result(const char *stream, const evs_append_result *res,
                                 const evs_uuid *ids, size_t n) {
    fputs("{\"stream\":", stdout);
    evs__cli_json_str(stdout, stream, strlen(stream));
    printf(",\"first_stream_position\":%llu,\"last_stream_position\":%llu"
           ",\"first_global_position\":%llu,\"last_global_position\":%llu,\"idempotent\":%s"
           ",\"event_ids\":[",
           (unsigned long long)res->first_stream_position,
           (unsigned long long)res->last_stream_position,
           (unsigned long long)res->first_global_position,
           (unsigned long long)res->last_global_position, res->idempotent ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        char u[37];
        evs_uuid_format(&ids[i], u);
        printf("%s\"%s\"", i ? "," : "", u);
    }
    fputs("]}\n", stdout);
}

int evs__cli_append(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *dir = NULL, *stream = NULL, *opt_url = NULL, *url = NULL;
    int64_t expected = EVS_EXPECT_ANY;
    const char *condition = NULL;
    evs_condition_parsed cp;
    memset(&cp, 0, sizeof cp);
    char *input = NULL;
    size_t input_len = 0;
    evs_cli_src *srcs = NULL;
    size_t n = 0, nparsed = 0;
    evs_event_parsed *parsed = NULL;
    evs_event_in *ins = NULL;
    evs_uuid *ids = NULL;
    evs_store *store = NULL;
    evs_schema_registry *schemas = NULL;
    int code = EVS_CLI_OK;

    /* Event arguments are at most argc; collect them without copying. */
    srcs = calloc((size_t)argc + 1, sizeof *srcs);
    if (!srcs) return evs__cli_fail(EVS_CLI_IO, "out of memory");

    evs__cli_args_init(&a, "append", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        if (t == EVS_CLI_POSITIONAL) {
            if (!stream) {
                stream = a.arg;
            } else {
                srcs[n].p = a.arg;
                srcs[n].n = strlen(a.arg);
                n++;
            }
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_append_help, stdout);
            goto cleanup;
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) goto cleanup;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) goto cleanup;
        } else if (evs__cli_is(&a, "--expected", NULL)) {
            const char *v;
            if ((code = evs__cli_value(&a, &v))) goto cleanup;
            if ((code = evs_cli_parse_expected(&a, v, &expected))) goto cleanup;
        } else if (evs__cli_is(&a, "--condition", NULL)) {
            /* one condition per append (a query with several items says "any of"):
               a second one would silently replace the first */
            if (condition) {
                code = evs__cli_usage(a.cmd, "--condition given twice (one condition per append; put several "
                                             "items in its query instead)");
                goto cleanup;
            }
            if ((code = evs__cli_value(&a, &condition))) goto cleanup;
            evs_json_error je;
            const char *where;
            evs__cli_clear_error();
            if (evs__json_validate(condition, strlen(condition), &je)) {
                code = evs__cli_usage(a.cmd, "--condition: %s", je.msg);
                goto cleanup;
            }
            if (evs__condition_from_json(evs__json_root(condition, strlen(condition)), &cp, &where)) {
                code = evs__cli_usage(a.cmd, "--condition: %s", evs_errmsg());
                goto cleanup;
            }
        } else {
            code = evs__cli_unknown(&a);
            goto cleanup;
        }
    }
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) goto cleanup;
    if (!stream) {
        code = evs__cli_usage(a.cmd, "missing STREAM");
        goto cleanup;
    }

    if (n == 0) {
        free(srcs);
        srcs = NULL;
        if ((code = evs_cli_read_stdin(&input, &input_len))) goto cleanup;
        if ((code = evs_cli_split_lines(input, input_len, &srcs, &n))) goto cleanup;
        if (n == 0) {
            code = evs__cli_fail(EVS_CLI_INVALID,
                                 "no events: stdin held no JSON lines (an append needs at least one "
                                 "event); nothing stored");
            goto cleanup;
        }
    }
    if (n > EVS_MAX_EVENTS_PER_APPEND) {
        code = evs__cli_fail(EVS_CLI_INVALID,
                             "%zu events: one append holds at most %u; nothing stored", n,
                             EVS_MAX_EVENTS_PER_APPEND);
        goto cleanup;
    }

    parsed = calloc(n, sizeof *parsed);
    ins = calloc(n, sizeof *ins);
    ids = calloc(n, sizeof *ids);
    if (!parsed || !ins || !ids) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory for %zu events", n);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        evs_json_error jerr;
        memset(&jerr, 0, sizeof jerr);
        evs__cli_clear_error();
        int rc = evs__event_from_json(srcs[i].p, srcs[i].n, &parsed[i], &jerr);
        if (rc != EVS_OK) {
            /* A malformed-JSON message already starts with "line L, column
               C:"; for a well-formed but invalid event the parser leaves the
               position of the offending value in jerr and the bare reason in
               its message, so the position is added here. */
            char where[64] = "";
            const char *why = jerr.msg[0] ? jerr.msg : evs_errmsg();
            if (rc != EVS_EJSON && jerr.msg[0] && jerr.line)
                snprintf(where, sizeof where, "line %u, column %u: ", jerr.line, jerr.column);
            if (srcs[i].line)
                code = evs__cli_fail(evs__cli_exit_code(rc), "event %zu (stdin line %u): %s%s", i + 1,
                                     srcs[i].line, where, why);
            else
                code = evs__cli_fail(evs__cli_exit_code(rc), "event %zu: %s%s", i + 1, where, why);
            goto cleanup;
        }
        nparsed++;
        ins[i] = parsed[i].ev;
    }

    if (url) {
        code = evs__cli_remote_append(url, stream, expected, condition, srcs, n);
        goto cleanup;
    }
    if ((code = evs__cli_open(dir, EVS_OPEN_CREATE, &store))) goto cleanup;
    /* a store with schemas validates what is appended to it, here too */
    if ((code = evs__cli_open_schemas(store, dir, &schemas))) goto cleanup;
    evs_append_result res;
    memset(&res, 0, sizeof res);
    evs__cli_clear_error();
    int rc = evs_append_if(store, stream, expected, condition ? &cp.cond : NULL, ins, n, &res, ids);
    if (rc != EVS_OK) {
        /* The conflict message is part of the contract and already says
           everything ("Concurrency conflict: expected version X, actual
           version Y"); other messages from the store name the problem too. */
        code = evs__cli_lib_fail(rc, NULL);
        goto cleanup;
    }
    evs_cli_print_result(stream, &res, ids, n);

cleanup:
    evs__condition_parsed_free(&cp);
    evs_schema_close(schemas);
    code = evs__cli_close(store, dir, code);
    for (size_t i = 0; i < nparsed; i++) evs__event_parsed_free(&parsed[i]);
    free(parsed);
    free(ins);
    free(ids);
    free(srcs);
    free(input);
    return evs__cli_finish_output(code);
}
