/*
 * pg_internal.h — shared by the PostgreSQL engine's files (src/pg): the
 * engine handle with its connection pool, the listener that turns NOTIFY
 * into evs_wait_for wake-ups, and small helpers for libpq's binary format.
 * Not part of the public API.
 */
#ifndef EVS_PG_INTERNAL_H
#define EVS_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "evstore.h"
#include "engine/engine.h"

/* Connections kept per engine: appenders beyond this wait for one to come back. */
#define EVS_PG_POOL_MAX 32
/* Appends one group commit carries at most. */
#define EVS_PG_BATCH_MAX 256
/* ... and at most this many bytes of encoded events (evs_append_batch's arrays), a single append aside. */
#define EVS_PG_BATCH_BYTES (64u << 20)
/* How long a batch's leader waits for the appenders of the last batch to come back. */
#define EVS_PG_GATHER_US 1000
/* The SQLSTATE the schema raises for a write to a hard-deleted stream (migrate.c): EVS_EDELETED. */
#define EVS_PG_SQLSTATE_DELETED "EV001"
/* The SQLSTATE the schema raises for an unsealed event in an encrypted stream (migrate.c 6): EVS_EKEY. */
#define EVS_PG_SQLSTATE_PLAINTEXT "EV002"
/* The channel a forget notifies with the subject (migrate.c 6): every server drops its cached keys. */
#define EVS_PG_KEYS_CHANNEL "evs_keys"
/* The channel evs_append() notifies with the new head (decimal text). */
#define EVS_PG_CHANNEL "evs_events"

typedef struct evs_pg {
    char *url;
    evs__engine_settings set;
    pthread_mutex_t mu;
    pthread_cond_t pool_cv;      /* a connection came back */
    PGconn *idle[EVS_PG_POOL_MAX];
    size_t nidle, total;
    /* the head: the last global position known committed (all below it are visible) */
    _Atomic uint64_t head;
    pthread_cond_t head_cv;      /* broadcast when head grows, under mu */
    int closing;
    /* group commit (pg_append.c): appenders queue; one at a time leads a batch */
    struct pg_req *q_head, *q_tail;
    int leading;
    pthread_cond_t gather_cv;     /* the queue reached the last batch's size, under mu */
    size_t q_len, last_batch;     /* queued now; size of the last batch */
    _Atomic uint64_t st_appends, st_events, st_batches; /* since open (evs_store_get_stats) */
    _Atomic uint64_t keys_gen;   /* raised by the listener on each forget and reconnect (pg_keys.c) */
    pthread_t listener;
    int listener_started;
    int wake[2];                 /* a pipe: close wakes the listener's poll */
} evs_pg;

/* ---- pg_conn.c */
/* A new connection to pg's URL, set up as every connection of the engine is.  Ownership: *out (PQfinish). */
int evs__pg_connect_one(evs_pg *pg, PGconn **out);
/* Take a connection from the pool (connecting if none is idle). */
int evs__pg_get(evs_pg *pg, PGconn **out);
/*
 * The same without waiting, for work that is only worth doing with
 * connections to spare (a reader's read-ahead, pg_read.c): 1 (no message)
 * when half the pool or more is in use, so read-ahead never takes the
 * connections that appends and other readers wait for; else as
 * evs__pg_get.
 */
int evs__pg_try_get(evs_pg *pg, PGconn **out);
/* Return it; a broken connection (bad status, or an error in flight) is closed instead. */
void evs__pg_put(evs_pg *pg, PGconn *c);
/* Run a read-only query (PQexecParams' arguments), once more on a fresh connection when the first
   turns out broken.  Ownership: *out (PQclear) on success. */
int evs__pg_query(evs_pg *pg, const char *sql, int n, const Oid *types, const char *const *vals, const int *lens,
                  const int *fmts, int result_format, const char *what, PGresult **out);
/*
 * The same as a named prepared statement, for the queries a reader runs
 * page after page: planning alone was a quarter of the backend's samples in
 * a stream read, and prepared a whole stream read ran ~2x as fast.  stmt
 * names the statement (EVS_PG_Q_*); sql must be the same text every time
 * for one stmt.  Each connection prepares it the first time it runs it;
 * PostgreSQL then keeps a generic plan when it costs no more than the plans
 * for the values.
 */
enum { EVS_PG_Q_STREAM_RANGE, EVS_PG_Q_STREAM_BWD, EVS_PG_Q_ALL_FWD, EVS_PG_Q_ALL_BWD, EVS_PG_Q_APPEND,
       EVS_PG_Q_BATCH, EVS_PG_NQ };
int evs__pg_query_named(evs_pg *pg, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                        const int *lens, const int *fmts, int result_format, const char *what, PGresult **out);
/*
 * Run the named statement stmt on c once, outside a transaction block (a
 * statement PostgreSQL lost is prepared again, which an aborted
 * transaction would refuse): the appends, whose parse and plan were ~5 %
 * of the backend's time in a group commit.  Ownership: the reply is the
 * caller's (PQclear).
 */
PGresult *evs__pg_exec_named(PGconn *c, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                             const int *lens, const int *fmts, int result_format);
/*
 * Send the named statement stmt on c without waiting for its reply
 * (PQsendQueryPrepared; prepared on c first, as above): 1 sent, 0 not
 * (the caller reads PQerrorMessage or simply runs the query another way).
 */
int evs__pg_send_named(PGconn *c, int stmt, const char *sql, int n, const Oid *types, const char *const *vals,
                       const int *lens, const int *fmts, int result_format);
/* Raise the known head to h and wake waiters. */
void evs__pg_note_head(evs_pg *pg, uint64_t h);
/* An error from a failed query: EVS_EIO with libpq's message, prefixed with what. */
int evs__pg_err(PGconn *c, const PGresult *r, const char *what);

/* ---- pg_append.c */
/* An append through the group commit: queued with the appends that arrive while another batch runs.
   A conflict is answered as the SQL function answered it (pg.c then asks pg_meta.c about deletes). */
int evs__pg_append_grouped(evs_pg *pg, const evs__engine_append *a, evs_append_result *res);
/*
 * Append a on connection c inside the caller's open transaction, without
 * group commit (pg_cond.c), filling res as evs_append() answered.
 * *status: 0 appended (not committed yet: after its COMMIT the caller
 * calls evs__pg_appended), 1 an idempotent retry, 2 a conflict, 3 an id
 * stored elsewhere.  Returns EVS_OK for 0 and 1, EVS_ECONFLICT or
 * EVS_EDUPLICATE (with the message) for 2 and 3, or the query's error.
 */
int evs__pg_append_in_tx(evs_pg *pg, PGconn *c, const evs__engine_append *a, evs_append_result *res,
                         uint32_t *status);
/* An append made by evs__pg_append_in_tx has committed: raise the head, count it. */
void evs__pg_appended(evs_pg *pg, const evs__engine_append *a, const evs_append_result *res);
/* evs_append_if on this engine (pg_cond.c). */
int evs__pg_append_if(void *e, const evs__engine_append *a, const evs_append_condition *cond, evs_append_result *res);

/* Stream metadata (pg_meta.c): the engine table's meta_get and meta_set. */
int evs__pg_meta_get(void *e, const char *stream, char **json, size_t *len, uint64_t *meta_version,
                     evs_stream_metadata *m, uint64_t *stream_version);
int evs__pg_meta_set(void *e, const evs__meta_write *mw, int64_t expected, uint64_t *version_out);
/*
 * An append answered EVS_ECONFLICT (pg.c): a hard-deleted stream says so
 * instead (EVS_EDELETED, as the embedded engine answers whatever the
 * expected version), and "no stream" holds for a soft-deleted one: the
 * append is made after its last event, provided the delete still stands.
 * Returns the append's final code (res updated).
 */
int evs__pg_meta_after_conflict(evs_pg *pg, const evs__engine_append *a, evs_append_result *res);
/*
 * The SQL condition (on event_store e) that the metadata of e's stream hides
 * e, for $all reads (pg_read.c; a stream read turns the same rules into
 * bounds computed once per page, EVS_PG_STREAM_FROM/EVS_PG_STREAM_AGE).
 * "OFFSET 0" keeps PostgreSQL from turning the NOT EXISTS into an anti join:
 * it planned that as a hash anti join, which does not keep the index order,
 * so every page sorted every event from its position to the head (a whole
 * $all read quadratic: 3,000 events/s over 20,000 of 235,000 events).  As a
 * subplan it is one probe of event_stream_metadata's key per row, and the
 * page is the first LIMIT rows of the global_position index.
 */
#define EVS_PG_HIDDEN                                                                                             \
    "EXISTS (SELECT 1 FROM event_stream_metadata m LEFT JOIN event_streams s ON s.aggregate_id = m.aggregate_id " \
    "WHERE m.aggregate_id = e.aggregate_id AND (m.tombstone OR e.stream_position < m.truncate_before "            \
    "OR (m.max_count IS NOT NULL AND e.stream_position + m.max_count <= s.version) "                             \
    "OR (m.max_age IS NOT NULL AND e.recorded_at < statement_timestamp() - m.max_age * interval '1 second')) "    \
    "OFFSET 0)"

/* Subject keys of crypto-shredding (pg_keys.c): the engine table's key_* (engine/engine.h). */
int evs__pg_key_get(void *e, const char *subject, size_t n, const uint8_t *create, size_t create_len, int *state,
                    uint8_t *out, size_t cap, size_t *out_len);
int evs__pg_key_forget(void *e, const char *subject, size_t n);
int evs__pg_key_master(void *e, const uint8_t *check, size_t len, uint8_t *out, size_t cap, size_t *out_len);
uint64_t evs__pg_key_generation(void *e);

/* evs_store_check on this engine (pg_check.c). */
int evs__pg_check(void *e, evs_check_report *rep);

/* Create or upgrade the schema (migrate.c), under an advisory lock. */
int evs__pg_migrate(PGconn *c);

/* Readers (pg_read.c). */
int evs__pg_read_stream(void *e, const char *stream, uint64_t from, int direction, size_t limit, void **out);
int evs__pg_read_all(void *e, uint64_t from, int direction, const evs_filter *f, size_t limit, void **out);
int evs__pg_reader_next(void *r, const evs_event **ev);
uint64_t evs__pg_reader_position(const void *r);
void evs__pg_reader_close(void *r);
int evs__pg_stream_info(void *e, const char *stream, evs_stream_info *out);
int evs__pg_list_streams(void *e, const char *prefix, const char *after, evs_stream_info *out, size_t max,
                         size_t *count);

/*
 * A parameter in PostgreSQL's binary format, built in memory: one-
 * dimensional arrays (uuid[], text[], bytea[] ...) carry all the events of
 * an append in one call.  An allocation failure is remembered (oom) and
 * reported once at the end.  Ownership: free(b->p).
 */
typedef struct evs_pgbuf {
    char *p;
    size_t len, cap;
    int oom;
} evs_pgbuf;

/* Element type OIDs (pg_type.h's, stable across versions). */
#define EVS_PG_INT4 23u
#define EVS_PG_INT8 20u
#define EVS_PG_TEXT 25u
#define EVS_PG_BYTEA 17u
#define EVS_PG_UUID 2950u
#define EVS_PG_TIMESTAMPTZ 1184u
#define EVS_PG_TEXT_ARRAY 1009u

void evs__pgbuf_be32(evs_pgbuf *b, uint32_t v);
void evs__pgbuf_be64(evs_pgbuf *b, uint64_t v);
void evs__pgbuf_put(evs_pgbuf *b, const void *p, size_t n);
/* The header of a one-dimensional array of n elements of type elem_oid. */
void evs__pg_array_begin(evs_pgbuf *b, uint32_t elem_oid, size_t n);
/* One element (p == NULL: SQL NULL). */
void evs__pg_array_elem(evs_pgbuf *b, const void *p, size_t n);

/* PostgreSQL's binary format: big-endian integers; timestamps are µs since 2000-01-01. */
#define EVS_PG_EPOCH_US 946684800000000LL
static inline uint64_t evs__pg_be64(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | u[i];
    return v;
}
static inline uint32_t evs__pg_be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}
static inline int64_t evs__pg_ts_ns(const char *p) { return ((int64_t)evs__pg_be64(p) + EVS_PG_EPOCH_US) * 1000; }

#endif
