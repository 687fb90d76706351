/*
 * cli_saga_remote.c — `evstore saga ... --url URL`: the saga commands
 * against a running `evstore serve`, which runs the sagas (the local form
 * could only look, beside it).  Each action is one route of
 * docs/http-api.md ("Sagas"); output follows the local command: `list`
 * one JSON line per instance (paged through the server's next_after),
 * `show` and the actions the instance as one line.  Exit codes follow the
 * status as for the other --url commands (404 2, 409 3, 400 4).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_http.h"
#include "cli/cli_saga.h"

#define REMOTE_PAGE 1000u

/* "&key=value" (value percent-encoded) when value is not NULL. */
static void param(evs__sb *p, const char *key, const char *value) {
    if (!value) return;
    evs__sb_printf(p, "%s%s=", strchr(p->p ? p->p : "", '?') ? "&" : "?", key);
    evs__cli_pct(p, value, strlen(value));
}

/* One request whose 2xx JSON answer is printed on one line. */
static int call(evs__cli_http *h, const char *path, int post) {
    int code = evs__cli_http_request(h, path, post ? "" : NULL, 0, NULL);
    if (code) return code;
    if (evs__cli_http_status(h) / 100 != 2) return evs__cli_http_fail(h, path);
    evs_json_span root;
    if ((code = evs__cli_http_json(h, path, &root))) return code;
    fwrite(root.p, 1, root.n, stdout);
    fputc('\n', stdout);
    return EVS_CLI_OK;
}

static int list(evs__cli_http *h, const evs__cli_saga_args *q) {
    char cursor[600] = "";
    if (q->after) snprintf(cursor, sizeof cursor, "%s", q->after);
    uint64_t left = q->limit ? q->limit : UINT64_MAX;
    int code = EVS_CLI_OK;
    evs__sb p = {0};
    while (left) {
        p.len = 0;
        evs__sb_adds(&p, "/sagas");
        if (q->type) {
            evs__sb_adds(&p, "/");
            evs__cli_pct(&p, q->type, strlen(q->type));
        }
        param(&p, "status", q->status);
        param(&p, "stuck_for", q->stuck_for);
        char lim[24];
        snprintf(lim, sizeof lim, "%llu", (unsigned long long)(left < REMOTE_PAGE ? left : REMOTE_PAGE));
        param(&p, "limit", lim);
        if (cursor[0]) param(&p, "after", cursor);
        if (p.oom) {
            code = evs__cli_fail(EVS_CLI_IO, "out of memory");
            break;
        }
        if ((code = evs__cli_http_request(h, p.p, NULL, 0, NULL))) break;
        if (evs__cli_http_status(h) / 100 != 2) {
            code = evs__cli_http_fail(h, p.p);
            break;
        }
        evs_json_span root, arr, el, nx;
        evs_json_iter it;
        if ((code = evs__cli_http_json(h, p.p, &root))) break;
        if (!evs__cli_json_member(root, "sagas", &arr) || arr.type != EVS_JSON_ARRAY) {
            code = evs__cli_fail(EVS_CLI_IO, "%s: unexpected answer from the server (no \"sagas\")", p.p);
            break;
        }
        evs__json_iter_init(&it, arr);
        while (left && evs__json_iter_element(&it, &el)) {
            fwrite(el.p, 1, el.n, stdout);
            fputc('\n', stdout);
            left--;
        }
        if (!evs__cli_json_member(root, "next_after", &nx) || nx.type != EVS_JSON_STRING ||
            evs__json_string_decode(nx, cursor, sizeof cursor) < 0)
            break;
    }
    evs__sb_free(&p);
    return code;
}

int evs__cli_saga_remote(const char *url, const evs__cli_saga_args *q) {
    evs__cli_http *h;
    int code = evs__cli_http_open("saga", url, &h);
    if (code) return code;
    if (strcmp(q->act, "list") == 0) {
        code = list(h, q);
    } else {
        evs__sb p = {0};
        evs__sb_adds(&p, "/sagas/");
        evs__cli_pct(&p, q->type, strlen(q->type));
        evs__sb_adds(&p, "/");
        evs__cli_pct(&p, q->id, strlen(q->id));
        int post = strcmp(q->act, "show") != 0;
        if (post) {
            evs__sb_adds(&p, "/");
            evs__sb_adds(&p, q->act);
            param(&p, "step", q->step);
            param(&p, "reason", q->reason);
        }
        code = p.oom ? evs__cli_fail(EVS_CLI_IO, "out of memory") : call(h, p.p, post);
        evs__sb_free(&p);
    }
    evs__cli_http_close(h);
    return code;
}
