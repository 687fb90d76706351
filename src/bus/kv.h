/*
 * kv.h — the small transactional key-value interface the consumer bus
 * stores everything through: named tables of byte-string keys kept in
 * byte order, read and written in transactions, walked with a cursor.
 *
 * Two implementations stand behind it (kv.c):
 *   LMDB        DIR/consumers/ next to the log (the embedded engine): one
 *               LMDB database per table, exactly what the bus used before
 *               this interface existed;
 *   PostgreSQL  the table evs_bus_kv (db, k, v) of the store's database
 *               (src/pg/pg_kv.c), for a store opened on a postgresql:// URL.
 *
 * The calls mirror LMDB's so that the bus reads the same on either:
 *   - a write transaction excludes every other write transaction (LMDB's
 *     single writer; on PostgreSQL a transaction-scoped advisory lock), so
 *     read-modify-write of a counter (dlq_streams) needs no more care;
 *   - a read transaction sees one snapshot;
 *   - what get and the cursor return stays valid until the transaction
 *     ends (or, on LMDB, until the next write in it: the bus copies first);
 *   - commit and abort end (and free) the transaction whatever they return.
 *
 * Results: EVS_OK, EVS__KV_NOTFOUND, EVS__KV_KEYEXIST (both positive, so
 * never mistaken for an evs error code), or a negative EVS_E* with the
 * message set.
 *
 * Leases (consumers, or the saga engine, running once across processes):
 * evs__kv_lease_take gives the caller the right to run a name (a consumer's
 * on the bus's layout; names of another layout are a space of their own).  On LMDB the caller's
 * store directory lock already makes the process the only one, and there is
 * no lease (*out = NULL).  On PostgreSQL the lease is a session advisory lock
 * on a connection of its own; transactions begun with the lease run on that
 * connection, so a holder whose session is gone (and whose lock another
 * process may have taken since) cannot commit: the lease fences its writes.
 *
 * Thread rules: an evs__kv is used by any number of threads; a transaction
 * and its cursors belong to one thread.  Transactions on one lease run one
 * at a time (the lease's mutex, held from begin to commit/abort).
 *
 * Other users (the schema registry, the application layer, the saga index) open the same
 * interface on a layout of their own (evs__kv_layout): their LMDB
 * environment's database names and durability, kept exactly as they were
 * before they moved onto this interface, and the evs_bus_kv.db number of
 * each table on PostgreSQL.  A table named NULL for LMDB exists on
 * PostgreSQL only (what the embedded engine keeps in a file of its own).
 * Every write transaction on PostgreSQL, whatever its layout, takes the
 * same advisory lock: writers of all layouts run one at a time.
 */
#ifndef EVS_BUS_KV_H
#define EVS_BUS_KV_H

#include <stddef.h>
#include <stdint.h>

#include "evstore.h"

typedef struct evs__kv evs__kv;
typedef struct evs__kv_txn evs__kv_txn;
typedef struct evs__kv_cursor evs__kv_cursor;
typedef struct evs__kv_lease evs__kv_lease;

typedef struct evs__kv_val {
    size_t size;
    void *data;
} evs__kv_val;

/* The bus's tables (bus_internal.h describes their keys and values). */
enum { EVS__KV_CONSUMERS, EVS__KV_DLQ, EVS__KV_DLQ_STREAMS, EVS__KV_PSTATE, EVS__KV_NDB };

/* The most tables one layout may have (the saga index has 9). */
#define EVS__KV_MAX_TABLES 12

/* LMDB durability of a layout's environment (evs__kv_layout.lmdb_sync). */
enum {
    EVS__KV_SYNC_FULL,       /* every commit synced */
    EVS__KV_SYNC_NOMETA,     /* MDB_NOMETASYNC: the data pages synced, the meta page not */
    EVS__KV_SYNC_NONE        /* MDB_NOSYNC: synced only at close */
};

/*
 * What an opener keeps: its tables (the db argument of get, put, del and
 * cursor_open is an index into them), what LMDB calls them and how it
 * syncs, and their number in evs_bus_kv on PostgreSQL (unique across all
 * layouts: 0..3 the bus, 10..14 schemas, 20..23 the app layer, 30..39 the
 * saga index (30..38 used), 40..44 API keys (src/auth/keys.c uses 40 and
 * 41)).  A layout
 * must outlive every evs__kv opened on it (a static const).
 */
typedef struct evs__kv_layout {
    const char *what;                                /* subject of messages: "consumers", "schemas", "app", "sagas" */
    int ntables;
    const char *lmdb_names[EVS__KV_MAX_TABLES];      /* NULL: PostgreSQL only */
    short pg_db[EVS__KV_MAX_TABLES];
    int lmdb_sync;                                   /* EVS__KV_SYNC_* */
    size_t lmdb_map_size;
    unsigned lmdb_max_readers;                       /* 0: LMDB's default */
} evs__kv_layout;

/* The bus's layout (what evs__kv_open_lmdb and evs__kv_open_pg open). */
extern const evs__kv_layout evs__kv_bus_layout;

#define EVS__KV_NOTFOUND 1
#define EVS__KV_KEYEXIST 2

#define EVS__KV_RDONLY 1u      /* evs__kv_begin */
#define EVS__KV_OWN_LEASE 2u   /* evs__kv_begin: the transaction drops the lease when it ends (or fails to begin) */
#define EVS__KV_NOOVERWRITE 1u /* evs__kv_put: EVS__KV_KEYEXIST instead of replacing */

/* Cursor moves. */
enum { EVS__KV_FIRST, EVS__KV_SET_RANGE, EVS__KV_NEXT };

/*
 * Open the LMDB implementation in directory path (created by the caller);
 * ro: read-only.  Ownership: *out is the caller's (evs__kv_close).
 */
int evs__kv_open_lmdb(const char *path, int ro, evs__kv **out);
/*
 * Open the PostgreSQL implementation on a store's engine handle (evs_pg,
 * src/pg): its table exists already (the engine's migrations made it).
 * Ownership: *out is the caller's (evs__kv_close).
 */
int evs__kv_open_pg(void *pg_engine, evs__kv **out);
/* The same on another layout. */
int evs__kv_open_lmdb_as(const evs__kv_layout *lo, const char *path, int ro, evs__kv **out);
int evs__kv_open_pg_as(const evs__kv_layout *lo, void *pg_engine, evs__kv **out);
/* Close (an environment not opened EVS__KV_SYNC_FULL is synced first).  NULL: no-op. */
void evs__kv_close(evs__kv *kv);
/* "lmdb" or "postgresql". */
const char *evs__kv_kind(const evs__kv *kv);

/* Begin a transaction (on lease's connection when lease is not NULL).  Ownership: *out until commit/abort. */
int evs__kv_begin(evs__kv *kv, evs__kv_lease *lease, unsigned flags, evs__kv_txn **out);
int evs__kv_commit(evs__kv_txn *txn);
void evs__kv_abort(evs__kv_txn *txn); /* NULL: no-op */

int evs__kv_get(evs__kv_txn *txn, int db, const evs__kv_val *k, evs__kv_val *v);
int evs__kv_put(evs__kv_txn *txn, int db, const evs__kv_val *k, const evs__kv_val *v, unsigned flags);
int evs__kv_del(evs__kv_txn *txn, int db, const evs__kv_val *k);
/* The number of keys in table db. */
int evs__kv_count(evs__kv_txn *txn, int db, size_t *n);

/*
 * A generation counter (be64) at key name of table db: what a layer shared
 * by several servers bumps with every write and compares to know whether
 * its copy in memory is stale (the schema registry, API keys).  get: 0 when
 * there is none yet; EVS_ECORRUPT when the row is not 8 bytes.
 */
int evs__kv_gen_get(evs__kv_txn *txn, int db, const char *name, uint64_t *gen);
int evs__kv_gen_put(evs__kv_txn *txn, int db, const char *name, uint64_t gen);

/* Ownership: *out until evs__kv_cursor_close (before the transaction ends). */
int evs__kv_cursor_open(evs__kv_txn *txn, int db, evs__kv_cursor **out);
/*
 * Move: FIRST (k, v out), SET_RANGE (the first key >= *k; k in and out),
 * NEXT (the key after the current one, even when that one was deleted).
 */
int evs__kv_cursor_get(evs__kv_cursor *c, evs__kv_val *k, evs__kv_val *v, int op);
/*
 * Bound the cursor: keys >= *end (byte order) are past its end, and a move
 * that would land on one answers EVS__KV_NOTFOUND.  On PostgreSQL the bound
 * is part of the scan, so a walk over one key prefix fetches no row beyond
 * it.  Set before the first move; end is copied.
 */
int evs__kv_cursor_bound(evs__kv_cursor *c, const evs__kv_val *end);
/* Delete the current key; NEXT then moves to the key after it. */
int evs__kv_cursor_del(evs__kv_cursor *c);
void evs__kv_cursor_close(evs__kv_cursor *c);

/*
 * Take the lease on name: EVS_OK (*out the caller's, or NULL where no
 * lease is needed), EVS_ELOCKED when another session holds it.
 */
int evs__kv_lease_take(evs__kv *kv, const char *name, evs__kv_lease **out);
void evs__kv_lease_drop(evs__kv_lease *l); /* NULL: no-op */

#endif
