/*
 * cli_replay.c — `evstore projection state NAME [PARTITION] --as-of P|T`,
 * `projection what-if NAME --spec JSON|@FILE [--as-of P|T]` and
 * `projection compare NAME A B`: a projection replayed into a temporary
 * state (src/bus/replay.c), locally on a read-only store (so beside a
 * running server too) or through --url (routes_replay.c).  The request is
 * read by src/bus/replay_spec.c either way, so it is refused with the same
 * words; the output is the server's JSON, one line.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/replay_spec.h"
#include "cli/cli.h"
#include "cli/cli_bus.h"
#include "cli/cli_http.h"
#include "evstore_bus.h"

/* The what-if request: --spec (text or @FILE, an object) with --as-of on top.  Exit code. */
static int what_if_json(const char *spec, const char *as_of, json_t **out) {
    json_t *j = NULL;
    *out = NULL;
    if (spec) {
        char *text = NULL;
        size_t n = strlen(spec);
        const char *src = spec;
        if (spec[0] == '@') {
            if (!(text = evs__cli_read_file(spec + 1, 16u << 20, &n)))
                return evs__cli_fail(EVS_CLI_NOTFOUND, "projection what-if --spec: cannot read %s (missing or over 16 MiB)",
                                     spec + 1);
            src = text;
        }
        json_error_t je;
        j = json_loadb(src, n, JSON_REJECT_DUPLICATES, &je);
        free(text);
        if (!j)
            return evs__cli_fail(EVS_CLI_INVALID, "projection what-if --spec: malformed JSON: line %d, column %d: %s",
                                 je.line, je.column, je.text);
        if (!json_is_object(j)) {
            json_decref(j);
            return evs__cli_fail(EVS_CLI_INVALID, "projection what-if --spec: expected a JSON object {as_of, exclude, "
                                                  "insert, source, partition}");
        }
    } else if (!(j = json_object())) {
        return evs__cli_fail(EVS_CLI_IO, "out of memory");
    }
    if (as_of) json_object_set_new(j, "as_of", json_string(as_of));
    *out = j;
    return EVS_CLI_OK;
}

/* A side of compare as JSON: an object for what-if text, else the text as a string. */
static int side_json(const char *text, json_t **out) {
    if (text[0] == '{') {
        json_error_t je;
        if (!(*out = json_loads(text, JSON_REJECT_DUPLICATES, &je)))
            return evs__cli_fail(EVS_CLI_INVALID, "projection compare: malformed JSON: line %d, column %d: %s", je.line,
                                 je.column, je.text);
        return EVS_CLI_OK;
    }
    if (!(*out = json_string(text))) return evs__cli_fail(EVS_CLI_INVALID, "projection compare: \"%s\" is not UTF-8", text);
    return EVS_CLI_OK;
}

static void path_of(evs__sb *p, const char *name, const char *rest) {
    evs__sb_adds(p, "/projections/");
    evs__cli_pct(p, name, strlen(name));
    evs__sb_adds(p, rest);
}

static int remote(const char *url, const char *act, const char *name, const char *arg1, json_t *body) {
    evs__cli_http *h;
    int code = evs__cli_http_open("projection", url, &h);
    if (code) return code;
    evs__sb p = {0};
    char *text = NULL;
    if (strcmp(act, "state") == 0) {
        path_of(&p, name, "/state");
        if (arg1) {
            evs__sb_adds(&p, "/");
            evs__cli_pct(&p, arg1, strlen(arg1));
        }
        evs__sb_adds(&p, "?as_of=");
        const char *as_of = json_string_value(json_object_get(body, "as_of"));
        evs__cli_pct(&p, as_of, strlen(as_of));
    } else {
        path_of(&p, name, strcmp(act, "compare") == 0 ? "/compare" : "/what-if");
        if (!(text = json_dumps(body, JSON_COMPACT))) code = evs__cli_fail(EVS_CLI_IO, "out of memory");
    }
    if (!code && p.oom) code = evs__cli_fail(EVS_CLI_IO, "out of memory");
    if (!code) code = evs__cli_http_request(h, p.p, text, text ? strlen(text) : 0, NULL);
    if (!code && evs__cli_http_status(h) / 100 != 2) code = evs__cli_http_fail(h, p.p);
    evs_json_span root;
    if (!code && !(code = evs__cli_http_json(h, p.p, &root))) {
        fwrite(root.p, 1, root.n, stdout);
        fputc('\n', stdout);
    }
    free(text);
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}

/* The state of one partition out of a replay's result (local state --as-of). */
static int print_partition(const char *result, const char *name, const char *part, const char *as_of) {
    json_error_t je;
    json_t *root = json_loads(result, 0, &je);
    if (!root) return evs__cli_fail(EVS_CLI_IO, "a replay's result is not JSON: %s", je.text);
    json_t *st = json_object_get(json_object_get(root, "partitions"), part ? part : "");
    const char *pt = json_string_value(json_object_get(root, "partitioning"));
    int code = EVS_CLI_OK;
    if (!st) {
        if (part) code = evs__cli_fail(EVS_CLI_NOTFOUND, "projection \"%s\" has no partition \"%s\" as of %s", name, part, as_of);
        else if (pt && strcmp(pt, "none") != 0)
            code = evs__cli_fail(EVS_CLI_NOTFOUND, "projection \"%s\" is partitioned: name a PARTITION", name);
        else code = evs__cli_fail(EVS_CLI_NOTFOUND, "projection \"%s\" has no state as of %s (no event applied)", name, as_of);
    } else {
        char *js = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
        if (js) printf("%s\n", js);
        else code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        free(js);
    }
    json_decref(root);
    return code;
}

static int local(const char *dir, const char *act, const char *name, const char *arg1, const char *arg2,
                 json_t *body, json_t *ja, json_t *jb) {
    evs_store *s = NULL;
    evs_bus *b = NULL;
    evs__state_spec x, y;
    char why[512], *out = NULL;
    size_t len = 0;
    int rc = EVS_OK;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    /* the request first: a bad one is refused before the store is opened */
    if (strcmp(act, "compare") == 0) {
        if (evs__state_spec_json(ja, 1, &x, why, sizeof why)) {
            evs__state_spec_free(&x);
            return evs__cli_fail(EVS_CLI_INVALID, "projection compare: a: %s", why);
        }
        if (evs__state_spec_json(jb, 1, &y, why, sizeof why)) {
            evs__state_spec_free(&x);
            evs__state_spec_free(&y);
            return evs__cli_fail(EVS_CLI_INVALID, "projection compare: b: %s", why);
        }
    } else if (evs__state_spec_json(body, 0, &x, why, sizeof why)) {
        evs__state_spec_free(&x);
        return evs__cli_fail(EVS_CLI_INVALID, "projection %s: %s", act, why);
    }
    int code = evs__cli_open(dir, EVS_OPEN_READONLY, &s);
    if (code) goto cleanup;
    evs__cli_clear_error();
    if ((rc = evs_bus_open(s, &b))) goto done;
    if (strcmp(act, "state") == 0) {
        x.opts.partition = arg1 ? arg1 : "";
        evs_replay_result r;
        if (!(rc = evs_proj_replay(b, name, NULL, 0, &x.opts, &r))) {
            code = print_partition(r.json, name, arg1, json_string_value(json_object_get(body, "as_of")));
            evs_replay_result_free(&r);
        }
    } else if (strcmp(act, "what-if") == 0) {
        if (!(rc = evs__state_spec_run(b, name, &x, &out, &len))) printf("%s\n", out);
    } else {
        if (!(rc = evs__compare(b, name, &x, &y, &out, &len))) printf("%s\n", out);
    }
    (void)arg2;
done:
    if (rc) code = evs__cli_lib_fail(rc, "projection %s %s", act, name);
cleanup:
    free(out);
    evs__state_spec_free(&x);
    evs__state_spec_free(&y);
    evs_bus_close(b);
    return evs__cli_close(s, dir, code);
}

int evs__cli_projection_replay(const char *dir, const char *url, const char *act, const char *name, const char *arg1,
                               const char *arg2, const char *as_of, const char *spec) {
    json_t *body = NULL, *ja = NULL, *jb = NULL;
    int code;
    if (strcmp(act, "compare") == 0) {
        if ((code = side_json(arg1, &ja)) || (code = side_json(arg2, &jb))) goto out;
        if (url && !(body = json_pack("{sOsO}", "a", ja, "b", jb))) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            goto out;
        }
    } else if ((code = what_if_json(spec, as_of, &body))) {
        goto out;
    }
    code = url ? remote(url, act, name, arg1, body) : local(dir, act, name, arg1, arg2, body, ja, jb);
out:
    json_decref(body);
    json_decref(ja);
    json_decref(jb);
    return code;
}
