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

static const char *const DB_NAMES[EVS__KV_NDB] = {"consumers", "dlq", "dlq_streams", "pstate"};

struct evs__kv {
    void *pg;                     /* the PostgreSQL engine, NULL for LMDB */
    MDB_env *env;
    MDB_dbi dbi[EVS__KV_NDB];
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
};

struct evs__kv_lease {
    evs__pgkv_lease *pl;
};

/* LMDB status -> evs status with message (results NOTFOUND and KEYEXIST pass through). */
static int mdb_rc(int rc, const char *what) {
    if (rc == 0) return EVS_OK;
    if (rc == MDB_NOTFOUND) return EVS__KV_NOTFOUND;
    if (rc == MDB_KEYEXIST) return EVS__KV_KEYEXIST;
    if (rc == MDB_MAP_FULL) return evs__err(EVS_ELIMIT, "consumers: %s: the consumer map is full", what);
    /* what LMDB says to a write in an environment opened read-only */
    if (rc == EACCES)
        return evs__err(EVS_ECLOSED, "consumers: %s: open read-only (the store was opened read-only, or "
                                     "its consumers/ directory is not writable)", what);
    return evs__err(EVS_EIO, "consumers: %s: %s", what, mdb_strerror(rc));
}

const char *evs__kv_kind(const evs__kv *kv) { return kv->pg ? "postgresql" : "lmdb"; }

int evs__kv_open_lmdb(const char *path, int ro, evs__kv **out) {
    int rc;
    MDB_txn *txn = NULL;
    evs__kv *kv = calloc(1, sizeof *kv);
    *out = NULL;
    if (!kv) return evs__err(EVS_ENOMEM, "out of memory");
    if ((rc = mdb_env_create(&kv->env))) {
        kv->env = NULL;
        rc = mdb_rc(rc, "create environment");
        goto fail;
    }
    mdb_env_set_maxdbs(kv->env, 8);
    mdb_env_set_mapsize(kv->env, EVS_BUS_MAP_SIZE);
    mdb_env_set_maxreaders(kv->env, 512);
    if ((rc = mdb_env_open(kv->env, path, MDB_NOMETASYNC | MDB_NOTLS | (ro ? MDB_RDONLY : 0), 0644))) {
        rc = mdb_rc(rc, path);
        goto fail;
    }
    if ((rc = mdb_txn_begin(kv->env, NULL, ro ? MDB_RDONLY : 0, &txn))) {
        rc = mdb_rc(rc, "begin");
        goto fail;
    }
    /* (a read-only transaction's commit keeps the handles, as a write's does) */
    for (int i = 0; i < EVS__KV_NDB; i++)
        if ((rc = mdb_dbi_open(txn, DB_NAMES[i], ro ? 0 : MDB_CREATE, &kv->dbi[i]))) {
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
    return rc > 0 ? evs__err(EVS_EIO, "consumers: %s: a database is missing", path) : rc;
}

int evs__kv_open_pg(void *pg_engine, evs__kv **out) {
    evs__kv *kv = calloc(1, sizeof *kv);
    *out = NULL;
    if (!kv) return evs__err(EVS_ENOMEM, "out of memory");
    kv->pg = pg_engine;
    *out = kv;
    return EVS_OK;
}

void evs__kv_close(evs__kv *kv) {
    if (!kv) return;
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
    int rc = t->kv->pg ? evs__pgkv_commit(t->pt) : mdb_rc(mdb_txn_commit(t->mt), "commit");
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

int evs__kv_get(evs__kv_txn *t, int db, const evs__kv_val *k, evs__kv_val *v) {
    if (t->kv->pg) {
        const void *p;
        size_t n;
        int rc = evs__pgkv_get(t->pt, db, k->data, k->size, &p, &n);
        if (!rc) v->data = (void *)p, v->size = n;
        return rc;
    }
    MDB_val mk = {k->size, k->data}, mv;
    int rc = mdb_rc(mdb_get(t->mt, t->kv->dbi[db], &mk, &mv), "read");
    if (!rc) v->data = mv.mv_data, v->size = mv.mv_size;
    return rc;
}

int evs__kv_put(evs__kv_txn *t, int db, const evs__kv_val *k, const evs__kv_val *v, unsigned flags) {
    int noover = (flags & EVS__KV_NOOVERWRITE) != 0;
    if (t->kv->pg) return evs__pgkv_put(t->pt, db, k->data, k->size, v->data, v->size, noover);
    MDB_val mk = {k->size, k->data}, mv = {v->size, v->data};
    return mdb_rc(mdb_put(t->mt, t->kv->dbi[db], &mk, &mv, noover ? MDB_NOOVERWRITE : 0), "write");
}

int evs__kv_del(evs__kv_txn *t, int db, const evs__kv_val *k) {
    if (t->kv->pg) return evs__pgkv_del(t->pt, db, k->data, k->size);
    MDB_val mk = {k->size, k->data};
    return mdb_rc(mdb_del(t->mt, t->kv->dbi[db], &mk, NULL), "delete");
}

/* ----------------------------------------------------------------- cursors */

int evs__kv_cursor_open(evs__kv_txn *t, int db, evs__kv_cursor **out) {
    evs__kv_cursor *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c) return evs__err(EVS_ENOMEM, "out of memory");
    c->txn = t;
    c->db = db;
    if (!t->kv->pg) {
        int rc = mdb_rc(mdb_cursor_open(t->mt, t->kv->dbi[db], &c->mc), "cursor");
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

int evs__kv_cursor_get(evs__kv_cursor *c, evs__kv_val *k, evs__kv_val *v, int op) {
    if (!c->txn->kv->pg) {
        MDB_val mk = {k->size, k->data}, mv;
        MDB_cursor_op mop = op == EVS__KV_FIRST ? MDB_FIRST : op == EVS__KV_SET_RANGE ? MDB_SET_RANGE : MDB_NEXT;
        int rc = mdb_rc(mdb_cursor_get(c->mc, &mk, &mv, mop), "cursor");
        if (!rc) k->data = mk.mv_data, k->size = mk.mv_size, v->data = mv.mv_data, v->size = mv.mv_size;
        return rc;
    }
    const void *rk, *rv;
    size_t rkl, rvl;
    int rc;
    switch (op) {
    case EVS__KV_FIRST: rc = evs__pgkv_seek(c->txn->pt, c->db, "", 0, 0, &rk, &rkl, &rv, &rvl); break;
    case EVS__KV_SET_RANGE: rc = evs__pgkv_seek(c->txn->pt, c->db, k->data, k->size, 0, &rk, &rkl, &rv, &rvl); break;
    default:
        if (!c->positioned) return evs__err(EVS_EINVAL, "consumers: cursor: next without a position");
        rc = evs__pgkv_seek(c->txn->pt, c->db, c->key, c->klen, 1, &rk, &rkl, &rv, &rvl);
        break;
    }
    if (rc) return rc;
    return pg_land(c, rk, rkl, rv, rvl, k, v);
}

int evs__kv_cursor_del(evs__kv_cursor *c) {
    if (!c->txn->kv->pg) return mdb_rc(mdb_cursor_del(c->mc, 0), "delete");
    if (!c->positioned) return evs__err(EVS_EINVAL, "consumers: cursor: delete without a position");
    /* the key stays the cursor's position: NEXT finds what follows it */
    return evs__pgkv_del(c->txn->pt, c->db, c->key, c->klen);
}

void evs__kv_cursor_close(evs__kv_cursor *c) {
    if (!c) return;
    if (c->mc) mdb_cursor_close(c->mc);
    free(c->key);
    free(c);
}

/* ------------------------------------------------------------------ leases */

int evs__kv_lease_take(evs__kv *kv, const char *name, evs__kv_lease **out) {
    *out = NULL;
    if (!kv->pg) return EVS_OK;
    evs__kv_lease *l = calloc(1, sizeof *l);
    if (!l) return evs__err(EVS_ENOMEM, "out of memory");
    int rc = evs__pgkv_lease_take(kv->pg, name, &l->pl);
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
