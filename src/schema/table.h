/*
 * table.h — the schema registry's in-memory state, shared by registry.c
 * (versions, policies, the append hook, stats, DIR/schemas/), upcast.c
 * (upcasters, upcasting on read) and table.c (the lookups both use).
 * Not part of the public API.
 *
 * Locking: one read-write lock.  The append hook and upcasting take it for
 * reading; registration, deprecation, policies and upcaster changes take it
 * for writing.  Type entries are never freed while the registry is open, so
 * their counters (atomics) may be bumped under the read lock.  A Lua
 * upcaster's sandbox has its own mutex (one call at a time), taken under
 * the read lock.
 */
#ifndef EVS_SCHEMA_TABLE_H
#define EVS_SCHEMA_TABLE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bus/lua_sandbox.h"
#include "evstore_schema.h"
#include "schema/jschema.h"

typedef struct evs__sversion {
    evs_json_schema *js;          /* NULL when it no longer compiles (broken says why) */
    char *broken;
    char *text;                   /* the schema as registered */
    size_t text_len;
    int64_t registered_at, deprecated_at;
    int deprecated;
    char *migration_path;         /* NULL when none */
    int implicit_next;            /* the next version provably includes this one: the step needs no upcaster */
} evs__sversion;

enum { EVS__UP_NONE = 0, EVS__UP_C = 1, EVS__UP_LUA = 2, EVS__UP_IMPLICIT = 3 };

typedef struct evs__upcaster {
    int kind;                     /* EVS__UP_C or EVS__UP_LUA */
    evs_upcast_fn fn;
    void *ctx;
    char *src;                    /* Lua */
    size_t src_len;
    evs__sandbox *sb;
    int fn_ref;
    pthread_mutex_t mu;           /* one Lua call at a time */
} evs__upcaster;

typedef struct evs__stype {
    char *name;
    evs__sversion *v;             /* v[i] is version i + 1 */
    size_t nv, capv;
    evs__upcaster **up;           /* up[i]: version i + 1 -> i + 2; capv entries */
    int compat;
    int has_policy;
    evs_schema_policy policy;
    _Atomic uint64_t validated, refused, warned, deprecated_appends, upcasted, upcast_failures;
    pthread_mutex_t last_mu;
    char last_failure[512];
} evs__stype;

typedef struct evs__spolicy {
    char *name;
    evs_schema_policy policy;
} evs__spolicy;

struct evs_schema_registry {
    evs_store *store;
    MDB_env *env;                 /* NULL: a read-only registry of a store that has none */
    MDB_dbi versions, types, policies, upcasters;
    int readonly;
    int hooked;
    pthread_rwlock_t lock;
    evs__stype **t;               /* sorted by name */
    size_t nt, capt;
    evs_schema_policy def;        /* the default policy */
    evs__spolicy *sp;             /* stream-type policies, sorted by name */
    size_t nsp, capsp;
};

/* table.c */
/* The type named `name` (NULL when unknown).  Lock held. */
evs__stype *evs__schema_find(const evs_schema_registry *r, const char *name);
/* Count a failure and keep its message as the type's last one. */
void evs__schema_note(evs__stype *t, _Atomic uint64_t *counter, const char *msg);
/* LMDB error as an evs code with context. */
int evs__schema_mdb_err(int rc, const char *what);
/* Key of a (type, version) row: type 0x00 be32(version); returns its length. */
size_t evs__schema_key(uint8_t *buf, const char *type, uint32_t version);
/* upcast.c */
/* Free an upcaster (Lua state included).  NULL: no-op. */
void evs__upcaster_free(evs__upcaster *u);
/* Load the Lua upcasters stored in DIR/schemas/ (open, write lock not needed yet). */
int evs__schema_load_upcasters(evs_schema_registry *r, MDB_txn *txn);


#endif
