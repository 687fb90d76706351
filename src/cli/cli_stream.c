/*
 * cli_stream.c — `evstore stream`: a stream's metadata and its deletion,
 * on a store directory (-d) or a running server (--url, the routes of
 * src/server/routes_stream_meta.c).  The answer is the JSON the HTTP API
 * gives, one line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "core/sb.h"

static const char evs_stream_help[] =
    "Usage: evstore stream meta get STREAM  -d DIR|--url URL\n"
    "       evstore stream meta set STREAM JSON [--expected V] -d DIR|--url URL\n"
    "       evstore stream delete STREAM [--hard] [--expected V] -d DIR|--url URL\n"
    "\n"
    "A stream's metadata is a JSON object: max_age (seconds), max_count,\n"
    "truncate_before (stream position) and keys of your own; reads skip the\n"
    "events it hides.  `delete` soft-deletes (the stream reads as not found;\n"
    "appending re-creates it, positions continue); --hard leaves a tombstone:\n"
    "the stream can never be written again.  Nothing is removed from the log.\n"
    "\n"
    "Options:\n"
    "  -d, --dir DIR     the store directory (default: $EVSTORE_DIR)\n"
    "  --url URL         a running `evstore serve` (default: $EVSTORE_URL)\n"
    "  --expected V      meta set: the metadata version it replaces; delete: the\n"
    "                    stream's version (any, no-stream, exists or a number)\n"
    "  --hard            delete: a tombstone (for ever)\n"
    "  -h, --help        show this help\n";

enum { OP_GET, OP_SET, OP_DELETE };

static int parse_expected(const evs__cli_args *a, const char *text, int64_t *out) {
    if (!strcmp(text, "any")) *out = EVS_EXPECT_ANY;
    else if (!strcmp(text, "no-stream")) *out = EVS_EXPECT_NO_STREAM;
    else if (!strcmp(text, "exists")) *out = EVS_EXPECT_EXISTS;
    else {
        uint64_t v;
        int code = evs__cli_u64(a, "--expected", text, (uint64_t)INT64_MAX, &v);
        if (code) return code;
        *out = (int64_t)v;
    }
    return EVS_CLI_OK;
}

static int remote(const char *url, int op, const char *stream, const char *json, int64_t expected, int hard) {
    evs__cli_http *h = NULL;
    evs__sb path = {0};
    int code;
    if ((code = evs__cli_http_open("stream", url, &h))) return code;
    evs__sb_adds(&path, "/streams/");
    evs__cli_pct(&path, stream, strlen(stream));
    if (op != OP_DELETE) evs__sb_adds(&path, "/metadata");
    if (op != OP_GET) {
        char e[32];
        if (expected == EVS_EXPECT_ANY) snprintf(e, sizeof e, "any");
        else if (expected == EVS_EXPECT_EXISTS) snprintf(e, sizeof e, "exists");
        else if (expected == EVS_EXPECT_NO_STREAM) snprintf(e, sizeof e, "no-stream");
        else snprintf(e, sizeof e, "%lld", (long long)expected);
        evs__sb_printf(&path, "?expected=%s%s", e, hard ? "&hard=true" : "");
    }
    if (path.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto cleanup;
    }
    if (op == OP_SET) evs__cli_http_set_method(h, "PUT");
    if (op == OP_DELETE) evs__cli_http_set_method(h, "DELETE");
    if ((code = evs__cli_http_request(h, path.p, op == OP_SET ? json : (op == OP_DELETE ? "" : NULL),
                                      op == OP_SET ? strlen(json) : 0, NULL)))
        goto cleanup;
    if (evs__cli_http_status(h) / 100 != 2) {
        code = evs__cli_http_fail(h, path.p);
        goto cleanup;
    }
    evs_json_span root;
    if ((code = evs__cli_http_json(h, path.p, &root))) goto cleanup;
    printf("%.*s\n", (int)root.n, root.p);
    code = evs__cli_finish_output(EVS_CLI_OK);
cleanup:
    evs__sb_free(&path);
    evs__cli_http_close(h);
    return code;
}

static int local(const char *dir, int op, const char *stream, const char *json, int64_t expected, int hard) {
    evs_store *s = NULL;
    int code = evs__cli_open(dir, op == OP_GET ? EVS_OPEN_READONLY : 0, &s);
    if (code) return code;
    int rc;
    if (op == OP_GET) {
        char *j = NULL;
        size_t n = 0;
        uint64_t v = 0;
        if ((rc = evs_stream_get_metadata(s, stream, &j, &n, &v, NULL))) {
            code = evs__cli_lib_fail(rc, NULL);
        } else {
            fputs("{\"stream\":", stdout);
            evs__cli_json_str(stdout, stream, strlen(stream));
            printf(",\"metadata_version\":%llu,\"metadata\":%.*s}\n", (unsigned long long)v, (int)n, j);
            free(j);
        }
    } else if (op == OP_SET) {
        uint64_t v = 0;
        if ((rc = evs_stream_set_metadata(s, stream, expected, json, strlen(json), &v))) {
            code = evs__cli_lib_fail(rc, NULL);
        } else {
            fputs("{\"stream\":", stdout);
            evs__cli_json_str(stdout, stream, strlen(stream));
            printf(",\"metadata_version\":%llu}\n", (unsigned long long)v);
        }
    } else {
        if ((rc = evs_stream_delete(s, stream, expected, hard))) {
            code = evs__cli_lib_fail(rc, NULL);
        } else {
            fputs("{\"stream\":", stdout);
            evs__cli_json_str(stdout, stream, strlen(stream));
            printf(",\"deleted\":\"%s\"}\n", hard ? "hard" : "soft");
        }
    }
    if (!code) code = evs__cli_finish_output(EVS_CLI_OK);
    return evs__cli_close(s, dir, code);
}

int evs__cli_stream(int argc, char **argv) {
    evs__cli_args a;
    const char *opt_dir = NULL, *opt_url = NULL, *dir = NULL, *url = NULL;
    const char *pos[4] = {0};
    int npos = 0, hard = 0, have_expected = 0, code;
    int64_t expected = EVS_EXPECT_ANY;
    evs__cli_args_init(&a, "stream", argc, argv);
    int t;
    while ((t = evs__cli_args_next(&a)) != EVS_CLI_END) {
        const char *v;
        if (t == EVS_CLI_POSITIONAL) {
            if (npos == 4) return evs__cli_usage(a.cmd, "unexpected argument \"%s\"", a.arg);
            pos[npos++] = a.arg;
        } else if (evs__cli_is(&a, "--help", "-h")) {
            fputs(evs_stream_help, stdout);
            return evs__cli_finish_output(EVS_CLI_OK);
        } else if (evs__cli_is(&a, "--dir", "-d")) {
            if ((code = evs__cli_value(&a, &opt_dir))) return code;
        } else if (evs__cli_is(&a, "--url", NULL)) {
            if ((code = evs__cli_value(&a, &opt_url))) return code;
        } else if (evs__cli_is(&a, "--expected", NULL)) {
            if ((code = evs__cli_value(&a, &v))) return code;
            if ((code = parse_expected(&a, v, &expected))) return code;
            have_expected = 1;
        } else if (evs__cli_is(&a, "--hard", NULL)) {
            if ((code = evs__cli_flag(&a))) return code;
            hard = 1;
        } else {
            return evs__cli_unknown(&a);
        }
    }
    int op;
    const char *stream, *json = NULL;
    if (npos >= 1 && !strcmp(pos[0], "delete")) {
        if (npos != 2) return evs__cli_usage(a.cmd, "usage: stream delete STREAM [--hard] [--expected V]");
        op = OP_DELETE;
        stream = pos[1];
    } else if (npos >= 2 && !strcmp(pos[0], "meta") && !strcmp(pos[1], "get")) {
        if (npos != 3) return evs__cli_usage(a.cmd, "usage: stream meta get STREAM");
        op = OP_GET;
        stream = pos[2];
    } else if (npos >= 2 && !strcmp(pos[0], "meta") && !strcmp(pos[1], "set")) {
        if (npos != 4) return evs__cli_usage(a.cmd, "usage: stream meta set STREAM JSON [--expected V]");
        op = OP_SET;
        stream = pos[2];
        json = pos[3];
    } else {
        return evs__cli_usage(a.cmd, "expected `meta get`, `meta set` or `delete`");
    }
    if (hard && op != OP_DELETE) return evs__cli_usage(a.cmd, "--hard goes with `delete` only");
    /* a get has no version to compare: taking --expected would promise a check that never happens */
    if (have_expected && op == OP_GET) return evs__cli_usage(a.cmd, "--expected does not apply to stream meta get");
    if ((code = evs__cli_target(&a, opt_dir, opt_url, &dir, &url))) return code;
    return url ? remote(url, op, stream, json, expected, hard) : local(dir, op, stream, json, expected, hard);
}
