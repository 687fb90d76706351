/*
 * cli_app_remote.c — `evstore command|query|aggregate ... --url URL`: the
 * application-layer commands against a running `evstore serve`, which
 * holds the store and runs the projections.  Each action is one route of
 * docs/http-api.md ("Commands, queries and aggregates"); the output is
 * what the local command prints, and exit codes follow the status like
 * every --url command (cli_http.h).
 *
 * A command's answer is its result object plus "error" and "detail" when
 * it was not accepted (the server's error convention); those two are
 * dropped before printing, so stdout carries the result exactly as a
 * local run prints it, and the reason goes to stderr.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_app.h"
#include "cli/cli_http.h"

/* The answer's JSON as a jansson value (NULL after printing why). */
static json_t *answer_json(evs__cli_http *h, const char *path, int *code) {
    evs_json_span root;
    if ((*code = evs__cli_http_json(h, path, &root))) return NULL;
    json_t *o = json_loadb(root.p, root.n, 0, NULL);
    if (!o) *code = evs__cli_fail(EVS_CLI_IO, "%s: the server's answer cannot be parsed", path);
    return o;
}

static void print_value(json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) printf("%s\n", s);
    free(s);
}

/*
 * One command's answer (o, with its status): the result printed without
 * the error members, the reason on stderr.  Returns the exit code; an
 * answer without an outcome (the server could not run it) prints nothing
 * on stdout.
 */
static int one_answer(json_t *o, long status) {
    int code = evs__cli_http_exit_code(status);
    json_t *err = json_incref(json_object_get(o, "error")); /* outlives its removal below */
    if (json_is_string(json_object_get(o, "outcome"))) {
        json_object_del(o, "error");
        json_object_del(o, "detail");
        json_object_del(o, "status");
        print_value(o);
    }
    if (code) evs__cli_fail(code, "%s", json_is_string(err) ? json_string_value(err) : "the server gave no reason");
    json_decref(err);
    return code;
}

int evs__cli_command_remote(const char *url, char **cmds, size_t n) {
    evs__cli_http *h;
    int code = evs__cli_http_open("command", url, &h), first = EVS_CLI_OK;
    if (code) return code;
    evs__sb p = {0}, body = {0};
    if (n == 1) {
        json_t *c = json_loads(cmds[0], 0, NULL);
        const char *type = json_string_value(json_object_get(c, "command_type"));
        evs__sb_adds(&p, "/commands/");
        evs__cli_pct(&p, type ? type : "", type ? strlen(type) : 0);
        json_decref(c);
        if (!(code = evs__cli_http_request(h, p.p, cmds[0], strlen(cmds[0]), NULL))) {
            long st = evs__cli_http_status(h);
            json_t *o = NULL;
            evs_json_span root;
            /* an answer with an outcome is a command's result, whatever its status */
            if (evs__cli_http_json(h, p.p, &root) == EVS_CLI_OK && (o = json_loadb(root.p, root.n, 0, NULL)) &&
                json_object_get(o, "outcome"))
                code = one_answer(o, st);
            else if (st / 100 != 2)
                code = evs__cli_http_fail(h, p.p);
            else
                code = evs__cli_fail(EVS_CLI_IO, "%s: unexpected answer from the server", p.p);
            json_decref(o);
        }
        first = code;
    } else {
        for (size_t at = 0; at < n && !code;) {
            size_t k = n - at < 1000 ? n - at : 1000; /* the server's batch limit */
            body.len = 0;
            evs__sb_adds(&body, "[");
            for (size_t i = 0; i < k; i++) {
                if (i) evs__sb_adds(&body, ",");
                evs__sb_adds(&body, cmds[at + i]);
            }
            evs__sb_adds(&body, "]");
            if (body.oom) {
                code = evs__cli_fail(EVS_CLI_IO, "out of memory");
                break;
            }
            if ((code = evs__cli_http_request(h, "/commands", body.p, body.len, NULL))) break;
            if (evs__cli_http_status(h) != 200) {
                code = evs__cli_http_fail(h, "/commands");
                break;
            }
            json_t *o = answer_json(h, "/commands", &code), *el;
            size_t i;
            json_array_foreach(json_object_get(o, "results"), i, el) {
                int c = one_answer(el, (long)json_integer_value(json_object_get(el, "status")));
                if (c && !first) first = c;
                if (!json_object_get(el, "outcome")) code = c; /* the store failed: send no more */
            }
            json_decref(o);
            at += k;
        }
        if (code && !first) first = code;
    }
    evs__sb_free(&p);
    evs__sb_free(&body);
    evs__cli_http_close(h);
    return first;
}

static void param(evs__sb *p, int *first, const char *k, const char *v) {
    evs__sb_adds(p, *first ? "?" : "&");
    *first = 0;
    evs__cli_pct(p, k, strlen(k));
    evs__sb_adds(p, "=");
    evs__cli_pct(p, v, strlen(v));
}

int evs__cli_query_remote(const char *url, const evs__cli_query_args *q) {
    evs__cli_http *h;
    int code = evs__cli_http_open("query", url, &h), first = 1;
    if (code) return code;
    evs__sb p = {0};
    char num[32];
    evs__sb_adds(&p, "/queries/");
    evs__cli_pct(&p, q->name, strlen(q->name));
    for (size_t i = 0; i < q->nf; i++) param(&p, &first, q->field[i], q->value[i]);
    if (q->partition) param(&p, &first, "partition", q->partition);
    if (q->sort) param(&p, &first, "sort", q->sort);
    if (q->desc) param(&p, &first, "desc", "true");
#define NUM(key, v, given)                                                   \
    if (given) {                                                             \
        snprintf(num, sizeof num, "%llu", (unsigned long long)(v));          \
        param(&p, &first, key, num);                                         \
    }
    NUM("offset", q->offset, q->offset)
    NUM("limit", q->limit, q->limit)
    NUM("min_position", q->min_position, q->min_position)
    NUM("timeout_ms", q->timeout_ms, q->timeout_ms >= 0)
#undef NUM
    if (p.oom) code = evs__cli_fail(EVS_CLI_IO, "out of memory");
    else if (!(code = evs__cli_http_request(h, p.p, NULL, 0, NULL))) {
        if (evs__cli_http_status(h) / 100 != 2) {
            code = evs__cli_http_fail(h, p.p);
        } else {
            evs_json_span root;
            if (!(code = evs__cli_http_json(h, p.p, &root))) printf("%.*s\n", (int)root.n, root.p);
        }
    }
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}

int evs__cli_aggregate_remote(const char *url, const char *act, const char *type, const char *id, int no_snapshot,
                              const char *src, size_t src_len) {
    evs__cli_http *h;
    int code = evs__cli_http_open("aggregate", url, &h);
    if (code) return code;
    evs__sb p = {0}, body = {0};
    const char *list_key = NULL, *method = NULL;
    evs__sb_adds(&p, "/aggregates");
    if (type) {
        evs__sb_adds(&p, "/");
        evs__cli_pct(&p, type, strlen(type));
    }
    if (id) {
        evs__sb_adds(&p, "/");
        evs__cli_pct(&p, id, strlen(id));
    }
    if (strcmp(act, "list") == 0) {
        list_key = "aggregates";
    } else if (strcmp(act, "show") == 0) {
        if (no_snapshot) evs__sb_adds(&p, "?use_snapshot=false");
    } else if (strcmp(act, "snapshots") == 0) {
        evs__sb_adds(&p, "/snapshots");
        list_key = "snapshots";
    } else if (strcmp(act, "snapshot") == 0) {
        evs__sb_adds(&p, "/snapshots");
        method = "POST";
    } else if (strcmp(act, "put") == 0) {
        evs__sb_adds(&body, "{\"source\":");
        evs__sb_json_str(&body, src, src_len);
        evs__sb_adds(&body, "}");
        method = "PUT";
    }
    if (p.oom || body.oom) {
        code = evs__cli_fail(EVS_CLI_IO, "out of memory");
        goto out;
    }
    if (method) evs__cli_http_set_method(h, method);
    if ((code = evs__cli_http_request(h, p.p, body.p, body.len, NULL))) goto out;
    if (evs__cli_http_status(h) / 100 != 2) {
        code = evs__cli_http_fail(h, p.p);
        goto out;
    }
    if (list_key) {
        json_t *o = answer_json(h, p.p, &code), *v;
        size_t i;
        json_array_foreach(json_object_get(o, list_key), i, v) print_value(v);
        json_decref(o);
    } else {
        evs_json_span root; /* as the server wrote it */
        if (!(code = evs__cli_http_json(h, p.p, &root))) printf("%.*s\n", (int)root.n, root.p);
    }
out:
    evs__sb_free(&p);
    evs__sb_free(&body);
    evs__cli_http_close(h);
    return code;
}
