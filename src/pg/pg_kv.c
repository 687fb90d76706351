/*
 * pg_kv.c — the ordered key-value store and the name leases of pg_kv.h,
 * on the PostgreSQL engine's connections.
 *
 * A transaction holds one connection from begin to commit/abort: a pool
 * connection (pg_conn.c's evs__pg_get/put), or the lease's own.  Every result it
 * reads is kept until it ends, which is what keeps returned values valid
 * (binary results: libpq's value pointers are the bytes themselves).
 *
 * A forward scan would cost a round trip per key; seek fetches a page of
 * rows instead and answers the "next after the key I was given" of a
 * cursor from that page while nothing was written in the transaction since
 * (a write may have changed what follows).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pg/pg_internal.h"
#include "pg/pg_kv.h"

/* pg_advisory_xact_lock key of bus writers ("evsbus!" in ASCII, as a number) */
#define EVS_PGKV_WRITE_LOCK "28559210592957217"
/* rows one seek fetches ahead for the cursor's next moves */
#define EVS_PGKV_PAGE 64
#define EVS_PGKV_PAGE_SQL "64"

struct evs__pgkv_lease {
    PGconn *conn;
    pthread_mutex_t mu;           /* held by the transaction running on conn */
    char name[256];
    char who[64];                 /* in messages: "consumer", or the space's name */
};

struct evs__pgkv_txn {
    evs_pg *pg;
    evs__pgkv_lease *lease;       /* NULL: conn is the pool's */
    PGconn *conn;
    PGresult **res;               /* kept until the end: returned values point into them */
    size_t nres, capres;
    uint64_t writes;              /* puts and deletes so far */
    /* the page of the last seek, and the bound it was fetched under */
    PGresult *page;
    int page_db, page_row;
    uint64_t page_writes;
    void *page_end;
    size_t page_el;
    int page_bounded;
};

static void quiet(void *arg, const char *message) {
    (void)arg, (void)message;
}

static int keep(evs__pgkv_txn *t, PGresult *r) {
    if (t->nres == t->capres) {
        size_t nc = t->capres ? t->capres * 2 : 16;
        PGresult **nr = realloc(t->res, nc * sizeof *nr);
        if (!nr) {
            PQclear(r);
            return evs__err(EVS_ENOMEM, "out of memory");
        }
        t->res = nr;
        t->capres = nc;
    }
    t->res[t->nres++] = r;
    return EVS_OK;
}

static int exec_cmd(PGconn *c, const char *sql, const char *what) {
    PGresult *r = PQexec(c, sql);
    int rc = EVS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) rc = evs__pg_err(c, r, what);
    PQclear(r);
    return rc;
}

static void finish(evs__pgkv_txn *t) {
    for (size_t i = 0; i < t->nres; i++) PQclear(t->res[i]);
    free(t->res);
    free(t->page_end);
    if (t->lease) pthread_mutex_unlock(&t->lease->mu);
    else evs__pg_put(t->pg, t->conn);
    free(t);
}

int evs__pgkv_begin(void *engine, evs__pgkv_lease *lease, int rdonly, evs__pgkv_txn **out) {
    int rc;
    evs__pgkv_txn *t = calloc(1, sizeof *t);
    *out = NULL;
    if (!t) return evs__err(EVS_ENOMEM, "out of memory");
    t->pg = engine;
    if (lease) {
        pthread_mutex_lock(&lease->mu);
        t->lease = lease;
        t->conn = lease->conn;
        if (PQstatus(t->conn) != CONNECTION_OK) {
            pthread_mutex_unlock(&lease->mu);
            free(t);
            return evs__err(EVS_ELOCKED, "%s \"%s\" lost its lease: its PostgreSQL session ended (another "
                                         "process may run it now); close and open it again", lease->who, lease->name);
        }
    } else if ((rc = evs__pg_get(t->pg, &t->conn))) {
        free(t);
        return rc;
    }
    rc = exec_cmd(t->conn,
                  rdonly ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                         : "BEGIN; SELECT pg_advisory_xact_lock(" EVS_PGKV_WRITE_LOCK ")",
                  "postgresql: consumers: begin");
    if (rc) {
        if (PQtransactionStatus(t->conn) != PQTRANS_IDLE) PQclear(PQexec(t->conn, "ROLLBACK"));
        finish(t);
        return rc;
    }
    *out = t;
    return EVS_OK;
}

int evs__pgkv_commit(evs__pgkv_txn *t) {
    PGresult *r = PQexec(t->conn, "COMMIT");
    int rc = EVS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) rc = evs__pg_err(t->conn, r, "postgresql: consumers: commit");
    /* COMMIT of a transaction that failed earlier answers ROLLBACK */
    else if (strcmp(PQcmdStatus(r), "COMMIT") != 0)
        rc = evs__err(EVS_EIO, "postgresql: consumers: commit: the transaction was rolled back");
    PQclear(r);
    finish(t);
    return rc;
}

void evs__pgkv_abort(evs__pgkv_txn *t) {
    if (!t) return;
    if (PQstatus(t->conn) == CONNECTION_OK) PQclear(PQexec(t->conn, "ROLLBACK"));
    finish(t);
}

/* Run sql with ($1 db, $2..: the byte strings) in binary; *out kept by t. */
static int run(evs__pgkv_txn *t, const char *sql, int db, int n, const void *const *p, const size_t *l,
               ExecStatusType want, const char *what, PGresult **out) {
    *out = NULL; /* written first: GCC -O3 cannot tell that evs__err() returns non-zero */
    char dbs[8];
    const char *vals[4];
    int lens[4], fmts[4] = {0, 1, 1, 1};
    if (n > 3) return evs__err(EVS_EINVAL, "%s: %d parameters, at most 3", what, n);
    snprintf(dbs, sizeof dbs, "%d", db);
    vals[0] = dbs;
    lens[0] = 0;
    for (int i = 0; i < n; i++) {
        vals[i + 1] = p[i] ? p[i] : "";
        lens[i + 1] = (int)l[i];
    }
    PGresult *r = PQexecParams(t->conn, sql, n + 1, NULL, vals, lens, fmts, 1);
    if (PQresultStatus(r) != want) {
        int rc = evs__pg_err(t->conn, r, what);
        PQclear(r);
        return rc;
    }
    *out = r;
    return keep(t, r);
}

int evs__pgkv_get(evs__pgkv_txn *t, int db, const void *k, size_t kl, const void **v, size_t *vl) {
    PGresult *r;
    int rc = run(t, "SELECT v FROM evs_bus_kv WHERE db = $1 AND k = $2", db, 1, (const void *[]){k}, (size_t[]){kl},
                 PGRES_TUPLES_OK, "postgresql: consumers: get", &r);
    if (rc) return rc;
    if (PQntuples(r) == 0) return EVS__PGKV_NOTFOUND;
    *v = PQgetvalue(r, 0, 0);
    *vl = (size_t)PQgetlength(r, 0, 0);
    return EVS_OK;
}

int evs__pgkv_put(evs__pgkv_txn *t, int db, const void *k, size_t kl, const void *v, size_t vl, int nooverwrite) {
    PGresult *r;
    t->writes++;
    int rc = run(t,
                 nooverwrite ? "INSERT INTO evs_bus_kv (db, k, v) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                             : "INSERT INTO evs_bus_kv (db, k, v) VALUES ($1, $2, $3) "
                               "ON CONFLICT (db, k) DO UPDATE SET v = EXCLUDED.v",
                 db, 2, (const void *[]){k, v}, (size_t[]){kl, vl}, PGRES_COMMAND_OK, "postgresql: consumers: put", &r);
    if (rc) return rc;
    return nooverwrite && strcmp(PQcmdTuples(r), "0") == 0 ? EVS__PGKV_KEYEXIST : EVS_OK;
}

int evs__pgkv_del(evs__pgkv_txn *t, int db, const void *k, size_t kl) {
    PGresult *r;
    t->writes++;
    int rc = run(t, "DELETE FROM evs_bus_kv WHERE db = $1 AND k = $2", db, 1, (const void *[]){k}, (size_t[]){kl},
                 PGRES_COMMAND_OK, "postgresql: consumers: delete", &r);
    if (rc) return rc;
    return strcmp(PQcmdTuples(r), "0") == 0 ? EVS__PGKV_NOTFOUND : EVS_OK;
}

int evs__pgkv_count(evs__pgkv_txn *t, int db, size_t *n) {
    PGresult *r;
    int rc = run(t, "SELECT count(*) FROM evs_bus_kv WHERE db = $1", db, 0, NULL, NULL, PGRES_TUPLES_OK,
                 "postgresql: kv: count", &r);
    if (rc) return rc;
    /* binary result: int8, big-endian */
    const uint8_t *p = (const uint8_t *)PQgetvalue(r, 0, 0);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    *n = (size_t)v;
    return EVS_OK;
}

static int page_row(evs__pgkv_txn *t, int row, const void **rk, size_t *rkl, const void **rv, size_t *rvl) {
    t->page_row = row;
    *rk = PQgetvalue(t->page, row, 0);
    *rkl = (size_t)PQgetlength(t->page, row, 0);
    *rv = PQgetvalue(t->page, row, 1);
    *rvl = (size_t)PQgetlength(t->page, row, 1);
    return EVS_OK;
}

int evs__pgkv_seek(evs__pgkv_txn *t, int db, const void *k, size_t kl, int after, const void **rk, size_t *rkl,
                   const void **rv, size_t *rvl) {
    return evs__pgkv_seek_below(t, db, k, kl, after, NULL, 0, rk, rkl, rv, rvl);
}

/* Was the last page fetched under this bound (end NULL: none)? */
static int same_bound(const evs__pgkv_txn *t, const void *end, size_t el) {
    if (!end) return !t->page_bounded;
    return t->page_bounded && t->page_el == el && (el == 0 || memcmp(t->page_end, end, el) == 0);
}

int evs__pgkv_seek_below(evs__pgkv_txn *t, int db, const void *k, size_t kl, int after, const void *end, size_t el,
                         const void **rk, size_t *rkl, const void **rv, size_t *rvl) {
    /* the next row after the one the page gave last: the page knows it, unless something was written since */
    if (t->page && after && t->page_db == db && t->page_writes == t->writes && same_bound(t, end, el)) {
        int cur = t->page_row, n = PQntuples(t->page);
        if ((size_t)PQgetlength(t->page, cur, 0) == kl && memcmp(PQgetvalue(t->page, cur, 0), k, kl) == 0) {
            if (cur + 1 < n) return page_row(t, cur + 1, rk, rkl, rv, rvl);
            if (n < EVS_PGKV_PAGE) return EVS__PGKV_NOTFOUND; /* the page reached the end of db (or the bound) */
        }
    }
    static const char *const sql[2][2] = {
        {"SELECT k, v FROM evs_bus_kv WHERE db = $1 AND k >= $2 ORDER BY k LIMIT " EVS_PGKV_PAGE_SQL,
         "SELECT k, v FROM evs_bus_kv WHERE db = $1 AND k > $2 ORDER BY k LIMIT " EVS_PGKV_PAGE_SQL},
        {"SELECT k, v FROM evs_bus_kv WHERE db = $1 AND k >= $2 AND k < $3 ORDER BY k LIMIT " EVS_PGKV_PAGE_SQL,
         "SELECT k, v FROM evs_bus_kv WHERE db = $1 AND k > $2 AND k < $3 ORDER BY k LIMIT " EVS_PGKV_PAGE_SQL}};
    PGresult *r;
    int rc = run(t, sql[end != NULL][after != 0], db, end ? 2 : 1, (const void *[]){k, end}, (size_t[]){kl, el},
                 PGRES_TUPLES_OK, "postgresql: kv: scan", &r);
    if (rc) return rc;
    t->page = NULL;
    if (PQntuples(r) == 0) return EVS__PGKV_NOTFOUND;
    if (end && el > t->page_el) {
        void *ne = realloc(t->page_end, el);
        if (!ne) return evs__err(EVS_ENOMEM, "out of memory");
        t->page_end = ne;
    }
    if (end && el) memcpy(t->page_end, end, el);
    t->page_el = end ? el : 0;
    t->page_bounded = end != NULL;
    t->page = r;
    t->page_db = db;
    t->page_writes = t->writes;
    return page_row(t, 0, rk, rkl, rv, rvl);
}

/* ----------------------------------------------------------------- leases */

int evs__pgkv_lease_take(void *engine, const char *space, const char *name, evs__pgkv_lease **out) {
    evs_pg *pg = engine;
    int rc = EVS_OK;
    *out = NULL;
    evs__pgkv_lease *l = calloc(1, sizeof *l);
    if (!l) return evs__err(EVS_ENOMEM, "out of memory");
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->who, sizeof l->who, "%s", strcmp(space, "bus") == 0 ? "consumer" : space);
    pthread_mutex_init(&l->mu, NULL);
    if (!(l->conn = PQconnectdb(pg->url))) {
        rc = evs__err(EVS_ENOMEM, "postgresql: out of memory connecting");
        goto fail;
    }
    if (PQstatus(l->conn) != CONNECTION_OK) {
        rc = evs__pg_err(l->conn, NULL, "postgresql: consumers: connect for a lease");
        goto fail;
    }
    PQsetNoticeProcessor(l->conn, quiet, NULL);
    char key[400];
    snprintf(key, sizeof key, "evs_%s:%s", space, name);
    const char *vals[1] = {key};
    PGresult *r = PQexecParams(l->conn, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, NULL, vals, NULL,
                               NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = evs__pg_err(l->conn, r, "postgresql: consumers: take a lease");
    } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        rc = evs__err(EVS_ELOCKED, "%s \"%s\" is open in another process on this database (it holds the "
                                   "lease)", l->who, name);
    }
    PQclear(r);
    if (rc) goto fail;
    *out = l;
    return EVS_OK;
fail:
    evs__pgkv_lease_drop(l);
    return rc;
}

void evs__pgkv_lease_drop(evs__pgkv_lease *l) {
    if (!l) return;
    /* closing the session releases its advisory lock */
    if (l->conn) PQfinish(l->conn);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
