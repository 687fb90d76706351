/*
 * routes_proj.c — the routes of Lua projections: create or replace the
 * script (PUT|POST /projections/N), the committed state (whole, or one
 * partition), and the partition list.  Lists, status, pause, resume,
 * reset, rebuild and delete are routes_subs.c's, DLQs routes_dlq.c's.
 *
 * Replacing takes the handle over from the projection's runner
 * (consumers.h), closes the old handle (which commits), and opens the new
 * script; a script that fails to load puts the old one back to work, so a
 * bad replacement changes nothing.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/query.h"
#include "server/records.h"
#include "server/routes_proj.h"
#include "server/routes_replay.h"

#define PROJ_DEFAULT_PAGE 100u
#define PROJ_MAX_PARTITION_PAGE 10000u

int evs__req_source(evs__req *rq, json_t **root, const char **src, size_t *n, enum MHD_Result *mr) {
    const char *body = rq->body.p ? rq->body.p : "";
    *root = NULL;
    *src = body;
    *n = rq->body.len;
    if (rq->body_kind == EVS_BODY_JSON) {
        /* NUL taken here, to be refused below as for a text/x-lua body */
        if (evs__req_json_flags(rq, JSON_ALLOW_NUL, root, mr)) return -1;
        json_t *s = json_is_object(*root) ? json_object_get(*root, "source") : NULL;
        if (!json_is_string(s) || json_object_size(*root) != 1) {
            *mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                       "expected {\"source\": \"...Lua...\"} and nothing else");
            goto fail;
        }
        *src = json_string_value(s);
        *n = json_string_length(s);
        if (*n > EVS_PROJ_MAX_SOURCE) {
            char d[64];
            snprintf(d, sizeof d, "{\"length\":%zu,\"limit\":%zu}", *n, EVS_PROJ_MAX_SOURCE);
            *mr = evs__respond_error(rq, EVS_HTTP_TOO_LARGE, d, "Lua source of %zu bytes is over the limit of %zu", *n,
                       EVS_PROJ_MAX_SOURCE);
            goto fail;
        }
    }
    size_t bad;
    if (memchr(*src, 0, *n)) {
        *mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "the Lua source contains a NUL byte");
        goto fail;
    }
    if (!evs__utf8_valid(*src, *n, &bad)) {
        char d[48];
        snprintf(d, sizeof d, "{\"offset\":%zu}", bad);
        *mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d, "the Lua source is not valid UTF-8 (byte %zu)", bad + 1);
        goto fail;
    }
    return 0;
fail: /* refused: the body's JSON is released here (callers that put aggregates and upcasters did not) */
    json_decref(*root);
    *root = NULL;
    return -1;
}

/*
 * PUT|POST /projections/N: create, or replace the script of an existing
 * projection.  A replacement keeps the checkpoint, the state and the DLQ
 * (so that parked events can be retried with the fixed script); a script
 * that fails to load leaves the old one running.
 */
enum MHD_Result evs__route_proj_put(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    const char *src;
    size_t n;
    const char *name = rq->name;
    evs__consumers *bs = rq->srv->bus;
    evs__runner *r = NULL;
    int locked = 0, held = 0;
    if (evs__req_source(rq, &root, &src, &n, &mr)) goto cleanup;

    pthread_mutex_lock(&bs->admin_mu);
    locked = 1;
    evs_consumer_info info;
    int rc = evs_consumer_get(bs->bus, name, &info);
    int exists = rc == EVS_OK;
    if (rc && rc != EVS_ENOTFOUND) {
        mr = evs__respond_lib(rq, rc, "projection");
        goto cleanup;
    }
    if (exists && !evs__is_projection(&info)) {
        mr = evs__respond_error(rq, EVS_HTTP_CONFLICT, NULL, "\"%s\" is a %s; a projection needs another name", name, info.kind);
        goto cleanup;
    }
    if ((r = evs__runner_find(bs, name))) {
        evs__runner_hold(r);
        held = 1;
        evs_projection *old = r->p;
        evs__runner_set(r, NULL, NULL);
        evs_proj_close(old); /* commits; the record and its DLQ stay */
    }
    evs_projection *p = NULL;
    rc = evs_proj_open_lua(bs->bus, name, src, n, NULL, &bs->proj_cfg, &p);
    if (rc) {
        char msg[768];
        evs__copy_errmsg(msg, sizeof msg, rc);
        if (r) { /* put the previous script back to work */
            evs_projection *old = NULL;
            int orc = evs_proj_open_stored_cfg(bs->bus, name, NULL, &bs->proj_cfg, &old);
            char oerr[512] = "";
            if (orc) evs__copy_errmsg(oerr, sizeof oerr, orc);
            evs__runner_set(r, old, orc ? oerr : NULL);
            if (old && evs__runner_start_thread(r)) evs__runner_set(r, old, "cannot start the runner thread");
        }
        mr = evs__respond_code(rq, rc, NULL, msg); /* a script that does not load: EVS_EINVAL, 422 */
        goto cleanup;
    }
    if (r) {
        evs__runner_set(r, p, NULL);
        if (evs__runner_start_thread(r)) {
            mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "cannot start the runner of \"%s\"", name);
            goto cleanup;
        }
    } else if (!(r = evs__runner_new(bs, name, p, NULL))) {
        evs_proj_close(p);
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "cannot start the runner of \"%s\"", name);
        goto cleanup;
    } else if ((r = evs__runner_find(bs, name))) { /* evs__runner_new's reference is the list's; this one is ours */
        evs__runner_hold(r);
        held = 1;
    }
    if (held) {
        evs__runner_release(r);
        held = 0;
    }
    pthread_mutex_unlock(&bs->admin_mu);
    locked = 0;
    mr = evs__answer_consumer(rq, exists ? EVS_HTTP_OK : EVS_HTTP_CREATED);
cleanup:
    if (held) evs__runner_release(r);
    if (locked) pthread_mutex_unlock(&bs->admin_mu);
    evs__runner_put(r);
    json_decref(root);
    return mr;
}

/* GET /projections/N/state[/PARTITION]: the committed state, as stored (?as_of=: as of a point). */
enum MHD_Result evs__route_proj_state(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr;
    char *as_of = NULL;
    if (evs__query_text(rq, "as_of", 64, &as_of, &mr)) return mr;
    if (as_of) { /* a replay into a temporary state: routes_replay.c */
        mr = evs__proj_state_as_of(rq, as_of);
        free(as_of);
        return mr;
    }
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    const char *part = rq->part[0] ? rq->part : NULL;
    char *js = NULL;
    size_t len = 0;
    int rc = evs_proj_get_state(rq->srv->bus->bus, info.name, part, &js, &len);
    if (rc == EVS_ENOTFOUND) {
        if (part)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no partition \"%s\"", info.name, part);
        /* a hint when the projection is partitioned */
        evs_partition_name one;
        size_t n = 0;
        if (evs_proj_list_partitions(rq->srv->bus->bus, info.name, NULL, &one, 1, &n) == EVS_OK && n)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL,
                        "projection \"%s\" is partitioned: ask for /projections/{name}/state/{partition}", info.name);
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no state yet (no event applied)", info.name);
    }
    if (rc) return evs__respond_lib(rq, rc, "state");
    evs__sb out = {0};
    evs__sb_add(&out, js, len);
    evs__sb_adds(&out, "\n");
    free(js);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* GET /projections/N/partitions?after=&limit= */
enum MHD_Result evs__route_proj_partitions(evs__req *rq) {
    evs_consumer_info info;
    enum MHD_Result mr = MHD_NO;
    char *after = NULL;
    evs_partition_name *parts = NULL;
    evs__sb out = {0};
    uint64_t limit = PROJ_DEFAULT_PAGE;
    if (evs__query_u64(rq, "limit", 1, PROJ_MAX_PARTITION_PAGE, &limit, &mr) ||
        evs__query_text(rq, "after", EVS_MAX_STREAM_NAME, &after, &mr) ||
        evs__need_consumer(rq, &info, &mr))
        goto cleanup;
    if (!(parts = malloc((size_t)limit * sizeof *parts))) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    size_t n = 0;
    int rc = evs_proj_list_partitions(rq->srv->bus->bus, info.name, after, parts, (size_t)limit, &n);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "partitions");
        goto cleanup;
    }
    evs__sb_adds(&out, "{\"partitions\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) evs__sb_add(&out, ",", 1);
        evs__sb_json_str(&out, parts[i].name, strlen(parts[i].name));
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (n == limit) evs__sb_json_str(&out, parts[n - 1].name, strlen(parts[n - 1].name));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    free(after);
    free(parts);
    evs__sb_free(&out);
    return mr;
}
