/*
 * query.c — the query bus: named queries over the committed partitions of a
 * projection, with field filters, sorting, paging, read-your-writes waits
 * and a result cache.
 *
 * One query = one evs_proj_scan (a single read transaction), so every item
 * of an answer reflects the same projection position, which the answer
 * states.  With min_position the query first waits (evs_proj_wait, woken by
 * consumer commits) until the projection has passed it, at most the
 * configured cap.  On PostgreSQL the projection may run in another server
 * on the same database (its lease is there); evs_proj_wait then also reads
 * the position from the database every few milliseconds.
 *
 * Cache.  Answers are kept by (query, parameters) with the position they
 * reflect and the bus's commit generation when they were computed.  A hit
 * needs the projection to be at the same position: on the embedded engine,
 * when no consumer has committed since (same generation) that is certain
 * without a read; otherwise, and always on PostgreSQL (where another
 * process's commits move no generation here), the projection's position is
 * read and compared.  So no answer is served once the projection has
 * moved.  Replacement is round-robin.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app_access.h"
#include "app/app_internal.h"

struct evs__query {
    char name[EVS_APP_MAX_NAME + 1];
    char projection[EVS_BUS_MAX_NAME + 1];
    char **fields;
    size_t n_fields;
    uint32_t default_limit, max_limit;
};

typedef struct qentry {
    char *key;
    char *json;
    size_t len, total;
    uint64_t position, gen;
    char projection[EVS_BUS_MAX_NAME + 1];
} qentry;

struct evs__qcache {
    qentry *e;
    size_t cap, next;
};

void evs__query_free(evs__query *q) {
    if (!q) return;
    for (size_t i = 0; i < q->n_fields; i++) free(q->fields[i]);
    free(q->fields);
    free(q);
}

void evs__qcache_free(evs__qcache *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) {
        free(c->e[i].key);
        free(c->e[i].json);
    }
    free(c->e);
    free(c);
}

json_t *evs__query_json(const evs__query *q) {
    json_t *fields = json_null();
    if (q->fields) {
        fields = json_array();
        for (size_t i = 0; fields && i < q->n_fields; i++) json_array_append_new(fields, json_string(q->fields[i]));
    }
    return json_pack("{s:s,s:s,s:o*,s:I,s:I}", "name", q->name, "projection", q->projection, "fields", fields,
                     "default_limit", (json_int_t)q->default_limit, "max_limit", (json_int_t)q->max_limit);
}

evs__query *evs__app_find_query(evs_app *a, const char *name) {
    for (size_t i = 0; i < a->n_queries; i++)
        if (strcmp(a->queries[i]->name, name) == 0) return a->queries[i];
    return NULL;
}

int evs_app_register_query(evs_app *a, const evs_query_def *d) {
    if (!a || !d) return evs__err(EVS_EINVAL, "register_query: NULL argument");
    if (!d->name || !*d->name || strlen(d->name) > EVS_APP_MAX_NAME)
        return evs__err(EVS_EINVAL, "query name must be 1..%u bytes", EVS_APP_MAX_NAME);
    if (!d->projection || !*d->projection || strlen(d->projection) > EVS_BUS_MAX_NAME)
        return evs__err(EVS_EINVAL, "query \"%s\": projection name must be 1..%u bytes", d->name, EVS_BUS_MAX_NAME);
    if (d->n_fields && !d->fields) return evs__err(EVS_EINVAL, "query \"%s\": fields is NULL", d->name);
    evs__query *q = calloc(1, sizeof *q);
    if (!q) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(q->name, sizeof q->name, "%s", d->name);
    snprintf(q->projection, sizeof q->projection, "%s", d->projection);
    q->default_limit = d->default_limit ? d->default_limit : 50;
    q->max_limit = d->max_limit ? d->max_limit : 1000;
    if (q->default_limit > q->max_limit) q->default_limit = q->max_limit;
    if (d->n_fields && !(q->fields = calloc(d->n_fields, sizeof *q->fields))) goto oom;
    for (size_t i = 0; i < d->n_fields; i++) {
        if (!d->fields[i] || !(q->fields[i] = strdup(d->fields[i]))) goto oom;
        q->n_fields = i + 1;
    }
    int rc = EVS_OK;
    pthread_rwlock_wrlock(&a->reg_lock);
    if (evs__app_find_query(a, q->name)) {
        rc = evs__err(EVS_ECONFLICT, "query \"%s\" is already registered", q->name);
    } else {
        evs__query **nq = a->n_queries == a->cap_queries
                              ? realloc(a->queries, (a->cap_queries ? a->cap_queries * 2 : 8) * sizeof *nq)
                              : a->queries;
        if (!nq) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
        } else {
            if (nq != a->queries || a->n_queries == a->cap_queries)
                a->cap_queries = a->cap_queries ? a->cap_queries * 2 : 8;
            a->queries = nq;
            a->queries[a->n_queries++] = q;
        }
    }
    pthread_rwlock_unlock(&a->reg_lock);
    if (rc) evs__query_free(q);
    return rc;
oom:
    evs__query_free(q);
    return evs__err(EVS_ENOMEM, "out of memory");
}

void evs_query_result_free(evs_query_result *r) {
    if (!r) return;
    free(r->json);
    r->json = NULL;
}

/* ---------------------------------------------------------------- filters */

static json_t *path_get(json_t *o, const char *path) {
    char seg[256];
    while (o && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof seg) return NULL;
        memcpy(seg, path, n);
        seg[n] = 0;
        o = json_is_object(o) ? json_object_get(o, seg) : NULL;
        path += n + (dot ? 1 : 0);
    }
    return o;
}

static int matches(json_t *v, const char *want) {
    char *end;
    switch (json_typeof(v)) {
    case JSON_STRING: return strcmp(json_string_value(v), want) == 0;
    case JSON_INTEGER: {
        errno = 0;
        long long x = strtoll(want, &end, 10);
        return *want && !*end && !errno && x == json_integer_value(v);
    }
    case JSON_REAL: {
        double x = strtod(want, &end);
        return *want && !*end && x == json_real_value(v);
    }
    case JSON_TRUE: return strcmp(want, "true") == 0;
    case JSON_FALSE: return strcmp(want, "false") == 0;
    case JSON_NULL: return strcmp(want, "null") == 0;
    default: return 0;
    }
}

/* Order of two values: missing last, then numbers < strings < booleans, each in their own order. */
static int vcmp(json_t *x, json_t *y) {
    if (!x || !y) return !x - !y;
    int cx = json_is_number(x) ? 0 : json_is_string(x) ? 1 : json_is_boolean(x) ? 2 : 3;
    int cy = json_is_number(y) ? 0 : json_is_string(y) ? 1 : json_is_boolean(y) ? 2 : 3;
    if (cx != cy) return cx - cy;
    if (cx == 0) {
        if (json_is_integer(x) && json_is_integer(y))
            return (json_integer_value(x) > json_integer_value(y)) - (json_integer_value(x) < json_integer_value(y));
        double a = json_number_value(x), b = json_number_value(y);
        return (a > b) - (a < b);
    }
    if (cx == 1) return strcmp(json_string_value(x), json_string_value(y));
    if (cx == 2) return json_is_true(x) - json_is_true(y);
    return 0;
}

typedef struct item {
    char *key;
    json_t *state;
    json_t *sortv;                /* borrowed from state */
} item;

typedef struct scan_ctx {
    const evs_query_params *p;
    item *items;
    size_t n, cap;
    int oom, bad;
} scan_ctx;

static int on_partition(void *ctx, const char *part, size_t plen, const char *state, size_t slen) {
    scan_ctx *s = ctx;
    const evs_query_params *p = s->p;
    if (p->partition && (strlen(p->partition) != plen || memcmp(p->partition, part, plen) != 0)) return 0;
    json_t *st = json_loadb(state, slen, 0, NULL);
    if (!st) {
        s->bad++;
        return 0;
    }
    for (size_t i = 0; i < p->n_filters; i++) {
        json_t *v = path_get(st, p->filters[i].field);
        if (!v || !matches(v, p->filters[i].value)) {
            json_decref(st);
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        item *ni = realloc(s->items, nc * sizeof *ni);
        if (!ni) goto oom;
        s->items = ni;
        s->cap = nc;
    }
    item *it = &s->items[s->n];
    if (!(it->key = malloc(plen + 1))) goto oom;
    memcpy(it->key, part, plen);
    it->key[plen] = 0;
    it->state = st;
    it->sortv = p->sort ? path_get(st, p->sort) : NULL;
    s->n++;
    return 0;
oom:
    json_decref(st);
    s->oom = 1;
    return 1;
}

static _Thread_local int t_desc;

static int item_cmp(const void *pa, const void *pb) {
    const item *a = pa, *b = pb;
    int c = vcmp(a->sortv, b->sortv);
    if (c == 0) c = strcmp(a->key, b->key);
    return t_desc ? -c : c;
}

static int field_allowed(const evs__query *q, const char *f) {
    if (!q->fields) return 1;
    for (size_t i = 0; i < q->n_fields; i++)
        if (strcmp(q->fields[i], f) == 0) return 1;
    return 0;
}

/* The cache key: every parameter that shapes the answer. */
static char *cache_key(const char *name, const evs_query_params *p, size_t limit) {
    json_t *o = json_pack("{s:s,s:s?,s:s?,s:b,s:I,s:I}", "q", name, "p", p->partition, "s", p->sort, "d", p->descending,
                          "o", (json_int_t)p->offset, "l", (json_int_t)limit);
    if (!o) return NULL;
    json_t *f = json_array();
    for (size_t i = 0; f && i < p->n_filters; i++)
        json_array_append_new(f, json_pack("[s,s]", p->filters[i].field, p->filters[i].value));
    json_object_set_new(o, "f", f);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/*
 * A cached answer, if it is still the projection's.  seen: a position the
 * caller has already seen the projection reach (0: none).  The commit
 * generation moves only after a projection's commit is visible, so a
 * caller that waited for min_position can see the new position while the
 * generation still vouches for an older answer: an answer computed below
 * seen is never served.
 */
static int cache_get(evs_app *a, const char *key, const char *proj, uint64_t seen, evs_query_result *res) {
    if (!a->cfg.query_cache_entries) return 0;
    uint64_t gen = evs_bus_commit_generation(a->bus);
    int hit = 0;
    pthread_mutex_lock(&a->qc_mu);
    evs__qcache *c = a->qcache;
    qentry *e = NULL;
    for (size_t i = 0; c && i < c->cap; i++)
        if (c->e[i].key && strcmp(c->e[i].key, key) == 0) {
            e = &c->e[i];
            break;
        }
    if (e) {
        uint64_t pos = e->position;
        int valid = e->gen == gen && !a->pg;
        if (pos < seen) valid = 0;
        else if (!valid) {
            /* something committed: is this projection still where the answer was computed? */
            char pname[EVS_BUS_MAX_NAME + 1];
            snprintf(pname, sizeof pname, "%s", proj);
            pthread_mutex_unlock(&a->qc_mu);
            uint64_t now = 0;
            valid = evs_proj_position(a->bus, pname, &now) == EVS_OK && now == pos;
            pthread_mutex_lock(&a->qc_mu);
            /* the entry may have been replaced meanwhile */
            if (!(e->key && strcmp(e->key, key) == 0 && e->position == pos)) valid = 0;
            else if (valid) e->gen = gen;
        }
        if (valid && (res->json = malloc(e->len + 1))) {
            memcpy(res->json, e->json, e->len + 1);
            res->len = e->len;
            res->position = e->position;
            res->total = e->total;
            res->cached = 1;
            hit = 1;
        }
    }
    pthread_mutex_unlock(&a->qc_mu);
    return hit;
}

static void cache_put(evs_app *a, const char *key, const char *proj, const evs_query_result *res, uint64_t gen) {
    if (!a->cfg.query_cache_entries) return;
    char *k = strdup(key), *j = malloc(res->len + 1);
    if (!k || !j) {
        free(k);
        free(j);
        return;
    }
    memcpy(j, res->json, res->len + 1);
    pthread_mutex_lock(&a->qc_mu);
    if (!a->qcache && (a->qcache = calloc(1, sizeof *a->qcache)) &&
        !(a->qcache->e = calloc(a->cfg.query_cache_entries, sizeof *a->qcache->e))) {
        free(a->qcache);
        a->qcache = NULL;
    }
    evs__qcache *c = a->qcache;
    if (c) {
        c->cap = a->cfg.query_cache_entries;
        qentry *e = NULL;
        for (size_t i = 0; i < c->cap && !e; i++)
            if (c->e[i].key && strcmp(c->e[i].key, key) == 0) e = &c->e[i];
        if (!e) {
            e = &c->e[c->next];
            c->next = (c->next + 1) % c->cap;
        }
        free(e->key);
        free(e->json);
        e->key = k;
        e->json = j;
        e->len = res->len;
        e->total = res->total;
        e->position = res->position;
        e->gen = gen;
        snprintf(e->projection, sizeof e->projection, "%s", proj);
        k = j = NULL;
    }
    pthread_mutex_unlock(&a->qc_mu);
    free(k);
    free(j);
}

/* How long a min_position wait sleeps before it looks at a->interrupted again. */
#define QUERY_WAIT_SLICE_MS 100

/*
 * evs_proj_wait for up to timeout_ms, in slices, so that evs__app_interrupt
 * ends it within QUERY_WAIT_SLICE_MS (EVS_ECLOSED; a position already
 * passed is still EVS_OK); the projection's commits wake it as before.  The
 * same outcome and message as one evs_proj_wait otherwise.
 */
static int wait_position(evs_app *a, const char *proj, uint64_t position, int timeout_ms, uint64_t *reached) {
    int64_t end = evs__mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int stop = atomic_load(&a->interrupted);
        int64_t left = end - evs__mono_ns();
        int slice = stop || left <= 0 ? 0
                    : left >= (int64_t)QUERY_WAIT_SLICE_MS * 1000000 ? QUERY_WAIT_SLICE_MS
                                                                      : (int)((left + 999999) / 1000000);
        int rc = evs_proj_wait(a->bus, proj, position, slice, reached);
        if (rc != EVS_ETIMEDOUT) return rc; /* there, or an error */
        if (stop)
            return evs__err(EVS_ECLOSED, "projection \"%s\": the wait for position %llu ended: the application layer "
                                         "is stopping", proj, (unsigned long long)position);
        if (slice == 0 || evs__mono_ns() >= end)
            return evs__err(EVS_ETIMEDOUT, "projection \"%s\" is at position %llu, not yet at %llu after %d ms", proj,
                            (unsigned long long)*reached, (unsigned long long)position, timeout_ms);
    }
}

/* (app_access.h) */
void evs__app_interrupt(evs_app *a) {
    if (a) atomic_store(&a->interrupted, 1);
}

/* (app_access.h) */
int evs__app_query_reached(evs_app *a, const char *name, uint64_t position, int wait_ms) {
    char proj[EVS_BUS_MAX_NAME + 1];
    if (!a || !a->bus || !name) return 1;
    pthread_rwlock_rdlock(&a->reg_lock);
    evs__query *q = evs__app_find_query(a, name);
    if (q) snprintf(proj, sizeof proj, "%s", q->projection);
    pthread_rwlock_unlock(&a->reg_lock);
    if (!q || atomic_load(&a->interrupted)) return 1; /* evs_app_query answers at once */
    int rc = evs_proj_wait(a->bus, proj, position, wait_ms < 0 ? 0 : wait_ms, NULL);
    evs__err_clear();
    return rc != EVS_ETIMEDOUT;
}

int evs_app_query(evs_app *a, const char *name, const evs_query_params *p, evs_query_result *res) {
    evs_query_params none;
    if (!a || !name || !res) return evs__err(EVS_EINVAL, "app_query: NULL argument");
    memset(res, 0, sizeof *res);
    if (!p) {
        memset(&none, 0, sizeof none);
        p = &none;
    }
    if (!a->bus) return evs__err(EVS_EINVAL, "queries need a bus: open the app with one");
    if (p->n_filters && !p->filters) return evs__err(EVS_EINVAL, "query \"%s\": filters is NULL", name);
    pthread_rwlock_rdlock(&a->reg_lock);
    evs__query *q = evs__app_find_query(a, name);
    evs__query qc;
    if (q) qc = *q;
    pthread_rwlock_unlock(&a->reg_lock);
    if (!q) return evs__err(EVS_ENOTFOUND, "no query named \"%s\"", name);
    for (size_t i = 0; i < p->n_filters; i++) {
        if (!p->filters[i].field || !p->filters[i].value)
            return evs__err(EVS_EINVAL, "query \"%s\": filter %zu needs a field and a value", name, i + 1);
        if (!field_allowed(&qc, p->filters[i].field))
            return evs__err(EVS_EINVAL, "query \"%s\" cannot filter by \"%s\"", name, p->filters[i].field);
    }
    if (p->sort && !field_allowed(&qc, p->sort)) return evs__err(EVS_EINVAL, "query \"%s\" cannot sort by \"%s\"", name, p->sort);
    size_t limit = p->limit ? p->limit : qc.default_limit;
    if (limit > qc.max_limit)
        return evs__err(EVS_ELIMIT, "query \"%s\": limit %zu exceeds %u", name, limit, qc.max_limit);
    atomic_fetch_add(&a->st_queries, 1);
    int rc;
    uint64_t reached = 0;
    if (p->min_position) {
        int cap = a->cfg.query_timeout_ms;
        int t = p->timeout_ms < 0 || p->timeout_ms > cap ? cap : p->timeout_ms;
        atomic_fetch_add(&a->st_q_waits, 1);
        if ((rc = wait_position(a, qc.projection, p->min_position, t, &reached))) {
            if (rc == EVS_ETIMEDOUT) atomic_fetch_add(&a->st_q_timeouts, 1);
            return rc;
        }
    }
    char *key = cache_key(qc.name, p, limit);
    if (!key) return evs__err(EVS_ENOMEM, "out of memory");
    if (cache_get(a, key, qc.projection, reached, res)) {
        atomic_fetch_add(&a->st_qc_hit, 1);
        free(key);
        return EVS_OK;
    }
    atomic_fetch_add(&a->st_qc_miss, 1);
    uint64_t gen = evs_bus_commit_generation(a->bus);
    scan_ctx s;
    memset(&s, 0, sizeof s);
    s.p = p;
    uint64_t pos = 0;
    rc = evs_proj_scan(a->bus, qc.projection, on_partition, &s, &pos);
    if (rc == EVS_ENOTFOUND) rc = evs__err(EVS_ENOTFOUND, "query \"%s\": projection \"%s\" does not exist", name, qc.projection);
    if (!rc && s.oom) rc = evs__err(EVS_ENOMEM, "out of memory");
    json_t *o = NULL, *arr = NULL;
    if (rc) goto out;
    t_desc = p->descending;
    if (s.n) qsort(s.items, s.n, sizeof *s.items, item_cmp); /* no items: NULL, which qsort must not get */
    o = json_object();
    arr = json_array();
    if (!o || !arr) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = p->offset; i < s.n && i < p->offset + limit; i++)
        json_array_append_new(arr, json_pack("{s:s,s:O}", "key", s.items[i].key, "state", s.items[i].state));
    json_object_set_new(o, "query", json_string(qc.name));
    json_object_set_new(o, "projection", json_string(qc.projection));
    json_object_set_new(o, "position", json_integer((json_int_t)pos));
    json_object_set_new(o, "total", json_integer((json_int_t)s.n));
    json_object_set_new(o, "offset", json_integer((json_int_t)p->offset));
    json_object_set_new(o, "limit", json_integer((json_int_t)limit));
    json_object_set_new(o, "items", arr);
    arr = NULL;
    if (!(res->json = json_dumps(o, JSON_COMPACT))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    res->len = strlen(res->json);
    res->position = pos;
    res->total = s.n;
    cache_put(a, key, qc.projection, res, gen);
out:
    json_decref(arr);
    json_decref(o);
    for (size_t i = 0; i < s.n; i++) {
        free(s.items[i].key);
        json_decref(s.items[i].state);
    }
    free(s.items);
    free(key);
    return rc;
}
