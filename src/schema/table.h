/*
 * table.h — the schema registry's in-memory state, shared by registry.c
 * (versions, policies, the append hook, stats, DIR/schemas/), upcast.c
 * (declaring upcasters, upcasting on read), upcaster.c (compiling, loading
 * and freeing upcasters) and table.c (the lookups they share).  One way
 * only: upcast.c -> registry.c -> upcaster.c -> table.c.
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

#include <pthread.h>
#include <stdatomic.h>

#include "bus/kv.h"
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

/* The registry's tables (registry.c describes them); META is on PostgreSQL only. */
enum { EVS__SK_VERSIONS, EVS__SK_TYPES, EVS__SK_POLICIES, EVS__SK_UPCASTERS, EVS__SK_META, EVS__SK_NTABLES };

struct evs_schema_registry {
    evs_store *store;
    evs__kv *kv;                  /* NULL: a read-only registry of a store that has none */
    int pg;                       /* kept in PostgreSQL: other servers may change it (registry.c, "Sharing") */
    uint64_t gen;                 /* PostgreSQL: the generation the tables reflect (write lock) */
    _Atomic int64_t checked_ns;   /* PostgreSQL: when the generation was last compared */
    pthread_mutex_t refresh_mu;   /* one refresh at a time */
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
/* A kv result that is not an evs code (NOTFOUND, KEYEXIST where not expected) as one. */
int evs__schema_kv_err(int rc, const char *what);
/* Key of a (type, version) row: type 0x00 be32(version); returns its length. */
size_t evs__schema_key(uint8_t *buf, const char *type, uint32_t version);
/* upcaster.c */
/* Free an upcaster (Lua state included).  NULL: no-op. */
void evs__upcaster_free(evs__upcaster *u);
/* Compile a Lua upcaster (the script must return a function).  On success *out is the caller's,
   freed with evs__upcaster_free; on failure *out is NULL and the error names the type and step. */
int evs__upcaster_lua_new(const char *type, uint32_t from, const char *src, size_t len, evs__upcaster **out);
/* Load the Lua upcasters stored in the registry (into r's types: open, or a reload's fresh tables). */
int evs__schema_load_upcasters(evs_schema_registry *r, evs__kv_txn *txn);
/*
 * PostgreSQL: reload the tables when another server changed them, unless
 * they were compared less than max_age_ns ago.  No lock held.  A failure
 * keeps the tables as they are (errors are the next write's to report).
 */
void evs__schema_refresh(evs_schema_registry *r, int64_t max_age_ns);
/* The max_age_ns of the append hook and upcasting: a change on another server is in force here within it. */
#define EVS__SCHEMA_RECHECK_NS (200ll * 1000000ll)
/* Take the write lock with the tables brought up to date (PostgreSQL: another server may have written). */
void evs__schema_wrlock_fresh(evs_schema_registry *r);
/*
 * Run one write transaction: begin, fn, commit (synced).  On PostgreSQL a
 * registry that another server changed since this one loaded it answers
 * EVS__SCHEMA_STALE (positive) and reloads: the caller checks again.
 * Write lock held.
 */
#define EVS__SCHEMA_STALE 3
int evs__schema_write(evs_schema_registry *r, int (*fn)(evs_schema_registry *, evs__kv_txn *, void *), void *arg);
/* Retry call while it answers EVS__SCHEMA_STALE (a bounded number of times). */
int evs__schema_retry_done(int rc);
#define EVS__SCHEMA_RETRY(call)                                                                                         \
    do {                                                                                                                \
        int rc_, n_ = 0;                                                                                                \
        while ((rc_ = (call)) == EVS__SCHEMA_STALE && ++n_ < 100) {                                                     \
        }                                                                                                               \
        return evs__schema_retry_done(rc_);                                                                             \
    } while (0)


#endif
