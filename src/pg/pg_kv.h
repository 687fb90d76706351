/*
 * pg_kv.h — an ordered, transactional key-value store in the PostgreSQL
 * engine's database, and leases on names: what the consumer bus (src/bus/kv.c)
 * keeps its consumers, DLQ and projection state in when the store is a
 * postgresql:// URL.  Nothing here knows the bus: tables are small numbers,
 * keys and values byte strings.
 *
 * The table (migration 5 in migrate.c):
 *   evs_bus_kv (db smallint, k bytea, v bytea, PRIMARY KEY (db, k))
 * bytea compares bytewise, shorter first on a common prefix: LMDB's default
 * key order, so a range scan walks the same keys in the same order on both.
 *
 * Transactions: a read one is REPEATABLE READ READ ONLY (one snapshot, as an
 * LMDB reader); a write one takes a transaction-scoped advisory lock first,
 * so write transactions run one at a time across every process on the
 * database, as LMDB's single writer does within one environment.
 *
 * Results: EVS_OK, EVS__PGKV_NOTFOUND, EVS__PGKV_KEYEXIST (positive), or a
 * negative EVS_E* with the message set.  Values returned stay valid until
 * the transaction ends.
 */
#ifndef EVS_PG_KV_H
#define EVS_PG_KV_H

#include <stddef.h>

#define EVS__PGKV_NOTFOUND 1
#define EVS__PGKV_KEYEXIST 2

typedef struct evs__pgkv_txn evs__pgkv_txn;
typedef struct evs__pgkv_lease evs__pgkv_lease;

/*
 * Begin on a pool connection of engine (an evs_pg), or on the lease's own
 * connection when lease is not NULL.  Ownership: *out until commit/abort,
 * which end it whatever they return.
 */
int evs__pgkv_begin(void *engine, evs__pgkv_lease *lease, int rdonly, evs__pgkv_txn **out);
int evs__pgkv_commit(evs__pgkv_txn *t);
void evs__pgkv_abort(evs__pgkv_txn *t);

int evs__pgkv_get(evs__pgkv_txn *t, int db, const void *k, size_t kl, const void **v, size_t *vl);
int evs__pgkv_put(evs__pgkv_txn *t, int db, const void *k, size_t kl, const void *v, size_t vl, int nooverwrite);
int evs__pgkv_del(evs__pgkv_txn *t, int db, const void *k, size_t kl);
/* The number of rows of db. */
int evs__pgkv_count(evs__pgkv_txn *t, int db, size_t *n);
/* The first row of db with key >= k (after: > k). */
int evs__pgkv_seek(evs__pgkv_txn *t, int db, const void *k, size_t kl, int after, const void **rk, size_t *rkl,
                   const void **rv, size_t *rvl);
/* The same below end (keys < end; end NULL: no bound): a walk over one prefix fetches nothing past it. */
int evs__pgkv_seek_below(evs__pgkv_txn *t, int db, const void *k, size_t kl, int after, const void *end, size_t el,
                         const void **rk, size_t *rkl, const void **rv, size_t *rvl);

/*
 * The lease on name in a space of names ("bus": the consumers, whose keys
 * are "evs_bus:" name; "sagas": the saga engine's): a session advisory lock
 * (on a hash of "evs_" space ":" name) held by a connection of its own.
 * EVS_ELOCKED when another session holds it.  It ends with
 * evs__pgkv_lease_drop, or when the holder's connection closes (the process
 * exits or is killed).  Messages call the holder a consumer in space "bus",
 * else by the space's name.  Ownership: *out the caller's.
 */
int evs__pgkv_lease_take(void *engine, const char *space, const char *name, evs__pgkv_lease **out);
void evs__pgkv_lease_drop(evs__pgkv_lease *l);

#endif
