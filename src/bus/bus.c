/*
 * bus.c — the consumer environment and what is stored in it: consumer
 * records, DLQ entries and the per-stream parking counts (layout in
 * bus_internal.h), plus the clock and the backoff formula.
 *
 * The environment is a kv.h store: LMDB in DIR/consumers/ for the embedded
 * engine, the table evs_bus_kv of the database for the PostgreSQL engine;
 * either way record, DLQ and projection state move together in one
 * transaction.  Records and DLQ entries are small JSON objects (jansson):
 * they are written once per checkpoint, never per event.
 */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bus/bus_internal.h"
#include "bus/bus_testing.h"
#include "store/store_access.h"

int evs__bus_kv_err(int rc, const char *what) {
    /* kv.h's calls set their message with the code; a result code where the caller wanted none is a bug */
    if (rc <= 0) return rc;
    return evs__err(EVS_EIO, "consumers: %s: unexpected %s", what, rc == EVS__KV_NOTFOUND ? "not found" : "key exists");
}

void evs__bus_fmt(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

int evs__bus_check_name(const char *name) {
    if (!name || !*name) return evs__err(EVS_EINVAL, "consumer name is empty");
    size_t n = strlen(name);
    if (n > EVS_BUS_MAX_NAME) return evs__err(EVS_EINVAL, "consumer name is %zu bytes, at most %u", n, EVS_BUS_MAX_NAME);
    if (!evs__utf8_valid(name, n, NULL)) return evs__err(EVS_EINVAL, "consumer name is not valid UTF-8");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20) return evs__err(EVS_EINVAL, "consumer name contains a control character");
    return EVS_OK;
}

/*
 * Past head + 1 a consumer would silently skip every event appended up to
 * the position it was given, and a projection would claim positions it
 * never saw (a query waiting for one would pass at once).  The head may grow
 * after this check; positions only grow, so what was valid stays valid.
 */
int evs__bus_start_next(evs_store *s, const char *stream, uint64_t from, uint64_t *next) {
    uint64_t end;
    if (stream && *stream) {
        evs_stream_info si;
        int rc = evs_stream_get_info(s, stream, &si);
        if (rc == EVS_ENOTFOUND) si.version = 0, rc = EVS_OK, evs__err_clear();
        if (rc) return rc;
        end = si.version;
    } else {
        end = evs_head(s);
    }
    if (from == EVS_SUB_FROM_NOW) *next = end + 1;
    else if (from == EVS_SUB_FROM_START) *next = 1;
    else if (from > end + 1 && stream && *stream)
        return evs__err(EVS_EINVAL,
                        "position %llu lies past the end of stream \"%s\" (version %llu): at most %llu, just after its "
                        "last event",
                        (unsigned long long)from, stream, (unsigned long long)end, (unsigned long long)end + 1);
    else if (from > end + 1)
        return evs__err(EVS_EINVAL,
                        "position %llu lies past the store's head %llu: at most %llu, just after the last event",
                        (unsigned long long)from, (unsigned long long)end, (unsigned long long)end + 1);
    else *next = from;
    return EVS_OK;
}

int (*evs__bus_fault_hook)(const char *point);

int evs__bus_fault(const char *point) {
    if (evs__bus_fault_hook && evs__bus_fault_hook(point))
        return evs__err(EVS_EIO, "consumers: injected failure at %s", point);
    return EVS_OK;
}

/* ------------------------------------------------------------------ clock */

int64_t evs__clock_now(const evs_clock *c) {
    if (c && c->now_ns) return c->now_ns(c->ctx);
    return evs_now_ns();
}

void evs__clock_sleep(const evs_clock *c, int64_t ns) {
    if (c && c->sleep_ns) {
        c->sleep_ns(c->ctx, ns);
        return;
    }
    if (ns <= 0) return;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t evs__clock_random(const evs_clock *c) {
    if (c && c->random) return c->random(c->ctx);
    uint64_t v;
    evs__random(&v, sizeof v);
    return v;
}

void evs_retry_policy_default(evs_retry_policy *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->backoff = EVS_BACKOFF_EXPONENTIAL;
    p->max_retries = 3;
    p->initial_delay_ns = 1000000000;
    p->max_delay_ns = 60000000000;
    p->jitter = 0;
}

int64_t evs_retry_delay_ns(const evs_retry_policy *p, uint32_t k, uint64_t random) {
    if (!p || k == 0) return 0;
    double d = (double)p->initial_delay_ns;
    switch (p->backoff) {
    case EVS_BACKOFF_FIXED: break;
    case EVS_BACKOFF_LINEAR: d *= k; break;
    default: d *= k > 62 ? 4.6e18 : (double)(1ull << (k - 1)); break;
    }
    if (p->max_delay_ns > 0 && d > (double)p->max_delay_ns) d = (double)p->max_delay_ns;
    if (p->jitter > 0) {
        double j = p->jitter > 1 ? 1 : p->jitter;
        double u = (double)(random >> 11) / 9007199254740992.0; /* [0,1) */
        d *= 1.0 + j * (2.0 * u - 1.0);
    }
    if (d < 0) d = 0;
    if (d > 9.2e18) d = 9.2e18;
    return (int64_t)d;
}

const char *evs__kind_name(int kind) {
    switch (kind) {
    case EVS__KIND_PROJ: return "projection";
    case EVS__KIND_GROUP: return "group";
    default: return "subscription";
    }
}

const char *evs_consumer_status_name(int status) {
    switch (status) {
    case EVS_CONSUMER_ACTIVE: return "active";
    case EVS_CONSUMER_PAUSED: return "paused";
    case EVS_CONSUMER_ERROR: return "error";
    default: return "unknown";
    }
}

/* -------------------------------------------------------------------- bus */

int evs_bus_open(evs_store *s, evs_bus **out) {
    int rc;
    char path[4096] = "";
    evs_bus *b = NULL;
    if (!out) return evs__err(EVS_EINVAL, "bus_open: out is NULL");
    *out = NULL;
    /* On the PostgreSQL engine everything lives in the store's database (kv.h). */
    void *eng = evs__store_pg_engine(s);
    const char *dir = evs__store_dir(s);
    if (!dir && !eng) return evs__err(EVS_ECLOSED, "bus_open: the store is not open");
    int ro = evs__store_readonly(s);
    if (eng) goto alloc;
    if ((size_t)snprintf(path, sizeof path, "%s/consumers", dir) >= sizeof path)
        return evs__err(EVS_EINVAL, "bus_open: store path too long");
    /* A store open read-only (another process may hold it: a server) gets
       its consumers read-only too: LMDB lets readers of other processes in
       alongside the writer, and nothing is created. */
    struct stat st;
    if (ro && stat(path, &st) != 0)
        return evs__err(EVS_ENOTFOUND, "no consumers in %s (it has no consumers/ directory)", dir);
    if (!ro && mkdir(path, 0755) != 0 && errno != EEXIST) return evs__err_errno(-errno, "cannot create %s", path);
alloc:
    if (!(b = calloc(1, sizeof *b))) return evs__err(EVS_ENOMEM, "out of memory");
    b->store = s;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->commit_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->commit_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (eng) rc = evs__kv_open_pg(eng, &b->kv);
    else rc = evs__kv_open_lmdb(path, ro, &b->kv);
    if (rc) goto fail;
    b->consumers = EVS__KV_CONSUMERS;
    b->dlq = EVS__KV_DLQ;
    b->dlq_streams = EVS__KV_DLQ_STREAMS;
    b->pstate = EVS__KV_PSTATE;
    *out = b;
    return EVS_OK;
fail:
    evs_bus_close(b);
    return rc;
}

void evs_bus_close(evs_bus *b) {
    if (!b) return;
    evs__kv_close(b->kv);
    for (size_t i = 0; i < b->n_open; i++) {
        free(b->open_names[i]);
        evs__kv_lease_drop(b->leases[i]);
    }
    free(b->open_names);
    free(b->leases);
    free(b->live);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->commit_cv);
    pthread_mutex_destroy(&b->commit_mu);
    free(b);
}

void evs__bus_notify_commit(evs_bus *b) {
    pthread_mutex_lock(&b->commit_mu);
    b->commit_gen++;
    pthread_cond_broadcast(&b->commit_cv);
    pthread_mutex_unlock(&b->commit_mu);
}

uint64_t evs_bus_commit_generation(evs_bus *b) {
    if (!b) return 0;
    pthread_mutex_lock(&b->commit_mu);
    uint64_t g = b->commit_gen;
    pthread_mutex_unlock(&b->commit_mu);
    return g;
}

int evs__bus_claim(evs_bus *b, const char *name) {
    int rc = EVS_OK;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_open; i++)
        if (strcmp(b->open_names[i], name) == 0) {
            rc = evs__err(EVS_ELOCKED, "consumer \"%s\" is already open", name);
            goto out;
        }
    if (b->n_open == b->cap_open) {
        size_t nc = b->cap_open ? b->cap_open * 2 : 8;
        char **nn = realloc(b->open_names, nc * sizeof *nn);
        if (nn) b->open_names = nn;
        evs__kv_lease **nl = nn ? realloc(b->leases, nc * sizeof *nl) : NULL;
        if (nl) b->leases = nl;
        if (!nn || !nl) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        b->cap_open = nc;
    }
    if (!(b->open_names[b->n_open] = strdup(name))) {
        rc = evs__err(EVS_ENOMEM, "out of memory");
        goto out;
    }
    b->leases[b->n_open++] = NULL;
out:
    pthread_mutex_unlock(&b->mu);
    if (rc) return rc;
    /* across processes (PostgreSQL): the name is reserved here, so no other thread takes the lease meanwhile */
    evs__kv_lease *l = NULL;
    if ((rc = evs__kv_lease_take(b->kv, name, &l))) {
        evs__bus_release(b, name);
        return rc;
    }
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_open; i++)
        if (strcmp(b->open_names[i], name) == 0) b->leases[i] = l;
    pthread_mutex_unlock(&b->mu);
    return EVS_OK;
}

void evs__bus_release(evs_bus *b, const char *name) {
    evs__kv_lease *l = NULL;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_open; i++)
        if (strcmp(b->open_names[i], name) == 0) {
            free(b->open_names[i]);
            l = b->leases[i];
            b->n_open--;
            b->open_names[i] = b->open_names[b->n_open];
            b->leases[i] = b->leases[b->n_open];
            break;
        }
    pthread_mutex_unlock(&b->mu);
    evs__kv_lease_drop(l);
}

int evs__bus_begin_closed(evs_bus *b, const char *name, evs__kv_txn **txn) {
    evs__kv_lease *l;
    int rc = evs__kv_lease_take(b->kv, name, &l);
    if (rc) return rc;
    return evs__kv_begin(b->kv, l, EVS__KV_OWN_LEASE, txn);
}

evs__kv_lease *evs__bus_lease(evs_bus *b, const char *name) {
    evs__kv_lease *l = NULL;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_open && !l; i++)
        if (strcmp(b->open_names[i], name) == 0) l = b->leases[i];
    pthread_mutex_unlock(&b->mu);
    return l;
}

int evs__bus_add_live(evs_bus *b, const char *name, int (*info)(void *, evs_consumer_info *), void *handle) {
    int rc = EVS_OK;
    pthread_mutex_lock(&b->mu);
    if (b->n_live == b->cap_live) {
        size_t nc = b->cap_live ? b->cap_live * 2 : 8;
        evs__live *nl = realloc(b->live, nc * sizeof *nl);
        if (nl) b->live = nl, b->cap_live = nc;
        else rc = evs__err(EVS_ENOMEM, "out of memory");
    }
    if (!rc) b->live[b->n_live++] = (evs__live){name, info, handle};
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void evs__bus_remove_live(evs_bus *b, void *handle) {
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_live; i++)
        if (b->live[i].handle == handle) {
            b->live[i] = b->live[--b->n_live];
            break;
        }
    pthread_mutex_unlock(&b->mu);
}

int evs__bus_live_info(evs_bus *b, const char *name, evs_consumer_info *out, int *found) {
    int rc = EVS_OK;
    *found = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_live && !*found; i++)
        if (strcmp(b->live[i].name, name) == 0) {
            *found = 1;
            rc = b->live[i].info(b->live[i].handle, out);
        }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int evs__bus_is_open(evs_bus *b, const char *name) {
    int found = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_open && !found; i++) found = strcmp(b->open_names[i], name) == 0;
    pthread_mutex_unlock(&b->mu);
    return found;
}

/* ---------------------------------------------------------------- records */

void evs__record_free(evs__record *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_event_types; i++) free(r->event_types[i]);
    free(r->event_types);
    free(r->stream_type);
    free(r->stream_prefix);
    free(r->tag);
    free(r->lua_source);
    r->event_types = NULL;
    r->n_event_types = 0;
    r->stream_type = r->stream_prefix = r->tag = r->lua_source = NULL;
}

static void clear_filter(evs__record *r) {
    for (size_t i = 0; i < r->n_event_types; i++) free(r->event_types[i]);
    free(r->event_types);
    free(r->stream_type);
    free(r->stream_prefix);
    free(r->tag);
    r->event_types = NULL;
    r->n_event_types = 0;
    r->stream_type = r->stream_prefix = r->tag = NULL;
    r->has_corr = 0;
}

static int dup_opt(const char *s, char **out) {
    *out = NULL;
    if (!s || !*s) return EVS_OK;
    if (!(*out = strdup(s))) return evs__err(EVS_ENOMEM, "out of memory");
    return EVS_OK;
}

int evs__record_set_filter(evs__record *r, const evs_filter *f, const char *tag) {
    clear_filter(r);
    int rc;
    /* A record keeps what the readers' indexes answer; tags and causation are
       checked per event by evs_read_all and have no place in it (yet):
       refused, never dropped in silence. */
    if (f && (f->n_tags || f->causation_id))
        return evs__err(EVS_EINVAL, "filter: a consumer's filter takes no tags or causation_id (they filter "
                                    "evs_read_all); give the consumer its one tag instead");
    if (f) {
        if (f->n_event_types) {
            if (!f->event_types) return evs__err(EVS_EINVAL, "filter: event_types is NULL");
            if (!(r->event_types = calloc(f->n_event_types, sizeof *r->event_types)))
                return evs__err(EVS_ENOMEM, "out of memory");
            r->n_event_types = f->n_event_types;
            for (size_t i = 0; i < f->n_event_types; i++) {
                if (!f->event_types[i] || !*f->event_types[i])
                    return evs__err(EVS_EINVAL, "filter: event type %zu is empty", i + 1);
                if (!(r->event_types[i] = strdup(f->event_types[i]))) return evs__err(EVS_ENOMEM, "out of memory");
            }
        }
        if ((rc = dup_opt(f->stream_type, &r->stream_type))) return rc;
        if ((rc = dup_opt(f->stream_prefix, &r->stream_prefix))) return rc;
        if (f->correlation_id) {
            r->has_corr = 1;
            r->corr = *f->correlation_id;
        }
    }
    return dup_opt(tag, &r->tag);
}

static json_t *filter_json(const evs__record *r) {
    json_t *f = json_object();
    if (!f) return NULL;
    if (r->n_event_types) {
        json_t *a = json_array();
        for (size_t i = 0; i < r->n_event_types; i++) json_array_append_new(a, json_string(r->event_types[i]));
        json_object_set_new(f, "event_types", a);
    }
    if (r->stream_type) json_object_set_new(f, "stream_type", json_string(r->stream_type));
    if (r->stream_prefix) json_object_set_new(f, "stream_prefix", json_string(r->stream_prefix));
    if (r->tag) json_object_set_new(f, "tag", json_string(r->tag));
    if (r->has_corr) {
        char u[37];
        evs_uuid_format(&r->corr, u);
        json_object_set_new(f, "correlation_id", json_string(u));
    }
    return f;
}

static uint64_t jget_u64(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

static void jget_str(json_t *o, const char *k, char *buf, size_t cap) {
    const char *s = json_string_value(json_object_get(o, k));
    snprintf(buf, cap, "%s", s ? s : "");
}

int evs__record_read(evs_bus *b, const char *name, evs__record *out) {
    evs__kv_txn *txn;
    int rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return evs__bus_kv_err(rc, "begin");
    rc = evs__record_get(b, txn, name, out);
    evs__kv_abort(txn);
    return rc;
}

int evs__record_get(evs_bus *b, evs__kv_txn *txn, const char *name, evs__record *out) {
    evs__kv_val k = {strlen(name), (void *)name}, v;
    int rc = evs__kv_get(txn, b->consumers, &k, &v);
    if (rc == EVS__KV_NOTFOUND) return evs__err(EVS_ENOTFOUND, "consumer \"%s\" not found", name);
    if (rc) return evs__bus_kv_err(rc, "read record");
    json_error_t je;
    json_t *o = json_loadb(v.data, v.size, 0, &je);
    if (!o) return evs__err(EVS_ECORRUPT, "consumer \"%s\": record is not JSON: %s", name, je.text);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->kind = (int)jget_u64(o, "kind");
    jget_str(o, "owner", out->owner, sizeof out->owner);
    jget_str(o, "stream", out->stream, sizeof out->stream);
    json_t *f = json_object_get(o, "filter");
    rc = EVS_OK;
    json_t *a = json_object_get(f, "event_types");
    if (json_array_size(a)) {
        out->event_types = calloc(json_array_size(a), sizeof *out->event_types);
        if (!out->event_types) rc = evs__err(EVS_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < json_array_size(a); i++) {
            const char *t = json_string_value(json_array_get(a, i));
            if (!(out->event_types[i] = strdup(t ? t : "?"))) rc = evs__err(EVS_ENOMEM, "out of memory");
            else out->n_event_types++;
        }
    }
    if (!rc) rc = dup_opt(json_string_value(json_object_get(f, "stream_type")), &out->stream_type);
    if (!rc) rc = dup_opt(json_string_value(json_object_get(f, "stream_prefix")), &out->stream_prefix);
    if (!rc) rc = dup_opt(json_string_value(json_object_get(f, "tag")), &out->tag);
    const char *corr = json_string_value(json_object_get(f, "correlation_id"));
    if (!rc && corr && evs_uuid_parse(corr, strlen(corr), &out->corr) == EVS_OK) out->has_corr = 1;
    out->next = jget_u64(o, "next");
    out->status = (int)jget_u64(o, "status");
    out->retry_count = jget_u64(o, "retry_count");
    out->processed = jget_u64(o, "processed");
    out->failed = jget_u64(o, "failed");
    out->parked = jget_u64(o, "parked");
    out->max_retries = (uint32_t)jget_u64(o, "max_retries");
    jget_str(o, "last_error", out->last_error, sizeof out->last_error);
    out->last_processed_at = (int64_t)jget_u64(o, "last_processed_at");
    out->created_at = (int64_t)jget_u64(o, "created_at");
    out->partitioning = (int)jget_u64(o, "partitioning");
    out->generation = jget_u64(o, "generation");
    out->build_gen = jget_u64(o, "build_gen");
    out->build_next = jget_u64(o, "build_next");
    out->build_from = jget_u64(o, "build_from");
    if (!rc) rc = dup_opt(json_string_value(json_object_get(o, "lua_source")), &out->lua_source);
    json_t *g = json_object_get(o, "group");
    if (json_is_object(g)) {
        evs__group_settings *gs = &out->group;
        gs->strategy = (int)jget_u64(g, "strategy");
        gs->ack_timeout_ns = (int64_t)jget_u64(g, "ack_timeout_ns");
        gs->max_in_flight = (uint32_t)jget_u64(g, "max_in_flight");
        gs->buffer_size = (uint32_t)jget_u64(g, "buffer_size");
        gs->checkpoint_every = (uint32_t)jget_u64(g, "checkpoint_every");
        gs->checkpoint_ms = (uint32_t)jget_u64(g, "checkpoint_ms");
        gs->retry.backoff = (evs_backoff)jget_u64(g, "backoff");
        gs->retry.max_retries = out->max_retries;
        gs->retry.initial_delay_ns = (int64_t)jget_u64(g, "initial_delay_ns");
        gs->retry.max_delay_ns = (int64_t)jget_u64(g, "max_delay_ns");
        gs->retry.jitter = json_number_value(json_object_get(g, "jitter"));
        gs->on_failure = (int)jget_u64(g, "on_failure");
        gs->per_stream_order = jget_u64(g, "per_stream_order") != 0;
        gs->dlq_max_count = jget_u64(g, "dlq_max_count");
        gs->dlq_max_age_ns = (int64_t)jget_u64(g, "dlq_max_age_ns");
        gs->skipped = jget_u64(g, "skipped");
        gs->timeouts = jget_u64(g, "timeouts");
    }
    json_decref(o);
    if (rc) evs__record_free(out);
    return rc;
}

int evs__record_put(evs_bus *b, evs__kv_txn *txn, const evs__record *r) {
    json_t *o = json_object();
    if (!o) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(o, "kind", json_integer(r->kind));
    json_object_set_new(o, "owner", json_string(r->owner));
    json_object_set_new(o, "stream", json_string(r->stream));
    json_object_set_new(o, "filter", filter_json(r));
    json_object_set_new(o, "next", json_integer((json_int_t)r->next));
    json_object_set_new(o, "status", json_integer(r->status));
    json_object_set_new(o, "retry_count", json_integer((json_int_t)r->retry_count));
    json_object_set_new(o, "processed", json_integer((json_int_t)r->processed));
    json_object_set_new(o, "failed", json_integer((json_int_t)r->failed));
    json_object_set_new(o, "parked", json_integer((json_int_t)r->parked));
    json_object_set_new(o, "max_retries", json_integer(r->max_retries));
    json_object_set_new(o, "last_error", json_string(r->last_error));
    json_object_set_new(o, "last_processed_at", json_integer(r->last_processed_at));
    json_object_set_new(o, "created_at", json_integer(r->created_at));
    if (r->kind == EVS__KIND_PROJ) {
        json_object_set_new(o, "partitioning", json_integer(r->partitioning));
        json_object_set_new(o, "generation", json_integer((json_int_t)r->generation));
        json_object_set_new(o, "build_gen", json_integer((json_int_t)r->build_gen));
        json_object_set_new(o, "build_next", json_integer((json_int_t)r->build_next));
        json_object_set_new(o, "build_from", json_integer((json_int_t)r->build_from));
        if (r->lua_source) json_object_set_new(o, "lua_source", json_string(r->lua_source));
    }
    if (r->kind == EVS__KIND_GROUP) {
        const evs__group_settings *gs = &r->group;
        json_t *g = json_object();
        json_object_set_new(g, "strategy", json_integer(gs->strategy));
        json_object_set_new(g, "ack_timeout_ns", json_integer(gs->ack_timeout_ns));
        json_object_set_new(g, "max_in_flight", json_integer(gs->max_in_flight));
        json_object_set_new(g, "buffer_size", json_integer(gs->buffer_size));
        json_object_set_new(g, "checkpoint_every", json_integer(gs->checkpoint_every));
        json_object_set_new(g, "checkpoint_ms", json_integer(gs->checkpoint_ms));
        json_object_set_new(g, "backoff", json_integer(gs->retry.backoff));
        json_object_set_new(g, "initial_delay_ns", json_integer(gs->retry.initial_delay_ns));
        json_object_set_new(g, "max_delay_ns", json_integer(gs->retry.max_delay_ns));
        json_object_set_new(g, "jitter", json_real(gs->retry.jitter));
        json_object_set_new(g, "on_failure", json_integer(gs->on_failure));
        json_object_set_new(g, "per_stream_order", json_integer(gs->per_stream_order));
        json_object_set_new(g, "dlq_max_count", json_integer((json_int_t)gs->dlq_max_count));
        json_object_set_new(g, "dlq_max_age_ns", json_integer(gs->dlq_max_age_ns));
        json_object_set_new(g, "skipped", json_integer((json_int_t)gs->skipped));
        json_object_set_new(g, "timeouts", json_integer((json_int_t)gs->timeouts));
        json_object_set_new(o, "group", g);
    }
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!txt) return evs__err(EVS_ENOMEM, "consumer \"%s\": cannot encode record", r->name);
    evs__kv_val k = {strlen(r->name), (void *)r->name}, v = {strlen(txt), txt};
    int rc = evs__kv_put(txn, b->consumers, &k, &v, 0);
    free(txt);
    return rc ? evs__bus_kv_err(rc, "write record") : EVS_OK;
}

/* Age of the event at position pos ($all), 0 when it does not exist. */
static int64_t age_of(evs_store *s, uint64_t pos, int64_t now) {
    evs_reader *r = NULL;
    const evs_event *ev;
    int64_t age = 0;
    if (evs_read_all(s, pos, EVS_FORWARD, NULL, 1, &r) == EVS_OK && evs_reader_next(r, &ev) == EVS_OK)
        age = now - ev->recorded_at;
    evs_reader_close(r);
    evs__err_clear();
    return age > 0 ? age : 0;
}

int evs__record_info(evs_bus *b, evs__kv_txn *txn, const evs__record *r, evs_consumer_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", r->name);
    snprintf(out->kind, sizeof out->kind, "%s", evs__kind_name(r->kind));
    snprintf(out->owner, sizeof out->owner, "%s", r->owner);
    snprintf(out->stream, sizeof out->stream, "%s", r->stream);
    json_t *f = filter_json(r);
    char *ft = f ? json_dumps(f, JSON_COMPACT) : NULL;
    snprintf(out->filter_json, sizeof out->filter_json, "%s", ft ? ft : "{}");
    free(ft);
    json_decref(f);
    out->checkpoint = r->next ? r->next - 1 : 0;
    out->status = r->status;
    out->retry_count = r->retry_count;
    out->max_retries = r->max_retries;
    snprintf(out->last_error, sizeof out->last_error, "%s", r->last_error);
    out->last_processed_at = r->last_processed_at;
    out->processed = r->processed;
    out->failed = r->failed;
    out->parked = r->parked;
    /* DLQ depth: count the consumer's keys */
    evs__kv_cursor *cur;
    int rc = evs__kv_cursor_open(txn, b->dlq, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(r->name);
    evs__kv_val k = {nl + 1, (void *)r->name}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, r->name, nl + 1) != 0) break;
        out->dlq_depth++;
    }
    evs__kv_cursor_close(cur);
    if (!r->stream[0]) {
        uint64_t head = evs_head(b->store);
        uint64_t done = r->next ? r->next - 1 : 0;
        out->lag_events = head > done ? head - done : 0;
        if (out->lag_events) out->lag_ms = age_of(b->store, done + 1, evs_now_ns()) / 1000000;
    }
    return EVS_OK;
}

int evs_consumer_get(evs_bus *b, const char *name, evs_consumer_info *out) {
    int rc, found;
    evs__kv_txn *txn;
    evs__record r;
    if (!b || !out || (rc = evs__bus_check_name(name))) return b && out ? rc : evs__err(EVS_EINVAL, "consumer_get: NULL argument");
    /* an open group's record lags behind its state: read the state */
    if ((rc = evs__bus_live_info(b, name, out, &found)) || found) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    if (!(rc = evs__record_get(b, txn, name, &r))) {
        rc = evs__record_info(b, txn, &r, out);
        evs__record_free(&r);
    }
    evs__kv_abort(txn);
    return rc;
}

int evs_consumer_list(evs_bus *b, const char *after, evs_consumer_info *out, size_t max, size_t *count) {
    int rc;
    evs__kv_txn *txn;
    evs__kv_cursor *cur = NULL;
    if (!b || (!out && max) || !count) return evs__err(EVS_EINVAL, "consumer_list: NULL argument");
    *count = 0;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    if ((rc = evs__kv_cursor_open(txn, b->consumers, &cur))) {
        rc = evs__bus_kv_err(rc, "cursor");
        goto out;
    }
    evs__kv_val k, v;
    if (after && *after) {
        k.size = strlen(after);
        k.data = (void *)after;
        rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE);
        if (rc == 0 && k.size == strlen(after) && memcmp(k.data, after, k.size) == 0)
            rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT);
    } else {
        rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_FIRST);
    }
    for (; rc == 0 && *count < max; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        char name[EVS_BUS_MAX_NAME + 1];
        if (k.size > EVS_BUS_MAX_NAME) continue;
        memcpy(name, k.data, k.size);
        name[k.size] = 0;
        evs__record r;
        int rc2 = evs__record_get(b, txn, name, &r);
        if (rc2) {
            rc = rc2;
            goto out;
        }
        int found = 0;
        rc2 = evs__bus_live_info(b, name, &out[*count], &found);
        if (!found) rc2 = evs__record_info(b, txn, &r, &out[*count]);
        evs__record_free(&r);
        if (rc2) {
            rc = rc2;
            goto out;
        }
        (*count)++;
    }
    rc = rc == EVS__KV_NOTFOUND || rc == 0 ? EVS_OK : evs__bus_kv_err(rc, "list");
out:
    if (cur) evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    return rc;
}

int evs__bus_delete_prefix(evs__kv_txn *txn, int dbi, const char *name, uint64_t *removed) {
    evs__kv_cursor *cur;
    int rc = evs__kv_cursor_open(txn, dbi, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(name);
    for (;;) {
        evs__kv_val k = {nl + 1, (void *)name}, v;
        if ((rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE))) break;
        if (k.size < nl + 1 || memcmp(k.data, name, nl + 1) != 0) break;
        if ((rc = evs__kv_cursor_del(cur))) break;
        if (removed) (*removed)++;
    }
    evs__kv_cursor_close(cur);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "delete");
}

int evs__pstate_delete_gen(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t gen) {
    uint8_t kb[EVS_BUS_MAX_NAME + 9];
    size_t nl = strlen(name);
    memcpy(kb, name, nl);
    kb[nl] = 0;
    evs__put64be(kb + nl + 1, gen);
    evs__kv_cursor *cur;
    int rc = evs__kv_cursor_open(txn, b->pstate, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    for (;;) {
        evs__kv_val k = {nl + 9, kb}, v;
        if ((rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE))) break;
        if (k.size < nl + 9 || memcmp(k.data, kb, nl + 9) != 0) break;
        if ((rc = evs__kv_cursor_del(cur))) break;
    }
    evs__kv_cursor_close(cur);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "delete state");
}

/*
 * A projection in the middle of a rebuild, moved to `from` while it is not
 * open: the rebuild starts over from there, its state rows and its DLQ so
 * far dropped, so that its state holds each event from `from` on once and
 * the swap replaces the live DLQ entries from `from` on (proj.c's rebuild).
 */
static int restart_build(evs_bus *b, evs__kv_txn *txn, evs__record *r, uint64_t from) {
    char build[EVS__DLQ_OWNER_MAX + 1];
    evs__dlq_build_owner(r->name, build);
    int rc = evs__pstate_delete_gen(b, txn, r->name, r->build_gen);
    if (!rc) rc = evs__dlq_clear_txn(b, txn, build);
    if (!rc) r->build_from = r->next = from;
    return rc;
}

int evs_consumer_delete(evs_bus *b, const char *name) {
    int rc;
    evs__kv_txn *txn;
    if (!b) return evs__err(EVS_EINVAL, "consumer_delete: bus is NULL");
    if ((rc = evs__bus_check_name(name))) return rc;
    if (evs__bus_is_open(b, name)) return evs__err(EVS_ELOCKED, "consumer \"%s\" is open", name);
    if ((rc = evs__bus_begin_closed(b, name, &txn))) return rc;
    evs__kv_val k = {strlen(name), (void *)name};
    rc = evs__kv_del(txn, b->consumers, &k);
    if (rc == EVS__KV_NOTFOUND) rc = evs__err(EVS_ENOTFOUND, "consumer \"%s\" not found", name);
    else if (rc) rc = evs__bus_kv_err(rc, "delete record");
    if (!rc) rc = evs__bus_delete_prefix(txn, b->dlq, name, NULL);
    if (!rc) rc = evs__bus_delete_prefix(txn, b->dlq_streams, name, NULL);
    if (!rc) rc = evs__bus_delete_prefix(txn, b->pstate, name, NULL);
    if (!rc) {
        char build[EVS__DLQ_OWNER_MAX + 1];
        evs__dlq_build_owner(name, build);
        rc = evs__dlq_clear_txn(b, txn, build);
    }
    if (rc) {
        evs__kv_abort(txn);
        return rc;
    }
    if ((rc = evs__kv_commit(txn))) return evs__bus_kv_err(rc, "commit");
    atomic_fetch_add(&b->dlq_gen, 1);
    return EVS_OK;
}

/* Modify a record that is not open: status (which >= 0) or next (pos). */
static int modify_closed(evs_bus *b, const char *name, int status, int set_pos, uint64_t pos) {
    int rc;
    evs__kv_txn *txn;
    evs__record r;
    uint64_t next = 0;
    if (!b) return evs__err(EVS_EINVAL, "NULL bus");
    if ((rc = evs__bus_check_name(name))) return rc;
    if (set_pos) {
        /* before the open check: a caller that closes the consumer to move it
           learns first that the position is refused, and closes nothing.  Only
           the record's stream is needed (it never changes while open), so the
           record itself, not evs_consumer_get's view (DLQ walk, lag) */
        if ((rc = evs__record_read(b, name, &r))) return rc;
        rc = evs__bus_start_next(b->store, r.stream, pos, &next);
        evs__record_free(&r);
        if (rc) return rc;
    }
    if (evs__bus_is_open(b, name)) return evs__err(EVS_ELOCKED, "consumer \"%s\" is open", name);
    if ((rc = evs__bus_begin_closed(b, name, &txn))) return rc;
    if ((rc = evs__record_get(b, txn, name, &r))) {
        evs__kv_abort(txn);
        return rc;
    }
    if (status >= 0) {
        r.status = status;
        if (status == EVS_CONSUMER_ACTIVE) r.last_error[0] = 0;
    }
    int restarted = 0;
    if (set_pos) {
        if (r.kind == EVS__KIND_PROJ && r.build_gen) rc = restart_build(b, txn, &r, next), restarted = 1;
        else r.next = next;
    }
    if (!rc) rc = evs__record_put(b, txn, &r);
    evs__record_free(&r);
    if (rc) {
        evs__kv_abort(txn);
        return rc;
    }
    if ((rc = evs__kv_commit(txn))) return evs__bus_kv_err(rc, "commit");
    if (restarted) atomic_fetch_add(&b->dlq_gen, 1);
    return EVS_OK;
}

int evs_consumer_set_status(evs_bus *b, const char *name, int status) {
    if (status < EVS_CONSUMER_ACTIVE || status > EVS_CONSUMER_ERROR) return evs__err(EVS_EINVAL, "bad status %d", status);
    return modify_closed(b, name, status, 0, 0);
}

int evs_consumer_set_position(evs_bus *b, const char *name, uint64_t next_position) {
    return modify_closed(b, name, -1, 1, next_position);
}

/* -------------------------------------------------------------------- DLQ */

static void dlq_key(uint8_t *buf, const char *name, size_t nl, uint64_t pos) {
    memcpy(buf, name, nl);
    buf[nl] = 0;
    evs__put64be(buf + nl + 1, pos);
}

static int dlq_decode(evs__kv_val *v, uint64_t pos, evs_dlq_entry *out) {
    json_error_t je;
    json_t *o = json_loadb(v->data, v->size, 0, &je);
    if (!o) return evs__err(EVS_ECORRUPT, "DLQ entry at %llu is not JSON", (unsigned long long)pos);
    memset(out, 0, sizeof *out);
    out->position = pos;
    out->stream_position = jget_u64(o, "stream_position");
    jget_str(o, "stream", out->stream, sizeof out->stream);
    jget_str(o, "event_type", out->event_type, sizeof out->event_type);
    jget_str(o, "last_error", out->last_error, sizeof out->last_error);
    out->attempts = (uint32_t)jget_u64(o, "attempts");
    out->first_failure_at = (int64_t)jget_u64(o, "first_failure_at");
    out->last_failure_at = (int64_t)jget_u64(o, "last_failure_at");
    out->blocked_by = jget_u64(o, "blocked_by");
    json_decref(o);
    return EVS_OK;
}

static int stream_key(uint8_t *buf, size_t cap, const char *name, const char *stream, size_t slen) {
    size_t nl = strlen(name);
    if (nl + 1 + slen > cap) return -1;
    memcpy(buf, name, nl);
    buf[nl] = 0;
    memcpy(buf + nl + 1, stream, slen);
    return (int)(nl + 1 + slen);
}

/* The first DLQ entry of name for stream after position `after` (*out 0 when none).  A scan: deletes only. */
static int next_of_stream(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, uint64_t after,
                          uint64_t *out) {
    evs__kv_cursor *cur;
    *out = 0;
    int rc = evs__kv_cursor_open(txn, b->dlq, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(name);
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, name, nl, after + 1);
    evs__kv_val k = {nl + 9, kb}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, name, nl + 1) != 0) break;
        uint64_t p = evs__get64be((uint8_t *)k.data + nl + 1);
        evs_dlq_entry e;
        if ((rc = dlq_decode(&v, p, &e))) break;
        if (strcmp(e.stream, stream) == 0) {
            *out = p;
            break;
        }
    }
    evs__kv_cursor_close(cur);
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
    else if (rc > 0) rc = evs__bus_kv_err(rc, "scan DLQ");
    return rc;
}

static int stream_count_add(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, int delta, uint64_t pos) {
    uint8_t kb[EVS__DLQ_OWNER_MAX + 1 + EVS_MAX_STREAM_NAME];
    int kl = stream_key(kb, sizeof kb, name, stream, strlen(stream));
    if (kl < 0) return evs__err(EVS_EINVAL, "stream name too long");
    evs__kv_val k = {(size_t)kl, kb}, v;
    uint64_t count = 0, first = pos;
    int rc = evs__kv_get(txn, b->dlq_streams, &k, &v);
    if (rc == 0 && v.size == 16) {
        count = evs__get64be(v.data);
        first = evs__get64be((uint8_t *)v.data + 8);
    } else if (rc && rc != EVS__KV_NOTFOUND) {
        return evs__bus_kv_err(rc, "read stream count");
    }
    if (delta > 0) {
        count++;
        if (count == 1 || pos < first) first = pos;
    } else if (count > 0) {
        count--;
        /* the first one left: the stream's next entry becomes its first (per-stream
           order compares positions with it, so a stale lower bound would not do) */
        if (count > 0 && pos == first && (rc = next_of_stream(b, txn, name, stream, pos, &first))) return rc;
    }
    if (count == 0) {
        rc = evs__kv_del(txn, b->dlq_streams, &k);
        return rc && rc != EVS__KV_NOTFOUND ? evs__bus_kv_err(rc, "delete stream count") : EVS_OK;
    }
    uint8_t vb[16];
    evs__put64be(vb, count);
    evs__put64be(vb + 8, first);
    evs__kv_val nv = {16, vb};
    rc = evs__kv_put(txn, b->dlq_streams, &k, &nv, 0);
    return rc ? evs__bus_kv_err(rc, "write stream count") : EVS_OK;
}

int evs__dlq_put(evs_bus *b, evs__kv_txn *txn, const char *name, const evs_dlq_entry *e, int is_new) {
    json_t *o = json_object();
    if (!o) return evs__err(EVS_ENOMEM, "out of memory");
    json_object_set_new(o, "stream", json_string(e->stream));
    json_object_set_new(o, "stream_position", json_integer((json_int_t)e->stream_position));
    json_object_set_new(o, "event_type", json_string(e->event_type));
    json_object_set_new(o, "last_error", json_string(e->last_error));
    json_object_set_new(o, "attempts", json_integer(e->attempts));
    json_object_set_new(o, "first_failure_at", json_integer(e->first_failure_at));
    json_object_set_new(o, "last_failure_at", json_integer(e->last_failure_at));
    json_object_set_new(o, "blocked_by", json_integer((json_int_t)e->blocked_by));
    char *txt = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!txt) return evs__err(EVS_ENOMEM, "cannot encode DLQ entry");
    size_t nl = strlen(name);
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, name, nl, e->position);
    evs__kv_val k = {nl + 9, kb}, v = {strlen(txt), txt};
    int rc = is_new ? EVS__KV_NOOVERWRITE : 0;
    rc = evs__kv_put(txn, b->dlq, &k, &v, (unsigned)rc);
    free(txt);
    if (rc == EVS__KV_KEYEXIST) {
        /* already parked (a replay after a crash): overwrite, keep counts */
        return evs__dlq_put(b, txn, name, e, 0);
    }
    if (rc) return evs__bus_kv_err(rc, "write DLQ entry");
    if (is_new) return stream_count_add(b, txn, name, e->stream, +1, e->position);
    return EVS_OK;
}

int evs__dlq_get_txn(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t pos, evs_dlq_entry *out) {
    size_t nl = strlen(name);
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, name, nl, pos);
    evs__kv_val k = {nl + 9, kb}, v;
    int rc = evs__kv_get(txn, b->dlq, &k, &v);
    if (rc == EVS__KV_NOTFOUND)
        return evs__err(EVS_ENOTFOUND, "consumer \"%s\": position %llu is not in the DLQ", name, (unsigned long long)pos);
    if (rc) return evs__bus_kv_err(rc, "read DLQ entry");
    return dlq_decode(&v, pos, out);
}

int evs__dlq_del(evs_bus *b, evs__kv_txn *txn, const char *name, uint64_t pos) {
    evs_dlq_entry e;
    int rc = evs__dlq_get_txn(b, txn, name, pos, &e);
    if (rc) return rc;
    size_t nl = strlen(name);
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, name, nl, pos);
    evs__kv_val k = {nl + 9, kb};
    if ((rc = evs__kv_del(txn, b->dlq, &k))) return evs__bus_kv_err(rc, "delete DLQ entry");
    return stream_count_add(b, txn, name, e.stream, -1, pos);
}

int evs__dlq_stream_first(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, size_t slen,
                          uint64_t *first) {
    uint8_t kb[EVS__DLQ_OWNER_MAX + 1 + EVS_MAX_STREAM_NAME];
    *first = 0;
    int kl = stream_key(kb, sizeof kb, name, stream, slen);
    if (kl < 0) return EVS_OK;
    evs__kv_val k = {(size_t)kl, kb}, v;
    int rc = evs__kv_get(txn, b->dlq_streams, &k, &v);
    if (rc == EVS__KV_NOTFOUND) return EVS_OK;
    if (rc) return evs__bus_kv_err(rc, "read stream count");
    if (v.size == 16) *first = evs__get64be((uint8_t *)v.data + 8);
    return EVS_OK;
}

int evs__dlq_earlier_of_stream(evs_bus *b, evs__kv_txn *txn, const char *name, const char *stream, uint64_t pos,
                               uint64_t *earlier) {
    evs__kv_cursor *cur;
    *earlier = 0;
    int rc = evs__kv_cursor_open(txn, b->dlq, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(name);
    evs__kv_val k = {nl + 1, (void *)name}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, name, nl + 1) != 0) break;
        uint64_t p = evs__get64be((uint8_t *)k.data + nl + 1);
        if (p >= pos) break;
        evs_dlq_entry e;
        if ((rc = dlq_decode(&v, p, &e))) {
            evs__kv_cursor_close(cur);
            return rc;
        }
        if (strcmp(e.stream, stream) == 0) {
            *earlier = p;
            break;
        }
    }
    evs__kv_cursor_close(cur);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "scan DLQ");
}

int evs_dlq_list(evs_bus *b, const char *consumer, uint64_t after, evs_dlq_entry *out, size_t max, size_t *count) {
    int rc;
    evs__kv_txn *txn;
    evs__kv_cursor *cur = NULL;
    if (!b || !count || (!out && max)) return evs__err(EVS_EINVAL, "dlq_list: NULL argument");
    *count = 0;
    if ((rc = evs__bus_check_name(consumer))) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    if ((rc = evs__kv_cursor_open(txn, b->dlq, &cur))) {
        rc = evs__bus_kv_err(rc, "cursor");
        goto out;
    }
    size_t nl = strlen(consumer);
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, consumer, nl, after == UINT64_MAX ? after : after + 1);
    evs__kv_val k = {nl + 9, kb}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0 && *count < max;
         rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, consumer, nl + 1) != 0) break;
        uint64_t p = evs__get64be((uint8_t *)k.data + nl + 1);
        if ((rc = dlq_decode(&v, p, &out[*count]))) goto out;
        (*count)++;
    }
    rc = rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : evs__bus_kv_err(rc, "list DLQ");
out:
    if (cur) evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    return rc;
}

int evs_dlq_get(evs_bus *b, const char *consumer, uint64_t position, evs_dlq_entry *out) {
    int rc;
    evs__kv_txn *txn;
    if (!b || !out) return evs__err(EVS_EINVAL, "dlq_get: NULL argument");
    if ((rc = evs__bus_check_name(consumer))) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    rc = evs__dlq_get_txn(b, txn, consumer, position, out);
    evs__kv_abort(txn);
    return rc;
}

int evs_dlq_depth(evs_bus *b, const char *consumer, uint64_t *depth) {
    int rc;
    evs__kv_txn *txn;
    if (!b || !depth) return evs__err(EVS_EINVAL, "dlq_depth: NULL argument");
    if ((rc = evs__bus_check_name(consumer))) return rc;
    *depth = 0;
    if ((rc = evs__kv_begin(b->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__bus_kv_err(rc, "begin");
    evs__kv_cursor *cur;
    if ((rc = evs__kv_cursor_open(txn, b->dlq, &cur))) {
        evs__kv_abort(txn);
        return evs__bus_kv_err(rc, "cursor");
    }
    size_t nl = strlen(consumer);
    evs__kv_val k = {nl + 1, (void *)consumer}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, consumer, nl + 1) != 0) break;
        (*depth)++;
    }
    evs__kv_cursor_close(cur);
    evs__kv_abort(txn);
    return EVS_OK;
}

/* Run fn in a write transaction and bump the DLQ generation on success. */
static int dlq_write(evs_bus *b, const char *consumer, int (*fn)(evs_bus *, evs__kv_txn *, const char *, void *),
                     void *arg) {
    int rc;
    evs__kv_txn *txn;
    if (!b) return evs__err(EVS_EINVAL, "NULL bus");
    if ((rc = evs__bus_check_name(consumer))) return rc;
    if ((rc = evs__kv_begin(b->kv, NULL, 0, &txn))) return evs__bus_kv_err(rc, "begin");
    if ((rc = fn(b, txn, consumer, arg))) {
        evs__kv_abort(txn);
        return rc;
    }
    if ((rc = evs__kv_commit(txn))) return evs__bus_kv_err(rc, "commit");
    atomic_fetch_add(&b->dlq_gen, 1);
    return EVS_OK;
}

static int discard_fn(evs_bus *b, evs__kv_txn *txn, const char *c, void *arg) {
    return evs__dlq_del(b, txn, c, *(uint64_t *)arg);
}

int evs_dlq_discard(evs_bus *b, const char *consumer, uint64_t position) {
    return dlq_write(b, consumer, discard_fn, &position);
}

void evs__dlq_build_owner(const char *name, char out[EVS__DLQ_OWNER_MAX + 1]) {
    out[0] = 0x1f;
    snprintf(out + 1, EVS__DLQ_OWNER_MAX, "%s", name);
}

int evs__dlq_clear_txn(evs_bus *b, evs__kv_txn *txn, const char *owner) {
    int rc = evs__bus_delete_prefix(txn, b->dlq, owner, NULL);
    if (!rc) rc = evs__bus_delete_prefix(txn, b->dlq_streams, owner, NULL);
    return rc;
}

/* Positions (and, with ents, entries) of owner's DLQ at or after from. */
static int dlq_collect(evs_bus *b, evs__kv_txn *txn, const char *owner, uint64_t from, uint64_t **pos,
                       evs_dlq_entry **ents, size_t *n) {
    evs__kv_cursor *cur;
    size_t cap = 0, nl = strlen(owner);
    *pos = NULL;
    if (ents) *ents = NULL;
    *n = 0;
    int rc = evs__kv_cursor_open(txn, b->dlq, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    uint8_t kb[EVS__DLQ_OWNER_MAX + 9];
    dlq_key(kb, owner, nl, from);
    evs__kv_val k = {nl + 9, kb}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, owner, nl + 1) != 0) break;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *np = realloc(*pos, cap * sizeof *np);
            if (np) *pos = np;
            evs_dlq_entry *ne = np && ents ? realloc(*ents, cap * sizeof *ne) : NULL;
            if (ne) *ents = ne;
            if (!np || (ents && !ne)) {
                rc = evs__err(EVS_ENOMEM, "out of memory");
                break;
            }
        }
        uint64_t p = evs__get64be((uint8_t *)k.data + nl + 1);
        if (ents && (rc = dlq_decode(&v, p, &(*ents)[*n]))) break;
        (*pos)[(*n)++] = p;
    }
    evs__kv_cursor_close(cur);
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
    else if (rc > 0) rc = evs__bus_kv_err(rc, "scan DLQ");
    return rc;
}

int evs__dlq_adopt_txn(evs_bus *b, evs__kv_txn *txn, const char *name, const char *build, uint64_t from) {
    uint64_t *pos = NULL, *bpos = NULL;
    evs_dlq_entry *ents = NULL;
    size_t n = 0, bn = 0;
    int rc = dlq_collect(b, txn, name, from, &pos, NULL, &n);
    for (size_t i = 0; i < n && !rc; i++) rc = evs__dlq_del(b, txn, name, pos[i]);
    if (!rc) rc = dlq_collect(b, txn, build, 0, &bpos, &ents, &bn);
    for (size_t i = 0; i < bn && !rc; i++) rc = evs__dlq_put(b, txn, name, &ents[i], 1);
    if (!rc) rc = evs__dlq_clear_txn(b, txn, build);
    free(pos);
    free(bpos);
    free(ents);
    return rc;
}

static int purge_fn(evs_bus *b, evs__kv_txn *txn, const char *c, void *arg) {
    int rc = evs__bus_delete_prefix(txn, b->dlq, c, (uint64_t *)arg);
    if (!rc) rc = evs__bus_delete_prefix(txn, b->dlq_streams, c, NULL);
    return rc;
}

int evs_dlq_purge(evs_bus *b, const char *consumer, uint64_t *removed) {
    uint64_t n = 0;
    int rc = dlq_write(b, consumer, purge_fn, &n);
    if (removed) *removed = rc ? 0 : n;
    return rc;
}

int evs__dlq_prune_txn(evs_bus *b, evs__kv_txn *txn, const char *name, int64_t max_age_ns, uint64_t max_count,
                       int64_t now, uint64_t *removed) {
    evs__kv_cursor *cur;
    int rc = evs__kv_cursor_open(txn, b->dlq, &cur);
    if (rc) return evs__bus_kv_err(rc, "cursor");
    size_t nl = strlen(name);
    /* pass 1: count and collect old ones */
    uint64_t total = 0, n_old = 0, cap = 0;
    uint64_t *old = NULL;
    evs__kv_val k = {nl + 1, (void *)name}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != nl + 9 || memcmp(k.data, name, nl + 1) != 0) break;
        uint64_t p = evs__get64be((uint8_t *)k.data + nl + 1);
        evs_dlq_entry e;
        if ((rc = dlq_decode(&v, p, &e))) break;
        total++;
        int drop = max_age_ns > 0 && e.last_failure_at < now - max_age_ns;
        if (drop) {
            if (n_old == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *no = realloc(old, cap * sizeof *no);
                if (!no) {
                    rc = evs__err(EVS_ENOMEM, "out of memory");
                    break;
                }
                old = no;
            }
            old[n_old++] = p;
        }
    }
    evs__kv_cursor_close(cur);
    if (rc && rc != EVS__KV_NOTFOUND) {
        free(old);
        return rc < 0 ? rc : evs__bus_kv_err(rc, "scan DLQ");
    }
    rc = EVS_OK;
    uint64_t gone = 0;
    for (uint64_t i = 0; i < n_old && !rc; i++, gone++) rc = evs__dlq_del(b, txn, name, old[i]);
    free(old);
    /* count limit: drop the oldest (lowest positions) beyond max_count */
    while (!rc && max_count && total - gone > max_count) {
        if ((rc = evs__kv_cursor_open(txn, b->dlq, &cur))) return evs__bus_kv_err(rc, "cursor");
        evs__kv_val k2 = {nl + 1, (void *)name}, v2;
        rc = evs__kv_cursor_get(cur, &k2, &v2, EVS__KV_SET_RANGE);
        uint64_t p = 0;
        if (rc == 0 && k2.size == nl + 9 && memcmp(k2.data, name, nl + 1) == 0)
            p = evs__get64be((uint8_t *)k2.data + nl + 1);
        evs__kv_cursor_close(cur);
        if (!p) break;
        rc = evs__dlq_del(b, txn, name, p);
        gone++;
    }
    if (removed) *removed = gone;
    return rc;
}

typedef struct prune_args {
    int64_t age;
    uint64_t count;
    int64_t now;
    uint64_t removed;
} prune_args;

static int prune_fn(evs_bus *b, evs__kv_txn *txn, const char *c, void *arg) {
    prune_args *a = arg;
    return evs__dlq_prune_txn(b, txn, c, a->age, a->count, a->now, &a->removed);
}

int evs_dlq_prune(evs_bus *b, const char *consumer, int64_t max_age_ns, uint64_t max_count, int64_t now,
                  uint64_t *removed) {
    prune_args a = {max_age_ns, max_count, now, 0};
    int rc = dlq_write(b, consumer, prune_fn, &a);
    if (removed) *removed = rc ? 0 : a.removed;
    return rc;
}
