/*
 * routes.c — the JSON routes: append, stream and global reads, the stream
 * list, /info and /health.  Each route queues exactly one response.
 *
 * The append path never builds a DOM: the body is validated once by the
 * strict validator (which gives line and column for a 400), then each event
 * object is parsed by evs__event_from_json into spans of the body, and the
 * store receives data and metadata byte for byte.  Reads render events
 * straight into the page buffer (evs__sb_event: no allocation per event),
 * copying stored data and metadata verbatim.
 *
 * Query numbers are strict (digits only): a sign, a fraction or an overflow
 * is a 400 naming the parameter, never a silent clamp.  A page stops at
 * EVS_SRV_MAX_PAGE items or EVS_SRV_MAX_PAGE_BYTES of JSON, whichever comes
 * first, and says where to continue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event_json.h"
#include "server/srv.h"

/* ------------------------------------------------------------- arguments */

int evs__query_text(evs__srv *srv, struct MHD_Connection *c, int route, const char *key,
                    size_t maxlen, char **out, enum MHD_Result *mr) {
    *out = NULL;
    const char *raw = evs__query(c, key);
    if (!raw) return 0;
    size_t n = strlen(raw);
    char *buf = malloc(n + 1);
    if (!buf) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        return -1;
    }
    char why[96];
    long len = evs__pct_decode(raw, n, buf, n + 1, why, sizeof why);
    if (len < 0) {
        free(buf);
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s %s", key, why);
        return -1;
    }
    if ((size_t)len > maxlen) {
        free(buf);
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameter %s is %ld bytes, the limit is %zu", key, len, maxlen);
        return -1;
    }
    *out = buf;
    return 0;
}

/*
 * A strict number parameter: absent leaves *out alone and returns 0;
 * otherwise 0 with *out or -1 after queueing a 400.
 */
static int query_u64(evs__srv *srv, struct MHD_Connection *c, int route, const char *key,
                     uint64_t max, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(c, key);
    if (!v) return 0;
    int rc = evs__parse_u64(v, max, out);
    if (rc == 0) return 0;
    const char *why = rc == -2   ? "is negative"
                      : rc == -3 ? "is too large"
                                 : "is not a number";
    char shown[48];
    snprintf(shown, sizeof shown, "%.40s", v);
    char d[64];
    snprintf(d, sizeof d, "{\"parameter\":\"%s\",\"max\":%llu}", key, (unsigned long long)max);
    *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, d, "parameter %s=%s %s (expected 0..%llu)",
                             key, shown, why, (unsigned long long)max);
    return -1;
}

/* direction=forward|backward; 0 with *dir, or -1 after a 400. */
static int query_direction(evs__srv *srv, struct MHD_Connection *c, int route, int *dir,
                           enum MHD_Result *mr) {
    const char *v = evs__query(c, "direction");
    *dir = EVS_FORWARD;
    if (!v || strcmp(v, "forward") == 0) return 0;
    if (strcmp(v, "backward") == 0) {
        *dir = EVS_BACKWARD;
        return 0;
    }
    *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                             "parameter direction must be forward or backward");
    return -1;
}

/* -------------------------------------------------------------- filters */

int evs__live_filter_finish(evs__live_filter *lf) {
    memset(&lf->f, 0, sizeof lf->f);
    lf->ntypes = 0;
    if (lf->types_buf) {
        char *p = lf->types_buf;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (!*p || strlen(p) > EVS_MAX_TYPE_NAME) return -1;
            if (lf->ntypes == EVS_SRV_MAX_FILTER_TYPES) return -1;
            lf->types[lf->ntypes++] = p;
            if (!comma) break;
            p = comma + 1;
        }
        lf->f.event_types = lf->types;
        lf->f.n_event_types = lf->ntypes;
    }
    if (lf->stream_type) {
        if (!*lf->stream_type || strlen(lf->stream_type) > EVS_MAX_TYPE_NAME) return -1;
        lf->f.stream_type = lf->stream_type;
    }
    if (lf->stream) {
        lf->stream_len = strlen(lf->stream);
        if (!lf->stream_len || lf->stream_len > EVS_MAX_STREAM_NAME) return -1;
        /* the prefix index narrows the scan; the exact match is ours */
        lf->f.stream_prefix = lf->stream;
    }
    if (lf->stream_prefix && *lf->stream_prefix) {
        if (lf->stream || strlen(lf->stream_prefix) > EVS_MAX_STREAM_NAME) return -1;
        lf->f.stream_prefix = lf->stream_prefix;
    }
    if (lf->has_correlation) lf->f.correlation_id = &lf->correlation;
    lf->f.since = lf->since;
    lf->f.until = lf->until;
    return 0;
}

void evs__live_filter_free(evs__live_filter *lf) {
    free(lf->types_buf);
    free(lf->stream_type);
    free(lf->stream);
    free(lf->stream_prefix);
    memset(lf, 0, sizeof *lf);
}

int evs__query_filter(evs__srv *srv, struct MHD_Connection *c, int route, int allow_stream,
                      evs__live_filter *lf, enum MHD_Result *mr) {
    char *corr = NULL, *since = NULL, *until = NULL;
    int rc = -1;
    if (evs__query_text(srv, c, route, "type", 64 * 1024, &lf->types_buf, mr) ||
        evs__query_text(srv, c, route, "stream_type", EVS_MAX_TYPE_NAME, &lf->stream_type, mr) ||
        (allow_stream && evs__query_text(srv, c, route, "stream", EVS_MAX_STREAM_NAME, &lf->stream, mr)) ||
        evs__query_text(srv, c, route, "stream_prefix", EVS_MAX_STREAM_NAME, &lf->stream_prefix, mr) ||
        evs__query_text(srv, c, route, "correlation_id", 64, &corr, mr) ||
        evs__query_text(srv, c, route, "since", 64, &since, mr) ||
        evs__query_text(srv, c, route, "until", 64, &until, mr))
        goto cleanup;
    if (lf->stream && lf->stream_prefix) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameters stream and stream_prefix exclude each other");
        goto cleanup;
    }
    if (corr) {
        if (evs_uuid_parse(corr, strlen(corr), &lf->correlation)) {
            *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                     "parameter correlation_id is not a UUID");
            goto cleanup;
        }
        lf->has_correlation = 1;
    }
    if (since && evs_time_parse(since, strlen(since), &lf->since)) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameter since is not an RFC 3339 time or a count of ns");
        goto cleanup;
    }
    if (until && evs_time_parse(until, strlen(until), &lf->until)) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameter until is not an RFC 3339 time or a count of ns");
        goto cleanup;
    }
    if (evs__live_filter_finish(lf)) {
        *mr = evs__respond_error(srv, c, route, EVS_HTTP_BAD_REQUEST, NULL,
                                 "parameter type: at most %u comma-separated names of 1..%u bytes",
                                 EVS_SRV_MAX_FILTER_TYPES, EVS_MAX_TYPE_NAME);
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(corr);
    free(since);
    free(until);
    return rc;
}

int evs__live_filter_match(const evs__live_filter *lf, const evs_event *ev) {
    if (!lf->stream) return 1;
    return ev->stream_len == lf->stream_len && memcmp(ev->stream, lf->stream, lf->stream_len) == 0;
}

/* --------------------------------------------------------------- append */

/* Expected-Version header or ?expected=: any, no-stream, exists or a number. */
static int parse_expected(const char *v, int64_t *out) {
    if (strcmp(v, "any") == 0) *out = EVS_EXPECT_ANY;
    else if (strcmp(v, "no-stream") == 0) *out = EVS_EXPECT_NO_STREAM;
    else if (strcmp(v, "exists") == 0) *out = EVS_EXPECT_EXISTS;
    else {
        uint64_t n;
        if (evs__parse_u64(v, (uint64_t)INT64_MAX, &n)) return -1;
        *out = (int64_t)n;
    }
    return 0;
}

static void expected_text(int64_t e, char buf[32]) {
    if (e == EVS_EXPECT_ANY) snprintf(buf, 32, "any");
    else if (e == EVS_EXPECT_EXISTS) snprintf(buf, 32, "exists");
    else snprintf(buf, 32, "%lld", (long long)e);
}

/* The event element spans of the body's root (an object or an array of them). */
static int count_events(evs_json_span root, size_t *n) {
    if (root.type == EVS_JSON_OBJECT) {
        *n = 1;
        return 0;
    }
    evs_json_iter it;
    evs_json_span v;
    size_t k = 0;
    evs__json_iter_init(&it, root);
    while (evs__json_iter_element(&it, &v)) k++;
    *n = k;
    return 0;
}

enum MHD_Result evs__route_append(evs__srv *srv, struct MHD_Connection *c, const char *stream,
                                  const char *body, size_t len) {
    const int R = EVS_R_APPEND;
    enum MHD_Result mr = MHD_NO;
    evs_event_parsed *parsed = NULL;
    evs_event_in *ins = NULL;
    evs_uuid *ids = NULL;
    size_t n = 0, nparsed = 0;
    evs__sb out = {0};
    char d[256];

    /* expected version: header and query must agree when both are given */
    int64_t expected = EVS_EXPECT_ANY, eq = 0;
    const char *hv = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expected-Version");
    const char *qv = evs__query(c, "expected");
    if (hv && parse_expected(hv, &expected)) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                "Expected-Version \"%.40s\" is not any, no-stream, exists or a version "
                                "number (0..%lld)", hv, (long long)INT64_MAX);
        goto cleanup;
    }
    if (qv && parse_expected(qv, hv ? &eq : &expected)) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                "parameter expected=%.40s is not any, no-stream, exists or a version "
                                "number (0..%lld)", qv, (long long)INT64_MAX);
        goto cleanup;
    }
    if (hv && qv && eq != expected) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                "Expected-Version header and expected parameter disagree");
        goto cleanup;
    }

    evs_json_error je;
    memset(&je, 0, sizeof je);
    if (evs__json_validate(body, len, &je)) {
        atomic_fetch_add(&srv->m.errors_json, 1);
        snprintf(d, sizeof d, "{\"line\":%u,\"column\":%u,\"offset\":%zu}", je.line, je.column, je.offset);
        mr = evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, d, "malformed JSON: %s", je.msg);
        goto cleanup;
    }
    evs_json_span root = evs__json_root(body, len);
    if (root.type != EVS_JSON_OBJECT && root.type != EVS_JSON_ARRAY) {
        atomic_fetch_add(&srv->m.errors_invalid, 1);
        mr = evs__respond_error(srv, c, R, EVS_HTTP_UNPROCESSABLE, NULL,
                                "the body must be an event object or an array of them, not %s",
                                evs__json_type_name(root.type));
        goto cleanup;
    }
    count_events(root, &n);
    if (n == 0) {
        atomic_fetch_add(&srv->m.errors_invalid, 1);
        mr = evs__respond_error(srv, c, R, EVS_HTTP_UNPROCESSABLE, NULL, "the array holds no events");
        goto cleanup;
    }
    if (n > EVS_MAX_EVENTS_PER_APPEND) {
        atomic_fetch_add(&srv->m.errors_limit, 1);
        snprintf(d, sizeof d, "{\"events\":%zu,\"limit\":%u}", n, EVS_MAX_EVENTS_PER_APPEND);
        mr = evs__respond_error(srv, c, R, EVS_HTTP_TOO_LARGE, d, "%zu events in one append, the limit is %u",
                                n, EVS_MAX_EVENTS_PER_APPEND);
        goto cleanup;
    }
    parsed = calloc(n, sizeof *parsed);
    ins = calloc(n, sizeof *ins);
    ids = calloc(n, sizeof *ids);
    if (!parsed || !ins || !ids) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, NULL, "out of memory for %zu events", n);
        goto cleanup;
    }
    evs_json_iter it;
    evs_json_span el = root;
    if (root.type == EVS_JSON_ARRAY) evs__json_iter_init(&it, root);
    for (size_t i = 0; i < n; i++) {
        if (root.type == EVS_JSON_ARRAY) evs__json_iter_element(&it, &el);
        if (el.type != EVS_JSON_OBJECT) {
            atomic_fetch_add(&srv->m.errors_invalid, 1);
            snprintf(d, sizeof d, "{\"index\":%zu}", i);
            mr = evs__respond_error(srv, c, R, EVS_HTTP_UNPROCESSABLE, d, "event %zu: expected an object, got %s",
                                    i, evs__json_type_name(el.type));
            goto cleanup;
        }
        memset(&je, 0, sizeof je);
        int rc = evs__event_from_json(el.p, el.n, &parsed[i], &je);
        if (rc) {
            atomic_fetch_add(&srv->m.errors_invalid, 1);
            /* report the position within the whole body, not the element */
            size_t off = (size_t)(el.p - body) + je.offset;
            unsigned line, col;
            evs__json_position(body, off, &line, &col);
            snprintf(d, sizeof d, "{\"index\":%zu,\"line\":%u,\"column\":%u,\"offset\":%zu}", i, line, col, off);
            mr = evs__respond_error(srv, c, R, rc == EVS_EJSON ? EVS_HTTP_BAD_REQUEST : EVS_HTTP_UNPROCESSABLE,
                                    d, "event %zu: %s", i, je.msg[0] ? je.msg : evs_errmsg());
            goto cleanup;
        }
        nparsed++;
        ins[i] = parsed[i].ev;
    }

    evs_append_result res;
    memset(&res, 0, sizeof res);
    int64_t t0 = evs__mono_ns();
    int rc = evs_append(srv->store, stream, expected, ins, n, &res, ids);
    evs__metrics_append_latency(srv, evs__mono_ns() - t0);
    if (rc == EVS_ECONFLICT) {
        atomic_fetch_add(&srv->m.errors_conflict, 1);
        char et[32];
        expected_text(expected, et);
        evs__sb_adds(&out, "{\"error\":");
        char msg[160];
        snprintf(msg, sizeof msg, "Concurrency conflict: expected version %s, actual version %llu", et,
                 (unsigned long long)res.actual_version);
        evs__sb_json_str(&out, msg, strlen(msg));
        evs__sb_printf(&out, ",\"actual_version\":%llu,\"detail\":{\"stream\":",
                       (unsigned long long)res.actual_version);
        evs__sb_json_str(&out, stream, strlen(stream));
        evs__sb_adds(&out, ",\"expected_version\":");
        if (expected >= 0) evs__sb_printf(&out, "%lld", (long long)expected);
        else evs__sb_json_str(&out, et, strlen(et));
        evs__sb_adds(&out, "}}\n");
        size_t blen;
        char *p = evs__sb_take(&out, &blen);
        mr = p ? evs__respond(srv, c, R, EVS_HTTP_CONFLICT, p, blen, NULL) : MHD_NO;
        goto cleanup;
    }
    if (rc) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "append to \"%s\"", stream);
        mr = evs__respond_lib(srv, c, R, rc, ctx);
        goto cleanup;
    }
    if (!res.idempotent) atomic_fetch_add(&srv->m.events_appended, n);
    evs__sb_adds(&out, "{\"stream\":");
    evs__sb_json_str(&out, stream, strlen(stream));
    evs__sb_printf(&out,
                   ",\"version\":%llu,\"first_stream_position\":%llu,\"last_stream_position\":%llu"
                   ",\"first_global_position\":%llu,\"last_global_position\":%llu,\"idempotent\":%s"
                   ",\"recorded_at\":",
                   (unsigned long long)res.last_stream_position,
                   (unsigned long long)res.first_stream_position,
                   (unsigned long long)res.last_stream_position,
                   (unsigned long long)res.first_global_position,
                   (unsigned long long)res.last_global_position, res.idempotent ? "true" : "false");
    evs__sb_json_time(&out, res.recorded_at);
    evs__sb_adds(&out, ",\"event_ids\":[");
    for (size_t i = 0; i < n; i++) {
        char u[37];
        evs_uuid_format(&ids[i], u);
        evs__sb_printf(&out, "%s\"%s\"", i ? "," : "", u);
    }
    evs__sb_adds(&out, "]}\n");
    size_t blen;
    char *p = evs__sb_take(&out, &blen);
    if (!p) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    mr = evs__respond(srv, c, R, res.idempotent ? EVS_HTTP_OK : EVS_HTTP_CREATED, p, blen, NULL);

cleanup:
    for (size_t i = 0; i < nparsed; i++) evs__event_parsed_free(&parsed[i]);
    free(parsed);
    free(ins);
    free(ids);
    evs__sb_free(&out);
    return mr;
}

/* ----------------------------------------------------------------- reads */

/*
 * Render events from r into out as a JSON array body (no brackets), at most
 * limit events and about EVS_SRV_MAX_PAGE_BYTES.  *count receives how many,
 * *last the last event's stream or global position, *done 1 when the reader
 * reached its end.  Returns a library status.
 */
static int render_events(evs_reader *r, evs__sb *out, size_t limit, int want_global, size_t *count,
                         uint64_t *last, int *done) {
    while (*count < limit) {
        if (out->len >= EVS_SRV_MAX_PAGE_BYTES) return EVS_OK;
        const evs_event *ev;
        int rc = evs_reader_next(r, &ev);
        if (rc == EVS_DONE) {
            *done = 1;
            return EVS_OK;
        }
        if (rc) return rc;
        if (*count) evs__sb_add(out, ",", 1);
        evs__sb_event(out, ev);
        if (out->oom) return EVS_ENOMEM;
        (*count)++;
        *last = want_global ? ev->global_position : ev->stream_position;
    }
    return EVS_OK;
}

static int render_page(evs__srv *srv, evs_reader *r, evs__sb *out, size_t limit, int want_global,
                       size_t *count, uint64_t *last, int *done) {
    *count = 0;
    *done = 0;
    int rc = render_events(r, out, limit, want_global, count, last, done);
    /* one shared-counter update per page, not per event */
    atomic_fetch_add(&srv->m.events_read, *count);
    return rc;
}

static enum MHD_Result finish_json(evs__srv *srv, struct MHD_Connection *c, int route, evs__sb *out) {
    size_t len;
    char *p = evs__sb_take(out, &len);
    if (!p) return evs__respond_error(srv, c, route, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    return evs__respond(srv, c, route, EVS_HTTP_OK, p, len, NULL);
}

enum MHD_Result evs__route_read_stream(evs__srv *srv, struct MHD_Connection *c, const char *stream) {
    const int R = EVS_R_READ_STREAM;
    enum MHD_Result mr = MHD_NO;
    evs_reader *r = NULL;
    evs__sb out = {0};
    int dir;
    uint64_t from = 0, limit = EVS_SRV_DEFAULT_PAGE;
    if (query_direction(srv, c, R, &dir, &mr) || query_u64(srv, c, R, "from", UINT64_MAX - 1, &from, &mr) ||
        query_u64(srv, c, R, "limit", EVS_SRV_MAX_PAGE, &limit, &mr))
        return mr;
    if (!evs__query(c, "from")) from = dir == EVS_FORWARD ? 1 : EVS_POSITION_END;
    if (from == 0 && dir == EVS_FORWARD) from = 1; /* positions are 1-based */
    if (limit == 0) limit = EVS_SRV_DEFAULT_PAGE;
    evs_stream_info si;
    int rc = evs_stream_get_info(srv->store, stream, &si);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(srv, c, R, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
    if (rc) return evs__respond_lib(srv, c, R, rc, "read stream");
    if ((rc = evs_read_stream(srv->store, stream, from, dir, (size_t)limit, &r))) {
        if (rc == EVS_ENOTFOUND)
            return evs__respond_error(srv, c, R, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
        return evs__respond_lib(srv, c, R, rc, "read stream");
    }
    evs__sb_adds(&out, "{\"stream\":");
    evs__sb_json_str(&out, stream, strlen(stream));
    evs__sb_printf(&out, ",\"version\":%llu,\"direction\":\"%s\",\"events\":[", (unsigned long long)si.version,
                   dir == EVS_FORWARD ? "forward" : "backward");
    size_t count;
    uint64_t last = 0;
    int done;
    if ((rc = render_page(srv, r, &out, (size_t)limit, 0, &count, &last, &done))) {
        mr = evs__respond_lib(srv, c, R, rc, "read stream");
        goto cleanup;
    }
    /* next: where the following page starts (null once a backward read reached the start) */
    uint64_t next;
    int end;
    if (dir == EVS_FORWARD) {
        next = count ? last + 1 : from;
        end = done || next > si.version;
    } else {
        next = count ? last - 1 : 0;
        end = done || next == 0;
    }
    evs__sb_adds(&out, "],\"next\":");
    if (dir == EVS_BACKWARD && next == 0) evs__sb_adds(&out, "null");
    else evs__sb_printf(&out, "%llu", (unsigned long long)next);
    evs__sb_printf(&out, ",\"end\":%s}\n", end ? "true" : "false");
    mr = finish_json(srv, c, R, &out);
cleanup:
    evs_reader_close(r);
    evs__sb_free(&out);
    return mr;
}

enum MHD_Result evs__route_read_event(evs__srv *srv, struct MHD_Connection *c, const char *stream,
                                      const char *pos) {
    const int R = EVS_R_READ_EVENT;
    uint64_t p;
    int prc = evs__parse_u64(pos, UINT64_MAX - 1, &p);
    if (prc || p == 0)
        return evs__respond_error(srv, c, R, EVS_HTTP_BAD_REQUEST, NULL,
                                  "position \"%.40s\" is not a stream position (1, 2, ...)%s", pos,
                                  prc == -2 ? ": negative" : prc == -3 ? ": too large" : "");
    evs_reader *r = NULL;
    int rc = evs_read_stream(srv->store, stream, p, EVS_FORWARD, 1, &r);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(srv, c, R, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
    if (rc) return evs__respond_lib(srv, c, R, rc, "read event");
    const evs_event *ev;
    enum MHD_Result mr;
    rc = evs_reader_next(r, &ev);
    if (rc == EVS_OK && ev->stream_position == p) {
        char *js;
        size_t jn;
        if ((rc = evs_event_to_json(ev, &js, &jn))) {
            mr = evs__respond_lib(srv, c, R, rc, "read event");
        } else {
            atomic_fetch_add(&srv->m.events_read, 1);
            mr = evs__respond(srv, c, R, EVS_HTTP_OK, js, jn, NULL);
        }
    } else if (rc == EVS_OK || rc == EVS_DONE) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" has no event at position %llu",
                                stream, (unsigned long long)p);
    } else {
        mr = evs__respond_lib(srv, c, R, rc, "read event");
    }
    evs_reader_close(r);
    return mr;
}

static void stream_info_json(evs__sb *b, const evs_stream_info *si) {
    evs__sb_adds(b, "{\"stream\":");
    evs__sb_json_str(b, si->name, strlen(si->name));
    evs__sb_adds(b, ",\"stream_type\":");
    evs__sb_json_str(b, si->stream_type, strlen(si->stream_type));
    evs__sb_printf(b, ",\"version\":%llu,\"first_global_position\":%llu,\"last_global_position\":%llu,"
                      "\"created_at\":",
                   (unsigned long long)si->version, (unsigned long long)si->first_global_position,
                   (unsigned long long)si->last_global_position);
    evs__sb_json_time(b, si->created_at);
    evs__sb_adds(b, ",\"updated_at\":");
    evs__sb_json_time(b, si->updated_at);
    evs__sb_adds(b, "}");
}

enum MHD_Result evs__route_list_streams(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_LIST_STREAMS;
    enum MHD_Result mr = MHD_NO;
    char *prefix = NULL, *after = NULL;
    evs_stream_info *si = NULL;
    evs__sb out = {0};
    uint64_t limit = EVS_SRV_DEFAULT_PAGE;
    if (query_u64(srv, c, R, "limit", EVS_SRV_MAX_PAGE, &limit, &mr) ||
        evs__query_text(srv, c, R, "prefix", EVS_MAX_STREAM_NAME, &prefix, &mr) ||
        evs__query_text(srv, c, R, "after", EVS_MAX_STREAM_NAME, &after, &mr))
        goto cleanup;
    if (limit == 0) limit = EVS_SRV_DEFAULT_PAGE;
    if (!(si = malloc((size_t)limit * sizeof *si))) {
        mr = evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    size_t count = 0;
    int rc = evs_list_streams(srv->store, prefix, after, si, (size_t)limit, &count);
    if (rc) {
        mr = evs__respond_lib(srv, c, R, rc, "list streams");
        goto cleanup;
    }
    evs__sb_adds(&out, "{\"streams\":[");
    for (size_t i = 0; i < count; i++) {
        if (i) evs__sb_add(&out, ",", 1);
        stream_info_json(&out, &si[i]);
    }
    evs__sb_adds(&out, "],\"next_after\":");
    if (count == limit) evs__sb_json_str(&out, si[count - 1].name, strlen(si[count - 1].name));
    else evs__sb_adds(&out, "null");
    evs__sb_adds(&out, "}\n");
    mr = finish_json(srv, c, R, &out);
cleanup:
    free(prefix);
    free(after);
    free(si);
    evs__sb_free(&out);
    return mr;
}

enum MHD_Result evs__route_all(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_ALL;
    enum MHD_Result mr = MHD_NO;
    evs_reader *r = NULL;
    evs__sb out = {0};
    evs__live_filter lf;
    memset(&lf, 0, sizeof lf);
    int dir;
    uint64_t from = 0, limit = EVS_SRV_DEFAULT_PAGE;
    if (query_direction(srv, c, R, &dir, &mr) || query_u64(srv, c, R, "from", UINT64_MAX - 1, &from, &mr) ||
        query_u64(srv, c, R, "limit", EVS_SRV_MAX_PAGE, &limit, &mr) ||
        evs__query_filter(srv, c, R, 0, &lf, &mr))
        goto cleanup;
    if (!evs__query(c, "from")) from = dir == EVS_FORWARD ? 1 : EVS_POSITION_END;
    if (limit == 0) limit = EVS_SRV_DEFAULT_PAGE;
    uint64_t head = evs_head(srv->store);
    int rc = evs_read_all(srv->store, from, dir, &lf.f, (size_t)limit, &r);
    if (rc) {
        mr = evs__respond_lib(srv, c, R, rc, "read $all");
        goto cleanup;
    }
    evs__sb_printf(&out, "{\"direction\":\"%s\",\"events\":[", dir == EVS_FORWARD ? "forward" : "backward");
    size_t count;
    uint64_t last = 0;
    int done;
    if ((rc = render_page(srv, r, &out, (size_t)limit, 1, &count, &last, &done))) {
        mr = evs__respond_lib(srv, c, R, rc, "read $all");
        goto cleanup;
    }
    uint64_t next = evs_reader_position(r);
    evs__sb_adds(&out, "],\"next\":");
    if (dir == EVS_BACKWARD && next == 0) evs__sb_adds(&out, "null");
    else evs__sb_printf(&out, "%llu", (unsigned long long)next);
    if (head < evs_head(srv->store)) head = evs_head(srv->store);
    evs__sb_printf(&out, ",\"head\":%llu,\"end\":%s}\n", (unsigned long long)head, done ? "true" : "false");
    mr = finish_json(srv, c, R, &out);
cleanup:
    evs_reader_close(r);
    evs__sb_free(&out);
    evs__live_filter_free(&lf);
    return mr;
}

/* ------------------------------------------------------------ info, health */

enum MHD_Result evs__route_info(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_INFO;
    evs_store_stats st;
    int rc = evs_store_get_stats(srv->store, &st);
    if (rc) return evs__respond_lib(srv, c, R, rc, "info");
    evs__sb out = {0};
    evs__sb_printf(&out, "{\"version\":\"%s\",\"data_dir\":", EVS_VERSION_STRING);
    evs__sb_json_str(&out, srv->dir, strlen(srv->dir));
    evs__sb_adds(&out, ",\"listen\":");
    evs__sb_json_str(&out, srv->listen, strlen(srv->listen));
    evs__sb_printf(&out,
                   ",\"durability\":\"%s\",\"head\":%llu,\"streams\":%llu,\"segments\":%llu,"
                   "\"log_bytes\":%llu,\"uptime_seconds\":%.3f,\"subscribers\":%ld,\"connections\":%ld,"
                   "\"writable\":%s}\n",
                   srv->durability_name, (unsigned long long)st.head, (unsigned long long)st.streams,
                   (unsigned long long)st.segments, (unsigned long long)st.log_bytes,
                   (double)(evs__mono_ns() - srv->started_ns) / 1e9,
                   atomic_load(&srv->sse_count) + evs__ws_count(srv), atomic_load(&srv->connections),
                   evs_store_writable(srv->store, NULL, 0) == EVS_OK ? "true" : "false");
    return finish_json(srv, c, R, &out);
}

enum MHD_Result evs__route_health(evs__srv *srv, struct MHD_Connection *c) {
    const int R = EVS_R_HEALTH;
    if (atomic_load(&srv->shutting))
        return evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, "{\"status\":\"shutting_down\"}",
                                  "the server is shutting down");
    char why[512];
    if (evs_store_writable(srv->store, why, sizeof why) != EVS_OK)
        return evs__respond_error(srv, c, R, EVS_HTTP_UNAVAILABLE, "{\"status\":\"failed\"}",
                                  "the store refuses appends after an I/O failure (%s); restart the server "
                                  "once the disk is sound",
                                  why);
    char *p = strdup("{\"status\":\"ok\"}\n");
    if (!p) return MHD_NO;
    return evs__respond(srv, c, R, EVS_HTTP_OK, p, strlen(p), NULL);
}
