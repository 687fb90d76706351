/*
 * kv.c — the bus's key-value interface (kv.h) on its two implementations:
 * LMDB in DIR/consumers/ (below, the code the bus ran before, moved here
 * unchanged in what it stores and how it syncs) and PostgreSQL (src/pg/
 * pg_kv.c).  Each call dispatches on the environment's kind; the cursor of
 * the PostgreSQL side is built here on pg_kv's seek, holding a copy of its
 * current key.
 *
 * The LMDB environment is opened with LMDB's default durability except the
 * meta page sync (MDB_NOMETASYNC): a commit is durable after the data pages'
 * fdatasync, and an OS crash can at worst roll back to the previous commit,
 * which is still a consistent state (record, DLQ and projection state move
 * together).
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "bus/kv.h"
#include "core/core.h"
#include "pg/pg_kv.h"

#define EVS_BUS_MAP_SIZE (8ull << 30)

_Static_assert(EVS__KV_NOTFOUND == EVS__PGKV_NOTFOUND && EVS__KV_KEYEXIST == EVS__PGKV_KEYEXIST,
               "pg_kv's result codes are the interface's");

const evs__kv_layout evs__kv_bus_layout = {
    .what = "consumers",
    .ntables = EVS__KV_NDB,
    .lmdb_names = {"consumers", "dlq", "dlq_streams", "pstate"},
    .pg_db = {0, 1, 2, 3},
    .lmdb_sync = EVS__KV_SYNC_NOMETA,
    .lmdb_map_size = EVS_BUS_MAP_SIZE,
    .lmdb_max_readers = 512,
};

struct evs__kv {
    const evs__kv_layout *lo;
    void *pg;                     /* the PostgreSQL engine, NULL for LMDB */
    MDB_env *env;
    int ro;
    MDB_dbi dbi[EVS__KV_MAX_TABLES];
};

struct evs__kv_txn {
    evs__kv *kv;
    evs__kv_lease *owned;         /* EVS__KV_OWN_LEASE */
    MDB_txn *mt;
    evs__pgkv_txn *pt;
};

struct evs__kv_cursor {
    evs__kv_txn *txn;
    MDB_cursor *mc;
    int db;
    void *key;                    /* PostgreSQL: a copy of the current key */
    size_t klen;
    int positioned;
    void *end;                    /* evs__kv_cursor_bound: keys >= end are past the cursor's end */
    size_t elen;
    int bounded;
};

struct evs__kv_lease {
    evs__pgkv_lease *pl;
};

/* LMDB status -> evs status with message (results NOTFOUND and KEYEXIST pass through). */
static int mdb_rc_of(const evs__kv_layout *lo, int rc, const char *what) {
    if (rc == 0) return EVS_OK;
    if (rc == MDB_NOTFOUND) return EVS__KV_NOTFOUND;
    if (rc == MDB_KEYEXIST) return EVS__KV_KEYEXIST;
    if (rc == MDB_MAP_FULL) return evs__err(EVS_ELIMIT, "%s: %s: the %s map is full", lo->what, what, lo->what);
    /* what LMDB says to a write in an environment opened read-only */
    if (rc == EACCES)
        return evs__err(EVS_ECLOSED, "%s: %s: open read-only (the store was opened read-only, or "
                                     "its %s/ directory is not writable)", lo->what, what, lo->what);
    return evs__err(EVS_EIO, "%s: %s: %s", lo->what, what, mdb_strerror(rc));
}
#define mdb_rc(rc, what) mdb_rc_of(kv->lo, (rc), (what))

const char *evs__kv_kind(const evs__kv *kv) { return kv->pg ? "postgresql" : "lmdb"; }

int evs__kv_open_lmdb(const char *path, int ro, evs__kv **out) {
    return evs__kv_open_lmdb_as(&evs__kv_bus_layout, path, ro, out);
}

int evs__kv_open_lmdb_as(const evs__kv_layout *lo, const char *path, int ro, evs__kv **out) {
    int rc;
    MDB_txn *txn = NULL;
    evs__kv *kv = calloc(1, sizeof *kv);
    *out = NULL;
    if (!kv) return evs__err(EVS_ENOMEM, "out of memory");
    kv->lo = lo;
    kv->ro = ro;
    if ((rc = mdb_env_create(&kv->env))) {
        kv->env = NULL;
        rc = mdb_rc(rc, "create environment");
        goto fail;
    }
    mdb_env_set_maxdbs(kv->env, EVS__KV_MAX_TABLES); /* a limit of this process, not stored in the environment */
    mdb_env_set_mapsize(kv->env, lo->lmdb_map_size);
    if (lo->lmdb_max_readers) mdb_env_set_maxreaders(kv->env, lo->lmdb_max_readers);
    unsigned sync = lo->lmdb_sync == EVS__KV_SYNC_NOMETA ? MDB_NOMETASYNC
                    : lo->lmdb_sync == EVS__KV_SYNC_NONE ? MDB_NOSYNC : 0;
    if ((rc = mdb_env_open(kv->env, path, sync | MDB_NOTLS | (ro ? MDB_RDONLY : 0), 0644))) {
        rc = mdb_rc(rc, path);
        goto fail;
    }
    if ((rc = mdb_txn_begin(kv->env, NULL, ro ? MDB_RDONLY : 0, &txn))) {
        rc = mdb_rc(rc, "begin");
        goto fail;
    }
    /* (a read-only transaction's commit keeps the handles, as a write's does) */
    for (int i = 0; i < lo->ntables; i++)
        if (lo->lmdb_names[i] && (rc = mdb_dbi_open(txn, lo->lmdb_names[i], ro ? 0 : MDB_CREATE, &kv->dbi[i]))) {
            mdb_txn_abort(txn);
            rc = mdb_rc(rc, "open databases");
            goto fail;
        }
    if ((rc = mdb_txn_commit(txn))) {
        rc = mdb_rc(rc, "commit");
        goto fail;
    }
    *out = kv;
    return EVS_OK;
fail:
    evs__kv_close(kv);
    /* a database missing from a read-only environment is "not found" to LMDB: not a result here */
    return rc > 0 ? evs__err(EVS_EIO, "%s: %s: a database is missing", lo->what, path) : rc;
}

int evs__kv_open_pg(void *pg_engine, evs__kv **out) {
    return evs__kv_open_pg_as(&evs__kv_bus_layout, pg_engine, out);
}

int evs__kv_open_pg_as(const evs__kv_layout *lo, void *pg_engine, evs__kv **out) {
    evs__kv *kv = calloc(1, sizeof *kv);
    *out = NULL;
    if (!kv) return evs__err(EVS_ENOMEM, "out of memory");
    kv->lo = lo;
    kv->pg = pg_engine;
    *out = kv;
    return EVS_OK;
}

void evs__kv_close(evs__kv *kv) {
    if (!kv) return;
    /* without sync (or without the meta page's), what the environment wrote reaches the disk here: a clean
       close loses nothing */
    if (kv->env && !kv->ro && kv->lo->lmdb_sync != EVS__KV_SYNC_FULL) mdb_env_sync(kv->env, 1);
    if (kv->env) mdb_env_close(kv->env);
    free(kv);
}

/* ------------------------------------------------------------ transactions */

int evs__kv_begin(evs__kv *kv, evs__kv_lease *lease, unsigned flags, evs__kv_txn **out) {
    int rc;
    evs__kv_txn *t = calloc(1, sizeof *t);
    *out = NULL;
    if (!t) {
        if (flags & EVS__KV_OWN_LEASE) evs__kv_lease_drop(lease);
        return evs__err(EVS_ENOMEM, "out of memory");
    }
    t->kv = kv;
    if (flags & EVS__KV_OWN_LEASE) t->owned = lease;
    int ro = (flags & EVS__KV_RDONLY) != 0;
    if (kv->pg) rc = evs__pgkv_begin(kv->pg, lease ? lease->pl : NULL, ro, &t->pt);
    else rc = mdb_rc(mdb_txn_begin(kv->env, NULL, ro ? MDB_RDONLY : 0, &t->mt), "begin");
    if (rc) {
        evs__kv_lease_drop(t->owned);
        free(t);
        return rc;
    }
    *out = t;
    return EVS_OK;
}

int evs__kv_commit(evs__kv_txn *t) {
    evs__kv *kv = t->kv;
    int rc = kv->pg ? evs__pgkv_commit(t->pt) : mdb_rc(mdb_txn_commit(t->mt), "commit");
    evs__kv_lease_drop(t->owned);
    free(t);
    return rc;
}

void evs__kv_abort(evs__kv_txn *t) {
    if (!t) return;
    if (t->kv->pg) evs__pgkv_abort(t->pt);
    else mdb_txn_abort(t->mt);
    evs__kv_lease_drop(t->owned);
    free(t);
}

/* A table this environment lacks (PostgreSQL only, on LMDB) is a caller's error. */
static int table_ok(const evs__kv *kv, int db) {
    if (db >= 0 && db < kv->lo->ntables && (kv->pg || kv->lo->lmdb_names[db])) return EVS_OK;
    return evs__err(EVS_EINVAL, "%s: table %d is not kept by the %s implementation", kv->lo->what, db,
                    evs__kv_kind(kv));
}

int evs__kv_get(evs__kv_txn *t, int db, const evs__kv_val *k, evs__kv_val *v) {
    evs__kv *kv = t->kv;
    int rc = table_ok(kv, db);
    if (rc) return rc;
    if (kv->pg) {
        const void *p;
        size_t n;
        rc = evs__pgkv_get(t->pt, kv->lo->pg_db[db], k->data, k->size, &p, &n);
        if (!rc) v->data = (void *)p, v->size = n;
        return rc;
    }
    MDB_val mk = {k->size, k->data}, mv;
    rc = mdb_rc(mdb_get(t->mt, kv->dbi[db], &mk, &mv), "read");
    if (!rc) v->data = mv.mv_data, v->size = mv.mv_size;
    return rc;
}

int evs__kv_put(evs__kv_txn *t, int db, const evs__kv_val *k, const evs__kv_val *v, unsigned flags) {
    evs__kv *kv = t->kv;
    int noover = (flags & EVS__KV_NOOVERWRITE) != 0, rc = table_ok(kv, db);
    if (rc) return rc;
    if (kv->pg) return evs__pgkv_put(t->pt, kv->lo->pg_db[db], k->data, k->size, v->data, v->size, noover);
    MDB_val mk = {k->size, k->data}, mv = {v->size, v->data};
    return mdb_rc(mdb_put(t->mt, kv->dbi[db], &mk, &mv, noover ? MDB_NOOVERWRITE : 0), "write");
}

int evs__kv_del(evs__kv_txn *t, int db, const evs__kv_val *k) {
    evs__kv *kv = t->kv;
    int rc = table_ok(kv, db);
    if (rc) return rc;
    if (kv->pg) return evs__pgkv_del(t->pt, kv->lo->pg_db[db], k->data, k->size);
    MDB_val mk = {k->size, k->data};
    return mdb_rc(mdb_del(t->mt, kv->dbi[db], &mk, NULL), "delete");
}

int evs__kv_gen_get(evs__kv_txn *t, int db, const char *name, uint64_t *gen) {
    evs__kv_val k = {strlen(name), (void *)name}, v;
    *gen = 0;
    int rc = evs__kv_get(t, db, &k, &v);
    if (rc == EVS__KV_NOTFOUND) return EVS_OK;
    if (rc) return rc;
    if (v.size != 8)
        return evs__err(EVS_ECORRUPT, "%s: the generation row \"%s\" is %zu bytes, not 8", t->kv->lo->what, name,
                        v.size);
    *gen = evs__get64be(v.data);
    return EVS_OK;
}

int evs__kv_gen_put(evs__kv_txn *t, int db, const char *name, uint64_t gen) {
    uint8_t b[8];
    evs__put64be(b, gen);
    evs__kv_val k = {strlen(name), (void *)name}, v = {8, b};
    return evs__kv_put(t, db, &k, &v, 0);
}

int evs__kv_count(evs__kv_txn *t, int db, size_t *n) {
    evs__kv *kv = t->kv;
    int rc = table_ok(kv, db);
    if (rc) return rc;
    if (kv->pg) return evs__pgkv_count(t->pt, kv->lo->pg_db[db], n);
    MDB_stat st;
    if ((rc = mdb_rc(mdb_stat(t->mt, kv->dbi[db], &st), "count"))) return rc;
    *n = st.ms_entries;
    return EVS_OK;
}

/* ----------------------------------------------------------------- cursors */

int evs__kv_cursor_open(evs__kv_txn *t, int db, evs__kv_cursor **out) {
    evs__kv *kv = t->kv;
    *out = NULL;
    int rc = table_ok(kv, db);
    if (rc) return rc;
    evs__kv_cursor *c = calloc(1, sizeof *c);
    if (!c) return evs__err(EVS_ENOMEM, "out of memory");
    c->txn = t;
    c->db = kv->pg ? kv->lo->pg_db[db] : db; /* PostgreSQL: the table's number in evs_bus_kv */
    if (!kv->pg) {
        rc = mdb_rc(mdb_cursor_open(t->mt, kv->dbi[db], &c->mc), "cursor");
        if (rc) {
            free(c);
            return rc;
        }
    }
    *out = c;
    return EVS_OK;
}

/* PostgreSQL: remember the key the cursor stands on. */
static int pg_land(evs__kv_cursor *c, const void *rk, size_t rkl, const void *rv, size_t rvl, evs__kv_val *k,
                   evs__kv_val *v) {
    if (rkl > c->klen || !c->key) {
        void *nk = realloc(c->key, rkl ? rkl : 1);
        if (!nk) return evs__err(EVS_ENOMEM, "out of memory");
        c->key = nk;
    }
    memcpy(c->key, rkl ? rk : "", rkl);
    c->klen = rkl;
    c->positioned = 1;
    k->data = (void *)rk, k->size = rkl;
    v->data = (void *)rv, v->size = rvl;
    return EVS_OK;
}

int evs__kv_cursor_bound(evs__kv_cursor *c, const evs__kv_val *end) {
    void *e = malloc(end->size ? end->size : 1);
    if (!e) return evs__err(EVS_ENOMEM, "out of memory");
    memcpy(e, end->size ? end->data : "", end->size);
    free(c->end);
    c->end = e;
    c->elen = end->size;
    c->bounded = 1;
    return EVS_OK;
}

/* Is key k at or past the cursor's bound?  (LMDB's default order: bytewise, the shorter first on a common prefix.) */
static int past_bound(const evs__kv_cursor *c, const void *k, size_t kl) {
    if (!c->bounded) return 0;
    size_t n = kl < c->elen ? kl : c->elen;
    int d = n ? memcmp(k, c->end, n) : 0;
    return d > 0 || (d == 0 && kl >= c->elen);
}

int evs__kv_cursor_get(evs__kv_cursor *c, evs__kv_val *k, evs__kv_val *v, int op) {
    evs__kv *kv = c->txn->kv;
    if (!kv->pg) {
        MDB_val mk = {k->size, k->data}, mv;
        MDB_cursor_op mop = op == EVS__KV_FIRST ? MDB_FIRST : op == EVS__KV_SET_RANGE ? MDB_SET_RANGE : MDB_NEXT;
        int rc = mdb_rc(mdb_cursor_get(c->mc, &mk, &mv, mop), "cursor");
        if (!rc && past_bound(c, mk.mv_data, mk.mv_size)) rc = EVS__KV_NOTFOUND;
        if (!rc) k->data = mk.mv_data, k->size = mk.mv_size, v->data = mv.mv_data, v->size = mv.mv_size;
        return rc;
    }
    const void *rk, *rv, *end = c->bounded ? c->end : NULL;
    size_t rkl, rvl;
    int rc;
    switch (op) {
    case EVS__KV_FIRST:
        rc = evs__pgkv_seek_below(c->txn->pt, c->db, "", 0, 0, end, c->elen, &rk, &rkl, &rv, &rvl);
        break;
    case EVS__KV_SET_RANGE:
        rc = evs__pgkv_seek_below(c->txn->pt, c->db, k->data, k->size, 0, end, c->elen, &rk, &rkl, &rv, &rvl);
        break;
    default:
        if (!c->positioned) return evs__err(EVS_EINVAL, "%s: cursor: next without a position", kv->lo->what);
        rc = evs__pgkv_seek_below(c->txn->pt, c->db, c->key, c->klen, 1, end, c->elen, &rk, &rkl, &rv, &rvl);
        break;
    }
    if (rc) return rc;
    return pg_land(c, rk, rkl, rv, rvl, k, v);
}

int evs__kv_cursor_del(evs__kv_cursor *c) {
    evs__kv *kv = c->txn->kv;
    if (!kv->pg) return mdb_rc(mdb_cursor_del(c->mc, 0), "delete");
    if (!c->positioned) return evs__err(EVS_EINVAL, "%s: cursor: delete without a position", kv->lo->what);
    /* the key stays the cursor's position: NEXT finds what follows it */
    return evs__pgkv_del(c->txn->pt, c->db, c->key, c->klen);
}

void evs__kv_cursor_close(evs__kv_cursor *c) {
    if (!c) return;
    if (c->mc) mdb_cursor_close(c->mc);
    free(c->key);
    free(c->end);
    free(c);
}

/* ------------------------------------------------------------------ leases */

int evs__kv_lease_take(evs__kv *kv, const char *name, evs__kv_lease **out) {
    *out = NULL;
    if (!kv->pg) return EVS_OK;
    evs__kv_lease *l = calloc(1, sizeof *l);
    if (!l) return evs__err(EVS_ENOMEM, "out of memory");
    /* the bus's names as they always were; another layout's in a space of its own (any name is a consumer's) */
    int rc = evs__pgkv_lease_take(kv->pg, kv->lo == &evs__kv_bus_layout ? "bus" : kv->lo->what, name, &l->pl);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return EVS_OK;
}

void evs__kv_lease_drop(evs__kv_lease *l) {
    if (!l) return;
    evs__pgkv_lease_drop(l->pl);
    free(l);
}
