/*
 * catalog.c — the saga index of a store and the dispatcher that keeps it:
 * one reader of the log (filtered to the saga event types, the starting
 * event types and the answer types of the registered definitions) whose
 * checkpoint is committed in the same transaction as everything it derives,
 * so after any crash the index describes exactly the events below the
 * checkpoint (invariant 1).
 *
 * Everything here is derived from the log; the saga streams are the truth.
 * The index is kept through the key-value interface of src/bus/kv.h, on
 * the saga layout below:
 *   embedded    DIR/sagas/, an LMDB environment exactly as before that
 *               interface (the same database names; MDB_NOMETASYNC: a
 *               commit syncs its data, the meta page is synced by the next
 *               commit or at close, so a power cut may undo the last commit,
 *               never corrupt the environment, and the dispatcher then reads
 *               those events again);
 *   PostgreSQL  rows 30..38 of evs_bus_kv in the store's database, shared
 *               by every process on it.  One process at a time holds the
 *               saga lease (evs__cat_lease) and runs the dispatcher, the
 *               timers and the workers; its dispatcher's transactions run on
 *               the lease, so a holder whose session ended cannot commit
 *               over its successor.  The others read the index (listings,
 *               stats) and stand by.
 *
 * Tables (keys are byte strings; T = saga type, I = instance id):
 *   meta      "checkpoint" -> be64 next global position; "node" -> node id
 *   inst      T 0x00 I              -> the state without data (state.c codec)
 *   by_state  T 0x00 st be64(updated) I -> ""   listing by type, state, age
 *   timers    be64(due) T 0x00 I    -> ""       the next timer of each instance
 *   corr      uuid T 0x00 I         -> ""       instances by correlation id (not terminal)
 *   starts    T 0x00 I 0x00 be64(position) -> ""  starting events not yet started
 *   ready     T 0x00 I              -> ""       instances with work (or a hint) after a crash
 *   counts    T                     -> counters (struct cat_counts, little-endian u64s)
 *   hist      T 0x00 step           -> step durations (struct cat_hist)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bus/start.h"
#include "saga/saga_internal.h"
#include "store/store_access.h"

#define MAP_SIZE (16ull * 1024 * 1024 * 1024)
#define KEY_MAX (8 + EVS_SAGA_MAX_NAME + 1 + 1 + 8 + EVS_SAGA_MAX_ID + 16)

/* DIR/sagas/ as it always was; rows 30..38 on PostgreSQL. */
static const evs__kv_layout saga_layout = {
    .what = "sagas",
    .ntables = EVS__CAT_NTABLES,
    .lmdb_names = {"meta", "inst", "by_state", "timers", "corr", "starts", "ready", "counts", "hist"},
    .pg_db = {30, 31, 32, 33, 34, 35, 36, 37, 38},
    .lmdb_sync = EVS__KV_SYNC_NOMETA,
    .lmdb_map_size = MAP_SIZE,
    .lmdb_max_readers = 512,
};

/* the session advisory lock's name of the saga lease (pg_kv.c) */
#define LEASE_NAME "sagas"

enum { C_STARTED, C_COMPLETED, C_COMPENSATED, C_FAILED, C_COMP_FAILED, C_TIMERS, C_STEP_FAIL, C_COMP_FAIL, C_STATE0 };
#define N_COUNTS (C_STATE0 + EVS_SAGA_STATES)

typedef struct cat_counts {
    uint64_t v[N_COUNTS];
} cat_counts;

typedef struct cat_hist {
    uint64_t count, sum_ns, b[EVS_SAGA_BUCKETS + 1];
} cat_hist;

/* A result of the kv interface where none but OK was expected: an error with its message. */
static int kv_err(int rc, const char *what) {
    if (rc == EVS__KV_NOTFOUND || rc == EVS__KV_KEYEXIST)
        return evs__err(EVS_EIO, "sagas: %s: %s", what, rc == EVS__KV_NOTFOUND ? "not found" : "exists");
    return rc;
}

/* A read transaction with a cursor on table db.  Ownership: both the caller's (cursor_close, then abort). */
static int read_cursor(evs_saga_engine *e, int db, evs__kv_txn **txn, evs__kv_cursor **c) {
    int rc = evs__kv_begin(e->kv, NULL, EVS__KV_RDONLY, txn);
    if (rc) return rc;
    if ((rc = evs__kv_cursor_open(*txn, db, c))) {
        evs__kv_abort(*txn);
        return kv_err(rc, "cursor");
    }
    return EVS_OK;
}

/* ------------------------------------------------------------------- keys */

static size_t key_ti(uint8_t *k, const char *type, const char *id) {
    size_t tl = strlen(type), il = strlen(id);
    memcpy(k, type, tl);
    k[tl] = 0;
    memcpy(k + tl + 1, id, il);
    return tl + 1 + il;
}

static size_t key_state(uint8_t *k, const evs__saga *S) {
    size_t tl = strlen(S->type), il = strlen(S->id);
    memcpy(k, S->type, tl);
    k[tl] = 0;
    k[tl + 1] = (uint8_t)S->status;
    evs__put64be(k + tl + 2, (uint64_t)S->updated_at);
    memcpy(k + tl + 10, S->id, il);
    return tl + 10 + il;
}

static size_t key_timer(uint8_t *k, int64_t due, const char *type, const char *id) {
    evs__put64be(k, (uint64_t)due);
    return 8 + key_ti(k + 8, type, id);
}

static size_t key_corr(uint8_t *k, const evs_uuid *c, const char *type, const char *id) {
    memcpy(k, c->b, 16);
    return 16 + key_ti(k + 16, type, id);
}

/* Split "T 0x00 I" (n bytes). */
static int split_ti(const uint8_t *p, size_t n, char type[EVS_SAGA_MAX_NAME + 1], char id[EVS_SAGA_MAX_ID + 1]) {
    const uint8_t *z = memchr(p, 0, n);
    if (!z) return -1;
    size_t tl = (size_t)(z - p), il = n - tl - 1;
    if (tl > EVS_SAGA_MAX_NAME || il > EVS_SAGA_MAX_ID) return -1;
    memcpy(type, p, tl);
    type[tl] = 0;
    memcpy(id, z + 1, il);
    id[il] = 0;
    return 0;
}

static int get_key(evs__kv_txn *txn, int db, const void *k, size_t n, evs__kv_val *v) {
    evs__kv_val kv = {n, (void *)k};
    return evs__kv_get(txn, db, &kv, v);
}

static int del_key(evs__kv_txn *txn, int db, const void *k, size_t n) {
    evs__kv_val kv = {n, (void *)k};
    int rc = evs__kv_del(txn, db, &kv);
    return rc == EVS__KV_NOTFOUND ? 0 : rc;
}

static int put_key(evs__kv_txn *txn, int db, const void *k, size_t n, const void *v, size_t vn) {
    evs__kv_val kv = {n, (void *)k}, vv = {vn, (void *)v};
    return evs__kv_put(txn, db, &kv, &vv, 0);
}

/* The committed checkpoint: EVS_OK, EVS__KV_NOTFOUND before the first, or an error. */
static int read_checkpoint(evs__kv_txn *txn, uint64_t *pos) {
    evs__kv_val v;
    int rc = get_key(txn, EVS__CAT_META, "checkpoint", 10, &v);
    if (rc) return rc;
    if (v.size != 8) return evs__err(EVS_ECORRUPT, "sagas: the checkpoint is %zu bytes, not 8", v.size);
    *pos = evs__get64be(v.data);
    return EVS_OK;
}

/* ------------------------------------------------------------------- open */

/* Where a new index starts: cfg.from taken as the consumer bus takes a start; a position past
   the head + 1 is refused, or the engine would skip every starting event appended up to there. */
static int start_position(evs_saga_engine *e, uint64_t *first) {
    int rc = evs__bus_start_next(e->store, NULL, e->cfg.from, first);
    return rc ? evs__err_prefix(rc, "sagas: from: ") : EVS_OK;
}

int evs__cat_open(evs_saga_engine *e) {
    char path[4200] = "postgresql";
    int rc;
    evs__kv_txn *txn = NULL;
    uint64_t first = 0;
    int have_first = 0; /* a fresh LMDB index learns its start before DIR/sagas/ is made: once */
    void *pg = evs__store_pg_engine(e->store);
    if (pg) {
        e->pg = 1;
        if ((rc = evs__kv_open_pg_as(&saga_layout, pg, &e->kv))) return rc;
    } else {
        const char *dir = evs__store_dir(e->store);
        if (!dir) return evs__err(EVS_ECLOSED, "saga_engine_open: the store is not open");
        snprintf(path, sizeof path, "%s/sagas", dir);
        struct stat st;
        char data[4300];
        snprintf(data, sizeof data, "%s/data.mdb", path);
        int fresh = stat(data, &st) != 0;
        if (e->cfg.read_only) {
            if (fresh) return evs__err(EVS_ENOTFOUND, "%s has no saga index (no saga engine ran on it)", dir);
        } else if (fresh && (rc = start_position(e, &first))) {
            return rc; /* before DIR/sagas/ is made: a refused open leaves nothing behind */
        } else if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            return evs__err_errno(-errno, "cannot create %s", path);
        }
        have_first = fresh && !e->cfg.read_only;
        if ((rc = evs__kv_open_lmdb_as(&saga_layout, path, e->cfg.read_only, &e->kv))) return rc;
        atomic_store(&e->holding, 1); /* the store's directory lock makes this process the only one */
    }
    if (e->cfg.read_only) {
        /* beside the process that runs the engine: nothing written; the position is the checkpoint at open (stats) */
        if ((rc = evs__kv_begin(e->kv, NULL, EVS__KV_RDONLY, &txn))) return rc;
        rc = read_checkpoint(txn, &e->position);
        evs__kv_abort(txn);
        if (rc == EVS__KV_NOTFOUND && pg)
            return evs__err(EVS_ENOTFOUND, "the database has no saga index (no saga engine ran on it)");
        if (rc == EVS__KV_NOTFOUND) rc = EVS_OK;
        e->read_pos = e->position;
        atomic_store(&e->holding, 0);
        return rc;
    }
    /* on PostgreSQL another process may make the first checkpoint and node id at the same time: writers are
       serialized (kv.h), and the second finds what the first wrote */
    if ((rc = evs__kv_begin(e->kv, NULL, 0, &txn))) return rc;
    rc = read_checkpoint(txn, &e->position);
    if (rc == EVS__KV_NOTFOUND) {
        if (!have_first && (rc = start_position(e, &first))) {
            evs__kv_abort(txn);
            return rc;
        }
        uint8_t b[8];
        evs__put64be(b, first);
        if ((rc = put_key(txn, EVS__CAT_META, "checkpoint", 10, b, 8))) goto fail;
        e->position = first;
    } else if (rc) {
        goto fail;
    }
    e->read_pos = e->position;
    if (e->cfg.node_id && *e->cfg.node_id) {
        snprintf(e->node, sizeof e->node, "%s", e->cfg.node_id);
    } else {
        /* the node of the index, not of a process: a process that takes over (a restart, or on PostgreSQL the
           next holder of the saga lease) continues the instances its predecessor had leased at once */
        evs__kv_val nv;
        rc = get_key(txn, EVS__CAT_META, "node", 4, &nv);
        if (rc == 0 && nv.size > 0 && nv.size <= EVS__NODE_MAX) {
            memcpy(e->node, nv.data, nv.size);
            e->node[nv.size] = 0;
        } else if (rc == 0 || rc == EVS__KV_NOTFOUND) {
            evs_uuid u;
            evs_uuid_v7(&u);
            evs_uuid_format(&u, e->node);
            if ((rc = put_key(txn, EVS__CAT_META, "node", 4, e->node, strlen(e->node)))) goto fail;
        } else {
            goto fail;
        }
    }
    return evs__kv_commit(txn);
fail:
    evs__kv_abort(txn);
    return kv_err(rc, "open the index");
}

void evs__cat_close(evs_saga_engine *e) {
    if (!e->kv) return;
    if (e->disp_txn) evs__cat_commit(e);
    evs__kv_lease_drop(e->lease);
    e->lease = NULL;
    evs__kv_close(e->kv);
    e->kv = NULL;
}

/* ------------------------------------------------------------------ lease */

int evs__cat_lease(evs_saga_engine *e) {
    if (atomic_load(&e->holding)) return EVS_OK;
    evs__kv_lease *l = NULL;
    evs__kv_txn *txn = NULL;
    uint64_t pos = 0;
    int rc = evs__kv_lease_take(e->kv, LEASE_NAME, &l);
    if (rc == EVS_ELOCKED)
        return evs__err(EVS_ELOCKED, "sagas run in another process on this database (it holds the saga lease)");
    if (rc) return rc;
    /* what the previous holder committed (its open transaction ended with its session) */
    if ((rc = evs__kv_begin(e->kv, l, EVS__KV_RDONLY, &txn))) goto fail;
    rc = read_checkpoint(txn, &pos);
    evs__kv_abort(txn);
    if (rc) {
        rc = kv_err(rc, "read the checkpoint");
        goto fail;
    }
    pthread_mutex_lock(&e->disp_mu);
    e->lease = l;
    e->read_pos = pos;
    e->requeued = 0;
    pthread_mutex_unlock(&e->disp_mu);
    pthread_mutex_lock(&e->mu);
    e->position = pos;
    atomic_store(&e->holding, 1);
    pthread_mutex_unlock(&e->mu);
    return EVS_OK;
fail:
    evs__kv_lease_drop(l);
    return rc;
}

int evs__cat_lease_check(evs_saga_engine *e) {
    if (!e->pg || !atomic_load(&e->holding)) return EVS_OK;
    pthread_mutex_lock(&e->disp_mu);
    evs__kv_txn *txn = NULL;
    int rc = e->disp_txn ? EVS_OK : evs__kv_begin(e->kv, e->lease, EVS__KV_RDONLY, &txn);
    evs__kv_abort(txn);
    if (rc) {
        /* the session is gone, and the lease with it: stand by (what is queued waits for the next holding) */
        char why[400];
        snprintf(why, sizeof why, "%s", evs_errmsg());
        if (e->disp_txn) evs__kv_abort(e->disp_txn);
        e->disp_txn = NULL;
        e->disp_events = 0;
        evs__kv_lease_drop(e->lease);
        e->lease = NULL;
        atomic_store(&e->holding, 0);
        pthread_mutex_unlock(&e->disp_mu);
        return evs__err(rc < 0 ? rc : EVS_EIO, "sagas: lost the saga lease (%s); standing by", why);
    }
    pthread_mutex_unlock(&e->disp_mu);
    return EVS_OK;
}

int evs__cat_checkpoint(evs_saga_engine *e, uint64_t *pos) {
    evs__kv_txn *txn;
    int rc = evs__kv_begin(e->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return rc;
    rc = read_checkpoint(txn, pos);
    evs__kv_abort(txn);
    if (rc == EVS__KV_NOTFOUND) *pos = 0, rc = EVS_OK;
    return rc;
}

/* ------------------------------------------------------------- counters */

static int counts_get(evs__kv_txn *txn, const char *type, cat_counts *c) {
    evs__kv_val v;
    memset(c, 0, sizeof *c);
    int rc = get_key(txn, EVS__CAT_COUNTS, type, strlen(type), &v);
    if (rc == EVS__KV_NOTFOUND) return 0;
    if (rc) return rc;
    for (size_t i = 0; i < N_COUNTS && (i + 1) * 8 <= v.size; i++) c->v[i] = evs__get64((const uint8_t *)v.data + i * 8);
    return 0;
}

static int counts_put(evs__kv_txn *txn, const char *type, const cat_counts *c) {
    uint8_t b[N_COUNTS * 8];
    for (size_t i = 0; i < N_COUNTS; i++) evs__put64(b + i * 8, c->v[i]);
    return put_key(txn, EVS__CAT_COUNTS, type, strlen(type), b, sizeof b);
}

static int hist_add(evs__kv_txn *txn, const char *type, const char *step, int64_t ns) {
    static const uint64_t bounds[EVS_SAGA_BUCKETS] = EVS_SAGA_BOUNDS_MS;
    uint8_t kb[EVS_SAGA_MAX_NAME + 1 + EVS_SAGA_MAX_STEP_NAME];
    size_t tl = strlen(type), sl = strlen(step);
    memcpy(kb, type, tl);
    kb[tl] = 0;
    memcpy(kb + tl + 1, step, sl);
    evs__kv_val v;
    cat_hist h;
    memset(&h, 0, sizeof h);
    int rc = get_key(txn, EVS__CAT_HIST, kb, tl + 1 + sl, &v);
    if (rc == 0 && v.size == sizeof h) memcpy(&h, v.data, sizeof h);
    else if (rc && rc != EVS__KV_NOTFOUND) return rc;
    if (ns < 0) ns = 0;
    uint64_t ms = (uint64_t)ns / 1000000;
    size_t i = 0;
    while (i < EVS_SAGA_BUCKETS && ms > bounds[i]) i++;
    h.b[i]++;
    h.count++;
    h.sum_ns += (uint64_t)ns;
    return put_key(txn, EVS__CAT_HIST, kb, tl + 1 + sl, &h, sizeof h);
}

/* ------------------------------------------------------------- dispatch */

typedef struct jobs {
    evs__job *v;
    size_t n, cap;
    int timers;                   /* a timer was indexed */
} jobs;

static void jobs_add(jobs *j, int kind, const char *type, const char *id, uint64_t pos) {
    if (j->n == j->cap) {
        size_t nc = j->cap ? j->cap * 2 : 16;
        evs__job *nv = realloc(j->v, nc * sizeof *nv);
        if (!nv) return; /* the ready / starts rows still hold it; the next requeue finds it */
        j->v = nv;
        j->cap = nc;
    }
    evs__job *b = &j->v[j->n++];
    memset(b, 0, sizeof *b);
    b->kind = kind;
    snprintf(b->type, sizeof b->type, "%s", type);
    snprintf(b->id, sizeof b->id, "%s", id);
    b->trigger_pos = pos;
}

/* Remove the pending starts of an instance (it started; any others were duplicates): one prefix. */
static int drop_starts(evs__kv_txn *txn, const char *type, const char *id) {
    uint8_t want[KEY_MAX];
    size_t wn = key_ti(want, type, id);
    want[wn++] = 0;
    evs__kv_cursor *c;
    evs__kv_val k = {wn, want}, v;
    int rc = evs__kv_cursor_open(txn, EVS__CAT_STARTS, &c);
    if (rc) return rc;
    for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT)) {
        if (k.size != wn + 8 || memcmp(k.data, want, wn) != 0) break;
        if ((rc = evs__kv_cursor_del(c))) break;
    }
    evs__kv_cursor_close(c);
    return rc == EVS__KV_NOTFOUND ? 0 : rc;
}

static int is_entered(int st) {
    return st == EVS_SAGA_COMPLETED || st == EVS_SAGA_COMPENSATED || st == EVS_SAGA_FAILED ||
           st == EVS_SAGA_COMPENSATION_FAILED;
}

static int entered_slot(int st) {
    switch (st) {
    case EVS_SAGA_COMPLETED: return C_COMPLETED;
    case EVS_SAGA_COMPENSATED: return C_COMPENSATED;
    case EVS_SAGA_FAILED: return C_FAILED;
    default: return C_COMP_FAILED;
    }
}

static int apply_saga(evs_saga_engine *e, evs__kv_txn *txn, const evs_event *ev, const char *type, const char *id, jobs *j) {
    uint8_t k[KEY_MAX], k2[KEY_MAX];
    size_t kn = key_ti(k, type, id), k2n;
    evs__kv_val vv;
    evs__saga *S = NULL;
    char err[512], etype[EVS_MAX_TYPE_NAME + 1];
    snprintf(etype, sizeof etype, "%.*s", (int)ev->event_type_len, ev->event_type);
    int started = strcmp(etype, EVS__EV_STARTED) == 0;
    int rc = get_key(txn, EVS__CAT_INST, k, kn, &vv);
    if (rc == 0) {
        if ((rc = evs__saga_decode(vv.data, vv.size, &S))) return rc;
        if (started) {
            evs__engine_note_error(e, "saga-%s-%s: a second SagaStarted at position %llu is ignored", type, id,
                                   (unsigned long long)ev->global_position);
            evs__saga_free(S);
            return EVS_OK;
        }
    } else if (rc != EVS__KV_NOTFOUND) {
        return kv_err(rc, "read an instance");
    } else if (!started) {
        evs__engine_note_error(e, "saga-%s-%s: %s at position %llu before SagaStarted is ignored", type, id, etype,
                               (unsigned long long)ev->global_position);
        return EVS_OK;
    }
    int is_new = S == NULL;
    if (is_new) {
        if (!(S = calloc(1, sizeof *S))) return evs__err(EVS_ENOMEM, "out of memory");
        snprintf(S->type, sizeof S->type, "%s", type);
        snprintf(S->id, sizeof S->id, "%s", id);
    }
    /* the index's view before the event */
    int old_status = S->status;
    int64_t old_due = is_new ? 0 : evs__saga_next_due(S);
    uint8_t old_state_key[KEY_MAX];
    size_t old_state_n = is_new ? 0 : key_state(old_state_key, S);
    uint64_t old_sf = S->step_failures, old_cf = S->comp_failures;
    uint8_t *was_done = NULL;
    int64_t *began = NULL;
    if (!is_new && S->n_steps) {
        was_done = malloc(S->n_steps);
        began = malloc(S->n_steps * sizeof *began);
        if (!was_done || !began) {
            rc = evs__err(EVS_ENOMEM, "out of memory");
            goto out;
        }
        for (uint32_t i = 0; i < S->n_steps; i++) {
            was_done[i] = S->steps[i].st == EVS__ST_DONE;
            began[i] = S->steps[i].began;
        }
    }
    if (evs__saga_fold_event(S, ev, 0, err, sizeof err)) {
        evs__engine_note_error(e, "%s (position %llu): the index skips it", err, (unsigned long long)ev->global_position);
        rc = EVS_OK;
        goto out;
    }
    cat_counts c;
    if ((rc = counts_get(txn, type, &c))) goto kv;
    if (is_new) c.v[C_STARTED]++;
    else c.v[C_STATE0 + old_status]--;
    c.v[C_STATE0 + S->status]++;
    if ((is_new || old_status != S->status) && is_entered(S->status)) c.v[entered_slot(S->status)]++;
    c.v[C_STEP_FAIL] += S->step_failures - old_sf;
    c.v[C_COMP_FAIL] += S->comp_failures - old_cf;
    /* listing by state and age */
    if (old_state_n && (rc = del_key(txn, EVS__CAT_BY_STATE, old_state_key, old_state_n))) goto kv;
    k2n = key_state(k2, S);
    if ((rc = put_key(txn, EVS__CAT_BY_STATE, k2, k2n, "", 0))) goto kv;
    /* the timer */
    int64_t due = evs__saga_next_due(S);
    if (due != old_due) {
        if (old_due) {
            if ((rc = del_key(txn, EVS__CAT_TIMERS, k2, key_timer(k2, old_due, type, id)))) goto kv;
            c.v[C_TIMERS]--;
        }
        if (due) {
            if ((rc = put_key(txn, EVS__CAT_TIMERS, k2, key_timer(k2, due, type, id), "", 0))) goto kv;
            c.v[C_TIMERS]++;
            j->timers = 1;
        }
    }
    if ((rc = counts_put(txn, type, &c))) goto kv;
    /* work left for after a crash */
    if (evs__saga_has_work(S)) rc = put_key(txn, EVS__CAT_READY, k, kn, "", 0);
    else rc = del_key(txn, EVS__CAT_READY, k, kn);
    if (rc) goto kv;
    /* routing of answers */
    k2n = key_corr(k2, &S->corr, type, id);
    if (started && (rc = put_key(txn, EVS__CAT_CORR, k2, k2n, "", 0))) goto kv;
    if (evs_saga_status_terminal(S->status) && (rc = del_key(txn, EVS__CAT_CORR, k2, k2n))) goto kv;
    if (started && (rc = drop_starts(txn, type, id))) goto kv;
    /* step durations */
    for (uint32_t i = 0; was_done && i < S->n_steps; i++)
        if (!was_done[i] && S->steps[i].st == EVS__ST_DONE && (rc = hist_add(txn, type, S->names[i], S->updated_at - began[i])))
            goto kv;
    char *enc;
    size_t en;
    if ((rc = evs__saga_encode(S, &enc, &en))) goto out;
    rc = put_key(txn, EVS__CAT_INST, k, kn, enc, en);
    free(enc);
    if (rc) goto kv;
    goto out;
kv:
    rc = kv_err(rc, "index a saga event");
out:
    free(was_done);
    free(began);
    evs__saga_free(S);
    return rc;
}

static int apply_start(evs_saga_engine *e, evs__kv_txn *txn, evs__def *d, const evs_event *ev, jobs *j) {
    char id[EVS_SAGA_MAX_ID + 1], err[256];
    if (evs__def_key(d, ev, id, sizeof id, err, sizeof err) < 0) {
        atomic_fetch_add(&e->st_bad_starts, 1);
        evs__engine_note_error(e, "saga %s: starting event at position %llu skipped: %s", d->name,
                               (unsigned long long)ev->global_position, err);
        return EVS_OK;
    }
    uint8_t k[KEY_MAX];
    size_t sn = key_ti(k, d->name, id);
    evs__kv_val vv;
    int rc = get_key(txn, EVS__CAT_INST, k, sn, &vv);
    if (rc == 0) {
        atomic_fetch_add(&e->st_dup_starts, 1);
        return EVS_OK;
    }
    if (rc != EVS__KV_NOTFOUND) return kv_err(rc, "read an instance");
    k[sn++] = 0;
    evs__put64be(k + sn, ev->global_position);
    if ((rc = put_key(txn, EVS__CAT_STARTS, k, sn + 8, "", 0))) return kv_err(rc, "write a pending start");
    jobs_add(j, EVS__JOB_START, d->name, id, ev->global_position);
    return EVS_OK;
}

static int apply_answer(evs__kv_txn *txn, const evs_event *ev, jobs *j) {
    evs__kv_cursor *c;
    evs__kv_val k = {16, (void *)ev->correlation_id.b}, v;
    int rc = evs__kv_cursor_open(txn, EVS__CAT_CORR, &c);
    if (rc) return rc;
    for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_SET_RANGE); rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT)) {
        if (k.size < 17 || memcmp(k.data, ev->correlation_id.b, 16) != 0) break;
        char type[EVS_SAGA_MAX_NAME + 1], id[EVS_SAGA_MAX_ID + 1];
        if (split_ti((const uint8_t *)k.data + 16, k.size - 16, type, id)) continue;
        uint8_t rk[KEY_MAX];
        size_t rn = key_ti(rk, type, id);
        if ((rc = put_key(txn, EVS__CAT_READY, rk, rn, "", 0))) break;
        jobs_add(j, EVS__JOB_RUN, type, id, 0);
    }
    evs__kv_cursor_close(c);
    return rc == EVS__KV_NOTFOUND || rc == 0 ? EVS_OK : kv_err(rc, "route an answer");
}

/* The event types the dispatcher reads (registry read-locked by the caller). */
static int filter_types(evs_saga_engine *e, const char ***out, size_t *n) {
    size_t cap = evs__saga_n_event_types;
    for (size_t i = 0; i < e->n_defs; i++) {
        cap += e->defs[i]->start_on.n;
        for (uint32_t s = 0; s < e->defs[i]->n_steps; s++)
            cap += e->defs[i]->steps[s].complete_on.n + e->defs[i]->steps[s].fail_on.n;
    }
    const char **v = malloc(cap * sizeof *v);
    if (!v) return evs__err(EVS_ENOMEM, "out of memory");
    size_t m = 0;
#define ADD(str)                                                                                                       \
    do {                                                                                                               \
        const char *s_ = (str);                                                                                        \
        size_t q_ = 0;                                                                                                 \
        while (q_ < m && strcmp(v[q_], s_)) q_++;                                                                      \
        if (q_ == m) v[m++] = s_;                                                                                      \
    } while (0)
    for (size_t i = 0; i < evs__saga_n_event_types; i++) ADD(evs__saga_event_types[i]);
    for (size_t i = 0; i < e->n_defs; i++) {
        evs__def *d = e->defs[i];
        for (size_t t = 0; t < d->start_on.n; t++) ADD(d->start_on.v[t]);
        for (uint32_t s = 0; s < d->n_steps; s++) {
            for (size_t t = 0; t < d->steps[s].complete_on.n; t++) ADD(d->steps[s].complete_on.v[t]);
            for (size_t t = 0; t < d->steps[s].fail_on.n; t++) ADD(d->steps[s].fail_on.v[t]);
        }
    }
#undef ADD
    *out = v;
    *n = m;
    return EVS_OK;
}

static int is_answer_type(evs_saga_engine *e, const char *t, size_t n) {
    for (size_t i = 0; i < e->n_defs; i++)
        for (uint32_t s = 0; s < e->defs[i]->n_steps; s++)
            if (evs__types_has(&e->defs[i]->steps[s].complete_on, t, n) ||
                evs__types_has(&e->defs[i]->steps[s].fail_on, t, n))
                return 1;
    return 0;
}

static int apply(evs_saga_engine *e, evs__kv_txn *txn, const evs_event *ev, jobs *j) {
    char type[EVS_SAGA_MAX_NAME + 1], id[EVS_SAGA_MAX_ID + 1];
    int rc = EVS_OK;
    if (evs__saga_split(ev->stream, ev->stream_len, type, id) == 0) {
        for (size_t i = 0; i < evs__saga_n_event_types; i++)
            if (strlen(evs__saga_event_types[i]) == ev->event_type_len &&
                memcmp(evs__saga_event_types[i], ev->event_type, ev->event_type_len) == 0)
                return apply_saga(e, txn, ev, type, id, j);
        return EVS_OK; /* a saga stream starts nothing and answers nothing */
    }
    for (size_t i = 0; i < e->n_defs && !rc; i++)
        if (evs__types_has(&e->defs[i]->start_on, ev->event_type, ev->event_type_len))
            rc = apply_start(e, txn, e->defs[i], ev, j);
    if (!rc && ev->has_correlation_id && is_answer_type(e, ev->event_type, ev->event_type_len))
        rc = apply_answer(txn, ev, j);
    return rc;
}

/*
 * The dispatcher's transaction stays open over several pages, up to
 * COMMIT_NS or COMMIT_EVENTS, and is committed at once when the log has
 * nothing more: under load that is one sync of DIR/sagas/ per COMMIT_NS
 * instead of one per page, and the jobs a page gives (starts, answers) are
 * queued at once, before the commit — a worker acts on the log, not on the
 * index, and a crash before the commit only makes the dispatcher read those
 * events again (starting an instance twice is idempotent, see worker.c).
 */
#define COMMIT_NS 10000000ll
#define COMMIT_EVENTS 20000

static int commit_locked(evs_saga_engine *e) {
    int rc = EVS_OK;
    if (e->disp_txn) {
        uint8_t b[8];
        evs__put64be(b, e->read_pos);
        evs__kv_txn *t = e->disp_txn;
        e->disp_txn = NULL;
        if ((rc = put_key(t, EVS__CAT_META, "checkpoint", 10, b, 8))) evs__kv_abort(t);
        else rc = evs__kv_commit(t); /* (ends the transaction whatever it returns) */
        if (rc) {
            e->disp_events = 0;
            e->read_pos = e->position; /* read again from what is committed */
            return kv_err(rc, "commit the index");
        }
        e->disp_txn = NULL;
        e->disp_events = 0;
    }
    pthread_mutex_lock(&e->mu);
    e->position = e->read_pos;
    if (e->disp_timers) pthread_cond_broadcast(&e->timer_cv);
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
    e->disp_timers = 0;
    return rc;
}

int evs__cat_commit(evs_saga_engine *e) {
    pthread_mutex_lock(&e->disp_mu);
    int rc = commit_locked(e);
    pthread_mutex_unlock(&e->disp_mu);
    return rc;
}

int evs__cat_dispatch(evs_saga_engine *e, int wait_ms, size_t *n) {
    *n = 0;
    pthread_mutex_lock(&e->disp_mu);
    uint64_t pos = e->read_pos, head = evs_head(e->store);
    int rc = EVS_OK;
    if (head < pos) {
        /* nothing new: make the index current, then wait */
        if ((rc = commit_locked(e)) || wait_ms == 0) goto unlock;
        rc = evs_wait_for(e->store, pos, wait_ms, &head);
        if (rc == EVS_ETIMEDOUT || rc == EVS_ECLOSED) rc = EVS_OK;
        if (rc || head < pos) goto unlock;
    }
    const char **types = NULL;
    size_t nt = 0;
    pthread_rwlock_rdlock(&e->reg_lock);
    if ((rc = filter_types(e, &types, &nt))) {
        pthread_rwlock_unlock(&e->reg_lock);
        goto unlock;
    }
    evs_filter f;
    memset(&f, 0, sizeof f);
    f.event_types = types;
    f.n_event_types = nt;
    evs_reader *r = NULL;
    jobs j = {0};
    const evs_event *ev;
    uint32_t page = e->cfg.page_size ? e->cfg.page_size : 1000;
    if ((rc = evs_read_all(e->store, pos, EVS_FORWARD, &f, page, &r))) goto done;
    for (;;) {
        rc = evs_reader_next(r, &ev);
        if (rc == EVS_ELOST) continue; /* a repaired gap: nothing there to index */
        if (rc != EVS_OK) break;
        if (!e->disp_txn) {
            /* on the lease (PostgreSQL): a holder whose session ended cannot begin */
            if ((rc = evs__kv_begin(e->kv, e->lease, 0, &e->disp_txn))) {
                e->disp_txn = NULL;
                break;
            }
            e->disp_t0 = evs__mono_ns();
        }
        (*n)++;
        e->disp_events++;
        if ((rc = apply(e, e->disp_txn, ev, &j))) break;
    }
    if (rc != EVS_DONE) {
        /* drop what this transaction did; read again from the committed checkpoint */
        evs__kv_abort(e->disp_txn);
        e->disp_txn = NULL;
        e->disp_events = 0;
        e->read_pos = e->position;
        goto done;
    }
    rc = EVS_OK;
    e->read_pos = evs_reader_position(r);
    if (j.timers) e->disp_timers = 1;
    if (!e->disp_txn || evs__mono_ns() - e->disp_t0 >= COMMIT_NS || e->disp_events >= COMMIT_EVENTS)
        rc = commit_locked(e);
done:
    evs_reader_close(r);
    pthread_rwlock_unlock(&e->reg_lock);
    free(types);
    for (size_t i = 0; i < j.n; i++) evs__engine_enqueue(e, j.v[i].kind, j.v[i].type, j.v[i].id, j.v[i].trigger_pos, 0);
    free(j.v);
unlock:
    pthread_mutex_unlock(&e->disp_mu);
    return rc;
}

/* ------------------------------------------------------------- requeue */

int evs__cat_requeue(evs_saga_engine *e) {
    evs__kv_txn *txn;
    evs__kv_cursor *c;
    evs__kv_val k = {0, NULL}, v;
    int rc = evs__kv_begin(e->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return rc;
    char type[EVS_SAGA_MAX_NAME + 1], id[EVS_SAGA_MAX_ID + 1];
    if (!(rc = evs__kv_cursor_open(txn, EVS__CAT_STARTS, &c))) {
        for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT))
            if (k.size > 9 && !split_ti(k.data, k.size - 9, type, id))
                evs__engine_enqueue(e, EVS__JOB_START, type, id, evs__get64be((const uint8_t *)k.data + k.size - 8), 0);
        evs__kv_cursor_close(c);
    }
    if ((rc == 0 || rc == EVS__KV_NOTFOUND) && !(rc = evs__kv_cursor_open(txn, EVS__CAT_READY, &c))) {
        for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT))
            if (!split_ti(k.data, k.size, type, id)) evs__engine_enqueue(e, EVS__JOB_RUN, type, id, 0, 0);
        evs__kv_cursor_close(c);
    }
    evs__kv_abort(txn);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : kv_err(rc, "requeue");
}

/* --------------------------------------------------------------- timers */

int evs__cat_fire(evs_saga_engine *e, int64_t now, int64_t *next, size_t *fired) {
    evs__kv_txn *txn;
    evs__kv_cursor *c;
    evs__kv_val k = {0, NULL}, v;
    *next = 0;
    *fired = 0;
    int rc = read_cursor(e, EVS__CAT_TIMERS, &txn, &c);
    if (rc) return rc;
    /* due timers stay in the index until their instance records a transition: the scan is short */
    for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST); rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT)) {
        if (k.size < 10) continue;
        int64_t due = (int64_t)evs__get64be(k.data);
        if (due > now) {
            *next = due;
            break;
        }
        char type[EVS_SAGA_MAX_NAME + 1], id[EVS_SAGA_MAX_ID + 1];
        if (split_ti((const uint8_t *)k.data + 8, k.size - 8, type, id)) continue;
        if (!evs__engine_find_def(e, type)) continue; /* no definition: nobody can act on it */
        evs__engine_enqueue(e, EVS__JOB_RUN, type, id, 0, due);
        (*fired)++;
    }
    evs__kv_cursor_close(c);
    evs__kv_abort(txn);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : kv_err(rc, "fire timers");
}

int evs__cat_timers_pending(evs_saga_engine *e, uint64_t *n) {
    evs__kv_txn *txn;
    size_t count = 0;
    int rc = evs__kv_begin(e->kv, NULL, EVS__KV_RDONLY, &txn);
    if (rc) return rc;
    rc = evs__kv_count(txn, EVS__CAT_TIMERS, &count);
    evs__kv_abort(txn);
    if (rc) return kv_err(rc, "count timers");
    *n = count;
    return EVS_OK;
}

/* -------------------------------------------------------------- listing */

static void hex(const uint8_t *p, size_t n, char *out, size_t cap) {
    static const char d[] = "0123456789abcdef";
    size_t i = 0;
    for (; i < n && 2 * i + 2 < cap; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * i] = 0;
}

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n) {
    size_t l = strlen(s);
    if (l % 2 || l / 2 > cap) return -1;
    for (size_t i = 0; i < l / 2; i++) {
        int v = 0;
        for (int q = 0; q < 2; q++) {
            char ch = s[2 * i + (size_t)q];
            int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
            if (x < 0) return -1;
            v = v * 16 + x;
        }
        out[i] = (uint8_t)v;
    }
    *n = l / 2;
    return 0;
}

int evs__cat_list(evs_saga_engine *e, const evs_saga_query *q, evs_saga_info *out, size_t max, size_t *count,
                  char next_cursor[EVS_SAGA_CURSOR_MAX]) {
    *count = 0;
    char given[EVS_SAGA_CURSOR_MAX];
    snprintf(given, sizeof given, "%s", q->cursor ? q->cursor : ""); /* the caller may pass next_cursor back in */
    if (next_cursor) next_cursor[0] = 0;
    size_t limit = q->limit ? q->limit : 100;
    if (limit > max) limit = max;
    uint8_t start[KEY_MAX];
    size_t sn = 0;
    int after = 0;
    if (q->type && evs__saga_check_type(q->type)) return evs__err(EVS_EINVAL, "list: %s", evs_errmsg());
    if (q->status < -1 || q->status >= EVS_SAGA_STATES)
        return evs__err(EVS_EINVAL, "list: unknown state %d", q->status);
    if (given[0]) {
        if (unhex(given, start, sizeof start, &sn)) return evs__err(EVS_EINVAL, "list: the cursor is not one this engine gave");
        after = 1;
    } else if (q->type) {
        sn = strlen(q->type) + 1;
        memcpy(start, q->type, sn);
        if (q->status >= 0) start[sn++] = (uint8_t)q->status;
    }
    int64_t now = evs__engine_now(e), cutoff = q->stuck_ns > 0 ? now - q->stuck_ns : 0;
    evs__kv_txn *txn;
    evs__kv_cursor *c;
    evs__kv_val k = {0, NULL}, v;
    int rc = read_cursor(e, EVS__CAT_BY_STATE, &txn, &c);
    if (rc) return rc;
    k.size = sn;
    k.data = start;
    rc = sn ? evs__kv_cursor_get(c, &k, &v, EVS__KV_SET_RANGE) : evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST);
    if (rc == 0 && after && k.size == sn && memcmp(k.data, start, sn) == 0) rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT);
    uint8_t last[KEY_MAX];
    size_t lastn = 0;
    int more = 0;
    for (; rc == 0; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT)) {
        const uint8_t *p = k.data;
        const uint8_t *z = memchr(p, 0, k.size);
        if (!z || k.size < (size_t)(z - p) + 10) continue;
        size_t tl = (size_t)(z - p);
        if (q->type && (tl != strlen(q->type) || memcmp(p, q->type, tl) != 0)) break;
        int st = z[1];
        int64_t updated = (int64_t)evs__get64be(z + 2);
        if (q->status >= 0 && st != q->status) {
            if (q->type && st > q->status) break;
            continue;
        }
        if (cutoff) {
            if (q->status < 0 && evs_saga_status_terminal(st)) continue;
            if (updated > cutoff) continue;
        }
        if (*count == limit) {
            more = 1;
            break;
        }
        char type[EVS_SAGA_MAX_NAME + 1], id[EVS_SAGA_MAX_ID + 1];
        memcpy(type, p, tl);
        type[tl] = 0;
        size_t il = k.size - tl - 10;
        if (il > EVS_SAGA_MAX_ID) continue;
        memcpy(id, z + 10, il);
        id[il] = 0;
        uint8_t ik[KEY_MAX];
        evs__kv_val iv;
        evs__saga *S = NULL;
        if (get_key(txn, EVS__CAT_INST, ik, key_ti(ik, type, id), &iv) != 0 || evs__saga_decode(iv.data, iv.size, &S))
            continue;
        evs__saga_info(S, &out[*count]);
        evs__saga_free(S);
        (*count)++;
        memcpy(last, k.data, k.size);
        lastn = k.size;
    }
    evs__kv_cursor_close(c);
    evs__kv_abort(txn);
    if (rc && rc != EVS__KV_NOTFOUND) return kv_err(rc, "list");
    if (more && next_cursor) hex(last, lastn, next_cursor, EVS_SAGA_CURSOR_MAX);
    return EVS_OK;
}

/* ---------------------------------------------------------------- stats */

int evs__cat_type_stats(evs_saga_engine *e, evs_saga_type_stats *out, size_t max, size_t *count) {
    evs__kv_txn *txn;
    evs__kv_cursor *c;
    evs__kv_val k = {0, NULL}, v;
    *count = 0;
    int rc = read_cursor(e, EVS__CAT_COUNTS, &txn, &c);
    if (rc) return rc;
    /* types with counters, merged in name order with registered types that have none yet */
    pthread_rwlock_rdlock(&e->reg_lock);
    size_t nd = e->n_defs;
    const char **names = nd ? malloc(nd * sizeof *names) : NULL;
    for (size_t i = 0; names && i < nd; i++) names[i] = e->defs[i]->name;
    for (size_t i = 1; names && i < nd; i++)
        for (size_t j2 = i; j2 > 0 && strcmp(names[j2 - 1], names[j2]) > 0; j2--) {
            const char *t = names[j2];
            names[j2] = names[j2 - 1];
            names[j2 - 1] = t;
        }
    size_t di = 0;
    rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST);
    while (*count < max && (rc == 0 || (names && di < nd))) {
        char t[EVS_SAGA_MAX_NAME + 1] = "";
        int have = rc == 0 && k.size <= EVS_SAGA_MAX_NAME;
        if (have) {
            memcpy(t, k.data, k.size);
            t[k.size] = 0;
        }
        evs_saga_type_stats *o = &out[*count];
        memset(o, 0, sizeof *o);
        int cmp = !have ? 1 : (names && di < nd) ? strcmp(names[di], t) : -1;
        if (!have || (names && di < nd && cmp < 0)) { /* registered, no counters */
            if (!(names && di < nd)) break;
            snprintf(o->type, sizeof o->type, "%s", names[di++]);
            (*count)++;
            continue;
        }
        if (names && di < nd && cmp == 0) di++;
        snprintf(o->type, sizeof o->type, "%s", t);
        cat_counts cc;
        memset(&cc, 0, sizeof cc);
        for (size_t i = 0; i < N_COUNTS && (i + 1) * 8 <= v.size; i++)
            cc.v[i] = evs__get64((const uint8_t *)v.data + i * 8);
        o->started = cc.v[C_STARTED];
        o->completed = cc.v[C_COMPLETED];
        o->compensated = cc.v[C_COMPENSATED];
        o->failed = cc.v[C_FAILED];
        o->compensation_failed = cc.v[C_COMP_FAILED];
        o->timers_pending = cc.v[C_TIMERS];
        o->step_failures = cc.v[C_STEP_FAIL];
        o->compensation_failures = cc.v[C_COMP_FAIL];
        for (int s = 0; s < EVS_SAGA_STATES; s++) o->by_state[s] = cc.v[C_STATE0 + s];
        (*count)++;
        rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT);
    }
    pthread_rwlock_unlock(&e->reg_lock);
    free(names);
    evs__kv_cursor_close(c);
    evs__kv_abort(txn);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : kv_err(rc, "stats");
}

int evs__cat_step_stats(evs_saga_engine *e, evs_saga_step_stats *out, size_t max, size_t *count) {
    evs__kv_txn *txn;
    evs__kv_cursor *c;
    evs__kv_val k = {0, NULL}, v;
    *count = 0;
    int rc = read_cursor(e, EVS__CAT_HIST, &txn, &c);
    if (rc) return rc;
    for (rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_FIRST); rc == 0 && *count < max; rc = evs__kv_cursor_get(c, &k, &v, EVS__KV_NEXT)) {
        const uint8_t *z = memchr(k.data, 0, k.size);
        if (!z || v.size != sizeof(cat_hist)) continue;
        size_t tl = (size_t)(z - (const uint8_t *)k.data), sl = k.size - tl - 1;
        if (tl > EVS_SAGA_MAX_NAME || sl > EVS_SAGA_MAX_STEP_NAME) continue;
        evs_saga_step_stats *o = &out[*count];
        memset(o, 0, sizeof *o);
        memcpy(o->type, k.data, tl);
        memcpy(o->step, z + 1, sl);
        cat_hist h;
        memcpy(&h, v.data, sizeof h);
        memcpy(o->hist, h.b, sizeof o->hist);
        o->count = h.count;
        o->sum_ns = h.sum_ns;
        (*count)++;
    }
    evs__kv_cursor_close(c);
    evs__kv_abort(txn);
    return rc == 0 || rc == EVS__KV_NOTFOUND ? EVS_OK : kv_err(rc, "step stats");
}
