/*
 * aggregate.c — loading aggregates and keeping their snapshots.
 *
 * Load = the newest usable snapshot + the events after it.  "Usable" means
 * its schema version and evolve-code hash equal the registered type's; any
 * other snapshot is skipped (counted in snapshots_ignored), never decoded.
 * The first event read after a snapshot is the one AT its version, whose
 * global position must equal the snapshot's: a snapshot that does not
 * describe this log is refused, and the aggregate is folded from events.
 *
 * Snapshot rows (table "snapshots" of the app's kv: DIR/app/, or evs_bus_kv
 * on PostgreSQL, where every server on the database reads what any of them
 * wrote), key stream 0x00 be64(version), value:
 *
 *   offset size
 *        0    4  format (1)
 *        4    4  schema version of the state
 *        8   16  BLAKE2b-128 of the evolve code
 *       24    8  aggregate (stream) version
 *       32    8  global position of the event at that version
 *       40    8  created at, ns since the epoch
 *       48    -  the state, JSON text
 *
 * A put keeps the newest snapshot_keep rows of the stream and deletes the
 * rest in the same transaction.  Every read of a stream's rows is one walk
 * forward over its key prefix, bounded (kv.h's cursor bound) so that on
 * PostgreSQL it fetches that stream's rows and no other's.
 *
 * Background snapshots.  A command that moved an aggregate snapshot_every
 * events past its last snapshot hands its loaded state (pre-append) to the
 * snapshot thread and returns; the thread folds the events the command
 * appended (and any later ones) onto it, encodes and stores it.  The queue
 * is bounded and holds one job per stream; when it is full the state is
 * dropped (counted) and a later command asks again.  The same thread prunes
 * expired command results once a minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app_internal.h"

#define SNAP_FORMAT 1u
#define SNAP_HEADER 48u
#define SNAP_QUEUE_MAX 256u
#define PRUNE_EVERY_NS (60ll * 1000000000ll)

static size_t snap_key(uint8_t *buf, const char *stream, size_t sl, uint64_t version) {
    memcpy(buf, stream, sl);
    buf[sl] = 0;
    evs__put64be(buf + sl + 1, version);
    return sl + 9;
}

static int usable(const evs__agg *g, const uint8_t *v, size_t n) {
    return n >= SNAP_HEADER && evs__get32(v) == SNAP_FORMAT && evs__get32(v + 4) == g->schema &&
           memcmp(v + 8, g->code_hash, EVS__HASH_BYTES) == 0;
}

/* One snapshot row of a stream: its version (from the key) and its value (a view into the transaction). */
typedef struct snap_row {
    uint64_t version;
    const uint8_t *v;
    size_t n;
} snap_row;

/*
 * The rows of stream with version < below, oldest first (one bounded walk
 * of the stream's key prefix).  The views stay valid until the transaction
 * ends or, on LMDB, writes.  Ownership: *rows is the caller's (free).
 */
static int snap_rows(evs__kv_txn *txn, const char *stream, size_t sl, uint64_t below, snap_row **rows, size_t *n) {
    uint8_t kb[EVS_MAX_STREAM_NAME + 9], eb[EVS_MAX_STREAM_NAME + 9];
    evs__kv_cursor *cur = NULL;
    snap_row *r = NULL;
    size_t cap = 0;
    *rows = NULL;
    *n = 0;
    evs__kv_val end = {snap_key(eb, stream, sl, below), eb};
    int rc = evs__kv_cursor_open(txn, EVS__AK_SNAPSHOTS, &cur);
    if (!rc) rc = evs__kv_cursor_bound(cur, &end);
    if (rc) goto out;
    evs__kv_val k = {snap_key(kb, stream, sl, 0), kb}, v;
    for (rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(cur, &k, &v, EVS__KV_NEXT)) {
        if (k.size != sl + 9 || memcmp(k.data, stream, sl + 1) != 0) continue; /* (the bound ends the prefix) */
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            snap_row *nr = realloc(r, nc * sizeof *nr);
            if (!nr) {
                rc = evs__err(EVS_ENOMEM, "out of memory");
                goto out;
            }
            r = nr;
            cap = nc;
        }
        r[*n].version = evs__get64be((const uint8_t *)k.data + sl + 1);
        r[*n].v = v.data;
        r[(*n)++].n = v.size;
    }
    if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
out:
    evs__kv_cursor_close(cur);
    if (rc) {
        free(r);
        *n = 0;
        return evs__app_kv_err(rc, "read snapshots");
    }
    *rows = r;
    return EVS_OK;
}

/*
 * The stream's snapshots from the newest (with upto, the newest at or
 * before that version): 1 with *l filled from the first usable one, 0 when
 * none, < 0 on error.
 */
static int find_snapshot(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l, char *err, size_t cap) {
    evs__kv_txn *txn;
    snap_row *rows = NULL;
    size_t n = 0;
    int rc = evs__kv_begin(a->kv, NULL, EVS__KV_RDONLY, &txn), found = 0;
    if (rc) return evs__app_kv_err(rc, "begin");
    if ((rc = snap_rows(txn, stream, strlen(stream), l->upto ? l->upto + 1 : UINT64_MAX, &rows, &n))) goto out;
    for (size_t i = n; i-- > 0;) {
        if (!usable(g, rows[i].v, rows[i].n)) {
            l->snapshots_ignored++;
            continue;
        }
        const uint8_t *p = rows[i].v;
        void *st = NULL;
        if (g->def.decode(g->def.ctx, (const char *)p + SNAP_HEADER, rows[i].n - SNAP_HEADER, &st, err, cap)) {
            /* a row we wrote ourselves that no longer decodes: skip it, fold from events */
            l->snapshots_ignored++;
            continue;
        }
        l->state = st;
        l->version = l->snapshot_version = evs__get64(p + 24);
        l->gpos = evs__get64(p + 32);
        found = 1;
        break;
    }
    rc = found;
out:
    free(rows);
    evs__kv_abort(txn);
    return rc;
}

int evs__agg_catch_up(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l, char *err, size_t cap) {
    evs_reader *r;
    const evs_event *ev;
    int rc = evs_read_stream(a->store, stream, l->version ? l->version : 1, EVS_FORWARD, 0, &r);
    if (rc == EVS_ENOTFOUND) {
        if (l->version == 0) return EVS_OK;
        return evs__err(EVS_ECORRUPT, "snapshot of %s at version %llu, but the stream has no events", stream,
                        (unsigned long long)l->version);
    }
    if (rc) return rc;
    int first = l->version != 0;
    while ((rc = evs_reader_next(r, &ev)) == EVS_OK) {
        if (l->upto && ev->stream_position > l->upto) break; /* an as-of load stops at its version (rc EVS_OK) */
        if (first) {
            first = 0;
            if (ev->stream_position != l->version || ev->global_position != l->gpos) {
                rc = evs__err(EVS_ECORRUPT, "snapshot of %s at version %llu names global position %llu, the log has %llu",
                              stream, (unsigned long long)l->version, (unsigned long long)l->gpos,
                              (unsigned long long)ev->global_position);
                break;
            }
            continue;
        }
        evs_event seen = *ev;
        void *owned = NULL;
        if (a->cfg.map.fn && a->cfg.map.fn(a->cfg.map.ctx, ev, &seen, &owned, err, cap)) {
            free(owned);
            rc = evs__err(EVS_EINVAL, "%s: event at version %llu (%.*s) cannot be read: %s", stream,
                          (unsigned long long)ev->stream_position, (int)ev->event_type_len, ev->event_type, err);
            break;
        }
        int erc = g->def.evolve(g->def.ctx, l->state, &seen, err, cap);
        free(owned);
        if (erc) {
            rc = evs__err(EVS_EINVAL, "%s: evolve failed at version %llu (%.*s): %s", stream,
                          (unsigned long long)ev->stream_position, (int)ev->event_type_len, ev->event_type, err);
            break;
        }
        l->version = ev->stream_position;
        l->gpos = ev->global_position;
        l->events_applied++;
    }
    evs_reader_close(r);
    if (rc == EVS_DONE && first)
        return evs__err(EVS_ECORRUPT, "snapshot of %s at version %llu is past the stream's end", stream,
                        (unsigned long long)l->version);
    return rc == EVS_DONE ? EVS_OK : rc;
}

static int fresh(evs__agg *g, evs__loaded *l, char *err, size_t cap) {
    void *st = NULL;
    if (g->def.init(g->def.ctx, &st, err, cap)) return evs__err(EVS_EINVAL, "%s: init failed: %s", g->name, err);
    l->state = st;
    l->version = l->gpos = l->snapshot_version = 0;
    return EVS_OK;
}

int evs__agg_load(evs_app *a, evs__agg *g, const char *stream, unsigned flags, evs__loaded *out, char *err,
                  size_t cap) {
    return evs__agg_load_upto(a, g, stream, flags, 0, out, err, cap);
}

int evs__agg_load_upto(evs_app *a, evs__agg *g, const char *stream, unsigned flags, uint64_t upto,
                       evs__loaded *out, char *err, size_t cap) {
    int rc, have = 0;
    memset(out, 0, sizeof *out);
    out->upto = upto;
    err[0] = 0;
    /* (Lua types are never cached, state_cache.c: neither a hit nor a miss) */
    if ((flags & EVS__LOAD_CACHED) && !upto && !(flags & (EVS_LOAD_NO_SNAPSHOT | EVS__LOAD_INITIAL)) && a->scache &&
        !g->lua) {
        if (evs__scache_take(a->scache, g, stream, out)) {
            rc = evs__agg_catch_up(a, g, stream, out, err, cap);
            if (rc == EVS_OK) {
                atomic_fetch_add(&a->st_sc_hit, 1);
                return EVS_OK;
            }
            /* the log moved under the state (a deleted stream) or evolve failed: fold as without a cache */
            g->def.free_state(g->def.ctx, out->state);
            memset(out, 0, sizeof *out);
            err[0] = 0;
        }
        atomic_fetch_add(&a->st_sc_miss, 1);
    }
    if (!(flags & EVS_LOAD_NO_SNAPSHOT) && g->def.decode) {
        int64_t t0 = evs__mono_ns();
        if ((have = find_snapshot(a, g, stream, out, err, cap)) < 0) return have;
        uint64_t dt = (uint64_t)(evs__mono_ns() - t0);
        if (have) {
            atomic_fetch_add(&a->st_snap_loads, 1);
            atomic_fetch_add(&a->st_snap_load_ns, dt);
            evs__app_note_max(&a->st_snap_load_max, dt);
        }
        if (out->snapshots_ignored) atomic_fetch_add(&a->st_snap_ignored, out->snapshots_ignored);
    }
    if (!have && (rc = fresh(g, out, err, cap))) return rc;
    if (flags & EVS__LOAD_INITIAL) return EVS_OK;
    rc = evs__agg_catch_up(a, g, stream, out, err, cap);
    if (rc == EVS_ECORRUPT && have) {
        /* the snapshot does not describe this log: never apply it, fold everything */
        g->def.free_state(g->def.ctx, out->state);
        uint64_t ignored = out->snapshots_ignored + 1;
        atomic_fetch_add(&a->st_snap_ignored, 1);
        if ((rc = fresh(g, out, err, cap))) return rc;
        out->snapshots_ignored = ignored;
        rc = evs__agg_catch_up(a, g, stream, out, err, cap);
    }
    if (rc) {
        g->def.free_state(g->def.ctx, out->state);
        out->state = NULL;
    }
    return rc;
}

void evs__agg_release(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l) {
    if (a->scache) evs__scache_put(a->scache, g, stream, l);
    else if (l->state) g->def.free_state(g->def.ctx, l->state);
    l->state = NULL;
}

/* ------------------------------------------------------------- storing */

int evs__agg_store_snapshot(evs_app *a, evs__agg *g, const char *stream, const evs__loaded *l) {
    if (!g->def.encode) return evs__err(EVS_EINVAL, "aggregate type \"%s\" has no encode: no snapshots", g->name);
    if (l->version == 0) return EVS_OK; /* nothing to remember */
    char *json = NULL;
    size_t jl = 0;
    if (g->def.encode(g->def.ctx, l->state, &json, &jl) || !json)
        return evs__err(EVS_EINVAL, "%s: encoding the state at version %llu failed", stream, (unsigned long long)l->version);
    size_t sl = strlen(stream), vl = SNAP_HEADER + jl;
    uint8_t kb[EVS_MAX_STREAM_NAME + 9], *p = malloc(vl);
    if (!p) {
        free(json);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    evs__put32(p, SNAP_FORMAT);
    evs__put32(p + 4, g->schema);
    memcpy(p + 8, g->code_hash, EVS__HASH_BYTES);
    evs__put64(p + 24, l->version);
    evs__put64(p + 32, l->gpos);
    evs__put64(p + 40, (uint64_t)evs_now_ns());
    memcpy(p + SNAP_HEADER, json, jl);
    free(json);
    evs__kv_val k = {snap_key(kb, stream, sl, l->version), kb}, v = {vl, p};
    evs__kv_txn *txn = NULL;
    snap_row *rows = NULL;
    size_t n = 0;
    int rc = evs__kv_begin(a->kv, NULL, 0, &txn);
    if (rc) goto out;
    if ((rc = evs__kv_put(txn, EVS__AK_SNAPSHOTS, &k, &v, 0))) goto out;
    /* keep the newest snapshot_keep of the stream (the versions are copies: deleting moves no view) */
    if ((rc = snap_rows(txn, stream, sl, UINT64_MAX, &rows, &n))) goto out;
    for (size_t i = 0; n > a->cfg.snapshot_keep && i < n - a->cfg.snapshot_keep; i++) {
        k.size = snap_key(kb, stream, sl, rows[i].version);
        if ((rc = evs__kv_del(txn, EVS__AK_SNAPSHOTS, &k)) && rc != EVS__KV_NOTFOUND) goto out;
    }
    rc = evs__kv_commit(txn);
    txn = NULL;
out:
    evs__kv_abort(txn);
    free(rows);
    free(p);
    return rc ? evs__err_prefix(evs__app_kv_err(rc, "write snapshot"), "%s: ", stream) : EVS_OK;
}

static void note_create(evs_app *a, int64_t t0) {
    uint64_t dt = (uint64_t)(evs__mono_ns() - t0);
    atomic_fetch_add(&a->st_snap_created, 1);
    atomic_fetch_add(&a->st_snap_create_ns, dt);
    evs__app_note_max(&a->st_snap_create_max, dt);
}

/* ------------------------------------------------------ the snapshot thread */

void evs__agg_queue_snapshot(evs_app *a, evs__agg *g, const char *stream, evs__loaded *l) {
    evs__snap_job *j = NULL;
    pthread_mutex_lock(&a->snap_mu);
    int take = !a->snap_stop && a->q_len < SNAP_QUEUE_MAX;
    for (evs__snap_job *q = a->q_head; take && q; q = q->next)
        if (q->l.version >= l->version && strcmp(q->stream, stream) == 0) take = 0;
    if (take && (j = calloc(1, sizeof *j))) {
        j->agg = g;
        snprintf(j->stream, sizeof j->stream, "%s", stream);
        j->l = *l;
        if (a->q_tail) a->q_tail->next = j;
        else a->q_head = j;
        a->q_tail = j;
        a->q_len++;
        pthread_cond_signal(&a->snap_cv);
    }
    pthread_mutex_unlock(&a->snap_mu);
    if (!j) {
        atomic_fetch_add(&a->st_snap_dropped, 1);
        g->def.free_state(g->def.ctx, l->state);
    }
    l->state = NULL;
}

static void run_job(evs_app *a, evs__snap_job *j) {
    char err[512];
    int64_t t0 = evs__mono_ns();
    evs__agg *g = j->agg;
    int rc = evs__agg_catch_up(a, g, j->stream, &j->l, err, sizeof err);
    if (rc == EVS_OK && evs__agg_store_snapshot(a, g, j->stream, &j->l) == EVS_OK) note_create(a, t0);
    /* a failure leaves no snapshot; the next command over the threshold asks again */
    g->def.free_state(g->def.ctx, j->l.state);
    free(j);
}

static void *snap_main(void *arg) {
    evs_app *a = arg;
    pthread_mutex_lock(&a->snap_mu);
    for (;;) {
        while (!a->q_head && !a->snap_stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&a->snap_cv, &a->snap_mu, &ts);
            if (!a->q_head && evs__mono_ns() - a->last_prune_ns > PRUNE_EVERY_NS) break;
        }
        evs__snap_job *j = a->q_head;
        if (j) {
            a->q_head = j->next;
            if (!a->q_head) a->q_tail = NULL;
            a->q_len--;
            a->snap_busy = 1;
        } else if (a->snap_stop) {
            break;
        }
        pthread_mutex_unlock(&a->snap_mu);
        if (j) {
            run_job(a, j);
        } else {
            a->last_prune_ns = evs__mono_ns();
            evs__results_prune(a, evs_now_ns());
        }
        pthread_mutex_lock(&a->snap_mu);
        a->snap_busy = 0;
        if (!a->q_head) pthread_cond_broadcast(&a->snap_idle_cv);
    }
    pthread_cond_broadcast(&a->snap_idle_cv);
    pthread_mutex_unlock(&a->snap_mu);
    return NULL;
}

int evs__snap_start(evs_app *a) {
    a->last_prune_ns = evs__mono_ns();
    if (pthread_create(&a->snap_thread, NULL, snap_main, a)) return evs__err(EVS_ENOMEM, "cannot start the snapshot thread");
    a->snap_started = 1;
    return EVS_OK;
}

void evs__snap_stop(evs_app *a) {
    if (!a->snap_started) return;
    pthread_mutex_lock(&a->snap_mu);
    a->snap_stop = 1;
    pthread_cond_broadcast(&a->snap_cv);
    pthread_mutex_unlock(&a->snap_mu);
    pthread_join(a->snap_thread, NULL); /* the thread drains the queue first */
    a->snap_started = 0;
}

int evs_app_flush(evs_app *a) {
    if (!a) return evs__err(EVS_EINVAL, "app_flush: app is NULL");
    pthread_mutex_lock(&a->snap_mu);
    while ((a->q_head || a->snap_busy) && a->snap_started && !a->snap_stop)
        pthread_cond_wait(&a->snap_idle_cv, &a->snap_mu);
    pthread_mutex_unlock(&a->snap_mu);
    return EVS_OK;
}

/* ------------------------------------------------------------ public API */

int evs__agg_lookup(evs_app *a, const char *type, const char *id, evs__agg **g, char stream[EVS_MAX_STREAM_NAME + 1]) {
    if (!a || !type) return evs__err(EVS_EINVAL, "aggregate: NULL argument");
    pthread_rwlock_rdlock(&a->reg_lock);
    *g = evs__app_find_agg(a, type);
    pthread_rwlock_unlock(&a->reg_lock);
    if (!*g) return evs__err(EVS_ENOTFOUND, "aggregate type \"%s\" is not registered", type);
    return evs__agg_stream(*g, id, stream);
}

/* The JSON of a loaded state and how it was loaded; frees l->state. */
int evs__agg_answer(evs__agg *g, evs__loaded *l, const char *stream, int64_t dt, char **json, size_t *len,
                    evs_load_info *info) {
    size_t n = 0;
    int rc = EVS_OK;
    if (g->def.encode(g->def.ctx, l->state, json, &n) || !*json) rc = evs__err(EVS_EINVAL, "%s: encode failed", stream);
    else if (len) *len = n;
    if (info) {
        info->version = l->version;
        info->snapshot_version = l->snapshot_version;
        info->events_applied = l->events_applied;
        info->snapshots_ignored = l->snapshots_ignored;
        info->duration_ns = dt;
    }
    g->def.free_state(g->def.ctx, l->state);
    return rc;
}

int evs_aggregate_load_json(evs_app *a, const char *type, const char *id, unsigned flags, char **json, size_t *len,
                            evs_load_info *info) {
    char stream[EVS_MAX_STREAM_NAME + 1], err[512];
    evs__agg *g;
    evs__loaded l;
    if (!json) return evs__err(EVS_EINVAL, "aggregate_load_json: json is NULL");
    *json = NULL;
    int rc = evs__agg_lookup(a, type, id, &g, stream);
    if (rc) return rc;
    if (!g->def.encode) return evs__err(EVS_EINVAL, "aggregate type \"%s\" has no encode", type);
    int64_t t0 = evs__mono_ns();
    if ((rc = evs__agg_load(a, g, stream, flags, &l, err, sizeof err))) return rc;
    int64_t dt = evs__mono_ns() - t0;
    return evs__agg_answer(g, &l, stream, dt, json, len, info);
}

int evs_aggregate_snapshot(evs_app *a, const char *type, const char *id, uint64_t *version) {
    char stream[EVS_MAX_STREAM_NAME + 1], err[512];
    evs__agg *g;
    evs__loaded l;
    int rc = evs__agg_lookup(a, type, id, &g, stream);
    if (rc) return rc;
    int64_t t0 = evs__mono_ns();
    if ((rc = evs__agg_load(a, g, stream, 0, &l, err, sizeof err))) return rc;
    if (l.version == 0) rc = evs__err(EVS_ENOTFOUND, "stream \"%s\" has no events to snapshot", stream);
    else if (!(rc = evs__agg_store_snapshot(a, g, stream, &l))) note_create(a, t0);
    if (!rc && version) *version = l.version;
    g->def.free_state(g->def.ctx, l.state);
    return rc;
}

int evs_aggregate_snapshots(evs_app *a, const char *type, const char *id, evs_snapshot_info *out, size_t max,
                            size_t *count) {
    char stream[EVS_MAX_STREAM_NAME + 1];
    evs__agg *g;
    if (!count || (!out && max)) return evs__err(EVS_EINVAL, "aggregate_snapshots: NULL argument");
    *count = 0;
    int rc = evs__agg_lookup(a, type, id, &g, stream);
    if (rc) return rc;
    evs__kv_txn *txn;
    snap_row *rows = NULL;
    size_t n = 0;
    if ((rc = evs__kv_begin(a->kv, NULL, EVS__KV_RDONLY, &txn))) return evs__app_kv_err(rc, "begin");
    if (!(rc = snap_rows(txn, stream, strlen(stream), UINT64_MAX, &rows, &n))) {
        for (size_t i = n; i-- > 0 && *count < max;) { /* the newest first */
            if (rows[i].n < SNAP_HEADER) continue;
            const uint8_t *p = rows[i].v;
            evs_snapshot_info *o = &out[(*count)++];
            o->schema_version = evs__get32(p + 4);
            memcpy(o->code_hash, p + 8, EVS__HASH_BYTES);
            o->version = evs__get64(p + 24);
            o->global_position = evs__get64(p + 32);
            o->created_at = (int64_t)evs__get64(p + 40);
            o->usable = usable(g, p, rows[i].n);
        }
    }
    free(rows);
    evs__kv_abort(txn);
    return rc;
}
