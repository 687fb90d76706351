/*
 * routes_app.c — the application layer over HTTP (include/evstore_app.h):
 * commands (one, or a batch run in order), named queries over projection
 * state, an aggregate's state and snapshots, and Lua aggregate scripts put
 * into the store.  The server's app is opened by app_host.c; WebSocket
 * commands (ws.c through cmdpool.c) are answered by the same
 * evs__app_command as POST /commands/{type}, so every way in gives the
 * same answer with the same status.
 *
 * Statuses come from respond.c: a command's outcome through
 * evs__command_status, library failures through evs__http_status.  The
 * global position a command's events reached, and the projection position
 * a query's answer reflects, are also sent as the Evstore-Position header:
 * a client passes the former as min_position to read its own writes.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_access.h"
#include "server/consumers.h"
#include "server/query.h"
#include "server/routes_app.h"
#include "server/routes_proj.h"

#define POSITION_HEADER "Evstore-Position"
#define QUERY_MAX_WAITS 1024 /* queries waiting for min_position at once */
/* How long a query's min_position wait may hold its worker: a projection
   usually passes a command's position within it, and a thread for the wait
   would cost more (docs/decisions.md). */
#define QUERY_INLINE_WAIT_MS 2

/* -------------------------------------------------------------- answers */

/* An answer with the Evstore-Position header (with_pos: always; else when position is not 0). */
static enum MHD_Result answer(evs__req *rq, unsigned status, evs__sb *out, int with_pos, uint64_t position,
                              const char *cache) {
    size_t len;
    char *p = evs__sb_take(out, &len);
    if (!p) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    struct MHD_Response *r = MHD_create_response_from_buffer(len, p, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(p);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (with_pos || position) {
        char v[24];
        snprintf(v, sizeof v, "%llu", (unsigned long long)position);
        MHD_add_response_header(r, POSITION_HEADER, v);
    }
    if (cache) MHD_add_response_header(r, "Evstore-Cache", cache);
    return evs__respond_queue(rq, status, r);
}

/* A jansson value as the answer (taken: released here), ended by a newline. */
static enum MHD_Result respond_value(evs__req *rq, unsigned status, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    evs__sb out = {0};
    evs__sb_adds(&out, s);
    evs__sb_adds(&out, "\n");
    free(s);
    return evs__respond_sb(rq, status, &out);
}

/* The error body of a library failure, as every route writes it. */
static void error_body(evs__sb *out, int rc, const char *msg) {
    evs__sb_adds(out, "{\"error\":");
    evs__sb_json_str(out, msg, strlen(msg));
    evs__sb_printf(out, ",\"detail\":{\"code\":\"%s\"}}", evs_errname(rc));
}

void evs__app_command(evs__srv *srv, const char *type, const char *json, size_t len, evs__sb *out,
                      unsigned *status, uint64_t *position) {
    evs_command_result r;
    *position = 0;
    int rc = evs_app_execute_json(srv->app, type, json, len, &r);
    if (rc) {
        const char *msg = evs_errmsg();
        if (!msg || !*msg) msg = evs_strerror(rc);
        *status = evs__http_status(rc);
        fprintf(stderr, "evstore serve: %u: command %s: %s\n", *status, type ? type : "", msg);
        error_body(out, rc, msg);
        return;
    }
    char *rj = NULL;
    size_t rl = 0;
    if (evs_command_result_to_json(&r, &rj, &rl) || rl < 2) {
        *status = EVS_HTTP_UNAVAILABLE;
        error_body(out, EVS_ENOMEM, "out of memory");
        evs_command_result_free(&r);
        free(rj);
        return;
    }
    *status = evs__command_status(&r);
    *position = r.last_position;
    if (r.outcome == EVS_CMD_ACCEPTED) {
        evs__sb_add(out, rj, rl);
    } else {
        /* the error convention's two members first, then the result itself */
        if (r.outcome == EVS_CMD_FAILED)
            fprintf(stderr, "evstore serve: %u: command %s on %s failed: %s\n", *status, r.command_id, r.stream,
                    r.reason);
        evs__sb_adds(out, "{\"error\":");
        evs__sb_json_str(out, r.reason, strlen(r.reason));
        evs__sb_printf(out, ",\"detail\":{\"outcome\":\"%s\",\"field\":", evs_command_outcome_name(r.outcome));
        if (r.field[0]) evs__sb_json_str(out, r.field, strlen(r.field));
        else evs__sb_adds(out, "null");
        evs__sb_adds(out, "},");
        evs__sb_add(out, rj + 1, rl - 1);
    }
    free(rj);
    evs_command_result_free(&r);
}

/* ------------------------------------------------------------- commands */

enum MHD_Result evs__route_command(evs__req *rq) {
    enum MHD_Result mr;
    json_t *root;
    /* malformed JSON is answered like everywhere else (line, column), before the library sees it */
    if (evs__req_json(rq, &root, &mr)) return mr;
    json_decref(root);
    evs__sb out = {0};
    unsigned status;
    uint64_t pos;
    evs__app_command(rq->srv, rq->name, rq->body.p ? rq->body.p : "", rq->body.len, &out, &status, &pos);
    evs__sb_adds(&out, "\n");
    return answer(rq, status, &out, 0, pos, NULL);
}

enum MHD_Result evs__route_command_batch(evs__req *rq) {
    enum MHD_Result mr;
    json_t *root;
    if (evs__req_json(rq, &root, &mr)) return mr;
    size_t n = json_array_size(root);
    if (!json_is_array(root) || n == 0) {
        json_decref(root);
        return evs__respond_error(rq, EVS_HTTP_UNPROCESSABLE, NULL,
                                  "POST /commands takes a non-empty array of commands, each naming its "
                                  "command_type; one command goes to POST /commands/{command_type}");
    }
    if (n > EVS_APP_MAX_BATCH) {
        json_decref(root);
        char d[64];
        snprintf(d, sizeof d, "{\"count\":%zu,\"limit\":%u}", n, EVS_APP_MAX_BATCH);
        return evs__respond_error(rq, EVS_HTTP_TOO_LARGE, d, "a batch of %zu commands is over the limit of %u", n,
                                  EVS_APP_MAX_BATCH);
    }
    evs__sb out = {0}, one = {0};
    uint64_t last = 0;
    evs__sb_adds(&out, "{\"results\":[");
    for (size_t i = 0; i < n; i++) {
        /* every element is run, in order, whatever the others did: a batch is not atomic */
        char *text = json_dumps(json_array_get(root, i), JSON_COMPACT | JSON_ENCODE_ANY);
        unsigned status;
        uint64_t pos = 0;
        one.len = 0;
        if (!text) {
            status = EVS_HTTP_UNAVAILABLE;
            error_body(&one, EVS_ENOMEM, "out of memory");
        } else {
            evs__app_command(rq->srv, NULL, text, strlen(text), &one, &status, &pos);
        }
        free(text);
        if (pos > last) last = pos;
        if (i) evs__sb_add(&out, ",", 1);
        evs__sb_printf(&out, "{\"status\":%u,", status);
        if (one.len > 1) evs__sb_add(&out, one.p + 1, one.len - 1);
        else evs__sb_adds(&out, "}");
    }
    evs__sb_free(&one);
    json_decref(root);
    evs__sb_printf(&out, "],\"last_position\":%llu}\n", (unsigned long long)last);
    return answer(rq, EVS_HTTP_OK, &out, 0, last, NULL);
}

/* ----------------------------------------------------------------- lists */

/* One member of evs_app_describe's answer, as {"<key>": [...]}. */
static enum MHD_Result describe_member(evs__req *rq, const char *key) {
    char *js = NULL;
    int rc = evs_app_describe(rq->srv->app, NULL, &js, NULL);
    if (rc) return evs__respond_lib(rq, rc, key);
    json_t *o = json_loads(js, 0, NULL);
    free(js);
    json_t *part = o ? json_pack("{s:O}", key, json_object_get(o, key)) : NULL;
    json_decref(o);
    return respond_value(rq, EVS_HTTP_OK, part);
}

enum MHD_Result evs__route_command_list(evs__req *rq) { return describe_member(rq, "commands"); }
enum MHD_Result evs__route_query_list(evs__req *rq) { return describe_member(rq, "queries"); }
enum MHD_Result evs__route_aggregate_list(evs__req *rq) { return describe_member(rq, "aggregates"); }

/* --------------------------------------------------------------- queries */

/* true/false/1/0; absent leaves *out alone.  0, or -1 after a 400. */
static int bool_param(evs__req *rq, const char *key, int *out, enum MHD_Result *mr) {
    const char *v = evs__query(rq, key);
    if (!v) return 0;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) *out = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) *out = 0;
    else {
        *mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s must be true or false", key);
        return -1;
    }
    return 0;
}

/* A limit this large is no query's: checked without asking the registry. */
#define QUERY_LIMIT_CAP 1000000u

/* Query `name`'s max_limit as evs_app_describe says it; 0 when there is no such query. */
static uint64_t query_max_limit(evs_app *a, const char *name) {
    char *js = NULL;
    uint64_t max = 0;
    if (evs_app_describe(a, NULL, &js, NULL)) return 0;
    json_t *o = json_loads(js, 0, NULL), *q;
    size_t i;
    free(js);
    json_array_foreach(json_object_get(o, "queries"), i, q) {
        const char *n = json_string_value(json_object_get(q, "name"));
        json_int_t m = json_integer_value(json_object_get(q, "max_limit"));
        if (n && strcmp(n, name) == 0 && m > 0) max = (uint64_t)m;
    }
    json_decref(o);
    return max;
}

/*
 * limit: 1.. the query's max_limit.  A bad one is refused with the query's
 * own range (looked up only then: a good one costs no lookup, and one over
 * the maximum is the library's 413); an unknown query is a 404 first.
 */
static int limit_param(evs__req *rq, uint64_t *out, enum MHD_Result *mr) {
    const char *v = evs__query(rq, "limit");
    uint64_t n;
    if (!v) return 0;
    if (evs__parse_u64(v, QUERY_LIMIT_CAP, &n) == 0 && n >= 1) {
        *out = n;
        return 0;
    }
    uint64_t max = query_max_limit(rq->srv->app, rq->name);
    if (!max) {
        *mr = evs__respond_error(rq, EVS_HTTP_NOT_FOUND, "{\"code\":\"ENOTFOUND\"}", "no query named \"%s\"",
                                 rq->name);
        return -1;
    }
    return evs__query_u64(rq, "limit", 1, max, out, mr);
}

typedef struct filters {
    evs__req *rq;                  /* its route's own parameters (sort, limit, ...) are no filters */
    evs_query_filter f[EVS_APP_MAX_QUERY_FILTERS];
    char *own[2 * EVS_APP_MAX_QUERY_FILTERS];
    size_t n, nown;
    char why[256];
} filters;

static char *decoded(const char *raw, char *why, size_t cap, const char *what) {
    size_t n = strlen(raw);
    char *buf = malloc(n + 1), w[96];
    if (!buf) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    if (evs__pct_decode(raw, n, buf, n + 1, w, sizeof w) < 0) {
        snprintf(why, cap, "%s %.64s %s", what, raw, w);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Every parameter the route table does not list for /queries/{query} filters a field; stops at the first bad one. */
static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    filters *fs = cls;
    (void)kind;
    if (evs__query_listed(fs->rq, key)) return MHD_YES;
    if (fs->n == EVS_APP_MAX_QUERY_FILTERS) {
        snprintf(fs->why, sizeof fs->why, "at most %u field filters", EVS_APP_MAX_QUERY_FILTERS);
        return MHD_NO;
    }
    char *k = decoded(key, fs->why, sizeof fs->why, "parameter");
    if (!k) return MHD_NO;
    fs->own[fs->nown++] = k;
    if (!*k) {
        snprintf(fs->why, sizeof fs->why, "a field filter needs a field name (FIELD=VALUE)");
        return MHD_NO;
    }
    /* the same field spelt twice ("st%61tus" and "status"): http.c saw two names */
    for (size_t i = 0; i < fs->n; i++)
        if (strcmp(fs->f[i].field, k) == 0) {
            snprintf(fs->why, sizeof fs->why, "parameter %.64s is given more than once", k);
            return MHD_NO;
        }
    char *v = decoded(value ? value : "", fs->why, sizeof fs->why, "value of");
    if (!v) return MHD_NO;
    fs->own[fs->nown++] = v;
    fs->f[fs->n].field = k;
    fs->f[fs->n].value = v;
    fs->n++;
    return MHD_YES;
}

/* The answer to a query that ran. */
static enum MHD_Result query_answer(evs__req *rq, int rc, evs_query_result *res) {
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb body = {0};
    evs__sb_add(&body, res->json, res->len);
    evs__sb_adds(&body, "\n");
    /* position 0 (nothing applied yet) is still a position: say it */
    return answer(rq, EVS_HTTP_OK, &body, 1, res->position, res->cached ? "hit" : "miss");
}

/*
 * A query that waits for min_position (rq->state).  The wait runs on a
 * thread of its own with the connection suspended, as a group long-poll
 * does: on a worker it would hold back every other connection of that
 * worker, appends included, for up to the query timeout.  The thread fills
 * the job and sets done before it resumes the connection; from then on
 * only the request's thread touches it, and the request's completion
 * frees it.  Everything the query reads is the job's own.
 */
typedef struct query_job {
    _Atomic int done;
    int rc;
    char msg[512];
    evs_query_result res;
    evs_query_params p;
    filters fs;
    char *name, *partition, *sort;
    struct MHD_Connection *conn;
    evs__srv *srv;
} query_job;

static void query_job_free(void *arg) {
    query_job *job = arg;
    evs_query_result_free(&job->res);
    for (size_t i = 0; i < job->fs.nown; i++) free(job->fs.own[i]);
    free(job->name);
    free(job->partition);
    free(job->sort);
    free(job);
}

static void *query_main(void *arg) {
    query_job *job = arg;
    job->rc = evs_app_query(job->srv->app, job->name, &job->p, &job->res);
    if (job->rc) evs__copy_errmsg(job->msg, sizeof job->msg, job->rc);
    struct MHD_Connection *c = job->conn;
    evs__srv *srv = job->srv;
    atomic_store_explicit(&job->done, 1, memory_order_release);
    MHD_resume_connection(c); /* the request, and job with it, may be gone from here on */
    atomic_fetch_sub(&srv->query_waits, 1);
    return NULL;
}

/* The resumed query: its answer. */
static enum MHD_Result query_resumed(evs__req *rq, query_job *job) {
    if (job->rc) evs__err(job->rc, "%s", job->msg);
    return query_answer(rq, job->rc, &job->res);
}

/*
 * Start the waiting query; the parameters, filters, partition and sort
 * move into the job (*fs emptied, *partition and *sort set to NULL) when
 * it starts, and stay the caller's when it answers at once (an error).
 */
static enum MHD_Result query_submit(evs__req *rq, const evs_query_params *p, filters *fs, char **partition,
                                    char **sort) {
    evs__srv *srv = rq->srv;
    query_job *job = calloc(1, sizeof *job);
    char *name = job ? strdup(rq->name) : NULL;
    if (!name) {
        free(job);
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "out of memory");
    }
    if (atomic_fetch_add(&srv->query_waits, 1) >= QUERY_MAX_WAITS) {
        atomic_fetch_sub(&srv->query_waits, 1);
        free(name);
        free(job);
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL,
                                  "%d queries are waiting for min_position already; try again", QUERY_MAX_WAITS);
    }
    job->name = name;
    job->fs = *fs;
    job->p = *p;
    job->p.filters = job->fs.f;
    job->p.partition = job->partition = *partition;
    job->p.sort = job->sort = *sort;
    job->conn = rq->c;
    job->srv = srv;
    if (evs__req_run_suspended(rq, job, query_job_free, query_main)) {
        atomic_fetch_sub(&srv->query_waits, 1);
        free(job->name);
        free(job); /* what it held is still the caller's */
        return evs__respond_error(rq, EVS_HTTP_UNAVAILABLE, NULL, "cannot start a thread for the query's wait");
    }
    fs->nown = 0;
    *partition = *sort = NULL;
    return MHD_YES;
}

enum MHD_Result evs__route_query(evs__req *rq) {
    query_job *job = rq->state;
    if (job) return atomic_load_explicit(&job->done, memory_order_acquire) ? query_resumed(rq, job) : MHD_YES;
    enum MHD_Result mr = MHD_NO;
    evs_query_params p;
    memset(&p, 0, sizeof p);
    filters fs;
    memset(&fs, 0, sizeof fs);
    char *partition = NULL, *sort = NULL;
    uint64_t offset = 0, limit = 0, minpos = 0, tmo = UINT64_MAX;
    int desc = 0;
    uint64_t cap = rq->srv->query_timeout_ms;
    if (evs__query_text(rq, "partition", EVS_MAX_STREAM_NAME, &partition, &mr) ||
        evs__query_text(rq, "sort", 1024, &sort, &mr) || bool_param(rq, "desc", &desc, &mr) ||
        evs__query_u64(rq, "offset", 0, 1000000000, &offset, &mr) ||
        limit_param(rq, &limit, &mr) ||
        evs__query_u64(rq, "min_position", 1, UINT64_MAX - 1, &minpos, &mr) ||
        evs__query_u64(rq, "timeout_ms", 0, cap, &tmo, &mr))
        goto out;
    if (sort && !*sort) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter sort names no field");
        goto out;
    }
    fs.rq = rq;
    MHD_get_connection_values(rq->c, MHD_GET_ARGUMENT_KIND, collect, &fs);
    if (fs.why[0]) {
        mr = evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "%s", fs.why);
        goto out;
    }
    p.partition = partition;
    p.filters = fs.f;
    p.n_filters = fs.n;
    p.sort = sort;
    p.descending = desc;
    p.offset = (size_t)offset;
    p.limit = (size_t)limit;
    p.min_position = minpos;
    p.timeout_ms = tmo == UINT64_MAX ? -1 : (int)tmo;
    /* a query that would wait longer than QUERY_INLINE_WAIT_MS does so off the worker */
    if (minpos && (tmo < cap ? tmo : cap) > QUERY_INLINE_WAIT_MS &&
        !evs__app_query_reached(rq->srv->app, rq->name, minpos, QUERY_INLINE_WAIT_MS)) {
        mr = query_submit(rq, &p, &fs, &partition, &sort);
        goto out;
    }
    evs_query_result res;
    int rc = evs_app_query(rq->srv->app, rq->name, &p, &res);
    mr = query_answer(rq, rc, &res);
    if (!rc) evs_query_result_free(&res);
out:
    for (size_t i = 0; i < fs.nown; i++) free(fs.own[i]);
    free(partition);
    free(sort);
    return mr;
}

/* ------------------------------------------------------------ aggregates */

enum MHD_Result evs__route_aggregate_type(evs__req *rq) {
    char *js = NULL;
    size_t n = 0;
    int rc = evs_app_describe(rq->srv->app, rq->name, &js, &n);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb out = {0};
    evs__sb_add(&out, js, n);
    evs__sb_adds(&out, "\n");
    free(js);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_aggregate_put(evs__req *rq) {
    enum MHD_Result mr;
    json_t *root = NULL;
    const char *src;
    size_t n;
    if (evs__req_source(rq, &root, &src, &n, &mr)) return mr;
    int what = 0;
    int rc = evs_app_put_lua_aggregate(rq->srv->app, rq->name, src, n, &what);
    json_decref(root);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    char *js = NULL;
    if ((rc = evs_app_describe(rq->srv->app, rq->name, &js, NULL))) return evs__respond_lib(rq, rc, NULL);
    json_t *o = json_loads(js, 0, NULL);
    free(js);
    if (o) {
        json_object_del(o, "source"); /* the client just sent it */
        json_object_set_new(o, "change", json_string(what == EVS_PUT_CREATED    ? "created"
                                                     : what == EVS_PUT_REPLACED ? "replaced"
                                                                                : "unchanged"));
    }
    return respond_value(rq, what == EVS_PUT_CREATED ? EVS_HTTP_CREATED : EVS_HTTP_OK, o);
}

enum MHD_Result evs__route_aggregate_get(evs__req *rq) {
    enum MHD_Result mr;
    int use = 1;
    char *as_of = NULL;
    evs_as_of at = {0};
    if (bool_param(rq, "use_snapshot", &use, &mr) || evs__query_text(rq, "as_of", 64, &as_of, &mr)) return mr;
    if (as_of && evs_as_of_parse(as_of, strlen(as_of), &at)) {
        free(as_of);
        return evs__respond_error(rq, EVS_HTTP_BAD_REQUEST, NULL, "parameter %s", evs_errmsg());
    }
    char *js = NULL;
    size_t n = 0;
    evs_load_info info;
    unsigned flags = use ? 0 : EVS_LOAD_NO_SNAPSHOT;
    int rc = as_of ? evs_aggregate_load_as_of(rq->srv->app, rq->name, rq->part, &at, flags, &js, &n, &info)
                   : evs_aggregate_load_json(rq->srv->app, rq->name, rq->part, flags, &js, &n, &info);
    free(as_of);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb out = {0};
    evs__sb_adds(&out, "{\"type\":");
    evs__sb_json_str(&out, rq->name, strlen(rq->name));
    evs__sb_adds(&out, ",\"id\":");
    evs__sb_json_str(&out, rq->part, strlen(rq->part));
    char stream[2 * EVS_MAX_STREAM_NAME + 2];
    snprintf(stream, sizeof stream, "%s-%s", rq->name, rq->part); /* the library checked it fits */
    evs__sb_adds(&out, ",\"stream\":");
    evs__sb_json_str(&out, stream, strlen(stream));
    if (at.position || at.time) { /* as of a point: say which */
        evs__sb_adds(&out, ",\"as_of\":{\"position\":");
        if (at.position) evs__sb_printf(&out, "%llu", (unsigned long long)at.position);
        else evs__sb_adds(&out, "null");
        evs__sb_adds(&out, ",\"time\":");
        evs__sb_json_time(&out, at.time);
        evs__sb_adds(&out, "}");
    }
    evs__sb_printf(&out,
                   ",\"version\":%llu,\"snapshot_version\":%llu,\"events_applied\":%llu,\"snapshots_ignored\":%llu,"
                   "\"load_ms\":%.3f,\"state\":",
                   (unsigned long long)info.version, (unsigned long long)info.snapshot_version,
                   (unsigned long long)info.events_applied, (unsigned long long)info.snapshots_ignored,
                   (double)info.duration_ns / 1e6);
    evs__sb_add(&out, js, n);
    evs__sb_adds(&out, "}\n");
    free(js);
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}

enum MHD_Result evs__route_aggregate_snapshots(evs__req *rq) {
    evs_app *a = rq->srv->app;
    evs__sb out = {0};
    if (rq->method == EVS_M_POST) {
        uint64_t v = 0;
        int rc = evs_aggregate_snapshot(a, rq->name, rq->part, &v);
        if (rc) return evs__respond_lib(rq, rc, NULL);
        evs__sb_printf(&out, "{\"version\":%llu}\n", (unsigned long long)v);
        return evs__respond_sb(rq, EVS_HTTP_CREATED, &out);
    }
    evs_snapshot_info snaps[64];
    size_t n = 0;
    int rc = evs_aggregate_snapshots(a, rq->name, rq->part, snaps, 64, &n);
    if (rc) return evs__respond_lib(rq, rc, NULL);
    evs__sb_adds(&out, "{\"snapshots\":[");
    for (size_t i = 0; i < n; i++) {
        char hex[33];
        for (int k = 0; k < 16; k++) snprintf(hex + 2 * k, 3, "%02x", snaps[i].code_hash[k]);
        evs__sb_printf(&out,
                       "%s{\"version\":%llu,\"global_position\":%llu,\"schema_version\":%u,\"code_hash\":\"%s\","
                       "\"usable\":%s,\"created_at\":",
                       i ? "," : "", (unsigned long long)snaps[i].version, (unsigned long long)snaps[i].global_position,
                       snaps[i].schema_version, hex, snaps[i].usable ? "true" : "false");
        evs__sb_json_time(&out, snaps[i].created_at);
        evs__sb_adds(&out, "}");
    }
    evs__sb_adds(&out, "]}\n");
    return evs__respond_sb(rq, EVS_HTTP_OK, &out);
}
