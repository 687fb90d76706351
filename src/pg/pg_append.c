/*
 * pg_append.c — appends on the PostgreSQL engine: one call of the SQL
 * function evs_append (migrate.c) with every event of the append as arrays
 * in binary format: atomic, one round trip.
 *
 * Appends that arrive while another runs queue up and go together in the
 * next statement, one call of evs_append_batch (group commit, run_batch):
 * evs_append serialises appenders on the head row until commit, so without
 * it concurrent appenders would each wait for the others' WAL flushes in
 * turn.  An append whose connection breaks before the answer arrives has
 * an unknown outcome (EVS_EIO says so); the caller retries it with the same
 * event ids and gets the original result if it had committed (the
 * idempotent path), so nothing is stored twice.
 *
 * Below pg.c (the engine's table, which also answers a conflict on a
 * deleted stream through pg_meta.c) and pg_meta.c (metadata writes append
 * inside their own transaction with evs__pg_append_in_tx).
 */
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "pg/pg_internal.h"

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
    atomic_int done;        /* answered: set by the leader after it posted wake */
    sem_t wake;             /* posted when answered, or when this append is to lead the next batch */
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

/* in_tx: inside the caller's transaction block, where the statement is not prepared (see evs__pg_exec_named) */
static PGresult *req_exec(PGconn *c, pg_req *q, int in_tx) {
    if (in_tx) return PQexecParams(c, APPEND_SQL, 12, APPEND_TYPES, q->vals, q->lens, q->fmts, 1);
    return evs__pg_exec_named(c, EVS_PG_Q_APPEND, APPEND_SQL, 12, APPEND_TYPES, q->vals, q->lens, q->fmts, 1);
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
    PGresult *r = req_exec(c, q, 0);
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
    r = evs__pg_exec_named(c, EVS_PG_Q_BATCH, BATCH_SQL, BATCH_PARAMS, BATCH_TYPES, vals, lens, fmts, 1);
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

int evs__pg_append_grouped(evs_pg *pg, const evs__engine_append *a, evs_append_result *res) {
    pg_req q;
    memset(&q, 0, sizeof q);
    q.a = a;
    q.res = res;
    int rc = req_encode(&q);
    if (rc) goto out;
    /* Each waiting appender sleeps on a semaphore of its own: the leader posts the ones it answered and,
       if appends are queued, the first of them, which leads next.  One condition variable broadcast to
       all had every woken appender take pg->mu again just to see it was answered, one after another on
       the two vCPUs (W2 on PostgreSQL: +7 % by the medians of 8 alternating runs, docs/benchmarks.md). */
    sem_init(&q.wake, 0, 0);
    pthread_mutex_lock(&pg->mu);
    if (pg->q_tail) pg->q_tail->next = &q;
    else pg->q_head = &q;
    pg->q_tail = &q;
    pg->q_len++;
    /* a gathering leader waits for as many appends as the last batch carried: woken once, when they are here */
    if (pg->q_len >= pg->last_batch) pthread_cond_signal(&pg->gather_cv);
    while (!atomic_load(&q.done)) {
        if (pg->leading || !pg->q_head) {
            pthread_mutex_unlock(&pg->mu);
            while (sem_wait(&q.wake) && errno == EINTR) {
            }
            /* answered: the leader posted every wake of its batch before it set any done, so nothing
               touches q once done is seen and it may go (without pg->mu) */
            if (atomic_load(&q.done)) goto answered;
            pthread_mutex_lock(&pg->mu);
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
        for (pg_req *b = batch; b; b = b->next)
            if (b != &q) sem_post(&b->wake);
        for (pg_req *b = batch, *nx; b; b = nx) {
            nx = b->next;
            atomic_store(&b->done, 1);
        }
        pg->leading = 0;
        if (pg->q_head) sem_post(&pg->q_head->wake); /* it leads next (or whoever queues first does) */
    }
    pthread_mutex_unlock(&pg->mu);
answered:
    sem_destroy(&q.wake);
    rc = q.rc;
    if (rc) evs__err(rc, "%s", q.msg);
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
        PGresult *r = req_exec(c, &q, 1);
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
