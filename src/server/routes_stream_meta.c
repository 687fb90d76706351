/*
 * routes_stream_meta.c — stream metadata and delete over HTTP:
 *   GET    /streams/S/metadata             the metadata object and its version
 *   PUT    /streams/S/metadata?expected=   replace it (body: a JSON object)
 *   DELETE /streams/S?hard=&expected=      soft delete, or a tombstone with hard=true
 * The store does the work (src/store/meta.c); errors go through the one
 * error->status map (respond.c): 404 unknown stream, 409 version conflict
 * (with actual_version, as an append's),
 * 410 a hard-deleted stream, 400/422 bad metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "server/query.h"
#include "server/routes_store.h"
#include "store/store_access.h"

/* ?expected= (default any); 0, or an answer was queued into *mr. */
static int query_expected(evs__req *rq, int64_t *out, enum MHD_Result *mr) {
    const char *qv = evs__query(rq, "expected");
    *out = EVS_EXPECT_ANY;
    if (qv && evs__parse_expected(qv, out)) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameter expected=%.40s is not any, no-stream, exists or a version number "
                                 "(0..%lld)", qv, (long long)INT64_MAX);
        return -1;
    }
    return 0;
}

/*
 * A concurrency conflict, answered as an append's is (evs__respond_conflict):
 * the library's message and actual_version, the version the stream (a
 * delete) or its metadata (a write) had when the library refused, as the
 * message says.  It may have moved on since; a retry with it is judged anew.
 */
static enum MHD_Result conflict(evs__req *rq, const char *context, int64_t expected, uint64_t actual) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s: %s", context, evs_errmsg());
    return evs__respond_conflict(rq, msg, rq->stream, expected, actual);
}

static void answer_head(evs__sb *b, const char *stream, uint64_t version) {
    evs__sb_adds(b, "{\"stream\":");
    evs__sb_json_str(b, stream, strlen(stream));
    evs__sb_printf(b, ",\"metadata_version\":%llu", (unsigned long long)version);
}

enum MHD_Result evs__route_stream_meta_get(evs__req *rq) {
    char *json = NULL;
    size_t len = 0;
    uint64_t version = 0;
    int rc = evs_stream_get_metadata(rq->srv->store, rq->stream, &json, &len, &version, NULL);
    if (rc) return evs__respond_lib(rq, rc, "stream metadata");
    evs__sb out = {0};
    answer_head(&out, rq->stream, version);
    evs__sb_adds(&out, ",\"metadata\":");
    evs__sb_add(&out, json, len);
    evs__sb_adds(&out, "}");
    free(json);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_stream_meta_put(evs__req *rq) {
    enum MHD_Result mr;
    int64_t expected;
    if (query_expected(rq, &expected, &mr)) return mr;
    const char *body = rq->body.p ? rq->body.p : "";
    if (evs__req_json_valid(rq, &mr)) return mr;
    uint64_t version = 0;
    int rc = evs_stream_set_metadata(rq->srv->store, rq->stream, expected, body, rq->body.len, &version);
    if (rc == EVS_ECONFLICT) return conflict(rq, "set stream metadata", expected, version);
    if (rc) return evs__respond_lib(rq, rc, "set stream metadata");
    evs__sb out = {0};
    answer_head(&out, rq->stream, version);
    evs__sb_adds(&out, "}");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_stream_delete(evs__req *rq) {
    enum MHD_Result mr;
    int64_t expected;
    if (query_expected(rq, &expected, &mr)) return mr;
    const char *h = evs__query(rq, "hard");
    int hard = 0;
    if (h && !strcmp(h, "true")) hard = 1;
    else if (h && strcmp(h, "false"))
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter hard=%.40s is not true or false", h);
    uint64_t actual = 0;
    int rc = evs__stream_delete(rq->srv->store, rq->stream, expected, hard, &actual);
    if (rc == EVS_ECONFLICT) return conflict(rq, "delete stream", expected, actual);
    if (rc) return evs__respond_lib(rq, rc, "delete stream");
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"stream\":");
    evs__sb_json_str(&out, rq->stream, strlen(rq->stream));
    evs__sb_printf(&out, ",\"deleted\":\"%s\"}", hard ? "hard" : "soft");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}
