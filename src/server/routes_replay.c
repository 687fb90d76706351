/*
 * routes_replay.c — a projection's state as of a point, what-if runs and
 * compares (src/bus/replay.c, replay_spec.c):
 *
 *   GET  /projections/N/state[/PARTITION]?as_of=P|T   (from routes_proj.c)
 *   POST /projections/N/what-if    {as_of, exclude, insert, source, partition}
 *   GET  /projections/N/compare?a=X&b=Y               X, Y: P, T, head or live
 *   POST /projections/N/compare    {"a": X|{what-if}, "b": X|{what-if}}
 *
 * Each replays on the request's thread into a temporary state: the live
 * projection (its runner, state, checkpoint and DLQ) is never touched.
 * The request's body and parameters are read by replay_spec.c, the same
 * reader the evstore command uses, so both refuse with the same words.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/replay_spec.h"
#include "server/query.h"
#include "server/records.h"
#include "server/routes_replay.h"

enum MHD_Result evs__proj_state_as_of(evs__req *rq, const char *as_of_text) {
    evs_consumer_info info;
    enum MHD_Result mr;
    evs_replay_opts o;
    memset(&o, 0, sizeof o);
    if (evs_as_of_parse(as_of_text, strlen(as_of_text), &o.as_of))
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s", evs_errmsg());
    if (evs__need_consumer(rq, &info, &mr)) return mr;
    const char *part = rq->part[0] ? rq->part : NULL;
    o.partition = part ? part : "";
    evs_replay_result r;
    int rc = evs_proj_replay(rq->srv->bus->bus, info.name, NULL, 0, &o, &r);
    if (rc) return evs__respond_lib(rq, rc, "state as of");
    json_error_t je;
    json_t *root = json_loadb(r.json, r.len, 0, &je);
    evs_replay_result_free(&r);
    if (!root) return evs__respond_error(rq, EVS_HTTP_INTERNAL, NULL, "a replay's result is not JSON: %s", je.text);
    json_t *st = json_object_get(json_object_get(root, "partitions"), o.partition);
    const char *pt = json_string_value(json_object_get(root, "partitioning"));
    int partitioned = pt && strcmp(pt, "none") != 0;
    if (!st) {
        json_decref(root);
        if (part)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no partition \"%s\" as of %s",
                                      info.name, part, as_of_text);
        if (partitioned)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL,
                                      "projection \"%s\" is partitioned: ask for /projections/{name}/state/{partition}",
                                      info.name);
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "projection \"%s\" has no state as of %s (no event applied)",
                                  info.name, as_of_text);
    }
    char *js = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!js) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    evs__sb out = {0};
    evs__sb_adds(&out, js);
    evs__sb_adds(&out, "\n");
    free(js);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

/* The projection must exist unless the spec brings its own script. */
static int need_target(evs__req *rq, const evs__state_spec *a, const evs__state_spec *b, enum MHD_Result *mr) {
    evs_consumer_info info;
    if (a->source && (!b || b->source)) return 0;
    return evs__need_consumer(rq, &info, mr);
}

static enum MHD_Result answer(evs__req *rq, int rc, char *js, size_t len) {
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb out = {0};
    evs__sb_add(&out, js, len);
    evs__sb_adds(&out, "\n");
    free(js);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_proj_what_if(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    evs__state_spec s;
    char why[512];
    memset(&s, 0, sizeof s);
    if (evs__req_json(rq, &root, &mr)) return mr;
    if (!json_is_object(root)) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                "expected a JSON object {as_of, exclude, insert, source, partition}");
        goto cleanup;
    }
    if (evs__state_spec_json(root, 0, &s, why, sizeof why)) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "%s", why);
        goto cleanup;
    }
    if (need_target(rq, &s, NULL, &mr)) goto cleanup;
    char *js = NULL;
    size_t len = 0;
    int rc = evs__state_spec_run(rq->srv->bus->bus, rq->name, &s, &js, &len);
    mr = answer(rq, rc, js, len);
cleanup:
    evs__state_spec_free(&s);
    json_decref(root);
    return mr;
}

enum MHD_Result evs__route_proj_compare(evs__req *rq) {
    enum MHD_Result mr = MHD_NO;
    json_t *root = NULL;
    char *ta = NULL, *tb = NULL, why[512];
    evs__state_spec a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (rq->method == EVS_M_POST) {
        if (evs__req_json(rq, &root, &mr)) return mr;
        json_t *ja = json_object_get(root, "a"), *jb = json_object_get(root, "b");
        if (!json_is_object(root) || !ja || !jb || json_object_size(root) != 2) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                    "expected {\"a\": ..., \"b\": ...} and nothing else (each a position, an RFC 3339 "
                                    "time, \"head\", \"live\" or a what-if object)");
            goto cleanup;
        }
        if (evs__state_spec_json(ja, 1, &a, why, sizeof why)) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "a: %s", why);
            goto cleanup;
        }
        if (evs__state_spec_json(jb, 1, &b, why, sizeof why)) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "b: %s", why);
            goto cleanup;
        }
    } else {
        if (evs__query_text(rq, "a", 4096, &ta, &mr) || evs__query_text(rq, "b", 4096, &tb, &mr)) goto cleanup;
        if (!ta || !tb) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                    "parameters a and b are required (each a position, an RFC 3339 time, head or live)");
            goto cleanup;
        }
        if (evs__state_spec_text(ta, 1, &a, why, sizeof why)) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter a: %s", why);
            goto cleanup;
        }
        if (evs__state_spec_text(tb, 1, &b, why, sizeof why)) {
            mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter b: %s", why);
            goto cleanup;
        }
    }
    if (need_target(rq, &a, &b, &mr)) goto cleanup;
    char *js = NULL;
    size_t len = 0;
    int rc = evs__compare(rq->srv->bus->bus, rq->name, &a, &b, &js, &len);
    mr = answer(rq, rc, js, len);
cleanup:
    evs__state_spec_free(&a);
    evs__state_spec_free(&b);
    free(ta);
    free(tb);
    json_decref(root);
    return mr;
}
