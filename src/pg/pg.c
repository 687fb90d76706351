/*
 * pg.c — the PostgreSQL storage engine: connections, appends, the head and
 * evs_wait_for.  Readers are in pg_read.c, the schema in migrate.c.
 *
 * Connections: a pool of up to EVS_PG_POOL_MAX libpq connections, each
 * used by one thread at a time; a connection that breaks is dropped and
 * the next call connects afresh, so a restarted database costs the calls
 * in flight an EVS_EIO and nothing more.
 *
 * Appends: one call of the SQL function evs_append (migrate.c) with every
 * event of the append as arrays in binary format: atomic, one round trip.
 * Appends that arrive while another runs queue up and go together in the
 * next statement, one call of evs_append_batch (group commit, run_batch):
 * evs_append serialises
 * appenders on the head row until commit, so without it concurrent
 * appenders would each wait for the others' WAL flushes in turn.  An append whose connection breaks
 * before the answer arrives has an unknown outcome (EVS_EIO says so); the
 * caller retries it with the same event ids and gets the original result
 * if it had committed (the idempotent path), so nothing is stored twice.
 *
 * The head and evs_wait_for: a listener thread holds one more connection,
 * LISTENs on EVS_PG_CHANNEL and raises the head with each notification
 * (evs_append notifies the new head at commit, in commit order), so a
 * waiter in any process sees the events of every process.  After a
 * reconnect it LISTENs again and then reads the head row, so nothing
 * committed while it was away is missed.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-events.h>

#include "core/core.h"
#include "pg/pg.h"
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

static int connect_one(evs_pg *pg, PGconn **out) {
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
    int rc = connect_one(pg, out);
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

static int read_head(PGconn *c, uint64_t *h) {
    PGresult *r = PQexec(c, "SELECT global_position FROM event_store_head WHERE id = 1");
    int rc = EVS_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) rc = evs__pg_err(c, r, "postgresql: read the head");
    else *h = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}

/* Connect, LISTEN, then read the head: in that order nothing committed in between is missed.  A forget
   notified while no one listened is not missed either: the key generation moves (cached keys are dropped). */
static PGconn *listen_connect(evs_pg *pg) {
    PGconn *c;
    if (connect_one(pg, &c)) return NULL;
    PGresult *r = PQexec(c, "LISTEN " EVS_PG_CHANNEL "; LISTEN " EVS_PG_KEYS_CHANNEL);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    uint64_t h = 0;
    if (!ok || read_head(c, &h)) {
        PQfinish(c);
        return NULL;
    }
    atomic_fetch_add(&pg->keys_gen, 1);
    evs__pg_note_head(pg, h);
    return c;
}

static void *listener_main(void *arg) {
    evs_pg *pg = arg;
    PGconn *c = NULL;
    for (;;) {
        pthread_mutex_lock(&pg->mu);
        int closing = pg->closing;
        pthread_mutex_unlock(&pg->mu);
        if (closing) break;
        if (!c && !(c = listen_connect(pg))) {
            /* the database is away: try again shortly (close wakes us through the pipe) */
            struct pollfd w = {pg->wake[0], POLLIN, 0};
            poll(&w, 1, 250);
            continue;
        }
        struct pollfd fds[2] = {{PQsocket(c), POLLIN, 0}, {pg->wake[0], POLLIN, 0}};
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0 || !(fds[0].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
            continue;
        }
        PGnotify *nt;
        uint64_t top = 0;
        while ((nt = PQnotifies(c))) {
            if (!strcmp(nt->relname, EVS_PG_KEYS_CHANNEL)) {
                atomic_fetch_add(&pg->keys_gen, 1); /* a subject was forgotten: keystore.c drops cached keys */
            } else {
                uint64_t h = strtoull(nt->extra, NULL, 10);
                if (h > top) top = h;
            }
            PQfreemem(nt);
        }
        if (top) evs__pg_note_head(pg, top);
    }
    if (c) PQfinish(c);
    return NULL;
}

/* ------------------------------------------------------------- open, close */

static int pg_close(void *e) {
    evs_pg *pg = e;
    if (!pg) return EVS_OK;
    pthread_mutex_lock(&pg->mu);
    pg->closing = 1;
    pthread_cond_broadcast(&pg->head_cv);
    pthread_cond_broadcast(&pg->pool_cv);
    pthread_mutex_unlock(&pg->mu);
    if (pg->listener_started) {
        ssize_t w = write(pg->wake[1], "x", 1);
        (void)w;
        pthread_join(pg->listener, NULL);
    }
    for (size_t i = 0; i < pg->nidle; i++) PQfinish(pg->idle[i]);
    if (pg->wake[0] >= 0) close(pg->wake[0]);
    if (pg->wake[1] >= 0) close(pg->wake[1]);
    pthread_cond_destroy(&pg->head_cv);
    pthread_cond_destroy(&pg->pool_cv);
    pthread_cond_destroy(&pg->done_cv);
    pthread_cond_destroy(&pg->gather_cv);
    pthread_mutex_destroy(&pg->mu);
    free(pg->url);
    free(pg);
    return EVS_OK;
}

static int pg_open(const char *url, const evs__engine_settings *set, void **out) {
    int rc;
    *out = NULL;
    evs_pg *pg = calloc(1, sizeof *pg);
    if (!pg) return evs__err(EVS_ENOMEM, "postgresql: out of memory");
    pg->wake[0] = pg->wake[1] = -1;
    pthread_mutex_init(&pg->mu, NULL);
    pthread_cond_init(&pg->pool_cv, NULL);
    pthread_condattr_t ga;
    pthread_condattr_init(&ga);
    pthread_condattr_setclock(&ga, CLOCK_MONOTONIC);
    pthread_cond_init(&pg->done_cv, NULL);
    pthread_cond_init(&pg->gather_cv, &ga);
    pthread_condattr_destroy(&ga);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pg->head_cv, &ca);
    pthread_condattr_destroy(&ca);
    pg->set = *set;
    if (!(pg->url = strdup(url))) {
        rc = evs__err(EVS_ENOMEM, "postgresql: out of memory");
        goto fail;
    }
    if (pipe(pg->wake) != 0) {
        rc = evs__err_errno(-errno, "postgresql: pipe");
        goto fail;
    }
    PGconn *c;
    if ((rc = evs__pg_get(pg, &c))) goto fail;
    /* a read-only open creates nothing: the schema must be there */
    if (!(set->flags & EVS_OPEN_READONLY)) rc = evs__pg_migrate(c);
    uint64_t h = 0;
    if (!rc) rc = read_head(c, &h);
    if (rc && (set->flags & EVS_OPEN_READONLY))
        rc = evs__err(EVS_ENOTFOUND, "postgresql: no evstore schema in this database (open it once without read-only)");
    evs__pg_put(pg, c);
    if (rc) goto fail;
    atomic_store(&pg->head, h);
    if (pthread_create(&pg->listener, NULL, listener_main, pg) != 0) {
        rc = evs__err(EVS_ENOMEM, "postgresql: cannot start the listener thread");
        goto fail;
    }
    pg->listener_started = 1;
    *out = pg;
    return EVS_OK;
fail:;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", evs_errmsg());
    pg_close(pg);
    return evs__err(rc, "%s", msg);
}

/* ------------------------------------------------------------- append */

static const char APPEND_SQL[] =
    "SELECT status, first_stream_position, first_global_position, recorded_at, actual, detail "
    "FROM evs_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/* One append on its way: its parameters in binary format, then its outcome. */
typedef struct pg_req {
    const evs__engine_append *a;
    evs_append_result *res;
    evs_pgbuf b[10];
    char stream[EVS_MAX_STREAM_NAME + 1], expected[24];
    const char *vals[12];
    int lens[12], fmts[12];
    int rc;
    char msg[512];          /* the message of rc, written by whichever thread ran it */
    int done;
    size_t bytes;           /* of its encoded arrays: what it adds to a batch's parameters */
    struct pg_req *next;
} pg_req;

static const Oid APPEND_TYPES[12] = {EVS_PG_TEXT, EVS_PG_INT8, 2951, 1009, 1009, 1007, 1001, 1001, 1009, 2951, 2951, 1185};

static int req_encode(pg_req *q) {
    const evs__engine_append *a = q->a;
    size_t n = a->n;
    static const uint32_t oids[10] = {EVS_PG_UUID, EVS_PG_TEXT,  EVS_PG_TEXT, EVS_PG_INT4, EVS_PG_BYTEA,
                                      EVS_PG_BYTEA, EVS_PG_TEXT, EVS_PG_UUID, EVS_PG_UUID, EVS_PG_TIMESTAMPTZ};
    for (int k = 0; k < 10; k++) evs__pg_array_begin(&q->b[k], oids[k], n);
    for (size_t i = 0; i < n; i++) {
        const evs_event_in *ev = &a->ev[i];
        unsigned char v4[4], ts[8];
        uint32_t ver = ev->event_version;
        int64_t us = ev->occurred_at / 1000 - EVS_PG_EPOCH_US;
        for (int k = 0; k < 4; k++) v4[k] = (unsigned char)(ver >> (24 - 8 * k));
        for (int k = 0; k < 8; k++) ts[k] = (unsigned char)((uint64_t)us >> (56 - 8 * k));
        evs__pg_array_elem(&q->b[0], a->ids[i].b, 16);
        evs__pg_array_elem(&q->b[1], a->stypes[i], strlen(a->stypes[i]));
        evs__pg_array_elem(&q->b[2], ev->event_type, strlen(ev->event_type));
        evs__pg_array_elem(&q->b[3], v4, 4);
        evs__pg_array_elem(&q->b[4], ev->data_len ? ev->data : "", ev->data_len);
        evs__pg_array_elem(&q->b[5], ev->metadata_len ? ev->metadata : "", ev->metadata_len);
        evs__pg_array_elem(&q->b[6], a->tags[i], a->tags[i] ? strlen(a->tags[i]) : 0);
        evs__pg_array_elem(&q->b[7], ev->causation_id ? ev->causation_id->b : NULL, 16);
        evs__pg_array_elem(&q->b[8], ev->correlation_id ? ev->correlation_id->b : NULL, 16);
        evs__pg_array_elem(&q->b[9], ts, 8);
    }
    for (int k = 0; k < 10; k++)
        if (q->b[k].oom) return evs__err(EVS_ENOMEM, "postgresql: out of memory encoding %zu events", n);
    snprintf(q->stream, sizeof q->stream, "%.*s", (int)a->stream_len, a->stream);
    snprintf(q->expected, sizeof q->expected, "%lld", (long long)a->expected);
    q->vals[0] = q->stream;
    q->vals[1] = q->expected;
    for (int k = 0; k < 10; k++) {
        q->vals[k + 2] = q->b[k].p;
        q->lens[k + 2] = (int)q->b[k].len;
        q->fmts[k + 2] = 1;
        q->bytes += q->b[k].len;
    }
    return EVS_OK;
}

static void req_set(pg_req *q, int rc) {
    q->rc = rc;
    if (rc) snprintf(q->msg, sizeof q->msg, "%s", evs_errmsg());
}

static PGresult *req_exec(PGconn *c, pg_req *q) {
    return PQexecParams(c, APPEND_SQL, 12, APPEND_TYPES, q->vals, q->lens, q->fmts, 1);
}

static int result_ok(const PGresult *r) {
    return PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 6;
}

/* An append of a's events has committed: the head and the counters move. */
static void note_appended(evs_pg *pg, const evs__engine_append *a, const evs_append_result *res) {
    evs__pg_note_head(pg, res->last_global_position);
    atomic_fetch_add(&pg->st_appends, 1);
    atomic_fetch_add(&pg->st_events, a->n);
}

/* What evs_append (or evs_append_batch in its row) answered for q; committed: its transaction has committed
   (else the caller notes it). */
static uint32_t req_answer(evs_pg *pg, pg_req *q, const PGresult *r, int row, int committed) {
    const evs__engine_append *a = q->a;
    evs_append_result *res = q->res;
    uint32_t status = evs__pg_be32(PQgetvalue(r, row, 0));
    uint64_t actual = evs__pg_be64(PQgetvalue(r, row, 4));
    if (status == 0 || status == 1) {
        res->first_stream_position = evs__pg_be64(PQgetvalue(r, row, 1));
        res->last_stream_position = res->first_stream_position + a->n - 1;
        res->first_global_position = evs__pg_be64(PQgetvalue(r, row, 2));
        res->last_global_position = res->first_global_position + a->n - 1;
        res->recorded_at = evs__pg_ts_ns(PQgetvalue(r, row, 3));
        res->idempotent = status == 1;
        if (status == 0 && committed) note_appended(pg, a, res);
        req_set(q, EVS_OK);
    } else if (status == 2) {
        char exp[32];
        if (a->expected == EVS_EXPECT_ANY) snprintf(exp, sizeof exp, "any");
        else if (a->expected == EVS_EXPECT_EXISTS) snprintf(exp, sizeof exp, "exists");
        else snprintf(exp, sizeof exp, "%lld", (long long)a->expected);
        res->actual_version = actual;
        req_set(q, evs__err(EVS_ECONFLICT, "Concurrency conflict: expected version %s, actual version %llu", exp,
                            (unsigned long long)actual));
    } else {
        req_set(q, evs__err(EVS_EDUPLICATE, "%s", PQgetvalue(r, row, 5)));
    }
    return status;
}

static void req_outcome(evs_pg *pg, pg_req *q, const PGresult *r, int row) { req_answer(pg, q, r, row, 1); }

static int exec_failed(PGconn *c, const PGresult *r, const char *what) {
    int rc = evs__pg_err(c, r, what);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512]; /* a copy: the message is the buffer evs__err writes */
        snprintf(msg, sizeof msg, "%s", evs_errmsg());
        evs__err(rc, "%s (the connection broke: the append may or may not have been stored; retry it with the "
                     "same event ids, a stored append then answers idempotently)", msg);
    }
    return rc;
}

/* One append in a transaction of its own. */
static void run_one(evs_pg *pg, PGconn *c, pg_req *q) {
    PGresult *r = req_exec(c, q);
    if (result_ok(r)) req_outcome(pg, q, r, 0);
    else req_set(q, exec_failed(c, r, "postgresql: append"));
    PQclear(r);
}

/* The header evs__pg_array_begin writes: dimensions, flags, element type, length, lower bound. */
#define ARRAY_HDR 20
#define BATCH_PARAMS 15

static const char BATCH_SQL[] =
    "SELECT status, first_stream_position, first_global_position, recorded_at, actual, detail "
    "FROM evs_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/* p_snames text[], p_sidx int4[], p_expected int8[], p_count int4[], p_app int4[], then the event arrays */
static const Oid BATCH_TYPES[BATCH_PARAMS] = {1009, 1007, 1016, 1007, 1007, 2951, 1009, 1009,
                                              1007, 1001, 1001, 1009, 2951, 2951, 1185};

static void pgbuf_elem32(evs_pgbuf *b, uint32_t v) {
    evs__pgbuf_be32(b, 4);
    evs__pgbuf_be32(b, v);
}

/*
 * The parameters of evs_append_batch for the n appends of list: the
 * streams once each (an append names its stream by index), per append its
 * expected version and event count, and every event array as the appends'
 * own arrays (req_encode) laid end to end under one header.  Ownership:
 * b[0 .. BATCH_PARAMS-1].p are the caller's (free), also on failure.
 */
static int batch_encode(pg_req *list, size_t n, evs_pgbuf *b) {
    static const uint32_t ev_oids[10] = {EVS_PG_UUID, EVS_PG_TEXT,  EVS_PG_TEXT, EVS_PG_INT4, EVS_PG_BYTEA,
                                         EVS_PG_BYTEA, EVS_PG_TEXT, EVS_PG_UUID, EVS_PG_UUID, EVS_PG_TIMESTAMPTZ};
    const char *names[EVS_PG_BATCH_MAX];
    uint32_t sidx[EVS_PG_BATCH_MAX];
    size_t ns = 0, total = 0, i = 0;
    for (pg_req *q = list; q; q = q->next, i++) {
        size_t j = 0;
        while (j < ns && strcmp(names[j], q->stream)) j++;
        if (j == ns) names[ns++] = q->stream;
        sidx[i] = (uint32_t)j + 1;
        total += q->a->n;
    }
    evs__pg_array_begin(&b[0], EVS_PG_TEXT, ns);
    for (size_t j = 0; j < ns; j++) evs__pg_array_elem(&b[0], names[j], strlen(names[j]));
    evs__pg_array_begin(&b[1], EVS_PG_INT4, n);
    evs__pg_array_begin(&b[2], EVS_PG_INT8, n);
    evs__pg_array_begin(&b[3], EVS_PG_INT4, n);
    evs__pg_array_begin(&b[4], EVS_PG_INT4, total);
    i = 0;
    for (pg_req *q = list; q; q = q->next, i++) {
        pgbuf_elem32(&b[1], sidx[i]);
        evs__pgbuf_be32(&b[2], 8);
        evs__pgbuf_be64(&b[2], (uint64_t)q->a->expected);
        pgbuf_elem32(&b[3], (uint32_t)q->a->n);
        for (size_t k = 0; k < q->a->n; k++) pgbuf_elem32(&b[4], (uint32_t)i + 1);
    }
    for (int k = 0; k < 10; k++) {
        evs__pg_array_begin(&b[5 + k], ev_oids[k], total);
        for (pg_req *q = list; q; q = q->next) evs__pgbuf_put(&b[5 + k], q->b[k].p + ARRAY_HDR, q->b[k].len - ARRAY_HDR);
    }
    for (int k = 0; k < BATCH_PARAMS; k++)
        if (b[k].oom) return evs__err(EVS_ENOMEM, "postgresql: out of memory encoding a batch of %zu appends", n);
    return EVS_OK;
}

/*
 * Group commit: the appends that queued while the last batch ran go in
 * one call of evs_append_batch (migrate.c), one statement and one commit
 * (one WAL flush) for all, one round trip.  Each keeps its own outcome:
 * the function answers conflicts and duplicates with a status row per
 * append, never an error, so one append's conflict leaves the others to
 * commit.  An error that aborts the statement (none is expected; a
 * trigger or constraint an operator added could) rolls the whole batch
 * back, and every append of it then runs on its own (run_one), so the one
 * that fails fails alone and the others commit.
 */
static void run_batch(evs_pg *pg, pg_req *list, size_t n) {
    PGconn *c;
    atomic_fetch_add(&pg->st_batches, 1);
    int rc = evs__pg_get(pg, &c);
    if (rc) {
        for (pg_req *q = list; q; q = q->next) req_set(q, rc);
        return;
    }
    if (n == 1) {
        run_one(pg, c, list);
        evs__pg_put(pg, c);
        return;
    }
    evs_pgbuf b[BATCH_PARAMS];
    const char *vals[BATCH_PARAMS];
    int lens[BATCH_PARAMS], fmts[BATCH_PARAMS];
    PGresult *r = NULL;
    memset(b, 0, sizeof b);
    if ((rc = batch_encode(list, n, b))) {
        for (pg_req *q = list; q; q = q->next) req_set(q, rc);
        goto out;
    }
    for (int k = 0; k < BATCH_PARAMS; k++) {
        vals[k] = b[k].p;
        lens[k] = (int)b[k].len;
        fmts[k] = 1;
    }
    r = PQexecParams(c, BATCH_SQL, BATCH_PARAMS, BATCH_TYPES, vals, lens, fmts, 1);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == (int)n && PQnfields(r) == 6) {
        int row = 0;
        for (pg_req *q = list; q; q = q->next) req_outcome(pg, q, r, row++);
    } else if (PQstatus(c) != CONNECTION_OK) {
        /* the outcome is unknown: every append of the batch says so */
        rc = exec_failed(c, r, "postgresql: append (group commit)");
        for (pg_req *q = list; q; q = q->next) req_set(q, rc);
    } else if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        /* committed, but the answer does not fit the batch (cannot happen) */
        for (pg_req *q = list; q; q = q->next)
            req_set(q, evs__err(EVS_EIO, "postgresql: append: a group commit of %zu appends answered %d rows; the "
                                         "append may or may not have been stored: retry it with the same event ids "
                                         "(a stored append then answers idempotently)", n, PQntuples(r)));
    } else {
        /* nothing was committed: each append again on its own, so one that fails fails alone */
        for (pg_req *q = list; q; q = q->next) run_one(pg, c, q);
    }
out:
    PQclear(r);
    for (int k = 0; k < BATCH_PARAMS; k++) free(b[k].p);
    evs__pg_put(pg, c);
}

static int pg_append(void *e, const evs__engine_append *a, evs_append_result *res) {
    evs_pg *pg = e;
    pg_req q;
    memset(&q, 0, sizeof q);
    q.a = a;
    q.res = res;
    int rc = req_encode(&q);
    if (rc) goto out;
    pthread_mutex_lock(&pg->mu);
    if (pg->q_tail) pg->q_tail->next = &q;
    else pg->q_head = &q;
    pg->q_tail = &q;
    pg->q_len++;
    pthread_cond_signal(&pg->gather_cv);
    while (!q.done) {
        if (pg->leading || !pg->q_head) {
            pthread_cond_wait(&pg->done_cv, &pg->mu);
            continue;
        }
        /* lead one batch.  First wait a little (at most EVS_PG_GATHER_US) for as many appends as the
           last batch carried: the appenders it answered are on their way back, and a batch that
           leaves without them makes the next one small, alternating big and small commits */
        pg->leading = 1;
        if (pg->last_batch > 1 && pg->q_len < pg->last_batch) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_nsec += EVS_PG_GATHER_US * 1000L;
            if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
            while (pg->q_len < pg->last_batch && !pg->closing &&
                   pthread_cond_timedwait(&pg->gather_cv, &pg->mu, &dl) != ETIMEDOUT) {
            }
        }
        pg_req *batch = pg->q_head, *last = batch;
        size_t n = 1, bytes = batch->bytes;
        /* a parameter of libpq is at most INT_MAX bytes (PostgreSQL takes 1 GB): big appends go in smaller batches */
        while (last->next && n < EVS_PG_BATCH_MAX && bytes + last->next->bytes <= EVS_PG_BATCH_BYTES)
            last = last->next, n++, bytes += last->bytes;
        pg->q_head = last->next;
        if (!pg->q_head) pg->q_tail = NULL;
        last->next = NULL;
        pg->q_len -= n;
        pg->last_batch = n;
        pthread_mutex_unlock(&pg->mu);
        run_batch(pg, batch, n);
        pthread_mutex_lock(&pg->mu);
        for (pg_req *b = batch, *nx; b; b = nx) {
            nx = b->next;
            b->done = 1;
        }
        pg->leading = 0; /* whoever waits and finds work queued leads next */
        pthread_cond_broadcast(&pg->done_cv);
    }
    pthread_mutex_unlock(&pg->mu);
    rc = q.rc;
    if (rc) evs__err(rc, "%s", q.msg);
    if (rc == EVS_ECONFLICT) rc = evs__pg_meta_after_conflict(pg, a, res); /* deleted streams (pg_meta.c) */
out:
    for (int k = 0; k < 10; k++) free(q.b[k].p);
    return rc;
}

int evs__pg_append_in_tx(evs_pg *pg, PGconn *c, const evs__engine_append *a, evs_append_result *res,
                         uint32_t *status) {
    pg_req q;
    memset(&q, 0, sizeof q);
    q.a = a;
    q.res = res;
    *status = 3;
    int rc = req_encode(&q);
    if (!rc) {
        PGresult *r = req_exec(c, &q);
        if (result_ok(r)) {
            *status = req_answer(pg, &q, r, 0, 0);
            rc = q.rc;
            if (rc) evs__err(rc, "%s", q.msg);
        } else {
            rc = exec_failed(c, r, "postgresql: append");
        }
        PQclear(r);
    }
    for (int k = 0; k < 10; k++) free(q.b[k].p);
    return rc;
}

void evs__pg_appended(evs_pg *pg, const evs__engine_append *a, const evs_append_result *res) {
    note_appended(pg, a, res);
}

/* ------------------------------------------------------------- head, wait, stats */

static uint64_t pg_head(void *e) { return atomic_load(&((evs_pg *)e)->head); }

static int pg_wait_for(void *e, uint64_t position, int timeout_ms, uint64_t *head) {
    evs_pg *pg = e;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) dl.tv_sec++, dl.tv_nsec -= 1000000000;
    }
    int rc = EVS_OK;
    pthread_mutex_lock(&pg->mu);
    while (atomic_load(&pg->head) < position) {
        if (pg->closing) {
            rc = EVS_ECLOSED;
            break;
        }
        if (timeout_ms < 0) pthread_cond_wait(&pg->head_cv, &pg->mu);
        else if (pthread_cond_timedwait(&pg->head_cv, &pg->mu, &dl) == ETIMEDOUT && atomic_load(&pg->head) < position) {
            rc = EVS_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&pg->mu);
    if (head) *head = atomic_load(&pg->head);
    if (rc == EVS_ECLOSED) return evs__err(rc, "wait: the store is closing");
    if (rc == EVS_ETIMEDOUT) return evs__err(rc, "wait: timed out before position %llu", (unsigned long long)position);
    return EVS_OK;
}

static int pg_stats(void *e, evs_store_stats *out) {
    evs_pg *pg = e;
    PGconn *c;
    int rc = evs__pg_get(pg, &c);
    if (rc) return rc;
    PGresult *r = PQexec(c, "SELECT (SELECT count(*) FROM event_streams), pg_total_relation_size('event_store')");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        rc = evs__pg_err(c, r, "postgresql: stats");
    } else {
        out->streams = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        out->log_bytes = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    }
    PQclear(r);
    evs__pg_put(pg, c);
    out->head = atomic_load(&pg->head);
    out->appends = atomic_load(&pg->st_appends);
    out->events_written = atomic_load(&pg->st_events);
    out->batches = atomic_load(&pg->st_batches);
    return rc;
}

static int pg_event_position(void *e, const evs_uuid *id, uint64_t *gpos) {
    evs_pg *pg = e;
    char b[37];
    evs_uuid_format(id, b);
    const char *vals[1] = {b};
    PGconn *c;
    int rc = evs__pg_get(pg, &c);
    if (rc) return rc;
    PGresult *r = PQexecParams(c, "SELECT global_position FROM event_store WHERE event_id = $1::uuid", 1, NULL, vals,
                               NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) rc = evs__pg_err(c, r, "postgresql: find an event id");
    else if (PQntuples(r) == 0) rc = evs__err(EVS_ENOTFOUND, "event %s not found", b);
    else *gpos = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    evs__pg_put(pg, c);
    return rc;
}

static const evs_engine PG_ENGINE = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .append = pg_append,
    .append_if = evs__pg_append_if,
    .read_stream = evs__pg_read_stream,
    .read_all = evs__pg_read_all,
    .reader_next = evs__pg_reader_next,
    .reader_position = evs__pg_reader_position,
    .reader_close = evs__pg_reader_close,
    .stream_info = evs__pg_stream_info,
    .list_streams = evs__pg_list_streams,
    .head = pg_head,
    .wait_for = pg_wait_for,
    .stats = pg_stats,
    .event_position = pg_event_position,
    .meta_get = evs__pg_meta_get,
    .meta_set = evs__pg_meta_set,
    .check = evs__pg_check,
    .key_get = evs__pg_key_get,
    .key_forget = evs__pg_key_forget,
    .key_master = evs__pg_key_master,
    .key_generation = evs__pg_key_generation,
};

const evs_engine *evs__pg_engine(void) { return &PG_ENGINE; }
