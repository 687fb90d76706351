/*
 * pg_conn.c — the PostgreSQL engine's connections: the pool, the error
 * mapping of a failed statement, statements prepared once per connection,
 * binary parameter buffers, and the head every appender and the listener
 * raise.  The bottom of src/pg: every other file of the engine calls it,
 * it calls none of them.
 *
 * Connections: a pool of up to EVS_PG_POOL_MAX libpq connections, each
 * used by one thread at a time; a connection that breaks is dropped and
 * the next call connects afresh, so a restarted database costs the calls
 * in flight an EVS_EIO and nothing more.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-events.h>

#include "core/core.h"
#include "pg/pg_internal.h"

/* ------------------------------------------------------------- buffers */

static void reserve(evs_pgbuf *b, size_t n) {
    if (b->oom || b->len + n <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void evs__pgbuf_put(evs_pgbuf *b, const void *p, size_t n) {
    reserve(b, n);
    if (b->oom) return;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

void evs__pgbuf_be32(evs_pgbuf *b, uint32_t v) {
    unsigned char u[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
    evs__pgbuf_put(b, u, 4);
}

void evs__pgbuf_be64(evs_pgbuf *b, uint64_t v) {
    evs__pgbuf_be32(b, (uint32_t)(v >> 32));
    evs__pgbuf_be32(b, (uint32_t)v);
}

void evs__pg_array_begin(evs_pgbuf *b, uint32_t elem_oid, size_t n) {
    evs__pgbuf_be32(b, 1);          /* dimensions */
    evs__pgbuf_be32(b, 0);          /* flags (the server finds NULLs itself) */
    evs__pgbuf_be32(b, elem_oid);
    evs__pgbuf_be32(b, (uint32_t)n); /* length of the dimension */
    evs__pgbuf_be32(b, 1);          /* its lower bound */
}

void evs__pg_array_elem(evs_pgbuf *b, const void *p, size_t n) {
    if (!p) {
        evs__pgbuf_be32(b, UINT32_MAX); /* -1: NULL */
        return;
    }
    evs__pgbuf_be32(b, (uint32_t)n);
    evs__pgbuf_put(b, p, n);
}

/* ------------------------------------------------------------- errors */

int evs__pg_err(PGconn *c, const PGresult *r, const char *what) {
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && !strcmp(state, EVS_PG_SQLSTATE_DELETED)) /* the schema's own refusal: its message as is */
        return evs__err(EVS_EDELETED, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    if (state && !strcmp(state, EVS_PG_SQLSTATE_PLAINTEXT)) /* store_engine.c reads the metadata and seals */
        return evs__err(EVS_EKEY, "%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m) m = c ? PQerrorMessage(c) : "no connection";
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
    return evs__err(EVS_EIO, "%s: %.*s", what, (int)n, m);
}

/* ------------------------------------------------------------- the pool */

/* libpq prints the server's notices on stderr by default ("terminating connection due to
   administrator command" at a restart): a library keeps quiet, the failed call says what happened */
static void quiet(void *arg, const char *message) {
    (void)arg, (void)message;
}

/*
 * Which named statements (evs__pg_query_named) a connection has prepared:
 * a bit per statement, kept as the libpq instance data of this event
 * procedure, i.e. with the connection itself.  It goes when the connection
 * goes, so a new connection (even one libpq allocates at the same address)
 * starts with none, and a reset connection forgets them as the server did.
 */
static int conn_event(PGEventId id, void *info, void *pass) {
    (void)pass;
    if (id == PGEVT_CONNRESET) PQsetInstanceData(((PGEventConnReset *)info)->conn, conn_event, NULL);
    return 1;
}

int evs__pg_connect_one(evs_pg *pg, PGconn **out) {
    *out = NULL;
    PGconn *c = PQconnectdb(pg->url);
    if (!c) return evs__err(EVS_ENOMEM, "postgresql: out of memory connecting");
    if (PQstatus(c) != CONNECTION_OK) {
        char masked[512];
        evs__engine_mask_url(pg->url, masked, sizeof masked);
        const char *m = PQerrorMessage(c);
        size_t n = strlen(m);
        while (n && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
        int rc = evs__err(EVS_EIO, "postgresql: cannot connect to %s: %.*s", masked, (int)n, m);
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    if (!PQregisterEventProc(c, conn_event, "evstore", NULL)) {
        PQfinish(c);
        return evs__err(EVS_ENOMEM, "postgresql: out of memory connecting");
    }
    *out = c;
    return EVS_OK;
}

/* Take a connection; try: only while fewer than half the pool's connections are in use, never waiting. */
static int pool_get(evs_pg *pg, int try, PGconn **out) {
    *out = NULL;
    pthread_mutex_lock(&pg->mu);
    if (try && (pg->closing || pg->total - pg->nidle >= EVS_PG_POOL_MAX / 2)) {
        pthread_mutex_unlock(&pg->mu);
        return 1;
    }
    while (!pg->nidle && pg->total >= EVS_PG_POOL_MAX && !pg->closing) pthread_cond_wait(&pg->pool_cv, &pg->mu);
    if (pg->closing) {
        pthread_mutex_unlock(&pg->mu);
        return evs__err(EVS_ECLOSED, "postgresql: the store is closing");
    }
    while (pg->nidle) {
        PGconn *c = pg->idle[--pg->nidle];
        /* a connection the server closed while it was idle (a restart) has the goodbye waiting to be
           read: reading it (without blocking) finds it dead before a query is lost on it */
        if (PQconsumeInput(c) && PQstatus(c) == CONNECTION_OK) {
            *out = c;
            pthread_mutex_unlock(&pg->mu);
            return EVS_OK;
        }
        pg->total--;
        PQfinish(c);
    }
    pg->total++; /* a slot taken while connecting, outside the lock */
    pthread_mutex_unlock(&pg->mu);
    int rc = evs__pg_connect_one(pg, out);
    if (rc) {
        pthread_mutex_lock(&pg->mu);
        pg->total--;
        pthread_cond_signal(&pg->pool_cv);
        pthread_mutex_unlock(&pg->mu);
    }
    return rc;
}

int evs__pg_get(evs_pg *pg, PGconn **out) { return pool_get(pg, 0, out); }

int evs__pg_try_get(evs_pg *pg, PGconn **out) { return pool_get(pg, 1, out); }

void evs__pg_put(evs_pg *pg, PGconn *c) {
    if (!c) return;
    int broken = PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE;
    pthread_mutex_lock(&pg->mu);
    if (broken || pg->nidle >= EVS_PG_POOL_MAX) {
        /* one broken connection says the server went away (a restart): the idle ones went with it */
        PGconn *gone[EVS_PG_POOL_MAX];
        size_t ngone = 0;
        if (broken && PQstatus(c) != CONNECTION_OK)
            while (pg->nidle) gone[ngone++] = pg->idle[--pg->nidle];
        pg->total -= 1 + ngone;
        pthread_mutex_unlock(&pg->mu);
        PQfinish(c);
        for (size_t i = 0; i < ngone; i++) PQfinish(gone[i]);
        pthread_mutex_lock(&pg->mu);
    } else {
        pg->idle[pg->nidle++] = c;
    }
    pthread_cond_signal(&pg->pool_cv);
    pthread_mutex_unlock(&pg->mu);
}

/* Prepare the named statement stmt on c unless c has.  NULL when prepared, else PQprepare's failed reply. */
static PGresult *prepare_once(PGconn *c, int stmt, const char *name, const char *sql, int n, const Oid *types) {
    uintptr_t have = (uintptr_t)PQinstanceData(c, conn_event), bit = (uintptr_t)1 << stmt;
    if (have & bit) return NULL;
    PGresult *p = PQprepare(c, name, sql, n, types);
    if (PQresultStatus(p) != PGRES_COMMAND_OK) return p;
    PQclear(p);
    PQsetInstanceData(c, conn_event, (void *)(have | bit));
    return NULL;
}

/*
 * Run sql on c: unnamed (stmt < 0), or as the named statement stmt, which
 * is prepared on c first if c has not prepared it yet.  The reply is
 * PQexecParams' or PQexecPrepared's (a failed PQprepare's if that failed).
 */
static PGresult *exec_on(PGconn *c, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                         const int *lens, const int *fmts, int result_format) {
    if (stmt < 0) return PQexecParams(c, sql, n, types, vals, lens, fmts, result_format);
    char name[24];
    snprintf(name, sizeof name, "evs_q%d", stmt);
    PGresult *p = prepare_once(c, stmt, name, sql, n, types);
    if (p) return p;
    PGresult *r = PQexecPrepared(c, name, n, vals, lens, fmts, result_format);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* the statement is gone (26000: a DISCARD ALL by hand or by a pooler) or its cached plan no longer fits the
       tables (0A000: a column changed type under it): forget it and prepare it again, once */
    if (state && (!strcmp(state, "26000") || !strcmp(state, "0A000"))) {
        PQclear(r);
        char drop[40];
        snprintf(drop, sizeof drop, "DEALLOCATE %s", name);
        PQclear(PQexec(c, drop)); /* 26000 when it was gone already: nothing to undo */
        uintptr_t have = (uintptr_t)PQinstanceData(c, conn_event);
        PQsetInstanceData(c, conn_event, (void *)(have & ~((uintptr_t)1 << stmt)));
        if ((p = prepare_once(c, stmt, name, sql, n, types))) return p;
        r = PQexecPrepared(c, name, n, vals, lens, fmts, result_format);
    }
    return r;
}

PGresult *evs__pg_exec_named(PGconn *c, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                             const int *lens, const int *fmts, int result_format) {
    return exec_on(c, stmt, sql, n, types, vals, lens, fmts, result_format);
}

int evs__pg_send_named(PGconn *c, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                       const int *lens, const int *fmts, int result_format) {
    char name[24];
    snprintf(name, sizeof name, "evs_q%d", stmt);
    PGresult *p = prepare_once(c, stmt, name, sql, n, types);
    if (p) {
        PQclear(p);
        return 0;
    }
    return PQsendQueryPrepared(c, name, n, vals, lens, fmts, result_format);
}

/*
 * A query that changes nothing (a read): on a connection that turns out to
 * be broken (the server restarted since it was last used) it runs once more
 * on a fresh one, since running it twice is harmless.  Ownership: *out is
 * the caller's (PQclear) on success; on failure nothing is left.
 */
static int query(evs_pg *pg, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                 const int *lens, const int *fmts, int result_format, const char *what, PGresult **out) {
    *out = NULL;
    int rc = EVS_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *c;
        if ((rc = evs__pg_get(pg, &c))) return rc;
        PGresult *r = exec_on(c, stmt, sql, n, types, vals, lens, fmts, result_format);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            evs__pg_put(pg, c);
            *out = r;
            return EVS_OK;
        }
        rc = evs__pg_err(c, r, what);
        int broken = PQstatus(c) != CONNECTION_OK;
        PQclear(r);
        evs__pg_put(pg, c);
        if (!broken) break;
    }
    return rc;
}

int evs__pg_query(evs_pg *pg, const char *sql, int n, const Oid *types, const char *const *vals, const int *lens,
                  const int *fmts, int result_format, const char *what, PGresult **out) {
    return query(pg, -1, sql, n, types, vals, lens, fmts, result_format, what, out);
}

int evs__pg_query_named(evs_pg *pg, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                        const int *lens, const int *fmts, int result_format, const char *what, PGresult **out) {
    return query(pg, stmt, sql, n, types, vals, lens, fmts, result_format, what, out);
}

/* ------------------------------------------------------------- the head */

void evs__pg_note_head(evs_pg *pg, uint64_t h) {
    uint64_t cur = atomic_load(&pg->head);
    while (cur < h && !atomic_compare_exchange_weak(&pg->head, &cur, h)) {
    }
    if (cur < h) {
        pthread_mutex_lock(&pg->mu);
        pthread_cond_broadcast(&pg->head_cv);
        pthread_mutex_unlock(&pg->mu);
    }
}
