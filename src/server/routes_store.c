/*
 * routes_store.c — the event store's own routes: append, stream and global
 * reads, the stream list, /info and /health.  Each route queues exactly one
 * response.
 *
 * The append path never builds a DOM: the body is validated once by the
 * strict validator (which gives line and column for a 400), then each event
 * object is parsed by evs__event_from_json into spans of the body, and the
 * store receives data and metadata byte for byte.  An append waits for
 * its group commit with its connection suspended, not in its worker
 * (append_submit): the worker serves its other connections meanwhile.
 * Reads render events
 * straight into the page buffer (evs__sb_event: no allocation per event),
 * copying stored data and metadata verbatim.
 *
 * A page stops at PAGE_MAX items or PAGE_MAX_BYTES of JSON, whichever
 * comes first, and says where to continue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/condition_json.h"
#include "core/event_json.h"
#include "evstore_schema.h"
#include "server/auth.h"
#include "server/query.h"
#include "server/routes_schema.h"
#include "server/routes_store.h"
#include "server/sse.h"
#include "server/ws.h"
#include "store/store_access.h"

#define PAGE_MAX 10000u                      /* events or streams per read page */
#define PAGE_DEFAULT 100u
#define PAGE_MAX_BYTES ((size_t)32 << 20)    /* a page stops growing here */
#define AUTH_SCAN_MAX 100000u                /* events a restricted key's page examines at most */

/* --------------------------------------------------------------- append */

/* Expected-Version header or ?expected=: any, no-stream, exists or a number. */
int evs__parse_expected(const char *v, int64_t *out) {
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

/*
 * A body that is an object with "events" (and optionally "condition") is
 * the envelope of a conditional append; any other object is one event.
 * An event has no "events" member (evs__event_from_json refuses unknown
 * fields), so the two cannot be confused.
 */
static int is_envelope(evs_json_span root) {
    if (root.type != EVS_JSON_OBJECT) return 0;
    evs_json_iter it;
    evs_json_span k, v;
    evs__json_iter_init(&it, root);
    while (evs__json_iter_member(&it, &k, &v))
        if (evs__json_string_eq(k, "events") || evs__json_string_eq(k, "condition")) return 1;
    return 0;
}

enum MHD_Result evs__respond_conflict(evs__req *rq, const char *msg, const char *stream, int64_t expected,
                                      uint64_t actual) {
    char et[32];
    expected_text(expected, et);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"error\":");
    evs__sb_json_str(&out, msg, strlen(msg));
    evs__sb_printf(&out, ",\"actual_version\":%llu,\"detail\":{\"code\":\"ECONFLICT\",\"stream\":",
                   (unsigned long long)actual);
    evs__sb_json_str(&out, stream, strlen(stream));
    evs__sb_adds(&out, ",\"expected_version\":");
    if (expected >= 0) evs__sb_printf(&out, "%lld", (long long)expected);
    else evs__sb_json_str(&out, et, strlen(et));
    evs__sb_adds(&out, "}}\n");
    return evs__respond_sb(rq, EVS_HTTP_CONFLICT, &out);
}

/*
 * The answer to an append's outcome: 201 (200 for an idempotent retry) with
 * positions and ids, 409 for a conflict or a failed condition (cond_after:
 * the condition's `after`), else the error's status (the message is the
 * thread's, evs_errmsg).
 */
static enum MHD_Result append_answer(evs__req *rq, const char *stream, int64_t expected, uint64_t cond_after, size_t n,
                                     int rc, const evs_append_result *res, const evs_uuid *ids) {
    evs__srv *srv = rq->srv;
    evs__sb out = {0};
    enum MHD_Result mr;
    if (rc == EVS_ECONFLICT) {
        char et[32], msg[160];
        expected_text(expected, et);
        snprintf(msg, sizeof msg, "Concurrency conflict: expected version %s, actual version %llu", et,
                 (unsigned long long)res->actual_version);
        mr = evs__respond_conflict(rq, msg, stream, expected, res->actual_version);
        goto out;
    }
    if (rc == EVS_ECONDITION) {
        evs__sb_adds(&out, "{\"error\":");
        evs__sb_json_str(&out, evs_errmsg(), strlen(evs_errmsg()));
        evs__sb_printf(&out, ",\"condition_position\":%llu,\"detail\":{\"code\":\"ECONDITION\",\"stream\":",
                       (unsigned long long)res->condition_position);
        evs__sb_json_str(&out, stream, strlen(stream));
        evs__sb_printf(&out, ",\"after\":%llu}}\n", (unsigned long long)cond_after);
        size_t blen;
        char *p = evs__sb_take(&out, &blen);
        mr = p ? evs__respond(rq, EVS_HTTP_CONFLICT, p, blen, NULL) : MHD_NO;
        goto out;
    }
    if (rc) {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "append to \"%s\"", stream);
        mr = evs__respond_append_failed(rq, rc, ctx);
        goto out;
    }
    if (!res->idempotent) evs__count_add(&srv->m.events_appended, n);
    evs__sb_adds(&out, "{\"stream\":");
    evs__sb_json_str(&out, stream, strlen(stream));
    evs__sb_printf(&out,
                   ",\"version\":%llu,\"first_stream_position\":%llu,\"last_stream_position\":%llu"
                   ",\"first_global_position\":%llu,\"last_global_position\":%llu,\"idempotent\":%s"
                   ",\"recorded_at\":",
                   (unsigned long long)res->last_stream_position,
                   (unsigned long long)res->first_stream_position,
                   (unsigned long long)res->last_stream_position,
                   (unsigned long long)res->first_global_position,
                   (unsigned long long)res->last_global_position, res->idempotent ? "true" : "false");
    evs__sb_json_time(&out, res->recorded_at);
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
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto out;
    }
    mr = evs__respond(rq, res->idempotent ? EVS_HTTP_OK : EVS_HTTP_CREATED, p, blen, NULL);
out:
    evs__sb_free(&out);
    return mr;
}

/*
 * An append answered without holding this worker (evs__store_append_async):
 * the connection is suspended while the append waits for its group commit,
 * and the worker goes on with its other connections.  The leader of the
 * batch fills the job and resumes the connection; libmicrohttpd then calls
 * the route again, which answers from the job.  From the resume on only the
 * request's thread touches the job, and the request's completion frees it.
 */
typedef struct append_job {
    _Atomic int done;
    int rc;
    evs_append_result res;
    char msg[512];
    struct MHD_Connection *conn;
    evs__srv *srv;
    int64_t expected, t0;
    size_t n;
    evs_uuid ids[];
} append_job;

static void append_job_done(void *arg, int rc, const evs_append_result *res, const evs_uuid *ids, size_t n,
                            const char *msg) {
    append_job *job = arg;
    job->rc = rc;
    job->res = *res;
    if (n == job->n) memcpy(job->ids, ids, n * sizeof *ids);
    snprintf(job->msg, sizeof job->msg, "%s", msg);
    struct MHD_Connection *c = job->conn;
    evs__srv *srv = job->srv;
    atomic_store_explicit(&job->done, 1, memory_order_release);
    MHD_resume_connection(c); /* the request, and job with it, may be gone from here on */
    atomic_fetch_sub(&srv->appends_waiting, 1);
}

/* The resumed append: its answer. */
static enum MHD_Result append_resumed(evs__req *rq, append_job *job) {
    evs__count_append_latency(&rq->srv->m, evs__mono_ns() - job->t0);
    evs__schema_forget(); /* a refusal was answered at submission: none belongs to this outcome */
    if (job->rc) evs__err(job->rc, "%s", job->msg);
    return append_answer(rq, rq->stream, job->expected, 0, job->n, job->rc, &job->res, job->ids);
}

static enum MHD_Result append_submit(evs__req *rq, const char *stream, int64_t expected, const evs_event_in *ins,
                                     size_t n) {
    append_job *job = calloc(1, sizeof *job + n * sizeof(evs_uuid));
    if (!job) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    job->conn = rq->c;
    job->srv = rq->srv;
    job->expected = expected;
    job->n = n;
    rq->state = job;
    rq->state_free = free;
    evs__schema_forget(); /* a refusal reported below is this append's */
    job->t0 = evs__mono_ns();
    /* counted and suspended before the submit: its callback may resume it at once */
    atomic_fetch_add(&rq->srv->appends_waiting, 1);
    MHD_suspend_connection(rq->c);
    int rc = evs__store_append_async(rq->srv->store, stream, expected, ins, n, append_job_done, job);
    if (rc == EVS_OK) return MHD_YES;
    /* refused at once (a schema, a limit, a closed store): no callback comes */
    rq->state = NULL;
    rq->state_free = NULL;
    MHD_resume_connection(rq->c);
    atomic_fetch_sub(&rq->srv->appends_waiting, 1);
    free(job);
    evs_append_result none;
    memset(&none, 0, sizeof none);
    return append_answer(rq, stream, expected, 0, n, rc, &none, NULL);
}

enum MHD_Result evs__route_append(evs__req *rq) {
    append_job *job = rq->state;
    if (job) return atomic_load_explicit(&job->done, memory_order_acquire) ? append_resumed(rq, job) : MHD_YES;
    evs__srv *srv = rq->srv;
    const char *stream = rq->stream, *body = rq->body.p ? rq->body.p : "";
    size_t len = rq->body.len;
    enum MHD_Result mr = MHD_NO;
    evs_event_parsed *parsed = NULL;
    evs_event_in *ins = NULL;
    evs_uuid *ids = NULL;
    size_t n = 0, nparsed = 0;
    evs__sb out = {0};
    char d[256];
    evs_condition_parsed cp;
    int have_cond = 0;
    memset(&cp, 0, sizeof cp);

    /* expected version: header and query must agree when both are given */
    int64_t expected = EVS_EXPECT_ANY, eq = 0;
    const char *hv = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, "Expected-Version");
    const char *qv = evs__query(rq, "expected");
    /* like a repeated ?expected=: which one was meant is anyone's guess, even when they are equal */
    if (hv && evs__header_count(rq, "Expected-Version") > 1) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                "header Expected-Version is given more than once");
        goto cleanup;
    }
    if (hv && evs__parse_expected(hv, &expected)) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                "Expected-Version \"%.40s\" is not any, no-stream, exists or a version "
                                "number (0..%lld)", hv, (long long)INT64_MAX);
        goto cleanup;
    }
    if (qv && evs__parse_expected(qv, hv ? &eq : &expected)) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                "parameter expected=%.40s is not any, no-stream, exists or a version "
                                "number (0..%lld)", qv, (long long)INT64_MAX);
        goto cleanup;
    }
    if (hv && qv && eq != expected) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                "Expected-Version header and expected parameter disagree");
        goto cleanup;
    }

    if (evs__req_json_valid(rq, &mr)) goto cleanup;
    evs_json_span root = evs__json_root(body, len);
    if (root.type != EVS_JSON_OBJECT && root.type != EVS_JSON_ARRAY) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                "the body must be an event object or an array of them, not %s",
                                evs__json_type_name(root.type));
        goto cleanup;
    }
    if (is_envelope(root)) {
        evs_json_iter mi;
        evs_json_span k, v, events = {NULL, 0, EVS_JSON_INVALID};
        evs__json_iter_init(&mi, root);
        while (evs__json_iter_member(&mi, &k, &v)) {
            if (evs__json_string_eq(k, "events") && !events.p) {
                events = v;
            } else if (evs__json_string_eq(k, "condition") && !have_cond) {
                const char *where;
                if (evs__condition_from_json(v, &cp, &where)) {
                    unsigned line, col;
                    evs__json_position(body, (size_t)(where - body), &line, &col);
                    snprintf(d, sizeof d, "{\"line\":%u,\"column\":%u,\"offset\":%zu}", line, col,
                             (size_t)(where - body));
                    mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d, "%s", evs_errmsg());
                    goto cleanup;
                }
                have_cond = 1;
            } else {
                mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                        "unknown or repeated member %.*s: an append body with \"events\" takes "
                                        "\"events\" and \"condition\"", (int)(k.n > 60 ? 60 : k.n), k.p);
                goto cleanup;
            }
        }
        if (!events.p || (events.type != EVS_JSON_ARRAY && events.type != EVS_JSON_OBJECT)) {
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                    "\"events\" must be given: an event object or an array of them");
            goto cleanup;
        }
        root = events;
    }
    count_events(root, &n);
    if (n == 0) {
        mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL, "the array holds no events");
        goto cleanup;
    }
    if (n > EVS_MAX_EVENTS_PER_APPEND) {
        snprintf(d, sizeof d, "{\"events\":%zu,\"limit\":%u}", n, EVS_MAX_EVENTS_PER_APPEND);
        mr = evs__respond_error(rq, EVS_HTTP_TOO_LARGE, d, "%zu events in one append, the limit is %u",
                                n, EVS_MAX_EVENTS_PER_APPEND);
        goto cleanup;
    }
    parsed = calloc(n, sizeof *parsed);
    ins = calloc(n, sizeof *ins);
    ids = calloc(n, sizeof *ids);
    if (!parsed || !ins || !ids) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory for %zu events", n);
        goto cleanup;
    }
    evs_json_iter it;
    evs_json_span el = root;
    if (root.type == EVS_JSON_ARRAY) evs__json_iter_init(&it, root);
    for (size_t i = 0; i < n; i++) {
        if (root.type == EVS_JSON_ARRAY) evs__json_iter_element(&it, &el);
        if (el.type != EVS_JSON_OBJECT) {
            snprintf(d, sizeof d, "{\"event\":%zu,\"index\":%zu}", i + 1, i);
            mr = evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, d, "event %zu: expected an object, got %s",
                                    i + 1, evs__json_type_name(el.type));
            goto cleanup;
        }
        evs_json_error je;
        memset(&je, 0, sizeof je);
        int rc = evs__event_from_json(el.p, el.n, &parsed[i], &je);
        if (rc) {
            if (rc == EVS_EJSON) evs__count_error(&srv->m, EVS_ERRK_JSON);
            /* report the position within the whole body, not the element */
            size_t off = (size_t)(el.p - body) + je.offset;
            unsigned line, col;
            evs__json_position(body, off, &line, &col);
            snprintf(d, sizeof d, "{\"event\":%zu,\"index\":%zu,\"line\":%u,\"column\":%u,\"offset\":%zu}", i + 1,
                     i, line, col, off);
            mr = evs__respond_error(rq, rc == EVS_EJSON ? EVS_HTTP_BAD_REQUEST : EVS_HTTP_UNPROCESSABLE,
                                    d, "event %zu: %s", i + 1, je.msg[0] ? je.msg : evs_errmsg());
            goto cleanup;
        }
        nparsed++;
        ins[i] = parsed[i].ev;
        /* a key restricted to some event types may append only those (the stream was checked by http.c) */
        if (rq->who && !evs__principal_allows(rq->who, EVS_PERM_APPEND, stream, strlen(stream), ins[i].event_type,
                                              strlen(ins[i].event_type))) {
            mr = evs__auth_forbid(rq, EVS_PERM_APPEND, stream, strlen(stream), ins[i].event_type,
                                  strlen(ins[i].event_type));
            goto cleanup;
        }
    }
    /* a condition asks about events anywhere in the log: only a key that may read all of it */
    if (have_cond && rq->who && !evs__principal_allows_all(rq->who, EVS_PERM_READ)) {
        mr = evs__auth_forbid(rq, EVS_PERM_READ, NULL, 0, NULL, 0);
        goto cleanup;
    }

    if (!have_cond && !srv->engine) {
        mr = append_submit(rq, stream, expected, ins, n);
        goto cleanup;
    }
    evs_append_result res;
    memset(&res, 0, sizeof res);
    evs__schema_forget(); /* a refusal reported below is this append's */
    int64_t t0 = evs__mono_ns();
    int rc = evs_append_if(srv->store, stream, expected, have_cond ? &cp.cond : NULL, ins, n, &res, ids);
    evs__count_append_latency(&srv->m, evs__mono_ns() - t0);
    mr = append_answer(rq, stream, expected, have_cond ? cp.cond.after : 0, n, rc, &res, ids);

cleanup:
    evs__condition_parsed_free(&cp);
    for (size_t i = 0; i < nparsed; i++) evs__event_parsed_free(&parsed[i]);
    free(parsed);
    free(ins);
    free(ids);
    evs__sb_free(&out);
    return mr;
}

/* ----------------------------------------------------------------- reads */

/* ?upcast=latest: the server's registry in *up; absent: NULL; any other value: 400. */
static int query_upcast(evs__req *rq, evs_schema_registry **up, enum MHD_Result *mr) {
    const char *v = evs__query(rq, "upcast");
    *up = NULL;
    if (!v) return 0;
    if (strcmp(v, "latest") != 0) {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter upcast=%.40s: the only value is latest", v);
        return -1;
    }
    *up = rq->srv->schemas;
    return 0;
}

/*
 * Render events from r into out as a JSON array body (no brackets), at most
 * limit events and about PAGE_MAX_BYTES.  *count receives how many,
 * *last the last event's stream or global position, *done 1 when the reader
 * reached its end.  Returns a library status.
 */
static int render_events(evs_reader *r, evs_schema_registry *up, const evs__live_filter *lf, evs__sb *out,
                         evs__sb *lost, size_t limit, int want_global, size_t *count, uint64_t *last, int *done) {
    size_t examined = 0;
    while (*count < limit) {
        if (out->len >= PAGE_MAX_BYTES) return EVS_OK;
        /* a restricted key's reader is not limited (skipped events would end the page early): bound the scan */
        if (lf && lf->who && examined >= AUTH_SCAN_MAX) return EVS_OK;
        const evs_event *ev;
        int rc = evs_reader_next(r, &ev);
        if (rc == EVS_DONE) {
            *done = 1;
            return EVS_OK;
        }
        if (rc == EVS_ELOST) { /* a range a repair removed: said in the page, and read past */
            uint64_t a = 0, z = 0;
            evs_reader_lost(r, &a, &z);
            evs__sb_printf(lost, "%s{\"first\":%llu,\"last\":%llu,\"message\":", lost->len ? "," : "",
                           (unsigned long long)a, (unsigned long long)z);
            evs__sb_json_str(lost, evs_errmsg(), strlen(evs_errmsg()));
            evs__sb_adds(lost, "}");
            continue;
        }
        if (rc) return rc;
        examined++;
        if (lf && !evs__live_filter_match(lf, ev)) continue; /* not this key's to see; the position moves on */
        evs_event shown;
        void *owned = NULL;
        if (up) { /* ?upcast=latest: the event as the latest version, stored_version says what was stored */
            if ((rc = evs_schema_upcast(up, ev, &shown, &owned))) {
                /* the server's upcasters are at fault, not the request: 500 (EVS_EFORMAT in the table) */
                evs__err_prefix(rc, "cannot upcast the event at global position %llu (read it without "
                                    "upcast=latest to see it as stored): ", (unsigned long long)ev->global_position);
                return rc == EVS_ENOMEM ? rc : EVS_EFORMAT;
            }
            ev = &shown;
        }
        if (*count) evs__sb_add(out, ",", 1);
        evs__sb_event(out, ev);
        free(owned);
        if (out->oom) return EVS_ENOMEM;
        (*count)++;
        *last = want_global ? ev->global_position : ev->stream_position;
    }
    return EVS_OK;
}

/*
 * A page: events into out, then `],"lost":[...]` when the reader passed
 * ranges a repair removed (the caller closes the array it opened).
 */
static int render_page(evs__srv *srv, evs_reader *r, evs_schema_registry *up, const evs__live_filter *lf,
                       evs__sb *out, size_t limit, int want_global, size_t *count, uint64_t *last, int *done) {
    *count = 0;
    *done = 0;
    evs__sb lost = {0};
    int rc = render_events(r, up, lf, out, &lost, limit, want_global, count, last, done);
    if (lost.len) {
        evs__sb_adds(out, "],\"lost\":[");
        evs__sb_add(out, lost.p, lost.len);
        if (lost.oom) rc = EVS_ENOMEM;
    }
    evs__sb_free(&lost);
    /* one shared-counter update per page, not per event */
    evs__count_add(&srv->m.events_read, *count);
    return rc;
}

enum MHD_Result evs__route_read_stream(evs__req *rq) {
    evs__srv *srv = rq->srv;
    const char *stream = rq->stream;
    enum MHD_Result mr = MHD_NO;
    evs_reader *r = NULL;
    evs__sb out = {0};
    int dir;
    uint64_t from = 0, limit = PAGE_DEFAULT;
    evs_schema_registry *up = NULL;
    if (evs__query_direction(rq, &dir, &mr) || evs__query_u64(rq, "from", 0, UINT64_MAX - 1, &from, &mr) ||
        evs__query_u64(rq, "limit", 1, PAGE_MAX, &limit, &mr) || query_upcast(rq, &up, &mr))
        return mr;
    if (!evs__query(rq, "from")) from = dir == EVS_FORWARD ? 1 : EVS_POSITION_END;
    if (from == 0 && dir == EVS_FORWARD) from = 1; /* positions are 1-based */
    evs_stream_info si;
    int rc = evs_stream_get_info(srv->store, stream, &si);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
    if (rc) return evs__respond_lib(rq, rc, "read stream");
    /* a key restricted to some event types of this stream: only those, read unlimited (render_events bounds it) */
    evs__live_filter lf;
    memset(&lf, 0, sizeof lf);
    evs__auth_filter(rq, &lf, EVS_PERM_READ);
    if ((rc = evs_read_stream(srv->store, stream, from, dir, lf.who ? 0 : (size_t)limit, &r))) {
        evs__live_filter_free(&lf);
        if (rc == EVS_ENOTFOUND)
            return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
        return evs__respond_lib(rq, rc, "read stream");
    }
    evs__sb_adds(&out, "{\"stream\":");
    evs__sb_json_str(&out, stream, strlen(stream));
    evs__sb_printf(&out, ",\"version\":%llu,\"direction\":\"%s\",\"events\":[", (unsigned long long)si.version,
                   dir == EVS_FORWARD ? "forward" : "backward");
    size_t count;
    uint64_t last = 0;
    int done;
    rc = render_page(srv, r, up, lf.who ? &lf : NULL, &out, (size_t)limit, 0, &count, &last, &done);
    evs__live_filter_free(&lf);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "read stream");
        goto cleanup;
    }
    /* next: where the following page starts (null once a backward read reached the start) */
    uint64_t next;
    int end;
    (void)last;
    next = evs_reader_position(r); /* past lost ranges too */
    if (dir == EVS_FORWARD) end = done || next > si.version;
    else end = done || next == 0;
    evs__sb_adds(&out, "],\"next\":");
    if (dir == EVS_BACKWARD && next == 0) evs__sb_adds(&out, "null");
    else evs__sb_printf(&out, "%llu", (unsigned long long)next);
    evs__sb_printf(&out, ",\"end\":%s}\n", end ? "true" : "false");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    evs_reader_close(r);
    evs__sb_free(&out);
    return mr;
}

enum MHD_Result evs__route_read_event(evs__req *rq) {
    evs__srv *srv = rq->srv;
    const char *stream = rq->stream, *pos = rq->id;
    uint64_t p;
    int prc = evs__parse_u64(pos, UINT64_MAX - 1, &p);
    if (prc || p == 0)
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL,
                                  "position \"%.40s\" is not a stream position (1, 2, ...)%s", pos,
                                  prc == -2 ? ": negative" : prc == -3 ? ": too large" : "");
    evs_reader *r = NULL;
    int rc = evs_read_stream(srv->store, stream, p, EVS_FORWARD, 1, &r);
    if (rc == EVS_ENOTFOUND)
        return evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" not found", stream);
    if (rc) return evs__respond_lib(rq, rc, "read event");
    const evs_event *ev;
    enum MHD_Result mr;
    rc = evs_reader_next(r, &ev);
    if (rc == EVS_OK && ev->stream_position == p && !evs__auth_event_ok(rq->who, EVS_PERM_READ, ev)) {
        mr = evs__auth_forbid(rq, EVS_PERM_READ, stream, strlen(stream), ev->event_type, ev->event_type_len);
    } else if (rc == EVS_OK && ev->stream_position == p) {
        char *js;
        size_t jn;
        if ((rc = evs_event_to_json(ev, &js, &jn))) {
            mr = evs__respond_lib(rq, rc, "read event");
        } else {
            evs__count_add(&srv->m.events_read, 1);
            mr = evs__respond(rq, EVS_HTTP_OK, js, jn, NULL);
        }
    } else if (rc == EVS_OK || rc == EVS_DONE) {
        mr = evs__respond_error(rq, EVS_HTTP_NOT_FOUND, NULL, "stream \"%s\" has no event at position %llu",
                                stream, (unsigned long long)p);
    } else {
        mr = evs__respond_lib(rq, rc, "read event");
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

enum MHD_Result evs__route_list_streams(evs__req *rq) {
    evs__srv *srv = rq->srv;
    enum MHD_Result mr = MHD_NO;
    char *prefix = NULL, *after = NULL;
    evs_stream_info *si = NULL;
    evs__sb out = {0};
    uint64_t limit = PAGE_DEFAULT;
    if (evs__query_u64(rq, "limit", 1, PAGE_MAX, &limit, &mr) ||
        evs__query_text(rq, "prefix", EVS_MAX_STREAM_NAME, &prefix, &mr) ||
        evs__query_text(rq, "after", EVS_MAX_STREAM_NAME, &after, &mr))
        goto cleanup;
    if (!(si = malloc((size_t)limit * sizeof *si))) {
        mr = evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
        goto cleanup;
    }
    size_t count = 0;
    int rc = evs_list_streams(srv->store, prefix, after, si, (size_t)limit, &count);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "list streams");
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
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    free(prefix);
    free(after);
    free(si);
    evs__sb_free(&out);
    return mr;
}

enum MHD_Result evs__route_all(evs__req *rq) {
    evs__srv *srv = rq->srv;
    enum MHD_Result mr = MHD_NO;
    evs_reader *r = NULL;
    evs__sb out = {0};
    evs__live_filter lf;
    memset(&lf, 0, sizeof lf);
    evs_schema_registry *up = NULL;
    int dir;
    uint64_t from = 0, limit = PAGE_DEFAULT;
    if (evs__query_direction(rq, &dir, &mr) || evs__query_u64(rq, "from", 0, UINT64_MAX - 1, &from, &mr) ||
        evs__query_u64(rq, "limit", 1, PAGE_MAX, &limit, &mr) ||
        evs__query_filter(rq, 0, &lf, &mr) || query_upcast(rq, &up, &mr))
        goto cleanup;
    evs__auth_filter(rq, &lf, EVS_PERM_READ); /* a restricted key: only its events, next still moves past the rest */
    if (!evs__query(rq, "from")) from = dir == EVS_FORWARD ? 1 : EVS_POSITION_END;
    uint64_t head = evs_head(srv->store);
    int rc = evs_read_all(srv->store, from, dir, &lf.f, lf.who ? 0 : (size_t)limit, &r);
    if (rc) {
        mr = evs__respond_lib(rq, rc, "read $all");
        goto cleanup;
    }
    evs__sb_printf(&out, "{\"direction\":\"%s\",\"events\":[", dir == EVS_FORWARD ? "forward" : "backward");
    size_t count;
    uint64_t last = 0;
    int done;
    if ((rc = render_page(srv, r, up, &lf, &out, (size_t)limit, 1, &count, &last, &done))) {
        mr = evs__respond_lib(rq, rc, "read $all");
        goto cleanup;
    }
    uint64_t next = evs_reader_position(r);
    evs__sb_adds(&out, "],\"next\":");
    if (dir == EVS_BACKWARD && next == 0) evs__sb_adds(&out, "null");
    else evs__sb_printf(&out, "%llu", (unsigned long long)next);
    if (head < evs_head(srv->store)) head = evs_head(srv->store);
    evs__sb_printf(&out, ",\"head\":%llu,\"end\":%s}\n", (unsigned long long)head, done ? "true" : "false");
    mr = evs__respond_sb(rq, EVS_HTTP_OK, &out);
cleanup:
    evs_reader_close(r);
    evs__sb_free(&out);
    evs__live_filter_free(&lf);
    return mr;
}

/* ------------------------------------------------------------ info, health */

enum MHD_Result evs__route_info(evs__req *rq) {
    evs__srv *srv = rq->srv;
    evs_store_stats st;
    int rc = evs_store_get_stats(srv->store, &st);
    if (rc) return evs__respond_lib(rq, rc, "info");
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
                   evs__sse_count(srv) + evs__ws_count(srv), atomic_load(&srv->connections),
                   evs_store_writable(srv->store, NULL, 0) == EVS_OK ? "true" : "false");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_health(evs__req *rq) {
    evs__srv *srv = rq->srv;
    if (atomic_load(&srv->shutting))
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, "{\"status\":\"shutting_down\"}",
                                  "the server is shutting down");
    char why[512];
    if (evs_store_writable(srv->store, why, sizeof why) != EVS_OK)
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, "{\"status\":\"failed\"}",
                                  "the store refuses appends after an I/O failure (%s); restart the server "
                                  "once the disk is sound",
                                  why);
    char *p = strdup("{\"status\":\"ok\"}\n");
    if (!p) return MHD_NO;
    return evs__respond(rq, EVS_HTTP_OK, p, strlen(p), NULL);
}
