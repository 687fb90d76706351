/*
 * cli_schema_remote.c — `evstore schema ... --url URL`: the schema registry
 * of a running `evstore serve` (docs/http-api.md, "Schemas"), which holds
 * the store's lock, so this is how a registry is changed while it serves.
 * Each action is one route; the output is what the local command prints
 * (JSON lines of the same fields) and the exit codes are the local ones:
 * 2 not found, 3 not compatible, 4 invalid schema or data.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "cli/cli_schema.h"

static void print_value(json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) printf("%s\n", s);
    free(s);
}

/* The answer as jansson (NULL with *code set after printing why; a non-2xx answer is reported). */
static json_t *answer(evs__cli_http *h, const char *path, int *code) {
    long st = evs__cli_http_status(h);
    if (st < 200 || st > 299) {
        *code = evs__cli_http_fail(h, path);
        return NULL;
    }
    evs_json_span root;
    if ((*code = evs__cli_http_json(h, path, &root))) return NULL;
    json_t *o = json_loadb(root.p, root.n, 0, NULL);
    if (!o) *code = evs__cli_fail(EVS_CLI_IO, "%s: the server's answer cannot be parsed", path);
    return o;
}

int evs__cli_schema_remote(const char *url, const char *act, const char *const *pos, int npos, const char *text,
                           size_t len, uint64_t version, const char *migration_path) {
    evs__cli_http *h;
    int code = evs__cli_http_open("schema", url, &h);
    if (code) return code;
    evs__sb path = {0};
    json_t *o = NULL;
    evs__sb_adds(&path, "/schemas");
    if (npos >= 2) {
        evs__sb_adds(&path, "/");
        evs__cli_pct(&path, pos[1], strlen(pos[1]));
    }
    if (!strcmp(act, "list")) {
        if ((code = evs__cli_http_request(h, path.p, NULL, 0, NULL))) goto out;
        if (!(o = answer(h, path.p, &code))) goto out;
        json_t *types = npos >= 2 ? json_pack("[O]", o) : json_incref(json_object_get(o, "types"));
        size_t i, j;
        json_t *t, *v;
        json_array_foreach(types, i, t) json_array_foreach(json_object_get(t, "versions"), j, v) print_value(v);
        json_decref(types);
    } else if (!strcmp(act, "show")) {
        if (npos >= 3) {
            evs__sb_adds(&path, "/");
            evs__sb_adds(&path, pos[2]);
        } else {
            /* the latest: ask the type first */
            if ((code = evs__cli_http_request(h, path.p, NULL, 0, NULL))) goto out;
            if (!(o = answer(h, path.p, &code))) goto out;
            evs__sb_printf(&path, "/%lld", (long long)json_integer_value(json_object_get(o, "latest")));
            json_decref(o);
            o = NULL;
        }
        if ((code = evs__cli_http_request(h, path.p, NULL, 0, NULL))) goto out;
        if (!(o = answer(h, path.p, &code))) goto out;
        print_value(o);
    } else if (!strcmp(act, "register") || !strcmp(act, "check")) {
        if (act[0] == 'c') evs__sb_adds(&path, "/check");
        char sep = '?';
        if (version) {
            evs__sb_printf(&path, "%cversion=%llu", sep, (unsigned long long)version);
            sep = '&';
        }
        if (migration_path && act[0] == 'r') {
            evs__sb_printf(&path, "%cmigration_path=", sep);
            evs__cli_pct(&path, migration_path, strlen(migration_path));
        }
        if (act[0] == 'r') evs__cli_http_set_method(h, "PUT");
        if ((code = evs__cli_http_request(h, path.p, text, len, NULL))) goto out;
        if (!(o = answer(h, path.p, &code))) goto out;
        if (act[0] == 'c' && json_is_false(json_object_get(o, "compatible"))) {
            code = evs__cli_fail(EVS_CLI_CONFLICT, "schema check: %s", json_string_value(json_object_get(o, "reason")));
            goto out;
        }
        print_value(o);
    } else if (!strcmp(act, "validate")) {
        evs__sb_printf(&path, "/%s/validate", pos[2]);
        if ((code = evs__cli_http_request(h, path.p, text, len, NULL))) goto out;
        if (!(o = answer(h, path.p, &code))) goto out;
        if (json_is_false(json_object_get(o, "valid"))) {
            fprintf(stderr, "evstore: schema validate: at %s: %s: %s\n",
                    json_string_length(json_object_get(o, "pointer")) ? json_string_value(json_object_get(o, "pointer"))
                                                                     : "(root)",
                    json_string_value(json_object_get(o, "keyword")), json_string_value(json_object_get(o, "message")));
            json_object_del(o, "schema_path");
            code = EVS_CLI_INVALID;
        }
        print_value(o);
    } else if (!strcmp(act, "deprecate")) {
        evs__sb_printf(&path, "/%s/deprecate", pos[2]);
        evs__cli_http_set_method(h, migration_path ? "DELETE" : "POST"); /* (undo passed as migration_path != NULL) */
        if ((code = evs__cli_http_request(h, path.p, NULL, 0, NULL))) goto out;
        if (!(o = answer(h, path.p, &code))) goto out;
        print_value(o);
    } else if (!strcmp(act, "compat")) {
        evs__sb_adds(&path, "/compat");
        json_t *b = json_pack("{ss}", "compat", pos[2]);
        char *bs = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        evs__cli_http_set_method(h, "PUT");
        code = bs ? evs__cli_http_request(h, path.p, bs, strlen(bs), NULL) : EVS_CLI_IO;
        free(bs);
        if (code || !(o = answer(h, path.p, &code))) goto out;
        print_value(o);
    } else {
        code = evs__cli_usage("schema", "%s: not available with --url (list, show, register, check, validate, "
                                        "deprecate and compat are)", act);
    }
out:
    json_decref(o);
    evs__sb_free(&path);
    evs__cli_http_close(h);
    return code ? code : evs__cli_finish_output(EVS_CLI_OK);
}
