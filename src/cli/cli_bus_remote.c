/*
 * cli_bus_remote.c — `evstore sub|dlq|projection|group ... --url URL`: the
 * consumer commands against a running `evstore serve`, which holds the
 * store (a local command could not open it) and runs the projections.
 *
 * Each action is one route of docs/http-api.md ("Projections,
 * subscriptions, DLQs and groups").  Output follows the local commands:
 * lists print one JSON object per line (paged through the server's
 * next_after), the rest print the server's JSON answer on one line; the
 * server's objects carry a few more fields than the local ones (whether a
 * projection is running, its generation and rate).  Exit codes follow the
 * status as for the other --url commands.  `projection run` has no remote
 * form: the server runs every stored projection itself.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cli_bus.h"
#include "cli/cli_http.h"

#define REMOTE_PAGE 1000u

/* "/AREA/NAME" + rest, NAME percent-encoded. */
static void path_of(evs__sb *p, const char *area, const char *name, const char *rest) {
    evs__sb_adds(p, "/");
    evs__sb_adds(p, area);
    if (name) {
        evs__sb_adds(p, "/");
        evs__cli_pct(p, name, strlen(name));
    }
    if (rest) evs__sb_adds(p, rest);
}

/* One request; on 2xx the body is printed as one line (print) and *root set. */
static int call(evs__cli_http *h, const char *method, const char *path, const char *body, size_t len, int print,
                evs_json_span *root) {
    evs_json_span r;
    if (!root) root = &r;
    if (method) evs__cli_http_set_method(h, method);
    int code = evs__cli_http_request(h, path, body, len, NULL);
    if (code) return code;
    if (evs__cli_http_status(h) / 100 != 2) return evs__cli_http_fail(h, path);
    if ((code = evs__cli_http_json(h, path, root))) return code;
    if (print) {
        fwrite(root->p, 1, root->n, stdout);
        fputc('\n', stdout);
    }
    return EVS_CLI_OK;
}

/*
 * GET path?limit=..&after=.. pages, printing every element of `key` on its
 * own line, until `limit` elements or next_after is null (a name or a
 * position: either is handed back as `after`).
 */
static int list_pages(evs__cli_http *h, const char *base, const char *key, uint64_t after, uint64_t limit) {
    char cursor[512] = "";
    if (after) snprintf(cursor, sizeof cursor, "%llu", (unsigned long long)after);
    uint64_t left = limit;
    int code = EVS_CLI_OK;
    evs__sb p = {0};
    while (left) {
        p.len = 0;
        evs__sb_printf(&p, "%s%slimit=%llu", base, strchr(base, '?') ? "&" : "?",
                          (unsigned long long)(left < REMOTE_PAGE ? left : REMOTE_PAGE));
        if (cursor[0]) {
            evs__sb_adds(&p, "&after=");
            evs__cli_pct(&p, cursor, strlen(cursor));
        }
        if (p.oom) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            break;
        }
        evs_json_span root, arr, el, nx;
        evs_json_iter it;
        if ((code = call(h, NULL, p.p, NULL, 0, 0, &root))) break;
        if (!evs__cli_json_member(root, key, &arr) || arr.type != EVS_JSON_ARRAY) {
            code = evs__cli_fail(EVS_CLI_IO, "%s: unexpected answer from the server (no \"%s\")", base, key);
            break;
        }
        evs__json_iter_init(&it, arr);
        while (left && evs__json_iter_element(&it, &el)) {
            fwrite(el.p, 1, el.n, stdout);
            fputc('\n', stdout);
            left--;
        }
        if (!evs__cli_json_member(root, "next_after", &nx) || nx.type == EVS_JSON_NULL) break;
        if (nx.type == EVS_JSON_STRING) {
            if (evs__json_string_decode(nx, cursor, sizeof cursor) < 0) break;
        } else {
            snprintf(cursor, sizeof cursor, "%.*s", (int)nx.n, nx.p);
        }
    }
    evs__sb_free(&p);
    return code;
}

/* PUT path with the settings object as the body (one line of the server's answer printed). */
static int put_settings(evs__cli_http *h, const char *path, json_t *settings) {
    char *body = json_dumps(settings, JSON_COMPACT);
    if (!body) return evs__cli_fail(EVS_CLI_IO, "out of memory");
    int code = call(h, "PUT", path, body, strlen(body), 1, NULL);
    free(body);
    return code;
}

int evs__cli_sub_remote(const char *url, const char *act, const char *name, const char *pos_text, json_t *settings) {
    evs__cli_http *h;
    int code = evs__cli_http_open("sub", url, &h);
    if (code) return code;
    evs__sb p = {0};
    if (strcmp(act, "list") == 0) {
        code = list_pages(h, "/subscriptions", "subscriptions", 0, UINT64_MAX);
    } else if (strcmp(act, "create") == 0) {
        path_of(&p, "subscriptions", name, NULL);
        code = put_settings(h, p.p, settings);
    } else if (strcmp(act, "show") == 0) {
        path_of(&p, "subscriptions", name, NULL);
        code = call(h, NULL, p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "pause") == 0 || strcmp(act, "resume") == 0) {
        path_of(&p, "subscriptions", name, act[0] == 'p' ? "/pause" : "/resume");
        code = call(h, "POST", p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "reset") == 0) {
        path_of(&p, "subscriptions", name, "/reset?to=");
        evs__sb_adds(&p, pos_text);
        code = call(h, "POST", p.p, NULL, 0, 1, NULL);
    } else {
        path_of(&p, "subscriptions", name, NULL);
        code = call(h, "DELETE", p.p, NULL, 0, 1, NULL);
    }
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}

int evs__cli_dlq_remote(const char *url, const char *act, const char *name, uint64_t pos, uint64_t after,
                        uint64_t limit) {
    evs__cli_http *h;
    int code = evs__cli_http_open("dlq", url, &h);
    if (code) return code;
    evs__sb p = {0};
    if (strcmp(act, "list") == 0) {
        path_of(&p, "subscriptions", name, "/dlq");
        code = list_pages(h, p.p, "entries", after, limit);
    } else if (strcmp(act, "show") == 0 || strcmp(act, "discard") == 0) {
        path_of(&p, "subscriptions", name, NULL);
        evs__sb_printf(&p, "/dlq/%llu", (unsigned long long)pos);
        code = call(h, act[0] == 'd' ? "DELETE" : NULL, p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "purge") == 0) {
        path_of(&p, "subscriptions", name, "/dlq");
        code = call(h, "DELETE", p.p, NULL, 0, 1, NULL);
    } else {
        path_of(&p, "subscriptions", name, "/dlq");
        if (pos) evs__sb_printf(&p, "/%llu", (unsigned long long)pos);
        evs__sb_adds(&p, "/retry");
        code = call(h, "POST", p.p, NULL, 0, 1, NULL);
    }
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}

/* The rebuild's progress from the status, on stderr, until it swapped in. */
static int follow_rebuild(evs__cli_http *h, const char *path) {
    for (;;) {
        evs_json_span root, rb, pct;
        int code = call(h, NULL, path, NULL, 0, 0, &root);
        if (code) return code;
        if (!evs__cli_json_member(root, "rebuild", &rb) || rb.type == EVS_JSON_NULL) {
            fprintf(stderr, "\rrebuild: done                                        \n");
            fwrite(root.p, 1, root.n, stdout);
            fputc('\n', stdout);
            return EVS_CLI_OK;
        }
        double d = 0;
        if (evs__cli_json_member(rb, "percent", &pct) && pct.type == EVS_JSON_NUMBER) d = strtod(pct.p, NULL);
        int bar = (int)(d / 100.0 * 30.0);
        fprintf(stderr, "\rrebuild: [%-30.*s] %5.1f%%", bar < 0 ? 0 : bar > 30 ? 30 : bar,
                "##############################", d);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int evs__cli_projection_remote(const char *url, const char *act, const char *name, const char *arg,
                               const char *src, size_t src_len, uint64_t limit) {
    evs__cli_http *h;
    int code = evs__cli_http_open("projection", url, &h);
    if (code) return code;
    evs__sb p = {0}, body = {0};
    if (strcmp(act, "create") == 0) {
        /* {"source": "..."}: JSON survives any proxy's idea of text bodies */
        evs__sb_adds(&body, "{\"source\":");
        evs__sb_json_str(&body, src, src_len);
        evs__sb_adds(&body, "}");
        path_of(&p, "projections", name, NULL);
        code = body.oom ? evs__cli_fail(EVS_CLI_IO, "out of memory")
                        : call(h, "PUT", p.p, body.p, body.len, 1, NULL);
    } else if (strcmp(act, "status") == 0) {
        path_of(&p, "projections", name, NULL);
        code = call(h, NULL, p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "state") == 0) {
        path_of(&p, "projections", name, "/state");
        if (arg) {
            evs__sb_adds(&p, "/");
            evs__cli_pct(&p, arg, strlen(arg));
        }
        code = call(h, NULL, p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "partitions") == 0) {
        path_of(&p, "projections", name, "/partitions");
        code = list_pages(h, p.p, "partitions", 0, limit);
    } else if (strcmp(act, "rebuild") == 0) {
        path_of(&p, "projections", name, "/rebuild");
        if (!(code = call(h, "POST", p.p, NULL, 0, 0, NULL))) {
            p.len = 0;
            path_of(&p, "projections", name, NULL);
            code = follow_rebuild(h, p.p);
        }
    } else if (strcmp(act, "delete") == 0) {
        path_of(&p, "projections", name, NULL);
        code = call(h, "DELETE", p.p, NULL, 0, 1, NULL);
    } else {
        code = evs__cli_usage("projection", "%s has no --url form: the server runs its projections itself", act);
    }
    evs__sb_free(&p);
    evs__sb_free(&body);
    evs__cli_http_close(h);
    return code;
}

int evs__cli_group_remote(const char *url, const char *act, const char *name, json_t *settings, uint64_t limit) {
    evs__cli_http *h;
    int code = evs__cli_http_open("group", url, &h);
    if (code) return code;
    evs__sb p = {0};
    if (strcmp(act, "list") == 0) {
        code = list_pages(h, "/groups", "groups", 0, limit);
    } else if (strcmp(act, "create") == 0) {
        path_of(&p, "groups", name, NULL);
        code = put_settings(h, p.p, settings);
    } else if (strcmp(act, "show") == 0) {
        path_of(&p, "groups", name, NULL);
        code = call(h, NULL, p.p, NULL, 0, 1, NULL);
    } else if (strcmp(act, "delete") == 0) {
        path_of(&p, "groups", name, NULL);
        code = call(h, "DELETE", p.p, NULL, 0, 1, NULL);
    } else { /* consumers: the group's "consumers" array, one per line */
        evs_json_span root, arr, el;
        evs_json_iter it;
        path_of(&p, "groups", name, NULL);
        if (!(code = call(h, NULL, p.p, NULL, 0, 0, &root))) {
            if (!evs__cli_json_member(root, "consumers", &arr) || arr.type != EVS_JSON_ARRAY) {
                code = evs__cli_fail(EVS_CLI_IO, "%s: unexpected answer from the server (no \"consumers\")", p.p);
            } else {
                evs__json_iter_init(&it, arr);
                while (evs__json_iter_element(&it, &el)) {
                    fwrite(el.p, 1, el.n, stdout);
                    fputc('\n', stdout);
                }
            }
        }
    }
    evs__sb_free(&p);
    evs__cli_http_close(h);
    return code;
}
